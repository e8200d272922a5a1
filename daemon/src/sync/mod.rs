//! Purgatory git-data sync: fetch the git data of waiting states and pull requests from the
//! repository's other servers.
//!
//! A state or pull request waits in purgatory until its objects are on disk. Usually the push
//! that carries them follows; when it does not (the push went to another server of the
//! repository), graspd fetches the objects itself from the clone URLs the repository's
//! announcements list (every owner's) and from the `clone` tags of waiting pull requests.
//!
//! The work is keyed by identifier, not by event: one [`SyncQueue`] entry stands for every
//! waiting event of an identifier, retried with backoff (20 s, 40 s, 80 s, then 120 s) while
//! objects are missing; a new event resets the backoff and can only pull the next attempt
//! earlier. The loop ([`run`]) sleeps until the first deadline or a change, and runs due
//! identifiers in parallel ([`sync_identifier`]): every untried URL whose domain is not throttled
//! is fetched in turn ([`sync_identifier_next_url`], then [`sync_identifier_from_url`]), stopping
//! as soon as nothing is missing. Each successful fetch runs the unified procedure
//! ([`crate::process::process_newly_available_git_data`]) at once, so an event is released as
//! soon as its own objects are here, whatever else still waits. URLs on a busy domain are handed
//! to that domain's throttle ([`ThrottleManager`]), which serves its waiting identifiers
//! round-robin as slots free.
//!
//! All I/O goes through [`SyncContext`], so the logic is tested against a mock;
//! [`RealSyncContext`] does it with the store, purgatory and `git fetch`. This server's own
//! domain is never fetched from, and only http(s) URLs are.

pub mod address;
pub mod cluster;
pub mod context;
pub mod events;
pub mod lagging;
pub mod throttle;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{Domain, SyncSettings};
use crate::git::{GitError, Oid};
use crate::nip34::{Identifier, RepoId};
use crate::process::ProcessResult;
use crate::shutdown::Signal;
use crate::store::StoreError;

pub use crate::queue::{Claim, Outcome, SyncQueue, SyncQueueEntry, backoff, delay_for};
pub use context::{RealSyncContext, enqueue_identifier, enqueue_waiting};
pub use throttle::{DomainThrottle, ThrottleLimits, ThrottleManager};

/// Why one step of a sync failed. None of these stops the loop: the identifier is retried.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Process(String),
    #[error("fetch from {url} timed out after {} s", .after.as_secs())]
    Timeout { url: String, after: Duration },
    #[error("fetch from {url} failed: {stderr}")]
    Fetch { url: String, stderr: String },
    #[error("cannot resolve the host of {url}: {reason}")]
    Resolve { url: String, reason: String },
    #[error(
        "not fetching from {url}: it resolves to {address}, a non-public address \
         (start graspd with --sync-private-addresses to allow)"
    )]
    PrivateAddress { url: String, address: std::net::IpAddr },
}

/// A clone URL the sync may fetch from: http or https, with a host that is not this server.
/// Its domain (`host[:port]`, the port only when not the scheme's default) selects the throttle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyncUrl {
    url: url::Url,
    domain: String,
}

impl SyncUrl {
    /// Reads a clone URL taken from an event; `None` for what the sync never fetches from.
    pub fn parse(raw: &str, ours: &Domain) -> Option<Self> {
        let url = url::Url::parse(raw.trim()).ok()?;
        if !matches!(url.scheme(), "http" | "https") || ours.matches(&url) {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let domain = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        Some(Self { url, domain })
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl std::fmt::Display for SyncUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// What an identifier's waiting events still miss, relative to the local repository the fetch
/// goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// A hosted repository of the identifier; the unified procedure copies from it to the others.
    pub target: RepoId,
    /// Objects missing from `target` (never empty).
    pub oids: HashSet<Oid>,
}

/// Every effect the sync has on the world, so its logic can run against a mock.
pub trait SyncContext: Send + Sync + 'static {
    /// What the waiting states and pull requests of `identifier` still miss; `None` when nothing
    /// is missing or no local repository could receive it.
    fn needed(
        &self,
        identifier: &Identifier,
    ) -> impl Future<Output = Result<Option<Needed>, SyncError>> + Send;

    /// Clone URLs that may hold the data, as published (every announcement of the identifier
    /// and the `clone` tags of its waiting pull requests). The sync filters them.
    fn candidate_urls(
        &self,
        identifier: &Identifier,
    ) -> impl Future<Output = Result<Vec<String>, SyncError>> + Send;

    /// Fetches `oids` from `url` into `target` without touching any ref; returns those of `oids`
    /// now present. An error means nothing arrived.
    fn fetch(
        &self,
        target: &RepoId,
        url: &SyncUrl,
        oids: &HashSet<Oid>,
    ) -> impl Future<Output = Result<HashSet<Oid>, SyncError>> + Send;

    /// Runs the unified procedure on the objects that just arrived in `target`.
    fn process_newly_available_git_data(
        &self,
        target: &RepoId,
        new_oids: &HashSet<Oid>,
    ) -> impl Future<Output = ProcessResult> + Send;

    /// Runs the unified procedure on what `identifier`'s repositories already hold, for events
    /// that still wait although nothing is missing: a release that failed (a ref lock left by a
    /// killed push, a store error) is retried this way.
    fn process_data_on_disk(&self, identifier: &Identifier) -> impl Future<Output = ProcessResult> + Send;

    /// Whether any state or pull request of `identifier` still waits in purgatory.
    fn has_pending_events(&self, identifier: &Identifier) -> bool;

    /// Whether a push to `identifier` is between its pre-receive and its post-receive
    /// (`App::push_in_flight`): the sync leaves the identifier alone until it has reported.
    fn push_in_flight(&self, identifier: &Identifier) -> bool;

    /// This server's public domain: never fetched from.
    fn our_domain(&self) -> &Domain;

    /// The clock. tokio's, so tests can pause it; the loop sleeps on the same clock.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The throttle manager the settings describe.
pub fn throttle_for(settings: &SyncSettings) -> ThrottleManager {
    ThrottleManager::new(ThrottleLimits {
        max_concurrent: settings.domain_concurrent,
        max_per_minute: settings.domain_rate_limit,
    })
}

/// Handle to the running sync: context, queue and throttles. Cloning is shallow.
pub struct Syncer<C> {
    inner: Arc<Shared<C>>,
}

impl<C> Clone for Syncer<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Shared<C> {
    ctx: C,
    queue: SyncQueue,
    throttle: ThrottleManager,
    loop_interval: Duration,
    /// The loop stopped (shutdown): throttles grant no new turns.
    stopped: AtomicBool,
}

impl<C: SyncContext> Syncer<C> {
    /// `queue` is shared with whoever enqueues (the relay policy), so it is made outside.
    pub fn new(ctx: C, queue: SyncQueue, settings: &SyncSettings) -> Self {
        Self::with_throttle(ctx, queue, throttle_for(settings), settings)
    }

    /// Like [`new`](Self::new), with a throttle manager made (and shared) outside, so status can
    /// read it.
    pub fn with_throttle(
        ctx: C,
        queue: SyncQueue,
        throttle: ThrottleManager,
        settings: &SyncSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                ctx,
                queue,
                throttle,
                loop_interval: settings.loop_interval.max(Duration::from_millis(1)),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    pub fn context(&self) -> &C {
        &self.inner.ctx
    }

    pub fn queue(&self) -> &SyncQueue {
        &self.inner.queue
    }

    pub fn throttle(&self) -> &ThrottleManager {
        &self.inner.throttle
    }

    /// Takes a fetch slot on `domain` if it is free. Dropping the slot frees it and gives the
    /// domain's next waiting identifier its turn.
    pub fn try_slot(&self, domain: &str) -> Option<Slot<C>> {
        self.throttle()
            .try_start(domain, self.context().now())
            .then(|| Slot {
                syncer: self.clone(),
                domain: domain.to_owned(),
            })
    }

    /// Gives free slots of `domain` to its waiting identifiers and starts their fetches. Called
    /// on every trigger: a hand-over, a finished fetch, a released identifier, the rate window.
    pub fn serve_domain(&self, domain: &str) {
        // Without a runtime (a drop during shutdown) nothing could run a grant: grant nothing.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        let queue = self.queue().clone();
        let dispatch = self
            .throttle()
            .dispatch(domain, self.context().now(), |identifier| queue.claim(identifier));
        for grant in dispatch.grants {
            runtime.spawn(self.clone().serve_grant(grant));
        }
        if let Some(at) = dispatch.wake_at {
            let syncer = self.clone();
            let domain = domain.to_owned();
            runtime.spawn(async move {
                tokio::time::sleep_until(at).await;
                syncer.throttle().woke(&domain);
                syncer.serve_domain(&domain);
            });
        }
    }

    /// The loop's run of one due identifier.
    async fn run_identifier(self, identifier: Identifier) {
        let mut running = Running::new(self.clone(), identifier.clone(), RunKind::Scheduled);
        let report = sync_identifier(&self, &identifier).await;
        let satisfied = report.satisfied || !self.context().has_pending_events(&identifier);
        running.outcome = if satisfied {
            Outcome::Satisfied
        } else {
            Outcome::StillNeeded
        };
        tracing::debug!(identifier = %identifier, tried = report.tried.len(), objects = report.objects_fetched,
            failures = report.failures, handed_over = report.handed_over.len(), satisfied, "sync run ended");
    }

    /// A throttled domain's turn for one identifier: one URL of that domain, then back in the
    /// domain's queue if it has more and objects are still missing.
    async fn serve_grant(self, grant: throttle::Grant) {
        let throttle::Grant {
            domain,
            identifier,
            mut tried,
        } = grant;
        // The slot was taken by the dispatch that granted this turn.
        let slot = Slot {
            syncer: self.clone(),
            domain: domain.clone(),
        };
        let mut running = Running::new(self.clone(), identifier.clone(), RunKind::Throttled);
        match sync_identifier_next_url(&self, &identifier, &tried, Some(&domain)).await {
            Ok(Some(url)) => {
                tried.insert(url.clone());
                if let Err(error) = sync_identifier_from_url(self.context(), &identifier, &url).await {
                    tracing::info!(identifier = %identifier, url = %url, %error, "sync fetch failed");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(identifier = %identifier, %error, "cannot list sync URLs"),
        }
        match self.context().needed(&identifier).await {
            Ok(None) => running.outcome = Outcome::Satisfied,
            Ok(Some(_)) => {
                if let Ok(Some(_)) = sync_identifier_next_url(&self, &identifier, &tried, Some(&domain)).await
                {
                    self.throttle().hand_over(&domain, &identifier, tried);
                }
            }
            Err(error) => tracing::warn!(identifier = %identifier, %error, "cannot read what is missing"),
        }
        // Release the identifier first, then the slot: the slot's dispatch then sees it free.
        drop(running);
        drop(slot);
    }
}

/// One fetch slot on a domain (see [`Syncer::try_slot`]).
pub struct Slot<C: SyncContext> {
    syncer: Syncer<C>,
    domain: String,
}

impl<C: SyncContext> Drop for Slot<C> {
    fn drop(&mut self) {
        self.syncer.throttle().finish(&self.domain);
        self.syncer.serve_domain(&self.domain);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    /// Taken from the queue by the loop: ends with backoff.
    Scheduled,
    /// A throttled domain's turn: ends without touching the backoff.
    Throttled,
}

/// Marks an identifier in progress for as long as it lives. A run that panics or is aborted
/// still frees its identifier (as "still needed"), so it cannot stay stuck in progress.
struct Running<C: SyncContext> {
    syncer: Syncer<C>,
    identifier: Identifier,
    kind: RunKind,
    outcome: Outcome,
}

impl<C: SyncContext> Running<C> {
    fn new(syncer: Syncer<C>, identifier: Identifier, kind: RunKind) -> Self {
        Self {
            syncer,
            identifier,
            kind,
            outcome: Outcome::StillNeeded,
        }
    }
}

impl<C: SyncContext> Drop for Running<C> {
    fn drop(&mut self) {
        let queue = self.syncer.queue();
        match self.kind {
            RunKind::Scheduled => queue.finish(&self.identifier, self.outcome, self.syncer.context().now()),
            RunKind::Throttled => queue.release(&self.identifier, self.outcome),
        }
        // Domains that skipped the identifier while it was busy can serve it now.
        for domain in self.syncer.throttle().domains_waited_on(&self.identifier) {
            self.syncer.serve_domain(&domain);
        }
    }
}

/// The identifier's fetchable URLs, deduplicated, in published order.
pub async fn sync_urls<C: SyncContext>(ctx: &C, identifier: &Identifier) -> Result<Vec<SyncUrl>, SyncError> {
    let mut urls: Vec<SyncUrl> = Vec::new();
    for raw in ctx.candidate_urls(identifier).await? {
        if let Some(url) = SyncUrl::parse(&raw, ctx.our_domain())
            && !urls.contains(&url)
        {
            urls.push(url);
        }
    }
    Ok(urls)
}

/// The next URL to try for `identifier`: not in `tried`, and on `domain` when one is given (a
/// throttle's turn), else on any domain that is not throttled now.
pub async fn sync_identifier_next_url<C: SyncContext>(
    syncer: &Syncer<C>,
    identifier: &Identifier,
    tried: &HashSet<SyncUrl>,
    domain: Option<&str>,
) -> Result<Option<SyncUrl>, SyncError> {
    let urls = sync_urls(syncer.context(), identifier).await?;
    let now = syncer.context().now();
    Ok(urls.into_iter().find(|url| {
        !tried.contains(url)
            && match domain {
                Some(domain) => url.domain() == domain,
                None => !syncer.throttle().is_throttled(url.domain(), now),
            }
    }))
}

/// Fetches what `identifier` still misses from `url`, then runs the unified procedure on what
/// arrived (every successful fetch, so each event is released as soon as its objects are here).
/// Returns how many objects arrived: 0 when nothing was missing or the server had none of them.
pub async fn sync_identifier_from_url<C: SyncContext>(
    ctx: &C,
    identifier: &Identifier,
    url: &SyncUrl,
) -> Result<usize, SyncError> {
    let Some(needed) = ctx.needed(identifier).await? else {
        return Ok(0);
    };
    let fetched = ctx.fetch(&needed.target, url, &needed.oids).await?;
    if fetched.is_empty() {
        tracing::debug!(identifier = %identifier, url = %url, "sync fetch brought none of the missing objects");
        return Ok(0);
    }
    tracing::info!(identifier = %identifier, url = %url, objects = fetched.len(), missing = needed.oids.len(),
        "sync fetched missing objects");
    let result = ctx
        .process_newly_available_git_data(&needed.target, &fetched)
        .await;
    for line in result.summary() {
        tracing::info!(identifier = %identifier, "sync: {line}");
    }
    Ok(fetched.len())
}

/// What one [`sync_identifier`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// URLs fetched from, in order.
    pub tried: Vec<SyncUrl>,
    /// Objects that arrived.
    pub objects_fetched: usize,
    /// Steps that failed (fetches, store reads).
    pub failures: usize,
    /// Throttled domains the identifier now waits on.
    pub handed_over: Vec<String>,
    /// Nothing is missing any more (or nothing could receive it).
    pub satisfied: bool,
}

/// One round for `identifier`: fetch from every untried URL on a domain that is not throttled,
/// stopping as soon as nothing is missing; then hand the identifier to the throttle of each busy
/// domain where it has untried URLs.
pub async fn sync_identifier<C: SyncContext>(syncer: &Syncer<C>, identifier: &Identifier) -> SyncReport {
    let ctx = syncer.context();
    let mut report = SyncReport::default();
    let mut tried = HashSet::new();
    // Tried, plus URLs whose domain filled up between the look and the start (handed over).
    let mut seen = HashSet::new();
    // A push is landing: its objects may be here before its refs, and the procedure run now
    // (by a fetch, or on the data here) would move refs under it and fail it. Its post-receive
    // runs the procedure; the identifier is looked at again after the usual backoff.
    if ctx.push_in_flight(identifier) {
        tracing::debug!(identifier = %identifier, "a push is landing; the sync waits for it");
        return report;
    }
    loop {
        match ctx.needed(identifier).await {
            Ok(None) => {
                report.satisfied = true;
                if report.tried.is_empty() && ctx.has_pending_events(identifier) {
                    if ctx.push_in_flight(identifier) {
                        report.satisfied = false;
                        return report;
                    }
                    // Nothing to fetch, yet events wait: their release failed before (or their
                    // data came by a way that ran no procedure). Retry it on the data here; an
                    // error keeps the identifier queued, with backoff.
                    let result = ctx.process_data_on_disk(identifier).await;
                    for line in result.summary() {
                        tracing::info!(identifier = %identifier, "sync, data already here: {line}");
                    }
                    if !result.errors.is_empty() {
                        report.satisfied = false;
                        report.failures += 1;
                    }
                }
                return report;
            }
            Ok(Some(_)) => {}
            Err(error) => {
                tracing::warn!(identifier = %identifier, %error, "cannot read what is missing");
                report.failures += 1;
                return report;
            }
        }
        let url = match sync_identifier_next_url(syncer, identifier, &seen, None).await {
            Ok(Some(url)) => url,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(identifier = %identifier, %error, "cannot list sync URLs");
                report.failures += 1;
                return report;
            }
        };
        seen.insert(url.clone());
        let Some(slot) = syncer.try_slot(url.domain()) else {
            continue;
        };
        tried.insert(url.clone());
        report.tried.push(url.clone());
        match sync_identifier_from_url(ctx, identifier, &url).await {
            Ok(objects) => report.objects_fetched += objects,
            Err(error) => {
                tracing::info!(identifier = %identifier, url = %url, %error, "sync fetch failed");
                report.failures += 1;
            }
        }
        drop(slot);
    }
    let urls = match sync_urls(ctx, identifier).await {
        Ok(urls) => urls,
        Err(error) => {
            tracing::warn!(identifier = %identifier, %error, "cannot list sync URLs");
            report.failures += 1;
            return report;
        }
    };
    let busy: BTreeSet<&str> = urls
        .iter()
        .filter(|url| !tried.contains(*url))
        .map(SyncUrl::domain)
        .collect();
    for domain in busy {
        let tried_here = tried
            .iter()
            .filter(|url| url.domain() == domain)
            .cloned()
            .collect();
        syncer.throttle().hand_over(domain, identifier, tried_here);
        report.handed_over.push(domain.to_owned());
    }
    report
}

/// The sync loop: sleeps until the earliest deadline, a change of the queue, or the end of a run;
/// runs every due identifier in its own task; stops on shutdown. A look costs O(due entries).
pub async fn run<C: SyncContext>(syncer: Syncer<C>, mut shutdown: Signal) {
    let mut runs = JoinSet::new();
    loop {
        let now = syncer.context().now();
        for identifier in syncer.queue().take_ready(now) {
            runs.spawn(syncer.clone().run_identifier(identifier));
        }
        let nap_until = now + syncer.inner.loop_interval;
        let wake = syncer
            .queue()
            .next_deadline()
            .map_or(nap_until, |at| at.min(nap_until));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = syncer.queue().changed() => {}
            Some(joined) = runs.join_next(), if !runs.is_empty() => {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(%error, "a sync run panicked");
                }
            }
            _ = shutdown.wait() => break,
        }
    }
    syncer.inner.stopped.store(true, Ordering::Relaxed);
    runs.abort_all();
    while runs.join_next().await.is_some() {}
}
