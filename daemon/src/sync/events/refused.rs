//! Ids the write policy refused, remembered for a while so that the sync counts them as "have"
//! (negentropy does not list them as missing) and does not fetch them again and again. Bounded:
//! the oldest are forgotten first when it is full.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nostr::{EventId, Filter, Timestamp};

/// Ids remembered at most (~100 bytes each).
pub const CAPACITY: usize = 100_000;

/// How long a refusal is remembered: events that reference something not yet here may be
/// accepted later.
pub const REMEMBER: Duration = Duration::from_secs(3600);

/// Refused ids with their `created_at` (negentropy items need it).
#[derive(Debug)]
pub struct Refused {
    inner: Mutex<Inner>,
    capacity: usize,
    remember: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashMap<EventId, (Timestamp, Instant)>,
    order: VecDeque<(EventId, Instant)>,
}

impl Refused {
    pub fn new(capacity: usize, remember: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
            remember,
        }
    }

    pub fn insert(&self, id: EventId, created_at: Timestamp) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.forget_expired(now);
        while inner.ids.len() >= self.capacity {
            let Some((oldest, _)) = inner.order.pop_front() else {
                break;
            };
            inner.ids.remove(&oldest);
        }
        let until = now + self.remember;
        if inner.ids.insert(id, (created_at, until)).is_none() {
            inner.order.push_back((id, until));
        }
    }

    pub fn contains(&self, id: &EventId) -> bool {
        let inner = self.lock();
        inner
            .ids
            .get(id)
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    /// Remembered ids whose time is within `filter`'s window, as NIP-77 items. (Only the time
    /// can be checked without the event: a refused id outside the filter is harmless, the relay
    /// never names it.)
    pub fn matching(&self, filter: &Filter) -> Vec<(EventId, Timestamp)> {
        let now = Instant::now();
        let inner = self.lock();
        inner
            .ids
            .iter()
            .filter(|(_, (created_at, until))| {
                *until > now
                    && filter.since.is_none_or(|since| *created_at >= since)
                    && filter.until.is_none_or(|until| *created_at <= until)
            })
            .map(|(id, (created_at, _))| (*id, *created_at))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn forget_expired(&mut self, now: Instant) {
        while let Some((id, until)) = self.order.front().copied() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.ids.get(&id).is_some_and(|(_, current)| *current == until) {
                self.ids.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EventId {
        EventId::from_byte_array([n; 32])
    }

    #[test]
    fn remembers_within_capacity_and_time_window() {
        let refused = Refused::new(2, Duration::from_secs(60));
        refused.insert(id(1), Timestamp::from_secs(100));
        refused.insert(id(2), Timestamp::from_secs(200));
        refused.insert(id(3), Timestamp::from_secs(300));
        assert!(!refused.contains(&id(1)), "the oldest goes when full");
        assert!(refused.contains(&id(2)) && refused.contains(&id(3)));
        let window = Filter::new().since(Timestamp::from_secs(250));
        assert_eq!(
            refused.matching(&window),
            vec![(id(3), Timestamp::from_secs(300))]
        );
    }

    #[test]
    fn forgets_after_the_time_to_remember() {
        let refused = Refused::new(10, Duration::ZERO);
        refused.insert(id(1), Timestamp::from_secs(100));
        assert!(!refused.contains(&id(1)));
        refused.insert(id(2), Timestamp::from_secs(100));
        assert!(refused.len() <= 1, "expired entries are dropped on insert");
    }
}
