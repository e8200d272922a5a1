//! End-to-end on PostgreSQL (`--database-url postgres://...`): the whole flow of an announcement,
//! a state held in purgatory, a push through the hooks that releases it, and what survives a
//! kill. Each test gets a fresh database on the server `GRASPD_TEST_POSTGRES_URL` names
//! (`eval "$(.ci/postgres start)"`); without it the tests are skipped (and fail under CI).

mod support;

use nostr::Keys;
use serde_json::json;
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

#[tokio::test]
async fn a_push_releases_a_held_state_and_everything_survives_a_kill() {
    let Some(database) = support::postgres::postgres_database().await else {
        return;
    };
    let mut server = Server::start_with(&["--database-url", &database]);
    assert_eq!(server.status_json(&[])["database"], "postgresql");
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("on postgres");
    let mut client = server.client().await;
    let ann = announcement(&owner, &server, "pg");
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    let st = state(&owner, "pg", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);

    // Purgatory lives in the database: a kill loses nothing held.
    server.kill9();
    server.restart();
    let status = server.status_json(&["purgatory"]);
    let held: Vec<&str> = status["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["event_id"].as_str())
        .collect();
    assert!(held.contains(&st.id.to_hex().as_str()), "{status}");

    let url = server.clone_url(&owner, "pg");
    let output = git_output(work.path(), &["push", &url, "main:refs/heads/main"]);
    assert!(
        output.status.success(),
        "push accepted: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut client = server.client().await;
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
    assert_eq!(client.ids(json!({"kinds": [30617]})).await, vec![ann.id.to_hex()]);
    let issue = event(
        &Keys::generate(),
        1621,
        "an issue",
        &[&["a", &coordinate(&owner, "pg")]],
    );
    let reply = client.publish(&issue).await;
    assert!(reply.accepted, "{}", reply.message);

    server.kill9();
    server.restart();
    let mut client = server.client().await;
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
    assert_eq!(
        client.ids(json!({"#a": [coordinate(&owner, "pg")]})).await,
        vec![issue.id.to_hex()]
    );
    let clone = tempfile::tempdir().expect("tempdir");
    git(clone.path(), &["clone", "-q", &url, "c"]);
    assert_eq!(git(&clone.path().join("c"), &["rev-parse", "HEAD"]), oid);
}

/// Two nodes, A on 127.0.0.1 and B on 127.0.0.2, on one database and one git root, serving one
/// domain (A's address).
struct TwoNodes {
    a: Server,
    b: Server,
    git_root: tempfile::TempDir,
}

impl TwoNodes {
    async fn start() -> Option<Self> {
        let database = support::postgres::postgres_database().await?;
        let git_root = tempfile::tempdir().expect("tempdir");
        let root = git_root.path().to_str().expect("utf-8").to_owned();
        let a = Server::start_with(&["--database-url", &database, "--git-root", &root]);
        let domain = a.domain();
        let b = Server::start_on(
            "127.0.0.2",
            &[
                "--database-url",
                &database,
                "--git-root",
                &root,
                "--domain",
                &domain,
            ],
        );
        Some(Self { a, b, git_root })
    }

    fn repo(&self, owner: &Keys, identifier: &str) -> std::path::PathBuf {
        self.git_root
            .path()
            .join(npub(owner))
            .join(format!("{identifier}.git"))
    }
}

/// The issue's two-node flow: an announcement and a state published to A, the push through B
/// authorized against A's held state and released by B, a subscriber on A told of the release;
/// a pull request published to B and its ref pushed through A; status lists both nodes; A killed,
/// B goes on.
#[tokio::test]
async fn two_nodes_share_purgatory_releases_and_subscribers() {
    let Some(mut nodes) = TwoNodes::start().await else {
        return;
    };
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("two nodes");

    let mut watcher = nodes.a.client().await;
    watcher
        .send_raw(&json!(["REQ", "states", {"kinds": [30618]}]).to_string())
        .await;
    assert_eq!(watcher.next().await[0], "EOSE");

    let mut on_a = nodes.a.client().await;
    let ann = announcement(&owner, &nodes.a, "shared");
    assert_eq!(on_a.publish(&ann).await.message, PURGATORY_OK);
    let st = state(&owner, "shared", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(on_a.publish(&st).await.message, PURGATORY_OK);

    let b_url = nodes.b.clone_url(&owner, "shared");
    let output = git_output(work.path(), &["push", &b_url, "main:refs/heads/main"]);
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "B authorized the push against A's state: {said}"
    );
    assert!(said.contains("released 1 state"), "B released it: {said}");

    let delivered = tokio::time::timeout(DEADLINE, watcher.next())
        .await
        .expect("A's subscriber hears of B's release");
    assert_eq!(delivered[0], "EVENT");
    assert_eq!(delivered[2]["id"], st.id.to_hex().as_str());
    eventually("A's purgatory forgot the released state", || {
        let entries = nodes.a.status_json(&["purgatory"])["entries"].clone();
        async move { entries.as_array().is_some_and(Vec::is_empty) }
    })
    .await;

    // A pull request published to B, its ref pushed through A.
    let contributor = Keys::generate();
    std::fs::write(work.path().join("feature"), "a change").expect("write");
    git(work.path(), &["add", "feature"]);
    git(work.path(), &["commit", "-q", "-m", "feature"]);
    let tip = git(work.path(), &["rev-parse", "HEAD"]);
    let pr = event(
        &contributor,
        1618,
        "please merge",
        &[&["a", &coordinate(&owner, "shared")], &["c", &tip]],
    );
    let mut on_b = nodes.b.client().await;
    assert_eq!(on_b.publish(&pr).await.message, PURGATORY_OK);
    let a_url = nodes.a.clone_url(&owner, "shared");
    let refspec = format!("HEAD:refs/nostr/{}", pr.id.to_hex());
    let output = git_output(work.path(), &["push", &a_url, &refspec]);
    assert!(
        output.status.success(),
        "A authorized the ref against B's pull request: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(on_b.ids(json!({"kinds": [1618]})).await, vec![pr.id.to_hex()]);

    let nodes_seen = || {
        let status = nodes.b.status_json(&[]);
        let ids: Vec<String> = status["nodes"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|n| n["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (status["node_id"].as_str().unwrap_or_default().to_owned(), ids)
    };
    let (b_id, seen) = nodes_seen();
    assert_eq!(seen.len(), 2, "both nodes live: {seen:?}");
    assert!(seen.contains(&b_id));
    let leads = |server: &Server| server.status_json(&[])["leader"].as_bool() == Some(true);
    eventually("one node leads", || {
        let one = leads(&nodes.a) != leads(&nodes.b);
        async move { one }
    })
    .await;

    // A dies mid-flight; B serves on, and takes a new state and its push.
    nodes.a.kill9();
    std::fs::write(work.path().join("after"), "after A died").expect("write");
    git(work.path(), &["add", "after"]);
    git(work.path(), &["commit", "-q", "-m", "after"]);
    let newer = git(work.path(), &["rev-parse", "HEAD"]);
    let st2 = state_at(
        &owner,
        "shared",
        &[("refs/heads/main", &newer)],
        Some("main"),
        st.created_at + 1,
    );
    let mut on_b = nodes.b.client().await;
    assert_eq!(on_b.publish(&st2).await.message, PURGATORY_OK);
    let output = git_output(work.path(), &["push", &b_url, "HEAD:refs/heads/main"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(on_b.ids(json!({"kinds": [30618]})).await, vec![st2.id.to_hex()]);
    assert_eq!(
        git(&nodes.repo(&owner, "shared"), &["rev-parse", "refs/heads/main"]),
        newer
    );
    // A's leader lock went with its connection: B takes over the sweeps.
    eventually("B leads once A is gone", || {
        let b_leads = leads(&nodes.b);
        async move { b_leads }
    })
    .await;
}

/// The git-data sync fetches an identifier once across the nodes: a state held on the cluster
/// whose data is on an independent server C is fetched by one node, and the other finds it on
/// the shared disk.
#[tokio::test]
async fn the_git_data_sync_fetches_an_identifier_once_across_nodes() {
    // No delays: B queues the identifier the moment A's notification arrives, while A fetches.
    const FAST_SYNC: [&str; 5] = [
        "--sync-default-delay-secs",
        "0",
        "--sync-immediate-delay-ms",
        "0",
        "--sync-private-addresses",
    ];
    let Some(database) = support::postgres::postgres_database().await else {
        return;
    };
    let git_root = tempfile::tempdir().expect("tempdir");
    let root = git_root.path().to_str().expect("utf-8").to_owned();
    let mut shared = vec!["--database-url", &database, "--git-root", &root];
    shared.extend(FAST_SYNC);
    let a = Server::start_with(&shared);
    let domain = a.domain();
    let mut on_b = shared.clone();
    on_b.extend(["--domain", &domain]);
    let b = Server::start_on("127.0.0.2", &on_b);
    let c = Server::start_on("127.0.0.3", &FAST_SYNC);

    let owner = Keys::generate();
    let id = "fetched-once";
    let clone = ["clone", &a.clone_url(&owner, id), &c.clone_url(&owner, id)];
    let relays = ["relays", &a.ws_url(), &c.ws_url()];
    let ann = event(&owner, 30617, "", &[&["d", id], &clone, &relays]);
    let (work, oid) = work_tree_with_commit("only on c");
    let st = state(&owner, id, &[("refs/heads/main", &oid)], Some("main"));
    let mut on_c = c.client().await;
    assert_eq!(on_c.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(on_c.publish(&st).await.message, PURGATORY_OK);
    git(work.path(), &["push", "-q", &c.clone_url(&owner, id), "main"]);

    let mut on_a = a.client().await;
    assert_eq!(on_a.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(on_a.publish(&st).await.message, PURGATORY_OK);
    eventually(
        "the cluster fetches the state's data from C and releases it",
        || {
            let a = &a;
            let want = vec![st.id.to_hex()];
            async move { a.client().await.ids(json!({"kinds": [30618]})).await == want }
        },
    )
    .await;
    // Both nodes were told of the state (B by A's notification) and queued it; one fetched.
    let fetches = |server: &Server| server.log().matches("sync fetch brought objects").count();
    assert_eq!(fetches(&a) + fetches(&b), 1, "A:\n{}\nB:\n{}", a.log(), b.log());
    let repo = git_root.path().join(npub(&owner)).join(format!("{id}.git"));
    assert_eq!(git(&repo, &["rev-parse", "refs/heads/main"]), oid);
}

/// A dies (with the git processes it started, as systemd stops a service) in the middle of a
/// push through it. Whatever the push got to, nothing A acknowledged is lost: B holds or serves
/// it, and the state ends up released through B, by B's own push, or by B's take-over of what A
/// left half done (data on disk, state still waiting).
#[tokio::test]
async fn a_node_killed_mid_push_loses_nothing_and_the_other_finishes() {
    let Some(mut nodes) = TwoNodes::start().await else {
        return;
    };
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_noise(8, 7, &[]);
    let mut on_a = nodes.a.client().await;
    let ann = announcement(&owner, &nodes.a, "killed");
    assert_eq!(on_a.publish(&ann).await.message, PURGATORY_OK);
    let st = state(&owner, "killed", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(on_a.publish(&st).await.message, PURGATORY_OK);

    let a_url = nodes.a.clone_url(&owner, "killed");
    let path = work.path().to_owned();
    let pusher = std::thread::spawn(move || git_output(&path, &["push", &a_url, "main:refs/heads/main"]));
    // Not a wait for anything: the kill lands at some instant of the push.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    nodes.a.kill9_with_children();
    let _ = pusher.join();

    let mut on_b = nodes.b.client().await;
    let held: Vec<String> = nodes.b.status_json(&["purgatory"])["entries"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|entry| entry["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for acknowledged in [&ann, &st] {
        let id = acknowledged.id.to_hex();
        let served = on_b.ids(json!({"ids": [id]})).await.len() == 1;
        assert!(
            served || held.contains(&id),
            "{id} is neither served nor held on B"
        );
    }

    let b_url = nodes.b.clone_url(&owner, "killed");
    let output = git_output(work.path(), &["push", &b_url, "main:refs/heads/main"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("B serves the state", || {
        let b = &nodes.b;
        let want = vec![st.id.to_hex()];
        async move { b.client().await.ids(json!({"kinds": [30618]})).await == want }
    })
    .await;
    assert_eq!(
        git(&nodes.repo(&owner, "killed"), &["rev-parse", "refs/heads/main"]),
        oid
    );
}

/// What a node left half done when it died: its push's data is in the shared repository and the
/// state still waits (it died between receive-pack's ref update and the release). The leader
/// notices the node's heartbeat stop (or takes over as leader) and finishes the release.
#[tokio::test]
async fn the_leader_finishes_a_release_a_dead_node_left_undone() {
    let Some(mut nodes) = TwoNodes::start().await else {
        return;
    };
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("half done");
    let mut on_a = nodes.a.client().await;
    let ann = announcement(&owner, &nodes.a, "half-done");
    assert_eq!(on_a.publish(&ann).await.message, PURGATORY_OK);
    let st = state(&owner, "half-done", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(on_a.publish(&st).await.message, PURGATORY_OK);
    nodes.a.kill9_with_children();
    push_without_hooks(
        work.path(),
        &nodes.repo(&owner, "half-done"),
        &["main:refs/heads/main"],
    );
    eventually("B releases the state A left waiting", || {
        let b = &nodes.b;
        let want = vec![st.id.to_hex()];
        async move { b.client().await.ids(json!({"kinds": [30618]})).await == want }
    })
    .await;
}
