//! The gRPC edge: `grasp.v1.HookService` on a Unix socket (and optionally TCP). Translates
//! protobuf messages into domain types, calls the domain, translates back. Decides nothing.

pub mod authority;
pub mod hook;
pub mod spool;
pub mod status;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use grasp_proto::v1::hook_service_server::HookServiceServer;
use grasp_proto::v1::status_service_server::StatusServiceServer;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::app::App;
use crate::shutdown::Signal;

/// Largest gRPC message, either way (100,000 ref updates fit).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why the gRPC listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("another process already listens on {0}")]
    SocketInUse(PathBuf),
    #[error("cannot bind {path}: {source}")]
    Bind { path: String, source: std::io::Error },
}

/// Bound listeners, ready to serve.
pub struct Listeners {
    unix: UnixListener,
    socket_path: PathBuf,
    tcp: Option<tokio::net::TcpListener>,
}

/// Binds the Unix socket (replacing a stale socket file, refusing a live one) with `mode`, and
/// the optional TCP address.
pub async fn bind(socket: &Path, mode: u32, tcp: Option<SocketAddr>) -> Result<Listeners, RpcError> {
    if socket.exists() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Err(RpcError::SocketInUse(socket.to_owned()));
        }
        let _ = std::fs::remove_file(socket);
    }
    let bind_error = |source| RpcError::Bind {
        path: socket.display().to_string(),
        source,
    };
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(bind_error)?;
    }
    let unix = UnixListener::bind(socket).map_err(bind_error)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode)).map_err(bind_error)?;
    let tcp = match tcp {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RpcError::Bind {
                    path: addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    Ok(Listeners {
        unix,
        socket_path: socket.to_owned(),
        tcp,
    })
}

/// Serves until shutdown, then removes the socket file.
///
/// The Unix socket (guarded by its file mode) serves everything: hooks, status, health and
/// reflection. TCP serves status (bearer token required), health and reflection, and the hook
/// service only with `--grpc-tcp-hooks`. Health reports NOT_SERVING once shutdown starts.
pub async fn serve(
    app: App,
    listeners: Listeners,
    throttle: crate::sync::ThrottleManager,
    event_sync: crate::sync::events::EventSyncStatus,
    shutdown: Signal,
) {
    let Listeners {
        unix,
        socket_path,
        tcp,
    } = listeners;
    let config = app.config().clone();
    let mut listen = vec![
        format!("http://{}", config.listen),
        format!("unix:{}", socket_path.display()),
    ];
    if let Some(tcp) = &tcp
        && let Ok(addr) = tcp.local_addr()
    {
        listen.push(format!("tcp:{addr}"));
    }
    // A push may update many refs (git sends one line per ref): allow large requests.
    let hooks = HookServiceServer::new(hook::Hooks::new(app.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let status = status::StatusApi::new(app.clone(), listen, throttle, event_sync);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<HookServiceServer<hook::Hooks>>().await;
    health
        .set_serving::<StatusServiceServer<status::StatusApi>>()
        .await;
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(grasp_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // v1 and the older v1alpha (still what many grpcurl/grpcui builds ask for).
    let reflection = || {
        builder()
            .build_v1()
            .and_then(|v1| Ok((v1, builder().build_v1alpha()?)))
    };
    let mut tasks = Vec::new();
    match reflection() {
        Ok((reflect, reflect_alpha)) => {
            let router = tonic::transport::Server::builder()
                .add_service(hooks.clone())
                .add_service(StatusServiceServer::new(status.clone()))
                .add_service(health_service.clone())
                .add_service(reflect)
                .add_service(reflect_alpha);
            let mut stop = shutdown.clone();
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                // Clients of gRPC's C core and grpc-java send the socket path as :authority.
                let incoming =
                    UnixListenerStream::new(unix).map(|accepted| accepted.map(authority::Normalized::new));
                // The socket is bound, so connections made from here on are queued and served.
                let serving = &app.readiness().grpc_serving;
                serving.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Err(error) = router
                    .serve_with_incoming_shutdown(incoming, async move { stop.wait().await })
                    .await
                {
                    tracing::error!(%error, "gRPC server on the Unix socket failed");
                }
                serving.store(false, std::sync::atomic::Ordering::Relaxed);
            }));
        }
        Err(error) => tracing::error!(%error, "cannot build gRPC reflection; gRPC not served"),
    }
    if let (Some(tcp), Ok((reflect, reflect_alpha))) = (tcp, reflection()) {
        let token = config.grpc_token.clone().unwrap_or_default();
        let status = StatusServiceServer::with_interceptor(status, auth::bearer(token));
        let mut router = tonic::transport::Server::builder()
            .add_service(status)
            .add_service(health_service.clone())
            .add_service(reflect)
            .add_service(reflect_alpha);
        if config.grpc_tcp_hooks {
            router = router.add_service(hooks);
        }
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = TcpListenerStream::new(tcp);
            if let Err(error) = router
                .serve_with_incoming_shutdown(incoming, async move { stop.wait().await })
                .await
            {
                tracing::error!(%error, "gRPC server on TCP failed");
            }
        }));
    }
    {
        let mut stop = shutdown.clone();
        let health = health.clone();
        tokio::spawn(async move {
            stop.wait().await;
            health.set_not_serving::<HookServiceServer<hook::Hooks>>().await;
            health
                .set_not_serving::<StatusServiceServer<status::StatusApi>>()
                .await;
        });
    }
    for task in tasks {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&socket_path);
}

mod auth {
    //! Bearer-token check for the status service on TCP.
    use subtle::ConstantTimeEq;
    use tonic::{Request, Status};

    pub fn bearer(token: String) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        move |request: Request<()>| {
            let presented = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match presented {
                // Compared in constant time: the answer's timing says nothing about the token.
                Some(given) if !token.is_empty() && bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
                    Ok(request)
                }
                Some(_) => Err(Status::unauthenticated("wrong bearer token")),
                None => Err(Status::unauthenticated("missing 'authorization: Bearer <token>'")),
            }
        }
    }
}
