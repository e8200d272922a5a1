//! The websocket in front of the relay.
//!
//! nostr-relay-builder ends a connection silently when a message does not parse, and its rate
//! limiter refills only in whole seconds. So each client websocket is bridged to the relay through
//! an in-process pipe (opened when the client first needs the relay, see [`Connection`]), and
//! every client message is checked here first: size, JSON shape, known
//! message type, a parseable event or filter, and a per-connection token bucket. Bad input gets
//! the NIP-01 answer (`OK false "invalid: ..."`, `CLOSED`, or `NOTICE`) and the connection stays
//! up.
//!
//! Good input is mostly answered here too: events by `relay::intake` (several of a connection in
//! flight at once, see [`Events`]), REQs by `http::stored` (the stored part) and `live` (the live
//! part), NIP-77 by `http::negentropy`. The relay takes protected events (NIP-70, with NIP-42
//! `AUTH`), `COUNT`, and what else a client may send; it holds no subscription.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use futures_util::stream::{FuturesOrdered, SplitSink};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use nostr::secp256k1::schnorr::Signature;
use nostr::{ClientMessage, Event, EventId, Filter, Kind, PublicKey, Tag, Timestamp};
use nostr_relay_builder::LocalRelay;
use serde_json::Value;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::stored::{Requests, Stored};
use crate::config::Limits;
use crate::live::{Delivery, Subscriber};
use crate::relay::Intake;
use crate::relay::intake::{InFlight, MAX_IN_FLIGHT, MAX_IN_FLIGHT_BYTES, must_follow, taken_by_bridge};

/// Initial read buffer of each websocket the bridge owns.
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Read buffer of the relay's side of the pipe.
const RELAY_READ_BUFFER_BYTES: usize = 1024;

/// At most this many relay messages are queued for the client before they are flushed, so a
/// long answer does not keep the bridge from reading the client.
const MAX_MESSAGES_PER_FLUSH: usize = 256;

/// Size of the in-process pipe between the bridge and the relay.
const PIPE_BYTES: usize = 256 * 1024;

type WsError = tokio_tungstenite::tungstenite::Error;
type ClientTx = SplitSink<WebSocketStream<TokioIo<Upgraded>>, Message>;
type RelayTx = SplitSink<WebSocketStream<tokio::io::DuplexStream>, Message>;
type RelayRx = futures_util::stream::SplitStream<WebSocketStream<tokio::io::DuplexStream>>;

/// Serves one upgraded connection until either side closes.
pub async fn bridge(
    relay: LocalRelay,
    intake: Intake,
    upgraded: Upgraded,
    peer: SocketAddr,
    app: crate::app::App,
) {
    let connected = crate::metrics::GaugeGuard::new(&app.metrics().websocket_connections);
    let limits = app.config().limits.clone();
    // Frames beyond 4x the message limit are dropped by the websocket layer itself (closing the
    // connection); up to that, oversized messages get a polite NIP-01 answer.
    let hard_cap = limits.max_message_bytes.saturating_mul(4).max(64 * 1024);
    // Small read buffers: tungstenite zero-fills the whole free buffer before every read, and
    // relay messages are small (the buffer still grows for a large one).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(hard_cap))
        .max_frame_size(Some(hard_cap));
    let mut client =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    // `--max-connections` is applied here: the relay builder counts only the connections that
    // join it, and one that only publishes never does. Past the limit, the connection is closed
    // right after its upgrade.
    if usize::try_from(connected.value()).unwrap_or(usize::MAX) > limits.max_connections {
        tracing::debug!(%peer, limit = limits.max_connections, "websocket connection refused: too many");
        let _ = client.close(None).await;
        return;
    }

    let (client_tx, mut client_rx) = client.split();
    let mut bucket = TokenBucket::new(limits.event_burst, limits.events_per_minute);
    let mut connection = Connection {
        client_tx,
        relay,
        upstream: None,
        requests: Requests::default(),
        negentropy: super::negentropy::Sessions::default(),
        events: Events::default(),
        live: None,
        intake,
        peer,
        app: app.clone(),
        max_filter_limit: limits.max_filter_limit,
        max_subscriptions: limits.max_subscriptions,
    };

    loop {
        tokio::select! {
            // While a message waits for the events before it, or enough events are in flight,
            // the client is not read (TCP pushes back).
            incoming = client_rx.next(), if connection.events.reading() => {
                let Some(Ok(message)) = incoming else { break };
                let sent = match message {
                    Message::Text(text) => {
                        let checked = check(text.as_str(), &limits, &mut bucket);
                        if connection.events.must_wait(&checked) {
                            connection.events.held = Some((checked, text));
                            continue;
                        }
                        connection.handle(checked, text).await
                    }
                    Message::Binary(_) => {
                        let reply = notice("invalid: binary messages are not supported; send JSON text");
                        connection.client_tx.send(Message::Text(reply.into())).await
                    }
                    Message::Close(_) => break,
                    // tungstenite answers pings itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
                };
                if sent.is_err() { break; }
            }
            Some(reply) = connection.events.pending.next() => {
                if connection.answered(reply).await.is_err() { break; }
            }
            Some(delivery) = from_live(&mut connection.live) => {
                if connection.delivered(delivery).await.is_err() { break; }
            }
            outgoing = from_relay(&mut connection.upstream) => {
                // An answer to a REQ is many messages written at once: they are queued together
                // and flushed once, not written to the socket one by one.
                let mut next = Some(outgoing);
                let mut queued = 0;
                let mut open = true;
                while let Some(outgoing) = next.take() {
                    let Some(Ok(message)) = outgoing else { open = false; break };
                    let Message::Text(text) = message else { continue };
                    if connection.relayed(text).await.is_err() {
                        open = false;
                        break;
                    }
                    queued += 1;
                    if queued < MAX_MESSAGES_PER_FLUSH {
                        next = connection.upstream.as_mut().and_then(|up| up.rx.next().now_or_never());
                    }
                }
                if !open || connection.client_tx.flush().await.is_err() { break; }
            }
        }
    }
    // Events a client sent before it left are still decided and saved to the end (a decision
    // applies its effects in steps, and is never cut midway).
    while connection.events.pending.next().await.is_some() {}
    let _ = connection.client_tx.close().await;
    if let Some(mut upstream) = connection.upstream.take() {
        let _ = upstream.tx.close().await;
        upstream.task.abort();
    }
}

/// The relay's connection for one client, opened when the client first needs it.
struct Upstream {
    tx: RelayTx,
    rx: RelayRx,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Connects to the relay through an in-process pipe.
    async fn open(relay: &LocalRelay, peer: SocketAddr) -> Self {
        let (relay_end, our_end) = tokio::io::duplex(PIPE_BYTES);
        let relay = relay.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = relay.take_connection(relay_end, peer).await {
                tracing::debug!(%peer, %error, "relay connection ended");
            }
        });
        // Smaller still from the relay: the bridge polls this side at every wake-up (each event
        // in flight wakes it a few times), and what the relay sends now is mostly short (live
        // events, EOSE, CLOSED).
        let config = WebSocketConfig::default().read_buffer_size(RELAY_READ_BUFFER_BYTES);
        let (tx, rx) = WebSocketStream::from_raw_socket(our_end, Role::Client, Some(config))
            .await
            .split();
        Self { tx, rx, task }
    }
}

/// The relay's next message, or never while the client has no relay connection.
async fn from_relay(upstream: &mut Option<Upstream>) -> Option<Result<Message, WsError>> {
    match upstream {
        Some(upstream) => upstream.rx.next().await,
        None => std::future::pending().await,
    }
}

/// The next live event for the client's subscriptions, or never while it has none.
async fn from_live(live: &mut Option<LiveSubscriptions>) -> Option<Delivery> {
    match live {
        Some(live) => live.deliveries.recv().await,
        None => std::future::pending().await,
    }
}

/// A connection's subscriptions in `live` and where their events arrive, made at its first
/// subscription.
struct LiveSubscriptions {
    subscriber: Subscriber,
    deliveries: tokio::sync::mpsc::Receiver<Delivery>,
}

type Answering = Pin<Box<dyn Future<Output = String> + Send>>;

/// A connection's events in flight, in arrival order, and the one message that waits for them.
///
/// Events the bridge takes are decided and saved several at once, so one connection's events
/// share the store's commits; their `OK`s go out in arrival order. An event that must follow the
/// ones before it (`relay::intake::must_follow`), and every other kind of message, waits until
/// the events before it are answered: the client sees the same order as from a relay that handles
/// one message at a time.
#[derive(Default)]
pub struct Events {
    pending: FuturesOrdered<Answering>,
    in_flight: Vec<InFlight>,
    /// The message size of each event in `in_flight`, and their sum.
    sizes: Vec<usize>,
    bytes: usize,
    held: Option<(Checked, Utf8Bytes)>,
}

impl Events {
    /// Whether the next client message may be read now.
    fn reading(&self) -> bool {
        self.held.is_none() && self.in_flight.len() < MAX_IN_FLIGHT && self.bytes < MAX_IN_FLIGHT_BYTES
    }

    /// Whether `checked` waits for the events in flight.
    fn must_wait(&self, checked: &Checked) -> bool {
        match checked {
            _ if self.in_flight.is_empty() => false,
            Checked::Event(event) if taken_by_bridge(event) => must_follow(event, &self.in_flight),
            _ => true,
        }
    }

    fn start(&mut self, in_flight: InFlight, size: usize, answer: Answering) {
        self.in_flight.push(in_flight);
        self.sizes.push(size);
        self.bytes += size;
        self.pending.push_back(answer);
    }

    /// Forgets the oldest event in flight, once its answer is taken.
    fn finish_oldest(&mut self) {
        if !self.in_flight.is_empty() {
            self.in_flight.remove(0);
            self.bytes -= self.sizes.remove(0);
        }
    }
}

/// The bridge's half of one connection: where messages go, and what it remembers between them.
///
/// The relay builder's connection is opened only when the client first sends something the
/// relay handles (a protected event, `AUTH`, `COUNT`): each costs ~150 KiB of memory (the relay
/// side's websocket buffers), and the builder wakes every one of its connections for each event it
/// takes, so connections that publish and subscribe stay off it.
struct Connection {
    client_tx: ClientTx,
    relay: LocalRelay,
    upstream: Option<Upstream>,
    requests: Requests,
    negentropy: super::negentropy::Sessions,
    events: Events,
    live: Option<LiveSubscriptions>,
    intake: Intake,
    peer: SocketAddr,
    app: crate::app::App,
    max_filter_limit: usize,
    max_subscriptions: usize,
}

impl Connection {
    /// Acts on one checked client message.
    async fn handle(&mut self, checked: Checked, text: Utf8Bytes) -> Result<(), WsError> {
        match checked {
            Checked::Forward => self.send_to_relay(Message::Text(text)).await,
            Checked::Event(event) if taken_by_bridge(&event) => {
                let intake = self.intake.clone();
                let peer = self.peer;
                let in_flight = InFlight::of(&event);
                let answer = async move { intake.client_event(event, peer).await };
                self.events.start(in_flight, text.len(), Box::pin(answer));
                Ok(())
            }
            Checked::Event(_) => self.send_to_relay(Message::Text(text)).await,
            Checked::Req(sub, filters) => {
                // A REQ replaces the subscription of the same id.
                self.unsubscribe(&sub);
                match self
                    .requests
                    .open(&sub, filters, self.max_subscriptions, self.max_filter_limit)
                {
                    Ok(stored) => {
                        self.send_stored(&stored).await?;
                        self.client_tx.flush().await
                    }
                    Err(closed) => self.client_tx.send(Message::Text(closed.into())).await,
                }
            }
            Checked::Close(sub) => {
                self.requests.close(&sub);
                self.unsubscribe(&sub);
                Ok(())
            }
            Checked::Answer(reply) => self.client_tx.send(Message::Text(reply.into())).await,
            Checked::Negentropy(items) => match self.negentropy.answer(&items, self.app.store()).await {
                Some(reply) => self.client_tx.send(Message::Text(reply.into())).await,
                None => Ok(()),
            },
        }
    }

    /// The connection's handle in `live`, made at its first subscription.
    fn subscriber(&mut self) -> &mut Subscriber {
        let live = self.app.live();
        &mut self
            .live
            .get_or_insert_with(|| {
                let (subscriber, deliveries) = live.connect();
                LiveSubscriptions {
                    subscriber,
                    deliveries,
                }
            })
            .subscriber
    }

    fn unsubscribe(&mut self, sub: &str) {
        if let Some(live) = &mut self.live {
            live.subscriber.unsubscribe(sub);
        }
    }

    /// Queues live events for the client, this one and those already waiting behind it (up to
    /// [`MAX_MESSAGES_PER_FLUSH`] messages), then flushes. An event for a subscription closed or
    /// replaced since it was matched, or that the stored part just sent had, is dropped; a client
    /// too slow to keep up is told it missed events.
    async fn delivered(&mut self, delivery: Delivery) -> Result<(), WsError> {
        let mut next = Some(delivery);
        let mut queued = 0;
        while let Some(delivery) = next.take() {
            for (sub, generation) in &delivery.subscriptions {
                let current = self
                    .live
                    .as_ref()
                    .is_some_and(|live| live.subscriber.is_current(sub, *generation));
                if !current || self.requests.in_stored_part(sub, &delivery.event.id) {
                    continue;
                }
                let message =
                    super::stored::event_message(&Value::from(&**sub).to_string(), &delivery.event.json);
                self.client_tx.feed(Message::Text(message.into())).await?;
                queued += 1;
            }
            if queued < MAX_MESSAGES_PER_FLUSH {
                next = self
                    .live
                    .as_mut()
                    .and_then(|live| live.deliveries.try_recv().ok());
            }
        }
        let missed = self
            .live
            .as_ref()
            .map_or(0, |live| live.subscriber.take_dropped());
        if missed > 0 {
            self.app
                .metrics()
                .live_events_missed
                .fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
            let text = notice(&format!(
                "error: {missed} live events were not sent: this connection read them too slowly"
            ));
            self.client_tx.feed(Message::Text(text.into())).await?;
        }
        self.client_tx.flush().await
    }

    /// Sends a message to the relay, connecting first if the client has no relay connection.
    async fn send_to_relay(&mut self, message: Message) -> Result<(), WsError> {
        let upstream = match &mut self.upstream {
            Some(upstream) => upstream,
            empty => empty.insert(Upstream::open(&self.relay, self.peer).await),
        };
        upstream.tx.send(message).await
    }

    /// Sends the `OK` of the oldest event in flight, and of the ones after it that are answered
    /// too; then, once none is in flight, acts on the message that waited.
    async fn answered(&mut self, reply: String) -> Result<(), WsError> {
        let mut reply = Some(reply);
        while let Some(ok) = reply.take() {
            self.events.finish_oldest();
            self.client_tx.feed(Message::Text(ok.into())).await?;
            if let Some(Some(next)) = self.events.pending.next().now_or_never() {
                reply = Some(next);
            }
        }
        self.client_tx.flush().await?;
        if self.events.in_flight.is_empty()
            && let Some((checked, text)) = self.events.held.take()
        {
            self.handle(checked, text).await?;
        }
        Ok(())
    }

    /// Queues one relay message for the client (the caller flushes).
    async fn relayed(&mut self, text: Utf8Bytes) -> Result<(), WsError> {
        let text = with_failure_named(text, &self.app);
        self.client_tx.feed(Message::Text(text)).await
    }

    /// Opens a REQ's live part and queues its stored part for the client (the caller flushes).
    /// When the store cannot be read, the client gets `CLOSED` and the subscription ends.
    async fn send_stored(&mut self, stored: &Stored) -> Result<(), WsError> {
        let sub = stored.sub.as_str();
        // Opened before the store is read: an event saved after the read is delivered live, one
        // saved before is in the stored part (and dropped if it comes live too).
        self.subscriber().subscribe(sub, stored.filters.clone());
        match super::stored::answer(self.app.store(), stored).await {
            Ok(answer) => {
                if answer.complete {
                    self.unsubscribe(sub);
                    self.requests.close(sub);
                } else {
                    self.requests.answered(sub, answer.ids);
                }
                for message in answer.messages {
                    self.client_tx.feed(Message::Text(message.into())).await?;
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the stored events of a REQ");
                self.unsubscribe(sub);
                self.requests.close(sub);
                self.client_tx
                    .feed(Message::Text(
                        closed(sub, "error: the relay could not read its store").into(),
                    ))
                    .await
            }
        }
    }
}

/// The relay answers a failed save with `error: database error` whatever the cause; when the
/// store knows a cause worth naming (its disk is full), the client is told that instead.
fn with_failure_named(text: Utf8Bytes, app: &crate::app::App) -> Utf8Bytes {
    const PLAIN: &str = "\"error: database error\"";
    // Only OK messages (short) are looked into, not every event served.
    if !text.as_str().starts_with("[\"OK\"") || !text.as_str().contains(PLAIN) {
        return text;
    }
    match app.store().recent_failure() {
        Some(reason) => text
            .as_str()
            .replace(PLAIN, &format!("\"error: {reason}\""))
            .into(),
        None => text,
    }
}

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Forward,
    /// A well-formed EVENT within the rate: taken by `relay::intake`, or forwarded when the relay
    /// builder handles its kind.
    Event(Box<Event>),
    Answer(String),
    /// A NIP-77 message, answered by the bridge itself (`http::negentropy`).
    Negentropy(Vec<Value>),
    /// A REQ, answered by the bridge (`http::stored`, `live`).
    Req(String, Vec<Filter>),
    /// A CLOSE, forwarded (the bridge drops what it still owed that subscription).
    Close(String),
}

/// Checks one client text message. Pure apart from the token bucket, so it is unit-tested.
pub fn check(text: &str, limits: &Limits, bucket: &mut TokenBucket) -> Checked {
    // The common case, a well-formed EVENT, is read with one strict parse straight into the
    // event; anything else takes the full path below, which words the answer.
    if starts_as_event(text)
        && text.len() <= limits.max_event_bytes
        && let Ok(event) = parse_event(text)
        && bucket.take()
    {
        return Checked::Event(Box::new(event));
    }
    check_slowly(text, limits, bucket)
}

/// Whether the text opens like `["EVENT"`.
fn starts_as_event(text: &str) -> bool {
    text.trim_start()
        .strip_prefix('[')
        .is_some_and(|rest| rest.trim_start().starts_with("\"EVENT\""))
}

fn check_slowly(text: &str, limits: &Limits, bucket: &mut TokenBucket) -> Checked {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return Checked::Answer(notice("invalid: message is not a JSON array"));
    };
    let Some(Value::String(verb)) = items.first() else {
        return Checked::Answer(notice(
            "invalid: message must start with a string type such as \"EVENT\"",
        ));
    };
    match verb.as_str() {
        "EVENT" => check_event(text, &items, limits, bucket),
        "REQ" | "COUNT" => {
            let sub = items
                .get(1)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if text.len() > limits.max_message_bytes {
                return Checked::Answer(closed(
                    &sub,
                    &format!("invalid: message larger than {} bytes", limits.max_message_bytes),
                ));
            }
            match ClientMessage::from_json(text) {
                Ok(ClientMessage::Req {
                    subscription_id,
                    filters,
                }) => Checked::Req(
                    subscription_id.as_str().to_owned(),
                    filters.into_iter().map(|filter| filter.into_owned()).collect(),
                ),
                Ok(_) => Checked::Forward,
                Err(e) if verb == "REQ" => {
                    Checked::Answer(closed(&sub, &format!("invalid: bad filter: {e}")))
                }
                Err(e) => Checked::Answer(notice(&format!("invalid: bad COUNT: {e}"))),
            }
        }
        "NEG-OPEN" | "NEG-MSG" | "NEG-CLOSE" => {
            if text.len() > limits.max_message_bytes {
                let sub = items.get(1).and_then(Value::as_str).unwrap_or_default();
                return Checked::Answer(
                    Value::Array(vec![
                        "NEG-ERR".into(),
                        sub.into(),
                        format!("invalid: message larger than {} bytes", limits.max_message_bytes).into(),
                    ])
                    .to_string(),
                );
            }
            Checked::Negentropy(items)
        }
        "CLOSE" | "AUTH" => {
            if text.len() > limits.max_message_bytes {
                return Checked::Answer(notice(&format!(
                    "invalid: message larger than {} bytes",
                    limits.max_message_bytes
                )));
            }
            match ClientMessage::from_json(text) {
                Ok(ClientMessage::Close(sub)) => Checked::Close(sub.as_str().to_owned()),
                Ok(_) => Checked::Forward,
                Err(e) => Checked::Answer(notice(&format!("invalid: bad {verb} message: {e}"))),
            }
        }
        other => Checked::Answer(notice(&format!(
            "invalid: unknown message type \"{}\"",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

fn check_event(text: &str, items: &[Value], limits: &Limits, bucket: &mut TokenBucket) -> Checked {
    let id = items
        .get(1)
        .and_then(|e| e.get("id"))
        .and_then(Value::as_str)
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    let answer = |message: String| match id {
        Some(id) => Checked::Answer(ok_false(id, &message)),
        None => Checked::Answer(notice(&message)),
    };
    if text.len() > limits.max_event_bytes {
        return answer(format!(
            "invalid: event larger than {} bytes",
            limits.max_event_bytes
        ));
    }
    let event = match parse_event(text) {
        Ok(event) => event,
        Err(why) => return answer(format!("invalid: {why}")),
    };
    if !bucket.take() {
        return answer("rate-limited: slow down; too many events on this connection".to_owned());
    }
    Checked::Event(Box::new(event))
}

/// An `["EVENT", {...}]` message read strictly (the Nostr library's own reading is lenient: it
/// takes a 66-character compressed pubkey and stores it under the 64-character key), and read
/// once: the event is built from it. Only the encoding is checked here; the id and signature are
/// verified later.
#[derive(serde::Deserialize)]
struct StrictEventMessage<'a>(serde::de::IgnoredAny, #[serde(borrow)] StrictEvent<'a>);

/// NIP-01's event fields with the JSON types NIP-01 gives them. Other fields are ignored.
#[derive(serde::Deserialize)]
struct StrictEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    pubkey: Cow<'a, str>,
    created_at: u64,
    kind: u16,
    #[serde(borrow)]
    tags: Vec<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    content: Cow<'a, str>,
    #[serde(borrow)]
    sig: Cow<'a, str>,
}

/// Reads an EVENT message's event, checking its encoding: `id` and `pubkey` exactly 64 lowercase
/// hex characters, `sig` exactly 128, `created_at` a non-negative integer, `kind` an integer up to
/// 65535, `tags` an array of arrays of strings (none empty), `content` a string. Says what is
/// wrong.
pub fn parse_event(text: &str) -> Result<Event, String> {
    let StrictEventMessage(_, event) =
        serde_json::from_str::<StrictEventMessage<'_>>(text).map_err(|e| format!("malformed event: {e}"))?;
    for (field, value, len) in [
        ("id", &event.id, 64),
        ("pubkey", &event.pubkey, 64),
        ("sig", &event.sig, 128),
    ] {
        let lower_hex = value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if value.len() != len || !lower_hex {
            return Err(format!(
                "'{field}' must be exactly {len} lowercase hex characters (got {} characters)",
                value.chars().count()
            ));
        }
    }
    let tags = event
        .tags
        .into_iter()
        .map(|tag| Tag::parse(tag.into_iter().map(Cow::into_owned).collect::<Vec<String>>()))
        .collect::<Result<Vec<Tag>, _>>()
        .map_err(|e| format!("bad tag: {e}"))?;
    Ok(Event::new(
        EventId::from_hex(&event.id).map_err(|e| format!("malformed event: {e}"))?,
        PublicKey::from_hex(&event.pubkey).map_err(|e| format!("malformed event: {e}"))?,
        Timestamp::from(event.created_at),
        Kind::from(event.kind),
        tags,
        event.content.into_owned(),
        Signature::from_slice(&lower_hex_bytes::<64>(&event.sig))
            .map_err(|e| format!("malformed event: {e}"))?,
    ))
}

/// The bytes of `N * 2` lowercase hex characters, already checked (other input gives other bytes,
/// never a panic). The signature library's own reading went a character at a time, ~1 µs an
/// event.
fn lower_hex_bytes<const N: usize>(hex: &str) -> [u8; N] {
    let nibble = |c: u8| {
        if c.is_ascii_digit() {
            c - b'0'
        } else {
            c.wrapping_sub(b'a').wrapping_add(10)
        }
    };
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    bytes
}

fn notice(message: &str) -> String {
    Value::Array(vec!["NOTICE".into(), message.into()]).to_string()
}

pub(super) fn closed(subscription: &str, message: &str) -> String {
    Value::Array(vec!["CLOSED".into(), subscription.into(), message.into()]).to_string()
}

fn ok_false(id: &str, message: &str) -> String {
    Value::Array(vec!["OK".into(), id.into(), false.into(), message.into()]).to_string()
}

/// Per-connection token bucket: `capacity` events at once, refilled continuously at
/// `per_minute`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_minute: u32) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_second: f64::from(per_minute) / 60.0,
            tokens: f64::from(capacity),
            last: Instant::now(),
        }
    }

    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_message_bytes: 1000,
            max_event_bytes: 600,
            max_subscriptions: 10,
            max_filter_limit: 100,
            events_per_minute: 60,
            event_burst: 2,
            max_connections: 10,
        }
    }

    fn answer(text: &str) -> String {
        match check(text, &limits(), &mut TokenBucket::new(5, 60)) {
            Checked::Answer(a) => a,
            Checked::Forward => "forward".to_owned(),
            Checked::Event(_) => "event".to_owned(),
            Checked::Negentropy(_) => "negentropy".to_owned(),
            Checked::Req(sub, _) => format!("req {sub}"),
            Checked::Close(sub) => format!("close {sub}"),
        }
    }

    #[test]
    fn malformed_messages_get_a_notice() {
        assert!(answer("not json").contains("NOTICE"));
        assert!(answer("{}").contains("not a JSON array"));
        assert!(answer("[1]").contains("must start with a string"));
        assert!(answer(r#"["HELLO"]"#).contains("unknown message type"));
        assert!(answer(r#"["CLOSE"]"#).contains("NOTICE"));
    }

    #[test]
    fn bad_filters_close_the_subscription() {
        let reply = answer(r#"["REQ","s1",{"kinds":"x"}]"#);
        assert!(reply.starts_with(r#"["CLOSED","s1","invalid:"#), "{reply}");
        assert_eq!(answer(r#"["REQ","s1",{"kinds":[1]}]"#), "req s1");
    }

    #[test]
    fn bad_or_oversized_events_get_ok_false_with_their_id() {
        let id = "a".repeat(64);
        let reply = answer(&format!(r#"["EVENT",{{"id":"{id}"}}]"#));
        assert!(
            reply.starts_with(&format!(r#"["OK","{id}",false,"invalid:"#)),
            "{reply}"
        );
        let big = format!(r#"["EVENT",{{"id":"{id}","content":"{}"}}]"#, "x".repeat(700));
        assert!(answer(&big).contains("larger than 600 bytes"));
    }

    #[test]
    fn events_are_read_strictly_and_once() {
        use nostr::event::FinalizeEvent;
        let event = nostr::EventBuilder::new(nostr::Kind::TextNote, "hi")
            .tags([nostr::Tag::parse(["t", "x"]).expect("tag")])
            .finalize(&nostr::Keys::generate())
            .expect("sign");
        let good: Value = serde_json::from_str(&event.as_json()).expect("json");
        let message = |event: &Value| format!(r#"["EVENT",{event}]"#);
        assert_eq!(parse_event(&message(&good)), Ok(event.clone()));
        assert_eq!(
            parse_event(&message(&good)).map(|parsed| parsed.sig),
            Ok(event.sig)
        );
        assert_eq!(
            lower_hex_bytes::<8>("0123456789abcdef"),
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        let with = |field: &str, value: Value| {
            let mut event = good.clone();
            event[field] = value;
            message(&event)
        };
        let pubkey = event.pubkey.to_hex();
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "a 66-character pubkey",
                with("pubkey", format!("02{pubkey}").into()),
                "'pubkey' must be exactly 64",
            ),
            (
                "an uppercase id",
                with("id", event.id.to_hex().to_uppercase().into()),
                "'id' must be exactly 64 lowercase",
            ),
            (
                "a short sig",
                with("sig", "ab".repeat(63).into()),
                "'sig' must be exactly 128",
            ),
            (
                "a long sig",
                with("sig", "ab".repeat(65).into()),
                "'sig' must be exactly 128",
            ),
            (
                "created_at as a string",
                with("created_at", "1700000000".into()),
                "invalid type",
            ),
            (
                "a negative created_at",
                with("created_at", (-1).into()),
                "malformed event",
            ),
            (
                "a kind beyond 65535",
                with("kind", 70000.into()),
                "malformed event",
            ),
            (
                "a tag holding a number",
                with("tags", json!([["t", 1]])),
                "invalid type",
            ),
            (
                "tags as an object",
                with("tags", json!({"t": "x"})),
                "invalid type",
            ),
            ("content as a number", with("content", 5.into()), "invalid type"),
            ("an empty tag", with("tags", json!([["t", "x"], []])), "bad tag"),
            (
                "no sig",
                {
                    let mut event = good.clone();
                    event.as_object_mut().expect("object").remove("sig");
                    message(&event)
                },
                "missing field `sig`",
            ),
        ];
        for (case, text, words) in cases {
            let why = parse_event(&text).expect_err(case);
            assert!(why.contains(words), "{case}: {why}");
            let reply = answer(&text);
            assert!(
                reply.contains("false,\"invalid: ") || reply.contains("NOTICE"),
                "{case}: {reply}"
            );
        }
    }

    /// Randomized: whatever a client sends, the bridge answers or forwards without panicking, and
    /// an EVENT it takes is the one the library reads from the same text.
    #[test]
    fn random_messages_are_answered_or_forwarded_only_when_well_formed() {
        use nostr::event::FinalizeEvent;
        let (mut rng, cases, seed) = crate::testing::Rng::plan("ws");
        let event = nostr::EventBuilder::new(nostr::Kind::from(1621), "an issue")
            .tags([nostr::Tag::parse(["a", "30617:abc:repo"]).expect("tag")])
            .finalize(&nostr::Keys::generate())
            .expect("sign");
        let seeds = [
            format!(r#"["EVENT",{}]"#, event.as_json()),
            r##"["REQ","s",{"kinds":[1621],"#a":["30617:abc:repo"],"limit":10}]"##.to_owned(),
            r#"["CLOSE","s"]"#.to_owned(),
            r#"["COUNT","c",{"kinds":[1]}]"#.to_owned(),
            r#"["NEG-CLOSE","n"]"#.to_owned(),
        ];
        let mut limits = limits();
        limits.max_event_bytes = 10_000;
        limits.max_message_bytes = 10_000;
        let mut forwarded_events = 0;
        for case in 0..cases {
            let picked = rng.pick(&seeds).clone().into_bytes();
            let input = rng.mutate(picked);
            let Ok(text) = String::from_utf8(input) else {
                continue;
            };
            let mut bucket = TokenBucket::new(10, 60);
            if let Checked::Event(event) = check(&text, &limits, &mut bucket) {
                forwarded_events += 1;
                // The event read once is the one the library reads from the same text.
                let Ok(ClientMessage::Event(library)) = ClientMessage::from_json(&text) else {
                    panic!("seed {seed} case {case}: the library does not read {text}");
                };
                assert_eq!(*event, library.into_owned(), "seed {seed} case {case}: {text}");
            }
        }
        assert!(forwarded_events > 0, "no EVENT forwarded in {cases} cases");
    }

    #[test]
    fn a_connection_reads_on_while_its_events_in_flight_are_few_and_small() {
        use nostr::event::FinalizeEvent;
        let event = nostr::EventBuilder::text_note("hi")
            .finalize(&nostr::Keys::generate())
            .expect("sign");
        let answer = || -> Answering { Box::pin(async { String::new() }) };
        let mut events = Events::default();
        for _ in 0..MAX_IN_FLIGHT - 1 {
            events.start(InFlight::of(&event), 1_000, answer());
        }
        assert!(events.reading());
        events.start(InFlight::of(&event), 1_000, answer());
        assert!(!events.reading(), "{MAX_IN_FLIGHT} events in flight");
        events.finish_oldest();
        assert!(events.reading());

        let mut events = Events::default();
        assert!(events.reading(), "nothing in flight");
        events.start(InFlight::of(&event), MAX_IN_FLIGHT_BYTES, answer());
        assert!(!events.reading(), "one event of the whole byte budget");
        events.finish_oldest();
        assert!(events.reading() && events.bytes == 0 && events.in_flight.is_empty());
        events.finish_oldest();
        assert!(events.reading(), "nothing to forget changes nothing");
    }

    #[test]
    fn a_valid_event_is_forwarded_while_the_bucket_has_tokens() {
        use nostr::event::FinalizeEvent;
        let event = nostr::EventBuilder::new(nostr::Kind::TextNote, "hi")
            .finalize(&nostr::Keys::generate())
            .expect("sign");
        let text = format!(r#"[ "EVENT", {}]"#, event.as_json());
        let mut limits = limits();
        limits.max_event_bytes = 10_000;
        let mut bucket = TokenBucket::new(1, 1);
        assert_eq!(
            check(&text, &limits, &mut bucket),
            Checked::Event(Box::new(event.clone()))
        );
        let Checked::Answer(reply) = check(&text, &limits, &mut bucket) else {
            panic!("second event forwarded past an empty bucket");
        };
        assert!(
            reply.starts_with(&format!(r#"["OK","{}",false,"rate-limited:"#, event.id)),
            "{reply}"
        );
    }

    #[test]
    fn bucket_allows_the_burst_then_limits() {
        let mut bucket = TokenBucket::new(3, 1);
        assert!(bucket.take() && bucket.take() && bucket.take());
        assert!(!bucket.take());
    }
}
