//! End-to-end: details third-party tools trip on (issue 13): an empty repository's HEAD follows
//! git's default branch, state tags as clients write them in the wild.

mod support;

use std::path::Path;

use nostr::{Keys, Timestamp};
use serde_json::json;
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

/// A git environment for both graspd and the test's client git: no system config, and a global
/// config that sets `init.defaultBranch` only when `default_branch` is given.
struct GitEnv {
    dir: tempfile::TempDir,
}

impl GitEnv {
    fn new(default_branch: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = String::new();
        if let Some(branch) = default_branch {
            config.push_str(&format!("[init]\n\tdefaultBranch = {branch}\n"));
        }
        // The client's git reads `$HOME/.gitconfig` (support::git sets HOME to its directory).
        std::fs::write(dir.path().join(".gitconfig"), &config).expect("client config");
        Self { dir }
    }

    fn global_config(&self) -> String {
        self.dir.path().join(".gitconfig").display().to_string()
    }

    fn server(&self) -> Server {
        Server::start_with_env(
            &[],
            &[
                ("GIT_CONFIG_NOSYSTEM", "1"),
                ("GIT_CONFIG_GLOBAL", &self.global_config()),
            ],
        )
    }

    /// Clones `url` into `<env dir>/<name>` and returns the path.
    fn clone(&self, url: &str, name: &str) -> std::path::PathBuf {
        git(self.dir.path(), &["clone", "-q", url, name]);
        self.dir.path().join(name)
    }
}

fn current_branch(work: &Path) -> String {
    git(work, &["symbolic-ref", "HEAD"])
}

/// Clones an empty repository (announcement only, then with a state in purgatory), checks the
/// branch the clone starts on, then does what scripts written for git's default do.
async fn empty_clone_starts_on(default_branch: Option<&str>, expected: &str) {
    let env = GitEnv::new(default_branch);
    let server = env.server();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert_eq!(
        client
            .publish(&announcement(&owner, &server, "fresh"))
            .await
            .message,
        PURGATORY_OK
    );
    let url = server.clone_url(&owner, "fresh");
    let repo = server.repo_path(&owner, "fresh");
    assert_eq!(
        git(&repo, &["symbolic-ref", "HEAD"]),
        format!("refs/heads/{expected}")
    );

    let first = env.clone(&url, "announced");
    assert_eq!(current_branch(&first), format!("refs/heads/{expected}"));

    // A state waiting in purgatory does not move HEAD: its data has not arrived.
    let (_elsewhere, other) = work_tree_with_commit("elsewhere");
    let waiting = state_at(
        &owner,
        "fresh",
        &[("refs/heads/main", &other)],
        Some("main"),
        Timestamp::from(Timestamp::now().as_secs() - 10),
    );
    assert_eq!(client.publish(&waiting).await.message, PURGATORY_OK);
    let work = env.clone(&url, "with-state");
    assert_eq!(current_branch(&work), format!("refs/heads/{expected}"));

    // Commit on the branch the clone started on, then move it to `main` as a script would.
    std::fs::write(work.join("README"), "hello").expect("write");
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let oid = git(&work, &["rev-parse", "HEAD"]);
    let st = state(&owner, "fresh", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    git(&work, &["branch", "main"]);
    git(&work, &["checkout", "-q", "main"]);
    let pushed = git_output(&work, &["push", "origin", "main"]);
    assert!(
        pushed.status.success(),
        "push of main: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
}

#[tokio::test]
async fn empty_repository_clones_onto_gits_own_default_branch_when_none_is_configured() {
    empty_clone_starts_on(None, "master").await;
}

#[tokio::test]
async fn empty_repository_clones_onto_the_configured_default_branch() {
    empty_clone_starts_on(Some("trunk"), "trunk").await;
}

#[tokio::test]
async fn initial_branch_flag_overrides_gits_default() {
    let env = GitEnv::new(Some("trunk"));
    let server = Server::start_with_env(
        &["--initial-branch", "develop"],
        &[
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", &env.global_config()),
        ],
    );
    let owner = Keys::generate();
    let mut client = server.client().await;
    client.publish(&announcement(&owner, &server, "flagged")).await;
    let repo = server.repo_path(&owner, "flagged");
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/develop");
}

#[test]
fn initial_branch_that_is_not_a_branch_name_is_refused_at_start() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args(["serve", "--initial-branch", "a..b", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run graspd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--initial-branch 'a..b'"), "{stderr}");
}

#[test]
fn a_bad_archive_rule_is_refused_at_start_naming_it_and_its_line() {
    let data = tempfile::tempdir().expect("tempdir");
    let refused = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_graspd"))
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .expect("run graspd");
        assert!(!output.status.success(), "{args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refused(&["--archive-allow", "npub1nothing/web"]);
    assert!(stderr.contains("--archive-allow 'npub1nothing/web'"), "{stderr}");
    let file = data.path().join("allow.txt");
    std::fs::write(&file, "# owners we mirror\nweb\n../etc\n").expect("write");
    let stderr = refused(&["--archive-allow-file", file.to_str().expect("utf-8")]);
    assert!(stderr.contains("line 3") && stderr.contains("../etc"), "{stderr}");
}

/// An announcement of `owner`'s `identifier` that lists only another server.
fn listing_elsewhere(owner: &Keys, identifier: &str) -> nostr::Event {
    let clone = format!("https://other.example/{}/{identifier}.git", npub(owner));
    event(
        owner,
        30617,
        "",
        &[
            &["d", identifier],
            &["clone", &clone],
            &["relays", "wss://other.example"],
        ],
    )
}

fn nip11_of(server: &Server) -> serde_json::Value {
    let response = http(server.addr, "GET", "/", &[("Accept", "application/nostr+json")]);
    serde_json::from_str(&response.body).expect("json")
}

fn lists_grasp(doc: &serde_json::Value, grasp: &str) -> bool {
    doc["supported_grasps"]
        .as_array()
        .is_some_and(|g| g.contains(&json!(grasp)))
}

#[tokio::test]
async fn archive_rules_decide_which_announcements_are_taken_in_each_mode() {
    let (alice, bob) = (Keys::generate(), Keys::generate());

    // Default: an announcement naming only other servers is refused; no GRASP-05, no curation.
    let plain = Server::start();
    let mut client = plain.client().await;
    let answer = client.publish(&listing_elsewhere(&alice, "web")).await;
    assert!(
        !answer.accepted && answer.message.contains("must list this server"),
        "{answer:?}"
    );
    let doc = nip11_of(&plain);
    assert!(
        !lists_grasp(&doc, "GRASP-05") && doc.get("curation").is_none(),
        "{doc}"
    );

    // Allow rules (flag and file) take what they name, and only that.
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("allow.txt");
    std::fs::write(&file, format!("# mirrored owners\n{}\n", npub(&bob))).expect("write");
    let allow = format!("{}/web", npub(&alice));
    let allowing = Server::start_with(&[
        "--archive-allow",
        &allow,
        "--archive-allow-file",
        file.to_str().expect("utf-8"),
        "--archive-deny",
        "secret",
    ]);
    let mut client = allowing.client().await;
    assert_eq!(
        client.publish(&listing_elsewhere(&alice, "web")).await.message,
        PURGATORY_OK
    );
    assert!(allowing.repo_path(&alice, "web").is_dir(), "provisioned");
    assert_eq!(
        client.publish(&listing_elsewhere(&bob, "anything")).await.message,
        PURGATORY_OK
    );
    let other = client.publish(&listing_elsewhere(&alice, "app")).await;
    assert!(
        !other.accepted && other.message.contains("must list this server"),
        "{other:?}"
    );
    let denied = client.publish(&listing_elsewhere(&bob, "secret")).await;
    assert!(
        !denied.accepted && denied.message.contains("does not host or archive"),
        "{denied:?}"
    );
    let doc = nip11_of(&allowing);
    assert!(lists_grasp(&doc, "GRASP-05"), "{doc}");
    assert!(
        doc["curation"]
            .as_str()
            .is_some_and(|c| c.contains("2 allow rules") && c.contains("1 denied")),
        "{doc}"
    );

    // Archive only: listing this server is not enough.
    let only = Server::start_with(&["--archive-only", "--archive-allow", "web"]);
    let mut client = only.client().await;
    let listed = client.publish(&announcement(&alice, &only, "app")).await;
    assert!(
        !listed.accepted && listed.message.contains("read-only archive"),
        "{listed:?}"
    );
    assert!(!only.repo_path(&alice, "app").exists());
    assert_eq!(
        client.publish(&announcement(&alice, &only, "web")).await.message,
        PURGATORY_OK
    );
    let doc = nip11_of(&only);
    assert!(
        doc["repo_acceptance_criteria"]
            .as_str()
            .is_some_and(|c| c.starts_with("Read-only archive")),
        "{doc}"
    );
    assert!(
        doc["curation"]
            .as_str()
            .is_some_and(|c| c.starts_with("Read-only archive of")),
        "{doc}"
    );
}

/// A state event with raw tags, as a client in the wild writes it.
fn raw_state(keys: &Keys, identifier: &str, tags: &[&[&str]], created_at: Timestamp) -> nostr::Event {
    let d = ["d", identifier];
    let mut all: Vec<&[&str]> = vec![&d];
    all.extend_from_slice(tags);
    event_at(keys, 30618, "", &all, created_at)
}

#[tokio::test]
async fn head_tag_without_the_ref_prefix_sets_head_like_the_prefixed_form() {
    let server = Server::start();
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("first");
    let mut client = server.client().await;
    client.publish(&announcement(&owner, &server, "bare-head")).await;
    let st = raw_state(
        &owner,
        "bare-head",
        &[
            &["refs/heads/main", &oid],
            &["refs/heads/develop", &oid],
            &["HEAD", "refs/heads/develop"],
        ],
        Timestamp::now(),
    );
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let url = server.clone_url(&owner, "bare-head");
    git(
        work.path(),
        &[
            "push",
            "-q",
            &url,
            "main:refs/heads/main",
            "main:refs/heads/develop",
        ],
    );
    let repo = server.repo_path(&owner, "bare-head");
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/develop");
}

#[tokio::test]
async fn abbreviated_state_waits_refuses_pushes_never_releases_and_a_later_full_state_supersedes_it() {
    let server = Server::start_with(&["--purgatory-expiry-secs", "4"]);
    let owner = Keys::generate();
    let (work, first) = work_tree_with_commit("first");
    let mut client = server.client().await;
    let now = Timestamp::now().as_secs();
    // A served repository (its announcement released by a first push), so that only the
    // abbreviated state below can expire.
    client.publish(&announcement(&owner, &server, "abbrev")).await;
    let served = state_at(
        &owner,
        "abbrev",
        &[("refs/heads/main", &first)],
        Some("main"),
        Timestamp::from(now - 20),
    );
    client.publish(&served).await;
    let url = server.clone_url(&owner, "abbrev");
    git(work.path(), &["push", "-q", &url, "main:refs/heads/main"]);
    assert_eq!(
        client.ids(json!({"kinds": [30618]})).await,
        vec![served.id.to_hex()]
    );

    std::fs::write(work.path().join("README"), "second").expect("write");
    git(work.path(), &["commit", "-q", "-am", "second"]);
    let second = git(work.path(), &["rev-parse", "HEAD"]);
    let short = raw_state(
        &owner,
        "abbrev",
        &[
            &["refs/heads/main", &second[..7]],
            &["HEAD", "ref: refs/heads/main"],
        ],
        Timestamp::from(now - 10),
    );
    let reply = client.publish(&short).await;
    assert!(reply.accepted, "{}", reply.message);
    assert_eq!(reply.message, PURGATORY_OK);
    assert!(
        purgatory_listing(&server).contains(&short.id.to_hex()),
        "it waits"
    );

    // A push is checked against it, and no full id matches an abbreviated one.
    let refused = git_output(work.path(), &["push", &url, "main:refs/heads/main"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a full object id"), "{stderr}");

    // The data it names is on disk now (pushed by other means): still nothing releases it.
    push_without_hooks(
        work.path(),
        &server.repo_path(&owner, "abbrev"),
        &["main:refs/heads/main"],
    );
    eventually("the abbreviated state expires unreleased", || {
        let waiting = purgatory_listing(&server);
        let id = short.id.to_hex();
        async move { !waiting.contains(&id) }
    })
    .await;
    assert_eq!(
        client.ids(json!({"kinds": [30618]})).await,
        vec![served.id.to_hex()],
        "never served"
    );

    // A later state from the same maintainer naming the full id supersedes it.
    let short_again = raw_state(
        &owner,
        "abbrev",
        &[&["refs/heads/main", &second[..7]]],
        Timestamp::from(now - 5),
    );
    assert_eq!(client.publish(&short_again).await.message, PURGATORY_OK);
    let full = state(&owner, "abbrev", &[("refs/heads/main", &second)], Some("main"));
    let reply = client.publish(&full).await;
    assert!(reply.accepted, "{}", reply.message);
    assert_eq!(
        client.ids(json!({"kinds": [30618]})).await,
        vec![full.id.to_hex()]
    );
    assert!(
        !purgatory_listing(&server).contains(&short_again.id.to_hex()),
        "the superseded abbreviated state no longer waits"
    );
}

/// `graspd status --json purgatory` as text.
fn purgatory_listing(server: &Server) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args(["status", "--json", "--data-dir"])
        .arg(server.data.path())
        .arg("purgatory")
        .output()
        .expect("graspd status");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---- operators' conventions ----------------------------------------------------------------

#[tokio::test]
async fn probes_answer_on_the_public_listener_and_metrics_only_on_their_own() {
    let server = Server::start_with_metrics(&[]);
    let healthz = http(server.addr, "GET", "/healthz", &[]);
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));
    let readyz = http(server.addr, "GET", "/readyz", &[]);
    assert_eq!((readyz.status, readyz.body.as_str()), (200, "ready\n"));
    assert_eq!(http(server.addr, "GET", "/metrics", &[]).status, 404);
    let metrics = server.metrics();
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("graspd_uptime_seconds"));
    let addr = server.metrics_addr.expect("metrics listener");
    assert_eq!(http(addr, "GET", "/", &[]).status, 404, "only /metrics there");

    // The git root gone (a volume unmounted, say): not ready, with the reason in one line.
    let root = server.git_root();
    std::fs::remove_dir_all(&root).expect("remove git root");
    std::fs::write(&root, "not a directory").expect("file in its place");
    let readyz = http(server.addr, "GET", "/readyz", &[]);
    assert_eq!(readyz.status, 503);
    assert_eq!(readyz.body, "not ready: git root not writable\n");
    assert_eq!(
        http(server.addr, "GET", "/healthz", &[]).status,
        200,
        "still alive"
    );
}

#[test]
fn nginx_config_does_not_expose_metrics() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args([
            "nginx-config",
            "--domain",
            "git.example.com",
            "--metrics-listen",
            "127.0.0.1:9464",
            "--http-backend",
            "/usr/lib/git-core/git-http-backend",
        ])
        .output()
        .expect("graspd nginx-config");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("9464"), "{text}");
    assert!(!text.contains("metrics"), "{text}");
}

/// `graspd <args>` with `envs`, from a directory with no configuration file.
fn graspd(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run graspd")
}

#[test]
fn configuration_file_flag_environment_and_default_in_that_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("graspd.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9100\"\nname = \"from the file\"\ndescription = \"from the file\"\n\
         purgatory-expiry-secs = 60\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let output = graspd(
        &[
            "serve",
            "--config",
            path,
            "--print-config",
            "--name",
            "from a flag",
        ],
        &[("GRASPD_DESCRIPTION", "from the environment")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    for line in [
        "listen = \"127.0.0.1:9100\"  # file",
        "name = \"from a flag\"  # flag",
        "description = \"from the environment\"  # environment",
        "purgatory-expiry-secs = 60  # file",
        "max-connections = 4096  # default",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} in:\n{printed}");
    }

    // What it prints is a configuration file that gives the same configuration.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &printed).expect("write");
    let output = graspd(
        &[
            "serve",
            "--config",
            again.to_str().expect("utf-8"),
            "--print-config",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reprinted = String::from_utf8_lossy(&output.stdout).into_owned();
    let values = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split("  #").next().unwrap_or(l).to_owned())
            .collect()
    };
    assert_eq!(values(&printed), values(&reprinted));
}

#[test]
fn the_wal_checkpoint_interval_is_a_setting_and_out_of_range_values_are_refused() {
    let output = graspd(&["serve", "--print-config", "--wal-checkpoint-mib", "64"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        printed.lines().any(|l| l == "wal-checkpoint-mib = 64  # flag"),
        "{printed}"
    );
    for bad in ["0", "4097", "lots"] {
        let output = graspd(&["serve", "--print-config", "--wal-checkpoint-mib", bad], &[]);
        assert_eq!(output.status.code(), Some(2), "--wal-checkpoint-mib {bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--wal-checkpoint-mib"), "{stderr}");
    }
}

#[test]
fn configuration_file_with_an_unknown_key_is_refused_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("graspd.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9100\"\nlisten_port = 80\n").expect("write");
    let path = file.to_str().expect("utf-8");
    let output = graspd(&["serve", "--config", path], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown key 'listen_port'"), "{stderr}");
    assert!(stderr.contains(path), "{stderr}");

    let output = graspd(
        &["serve", "--print-config"],
        &[("GRASPD_CONFIG", "/nonexistent/graspd.toml")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/graspd.toml"));
}

#[tokio::test]
async fn status_finds_the_daemon_through_the_configuration_file() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("graspd.toml");
    // Keys only `serve` has (listen, name) are for the daemon; `status` takes data-dir.
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:1\"\nname = \"x\"\ndata-dir = \"{}\"\n",
            server.data.path().display()
        ),
    )
    .expect("write");
    let config = file.to_str().expect("utf-8");
    let overview = graspd(&["status", "--json"], &[("GRASPD_CONFIG", config)]);
    assert!(
        overview.status.success(),
        "{}",
        String::from_utf8_lossy(&overview.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&overview.stdout).expect("JSON");
    assert_eq!(answer["domain"], server.domain().as_str());
    // Also with a nested subcommand after it.
    let waiting = graspd(&["status", "--json", "purgatory"], &[("GRASPD_CONFIG", config)]);
    assert!(
        waiting.status.success(),
        "{}",
        String::from_utf8_lossy(&waiting.stderr)
    );
    // A flag still wins over the file.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let missed = graspd(
        &["status", "--data-dir", elsewhere.path().to_str().expect("utf-8")],
        &[("GRASPD_CONFIG", config)],
    );
    assert!(!missed.status.success());
    assert!(String::from_utf8_lossy(&missed.stderr).contains("cannot reach graspd"));
}

#[test]
fn shell_completions_and_man_pages_come_from_the_command_definitions() {
    let bash = graspd(&["completions", "bash"], &[]);
    assert!(bash.status.success());
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        script.contains("--metrics-listen") && script.contains("install-hooks"),
        "{script}"
    );
    let zsh = graspd(&["completions", "zsh"], &[]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef graspd"));

    let page = graspd(&["man"], &[]);
    assert!(page.status.success());
    assert!(String::from_utf8_lossy(&page.stdout).contains(".TH graspd 1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man1");
    let written = graspd(&["man", "--out-dir", out.to_str().expect("utf-8")], &[]);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let serve = std::fs::read_to_string(out.join("graspd-serve.1")).expect("graspd-serve.1");
    assert!(serve.contains("initial\\-branch"), "{serve}");
    // man(1) reads it.
    let man = std::process::Command::new("man")
        .arg(out.join("graspd.1"))
        .env("MANPAGER", "cat")
        .output();
    if let Ok(man) = man
        && man.status.success()
    {
        assert!(String::from_utf8_lossy(&man.stdout).contains("graspd"));
    }
}

// ---- generic gRPC clients on the Unix socket ---------------------------------------------------

/// Whether Python with grpcio is here; on CI (`CI` set) it must be, elsewhere the test skips.
fn python_grpc_available() -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_health.v1, grpc_reflection.v1alpha"])
        .output();
    let available = probe.is_ok_and(|p| p.status.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install tests/clients/requirements.txt (python3 -m pip install -r ...)"
        );
        eprintln!(
            "skipped: python3 with grpcio is not installed (pip install -r tests/clients/requirements.txt)"
        );
    }
    available
}

#[tokio::test]
async fn grpc_c_core_client_reaches_health_reflection_and_status_over_the_socket() {
    if !python_grpc_available() {
        return;
    }
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    client.publish(&announcement(&owner, &server, "seen")).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients/grpc_c_core.py");
    let target = format!("unix:{}", server.socket().display());
    let output = tokio::process::Command::new("python3")
        .args([script, &target])
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "python grpcio client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON from the client");
    assert_eq!(answer["health"], "SERVING");
    let services: Vec<&str> = answer["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for service in [
        "grasp.v1.HookService",
        "grasp.v1.StatusService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&service), "{service} in {services:?}");
    }
    assert_eq!(answer["status"]["domain"], server.domain().as_str());
}

#[tokio::test]
async fn allow_owner_restricts_who_gets_a_repository_here() {
    let (team, stranger, maintainer) = (Keys::generate(), Keys::generate(), Keys::generate());
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("owners.txt");
    std::fs::write(&file, format!("# our team\n{}\n", team.public_key().to_hex())).expect("write");
    let server = Server::start_with(&["--allow-owner-file", file.to_str().expect("utf-8")]);
    let mut client = server.client().await;
    let ann = announcement_with(&team, &server, "ours", &[&maintainer], Timestamp::now());
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    let refused = client.publish(&announcement(&stranger, &server, "theirs")).await;
    assert!(
        !refused.accepted && refused.message.contains("owners its operator lists only"),
        "{refused:?}"
    );
    assert!(!server.repo_path(&stranger, "theirs").exists());
    // A maintainer of a team repository is not a listed owner: their own announcement of it is
    // served (GRASP-01 [9]) but gets no repository of its own.
    let own = client.publish(&announcement(&maintainer, &server, "ours")).await;
    assert!(own.accepted && own.message.is_empty(), "{own:?}");
    assert!(!server.repo_path(&maintainer, "ours").exists());
    let doc = nip11_of(&server);
    assert!(
        doc["repo_acceptance_criteria"]
            .as_str()
            .is_some_and(|c| c.contains("Only the repositories of 1 owner chosen")),
        "{doc}"
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args(["serve", "--allow-owner", "npub1nobody", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run graspd");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--allow-owner 'npub1nobody'"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test]
async fn new_repositories_beyond_the_hourly_limits_are_rate_limited() {
    let server = Server::start_with(&[
        "--max-new-repos-per-hour-per-owner",
        "1",
        "--max-new-repos-per-hour-per-address",
        "2",
    ]);
    let (alice, bob, carol) = (Keys::generate(), Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    assert_eq!(
        client
            .publish(&announcement(&alice, &server, "one"))
            .await
            .message,
        PURGATORY_OK
    );
    let owner_full = client.publish(&announcement(&alice, &server, "two")).await;
    assert!(
        !owner_full.accepted
            && owner_full
                .message
                .starts_with("rate-limited: this owner created 1"),
        "{owner_full:?}"
    );
    assert!(!server.repo_path(&alice, "two").exists());
    // A new announcement of a repository that exists creates nothing and is not limited.
    let again = announcement_with(&alice, &server, "one", &[], Timestamp::now() + 1);
    assert_eq!(client.publish(&again).await.message, PURGATORY_OK);
    assert_eq!(
        client.publish(&announcement(&bob, &server, "one")).await.message,
        PURGATORY_OK
    );
    let address_full = client.publish(&announcement(&carol, &server, "one")).await;
    assert!(
        !address_full.accepted && address_full.message.contains("from your address within the hour"),
        "{address_full:?}"
    );
    assert!(!server.repo_path(&carol, "one").exists());
}

#[tokio::test]
async fn a_server_at_its_repository_limit_takes_no_new_ones_and_keeps_serving_its_own() {
    let server = Server::start_with(&["--max-repositories", "2"]);
    let (alice, bob) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    for name in ["one", "two"] {
        let answer = client.publish(&announcement(&alice, &server, name)).await;
        assert_eq!(answer.message, PURGATORY_OK, "{name}");
    }
    let full = client.publish(&announcement(&bob, &server, "three")).await;
    assert!(
        !full.accepted
            && full.message == "blocked: this server hosts 2 repositories, its limit, and takes no new ones",
        "{full:?}"
    );
    assert!(!server.repo_path(&bob, "three").exists());
    // Its own repositories still take new announcements.
    let again = announcement_with(&alice, &server, "one", &[], Timestamp::now() + 1);
    assert_eq!(client.publish(&again).await.message, PURGATORY_OK);
}
