//! The HTTP front: one listener for the NIP-11 document, the websocket relay at `/`, repository
//! pages, git smart-HTTP paths and the `/healthz` and `/readyz` probes (`/metrics` has a listener
//! of its own, see `health`). Every response carries GRASP's CORS headers; `OPTIONS` anywhere
//! is `204 No Content`.

pub mod cgi;
pub mod health;
pub mod negentropy;
pub mod pages;
pub mod stored;
pub mod ws;

use std::net::SocketAddr;

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::routing::{any, get};
use axum::{Extension, Router, middleware};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nostr::{FromBech32, PublicKey};
use nostr_relay_builder::LocalRelay;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::app::App;
use crate::config::GitHttp;
use crate::nip34::{Identifier, RepoId};
use crate::shutdown::Signal;
use crate::types::Area;

/// Where the hooks find the daemon's socket and the spool directory (read by grasp-hook and the
/// fast hook; the names are theirs).
pub const SOCKET_ENV: &str = "GRASPD_SOCKET";
pub const SPOOL_ENV: &str = "GRASPD_SPOOL";

/// Response bodies: small ones in full today; the git front will stream.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// What each connection needs. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Front {
    app: App,
    relay: LocalRelay,
    /// Clients' events, taken by the websocket bridge (`relay::intake`).
    intake: crate::relay::Intake,
    git: std::sync::Arc<cgi::GitBackend>,
    /// The same for `/prs/` repositories (GRASP-06), with their own push limit.
    prs_git: std::sync::Arc<cgi::GitBackend>,
    /// GRASP-06 (when on): `git http-backend` over the empty repository that answers for `/prs/`
    /// repositories not on disk.
    empty: Option<std::sync::Arc<cgi::GitBackend>>,
}

/// GRASP-06: the empty repository `/prs/` clones and fetches read until the repository exists:
/// `<dir>/empty.git`, made at start by [`prepare_empty_repository`].
const EMPTY_REPOSITORY: &str = "empty.git";

/// Where the empty repository for `/prs/` lives: `<data-dir>/grasp06`.
pub fn empty_repository_root(config: &crate::config::Config) -> std::path::PathBuf {
    config.data_dir.join("grasp06")
}

/// Creates the empty repository `/prs/` answers from (GRASP-06), if it is not there.
pub async fn prepare_empty_repository(app: &App) -> Result<(), crate::git::GitError> {
    let path = empty_repository_root(app.config()).join(EMPTY_REPOSITORY);
    app.git().provision_at_path(path).await.map(|_| ())
}

impl Front {
    pub fn new(app: App, relay: LocalRelay) -> Self {
        // git http-backend hands its environment to receive-pack and so to the hooks: they find
        // the daemon here (the fast hook only here; the repository's git config is grasp-hook's
        // fallback for pushes that come another way). nginx passes the same (`nginx-config`).
        let hooks = &app.config().hooks;
        let git = cgi::GitBackend {
            git_root: app.config().git_root.clone(),
            git_program: app.config().git_program.clone(),
            extra_env: vec![
                (SOCKET_ENV.to_owned(), hooks.socket.display().to_string()),
                (SPOOL_ENV.to_owned(), hooks.spool_dir.display().to_string()),
            ],
        };
        let limits = &app.config().abuse;
        let empty = app.config().grasp06.enabled.then(|| {
            std::sync::Arc::new(cgi::GitBackend {
                git_root: empty_repository_root(app.config()),
                ..git.clone()
            })
        });
        // This node's hooks, whichever node created the repository (several nodes may share
        // the git root): command-line configuration wins over the repository's own.
        let hooks_path = ("core.hooksPath", hooks.hooks_dir.display().to_string());
        let with_limit = |bytes: u64| {
            let limit = ("receive.maxInputSize", bytes.to_string());
            let config = if bytes > 0 {
                vec![hooks_path.clone(), limit]
            } else {
                vec![hooks_path.clone()]
            };
            std::sync::Arc::new(with_git_config(git.clone(), &config))
        };
        let prs_git = with_limit(limits.max_pr_push_bytes);
        let git = with_limit(limits.max_push_bytes);
        Self {
            intake: crate::relay::Intake::new(&app),
            app,
            relay,
            git,
            prs_git,
            empty,
        }
    }
}

/// `config` given to git as command-line configuration (`GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_<n>`,
/// `GIT_CONFIG_VALUE_<n>` in `backend`'s environment), which wins over the repository's: e.g.
/// `receive.maxInputSize`, so git refuses a larger pack while receiving it ("pack exceeds maximum
/// allowed size") and keeps nothing of it.
pub fn with_git_config(mut backend: cgi::GitBackend, config: &[(&str, String)]) -> cgi::GitBackend {
    if config.is_empty() {
        return backend;
    }
    backend
        .extra_env
        .push(("GIT_CONFIG_COUNT".to_owned(), config.len().to_string()));
    for (n, (key, value)) in config.iter().enumerate() {
        backend.extra_env.extend([
            (format!("GIT_CONFIG_KEY_{n}"), (*key).to_owned()),
            (format!("GIT_CONFIG_VALUE_{n}"), value.clone()),
        ]);
    }
    backend
}

/// Accepts connections on `listener` until shutdown, handing each to `serve_connection`.
pub(crate) async fn accept_until_shutdown<F>(
    listener: TcpListener,
    mut shutdown: Signal,
    mut serve_connection: F,
) where
    F: FnMut(tokio::net::TcpStream, SocketAddr),
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => serve_connection(stream, peer),
            Err(error) => tracing::warn!(%error, "cannot accept connection"),
        }
    }
}

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, front: Front, shutdown: Signal) {
    let router = router(front);
    accept_until_shutdown(listener, shutdown, |stream, peer| {
        // Relay traffic is many small messages: do not let Nagle hold them back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                router.clone().oneshot(req)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "http connection ended with an error");
            }
        });
    })
    .await;
}

/// The client's address, put in each request's extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// The routes. Repository paths are the fallback, parsed from the raw path by [`parse_repo`]
/// (percent-decoded exactly once, then validated): a route pattern would decode the identifier
/// before graspd's own checks see it. `OPTIONS` anywhere is `204`, and CORS goes on every
/// response, the router's own `404`/`405` included.
pub fn router(front: Front) -> Router {
    Router::new()
        .route("/", any(root))
        .route("/healthz", get(async || health::healthz()))
        .route("/readyz", get(readyz))
        .fallback(repository_path)
        // The last layer added is the outermost: CORS also reaches `options_anywhere`'s answers.
        .layer(middleware::from_fn(options_anywhere))
        .layer(middleware::map_response(with_cors))
        .with_state(front)
}

async fn options_anywhere(req: axum::extract::Request, next: middleware::Next) -> Response<AxumBody> {
    if req.method() == Method::OPTIONS {
        return empty(StatusCode::NO_CONTENT).map(AxumBody::new);
    }
    next.run(req).await
}

async fn with_cors<B>(mut response: Response<B>) -> Response<B> {
    add_cors(response.headers_mut());
    response
}

/// GRASP-01 [64–67]: the CORS headers every response carries, errors included. Shared with the
/// nginx configuration `graspd nginx-config` prints, so both fronts send the same. (Names in
/// lowercase, as `HeaderName` wants them; HTTP header names are case-insensitive.)
///
/// tower-http's `CorsLayer` does not fit: it speaks the CORS protocol (allow-methods and
/// allow-headers only on a preflight that names a method), while GRASP asks for the same three
/// headers on every response, as the nginx configuration sends them.
pub const CORS_HEADERS: [(&str, &str); 3] = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET, POST"),
    ("access-control-allow-headers", "Content-Type"),
];

fn add_cors(headers: &mut HeaderMap) {
    for (name, value) in CORS_HEADERS {
        headers.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

async fn readyz(State(front): State<Front>) -> Response<Body> {
    health::readyz(&front.app).await
}

async fn root(
    State(front): State<Front>,
    Extension(Peer(peer)): Extension<Peer>,
    req: axum::extract::Request,
) -> Response<Body> {
    if is_websocket_upgrade(req.headers()) {
        return upgrade(front, req, peer);
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, or a websocket upgrade for the relay\n",
        );
    }
    let wants_nip11 = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/nostr+json"));
    if wants_nip11 {
        let body = pages::nip11(front.app.config()).to_string();
        return with_type(StatusCode::OK, "application/nostr+json", body);
    }
    html(StatusCode::OK, pages::landing(front.app.config()))
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// The client's address: the connection's peer, or, when that is a proxy on this machine (the
/// nginx of `graspd nginx-config`, which sets `X-Forwarded-For`), the address the proxy saw (the
/// header's last entry). A remote peer's header is never trusted.
fn client_address(peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    if !peer.ip().is_loopback() {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse::<std::net::IpAddr>().ok());
    forwarded.map_or(peer, |ip| SocketAddr::new(ip, peer.port()))
}

fn upgrade(front: Front, req: axum::extract::Request, peer: SocketAddr) -> Response<Body> {
    let peer = client_address(peer, req.headers());
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut response = text(StatusCode::UPGRADE_REQUIRED, "websocket version 13 required\n");
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let app = front.app.clone();
    let relay = front.relay.clone();
    let intake = front.intake.clone();
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => ws::bridge(relay, intake, upgraded, peer, app).await,
            Err(error) => tracing::debug!(%peer, %error, "websocket upgrade failed"),
        }
    });
    let mut response = empty(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// `/<npub>/<identifier>[.git][/<git path>]`: the repository page, or its git smart-HTTP paths
/// served by `git http-backend` (GRASP-01 [34]: repositories in purgatory are served too).
async fn repository_path(
    State(front): State<Front>,
    Extension(Peer(peer)): Extension<Peer>,
    req: axum::extract::Request,
) -> Response<Body> {
    // git's hooks see it as REMOTE_ADDR (the limits on pushes anyone may send count by it).
    let peer = client_address(peer, req.headers());
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.first() == Some(&Area::PRS_DIR) {
        return pull_request_repository_path(front, peer, req, &segments[1..]).await;
    }
    if !segments.first().is_some_and(|s| s.starts_with("npub1")) {
        return not_found("There is nothing at this address.");
    }
    let names = segments;
    let Some(repo) = parse_repo(&names) else {
        return not_found("This is not a repository address: expected /<npub>/<identifier>.git");
    };
    let rest = names.get(2..).map(|r| r.join("/")).unwrap_or_default();
    if !rest.is_empty() {
        // Git's requests only need to know the repository is hosted, which the store answers
        // from memory; the page below needs the announcement itself.
        match front.app.is_hosted(&repo).await {
            Ok(true) => {}
            Ok(false) => return not_found(&format!("No repository {repo} is hosted on this server.")),
            Err(error) => {
                tracing::error!(%error, "cannot look up repository");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
            }
        }
        if !names[1].ends_with(".git") || !cgi::is_git_path(&rest) {
            return not_found("Not a git smart-HTTP path.");
        }
        if front.app.config().git_http == GitHttp::External {
            return not_found(
                "Git is served by this server's front web server (graspd runs with --git-http \
                 external), and this request reached graspd instead: the front's git location \
                 (see graspd nginx-config) did not match it.",
            );
        }
        let path_info = format!("/{}/{}.git/{rest}", repo.npub(), repo.identifier);
        let _in_flight = crate::metrics::GaugeGuard::new(&front.app.metrics().git_requests_in_flight);
        return cgi::serve(&front.git, req, peer, &path_info).await;
    }
    let known = match front.app.announcement(&repo).await {
        Ok(known) => known,
        Err(error) => {
            tracing::error!(%error, "cannot look up repository");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
    };
    let hosted = known.is_some() && front.app.git().exists(&repo);
    let (Some(known), true) = (known, hosted) else {
        return not_found(&format!("No repository {repo} is hosted on this server."));
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    html(
        StatusCode::OK,
        pages::repository(front.app.config(), &repo, &known),
    )
}

/// GRASP-06: `/prs/<npub>/<identifier>.git/<git path>`, a contributor's pull request repository.
///
/// Any well-formed path is a repository: until a push creates it, clones and fetches are answered
/// from an empty repository (a probe leaves nothing on disk), and a push (`git-receive-pack`)
/// creates it, with graspd's hooks, just before git receives it; the hooks decide (see
/// `authorize`), and the sweep removes a repository a refused push left without refs. Served by
/// graspd itself whatever `--git-http` says: `graspd nginx-config` hands `/prs/` to graspd.
/// With GRASP-06 off, everything under `/prs/` is 404.
async fn pull_request_repository_path(
    front: Front,
    peer: SocketAddr,
    req: axum::extract::Request,
    names: &[&str],
) -> Response<Body> {
    let Some(empty) = front.empty.clone() else {
        return not_found("This server does not take pull request repositories (GRASP-06 is off).");
    };
    let Some(repo) = parse_repo(names).map(|r| RepoId::pull_requests(r.owner, r.identifier)) else {
        return not_found(
            "This is not a pull request repository address: expected /prs/<npub>/<identifier>.git",
        );
    };
    let rest = names.get(2..).map(|r| r.join("/")).unwrap_or_default();
    if !names[1].ends_with(".git") || !cgi::is_git_path(&rest) {
        return not_found("Pull request repositories have no pages: use git with the .git URL.");
    }
    let _in_flight = crate::metrics::GaugeGuard::new(&front.app.metrics().git_requests_in_flight);
    if rest == "git-receive-pack" && req.method() == Method::POST {
        let provisioned = {
            // Under the lock the sweep takes: it sees this push coming (see
            // `process::contributions`) and leaves the repository alone.
            let _serial = front.app.lock_identifier(&repo.identifier).await;
            let provisioned = front.app.git().provision(&repo).await;
            if matches!(provisioned, Ok(false)) {
                front.app.git().touch(&repo);
            }
            provisioned
        };
        match provisioned {
            Ok(true) => tracing::info!(repo = %repo, "pull request repository created for a push"),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(repo = %repo, %error, "cannot create pull request repository");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
            }
        }
    }
    if front.app.git().exists(&repo) {
        let path_info = format!("/{}.git/{rest}", repo.relative_path());
        return cgi::serve(&front.prs_git, req, peer, &path_info).await;
    }
    cgi::serve(&empty, req, peer, &format!("/{EMPTY_REPOSITORY}/{rest}")).await
}

/// Decodes the owner and identifier from path segments (percent-decoded once, then validated).
fn parse_repo(segments: &[&str]) -> Option<RepoId> {
    let owner = PublicKey::from_bech32(segments.first()?).ok()?;
    let raw = percent_encoding::percent_decode_str(segments.get(1)?)
        .decode_utf8()
        .ok()?;
    let name = raw.strip_suffix(".git").unwrap_or(&raw);
    Some(RepoId::new(owner, Identifier::parse(name).ok()?))
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", body.to_owned())
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    with_type(status, "text/html; charset=utf-8", body)
}

fn not_found(what: &str) -> Response<Body> {
    html(StatusCode::NOT_FOUND, pages::not_found(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{Keys, ToBech32};

    /// Randomized: whatever the path, a repository read from it is one whose directory stays
    /// inside the git root, and whose npub is the path's own.
    #[test]
    fn random_paths_never_name_a_repository_outside_the_git_root() {
        let (mut rng, cases, seed) = crate::testing::Rng::plan("paths");
        let npub = Keys::generate().public_key().to_bech32().expect("npub");
        let seeds = [
            format!("/{npub}/repo.git/info/refs"),
            format!("/prs/{npub}/my%20repo.git/git-upload-pack"),
            format!("/{npub}/%2e%2e.git/objects/ab/cdef"),
            format!("/{npub}/a%2fb.git/HEAD"),
        ];
        let mut named = 0;
        for case in 0..cases {
            let picked = rng.pick(&seeds).clone().into_bytes();
            let path = rng.mutate(picked);
            let path = String::from_utf8_lossy(&path).into_owned();
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let names = match segments.first() {
                Some(&"prs") => &segments[1..],
                _ => &segments[..],
            };
            let Some(repo) = parse_repo(names) else {
                continue;
            };
            named += 1;
            let id = repo.identifier.as_str();
            let safe = !id.is_empty()
                && !id.contains(['/', '\\'])
                && !id.starts_with('.')
                && !id.contains("..")
                && !id.chars().any(char::is_control);
            assert!(safe, "seed {seed} case {case}: {path:?} named {id:?}");
            assert_eq!(repo.npub(), names[0], "seed {seed} case {case}: {path:?}");
            let rest = names.get(2..).map(|r| r.join("/")).unwrap_or_default();
            if cgi::is_git_path(&rest) {
                assert!(
                    rest.split('/').all(|s| s != ".." && s != "."),
                    "seed {seed} case {case}: git path {rest:?}"
                );
            }
        }
        assert!(
            named > cases / 20,
            "only {named} of {cases} paths named a repository"
        );
    }

    #[test]
    fn the_client_address_comes_from_a_local_proxy_only() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_str(value).expect("value"));
            headers
        };
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let remote: SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        let seen = |peer, value| client_address(peer, &headers(value)).ip().to_string();
        assert_eq!(seen(local, "198.51.100.7"), "198.51.100.7");
        assert_eq!(
            seen(local, "10.0.0.1, 198.51.100.7"),
            "198.51.100.7",
            "the proxy's own entry"
        );
        assert_eq!(seen(local, "garbage"), "127.0.0.1");
        assert_eq!(
            seen(remote, "198.51.100.7"),
            "203.0.113.9",
            "never from a remote peer"
        );
        assert_eq!(client_address(local, &HeaderMap::new()), local);
    }

    #[test]
    fn repository_paths_decode_once_and_validate() {
        let npub = Keys::generate().public_key().to_bech32().expect("npub");
        let ok = parse_repo(&[&npub, "my%20repo.git"]).expect("repo");
        assert_eq!(ok.identifier.as_str(), "my repo");
        assert!(parse_repo(&[&npub, "repo"]).is_some());
        assert!(parse_repo(&[&npub, "%2e%2e"]).is_none());
        assert!(parse_repo(&[&npub, "a%2fb.git"]).is_none());
        assert!(parse_repo(&["npub1notakey", "repo.git"]).is_none());
    }
}
