//! Clone and fetch benchmark (not a test): `cargo bench -p graspd --bench clone`.
//!
//! A regression guard for what graspd serves most: `git clone` and `git fetch` over HTTP from
//! graspd's embedded git front, against a plain smart-HTTP server holding the same repositories
//! (stock `git http-backend` behind the same CGI bridge in the bench's process, no daemon, no
//! router: `tests/support/plain.rs`). Both sides got their repositories by a real `git push`
//! (graspd's after an announcement and a matching state). Measured, the two sides taking turns:
//! 1. a repository of one ~100 MiB commit of incompressible data (`GRASPD_BENCH_CLONE_MB`):
//!    one clone at a time (median of 3), and 8 clones at once (wall time, median of 2);
//! 2. a small repository (one commit), 50 clones at once (wall time, median of 3);
//! 3. a repository with 10,000 branches: a clone (median of 5) and a fetch that finds nothing
//!    new (median of 10: the ref advertisement of 10,000 refs and the negotiation);
//!
//! and graspd's peak RSS. Clones are `--bare` (no checkout) into a temp dir. Target: graspd within
//! 1.05 of plain on each line. Figures and ratios are printed; only correctness is asserted.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nostr::Keys;
use support::plain::PlainServer;
use support::{Client, Server, announcement, git, state, work_tree_with_commit, work_tree_with_noise};

const BIG_MIB_ENV: &str = "GRASPD_BENCH_CLONE_MB";
const BIG_MIB_DEFAULT: u64 = 100;
const REFS: usize = 10_000;
const TARGET_RATIO: f64 = 1.05;

/// The same repository on both servers.
struct Pair {
    graspd: String,
    plain: String,
}

#[tokio::main]
async fn main() {
    let big_mib = std::env::var(BIG_MIB_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BIG_MIB_DEFAULT);
    // A state with 10,000 refs is a ~1 MB event.
    let mut flags = support::bench_flags("warn");
    flags.extend(["--max-event-bytes", "4000000", "--max-message-bytes", "4000000"]);
    let server = Server::start_with(&flags);
    let plain = PlainServer::start().await;
    let owner = Keys::generate();
    let mut publisher = server.client().await;

    let (big_tree, big_oid) = work_tree_with_noise(big_mib, 7, &[]);
    let big = publish(
        &server,
        &plain,
        &mut publisher,
        &owner,
        "big",
        big_tree.path(),
        &[("refs/heads/main", &big_oid)],
    )
    .await;
    let (small_tree, small_oid) = work_tree_with_commit("small");
    let small = publish(
        &server,
        &plain,
        &mut publisher,
        &owner,
        "small",
        small_tree.path(),
        &[("refs/heads/main", &small_oid)],
    )
    .await;
    let (refs_tree, refs_oid) = work_tree_with_commit("refs");
    let names: Vec<String> = (0..REFS).map(|i| format!("refs/heads/b{i:05}")).collect();
    let branches = names
        .iter()
        .map(|name| format!("create {name} {refs_oid}\n"))
        .collect::<String>();
    create_refs(refs_tree.path(), &branches);
    let mut refs: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), refs_oid.as_str()))
        .collect();
    refs.push(("refs/heads/main", &refs_oid));
    let many_refs = publish(
        &server,
        &plain,
        &mut publisher,
        &owner,
        "refs",
        refs_tree.path(),
        &refs,
    )
    .await;

    println!("clone and fetch over HTTP: graspd's embedded front against plain git http-backend");
    let line = |label: &str, graspd: Duration, plain: Duration| {
        let ratio = graspd.as_secs_f64() / plain.as_secs_f64().max(1e-9);
        println!(
            "{label:<44} graspd {:>8.1} ms, plain {:>8.1} ms, ratio {ratio:.3} (target <= {TARGET_RATIO})",
            ms(graspd),
            ms(plain)
        );
    };
    let (g, p) = turns(3, || clones(&big, 1, false)).await;
    line(&format!("clone {big_mib} MiB, one at a time (median)"), g, p);
    let (g, p) = turns(2, || clones(&big, 8, false)).await;
    line(&format!("clone {big_mib} MiB, 8 at once (wall)"), g, p);
    let (g, p) = turns(3, || clones(&small, 50, false)).await;
    line("clone one commit, 50 at once (wall)", g, p);
    let (g, p) = turns(5, || clones(&many_refs, 1, false)).await;
    line(&format!("clone {REFS} refs (median)"), g, p);
    let (g, p) = turns(10, || clones(&many_refs, 1, true)).await;
    line(&format!("fetch, nothing new, {REFS} refs (median)"), g, p);
    if let Some(rss) = server.peak_rss_mib() {
        println!("graspd peak RSS: {rss:.1} MiB");
    }
}

/// Publishes an announcement and a state naming `refs`, then pushes every branch of `work` to
/// graspd and to the plain server.
async fn publish(
    server: &Server,
    plain: &PlainServer,
    publisher: &mut Client,
    owner: &Keys,
    identifier: &str,
    work: &Path,
    refs: &[(&str, &str)],
) -> Pair {
    assert!(
        publisher
            .publish(&announcement(owner, server, identifier))
            .await
            .accepted
    );
    let state = state(owner, identifier, refs, Some("main"));
    let ok = publisher.publish(&state).await;
    assert!(ok.accepted, "{ok:?}");
    let pair = Pair {
        graspd: server.clone_url(owner, identifier),
        plain: plain.fresh_repo(identifier, &[]),
    };
    for url in [&pair.graspd, &pair.plain] {
        let work = work.to_owned();
        let url = url.clone();
        tokio::task::spawn_blocking(move || git(&work, &["push", "-q", &url, "refs/heads/*:refs/heads/*"]))
            .await
            .expect("push");
    }
    pair
}

/// Runs `measure` `runs` times on each side, the two taking turns; returns the medians.
async fn turns<F, Fut>(runs: usize, measure: F) -> (Duration, Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (Duration, Duration)>,
{
    let (mut graspd, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (g, p) = measure().await;
        graspd.push(g);
        plain.push(p);
    }
    (median(&mut graspd), median(&mut plain))
}

/// `count` clones at once of the pair's repository from each side in turn (graspd first on every
/// other call); with `fetch`, a fetch into an existing clone instead. Returns the wall times.
async fn clones(pair: &Pair, count: usize, fetch: bool) -> (Duration, Duration) {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    if CALLS.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
        let graspd = clone_all(&pair.graspd, count, fetch).await;
        (graspd, clone_all(&pair.plain, count, fetch).await)
    } else {
        let plain = clone_all(&pair.plain, count, fetch).await;
        (clone_all(&pair.graspd, count, fetch).await, plain)
    }
}

async fn clone_all(url: &str, count: usize, fetch: bool) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    if fetch {
        clone_into(url, &dir.path().join("0"));
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let url = url.to_owned();
            let target = dir.path().join(i.to_string());
            tokio::task::spawn_blocking(move || {
                if fetch {
                    git(&target, &["fetch", "-q", &url, "+refs/heads/*:refs/heads/*"]);
                } else {
                    clone_into(&url, &target);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("clone");
    }
    started.elapsed()
}

fn clone_into(url: &str, target: &Path) {
    let parent = target.parent().expect("parent");
    let name = target.file_name().and_then(|n| n.to_str()).expect("name");
    git(parent, &["clone", "-q", "--bare", url, name]);
}

/// Applies `git update-ref --stdin` instructions in one go.
fn create_refs(work: &Path, instructions: &str) {
    let list = work.join(".git").join("bench-refs");
    std::fs::write(&list, instructions).expect("write ref list");
    let status = std::process::Command::new("git")
        .current_dir(work)
        .args(["update-ref", "--stdin"])
        .stdin(std::fs::File::open(&list).expect("open ref list"))
        .status()
        .expect("run git update-ref");
    assert!(status.success(), "git update-ref --stdin failed");
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
