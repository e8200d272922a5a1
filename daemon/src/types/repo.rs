//! Validated repository identifiers and repository coordinates.
//!
//! An identifier is the `d` tag of a repository announcement and becomes a directory name under the
//! git root, so it is untrusted text until [`Identifier::parse`] has accepted it. Everything deeper
//! in the daemon takes an `Identifier` or a [`RepoId`] and never re-checks strings.

use std::fmt;

use nostr::PublicKey;
use nostr::nips::nip19::ToBech32;

/// The longest identifier accepted, in bytes: the repository directory `<identifier>.git` must fit
/// in one 255-byte path component.
pub const MAX_IDENTIFIER_BYTES: usize = 251;

/// Why a string cannot be a repository identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier is longer than {MAX_IDENTIFIER_BYTES} bytes")]
    TooLong,
    #[error("identifier contains '/' or '\\'")]
    Separator,
    #[error("identifier starts with '.'")]
    LeadingDot,
    #[error("identifier contains '..'")]
    DotDot,
    #[error("identifier contains a control character")]
    Control,
}

/// A repository identifier that is safe to use as one path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier(String);

impl Identifier {
    /// Validates untrusted text (an announcement's `d` tag, a decoded URL path segment).
    pub fn parse(s: &str) -> Result<Self, IdentifierError> {
        if s.is_empty() {
            return Err(IdentifierError::Empty);
        }
        if s.len() > MAX_IDENTIFIER_BYTES {
            return Err(IdentifierError::TooLong);
        }
        if s.contains('/') || s.contains('\\') {
            return Err(IdentifierError::Separator);
        }
        if s.starts_with('.') {
            return Err(IdentifierError::LeadingDot);
        }
        if s.contains("..") {
            return Err(IdentifierError::DotDot);
        }
        if s.chars().any(char::is_control) {
            return Err(IdentifierError::Control);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which tree of the git root a repository lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    /// An announced repository: `<git-root>/<npub>/<identifier>.git`, the npub its owner's.
    #[default]
    Owner,
    /// GRASP-06: a contributor's pull request repository,
    /// `<git-root>/prs/<npub>/<identifier>.git`, the npub the contributor's. Only its own pushes
    /// write into it, and only `refs/nostr/<event-id>` refs.
    PullRequests,
}

impl Area {
    /// The directory under the git root (and the URL path prefix) of the pull request area.
    pub const PRS_DIR: &'static str = "prs";
}

/// One repository: an owner's, or (GRASP-06) a contributor's under `prs/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoId {
    pub owner: PublicKey,
    pub identifier: Identifier,
    pub area: Area,
}

impl RepoId {
    /// An owner's repository, `<npub>/<identifier>.git`.
    pub fn new(owner: PublicKey, identifier: Identifier) -> Self {
        Self {
            owner,
            identifier,
            area: Area::Owner,
        }
    }

    /// GRASP-06: `contributor`'s pull request repository, `prs/<npub>/<identifier>.git`.
    pub fn pull_requests(contributor: PublicKey, identifier: Identifier) -> Self {
        Self {
            owner: contributor,
            identifier,
            area: Area::PullRequests,
        }
    }

    pub fn is_pull_request_area(&self) -> bool {
        self.area == Area::PullRequests
    }

    /// The path below the git root (and below the server's URL), without `.git`:
    /// `<npub>/<identifier>` or `prs/<npub>/<identifier>`.
    pub fn relative_path(&self) -> String {
        match self.area {
            Area::Owner => format!("{}/{}", self.npub(), self.identifier),
            Area::PullRequests => format!("{}/{}/{}", Area::PRS_DIR, self.npub(), self.identifier),
        }
    }

    /// The owner's NIP-19 `npub`, the first path component of the repository.
    pub fn npub(&self) -> String {
        npub(&self.owner)
    }

    /// The announcement coordinate `30617:<owner-hex>:<identifier>`.
    pub fn coordinate(&self) -> String {
        format!("30617:{}:{}", self.owner.to_hex(), self.identifier)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.relative_path())
    }
}

/// bech32 `npub` of a public key. Encoding a valid key cannot fail; the hex fallback only exists
/// so no code path panics.
pub fn npub(key: &PublicKey) -> String {
    key.to_bech32().unwrap_or_else(|_| key.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_identifiers_are_accepted() {
        for ok in ["graspd", "my-repo", "a.b", "ünïcode", "x_1", "v1.0-rc"] {
            assert!(Identifier::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn identifiers_that_could_escape_the_git_root_are_refused() {
        let cases = [
            ("", IdentifierError::Empty),
            ("a/b", IdentifierError::Separator),
            ("..", IdentifierError::LeadingDot),
            ("a..b", IdentifierError::DotDot),
            (".hidden", IdentifierError::LeadingDot),
            ("a\\b", IdentifierError::Separator),
            ("a\nb", IdentifierError::Control),
            ("a\0b", IdentifierError::Control),
        ];
        for (input, want) in cases {
            assert_eq!(Identifier::parse(input), Err(want), "{input:?}");
        }
        assert_eq!(
            Identifier::parse(&"x".repeat(MAX_IDENTIFIER_BYTES + 1)),
            Err(IdentifierError::TooLong)
        );
        assert!(Identifier::parse(&"x".repeat(MAX_IDENTIFIER_BYTES)).is_ok());
    }
}
