//! What to ask each relay: a pure function of the hosted repositories, their announcements'
//! `relays` tags and the root events known here.
//!
//! Work is grouped per relay (one connection each), in filters of at most [`MAX_VALUES`] values,
//! in three layers: the maintainers' announcements (and grasp lists) and the repositories' states
//! by `#d`; events tagging a repository's coordinate (`#a`, `#A`, `#q`); events tagging a root
//! event (an issue, patch or pull request) of the repository (`#e`, `#E`, `#q`). A repository
//! whose announcement still waits in purgatory gets its states only: a state is what brings its
//! git data, and nothing else about it can be accepted yet.

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Alphabet, EventId, Filter, Kind, PublicKey, RelayUrl, SingleLetterTag};

use crate::config::Domain;
use crate::types::{Identifier, KIND_ANNOUNCEMENT, KIND_STATE};

/// Values in one filter field, as the prior art and common relay limits have it.
pub const MAX_VALUES: usize = 100;

/// GRASP lists (kind 10317): the servers a user publishes to.
pub const KIND_GRASP_LIST: u16 = 10317;

/// A repository the sync keeps in step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub owner: PublicKey,
    pub identifier: Identifier,
    /// The owner and the maintainers the announcement lists.
    pub maintainers: Vec<PublicKey>,
    /// The announcement's `relays` tags, as written.
    pub relays: Vec<String>,
    /// Only states: the announcement waits in purgatory.
    pub states_only: bool,
    /// Issues, patches and pull requests of the repository known here.
    pub roots: Vec<EventId>,
    /// Authors of the newest events here about the repository, newest first (GRASP-03).
    pub participants: Vec<PublicKey>,
    /// Their outbox relays not already in `relays`: asked for the discussion only (GRASP-03).
    pub discussion_relays: Vec<String>,
}

impl Subject {
    /// `30617:<pubkey>:<d>` for the owner and every maintainer: events may tag any of them.
    fn coordinates(&self) -> impl Iterator<Item = String> + '_ {
        self.maintainers
            .iter()
            .chain(std::iter::once(&self.owner))
            .map(|key| format!("{KIND_ANNOUNCEMENT}:{}:{}", key.to_hex(), self.identifier))
    }
}

/// The filters for one relay, in layer order, and how many repositories they cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayPlan {
    pub filters: Vec<Filter>,
    pub repositories: usize,
    /// Named by the operator (`--event-sync-bootstrap-relay`).
    pub bootstrap: bool,
}

/// Why a `relays` entry is not synced from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    NotARelayUrl,
    ThisServer,
}

/// A relay URL the sync connects to: `ws://` or `wss://`, not this server.
pub fn relay_url(raw: &str, ours: &Domain) -> Result<RelayUrl, Skipped> {
    let url = RelayUrl::parse(raw.trim()).map_err(|_| Skipped::NotARelayUrl)?;
    let parsed = url::Url::parse(url.as_str()).map_err(|_| Skipped::NotARelayUrl)?;
    if ours.matches(&parsed) {
        return Err(Skipped::ThisServer);
    }
    Ok(url)
}

/// The plan for every relay the subjects name (and the bootstrap relays, which are asked for
/// announcements that may list this server).
pub fn plan(subjects: &[Subject], bootstrap: &[String], ours: &Domain) -> BTreeMap<RelayUrl, RelayPlan> {
    #[derive(Default)]
    struct Wanted {
        authors: BTreeSet<PublicKey>,
        identifiers: BTreeSet<String>,
        coordinates: BTreeSet<String>,
        roots: BTreeSet<EventId>,
        repositories: usize,
    }
    let mut per_relay: BTreeMap<RelayUrl, Wanted> = BTreeMap::new();
    for subject in subjects {
        let relays: BTreeSet<RelayUrl> = subject
            .relays
            .iter()
            .filter_map(|raw| relay_url(raw, ours).ok())
            .collect();
        if !subject.states_only {
            let discussion: BTreeSet<RelayUrl> = subject
                .discussion_relays
                .iter()
                .filter_map(|raw| relay_url(raw, ours).ok())
                .filter(|url| !relays.contains(url))
                .collect();
            for relay in discussion {
                let wanted = per_relay.entry(relay).or_default();
                wanted.repositories += 1;
                wanted.coordinates.extend(subject.coordinates());
                wanted.roots.extend(subject.roots.iter().copied());
            }
        }
        for relay in relays {
            let wanted = per_relay.entry(relay).or_default();
            wanted.repositories += 1;
            wanted.identifiers.insert(subject.identifier.to_string());
            if subject.states_only {
                continue;
            }
            wanted.authors.extend(subject.maintainers.iter().copied());
            wanted.authors.insert(subject.owner);
            wanted.coordinates.extend(subject.coordinates());
            wanted.roots.extend(subject.roots.iter().copied());
        }
    }
    let mut plans: BTreeMap<RelayUrl, RelayPlan> = per_relay
        .into_iter()
        .map(|(relay, wanted)| {
            let mut filters = Vec::new();
            for authors in chunks(&wanted.authors) {
                filters.push(
                    Filter::new()
                        .kinds([Kind::from(KIND_ANNOUNCEMENT), Kind::from(KIND_GRASP_LIST)])
                        .authors(authors),
                );
            }
            for identifiers in chunks(&wanted.identifiers) {
                filters.push(
                    Filter::new()
                        .kind(Kind::from(KIND_STATE))
                        .custom_tags(SingleLetterTag::lowercase(Alphabet::D), identifiers),
                );
            }
            let tagging =
                |letters: [SingleLetterTag; 3], values: &BTreeSet<String>, filters: &mut Vec<Filter>| {
                    for chunk in chunks(values) {
                        for letter in letters {
                            filters.push(Filter::new().custom_tags(letter, chunk.iter().cloned()));
                        }
                    }
                };
            tagging(
                [
                    SingleLetterTag::lowercase(Alphabet::A),
                    SingleLetterTag::uppercase(Alphabet::A),
                    SingleLetterTag::lowercase(Alphabet::Q),
                ],
                &wanted.coordinates,
                &mut filters,
            );
            let roots: BTreeSet<String> = wanted.roots.iter().map(EventId::to_hex).collect();
            tagging(
                [
                    SingleLetterTag::lowercase(Alphabet::E),
                    SingleLetterTag::uppercase(Alphabet::E),
                    SingleLetterTag::lowercase(Alphabet::Q),
                ],
                &roots,
                &mut filters,
            );
            let plan = RelayPlan {
                filters,
                repositories: wanted.repositories,
                bootstrap: false,
            };
            (relay, plan)
        })
        .collect();
    for raw in bootstrap {
        if let Ok(relay) = relay_url(raw, ours) {
            let plan = plans.entry(relay).or_default();
            plan.filters.insert(0, listing_this_server());
            plan.bootstrap = true;
        }
    }
    plans
}

/// Keeps the `max` relays that matter most when more are planned: the bootstrap relays, then
/// those serving the most repositories (ties in URL order). Returns the relays left out.
pub fn keep_busiest(plans: &mut BTreeMap<RelayUrl, RelayPlan>, max: usize) -> Vec<RelayUrl> {
    if plans.len() <= max {
        return Vec::new();
    }
    let mut ranked: Vec<(&RelayUrl, &RelayPlan)> = plans.iter().collect();
    ranked.sort_by(|(a_url, a), (b_url, b)| {
        (b.bootstrap, b.repositories)
            .cmp(&(a.bootstrap, a.repositories))
            .then_with(|| a_url.cmp(b_url))
    });
    let left_out: Vec<RelayUrl> = ranked[max..].iter().map(|(url, _)| (*url).clone()).collect();
    for url in &left_out {
        plans.remove(url);
    }
    left_out
}

/// Announcements that may list this server. Their `relays` tag is not a single-letter tag, so no
/// relay can filter on it: every announcement is asked for, and the write policy keeps those that
/// list this server (the others are remembered as refused, and not fetched again).
fn listing_this_server() -> Filter {
    Filter::new().kind(Kind::from(KIND_ANNOUNCEMENT))
}

/// `values` in lists of at most [`MAX_VALUES`].
fn chunks<T: Clone>(values: &BTreeSet<T>) -> Vec<Vec<T>> {
    let all: Vec<T> = values.iter().cloned().collect();
    all.chunks(MAX_VALUES).map(<[T]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use nostr::Keys;

    use super::*;

    fn domain() -> Domain {
        Domain::parse("grasp.example:8080").expect("domain")
    }

    fn subject(identifier: &str, relays: &[&str], states_only: bool) -> Subject {
        Subject {
            owner: Keys::generate().public_key(),
            identifier: Identifier::parse(identifier).expect("identifier"),
            maintainers: vec![Keys::generate().public_key()],
            relays: relays.iter().map(|r| (*r).to_owned()).collect(),
            states_only,
            roots: vec![EventId::all_zeros()],
            participants: Vec::new(),
            discussion_relays: Vec::new(),
        }
    }

    #[test]
    fn each_relay_gets_its_repositories_in_three_layers_and_this_server_none() {
        let one = subject(
            "one",
            &["wss://relay.a", "ws://grasp.example:8080", "https://no"],
            false,
        );
        let two = subject("two", &["wss://relay.a/", "wss://relay.b"], true);
        let plans = plan(&[one.clone(), two], &[], &domain());
        let urls: Vec<&str> = plans.keys().map(RelayUrl::as_str).collect();
        assert_eq!(urls.len(), 2, "{urls:?}");
        let a = &plans[&RelayUrl::parse("wss://relay.a").expect("url")];
        assert_eq!(a.repositories, 2);
        // announcements, states, 3 coordinate letters, 3 root letters
        assert_eq!(a.filters.len(), 8, "{:#?}", a.filters);
        let json: Vec<String> = a
            .filters
            .iter()
            .map(|f| serde_json::to_string(f).expect("json"))
            .collect();
        assert!(json[0].contains("30617") && json[0].contains(&one.owner.to_hex()));
        assert!(json[1].contains("30618") && json[1].contains("\"one\"") && json[1].contains("\"two\""));
        assert!(json[2].contains("\"#a\"") && json[2].contains(&format!("30617:{}:one", one.owner.to_hex())));
        assert!(json[5].contains("\"#e\""));
        // A repository whose announcement waits: states only.
        let b = &plans[&RelayUrl::parse("wss://relay.b").expect("url")];
        assert_eq!(b.filters.len(), 1);
        assert!(
            serde_json::to_string(&b.filters[0])
                .expect("json")
                .contains("30618")
        );
    }

    #[test]
    fn outbox_relays_get_the_discussion_only() {
        let mut one = subject("one", &["wss://relay.a"], false);
        one.discussion_relays = vec!["wss://outbox.example".into(), "wss://relay.a".into()];
        let plans = plan(&[one], &[], &domain());
        assert_eq!(plans.len(), 2);
        let outbox = &plans[&RelayUrl::parse("wss://outbox.example").expect("url")];
        let json: Vec<String> = outbox
            .filters
            .iter()
            .map(|f| serde_json::to_string(f).expect("json"))
            .collect();
        assert_eq!(json.len(), 6, "coordinates and roots, 3 letters each: {json:#?}");
        assert!(
            json.iter()
                .all(|f| !f.contains("30618") && !f.contains("\"authors\""))
        );
    }

    #[test]
    fn filters_hold_at_most_a_hundred_values() {
        let subjects: Vec<Subject> = (0..250)
            .map(|i| subject(&format!("r{i}"), &["wss://relay.a"], false))
            .collect();
        let plans = plan(&subjects, &[], &domain());
        let a = &plans[&RelayUrl::parse("wss://relay.a").expect("url")];
        for filter in &a.filters {
            let values = filter.authors.as_ref().map_or(0, |a| a.len())
                + filter.generic_tags.values().map(|v| v.len()).sum::<usize>();
            assert!(values <= MAX_VALUES, "{values}");
        }
        // 500 authors (owner and maintainer), 250 identifiers, 500 coordinates, 1 root.
        assert_eq!(a.filters.len(), 5 + 3 + 5 * 3 + 3);
    }

    #[test]
    fn bootstrap_relays_are_asked_for_announcements_listing_this_server() {
        let plans = plan(
            &[],
            &[
                "wss://index.example".to_owned(),
                "ws://grasp.example:8080".to_owned(),
            ],
            &domain(),
        );
        assert_eq!(plans.len(), 1);
        let filter = serde_json::to_string(&plans.values().next().expect("plan").filters[0]).expect("json");
        assert_eq!(filter, r#"{"kinds":[30617]}"#);
    }

    #[test]
    fn over_the_relay_cap_the_bootstrap_relays_and_the_busiest_are_kept() {
        let subjects = [
            subject("one", &["wss://busy", "wss://quiet-b"], false),
            subject("two", &["wss://busy", "wss://quiet-a"], false),
            subject("three", &["wss://busy"], false),
            subject("four", &["wss://second", "wss://index"], false),
            subject("five", &["wss://second"], false),
        ];
        let all = plan(&subjects, &["wss://index".to_owned()], &domain());
        assert_eq!(all.len(), 5);
        let url = |raw: &str| RelayUrl::parse(raw).expect("url");

        let mut plans = all.clone();
        let left_out = keep_busiest(&mut plans, 3);
        let kept: Vec<&RelayUrl> = plans.keys().collect();
        assert_eq!(
            kept,
            [&url("wss://busy"), &url("wss://index"), &url("wss://second")]
        );
        assert_eq!(
            left_out,
            [url("wss://quiet-a"), url("wss://quiet-b")],
            "ties in URL order"
        );

        let mut plans = all.clone();
        assert!(keep_busiest(&mut plans, 5).is_empty());
        assert_eq!(plans, all, "within the cap nothing changes");
        let mut plans = all;
        keep_busiest(&mut plans, 1);
        assert_eq!(
            plans.keys().collect::<Vec<_>>(),
            [&url("wss://index")],
            "bootstrap first"
        );
    }
}
