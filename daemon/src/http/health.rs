//! Probes and metrics for operators: `/healthz` and `/readyz` on the public listener (cheap, no
//! details a stranger could use), and Prometheus `/metrics` on its own listener
//! (`--metrics-listen`), never on the public one.

use std::convert::Infallible;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{Body, text, with_type};
use crate::app::App;
use crate::shutdown::Signal;

/// `GET /healthz`: the process is up and answering.
pub fn healthz() -> Response<Body> {
    text(StatusCode::OK, "ok\n")
}

/// `GET /readyz`: 200 when graspd can take work (store open, gRPC socket served for the hooks,
/// git root writable); 503 with a one-line reason otherwise.
pub async fn readyz(app: &App) -> Response<Body> {
    match not_ready(app).await {
        None => text(StatusCode::OK, "ready\n"),
        Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {reason}\n")),
    }
}

/// Why graspd cannot take work now, if it cannot.
async fn not_ready(app: &App) -> Option<&'static str> {
    let readiness = app.readiness();
    if readiness.stopping.load(Ordering::Relaxed) {
        return Some("shutting down");
    }
    if !readiness.grpc_serving.load(Ordering::Relaxed) {
        return Some("gRPC socket not served");
    }
    if app.store().ping().await.is_err() {
        return Some("store not answering");
    }
    let git_root = app.config().git_root.clone();
    let writable = tokio::task::spawn_blocking(move || {
        git_root.is_dir()
            && rustix::fs::access(
                &git_root,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            )
            .is_ok()
    })
    .await
    .unwrap_or(false);
    if !writable {
        return Some("git root not writable");
    }
    None
}

/// Serves `GET /metrics` (Prometheus text) on `listener` until shutdown; every other path is 404.
pub async fn serve_metrics(listener: TcpListener, app: App, shutdown: Signal) {
    super::accept_until_shutdown(listener, shutdown, |stream, peer| {
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(metrics(&app, &req).await) }
            });
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "metrics connection ended with an error");
            }
        });
    })
    .await;
}

async fn metrics(app: &App, req: &Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let snapshot = app.snapshot().await;
    let body = app.metrics().render(&snapshot);
    with_type(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
}
