//! The NIP-34 kinds graspd treats specially, as numbers and as a type.

use nostr::Kind;

pub const KIND_ANNOUNCEMENT: u16 = 30617;
pub const KIND_STATE: u16 = 30618;
pub const KIND_PATCH: u16 = 1617;
pub const KIND_PULL_REQUEST: u16 = 1618;
pub const KIND_PULL_REQUEST_UPDATE: u16 = 1619;
/// NIP-34 issue: a root of a repository's discussion, like patches and pull requests.
pub const KIND_ISSUE: u16 = 1621;

/// What kind of NIP-34 event graspd treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nip34Kind {
    Announcement,
    State,
    PullRequest,
    PullRequestUpdate,
}

impl Nip34Kind {
    pub fn of(kind: Kind) -> Option<Self> {
        match kind.as_u16() {
            KIND_ANNOUNCEMENT => Some(Self::Announcement),
            KIND_STATE => Some(Self::State),
            KIND_PULL_REQUEST => Some(Self::PullRequest),
            KIND_PULL_REQUEST_UPDATE => Some(Self::PullRequestUpdate),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Announcement => "announcement",
            Self::State => "state",
            Self::PullRequest => "pull-request",
            Self::PullRequestUpdate => "pull-request-update",
        }
    }

    pub fn parse_str(s: &str) -> Option<Self> {
        [
            Self::Announcement,
            Self::State,
            Self::PullRequest,
            Self::PullRequestUpdate,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}
