//! Many repositories (not a test): `cargo bench -p graspd --bench repositories`.
//!
//! Two release graspd servers on loopback: "many", hosting 10,000 repositories (100 owners with
//! 100 each, announced over websockets and provisioned by graspd itself; no state, so every
//! announcement waits in purgatory, the most start-up work there can be), and "few", hosting 10.
//! Then it measures, on "many":
//! 1. provisioning: from the first announcement until every repository exists on disk;
//! 2. `graspd status --json` and `graspd status repos --json` (every page of `ListRepositories`);
//! 3. start-up: SIGTERM, then a new process, timed until it listens (port and gRPC socket) and
//!    until its start-up catch-up (reconciling the 10,000 identifiers in purgatory) is logged;
//! 4. `graspd install-hooks` and `graspd doctor` over every repository, with their progress lines;
//! 5. push: a one-file commit pushed into a fresh repository, alternately on "many" and on "few"
//!    (median of 41 each): nothing on the push path should grow with the number of repositories.
//!
//! Targets (issue 19): start-up ≤ 5 s; push ratio many/few ≤ 1.02. `GRASP_REPOSITORIES` changes
//! the count.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nostr::Keys;
use serde_json::json;
use support::{Server, announcement, state, timed_push, work_tree_with_commit};
use tokio_tungstenite::tungstenite::Message;

const OWNERS: usize = 100;
/// Pushes to each server: 41, or GRASP_REPOSITORIES_PUSHES (more for a finer ratio).
fn pushes() -> usize {
    std::env::var("GRASP_REPOSITORIES_PUSHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(41)
}

fn main() {
    let repositories: usize = std::env::var("GRASP_REPOSITORIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(repositories));
}

fn flags() -> Vec<&'static str> {
    support::bench_flags("info")
}

async fn run(repositories: usize) {
    let mut many = Server::start_with_metrics(&flags());
    let few = Server::start_with_metrics(&flags());

    // 1. Provisioning.
    let started = Instant::now();
    announce_all(&many, repositories).await;
    let announced = started.elapsed();
    let root = many.git_root();
    let mut on_disk = 0;
    while on_disk < repositories {
        on_disk = count_repositories(&root);
        if started.elapsed() > Duration::from_secs(1800) {
            panic!("only {on_disk} of {repositories} repositories provisioned after 30 min");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let provisioned = started.elapsed();
    println!(
        "provisioning: {repositories} announcements answered in {:.1} s, every repository on disk after {:.1} s ({:.0} repositories/s)",
        announced.as_secs_f64(),
        provisioned.as_secs_f64(),
        repositories as f64 / provisioned.as_secs_f64()
    );
    announce_all(&few, 10).await;
    // Background work while nothing happens: none should grow with the repositories.
    let idle = Duration::from_secs(
        std::env::var("GRASP_REPOSITORIES_IDLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    );
    let before = [many.cpu_seconds(), few.cpu_seconds()];
    println!(
        "idle for {} s (pids: many {:?}, few {:?})",
        idle.as_secs(),
        many.descendants().first(),
        few.descendants().first()
    );
    tokio::time::sleep(idle).await;
    let after = [many.cpu_seconds(), few.cpu_seconds()];
    let idle_cores = |i: usize| match (before[i], after[i]) {
        (Some(b), Some(a)) => format!("{:.3} cores", (a - b) / idle.as_secs_f64()),
        _ => "n/a".to_owned(),
    };
    println!("idle CPU: many {}, few {}", idle_cores(0), idle_cores(1));

    // 2. Status.
    let (status, took) = timed(|| many.status_json(&[]));
    println!(
        "graspd status --json: {:.0} ms (repositories: {})",
        took.as_secs_f64() * 1e3,
        status["repositories"]
    );
    let (repos, took) = timed(|| many.status_json(&["repos"]));
    let listed = repos["repositories"].as_array().map_or(0, Vec::len);
    println!(
        "graspd status repos --json: {listed} repositories in {:.0} ms ({} pages of ListRepositories)",
        took.as_secs_f64() * 1e3,
        listed.div_ceil(1000)
    );

    // 3. Start-up.
    assert!(many.terminate(), "graspd stops cleanly on SIGTERM");
    let logged = many.log().len();
    let started = Instant::now();
    many.restart();
    let listening = started.elapsed();
    let mut caught_up = None;
    while caught_up.is_none() && started.elapsed() < Duration::from_secs(600) {
        if many.log()[logged..].contains("start-up catch-up done") {
            caught_up = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = caught_up.expect("start-up catch-up logged within 10 min");
    println!(
        "start-up with {repositories} repositories ({repositories} announcements in purgatory): listening after {:.2} s, \
         catch-up done after {:.2} s; target <= 5 s, ratio {:.2}",
        listening.as_secs_f64(),
        caught_up.as_secs_f64(),
        caught_up.as_secs_f64() / 5.0
    );

    // 4. install-hooks and doctor.
    for command in ["install-hooks", "doctor"] {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_graspd"))
            .arg(command)
            .arg("--data-dir")
            .arg(many.data.path())
            .output()
            .expect("run graspd");
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!(
            "graspd {command}: {:.2} s, exit {}, {} lines on stdout; last: {:?}; progress lines on stderr: {}",
            took.as_secs_f64(),
            output.status,
            stdout.lines().count(),
            stdout.lines().last().unwrap_or_default(),
            stderr.lines().filter(|l| l.contains("repositories")).count()
        );
    }

    // 5. Pushes, alternately.
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("push");
    let mut times = [Vec::new(), Vec::new()];
    let mut clients = [many.client().await, few.client().await];
    println!(
        "pushing (pids: many {:?}, few {:?})",
        many.descendants().first(),
        few.descendants().first()
    );
    let cpu = [many.cpu_seconds(), few.cpu_seconds()];
    let hooks = [many.hook_seconds(), few.hook_seconds()];
    let started = Instant::now();
    for i in 0..pushes() {
        // Each goes first every other time: neither pays for going first.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for at in order {
            let server = [&many, &few][at];
            let identifier = format!("push-{i}");
            let ok = clients[at]
                .publish(&announcement(&owner, server, &identifier))
                .await;
            assert!(ok.accepted, "{}", ok.message);
            let ok = clients[at]
                .publish(&state(
                    &owner,
                    &identifier,
                    &[("refs/heads/main", &oid)],
                    Some("main"),
                ))
                .await;
            assert!(ok.accepted, "{}", ok.message);
            times[at].push(timed_push(work.path(), &server.clone_url(&owner, &identifier)).await);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let busy = |server: &Server, before: Option<f64>| match (before, server.cpu_seconds()) {
        (Some(before), Some(after)) => format!("{:.2} cores", (after - before) / elapsed),
        _ => "n/a".to_owned(),
    };
    println!(
        "daemon CPU while pushing (both servers share the machine): many {}, few {}",
        busy(&many, cpu[0]),
        busy(&few, cpu[1])
    );
    for ((name, server), before) in [("many", &many), ("few", &few)].into_iter().zip(hooks) {
        let after = server.hook_seconds();
        let pushes = (after.count - before.count).max(1.0);
        println!(
            "{name}, daemon side: AuthorizePush {:.2} ms, ReportPush {:.2} ms (means over {pushes} pushes)",
            (after.authorize - before.authorize) * 1e3 / pushes,
            (after.report - before.report) * 1e3 / pushes
        );
    }
    let [many_p50, few_p50] = times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    });
    println!(
        "push p50: {:.2} ms with {repositories} repositories, {:.2} ms with 10; ratio {:.3} (target <= 1.02)",
        many_p50.as_secs_f64() * 1e3,
        few_p50.as_secs_f64() * 1e3,
        many_p50.as_secs_f64() / few_p50.as_secs_f64()
    );
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// `<git-root>/<npub>/<identifier>.git` directories.
fn count_repositories(root: &Path) -> usize {
    let Ok(owners) = std::fs::read_dir(root) else {
        return 0;
    };
    owners
        .filter_map(Result::ok)
        .filter_map(|owner| std::fs::read_dir(owner.path()).ok())
        .map(|repos| {
            repos
                .filter_map(Result::ok)
                .filter(|r| r.file_name().to_string_lossy().ends_with(".git"))
                .count()
        })
        .sum()
}

/// Announces `count` repositories from `OWNERS` owners, over one connection per owner, each
/// sending all its announcements before reading the answers.
async fn announce_all(server: &Server, count: usize) {
    let owners: Vec<Keys> = (0..OWNERS.min(count)).map(|_| Keys::generate()).collect();
    let mut tasks = Vec::new();
    for (o, owner) in owners.iter().enumerate() {
        let messages: Vec<String> = (o..count)
            .step_by(owners.len())
            .map(|i| json!(["EVENT", announcement(owner, server, &format!("repo-{i}"))]).to_string())
            .collect();
        let (ws, _) = tokio_tungstenite::connect_async_with_config(server.ws_url(), None, true)
            .await
            .expect("connect");
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let expected = messages.len();
            let sender = tokio::spawn(async move {
                for message in messages {
                    tx.send(Message::Text(message.into())).await.expect("send");
                }
                tx
            });
            let mut answered = 0;
            while answered < expected {
                let Some(Ok(Message::Text(text))) = rx.next().await else {
                    panic!("connection closed after {answered} answers");
                };
                let reply: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
                if reply[0] == "OK" {
                    assert_eq!(reply[2], true, "announcement accepted: {reply}");
                    answered += 1;
                }
            }
            let _ = sender.await;
        }));
    }
    for task in tasks {
        task.await.expect("announcing task");
    }
}
