//! Git smart HTTP through stock `git http-backend`, run as a CGI program for each request.
//!
//! Why CGI rather than our own upload-pack/receive-pack plumbing: `http-backend` already speaks
//! every protocol version, gzip-encoded requests, the dumb protocol and receive-pack with its
//! hooks, and git keeps it correct. This module is only the bridge: it builds the CGI environment
//! from the request, streams the request body into the child's stdin and the child's stdout back
//! as the response body, so a large clone or push never sits in the daemon's memory.
//!
//! Lifetimes: the child process belongs to the response body. When the client goes away hyper
//! drops the body, the body drops the [`Child`] and `kill_on_drop` ends git: nothing keeps working
//! for a reader that is gone. When the body ends normally the child is reaped and a failed exit is
//! logged.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::AbortHandle;

use super::Body;

/// How much of git's output one response frame carries at most.
const CHUNK: usize = 64 * 1024;

/// The longest CGI response head we accept. `http-backend` sends a handful of short headers; a
/// head this long means something other than git is answering.
const HEAD_LIMIT: usize = 64 * 1024;

/// The request header carrying the client's protocol wish (`version=2`), handed to git as
/// `GIT_PROTOCOL`.
const GIT_PROTOCOL: HeaderName = HeaderName::from_static("git-protocol");

/// How to run `git http-backend`. Cloning is cheap enough for per-request use.
#[derive(Debug, Clone)]
pub struct GitBackend {
    /// `GIT_PROJECT_ROOT`: repositories live at `<git_root>/<npub>/<identifier>.git`.
    pub git_root: PathBuf,
    /// The git executable; `git` (found on `PATH`) by default.
    pub git_program: PathBuf,
    /// Passed to the child, and so to receive-pack's hooks (e.g. `GRASPD_SOCKET`).
    pub extra_env: Vec<(String, String)>,
}

impl GitBackend {
    /// Runs `git` from `PATH`, with no extra environment.
    pub fn new(git_root: impl Into<PathBuf>) -> Self {
        Self {
            git_root: git_root.into(),
            git_program: PathBuf::from("git"),
            extra_env: Vec::new(),
        }
    }

    /// The `git http-backend` command for one request, with a CGI/1.1 environment.
    ///
    /// The daemon's own environment is not inherited: only `PATH` (to find git and the hooks) and
    /// what is listed here. `REMOTE_USER` is never set, whatever `extra_env` says: anonymous
    /// receive-pack is allowed per repository by `http.receivepack`, and authorization happens in
    /// the hooks against Nostr state, not against an HTTP user.
    fn command(&self, parts: &Parts, peer: SocketAddr, path_info: &str) -> Command {
        let mut command = Command::new(&self.git_program);
        command.arg("http-backend").env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .envs(self.extra_env.iter().map(|(key, value)| (key, value)))
            .env("GIT_PROJECT_ROOT", &self.git_root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("SERVER_SOFTWARE", "graspd")
            .env("REQUEST_METHOD", parts.method.as_str())
            .env("PATH_INFO", path_info)
            .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
            .env("REMOTE_ADDR", peer.ip().to_string())
            .env("REMOTE_PORT", peer.port().to_string())
            .env_remove("REMOTE_USER");
        // No CONTENT_LENGTH, ever: http-backend then reads its input to EOF, which the bridge
        // gives it when the body ends (hyper holds the body to its Content-Length). With
        // CONTENT_LENGTH, git (2.47) loops forever, a core at 100%, when its input ends before
        // that length: a client gone mid-push, or graspd killed, leaves such a process behind.
        // With HTTP_CONTENT_ENCODING=gzip it inflates the body itself.
        let from_headers = [
            ("CONTENT_TYPE", header::CONTENT_TYPE),
            ("HTTP_CONTENT_ENCODING", header::CONTENT_ENCODING),
            ("GIT_PROTOCOL", GIT_PROTOCOL),
        ];
        for (variable, name) in from_headers {
            if let Some(value) = parts.headers.get(name).and_then(|v| v.to_str().ok()) {
                command.env(variable, value);
            }
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// Whether `rest`, the path below `<identifier>.git/` (no leading slash), is one git's HTTP
/// protocols use: the smart protocol's `info/refs`, `git-upload-pack` and `git-receive-pack`, and
/// the dumb protocol's `HEAD` and `objects/...` files. `http-backend` checks the exact forms
/// itself and answers 404 for anything else.
pub fn is_git_path(rest: &str) -> bool {
    if matches!(
        rest,
        "HEAD" | "info/refs" | "git-upload-pack" | "git-receive-pack"
    ) {
        return true;
    }
    rest.strip_prefix("objects/").is_some_and(|below| {
        below
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
    })
}

/// Runs `git http-backend` for one request. `path_info` is the already-decoded and validated path
/// below the git root, e.g. `/npub1.../repo.git/info/refs`; the caller has already checked that
/// the repository exists. Never panics: failures become HTTP responses (500 when git cannot be
/// started, 502 when it fails before sending its response head) and are logged. CORS headers
/// are the caller's to add.
pub async fn serve<B>(
    backend: &GitBackend,
    req: Request<B>,
    peer: SocketAddr,
    path_info: &str,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (parts, body) = req.into_parts();
    let mut child = match backend.command(&parts, peer, path_info).spawn() {
        Ok(child) => child,
        Err(source) => {
            let program = backend.git_program.display().to_string();
            return failure(path_info, peer, CgiError::Spawn { program, source });
        }
    };
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return failure(path_info, peer, CgiError::Pipes);
    };
    tokio::spawn(forward_stderr(stderr, path_info.to_owned()));
    let feeder = tokio::spawn(feed_stdin(body, stdin, path_info.to_owned())).abort_handle();
    // From here on dropping `running` (this future cancelled, an error, the body dropped) kills
    // git and stops feeding it.
    let running = Running {
        child,
        feeder,
        path: path_info.to_owned(),
    };
    let mut stdout = stdout;
    let (head, rest) = match read_head(&mut stdout).await {
        Ok(read) => read,
        Err(error) => return failure(path_info, peer, error),
    };
    let output = Output {
        stdout,
        pending: rest,
        buf: BytesMut::new(),
        running: Some(running),
    };
    let mut response = Response::new(output.boxed());
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// What can go wrong before git's response head is through.
#[derive(Debug, thiserror::Error)]
enum CgiError {
    #[error("cannot start `{program} http-backend`: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("git http-backend started without its standard streams")]
    Pipes,
    #[error("git http-backend ended before finishing its response head")]
    NoHead,
    #[error("git http-backend's response head exceeds {HEAD_LIMIT} bytes")]
    HeadTooLarge,
    #[error("git http-backend sent a malformed header line: {0:?}")]
    BadHeader(String),
    #[error("cannot read git http-backend's output: {0}")]
    Read(#[from] io::Error),
}

impl CgiError {
    /// 500 when the fault is ours (git cannot run here), 502 when git ran and answered badly.
    fn status(&self) -> StatusCode {
        match self {
            Self::Spawn { .. } | Self::Pipes => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Logs `error` and turns it into a plain response. Details stay in the log.
fn failure(path: &str, peer: SocketAddr, error: CgiError) -> Response<Body> {
    tracing::error!(%path, %peer, %error, "git smart HTTP failed");
    let status = error.status();
    let message = match status {
        StatusCode::INTERNAL_SERVER_ERROR => "internal error: cannot run git\n",
        _ => "bad gateway: git http-backend did not answer properly\n",
    };
    let mut response = Response::new(super::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Copies the request body into git's stdin frame by frame, then closes it: end of input.
///
/// If the client fails mid-body, stdin is closed early. That is safe: git reads to EOF (it is
/// given no CONTENT_LENGTH), notices a truncated request itself (pkt-lines must end with a
/// flush, a pack with its checksum) and refuses it.
async fn feed_stdin<B>(mut body: B, mut stdin: ChildStdin, path: String)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                tracing::info!(%path, %error, "request body failed; closing git's input early");
                return;
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers mean nothing to git
        };
        if let Err(error) = stdin.write_all(&data).await {
            // git may answer without reading all its input (an error, a 404): not ours to report.
            tracing::debug!(%path, %error, "git http-backend stopped reading its input");
            return;
        }
    }
    drop(stdin);
}

/// Relays git's stderr (http-backend's complaints, hook output not sent to the client) to the log.
async fn forward_stderr(stderr: ChildStderr, path: String) {
    let mut lines = BufReader::new(stderr).split(b'\n');
    loop {
        match lines.next_segment().await {
            Ok(Some(line)) => {
                let line = String::from_utf8_lossy(&line);
                tracing::warn!(%path, "git http-backend: {}", line.trim_end());
            }
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%path, %error, "cannot read git http-backend's stderr");
                return;
            }
        }
    }
}

/// The parsed CGI response head.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    headers: HeaderMap,
}

/// Reads git's stdout up to the blank line ending the CGI head. Returns the head and whatever of
/// the body came along in the same reads.
async fn read_head(stdout: &mut ChildStdout) -> Result<(Head, Bytes), CgiError> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        if let Some((len, head)) = parse_head(&buf[..buf.len().min(HEAD_LIMIT)])? {
            let _ = buf.split_to(len);
            return Ok((head, buf.freeze()));
        }
        if buf.len() >= HEAD_LIMIT {
            return Err(CgiError::HeadTooLarge);
        }
        buf.reserve(8 * 1024);
        if stdout.read_buf(&mut buf).await? == 0 {
            return Err(CgiError::NoHead);
        }
    }
}

/// Most header lines git's response head may have (it sends about five).
const MAX_HEAD_FIELDS: usize = 64;

/// Parses the CGI head at the start of `buf` once it is complete (`None` until then): lines end
/// with `\n` or `\r\n` and a blank line ends the head (httparse reads both). `Status: 404 Not
/// Found` sets the status (200 when absent); every other header is copied except hop-by-hop ones,
/// which are hyper's to manage. Returns the head's length, blank line included, with it.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, CgiError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEAD_FIELDS];
    let (len, fields) = match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(parsed)) => parsed,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(CgiError::BadHeader(error.to_string())),
    };
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for field in fields {
        let bad = || {
            let value = String::from_utf8_lossy(field.value);
            CgiError::BadHeader(format!("{}: {value}", field.name))
        };
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad())?;
        if name.as_str() == "status" {
            let code = field.value.split(|&b| b == b' ').next().unwrap_or_default();
            status = StatusCode::from_bytes(code).map_err(|_| bad())?;
        } else if name != header::CONNECTION && name != header::TRANSFER_ENCODING {
            headers.append(name, HeaderValue::from_bytes(field.value).map_err(|_| bad())?);
        }
    }
    Ok(Some((len, Head { status, headers })))
}

/// A started `git http-backend`. Dropping it kills git (`kill_on_drop`) and stops feeding it.
struct Running {
    child: Child,
    feeder: AbortHandle,
    path: String,
}

impl Running {
    /// Waits for git after its output ended, so no zombie is left, and logs a failed exit.
    async fn reap(mut self) {
        match self.child.wait().await {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(path = %self.path, %status, "git http-backend failed"),
            Err(error) => tracing::warn!(path = %self.path, %error, "cannot wait for git http-backend"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

/// The response body: git's stdout after the CGI head, read in chunks of up to [`CHUNK`] bytes as
/// the client takes them. It owns the child, so that dropping it (the client went away) kills git.
struct Output {
    stdout: ChildStdout,
    /// Body bytes read along with the head, sent first.
    pending: Bytes,
    /// Where the next chunk is read into.
    buf: BytesMut,
    /// `None` once git's output ended (the child is then being reaped) or failed.
    running: Option<Running>,
}

impl hyper::body::Body for Output {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(mem::take(&mut this.pending)))));
        }
        if this.running.is_none() {
            return Poll::Ready(None);
        }
        if this.buf.len() < CHUNK {
            this.buf.resize(CHUNK, 0);
        }
        let mut read = ReadBuf::new(&mut this.buf[..CHUNK]);
        let result = ready!(Pin::new(&mut this.stdout).poll_read(cx, &mut read));
        let filled = read.filled().len();
        match result {
            Ok(()) if filled == 0 => {
                if let Some(running) = this.running.take() {
                    tokio::spawn(running.reap());
                }
                Poll::Ready(None)
            }
            Ok(()) => {
                this.buf.truncate(filled);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
            Err(error) => {
                if let Some(running) = this.running.take() {
                    tracing::warn!(path = %running.path, %error, "cannot read git http-backend's output");
                }
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.running.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Randomized: a head is only ever read up to its blank line, within the buffer, and a bad
    /// one is an error, never a panic.
    #[test]
    fn random_cgi_heads_are_read_within_their_bytes() {
        let (mut rng, cases, seed) = crate::testing::Rng::plan("cgi-head");
        let seeds: [&[u8]; 3] = [
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody",
            b"Content-Type: application/x-git-upload-pack-advertisement\nCache-Control: no-cache\n\n001e",
            b"Expires: Fri, 01 Jan 1980 00:00:00 GMT\r\nPragma: no-cache\r\n\r\n",
        ];
        let mut complete = 0;
        for case in 0..cases {
            let picked = rng.pick(&seeds).to_vec();
            let input = rng.mutate(picked);
            if let Ok(Some((len, head))) = parse_head(&input) {
                complete += 1;
                assert!(len <= input.len(), "seed {seed} case {case}");
                // The blank line is `\n` or `\r\n`, alone (no headers) or after a line ending in
                // either.
                let read = &input[..len];
                let blank =
                    matches!(read, b"\n" | b"\r\n") || read.ends_with(b"\n\n") || read.ends_with(b"\n\r\n");
                assert!(blank, "seed {seed} case {case}: {input:?} read to {len}");
                assert!(!head.headers.contains_key(header::TRANSFER_ENCODING));
            }
        }
        assert!(complete > cases / 10, "only {complete} of {cases} heads complete");
    }

    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::path::Path;
    use std::sync::LazyLock;
    use std::time::Duration;

    use http_body_util::{Full, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::ReceiverStream;

    use crate::testing::git;

    const BRANCH: &str = "trunk";
    const REPO: &str = "/npub1test/repo.git";

    fn peer() -> SocketAddr {
        "127.0.0.1:4242".parse().expect("address")
    }

    /// A git root holding `npub1test/repo.git` (receive-pack enabled) with one commit on `trunk`.
    struct Fixture {
        dir: tempfile::TempDir,
        backend: GitBackend,
        tip: String,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let root = dir.path().join("root");
            let bare = root.join("npub1test/repo.git");
            std::fs::create_dir_all(&bare).expect("mkdir");
            let branch = format!("--initial-branch={BRANCH}");
            git(&bare, &["init", "--bare", "--quiet", &branch]);
            git(&bare, &["config", "http.receivepack", "true"]);
            let work = dir.path().join("work");
            std::fs::create_dir_all(&work).expect("mkdir");
            git(&work, &["init", "--quiet", &branch]);
            std::fs::write(work.join("README"), "hello\n").expect("write");
            git(&work, &["add", "README"]);
            git(&work, &["commit", "--quiet", "-m", "first"]);
            git(&work, &["push", "--quiet", bare.to_str().expect("utf-8"), BRANCH]);
            let tip = git(&bare, &["rev-parse", BRANCH]);
            let backend = GitBackend::new(root);
            Self { dir, backend, tip }
        }

        fn bare(&self) -> PathBuf {
            self.backend.git_root.join("npub1test/repo.git")
        }
    }

    fn request(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Full::new(body.into())).expect("request")
    }

    async fn body_of(response: Response<Body>) -> Bytes {
        response.into_body().collect().await.expect("body").to_bytes()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    #[tokio::test]
    async fn upload_pack_advertisement_lists_the_branch() {
        let fixture = Fixture::new();
        let uri = format!("{REPO}/info/refs?service=git-upload-pack");
        let req = request("GET", &uri, &[], Bytes::new());
        let path = format!("{REPO}/info/refs");
        let response = serve(&fixture.backend, req, peer(), &path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/x-git-upload-pack-advertisement"
        );
        let body = body_of(response).await;
        assert!(contains(&body, b"# service=git-upload-pack"));
        assert!(contains(&body, format!("refs/heads/{BRANCH}").as_bytes()));
        assert!(contains(&body, fixture.tip.as_bytes()));
    }

    #[tokio::test]
    async fn protocol_v2_is_chosen_by_the_git_protocol_header() {
        let fixture = Fixture::new();
        let uri = format!("{REPO}/info/refs?service=git-upload-pack");
        let req = request("GET", &uri, &[("Git-Protocol", "version=2")], Bytes::new());
        let path = format!("{REPO}/info/refs");
        let response = serve(&fixture.backend, req, peer(), &path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(contains(&body_of(response).await, b"version 2"));
    }

    #[tokio::test]
    async fn a_v0_fetch_of_the_tip_returns_a_pack() {
        let fixture = Fixture::new();
        let want = format!("0032want {}\n00000009done\n", fixture.tip);
        let length = want.len().to_string();
        let headers = [
            ("Content-Type", "application/x-git-upload-pack-request"),
            ("Content-Length", length.as_str()),
        ];
        let path = format!("{REPO}/git-upload-pack");
        let req = request("POST", &path, &headers, want);
        let response = serve(&fixture.backend, req, peer(), &path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/x-git-upload-pack-result"
        );
        let body = body_of(response).await;
        assert!(body.starts_with(b"0008NAK\n"), "{body:?}");
        assert!(contains(&body, b"PACK"));
    }

    #[tokio::test]
    async fn paths_git_does_not_serve_get_gits_own_404() {
        let fixture = Fixture::new();
        for path in [
            format!("{REPO}/no/such/thing"),
            "/npub1test/missing.git/info/refs".to_owned(),
        ] {
            let req = request("GET", &path, &[], Bytes::new());
            let response = serve(&fixture.backend, req, peer(), &path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            body_of(response).await;
        }
    }

    /// 8 MiB of garbage in 64 KiB frames with no length (chunked): receive-pack rejects it on the
    /// first pkt-line while the body is still arriving; the exchange ends without harm.
    #[tokio::test]
    async fn a_large_garbage_push_is_streamed_and_refused() {
        let fixture = Fixture::new();
        let frames = (0..128).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'z'; CHUNK]))));
        let body = StreamBody::new(tokio_stream::iter(frames));
        let path = format!("{REPO}/git-receive-pack");
        let req = Request::builder()
            .method("POST")
            .uri(&path)
            .header("Content-Type", "application/x-git-receive-pack-request")
            .body(body)
            .expect("request");
        let response = serve(&fixture.backend, req, peer(), &path).await;
        let _ = response.into_body().collect().await;
        assert_eq!(git(&fixture.bare(), &["rev-parse", BRANCH]), fixture.tip);
    }

    /// The real client, over a real HTTP/1.1 server: clone with protocol v2, then push a commit big
    /// enough (2 MiB, incompressible) for git to send it chunked, without Content-Length.
    #[tokio::test]
    async fn git_clones_and_pushes_through_the_bridge() {
        let fixture = Fixture::new();
        let address = start_server(fixture.backend.clone()).await;
        let url = format!("http://{address}{REPO}");
        let clone = fixture.dir.path().join("clone");
        let clone_str = clone.to_str().expect("utf-8");
        client_git(fixture.dir.path(), &["clone", "--quiet", &url, clone_str]).await;
        assert_eq!(git(&clone, &["rev-parse", "HEAD"]), fixture.tip);

        std::fs::write(clone.join("noise.bin"), noise(2 * 1024 * 1024)).expect("write");
        git(&clone, &["add", "noise.bin"]);
        git(&clone, &["commit", "--quiet", "-m", "noise"]);
        client_git(&clone, &["push", "--quiet", "origin", BRANCH]).await;
        let pushed = git(&clone, &["rev-parse", "HEAD"]);
        assert_ne!(pushed, fixture.tip);
        assert_eq!(git(&fixture.bare(), &["rev-parse", BRANCH]), pushed);
    }

    /// Runs git as a client without blocking the runtime that serves it.
    async fn client_git(dir: &Path, args: &[&str]) {
        let output = tokio::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .await
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn start_server(backend: GitBackend) -> SocketAddr {
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let backend = backend.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let backend = backend.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            Ok::<_, Infallible>(serve(&backend, req, peer, &path).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        address
    }

    /// Incompressible bytes (xorshift), so the pack stays as large as the file.
    fn noise(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    /// A stand-in for git, to pin down the CGI contract. One script for all tests, written once,
    /// chooses its behaviour from `FAKE_MODE` (given through `extra_env`).
    static FAKE_GIT: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fake-git");
        let script = r#"#!/bin/sh
case "$FAKE_MODE" in
  status) printf 'Status: 404 Not Found\nContent-Type: text/plain\nX-Extra: one\n\nno such thing\n' ;;
  crlf) printf 'Content-Type: text/plain\r\nX-Extra: two\r\n\r\nbody\r\n' ;;
  headless) printf 'Content-Type: text/plain\n'; exit 3 ;;
  huge) i=0; while [ $i -lt 3000 ]; do printf 'X-Filler: %s\n' abcdefghijklmnopqrstuvwx; i=$((i+1)); done ;;
  bad) printf 'this is not a header\n\n' ;;
  env) printf 'Content-Type: text/plain\n\n'; env ;;
  echo) printf 'Content-Type: application/octet-stream\n\n'; exec cat ;;
  linger) echo $$ > "$FAKE_PIDFILE"; printf 'Content-Type: text/plain\n\nstarted\n'; exec sleep 600 ;;
  *) exit 0 ;;
esac
"#;
        std::fs::write(&path, script).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Another test thread forking while the script was open for writing makes the first exec
        // fail with ETXTBSY; absorb that here rather than in a test.
        for _ in 0..50 {
            match std::process::Command::new(&path).status() {
                Err(error) if error.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
        (dir, path)
    });

    fn fake(mode: &str, extra: &[(&str, &str)]) -> GitBackend {
        let mut extra_env = vec![("FAKE_MODE".to_owned(), mode.to_owned())];
        extra_env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        GitBackend {
            git_root: PathBuf::from("/nonexistent/root"),
            git_program: FAKE_GIT.1.clone(),
            extra_env,
        }
    }

    async fn fake_get(backend: &GitBackend) -> Response<Body> {
        let path = format!("{REPO}/info/refs");
        serve(backend, request("GET", &path, &[], Bytes::new()), peer(), &path).await
    }

    #[tokio::test]
    async fn the_status_header_sets_the_status_and_other_headers_pass_through() {
        let response = fake_get(&fake("status", &[])).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(response.headers()["x-extra"], "one");
        assert!(!response.headers().contains_key("status"));
        assert_eq!(body_of(response).await, "no such thing\n");
    }

    #[tokio::test]
    async fn crlf_heads_default_to_200() {
        let response = fake_get(&fake("crlf", &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-extra"], "two");
        assert_eq!(body_of(response).await, "body\r\n");
    }

    #[tokio::test]
    async fn a_backend_that_fails_before_its_head_is_a_502() {
        for mode in ["headless", "huge", "bad", "silent"] {
            let response = fake_get(&fake(mode, &[])).await;
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{mode}");
        }
    }

    #[tokio::test]
    async fn a_git_that_cannot_start_is_a_500() {
        let backend = GitBackend {
            git_program: PathBuf::from("/nonexistent/git"),
            ..GitBackend::new("/nonexistent/root")
        };
        let response = fake_get(&backend).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn the_cgi_environment_comes_from_the_request_and_nothing_else() {
        let backend = fake(
            "env",
            &[("GRASPD_SOCKET", "/run/graspd.sock"), ("REMOTE_USER", "mallory")],
        );
        let path = format!("{REPO}/git-upload-pack");
        let headers = [
            ("Content-Type", "application/x-git-upload-pack-request"),
            ("Content-Length", "4"),
            ("Content-Encoding", "gzip"),
            ("Git-Protocol", "version=2"),
        ];
        let req = request("POST", &format!("{path}?a=b"), &headers, "0000");
        let response = serve(&backend, req, peer(), &path).await;
        let body = body_of(response).await;
        let env: HashMap<&str, &str> = std::str::from_utf8(&body)
            .expect("utf-8")
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        let expected = [
            ("GIT_PROJECT_ROOT", "/nonexistent/root"),
            ("GIT_HTTP_EXPORT_ALL", "1"),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", "graspd"),
            ("REQUEST_METHOD", "POST"),
            ("PATH_INFO", path.as_str()),
            ("QUERY_STRING", "a=b"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", "4242"),
            ("CONTENT_TYPE", "application/x-git-upload-pack-request"),
            ("HTTP_CONTENT_ENCODING", "gzip"),
            ("GIT_PROTOCOL", "version=2"),
            ("GRASPD_SOCKET", "/run/graspd.sock"),
        ];
        for (key, value) in expected {
            assert_eq!(env.get(key), Some(&value), "{key}");
        }
        assert!(env.contains_key("PATH"));
        assert!(!env.contains_key("REMOTE_USER"), "REMOTE_USER is never set");
        assert!(
            !env.contains_key("CONTENT_LENGTH"),
            "git reads to EOF (it spins when its input ends before CONTENT_LENGTH)"
        );
        assert!(
            !env.contains_key("HOME"),
            "the daemon's environment is not inherited"
        );
    }

    #[tokio::test]
    async fn a_chunked_request_has_no_content_length() {
        let response = fake_get(&fake("env", &[])).await;
        let body = body_of(response).await;
        assert!(!contains(&body, b"CONTENT_LENGTH="));
    }

    /// The response starts flowing before the request body has ended, and each request chunk
    /// comes back before the next is sent: neither direction is buffered whole.
    #[tokio::test]
    async fn bodies_stream_both_ways() {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let frames = ReceiverStream::new(rx).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
        let path = format!("{REPO}/git-receive-pack");
        let req = Request::builder()
            .method("POST")
            .uri(&path)
            .body(StreamBody::new(frames))
            .expect("request");
        let backend = fake("echo", &[]);
        let exchange = async {
            let response = serve(&backend, req, peer(), &path).await;
            let mut body = response.into_body();
            for round in 0..4u8 {
                let chunk = Bytes::from(vec![b'a' + round; CHUNK]);
                tx.send(chunk.clone()).await.expect("send");
                let mut echoed = BytesMut::new();
                while echoed.len() < chunk.len() {
                    let frame = body.frame().await.expect("frame").expect("data");
                    echoed.extend_from_slice(&frame.into_data().expect("data"));
                }
                assert_eq!(echoed.freeze(), chunk);
            }
            drop(tx);
            assert!(
                body.frame().await.is_none(),
                "the body ends when the request does"
            );
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .expect("streams without buffering a whole body");
    }

    /// A client that goes away drops the body; git must not outlive it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn dropping_the_response_body_kills_git() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pidfile = dir.path().join("pid");
        let backend = fake("linger", &[("FAKE_PIDFILE", pidfile.to_str().expect("utf-8"))]);
        let mut body = fake_get(&backend).await.into_body();
        let first = body.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data"), "started\n");
        let pid = std::fs::read_to_string(&pidfile).expect("pid");
        let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
        let alive = || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        };
        assert!(alive(), "git runs while its body is read");
        drop(body);
        let gone = async {
            while alive() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .expect("git killed once its body is dropped");
    }

    #[test]
    fn git_paths_are_the_smart_and_dumb_protocol_ones() {
        for rest in [
            "info/refs",
            "git-upload-pack",
            "git-receive-pack",
            "HEAD",
            "objects/info/packs",
            "objects/ab/cdef0123456789abcdef0123456789abcdef01",
            "objects/pack/pack-0123.pack",
        ] {
            assert!(is_git_path(rest), "{rest}");
        }
        for rest in [
            "",
            "info",
            "refs/heads/main",
            "objects/",
            "objects/../config",
            "objects//x",
            "config",
        ] {
            assert!(!is_git_path(rest), "{rest}");
        }
    }

    #[test]
    fn heads_end_at_the_first_blank_line_with_either_line_ending() {
        let len = |buf: &[u8]| parse_head(buf).expect("head").map(|(len, _)| len);
        assert_eq!(len(b"A: b\n\nbody"), Some(6));
        assert_eq!(len(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(len(b"\r\nbody"), Some(2));
        assert_eq!(len(b"A: b\r\nC: d\r\n"), None);
        let (_, head) = parse_head(b"Status: 304 Not Modified\r\nExpires: never\r\n\r\n")
            .expect("head")
            .expect("complete");
        assert_eq!(head.status, StatusCode::NOT_MODIFIED);
        assert_eq!(head.headers["expires"], "never");
        assert!(parse_head(b"Status: banana\n\n").is_err());
        assert!(parse_head(b"no colon here\n\n").is_err());
    }
}
