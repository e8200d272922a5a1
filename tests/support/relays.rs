//! Relays for event-sync tests and benchmarks: a plain Nostr relay (nostr-relay-builder's
//! `LocalRelay`, which answers NIP-77), and a websocket proxy in front of any relay that counts
//! the bytes and messages it carries, can refuse NIP-77 as a relay without it does, and can slip
//! extra messages into every REQ's answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::LocalRelay;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A plain relay on loopback, and its URL. The relay picks a random port it found free and binds
/// it later, so another process can take it in between: a few attempts, each on a new port.
pub async fn plain_relay() -> (LocalRelay, String) {
    let mut attempts = 0;
    loop {
        let relay = LocalRelay::new();
        match relay.run().await {
            Ok(_) => {
                let url = relay.url().await.to_string();
                return (relay, url);
            }
            Err(error) if attempts < 5 => {
                attempts += 1;
                eprintln!("plain relay: {error}; trying another port");
            }
            Err(error) => panic!("plain relay runs: {error}"),
        }
    }
}

/// What a [`Proxy`] does besides forwarding.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Answer NEG-OPEN as strfry answers an unknown command instead of forwarding it.
    pub refuse_negentropy: bool,
    /// Events sent first in answer to every REQ.
    pub extra_events: Vec<Value>,
    /// A NOTICE sent in answer to every live subscription (a REQ with `limit: 0`), as a relay
    /// that rate-limits does.
    pub notice_on_live: Option<String>,
    /// A CLOSED sent instead of forwarding every history REQ (one without `limit: 0`).
    pub closed_on_history: Option<String>,
}

/// What went through a proxy.
#[derive(Debug, Default)]
pub struct Counters {
    /// Text bytes from the client (graspd's sync) to the relay.
    pub bytes_up: AtomicU64,
    /// Text bytes from the relay to the client.
    pub bytes_down: AtomicU64,
    /// Messages from the client: each is a round trip's request (REQ, NEG-OPEN, NEG-MSG, ...).
    pub messages_up: AtomicU64,
}

impl Counters {
    pub fn bytes(&self) -> u64 {
        self.bytes_up.load(Ordering::Relaxed) + self.bytes_down.load(Ordering::Relaxed)
    }

    pub fn messages_up(&self) -> u64 {
        self.messages_up.load(Ordering::Relaxed)
    }
}

/// A websocket proxy on loopback in front of `upstream`.
pub struct Proxy {
    pub url: String,
    pub counters: Arc<Counters>,
    /// Bumped to cut every open connection (a relay restarting, as its clients see it).
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(upstream: String, options: ProxyOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(carry(
                    stream,
                    upstream.clone(),
                    options.clone(),
                    shared.clone(),
                    cuts,
                ));
            }
        });
        Self {
            url: format!("ws://{addr}"),
            counters,
            cut,
        }
    }

    /// Drops every open connection; new ones are carried as before.
    pub fn cut_connections(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }
}

async fn carry(
    stream: tokio::net::TcpStream,
    upstream: String,
    options: ProxyOptions,
    counters: Arc<Counters>,
    mut cuts: tokio::sync::watch::Receiver<u64>,
) {
    let Ok(client) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let Ok((server, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else {
        return;
    };
    let (mut to_client, mut from_client) = client.split();
    let (mut to_server, mut from_server) = server.split();
    let (outbox, mut queued) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let down = counters.clone();
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            if let Message::Text(text) = &message {
                down.bytes_down.fetch_add(text.len() as u64, Ordering::Relaxed);
            }
            if to_client.send(message).await.is_err() {
                return;
            }
        }
    });
    let relayed = outbox.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = from_server.next().await {
            if relayed.send(message).is_err() {
                return;
            }
        }
    });
    loop {
        let message = tokio::select! {
            message = from_client.next() => message,
            // A cut (and never, once the proxy is gone).
            changed = cuts.changed() => {
                if changed.is_ok() {
                    break;
                }
                from_client.next().await
            }
        };
        let Some(Ok(message)) = message else { break };
        if let Message::Text(text) = &message {
            counters.bytes_up.fetch_add(text.len() as u64, Ordering::Relaxed);
            counters.messages_up.fetch_add(1, Ordering::Relaxed);
            let parsed: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            match parsed[0].as_str() {
                Some("NEG-OPEN") if options.refuse_negentropy => {
                    let notice = json!(["NOTICE", "ERROR: bad msg: unknown cmd"]).to_string();
                    let _ = outbox.send(Message::Text(notice.into()));
                    continue;
                }
                Some("REQ") => {
                    for event in &options.extra_events {
                        let message = json!(["EVENT", parsed[1], event]).to_string();
                        let _ = outbox.send(Message::Text(message.into()));
                    }
                    let live = parsed
                        .as_array()
                        .is_some_and(|req| req[2..].iter().all(|f| f["limit"] == 0));
                    if let (true, Some(text)) = (live, &options.notice_on_live) {
                        let notice = json!(["NOTICE", text]).to_string();
                        let _ = outbox.send(Message::Text(notice.into()));
                    }
                    if let (false, Some(text)) = (live, &options.closed_on_history) {
                        let closed = json!(["CLOSED", parsed[1], text]).to_string();
                        let _ = outbox.send(Message::Text(closed.into()));
                        continue;
                    }
                }
                _ => {}
            }
        }
        if to_server.send(message).await.is_err() {
            break;
        }
    }
    reader.abort();
    writer.abort();
}
