//! End-to-end: pushes over real git smart HTTP through the embedded front, `git http-backend`,
//! grasp-hook and the daemon's HookService (GRASP-01 [36], [39], [45]).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use nostr::{Keys, Timestamp};
use serde_json::json;
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

/// An announced repository with a state in purgatory naming `main` and `dev` at the work tree's
/// commit, HEAD on `dev`.
struct Fixture {
    server: Server,
    owner: Keys,
    work: tempfile::TempDir,
    oid: String,
    state_id: String,
    announcement_id: String,
}

async fn announced_with_pending_state(identifier: &str) -> Fixture {
    announced_with_pending_state_on(Server::start_with_metrics(&[]), identifier).await
}

async fn announced_with_pending_state_on(server: Server, identifier: &str) -> Fixture {
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("first");
    let mut client = server.client().await;
    let ann = announcement(&owner, &server, identifier);
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    let st = state(
        &owner,
        identifier,
        &[("refs/heads/main", &oid), ("refs/heads/dev", &oid)],
        Some("dev"),
    );
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    Fixture {
        server,
        owner,
        work,
        oid,
        state_id: st.id.to_hex(),
        announcement_id: ann.id.to_hex(),
    }
}

fn push(fixture: &Fixture, identifier: &str, refspecs: &[&str]) -> std::process::Output {
    let url = fixture.server.clone_url(&fixture.owner, identifier);
    let mut args = vec!["push", url.as_str()];
    args.extend_from_slice(refspecs);
    git_output(fixture.work.path(), &args)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn push_matching_the_pending_state_is_accepted_and_releases_state_and_announcement() {
    let f = announced_with_pending_state("flow").await;
    let output = push(&f, "flow", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(output.status.success(), "push accepted: {}", stderr(&output));
    assert!(
        stderr(&output).contains("released 1 state"),
        "pusher sees the release: {}",
        stderr(&output)
    );

    let mut client = f.server.client().await;
    assert_eq!(
        client.ids(json!({"kinds": [30618]})).await,
        vec![f.state_id.clone()]
    );
    assert_eq!(
        client.ids(json!({"kinds": [30617]})).await,
        vec![f.announcement_id.clone()]
    );

    // A clone over HTTP equals the state, HEAD follows the state's HEAD tag.
    let clone_dir = tempfile::tempdir().expect("tempdir");
    let url = f.server.clone_url(&f.owner, "flow");
    git(clone_dir.path(), &["clone", "-q", &url, "c"]);
    let checkout = clone_dir.path().join("c");
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), f.oid);
    assert_eq!(git(&checkout, &["symbolic-ref", "HEAD"]), "refs/heads/dev");
    let repo = f.server.repo_path(&f.owner, "flow");
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/dev");
}

#[tokio::test]
async fn state_delivered_to_a_live_subscriber_when_the_push_lands() {
    let f = announced_with_pending_state("live").await;
    let mut watcher = f.server.client().await;
    watcher
        .send_raw(&json!(["REQ", "live", {"kinds": [30618]}]).to_string())
        .await;
    assert_eq!(watcher.next().await[0], "EOSE");
    let output = push(&f, "live", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let delivered = watcher.next().await;
    assert_eq!(delivered[0], "EVENT");
    assert_eq!(delivered[2]["id"], f.state_id.as_str());
}

#[tokio::test]
async fn push_that_does_not_match_the_state_is_refused_and_changes_nothing() {
    let f = announced_with_pending_state("wrong").await;
    std::fs::write(f.work.path().join("other"), "x").expect("write");
    git(f.work.path(), &["add", "other"]);
    git(f.work.path(), &["commit", "-q", "-m", "second"]);
    let other = git(f.work.path(), &["rev-parse", "HEAD"]);
    let output = push(&f, "wrong", &["HEAD:refs/heads/main"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("ref refs/heads/main: state") && err.contains("wants"),
        "{err}"
    );
    assert!(err.contains(&other[..7]), "names what the push has: {err}");

    let repo = f.server.repo_path(&f.owner, "wrong");
    assert!(git(&repo, &["for-each-ref"]).is_empty(), "no ref created");
    let probe = git_output(&repo, &["cat-file", "-e", &other]);
    assert!(
        !probe.status.success(),
        "quarantined objects of a refused push never enter the repository"
    );
    let mut client = f.server.client().await;
    assert!(
        client.ids(json!({"kinds": [30618]})).await.is_empty(),
        "state still waits"
    );
}

#[tokio::test]
async fn ref_outside_the_state_may_not_be_created_but_may_be_deleted() {
    let f = announced_with_pending_state("refs").await;
    let output = push(
        &f,
        "refs",
        &[
            "main:refs/heads/main",
            "main:refs/heads/dev",
            "main:refs/heads/extra",
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("ref refs/heads/extra: not in the state"),
        "{}",
        stderr(&output)
    );

    // Land the state, then put a stray ref in by hand and delete it over HTTP.
    let output = push(&f, "refs", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let repo = f.server.repo_path(&f.owner, "refs");
    git(&repo, &["update-ref", "refs/heads/stray", &f.oid]);
    let output = push(&f, "refs", &[":refs/heads/stray"]);
    assert!(
        output.status.success(),
        "deleting a ref the state does not list: {}",
        stderr(&output)
    );
    let output = push(&f, "refs", &[":refs/heads/main"]);
    assert!(
        !output.status.success(),
        "deleting a ref the state lists is refused"
    );
    assert!(
        stderr(&output).contains("cannot be deleted"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn push_without_any_state_is_refused_with_a_hint() {
    let server = Server::start();
    let owner = Keys::generate();
    let (work, _) = work_tree_with_commit("x");
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "nostate"))
            .await
            .accepted
    );
    let output = git_output(
        work.path(),
        &["push", &server.clone_url(&owner, "nostate"), "main"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("publish the state event before pushing"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_state_by_a_listed_maintainer_authorizes_the_owners_repository() {
    let server = Server::start();
    let owner = Keys::generate();
    let maintainer = Keys::generate();
    let stranger = Keys::generate();
    let (work, oid) = work_tree_with_commit("m");
    let mut client = server.client().await;
    let ann = announcement_with(&owner, &server, "team", &[&maintainer], Timestamp::now());
    assert!(client.publish(&ann).await.accepted);
    // The stranger's state is refused outright, so it can never authorize a push.
    let ok = client
        .publish(&state(&stranger, "team", &[("refs/heads/main", &oid)], None))
        .await;
    assert!(!ok.accepted);
    let output = git_output(work.path(), &["push", &server.clone_url(&owner, "team"), "main"]);
    assert!(!output.status.success(), "no maintainer state yet");

    let st = state(&maintainer, "team", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let output = git_output(work.path(), &["push", &server.clone_url(&owner, "team"), "main"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
}

#[tokio::test]
async fn malformed_pull_request_ref_is_refused_and_unknown_event_is_a_placeholder() {
    let f = announced_with_pending_state("prs").await;
    let output = push(&f, "prs", &["main:refs/nostr/not-an-event-id"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("64 lowercase hex"),
        "{}",
        stderr(&output)
    );
    let placeholder = "a".repeat(64);
    let output = push(&f, "prs", &[&format!("main:refs/nostr/{placeholder}")]);
    assert!(
        output.status.success(),
        "unknown event: placeholder accepted: {}",
        stderr(&output)
    );
}

#[tokio::test]
async fn daemon_unreachable_means_the_push_is_refused() {
    let f = announced_with_pending_state("closed").await;
    let repo = f.server.repo_path(&f.owner, "closed");
    // The hooks find the socket in their environment (GRASPD_SOCKET from graspd's git front):
    // take it away from under that name.
    let socket = f.server.socket();
    std::fs::rename(&socket, socket.with_extension("moved")).expect("move the socket");
    let output = push(&f, "closed", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(!output.status.success(), "fail closed");
    assert!(
        stderr(&output).contains(&socket.display().to_string()),
        "names the socket: {}",
        stderr(&output)
    );
    assert!(git(&repo, &["for-each-ref"]).is_empty());
}

#[tokio::test]
async fn push_that_landed_while_the_daemon_was_down_is_processed_at_start() {
    let mut f = announced_with_pending_state("down").await;
    f.server.kill9();
    // The data lands with nobody to report it (hooks bypassed, as if post-receive never ran).
    let repo = f.server.repo_path(&f.owner, "down");
    push_without_hooks(
        f.work.path(),
        &repo,
        &["main:refs/heads/main", "main:refs/heads/dev"],
    );
    f.server.restart();
    let mut client = f.server.client().await;
    assert_eq!(
        client.ids(json!({"kinds": [30618]})).await,
        vec![f.state_id.clone()]
    );
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/dev");
}

/// The kill soak's fetch stopped half-way (seed 2026, round 4): the sync's objects landed, and
/// graspd was killed before it set the refs, leaving objects and no ref (and a ref lock). At
/// start the data on disk is processed though the repository has no ref yet.
#[tokio::test]
async fn objects_a_killed_fetch_left_without_refs_are_released_at_start() {
    let mut f = announced_with_pending_state("fetched").await;
    f.server.kill9();
    let repo = f.server.repo_path(&f.owner, "fetched");
    let work = f.work.path().to_string_lossy().into_owned();
    git(&repo, &["fetch", "-q", "--no-write-fetch-head", &work, "main"]);
    assert_eq!(git(&repo, &["for-each-ref"]), "", "objects only");
    std::fs::create_dir_all(repo.join("refs/heads")).expect("refs dir");
    std::fs::write(repo.join("refs/heads/main.lock"), "").expect("lock");
    left_ago(&repo.join("refs/heads/main.lock"), Duration::from_secs(120));
    f.server.restart();
    eventually("the state is released", || {
        let (server, want) = (&f.server, vec![f.state_id.clone()]);
        async move { server.client().await.ids(json!({"kinds": [30618]})).await == want }
    })
    .await;
    assert_eq!(git(&repo, &["rev-parse", "refs/heads/main"]), f.oid);
}

/// The kill soak's pull request push stopped half-way (seed 2026, round 5): git took the ref,
/// graspd was killed before post-receive reported it. At start the ref becomes a placeholder,
/// so it expires if its event never comes; also when housekeeping packed it meanwhile (round 483
/// of the long run).
#[tokio::test]
async fn a_pull_request_ref_a_killed_push_left_unreported_becomes_a_placeholder() {
    let mut f = announced_with_pending_state_on(
        Server::start_with(&["--purgatory-expiry-secs", "4"]),
        "unreported",
    )
    .await;
    f.server.kill9();
    let repo = f.server.repo_path(&f.owner, "unreported");
    let packed = format!("refs/nostr/{}", "6".repeat(64));
    push_without_hooks(f.work.path(), &repo, &[&format!("main:{packed}")]);
    git(&repo, &["pack-refs", "--all"]);
    let loose = format!("refs/nostr/{}", "7".repeat(64));
    push_without_hooks(f.work.path(), &repo, &[&format!("main:{loose}")]);
    f.server.restart();
    eventually("the refs wait as placeholders", || {
        let placeholders = f.server.status_json(&[])["placeholders"].clone();
        async move { placeholders == json!(2) }
    })
    .await;
    eventually("they expire, their events never having come", || {
        let gone = git(&repo, &["for-each-ref", "refs/nostr"]).is_empty();
        async move { gone }
    })
    .await;
}

/// Sets `path`'s modification time `ago` in the past, as if a process had left it then.
fn left_ago(path: &std::path::Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(std::time::SystemTime::now() - ago))
        .expect("set modification time");
}

/// The kill soak's orphaned release: the data of a waiting state is on disk, and its release
/// fails at start-up because a killed push's ref lock is in the way (not yet old enough to be
/// called stale). Nothing is missing, so no fetch would ever run the procedure again: the
/// git-data sync retries it on the data here, with backoff, and the lock, stale by then, goes.
#[tokio::test]
async fn a_release_that_failed_on_data_already_here_is_retried() {
    let server = Server::start_with(&["--sync-default-delay-secs", "0"]);
    let mut f = announced_with_pending_state_on(server, "orphan").await;
    f.server.kill9();
    let repo = f.server.repo_path(&f.owner, "orphan");
    push_without_hooks(f.work.path(), &repo, &["main:refs/heads/main"]);
    let lock = repo.join("refs/heads/dev.lock");
    std::fs::write(&lock, "").expect("lock");
    left_ago(&lock, Duration::from_secs(5));
    f.server.restart();
    eventually("the state is applied once the lock is stale", || {
        let dev = git_output(&repo, &["rev-parse", "--verify", "-q", "refs/heads/dev"]);
        let applied = String::from_utf8_lossy(&dev.stdout).trim() == f.oid;
        async move { applied }
    })
    .await;
    assert!(!lock.exists(), "the stale lock was removed");
    let mut client = f.server.client().await;
    assert_eq!(
        client.ids(json!({"kinds": [30618]})).await,
        vec![f.state_id.clone()]
    );
}

/// A push killed while it held a ref lock leaves the lock behind, and git never removes it: every
/// later push of that ref would fail. An allowed push clears its refs' stale locks first.
/// Whether process `pid` is running (not gone, not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// git http-backend, given CONTENT_LENGTH, spins forever at 100% CPU when its input ends before
/// that length. A push cut short by graspd's death must end git instead.
#[tokio::test]
async fn a_push_cut_short_by_a_killed_daemon_leaves_no_git_process_running() {
    let mut fixture = announced_with_pending_state("cut").await;
    let path = format!("/{}/cut.git/git-receive-pack", npub(&fixture.owner));
    let mut stream = std::net::TcpStream::connect(fixture.server.addr).expect("connect");
    // A receive-pack request whose body stops inside its first pkt-line; the connection stays.
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-git-receive-pack-request\r\n\
         Content-Length: 1000\r\n\r\n00a4"
    )
    .expect("write");
    let mut git = Vec::new();
    eventually("git http-backend runs for the request", || {
        let server_pid = fixture.server.descendants().first().copied();
        git = fixture
            .server
            .descendants()
            .into_iter()
            .filter(|pid| Some(*pid) != server_pid)
            .collect();
        let found = !git.is_empty();
        async move { found }
    })
    .await;
    fixture.server.kill9();
    eventually("git's input ends and it exits", || {
        let left = git.iter().any(|pid| running(*pid));
        async move { !left }
    })
    .await;
    drop(stream);
}

#[tokio::test]
async fn a_stale_ref_lock_left_by_a_killed_push_does_not_block_the_next_push() {
    let f = announced_with_pending_state("locked").await;
    let repo = f.server.repo_path(&f.owner, "locked");
    std::fs::create_dir_all(repo.join("refs/heads")).expect("refs dir");
    let stale = repo.join("refs/heads/main.lock");
    std::fs::write(&stale, "").expect("lock");
    left_ago(&stale, Duration::from_secs(120));
    let output = push(&f, "locked", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(output.status.success(), "push accepted: {}", stderr(&output));
    assert!(!stale.exists());
    assert_eq!(git(&repo, &["rev-parse", "refs/heads/main"]), f.oid);
}

#[tokio::test]
async fn post_receive_report_spooled_while_unreachable_is_processed_after_restart() {
    let mut f = announced_with_pending_state("spool").await;
    // pre-receive reaches the daemon; post-receive does not (a daemon that died in between).
    // graspd's git front gives git this node's hooks directory, so the post-receive there is
    // replaced; graspd puts its own back at start.
    let hook = hook_binary();
    let script = format!(
        "#!/bin/sh\nGRASPD_SOCKET=/nonexistent/graspd.sock exec {} post-receive\n",
        hook.display()
    );
    let post = f.server.data.path().join("hooks/post-receive");
    std::fs::remove_file(&post).expect("remove the hook link");
    std::fs::write(&post, script).expect("write hook");
    Command::new("chmod")
        .arg("755")
        .arg(&post)
        .status()
        .expect("chmod");

    let output = push(&f, "spool", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(
        output.status.success(),
        "post-receive never fails a push: {}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("recorded"),
        "pusher told it was spooled: {}",
        stderr(&output)
    );
    let spooled = std::fs::read_dir(f.server.data.path().join("spool"))
        .expect("spool dir")
        .count();
    assert_eq!(spooled, 1);
    let mut client = f.server.client().await;
    assert!(
        client.ids(json!({"kinds": [30618]})).await.is_empty(),
        "not processed yet"
    );

    f.server.restart();
    let mut client = f.server.client().await;
    assert_eq!(
        client.ids(json!({"kinds": [30618]})).await,
        vec![f.state_id.clone()]
    );
    let left = std::fs::read_dir(f.server.data.path().join("spool"))
        .expect("spool dir")
        .count();
    assert_eq!(left, 0, "spool drained");
}

#[test]
fn install_hooks_brings_a_hand_made_repository_under_graspd_idempotently() {
    let data = tempfile::tempdir().expect("tempdir");
    let owner = Keys::generate();
    let repo = data.path().join("repos").join(npub(&owner)).join("byhand.git");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "--bare"]);
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_graspd"))
            .arg("install-hooks")
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .output()
            .expect("run install-hooks");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dry = run(&["--dry-run"]);
    assert!(dry.contains("would:") && dry.contains("dry run"), "{dry}");
    assert!(
        git_output(&repo, &["config", "--get", "core.hooksPath"])
            .stdout
            .is_empty(),
        "dry run writes nothing"
    );

    let first = run(&[]);
    assert!(
        first.contains("1 repository") && first.contains("core.hooksPath"),
        "{first}"
    );
    let hooks_dir = data.path().join("hooks");
    assert_eq!(
        git(&repo, &["config", "--get", "core.hooksPath"]),
        hooks_dir.display().to_string()
    );
    assert_eq!(
        git(&repo, &["config", "--get", "uploadpack.allowTipSHA1InWant"]),
        "true"
    );
    assert!(git(&repo, &["config", "--get", "graspd.socket"]).ends_with("graspd.sock"));
    assert!(hooks_dir.join("pre-receive").exists() && hooks_dir.join("post-receive").exists());

    let second = run(&[]);
    assert!(second.contains("; 0 changes"), "idempotent: {second}");
}

#[tokio::test]
async fn garbage_on_the_grpc_socket_is_refused_and_the_daemon_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = announced_with_pending_state("garbage").await;
    let mut stream = tokio::net::UnixStream::connect(f.server.socket())
        .await
        .expect("connect socket");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02 garbage")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    // Still serving hooks: a real push goes through.
    let output = push(&f, "garbage", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn hook_with_malformed_stdin_refuses_with_a_clear_message() {
    let mut child = Command::new(hook_binary())
        .arg("pre-receive")
        .env("GRASPD_SOCKET", "/nonexistent/graspd.sock")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run grasp-hook");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"not a ref update line\n")
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("line 1"), "{err}");
}

/// Packs in a bare repository.
fn pack_count(repo: &std::path::Path) -> usize {
    std::fs::read_dir(repo.join("objects/pack"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}

/// Git's `gc` check runs in the daemon after the push, not inside it: graspd's repositories set
/// `receive.autogc=false`, and the daemon's housekeeping packs a repository git finds due.
#[tokio::test]
async fn housekeeping_runs_after_the_push_instead_of_inside_it() {
    let f = announced_with_pending_state("tidy").await;
    let output = push(&f, "tidy", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(output.status.success(), "first push: {}", stderr(&output));
    let server = &f.server;

    let repo = server.repo_path(&f.owner, "tidy");
    assert_eq!(git(&repo, &["config", "receive.autogc"]), "false");
    // Git finds a repository with more than one pack due for `gc`.
    git(&repo, &["config", "gc.autoPackLimit", "1"]);
    let packs = || pack_count(&repo);
    assert_eq!(packs(), 1, "the first push kept its pack");
    // The count moves when a `git maintenance` run exits (after any repack).
    let runs = || {
        server
            .metrics()
            .body
            .lines()
            .find_map(|l| l.strip_prefix("graspd_maintenance_ok_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually("the first push's check ran", || {
        let done = runs() == 1;
        async move { done }
    })
    .await;
    assert_eq!(packs(), 1, "one pack is not due for gc");

    let work = f.work.path();
    std::fs::write(work.join("README"), "second").expect("write");
    git(work, &["commit", "-qam", "second"]);
    let second = git(work, &["rev-parse", "HEAD"]);
    // Newer than the fixture's state, even within the same second.
    let later = Timestamp::from(Timestamp::now().as_secs() + 1);
    let refs = [
        ("refs/heads/main", second.as_str()),
        ("refs/heads/dev", second.as_str()),
    ];
    let st = state_at(&f.owner, "tidy", &refs, Some("dev"), later);
    let mut client = server.client().await;
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let output = push(&f, "tidy", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(output.status.success(), "second push: {}", stderr(&output));
    assert!(
        !stderr(&output).to_lowercase().contains("auto packing"),
        "no gc inside the push: {}",
        stderr(&output)
    );

    eventually("the daemon packed the repository's two packs into one", || {
        let done = runs() == 2 && packs() == 1;
        async move { done }
    })
    .await;
    assert_eq!(git(&repo, &["rev-parse", "main"]), second);
    assert_eq!(git(&repo, &["fsck", "--no-progress"]), "");
}

/// Repositories nobody pushes to are checked too: a hand-made repository whose packs piled up
/// is packed by the periodic sweep.
#[tokio::test]
async fn the_periodic_sweep_packs_a_repository_nobody_pushes_to() {
    let server = Server::start_with(&["--housekeeping-interval-secs", "1"]);
    let owner = Keys::generate();
    let repo = server.repo_path(&owner, "idle");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "--bare"]);
    for round in ["one", "two"] {
        let file = repo.join(format!("{round}.txt"));
        std::fs::write(&file, round).expect("write");
        let oid = git(&repo, &["hash-object", "-w", file.to_str().expect("utf-8")]);
        git(&repo, &["update-ref", &format!("refs/tags/{round}"), &oid]);
        git(&repo, &["repack", "-q"]);
    }
    git(&repo, &["config", "gc.autoPackLimit", "1"]);
    let packs = || pack_count(&repo);
    assert_eq!(packs(), 2);
    eventually("the sweep packed the idle repository", || {
        let done = packs() == 1;
        async move { done }
    })
    .await;
}

#[tokio::test]
async fn a_push_larger_than_the_limit_is_refused_while_received_and_leaves_nothing() {
    let server = Server::start_with(&[
        "--max-push-bytes",
        "200000",
        "--grasp06",
        "--max-pr-push-bytes",
        "100000",
    ]);
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_noise(1, 7, &[]);
    let mut client = server.client().await;
    assert_eq!(
        client
            .publish(&announcement(&owner, &server, "big"))
            .await
            .message,
        PURGATORY_OK
    );
    let st = state(&owner, "big", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let pushed = git_output(work.path(), &["push", &server.clone_url(&owner, "big"), "main"]);
    assert!(!pushed.status.success());
    assert!(
        stderr(&pushed).contains("pack exceeds maximum allowed size"),
        "{}",
        stderr(&pushed)
    );
    let repo = server.repo_path(&owner, "big");
    assert_eq!(git(&repo, &["for-each-ref"]), "");
    assert_eq!(
        git(&repo, &["count-objects", "-v"])
            .lines()
            .find(|l| l.starts_with("size-pack:"))
            .map(str::to_owned),
        Some("size-pack: 0".to_owned()),
        "nothing of the pack kept"
    );
    // 150 kB: under the owner repositories' limit, over the /prs/ repositories' own.
    let small = tempfile::tempdir().expect("tempdir");
    git(small.path(), &["init", "-q", "-b", "main"]);
    write_noise(&small.path().join("noise.bin"), 150_000, 3);
    git(small.path(), &["add", "noise.bin"]);
    git(small.path(), &["commit", "-q", "-m", "small"]);
    let small_oid = git(small.path(), &["rev-parse", "HEAD"]);
    let st = state_at(
        &owner,
        "big",
        &[("refs/heads/main", &small_oid)],
        Some("main"),
        Timestamp::now() + 1,
    );
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let pushed = git_output(small.path(), &["push", &server.clone_url(&owner, "big"), "main"]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let contributor = Keys::generate();
    let prs = format!("http://{}/prs/{}/big.git", server.domain(), npub(&contributor));
    let pushed = git_output(
        small.path(),
        &["push", &prs, &format!("main:refs/nostr/{}", "a".repeat(64))],
    );
    assert!(!pushed.status.success());
    assert!(
        stderr(&pushed).contains("pack exceeds maximum allowed size"),
        "{}",
        stderr(&pushed)
    );
    // The same limit holds a push of pull request refs alone into the owner's repository, which
    // anyone may send: git takes it whole (under the owner's limit), the hook measures it.
    let contribution = tempfile::tempdir().expect("tempdir");
    git(contribution.path(), &["init", "-q", "-b", "main"]);
    write_noise(&contribution.path().join("noise.bin"), 150_000, 5);
    git(contribution.path(), &["add", "noise.bin"]);
    git(contribution.path(), &["commit", "-q", "-m", "contribution"]);
    let owner_url = server.clone_url(&owner, "big");
    let pr_ref = format!("main:refs/nostr/{}", "b".repeat(64));
    let pushed = git_output(contribution.path(), &["push", &owner_url, &pr_ref]);
    assert!(!pushed.status.success());
    assert!(
        stderr(&pushed).contains("this push carries 14")
            && stderr(&pushed).contains(
                "KiB of objects; this server takes at most 97.7 KiB in a push of pull request refs"
            ),
        "{}",
        stderr(&pushed)
    );
    assert_eq!(
        git(&repo, &["for-each-ref", "refs/nostr"]),
        "",
        "no pull request ref landed"
    );
    let tiny = work_tree_with_commit("a small fix").0;
    let pushed = git_output(tiny.path(), &["push", &owner_url, &pr_ref]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
}

#[tokio::test]
async fn pushes_of_pull_request_refs_beyond_the_hourly_share_are_refused() {
    let f = announced_with_pending_state_on(
        Server::start_with(&[
            "--max-pr-pushes-per-hour-per-address",
            "2",
            "--max-pr-pushes-per-hour-per-owner",
            "3",
        ]),
        "busy",
    )
    .await;
    let url = f.server.clone_url(&f.owner, "busy");
    // graspd trusts X-Forwarded-For from a proxy on this machine, as from nginx.
    let push_from = |address: Option<&str>, n: u8| {
        let mut args = Vec::new();
        let header;
        if let Some(address) = address {
            header = format!("http.extraHeader=X-Forwarded-For: {address}");
            args.extend(["-c", header.as_str()]);
        }
        let refspec = format!("main:refs/nostr/{}", n.to_string().repeat(64));
        args.extend(["push", url.as_str(), refspec.as_str()]);
        git_output(f.work.path(), &args)
    };
    for n in 1..=2 {
        let pushed = push_from(None, n);
        assert!(pushed.status.success(), "push {n}: {}", stderr(&pushed));
    }
    let third = push_from(None, 3);
    assert!(!third.status.success());
    assert!(
        stderr(&third).contains(
            "2 pushes of pull request refs came from your address within the hour, the limit; try again later"
        ),
        "{}",
        stderr(&third)
    );
    let elsewhere = push_from(Some("192.0.2.9"), 4);
    assert!(elsewhere.status.success(), "{}", stderr(&elsewhere));
    let owner_full = push_from(Some("192.0.2.10"), 5);
    assert!(!owner_full.status.success());
    assert!(
        stderr(&owner_full)
            .contains("this owner's repositories took 3 pushes of pull request refs within the hour"),
        "{}",
        stderr(&owner_full)
    );
    // The maintainers' own pushes are not counted, nor held back.
    let maintainer = push(&f, "busy", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(maintainer.status.success(), "{}", stderr(&maintainer));
}

#[tokio::test]
async fn placeholders_beyond_the_per_repository_limit_are_refused_with_what_to_do() {
    let f = announced_with_pending_state_on(
        Server::start_with(&["--max-placeholders-per-repo", "1"]),
        "capped",
    )
    .await;
    let first = push(&f, "capped", &[&format!("main:refs/nostr/{}", "1".repeat(64))]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = push(&f, "capped", &[&format!("main:refs/nostr/{}", "2".repeat(64))]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already holds 1 pull request refs waiting for their events")
            && stderr(&second).contains("publish the pull request event first"),
        "{}",
        stderr(&second)
    );
    let status = f.server.status_json(&[]);
    assert_eq!(status["placeholders"], json!(1), "{status}");
}

#[tokio::test]
async fn the_objects_of_an_expired_placeholder_are_pruned_at_once() {
    let f = announced_with_pending_state_on(Server::start_with(&["--purgatory-expiry-secs", "3"]), "pruned")
        .await;
    let landed = push(&f, "pruned", &["main:refs/heads/main", "main:refs/heads/dev"]);
    assert!(landed.status.success(), "{}", stderr(&landed));
    let repo = f.server.repo_path(&f.owner, "pruned");
    let size_pack_kib = |repo: &std::path::Path| -> u64 {
        git(repo, &["count-objects", "-v"])
            .lines()
            .find_map(|l| l.strip_prefix("size-pack: "))
            .and_then(|n| n.parse().ok())
            .expect("size-pack")
    };
    // 1 MiB that only a placeholder reaches.
    let (noise, _) = work_tree_with_noise(1, 11, &[]);
    let placeholder = format!("refs/nostr/{}", "9".repeat(64));
    let pushed = git_output(
        noise.path(),
        &[
            "push",
            &f.server.clone_url(&f.owner, "pruned"),
            &format!("main:{placeholder}"),
        ],
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(size_pack_kib(&repo) >= 1024);
    eventually("the placeholder expires and its objects are pruned", || {
        let repo = repo.clone();
        async move { size_pack_kib(&repo) < 100 }
    })
    .await;
    assert_eq!(
        git(&repo, &["rev-parse", "refs/heads/main"]),
        f.oid,
        "the rest stays"
    );
    let fsck = git_output(&repo, &["fsck", "--connectivity-only"]);
    assert!(fsck.status.success(), "{}", stderr(&fsck));
}
