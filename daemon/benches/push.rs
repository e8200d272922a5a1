//! Push benchmark (not a test): `cargo bench -p graspd --bench push`.
//!
//! Starts the real release `graspd` on loopback with a temp data dir and, next to it, a plain
//! smart-HTTP server: a minimal hyper server in this process that runs stock `git http-backend`
//! through graspd's own CGI bridge, on bare repositories with `http.receivepack` and no hooks
//! (and graspd's `transfer.unpackLimit=1`), otherwise as git sets them up: receive-pack checks
//! for `gc` after every push there, which graspd's repositories leave to the daemon.
//! Every push is a real `git push` over HTTP into a fresh, empty repository (for graspd: a fresh
//! identifier whose announcement and matching state were published first, so both hooks run and
//! allow it). Then it measures
//! 1. push time, graspd against plain, for a one-file commit (median of 20) and a ~100 MB commit
//!    of incompressible data (median of 3). The client's objects are packed once beforehand, so
//!    each push reuses them and the figure is dominated by transfer and the server side; for
//!    scale, the small push again into graspd repositories whose two hooks are `true` against
//!    plain repositories without the `gc` check (git's own cost of running two hooks, which no
//!    hook can go below), and like for like: graspd against plain without the `gc` check (what
//!    the hooks and the daemon cost on their own);
//! 2. the hook round trip: the installed pre-receive hook (the fast hook) from spawn to exit,
//!    allowed by the daemon, and the full `grasp-hook pre-receive` beside it;
//! 3. how long after a push the released state reaches a live websocket subscriber;
//! 4. the daemon's peak RSS (`VmHWM`) across a 1 GB push streamed through it
//!    (`GRASPD_BENCH_BIG_MB` sets the size in MiB; 1024 by default).
//!
//! Targets (2-core machine): push ratio ≤ 1.10; hook p50 ≤ 3 ms; state delivered ≤ 20 ms after
//! the push ends; peak RSS ≤ 100 MB. Figures and ratios are printed; only correctness is asserted.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nostr::Keys;
use serde_json::json;
use support::{
    Client, Server, announcement, git, hook_binary, state, work_tree_with_commit, work_tree_with_noise,
};

const SMALL_RUNS: usize = 20;
const LARGE_MIB: u64 = 100;
const LARGE_RUNS: usize = 3;
const HOOK_RUNS: usize = 200;
const LIVE_RUNS: usize = 20;
const BIG_MIB_ENV: &str = "GRASPD_BENCH_BIG_MB";
const BIG_MIB_DEFAULT: u64 = 1024;
/// graspd's repositories skip receive-pack's `gc` check (the daemon runs it after the push); set
/// on the plain server for like-for-like figures.
const NO_AUTOGC: &[(&str, &str)] = &[("receive.autogc", "false")];
const ZERO_OID: &str = "0000000000000000000000000000000000000000";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let mut bench = Bench::start().await;
    bench.push_time_small().await;
    bench.push_time_large().await;
    bench.hook_round_trip().await;
    bench.state_delivery().await;
    drop(bench);
    peak_rss_of_big_push().await;
}

/// Both servers, the repository owner and a connection to publish announcements and states on.
struct Bench {
    server: Server,
    plain: support::plain::PlainServer,
    owner: Keys,
    publisher: Client,
}

/// graspd with rate limits out of the way and quiet logs, as a production server would run.
fn start_graspd() -> Server {
    Server::start_with_metrics(&support::bench_flags("warn"))
}

impl Bench {
    async fn start() -> Self {
        let server = start_graspd();
        let publisher = server.client().await;
        Self {
            server,
            plain: support::plain::PlainServer::start().await,
            owner: Keys::generate(),
            publisher,
        }
    }

    /// Publishes an announcement and a state naming `main` at `oid` for a fresh identifier, so a
    /// push of that commit is authorized. Returns the state's id.
    async fn announce(&mut self, identifier: &str, oid: &str) -> String {
        announce(&mut self.publisher, &self.server, &self.owner, identifier, oid).await
    }

    /// Part 1a: a one-file commit.
    async fn push_time_small(&mut self) {
        let (work, oid) = work_tree_with_commit("small");
        let before = self.server.hook_seconds();
        let (graspd, plain) = self
            .compare(work.path(), &oid, "small", SMALL_RUNS, None, &[])
            .await;
        let after = self.server.hook_seconds();
        print_comparison("small", SMALL_RUNS, &graspd, &plain);
        // Where the difference goes, from the daemon's own histograms (warm-up push included).
        let pushes = after.count - before.count;
        if pushes > 0.0 {
            println!(
                "push small, daemon side: AuthorizePush {:.2} ms, ReportPush {:.2} ms (means over {pushes} pushes)",
                (after.authorize - before.authorize) * 1000.0 / pushes,
                (after.report - before.report) * 1000.0 / pushes,
            );
        }
        // For scale: git's own cost of running two hooks, with hooks that do nothing. graspd's
        // repositories get a hooks directory whose pre-receive and post-receive are `true`
        // (nothing is authorized or released; the pushes land because nothing refuses them), and
        // the plain ones skip the `gc` check as graspd's do, so only the hooks differ.
        let scratch = tempfile::tempdir().expect("temp dir");
        for name in ["pre-receive", "post-receive"] {
            std::os::unix::fs::symlink(support::true_executable(), scratch.path().join(name)).expect("link");
        }
        let (graspd, plain) = self
            .compare(
                work.path(),
                &oid,
                "true-hooks",
                SMALL_RUNS,
                Some(scratch.path()),
                NO_AUTOGC,
            )
            .await;
        let (g, p) = (ms(median(&graspd)), ms(median(&plain)));
        println!(
            "push small, for scale: graspd with both hooks `true` {g:.1} ms, plain {p:.1} ms, ratio {:.2} \
             (git's own cost of running two hooks)",
            g / p
        );
        // Like for like: graspd moves git's `gc` check off the push (receive.autogc=false; the
        // daemon runs it afterwards). The plain server without that check shows what the hooks
        // and the daemon cost on their own.
        let (graspd, plain) = self
            .compare(work.path(), &oid, "no-autogc", SMALL_RUNS, None, NO_AUTOGC)
            .await;
        let (g, p) = (ms(median(&graspd)), ms(median(&plain)));
        println!(
            "push small, like for like: graspd {g:.1} ms, plain without receive-pack's gc check {p:.1} ms, \
             ratio {:.2} (what the hooks and the daemon cost on their own)",
            g / p
        );
    }

    /// Part 1b: a ~100 MB commit of incompressible data, with the daemon's CPU per push for context.
    async fn push_time_large(&mut self) {
        let started = Instant::now();
        let (work, oid) = work_tree_with_noise(LARGE_MIB, 0x2545_f491_4f6c_dd1d, &[]);
        // Pack once, as a client that has run gc would have it: every push then reuses the packed
        // blob instead of deflating 100 MB again on the client, which would drown the server side.
        git(work.path(), &["repack", "-adq"]);
        println!(
            "(generated and packed the {LARGE_MIB} MiB commit in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        let cpu = self.server.cpu_seconds();
        let (graspd, plain) = self
            .compare(work.path(), &oid, "large", LARGE_RUNS, None, &[])
            .await;
        let label = format!("{LARGE_MIB} MiB");
        print_comparison(&label, LARGE_RUNS, &graspd, &plain);
        if let (Some(before), Some(after)) = (cpu, self.server.cpu_seconds()) {
            // One warm-up push plus the measured ones went through the daemon.
            let per_push = (after - before) / (LARGE_RUNS + 1) as f64;
            println!(
                "push {label}: daemon CPU {:.0} ms per push ({:.2} ms per MiB proxied)",
                per_push * 1000.0,
                per_push * 1000.0 / LARGE_MIB as f64
            );
        }
    }

    /// Pushes `main` of `work` to fresh repositories on both servers `runs` times (after one
    /// warm-up push each), alternating which goes first; returns the durations (graspd, plain).
    /// `hooks` replaces graspd's hooks directory in its repositories; `plain_config` is set in
    /// the plain server's.
    async fn compare(
        &mut self,
        work: &Path,
        oid: &str,
        name: &str,
        runs: usize,
        hooks: Option<&Path>,
        plain_config: &[(&str, &str)],
    ) -> (Vec<Duration>, Vec<Duration>) {
        let mut graspd_times = Vec::with_capacity(runs);
        let mut plain_times = Vec::with_capacity(runs);
        for run in 0..=runs {
            let identifier = format!("{name}-{run}");
            self.announce(&identifier, oid).await;
            if let Some(hooks) = hooks {
                let repo = self.server.repo_path(&self.owner, &identifier);
                let config = repo.join("config");
                support::eventually("the repository is provisioned", || {
                    let config = config.clone();
                    async move { config.exists() }
                })
                .await;
                git(&repo, &["config", "core.hooksPath", &hooks.display().to_string()]);
            }
            let graspd_url = self.server.clone_url(&self.owner, &identifier);
            let plain_url = self.plain.fresh_repo(&identifier, plain_config);
            // Alternate the order so neither side always pushes into warm caches.
            let (graspd, plain) = if run % 2 == 0 {
                let g = push(work, &graspd_url).await.elapsed();
                (g, push(work, &plain_url).await.elapsed())
            } else {
                let p = push(work, &plain_url).await.elapsed();
                (push(work, &graspd_url).await.elapsed(), p)
            };
            if run > 0 {
                graspd_times.push(graspd);
                plain_times.push(plain);
            }
        }
        let last = format!("{name}-{runs}");
        let landed = git(&self.server.repo_path(&self.owner, &last), &["rev-parse", "main"]);
        assert_eq!(landed, oid, "the graspd push landed");
        let landed = git(&self.plain.repo_path(&last), &["rev-parse", "main"]);
        assert_eq!(landed, oid, "the plain push landed");
        (graspd_times, plain_times)
    }

    /// Part 2: the installed pre-receive hook as git runs it (no arguments, GIT_DIR set, one ref
    /// update on stdin), allowed by the daemon against a pending state, from spawn to exit; then
    /// the full grasp-hook alone (`grasp-hook pre-receive`), which the fast hook hands unusual
    /// runs to, and a bare process for scale.
    async fn hook_round_trip(&mut self) {
        let (_work, oid) = work_tree_with_commit("hook");
        self.announce("hook", &oid).await;
        let repo = self.server.repo_path(&self.owner, "hook");
        let installed = self.server.data.path().join("hooks").join("pre-receive");
        let full = hook_binary();
        let socket = self.server.socket();
        let (fast_times, full_times, spawn_times) = tokio::task::spawn_blocking(move || {
            let stdin = format!("{ZERO_OID} {oid} refs/heads/main\n");
            let fast_times: Vec<Duration> = (0..HOOK_RUNS)
                .map(|_| run_hook(&installed, &[], &repo, &socket, &stdin))
                .collect();
            let full_times: Vec<Duration> = (0..HOOK_RUNS)
                .map(|_| run_hook(&full, &["pre-receive"], &repo, &socket, &stdin))
                .collect();
            // For scale: what spawning and reaping any process costs here.
            let spawn_times: Vec<Duration> = (0..HOOK_RUNS)
                .map(|_| {
                    let start = Instant::now();
                    let status = Command::new("true").status().expect("run true");
                    assert!(status.success());
                    start.elapsed()
                })
                .collect();
            (fast_times, full_times, spawn_times)
        })
        .await
        .expect("hook runs");
        let (p50, p95) = (ms(percentile(&fast_times, 50)), ms(percentile(&fast_times, 95)));
        println!(
            "hook round trip (installed pre-receive, allowed), {HOOK_RUNS} runs: p50 {p50:.2} ms, \
             p95 {p95:.2} ms; target p50 <= 3 ms, ratio {:.2}; the full grasp-hook alone: p50 {:.2} ms; \
             spawn+exit of `true` for scale: p50 {:.2} ms",
            p50 / 3.0,
            ms(percentile(&full_times, 50)),
            ms(percentile(&spawn_times, 50))
        );
    }

    /// Part 3: a subscriber to kind 30618 is open before each push; the push releases the state from
    /// purgatory and the relay delivers it. Measured from the `git push` process's exit (negative
    /// when the event arrives before git has exited) and from its start.
    async fn state_delivery(&mut self) {
        let (work, oid) = work_tree_with_commit("live");
        let mut watcher = self.server.client().await;
        watcher
            .send_raw(&json!(["REQ", "live", {"kinds": [30618], "limit": 0}]).to_string())
            .await;
        assert_eq!(watcher.next().await[0], "EOSE");
        let (arrivals, mut arrived) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut delivered = 0;
            while delivered < LIVE_RUNS {
                let message = watcher.next().await;
                let at = Instant::now();
                if message[0] == "EVENT" {
                    delivered += 1;
                    let id = message[2]["id"].as_str().unwrap_or_default().to_owned();
                    let _ = arrivals.send((id, at));
                }
            }
        });

        let mut after_exit = Vec::with_capacity(LIVE_RUNS);
        let mut after_start = Vec::with_capacity(LIVE_RUNS);
        for run in 0..LIVE_RUNS {
            let identifier = format!("live-{run}");
            let state_id = self.announce(&identifier, &oid).await;
            let pushed = push(work.path(), &self.server.clone_url(&self.owner, &identifier)).await;
            let (id, at) = tokio::time::timeout(support::DEADLINE, arrived.recv())
                .await
                .expect("state delivered in time")
                .expect("subscriber open");
            assert_eq!(id, state_id, "the pushed repository's state is delivered");
            after_exit.push(signed_ms(pushed.end, at));
            after_start.push(ms(at - pushed.start));
        }
        reader.await.expect("subscriber");
        after_exit.sort_by(f64::total_cmp);
        after_start.sort_by(f64::total_cmp);
        let p50 = after_exit[LIVE_RUNS / 2];
        println!(
            "state delivered to a live subscriber, {LIVE_RUNS} pushes: p50 {p50:.1} ms after push exit \
             (min {:.1}, max {:.1}; negative = before git exited); target <= 20 ms, ratio {:.2}; \
             p50 {:.1} ms after push start",
            after_exit[0],
            after_exit[LIVE_RUNS - 1],
            p50 / 20.0,
            after_start[LIVE_RUNS / 2]
        );
    }
}

fn print_comparison(label: &str, runs: usize, graspd: &[Duration], plain: &[Duration]) {
    let (g, p) = (ms(median(graspd)), ms(median(plain)));
    println!(
        "push {label}: graspd {g:.1} ms, plain {p:.1} ms, ratio {:.2} (target <= 1.10); medians of {runs}; \
         graspd min {:.1} ms, plain min {:.1} ms",
        g / p,
        ms(min(graspd)),
        ms(min(plain))
    );
}

/// Runs a hook as git http-backend started by graspd's front does: in the repository, `GIT_DIR=.`,
/// the daemon's socket in `GRASPD_SOCKET`.
fn run_hook(hook: &Path, args: &[&str], repo: &Path, socket: &Path, stdin: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(hook)
        .args(args)
        .current_dir(repo)
        .env("GIT_DIR", ".")
        .env("GRASPD_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run grasp-hook");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for grasp-hook");
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "pre-receive allowed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// Part 4: a fresh daemon, one big push streamed through it, its peak RSS before and after.
async fn peak_rss_of_big_push() {
    let mib = match std::env::var(BIG_MIB_ENV) {
        Ok(value) => value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{BIG_MIB_ENV}={value:?} is not a number of MiB")),
        Err(_) => BIG_MIB_DEFAULT,
    };
    let started = Instant::now();
    // Client-side deflate is irrelevant to the daemon's memory: store the blob uncompressed to
    // keep the run short (the pack on the wire is just as large).
    let (work, oid) = work_tree_with_noise(
        mib,
        0x9e37_79b9_7f4a_7c15,
        &[("core.compression", "0"), ("pack.compression", "0")],
    );
    println!(
        "(generated the {mib} MiB commit in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let server = start_graspd();
    let owner = Keys::generate();
    let mut publisher = server.client().await;
    announce(&mut publisher, &server, &owner, "big", &oid).await;
    let before = server.peak_rss_mib();
    let cpu = server.cpu_seconds();
    let pushed = push(work.path(), &server.clone_url(&owner, "big")).await;
    let elapsed = pushed.elapsed().as_secs_f64();
    let landed = git(&server.repo_path(&owner, "big"), &["rev-parse", "main"]);
    assert_eq!(landed, oid, "the big push landed");
    let cpu = match (cpu, server.cpu_seconds()) {
        (Some(before), Some(after)) => format!("{:.2} s", after - before),
        _ => "n/a".to_owned(),
    };
    let peak = server.peak_rss_mib();
    println!(
        "push {mib} MiB ({BIG_MIB_ENV}={mib}): {elapsed:.1} s, {:.0} MiB/s; daemon CPU {cpu}",
        mib as f64 / elapsed
    );
    match (before, peak) {
        (Some(before), Some(peak)) => println!(
            "daemon peak RSS (VmHWM) after the {mib} MiB push: {peak:.1} MiB ({before:.1} MiB before it); \
             target <= 100 MB (95.4 MiB), ratio {:.2}",
            peak / (100_000_000.0 / 1_048_576.0)
        ),
        _ => println!("daemon peak RSS: n/a (no /proc)"),
    }
    // The work tree (and its packed blob) and the daemon's data dir go with these.
    drop(work);
    drop(server);
}

/// See [`Bench::announce`]; also used for the big push's own daemon.
async fn announce(
    publisher: &mut Client,
    server: &Server,
    owner: &Keys,
    identifier: &str,
    oid: &str,
) -> String {
    let ok = publisher.publish(&announcement(owner, server, identifier)).await;
    assert!(ok.accepted, "announcement accepted: {}", ok.message);
    let state = state(owner, identifier, &[("refs/heads/main", oid)], Some("main"));
    let ok = publisher.publish(&state).await;
    assert!(ok.accepted, "state accepted: {}", ok.message);
    state.id.to_hex()
}

/// When a `git push` started and ended.
struct Pushed {
    start: Instant,
    end: Instant,
}

impl Pushed {
    fn elapsed(&self) -> Duration {
        self.end - self.start
    }
}

/// `git push <url> main:refs/heads/main` from `work`, timed from spawn to exit; asserts it
/// succeeded. Runs on the blocking pool so the runtime keeps serving (the plain server, the
/// subscriber) meanwhile.
async fn push(work: &Path, url: &str) -> Pushed {
    let work = work.to_owned();
    let target = url.to_owned();
    let (pushed, output) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let output = client_git(&work)
            .args(["push", &target, "main:refs/heads/main"])
            .output()
            .expect("run git push");
        (
            Pushed {
                start,
                end: Instant::now(),
            },
            output,
        )
    })
    .await
    .expect("push task");
    assert_success(&output, url);
    pushed
}

fn assert_success(output: &Output, url: &str) {
    assert!(
        output.status.success(),
        "git push to {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// git as a client, with the same clean environment as the e2e tests' helper.
fn client_git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0");
    command
}

/// The baseline: stock `git http-backend` behind a minimal HTTP/1.1 server, through the same CGI
/// bridge graspd uses, on bare repositories without hooks. What graspd adds on top (routing,
/// repository lookup, both hooks and the daemon's work) is the difference.
fn median(times: &[Duration]) -> Duration {
    percentile(times, 50)
}

fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn min(times: &[Duration]) -> Duration {
    times.iter().copied().min().expect("at least one run")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => ms(d),
        None => -ms(from - to),
    }
}
