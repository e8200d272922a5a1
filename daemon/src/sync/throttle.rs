//! Per-domain throttles: how hard the sync may press on one server.
//!
//! Each domain (`host[:port]` of a clone URL) gets a [`DomainThrottle`] that limits the fetches in
//! flight and the fetches started in any sliding minute. An identifier whose URL on a domain could
//! not be tried because the domain was busy is handed over: it waits in the domain's
//! insertion-ordered queue, and the queue is served round-robin (one URL per turn, then to the
//! back), so one identifier with many URLs on a domain cannot starve the others.
//!
//! There is no polling loop. Serving is triggered when an identifier is handed over, when a fetch
//! on the domain completes, and when a busy identifier is released; the only timer is a one-shot
//! wake at the moment the rate window frees a slot, set only while identifiers wait for it.
//!
//! This module only decides; [`super::Syncer`] runs the fetches it grants.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::SyncUrl;
use crate::nip34::Identifier;
use crate::queue::Claim;

/// The length of the rate limit's sliding window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Limits applied to every domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Fetches in flight at once.
    pub max_concurrent: usize,
    /// Fetches started in any [`RATE_WINDOW`].
    pub max_per_minute: usize,
}

/// One domain's counters and waiting identifiers.
#[derive(Debug, Default)]
pub struct DomainThrottle {
    in_flight: usize,
    /// Start times of the fetches of the last [`RATE_WINDOW`], oldest first.
    started: VecDeque<Instant>,
    /// Handed-over identifiers, served from the front; insertion order.
    waiting: VecDeque<Identifier>,
    /// URLs of this domain each waiting identifier already tried this round.
    tried: HashMap<Identifier, HashSet<SyncUrl>>,
    /// A one-shot wake is set for this time.
    wake_at: Option<Instant>,
}

impl DomainThrottle {
    fn prune(&mut self, now: Instant) {
        while self.started.front().is_some_and(|at| *at + RATE_WINDOW <= now) {
            self.started.pop_front();
        }
    }

    fn rate_limited(&self, limits: ThrottleLimits) -> bool {
        self.started.len() >= limits.max_per_minute
    }

    /// Whether a fetch may start now (call [`prune`](Self::prune) first).
    fn has_capacity(&self, limits: ThrottleLimits) -> bool {
        self.in_flight < limits.max_concurrent && !self.rate_limited(limits)
    }

    fn start(&mut self, now: Instant) {
        self.in_flight += 1;
        self.started.push_back(now);
    }

    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.started.is_empty() && self.waiting.is_empty() && self.wake_at.is_none()
    }

    /// Fetches in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Waiting identifiers, next to be served first.
    pub fn waiting(&self) -> impl Iterator<Item = &Identifier> {
        self.waiting.iter()
    }
}

/// A turn granted to a waiting identifier: one fetch slot on `domain` is already taken for it
/// (free it with [`ThrottleManager::finish`]), and the identifier is claimed in the sync queue.
#[derive(Debug)]
pub struct Grant {
    pub domain: String,
    pub identifier: Identifier,
    /// URLs of the domain already tried this round.
    pub tried: HashSet<SyncUrl>,
}

/// What [`ThrottleManager::dispatch`] decided.
#[derive(Debug, Default)]
pub struct Dispatch {
    pub grants: Vec<Grant>,
    /// Identifiers wait for the rate window: serve the domain again at this time.
    pub wake_at: Option<Instant>,
}

/// Handle to every domain's throttle. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct ThrottleManager {
    inner: Arc<Mutex<State>>,
    limits: ThrottleLimits,
}

#[derive(Debug, Default)]
struct State {
    domains: HashMap<String, DomainThrottle>,
    /// Domains each identifier waits on, to serve them when the identifier stops being busy.
    waiting_on: HashMap<Identifier, HashSet<String>>,
}

impl State {
    fn forget_waiting(&mut self, identifier: &Identifier, domain: &str) {
        if let Some(domains) = self.waiting_on.get_mut(identifier) {
            domains.remove(domain);
            if domains.is_empty() {
                self.waiting_on.remove(identifier);
            }
        }
    }

    /// Drops a domain's state once it holds nothing worth remembering.
    fn tidy(&mut self, domain: &str) {
        if self.domains.get(domain).is_some_and(DomainThrottle::is_idle) {
            self.domains.remove(domain);
        }
    }
}

impl ThrottleManager {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            inner: Arc::default(),
            limits: ThrottleLimits {
                max_concurrent: limits.max_concurrent.max(1),
                max_per_minute: limits.max_per_minute.max(1),
            },
        }
    }

    pub fn limits(&self) -> ThrottleLimits {
        self.limits
    }

    /// Per domain: (domain, fetches in flight, fetches started in the last minute, waiting
    /// identifiers), sorted by domain (for status).
    pub fn snapshot(&self, now: Instant) -> Vec<(String, usize, usize, Vec<Identifier>)> {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = state
            .domains
            .iter_mut()
            .map(|(domain, throttle)| {
                throttle.prune(now);
                (
                    domain.clone(),
                    throttle.in_flight,
                    throttle.started.len(),
                    throttle.waiting.iter().cloned().collect(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether no fetch may start on `domain` now.
    pub fn is_throttled(&self, domain: &str, now: Instant) -> bool {
        let mut state = self.state();
        let Some(throttle) = state.domains.get_mut(domain) else {
            return false;
        };
        throttle.prune(now);
        !throttle.has_capacity(self.limits)
    }

    /// Takes a fetch slot on `domain` if one is free. Pair with [`finish`](Self::finish).
    pub fn try_start(&self, domain: &str, now: Instant) -> bool {
        let mut state = self.state();
        let throttle = state.domains.entry(domain.to_owned()).or_default();
        throttle.prune(now);
        if !throttle.has_capacity(self.limits) {
            return false;
        }
        throttle.start(now);
        true
    }

    /// A fetch on `domain` ended (its start still counts against the rate window).
    pub fn finish(&self, domain: &str) {
        let mut state = self.state();
        if let Some(throttle) = state.domains.get_mut(domain) {
            throttle.in_flight = throttle.in_flight.saturating_sub(1);
        }
    }

    /// Hands `identifier` over to `domain`'s queue with the domain's URLs it tried this round.
    /// An identifier already waiting keeps its place and takes the new round's `tried`.
    pub fn hand_over(&self, domain: &str, identifier: &Identifier, tried: HashSet<SyncUrl>) {
        let mut state = self.state();
        let throttle = state.domains.entry(domain.to_owned()).or_default();
        if !throttle.tried.contains_key(identifier) {
            throttle.waiting.push_back(identifier.clone());
        }
        throttle.tried.insert(identifier.clone(), tried);
        state
            .waiting_on
            .entry(identifier.clone())
            .or_default()
            .insert(domain.to_owned());
    }

    /// Grants free slots of `domain` to waiting identifiers, round-robin from the front. `claim`
    /// marks an identifier in progress in the sync queue: busy ones keep waiting (moved behind
    /// the others), ones no longer queued are dropped. Each waiting identifier is looked at once.
    pub fn dispatch(
        &self,
        domain: &str,
        now: Instant,
        mut claim: impl FnMut(&Identifier) -> Claim,
    ) -> Dispatch {
        let limits = self.limits;
        let mut state = self.state();
        let mut dispatch = Dispatch::default();
        let mut dropped = Vec::new();
        let mut granted = Vec::new();
        if let Some(throttle) = state.domains.get_mut(domain) {
            throttle.prune(now);
            for _ in 0..throttle.waiting.len() {
                if !throttle.has_capacity(limits) {
                    break;
                }
                let Some(identifier) = throttle.waiting.pop_front() else {
                    break;
                };
                match claim(&identifier) {
                    Claim::Claimed => {
                        throttle.start(now);
                        let tried = throttle.tried.remove(&identifier).unwrap_or_default();
                        granted.push(identifier.clone());
                        dispatch.grants.push(Grant {
                            domain: domain.to_owned(),
                            identifier,
                            tried,
                        });
                    }
                    Claim::Busy => throttle.waiting.push_back(identifier),
                    Claim::NotQueued => {
                        throttle.tried.remove(&identifier);
                        dropped.push(identifier);
                    }
                }
            }
            // Only the rate window frees a slot without a completion to trigger the next turn.
            if !throttle.waiting.is_empty()
                && throttle.rate_limited(limits)
                && throttle.wake_at.is_none()
                && let Some(oldest) = throttle.started.front()
            {
                let at = *oldest + RATE_WINDOW;
                throttle.wake_at = Some(at);
                dispatch.wake_at = Some(at);
            }
        }
        for identifier in granted.iter().chain(&dropped) {
            state.forget_waiting(identifier, domain);
        }
        state.tidy(domain);
        dispatch
    }

    /// The one-shot wake set by [`dispatch`](Self::dispatch) fired.
    pub fn woke(&self, domain: &str) {
        if let Some(throttle) = self.state().domains.get_mut(domain) {
            throttle.wake_at = None;
        }
    }

    /// Domains on which `identifier` waits.
    pub fn domains_waited_on(&self, identifier: &Identifier) -> Vec<String> {
        self.state()
            .waiting_on
            .get(identifier)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Identifiers waiting on `domain`, next to be served first.
    pub fn waiting(&self, domain: &str) -> Vec<Identifier> {
        self.state()
            .domains
            .get(domain)
            .map(|t| t.waiting().cloned().collect())
            .unwrap_or_default()
    }

    /// Fetches in flight on `domain`.
    pub fn in_flight(&self, domain: &str) -> usize {
        self.state()
            .domains
            .get(domain)
            .map_or(0, DomainThrottle::in_flight)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // See `SyncQueue::state`: plain maps stay usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
