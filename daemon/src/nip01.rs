//! NIP-01 rules more than one part of the daemon needs: which of two events at one address is
//! the newer, how an address (`<kind>:<pubkey-hex>:<d>`, the value of `a` tags) reads, and the
//! limit a filter without one gets.
//!
//! Why not nostr's `Coordinate` for addresses: it splits on every `:`, so a `d` tag that contains
//! one (a repository identifier may) would be cut short; here the `d` part is everything after
//! the second `:`.

use nostr::{Event, Kind, PublicKey};

/// The limit a REQ filter without one gets (the bridge's stored parts and the relay builder).
pub const DEFAULT_FILTER_LIMIT: usize = 500;

/// NIP-01 order for events at one address: the later `created_at` wins; on a tie, the lower id.
/// Takes `(created_at, id)` pairs in any representation whose order is the rule's (an `EventId`,
/// or its lowercase hex, which sorts the same).
pub fn newer<T: Ord, I: Ord>(a: (T, I), b: (T, I)) -> bool {
    (a.0, std::cmp::Reverse(a.1)) > (b.0, std::cmp::Reverse(b.1))
}

/// Whether `a` replaces `b` at their address.
pub fn is_newer(a: &Event, b: &Event) -> bool {
    newer((a.created_at, a.id), (b.created_at, b.id))
}

/// An address as an `a` tag names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address<'a> {
    pub kind: Kind,
    pub author: PublicKey,
    /// The `d` tag; empty for replaceable kinds (which may leave out the last `:`).
    pub d: &'a str,
}

impl<'a> Address<'a> {
    /// Reads `<kind>:<pubkey-hex>:<d>`; `None` when the kind or the key does not parse.
    pub fn parse(value: &'a str) -> Option<Self> {
        let mut parts = value.splitn(3, ':');
        let kind = parts.next()?.parse::<u16>().ok()?;
        let author = PublicKey::from_hex(parts.next()?).ok()?;
        Some(Self {
            kind: Kind::from(kind),
            author,
            d: parts.next().unwrap_or(""),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_later_event_wins_and_a_tie_goes_to_the_lower_id() {
        assert!(newer((2, "b"), (1, "a")));
        assert!(!newer((1, "a"), (2, "b")));
        assert!(newer((1, "a"), (1, "b")), "same second: lower id");
        assert!(!newer((1, "b"), (1, "a")));
        assert!(!newer((1, "a"), (1, "a")));
    }

    #[test]
    fn addresses_keep_colons_in_the_d_tag() {
        let key = nostr::Keys::generate().public_key();
        let value = format!("30617:{}:team:project", key.to_hex());
        let address = Address::parse(&value).expect("address");
        assert_eq!(address.kind, Kind::from(30617));
        assert_eq!(address.author, key);
        assert_eq!(address.d, "team:project");
        let replaceable = format!("0:{}", key.to_hex());
        assert_eq!(Address::parse(&replaceable).map(|a| a.d), Some(""));
        assert!(Address::parse("x:y:z").is_none());
        assert!(Address::parse(&format!("30617:{}", "a".repeat(63))).is_none());
    }
}
