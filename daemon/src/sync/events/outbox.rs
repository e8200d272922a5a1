//! GRASP-03: the discussion around a hosted repository is also fetched from its participants'
//! own outbox relays (the write relays of their NIP-65 kind 10002 lists).
//!
//! Participants are the authors of the newest events here that tag the repository or its root
//! events (at most `--outbox-max-authors` per repository). Their relay lists are asked from the
//! relays the repository's announcements list, kept for [`TTL`], and the write relays they name
//! (at most `--outbox-max-relays` per repository) get the repository's discussion filters (by
//! coordinate and by root event; not its announcements or states, which maintainers publish to
//! the listed relays).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nostr::nips::nip65::{self, RelayMetadata};
use nostr::{Event, Filter, Kind, PublicKey, RelayUrl};
use nostr_sdk::relay::{Relay, RelayOptions, ReqExitPolicy};

use super::plan::{self, Subject};
use crate::config::Domain;
use crate::sync::address;

/// How long a participant's relay list is used before it is asked again.
pub const TTL: Duration = Duration::from_secs(6 * 3600);

/// Participants whose lists are remembered at most (a list is a few URLs).
const CAPACITY: usize = 50_000;

/// Relays asked for lists per refresh, so a refresh stays short.
const RELAYS_PER_REFRESH: usize = 20;

/// Participants' write relays, by participant.
#[derive(Debug, Default)]
pub struct Outboxes {
    known: HashMap<PublicKey, (Vec<String>, Instant)>,
}

/// What bounds the outbox sync.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_authors: usize,
    pub max_relays: usize,
    pub timeout: Duration,
    pub private_addresses: bool,
}

impl Outboxes {
    /// Asks the subjects' relays for the relay lists of participants not known (or known for
    /// longer than [`TTL`]).
    pub async fn refresh(
        &mut self,
        subjects: &[Subject],
        limits: Limits,
        ours: &Domain,
        throttle: &crate::sync::ThrottleManager,
    ) {
        let now = Instant::now();
        self.known.retain(|_, (_, at)| now.duration_since(*at) < TTL);
        let mut wanted: BTreeMap<RelayUrl, BTreeSet<PublicKey>> = BTreeMap::new();
        for subject in subjects.iter().filter(|s| !s.states_only) {
            let stale: Vec<PublicKey> = subject
                .participants
                .iter()
                .take(limits.max_authors)
                .filter(|key| !self.known.contains_key(key))
                .copied()
                .collect();
            if stale.is_empty() {
                continue;
            }
            for raw in &subject.relays {
                if let Ok(url) = plan::relay_url(raw, ours) {
                    wanted.entry(url).or_default().extend(stale.iter().copied());
                }
            }
        }
        for (url, authors) in wanted.into_iter().take(RELAYS_PER_REFRESH) {
            // A connection on the domain's shared rate; a busy domain is asked next time.
            let domain = url::Url::parse(url.as_str())
                .map(|u| super::domain_of(&u))
                .unwrap_or_default();
            if !throttle.try_start(&domain, tokio::time::Instant::now()) {
                continue;
            }
            throttle.finish(&domain);
            let authors: Vec<PublicKey> = authors.into_iter().collect();
            match relay_lists(&url, &authors, limits).await {
                Ok(lists) => {
                    for author in &authors {
                        let newest = lists
                            .iter()
                            .filter(|list| list.pubkey == *author)
                            .max_by_key(|list| list.created_at);
                        let relays = newest.map(write_relays).unwrap_or_default();
                        // Also remembered when there is none: not asked again until TTL.
                        let entry = self.known.entry(*author).or_insert((Vec::new(), now));
                        if !relays.is_empty() || entry.0.is_empty() {
                            *entry = (relays, now);
                        }
                    }
                }
                Err(error) => tracing::debug!(relay = %url, %error, "event sync: cannot read relay lists"),
            }
            if self.known.len() > CAPACITY {
                self.known.clear();
            }
        }
    }

    /// Sets each subject's discussion relays from its participants' write relays.
    pub fn apply(&self, subjects: &mut [Subject], limits: Limits) {
        for subject in subjects.iter_mut().filter(|s| !s.states_only) {
            let mut relays: Vec<String> = Vec::new();
            for participant in subject.participants.iter().take(limits.max_authors) {
                let Some((outbox, _)) = self.known.get(participant) else {
                    continue;
                };
                for relay in outbox {
                    if relays.len() >= limits.max_relays {
                        break;
                    }
                    if !relays.contains(relay) && !subject.relays.contains(relay) {
                        relays.push(relay.clone());
                    }
                }
            }
            subject.discussion_relays = relays;
        }
    }
}

/// The write relays a NIP-65 list names (no marker means read and write).
fn write_relays(list: &Event) -> Vec<String> {
    nip65::extract_relay_list(list)
        .filter(|(_, metadata)| matches!(metadata, None | Some(RelayMetadata::Write)))
        .map(|(url, _)| url.to_string())
        .collect()
}

/// The kind 10002 lists of `authors` that `url` holds, each verified.
async fn relay_lists(url: &RelayUrl, authors: &[PublicKey], limits: Limits) -> Result<Vec<Event>, String> {
    let parsed = url::Url::parse(url.as_str()).map_err(|e| e.to_string())?;
    address::check_relay(&parsed, limits.private_addresses)
        .await
        .map_err(|e| e.to_string())?;
    let relay = Relay::builder(url.clone())
        .database(super::relay::NoTracker)
        .opts(
            RelayOptions::new()
                .reconnect(false)
                .connect_timeout(limits.timeout),
        )
        .build();
    let result = async {
        relay
            .try_connect()
            .timeout(limits.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let mut lists = Vec::new();
        for chunk in authors.chunks(plan::MAX_VALUES) {
            let filter = Filter::new().kind(Kind::RelayList).authors(chunk.iter().copied());
            let found = relay
                .fetch_events(filter)
                .timeout(limits.timeout)
                .policy(ReqExitPolicy::ExitOnEOSE)
                .await
                .map_err(|e| e.to_string())?;
            lists.extend(found.into_iter().filter(|event| event.verify().is_ok()));
        }
        Ok(lists)
    }
    .await;
    relay.shutdown();
    result
}

#[cfg(test)]
mod tests {
    use nostr::{EventBuilder, Keys, Tag};

    use super::*;
    use crate::types::Identifier;

    fn list(keys: &Keys, relays: &[(&str, Option<&str>)]) -> Event {
        let tags = relays.iter().map(|(url, marker)| {
            let mut values = vec!["r".to_owned(), (*url).to_owned()];
            values.extend(marker.map(str::to_owned));
            Tag::parse(values).expect("tag")
        });
        use nostr::event::FinalizeEvent;
        EventBuilder::new(Kind::RelayList, "")
            .tags(tags)
            .finalize(keys)
            .expect("sign")
    }

    #[test]
    fn write_relays_are_those_unmarked_or_marked_write() {
        let keys = Keys::generate();
        let event = list(
            &keys,
            &[
                ("wss://both.example", None),
                ("wss://read.example", Some("read")),
                ("wss://write.example", Some("write")),
            ],
        );
        assert_eq!(
            write_relays(&event),
            vec!["wss://both.example", "wss://write.example"]
        );
    }

    #[test]
    fn discussion_relays_are_bounded_and_exclude_the_listed_ones() {
        let participants: Vec<PublicKey> = (0..3).map(|_| Keys::generate().public_key()).collect();
        let mut outboxes = Outboxes::default();
        let now = Instant::now();
        outboxes.known.insert(
            participants[0],
            (vec!["wss://a".into(), "wss://listed".into()], now),
        );
        outboxes
            .known
            .insert(participants[1], (vec!["wss://b".into(), "wss://c".into()], now));
        outboxes
            .known
            .insert(participants[2], (vec!["wss://d".into()], now));
        let mut subjects = vec![Subject {
            owner: Keys::generate().public_key(),
            identifier: Identifier::parse("r").expect("identifier"),
            maintainers: Vec::new(),
            relays: vec!["wss://listed".into()],
            states_only: false,
            roots: Vec::new(),
            participants,
            discussion_relays: Vec::new(),
        }];
        let limits = Limits {
            max_authors: 2,
            max_relays: 2,
            timeout: Duration::from_secs(1),
            private_addresses: false,
        };
        outboxes.apply(&mut subjects, limits);
        assert_eq!(subjects[0].discussion_relays, vec!["wss://a", "wss://b"]);
    }
}
