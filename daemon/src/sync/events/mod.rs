//! Event sync (GRASP-02): keep each hosted repository's events in step with the other relays
//! its announcements list.
//!
//! Every [`EventSyncSettings::refresh`] the runner ([`run`]) reads what is hosted here (stored
//! announcements; announcements waiting in purgatory, for their states only; the repositories'
//! root events) and computes a plan per relay ([`plan::plan`]). Each relay gets one worker
//! ([`relay::Worker`]) with one connection. A worker syncs each filter's history, by NIP-77
//! negentropy where the relay speaks it (a dry-run diff against what graspd has, then REQ by
//! ids) or by REQ paged by `until` where it does not, then keeps live subscriptions (`limit: 0`).
//! After a short disconnection it resumes with `since`; a full pass runs again daily. When the
//! plan of a relay changes, the worker syncs the history of the new filters only.
//!
//! Every event fetched goes through [`Ingest`]: the same write policy as a client's event (into
//! purgatory with the short "came from sync" delay, when it waits for git data). Ids the policy
//! refused are remembered for a while ([`refused::Refused`]) and count as "have", so negentropy
//! does not fetch them again and again.
//!
//! Safety: only `ws://`/`wss://` relays, never this server, and only public addresses unless
//! `--sync-private-addresses`; every event's id and signature are checked by graspd itself
//! (nostr-sdk's own check can be skipped by a relay that sends a forged event twice); an event
//! larger than `--max-event-bytes` is refused; errors back off (doubling to an hour), a relay
//! failing for a day is given up until its plan changes, and a rate-limit answer pauses it.

mod outbox;
pub mod plan;
mod refused;
mod relay;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr::util::BoxedFuture;
use nostr::{Event, EventId, Filter, Kind, RelayUrl, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::config::EventSyncSettings;
use crate::nip34::{Announcement, Nip34Kind, RepoId};
use crate::shutdown::Signal;
use crate::store::StoreError;
use crate::types::{KIND_ANNOUNCEMENT, KIND_ISSUE, KIND_PATCH, KIND_PULL_REQUEST};

pub use plan::{RelayPlan, Subject};
pub use refused::Refused;

/// Events of one page taken at once.
const TAKE_CONCURRENCY: usize = 32;

/// Kinds taken before the others in a page: NIP-34's own and the roots of discussions.
fn is_root_kind(kind: Kind) -> bool {
    matches!(
        kind.as_u16(),
        KIND_ANNOUNCEMENT | crate::types::KIND_STATE | KIND_ISSUE | KIND_PATCH | KIND_PULL_REQUEST
    ) || kind.as_u16() == crate::types::KIND_PULL_REQUEST_UPDATE
}

/// Root events kept per repository in a plan (the newest first).
const MAX_ROOTS_PER_REPOSITORY: usize = 1000;

/// Where a fetched event goes: the write policy, then the store and live subscribers.
/// Implemented at the edge (`relay::SyncedEvents`), which owns the policy and the relay.
pub trait Ingest: Send + Sync + 'static {
    fn ingest<'a>(&'a self, event: &'a Event) -> BoxedFuture<'a, Ingested>;
}

/// What became of a fetched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Accepted,
    /// Accepted into purgatory: it waits for its git data.
    Held,
    Duplicate,
    Refused(String),
    /// An internal failure: not remembered as refused, so it is tried again.
    Failed(String),
}

/// What the status service shows of one relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStatus {
    pub url: String,
    pub connected: bool,
    /// Whether the relay answers NIP-77; `None` until asked.
    pub negentropy: Option<bool>,
    pub repositories: usize,
    pub filters: usize,
    /// When the last full pass over its history ended (Unix seconds).
    pub last_full_pass: Option<u64>,
    pub fetched: u64,
    pub accepted: u64,
    pub held: u64,
    pub refused: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// While backing off: when the next attempt is due (Unix seconds).
    pub retry_at: Option<u64>,
    pub given_up: bool,
}

/// Per-relay status, shared by the workers and the status service. Cloning is shallow.
#[derive(Debug, Clone, Default)]
pub struct EventSyncStatus {
    relays: Arc<Mutex<BTreeMap<String, RelayStatus>>>,
}

impl EventSyncStatus {
    /// Every relay's status, by URL.
    pub fn snapshot(&self) -> Vec<RelayStatus> {
        self.lock().values().cloned().collect()
    }

    fn update(&self, url: &RelayUrl, change: impl FnOnce(&mut RelayStatus)) {
        let mut relays = self.lock();
        let status = relays.entry(url.to_string()).or_insert_with(|| RelayStatus {
            url: url.to_string(),
            ..RelayStatus::default()
        });
        change(status);
    }

    fn remove(&self, url: &RelayUrl) {
        self.lock().remove(url.as_str());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RelayStatus>> {
        // A panic while holding this lock leaves plain counters behind: still worth showing.
        self.relays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What every worker shares.
struct Shared {
    app: App,
    /// The git-data sync's per-domain limits: each connection to a relay counts as a request on
    /// its domain's sliding-minute rate.
    throttle: crate::sync::ThrottleManager,
    ingest: Arc<dyn Ingest>,
    refused: Refused,
    status: EventSyncStatus,
    settings: EventSyncSettings,
    /// History passes over one filter running at once, across all relays: each holds a
    /// have-list and a page of events in memory.
    passes: tokio::sync::Semaphore,
}

/// History passes (one filter of one relay) at once, across all relays.
const CONCURRENT_PASSES: usize = 16;

impl Shared {
    /// Waits until `url`'s domain may take one more request (the git-data sync's per-domain
    /// sliding-minute rate and concurrency), and counts this connection against its rate.
    /// `false` on shutdown.
    async fn admit_connection(&self, url: &url::Url, shutdown: &mut Signal) -> bool {
        let domain = domain_of(url);
        loop {
            if self.throttle.try_start(&domain, tokio::time::Instant::now()) {
                self.throttle.finish(&domain);
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.wait() => return false,
            }
        }
    }

    /// What graspd has for `filter`, as NIP-77 items: stored events, events in purgatory and ids
    /// it refused recently.
    async fn have(&self, filter: &Filter) -> Result<Vec<(EventId, Timestamp)>, StoreError> {
        let mut items = self
            .app
            .store()
            .negentropy_items(&filter.clone().remove_limit())
            .await?;
        items.extend(
            self.app
                .purgatory()
                .all()
                .iter()
                .filter(|entry| filter.match_event(&entry.event, nostr::filter::MatchEventOptions::new()))
                .map(|entry| (entry.event.id, entry.event.created_at)),
        );
        items.extend(self.refused.matching(filter));
        items.sort_unstable();
        items.dedup_by_key(|(id, _)| *id);
        Ok(items)
    }

    /// Takes a page of fetched events, several at a time so that their commits share
    /// transactions: repositories' own events and root events (issues, patches, pull requests)
    /// first, oldest first, then the rest, so that a reply does not come before what it
    /// answers.
    async fn take_all(&self, relay: &RelayUrl, mut events: Vec<Checked>) {
        use futures_util::StreamExt;
        events.sort_by_key(|(event, _)| (!is_root_kind(event.kind), event.created_at));
        let split = events.partition_point(|(event, _)| is_root_kind(event.kind));
        let rest = events.split_off(split);
        for group in [events, rest] {
            futures_util::stream::iter(group)
                .for_each_concurrent(TAKE_CONCURRENCY, |(event, verified)| async move {
                    self.take_verified(relay, &event, verified).await;
                })
                .await;
        }
    }

    /// Passes a fetched event to the write policy and counts the outcome for `relay`.
    async fn take(&self, relay: &RelayUrl, event: &Event) -> Ingested {
        self.take_verified(relay, event, crate::nip01::verify(event))
            .await
    }

    /// [`Self::take`] for an event whose id and signature were checked (`verified`).
    async fn take_verified(&self, relay: &RelayUrl, event: &Event, verified: Result<(), String>) -> Ingested {
        if self.refused.contains(&event.id) {
            return Ingested::Refused("refused before".to_owned());
        }
        // The only check of the id and signature: nostr-sdk's is turned off (see `NoTracker`),
        // and it would not be enough anyway, since it caches the ids it has *tried* to verify,
        // so a relay sending a forged event twice got the second copy through unchecked. A
        // forged copy is not remembered as refused: that would shadow the genuine event with the
        // same id.
        if let Err(error) = verified {
            tracing::debug!(%relay, event_id = %event.id, %error, "synced event with a bad id or signature");
            crate::metrics::inc(&self.app.metrics().events_synced[2]);
            self.status.update(relay, |status| {
                status.fetched += 1;
                status.refused += 1;
            });
            return Ingested::Refused(format!("invalid: {error}"));
        }
        let max = self.app.config().limits.max_event_bytes;
        let outcome = if larger_than(event, max) {
            Ingested::Refused(format!("event larger than {max} bytes"))
        } else {
            self.ingest.ingest(event).await
        };
        if let Ingested::Refused(why) = &outcome {
            tracing::debug!(%relay, event_id = %event.id, why, "synced event refused");
            self.refused.insert(event.id, event.created_at);
        }
        if let Ingested::Failed(why) = &outcome {
            tracing::warn!(%relay, event_id = %event.id, why, "cannot take synced event");
        }
        let index = match outcome {
            Ingested::Accepted => 0,
            Ingested::Held => 1,
            Ingested::Refused(_) => 2,
            Ingested::Duplicate => 3,
            Ingested::Failed(_) => 4,
        };
        crate::metrics::inc(&self.app.metrics().events_synced[index]);
        self.status.update(relay, |status| {
            status.fetched += 1;
            match outcome {
                Ingested::Accepted => status.accepted += 1,
                Ingested::Held => status.held += 1,
                Ingested::Duplicate => status.duplicates += 1,
                Ingested::Refused(_) => status.refused += 1,
                Ingested::Failed(_) => status.errors += 1,
            }
        });
        outcome
    }
}

/// A fetched event and whether its id and signature verify.
type Checked = (Event, Result<(), String>);

/// The ids and signatures of a page of fetched events, checked on every core: one core would
/// spend most of the sync's time on them. Each event comes back with its result. The relay
/// session checks a page while the one before it is taken, so that the checks (on every core)
/// and the takes (the policy, and the store's single writer) overlap.
async fn verify_all(mut events: Vec<Event>) -> Vec<Checked> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = events.len().div_ceil(threads).max(1);
    let mut parts = Vec::new();
    while !events.is_empty() {
        let rest = events.split_off(chunk.min(events.len()));
        let part = std::mem::replace(&mut events, rest);
        parts.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|event| {
                    let verified = crate::nip01::verify(&event);
                    (event, verified)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut checked = Vec::new();
    for part in parts {
        match part.await {
            Ok(part) => checked.extend(part),
            // Only if the runtime is shutting down; the next pass fetches them again.
            Err(error) => tracing::warn!(%error, "events of a synced page left unchecked"),
        }
    }
    checked
}

/// Whether `event`'s JSON is longer than `max` bytes. It is serialized only when a bound says it
/// might be: a character of a string escapes to at most 6 bytes, and the rest of an event (id,
/// key, signature, numbers, field names, punctuation) is under 400.
fn larger_than(event: &Event, max: usize) -> bool {
    let strings = std::iter::once(event.content.len()).chain(
        event
            .tags
            .iter()
            .flat_map(|tag| tag.as_slice().iter().map(String::len)),
    );
    let punctuation = 4 * event
        .tags
        .iter()
        .map(|tag| tag.as_slice().len() + 1)
        .sum::<usize>();
    let bound = 400 + punctuation + strings.map(|len| 6 * len).sum::<usize>();
    bound > max && event.as_json().len() > max
}

/// Runs the event sync until shutdown. `throttle` is the git-data sync's: both count against the
/// same per-domain limits.
pub async fn run(
    app: App,
    ingest: Arc<dyn Ingest>,
    status: EventSyncStatus,
    throttle: crate::sync::ThrottleManager,
    mut shutdown: Signal,
) {
    // Several nodes on one database: the leader syncs for all. A node waits until it leads
    // (when the leader dies, another takes over within a few seconds).
    while !app.is_leader() {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            () = shutdown.wait() => return,
        }
    }
    let settings = app.config().event_sync.clone();
    let shared = Arc::new(Shared {
        throttle,
        refused: Refused::new(refused::CAPACITY, refused::REMEMBER),
        app,
        ingest,
        status,
        settings,
        passes: tokio::sync::Semaphore::new(CONCURRENT_PASSES),
    });
    let mut workers: HashMap<RelayUrl, (watch::Sender<Arc<RelayPlan>>, JoinHandle<()>)> = HashMap::new();
    let mut outboxes = outbox::Outboxes::default();
    loop {
        match subjects(&shared.app).await {
            Ok(mut subjects) => {
                let config = shared.app.config();
                if shared.settings.outbox {
                    let limits = outbox::Limits {
                        max_authors: shared.settings.outbox_max_authors,
                        max_relays: shared.settings.outbox_max_relays,
                        timeout: shared.settings.timeout,
                        private_addresses: config.sync.private_addresses,
                    };
                    outboxes
                        .refresh(&subjects, limits, &config.domain, &shared.throttle)
                        .await;
                    outboxes.apply(&mut subjects, limits);
                }
                let mut plans = plan::plan(&subjects, &shared.settings.bootstrap_relays, &config.domain);
                let left_out = plan::keep_busiest(&mut plans, shared.settings.max_relays);
                let previously = shared.app.metrics().event_sync_left_out.swap(
                    i64::try_from(left_out.len()).unwrap_or(i64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
                if !left_out.is_empty() && previously != i64::try_from(left_out.len()).unwrap_or(i64::MAX) {
                    tracing::warn!(
                        followed = plans.len(),
                        left_out = left_out.len(),
                        first_left_out = %left_out[0],
                        "event sync: hosted repositories name more relays than --event-sync-max-relays; \
                         following those serving the most repositories"
                    );
                }
                workers.retain(|url, (_, handle)| {
                    let keep = plans.contains_key(url);
                    if !keep {
                        tracing::info!(relay = %url, "event sync: relay no longer listed");
                        handle.abort();
                        shared.status.remove(url);
                    }
                    keep
                });
                shared.app.metrics().event_sync_relays.store(
                    i64::try_from(plans.len()).unwrap_or(i64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
                for (url, plan) in plans {
                    let plan = Arc::new(plan);
                    match workers.get(&url) {
                        Some((sender, _)) => {
                            sender.send_if_modified(|current| {
                                let changed = **current != *plan;
                                if changed {
                                    *current = plan.clone();
                                }
                                changed
                            });
                        }
                        None => {
                            let (sender, receiver) = watch::channel(plan);
                            let worker =
                                relay::Worker::new(url.clone(), receiver, shared.clone(), shutdown.clone());
                            workers.insert(url, (sender, tokio::spawn(worker.run())));
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "event sync: cannot read what is hosted"),
        }
        tokio::select! {
            () = tokio::time::sleep(shared.settings.refresh) => {}
            () = shutdown.wait() => break,
        }
    }
    for (_, (sender, handle)) in workers {
        drop(sender);
        let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    }
}

/// The repositories to keep in step: every stored announcement, and every announcement waiting
/// in purgatory (states only), with the root events known here.
pub async fn subjects(app: &App) -> Result<Vec<Subject>, StoreError> {
    let mut subjects: BTreeMap<RepoId, Subject> = BTreeMap::new();
    let stored = app
        .store()
        .query(&Filter::new().kind(Kind::from(KIND_ANNOUNCEMENT)))
        .await?;
    let waiting = app
        .purgatory()
        .all()
        .into_iter()
        .filter(|entry| entry.kind == Nip34Kind::Announcement)
        .map(|entry| entry.event.clone());
    for (event, states_only) in stored
        .into_iter()
        .map(|e| (e, false))
        .chain(waiting.map(|e| (e, true)))
    {
        let Ok(announcement) = Announcement::parse(&event) else {
            continue;
        };
        let repo = announcement.repo.clone();
        if subjects.contains_key(&repo) {
            continue;
        }
        subjects.insert(
            repo.clone(),
            Subject {
                owner: repo.owner,
                identifier: repo.identifier,
                maintainers: announcement.maintainers,
                relays: announcement.relays,
                states_only,
                roots: Vec::new(),
                participants: Vec::new(),
                discussion_relays: Vec::new(),
            },
        );
    }
    // Root events (issues, patches, pull requests) by the coordinates they tag.
    let mut by_coordinate: HashMap<String, RepoId> = HashMap::new();
    for (repo, subject) in &subjects {
        if subject.states_only {
            continue;
        }
        for key in subject.maintainers.iter().chain(std::iter::once(&subject.owner)) {
            by_coordinate.insert(
                format!("{KIND_ANNOUNCEMENT}:{}:{}", key.to_hex(), repo.identifier),
                repo.clone(),
            );
        }
    }
    let coordinates: Vec<String> = by_coordinate.keys().cloned().collect();
    // Per repository, the newest roots only: the query reads no more than it keeps.
    for (repo, subject) in subjects.iter_mut().filter(|(_, s)| !s.states_only) {
        let mine: Vec<String> = subject
            .maintainers
            .iter()
            .chain(std::iter::once(&subject.owner))
            .map(|key| format!("{KIND_ANNOUNCEMENT}:{}:{}", key.to_hex(), repo.identifier))
            .take(plan::MAX_VALUES)
            .collect();
        let filter = Filter::new()
            .kinds([KIND_ISSUE, KIND_PATCH, KIND_PULL_REQUEST].map(Kind::from))
            .custom_tags(nostr::SingleLetterTag::lowercase(nostr::Alphabet::A), mine)
            .limit(MAX_ROOTS_PER_REPOSITORY);
        subject.roots = app
            .store()
            .negentropy_items(&filter)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    }
    // Participants: authors of the newest events here that tag the repository or its roots.
    for chunk in coordinates.chunks(100) {
        let filter = Filter::new()
            .custom_tags(
                nostr::SingleLetterTag::lowercase(nostr::Alphabet::A),
                chunk.iter().cloned(),
            )
            .limit(PARTICIPANT_EVENTS);
        for event in app.store().query(&filter).await? {
            for coordinate in a_tags(&event) {
                if let Some(subject) = by_coordinate
                    .get(&coordinate)
                    .and_then(|repo| subjects.get_mut(repo))
                {
                    note_participant(subject, event.pubkey);
                }
            }
        }
    }
    for subject in subjects
        .values_mut()
        .filter(|s| !s.states_only && !s.roots.is_empty())
    {
        let roots: Vec<String> = subject.roots.iter().take(100).map(EventId::to_hex).collect();
        let filter = Filter::new()
            .custom_tags(nostr::SingleLetterTag::uppercase(nostr::Alphabet::E), roots)
            .limit(PARTICIPANT_EVENTS);
        for event in app.store().query(&filter).await? {
            note_participant(subject, event.pubkey);
        }
    }
    Ok(subjects.into_values().collect())
}

/// Events read per query when looking for participants.
const PARTICIPANT_EVENTS: usize = 500;

/// Participants kept per repository at most, before the configured bound applies.
const MAX_PARTICIPANTS: usize = 256;

fn note_participant(subject: &mut Subject, author: nostr::PublicKey) {
    if subject.participants.len() < MAX_PARTICIPANTS && !subject.participants.contains(&author) {
        subject.participants.push(author);
    }
}

/// The values of an event's `a` tags.
fn a_tags(event: &Event) -> Vec<String> {
    event
        .tags
        .iter()
        .filter_map(|tag| match tag.as_slice() {
            [name, value, ..] if name == "a" => Some(value.clone()),
            _ => None,
        })
        .collect()
}

/// `host[:port]` (the port only when not the scheme's default), as the git-data sync keys its
/// throttles, so a relay and a clone server on one host share one.
fn domain_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// Unix seconds now.
fn unix_now() -> u64 {
    Timestamp::now().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_size_is_judged_like_its_json_at_every_limit() {
        use nostr::event::FinalizeEvent;
        let keys = nostr::Keys::generate();
        let control: String = (0..300u32).filter_map(|c| char::from_u32(c % 32)).collect();
        let contents = [
            "",
            "plain text",
            "quotes \" and \\ back",
            "ünïcödé ✓",
            control.as_str(),
        ];
        for content in contents {
            for tags in [0usize, 1, 40] {
                let event =
                    nostr::EventBuilder::new(Kind::from(1621), content)
                        .tags((0..tags).map(|i| {
                            nostr::Tag::parse(["t", &format!("{content}{i}"), "\"", ""]).expect("tag")
                        }))
                        .finalize(&keys)
                        .expect("sign");
                let len = event.as_json().len();
                for max in [0, len.saturating_sub(1), len, len + 1, 10 * len] {
                    assert_eq!(larger_than(&event, max), len > max, "{len} bytes against {max}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_page_is_checked_on_every_core_and_a_forged_event_is_found() {
        use nostr::event::FinalizeEvent;
        let keys = nostr::Keys::generate();
        let mut page: Vec<Event> = (0..101)
            .map(|i| {
                nostr::EventBuilder::new(Kind::from(1), format!("{i}"))
                    .finalize(&keys)
                    .expect("sign")
            })
            .collect();
        let mut forged = serde_json::to_value(&page[7]).expect("json");
        forged["sig"] = serde_json::to_value(&page[8]).expect("json")["sig"].clone();
        page[7] = serde_json::from_value(forged).expect("event");
        let ids: Vec<EventId> = page.iter().map(|event| event.id).collect();
        let checked = verify_all(page).await;
        assert_eq!(
            checked.iter().map(|(event, _)| event.id).collect::<Vec<_>>(),
            ids,
            "all, in order"
        );
        for (i, (_, verified)) in checked.iter().enumerate() {
            assert_eq!(verified.is_err(), i == 7, "event {i}");
        }
    }

    #[test]
    fn a_relay_and_a_clone_server_on_one_host_share_a_throttle_domain() {
        let ours = crate::config::Domain::parse("grasp.example").expect("domain");
        let clone = crate::sync::SyncUrl::parse("https://Git.Example/x.git", &ours).expect("url");
        let relay = url::Url::parse("wss://git.example/").expect("url");
        assert_eq!(domain_of(&relay), clone.domain());
        let port = url::Url::parse("ws://git.example:7777").expect("url");
        assert_eq!(domain_of(&port), "git.example:7777");
    }
}
