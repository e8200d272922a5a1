//! NIP-34 events as graspd sees them: repository announcements (30617), repository states
//! (30618), pull requests (1618) and their updates (1619), and maintainer sets.
//!
//! Parsing happens once, where an event enters; the rest of the daemon works with these typed
//! views and never looks at raw tags again.

mod contribution;
mod listing;
mod maintainers;

use std::collections::BTreeMap;

use nostr::{Event, EventId, Kind, PublicKey, Timestamp};

pub use crate::types::{
    Identifier, IdentifierError, KIND_ANNOUNCEMENT, KIND_PATCH, KIND_PULL_REQUEST, KIND_PULL_REQUEST_UPDATE,
    KIND_STATE, Nip34Kind, RepoId, npub,
};
use crate::types::{Oid, RefName};
pub use contribution::pull_request_repository;
pub use listing::lists_server;
pub use maintainers::maintainer_set;

/// Why an event cannot be read as the NIP-34 event its kind says it is. Shown to the client
/// after `invalid:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Nip34Error {
    #[error("missing 'd' tag")]
    MissingIdentifier,
    #[error("bad repository identifier: {0}")]
    BadIdentifier(#[from] IdentifierError),
    #[error("bad 'maintainers' entry '{0}': not a public key")]
    BadMaintainer(String),
    #[error("bad ref tag: {0}")]
    BadRef(String),
    #[error("bad HEAD tag '{0}': expected 'ref: refs/...' (or 'refs/...')")]
    BadHead(String),
    #[error("missing 'c' tag (the tip commit)")]
    MissingTip,
    #[error("bad 'c' tag: {0}")]
    BadTip(String),
    #[error("missing 'a' tag naming a repository (30617:<owner>:<identifier>)")]
    MissingRepository,
}

/// A repository announcement (kind 30617).
#[derive(Debug, Clone)]
pub struct Announcement {
    pub repo: RepoId,
    pub created_at: Timestamp,
    pub name: Option<String>,
    pub description: Option<String>,
    pub web: Vec<String>,
    pub clone: Vec<String>,
    pub relays: Vec<String>,
    /// Maintainers listed besides the owner (the owner is always a maintainer).
    pub maintainers: Vec<PublicKey>,
}

impl Announcement {
    /// An announcement of `repo` with no tags but the identifier.
    pub fn new(repo: RepoId, created_at: Timestamp) -> Self {
        Self {
            repo,
            created_at,
            name: None,
            description: None,
            web: Vec::new(),
            clone: Vec::new(),
            relays: Vec::new(),
            maintainers: Vec::new(),
        }
    }

    pub fn parse(event: &Event) -> Result<Self, Nip34Error> {
        let identifier = Identifier::parse(&identifier_of(event)?)?;
        let mut ann = Self::new(RepoId::new(event.pubkey, identifier), event.created_at);
        for tag in event.tags.iter() {
            let values = tag.as_slice();
            let (Some(name), rest) = (values.first(), values.get(1..).unwrap_or_default()) else {
                continue;
            };
            match name.as_str() {
                "name" => ann.name = rest.first().cloned(),
                "description" => ann.description = rest.first().cloned(),
                "web" => ann.web.extend(rest.iter().cloned()),
                "clone" => ann.clone.extend(rest.iter().cloned()),
                "relays" => ann.relays.extend(rest.iter().cloned()),
                "maintainers" => {
                    for hex in rest {
                        let key = PublicKey::from_hex(hex)
                            .map_err(|_| Nip34Error::BadMaintainer(hex.chars().take(80).collect()))?;
                        if key != event.pubkey && !ann.maintainers.contains(&key) {
                            ann.maintainers.push(key);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(ann)
    }
}

/// What a repository's `HEAD` should point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadTarget(pub RefName);

/// A repository state (kind 30618): the refs a maintainer says the repository has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoState {
    pub id: EventId,
    pub author: PublicKey,
    pub identifier: Identifier,
    pub created_at: Timestamp,
    /// Branches, tags and other refs with their targets. Peeled `^{}` entries are not refs and
    /// are left out.
    pub refs: BTreeMap<RefName, Oid>,
    /// Refs whose value is not a full object id (an abbreviated `abc123`, a typo), as found in
    /// the wild. Such a state is still a state: it is held and a push is checked against it, but
    /// no git data can ever satisfy it, so it is never released (see [`RepoState::is_satisfiable`]).
    pub unresolved: BTreeMap<RefName, String>,
    pub head: Option<HeadTarget>,
}

impl RepoState {
    pub fn parse(event: &Event) -> Result<Self, Nip34Error> {
        let identifier = Identifier::parse(&identifier_of(event)?)?;
        let mut refs = BTreeMap::new();
        let mut unresolved = BTreeMap::new();
        let mut head = None;
        for tag in event.tags.iter() {
            let values = tag.as_slice();
            let Some(name) = values.first() else { continue };
            if name == "HEAD" {
                let value = values.get(1).map(String::as_str).unwrap_or_default();
                // NIP-34 writes `ref: refs/heads/main`; some clients leave out the `ref: `.
                let target = RefName::parse(value.strip_prefix("ref: ").unwrap_or(value))
                    .map_err(|_| Nip34Error::BadHead(printable(value)))?;
                head = Some(HeadTarget(target));
            } else if name.starts_with("refs/") {
                if name.ends_with("^{}") {
                    continue;
                }
                let ref_name = RefName::parse(name).map_err(|e| Nip34Error::BadRef(e.to_string()))?;
                let value = values.get(1).map(String::as_str).unwrap_or_default();
                match ref_target(value) {
                    Ok(Some(oid)) => {
                        refs.insert(ref_name, oid);
                    }
                    Ok(None) => {
                        unresolved.insert(ref_name, value.to_owned());
                    }
                    Err(why) => return Err(Nip34Error::BadRef(format!("{ref_name}: {why}"))),
                }
            }
        }
        Ok(Self {
            id: event.id,
            author: event.pubkey,
            identifier,
            created_at: event.created_at,
            refs,
            unresolved,
            head,
        })
    }

    /// Whether git data could ever satisfy this state: every ref names a full object id.
    pub fn is_satisfiable(&self) -> bool {
        self.unresolved.is_empty()
    }

    /// Distinct objects the state needs on disk.
    pub fn wanted_oids(&self) -> Vec<Oid> {
        let mut oids: Vec<Oid> = self.refs.values().cloned().collect();
        oids.sort();
        oids.dedup();
        oids
    }
}

/// The target of a ref tag: `Some` for a full object id (hex in either case), `None` for any
/// other value a state in the wild may carry (an abbreviated id); an error only for values that
/// cannot be part of an event a client means (control characters, absurd lengths).
fn ref_target(value: &str) -> Result<Option<Oid>, String> {
    if value.chars().any(char::is_control) {
        return Err(format!("'{}' contains control characters", printable(value)));
    }
    if value.len() > 256 {
        return Err(format!("'{}…' is too long for an object id", printable(value)));
    }
    Ok(Oid::parse(&value.to_ascii_lowercase()).ok())
}

/// At most 80 characters of `value`, control characters escaped: safe to show a client.
fn printable(value: &str) -> String {
    value.chars().take(80).flat_map(char::escape_debug).collect()
}

/// A pull request (1618) or pull request update (1619).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub id: EventId,
    pub author: PublicKey,
    /// Repositories named by `a` tags (`30617:<owner>:<identifier>`), valid ones only.
    pub repos: Vec<RepoId>,
    pub tip: Oid,
    pub clone: Vec<String>,
}

impl PullRequest {
    pub fn parse(event: &Event) -> Result<Self, Nip34Error> {
        let mut tip = None;
        let mut clone = Vec::new();
        for tag in event.tags.iter() {
            let values = tag.as_slice();
            match values.first().map(String::as_str) {
                Some("c") => {
                    let value = values.get(1).map(String::as_str).unwrap_or_default();
                    tip = Some(Oid::parse(value).map_err(|e| Nip34Error::BadTip(e.to_string()))?);
                }
                Some("clone") => clone.extend(values.iter().skip(1).cloned()),
                _ => {}
            }
        }
        let repos = repo_coordinates(event);
        if repos.is_empty() {
            return Err(Nip34Error::MissingRepository);
        }
        Ok(Self {
            id: event.id,
            author: event.pubkey,
            repos,
            tip: tip.ok_or(Nip34Error::MissingTip)?,
            clone,
        })
    }
}

/// The `d` tag of an addressable event.
pub fn identifier_of(event: &Event) -> Result<String, Nip34Error> {
    event.tags.identifier().ok_or(Nip34Error::MissingIdentifier)
}

/// Repositories an event names through `a`/`A` tags of the form `30617:<owner-hex>:<identifier>`.
/// Malformed coordinates are skipped: they name nothing this server could host.
pub fn repo_coordinates(event: &Event) -> Vec<RepoId> {
    let mut repos = Vec::new();
    for tag in event.tags.iter() {
        let values = tag.as_slice();
        if !matches!(values.first().map(String::as_str), Some("a" | "A")) {
            continue;
        }
        if let Some(repo) = values.get(1).and_then(|v| parse_repo_coordinate(v))
            && !repos.contains(&repo)
        {
            repos.push(repo);
        }
    }
    repos
}

/// Parses `30617:<owner-hex>:<identifier>`.
pub fn parse_repo_coordinate(value: &str) -> Option<RepoId> {
    let address = crate::nip01::Address::parse(value)?;
    if address.kind != Kind::from(KIND_ANNOUNCEMENT) {
        return None;
    }
    Some(RepoId::new(address.author, Identifier::parse(address.d).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::event::FinalizeEvent;
    use nostr::{EventBuilder, Keys, Tag};

    fn event(keys: &Keys, kind: u16, tags: Vec<Vec<&str>>) -> Event {
        let tags = tags.into_iter().map(|t| Tag::parse(t).expect("tag"));
        EventBuilder::new(Kind::from(kind), "")
            .tags(tags)
            .finalize(keys)
            .expect("sign")
    }

    #[test]
    fn state_reads_refs_head_and_skips_peeled_entries() {
        let keys = Keys::generate();
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let ev = event(
            &keys,
            KIND_STATE,
            vec![
                vec!["d", "repo"],
                vec!["refs/heads/main", &a],
                vec!["refs/tags/v1", &b],
                vec!["refs/tags/v1^{}", &a],
                vec!["HEAD", "ref: refs/heads/main"],
                vec!["nonce", "12", "0", "ngit-created-at-tiebreak"],
            ],
        );
        let state = RepoState::parse(&ev).expect("state");
        assert_eq!(state.identifier.as_str(), "repo");
        assert_eq!(state.refs.len(), 2);
        assert_eq!(
            state.head,
            Some(HeadTarget(RefName::parse("refs/heads/main").expect("ref")))
        );
        assert_eq!(state.wanted_oids().len(), 2);
    }

    #[test]
    fn state_head_without_the_ref_prefix_means_the_same() {
        let keys = Keys::generate();
        let plain = event(
            &keys,
            KIND_STATE,
            vec![vec!["d", "r"], vec!["HEAD", "refs/heads/develop"]],
        );
        let prefixed = event(
            &keys,
            KIND_STATE,
            vec![vec!["d", "r"], vec!["HEAD", "ref: refs/heads/develop"]],
        );
        let expected = Some(HeadTarget(RefName::parse("refs/heads/develop").expect("ref")));
        assert_eq!(RepoState::parse(&plain).expect("plain").head, expected);
        assert_eq!(RepoState::parse(&prefixed).expect("prefixed").head, expected);
    }

    #[test]
    fn state_with_an_abbreviated_oid_is_a_state_that_cannot_be_satisfied() {
        let keys = Keys::generate();
        let full = "a".repeat(40);
        let ev = event(
            &keys,
            KIND_STATE,
            vec![
                vec!["d", "r"],
                vec!["refs/heads/main", "abc123"],
                vec!["refs/heads/dev", &full],
            ],
        );
        let state = RepoState::parse(&ev).expect("state");
        assert!(!state.is_satisfiable());
        assert_eq!(state.unresolved.len(), 1);
        assert_eq!(state.refs.len(), 1);
        assert_eq!(state.wanted_oids(), vec![Oid::parse(&full).expect("oid")]);
        let upper = event(
            &keys,
            KIND_STATE,
            vec![vec!["d", "r"], vec!["refs/heads/main", &"A".repeat(40)]],
        );
        let upper = RepoState::parse(&upper).expect("uppercase hex is still an object id");
        assert!(upper.is_satisfiable());
    }

    #[test]
    fn state_that_cannot_be_a_state_is_refused() {
        let keys = Keys::generate();
        let control = event(
            &keys,
            KIND_STATE,
            vec![vec!["d", "r"], vec!["refs/heads/main", "abc\n123"]],
        );
        assert!(matches!(RepoState::parse(&control), Err(Nip34Error::BadRef(_))));
        let bad_name = event(
            &keys,
            KIND_STATE,
            vec![vec!["d", "r"], vec!["refs/heads/a..b", "abc"]],
        );
        assert!(matches!(RepoState::parse(&bad_name), Err(Nip34Error::BadRef(_))));
        let bad_head = event(&keys, KIND_STATE, vec![vec!["d", "r"], vec!["HEAD", "main"]]);
        assert!(matches!(RepoState::parse(&bad_head), Err(Nip34Error::BadHead(_))));
        let no_d = event(&keys, KIND_STATE, vec![vec!["refs/heads/main", "abc"]]);
        assert!(matches!(
            RepoState::parse(&no_d),
            Err(Nip34Error::MissingIdentifier)
        ));
        let traversal = event(&keys, KIND_STATE, vec![vec!["d", "../x"]]);
        assert!(matches!(
            RepoState::parse(&traversal),
            Err(Nip34Error::BadIdentifier(_))
        ));
    }

    #[test]
    fn announcement_reads_urls_and_maintainers_without_the_owner() {
        let keys = Keys::generate();
        let other = Keys::generate().public_key().to_hex();
        let own = keys.public_key().to_hex();
        let ev = event(
            &keys,
            KIND_ANNOUNCEMENT,
            vec![
                vec!["d", "repo"],
                vec!["name", "Repo"],
                vec!["clone", "https://a/x.git", "https://b/x.git"],
                vec!["relays", "wss://a", "wss://b"],
                vec!["maintainers", &other, &own],
            ],
        );
        let ann = Announcement::parse(&ev).expect("announcement");
        assert_eq!(ann.clone.len(), 2);
        assert_eq!(ann.relays.len(), 2);
        assert_eq!(ann.maintainers.len(), 1);
        assert_eq!(ann.name.as_deref(), Some("Repo"));
    }

    #[test]
    fn pull_request_needs_a_tip_and_a_repository() {
        let keys = Keys::generate();
        let owner = Keys::generate().public_key().to_hex();
        let coord = format!("30617:{owner}:repo");
        let tip = "c".repeat(40);
        let ok = event(&keys, KIND_PULL_REQUEST, vec![vec!["a", &coord], vec!["c", &tip]]);
        let pr = PullRequest::parse(&ok).expect("pr");
        assert_eq!(pr.repos.len(), 1);
        let no_tip = event(&keys, KIND_PULL_REQUEST, vec![vec!["a", &coord]]);
        assert_eq!(PullRequest::parse(&no_tip).err(), Some(Nip34Error::MissingTip));
        let no_repo = event(&keys, KIND_PULL_REQUEST, vec![vec!["c", &tip]]);
        assert_eq!(
            PullRequest::parse(&no_repo).err(),
            Some(Nip34Error::MissingRepository)
        );
    }
}
