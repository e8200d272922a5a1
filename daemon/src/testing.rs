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
