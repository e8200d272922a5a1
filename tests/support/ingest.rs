//! Accepted ingest as the benches measure it (benches/relay.rs, benches/reads.rs): events signed
//! before any clock starts, sent over many websocket connections at once, each connection
//! pipelined; and the verify-only floor the rate is compared with.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use nostr::Keys;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::Server;

/// `per_connection` events for each of `connections` connections, each connection's signed by a
/// key of its own, as EVENT messages. `make(keys, connection, index)` builds one.
pub fn signed_batches(
    connections: usize,
    per_connection: usize,
    make: impl Fn(&Keys, usize, usize) -> nostr::Event,
) -> Vec<Vec<String>> {
    (0..connections)
        .map(|c| {
            let keys = Keys::generate();
            (0..per_connection)
                .map(|i| json!(["EVENT", make(&keys, c, i)]).to_string())
                .collect()
        })
        .collect()
}

/// The rate at which `batches`' EVENT messages can merely be parsed and their ids and signatures
/// checked on `threads` threads: the floor ingest is measured against. This machine's speed
/// drifts by up to 2x between minutes, so a bench takes it right before the ingest it compares.
pub fn verify_rate(batches: &[Vec<String>], threads: usize) -> f64 {
    let messages: Vec<&String> = batches.iter().flatten().collect();
    let chunk = messages.len().div_ceil(threads).max(1);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for part in messages.chunks(chunk) {
            scope.spawn(move || {
                for message in part {
                    let parsed = nostr::ClientMessage::from_json(message.as_str()).expect("EVENT");
                    let nostr::ClientMessage::Event(event) = parsed else {
                        panic!("not an EVENT: {message}");
                    };
                    event.verify().expect("valid event");
                }
            });
        }
    });
    messages.len() as f64 / started.elapsed().as_secs_f64()
}

/// This process's CPU time (all threads), from `/proc/self/stat` (clock ticks of 10 ms).
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Sends each batch over a connection of its own, every event without waiting, and waits for
/// every `OK`. Returns (events/s, how many were accepted).
pub async fn ingest(server: &Server, batches: Vec<Vec<String>>) -> (f64, usize) {
    ingest_across(&[server], batches).await
}

/// [`ingest`] with the connections spread over `servers` in turn (several nodes of one cluster).
pub async fn ingest_across(servers: &[&Server], batches: Vec<Vec<String>>) -> (f64, usize) {
    let total: usize = batches.iter().map(Vec::len).sum();
    let mut sockets = Vec::new();
    for i in 0..batches.len() {
        let url = servers[i % servers.len()].ws_url();
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("connect");
        sockets.push(ws);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (ws, batch) in sockets.into_iter().zip(batches) {
        tasks.push(tokio::spawn(async move {
            let expected = batch.len();
            let (mut tx, mut rx) = ws.split();
            let sender = tokio::spawn(async move {
                for message in batch {
                    tx.send(Message::Text(message.into())).await.expect("send");
                }
                tx
            });
            let mut accepted = 0usize;
            let mut answered = 0usize;
            while answered < expected {
                let Some(Ok(Message::Text(text))) = rx.next().await else {
                    break;
                };
                let reply: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
                if reply[0] == "OK" {
                    answered += 1;
                    if reply[2] == true {
                        accepted += 1;
                    }
                }
            }
            let _ = sender.await;
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.expect("task");
    }
    (total as f64 / start.elapsed().as_secs_f64(), accepted)
}

/// What saving events straight into a store cost ([`store_floor`]).
pub struct StoreFloor {
    /// Events saved a second.
    pub rate: f64,
    /// This process's CPU an event, in µs.
    pub cpu_micros: f64,
    /// What this process wrote an event (the WAL and checkpoints), in KiB.
    pub written_kib: f64,
}

/// Saves `batches`' events straight into the SQLite store at `url`, `at_once` at a time (as many
/// as an ingest has in flight), the batches' events interleaved as their connections would
/// deliver them: the store's part of an accepted event, durability included, without the
/// websocket, the parse or the policy.
pub async fn store_floor(url: &str, batches: &[Vec<String>], at_once: usize) -> StoreFloor {
    // In the order an ingest's connections deliver them: each connection's next event in turn.
    let longest = batches.iter().map(Vec::len).max().unwrap_or(0);
    let events: Vec<nostr::Event> = (0..longest)
        .flat_map(|i| batches.iter().filter_map(move |batch| batch.get(i)))
        .map(
            |message| match nostr::ClientMessage::from_json(message.as_str()) {
                Ok(nostr::ClientMessage::Event(event)) => event.into_owned(),
                other => panic!("not an EVENT: {other:?}"),
            },
        )
        .collect();
    let store = graspd::store::Store::open(url).await.expect("store");
    let cpu = process_cpu_seconds();
    let written = process_written_bytes();
    let started = Instant::now();
    let saved: Vec<_> = futures_util::stream::iter(&events)
        .map(|event| store.save_event(event))
        .buffer_unordered(at_once)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu;
    let written = process_written_bytes() - written;
    assert!(
        saved
            .iter()
            .all(|saved| saved.as_ref().is_ok_and(|s| s.is_success()))
    );
    let n = events.len() as f64;
    StoreFloor {
        rate: n / seconds,
        cpu_micros: cpu * 1e6 / n,
        written_kib: written as f64 / 1024.0 / n,
    }
}

/// Bytes this process has written (Linux `/proc/self/io`, `wchar`).
fn process_written_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("wchar")
}

/// The daemon's CPU time and bytes written at one moment, to give what a phase of `events` events
/// cost it from there (Linux `/proc`; elsewhere "n/a" and nothing).
pub struct Spent {
    cpu: Option<f64>,
    written: Option<u64>,
}

impl Spent {
    pub fn since(server: &Server) -> Self {
        Self {
            cpu: server.cpu_seconds(),
            written: server.written_bytes(),
        }
    }

    /// "N µs per event (U cores busy)", at `rate` events/s.
    pub fn cpu(&self, server: &Server, events: usize, rate: f64) -> String {
        match (self.cpu, server.cpu_seconds()) {
            (Some(before), Some(after)) => {
                let per_event = (after - before) / events as f64;
                format!(
                    "{:.0} µs per event ({:.2} cores busy)",
                    per_event * 1e6,
                    per_event * rate
                )
            }
            _ => "n/a".to_owned(),
        }
    }

    /// "; N KiB written an event" (the WAL and checkpoints, and the `OK`s).
    pub fn written(&self, server: &Server, events: usize) -> String {
        match (self.written, server.written_bytes()) {
            (Some(before), Some(after)) => format!(
                "; {:.1} KiB written an event",
                (after - before) as f64 / 1024.0 / events as f64
            ),
            _ => String::new(),
        }
    }
}
