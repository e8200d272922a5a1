//! Git values typed once at the edge: object ids and ref names.

use std::fmt;

/// Why a string is not a git object id or ref name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitValueError {
    #[error("'{0}' is not an object id (40 or 64 lowercase hex digits)")]
    Oid(String),
    #[error("'{0}' is not a valid ref name")]
    RefName(String),
}

/// A git object id, SHA-1 (20 bytes) or SHA-256 (32 bytes), kept as bytes: 33 bytes inline, `Copy`,
/// compared and hashed without touching the heap. Parsed from and printed as git prints it (40 or
/// 64 lowercase hex digits).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid {
    len: u8,
    bytes: [u8; 32],
}

impl Oid {
    pub fn parse(s: &str) -> Result<Self, GitValueError> {
        if grasp_values::object_id_problem(s.as_bytes()).is_some() {
            return Err(GitValueError::Oid(truncate(s)));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        Ok(Self {
            len: (s.len() / 2) as u8,
            bytes,
        })
    }

    /// The raw id: 20 or 32 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id as git prints it, without allocating.
    pub fn hex(&self) -> Hex {
        let mut digits = [0u8; 64];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(self.as_bytes()) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        Hex {
            len: self.len * 2,
            digits,
        }
    }

    /// The all-zero id git uses for "no object" (a created or deleted ref).
    pub fn is_zero(&self) -> bool {
        self.as_bytes().iter().all(|&b| b == 0)
    }

    /// First 7 digits, as git prints them.
    pub fn short(&self) -> String {
        self.hex()[..7].to_owned()
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The value of a lowercase hex digit (the caller has checked it is one).
fn nibble(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit - b'a' + 10,
    }
}

/// An object id's hex digits on the stack; dereferences to `&str`.
#[derive(Clone, Copy)]
pub struct Hex {
    len: u8,
    digits: [u8; 64],
}

impl std::ops::Deref for Hex {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({})", &*self.hex())
    }
}

/// A full ref name (`refs/...`) that passes git's `check-ref-format` rules (the rules are
/// `grasp_values::ref_name_problem`, shared with the hooks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefName(String);

impl RefName {
    pub fn parse(s: &str) -> Result<Self, GitValueError> {
        match grasp_values::ref_name_problem(s.as_bytes()) {
            None => Ok(Self(s.to_owned())),
            Some(_) => Err(GitValueError::RefName(truncate(s))),
        }
    }

    /// `refs/heads/<name>`, when that is a valid ref name.
    pub fn branch(name: &str) -> Option<Self> {
        Self::parse(&format!("refs/heads/{name}")).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_must_be_full_lowercase_hex() {
        assert!(Oid::parse(&"a".repeat(40)).is_ok());
        assert!(Oid::parse(&"0".repeat(64)).is_ok());
        assert!(Oid::parse(&"A".repeat(40)).is_err());
        assert!(Oid::parse(&"a".repeat(39)).is_err());
        assert!(Oid::parse("main").is_err());
        assert!(Oid::parse(&"0".repeat(40)).map(|o| o.is_zero()).unwrap_or(false));
        assert!(
            !Oid::parse(&format!("{}1", "0".repeat(39)))
                .map(|o| o.is_zero())
                .unwrap_or(true)
        );
    }

    #[test]
    fn object_ids_print_as_parsed_and_order_as_their_hex() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let sha256 = "fedcba9876543210".repeat(4);
        for text in [sha1, sha256.as_str()] {
            let oid = Oid::parse(text).expect("oid");
            assert_eq!(oid.to_string(), text);
            assert_eq!(&*oid.hex(), text);
            assert_eq!(oid.as_bytes().len(), text.len() / 2);
            assert_eq!(oid.short(), &text[..7]);
        }
        let low = Oid::parse(&format!("0a{}", "f".repeat(38))).expect("oid");
        let high = Oid::parse(&format!("a0{}", "0".repeat(38))).expect("oid");
        assert!(low < high);
    }

    #[test]
    fn ref_names_follow_check_ref_format() {
        for ok in [
            "refs/heads/main",
            "refs/tags/v1.0",
            "refs/nostr/abc",
            "refs/heads/feat/x-y",
        ] {
            assert!(RefName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "HEAD",
            "main",
            "refs/heads/",
            "refs/heads/a..b",
            "refs/heads/a b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/a^{}",
            "refs/heads/a@{1}",
            "refs//heads",
            "refs/heads/a\nb",
        ] {
            assert!(RefName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
