//! NIP-01 rules more than one part of the daemon needs: which of two events at one address is
//! the newer, how an address (`<kind>:<pubkey-hex>:<d>`, the value of `a` tags) reads, the
//! limit a filter without one gets, and whether an event's id and signature hold.
//!
//! Why not nostr's `Coordinate` for addresses: it splits on every `:`, so a `d` tag that contains
//! one (a repository identifier may) would be cut short; here the `d` part is everything after
//! the second `:`.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use nostr::secp256k1::{Message, XOnlyPublicKey};
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

/// Authors' keys as points on the curve, as the signature check needs them. Reading a key from its
/// 32 bytes takes a square root on the curve, a tenth of the check; authors publish many events,
/// so each key is read once. Bounded: emptied when full (a cache only, never an answer).
static AUTHOR_KEYS: LazyLock<RwLock<HashMap<PublicKey, XOnlyPublicKey>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));
const MAX_AUTHOR_KEYS: usize = 16_384;

/// Whether `event`'s signature is its author's over its id (BIP-340). The id itself is not
/// checked here ([`id_holds`]).
pub fn signature_holds(event: &Event) -> bool {
    let cached = AUTHOR_KEYS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&event.pubkey)
        .copied();
    let key = match cached {
        Some(key) => key,
        None => {
            // Not a point on the curve: no signature can hold.
            let Ok(key) = event.pubkey.xonly() else {
                return false;
            };
            let mut keys = AUTHOR_KEYS.write().unwrap_or_else(PoisonError::into_inner);
            if keys.len() >= MAX_AUTHOR_KEYS {
                keys.clear();
            }
            keys.insert(event.pubkey, key);
            key
        }
    };
    nostr::SECP256K1
        .verify_schnorr(&event.sig, &Message::from_digest(event.id.to_bytes()), &key)
        .is_ok()
}

/// Whether `event`'s id is the SHA-256 of its NIP-01 serialization,
/// `[0,<pubkey>,<created_at>,<kind>,<tags>,<content>]`. The same bytes as the Nostr library's
/// `Event::verify_id`, written straight into one buffer instead of through a JSON tree.
pub fn id_holds(event: &Event) -> bool {
    use nostr::hashes::Hash;
    let mut serialized = Vec::with_capacity(256 + event.content.len());
    let fields = (
        0u8,
        &event.pubkey,
        event.created_at,
        event.kind,
        &event.tags,
        event.content.as_str(),
    );
    if serde_json::to_writer(&mut serialized, &fields).is_err() {
        return false;
    }
    nostr::hashes::sha256::Hash::hash(&serialized).to_byte_array() == event.id.to_bytes()
}

/// Whether `event` is what it says: its id is the hash of its content and its signature holds.
/// The error words what is wrong.
pub fn verify(event: &Event) -> Result<(), String> {
    if !id_holds(event) {
        return Err("invalid event id".to_owned());
    }
    if !signature_holds(event) {
        return Err("invalid signature".to_owned());
    }
    Ok(())
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
    use nostr::event::FinalizeEvent;
    use nostr::{EventBuilder, Keys};

    #[test]
    fn the_id_is_checked_as_the_library_checks_it() {
        let keys = Keys::generate();
        let contents = [
            "",
            "plain",
            "quote \" backslash \\ newline \n tab \t",
            "ünïcödé 🦀 \u{1}",
        ];
        for content in contents {
            let event = EventBuilder::text_note(content)
                .tags([
                    nostr::Tag::parse(["a", "30617:abc:repo"]).expect("tag"),
                    nostr::Tag::parse(["t", "\"odd\" \u{7f}", "extra"]).expect("tag"),
                ])
                .finalize(&keys)
                .expect("sign");
            assert!(event.verify_id() && id_holds(&event), "{content:?}");
            let mut changed = event.clone();
            changed.content.push('x');
            assert!(!changed.verify_id() && !id_holds(&changed), "{content:?}");
            let mut later = event;
            later.created_at = later.created_at + 1;
            assert!(!id_holds(&later), "{content:?}");
        }
    }

    #[test]
    fn a_signature_holds_only_for_its_author_and_id_the_second_time_too() {
        let keys = Keys::generate();
        let event = EventBuilder::text_note("hello").finalize(&keys).expect("sign");
        for _ in 0..2 {
            assert!(signature_holds(&event), "the author's own signature");
        }
        let other = EventBuilder::text_note("other").finalize(&keys).expect("sign");
        let mut swapped = event.clone();
        swapped.sig = other.sig;
        assert!(!signature_holds(&swapped), "a signature over another id");
        let mut stolen = event.clone();
        stolen.pubkey = Keys::generate().public_key();
        assert!(!signature_holds(&stolen), "another author's key");
        let mut off_curve = event;
        // x = 5 is not the x coordinate of any point on secp256k1.
        let mut bytes = [0u8; 32];
        bytes[31] = 5;
        off_curve.pubkey = PublicKey::from_byte_array(bytes);
        assert!(!signature_holds(&off_curve), "a key that is no point");
    }

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
