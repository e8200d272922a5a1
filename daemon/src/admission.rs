//! The GRASP-01 write policy as decisions: which events this relay accepts, refuses, or holds in
//! purgatory, and what accepting or holding one changes.
//!
//! Each function here takes plain data about the event (the facts the relay's entry point,
//! `relay::policy`, gathers from the store, purgatory and the disk) and returns a [`Decision`]:
//! the answer for the client and the [`Effect`]s to apply. Nothing here does I/O, so every GRASP
//! rule is a row in a table test below; `process::effects` applies the effects in one place,
//! under the identifier's lock.

use nostr::EventId;

use crate::config::ArchiveVerdict;
use crate::nip34::{Announcement, Identifier, Nip34Kind, PullRequest, RepoId, RepoState};
use crate::types::Oid;

/// The message GRASP-01 [22] prescribes for events held in purgatory.
pub const PURGATORY_MESSAGE: &str = "won't be served until git data arrives";

/// What the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Stored and served now.
    Accept,
    /// Acknowledged and held in purgatory (`OK true "purgatory: ..."`).
    Purgatory,
    /// Acknowledged without storing: we already have it (`OK true "duplicate: ..."`).
    Duplicate(String),
    /// Refused by policy (`OK false "blocked: ..."`).
    Blocked(String),
    /// Refused as malformed (`OK false "invalid: ..."`).
    Invalid(String),
    /// Refused for now: a limit on how fast something may happen (`OK false "rate-limited: ..."`).
    RateLimited(String),
}

/// A change to make when the decision is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create the bare repository with GRASP's config (nothing if it exists).
    Provision(RepoId),
    /// Remove a waiting event: an older one at this event's address, now replaced.
    DropPending(EventId),
    /// Hold the event in purgatory under `identifier`; with `sync`, also queue the identifier
    /// for the git-data sync after the delay for users' events (a push usually follows).
    Hold {
        kind: Nip34Kind,
        identifier: Identifier,
        sync: bool,
    },
    /// Bring every repository in `repos` to `state` (objects copied from `source`, refs and
    /// HEAD aligned) and release announcements waiting for data in them.
    ApplyState {
        state: Box<RepoState>,
        source: RepoId,
        repos: Vec<RepoId>,
    },
    /// The pull request's ref in `repo` was pushed at another tip, `at`: delete it (if it is
    /// still there) and forget its placeholder (GRASP-01 [45]: git first with another tip).
    DropPullRequestRef { repo: RepoId, at: Oid },
    /// Point the pull request's ref at its tip in every target (objects copied from `source`)
    /// and release announcements waiting for data in them.
    ApplyPullRequest {
        pull_request: Box<PullRequest>,
        source: RepoId,
        targets: Vec<RepoId>,
    },
    /// NIP-09: remove the deletion author's events from purgatory, and the empty repository of
    /// any announcement removed.
    ApplyDeletion,
}

/// An answer and what carrying it out changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub answer: Answer,
    pub effects: Vec<Effect>,
}

impl Decision {
    fn answer(answer: Answer) -> Self {
        Self {
            answer,
            effects: Vec::new(),
        }
    }

    fn blocked(message: impl Into<String>) -> Self {
        Self::answer(Answer::Blocked(message.into()))
    }

    fn with(answer: Answer, effects: Vec<Effect>) -> Self {
        Self { answer, effects }
    }

    /// Whether carrying the decision out changes anything: the event is accepted or held, or
    /// there is an effect. A refusal, or a duplicate answered `OK`, changes nothing, so it needs
    /// no proof that the event is genuine (its signature).
    pub fn changes_anything(&self) -> bool {
        matches!(self.answer, Answer::Accept | Answer::Purgatory) || !self.effects.is_empty()
    }
}

/// What is known of any event before its kind is looked at.
#[derive(Debug, Clone, Default)]
pub struct CommonFacts {
    /// Its author deleted it (NIP-09).
    pub deleted: bool,
    /// It already waits in purgatory.
    pub in_purgatory: bool,
    /// A newer event is stored at its address (replaceable and addressable kinds).
    pub stored_newer: Option<EventId>,
}

/// The checks every event goes through first; `None` when its kind's rules decide.
pub fn decide_common(facts: &CommonFacts) -> Option<Decision> {
    if facts.deleted {
        return Some(Decision::blocked("this event was deleted by its author"));
    }
    if facts.in_purgatory {
        return Some(Decision::answer(Answer::Duplicate(format!(
            "already have this event; it is in purgatory and {PURGATORY_MESSAGE}"
        ))));
    }
    facts.stored_newer.map(|newer| {
        Decision::blocked(format!(
            "a newer event for this address is already stored ({newer})"
        ))
    })
}

/// A repository announcement (30617) and what surrounds it.
#[derive(Debug, Clone)]
pub struct AnnouncementFacts {
    pub announcement: Announcement,
    /// `Ok` when its `clone` and `relays` tags name this server, else what is missing.
    pub lists_us: Result<(), String>,
    /// Its author is in the recursive maintainer set of another owner's repository with the same
    /// identifier (GRASP-01 [9]).
    pub maintains_another: bool,
    /// An announcement by the same author is already stored at this address.
    pub stored_at_address: bool,
    /// The repository exists and has refs (received git data).
    pub has_refs: bool,
    /// An older announcement of the same repository waiting in purgatory.
    pub pending: Option<EventId>,
    /// GRASP-05: what the archive rules make of the repository; `None` with archive mode off.
    pub archive: Option<ArchiveVerdict>,
    /// Archive only (a read-only mirror): listing this server is not enough.
    pub archive_only: bool,
    /// The owner may have repositories hosted here (`--allow-owner`; anyone without it).
    pub owner_allowed: bool,
    /// The repository does not exist yet and creating it now would pass a limit on new
    /// repositories (why); `None` when it exists or fits.
    pub creation_refused: Option<String>,
    /// The repository does not exist yet and the server already hosts this many, its limit
    /// (`--max-repositories`).
    pub server_full: Option<usize>,
}

impl AnnouncementFacts {
    /// Whether the announcement is taken as one hosted here: it lists this server, the server is
    /// not an archive only, and the owner is allowed.
    pub fn hosted_here(&self) -> bool {
        self.lists_us.is_ok() && !self.archive_only && self.owner_allowed
    }

    /// Whether the archive rules take the repository (GRASP-05).
    pub fn archived(&self) -> bool {
        self.archive == Some(ArchiveVerdict::Allowed)
    }
}

/// GRASP-01 [9]: announcements that list this server get a repository; one that replaces a
/// served announcement (or whose repository has data) is served at once, a first one waits for
/// git data. Announcements by a maintainer of another owner's repository are served without one.
/// GRASP-05: a deny rule refuses whatever the announcement lists; the archive rules take
/// announcements that do not list this server (all of them on an archive-only server) as if they
/// did, and their repositories fill through the syncs.
pub fn decide_announcement(facts: &AnnouncementFacts) -> Decision {
    let repo = facts.announcement.repo.clone();
    if facts.archive == Some(ArchiveVerdict::Denied) {
        return Decision::blocked(format!(
            "this server does not host or archive '{}' of {}",
            repo.identifier,
            repo.npub()
        ));
    }
    if !facts.hosted_here() && !facts.archived() {
        if facts.maintains_another {
            return Decision::answer(Answer::Accept);
        }
        return Decision::blocked(match &facts.lists_us {
            Err(missing) => missing.clone(),
            Ok(()) if facts.archive_only => {
                "this server is a read-only archive, and its archive rules do not take this repository"
                    .to_owned()
            }
            Ok(()) => format!(
                "this server hosts the repositories of the owners its operator lists only, and {} is not one of them",
                repo.npub()
            ),
        });
    }
    if let Some(n) = facts.server_full {
        return Decision::blocked(format!(
            "this server hosts {n} repositories, its limit, and takes no new ones"
        ));
    }
    if let Some(why) = &facts.creation_refused {
        return Decision::answer(Answer::RateLimited(why.clone()));
    }
    let mut effects = vec![Effect::Provision(repo.clone())];
    if facts.stored_at_address || facts.has_refs {
        effects.extend(facts.pending.map(Effect::DropPending));
        return Decision::with(Answer::Accept, effects);
    }
    effects.push(Effect::Hold {
        kind: Nip34Kind::Announcement,
        identifier: repo.identifier,
        sync: false,
    });
    Decision::with(Answer::Purgatory, effects)
}

/// A repository state (30618) and what surrounds it.
#[derive(Debug, Clone)]
pub struct StateFacts {
    pub state: RepoState,
    /// Hosted repositories whose owner's recursive maintainer set includes the author.
    pub hosted_owners: Vec<RepoId>,
    /// A state by the same author waiting in purgatory, and whether it is newer than this one.
    pub pending: Option<(EventId, bool)>,
    /// Of `hosted_owners`, those for which no newer state by one of the owner's maintainers is
    /// already stored: the repositories this state speaks for.
    pub authoritative: Vec<RepoId>,
    /// The first of `authoritative` that holds every object the state names, if any.
    pub source: Option<RepoId>,
}

/// GRASP-01 [9], [22]: a state by a maintainer of a hosted repository is applied at once when
/// its git data is here, and waits for it otherwise (also when a newer stored state covers every
/// repository: it then expires).
pub fn decide_state(facts: &StateFacts) -> Decision {
    let state = &facts.state;
    if facts.hosted_owners.is_empty() {
        return Decision::blocked(format!(
            "no repository '{}' on this server lists you as a maintainer",
            state.identifier
        ));
    }
    if let Some((pending, true)) = facts.pending {
        return Decision::blocked(format!(
            "a newer state from you is already waiting for its git data ({pending})"
        ));
    }
    // A state naming a ref by an abbreviated id can never be satisfied, whatever is on disk.
    if let (Some(source), false, true) = (
        &facts.source,
        facts.authoritative.is_empty(),
        state.is_satisfiable(),
    ) {
        let mut effects = vec![Effect::ApplyState {
            state: Box::new(state.clone()),
            source: source.clone(),
            repos: facts.authoritative.clone(),
        }];
        // An older state of ours that waited is now moot.
        effects.extend(facts.pending.map(|(id, _)| Effect::DropPending(id)));
        return Decision::with(Answer::Accept, effects);
    }
    Decision::with(
        Answer::Purgatory,
        vec![Effect::Hold {
            kind: Nip34Kind::State,
            identifier: state.identifier.clone(),
            sync: true,
        }],
    )
}

/// A pull request (1618) or update (1619) and what surrounds it.
#[derive(Debug, Clone)]
pub struct PullRequestFacts {
    pub pull_request: PullRequest,
    pub kind: Nip34Kind,
    /// Hosted repositories it goes to (see `process::pull_request_targets`).
    pub targets: Vec<RepoId>,
    /// GRASP-06 (when on): the contributor's `/prs/` repository on this server its `clone` names
    /// (see `nip34::pull_request_repository`).
    pub contribution: Option<RepoId>,
    /// That repository's `refs/nostr/<event-id>` is at the tip: pushed there, waiting for this.
    pub contribution_has_tip: bool,
    /// Targets (and the contribution repository) whose `refs/nostr/<event-id>` was pushed at
    /// another tip, and that tip.
    pub pushed_elsewhere: Vec<(RepoId, Oid)>,
    /// The first target that holds the tip commit, if any.
    pub source: Option<RepoId>,
}

/// GRASP-01 [45]: a pull request naming a hosted repository is applied at once when its tip is
/// here and waits for it otherwise; a ref pushed for it at another tip goes.
///
/// GRASP-06: one naming a contributor's `/prs/` repository here is accepted without a hosted
/// target. Its commits come by a push to that repository: applied at once when the push came
/// first (and copied into the hosted targets), held until the push otherwise. The `/prs/`
/// repository is written only by its own pushes, so it is a target only as the source.
pub fn decide_pull_request(facts: &PullRequestFacts) -> Decision {
    let hold_under = facts
        .contribution
        .as_ref()
        .or(facts.targets.first())
        .map(|repo| repo.identifier.clone());
    let Some(identifier) = hold_under else {
        return Decision::blocked("pull request names no repository hosted on this server");
    };
    let mut effects: Vec<Effect> = facts
        .pushed_elsewhere
        .iter()
        .map(|(repo, at)| Effect::DropPullRequestRef {
            repo: repo.clone(),
            at: *at,
        })
        .collect();
    let contribution = facts.contribution.as_ref().filter(|_| facts.contribution_has_tip);
    if let Some(contribution) = contribution {
        let mut targets = facts.targets.clone();
        targets.push(contribution.clone());
        effects.push(Effect::ApplyPullRequest {
            pull_request: Box::new(facts.pull_request.clone()),
            source: contribution.clone(),
            targets,
        });
        return Decision::with(Answer::Accept, effects);
    }
    if let Some(source) = &facts.source {
        effects.push(Effect::ApplyPullRequest {
            pull_request: Box::new(facts.pull_request.clone()),
            source: source.clone(),
            targets: facts.targets.clone(),
        });
        return Decision::with(Answer::Accept, effects);
    }
    effects.push(Effect::Hold {
        kind: facts.kind,
        identifier,
        // Only hosted repositories are filled by the git-data sync; a `/prs/` one by its push.
        sync: !facts.targets.is_empty(),
    });
    Decision::with(Answer::Purgatory, effects)
}

/// Any other event, by what it references.
#[derive(Debug, Clone, Default)]
pub struct RelatedFacts {
    /// It tags, or is tagged by, a hosted repository or an event accepted here (GRASP-01 [13]).
    pub references_here: bool,
    /// The first repository it names that is not hosted here, for the refusal.
    pub foreign: Option<RepoId>,
    /// It is a NIP-09 deletion.
    pub is_deletion: bool,
}

/// GRASP-01 [13]: events that tag, or are tagged by, accepted repositories or events are
/// accepted; a deletion among them also removes its author's events from purgatory.
pub fn decide_related(facts: &RelatedFacts) -> Decision {
    if !facts.references_here {
        return Decision::blocked(match &facts.foreign {
            Some(repo) => format!("repository {repo} is not hosted on this server"),
            None => "event does not reference a repository or event on this server".to_owned(),
        });
    }
    let effects = if facts.is_deletion {
        vec![Effect::ApplyDeletion]
    } else {
        Vec::new()
    };
    Decision::with(Answer::Accept, effects)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nostr::{Keys, PublicKey, Timestamp};

    use super::*;

    #[test]
    fn only_decisions_that_take_hold_or_act_change_anything() {
        assert!(Decision::answer(Answer::Accept).changes_anything());
        assert!(Decision::answer(Answer::Purgatory).changes_anything());
        for quiet in [
            Answer::Blocked("no".into()),
            Answer::Invalid("no".into()),
            Answer::RateLimited("no".into()),
            Answer::Duplicate("have it".into()),
        ] {
            assert!(!Decision::answer(quiet.clone()).changes_anything(), "{quiet:?}");
            let acting = Decision::with(quiet.clone(), vec![Effect::DropPending(EventId::all_zeros())]);
            assert!(acting.changes_anything(), "{quiet:?} with an effect");
        }
    }
    use crate::types::RefName;

    fn key() -> PublicKey {
        Keys::generate().public_key()
    }

    fn id(n: u8) -> EventId {
        EventId::from_slice(&[n; 32]).expect("id")
    }

    fn oid(c: char) -> Oid {
        Oid::parse(&c.to_string().repeat(40)).expect("oid")
    }

    fn repo(owner: PublicKey, identifier: &str) -> RepoId {
        RepoId::new(owner, Identifier::parse(identifier).expect("identifier"))
    }

    fn announcement(owner: PublicKey) -> Announcement {
        Announcement::new(repo(owner, "r"), Timestamp::from(10))
    }

    fn announcement_facts() -> AnnouncementFacts {
        AnnouncementFacts {
            announcement: announcement(key()),
            lists_us: Ok(()),
            maintains_another: false,
            stored_at_address: false,
            has_refs: false,
            pending: None,
            archive: None,
            archive_only: false,
            owner_allowed: true,
            creation_refused: None,
            server_full: None,
        }
    }

    #[test]
    fn common_checks_come_first() {
        let none = CommonFacts::default();
        assert_eq!(decide_common(&none), None);
        let deleted = CommonFacts {
            deleted: true,
            ..CommonFacts::default()
        };
        assert_eq!(
            decide_common(&deleted).map(|d| d.answer),
            Some(Answer::Blocked("this event was deleted by its author".into()))
        );
        let waiting = CommonFacts {
            in_purgatory: true,
            ..CommonFacts::default()
        };
        assert!(
            matches!(decide_common(&waiting).map(|d| d.answer), Some(Answer::Duplicate(m)) if m.contains("in purgatory"))
        );
        let superseded = CommonFacts {
            stored_newer: Some(id(9)),
            ..CommonFacts::default()
        };
        assert!(
            matches!(decide_common(&superseded).map(|d| d.answer), Some(Answer::Blocked(m)) if m.contains("newer event"))
        );
    }

    #[test]
    fn announcements_follow_grasp_01_9() {
        let base = announcement_facts();
        let r = base.announcement.repo.clone();
        let hold = Effect::Hold {
            kind: Nip34Kind::Announcement,
            identifier: r.identifier.clone(),
            sync: false,
        };
        let not_listing = |maintains_another| AnnouncementFacts {
            lists_us: Err("announcement must list this server in 'relays'".into()),
            maintains_another,
            ..base.clone()
        };
        let cases: Vec<(&str, AnnouncementFacts, Answer, Vec<Effect>)> = vec![
            (
                "a first announcement listing us waits for git data in a new repository",
                base.clone(),
                Answer::Purgatory,
                vec![Effect::Provision(r.clone()), hold.clone()],
            ),
            (
                "one replacing a served announcement is served at once, the older waiting one dropped",
                AnnouncementFacts {
                    stored_at_address: true,
                    pending: Some(id(1)),
                    ..base.clone()
                },
                Answer::Accept,
                vec![Effect::Provision(r.clone()), Effect::DropPending(id(1))],
            ),
            (
                "one whose repository already has data is served at once",
                AnnouncementFacts {
                    has_refs: true,
                    ..base.clone()
                },
                Answer::Accept,
                vec![Effect::Provision(r.clone())],
            ),
            (
                "one not listing us is refused with what is missing",
                not_listing(false),
                Answer::Blocked("announcement must list this server in 'relays'".into()),
                vec![],
            ),
            (
                "one by a recursive maintainer of another owner's repository is served, without a repository",
                not_listing(true),
                Answer::Accept,
                vec![],
            ),
            (
                "GRASP-05: one not listing us that the archive rules take gets a repository and waits",
                AnnouncementFacts {
                    archive: Some(ArchiveVerdict::Allowed),
                    ..not_listing(false)
                },
                Answer::Purgatory,
                vec![Effect::Provision(r.clone()), hold.clone()],
            ),
            (
                "GRASP-05: one the archive rules do not take is refused as before",
                AnnouncementFacts {
                    archive: Some(ArchiveVerdict::NotAllowed),
                    ..not_listing(false)
                },
                Answer::Blocked("announcement must list this server in 'relays'".into()),
                vec![],
            ),
            (
                "GRASP-05: a deny rule wins, even over listing us",
                AnnouncementFacts {
                    archive: Some(ArchiveVerdict::Denied),
                    ..base.clone()
                },
                Answer::Blocked(format!(
                    "this server does not host or archive 'r' of {}",
                    r.npub()
                )),
                vec![],
            ),
            (
                "GRASP-05: an archive-only server takes one listing it only by the archive rules",
                AnnouncementFacts {
                    archive: Some(ArchiveVerdict::NotAllowed),
                    archive_only: true,
                    ..base.clone()
                },
                Answer::Blocked(
                    "this server is a read-only archive, and its archive rules do not take this repository"
                        .into(),
                ),
                vec![],
            ),
            (
                "a new repository beyond the hourly limit: refused for now",
                AnnouncementFacts {
                    creation_refused: Some("too many".into()),
                    ..base.clone()
                },
                Answer::RateLimited("too many".into()),
                vec![],
            ),
            (
                "a new repository on a server at its --max-repositories: refused",
                AnnouncementFacts {
                    server_full: Some(3),
                    creation_refused: Some("too many".into()),
                    ..base.clone()
                },
                Answer::Blocked("this server hosts 3 repositories, its limit, and takes no new ones".into()),
                vec![],
            ),
            (
                "--allow-owner: an owner not listed gets no repository, though the announcement lists us",
                AnnouncementFacts {
                    owner_allowed: false,
                    ..base.clone()
                },
                Answer::Blocked(format!(
                    "this server hosts the repositories of the owners its operator lists only, and {} is not one of them",
                    r.npub()
                )),
                vec![],
            ),
            (
                "--allow-owner: ... but an archive rule still takes it",
                AnnouncementFacts {
                    owner_allowed: false,
                    archive: Some(ArchiveVerdict::Allowed),
                    ..base.clone()
                },
                Answer::Purgatory,
                vec![Effect::Provision(r.clone()), hold.clone()],
            ),
            (
                "GRASP-05: ... and hosts it when they do",
                AnnouncementFacts {
                    archive: Some(ArchiveVerdict::Allowed),
                    archive_only: true,
                    ..base.clone()
                },
                Answer::Purgatory,
                vec![Effect::Provision(r.clone()), hold.clone()],
            ),
        ];
        for (case, facts, answer, effects) in cases {
            assert_eq!(
                decide_announcement(&facts),
                Decision { answer, effects },
                "{case}"
            );
        }
    }

    fn state(author: PublicKey, refs: &[(&str, Oid)], unresolved: &[(&str, &str)]) -> RepoState {
        RepoState {
            id: id(5),
            author,
            identifier: Identifier::parse("r").expect("identifier"),
            created_at: Timestamp::from(20),
            refs: refs
                .iter()
                .map(|(n, o)| (RefName::parse(n).expect("ref"), *o))
                .collect(),
            unresolved: unresolved
                .iter()
                .map(|(n, v)| (RefName::parse(n).expect("ref"), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            head: None,
        }
    }

    #[test]
    fn states_follow_grasp_01_9_and_22() {
        let maintainer = key();
        let owner_repo = repo(key(), "r");
        let other_repo = repo(key(), "r");
        let both = vec![owner_repo.clone(), other_repo.clone()];
        let full = state(maintainer, &[("refs/heads/main", oid('a'))], &[]);
        let facts = |state: &RepoState, hosted: Vec<RepoId>, pending, authoritative: Vec<RepoId>, source| {
            StateFacts {
                state: state.clone(),
                hosted_owners: hosted,
                pending,
                authoritative,
                source,
            }
        };
        let hold = vec![Effect::Hold {
            kind: Nip34Kind::State,
            identifier: full.identifier.clone(),
            sync: true,
        }];
        let apply = |source: &RepoId| Effect::ApplyState {
            state: Box::new(full.clone()),
            source: source.clone(),
            repos: both.clone(),
        };
        let abbreviated = state(maintainer, &[], &[("refs/heads/main", "aaaaaaa")]);
        let cases: Vec<(&str, StateFacts, Answer, Vec<Effect>)> = vec![
            (
                "no hosted repository lists the author as a maintainer",
                facts(&full, vec![], None, vec![], None),
                Answer::Blocked("no repository 'r' on this server lists you as a maintainer".into()),
                vec![],
            ),
            (
                "a newer state of the author's already waits",
                facts(&full, both.clone(), Some((id(6), true)), vec![], None),
                Answer::Blocked(format!(
                    "a newer state from you is already waiting for its git data ({})",
                    id(6)
                )),
                vec![],
            ),
            (
                "its data is on disk: every repository it speaks for is synced from where it is",
                facts(&full, both.clone(), None, both.clone(), Some(other_repo.clone())),
                Answer::Accept,
                vec![apply(&other_repo)],
            ),
            (
                "applied at once, it makes the author's older waiting state moot",
                facts(
                    &full,
                    both.clone(),
                    Some((id(4), false)),
                    both.clone(),
                    Some(owner_repo.clone()),
                ),
                Answer::Accept,
                vec![apply(&owner_repo), Effect::DropPending(id(4))],
            ),
            (
                "its data has not arrived: it waits and the sync hunts for it",
                facts(&full, both.clone(), None, both.clone(), None),
                Answer::Purgatory,
                hold.clone(),
            ),
            (
                "newer stored states cover every repository: it waits (and expires)",
                facts(&full, both.clone(), None, vec![], Some(owner_repo.clone())),
                Answer::Purgatory,
                hold.clone(),
            ),
            (
                "a ref named by an abbreviated id: it waits whatever is on disk",
                facts(
                    &abbreviated,
                    both.clone(),
                    None,
                    both.clone(),
                    Some(owner_repo.clone()),
                ),
                Answer::Purgatory,
                hold.clone(),
            ),
        ];
        for (case, facts, answer, effects) in cases {
            assert_eq!(decide_state(&facts), Decision { answer, effects }, "{case}");
        }
    }

    #[test]
    fn pull_requests_follow_grasp_01_45_in_both_orders() {
        let named = repo(key(), "r");
        let maintained = repo(key(), "r");
        let targets = vec![named.clone(), maintained.clone()];
        let pr = PullRequest {
            id: id(7),
            author: key(),
            repos: vec![named.clone()],
            tip: oid('c'),
            clone: Vec::new(),
        };
        let facts = |targets: Vec<RepoId>, pushed_elsewhere: Vec<(RepoId, Oid)>, source: Option<RepoId>| {
            PullRequestFacts {
                pull_request: pr.clone(),
                kind: Nip34Kind::PullRequestUpdate,
                targets,
                contribution: None,
                contribution_has_tip: false,
                pushed_elsewhere,
                source,
            }
        };
        let contribution = RepoId::pull_requests(pr.author, named.identifier.clone());
        let grasp06 =
            |targets: Vec<RepoId>, has_tip: bool, pushed_elsewhere: Vec<(RepoId, Oid)>| PullRequestFacts {
                contribution: Some(contribution.clone()),
                contribution_has_tip: has_tip,
                ..facts(targets, pushed_elsewhere, None)
            };
        let hold_unsynced = Effect::Hold {
            kind: Nip34Kind::PullRequestUpdate,
            identifier: named.identifier.clone(),
            sync: false,
        };
        let hold = Effect::Hold {
            kind: Nip34Kind::PullRequestUpdate,
            identifier: named.identifier.clone(),
            sync: true,
        };
        let cases: Vec<(&str, PullRequestFacts, Answer, Vec<Effect>)> = vec![
            (
                "it names no hosted repository",
                facts(vec![], vec![], None),
                Answer::Blocked("pull request names no repository hosted on this server".into()),
                vec![],
            ),
            (
                "git first: the tip is here, its ref goes into every target",
                facts(targets.clone(), vec![], Some(maintained.clone())),
                Answer::Accept,
                vec![Effect::ApplyPullRequest {
                    pull_request: Box::new(pr.clone()),
                    source: maintained.clone(),
                    targets: targets.clone(),
                }],
            ),
            (
                "event first: it waits for its commit",
                facts(targets.clone(), vec![], None),
                Answer::Purgatory,
                vec![hold.clone()],
            ),
            (
                "git first with another tip: that ref goes and the event waits",
                facts(targets.clone(), vec![(named.clone(), oid('d'))], None),
                Answer::Purgatory,
                vec![
                    Effect::DropPullRequestRef {
                        repo: named.clone(),
                        at: oid('d'),
                    },
                    hold.clone(),
                ],
            ),
            (
                "GRASP-06, event first, no hosted target: it waits for the push to /prs/",
                grasp06(vec![], false, vec![]),
                Answer::Purgatory,
                vec![hold_unsynced.clone()],
            ),
            (
                "GRASP-06, push first: released from /prs/ and copied into the hosted targets",
                grasp06(targets.clone(), true, vec![]),
                Answer::Accept,
                vec![Effect::ApplyPullRequest {
                    pull_request: Box::new(pr.clone()),
                    source: contribution.clone(),
                    targets: vec![named.clone(), maintained.clone(), contribution.clone()],
                }],
            ),
            (
                "GRASP-06, pushed at another tip: that ref goes and the event waits",
                grasp06(vec![], false, vec![(contribution.clone(), oid('d'))]),
                Answer::Purgatory,
                vec![
                    Effect::DropPullRequestRef {
                        repo: contribution.clone(),
                        at: oid('d'),
                    },
                    hold_unsynced.clone(),
                ],
            ),
        ];
        for (case, facts, answer, effects) in cases {
            assert_eq!(
                decide_pull_request(&facts),
                Decision { answer, effects },
                "{case}"
            );
        }
    }

    #[test]
    fn other_events_are_accepted_by_their_references_grasp_01_13() {
        let foreign = repo(key(), "elsewhere");
        let cases: Vec<(&str, RelatedFacts, Answer, Vec<Effect>)> = vec![
            (
                "it tags (or is tagged by) something here",
                RelatedFacts {
                    references_here: true,
                    ..RelatedFacts::default()
                },
                Answer::Accept,
                vec![],
            ),
            (
                "a deletion of something here also clears purgatory",
                RelatedFacts {
                    references_here: true,
                    is_deletion: true,
                    ..RelatedFacts::default()
                },
                Answer::Accept,
                vec![Effect::ApplyDeletion],
            ),
            (
                "it names only a repository hosted elsewhere",
                RelatedFacts {
                    foreign: Some(foreign.clone()),
                    ..RelatedFacts::default()
                },
                Answer::Blocked(format!("repository {foreign} is not hosted on this server")),
                vec![],
            ),
            (
                "it references nothing",
                RelatedFacts::default(),
                Answer::Blocked("event does not reference a repository or event on this server".into()),
                vec![],
            ),
        ];
        for (case, facts, answer, effects) in cases {
            assert_eq!(decide_related(&facts), Decision { answer, effects }, "{case}");
        }
    }
}
