//! What happened in the last hour, per owner and per client address: new repositories (the write
//! policy checks an announcement against them before it creates one, `--max-new-repos-per-hour-*`)
//! and pushes of pull request refs (push authorization, `--max-pr-pushes-per-hour-*`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nostr::PublicKey;

/// The window the limits count over.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Keys kept before idle ones are dropped (each holds at most its limit of instants).
const MAX_KEYS: usize = 10_000;

/// Who an occurrence is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Owner(PublicKey),
    Address(IpAddr),
}

/// Which limit an owner or address reached, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Owner(usize),
    Address(usize),
}

/// Times of one kind of occurrence per owner and per client address, within the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct Hourly {
    recent: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl Hourly {
    /// `Err` when `owner` (or `client`, where there is one) already counts `per_owner` (or
    /// `per_address`) occurrences within the hour; 0 is no limit.
    pub fn check(
        &self,
        owner: &PublicKey,
        client: Option<IpAddr>,
        (per_owner, per_address): (usize, usize),
        now: Instant,
    ) -> Result<(), Over> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut count = |key: Key| {
            recent.get_mut(&key).map_or(0, |times| {
                expire(times, now);
                times.len()
            })
        };
        if per_owner > 0 && count(Key::Owner(*owner)) >= per_owner {
            return Err(Over::Owner(per_owner));
        }
        if let Some(address) = client
            && per_address > 0
            && count(Key::Address(address)) >= per_address
        {
            return Err(Over::Address(per_address));
        }
        Ok(())
    }

    /// Counts an occurrence for `owner` (from `client`).
    pub fn record(&self, owner: &PublicKey, client: Option<IpAddr>, now: Instant) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MAX_KEYS {
            recent.retain(|_, times| {
                expire(times, now);
                !times.is_empty()
            });
        }
        let keys = std::iter::once(Key::Owner(*owner)).chain(client.map(Key::Address));
        for key in keys {
            let times = recent.entry(key).or_default();
            expire(times, now);
            times.push_back(now);
        }
    }
}

/// Drops the instants older than the window.
fn expire(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_owner_and_per_address_within_the_hour() {
        let creations = Hourly::default();
        let (alice, bob) = (
            nostr::Keys::generate().public_key(),
            nostr::Keys::generate().public_key(),
        );
        let here: IpAddr = "127.0.0.1".parse().expect("ip");
        let there: IpAddr = "127.0.0.2".parse().expect("ip");
        let start = Instant::now();
        let limits = (2, 3);
        for _ in 0..2 {
            assert!(creations.check(&alice, Some(here), limits, start).is_ok());
            creations.record(&alice, Some(here), start);
        }
        let owner_full = creations.check(&alice, Some(there), limits, start);
        assert_eq!(owner_full, Err(Over::Owner(2)));
        // Another owner from the same address: one more fits, then the address is full.
        assert!(creations.check(&bob, Some(here), limits, start).is_ok());
        creations.record(&bob, Some(here), start);
        let address_full = creations.check(&bob, Some(here), limits, start);
        assert_eq!(address_full, Err(Over::Address(3)));
        // The sync has no client address; from elsewhere bob still may.
        assert!(creations.check(&bob, None, limits, start).is_ok());
        assert!(creations.check(&bob, Some(there), limits, start).is_ok());
        // An hour later all is forgotten; 0 means no limit.
        let later = start + WINDOW;
        assert!(creations.check(&alice, Some(here), limits, later).is_ok());
        assert!(creations.check(&alice, Some(here), (0, 0), start).is_ok());
    }
}
