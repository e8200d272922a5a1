//! The sync's logic against [`MockSyncContext`]: queue backoff, throttles, round-robin, URL
//! choice and the loop. Time is tokio's paused clock: sleeps in the mock stand for network time
//! and the clock jumps to the next timer, so the tests are exact and instant. Tests wait for
//! conditions through the mock's change notifications, never by sleeping.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nostr::{Keys, PublicKey};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::throttle::RATE_WINDOW;
use super::*;
use crate::purgatory::Source;
use crate::shutdown::Shutdown;

// ---- fixtures ------------------------------------------------------------------------------

fn ident(name: &str) -> Identifier {
    Identifier::parse(name).expect("identifier")
}

/// An object id made of one repeated hex digit pair, e.g. `oid(1)`.
fn oid(n: u8) -> Oid {
    Oid::parse(&format!("{n:02x}").repeat(20)).expect("oid")
}

fn oids(ns: &[u8]) -> HashSet<Oid> {
    ns.iter().map(|n| oid(*n)).collect()
}

fn settings() -> SyncSettings {
    SyncSettings {
        default_delay: Duration::from_secs(180),
        immediate_delay: Duration::from_millis(500),
        loop_interval: Duration::from_secs(1),
        domain_concurrent: 5,
        domain_rate_limit: 30,
        fetch_timeout: Duration::from_secs(60),
        private_addresses: false,
        refs_check_interval: None,
    }
}

fn limits(max_concurrent: usize, max_per_minute: usize) -> ThrottleLimits {
    ThrottleLimits {
        max_concurrent,
        max_per_minute,
    }
}

// ---- the mock ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct FetchRecord {
    identifier: Identifier,
    url: String,
    at: Instant,
}

#[derive(Debug, Default)]
struct MockState {
    /// Objects each identifier's waiting events still miss locally.
    missing: HashMap<Identifier, HashSet<Oid>>,
    /// Published clone URLs per identifier.
    urls: HashMap<Identifier, Vec<String>>,
    /// Objects each reachable URL serves; a URL not here is unreachable.
    servers: HashMap<String, HashSet<Oid>>,
    fetches: Vec<FetchRecord>,
    /// `(identifier, objects)` of every run of the unified procedure.
    processed: Vec<(Identifier, HashSet<Oid>)>,
    /// Identifiers whose events wait with their data here; the number is how many more runs of
    /// the procedure on that data fail before one releases them.
    stuck: HashMap<Identifier, u32>,
    /// Runs of the procedure on data already here, per identifier.
    runs_on_disk: HashMap<Identifier, u32>,
    in_flight: HashMap<String, usize>,
    peak_in_flight: HashMap<String, usize>,
    /// Identifiers with a push between its pre-receive and its post-receive.
    pushing: HashSet<Identifier>,
}

/// A world of servers and waiting events in memory.
struct MockSyncContext {
    domain: Domain,
    owner: PublicKey,
    /// Simulated duration of every fetch.
    latency: Duration,
    state: Mutex<MockState>,
    changed: Notify,
}

impl MockSyncContext {
    fn new() -> Self {
        Self::with_latency(Duration::ZERO)
    }

    fn with_latency(latency: Duration) -> Self {
        Self {
            domain: Domain::parse("ours.example").expect("domain"),
            owner: Keys::generate().public_key(),
            latency,
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().expect("mock state")
    }

    /// `identifier` has waiting events missing `missing`, and announcements listing `urls`.
    fn repo(&self, identifier: &Identifier, urls: &[&str], missing: &[u8]) {
        let mut state = self.state();
        state.missing.insert(identifier.clone(), oids(missing));
        state
            .urls
            .insert(identifier.clone(), urls.iter().map(|u| (*u).to_owned()).collect());
    }

    /// `url` is reachable and serves `objects`.
    fn serve(&self, url: &str, objects: &[u8]) {
        self.state()
            .servers
            .entry(url.to_owned())
            .or_default()
            .extend(oids(objects));
    }

    fn fetched_urls(&self) -> Vec<String> {
        self.state().fetches.iter().map(|f| f.url.clone()).collect()
    }

    /// Waits (on the paused clock) until `done` holds, re-checking after every call into the mock.
    async fn until(&self, what: &str, done: impl Fn(&MockState) -> bool) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if done(&self.state()) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(24 * 3600), wait)
            .await
            .is_err()
        {
            panic!("gave up waiting until {what}");
        }
    }

    fn touch(&self) {
        self.changed.notify_waiters();
    }
}

impl SyncContext for MockSyncContext {
    async fn needed(&self, identifier: &Identifier) -> Result<Option<Needed>, SyncError> {
        let missing = self.state().missing.get(identifier).cloned().unwrap_or_default();
        self.touch();
        Ok((!missing.is_empty()).then(|| Needed {
            target: RepoId::new(self.owner, identifier.clone()),
            oids: missing,
        }))
    }

    async fn candidate_urls(&self, identifier: &Identifier) -> Result<Vec<String>, SyncError> {
        Ok(self.state().urls.get(identifier).cloned().unwrap_or_default())
    }

    async fn fetch(
        &self,
        target: &RepoId,
        url: &SyncUrl,
        wanted: &HashSet<Oid>,
    ) -> Result<HashSet<Oid>, SyncError> {
        {
            let mut state = self.state();
            state.fetches.push(FetchRecord {
                identifier: target.identifier.clone(),
                url: url.to_string(),
                at: Instant::now(),
            });
            let in_flight = state.in_flight.entry(url.domain().to_owned()).or_default();
            *in_flight += 1;
            let now = *in_flight;
            let peak = state.peak_in_flight.entry(url.domain().to_owned()).or_default();
            *peak = (*peak).max(now);
        }
        self.touch();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let result = {
            let mut state = self.state();
            if let Some(n) = state.in_flight.get_mut(url.domain()) {
                *n -= 1;
            }
            match state.servers.get(url.as_str()).cloned() {
                None => Err(SyncError::Fetch {
                    url: url.to_string(),
                    stderr: "unreachable".into(),
                }),
                Some(served) => {
                    let arrived: HashSet<Oid> = wanted.intersection(&served).cloned().collect();
                    if let Some(missing) = state.missing.get_mut(&target.identifier) {
                        missing.retain(|o| !arrived.contains(o));
                    }
                    Ok(arrived)
                }
            }
        };
        self.touch();
        result
    }

    async fn process_newly_available_git_data(
        &self,
        target: &RepoId,
        new_oids: &HashSet<Oid>,
    ) -> ProcessResult {
        self.state()
            .processed
            .push((target.identifier.clone(), new_oids.clone()));
        self.touch();
        ProcessResult::default()
    }

    async fn process_data_on_disk(&self, identifier: &Identifier) -> ProcessResult {
        let mut state = self.state();
        *state.runs_on_disk.entry(identifier.clone()).or_default() += 1;
        let mut result = ProcessResult::default();
        match state.stuck.get_mut(identifier) {
            Some(0) => {
                state.stuck.remove(identifier);
                result.states_released = 1;
            }
            Some(failures_left) => {
                *failures_left -= 1;
                result.errors.push("ref lock held".into());
            }
            None => {}
        }
        drop(state);
        self.touch();
        result
    }

    fn push_in_flight(&self, identifier: &Identifier) -> bool {
        self.state().pushing.contains(identifier)
    }

    fn has_pending_events(&self, identifier: &Identifier) -> bool {
        let state = self.state();
        state.stuck.contains_key(identifier) || state.missing.get(identifier).is_some_and(|m| !m.is_empty())
    }

    fn our_domain(&self) -> &Domain {
        &self.domain
    }
}

fn syncer(ctx: MockSyncContext, settings: &SyncSettings) -> Syncer<MockSyncContext> {
    Syncer::new(ctx, SyncQueue::new(), settings)
}

/// Starts the loop; dropping the returned `Shutdown` stops it.
fn start_loop(syncer: &Syncer<MockSyncContext>) -> Shutdown {
    let (shutdown, signal) = Shutdown::new();
    tokio::spawn(run(syncer.clone(), signal));
    shutdown
}

// ---- queue ---------------------------------------------------------------------------------

#[test]
fn backoff_waits_20_40_80_then_120_seconds() {
    let waits: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [20, 40, 80, 120, 120, 120]);
    assert_eq!(backoff(u32::MAX).as_secs(), 120);
}

#[tokio::test(start_paused = true)]
async fn failed_runs_back_off_and_a_new_event_resets_the_count() {
    let queue = SyncQueue::new();
    let repo = ident("repo");
    let start = Instant::now();
    queue.enqueue_at(repo.clone(), start);
    let mut now = start;
    for expected in [20, 40, 80, 120, 120] {
        assert_eq!(queue.take_ready(now), vec![repo.clone()]);
        queue.finish(&repo, Outcome::StillNeeded, now);
        let entry = queue.get(&repo).expect("still queued");
        assert_eq!(entry.next_attempt - now, Duration::from_secs(expected));
        now = entry.next_attempt;
    }
    assert_eq!(queue.get(&repo).map(|e| e.attempt_count), Some(5));

    // A new event resets the count: the next failure waits 20 s again.
    queue.enqueue_at(repo.clone(), now + Duration::from_secs(500));
    assert_eq!(queue.get(&repo).map(|e| e.attempt_count), Some(0));
    assert_eq!(queue.take_ready(now), vec![repo.clone()]);
    queue.finish(&repo, Outcome::StillNeeded, now);
    let entry = queue.get(&repo).expect("queued");
    assert_eq!(
        (entry.attempt_count, entry.next_attempt - now),
        (1, Duration::from_secs(20))
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_event_only_pulls_the_next_attempt_earlier() {
    let queue = SyncQueue::new();
    let repo = ident("repo");
    let t0 = Instant::now();
    queue.enqueue_at(repo.clone(), t0 + Duration::from_secs(10));
    // A user's event (long delay) does not postpone an attempt due sooner...
    queue.enqueue_at(repo.clone(), t0 + Duration::from_secs(180));
    assert_eq!(queue.next_deadline(), Some(t0 + Duration::from_secs(10)));
    // ...and a sync-sourced one (short delay) brings it forward.
    queue.enqueue_at(repo.clone(), t0 + Duration::from_millis(500));
    assert_eq!(queue.next_deadline(), Some(t0 + Duration::from_millis(500)));
    assert_eq!(queue.len(), 1);
    assert!(queue.take_ready(t0).is_empty());
    assert_eq!(queue.take_ready(t0 + Duration::from_secs(1)), vec![repo]);
    assert_eq!(
        queue.next_deadline(),
        None,
        "the old deadline is gone, not left behind"
    );
}

#[tokio::test(start_paused = true)]
async fn ready_takes_due_entries_earliest_first_and_only_once() {
    let queue = SyncQueue::new();
    let t0 = Instant::now();
    for i in 0..10_000u64 {
        queue.enqueue_at(ident(&format!("later-{i}")), t0 + Duration::from_secs(3600 + i));
    }
    queue.enqueue_at(ident("b"), t0 + Duration::from_secs(2));
    queue.enqueue_at(ident("a"), t0 + Duration::from_secs(1));
    assert_eq!(
        queue.take_ready(t0 + Duration::from_secs(5)),
        vec![ident("a"), ident("b")]
    );
    assert!(queue.get(&ident("a")).is_some_and(|e| e.in_progress));
    assert!(
        queue.take_ready(t0 + Duration::from_secs(5)).is_empty(),
        "in progress: not taken twice"
    );
    assert_eq!(queue.next_deadline(), Some(t0 + Duration::from_secs(3600)));
    assert_eq!(queue.len(), 10_002);
}

#[tokio::test(start_paused = true)]
async fn a_satisfied_run_drops_the_entry() {
    let queue = SyncQueue::new();
    let t0 = Instant::now();
    queue.enqueue_at(ident("repo"), t0);
    assert_eq!(queue.take_ready(t0).len(), 1);
    queue.finish(&ident("repo"), Outcome::Satisfied, t0);
    assert!(queue.is_empty());
    assert_eq!(queue.next_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn an_event_during_a_run_schedules_a_rerun_even_when_satisfied() {
    let queue = SyncQueue::new();
    let repo = ident("repo");
    let t0 = Instant::now();
    queue.enqueue_at(repo.clone(), t0);
    assert_eq!(queue.take_ready(t0).len(), 1);
    // The run may have read the waiting events before this one arrived.
    queue.enqueue_at(repo.clone(), t0 + Duration::from_secs(5));
    queue.finish(&repo, Outcome::Satisfied, t0 + Duration::from_secs(1));
    let entry = queue.get(&repo).expect("kept for the new event");
    assert_eq!(entry.next_attempt, t0 + Duration::from_secs(5));
    assert!(!entry.in_progress);

    // Still needed: the earlier of the backoff and the new event's time wins.
    assert_eq!(queue.take_ready(t0 + Duration::from_secs(5)).len(), 1);
    queue.enqueue_at(repo.clone(), t0 + Duration::from_secs(500));
    queue.finish(&repo, Outcome::StillNeeded, t0 + Duration::from_secs(5));
    assert_eq!(queue.next_deadline(), Some(t0 + Duration::from_secs(25)));
}

#[tokio::test(start_paused = true)]
async fn claims_skip_busy_and_unqueued_identifiers_and_keep_the_schedule() {
    let queue = SyncQueue::new();
    let repo = ident("repo");
    let t0 = Instant::now();
    assert_eq!(queue.claim(&repo), Claim::NotQueued);
    queue.enqueue_at(repo.clone(), t0 + Duration::from_secs(30));
    assert_eq!(queue.claim(&repo), Claim::Claimed);
    assert_eq!(queue.claim(&repo), Claim::Busy);
    assert_eq!(queue.next_deadline(), None, "in progress: not due meanwhile");
    assert!(queue.take_ready(t0 + Duration::from_secs(60)).is_empty());
    queue.release(&repo, Outcome::StillNeeded);
    let entry = queue.get(&repo).expect("queued");
    assert_eq!(
        (entry.next_attempt, entry.attempt_count),
        (t0 + Duration::from_secs(30), 0)
    );
    assert_eq!(queue.claim(&repo), Claim::Claimed);
    queue.release(&repo, Outcome::Satisfied);
    assert!(queue.is_empty());
}

// ---- throttle ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn concurrency_limit_throttles_a_domain_until_a_fetch_finishes() {
    let throttle = ThrottleManager::new(limits(2, 100));
    let now = Instant::now();
    assert!(throttle.try_start("a.example", now));
    assert!(throttle.try_start("a.example", now));
    assert!(!throttle.try_start("a.example", now));
    assert!(throttle.is_throttled("a.example", now));
    assert!(
        !throttle.is_throttled("b.example", now),
        "domains are independent"
    );
    assert!(throttle.try_start("b.example", now));
    throttle.finish("a.example");
    assert!(!throttle.is_throttled("a.example", now));
    assert!(throttle.try_start("a.example", now));
    assert_eq!(throttle.in_flight("a.example"), 2);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_counts_starts_in_a_sliding_minute() {
    let throttle = ThrottleManager::new(limits(100, 30));
    let t0 = Instant::now();
    for i in 0..30u64 {
        assert!(
            throttle.try_start("a.example", t0 + Duration::from_secs(i)),
            "start {i}"
        );
        throttle.finish("a.example");
    }
    assert!(!throttle.try_start("a.example", t0 + Duration::from_secs(59)));
    // The first start leaves the window at t0 + 60 s: exactly one slot frees.
    assert!(throttle.try_start("a.example", t0 + RATE_WINDOW));
    assert!(!throttle.try_start("a.example", t0 + RATE_WINDOW));
    assert!(throttle.try_start("a.example", t0 + RATE_WINDOW + Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn waiting_identifiers_are_served_round_robin_in_insertion_order() {
    let throttle = ThrottleManager::new(limits(1, 100));
    let now = Instant::now();
    for name in ["a", "b", "c"] {
        throttle.hand_over("d.example", &ident(name), HashSet::new());
    }
    // Handing over again keeps the place.
    throttle.hand_over("d.example", &ident("a"), HashSet::new());
    assert_eq!(
        throttle.waiting("d.example"),
        vec![ident("a"), ident("b"), ident("c")]
    );
    let mut served = Vec::new();
    for _ in 0..6 {
        let dispatch = throttle.dispatch("d.example", now, |_| Claim::Claimed);
        assert_eq!(dispatch.grants.len(), 1, "one slot");
        let grant = dispatch.grants.into_iter().next().expect("grant");
        assert!(
            throttle
                .dispatch("d.example", now, |_| Claim::Claimed)
                .grants
                .is_empty()
        );
        // Its URL on the domain is tried; it has more, so it goes to the back.
        throttle.hand_over("d.example", &grant.identifier, grant.tried);
        throttle.finish("d.example");
        served.push(grant.identifier.to_string());
    }
    assert_eq!(served, ["a", "b", "c", "a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn busy_identifiers_keep_waiting_and_unqueued_ones_are_dropped() {
    let throttle = ThrottleManager::new(limits(5, 100));
    let now = Instant::now();
    for name in ["busy", "gone", "free"] {
        throttle.hand_over("d.example", &ident(name), HashSet::new());
    }
    let dispatch = throttle.dispatch("d.example", now, |id| match id.as_str() {
        "busy" => Claim::Busy,
        "gone" => Claim::NotQueued,
        _ => Claim::Claimed,
    });
    let granted: Vec<_> = dispatch.grants.iter().map(|g| g.identifier.clone()).collect();
    assert_eq!(granted, vec![ident("free")]);
    assert_eq!(throttle.waiting("d.example"), vec![ident("busy")]);
    assert_eq!(
        throttle.domains_waited_on(&ident("busy")),
        vec!["d.example".to_owned()]
    );
    assert!(throttle.domains_waited_on(&ident("gone")).is_empty());
    assert!(throttle.domains_waited_on(&ident("free")).is_empty());
    assert_eq!(throttle.in_flight("d.example"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_domain_with_waiters_sets_one_wake_at_the_window_end() {
    let throttle = ThrottleManager::new(limits(5, 2));
    let t0 = Instant::now();
    assert!(throttle.try_start("d.example", t0));
    assert!(throttle.try_start("d.example", t0 + Duration::from_secs(10)));
    throttle.hand_over("d.example", &ident("a"), HashSet::new());
    let dispatch = throttle.dispatch("d.example", t0 + Duration::from_secs(20), |_| Claim::Claimed);
    assert!(dispatch.grants.is_empty());
    assert_eq!(dispatch.wake_at, Some(t0 + RATE_WINDOW));
    let again = throttle.dispatch("d.example", t0 + Duration::from_secs(30), |_| Claim::Claimed);
    assert_eq!(again.wake_at, None, "one wake at a time");
    throttle.woke("d.example");
    let woken = throttle.dispatch("d.example", t0 + RATE_WINDOW, |_| Claim::Claimed);
    assert_eq!(woken.grants.len(), 1);
}

// ---- URLs ----------------------------------------------------------------------------------

#[test]
fn only_http_and_https_urls_of_other_servers_are_fetched() {
    let ours = Domain::parse("ours.example").expect("domain");
    for skipped in [
        "https://ours.example/npub1x/repo.git",
        "http://ours.example:80/npub1x/repo.git",
        "ssh://git@other.example/repo.git",
        "git@other.example:repo.git",
        "git://other.example/repo.git",
        "file:///srv/repo.git",
        "wss://other.example",
        "not a url",
    ] {
        assert_eq!(SyncUrl::parse(skipped, &ours), None, "{skipped}");
    }
    let url = SyncUrl::parse("https://Other.Example/npub1x/repo.git", &ours).expect("https");
    assert_eq!(url.domain(), "other.example");
    assert_eq!(
        SyncUrl::parse("http://other.example:8080/r.git", &ours).map(|u| u.domain().to_owned()),
        Some("other.example:8080".to_owned())
    );
    assert_eq!(
        SyncUrl::parse("https://other.example:443/r.git", &ours).map(|u| u.domain().to_owned()),
        Some("other.example".to_owned()),
        "the default port is not part of the domain"
    );
    // Another port of our own host is another server.
    assert!(SyncUrl::parse("https://ours.example:8443/r.git", &ours).is_some());
}

#[tokio::test(start_paused = true)]
async fn next_url_skips_own_domain_non_http_tried_and_throttled_urls() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(
        &repo,
        &[
            "https://ours.example/npub1x/repo.git",
            "ssh://git@a.example/repo.git",
            "https://a.example/repo.git",
            "https://a.example/repo.git",
            "https://b.example/repo.git",
            "https://c.example/repo.git",
        ],
        &[1],
    );
    let mut s = settings();
    s.domain_concurrent = 1;
    let syncer = syncer(ctx, &s);
    let urls = sync_urls(syncer.context(), &repo).await.expect("urls");
    let listed: Vec<_> = urls.iter().map(|u| u.as_str()).collect();
    assert_eq!(
        listed,
        [
            "https://a.example/repo.git",
            "https://b.example/repo.git",
            "https://c.example/repo.git"
        ]
    );

    let mut tried = HashSet::from([urls[0].clone()]);
    let _busy = syncer.try_slot("b.example").expect("free slot");
    let next = sync_identifier_next_url(&syncer, &repo, &tried, None)
        .await
        .expect("next");
    assert_eq!(
        next.as_ref().map(SyncUrl::as_str),
        Some("https://c.example/repo.git")
    );
    tried.insert(urls[2].clone());
    assert_eq!(
        sync_identifier_next_url(&syncer, &repo, &tried, None)
            .await
            .expect("next"),
        None
    );
    // A throttle's turn asks for its own domain, throttled or not.
    let on_b = sync_identifier_next_url(&syncer, &repo, &tried, Some("b.example"))
        .await
        .expect("next");
    assert_eq!(on_b.as_ref().map(SyncUrl::domain), Some("b.example"));
    assert_eq!(
        sync_identifier_next_url(&syncer, &repo, &tried, Some("a.example"))
            .await
            .expect("next"),
        None
    );
}

// ---- one identifier ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn from_url_fetches_only_the_missing_objects_and_runs_the_procedure_on_them() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://a.example/repo.git"], &[1, 2]);
    ctx.serve("https://a.example/repo.git", &[1, 3]);
    let url = SyncUrl::parse("https://a.example/repo.git", &ctx.domain).expect("url");
    assert_eq!(
        sync_identifier_from_url(&ctx, &repo, &url).await.expect("fetch"),
        1
    );
    assert_eq!(ctx.state().processed, vec![(repo.clone(), oids(&[1]))]);
    assert_eq!(ctx.state().missing[&repo], oids(&[2]));
}

#[tokio::test(start_paused = true)]
async fn a_failed_fetch_runs_no_procedure() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://down.example/repo.git"], &[1]);
    let url = SyncUrl::parse("https://down.example/repo.git", &ctx.domain).expect("url");
    assert!(matches!(
        sync_identifier_from_url(&ctx, &repo, &url).await,
        Err(SyncError::Fetch { .. })
    ));
    assert!(ctx.state().processed.is_empty());
}

#[tokio::test(start_paused = true)]
async fn sync_stops_as_soon_as_no_object_is_missing() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    let urls = [
        "https://down.example/repo.git",
        "https://a.example/repo.git",
        "https://b.example/repo.git",
    ];
    ctx.repo(&repo, &urls, &[1, 2]);
    ctx.serve(urls[1], &[1, 2]);
    ctx.serve(urls[2], &[1, 2]);
    let syncer = syncer(ctx, &settings());
    let report = sync_identifier(&syncer, &repo).await;
    assert!(report.satisfied);
    assert_eq!(report.failures, 1);
    assert_eq!(
        syncer.context().fetched_urls(),
        urls[..2].to_vec(),
        "b.example is never asked"
    );
    assert!(report.handed_over.is_empty());
}

#[tokio::test(start_paused = true)]
async fn each_successful_fetch_runs_the_procedure_for_what_it_brought() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    // Two maintainers' states whose objects live on different servers.
    let urls = ["https://a.example/repo.git", "https://b.example/repo.git"];
    ctx.repo(&repo, &urls, &[1, 2]);
    ctx.serve(urls[0], &[1]);
    ctx.serve(urls[1], &[2]);
    let syncer = syncer(ctx, &settings());
    let report = sync_identifier(&syncer, &repo).await;
    assert!(report.satisfied);
    assert_eq!(report.objects_fetched, 2);
    assert_eq!(
        syncer.context().state().processed,
        vec![(repo.clone(), oids(&[1])), (repo, oids(&[2]))]
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_urls_are_handed_over_and_fetched_when_a_slot_frees() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    let url = "https://busy.example/repo.git";
    ctx.repo(&repo, &[url, "https://down.example/repo.git"], &[1]);
    ctx.serve(url, &[1]);
    let mut s = settings();
    s.domain_concurrent = 1;
    let syncer = syncer(ctx, &s);
    syncer.queue().enqueue(repo.clone(), Duration::from_secs(3600));

    let held = syncer.try_slot("busy.example").expect("free slot");
    let report = sync_identifier(&syncer, &repo).await;
    assert!(!report.satisfied);
    assert_eq!(report.handed_over, vec!["busy.example".to_owned()]);
    assert_eq!(
        syncer.context().fetched_urls(),
        vec!["https://down.example/repo.git".to_owned()]
    );
    assert_eq!(syncer.throttle().waiting("busy.example"), vec![repo.clone()]);

    // The held request completes: the domain's next waiting identifier gets the slot at once.
    drop(held);
    syncer
        .context()
        .until("the handed-over URL is fetched", |s| s.processed.len() == 1)
        .await;
    assert_eq!(
        syncer.context().fetched_urls().last().map(String::as_str),
        Some(url)
    );
    assert!(syncer.throttle().waiting("busy.example").is_empty());
}

// ---- the loop ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_loop_fetches_after_the_delay_and_drops_the_satisfied_entry() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://a.example/repo.git"], &[1]);
    ctx.serve("https://a.example/repo.git", &[1]);
    let syncer = syncer(ctx, &settings());
    let t0 = Instant::now();
    syncer.queue().enqueue(repo.clone(), settings().default_delay);
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("released", |s| s.processed.len() == 1)
        .await;
    assert_eq!(
        syncer.context().state().fetches[0].at - t0,
        Duration::from_secs(180)
    );
    syncer
        .context()
        .until("the run ended", |_| syncer.queue().is_empty())
        .await;
}

#[tokio::test(start_paused = true)]
async fn the_loop_retries_with_backoff_while_objects_are_missing() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://down.example/repo.git"], &[1]);
    let syncer = syncer(ctx, &settings());
    let t0 = Instant::now();
    syncer.queue().enqueue(repo.clone(), Duration::ZERO);
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("six attempts", |s| s.fetches.len() == 6)
        .await;
    let offsets: Vec<u64> = syncer
        .context()
        .state()
        .fetches
        .iter()
        .map(|f| (f.at - t0).as_secs())
        .collect();
    assert_eq!(offsets, [0, 20, 60, 140, 260, 380]);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_url_backs_off_and_a_reachable_one_still_wins() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    let down = "https://down.example/repo.git";
    let late = "https://late.example/repo.git";
    ctx.repo(&repo, &[down, late], &[1]);
    // `late` answers but only has the objects from t0 + 30 s (its push lands then).
    ctx.serve(late, &[]);
    let syncer = syncer(ctx, &settings());
    let t0 = Instant::now();
    syncer.queue().enqueue(repo.clone(), Duration::ZERO);
    let _stop = start_loop(&syncer);
    tokio::time::sleep_until(t0 + Duration::from_secs(30)).await;
    syncer.context().serve(late, &[1]);
    syncer
        .context()
        .until("released", |s| s.processed.len() == 1)
        .await;
    let state = syncer.context().state();
    let last = state.fetches.last().expect("fetches");
    assert_eq!((last.url.as_str(), (last.at - t0).as_secs()), (late, 60));
    assert_eq!(state.fetches.len(), 6, "both URLs at 0 s, 20 s and 60 s");
}

#[tokio::test(start_paused = true)]
async fn an_entry_with_nothing_missing_is_dropped_without_fetching() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://a.example/repo.git"], &[]);
    let syncer = syncer(ctx, &settings());
    syncer.queue().enqueue(repo.clone(), Duration::ZERO);
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("the entry is dropped", |_| syncer.queue().is_empty())
        .await;
    assert!(syncer.context().state().fetches.is_empty());
}

/// The orphaned-release finding of the kill soak: a push landed, its release failed (a lock the
/// killed push left), and nothing is missing. The sync retries the procedure on the data already
/// here, with backoff, until it succeeds, and fetches nothing.
#[tokio::test(start_paused = true)]
async fn events_waiting_on_data_already_here_are_retried_until_released() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://a.example/repo.git"], &[]);
    ctx.state().stuck.insert(repo.clone(), 2);
    let syncer = syncer(ctx, &settings());
    let t0 = Instant::now();
    syncer.queue().enqueue(repo.clone(), Duration::ZERO);
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("released", |s| !s.stuck.contains_key(&repo))
        .await;
    syncer
        .context()
        .until("the entry is dropped", |_| syncer.queue().is_empty())
        .await;
    let state = syncer.context().state();
    assert_eq!(
        state.runs_on_disk.get(&repo),
        Some(&3),
        "two failures, then the release"
    );
    assert!(state.fetches.is_empty(), "nothing was missing: nothing fetched");
    assert_eq!(
        (Instant::now() - t0).as_secs(),
        60,
        "retried after 20 s, then 40 s"
    );
}

/// The race of a push with the retry above: the push's objects are in the repository before its
/// refs are. While it lands, the sync neither runs the procedure (it would move the refs under
/// the push and fail it) nor fetches; once the push has reported, the next look finds its
/// events released, or retries them.
#[tokio::test(start_paused = true)]
async fn a_landing_push_is_left_alone_until_it_reports() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://a.example/repo.git"], &[]);
    ctx.state().stuck.insert(repo.clone(), 0);
    ctx.state().pushing.insert(repo.clone());
    let syncer = syncer(ctx, &settings());
    let t0 = Instant::now();
    syncer.queue().enqueue(repo.clone(), Duration::ZERO);
    let _stop = start_loop(&syncer);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        syncer.context().state().runs_on_disk.get(&repo),
        None,
        "left alone"
    );
    assert!(!syncer.queue().is_empty(), "still queued");
    syncer.context().state().pushing.remove(&repo);
    syncer
        .context()
        .until("released", |s| !s.stuck.contains_key(&repo))
        .await;
    assert_eq!(syncer.context().state().runs_on_disk.get(&repo), Some(&1));
    assert!(syncer.context().state().fetches.is_empty());
    assert!((Instant::now() - t0).as_secs() <= 60, "retried after the backoff");
}

#[tokio::test(start_paused = true)]
async fn identifiers_run_in_parallel() {
    let ctx = MockSyncContext::with_latency(Duration::from_secs(10));
    for name in ["one", "two", "three"] {
        let url = format!("https://{name}.example/repo.git");
        ctx.repo(&ident(name), &[&url], &[1]);
        ctx.serve(&url, &[1]);
    }
    let syncer = syncer(ctx, &settings());
    let t0 = Instant::now();
    for name in ["one", "two", "three"] {
        syncer.queue().enqueue(ident(name), Duration::ZERO);
    }
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("all released", |s| s.processed.len() == 3)
        .await;
    assert_eq!(
        Instant::now() - t0,
        Duration::from_secs(10),
        "not 30 s: one after another"
    );
}

#[tokio::test(start_paused = true)]
async fn domain_concurrency_is_never_exceeded_and_every_identifier_is_served() {
    let ctx = MockSyncContext::with_latency(Duration::from_secs(10));
    let names: Vec<String> = (0..10).map(|i| format!("repo-{i}")).collect();
    for name in &names {
        let url = format!("https://shared.example/{name}.git");
        ctx.repo(&ident(name), &[&url], &[1]);
        ctx.serve(&url, &[1]);
    }
    let mut s = settings();
    s.domain_concurrent = 3;
    let syncer = syncer(ctx, &s);
    let t0 = Instant::now();
    for name in &names {
        syncer.queue().enqueue(ident(name), Duration::ZERO);
    }
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("all released", |s| s.processed.len() == 10)
        .await;
    let state = syncer.context().state();
    assert_eq!(state.peak_in_flight["shared.example"], 3);
    let mut starts: Vec<u64> = state.fetches.iter().map(|f| (f.at - t0).as_secs()).collect();
    starts.sort_unstable();
    assert_eq!(
        starts,
        [0, 0, 0, 10, 10, 10, 20, 20, 20, 30],
        "slots are reused as soon as they free"
    );
    assert_eq!(state.fetches.len(), 10, "each identifier fetched once");
}

#[tokio::test(start_paused = true)]
async fn domain_rate_limit_spreads_fetches_over_sliding_minutes() {
    let ctx = MockSyncContext::with_latency(Duration::from_secs(1));
    let names: Vec<String> = (0..35).map(|i| format!("repo-{i}")).collect();
    for name in &names {
        let url = format!("https://shared.example/{name}.git");
        ctx.repo(&ident(name), &[&url], &[1]);
        ctx.serve(&url, &[1]);
    }
    let mut s = settings();
    s.domain_concurrent = 100;
    let syncer = syncer(ctx, &s);
    let t0 = Instant::now();
    for name in &names {
        syncer.queue().enqueue(ident(name), Duration::ZERO);
    }
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("all released", |s| s.processed.len() == 35)
        .await;
    let state = syncer.context().state();
    let starts: Vec<Instant> = state.fetches.iter().map(|f| f.at).collect();
    for at in &starts {
        let in_window = starts
            .iter()
            .filter(|s| **s <= *at && *at - **s < RATE_WINDOW)
            .count();
        assert!(in_window <= 30, "{in_window} fetches in one minute");
    }
    assert_eq!(starts.iter().filter(|at| **at - t0 < RATE_WINDOW).count(), 30);
    assert_eq!(starts.len(), 35);
    assert_eq!(
        Instant::now() - t0,
        RATE_WINDOW + Duration::from_secs(1),
        "the rest start as the window frees"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_domain_alternates_between_identifiers() {
    let ctx = MockSyncContext::with_latency(Duration::from_secs(1));
    // Neither server has the objects: every URL gets tried.
    for name in ["x", "y"] {
        let urls: Vec<String> = (1..=3)
            .map(|i| format!("https://shared.example/{name}{i}.git"))
            .collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        ctx.repo(&ident(name), &urls, &[1]);
        for url in urls {
            ctx.serve(url, &[]);
        }
    }
    let mut s = settings();
    s.domain_concurrent = 1;
    let syncer = syncer(ctx, &s);
    for name in ["x", "y"] {
        syncer.queue().enqueue(ident(name), Duration::ZERO);
    }
    let _stop = start_loop(&syncer);
    syncer
        .context()
        .until("six fetches", |s| s.fetches.len() == 6)
        .await;
    let order: Vec<String> = syncer
        .context()
        .state()
        .fetches
        .iter()
        .map(|f| f.identifier.to_string())
        .collect();
    let first = order[0].clone();
    let other = if first == "x" { "y" } else { "x" };
    assert_eq!(
        order,
        [&first, other, &first, other, &first, other],
        "round-robin, not one then the other"
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_wakes_early_when_an_event_pulls_a_deadline_forward() {
    let ctx = MockSyncContext::new();
    let repo = ident("repo");
    ctx.repo(&repo, &["https://a.example/repo.git"], &[1]);
    ctx.serve("https://a.example/repo.git", &[1]);
    let mut s = settings();
    // No safety-net wake: only the deadline and the notification can wake the loop.
    s.loop_interval = Duration::from_secs(24 * 3600);
    let syncer = syncer(ctx, &s);
    let t0 = Instant::now();
    syncer.queue().enqueue(repo.clone(), s.default_delay);
    let _stop = start_loop(&syncer);
    tokio::time::sleep_until(t0 + Duration::from_secs(10)).await;
    // An event from another server's sync: its data is out there already.
    syncer.queue().enqueue(repo.clone(), delay_for(&s, Source::Sync));
    syncer
        .context()
        .until("released", |s| s.processed.len() == 1)
        .await;
    let fetched_at = syncer.context().state().fetches[0].at;
    assert_eq!(fetched_at - t0, Duration::from_millis(10_500));
}

#[tokio::test(start_paused = true)]
async fn the_loop_stops_on_shutdown() {
    let syncer = syncer(MockSyncContext::new(), &settings());
    syncer.queue().enqueue(ident("repo"), Duration::from_secs(60));
    let (shutdown, signal) = Shutdown::new();
    let task = tokio::spawn(run(syncer.clone(), signal));
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("stopped in time")
        .expect("no panic");
}
