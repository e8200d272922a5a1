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

/// A git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(String);

impl Oid {
    pub fn parse(s: &str) -> Result<Self, GitValueError> {
        match grasp_values::object_id_problem(s.as_bytes()) {
            None => Ok(Self(s.to_owned())),
            Some(_) => Err(GitValueError::Oid(truncate(s))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The all-zero id git uses for "no object" (a created or deleted ref).
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }

    /// First 7 digits, as git prints them.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
