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
