//! A plain smart-HTTP server for benchmarks: a minimal hyper server in the bench's process that
//! runs stock `git http-backend` through graspd's own CGI bridge, on bare repositories with
//! `http.receivepack` and no hooks. What graspd's git front is measured against.

use std::convert::Infallible;
use std::net::SocketAddr;

use graspd::http::cgi::{self, GitBackend};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::git;

/// The server and the directory of its repositories (removed when it is dropped).
pub struct PlainServer {
    root: tempfile::TempDir,
    addr: SocketAddr,
}

impl PlainServer {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let backend = GitBackend::new(root.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                // As graspd's front does.
                let _ = stream.set_nodelay(true);
                let backend = backend.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let backend = backend.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            Ok::<_, Infallible>(cgi::serve(&backend, req, peer, &path).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { root, addr }
    }

    pub fn repo_path(&self, name: &str) -> std::path::PathBuf {
        self.root.path().join(format!("{name}.git"))
    }

    /// Creates an empty bare repository that accepts anonymous pushes, with `config` set;
    /// returns its URL.
    pub fn fresh_repo(&self, name: &str, config: &[(&str, &str)]) -> String {
        let path = self.repo_path(name);
        std::fs::create_dir_all(&path).expect("mkdir");
        git(&path, &["init", "-q", "--bare", "-b", "main"]);
        git(&path, &["config", "http.receivepack", "true"]);
        // Like graspd's repositories: keep received packs as sent (a fair transfer comparison).
        git(&path, &["config", "transfer.unpackLimit", "1"]);
        for (key, value) in config {
            git(&path, &["config", key, value]);
        }
        format!("http://{}/{name}.git", self.addr)
    }
}
