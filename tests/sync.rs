//! End-to-end: purgatory git-data sync between two real daemons on different loopback
//! addresses (127.0.0.1 and 127.0.0.2). The push goes to A only; B fetches what its waiting
//! events need from the other clone URLs and releases them.

mod support;

use nostr::{Event, Keys};
use serde_json::json;
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";
const FAST_SYNC: &[&str] = &[
    "--sync-default-delay-secs",
    "0",
    "--sync-immediate-delay-ms",
    "100",
    // Both daemons are on loopback.
    "--sync-private-addresses",
];

/// An announcement listing both servers (and any extra clone URLs first).
fn shared_announcement(owner: &Keys, a: &Server, b: &Server, id: &str, extra_clone: &[&str]) -> Event {
    let mut clone = vec!["clone".to_owned()];
    clone.extend(extra_clone.iter().map(|s| s.to_string()));
    clone.push(a.clone_url(owner, id));
    clone.push(b.clone_url(owner, id));
    let relays = ["relays".to_owned(), a.ws_url(), b.ws_url()];
    let clone: Vec<&str> = clone.iter().map(String::as_str).collect();
    let relays: Vec<&str> = relays.iter().map(String::as_str).collect();
    event(owner, 30617, "", &[&["d", id], &clone, &relays])
}

async fn served_ids(server: &Server, filter: serde_json::Value) -> Vec<String> {
    server.client().await.ids(filter).await
}

#[tokio::test]
async fn a_state_waiting_on_b_is_released_by_fetching_from_a() {
    let a = Server::start_on("127.0.0.1", FAST_SYNC);
    let b = Server::start_on("127.0.0.2", FAST_SYNC);
    let owner = Keys::generate();
    let ann = shared_announcement(&owner, &a, &b, "mirror", &[]);
    let (work, oid) = work_tree_with_commit("only on a");
    let st = state(&owner, "mirror", &[("refs/heads/main", &oid)], Some("main"));
    let mut client_a = a.client().await;
    assert_eq!(client_a.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(client_a.publish(&st).await.message, PURGATORY_OK);
    git(
        work.path(),
        &["push", "-q", &a.clone_url(&owner, "mirror"), "main"],
    );
    // The same events reach B, which has no git data: they wait, and B fetches it from A.
    let mut client_b = b.client().await;
    assert_eq!(client_b.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(client_b.publish(&st).await.message, PURGATORY_OK);
    assert_eq!(
        served_ids(&a, json!({"kinds": [30618]})).await,
        vec![st.id.to_hex()]
    );

    eventually("B releases the state after syncing from A", || {
        let b = &b;
        let want = st.id.to_hex();
        async move { served_ids(b, json!({"kinds": [30618]})).await == vec![want] }
    })
    .await;
    let b_repo = b.repo_path(&owner, "mirror");
    assert_eq!(git(&b_repo, &["rev-parse", "refs/heads/main"]), oid);
    assert_eq!(git(&b_repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    // A clone from B equals A's.
    let clone_dir = tempfile::tempdir().expect("tempdir");
    git(
        clone_dir.path(),
        &["clone", "-q", &b.clone_url(&owner, "mirror"), "c"],
    );
    assert_eq!(git(&clone_dir.path().join("c"), &["rev-parse", "HEAD"]), oid);
    assert_eq!(
        served_ids(&b, json!({"kinds": [30617]})).await,
        vec![ann.id.to_hex()]
    );
}

#[tokio::test]
async fn an_unreachable_url_backs_off_and_a_reachable_one_still_wins() {
    // Nothing listens on 127.0.0.3:9 (discard port, closed here).
    let a = Server::start_on("127.0.0.1", FAST_SYNC);
    let b = Server::start_on("127.0.0.2", FAST_SYNC);
    let owner = Keys::generate();
    let dead = format!("http://127.0.0.3:9/{}/dead.git", npub(&owner));
    let ann = shared_announcement(&owner, &a, &b, "dead", &[&dead]);
    let (work, oid) = work_tree_with_commit("x");
    let st = state(&owner, "dead", &[("refs/heads/main", &oid)], None);
    let mut client_a = a.client().await;
    assert_eq!(client_a.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(client_a.publish(&st).await.message, PURGATORY_OK);
    git(work.path(), &["push", "-q", &a.clone_url(&owner, "dead"), "main"]);
    // The same events reach B, which has no git data: they wait, and B fetches it from A.
    let mut client_b = b.client().await;
    assert_eq!(client_b.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(client_b.publish(&st).await.message, PURGATORY_OK);
    eventually("B syncs from A despite the dead URL", || {
        let b = &b;
        let want = st.id.to_hex();
        async move { served_ids(b, json!({"kinds": [30618]})).await == vec![want] }
    })
    .await;
    assert!(
        b.log().contains("sync fetch failed"),
        "the dead URL was tried and failed"
    );
}

#[tokio::test]
async fn a_pull_request_whose_commit_is_on_another_server_is_fetched_from_its_clone_tag() {
    let a = Server::start_on("127.0.0.1", FAST_SYNC);
    let mut b_flags = FAST_SYNC.to_vec();
    b_flags.extend(["--sync-refs-check-secs", "1"]);
    let b = Server::start_on("127.0.0.2", &b_flags);
    let owner = Keys::generate();
    let contributor = Keys::generate();
    // B hosts the repository; the contributor's commit lives only on A (a fork there).
    let mut client_b = b.client().await;
    assert!(client_b.publish(&announcement(&owner, &b, "prs")).await.accepted);
    let mut client_a = a.client().await;
    assert!(
        client_a
            .publish(&announcement(&contributor, &a, "fork"))
            .await
            .accepted
    );
    let (work, tip) = work_tree_with_commit("contribution");
    assert_eq!(
        client_a
            .publish(&state(&contributor, "fork", &[("refs/heads/main", &tip)], None))
            .await
            .message,
        PURGATORY_OK
    );
    git(
        work.path(),
        &["push", "-q", &a.clone_url(&contributor, "fork"), "main"],
    );

    let coord = coordinate(&owner, "prs");
    let fork_url = a.clone_url(&contributor, "fork");
    let pr = event(
        &contributor,
        1618,
        "please",
        &[
            &["a", &coord],
            &["c", &tip],
            &["clone", &fork_url],
            &["subject", "x"],
        ],
    );
    assert_eq!(client_b.publish(&pr).await.message, PURGATORY_OK);
    eventually("B fetches the PR commit from A and releases the PR", || {
        let b = &b;
        let want = pr.id.to_hex();
        async move { served_ids(b, json!({"kinds": [1618]})).await == vec![want] }
    })
    .await;
    let repo = b.repo_path(&owner, "prs");
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    assert_eq!(git(&repo, &["rev-parse", &ref_name]), tip);

    // B's repository is replaced by an empty one: the refs check finds the pull request's ref
    // missing, and fetches its commit again from the pull request's clone URL.
    std::fs::remove_dir_all(&repo).expect("remove");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "--bare"]);
    eventually(
        "B fetches the commit again and puts the pull request ref back",
        || {
            let (repo, ref_name, tip) = (repo.clone(), ref_name.clone(), tip.clone());
            async move {
                git_output(&repo, &["rev-parse", "-q", "--verify", &ref_name]).stdout
                    == format!("{tip}\n").into_bytes()
            }
        },
    )
    .await;
}

#[tokio::test]
async fn clone_urls_on_private_addresses_are_not_fetched_by_default() {
    let a = Server::start_on("127.0.0.1", FAST_SYNC);
    // B keeps the default: no fetching from loopback, private or link-local addresses.
    let b = Server::start_on("127.0.0.2", &FAST_SYNC[..4]);
    let owner = Keys::generate();
    let ann = shared_announcement(&owner, &a, &b, "guarded", &[]);
    let (work, oid) = work_tree_with_commit("only on a");
    let st = state(&owner, "guarded", &[("refs/heads/main", &oid)], Some("main"));
    let mut client_a = a.client().await;
    client_a.publish(&ann).await;
    client_a.publish(&st).await;
    git(
        work.path(),
        &["push", "-q", &a.clone_url(&owner, "guarded"), "main"],
    );
    let mut client_b = b.client().await;
    assert_eq!(client_b.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(client_b.publish(&st).await.message, PURGATORY_OK);

    eventually("B refuses to fetch from 127.0.0.1 and says why", || {
        let log = b.log();
        async move { log.contains("127.0.0.1, a non-public address") && log.contains("--sync-private-addresses") }
    })
    .await;
    assert!(served_ids(&b, json!({"kinds": [30618]})).await.is_empty());
    let b_repo = b.repo_path(&owner, "guarded");
    let has_commit = std::process::Command::new("git")
        .arg("-C")
        .arg(&b_repo)
        .args(["cat-file", "-e", &oid])
        .status()
        .expect("git cat-file");
    assert!(!has_commit.success(), "no object was fetched");
}

#[tokio::test]
async fn a_repository_that_lost_its_data_is_realigned_from_another_server_by_the_refs_check() {
    let mut flags = FAST_SYNC.to_vec();
    flags.extend(["--sync-refs-check-secs", "1"]);
    let a = Server::start_on("127.0.0.1", &flags);
    let b = Server::start_on("127.0.0.2", FAST_SYNC);
    let owner = Keys::generate();
    let ann = shared_announcement(&owner, &a, &b, "restored", &[]);
    let (work, oid) = work_tree_with_commit("kept on b");
    let st = state(&owner, "restored", &[("refs/heads/main", &oid)], Some("main"));
    for server in [&a, &b] {
        let mut client = server.client().await;
        assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
        assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
        if server.addr == a.addr {
            git(
                work.path(),
                &["push", "-q", &a.clone_url(&owner, "restored"), "main"],
            );
        }
    }
    eventually("B fetches the commit from A", || {
        let b = &b;
        let want = st.id.to_hex();
        async move { served_ids(b, json!({"kinds": [30618]})).await == vec![want] }
    })
    .await;
    // A's repository is replaced by an empty one (a disk restored from an old backup): its
    // state is still served, its refs lag it, and the objects are only on B.
    let a_repo = a.repo_path(&owner, "restored");
    std::fs::remove_dir_all(&a_repo).expect("remove");
    std::fs::create_dir_all(&a_repo).expect("mkdir");
    git(&a_repo, &["init", "-q", "--bare"]);
    // Until the check repairs it, status shows the lag.
    let shown = a.status_json(&["repo", &format!("{}/restored", npub(&owner))]);
    let aligned = git_output(&a_repo, &["rev-parse", "-q", "--verify", "refs/heads/main"])
        .status
        .success();
    assert!(shown["refs_lag_state"] == true || aligned, "{shown}");
    eventually(
        "A fetches the commit from B and aligns its refs with the state",
        || {
            let a_repo = a_repo.clone();
            let oid = oid.clone();
            async move {
                git_output(&a_repo, &["rev-parse", "--verify", "-q", "refs/heads/main"]).stdout
                    == format!("{oid}\n").into_bytes()
            }
        },
    )
    .await;
    assert_eq!(git(&a_repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert!(
        a.log().contains("lagging repository aligned with its state"),
        "{}",
        a.log()
    );
}
