//! Live subscriptions: which open REQs wait for new events, and the delivery of each new event to
//! the connections whose filters it matches.
//!
//! The relay builder delivers live events by waking every connection it holds for every event
//! (one broadcast channel) and matching each of that connection's filters there; a connection's
//! wake-up also zero-fills its websocket's 128 KiB read buffer. With a hundred connections that
//! each keep a subscription open, that cost more than the save of the event itself. Here the
//! filters of every open subscription are indexed by one thing each of them requires (an id, a tag
//! value, an author, a kind), so a new event is matched only against the subscriptions that could
//! take it, and only their connections are woken: a subscription to another repository's issues
//! costs a new event nothing.
//!
//! [`Live::publish`] is called for every event that becomes served (saved from a client or by the
//! sync, released from purgatory, stored by another node); the websocket bridge registers a REQ's
//! filters here ([`Subscriber`]) and sends what it receives. Events the relay builder handles
//! itself (ephemeral and protected ones) are still delivered by it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use nostr::filter::MatchEventOptions;
use nostr::{Event, EventId, Filter, PublicKey};
use tokio::sync::mpsc;

/// Deliveries queued for one connection at most. A connection that reads slower than events
/// arrive loses the ones beyond (counted, see [`Subscriber::take_dropped`]) rather than holding
/// up every publisher or growing without bound; the relay builder's broadcast has the same size.
pub const QUEUE: usize = 1024;

/// One new event for one connection: the subscriptions of that connection it matches, each with
/// the generation it was matched against (see [`Subscriber::is_current`]).
#[derive(Debug)]
pub struct Delivery {
    pub subscriptions: Vec<(Arc<str>, u64)>,
    pub event: Arc<Published>,
}

/// A published event as connections send it.
#[derive(Debug)]
pub struct Published {
    /// The event's id, in hex.
    pub id: String,
    /// The event's JSON, written once for every connection it goes to.
    pub json: String,
}

/// The registry of open subscriptions. Cloning is shallow.
#[derive(Debug, Clone, Default)]
pub struct Live {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    index: RwLock<Index>,
    next_connection: AtomicU64,
}

/// What a filter requires of an event, used to find the subscriptions an event may match. A
/// subscription is filed under keys such that every event one of its filters matches has at
/// least one of them; the filters themselves then decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(EventId),
    Tag(char, String),
    Author(PublicKey),
    Kind(u16),
    /// A filter that names no id, tag value, author or kind.
    Any,
}

#[derive(Debug, Default)]
struct Index {
    connections: HashMap<u64, Connection>,
    by_key: HashMap<Key, HashSet<(u64, Arc<str>)>>,
}

#[derive(Debug)]
struct Connection {
    tx: mpsc::Sender<Delivery>,
    dropped: Arc<AtomicU64>,
    subscriptions: HashMap<Arc<str>, Subscription>,
}

#[derive(Debug)]
struct Subscription {
    filters: Vec<Filter>,
    keys: Vec<Key>,
    generation: u64,
}

impl Live {
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection's handle, and where its deliveries arrive.
    pub fn connect(&self) -> (Subscriber, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let subscriber = Subscriber {
            live: self.clone(),
            connection: self.inner.next_connection.fetch_add(1, Ordering::Relaxed),
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            current: HashMap::new(),
            next_generation: 0,
        };
        (subscriber, rx)
    }

    /// Delivers `event` to every open subscription one of whose filters matches it; returns how
    /// many connections it was queued for. Never waits: a connection whose queue is full misses it.
    pub fn publish(&self, event: &Event) -> usize {
        let index = self.inner.index.read().unwrap_or_else(PoisonError::into_inner);
        if index.by_key.is_empty() {
            return 0;
        }
        let mut candidates: HashSet<&(u64, Arc<str>)> = HashSet::new();
        let mut gather = |key: &Key| {
            if let Some(subscriptions) = index.by_key.get(key) {
                candidates.extend(subscriptions);
            }
        };
        gather(&Key::Id(event.id));
        gather(&Key::Author(event.pubkey));
        gather(&Key::Kind(event.kind.as_u16()));
        gather(&Key::Any);
        for (letter, values) in event.tags.indexes() {
            for value in values {
                gather(&Key::Tag(letter.as_char(), value.clone()));
            }
        }
        if candidates.is_empty() {
            return 0;
        }
        let mut matched: HashMap<u64, Vec<(Arc<str>, u64)>> = HashMap::new();
        for (connection, name) in candidates {
            let taken = index
                .connections
                .get(connection)
                .and_then(|connection| connection.subscriptions.get(name))
                .filter(|subscription| {
                    subscription
                        .filters
                        .iter()
                        .any(|filter| filter.match_event(event, MatchEventOptions::new()))
                });
            if let Some(subscription) = taken {
                matched
                    .entry(*connection)
                    .or_default()
                    .push((Arc::clone(name), subscription.generation));
            }
        }
        if matched.is_empty() {
            return 0;
        }
        let published = Arc::new(Published {
            id: event.id.to_hex(),
            json: event.as_json(),
        });
        let mut queued = 0;
        for (connection, mut subscriptions) in matched {
            let Some(connection) = index.connections.get(&connection) else {
                continue;
            };
            // In a stable order: the order the client sees its subscriptions answered in.
            subscriptions.sort_unstable();
            let delivery = Delivery {
                subscriptions,
                event: Arc::clone(&published),
            };
            match connection.tx.try_send(delivery) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    connection.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // The connection is ending; its subscriptions go with its handle.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        queued
    }

    /// Open subscriptions, over every connection.
    pub fn subscriptions(&self) -> usize {
        let index = self.inner.index.read().unwrap_or_else(PoisonError::into_inner);
        index
            .connections
            .values()
            .map(|connection| connection.subscriptions.len())
            .sum()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's subscriptions. Dropping it closes them all.
#[derive(Debug)]
pub struct Subscriber {
    live: Live,
    connection: u64,
    tx: mpsc::Sender<Delivery>,
    dropped: Arc<AtomicU64>,
    /// The generation of each open subscription: a delivery queued before a subscription was
    /// closed or replaced names an older one.
    current: HashMap<Arc<str>, u64>,
    next_generation: u64,
}

impl Subscriber {
    /// Opens (or replaces) subscription `name` with `filters`: from now on, each event published
    /// that one of them matches is delivered.
    pub fn subscribe(&mut self, name: &str, filters: Vec<Filter>) {
        let name: Arc<str> = Arc::from(name);
        let keys = keys_of(&filters);
        let generation = self.next_generation;
        self.next_generation += 1;
        self.current.insert(Arc::clone(&name), generation);
        let mut index = self.live.write();
        let index = &mut *index;
        let connection = index
            .connections
            .entry(self.connection)
            .or_insert_with(|| Connection {
                tx: self.tx.clone(),
                dropped: Arc::clone(&self.dropped),
                subscriptions: HashMap::new(),
            });
        if let Some(old) = connection.subscriptions.remove(&name) {
            unfile(&mut index.by_key, self.connection, &name, &old.keys);
        }
        for key in &keys {
            index
                .by_key
                .entry(key.clone())
                .or_default()
                .insert((self.connection, Arc::clone(&name)));
        }
        connection.subscriptions.insert(
            name,
            Subscription {
                filters,
                keys,
                generation,
            },
        );
    }

    /// Closes subscription `name`, if open.
    pub fn unsubscribe(&mut self, name: &str) {
        if self.current.remove(name).is_none() {
            return;
        }
        let mut index = self.live.write();
        let index = &mut *index;
        let Some(connection) = index.connections.get_mut(&self.connection) else {
            return;
        };
        let Some(old) = connection.subscriptions.remove(name) else {
            return;
        };
        if connection.subscriptions.is_empty() {
            index.connections.remove(&self.connection);
        }
        unfile(&mut index.by_key, self.connection, name, &old.keys);
    }

    /// Whether a delivery for subscription `name` matched against `generation` is still for it:
    /// the subscription is open and was not replaced since.
    pub fn is_current(&self, name: &str, generation: u64) -> bool {
        self.current.get(name) == Some(&generation)
    }

    /// Events this connection missed since the last call, because its queue was full.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let mut index = self.live.write();
        let index = &mut *index;
        if let Some(connection) = index.connections.remove(&self.connection) {
            for (name, subscription) in connection.subscriptions {
                unfile(&mut index.by_key, self.connection, &name, &subscription.keys);
            }
        }
    }
}

fn unfile(by_key: &mut HashMap<Key, HashSet<(u64, Arc<str>)>>, connection: u64, name: &str, keys: &[Key]) {
    let entry = (connection, Arc::<str>::from(name));
    for key in keys {
        if let Some(subscriptions) = by_key.get_mut(key) {
            subscriptions.remove(&entry);
            if subscriptions.is_empty() {
                by_key.remove(key);
            }
        }
    }
}

/// A filter is filed under at most this many keys. A REQ may list thousands of ids or tag values
/// (up to `--max-message-bytes`), and each key costs ~150 bytes in the index: past this a coarser
/// key is taken, down to [`Key::Any`], whose subscriptions are matched against every event. The
/// filter itself is kept once either way.
pub const MAX_KEYS_PER_FILTER: usize = 256;

/// The keys a subscription is filed under: for each filter, what it requires most narrowly, in
/// this order: listed ids, the values of one tag it asks for (the one with the fewest), authors,
/// kinds, each only when it names at most [`MAX_KEYS_PER_FILTER`]; else [`Key::Any`]. An empty
/// list requires nothing (the Nostr library's matching reads an empty `ids`, `authors` or `kinds`
/// as no condition), so it is passed over.
fn keys_of(filters: &[Filter]) -> Vec<Key> {
    let fits = |count: usize| (1..=MAX_KEYS_PER_FILTER).contains(&count);
    let mut keys: HashSet<Key> = HashSet::new();
    for filter in filters {
        if let Some(ids) = filter.ids.as_ref().filter(|ids| fits(ids.len())) {
            keys.extend(ids.iter().map(|id| Key::Id(*id)));
        } else if let Some((letter, values)) = filter
            .generic_tags
            .iter()
            .filter(|(_, values)| fits(values.len()))
            .min_by_key(|(_, values)| values.len())
        {
            keys.extend(
                values
                    .iter()
                    .map(|value| Key::Tag(letter.as_char(), value.clone())),
            );
        } else if let Some(authors) = filter.authors.as_ref().filter(|authors| fits(authors.len())) {
            keys.extend(authors.iter().map(|author| Key::Author(*author)));
        } else if let Some(kinds) = filter.kinds.as_ref().filter(|kinds| fits(kinds.len())) {
            keys.extend(kinds.iter().map(|kind| Key::Kind(kind.as_u16())));
        } else {
            keys.insert(Key::Any);
        }
    }
    keys.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::{Alphabet, EventBuilder, Keys, Kind, SingleLetterTag, Tag};

    fn issue(keys: &Keys, repository: &str) -> Event {
        EventBuilder::new(Kind::Custom(1621), "an issue")
            .tag(Tag::parse(["a", repository]).expect("tag"))
            .finalize(keys)
            .expect("sign")
    }

    fn of_repository(repository: &str) -> Filter {
        Filter::new()
            .kind(Kind::Custom(1621))
            .custom_tag(SingleLetterTag::lowercase(Alphabet::A), repository)
    }

    fn received(rx: &mut mpsc::Receiver<Delivery>) -> Vec<(Vec<String>, String)> {
        let mut all = Vec::new();
        while let Ok(delivery) = rx.try_recv() {
            let names = delivery
                .subscriptions
                .iter()
                .map(|(name, _)| name.to_string())
                .collect();
            all.push((names, delivery.event.id.clone()));
        }
        all
    }

    #[test]
    fn an_event_reaches_the_subscriptions_it_matches_and_no_other() {
        let live = Live::new();
        let keys = Keys::generate();
        let (mut first, mut first_rx) = live.connect();
        let (mut second, mut second_rx) = live.connect();
        first.subscribe("mine", vec![of_repository("30617:x:mine")]);
        first.subscribe("also", vec![Filter::new().author(keys.public_key())]);
        first.subscribe("notes", vec![Filter::new().kind(Kind::TextNote)]);
        second.subscribe("theirs", vec![of_repository("30617:x:theirs")]);

        let event = issue(&keys, "30617:x:mine");
        assert_eq!(live.publish(&event), 1);
        assert_eq!(
            received(&mut first_rx),
            vec![(vec!["also".to_owned(), "mine".to_owned()], event.id.to_hex())]
        );
        assert!(received(&mut second_rx).is_empty());
        // The JSON sent is the event's.
        let (mut tx, mut rx) = live.connect();
        tx.subscribe("any", vec![Filter::new()]);
        live.publish(&event);
        let delivery = rx.try_recv().expect("delivered");
        assert_eq!(Event::from_json(&delivery.event.json).expect("json"), event);
    }

    #[test]
    fn every_filter_kind_is_matched_exactly() {
        let live = Live::new();
        let author = Keys::generate();
        let event = issue(&author, "30617:x:repo");
        let other = Keys::generate().public_key();
        let cases = [
            (Filter::new().id(event.id), true),
            (Filter::new().id(EventId::all_zeros()), false),
            (Filter::new().ids(Vec::<EventId>::new()), true),
            (
                Filter::new().author(author.public_key()).kind(Kind::Custom(1621)),
                true,
            ),
            (
                Filter::new().author(author.public_key()).kind(Kind::TextNote),
                false,
            ),
            (Filter::new().author(other), false),
            (Filter::new().kinds([Kind::TextNote, Kind::Custom(1621)]), true),
            (of_repository("30617:x:repo").author(other), false),
            (of_repository("30617:x:repo").until(event.created_at - 1), false),
            (of_repository("30617:x:repo").since(event.created_at), true),
            (Filter::new().search("AN ISSUE"), true),
            (Filter::new().search("a pull request"), false),
            (Filter::new(), true),
        ];
        let (mut subscriber, mut rx) = live.connect();
        for (n, (filter, _)) in cases.iter().enumerate() {
            subscriber.subscribe(&format!("{n:02}"), vec![filter.clone()]);
        }
        live.publish(&event);
        let names = received(&mut rx)
            .pop()
            .map(|(names, _)| names)
            .unwrap_or_default();
        for (n, (filter, matches)) in cases.iter().enumerate() {
            assert_eq!(
                names.contains(&format!("{n:02}")),
                *matches,
                "filter {}",
                filter.as_json()
            );
        }
    }

    #[test]
    fn closing_replacing_and_dropping_take_subscriptions_out() {
        let live = Live::new();
        let keys = Keys::generate();
        let event = issue(&keys, "30617:x:repo");
        let (mut subscriber, mut rx) = live.connect();
        subscriber.subscribe("s", vec![of_repository("30617:x:repo")]);
        subscriber.subscribe("t", vec![of_repository("30617:x:repo")]);
        // Replaced by a filter the event does not match.
        subscriber.subscribe("s", vec![of_repository("30617:x:other")]);
        live.publish(&event);
        assert_eq!(received(&mut rx), vec![(vec!["t".to_owned()], event.id.to_hex())]);
        subscriber.unsubscribe("t");
        assert_eq!(live.publish(&event), 0);
        assert_eq!(live.subscriptions(), 1);
        drop(subscriber);
        assert_eq!(live.subscriptions(), 0);
        assert!(live.inner.index.read().expect("index").by_key.is_empty());
    }

    #[test]
    fn a_long_list_is_filed_under_a_coarser_key_and_still_matched_exactly() {
        let keys = Keys::generate();
        let event = issue(&keys, "30617:x:repo");
        let many_ids: Vec<EventId> = (0..=MAX_KEYS_PER_FILTER)
            .map(|n: usize| {
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&n.to_be_bytes());
                EventId::from_byte_array(bytes)
            })
            .chain([event.id])
            .collect();
        let filter = Filter::new().ids(many_ids.clone()).kind(Kind::Custom(1621));
        assert_eq!(keys_of(std::slice::from_ref(&filter)), vec![Key::Kind(1621)]);
        let everything = Filter::new().ids(many_ids);
        assert_eq!(keys_of(std::slice::from_ref(&everything)), vec![Key::Any]);

        let live = Live::new();
        let (mut subscriber, mut rx) = live.connect();
        subscriber.subscribe("by kind", vec![filter]);
        subscriber.subscribe("any", vec![everything]);
        let other = EventId::from_byte_array([255; 32]);
        subscriber.subscribe("not listed", vec![Filter::new().id(other)]);
        live.publish(&event);
        assert_eq!(
            received(&mut rx),
            vec![(vec!["any".to_owned(), "by kind".to_owned()], event.id.to_hex())]
        );
        let unlisted = issue(&keys, "30617:x:another");
        assert_eq!(live.publish(&unlisted), 0);
    }

    #[test]
    fn a_delivery_queued_before_a_close_or_a_replacement_is_no_longer_current() {
        let live = Live::new();
        let keys = Keys::generate();
        let (mut subscriber, mut rx) = live.connect();
        subscriber.subscribe("s", vec![of_repository("30617:x:repo")]);
        subscriber.subscribe("t", vec![of_repository("30617:x:repo")]);
        live.publish(&issue(&keys, "30617:x:repo"));
        let queued = rx.try_recv().expect("delivered");
        let current = |subscriber: &Subscriber| {
            queued
                .subscriptions
                .iter()
                .filter(|(name, generation)| subscriber.is_current(name, *generation))
                .map(|(name, _)| name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(current(&subscriber), ["s", "t"]);
        subscriber.subscribe("s", vec![of_repository("30617:x:repo")]);
        subscriber.unsubscribe("t");
        assert!(current(&subscriber).is_empty());
    }

    #[test]
    fn a_connection_that_does_not_read_misses_events_and_is_told_how_many() {
        let live = Live::new();
        let keys = Keys::generate();
        let (mut subscriber, mut rx) = live.connect();
        subscriber.subscribe("s", vec![Filter::new().author(keys.public_key())]);
        for n in 0..QUEUE + 3 {
            let event = EventBuilder::text_note(n.to_string())
                .finalize(&keys)
                .expect("sign");
            live.publish(&event);
        }
        assert_eq!(subscriber.take_dropped(), 3);
        assert_eq!(subscriber.take_dropped(), 0);
        assert_eq!(received(&mut rx).len(), QUEUE);
    }
}
