//! Clone and fetch benchmark (not a test): `cargo bench -p graspd --bench clone`.
//!
//! A regression guard for what graspd serves most: `git clone` and `git fetch` over HTTP from
//! graspd's embedded git front, against
//! * a plain smart-HTTP server holding the same repositories (stock `git http-backend` behind the
//!   same CGI bridge in the bench's process, no daemon, no router: `tests/support/plain.rs`);
//! * where nginx and fcgiwrap are installed, a graspd behind nginx + fcgiwrap + git http-backend
//!   with the configuration `graspd nginx-config` prints (a clone there never reaches graspd).
//!
//! Every side got its repositories by a real `git push` (graspd's after an announcement and a
//! matching state). Measured, the sides taking turns (a different one first each run):
//! 1. a repository of one ~100 MiB commit of incompressible data (`GRASPD_BENCH_CLONE_MB`):
//!    one clone at a time (median of 3), and 8 clones at once (wall time, median of 2);
//! 2. a small repository (one commit), 50 clones at once (wall time, median of 3);
//! 3. a repository with 10,000 branches: a clone (median of 5) and a fetch that finds nothing
//!    new (median of 10: the ref advertisement of 10,000 refs and the negotiation);
//!
//! and graspd's peak RSS. Clones are `--bare` (no checkout) into a temp dir. Target: graspd
//! within 1.05 of each other side on each line. Figures and ratios are printed; only correctness
//! is asserted.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nostr::Keys;
use support::nginx::{self, Front};
use support::plain::PlainServer;
use support::{Client, Server, announcement, git, state, work_tree_with_commit, work_tree_with_noise};

const BIG_MIB_ENV: &str = "GRASPD_BENCH_CLONE_MB";
const BIG_MIB_DEFAULT: u64 = 100;
const REFS: usize = 10_000;
const TARGET_RATIO: f64 = 1.05;

/// Where the bench clones from, in this order: graspd's embedded front, the plain server, and
/// (where nginx and fcgiwrap are installed) a graspd behind nginx + fcgiwrap + git http-backend,
/// whose clones never reach the daemon.
const SIDES: [&str; 3] = ["graspd", "plain", "nginx"];

struct Targets {
    server: Server,
    publisher: Client,
    plain: PlainServer,
    nginx: Option<(Server, Front, Client)>,
    owner: Keys,
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
    let publisher = server.client().await;
    let nginx = match nginx::binaries("the nginx line of the clone benchmark") {
        Some(binaries) => {
            let addr = nginx::nginx_addr();
            let behind = nginx::start_graspd(addr, &flags);
            let front = Front::start(&binaries, &behind, addr);
            let client = Client::connect(&front.ws_url()).await;
            Some((behind, front, client))
        }
        None => None,
    };
    let mut targets = Targets {
        server,
        publisher,
        plain: PlainServer::start().await,
        nginx,
        owner: Keys::generate(),
    };

    let (big_tree, big_oid) = work_tree_with_noise(big_mib, 7, &[]);
    let big = targets
        .publish("big", big_tree.path(), &[("refs/heads/main", &big_oid)])
        .await;
    let (small_tree, small_oid) = work_tree_with_commit("small");
    let small = targets
        .publish("small", small_tree.path(), &[("refs/heads/main", &small_oid)])
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
    let many_refs = targets.publish("refs", refs_tree.path(), &refs).await;

    println!(
        "clone and fetch over HTTP: graspd's embedded front against plain git http-backend{}",
        if targets.nginx.is_some() {
            " and nginx + fcgiwrap + git http-backend"
        } else {
            ""
        }
    );
    let line = |label: &str, times: &[Duration]| {
        let graspd = times[0].as_secs_f64();
        let mut text = format!("{label:<44} graspd {:>8.1} ms", ms(times[0]));
        for (side, time) in SIDES.iter().zip(times).skip(1) {
            let ratio = graspd / time.as_secs_f64().max(1e-9);
            text.push_str(&format!(
                ", {side} {:>8.1} ms (ratio {ratio:.3})",
                time.as_secs_f64() * 1e3
            ));
        }
        println!("{text}; target ratio <= {TARGET_RATIO}");
    };
    line(
        &format!("clone {big_mib} MiB, one at a time (median)"),
        &turns(3, &big, 1, false).await,
    );
    line(
        &format!("clone {big_mib} MiB, 8 at once (wall)"),
        &turns(2, &big, 8, false).await,
    );
    line(
        "clone one commit, 50 at once (wall)",
        &turns(3, &small, 50, false).await,
    );
    line(
        &format!("clone {REFS} refs (median)"),
        &turns(5, &many_refs, 1, false).await,
    );
    line(
        &format!("fetch, nothing new, {REFS} refs (median)"),
        &turns(10, &many_refs, 1, true).await,
    );
    if let Some(rss) = targets.server.peak_rss_mib() {
        println!("graspd peak RSS: {rss:.1} MiB");
    }
}

impl Targets {
    /// Publishes an announcement and a state naming `refs` and pushes every branch of `work`, on
    /// every side. Returns the repository's URL on each, in [`SIDES`] order.
    async fn publish(&mut self, identifier: &str, work: &Path, refs: &[(&str, &str)]) -> Vec<String> {
        let owner = &self.owner;
        let state = state(owner, identifier, refs, Some("main"));
        let announce = announcement(owner, &self.server, identifier);
        for event in [&announce, &state] {
            let ok = self.publisher.publish(event).await;
            assert!(ok.accepted, "{ok:?}");
        }
        let mut urls = vec![
            self.server.clone_url(owner, identifier),
            self.plain.fresh_repo(identifier, &[]),
        ];
        if let Some((_, front, client)) = &mut self.nginx {
            let announce = nginx::announcement_at(owner, front.addr, identifier);
            for event in [&announce, &state] {
                let ok = client.publish(event).await;
                assert!(ok.accepted, "{ok:?}");
            }
            urls.push(front.clone_url(owner, identifier));
        }
        for url in &urls {
            let work = work.to_owned();
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                git(&work, &["push", "-q", &url, "refs/heads/*:refs/heads/*"])
            })
            .await
            .expect("push");
        }
        urls
    }
}

/// `count` clones at once (with `fetch`, fetches into an existing clone) from each side in turn,
/// `runs` times, a different side first each run. Returns each side's median wall time.
async fn turns(runs: usize, urls: &[String], count: usize, fetch: bool) -> Vec<Duration> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let mut times = vec![Vec::new(); urls.len()];
    for _ in 0..runs {
        let first = RUNS.fetch_add(1, Ordering::Relaxed);
        for k in 0..urls.len() {
            let side = (first + k) % urls.len();
            times[side].push(clone_all(&urls[side], count, fetch).await);
        }
    }
    times.iter_mut().map(|side| median(side)).collect()
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
