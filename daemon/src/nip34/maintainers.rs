//! Recursive maintainer sets.
//!
//! The maintainer set of owner O's repository `d` is O, every key in O's announcement's
//! `maintainers` tag, and — recursively — the maintainers listed by those keys' own announcements
//! for the same identifier. A state event authored by anyone in the set is authoritative for O's
//! repository. The walk is breadth-first and cycle-safe.

use std::collections::{BTreeSet, VecDeque};

use nostr::PublicKey;

/// Computes the set from the owner outwards. `listed_by(key)` returns the maintainers listed by
/// `key`'s newest announcement for the identifier in question (empty when it has none).
pub fn maintainer_set<F>(owner: PublicKey, mut listed_by: F) -> BTreeSet<PublicKey>
where
    F: FnMut(&PublicKey) -> Vec<PublicKey>,
{
    let mut set = BTreeSet::from([owner]);
    let mut queue = VecDeque::from([owner]);
    while let Some(key) = queue.pop_front() {
        for listed in listed_by(&key) {
            if set.insert(listed) {
                queue.push_back(listed);
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use nostr::Keys;

    use super::*;

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n).map(|_| Keys::generate().public_key()).collect()
    }

    #[test]
    fn chains_are_followed_and_cycles_end() {
        let k = keys(4);
        let (o, m, n, stranger) = (k[0], k[1], k[2], k[3]);
        let lists: HashMap<PublicKey, Vec<PublicKey>> =
            HashMap::from([(o, vec![m]), (m, vec![n]), (n, vec![o])]);
        let set = maintainer_set(o, |key| lists.get(key).cloned().unwrap_or_default());
        assert_eq!(set, BTreeSet::from([o, m, n]));
        assert!(!set.contains(&stranger));
    }

    #[test]
    fn an_owner_without_announcement_lists_only_itself() {
        let o = keys(1)[0];
        assert_eq!(maintainer_set(o, |_| Vec::new()), BTreeSet::from([o]));
    }
}
