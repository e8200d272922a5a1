//! The stored part of a REQ, answered by the websocket bridge.
//!
//! nostr-relay-builder answers a REQ by reading every stored match into an `Event`, writing it
//! out again as JSON and sending it through the in-process pipe, where the bridge reads each frame
//! and sends it on: per event, a parse, a serialization and two websocket framings, most of a
//! repository-scoped REQ's time. The store already holds each event's JSON, so the bridge answers
//! the stored part itself:
//!
//! * the relay gets the same REQ with `limit: 0` on every filter: it applies its own checks
//!   (subscription id length, subscriptions per connection), registers the subscription for live
//!   events, and answers `EOSE` (or `CLOSED`) at once, with no stored event;
//! * when that `EOSE` comes back, the bridge reads the matches from the store as JSON and sends
//!   them, then its own `EOSE`. Live events the relay sends after that are forwarded as before.
//!
//! The relay answers a connection's messages in order, so the answers are matched to the REQs
//! first in, first out. As the relay does, a REQ whose filters all list `ids` is closed
//! (`CLOSED ""`) once every id is found; the relay then drops its subscription too. NIP-50
//! searches, and filters with an empty `ids`, go to the relay unchanged.
//!
//! An event saved while the subscription starts can be both in the stored part and sent live by
//! the relay right after. For [`DEDUPE_WINDOW`] after a stored part, a live event among its
//! [`DEDUPE_IDS`] newest is dropped, so the client gets each event once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use nostr::{Event, Filter, Timestamp};
use serde_json::Value;

use crate::store::{Store, StoreError};

/// The limit a filter without one gets (the relay builder is given the same).
pub const DEFAULT_LIMIT: usize = crate::nip01::DEFAULT_FILTER_LIMIT;

/// REQs forwarded to the relay and not yet answered by it, per connection. Past this, a REQ gets
/// `CLOSED` without reaching the relay.
pub const MAX_WAITING: usize = 256;

/// How long after a stored part a live event for the same subscription is checked against it.
/// The relay sends an event saved just before the read within milliseconds.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(5);

/// Ids of a stored part remembered for that check: its newest, where an event saved while the
/// subscription starts almost always is. Bounds the memory a connection's REQs can pin (at most
/// this many ids for each open subscription).
pub const DEDUPE_IDS: usize = 100;

/// What the bridge does with one REQ it forwarded, once the relay answers it.
#[derive(Debug, Clone, PartialEq)]
enum Waiting {
    /// The relay answers it all (stored events, `EOSE`): forward everything.
    Relay,
    /// The bridge sends the stored events for these filters when the relay's `EOSE` comes.
    Bridge(Stored),
    /// The client closed it before the relay answered: drop the relay's `EOSE`.
    Closed,
}

/// A REQ whose stored part the bridge answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub sub: String,
    /// With the relay's limits applied.
    pub filters: Vec<Filter>,
    /// When every filter lists ids: how many, since the subscription is closed once all are
    /// found.
    pub ids: Option<usize>,
}

/// A REQ to forward to the relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub text: String,
    /// The relay answers its stored part too (NIP-50 searches, empty id lists); the bridge
    /// answers the others when the relay's `EOSE` comes.
    pub relay_answers: bool,
}

/// What to do with a message from the relay.
#[derive(Debug, Clone, PartialEq)]
pub enum FromRelay {
    Forward,
    /// Send the stored events of this REQ, then `EOSE`; the relay's own `EOSE` is not forwarded.
    Answer(Stored),
    Drop,
}

/// One connection's REQs waiting for the relay's answer, oldest first, and the ids of the stored
/// parts sent in the last [`DEDUPE_WINDOW`].
#[derive(Debug, Default)]
pub struct Requests {
    waiting: VecDeque<(String, Waiting)>,
    sent: HashMap<String, (Instant, HashSet<String>)>,
}

/// The start of a relay's EVENT message, enough to find its subscription and event id.
#[derive(serde::Deserialize)]
struct EventMessage<'a>(
    serde::de::IgnoredAny,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] IdOnly<'a>,
);

#[derive(serde::Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

impl Requests {
    /// A client REQ (already checked): what to forward to the relay, or, when too many are
    /// waiting, the `CLOSED` to answer the client with.
    pub fn open(
        &mut self,
        sub: &str,
        mut filters: Vec<Filter>,
        text: &str,
        max_limit: usize,
    ) -> Result<Forward, String> {
        if self.waiting.len() >= MAX_WAITING {
            return Err(super::ws::closed(
                sub,
                "rate-limited: too many REQs waiting for an answer on this connection",
            ));
        }
        let bridge = filters
            .iter()
            .all(|filter| filter.search.is_none() && filter.ids.as_ref().is_none_or(|ids| !ids.is_empty()));
        if !bridge {
            self.waiting.push_back((sub.to_owned(), Waiting::Relay));
            return Ok(Forward {
                text: text.to_owned(),
                relay_answers: true,
            });
        }
        // The relay's limits: lowered to the maximum; without one, as many as the ids listed,
        // else the default.
        for filter in &mut filters {
            filter.limit = Some(match (filter.limit, &filter.ids) {
                (Some(limit), _) => limit.min(max_limit),
                (None, Some(ids)) => ids.len(),
                (None, None) => DEFAULT_LIMIT,
            });
        }
        let ids = filters
            .iter()
            .map(|filter| filter.ids.as_ref().map(|ids| ids.len()))
            .sum();
        let forwarded = live_only(sub, &filters);
        let stored = Stored {
            sub: sub.to_owned(),
            filters,
            ids,
        };
        self.waiting.push_back((sub.to_owned(), Waiting::Bridge(stored)));
        Ok(Forward {
            text: forwarded,
            relay_answers: false,
        })
    }

    /// A client CLOSE: its REQs still waiting get no stored events.
    pub fn close(&mut self, sub: &str) {
        self.sent.remove(sub);
        for (waiting_sub, waiting) in &mut self.waiting {
            if waiting_sub == sub && matches!(waiting, Waiting::Bridge(_)) {
                *waiting = Waiting::Closed;
            }
        }
    }

    /// A message from the relay: the relay's `EOSE` or `CLOSED` answers the oldest REQ waiting
    /// under its subscription id.
    pub fn from_relay(&mut self, text: &str) -> FromRelay {
        if !self.sent.is_empty() && text.starts_with("[\"EVENT\"") {
            return self.live_event(text);
        }
        if self.waiting.is_empty() || !(text.starts_with("[\"EOSE\"") || text.starts_with("[\"CLOSED\"")) {
            return FromRelay::Forward;
        }
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
            return FromRelay::Forward;
        };
        let (Some(verb), Some(sub)) = (
            items.first().and_then(Value::as_str),
            items.get(1).and_then(Value::as_str),
        ) else {
            return FromRelay::Forward;
        };
        let Some(at) = self.waiting.iter().position(|(waiting, _)| waiting == sub) else {
            return FromRelay::Forward;
        };
        let Some((_, waiting)) = self.waiting.remove(at) else {
            return FromRelay::Forward;
        };
        match (verb, waiting) {
            ("EOSE", Waiting::Bridge(stored)) => FromRelay::Answer(stored),
            ("EOSE", Waiting::Closed) => FromRelay::Drop,
            _ => FromRelay::Forward,
        }
    }

    /// A stored part was sent: its ids are remembered for [`DEDUPE_WINDOW`].
    pub fn answered(&mut self, sub: &str, ids: HashSet<String>) {
        let now = Instant::now();
        self.sent.retain(|_, (until, _)| *until > now);
        self.sent.insert(sub.to_owned(), (now + DEDUPE_WINDOW, ids));
    }

    /// A live event from the relay: dropped when the stored part just sent had it.
    fn live_event(&mut self, text: &str) -> FromRelay {
        let Ok(EventMessage(_, sub, event)) = serde_json::from_str::<EventMessage<'_>>(text) else {
            return FromRelay::Forward;
        };
        if self.in_stored_part(&sub, &event.id) {
            FromRelay::Drop
        } else {
            FromRelay::Forward
        }
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

    /// REQs the relay has not answered yet.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// The REQ the relay gets for a REQ the bridge answers: the same filters with `limit: 0`.
fn live_only(sub: &str, filters: &[Filter]) -> String {
    let mut text = format!("[\"REQ\",{}", Value::from(sub));
    for filter in filters {
        let live = filter.clone().limit(0);
        text.push(',');
        text.push_str(&live.as_json());
    }
    text.push(']');
    text
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

    #[test]
    fn the_relay_gets_the_same_filters_with_limit_zero_and_the_bridge_keeps_the_clamped_limits() {
        let mut requests = Requests::default();
        let forwarded = requests
            .open("s", vec![repo_filter(Some(10_000)), repo_filter(None)], "", 1000)
            .expect("forwarded");
        assert!(!forwarded.relay_answers);
        let forwarded = forwarded.text;
        let Value::Array(items) = serde_json::from_str::<Value>(&forwarded).expect("json") else {
            panic!("not an array: {forwarded}");
        };
        assert_eq!(items[0], "REQ");
        assert_eq!(items[1], "s");
        for filter in &items[2..] {
            assert_eq!(filter["limit"], 0, "{forwarded}");
            assert_eq!(filter["#a"][0], "30617:abc:repo");
        }
        assert_eq!(
            requests.from_relay("[\"EOSE\",\"s\"]"),
            FromRelay::Answer(stored(
                "s",
                vec![repo_filter(Some(1000)), repo_filter(Some(DEFAULT_LIMIT))],
                None
            ))
        );
        assert!(requests.is_empty());
        // Live events and later messages go to the client as they are.
        assert_eq!(requests.from_relay("[\"EOSE\",\"s\"]"), FromRelay::Forward);
    }

    #[test]
    fn reqs_by_ids_are_limited_to_their_count_and_close_once_all_are_found() {
        let mut requests = Requests::default();
        let two = Filter::new().ids([
            nostr::EventId::all_zeros(),
            nostr::EventId::from_byte_array([1; 32]),
        ]);
        let one = Filter::new().id(nostr::EventId::from_byte_array([2; 32]));
        requests
            .open("ids", vec![two.clone(), one.clone()], "", 500)
            .expect("ids");
        assert_eq!(
            requests.from_relay("[\"EOSE\",\"ids\"]"),
            FromRelay::Answer(stored("ids", vec![two.limit(2), one.limit(1)], Some(3)))
        );
        // With a filter without ids, the REQ stays open, as the relay keeps it.
        let mixed = vec![Filter::new().id(nostr::EventId::all_zeros()), repo_filter(None)];
        requests.open("mixed", mixed, "", 500).expect("mixed");
        let FromRelay::Answer(mixed) = requests.from_relay("[\"EOSE\",\"mixed\"]") else {
            panic!("not answered by the bridge");
        };
        assert_eq!(mixed.ids, None);
    }

    #[test]
    fn searches_and_empty_id_lists_are_the_relays_to_answer() {
        let mut requests = Requests::default();
        let search = Filter::new().search("x");
        assert_eq!(
            requests.open("q", vec![search], "original", 500),
            Ok(Forward {
                text: "original".to_owned(),
                relay_answers: true
            })
        );
        let none = Filter::new().ids(Vec::<nostr::EventId>::new());
        assert_eq!(
            requests.open("none", vec![none], "empty", 500),
            Ok(Forward {
                text: "empty".to_owned(),
                relay_answers: true
            })
        );
        assert_eq!(requests.from_relay("[\"EOSE\",\"none\"]"), FromRelay::Forward);
        assert_eq!(
            requests.from_relay("[\"CLOSED\",\"none\",\"\"]"),
            FromRelay::Forward
        );
        assert_eq!(requests.len(), 1);
    }

    fn stored(sub: &str, filters: Vec<Filter>, ids: Option<usize>) -> Stored {
        Stored {
            sub: sub.to_owned(),
            filters,
            ids,
        }
    }

    #[test]
    fn answers_are_matched_to_requests_in_order_per_subscription() {
        let mut requests = Requests::default();
        requests
            .open("a", vec![repo_filter(Some(1))], "", 500)
            .expect("a");
        requests
            .open("b", vec![repo_filter(Some(2))], "", 500)
            .expect("b");
        requests
            .open("a", vec![repo_filter(Some(3))], "", 500)
            .expect("a again");
        // The relay refused the first `a` (too many REQs): its CLOSED goes to the client.
        assert_eq!(
            requests.from_relay("[\"CLOSED\",\"a\",\"rate-limited: too many REQs\"]"),
            FromRelay::Forward
        );
        assert_eq!(
            requests.from_relay("[\"EOSE\",\"b\"]"),
            FromRelay::Answer(stored("b", vec![repo_filter(Some(2))], None))
        );
        assert_eq!(
            requests.from_relay("[\"EOSE\",\"a\"]"),
            FromRelay::Answer(stored("a", vec![repo_filter(Some(3))], None))
        );
        assert!(requests.is_empty());
    }

    #[test]
    fn a_req_closed_before_the_relay_answered_gets_no_stored_events() {
        let mut requests = Requests::default();
        requests
            .open("a", vec![repo_filter(Some(1))], "", 500)
            .expect("a");
        requests.close("a");
        assert_eq!(requests.from_relay("[\"EOSE\",\"a\"]"), FromRelay::Drop);
        // An event message naming the subscription is never taken for an answer.
        requests
            .open("a", vec![repo_filter(Some(1))], "", 500)
            .expect("a");
        assert_eq!(requests.from_relay("[\"EVENT\",\"a\",{}]"), FromRelay::Forward);
        assert_eq!(requests.len(), 1);
    }

    #[test]
    fn too_many_waiting_reqs_are_closed_without_reaching_the_relay() {
        let mut requests = Requests::default();
        for i in 0..MAX_WAITING {
            requests
                .open(&i.to_string(), vec![repo_filter(None)], "", 500)
                .expect("room");
        }
        let refused = requests.open("one more", vec![repo_filter(None)], "", 500);
        assert!(refused.is_err_and(|closed| closed.contains("rate-limited")));
        assert_eq!(requests.len(), MAX_WAITING);
    }

    #[test]
    fn a_live_event_already_in_the_stored_part_just_sent_is_dropped() {
        let mut requests = Requests::default();
        let id = "ab".repeat(32);
        requests.answered("s", HashSet::from([id.clone()]));
        let live = |sub: &str, id: &str| format!("[\"EVENT\",\"{sub}\",{{\"id\":\"{id}\",\"kind\":1}}]");
        assert_eq!(requests.from_relay(&live("s", &id)), FromRelay::Drop);
        assert_eq!(
            requests.from_relay(&live("s", &"cd".repeat(32))),
            FromRelay::Forward
        );
        assert_eq!(requests.from_relay(&live("other", &id)), FromRelay::Forward);
        requests.close("s");
        assert_eq!(requests.from_relay(&live("s", &id)), FromRelay::Forward);
        // Past the window, the ids are forgotten.
        requests.answered("s", HashSet::from([id.clone()]));
        requests.sent.get_mut("s").expect("sent").0 = Instant::now();
        assert_eq!(requests.from_relay(&live("s", &id)), FromRelay::Forward);
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
