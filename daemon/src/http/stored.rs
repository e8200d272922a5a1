//! REQs, answered by the websocket bridge.
//!
//! nostr-relay-builder answers a REQ by reading every stored match into an `Event`, writing it
//! out again as JSON and sending it through the in-process pipe, where the bridge reads each frame
//! and sends it on: per event, a parse, a serialization and two websocket framings, most of a
//! repository-scoped REQ's time. And it keeps live subscriptions by waking every connection it
//! holds for every new event. So the bridge answers REQs itself, and the relay builder never sees
//! one:
//!
//! * [`Requests::open`] applies the checks the relay builder made (the subscription id's length,
//!   `--max-subscriptions` per connection) and its limits (`--max-filter-limit`, the default
//!   limit);
//! * the bridge opens the subscription's live part in `live`, then reads the matches from the
//!   store as JSON ([`answer`]) and sends them, then `EOSE`. As the relay builder did, a REQ whose
//!   filters all list `ids` is closed (`CLOSED ""`) once every id is found.
//!
//! An event saved while the subscription starts can be both in the stored part and delivered live
//! right after. For [`DEDUPE_WINDOW`] after a stored part, a live event among its [`DEDUPE_IDS`]
//! newest is dropped, so the client gets each event once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nostr::{Event, Filter, Timestamp};
use serde_json::Value;

use crate::store::{Store, StoreError};

/// The limit a filter without one gets.
pub const DEFAULT_LIMIT: usize = crate::nip01::DEFAULT_FILTER_LIMIT;

/// The longest subscription id taken, in characters (the relay builder's limit).
pub const MAX_SUBSCRIPTION_ID_CHARS: usize = 250;

/// How long after a stored part a live event for the same subscription is checked against it.
/// An event saved just before the read is delivered within milliseconds.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(5);

/// Ids of a stored part remembered for that check: its newest, where an event saved while the
/// subscription starts almost always is. Bounds the memory a connection's REQs can pin (at most
/// this many ids for each open subscription).
pub const DEDUPE_IDS: usize = 100;

/// A REQ's stored part to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub sub: String,
    /// With the limits applied.
    pub filters: Vec<Filter>,
    /// When every filter lists ids: how many, since the subscription is closed once all are
    /// found.
    pub ids: Option<usize>,
}

/// One connection's open subscriptions, and the ids of the stored parts sent in the last
/// [`DEDUPE_WINDOW`].
#[derive(Debug, Default)]
pub struct Requests {
    open: HashSet<String>,
    sent: HashMap<String, (Instant, HashSet<String>)>,
}

impl Requests {
    /// A client REQ (already checked): the stored part to answer, or the `CLOSED` to answer the
    /// client with. A REQ with the id of an open subscription replaces it.
    pub fn open(
        &mut self,
        sub: &str,
        mut filters: Vec<Filter>,
        max_subscriptions: usize,
        max_limit: usize,
    ) -> Result<Stored, String> {
        if sub.chars().count() > MAX_SUBSCRIPTION_ID_CHARS {
            return Err(super::ws::closed(
                sub,
                &format!("blocked: subscription ID exceeds max length {MAX_SUBSCRIPTION_ID_CHARS}"),
            ));
        }
        self.sent.remove(sub);
        if !self.open.contains(sub) && self.open.len() >= max_subscriptions {
            return Err(super::ws::closed(sub, "rate-limited: too many REQs"));
        }
        // As the relay builder did: lowered to the maximum; without one, as many as the ids
        // listed, else the default (here no more than the maximum either).
        for filter in &mut filters {
            filter.limit = Some(match (filter.limit, &filter.ids) {
                (Some(limit), _) => limit.min(max_limit),
                (None, Some(ids)) => ids.len(),
                (None, None) => DEFAULT_LIMIT.min(max_limit),
            });
        }
        let ids = filters
            .iter()
            .map(|filter| filter.ids.as_ref().map(|ids| ids.len()))
            .sum();
        self.open.insert(sub.to_owned());
        Ok(Stored {
            sub: sub.to_owned(),
            filters,
            ids,
        })
    }

    /// A subscription ends (a client CLOSE, or closed by the bridge).
    pub fn close(&mut self, sub: &str) {
        self.open.remove(sub);
        self.sent.remove(sub);
    }

    /// A stored part was sent: its ids are remembered for [`DEDUPE_WINDOW`].
    pub fn answered(&mut self, sub: &str, ids: HashSet<String>) {
        let now = Instant::now();
        self.sent.retain(|_, (until, _)| *until > now);
        self.sent.insert(sub.to_owned(), (now + DEDUPE_WINDOW, ids));
    }

    /// Whether the stored part just sent for `sub` had the event `id` (a live event for `sub` is
    /// then dropped).
    pub fn in_stored_part(&mut self, sub: &str, id: &str) -> bool {
        let Some((until, ids)) = self.sent.get(sub) else {
            return false;
        };
        if *until <= Instant::now() {
            self.sent.remove(sub);
            return false;
        }
        ids.contains(id)
    }

    /// Open subscriptions.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// A REQ's stored part: the messages to send, and the ids of the events among them.
#[derive(Debug, Default)]
pub struct Answer {
    pub messages: Vec<String>,
    pub ids: HashSet<String>,
    /// Every id the REQ listed was found: it ends with `CLOSED`, and the relay's subscription is
    /// to be closed too.
    pub complete: bool,
}

/// The answer to a REQ's stored part: the matching events, newest first, each as
/// `["EVENT", sub, <the stored JSON>]`, then `EOSE` (and `CLOSED` when every id listed was
/// found). Expired events (NIP-40) are left out.
pub async fn answer(store: &Store, stored: &Stored) -> Result<Answer, StoreError> {
    let Stored {
        sub,
        filters,
        ids: listed,
    } = stored;
    let mut found = Vec::new();
    for filter in filters {
        found.extend(store.query_stored(filter).await?);
    }
    if filters.len() > 1 {
        // Each filter's matches are newest first; together, in the same order, each event once.
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        found.dedup_by(|a, b| a.id == b.id);
    }
    let found_count = found.len();
    let sub = Value::from(sub.as_str()).to_string();
    let now = Timestamp::now();
    let mut messages = Vec::with_capacity(found.len() + 1);
    let mut ids = HashSet::with_capacity(found.len().min(DEDUPE_IDS));
    for event in found {
        if expired(&event.json, now) {
            continue;
        }
        messages.push(event_message(&sub, &event.json));
        if ids.len() < DEDUPE_IDS {
            ids.insert(event.id);
        }
    }
    messages.push(format!("[\"EOSE\",{sub}]"));
    let complete = listed.is_some_and(|listed| listed == found_count);
    if complete {
        messages.push(format!("[\"CLOSED\",{sub},\"\"]"));
    }
    Ok(Answer {
        messages,
        ids,
        complete,
    })
}

/// `["EVENT",<sub>,<event>]` from the subscription id already written as a JSON string and the
/// event's JSON.
pub fn event_message(sub: &str, json: &str) -> String {
    let mut message = String::with_capacity(json.len() + sub.len() + 12);
    message.push_str("[\"EVENT\",");
    message.push_str(sub);
    message.push(',');
    message.push_str(json);
    message.push(']');
    message
}

/// Whether a stored event has expired (NIP-40). Only events that name an expiration are read.
fn expired(json: &str, now: Timestamp) -> bool {
    json.contains("\"expiration\"") && Event::from_json(json).is_ok_and(|event| event.is_expired_at(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::{Kind, SingleLetterTag};

    fn repo_filter(limit: Option<usize>) -> Filter {
        let filter = Filter::new()
            .kind(Kind::Custom(1621))
            .custom_tag(SingleLetterTag::lowercase(nostr::Alphabet::A), "30617:abc:repo");
        match limit {
            Some(limit) => filter.limit(limit),
            None => filter,
        }
    }

    fn stored(sub: &str, filters: Vec<Filter>, ids: Option<usize>) -> Stored {
        Stored {
            sub: sub.to_owned(),
            filters,
            ids,
        }
    }

    #[test]
    fn limits_are_lowered_to_the_maximum_and_given_where_missing() {
        let mut requests = Requests::default();
        assert_eq!(
            requests.open("s", vec![repo_filter(Some(10_000)), repo_filter(None)], 10, 1000),
            Ok(stored(
                "s",
                vec![repo_filter(Some(1000)), repo_filter(Some(DEFAULT_LIMIT))],
                None
            ))
        );
        assert_eq!(
            requests.open("small", vec![repo_filter(None)], 10, 20),
            Ok(stored("small", vec![repo_filter(Some(20))], None))
        );
        assert_eq!(requests.len(), 2);
    }

    #[test]
    fn reqs_by_ids_are_limited_to_their_count_and_close_once_all_are_found() {
        let mut requests = Requests::default();
        let two = Filter::new().ids([
            nostr::EventId::all_zeros(),
            nostr::EventId::from_byte_array([1; 32]),
        ]);
        let one = Filter::new().id(nostr::EventId::from_byte_array([2; 32]));
        assert_eq!(
            requests.open("ids", vec![two.clone(), one.clone()], 10, 500),
            Ok(stored("ids", vec![two.limit(2), one.limit(1)], Some(3)))
        );
        // With a filter without ids, the REQ stays open.
        let mixed = vec![Filter::new().id(nostr::EventId::all_zeros()), repo_filter(None)];
        let mixed = requests.open("mixed", mixed, 10, 500).expect("mixed");
        assert_eq!(mixed.ids, None);
        // An empty id list: nothing to find, so it is closed at once.
        let none = requests
            .open(
                "none",
                vec![Filter::new().ids(Vec::<nostr::EventId>::new())],
                10,
                500,
            )
            .expect("none");
        assert_eq!(none.ids, Some(0));
    }

    #[test]
    fn too_many_subscriptions_or_too_long_an_id_are_closed() {
        let mut requests = Requests::default();
        for i in 0..3 {
            requests
                .open(&i.to_string(), vec![repo_filter(None)], 3, 500)
                .expect("room");
        }
        let refused = requests.open("one more", vec![repo_filter(None)], 3, 500);
        assert!(refused.is_err_and(|closed| closed.contains("rate-limited: too many REQs")));
        // Replacing an open one is no new subscription; a closed one makes room.
        assert!(requests.open("0", vec![repo_filter(Some(1))], 3, 500).is_ok());
        requests.close("1");
        assert!(requests.open("one more", vec![repo_filter(None)], 3, 500).is_ok());
        assert_eq!(requests.len(), 3);

        let long = "x".repeat(MAX_SUBSCRIPTION_ID_CHARS + 1);
        let refused = requests.open(&long, vec![repo_filter(None)], 100, 500);
        assert!(refused.is_err_and(|closed| closed.contains("subscription ID exceeds max length 250")));
        let longest = "é".repeat(MAX_SUBSCRIPTION_ID_CHARS);
        assert!(requests.open(&longest, vec![repo_filter(None)], 100, 500).is_ok());
    }

    #[test]
    fn a_live_event_already_in_the_stored_part_just_sent_is_dropped() {
        let mut requests = Requests::default();
        let id = "ab".repeat(32);
        requests.answered("s", HashSet::from([id.clone()]));
        assert!(requests.in_stored_part("s", &id));
        assert!(!requests.in_stored_part("s", &"cd".repeat(32)));
        assert!(!requests.in_stored_part("other", &id));
        requests.close("s");
        assert!(!requests.in_stored_part("s", &id));
        // Past the window, the ids are forgotten.
        requests.answered("s", HashSet::from([id.clone()]));
        requests.sent.get_mut("s").expect("sent").0 = Instant::now();
        assert!(!requests.in_stored_part("s", &id));
        assert!(requests.sent.is_empty());
    }

    #[test]
    fn only_events_naming_an_expiration_are_read_and_past_ones_left_out() {
        let keys = nostr::Keys::generate();
        let now = Timestamp::now();
        let past = nostr::EventBuilder::text_note("x")
            .tag(nostr::Tag::expiration(Timestamp::from_secs(now.as_secs() - 10)))
            .finalize(&keys)
            .expect("sign");
        let future = nostr::EventBuilder::text_note("expiration")
            .tag(nostr::Tag::expiration(Timestamp::from_secs(now.as_secs() + 3600)))
            .finalize(&keys)
            .expect("sign");
        assert!(expired(&past.as_json(), now));
        assert!(!expired(&future.as_json(), now));
        assert!(!expired("{\"not\":\"an event\"}", now));
    }
}
