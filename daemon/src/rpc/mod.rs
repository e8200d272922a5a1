//! The gRPC edge: `grasp.v1.HookService` on a Unix socket (and optionally TCP). Translates
//! protobuf messages into domain types, calls the domain, translates back. Decides nothing.

pub mod hook;
pub mod spool;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use grasp_proto::v1::hook_service_server::HookServiceServer;
use tokio::net::UnixListener;
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
pub async fn serve(app: App, listeners: Listeners, shutdown: Signal) {
    let Listeners {
        unix,
        socket_path,
        tcp,
    } = listeners;
    // A push may update many refs (git sends one line per ref): allow large requests.
    let service = HookServiceServer::new(hook::Hooks::new(app))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut tasks = Vec::new();
    {
        let service = service.clone();
        let mut shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    UnixListenerStream::new(unix),
                    async move { shutdown.wait().await },
                )
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "gRPC server on the Unix socket failed");
            }
        }));
    }
    if let Some(tcp) = tcp {
        let mut shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(tcp),
                    async move { shutdown.wait().await },
                )
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "gRPC server on TCP failed");
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&socket_path);
}
