//! The sync queue: which identifiers wait for git data from other servers, and when to look next.
//!
//! Keyed by identifier, not by event: every waiting state and pull request of one identifier is
//! served by the same fetches, so one entry stands for all of them. Deadlines are kept ordered
//! (`BTreeSet<(Instant, Identifier)>`), so finding what is due costs O(due entries), whatever the
//! size of the queue, and the loop sleeps until the first deadline or until [`SyncQueue::changed`]
//! fires.
//!
//! Time is tokio's [`Instant`], so tests can pause and advance it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::types::Identifier;

/// Waits after the first, second and third unsuccessful attempt; every later one waits the last.
pub const BACKOFF: [Duration; 4] = [
    Duration::from_secs(20),
    Duration::from_secs(40),
    Duration::from_secs(80),
    Duration::from_secs(120),
];

/// The wait after `failed_attempts` unsuccessful attempts in a row (at least one).
pub fn backoff(failed_attempts: u32) -> Duration {
    let index = usize::try_from(failed_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    BACKOFF[index.min(BACKOFF.len() - 1)]
}

/// One identifier's place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncQueueEntry {
    /// When the loop next runs the identifier. While a run is in progress, the deadline to restore
    /// if that run is not the loop's own (a throttled fetch, see [`SyncQueue::claim`]).
    pub next_attempt: Instant,
    /// Unsuccessful loop runs since the last new event.
    pub attempt_count: u32,
    /// A task is fetching for this identifier: nobody else starts one.
    pub in_progress: bool,
    /// An event arrived during the run in progress: look again no later than this, even if the
    /// run ends with nothing left to fetch (the run may have read the waiting events before it).
    pub rerun_at: Option<Instant>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing is left to fetch (or nothing is waiting): the entry can go.
    Satisfied,
    /// Objects are still missing: try again later.
    StillNeeded,
}

/// Answer to [`SyncQueue::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Marked in progress for the caller.
    Claimed,
    /// Another task is fetching for it.
    Busy,
    /// The identifier no longer waits for anything.
    NotQueued,
}

/// Handle to the queue. Cloning is shallow; the relay policy, the loop and the throttles share one.
#[derive(Debug, Clone, Default)]
pub struct SyncQueue {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Identifier, SyncQueueEntry>,
    /// `(next_attempt, identifier)` of every entry that is not in progress.
    deadlines: BTreeSet<(Instant, Identifier)>,
}

impl State {
    /// Records a deadline; true if it is now the earliest (the loop must wake sooner).
    fn schedule(&mut self, identifier: &Identifier, at: Instant) -> bool {
        self.deadlines.insert((at, identifier.clone()));
        self.deadlines.first().is_some_and(|(first, _)| *first == at)
    }

    fn unschedule(&mut self, identifier: &Identifier, at: Instant) {
        self.deadlines.remove(&(at, identifier.clone()));
    }
}

impl SyncQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new event for `identifier` is waiting: look in `delay` (or sooner, if already due
    /// sooner). Resets the backoff.
    pub fn enqueue(&self, identifier: Identifier, delay: Duration) {
        self.enqueue_at(identifier, Instant::now() + delay);
    }

    /// [`enqueue`](Self::enqueue) with an absolute time. A new event only ever pulls the next
    /// attempt earlier: a user's event (long delay) must not postpone a retry that was due soon.
    pub fn enqueue_at(&self, identifier: Identifier, at: Instant) {
        let mut state = self.state();
        let wake = match state.entries.get_mut(&identifier) {
            None => {
                state.entries.insert(
                    identifier.clone(),
                    SyncQueueEntry {
                        next_attempt: at,
                        attempt_count: 0,
                        in_progress: false,
                        rerun_at: None,
                    },
                );
                state.schedule(&identifier, at)
            }
            Some(entry) if entry.in_progress => {
                entry.attempt_count = 0;
                entry.rerun_at = Some(entry.rerun_at.map_or(at, |r| r.min(at)));
                false
            }
            Some(entry) => {
                entry.attempt_count = 0;
                let previous = entry.next_attempt;
                if at < previous {
                    entry.next_attempt = at;
                    state.unschedule(&identifier, previous);
                    state.schedule(&identifier, at)
                } else {
                    false
                }
            }
        };
        drop(state);
        if wake {
            self.inner.changed.notify_one();
        }
    }

    /// Takes every entry due at `now`, earliest first, and marks it in progress. Costs
    /// O(due entries · log n).
    pub fn take_ready(&self, now: Instant) -> Vec<Identifier> {
        let mut state = self.state();
        let mut ready = Vec::new();
        while state.deadlines.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, identifier)) = state.deadlines.pop_first() else {
                break;
            };
            if let Some(entry) = state.entries.get_mut(&identifier) {
                entry.in_progress = true;
                ready.push(identifier);
            }
        }
        ready
    }

    /// The loop's run of `identifier` ended at `now`: drop the entry when satisfied, else
    /// schedule the next attempt with backoff (or sooner, for an event that arrived meanwhile).
    pub fn finish(&self, identifier: &Identifier, outcome: Outcome, now: Instant) {
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(identifier) else {
            return;
        };
        entry.in_progress = false;
        let rerun = entry.rerun_at.take();
        let next = match (outcome, rerun) {
            (Outcome::Satisfied, None) => {
                state.entries.remove(identifier);
                return;
            }
            (Outcome::Satisfied, Some(at)) => at,
            (Outcome::StillNeeded, rerun) => {
                entry.attempt_count = entry.attempt_count.saturating_add(1);
                let next = now + backoff(entry.attempt_count);
                rerun.map_or(next, |at| next.min(at))
            }
        };
        entry.next_attempt = next;
        let wake = state.schedule(identifier, next);
        drop(state);
        if wake {
            self.inner.changed.notify_one();
        }
    }

    /// Marks `identifier` in progress for a fetch outside the loop's schedule (a throttled
    /// domain's turn). Its deadline is set aside and restored by [`release`](Self::release).
    pub fn claim(&self, identifier: &Identifier) -> Claim {
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(identifier) else {
            return Claim::NotQueued;
        };
        if entry.in_progress {
            return Claim::Busy;
        }
        entry.in_progress = true;
        let at = entry.next_attempt;
        state.unschedule(identifier, at);
        Claim::Claimed
    }

    /// Ends a [`claim`](Self::claim). The backoff is untouched: such fetches are extra tries.
    pub fn release(&self, identifier: &Identifier, outcome: Outcome) {
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(identifier) else {
            return;
        };
        entry.in_progress = false;
        let rerun = entry.rerun_at.take();
        if outcome == Outcome::Satisfied && rerun.is_none() {
            state.entries.remove(identifier);
            return;
        }
        let next = rerun.map_or(entry.next_attempt, |at| at.min(entry.next_attempt));
        entry.next_attempt = next;
        let wake = state.schedule(identifier, next);
        drop(state);
        if wake {
            self.inner.changed.notify_one();
        }
    }

    /// A copy of one entry.
    pub fn get(&self, identifier: &Identifier) -> Option<SyncQueueEntry> {
        self.state().entries.get(identifier).cloned()
    }

    /// The earliest deadline of an entry that is not in progress.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.state().deadlines.first().map(|(at, _)| *at)
    }

    /// Every entry, soonest first (for status).
    pub fn entries(&self) -> Vec<(Identifier, SyncQueueEntry)> {
        let state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<_> = state
            .entries
            .iter()
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        entries.sort_by_key(|(id, e)| (e.next_attempt, id.clone()));
        entries
    }

    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state().entries.is_empty()
    }

    /// Resolves when a deadline moved earlier than every other (the loop must wake sooner).
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a thread panicked between two plain map updates; the maps are
        // still usable, and a stuck sync queue would be worse.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
