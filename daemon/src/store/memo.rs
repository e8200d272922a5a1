//! In-memory summaries that keep the relay's hottest questions away from SQL.
//!
//! Every incoming event asks "is this id stored?" and "does a stored event tag it?", and every
//! event that names a repository asks "what is stored at this address?". Each of those was a
//! query, and with sqlx every query is a round trip to a connection's worker thread: about 50 µs
//! of CPU, more than the signature check. The summaries answer the common case here:
//!
//! * [`Bloom`] filters over stored ids and over the ids that `e`/`E`/`q` tags name say "no" for
//!   sure and "maybe" otherwise; only a "maybe" goes to the database. They only grow: an event
//!   deleted later leaves a stale "maybe", which costs one query and nothing else.
//! * [`AddressCache`] remembers answers of `at_address` and `by_identifier`, checked against a generation number that
//!   every write able to change an address bumps after it commits. Plain events (issues,
//!   comments) never change an address, so during ordinary traffic the cache stays valid.
//!
//! The tables stay the only truth: a summary may only widen a "maybe" or drop an entry, never
//! answer from data the database does not hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use nostr::{Event, EventId, PublicKey};

/// Bits per element of each layer: with 7 probes, about 0.8% false positives at capacity.
const BITS_PER_ELEMENT: usize = 10;
const PROBES: u64 = 7;
/// The smallest layer; later layers double.
const MIN_CAPACITY: usize = 1 << 16;

/// A scalable Bloom filter over 32-byte hashes (event ids): a list of layers, a new one twice
/// the size added when the last is full, so the false-positive rate stays bounded however many
/// ids arrive. Insertions and lookups are lock-free within a layer (`fetch_or` on `AtomicU64`
/// words); adding a layer takes a short write lock.
#[derive(Debug)]
pub struct Bloom {
    layers: RwLock<Vec<Layer>>,
}

#[derive(Debug)]
struct Layer {
    words: Box<[AtomicU64]>,
    capacity: usize,
    len: AtomicUsize,
}

impl Layer {
    fn new(capacity: usize) -> Self {
        let bits = capacity.saturating_mul(BITS_PER_ELEMENT).max(64);
        let words = (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Self {
            words,
            capacity,
            len: AtomicUsize::new(0),
        }
    }

    /// Bit positions by double hashing: the id is already uniformly random, so its own bytes
    /// are the two hashes.
    fn positions(&self, hash: &[u8; 32]) -> impl Iterator<Item = (usize, u64)> + '_ {
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&hash[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        let (h1, h2) = (word(0), word(1) | 1);
        let bits = (self.words.len() * 64) as u64;
        (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&self, hash: &[u8; 32]) {
        for (word, mask) in self.positions(hash) {
            self.words[word].fetch_or(mask, Ordering::Relaxed);
        }
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn might_contain(&self, hash: &[u8; 32]) -> bool {
        self.positions(hash)
            .all(|(word, mask)| self.words[word].load(Ordering::Relaxed) & mask != 0)
    }
}

impl Bloom {
    /// A filter sized for `expected` elements before its first growth.
    pub fn with_capacity(expected: usize) -> Self {
        Self {
            layers: RwLock::new(vec![Layer::new(expected.max(MIN_CAPACITY))]),
        }
    }

    pub fn insert(&self, hash: &[u8; 32]) {
        {
            let layers = self.layers.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = layers.last()
                && last.len.load(Ordering::Relaxed) < last.capacity
            {
                last.insert(hash);
                return;
            }
        }
        let mut layers = self.layers.write().unwrap_or_else(PoisonError::into_inner);
        let full = layers
            .last()
            .is_none_or(|last| last.len.load(Ordering::Relaxed) >= last.capacity);
        if full {
            let capacity = layers
                .last()
                .map_or(MIN_CAPACITY, |last| last.capacity.saturating_mul(2));
            layers.push(Layer::new(capacity));
        }
        if let Some(last) = layers.last() {
            last.insert(hash);
        }
    }

    /// `false`: certainly never inserted. `true`: perhaps.
    pub fn might_contain(&self, hash: &[u8; 32]) -> bool {
        let layers = self.layers.read().unwrap_or_else(PoisonError::into_inner);
        layers.iter().any(|layer| layer.might_contain(hash))
    }

    /// Bytes held by the bit arrays.
    pub fn heap_bytes(&self) -> usize {
        let layers = self.layers.read().unwrap_or_else(PoisonError::into_inner);
        layers.iter().map(|layer| layer.words.len() * 8).sum()
    }
}

/// The 32 bytes of a 64-digit hex string (either case), as tag values carry event ids.
pub fn hex32(value: &str) -> Option<[u8; 32]> {
    if value.len() != 64 {
        return None;
    }
    EventId::from_hex(value).ok().map(|id| id.to_bytes())
}

/// `(kind, author, d)`.
pub type Address = (u16, PublicKey, String);

/// Entries kept before the cache starts over; an entry is an event of a few KiB at most.
const MAX_ADDRESSES: usize = 16_384;

/// Answers of `at_address`, valid for one generation of address-changing writes.
///
/// A reader takes the generation *before* it queries and files its answer only if the
/// generation is unchanged afterwards; a writer bumps it (and empties the map) after its commit
/// and before it answers anyone. So an answer read before a commit can never be filed after it.
#[derive(Debug, Default)]
pub struct AddressCache {
    inner: Mutex<AddressMap>,
}

#[derive(Debug, Default)]
struct AddressMap {
    generation: u64,
    entries: HashMap<Address, Option<Event>>,
    /// Answers of `by_identifier`: every stored event of a kind with a given `d` tag.
    groups: HashMap<(u16, String), Vec<Event>>,
}

/// Groups larger than this are not cached (a popular identifier; the query stays cheap per row).
const MAX_GROUP_EVENTS: usize = 64;

impl AddressCache {
    /// The cached answer, if any (`Some(None)`: nothing is stored there).
    pub fn get(&self, address: &Address) -> Option<Option<Event>> {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.entries.get(address).cloned()
    }

    /// Whether the cached answer holds an event, without copying it.
    pub fn holds(&self, address: &Address) -> Option<bool> {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.entries.get(address).map(Option::is_some)
    }

    pub fn generation(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// Files an answer read at `generation`, unless a write has committed since.
    pub fn put(&self, generation: u64, address: Address, event: Option<Event>) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if map.generation != generation {
            return;
        }
        if map.entries.len() >= MAX_ADDRESSES {
            map.entries.clear();
        }
        map.entries.insert(address, event);
    }

    /// The cached events of `kind` with `d` tag `identifier`, if any.
    pub fn group(&self, kind: u16, identifier: &str) -> Option<Vec<Event>> {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.groups.get(&(kind, identifier.to_owned())).cloned()
    }

    /// Files a group read at `generation`, unless a write has committed since.
    pub fn put_group(&self, generation: u64, kind: u16, identifier: &str, events: &[Event]) {
        if events.len() > MAX_GROUP_EVENTS {
            return;
        }
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if map.generation != generation {
            return;
        }
        if map.groups.len() >= MAX_ADDRESSES {
            map.groups.clear();
        }
        map.groups.insert((kind, identifier.to_owned()), events.to_vec());
    }

    /// Called after every commit that may have changed what an address holds.
    pub fn invalidate(&self) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.generation = map.generation.wrapping_add(1);
        map.entries.clear();
        map.groups.clear();
    }
}

/// The summaries a [`Store`](super::Store) keeps beside its tables.
#[derive(Debug)]
pub struct Memo {
    /// Ids of stored events (plus deleted ones: a stale "maybe").
    pub ids: Bloom,
    /// Ids named by an `e`, `E` or `q` tag of a stored event.
    pub referenced: Bloom,
    pub addresses: AddressCache,
}

impl Memo {
    pub fn with_capacity(events: usize) -> Self {
        Self {
            ids: Bloom::with_capacity(events.saturating_mul(2)),
            referenced: Bloom::with_capacity(events),
            addresses: AddressCache::default(),
        }
    }

    /// Notes an event about to be stored: its id, and the ids its tags reference.
    pub fn note_stored(&self, event: &Event) {
        self.ids.insert(event.id.as_bytes());
        for tag in event.tags.iter() {
            let values = tag.as_slice();
            if let (Some(name), Some(value)) = (values.first(), values.get(1))
                && matches!(name.as_str(), "e" | "E" | "q")
                && let Some(id) = hex32(value)
            {
                self.referenced.insert(&id);
            }
        }
    }

    pub fn might_be_stored(&self, id: &EventId) -> bool {
        self.ids.might_contain(id.as_bytes())
    }

    pub fn might_be_referenced(&self, id: &EventId) -> bool {
        self.referenced.might_contain(id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::{EventBuilder, Keys, Kind, Tag};

    fn id(n: u64) -> [u8; 32] {
        // Spread like a hash: the filter relies on uniform bytes.
        let mut out = [0u8; 32];
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        for chunk in out.chunks_mut(8) {
            x ^= x >> 33;
            x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
            x ^= x >> 29;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        out
    }

    #[test]
    fn bloom_never_forgets_and_rarely_lies() {
        let bloom = Bloom::with_capacity(1000);
        for n in 0..200_000 {
            bloom.insert(&id(n));
        }
        assert!(
            (0..200_000).all(|n| bloom.might_contain(&id(n))),
            "no false negatives"
        );
        let false_positives = (1_000_000..1_100_000)
            .filter(|n| bloom.might_contain(&id(*n)))
            .count();
        // Layers of 65 536, 131 072 (, ...): each at most ~0.8% at capacity.
        assert!(
            false_positives < 3_000,
            "{false_positives} false positives in 100 000"
        );
        assert!(
            bloom.layers.read().map(|l| l.len()).unwrap_or(0) >= 2,
            "grew a layer"
        );
    }

    #[test]
    fn hex32_reads_either_case_and_refuses_the_rest() {
        let lower = "ab".repeat(32);
        assert_eq!(hex32(&lower), Some([0xab; 32]));
        assert_eq!(hex32(&lower.to_uppercase()), Some([0xab; 32]));
        assert_eq!(hex32(&"ab".repeat(31)), None);
        assert_eq!(hex32(&format!("{}zz", "ab".repeat(31))), None);
        assert_eq!(hex32(&format!("{}é", "a".repeat(62))), None);
    }

    #[test]
    fn stored_events_and_their_references_are_remembered() {
        let keys = Keys::generate();
        let target = EventId::from_byte_array(id(7));
        let event = EventBuilder::new(Kind::TextNote, "hi")
            .tag(Tag::event(target))
            .finalize(&keys)
            .expect("sign");
        let memo = Memo::with_capacity(0);
        assert!(!memo.might_be_stored(&event.id));
        memo.note_stored(&event);
        assert!(memo.might_be_stored(&event.id));
        assert!(memo.might_be_referenced(&target));
        assert!(!memo.might_be_referenced(&event.id));
    }

    #[test]
    fn an_answer_read_before_a_write_is_not_filed_after_it() {
        let cache = AddressCache::default();
        let address = (30617, Keys::generate().public_key(), "repo".to_owned());
        let before = cache.generation();
        cache.invalidate();
        cache.put(before, address.clone(), None);
        assert_eq!(cache.get(&address), None, "stale answer dropped");
        cache.put(cache.generation(), address.clone(), None);
        assert_eq!(cache.get(&address), Some(None));
        cache.invalidate();
        assert_eq!(cache.get(&address), None, "a write empties the cache");
    }
}
