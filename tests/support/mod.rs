//! Shared helpers for end-to-end tests: start the real `graspd` binary on a loopback port with a
//! temp data dir, talk to it with a real websocket client and real signed events, and make real
//! HTTP requests.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nostr::event::FinalizeEvent;
use nostr::nips::nip19::ToBech32;
use nostr::{Event, EventBuilder, Keys, Kind, Tag, Timestamp};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for something that should happen. Every wait polls, so passing runs
/// are not slowed; it is generous for a loaded 2-core CI machine and longer than the sync
/// queue's first backoff (20 s), so one failed fetch retried is still waited for.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Flags that take graspd's rate limits out of a benchmark's (or a soak's) way: events per
/// connection, and new repositories per owner and per address.
pub const UNLIMITED: [&str; 8] = [
    "--event-burst",
    "100000000",
    "--events-per-minute",
    "100000000",
    "--max-new-repos-per-hour-per-owner",
    "0",
    "--max-new-repos-per-hour-per-address",
    "0",
];

/// [`UNLIMITED`] and `--log <level>`: what a benchmark starts graspd with.
pub fn bench_flags(log: &'static str) -> Vec<&'static str> {
    let mut flags = UNLIMITED.to_vec();
    flags.extend(["--log", log]);
    flags
}

/// Sums of the daemon's hook handling histograms (seconds) and the number of pushes reported.
#[derive(Debug, Clone, Copy)]
pub struct HookSeconds {
    pub authorize: f64,
    pub report: f64,
    pub count: f64,
}

/// A running graspd process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Environment variables set for graspd besides the test's own.
    envs: Vec<(String, String)>,
    /// `--metrics-listen`, when the test reads metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// The graspd executable: this build's, or another for a benchmark's A/B.
    binary: PathBuf,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on("127.0.0.1", extra)
    }

    /// Starts on another loopback address (127.0.0.2, ...), as a second, independent server.
    pub fn start_on(ip: &str, extra: &[&str]) -> Self {
        Self::start_full(ip, extra, &[])
    }

    /// Starts on another loopback address with extra flags and environment variables.
    pub fn start_full_on(ip: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_full(ip, extra, envs)
    }

    /// Starts with extra flags and environment variables (e.g. the git config graspd's git reads).
    pub fn start_with_env(extra: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_full("127.0.0.1", extra, envs)
    }

    /// Starts with a metrics listener too (see [`Server::metrics`]).
    pub fn start_with_metrics(extra: &[&str]) -> Self {
        Self::start_full_metrics("127.0.0.1", extra, &[], true)
    }

    fn start_full(ip: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_full_metrics(ip, extra, envs, false)
    }

    /// Starts another graspd executable (a benchmark's A/B against an older build).
    pub fn start_binary(binary: &Path, extra: &[&str]) -> Self {
        Self::start_from(binary, "127.0.0.1", extra, &[], false)
    }

    fn start_full_metrics(ip: &str, extra: &[&str], envs: &[(&str, &str)], metrics: bool) -> Self {
        // A benchmark's A/B: GRASPD_BENCH_BINARY names another build to run instead.
        let binary = std::env::var_os("GRASPD_BENCH_BINARY")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_graspd")), PathBuf::from);
        Self::start_from(&binary, ip, extra, envs, metrics)
    }

    fn start_from(binary: &Path, ip: &str, extra: &[&str], envs: &[(&str, &str)], metrics: bool) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let addr = free_addr_on(ip);
        let mut server = Self {
            child: None,
            addr,
            data,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            metrics_addr: metrics.then(|| free_addr_on(ip)),
            binary: binary.to_owned(),
        };
        // The port was free when picked but is bound only later, by graspd: should another
        // process take it meanwhile, start again on another one.
        for _ in 0..5 {
            let logged = server.log().len();
            match server.try_spawn() {
                Ok(()) => return server,
                Err(log) if log[logged.min(log.len())..].contains("cannot listen on") => {
                    server.addr = free_addr_on(ip);
                    if server.metrics_addr.is_some() {
                        server.metrics_addr = Some(free_addr_on(ip));
                    }
                }
                Err(log) => panic!("graspd exited early: {log}"),
            }
        }
        panic!("graspd found no free port: {}", server.log());
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("graspd exited early: {log}");
        }
    }

    /// Starts graspd and waits until it listens; `Err` with its log if it exited first.
    fn try_spawn(&mut self) -> Result<(), String> {
        ensure_hook_built();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("graspd.log"))
            .expect("log file");
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(if self.extra_args.iter().any(|a| a == "--log") {
                &[][..]
            } else {
                &["--log", "graspd=debug,info"][..]
            })
            .args(&self.extra_args)
            .args(
                self.metrics_addr
                    .iter()
                    .flat_map(|addr| ["--metrics-listen".to_owned(), addr.to_string()]),
            )
            // The event sync stays off unless a test turns it on (GRASPD_NO_EVENT_SYNC=false):
            // the other tests' announcements name relays that are not there.
            .env("GRASPD_NO_EVENT_SYNC", "true")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start graspd");
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exit status {status}: {}", self.log()));
            }
            // graspd binds its gRPC socket before the port: a port that answers while the
            // socket is missing belongs to someone else.
            if TcpStream::connect(self.addr).is_ok() && self.socket().exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("graspd did not start listening: {}", self.log());
    }

    /// CPU seconds (user + system) the server process has used so far (Linux `/proc`).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Bytes the server process has written so far, to files and sockets alike (Linux
    /// `/proc/<pid>/io`, `wchar`): a bench's measure of the WAL and checkpoint traffic an
    /// event costs, next to its `OK`s (a few dozen bytes each).
    pub fn written_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let line = io.lines().find(|l| l.starts_with("wchar:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Peak resident memory of the server process in MiB (Linux `/proc`, `VmHWM`).
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.status_mib("VmHWM:")
    }

    /// The daemon's anonymous memory now (heap, stacks) in MiB: its resident size without the
    /// pages of files it maps. The store memory-maps its database, so the resident size grows
    /// with the database; those pages are the kernel's page cache, shared and reclaimable.
    pub fn anon_rss_mib(&self) -> Option<f64> {
        self.status_mib("RssAnon:")
    }

    /// A `kB` field of the daemon's `/proc/<pid>/status`, in MiB.
    fn status_mib(&self, field: &str) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// `graspd status --json <args>` against this server, parsed (`null` when it prints nothing).
    pub fn status_json(&self, args: &[&str]) -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_graspd"))
            .args(["status", "--json", "--data-dir"])
            .arg(self.data.path())
            .args(args)
            .output()
            .expect("run graspd status");
        serde_json::from_slice(&output.stdout).unwrap_or_default()
    }

    /// Resident anonymous memory now (heap and stacks; without file pages such as SQLite's
    /// memory-mapped database, which the kernel can drop at will).
    pub fn rss_anon_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("graspd.log")).unwrap_or_default()
    }

    /// `ws://127.0.0.1:port`
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn domain(&self) -> String {
        self.addr.to_string()
    }

    pub fn socket(&self) -> PathBuf {
        self.data.path().join("graspd.sock")
    }

    /// `http://127.0.0.1:port/<npub>/<identifier>.git`
    pub fn clone_url(&self, owner: &Keys, identifier: &str) -> String {
        format!("http://{}/{}/{identifier}.git", self.addr, npub(owner))
    }

    pub fn git_root(&self) -> PathBuf {
        self.data.path().join("repos")
    }

    pub fn repo_path(&self, keys: &Keys, identifier: &str) -> PathBuf {
        self.git_root().join(npub(keys)).join(format!("{identifier}.git"))
    }

    /// graspd's process id and those of every process it started, still running (Linux `/proc`).
    pub fn descendants(&self) -> Vec<u32> {
        let Some(child) = self.child.as_ref() else {
            return Vec::new();
        };
        let mut pids = vec![child.id()];
        let mut at = 0;
        while at < pids.len() {
            let tasks = std::fs::read_dir(format!("/proc/{}/task", pids[at]));
            for task in tasks.into_iter().flatten().filter_map(Result::ok) {
                let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
                pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
            at += 1;
        }
        pids
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL to graspd and every process it started (its `git http-backend`s, their
    /// receive-packs and hooks), as systemd's default `KillMode=control-group` stops a service:
    /// nothing of the old daemon outlives it.
    pub fn kill9_with_children(&mut self) {
        let pids = self.descendants();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(u32::to_string))
            .status();
        let _ = child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        false
    }

    /// Starts the binary again on the same address and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// `GET /metrics` on the metrics listener (started with [`Server::start_with_metrics`]).
    pub fn metrics(&self) -> HttpResponse {
        let addr = self.metrics_addr.expect("started with a metrics listener");
        http(addr, "GET", "/metrics", &[])
    }

    /// Sums of the daemon's hook handling histograms, from `/metrics` (started with a metrics
    /// listener).
    pub fn hook_seconds(&self) -> HookSeconds {
        let body = self.metrics().body;
        let value = |name: &str| {
            body.lines()
                .find(|line| line.split_whitespace().next() == Some(name))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        HookSeconds {
            authorize: value("graspd_hook_authorize_seconds_sum"),
            report: value("graspd_hook_report_seconds_sum"),
            count: value("graspd_hook_report_seconds_count"),
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// graspd looks for grasp-hook next to its own executable; `cargo test -p graspd` does not build
/// other packages' binaries, so build it once here (a no-op when it is up to date).
pub fn ensure_hook_built() {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_graspd"))
            .parent()
            .expect("bin dir")
            .to_owned();
        let release = profile_dir.ends_with("release");
        let mut command = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        command.args(["build", "--quiet", "-p", "grasp-hook"]);
        if release {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build -p grasp-hook");
        assert!(status.success(), "cargo build -p grasp-hook failed");
        assert!(
            profile_dir.join("grasp-hook").is_file(),
            "grasp-hook next to graspd"
        );
    });
}

/// Path of the grasp-hook binary the daemon uses.
pub fn hook_binary() -> PathBuf {
    ensure_hook_built();
    Path::new(env!("CARGO_BIN_EXE_graspd"))
        .parent()
        .expect("bin dir")
        .join("grasp-hook")
}

pub fn free_addr() -> SocketAddr {
    free_addr_on("127.0.0.1")
}

fn free_addr_on(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    listener.local_addr().expect("addr")
}

pub fn npub(keys: &Keys) -> String {
    keys.public_key().to_bech32().expect("npub")
}

/// A websocket Nostr client.
pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// The relay's answer to an EVENT.
#[derive(Debug, Clone)]
pub struct OkReply {
    pub accepted: bool,
    pub message: String,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        // No Nagle: a CLOSE followed by a REQ must not wait for a delayed ACK.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("websocket connect");
        Self { ws }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    /// Next JSON message from the relay, within the deadline.
    pub async fn next(&mut self) -> Value {
        let message = tokio::time::timeout(DEADLINE, self.ws.next())
            .await
            .expect("relay answered in time")
            .expect("connection open")
            .expect("websocket message");
        match message {
            Message::Text(text) => serde_json::from_str(text.as_str()).expect("relay sends JSON"),
            other => panic!("unexpected websocket message {other:?}"),
        }
    }

    /// Publishes an event and waits for its OK.
    pub async fn publish(&mut self, event: &Event) -> OkReply {
        let message = serde_json::json!(["EVENT", serde_json::to_value(event).expect("event json")]);
        self.send_raw(&message.to_string()).await;
        loop {
            let reply = self.next().await;
            if reply[0] == "OK" && reply[1] == event.id.to_hex() {
                return OkReply {
                    accepted: reply[2].as_bool().expect("OK status"),
                    message: reply[3].as_str().unwrap_or_default().to_owned(),
                };
            }
        }
    }

    /// Runs a REQ and collects stored events until EOSE (or CLOSED).
    pub async fn query(&mut self, filter: Value) -> Vec<Value> {
        let sub = format!("q{}", rand_suffix());
        self.send_raw(&serde_json::json!(["REQ", sub, filter]).to_string())
            .await;
        let mut events = Vec::new();
        loop {
            let reply = self.next().await;
            if reply[1] != sub.as_str() {
                continue;
            }
            match reply[0].as_str() {
                Some("EVENT") => events.push(reply[2].clone()),
                Some("EOSE") | Some("CLOSED") => break,
                _ => {}
            }
        }
        self.send_raw(&serde_json::json!(["CLOSE", sub]).to_string())
            .await;
        events
    }

    /// Ids of the events a filter returns.
    pub async fn ids(&mut self, filter: Value) -> Vec<String> {
        self.query(filter)
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Signs an event of `kind` with tags given as string lists.
pub fn event(keys: &Keys, kind: u16, content: &str, tags: &[&[&str]]) -> Event {
    event_at(keys, kind, content, tags, Timestamp::now())
}

pub fn event_at(keys: &Keys, kind: u16, content: &str, tags: &[&[&str]], created_at: Timestamp) -> Event {
    let tags = tags.iter().map(|t| Tag::parse(t.iter().copied()).expect("tag"));
    EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .custom_created_at(created_at)
        .finalize(keys)
        .expect("sign")
}

/// A repository announcement listing `server` in `clone` and `relays`.
pub fn announcement(keys: &Keys, server: &Server, identifier: &str) -> Event {
    announcement_with(keys, server, identifier, &[], Timestamp::now())
}

pub fn announcement_with(
    keys: &Keys,
    server: &Server,
    identifier: &str,
    maintainers: &[&Keys],
    created_at: Timestamp,
) -> Event {
    let clone = format!("http://{}/{}/{identifier}.git", server.domain(), npub(keys));
    let relay = server.ws_url();
    let mut tags: Vec<Vec<String>> = vec![
        vec!["d".into(), identifier.into()],
        vec!["name".into(), identifier.into()],
        vec!["description".into(), "a test repository".into()],
        vec!["clone".into(), clone],
        vec!["relays".into(), relay],
    ];
    if !maintainers.is_empty() {
        let mut tag = vec!["maintainers".to_owned()];
        tag.extend(maintainers.iter().map(|k| k.public_key().to_hex()));
        tags.push(tag);
    }
    let tags: Vec<Vec<&str>> = tags
        .iter()
        .map(|t| t.iter().map(String::as_str).collect())
        .collect();
    let tags: Vec<&[&str]> = tags.iter().map(Vec::as_slice).collect();
    event_at(keys, 30617, "", &tags, created_at)
}

/// A repository state with `refs` as (name, oid) and an optional HEAD branch.
pub fn state(keys: &Keys, identifier: &str, refs: &[(&str, &str)], head: Option<&str>) -> Event {
    state_at(keys, identifier, refs, head, Timestamp::now())
}

pub fn state_at(
    keys: &Keys,
    identifier: &str,
    refs: &[(&str, &str)],
    head: Option<&str>,
    created_at: Timestamp,
) -> Event {
    let head_value = head.map(|h| format!("ref: refs/heads/{h}"));
    let mut tags: Vec<Vec<&str>> = vec![vec!["d", identifier]];
    for (name, oid) in refs {
        tags.push(vec![name, oid]);
    }
    if let Some(h) = &head_value {
        tags.push(vec!["HEAD", h]);
    }
    let tags: Vec<&[&str]> = tags.iter().map(Vec::as_slice).collect();
    event_at(keys, 30618, "", &tags, created_at)
}

/// The coordinate `30617:<owner-hex>:<identifier>`.
pub fn coordinate(owner: &Keys, identifier: &str) -> String {
    format!("30617:{}:{identifier}", owner.public_key().to_hex())
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP request (Connection: close) and reads the whole response.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Runs git with a clean environment; panics with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_output(dir, args);
    assert!(
        output.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs git and returns whatever happened (for commands expected to fail).
pub fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git")
}

/// Pushes straight into a bare repository on disk without running its hooks: git data arriving
/// by a path graspd does not watch (or while it is down).
pub fn push_without_hooks(work: &Path, repo: &Path, refspecs: &[&str]) {
    let mut args = vec![
        "push",
        "-q",
        "--receive-pack=git -c core.hooksPath=/nonexistent receive-pack",
        repo.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(refspecs);
    git(work, &args);
}

/// A work tree with one commit on `main`; returns (tempdir, commit id).
pub fn work_tree_with_commit(message: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("README"), message).expect("write");
    git(dir.path(), &["add", "README"]);
    git(dir.path(), &["commit", "-q", "-m", message]);
    let oid = git(dir.path(), &["rev-parse", "HEAD"]);
    (dir, oid)
}

/// A work tree whose one commit holds `mib` MiB of incompressible (xorshift64) data, with `config`
/// applied to the work tree first. The data file is removed once committed (the objects hold it),
/// so it is on disk once. Returns (tempdir, commit id).
pub fn work_tree_with_noise(mib: u64, seed: u64, config: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path();
    git(path, &["init", "-q", "-b", "main"]);
    // Random data does not deflate: do not spend time trying.
    git(path, &["config", "core.compression", "0"]);
    for (key, value) in config {
        git(path, &["config", key, value]);
    }
    let file = path.join("noise.bin");
    write_noise(&file, mib << 20, seed);
    git(path, &["add", "noise.bin"]);
    git(path, &["commit", "-q", "-m", "noise"]);
    std::fs::remove_file(&file).expect("remove noise file");
    let oid = git(path, &["rev-parse", "HEAD"]);
    (dir, oid)
}

/// Writes `len` bytes of xorshift64 output, 1 MiB at a time.
pub fn write_noise(path: &Path, len: u64, seed: u64) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("create noise file");
    let mut state = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("write noise");
        left -= n as u64;
    }
}

/// Polls `check` until it is true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// `git push -q <url> main:refs/heads/main` from `work`, timed from spawn to exit, on the
/// blocking pool; asserts it succeeded (the benches' push).
pub async fn timed_push(work: &Path, url: &str) -> Duration {
    let work = work.to_owned();
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let output = Command::new("git")
            .current_dir(&work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &work)
            .env("GIT_TERMINAL_PROMPT", "0")
            .args(["push", "-q", &url, "main:refs/heads/main"])
            .output()
            .expect("run git push");
        let elapsed = start.elapsed();
        assert!(
            output.status.success(),
            "git push to {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        elapsed
    })
    .await
    .expect("push task")
}

/// Accepted ingest over many connections and its verify-only floor (benches/relay.rs,
/// benches/reads.rs).
pub mod ingest;
/// nginx + fcgiwrap in front of graspd (tests/nginx.rs, benches/nginx.rs).
pub mod nginx;
/// Stock `git http-backend` behind graspd's CGI bridge, in the bench's process (benches/push.rs,
/// benches/clone.rs).
pub mod plain;
/// A fresh PostgreSQL database per test (the file the daemon's unit tests use too).
#[path = "../../daemon/src/testing/postgres.rs"]
pub mod postgres;
pub mod relays;
pub mod sync_bench;

/// The `true` executable, for hooks that do nothing (the benches' measure of git's own cost of
/// running hooks).
pub fn true_executable() -> PathBuf {
    ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("a `true` executable")
}
