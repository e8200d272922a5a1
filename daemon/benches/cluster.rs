//! Several nodes on one PostgreSQL database (not a test): `GRASPD_TEST_POSTGRES_URL=...
//! cargo bench -p graspd --bench cluster` (`eval "$(.ci/postgres start)"` runs a server).
//!
//! Starts two release graspd nodes, A and B, on one fresh database and one git root, and
//! measures
//! 1. live delivery: how long an event published to B takes to reach a live subscriber on A
//!    (EVENT sent to B → EVENT received on A: B's write policy and commit, the notification, A
//!    loading and forwarding it), beside the same on B's own subscriber. Target: p50 ≤ 50 ms;
//! 2. release across nodes: a state held in purgatory, its push through B, and the released
//!    state reaching a subscriber on A (push started → EVENT on A), beside B's own subscriber;
//! 3. combined ingest: 40 connections, half on A and half on B, publishing issues at once.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use nostr::Keys;
use serde_json::json;
use support::ingest::ingest_across;
use support::{Client, Server, announcement, coordinate, event, git_output, state, work_tree_with_commit};

const EVENTS: usize = 300;
const PUSHES: usize = 30;
const CONNECTIONS: usize = 40;
const EVENTS_PER_CONNECTION: usize = 500;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let Some(database) = support::postgres::postgres_database().await else {
        return;
    };
    let git_root = tempfile::tempdir().expect("tempdir");
    let root = git_root.path().to_str().expect("utf-8").to_owned();
    let quiet = support::bench_flags("warn");
    let mut a_args = vec!["--database-url", database.as_str(), "--git-root", root.as_str()];
    a_args.extend(quiet);
    let a = Server::start_with(&a_args);
    let domain = a.domain();
    let mut b_args = a_args.clone();
    b_args.extend(["--domain", domain.as_str()]);
    let b = Server::start_on("127.0.0.2", &b_args);

    let owner = Keys::generate();
    let mut publisher = b.client().await;
    assert!(
        publisher
            .publish(&announcement(&owner, &a, "bench"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "bench");
    let mut on_a = subscriber(&a, &coord).await;
    let mut on_b = subscriber(&b, &coord).await;

    let mut cross = Vec::with_capacity(EVENTS);
    let mut local = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let issue = event(
            &Keys::generate(),
            1621,
            &format!("issue {i}"),
            &[&["a", &coord], &["subject", "bench"]],
        );
        let sent = Instant::now();
        let reply = publisher.publish(&issue).await;
        assert!(reply.accepted, "{}", reply.message);
        let id = issue.id.to_hex();
        local.push(delivered(&mut on_b, &id, sent).await);
        cross.push(delivered(&mut on_a, &id, sent).await);
    }
    let (cross50, cross99) = percentiles(&mut cross);
    let (local50, local99) = percentiles(&mut local);
    println!(
        "live delivery of {EVENTS} events published to B: subscriber on A (other node) p50 {cross50:.2} ms, \
         p99 {cross99:.2} ms; on B (same node) p50 {local50:.2} ms, p99 {local99:.2} ms; \
         target cross-node p50 <= 50 ms, ratio {:.2}",
        cross50 / 50.0
    );

    // Releases: a state held (published to A), its push through B.
    let mut cross = Vec::with_capacity(PUSHES);
    let mut local = Vec::with_capacity(PUSHES);
    for i in 0..PUSHES {
        let owner = Keys::generate();
        let id = format!("release-{i}");
        let (work, oid) = work_tree_with_commit(&id);
        let mut on_a_states = states_subscriber(&a).await;
        let mut on_b_states = states_subscriber(&b).await;
        let mut publisher = a.client().await;
        assert!(publisher.publish(&announcement(&owner, &a, &id)).await.accepted);
        let st = state(&owner, &id, &[("refs/heads/main", &oid)], Some("main"));
        assert!(publisher.publish(&st).await.accepted);
        let url = b.clone_url(&owner, &id);
        let started = Instant::now();
        let path = work.path().to_owned();
        let pushed = tokio::task::spawn_blocking(move || git_output(&path, &["push", "-q", &url, "main"]))
            .await
            .expect("push task");
        assert!(
            pushed.status.success(),
            "{}",
            String::from_utf8_lossy(&pushed.stderr)
        );
        let st_id = st.id.to_hex();
        local.push(delivered(&mut on_b_states, &st_id, started).await);
        cross.push(delivered(&mut on_a_states, &st_id, started).await);
    }
    let (cross50, cross99) = percentiles(&mut cross);
    let (local50, local99) = percentiles(&mut local);
    println!(
        "release of {PUSHES} states pushed through B (push started -> state on a subscriber): on A (other node) \
         p50 {cross50:.2} ms, p99 {cross99:.2} ms; on B (same node) p50 {local50:.2} ms, p99 {local99:.2} ms"
    );

    // Combined ingest: half the connections on each node.
    let batches: Vec<Vec<String>> = (0..CONNECTIONS)
        .map(|c| {
            let keys = Keys::generate();
            (0..EVENTS_PER_CONNECTION)
                .map(|i| {
                    let issue = event(
                        &keys,
                        1621,
                        &format!("issue {c}-{i}"),
                        &[&["a", &coord], &["subject", "bench"]],
                    );
                    json!(["EVENT", issue]).to_string()
                })
                .collect()
        })
        .collect();
    let total = CONNECTIONS * EVENTS_PER_CONNECTION;
    let (rate, accepted) = ingest_across(&[&a, &b], batches).await;
    assert_eq!(accepted, total, "every issue accepted");
    println!(
        "combined ingest on two nodes: {total} events over {CONNECTIONS} connections (half on each) = {rate:.0} events/s"
    );
}

/// A connection subscribed to states, past its EOSE.
async fn states_subscriber(server: &Server) -> Client {
    let mut client = server.client().await;
    client
        .send_raw(&json!(["REQ", "states", {"kinds": [30618], "limit": 0}]).to_string())
        .await;
    assert_eq!(client.next().await[0], "EOSE");
    client
}

/// A connection subscribed to the repository's issues, past its EOSE.
async fn subscriber(server: &Server, coord: &str) -> Client {
    let mut client = server.client().await;
    client
        .send_raw(&json!(["REQ", "live", {"kinds": [1621], "#a": [coord], "limit": 0}]).to_string())
        .await;
    assert_eq!(client.next().await[0], "EOSE");
    client
}

/// Milliseconds from `sent` until `client` receives the event `id`.
async fn delivered(client: &mut Client, id: &str, sent: Instant) -> f64 {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("delivered within 10 s");
        if message[0] == "EVENT" && message[2]["id"] == id {
            return sent.elapsed().as_secs_f64() * 1000.0;
        }
    }
}

fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}
