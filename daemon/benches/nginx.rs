//! nginx deployment benchmark (not a test): `cargo bench -p graspd --bench nginx`.
//!
//! Starts real nginx + fcgiwrap with the configuration `graspd nginx-config` prints, in front of
//! the release `graspd serve --git-http external` (as tests/nginx.rs does), and measures `git push`
//! over HTTP through that nginx into
//! * a graspd repository: fcgiwrap → git http-backend → receive-pack → grasp-hook pre-receive and
//!   post-receive → the daemon (authorization, release from purgatory, repository sync);
//! * a plain bare repository under the same git root, without hooks: the same nginx, fcgiwrap and
//!   git http-backend, nothing of graspd's;
//!
//! and, for reference, the same push into a graspd with its embedded front (`--git-http
//! embedded`, hooks included), and into a plain repository whose two hooks are `true` (git's own
//! cost of running two hooks, which no hook can go below).
//!
//! Every push goes into a fresh, empty repository (for graspd: a fresh identifier whose
//! announcement and matching state were published first, so both hooks run and allow it); the
//! three targets take turns going first. A one-file commit (median of 20) and a ~100 MiB commit of
//! incompressible data (median of 5), packed once on the client beforehand so the figure is
//! transfer and server side.
//!
//! Target: nginx + hooks ≤ 1.05 × nginx without hooks (the hook round trip is the only cost graspd
//! adds). Figures and ratios are printed; only correctness is asserted. Skipped, with a message,
//! where nginx or fcgiwrap is not installed.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nostr::Keys;
use support::nginx::{self, Front};
use support::{
    Client, Server, announcement, git, npub, state, timed_push, work_tree_with_commit, work_tree_with_noise,
};

const SMALL_RUNS: usize = 20;
const LARGE_MIB: u64 = 100;
const LARGE_RUNS: usize = 5;
const TARGET_RATIO: f64 = 1.05;

fn main() {
    let Some(binaries) = nginx::binaries("the nginx benchmark") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(binaries));
}

async fn run(binaries: nginx::Binaries) {
    let mut bench = Bench::start(&binaries).await;
    println!(
        "nginx {} + fcgiwrap ({}), graspd --git-http external behind it",
        nginx_version(&binaries.nginx),
        binaries.fcgiwrap.display()
    );

    let (work, oid) = work_tree_with_commit("small");
    let times = bench.compare(work.path(), &oid, "small", SMALL_RUNS).await;
    times.print("small", SMALL_RUNS);

    let started = Instant::now();
    let (work, oid) = work_tree_with_noise(LARGE_MIB, 0x2545_f491_4f6c_dd1d, &[]);
    // Pack once, as a client that has run gc would have it: every push then reuses the packed
    // blob instead of preparing 100 MB again on the client.
    git(work.path(), &["repack", "-adq"]);
    println!(
        "(generated and packed the {LARGE_MIB} MiB commit in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let times = bench.compare(work.path(), &oid, "large", LARGE_RUNS).await;
    times.print(&format!("{LARGE_MIB} MiB"), LARGE_RUNS);
}

/// graspd behind nginx, a second graspd with the embedded front, and connections to publish on.
struct Bench {
    server: Server,
    front: Front,
    embedded: Server,
    owner: Keys,
    behind_nginx: Client,
    direct: Client,
}

/// Push durations per target.
#[derive(Default)]
struct Times {
    hooks: Vec<Duration>,
    plain: Vec<Duration>,
    embedded: Vec<Duration>,
    /// The plain repository with both hooks `true`: git's own cost of running two hooks.
    true_hooks: Vec<Duration>,
}

impl Times {
    fn print(&self, label: &str, runs: usize) {
        let (hooks, plain, embedded) = (
            ms(median(&self.hooks)),
            ms(median(&self.plain)),
            ms(median(&self.embedded)),
        );
        let ratio = hooks / plain;
        println!(
            "push {label}: nginx+fcgiwrap+hooks {hooks:.1} ms, same nginx without hooks {plain:.1} ms, \
             ratio {ratio:.3} (target <= {TARGET_RATIO:.2}{}); hooks add {:.1} ms; embedded front {embedded:.1} ms \
             (ratio to nginx without hooks {:.3}); medians of {runs}; min {:.1} / {:.1} / {:.1} ms",
            if ratio <= TARGET_RATIO {
                ", met"
            } else {
                ", MISSED"
            },
            hooks - plain,
            embedded / plain,
            ms(min(&self.hooks)),
            ms(min(&self.plain)),
            ms(min(&self.embedded)),
        );
        let true_hooks = ms(median(&self.true_hooks));
        println!(
            "push {label}, for scale: same nginx, plain repository with both hooks `true` {true_hooks:.1} ms, \
             ratio {:.3} to no hooks (git's own cost of running two hooks)",
            true_hooks / plain
        );
    }
}

impl Bench {
    async fn start(binaries: &nginx::Binaries) -> Self {
        let addr = nginx::nginx_addr();
        let server = nginx::start_graspd(addr, &support::bench_flags("warn"));
        let front = Front::start(binaries, &server, addr);
        let embedded = Server::start_with(&support::bench_flags("warn"));
        let behind_nginx = Client::connect(&front.ws_url()).await;
        let direct = embedded.client().await;
        Self {
            server,
            front,
            embedded,
            owner: Keys::generate(),
            behind_nginx,
            direct,
        }
    }

    /// Pushes `main` of `work` into fresh repositories on the three targets `runs` times (after
    /// one warm-up round), rotating which goes first.
    async fn compare(&mut self, work: &Path, oid: &str, name: &str, runs: usize) -> Times {
        let mut times = Times::default();
        for run in 0..=runs {
            let identifier = format!("{name}-{run}");
            // Published through nginx, naming nginx; and to the embedded graspd, naming it.
            let ann = nginx::announcement_at(&self.owner, self.front.addr, &identifier);
            publish(&mut self.behind_nginx, &ann).await;
            publish(
                &mut self.direct,
                &announcement(&self.owner, &self.embedded, &identifier),
            )
            .await;
            let st = state(
                &self.owner,
                &identifier,
                &[("refs/heads/main", oid)],
                Some("main"),
            );
            publish(&mut self.behind_nginx, &st).await;
            publish(&mut self.direct, &st).await;
            let true_hooks = self.plain_repo(&format!("true-{identifier}"), &identifier);
            let true_path = self.plain_path(&format!("true-{identifier}"));
            git(
                &true_path,
                &[
                    "config",
                    "core.hooksPath",
                    &self.true_hooks_dir().display().to_string(),
                ],
            );
            let urls = [
                self.front.clone_url(&self.owner, &identifier),
                self.plain_repo(&identifier, &identifier),
                self.embedded.clone_url(&self.owner, &identifier),
                true_hooks,
            ];
            let mut measured = [Duration::ZERO; 4];
            for turn in 0..urls.len() {
                let target = (run + turn) % urls.len();
                measured[target] = timed_push(work, &urls[target]).await;
            }
            if run > 0 {
                times.hooks.push(measured[0]);
                times.plain.push(measured[1]);
                times.embedded.push(measured[2]);
                times.true_hooks.push(measured[3]);
            }
        }
        let last = format!("{name}-{runs}");
        for repo in [
            self.server.repo_path(&self.owner, &last),
            self.plain_path(&last),
            self.embedded.repo_path(&self.owner, &last),
        ] {
            assert_eq!(
                git(&repo, &["rev-parse", "main"]),
                oid,
                "the push landed in {}",
                repo.display()
            );
        }
        times
    }

    /// A bare repository under graspd's git root that nginx serves like any other, with the git
    /// config graspd gave its repository `identifier` (GRASP-01 settings, packs kept as received)
    /// but no hooks and no announcement: stock git http-backend alone.
    /// A hooks directory whose pre-receive and post-receive are `true`, readable by fcgiwrap.
    fn true_hooks_dir(&self) -> PathBuf {
        let dir = self.server.git_root().join("true-hooks");
        if !dir.exists() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            for name in ["pre-receive", "post-receive"] {
                std::os::unix::fs::symlink(support::true_executable(), dir.join(name)).expect("link");
            }
        }
        dir
    }

    fn plain_path(&self, identifier: &str) -> PathBuf {
        self.server
            .git_root()
            .join(npub(&self.owner))
            .join(format!("plain-{identifier}.git"))
    }

    /// A plain bare repository `plain-<name>.git` with the git config of graspd's repository
    /// `identifier` minus graspd's own keys; returns its URL through nginx.
    fn plain_repo(&self, name: &str, identifier: &str) -> String {
        let path = self.plain_path(name);
        std::fs::create_dir_all(&path).expect("mkdir");
        git(&path, &["init", "-q", "--bare", "-b", "main"]);
        let graspd_config = self.server.repo_path(&self.owner, identifier).join("config");
        let graspd_config = graspd_config.to_str().expect("UTF-8 path");
        let listed = git(&path, &["config", "--file", graspd_config, "--list"]);
        for (key, value) in listed.lines().filter_map(|line| line.split_once('=')) {
            if key != "core.hookspath" && !key.starts_with("graspd.") {
                git(&path, &["config", key, value]);
            }
        }
        assert_eq!(git(&path, &["config", "http.receivepack"]), "true");
        format!(
            "http://{}/{}/plain-{name}.git",
            self.front.addr,
            npub(&self.owner)
        )
    }
}

async fn publish(client: &mut Client, event: &nostr::Event) {
    let ok = client.publish(event).await;
    assert!(ok.accepted, "event accepted: {}", ok.message);
}

fn nginx_version(nginx: &Path) -> String {
    Command::new(nginx)
        .arg("-v")
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_default()
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn min(times: &[Duration]) -> Duration {
    times.iter().copied().min().expect("at least one run")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
