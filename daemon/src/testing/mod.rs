//! Helpers for the crate's unit tests.

use std::path::Path;

/// Runs a setup git command with no user or system configuration in the way; returns its
/// trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// A configuration for unit tests that open an [`crate::app::App`]: everything under `data_dir`,
/// public name `ours.example`, sync allowed to fetch from loopback (test servers run there).
pub fn config(data_dir: &Path) -> crate::config::Config {
    use std::time::Duration;

    use crate::config::{Config, Domain, GitHttp, HookSetup, Limits, SyncSettings};
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        hooks: HookSetup::resolve(data_dir, None, None),
        grpc_socket_mode: 0o600,
        grpc_listen: None,
        grpc_token: None,
        grpc_tcp_hooks: false,
        metrics_listen: None,
        git_program: "git".into(),
        git_http: GitHttp::Embedded,
        initial_head: crate::git::RefName::branch("master").expect("branch"),
        domain: Domain::parse("ours.example").expect("domain"),
        data_dir: data_dir.to_owned(),
        database_url: format!("sqlite://{}", data_dir.join("graspd.db").display()),
        wal_checkpoint_mib: crate::store::DEFAULT_CHECKPOINT_MIB,
        git_root: data_dir.join("repos"),
        purgatory_expiry: Duration::from_secs(1800),
        housekeeping_interval: None,
        name: "graspd".into(),
        description: "test".into(),
        limits: Limits {
            max_message_bytes: 512 * 1024,
            max_event_bytes: 256 * 1024,
            max_subscriptions: 100,
            max_filter_limit: 5000,
            events_per_minute: 600,
            event_burst: 200,
            max_connections: 4096,
        },
        sync: SyncSettings {
            default_delay: Duration::from_secs(180),
            immediate_delay: Duration::from_millis(500),
            loop_interval: Duration::from_secs(1),
            domain_concurrent: 5,
            domain_rate_limit: 30,
            fetch_timeout: Duration::from_secs(20),
            private_addresses: true,
            refs_check_interval: None,
        },
        event_sync: crate::config::EventSyncSettings {
            enabled: false,
            refresh: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            resume_window: Duration::from_secs(900),
            full_pass: Duration::from_secs(86400),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            give_up_after: Duration::from_secs(3600),
            bootstrap_relays: Vec::new(),
            max_relays: 500,
            outbox: false,
            outbox_max_authors: 32,
            outbox_max_relays: 24,
        },
        archive: crate::config::ArchiveSettings::default(),
        grasp06: crate::config::Grasp06Settings::default(),
        abuse: crate::config::AbuseLimits::default(),
    }
}

/// A seeded xorshift64* generator for the randomized tests (no dependency, stable toolchain).
/// `GRASP_FUZZ_CASES` sets the cases per target (default 20,000), `GRASP_FUZZ_SEED` replays a
/// run; a failure names its seed and case.
pub struct Rng(u64);

impl Rng {
    /// The generator and case count for `target`, from the environment.
    pub fn plan(target: &str) -> (Self, usize, u64) {
        let cases = std::env::var("GRASP_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let seed = std::env::var("GRASP_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                })
            });
        (Self(seed | 1), cases, seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A few random edits of `input`: flip a bit, insert or delete a byte, truncate, duplicate.
    pub fn mutate(&mut self, mut input: Vec<u8>) -> Vec<u8> {
        for _ in 0..=self.below(3) {
            let len = input.len();
            match self.below(5) {
                0 if len > 0 => {
                    let at = self.below(len);
                    input[at] ^= 1 << self.below(8);
                }
                1 => {
                    let at = self.below(len + 1);
                    let byte = *self.pick(b"/.%2e0aZ\\\n\r\0 \":,[]{}-");
                    input.insert(at, byte);
                }
                2 if len > 0 => {
                    input.remove(self.below(len));
                }
                3 => input.truncate(self.below(len + 1)),
                _ if len > 0 => {
                    let (a, b) = (self.below(len), self.below(len));
                    let slice = input[a.min(b)..a.max(b)].to_vec();
                    let at = self.below(len + 1);
                    input.splice(at..at, slice);
                }
                _ => {}
            }
        }
        input
    }
}

// Shared with the integration tests (tests/support), which include the same file.
mod postgres;
pub use postgres::postgres_database;
