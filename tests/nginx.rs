//! End-to-end: the nginx deployment (ARCHITECTURE §7, docs/deployment.md) with real nginx and
//! fcgiwrap running stock `git http-backend`, configured by `graspd nginx-config`, in front of
//! `graspd serve --git-http external`. Every request goes through nginx: the relay over the
//! proxied websocket, pushes and clones through fcgiwrap with grasp-hook reaching the daemon over
//! its socket. Skipped, with a message, where nginx or fcgiwrap is not installed.

mod support;

use std::process::Output;
use std::time::Instant;

use nostr::Keys;
use serde_json::json;
use support::nginx::{self, Front};
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

/// graspd behind nginx, or `None` when the test is skipped.
fn behind_nginx(test: &str) -> Option<(Server, Front)> {
    let binaries = nginx::binaries(test)?;
    let addr = nginx::nginx_addr();
    let server = nginx::start_graspd(addr, &[]);
    let front = Front::start(&binaries, &server, addr);
    Some((server, front))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Publishes (through nginx) an announcement naming nginx's address and a state with `main` at
/// `oid`; both wait in purgatory. Returns (announcement id, state id).
async fn announce(front: &Front, owner: &Keys, identifier: &str, oid: &str) -> (String, String) {
    let mut client = Client::connect(&front.ws_url()).await;
    let ann = nginx::announcement_at(owner, front.addr, identifier);
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    let st = state(owner, identifier, &[("refs/heads/main", oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    (ann.id.to_hex(), st.id.to_hex())
}

#[tokio::test]
async fn relay_refused_and_accepted_pushes_release_and_clone_all_through_nginx() {
    let Some((server, front)) =
        behind_nginx("relay_refused_and_accepted_pushes_release_and_clone_all_through_nginx")
    else {
        return;
    };
    // NIP-11 and the relay, proxied.
    let nip11 = http(front.addr, "GET", "/", &[("Accept", "application/nostr+json")]);
    assert_eq!(nip11.status, 200, "{}", front.logs());
    assert_eq!(nip11.header("content-type"), Some("application/nostr+json"));

    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("first");
    let (ann_id, state_id) = announce(&front, &owner, "flow", &oid).await;
    let url = front.clone_url(&owner, "flow");

    // A push that does not match the state is refused by the hook, reached through fcgiwrap.
    git(work.path(), &["checkout", "-q", "-b", "other"]);
    std::fs::write(work.path().join("other"), "x").expect("write");
    git(work.path(), &["add", "other"]);
    git(work.path(), &["commit", "-q", "-m", "other"]);
    let refused = git_output(work.path(), &["push", &url, "other:refs/heads/main"]);
    assert!(!refused.status.success(), "refused push");
    assert!(
        stderr(&refused).contains("ref refs/heads/main: state") && stderr(&refused).contains("wants"),
        "the pusher sees why: {}\n{}",
        stderr(&refused),
        front.logs()
    );
    let repo = server.repo_path(&owner, "flow");
    assert!(git(&repo, &["for-each-ref"]).is_empty(), "no ref created");

    // The matching push lands, and post-receive releases state and announcement.
    let accepted = git_output(work.path(), &["push", &url, "main"]);
    assert!(
        accepted.status.success(),
        "accepted push: {}\n{}\n{}",
        stderr(&accepted),
        front.logs(),
        server.log()
    );
    assert!(
        stderr(&accepted).contains("released 1 state"),
        "{}",
        stderr(&accepted)
    );
    let mut client = Client::connect(&front.ws_url()).await;
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![state_id]);
    assert_eq!(client.ids(json!({"kinds": [30617]})).await, vec![ann_id]);

    // Clone and protocol v2 (the Git-Protocol header reaches http-backend as GIT_PROTOCOL).
    let clone_dir = tempfile::tempdir().expect("tempdir");
    git(clone_dir.path(), &["clone", "-q", &url, "c"]);
    assert_eq!(git(&clone_dir.path().join("c"), &["rev-parse", "HEAD"]), oid);
    let listed = git(
        clone_dir.path(),
        &["-c", "protocol.version=2", "ls-remote", &url, "refs/heads/main"],
    );
    assert!(listed.starts_with(&oid), "{listed}");

    // The repository page is graspd's, proxied.
    let page = http(front.addr, "GET", &format!("/{}/flow", npub(&owner)), &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("flow"));

    // The deployment checks out.
    let doctor = doctor(&server);
    assert!(
        doctor.status.success(),
        "{}",
        String::from_utf8_lossy(&doctor.stdout)
    );
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("grasp-hook check in") && report.contains("0 failed"),
        "{report}"
    );
}

fn doctor(server: &Server) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_graspd"))
        .arg("doctor")
        .arg("--data-dir")
        .arg(server.data.path())
        .output()
        .expect("run graspd doctor")
}

#[tokio::test]
async fn doctor_reports_a_stopped_daemon_with_a_fix_and_exits_1() {
    let mut server = Server::start_with(&["--git-http", "external"]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "doc"))
            .await
            .accepted
    );
    server.kill9();
    let doctor = doctor(&server);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(1), "{report}");
    assert!(report.contains("FAIL socket"), "{report}");
    assert!(report.contains("fix: graspd is not running"), "{report}");
    assert!(report.contains("FAIL grasp-hook check in"), "{report}");
    assert!(
        report.contains("OK   hooks directory") && report.contains("git config has GRASP-01 [56] keys"),
        "{report}"
    );
}

/// Running `git http-backend` processes serving `root` (their `GIT_PROJECT_ROOT`), from `/proc`.
fn git_backends_serving(root: &std::path::Path) -> Vec<u32> {
    let wanted = format!("GIT_PROJECT_ROOT={}", root.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            running
                && String::from_utf8_lossy(&cmdline).contains("http-backend")
                && environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes())
        })
        .collect()
}

/// A client gone in the middle of a push's body leaves no git process behind nginx either (git
/// http-backend, given CONTENT_LENGTH, spins forever when its input ends before that length).
#[tokio::test]
async fn a_push_whose_client_vanishes_mid_body_leaves_no_git_process_running() {
    use std::io::Write;
    let Some((server, front)) =
        behind_nginx("a_push_whose_client_vanishes_mid_body_leaves_no_git_process_running")
    else {
        return;
    };
    let owner = Keys::generate();
    let (_work, oid) = work_tree_with_commit("cut");
    announce(&front, &owner, "cut", &oid).await;
    let mut stream = std::net::TcpStream::connect(front.addr).expect("connect");
    write!(
        stream,
        "POST /{}/cut.git/git-receive-pack HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-git-receive-pack-request\r\nContent-Length: 1000\r\n\r\n00a4",
        npub(&owner)
    )
    .expect("write");
    let root = server.git_root();
    eventually("git http-backend runs for the request", || {
        let found = !git_backends_serving(&root).is_empty();
        async move { found }
    })
    .await;
    drop(stream);
    eventually("git's input ends and it exits", || {
        let left = git_backends_serving(&root);
        async move { left.is_empty() }
    })
    .await;
}

#[tokio::test]
async fn git_paths_carry_cors_headers_and_answer_options_with_204() {
    let Some((server, front)) = behind_nginx("git_paths_carry_cors_headers_and_answer_options_with_204")
    else {
        return;
    };
    let owner = Keys::generate();
    let (_work, oid) = work_tree_with_commit("cors");
    announce(&front, &owner, "cors", &oid).await;
    let refs = format!("/{}/cors.git/info/refs?service=git-upload-pack", npub(&owner));

    let advertised = http(front.addr, "GET", &refs, &[]);
    assert_eq!(advertised.status, 200, "{}", front.logs());
    assert_eq!(
        advertised.header("content-type"),
        Some("application/x-git-upload-pack-advertisement"),
        "answered by git http-backend"
    );
    let options = http(front.addr, "OPTIONS", &refs, &[("Origin", "https://example.org")]);
    assert_eq!(options.status, 204);
    for response in [&advertised, &options] {
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        assert_eq!(response.header("access-control-allow-methods"), Some("GET, POST"));
        assert_eq!(
            response.header("access-control-allow-headers"),
            Some("Content-Type")
        );
    }
    let missing = http(
        front.addr,
        "GET",
        &format!("/{}/nothing.git/info/refs?service=git-upload-pack", npub(&owner)),
        &[],
    );
    assert_eq!(missing.status, 404, "http-backend: no such repository");
    assert_eq!(
        missing.header("access-control-allow-origin"),
        Some("*"),
        "CORS on errors too"
    );

    // graspd itself serves no git in external mode, and says who does; its pages still work.
    let direct = http(server.addr, "GET", &refs, &[]);
    assert_eq!(direct.status, 404);
    assert!(direct.body.contains("front web server"), "{}", direct.body);
    let page = http(server.addr, "GET", &format!("/{}/cors", npub(&owner)), &[]);
    assert_eq!(page.status, 200);
}

#[tokio::test]
async fn a_50_mb_push_streams_through_nginx_and_fcgiwrap() {
    let Some((server, front)) = behind_nginx("a_50_mb_push_streams_through_nginx_and_fcgiwrap") else {
        return;
    };
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_noise(50, 0x5851_f42d_4c95_7f2d, &[]);
    let (_, state_id) = announce(&front, &owner, "big", &oid).await;
    let started = Instant::now();
    let pushed = git_output(work.path(), &["push", &front.clone_url(&owner, "big"), "main"]);
    let elapsed = started.elapsed();
    assert!(
        pushed.status.success(),
        "50 MB push: {}\n{}",
        stderr(&pushed),
        front.logs()
    );
    println!(
        "50 MiB push through nginx + fcgiwrap + hooks: {:.2} s",
        elapsed.as_secs_f64()
    );
    // nginx warns when it spools a request body to disk; streamed, it never does.
    let logs = front.logs();
    assert!(
        !logs.contains("buffered to a temporary file"),
        "the push is streamed to fcgiwrap, not buffered by nginx:\n{logs}"
    );
    assert_eq!(git(&server.repo_path(&owner, "big"), &["rev-parse", "main"]), oid);
    let mut client = Client::connect(&front.ws_url()).await;
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![state_id]);
}

#[tokio::test]
async fn grasp06_pull_request_repositories_work_through_nginx() {
    let Some(binaries) = nginx::binaries("grasp06_pull_request_repositories_work_through_nginx") else {
        return;
    };
    let addr = nginx::nginx_addr();
    let server = nginx::start_graspd(addr, &["--grasp06"]);
    let front = Front::start(&binaries, &server, addr);
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let (work, oid) = work_tree_with_commit("base");
    announce(&front, &owner, "web", &oid).await;
    let landed = git_output(work.path(), &["push", &front.clone_url(&owner, "web"), "main"]);
    assert!(landed.status.success(), "{}\n{}", stderr(&landed), front.logs());

    // A probe through nginx is empty and leaves nothing on disk.
    let prs_url = format!("http://{addr}/prs/{}/web.git", npub(&contributor));
    let probe = git_output(work.path(), &["ls-remote", &prs_url]);
    assert!(
        probe.status.success() && probe.stdout.is_empty(),
        "{}",
        stderr(&probe)
    );
    assert!(!server.git_root().join("prs").join(npub(&contributor)).exists());

    // The pull request waits; its push to /prs/ through nginx releases it into the owner's
    // repository.
    git(work.path(), &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.path().join("feature"), "x").expect("write");
    git(work.path(), &["add", "feature"]);
    git(work.path(), &["commit", "-q", "-m", "feature"]);
    let tip = git(work.path(), &["rev-parse", "HEAD"]);
    let pr = event(
        &contributor,
        1618,
        "please merge",
        &[
            &["a", &coordinate(&owner, "web")],
            &["c", &tip],
            &["clone", &prs_url],
        ],
    );
    let mut client = Client::connect(&front.ws_url()).await;
    assert_eq!(client.publish(&pr).await.message, PURGATORY_OK);
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    let refused = git_output(work.path(), &["push", &prs_url, "feature:refs/heads/main"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("takes only refs/nostr/<event-id>"),
        "{}",
        stderr(&refused)
    );
    let pushed = git_output(work.path(), &["push", &prs_url, &format!("feature:{ref_name}")]);
    assert!(pushed.status.success(), "{}\n{}", stderr(&pushed), front.logs());
    assert_eq!(client.ids(json!({"kinds": [1618]})).await, vec![pr.id.to_hex()]);
    assert_eq!(
        git(&server.repo_path(&owner, "web"), &["rev-parse", &ref_name]),
        tip
    );
    let fetched = tempfile::tempdir().expect("tempdir");
    git(fetched.path(), &["init", "-q"]);
    git(
        fetched.path(),
        &["fetch", "-q", &front.clone_url(&owner, "web"), &ref_name],
    );
    assert_eq!(git(fetched.path(), &["rev-parse", "FETCH_HEAD"]), tip);

    // doctor covers the /prs/ repository too.
    let doctor = doctor(&server);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "{report}");
    assert!(
        report.contains(&format!("prs/{}/web.git", npub(&contributor))),
        "{report}"
    );
}
