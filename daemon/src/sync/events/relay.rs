//! One relay's worker: one connection, history then live, backoff on failure.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nostr::util::BoxedFuture;
use nostr::{Event, EventId, Filter, RelayMessage, RelayUrl, SubscriptionId, Timestamp};
use nostr_database::{
    Backend, DatabaseEventStatus, Events, Features, NostrDatabase, SaveEventStatus,
    error::Error as DatabaseError,
};
use nostr_sdk::relay::{
    Relay, RelayNotification, RelayOptions, RelayStatus as Connection, ReqExitPolicy, SyncOptions,
};

use super::{Shared, plan::RelayPlan, unix_now};
use crate::shutdown::Signal;
use crate::sync::address;

/// Events asked for per REQ page when a relay does not speak NIP-77.
const PAGE: usize = 500;

/// Ids per REQ when fetching what negentropy found missing (strfry's default cap on a filter's
/// results is 500).
const IDS_PER_REQ: usize = 500;

/// Filters per live subscription while that keeps within [`MAX_SUBSCRIPTIONS`] (relays commonly
/// cap both filters per REQ and REQs per connection).
const FILTERS_PER_SUBSCRIPTION: usize = 10;

/// Live subscriptions per relay at most: past 10 × this many filters, each subscription carries
/// more filters instead of there being more subscriptions.
const MAX_SUBSCRIPTIONS: usize = 20;

/// How long a rate-limited relay is left alone.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(65);

/// A connection up this long has recovered: the backoff starts again from the minimum.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Address(#[from] crate::sync::SyncError),
    #[error("{0}")]
    Relay(#[from] nostr_sdk::error::Error),
    #[error("connection lost")]
    Disconnected,
    #[error("rate limited: {0}")]
    RateLimited(String),
    #[error("subscription closed by the relay: {0}")]
    Closed(String),
}

/// How a session ended without an error.
enum End {
    /// Stop the worker: shutdown, or the relay left the plan.
    Stop,
}

/// What a worker keeps between sessions.
#[derive(Default)]
struct Memory {
    /// Filters (as JSON) whose history has been synced.
    done: HashSet<String>,
    /// When the connection was last known up, and the relay's time then.
    last_seen: Option<(Instant, Timestamp)>,
    negentropy: Option<bool>,
    full_pass_due: Option<Instant>,
}

pub(super) struct Worker {
    url: RelayUrl,
    plan: tokio::sync::watch::Receiver<Arc<RelayPlan>>,
    shared: Arc<Shared>,
    shutdown: Signal,
}

impl Worker {
    pub(super) fn new(
        url: RelayUrl,
        plan: tokio::sync::watch::Receiver<Arc<RelayPlan>>,
        shared: Arc<Shared>,
        shutdown: Signal,
    ) -> Self {
        Self {
            url,
            plan,
            shared,
            shutdown,
        }
    }

    pub(super) async fn run(mut self) {
        let settings = self.shared.settings.clone();
        let mut memory = Memory::default();
        let mut backoff = settings.min_backoff;
        let mut failing_since: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let error = match self.session(&mut memory).await {
                Ok(End::Stop) => return,
                Err(error) => error,
            };
            self.shared.status.update(&self.url, |status| {
                status.connected = false;
                status.errors += 1;
                status.last_error = Some(error.to_string());
            });
            let now = Instant::now();
            if now.duration_since(started) >= HEALTHY_AFTER {
                backoff = settings.min_backoff;
                failing_since = None;
            }
            let since = *failing_since.get_or_insert(now);
            if now.duration_since(since) >= settings.give_up_after {
                tracing::warn!(relay = %self.url, %error, "event sync: giving up on relay until its plan changes");
                self.shared
                    .status
                    .update(&self.url, |status| status.given_up = true);
                tokio::select! {
                    changed = self.plan.changed() => if changed.is_err() { return },
                    () = self.shutdown.wait() => return,
                }
                self.shared
                    .status
                    .update(&self.url, |status| status.given_up = false);
                backoff = settings.min_backoff;
                failing_since = None;
                continue;
            }
            let wait = match &error {
                SessionError::RateLimited(_) => RATE_LIMIT_PAUSE.max(backoff),
                _ => backoff,
            };
            tracing::info!(relay = %self.url, %error, retry_in_secs = wait.as_secs_f32(), "event sync: relay session ended");
            self.shared.status.update(&self.url, |status| {
                status.retry_at = Some(unix_now() + wait.as_secs());
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.wait() => return,
            }
            self.shared
                .status
                .update(&self.url, |status| status.retry_at = None);
            backoff = (backoff * 2).min(settings.max_backoff);
        }
    }

    /// Connects, syncs history, then follows live events until something changes.
    async fn session(&mut self, memory: &mut Memory) -> Result<End, SessionError> {
        let settings = self.shared.settings.clone();
        let parsed = url::Url::parse(self.url.as_str()).map_err(|_| SessionError::Disconnected)?;
        address::check_relay(&parsed, self.shared.app.config().sync.private_addresses).await?;
        if !self.shared.admit_connection(&parsed, &mut self.shutdown).await {
            return Ok(End::Stop);
        }
        let relay = Relay::builder(self.url.clone())
            .database(NoTracker)
            .opts(
                RelayOptions::new()
                    .reconnect(false)
                    .connect_timeout(settings.timeout)
                    .ban_relay_on_mismatch(false),
            )
            .build();
        let _closer = Closer(relay.clone());
        relay.try_connect().timeout(settings.timeout).await?;
        tracing::debug!(relay = %self.url, "event sync: connected");
        self.shared
            .status
            .update(&self.url, |status| status.connected = true);
        loop {
            let plan = self.plan.borrow_and_update().clone();
            self.shared.status.update(&self.url, |status| {
                status.repositories = plan.repositories;
                status.filters = plan.filters.len();
            });
            let full = memory.full_pass_due.is_none_or(|due| Instant::now() >= due);
            if full {
                memory.done.clear();
            }
            let resume = memory
                .last_seen
                .filter(|(at, _)| at.elapsed() < settings.resume_window)
                .map(|(_, seen)| Timestamp::from_secs(seen.as_secs().saturating_sub(60)));
            let history_started = Timestamp::now();
            for filter in &plan.filters {
                ensure_connected(&relay)?;
                let key = serde_json::to_string(filter).unwrap_or_default();
                // The semaphore is never closed; were it, the pass would run unbounded.
                let _pass = self.shared.passes.acquire().await.ok();
                match (memory.done.contains(&key), resume) {
                    (true, Some(since)) => self.pages(&relay, filter.clone().since(since)).await?,
                    _ => {
                        self.history(&relay, filter, memory).await?;
                        memory.done.insert(key);
                    }
                }
                if self.shutdown.is_triggered() {
                    return Ok(End::Stop);
                }
            }
            if full {
                memory.full_pass_due = Some(Instant::now() + jittered(settings.full_pass));
                self.shared
                    .status
                    .update(&self.url, |status| status.last_full_pass = Some(unix_now()));
            }
            memory.last_seen = Some((Instant::now(), history_started));

            // Live: subscribe first, then catch up on what arrived during the history pass.
            let mut notifications = relay.notifications();
            let mut live = HashSet::new();
            for filters in plan.filters.chunks(per_subscription(plan.filters.len())) {
                let filters: Vec<Filter> = filters.iter().map(|f| f.clone().limit(0)).collect();
                live.insert(relay.subscribe(filters).await?);
            }
            ensure_connected(&relay)?;
            let catch_up = Timestamp::from_secs(history_started.as_secs().saturating_sub(60));
            for filter in &plan.filters {
                self.pages(&relay, filter.clone().since(catch_up)).await?;
            }
            let due = memory.full_pass_due.unwrap_or_else(Instant::now);
            let replan = loop {
                tokio::select! {
                    notification = notifications.next() => {
                        let Some(notification) = notification else { return Err(SessionError::Disconnected) };
                        self.notice(notification, &live).await?;
                        memory.last_seen = Some((Instant::now(), Timestamp::now()));
                    }
                    changed = self.plan.changed() => {
                        if changed.is_err() {
                            return Ok(End::Stop);
                        }
                        break true;
                    }
                    () = tokio::time::sleep_until(due.into()) => break true,
                    () = self.shutdown.wait() => return Ok(End::Stop),
                }
            };
            if replan {
                relay.unsubscribe_all().await?;
            }
        }
    }

    /// Handles one notification of the live phase.
    async fn notice(
        &self,
        notification: RelayNotification,
        live: &HashSet<SubscriptionId>,
    ) -> Result<(), SessionError> {
        match notification {
            RelayNotification::Message { message } => match *message {
                // As "already saved" (see [`NoTracker`]), a live event comes as a message only.
                RelayMessage::Event {
                    subscription_id,
                    event,
                } if live.contains(subscription_id.as_ref()) => {
                    self.shared.take(&self.url, &event).await;
                }
                RelayMessage::Notice(text) if is_rate_limit(&text) => {
                    return Err(SessionError::RateLimited(text.into_owned()));
                }
                RelayMessage::Closed {
                    subscription_id,
                    message,
                } if live.contains(subscription_id.as_ref()) => {
                    return Err(if is_rate_limit(&message) {
                        SessionError::RateLimited(message.into_owned())
                    } else {
                        SessionError::Closed(message.into_owned())
                    });
                }
                _ => {}
            },
            RelayNotification::RelayStatus { status } if !matches!(status, Connection::Connected) => {
                return Err(SessionError::Disconnected);
            }
            _ => {}
        }
        Ok(())
    }

    /// The history of `filter`: by negentropy where the relay speaks it, else by REQ pages.
    async fn history(&self, relay: &Relay, filter: &Filter, memory: &mut Memory) -> Result<(), SessionError> {
        if memory.negentropy != Some(false) {
            match self.negentropy(relay, filter).await {
                Ok(()) => {
                    memory.negentropy = Some(true);
                    self.shared
                        .status
                        .update(&self.url, |status| status.negentropy = Some(true));
                    return Ok(());
                }
                // Whatever failed, a lost connection ends the session (and it resumes).
                Err(SessionError::Relay(_)) if ensure_connected(relay).is_err() => {
                    return Err(SessionError::Disconnected);
                }
                Err(SessionError::Relay(error)) if negentropy_unsupported(&error, memory.negentropy) => {
                    tracing::info!(relay = %self.url, %error, "event sync: no NIP-77 here; REQ instead");
                    memory.negentropy = Some(false);
                    self.shared
                        .status
                        .update(&self.url, |status| status.negentropy = Some(false));
                }
                Err(SessionError::Relay(error)) if is_refusal(&error) => {
                    tracing::debug!(relay = %self.url, %error, "event sync: negentropy refused for a filter; REQ instead");
                }
                Err(error) => return Err(error),
            }
        }
        self.pages(relay, filter.clone()).await
    }

    /// NIP-77: which of the relay's events graspd lacks (a dry run against what it has), then
    /// those events by id.
    async fn negentropy(&self, relay: &Relay, filter: &Filter) -> Result<(), SessionError> {
        let timeout = self.shared.settings.timeout;
        let have = self
            .shared
            .have(filter)
            .await
            .map_err(|error| SessionError::Relay(nostr_sdk::error::Error::other(error)))?;
        let held = have.len();
        let summary = relay
            .sync(filter.clone())
            .items(have)
            .opts(
                SyncOptions::new()
                    .dry_run()
                    .initial_timeout(timeout)
                    .idle_timeout(timeout),
            )
            .await?;
        let missing: Vec<EventId> = summary.remote.into_iter().collect();
        if by_pages(missing.len(), held) {
            tracing::debug!(relay = %self.url, missing = missing.len(), held, "event sync: most is missing; REQ pages instead of ids");
            return self.pages(relay, filter.clone()).await;
        }
        // Pipelined: the next REQ by ids runs while the previous answer is taken.
        let mut seen = HashSet::new();
        let mut taking = Vec::new();
        for ids in missing.chunks(IDS_PER_REQ) {
            let fetch = self.collect(relay, Filter::new().ids(ids.iter().copied()), &mut seen);
            let (fetched, ()) = tokio::join!(
                fetch,
                self.shared.take_all(&self.url, std::mem::take(&mut taking))
            );
            taking = fetched?.checked;
        }
        self.shared.take_all(&self.url, taking).await;
        Ok(())
    }

    /// REQ + EOSE paged by `until`, newest first, until a page brings nothing new. Pipelined:
    /// the next page is asked for while the previous one is taken.
    async fn pages(&self, relay: &Relay, filter: Filter) -> Result<(), SessionError> {
        let mut seen: HashSet<EventId> = HashSet::new();
        let mut until: Option<Timestamp> = None;
        let mut taking = Vec::new();
        loop {
            let mut page = filter.clone().limit(PAGE);
            if let Some(until) = until {
                page = page.until(until);
            }
            let fetch = self.collect(relay, page, &mut seen);
            let (fetched, ()) = tokio::join!(
                fetch,
                self.shared.take_all(&self.url, std::mem::take(&mut taking))
            );
            let page = fetched?;
            let done = page.checked.is_empty() || page.received < PAGE;
            taking = page.checked;
            until = page.oldest;
            if done {
                break;
            }
        }
        self.shared.take_all(&self.url, taking).await;
        Ok(())
    }

    /// One REQ streamed to EOSE: the events not seen before in this pass (at most a page, or
    /// [`IDS_PER_REQ`]) with their ids and signatures checked, how many arrived, and the oldest
    /// `created_at`.
    async fn collect(
        &self,
        relay: &Relay,
        filter: Filter,
        seen: &mut HashSet<EventId>,
    ) -> Result<Page, SessionError> {
        let mut stream = relay
            .stream_events(filter)
            .timeout(self.shared.settings.timeout)
            .policy(ReqExitPolicy::ExitOnEOSE)
            .await?;
        let mut page = Page::default();
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            // A REQ the relay closes as rate-limited pauses it, as a NOTICE does.
            let event: Event = event.map_err(|error| match error.to_string() {
                text if is_rate_limit(&text) => SessionError::RateLimited(text),
                _ => SessionError::Relay(error),
            })?;
            page.received += 1;
            page.oldest = Some(page.oldest.map_or(event.created_at, |o| o.min(event.created_at)));
            if seen.insert(event.id) {
                events.push(event);
            }
        }
        page.checked = super::verify_all(events).await;
        Ok(page)
    }
}

/// Whether `missing` events (by a negentropy diff, against `held` events of the same filter here)
/// are better fetched by REQ pages than by ids: when more is missing than held, so that the pages
/// bring at most twice what is missing. The diff gives ids without times, in no order, so REQs by
/// ids bring the events scattered over the whole history, and storing them out of time order
/// touches index pages all over: 100,000 events from empty took 15–16.6 s by ids against
/// 11.5–13.8 s by pages, newest first.
fn by_pages(missing: usize, held: usize) -> bool {
    missing > IDS_PER_REQ && missing > held
}

/// What one REQ brought.
#[derive(Default)]
struct Page {
    checked: Vec<super::Checked>,
    received: usize,
    oldest: Option<Timestamp>,
}

/// Filters per live subscription for `filters` filters: [`FILTERS_PER_SUBSCRIPTION`], or more
/// so that there are at most [`MAX_SUBSCRIPTIONS`] subscriptions.
fn per_subscription(filters: usize) -> usize {
    FILTERS_PER_SUBSCRIPTION.max(filters.div_ceil(MAX_SUBSCRIPTIONS))
}

/// A lost connection is an error of its own: calls on it would only wait for their timeouts.
fn ensure_connected(relay: &Relay) -> Result<(), SessionError> {
    match relay.status() {
        Connection::Connected => Ok(()),
        _ => Err(SessionError::Disconnected),
    }
}

/// Shuts the relay connection down when the session ends, however it ends.
struct Closer(Relay);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// A relay that ignores NEG-OPEN (the check times out the first time) or says it does not
/// know it.
fn negentropy_unsupported(error: &nostr_sdk::error::Error, known: Option<bool>) -> bool {
    use nostr_sdk::error::ErrorKind;
    match error.kind() {
        ErrorKind::Unsupported => true,
        ErrorKind::Timeout => known.is_none(),
        _ => error.to_string().contains("protocol version"),
    }
}

/// A NEG-ERR for one filter (e.g. "blocked: too many records"): that filter goes by REQ.
fn is_refusal(error: &nostr_sdk::error::Error) -> bool {
    matches!(
        error.kind(),
        nostr_sdk::error::ErrorKind::Rejected | nostr_sdk::error::ErrorKind::Timeout
    )
}

fn is_rate_limit(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("rate-limited") || text.contains("rate limit") || text.contains("too many requests")
}

/// `every`, moved by up to an hour either way when it is a day or more (so that many servers
/// restarted together do not all sweep a relay at once).
fn jittered(every: Duration) -> Duration {
    if every < Duration::from_secs(86_400) {
        return every;
    }
    let jitter = u64::from(rand_u16()) % 7200;
    (every + Duration::from_secs(jitter)).saturating_sub(Duration::from_secs(3600))
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

/// The nostr-sdk relay's event "database": remembers nothing (graspd's store is the memory), so
/// no event is kept in memory per relay. It calls every id "already saved", which makes nostr-sdk
/// pass each event on without verifying it: [`super::Shared::take`] verifies every event itself
/// (nostr-sdk's own check would verify it a second time, the sync's largest cost).
#[derive(Debug, Default)]
pub(super) struct NoTracker;

impl NostrDatabase for NoTracker {
    fn backend(&self) -> Backend {
        Backend::Custom("graspd-event-sync".to_owned())
    }

    fn features(&self) -> Features {
        Features {
            persistent: false,
            event_expiration: false,
            full_text_search: false,
            request_to_vanish: false,
        }
    }

    fn save_event<'a>(&'a self, _: &'a Event) -> BoxedFuture<'a, Result<SaveEventStatus, DatabaseError>> {
        Box::pin(async { Ok(SaveEventStatus::Success) })
    }

    fn check_id<'a>(&'a self, _: &'a EventId) -> BoxedFuture<'a, Result<DatabaseEventStatus, DatabaseError>> {
        Box::pin(async { Ok(DatabaseEventStatus::Saved) })
    }

    fn event_by_id<'a>(&'a self, _: &'a EventId) -> BoxedFuture<'a, Result<Option<Event>, DatabaseError>> {
        Box::pin(async { Ok(None) })
    }

    fn count(&self, _: Filter) -> BoxedFuture<'_, Result<usize, DatabaseError>> {
        Box::pin(async { Ok(0) })
    }

    fn query(&self, filter: Filter) -> BoxedFuture<'_, Result<Events, DatabaseError>> {
        Box::pin(async move { Ok(Events::new(&filter)) })
    }

    fn delete(&self, _: Filter) -> BoxedFuture<'_, Result<(), DatabaseError>> {
        Box::pin(async { Ok(()) })
    }

    fn wipe(&self) -> BoxedFuture<'_, Result<(), DatabaseError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_subscriptions_stay_within_the_cap() {
        for filters in [1usize, 10, 11, 200, 201, 5000] {
            let subscriptions = filters.div_ceil(per_subscription(filters));
            assert!(
                subscriptions <= MAX_SUBSCRIPTIONS,
                "{filters} filters: {subscriptions}"
            );
        }
        assert_eq!(per_subscription(35), 10, "few filters: ten per subscription");
        assert_eq!(per_subscription(5000), 250);
    }

    #[test]
    fn a_large_diff_against_little_held_is_fetched_by_pages() {
        assert!(!by_pages(0, 0));
        assert!(!by_pages(IDS_PER_REQ, 0), "one REQ by ids is enough");
        assert!(by_pages(100_000, 0));
        assert!(by_pages(2_000, 1_999));
        assert!(!by_pages(1_000, 99_000), "a 1% diff goes by ids");
    }

    #[test]
    fn rate_limit_answers_are_recognised() {
        assert!(is_rate_limit("rate-limited: slow down"));
        assert!(is_rate_limit("ERROR: Rate limit exceeded"));
        assert!(!is_rate_limit("blocked: not allowed"));
    }

    #[test]
    fn a_daily_pass_is_jittered_within_an_hour() {
        let day = Duration::from_secs(86_400);
        let pass = jittered(day);
        assert!(pass >= day - Duration::from_secs(3600) && pass <= day + Duration::from_secs(3600));
        assert_eq!(jittered(Duration::from_secs(10)), Duration::from_secs(10));
    }
}
