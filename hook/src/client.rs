//! The gRPC client for graspd's `HookService`, over the daemon's Unix socket.
//!
//! Each hook run makes exactly one call, so each call builds its own current-thread runtime and
//! connection: nothing to share, and the process starts in milliseconds. One deadline covers
//! connecting and the call together, so a daemon that hangs cannot hang `git push` either.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grasp_proto::v1::hook_service_client::HookServiceClient;
use grasp_proto::v1::{
    AuthorizePushRequest, AuthorizePushResponse, CheckRequest, CheckResponse, ReportPushRequest,
    ReportPushResponse,
};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Largest answer accepted. tonic's default (4 MiB) is too small for the verdicts of a push of
/// many refs; [`crate::updates::MAX_UPDATES`] verdicts of a few hundred bytes fit in this.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Where the daemon listens and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub socket: PathBuf,
    pub timeout: Duration,
}

/// Why a call did not produce an answer.
#[derive(Debug)]
pub enum CallError {
    /// The async runtime could not start (out of threads or file descriptors).
    Runtime(std::io::Error),
    /// Nothing answered on the socket.
    Connect(tonic::transport::Error),
    /// The daemon (or the transport) answered with an error status.
    Status(tonic::Status),
    /// No answer within the deadline.
    Timeout(Duration),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Runtime(err) => write!(f, "cannot start the async runtime: {err}"),
            CallError::Connect(err) => write_chain(f, err),
            CallError::Status(status) if status.message().is_empty() => {
                write!(f, "gRPC status {:?}", status.code())
            }
            CallError::Status(status) => {
                write!(f, "gRPC status {:?}: {}", status.code(), status.message())
            }
            CallError::Timeout(limit) => write!(f, "no answer within {} s", limit.as_secs()),
        }
    }
}

impl std::error::Error for CallError {}

/// Writes an error and its causes (`transport error: No such file or directory (os error 2)`):
/// tonic's own message alone ("transport error") does not tell an operator what went wrong.
/// Wrappers that repeat their cause's text are not repeated.
fn write_chain(f: &mut fmt::Formatter<'_>, err: &dyn std::error::Error) -> fmt::Result {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    f.write_str(&text)
}

impl Daemon {
    /// `HookService.Check`: is the daemon there, and does it serve `repo_path`?
    pub fn check(&self, request: CheckRequest) -> Result<CheckResponse, CallError> {
        self.call(|mut client| async move { client.check(request).await })
    }

    /// `HookService.AuthorizePush` from pre-receive.
    pub fn authorize_push(&self, request: AuthorizePushRequest) -> Result<AuthorizePushResponse, CallError> {
        self.call(|mut client| async move { client.authorize_push(request).await })
    }

    /// `HookService.ReportPush` from post-receive.
    pub fn report_push(&self, request: ReportPushRequest) -> Result<ReportPushResponse, CallError> {
        self.call(|mut client| async move { client.report_push(request).await })
    }

    /// Connects, makes one call and waits for its answer, all within `self.timeout`.
    fn call<T, F, Fut>(&self, rpc: F) -> Result<T, CallError>
    where
        F: FnOnce(HookServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CallError::Runtime)?;
        runtime.block_on(async {
            let exchange = async {
                let channel = connect(&self.socket).await.map_err(CallError::Connect)?;
                let client = HookServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
                let response = rpc(client).await.map_err(CallError::Status)?;
                Ok(response.into_inner())
            };
            tokio::time::timeout(self.timeout, exchange)
                .await
                .unwrap_or(Err(CallError::Timeout(self.timeout)))
        })
    }
}

/// Opens an HTTP/2 channel over the Unix socket at `socket`. The URI is a placeholder tonic needs
/// for the `:authority` header; the connector ignores it and always dials the socket.
async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_socket_is_a_connect_error_that_says_why() {
        let daemon = Daemon {
            socket: std::env::temp_dir().join(format!("grasp-hook-no-such-{}.sock", std::process::id())),
            timeout: Duration::from_secs(5),
        };
        let err = daemon
            .check(CheckRequest::default())
            .expect_err("nothing listens");
        assert!(matches!(err, CallError::Connect(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("No such file"), "{text}");
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
    }

    #[test]
    fn status_errors_carry_the_daemons_message() {
        let err = CallError::Status(tonic::Status::internal("database is locked"));
        assert_eq!(err.to_string(), "gRPC status Internal: database is locked");
    }
}
