//! The event-sync benchmark's core, shared by `cargo bench -p graspd --bench event_sync` (100,000
//! events) and a bounded run among the tests: one graspd holds `n` issues of a repository, a
//! second graspd hosting the same repository (and already holding `shared` of them) is told of
//! the first one's relay, through a counting proxy, and syncs the rest: by NIP-77, or by REQ
//! pages when the proxy refuses NIP-77.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nostr::{Event, Keys, Timestamp};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::relays::{Proxy, ProxyOptions};
use super::*;

/// Ingest as fast as the client sends, and the event sync on with a short refresh.
const FLAGS: &[&str] = &[
    "--max-new-repos-per-hour-per-owner",
    "0",
    "--max-new-repos-per-hour-per-address",
    "0",
    "--event-burst",
    "10000000",
    "--events-per-minute",
    "100000000",
    "--sync-private-addresses",
    "--event-sync-refresh-secs",
    "1",
    "--log",
    "graspd=info,warn",
];
const ON: &[(&str, &str)] = &[("GRASPD_NO_EVENT_SYNC", "false")];

/// What one sync cost.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Events the target lacked and received.
    pub synced: usize,
    /// From the announcement naming the source's relay to the last event stored.
    pub seconds: f64,
    /// From the same moment to the end of the first full pass over the source's history.
    pub pass_seconds: f64,
    /// Websocket text bytes both ways through the proxy.
    pub bytes: u64,
    /// Messages graspd sent to the relay (REQ, NEG-OPEN, NEG-MSG, CLOSE, ...).
    pub round_trips: u64,
    /// The target's peak resident memory (file pages of its memory-mapped database included).
    pub target_rss_mib: f64,
    /// The target's anonymous resident memory at the end (heap, stacks).
    pub target_anon_mib: f64,
}

/// `n` issues of `owner`'s repository, one second apart (so REQ pages by `until` are exact),
/// the newest now.
pub fn issues(owner: &Keys, identifier: &str, n: usize) -> Vec<Event> {
    let author = Keys::generate();
    let coordinate = coordinate(owner, identifier);
    let now = Timestamp::now().as_secs();
    (0..n)
        .map(|i| {
            let at = Timestamp::from_secs(now - (n - i) as u64);
            event_at(&author, 1621, &format!("issue {i}"), &[&["a", &coordinate]], at)
        })
        .collect()
}

/// Publishes `events` pipelined (a window of 256 in flight) and checks every OK.
pub async fn publish_all(url: &str, events: &[Event]) {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    let (mut tx, mut rx) = ws.split();
    let mut acked = 0;
    let mut sent = 0;
    while acked < events.len() {
        while sent < events.len() && sent - acked < 256 {
            let message = json!(["EVENT", serde_json::to_value(&events[sent]).expect("json")]);
            tx.send(Message::Text(message.to_string().into()))
                .await
                .expect("send");
            sent += 1;
        }
        let Some(Ok(Message::Text(text))) = rx.next().await else {
            panic!("relay closed while publishing");
        };
        let reply: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
        if reply[0] == "OK" {
            assert_eq!(reply[2], true, "{reply}");
            acked += 1;
        }
    }
}

/// An announcement of `identifier` listing `server` and `relays`.
fn announcement_at(owner: &Keys, server: &Server, identifier: &str, relays: &[&str], at: Timestamp) -> Event {
    let clone = server.clone_url(owner, identifier);
    let mut relay_tag = vec!["relays".to_owned(), server.ws_url()];
    relay_tag.extend(relays.iter().map(|r| r.to_string()));
    let relay_tag: Vec<&str> = relay_tag.iter().map(String::as_str).collect();
    event_at(
        owner,
        30617,
        "",
        &[&["d", identifier], &["clone", &clone], &relay_tag],
        at,
    )
}

/// Hosts `identifier` on `server` (announcement, state, push): returns the announcement's time.
async fn host(server: &Server, owner: &Keys, identifier: &str) -> Timestamp {
    let at = Timestamp::from_secs(Timestamp::now().as_secs() - 10);
    let ann = announcement_at(owner, server, identifier, &[], at);
    let (work, oid) = work_tree_with_commit("bench");
    let st = state(owner, identifier, &[("refs/heads/main", &oid)], Some("main"));
    let mut client = server.client().await;
    assert!(client.publish(&ann).await.accepted);
    assert!(client.publish(&st).await.accepted);
    git(
        work.path(),
        &["push", "-q", &server.clone_url(owner, identifier), "main"],
    );
    at
}

async fn count(server: &Server) -> u64 {
    let mut client = server.client().await;
    client
        .send_raw(&json!(["COUNT", "c", {"kinds": [1621]}]).to_string())
        .await;
    loop {
        let reply = client.next().await;
        if reply[0] == "COUNT" {
            return reply[2]["count"].as_u64().unwrap_or(0);
        }
    }
}

/// Whether every relay the server follows is connected and past its first full pass.
fn passed(server: &Server) -> bool {
    let status = server.status_json(&["sync"]);
    status["relays"].as_array().is_some_and(|list| {
        !list.is_empty()
            && list
                .iter()
                .all(|r| r["connected"] == true && r["last_full_pass"].as_u64().unwrap_or(0) > 0)
    })
}

/// Runs one sync of `n` events of which the target already has `shared`.
pub async fn run(n: usize, shared: usize, negentropy: bool) -> Figures {
    let source = Server::start_with(FLAGS);
    let target = Server::start_with_env(FLAGS, ON);
    let owner = Keys::generate();
    host(&source, &owner, "bench").await;
    let announced = host(&target, &owner, "bench").await;
    let events = issues(&owner, "bench", n);
    publish_all(&source.ws_url(), &events).await;
    publish_all(&target.ws_url(), &events[..shared]).await;
    let proxy = Proxy::start(
        source.ws_url(),
        ProxyOptions {
            refuse_negentropy: !negentropy,
            ..ProxyOptions::default()
        },
    )
    .await;
    // From here the target follows the source's relay.
    let started = Instant::now();
    let listing = announcement_at(
        &owner,
        &target,
        "bench",
        &[&proxy.url],
        Timestamp::from_secs(announced.as_secs() + 1),
    );
    assert!(target.client().await.publish(&listing).await.accepted);
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&target).await < n as u64 {
        assert!(Instant::now() < deadline, "sync did not finish: {}", target.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // The bytes of the whole pass: the REQ pages go on past the last missing event.
    while !passed(&target) {
        assert!(
            Instant::now() < deadline,
            "the pass did not end: {}",
            target.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Figures {
        synced: n - shared,
        seconds,
        pass_seconds: started.elapsed().as_secs_f64(),
        bytes: proxy.counters.bytes(),
        round_trips: proxy.counters.messages_up(),
        target_rss_mib: target.peak_rss_mib().unwrap_or(0.0),
        target_anon_mib: target.rss_anon_mib().unwrap_or(0.0),
    }
}

/// The target's memory while it follows `relays` relays for `repos` hosted repositories, each
/// listing three of them (and each relay holding a few issues of each of its repositories): the
/// peak RSS once every relay is connected and past its first full pass, and how long that took.
pub async fn memory_run(repos: usize, relays: usize) -> (f64, f64, f64) {
    let mut plain = Vec::new();
    for _ in 0..relays {
        plain.push(super::relays::plain_relay().await);
    }
    let target = Server::start_with_env(FLAGS, ON);
    let owner = Keys::generate();
    let started = Instant::now();
    // Hosted four at a time: announcement, state and push each.
    let names: Vec<String> = (0..repos).map(|i| format!("r{i}")).collect();
    for (c, chunk) in names.chunks(4).enumerate() {
        let mut pushes = Vec::new();
        for (i, name) in chunk.iter().enumerate() {
            let j = c * 4 + i;
            let listed: Vec<&str> = (0..3).map(|k| plain[(j + k * 7) % relays].1.as_str()).collect();
            let at = Timestamp::from_secs(Timestamp::now().as_secs() - 10);
            let ann = announcement_at(&owner, &target, name, &listed, at);
            let (work, oid) = work_tree_with_commit(name);
            let st = state(&owner, name, &[("refs/heads/main", &oid)], Some("main"));
            let mut client = target.client().await;
            assert!(client.publish(&ann).await.accepted);
            assert!(client.publish(&st).await.accepted);
            let url = target.clone_url(&owner, name);
            pushes.push(std::thread::spawn(move || {
                git(work.path(), &["push", "-q", &url, "main"]);
                drop(work);
            }));
        }
        for push in pushes {
            push.join().expect("push");
        }
    }
    // Wait for every relay to be connected and through its first pass.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = target.status_json(&["sync"]);
        let ready = status["relays"].as_array().is_some_and(|list| {
            list.len() == relays
                && list
                    .iter()
                    .all(|r| r["connected"] == true && r["last_full_pass"].as_u64().unwrap_or(0) > 0)
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "relays not all synced: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (
        target.peak_rss_mib().unwrap_or(0.0),
        target.rss_anon_mib().unwrap_or(0.0),
        started.elapsed().as_secs_f64(),
    )
}
