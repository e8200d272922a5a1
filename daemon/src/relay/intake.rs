//! Events from clients, taken by the websocket bridge itself instead of the relay builder.
//!
//! The relay builder handles one message of a connection at a time: an event's `OK` waits for its
//! commit before the next event of that connection is even read, so a connection has one event in
//! flight and a commit batches at most one event per connection. The bridge instead keeps several
//! events of a connection in flight ([`MAX_IN_FLIGHT`]), in order, and asks [`must_follow`] which
//! of them have to wait for the ones before (the same order a client would see from the relay
//! builder: an event that builds on an earlier one of the same connection is decided after it is
//! stored). [`Intake::client_event`] runs the relay builder's checks, the GRASP write policy and
//! the save, and words the answer as the relay builder does; the signature is checked only for
//! an event the policy would take or hold (a refusal changes nothing and proves nothing).
//!
//! Protected (NIP-70) events still go to the relay builder, which owns NIP-42 authentication.

use std::net::SocketAddr;
use std::sync::Arc;

use nostr::message::MachineReadablePrefix;
use nostr::{Event, EventId, Kind};
use nostr_database::{RejectedReason, SaveEventStatus};
use nostr_relay_builder::builder::WritePolicyResult;

use super::GraspPolicy;
use super::policy::Signature;
use crate::app::App;

/// At most this many events of one connection are decided and saved at once, and only while
/// their messages add up to less than [`MAX_IN_FLIGHT_BYTES`]. The single writer commits what is
/// waiting in one transaction, and a larger transaction writes each index page it touches once for
/// more events: in the relay bench (40 connections), 128 in flight took accepted events from 91–95
/// to 76–86 µs of CPU, against 32.
pub const MAX_IN_FLIGHT: usize = 128;
/// The bound on the bytes of one connection's events in flight: each holds its event in memory
/// until its `OK` is sent. One event is always let in, whatever its size.
pub const MAX_IN_FLIGHT_BYTES: usize = 512 * 1024;

/// An event of a connection whose `OK` is not sent yet, as [`must_follow`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    pub id: EventId,
    /// An event that others must not overtake and that must not overtake others.
    pub barrier: bool,
}

impl InFlight {
    pub fn of(event: &Event) -> Self {
        Self {
            id: event.id,
            barrier: is_barrier(event.kind),
        }
    }
}

/// Whether the bridge takes this event itself ([`Intake::client_event`]) rather than the relay
/// builder.
pub fn taken_by_bridge(event: &Event) -> bool {
    !event.is_protected()
}

/// Events whose decision changes what other events are decided against: deletions, and every
/// replaceable or addressable kind (announcements, states, GRASP lists, relay lists).
fn is_barrier(kind: Kind) -> bool {
    kind == Kind::EventDeletion || !kind.is_regular()
}

/// Whether `event` must wait until every event in `in_flight` (earlier events of the same
/// connection) is answered before it is decided: when either side is a barrier, when it is one of
/// them again, or when one of its tags names one of them (a comment on an issue sent just before
/// it, a pull request update of a pull request).
pub fn must_follow(event: &Event, in_flight: &[InFlight]) -> bool {
    if in_flight.is_empty() {
        return false;
    }
    if is_barrier(event.kind)
        || in_flight
            .iter()
            .any(|earlier| earlier.barrier || earlier.id == event.id)
    {
        return true;
    }
    event.tags.iter().any(|tag| {
        tag.as_slice()
            .get(1)
            .filter(|value| value.len() == 64)
            .and_then(|value| EventId::from_hex(value).ok())
            .is_some_and(|named| in_flight.iter().any(|earlier| earlier.id == named))
    })
}

/// `["OK",<id>,<status>,<message>]`, the text of the relay builder's `OK` written straight into
/// one string (the library builds a JSON tree first).
fn ok_message(id: &EventId, status: bool, message: &str) -> String {
    let mut text = String::with_capacity(84 + message.len());
    text.push_str("[\"OK\",\"");
    text.push_str(&id.to_hex());
    text.push_str(if status { "\",true," } else { "\",false," });
    // A JSON string, escaped as serde_json escapes it.
    text.push_str(&serde_json::Value::from(message).to_string());
    text.push(']');
    text
}

/// What became of an event the policy took, at the store.
#[derive(Debug)]
pub enum Saved {
    /// Stored and sent to live subscribers.
    Stored,
    Duplicate,
    Refused(Refusal),
    Failed(crate::store::StoreError),
}

/// Why the store did not take an event the policy took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Deleted,
    Replaced,
    Other,
}

impl Refusal {
    pub fn prefix(self) -> MachineReadablePrefix {
        match self {
            Refusal::Deleted | Refusal::Replaced => MachineReadablePrefix::Blocked,
            Refusal::Other => MachineReadablePrefix::Error,
        }
    }

    /// The relay builder's wording.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Deleted => "this event is deleted",
            Refusal::Replaced => "a newer event with this address is stored",
            Refusal::Other => "the store did not take this event",
        }
    }
}

/// Saves an event the write policy took and, once stored, delivers it to the open subscriptions
/// it matches (`live`): the one save step of clients' events and synced ones. An ephemeral event
/// is only delivered.
pub async fn save(app: &App, event: Arc<Event>) -> Saved {
    if event.kind.is_ephemeral() {
        app.publish_served(&event);
        return Saved::Stored;
    }
    match app.store().save_shared(Arc::clone(&event)).await {
        Ok(saved) if saved.is_success() => {
            app.publish_served(&event);
            Saved::Stored
        }
        Ok(SaveEventStatus::Rejected(RejectedReason::Duplicate)) => Saved::Duplicate,
        Ok(SaveEventStatus::Rejected(RejectedReason::Deleted)) => Saved::Refused(Refusal::Deleted),
        Ok(SaveEventStatus::Rejected(RejectedReason::Replaced)) => Saved::Refused(Refusal::Replaced),
        Ok(_) => Saved::Refused(Refusal::Other),
        Err(error) => Saved::Failed(error),
    }
}

/// The write path for clients' events: the relay builder's checks, the write policy, the store,
/// and live subscribers. One pointer: each event in flight holds a clone.
#[derive(Debug, Clone)]
pub struct Intake {
    parts: Arc<Parts>,
}

#[derive(Debug)]
struct Parts {
    app: App,
    policy: GraspPolicy,
}

impl Intake {
    pub fn new(app: &App) -> Self {
        let parts = Parts {
            app: app.clone(),
            policy: GraspPolicy::new(app.clone()),
        };
        Self {
            parts: Arc::new(parts),
        }
    }

    /// Takes one client's event and returns the relay's answer, an `OK` message. The checks run
    /// in the relay builder's order, except for the signature: an event already stored is
    /// answered without checking it again (it was checked when it arrived, and nothing changes),
    /// and the policy checks it only when the event would change anything.
    pub async fn client_event(&self, event: Box<Event>, peer: SocketAddr) -> String {
        let id = event.id;
        let (status, message) = self.take(event, peer).await;
        ok_message(&id, status, &message)
    }

    async fn take(&self, event: Box<Event>, peer: SocketAddr) -> (bool, String) {
        let refuse = |prefix: MachineReadablePrefix, why: &str| (false, format!("{prefix}: {why}"));
        if !crate::nip01::id_holds(&event) {
            return refuse(MachineReadablePrefix::Invalid, "invalid event ID");
        }
        match self.parts.app.store().contains(&event.id).await {
            Ok(true) => {
                return (
                    true,
                    format!("{}: already have this event", MachineReadablePrefix::Duplicate),
                );
            }
            Ok(false) => {}
            Err(error) => return self.failed(event.id, &error),
        }
        if event.is_expired() {
            return refuse(MachineReadablePrefix::Blocked, "event is expired");
        }
        // The policy checks the signature once it knows the event would change anything: a
        // refused event costs no signature check.
        if let WritePolicyResult::Reject {
            prefix,
            message,
            status,
        } = self
            .parts
            .policy
            .admit_client_event(&event, &peer, Signature::Unchecked)
            .await
        {
            return (status, format!("{prefix}: {message}"));
        }
        let id = event.id;
        match save(&self.parts.app, Arc::from(event)).await {
            Saved::Stored => (true, String::new()),
            Saved::Duplicate => (
                true,
                format!("{}: already have this event", MachineReadablePrefix::Duplicate),
            ),
            Saved::Refused(why) => refuse(why.prefix(), why.message()),
            Saved::Failed(error) => self.failed(id, &error),
        }
    }

    fn failed(&self, id: EventId, error: &crate::store::StoreError) -> (bool, String) {
        tracing::error!(event_id = %id, %error, "cannot store event");
        let reason = crate::types::client_reason(error).unwrap_or("database error");
        (false, format!("{}: {reason}", MachineReadablePrefix::Error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::message::RelayMessage;
    use nostr::{EventBuilder, Keys, Tag};

    fn signed(kind: u16, tags: &[&[&str]]) -> Event {
        EventBuilder::new(Kind::from(kind), "x")
            .tags(
                tags.iter()
                    .map(|tag| Tag::parse(tag.iter().copied()).expect("tag")),
            )
            .finalize(&Keys::generate())
            .expect("sign")
    }

    #[test]
    fn ok_messages_read_as_the_relay_builders() {
        let id = signed(1, &[]).id;
        for (status, message) in [
            (true, ""),
            (true, "duplicate: already have this event"),
            (false, "blocked: \"quoted\" \\ back\nslash\u{1}\u{7f} é 🦀"),
        ] {
            assert_eq!(
                ok_message(&id, status, message),
                RelayMessage::ok(id, status, message).as_json()
            );
        }
    }

    #[test]
    fn nothing_in_flight_means_no_wait() {
        assert!(!must_follow(&signed(30617, &[&["d", "web"]]), &[]));
        assert!(!must_follow(&signed(1621, &[]), &[]));
    }

    #[test]
    fn unrelated_regular_events_overtake_nothing_but_do_not_wait() {
        let earlier = [InFlight::of(&signed(1621, &[])), InFlight::of(&signed(1, &[]))];
        assert!(!must_follow(&signed(1621, &[&["a", "30617:abc:web"]]), &earlier));
        assert!(!must_follow(&signed(1111, &[&["e", &"0".repeat(64)]]), &earlier));
    }

    #[test]
    fn an_event_naming_an_earlier_one_waits_for_it() {
        let issue = signed(1621, &[]);
        let earlier = [InFlight::of(&signed(1, &[])), InFlight::of(&issue)];
        let comment = signed(1111, &[&["E", &issue.id.to_hex()], &["K", "1621"]]);
        assert!(must_follow(&comment, &earlier));
        let reaction = signed(7, &[&["e", &issue.id.to_hex(), "", "root"]]);
        assert!(must_follow(&reaction, &earlier));
    }

    #[test]
    fn the_same_event_again_waits_for_the_first() {
        let issue = signed(1621, &[]);
        assert!(must_follow(&issue, &[InFlight::of(&issue)]));
    }

    #[test]
    fn deletions_and_addressable_events_are_barriers_both_ways() {
        let regular = [InFlight::of(&signed(1621, &[]))];
        for kind in [5u16, 30617, 30618, 10317, 10002, 0] {
            let barrier = signed(kind, &[&["d", "web"]]);
            assert!(must_follow(&barrier, &regular), "kind {kind} waits");
            assert!(
                must_follow(&signed(1621, &[]), &[InFlight::of(&barrier)]),
                "nothing overtakes kind {kind}"
            );
        }
    }

    #[test]
    fn protected_events_stay_with_the_relay_builder() {
        assert!(taken_by_bridge(&signed(1621, &[])));
        assert!(taken_by_bridge(&signed(20001, &[])));
        assert!(!taken_by_bridge(&signed(1621, &[&["-"]])));
        assert!(!taken_by_bridge(&signed(20001, &[&["-"]])));
    }

    /// Every event a client sends is one boxed future, allocated and moved at its arrival: the
    /// rare heavy paths (effects, announcements, states, pull requests, an address the memory
    /// does not know) are boxed on their own so that it stays small. It was 12 KiB before they
    /// were; in release builds it is now under 1 KiB with the bridge's closure (992 bytes), which
    /// glibc serves from its per-thread cache. Debug builds make futures larger, hence the bound.
    #[tokio::test]
    async fn an_event_in_flight_is_a_small_future() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = App::open(crate::testing::config(dir.path())).await.expect("app");
        let intake = Intake::new(&app);
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let answer = intake.client_event(Box::new(signed(1621, &[])), peer);
        let size = std::mem::size_of_val(&answer);
        assert!(size <= 4096, "a client event's future is {size} bytes");
    }
}
