//! End-to-end: GRASP-06 contributors' pull request repositories at `/prs/<npub>/<id>.git`, with
//! real git over HTTP through the embedded front, `git http-backend`, the hooks and the daemon.

mod support;

use std::path::{Path, PathBuf};

use nostr::{Event, Keys};
use serde_json::json;
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

fn grasp06() -> Server {
    Server::start_with(&["--grasp06"])
}

fn prs_url(server: &Server, contributor: &Keys, identifier: &str) -> String {
    format!(
        "http://{}/prs/{}/{identifier}.git",
        server.domain(),
        npub(contributor)
    )
}

fn prs_root(server: &Server) -> PathBuf {
    server.git_root().join("prs")
}

fn prs_path(server: &Server, contributor: &Keys, identifier: &str) -> PathBuf {
    prs_root(server)
        .join(npub(contributor))
        .join(format!("{identifier}.git"))
}

/// A pull request by `contributor` for `owner`'s `identifier`, its commits in the contributor's
/// `/prs/` repository here. No `p`, `subject` or `r` tags: GRASP-06 does not require them.
fn pull_request(server: &Server, contributor: &Keys, owner: &Keys, identifier: &str, tip: &str) -> Event {
    let clone = prs_url(server, contributor, identifier);
    event(
        contributor,
        1618,
        "please merge",
        &[
            &["a", &coordinate(owner, identifier)],
            &["c", tip],
            &["clone", &clone],
        ],
    )
}

fn push(work: &Path, url: &str, refspec: &str) -> std::process::Output {
    git_output(work, &["push", url, refspec])
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn refs_at(path: &Path) -> String {
    git(path, &["for-each-ref", "--format=%(refname) %(objectname)"])
}

/// Everything under `dir`, as paths relative to it (empty when it does not exist).
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            found.push(path.strip_prefix(dir).expect("under").display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

/// The owner's repository, announced and holding `main` (a served repository a PR can target).
async fn served_repository(server: &Server, owner: &Keys, identifier: &str) {
    let (work, oid) = work_tree_with_commit("base");
    let mut client = server.client().await;
    assert_eq!(
        client
            .publish(&announcement(owner, server, identifier))
            .await
            .message,
        PURGATORY_OK
    );
    let st = state(owner, identifier, &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let pushed = push(work.path(), &server.clone_url(owner, identifier), "main");
    assert!(pushed.status.success(), "{}", stderr(&pushed));
}

#[tokio::test]
async fn a_prs_clone_before_any_push_is_empty_and_leaves_nothing_on_disk() {
    let server = grasp06();
    let contributor = Keys::generate();
    let into = tempfile::tempdir().expect("tempdir");
    let url = prs_url(&server, &contributor, "web");
    let cloned = git_output(into.path(), &["clone", "-q", &url, "copy"]);
    assert!(cloned.status.success(), "{}", stderr(&cloned));
    assert_eq!(refs_at(&into.path().join("copy")), "");
    let listed = git_output(into.path(), &["ls-remote", &url]);
    assert!(listed.status.success() && listed.stdout.is_empty());
    // Protocol v0 too, and the push advertisement.
    let v0 = git_output(into.path(), &["-c", "protocol.version=0", "ls-remote", &url]);
    assert!(v0.status.success() && v0.stdout.is_empty(), "{}", stderr(&v0));
    let advertised = http(
        server.addr,
        "GET",
        &format!(
            "/prs/{}/web.git/info/refs?service=git-receive-pack",
            npub(&contributor)
        ),
        &[],
    );
    assert_eq!(advertised.status, 200);
    assert_eq!(tree(&prs_root(&server)), Vec::<String>::new(), "nothing on disk");
}

#[tokio::test]
async fn event_first_a_push_to_prs_releases_the_pull_request_into_the_owners_repository() {
    let server = grasp06();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    served_repository(&server, &owner, "web").await;
    let (work, tip) = work_tree_with_commit("feature");
    let pr = pull_request(&server, &contributor, &owner, "web", &tip);
    let mut client = server.client().await;
    assert_eq!(client.publish(&pr).await.message, PURGATORY_OK);
    assert!(client.ids(json!({"kinds": [1618]})).await.is_empty());
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());

    // Another tip is refused, naming the expected one, and changes nothing.
    std::fs::write(work.path().join("x"), "x").expect("write");
    git(work.path(), &["add", "x"]);
    git(work.path(), &["commit", "-q", "-m", "other"]);
    let url = prs_url(&server, &contributor, "web");
    let wrong = push(work.path(), &url, &format!("HEAD:{ref_name}"));
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains(&tip[..7]), "{}", stderr(&wrong));
    assert_eq!(refs_at(&prs_path(&server, &contributor, "web")), "");

    let pushed = push(work.path(), &url, &format!("{tip}:{ref_name}"));
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(client.ids(json!({"kinds": [1618]})).await, vec![pr.id.to_hex()]);
    let owners = server.repo_path(&owner, "web");
    assert_eq!(git(&owners, &["rev-parse", &ref_name]), tip);
    assert_eq!(
        refs_at(&prs_path(&server, &contributor, "web")),
        format!("{ref_name} {tip}")
    );
    // Fetchable from the owner's repository over HTTP.
    let fetcher = tempfile::tempdir().expect("tempdir");
    git(fetcher.path(), &["init", "-q"]);
    git(
        fetcher.path(),
        &["fetch", "-q", &server.clone_url(&owner, "web"), &ref_name],
    );
    assert_eq!(git(fetcher.path(), &["rev-parse", "FETCH_HEAD"]), tip);

    // A normal push to the owner's repository (a placeholder there) never writes into /prs/.
    let before = tree(&prs_root(&server));
    let placeholder = format!("refs/nostr/{}", "d".repeat(64));
    let owner_push = push(
        work.path(),
        &server.clone_url(&owner, "web"),
        &format!("HEAD:{placeholder}"),
    );
    assert!(owner_push.status.success(), "{}", stderr(&owner_push));
    assert_eq!(tree(&prs_root(&server)), before);
    assert!(!refs_at(&prs_path(&server, &contributor, "web")).contains(&placeholder));
}

#[tokio::test]
async fn push_first_the_ref_waits_and_the_pull_request_is_served_at_once() {
    let server = grasp06();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    served_repository(&server, &owner, "app").await;
    let (work, tip) = work_tree_with_commit("feature");
    let pr = pull_request(&server, &contributor, &owner, "app", &tip);
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    let pushed = push(
        work.path(),
        &prs_url(&server, &contributor, "app"),
        &format!("main:{ref_name}"),
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let status = server.status_json(&[]);
    assert_eq!(status["placeholders"], json!(1), "{status}");

    let mut client = server.client().await;
    let answer = client.publish(&pr).await;
    assert!(answer.accepted && answer.message.is_empty(), "{answer:?}");
    assert_eq!(client.ids(json!({"kinds": [1618]})).await, vec![pr.id.to_hex()]);
    assert_eq!(
        git(&server.repo_path(&owner, "app"), &["rev-parse", &ref_name]),
        tip
    );
    let status = server.status_json(&[]);
    assert_eq!(status["placeholders"], json!(0), "{status}");

    // A pull request update (1619) with a new tip, event first, follows the same path.
    std::fs::write(work.path().join("more"), "more").expect("write");
    git(work.path(), &["add", "more"]);
    git(work.path(), &["commit", "-q", "-m", "more"]);
    let new_tip = git(work.path(), &["rev-parse", "HEAD"]);
    let clone = prs_url(&server, &contributor, "app");
    let update = event(
        &contributor,
        1619,
        "",
        &[
            &["a", &coordinate(&owner, "app")],
            &["E", &pr.id.to_hex()],
            &["c", &new_tip],
            &["clone", &clone],
        ],
    );
    assert_eq!(client.publish(&update).await.message, PURGATORY_OK);
    let update_ref = format!("refs/nostr/{}", update.id.to_hex());
    let pushed = push(work.path(), &clone, &format!("HEAD:{update_ref}"));
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(
        client.ids(json!({"kinds": [1619]})).await,
        vec![update.id.to_hex()]
    );
    assert_eq!(
        git(&server.repo_path(&owner, "app"), &["rev-parse", &update_ref]),
        new_tip
    );
}

#[tokio::test]
async fn without_a_hosted_target_the_pull_request_is_served_from_prs_alone() {
    let server = grasp06();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let (work, tip) = work_tree_with_commit("feature");
    // The owner's repository is hosted elsewhere: the event waits for the push to /prs/ only.
    let pr = pull_request(&server, &contributor, &owner, "lib", &tip);
    let mut client = server.client().await;
    assert_eq!(client.publish(&pr).await.message, PURGATORY_OK);
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    let pushed = push(
        work.path(),
        &prs_url(&server, &contributor, "lib"),
        &format!("{tip}:{ref_name}"),
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(client.ids(json!({"kinds": [1618]})).await, vec![pr.id.to_hex()]);
    assert!(!server.repo_path(&owner, "lib").exists());

    // A pull request naming another contributor's /prs/ repository is refused as before.
    let stranger = Keys::generate();
    let borrowed = event(
        &stranger,
        1618,
        "mine",
        &[
            &["a", &coordinate(&owner, "lib")],
            &["c", &tip],
            &["clone", &prs_url(&server, &contributor, "lib")],
        ],
    );
    let answer = client.publish(&borrowed).await;
    assert!(!answer.accepted, "{answer:?}");
    assert!(
        answer.message.contains("names no repository hosted"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn push_first_at_another_tip_deletes_the_ref_and_the_event_stays_unreleased() {
    let server = grasp06();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let (work, tip) = work_tree_with_commit("feature");
    let pr = pull_request(&server, &contributor, &owner, "tips", &"e".repeat(40));
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    let pushed = push(
        work.path(),
        &prs_url(&server, &contributor, "tips"),
        &format!("{tip}:{ref_name}"),
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let mut client = server.client().await;
    assert_eq!(client.publish(&pr).await.message, PURGATORY_OK);
    assert_eq!(refs_at(&prs_path(&server, &contributor, "tips")), "");
    assert!(client.ids(json!({"kinds": [1618]})).await.is_empty());
}

#[tokio::test]
async fn a_prs_repository_refuses_every_ref_but_a_pull_request_ref_and_changes_nothing() {
    let server = grasp06();
    let contributor = Keys::generate();
    let (work, _) = work_tree_with_commit("feature");
    let url = prs_url(&server, &contributor, "only");
    let branch = push(work.path(), &url, "main:refs/heads/main");
    assert!(!branch.status.success());
    assert!(
        stderr(&branch).contains("takes only refs/nostr/<event-id>"),
        "{}",
        stderr(&branch)
    );
    let malformed = push(work.path(), &url, "main:refs/nostr/not-an-id");
    assert!(!malformed.status.success());
    assert!(
        stderr(&malformed).contains("64 lowercase hex"),
        "{}",
        stderr(&malformed)
    );
    // Both at once with a good one: refused whole.
    let mixed = git_output(
        work.path(),
        &[
            "push",
            &url,
            &format!("main:refs/nostr/{}", "a".repeat(64)),
            "main:refs/tags/v1",
        ],
    );
    assert!(!mixed.status.success());
    let repo = prs_path(&server, &contributor, "only");
    assert_eq!(refs_at(&repo), "", "nothing landed");
    let status = server.status_json(&[]);
    assert_eq!(status["placeholders"], json!(0), "{status}");
}

#[tokio::test]
async fn a_ref_whose_pull_request_never_comes_is_deleted_with_its_repository() {
    let server = Server::start_with(&["--grasp06", "--grasp06-ref-expiry-secs", "2"]);
    let contributor = Keys::generate();
    let (work, _) = work_tree_with_commit("feature");
    let pushed = push(
        work.path(),
        &prs_url(&server, &contributor, "gone"),
        &format!("main:refs/nostr/{}", "b".repeat(64)),
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let repo = prs_path(&server, &contributor, "gone");
    assert!(repo.is_dir());
    eventually("the expired ref and its empty repository are removed", || {
        let repo = repo.clone();
        async move { !repo.exists() }
    })
    .await;
    assert_eq!(server.status_json(&[])["placeholders"], json!(0));
}

#[tokio::test]
async fn hostile_prs_addresses_are_refused_and_create_nothing() {
    let server = grasp06();
    let contributor = Keys::generate();
    let good = npub(&contributor);
    let mut bad_checksum = good.clone();
    let last = bad_checksum.pop().expect("char");
    bad_checksum.push(if last == 'q' { 'p' } else { 'q' });
    let paths = [
        format!("/prs/{good}/%2e%2e.git/info/refs?service=git-upload-pack"),
        format!("/prs/{good}/..%2f..%2fx.git/info/refs?service=git-upload-pack"),
        format!("/prs/{good}/a%0ab.git/info/refs?service=git-upload-pack"),
        format!("/prs/{good}/.hidden.git/info/refs?service=git-upload-pack"),
        format!("/prs/{bad_checksum}/web.git/info/refs?service=git-upload-pack"),
        format!("/prs/{good}/web.git/config"),
        format!("/prs/{good}/web.git/../../x"),
        "/prs/npub1nope/web.git/git-receive-pack".to_owned(),
        format!("/prs/{good}/web.git"),
    ];
    for path in &paths {
        let method = if path.ends_with("git-receive-pack") {
            "POST"
        } else {
            "GET"
        };
        let response = http(server.addr, method, path, &[]);
        assert_eq!(response.status, 404, "{path}");
    }
    let (work, _) = work_tree_with_commit("feature");
    let hostile = push(
        work.path(),
        &format!("http://{}/prs/{good}/%2e%2e.git", server.domain()),
        &format!("main:refs/nostr/{}", "c".repeat(64)),
    );
    assert!(!hostile.status.success());
    assert_eq!(tree(&prs_root(&server)), Vec::<String>::new());
}

#[tokio::test]
async fn with_grasp06_off_prs_is_404_and_nip11_does_not_list_it() {
    let off = Server::start();
    let contributor = Keys::generate();
    let path = format!(
        "/prs/{}/web.git/info/refs?service=git-upload-pack",
        npub(&contributor)
    );
    assert_eq!(http(off.addr, "GET", &path, &[]).status, 404);
    let post = format!("/prs/{}/web.git/git-receive-pack", npub(&contributor));
    assert_eq!(http(off.addr, "POST", &post, &[]).status, 404);
    let nip11 = |server: &Server| -> serde_json::Value {
        let response = http(server.addr, "GET", "/", &[("Accept", "application/nostr+json")]);
        serde_json::from_str(&response.body).expect("json")
    };
    let grasps = |doc: &serde_json::Value| doc["supported_grasps"].to_string();
    assert!(!grasps(&nip11(&off)).contains("GRASP-06"));
    assert!(!off.git_root().join("prs").exists());

    let on = grasp06();
    let doc = nip11(&on);
    assert!(grasps(&doc).contains("GRASP-06"), "{doc}");
    assert!(
        doc["repo_acceptance_criteria"]
            .as_str()
            .is_some_and(|c| c.contains("/prs/<npub>/<identifier>.git")),
        "{doc}"
    );
    assert_eq!(http(on.addr, "GET", &path, &[]).status, 200);
}

#[tokio::test]
async fn the_start_up_scan_removes_refs_no_pull_request_explains() {
    let mut server = grasp06();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let (work, tip) = work_tree_with_commit("feature");
    // One ref that belongs (its pull request is served) ...
    let pr = pull_request(&server, &contributor, &owner, "scan", &tip);
    let kept = format!("refs/nostr/{}", pr.id.to_hex());
    let url = prs_url(&server, &contributor, "scan");
    let pushed = push(work.path(), &url, &format!("main:{kept}"));
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let mut client = server.client().await;
    assert!(client.publish(&pr).await.accepted);
    // ... and two that came around the hooks (or whose placeholder was lost).
    let repo = prs_path(&server, &contributor, "scan");
    let orphan = format!("refs/nostr/{}", "f".repeat(64));
    push_without_hooks(
        work.path(),
        &repo,
        &[&format!("main:{orphan}"), "main:refs/heads/sneaked"],
    );
    // A repository left with no refs at all goes too.
    let empty = prs_path(&server, &contributor, "empty");
    git(
        prs_root(&server).as_path(),
        &["init", "-q", "--bare", empty.to_str().expect("utf-8")],
    );
    let aged = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for dir in [empty.clone(), empty.join("objects")] {
        std::fs::File::open(&dir)
            .and_then(|f| f.set_modified(aged))
            .expect("age the repository");
    }

    server.restart();
    // The port is bound before the start-up catch-up ends: wait for the scan.
    let want = format!("{kept} {tip}");
    eventually("the start-up scan removes what no pull request explains", || {
        let (repo, empty, want) = (repo.clone(), empty.clone(), want.clone());
        async move { refs_at(&repo) == want && !empty.exists() }
    })
    .await;
}
