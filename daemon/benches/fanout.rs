//! Live fan-out (not a test): `cargo bench -p graspd --bench fanout`.
//!
//! Starts the release graspd, opens 1,000 subscriptions over 100 websocket connections (10
//! each), of which 100 (one per connection) ask for a repository's issues and the other 900 for
//! other repositories', then publishes 200 issues on that repository one at a time from another
//! connection. For each issue and each of the 100 matching subscriptions: the time from the
//! publisher's `OK` to the subscription's `EVENT` (0 when the event came first). Target (issue
//! 19): p50 ≤ 5 ms. Also prints the daemon's anonymous memory the subscribed connections took.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nostr::Keys;
use serde_json::json;
use support::{Server, announcement, coordinate, event};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 100;
const SUBSCRIPTIONS_PER_CONNECTION: usize = 10;
const ISSUES: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let server = Server::start_with(&support::bench_flags("warn"));
    let owner = Keys::generate();
    let mut publisher = server.client().await;
    assert!(
        publisher
            .publish(&announcement(&owner, &server, "fanout"))
            .await
            .accepted
    );
    let target = coordinate(&owner, "fanout");

    // Every receipt of a matching EVENT: (issue id, when).
    let (received_tx, mut received) = mpsc::unbounded_channel::<(String, Instant)>();
    let memory_before = server.anon_rss_mib();
    for c in 0..CONNECTIONS {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .expect("connect");
        let (mut tx, mut rx) = ws.split();
        for s in 0..SUBSCRIPTIONS_PER_CONNECTION {
            let coord = if s == 0 {
                target.clone()
            } else {
                format!("30617:{}:other-{c}-{s}", Keys::generate().public_key().to_hex())
            };
            let req = json!(["REQ", format!("s{s}"), {"kinds": [1621], "#a": [coord], "limit": 0}]);
            tx.send(Message::Text(req.to_string().into()))
                .await
                .expect("send");
        }
        let mut eose = 0;
        while eose < SUBSCRIPTIONS_PER_CONNECTION {
            let Some(Ok(Message::Text(text))) = rx.next().await else {
                panic!("subscription connection closed");
            };
            let message: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
            eose += usize::from(message[0] == "EOSE");
        }
        let received_tx = received_tx.clone();
        tokio::spawn(async move {
            let _keep = tx;
            while let Some(Ok(Message::Text(text))) = rx.next().await {
                let at = Instant::now();
                let message: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
                if message[0] == "EVENT"
                    && let Some(id) = message[2]["id"].as_str()
                {
                    let _ = received_tx.send((id.to_owned(), at));
                }
            }
        });
    }

    if let (Some(before), Some(after)) = (memory_before, server.anon_rss_mib()) {
        println!(
            "memory: {:.1} MiB of anonymous memory more with {CONNECTIONS} connections holding {} \
             subscriptions ({:.0} KiB a connection)",
            after - before,
            CONNECTIONS * SUBSCRIPTIONS_PER_CONNECTION,
            (after - before) * 1024.0 / CONNECTIONS as f64
        );
    }

    let mut latencies = Vec::with_capacity(ISSUES * CONNECTIONS);
    for i in 0..ISSUES {
        let issue = event(&Keys::generate(), 1621, &format!("issue {i}"), &[&["a", &target]]);
        let reply = publisher.publish(&issue).await;
        let ok_at = Instant::now();
        assert!(reply.accepted, "{}", reply.message);
        let id = issue.id.to_hex();
        let mut got = 0;
        while got < CONNECTIONS {
            let (event_id, at) = tokio::time::timeout(Duration::from_secs(10), received.recv())
                .await
                .expect("delivered within 10 s")
                .expect("receivers alive");
            assert_eq!(
                event_id, id,
                "only the matching subscriptions hear of it, in order"
            );
            latencies.push(at.saturating_duration_since(ok_at).as_secs_f64() * 1000.0);
            got += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "live fan-out: {} subscriptions open ({CONNECTIONS} matching each issue), {ISSUES} issues: \
         OK -> EVENT p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; target p50 <= 5 ms, ratio {:.2}",
        CONNECTIONS * SUBSCRIPTIONS_PER_CONNECTION,
        at(0.5),
        at(0.99),
        at(1.0),
        at(0.5) / 5.0
    );
}
