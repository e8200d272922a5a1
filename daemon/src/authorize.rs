//! Push authorization (GRASP-01 [36], [45]): may these ref updates land in this owner's
//! repository?
//!
//! The authoritative state for owner O's repository is the newest state event — stored, or
//! still waiting in purgatory (clients publish the state *before* pushing) — authored by anyone
//! in O's recursive maintainer set. A push is allowed only when every updated ref ends where that
//! state says; a ref the state does not list may only be deleted. Pushes to
//! `refs/nostr/<event-id>` carry pull request tips and follow their own rule.
//!
//! [`decide`] is a pure function of the updates and [`PushFacts`]; `process::push` gathers the
//! facts from the store, purgatory and the repository group.

use std::collections::HashMap;

use nostr::{Event, EventId};

use crate::nip34::{PullRequest, RepoState};
use crate::queue::Over;
use crate::types::{Nip34Kind, Oid, RefName, RepoId};

/// One `<old> <new> <ref>` line of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: Oid,
    pub new: Oid,
    pub name: RefName,
}

/// The answer for one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ref_name: String,
    pub allowed: bool,
    /// A complete sentence for the pusher (empty when there is nothing to say).
    pub message: String,
}

/// Everything a push is decided on, as plain data.
#[derive(Debug, Clone, Default)]
pub struct PushFacts {
    /// The owner's repository is announced on this server.
    pub announced: bool,
    /// The authoritative state: the newest, stored or pending, by the owner's maintainers.
    pub state: Option<(EventId, RepoState)>,
    /// What each `refs/nostr/<event-id>` update's event is, where the event is known here (an
    /// unknown one is a placeholder).
    pub pull_requests: HashMap<EventId, KnownPullRequest>,
    /// Placeholders already waiting and the limits on them; `None`: no limits.
    pub placeholders: Option<PlaceholderCounts>,
    /// For a push of pull request refs alone (see [`is_contribution`]): its size and its
    /// sender's recent pushes; `None`: no limits.
    pub contribution: Option<ContributionFacts>,
}

/// A push of pull request refs alone, which anyone may send: how big it is, and whether its
/// owner's repositories or its sender's address took their hourly share of such pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContributionFacts {
    /// Bytes of the pushed objects (git's quarantine); `None` when git named no quarantine.
    pub bytes: Option<u64>,
    /// The largest such push; 0: no limit.
    pub max_bytes: u64,
    /// The hourly limit the owner or the sender's address reached, if one did.
    pub over: Option<Over>,
}

/// Placeholders (pull request refs pushed before their event) waiting in the repository and on
/// the whole server, and how many each may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceholderCounts {
    pub in_repo: usize,
    pub total: usize,
    pub max_in_repo: usize,
    pub max_total: usize,
}

/// A known event named by a `refs/nostr/<event-id>` ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownPullRequest {
    /// A pull request or pull request update with this tip.
    Tip(Oid),
    /// Some other kind of event.
    NotAPullRequest,
    /// A pull request that does not parse (why).
    Unreadable(String),
    /// GRASP-06: a pull request whose commits do not belong in this `/prs/` repository (it is
    /// signed by someone else, or its `clone` tags do not name this repository).
    NamesAnotherRepository,
}

impl KnownPullRequest {
    /// What `event` is, as a `refs/nostr/<event-id>` ref sees it.
    pub fn of(event: &Event) -> Self {
        if !matches!(
            Nip34Kind::of(event.kind),
            Some(Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate)
        ) {
            return Self::NotAPullRequest;
        }
        match PullRequest::parse(event) {
            Ok(pr) => Self::Tip(pr.tip),
            Err(e) => Self::Unreadable(e.to_string()),
        }
    }
}

/// What a `/prs/` repository refuses every other ref with.
pub const ONLY_PULL_REQUEST_REFS: &str = "a /prs/ repository takes only refs/nostr/<event-id> refs (the id of your pull request event, 64 lowercase hex digits)";

/// GRASP-01 [36], [45], and GRASP-06 for `/prs/` repositories: the verdict for each update,
/// from the facts alone.
pub fn decide(repo: &RepoId, updates: &[RefUpdate], facts: &PushFacts) -> Vec<Verdict> {
    let mut verdicts = if repo.is_pull_request_area() {
        contribution_verdicts(updates, facts)
    } else {
        owner_verdicts(repo, updates, facts)
    };
    cap_placeholders(updates, &mut verdicts, facts);
    limit_contributions(updates, &mut verdicts, facts);
    verdicts
}

/// Whether a push carries pull request refs alone (`refs/nostr/...`): the pushes anyone may send,
/// where an owner's maintainers push their branches and tags.
pub fn is_contribution(updates: &[RefUpdate]) -> bool {
    !updates.is_empty()
        && updates
            .iter()
            .all(|update| pull_request_ref(&update.name).is_some())
}

/// A push of pull request refs alone beyond its size limit or its hourly share is refused whole:
/// anyone may send one, so without limits one person could fill the disk.
fn limit_contributions(updates: &[RefUpdate], verdicts: &mut [Verdict], facts: &PushFacts) {
    let Some(limits) = facts.contribution else {
        return;
    };
    if !is_contribution(updates) || verdicts.iter().all(|verdict| !verdict.allowed) {
        return;
    }
    let why = match (limits.bytes, limits.over) {
        (Some(bytes), _) if limits.max_bytes > 0 && bytes > limits.max_bytes => format!(
            "this push carries {} of objects; this server takes at most {} in a push of pull request refs",
            human_bytes(bytes),
            human_bytes(limits.max_bytes)
        ),
        (_, Some(Over::Owner(n))) => format!(
            "this owner's repositories took {n} pushes of pull request refs within the hour, the limit; try again later"
        ),
        (_, Some(Over::Address(n))) => format!(
            "{n} pushes of pull request refs came from your address within the hour, the limit; try again later"
        ),
        _ => return,
    };
    for (update, verdict) in updates.iter().zip(verdicts.iter_mut()) {
        *verdict = refuse(update, &why);
    }
}

/// `bytes` the way a person reads a size: `512 MiB`, `1.5 GiB`, `900 bytes`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() < 0.05 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A placeholder beyond the repository's or the server's limit is refused: anyone may push one,
/// so without a limit one person could fill the disk.
fn cap_placeholders(updates: &[RefUpdate], verdicts: &mut [Verdict], facts: &PushFacts) {
    let Some(counts) = facts.placeholders else {
        return;
    };
    let mut added = 0;
    for (update, verdict) in updates.iter().zip(verdicts.iter_mut()) {
        let new_placeholder = matches!(pull_request_ref(&update.name), Some(Ok(id)) if !facts.pull_requests.contains_key(&id))
            && !update.new.is_zero();
        if !verdict.allowed || !new_placeholder {
            continue;
        }
        added += 1;
        let full = if counts.in_repo + added > counts.max_in_repo {
            Some(format!(
                "this repository already holds {} pull request refs waiting for their events, its limit",
                counts.in_repo
            ))
        } else if counts.total + added > counts.max_total {
            Some(format!(
                "this server already holds {} pull request refs waiting for their events, its limit",
                counts.total
            ))
        } else {
            None
        };
        if let Some(full) = full {
            *verdict = refuse(
                update,
                &format!("{full}; publish the pull request event first, then push"),
            );
        }
    }
}

/// GRASP-01 [36], [45] for an owner's repository.
fn owner_verdicts(repo: &RepoId, updates: &[RefUpdate], facts: &PushFacts) -> Vec<Verdict> {
    if !facts.announced {
        let why = format!("repository {repo} is not announced on this server");
        return updates.iter().map(|update| refuse(update, &why)).collect();
    }
    updates
        .iter()
        .map(|update| match pull_request_ref(&update.name) {
            Some(event_id) => pull_request_verdict(update, event_id, facts),
            None => match &facts.state {
                Some((event_id, state)) => state_ref(update, event_id, state),
                None => refuse(
                    update,
                    "no repository state from a maintainer is known yet: publish the state event before pushing",
                ),
            },
        })
        .collect()
}

/// GRASP-06: a push to a contributor's `/prs/` repository carries pull request refs only; each
/// follows its event (signed by the URL's npub, naming this repository in `clone`) or, when the
/// event is not known yet, waits for it as a placeholder. `facts.announced` says whether this
/// server takes `/prs/` repositories at all.
fn contribution_verdicts(updates: &[RefUpdate], facts: &PushFacts) -> Vec<Verdict> {
    updates
        .iter()
        .map(|update| match pull_request_ref(&update.name) {
            _ if !facts.announced => refuse(
                update,
                "this server does not take pull request repositories (GRASP-06 is off)",
            ),
            None => refuse(update, ONLY_PULL_REQUEST_REFS),
            Some(event_id) => pull_request_verdict(update, event_id, facts),
        })
        .collect()
}

/// `Some` for a ref under `refs/nostr/`: the event id it names, or `Err` when the rest is not
/// one (64 lowercase hex digits).
pub fn pull_request_ref(name: &RefName) -> Option<Result<EventId, ()>> {
    let suffix = name.as_str().strip_prefix("refs/nostr/")?;
    let well_formed = suffix.len() == 64
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    Some(
        well_formed
            .then(|| EventId::from_hex(suffix).ok())
            .flatten()
            .ok_or(()),
    )
}

fn state_ref(update: &RefUpdate, event_id: &EventId, state: &RepoState) -> Verdict {
    let short_event = &event_id.to_hex()[..12];
    if let Some(value) = state.unresolved.get(&update.name) {
        return refuse(
            update,
            &format!(
                "the state ({short_event}…) lists it at '{value}', which is not a full object id; \
                 publish a state that names the commit by its full id"
            ),
        );
    }
    match state.refs.get(&update.name) {
        Some(wanted) if *wanted == update.new => allow(update),
        Some(wanted) if update.new.is_zero() => refuse(
            update,
            &format!(
                "the state ({short_event}…) lists it at {}, so it cannot be deleted",
                wanted.short()
            ),
        ),
        Some(wanted) => refuse(
            update,
            &format!(
                "state ({short_event}…) wants {}, push has {}",
                wanted.short(),
                update.new.short()
            ),
        ),
        None if update.new.is_zero() => allow(update),
        None => refuse(
            update,
            &format!(
                "not in the state ({short_event}…); publish a state that lists it before pushing, or delete it"
            ),
        ),
    }
}

/// GRASP-01 [45]: `refs/nostr/<event-id>` must name 64 lowercase hex; a known pull request (or
/// update) fixes the tip; an unknown one accepts any tip as a placeholder for its event.
fn pull_request_verdict(update: &RefUpdate, event_id: Result<EventId, ()>, facts: &PushFacts) -> Verdict {
    let Ok(event_id) = event_id else {
        return refuse(
            update,
            "refs/nostr/ refs must be named by an event id (64 lowercase hex digits)",
        );
    };
    if update.new.is_zero() {
        return refuse(update, "pull request refs cannot be deleted by a push");
    }
    let short = &event_id.to_hex()[..12];
    match facts.pull_requests.get(&event_id) {
        None => allow(update),
        Some(KnownPullRequest::Tip(tip)) if *tip == update.new => allow(update),
        Some(KnownPullRequest::Tip(tip)) => refuse(
            update,
            &format!(
                "pull request {short}… has tip {}, push has {}",
                tip.short(),
                update.new.short()
            ),
        ),
        Some(KnownPullRequest::NotAPullRequest) => refuse(
            update,
            &format!(
                "event {} is not a pull request or pull request update",
                event_id.to_hex()
            ),
        ),
        Some(KnownPullRequest::Unreadable(why)) => {
            refuse(update, &format!("pull request {short}… is unreadable: {why}"))
        }
        Some(KnownPullRequest::NamesAnotherRepository) => refuse(
            update,
            &format!(
                "pull request {short}… does not put its commits here: it must be signed by the npub \
                 in this repository's URL and list this URL in a 'clone' tag"
            ),
        ),
    }
}

fn allow(update: &RefUpdate) -> Verdict {
    Verdict {
        ref_name: update.name.to_string(),
        allowed: true,
        message: String::new(),
    }
}

fn refuse(update: &RefUpdate, why: &str) -> Verdict {
    Verdict {
        ref_name: update.name.to_string(),
        allowed: false,
        message: format!("ref {}: {why}", update.name),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nostr::{Keys, Timestamp};

    use super::*;
    use crate::nip34::Identifier;

    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn oid(c: char) -> Oid {
        Oid::parse(&c.to_string().repeat(40)).expect("oid")
    }

    fn update(name: &str, old: &str, new: Oid) -> RefUpdate {
        RefUpdate {
            old: Oid::parse(old).expect("oid"),
            new,
            name: RefName::parse(name).expect("ref"),
        }
    }

    fn repo() -> RepoId {
        RepoId::new(
            Keys::generate().public_key(),
            Identifier::parse("r").expect("identifier"),
        )
    }

    /// A state listing `refs` (full ids) and `unresolved` (abbreviated ones).
    fn state(refs: &[(&str, Oid)], unresolved: &[(&str, &str)]) -> (EventId, RepoState) {
        let id = EventId::from_slice(&[7; 32]).expect("id");
        let state = RepoState {
            id,
            author: Keys::generate().public_key(),
            identifier: Identifier::parse("r").expect("identifier"),
            created_at: Timestamp::from(1),
            refs: refs
                .iter()
                .map(|(name, oid)| (RefName::parse(name).expect("ref"), *oid))
                .collect(),
            unresolved: unresolved
                .iter()
                .map(|(name, value)| (RefName::parse(name).expect("ref"), (*value).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            head: None,
        };
        (id, state)
    }

    fn facts(state: Option<(EventId, RepoState)>) -> PushFacts {
        PushFacts {
            announced: true,
            state,
            pull_requests: HashMap::new(),
            placeholders: None,
            contribution: None,
        }
    }

    fn one(facts: &PushFacts, update: RefUpdate) -> Verdict {
        decide(&repo(), &[update], facts).remove(0)
    }

    #[test]
    fn a_push_is_decided_ref_by_ref_against_the_authoritative_state() {
        let a = oid('a');
        let b = oid('b');
        let with_main = facts(Some(state(&[("refs/heads/main", a)], &[])));
        // (case, facts, update, allowed, words in the message)
        let cases: Vec<(&str, &PushFacts, RefUpdate, bool, &str)> = vec![
            (
                "the tip the state names",
                &with_main,
                update("refs/heads/main", ZERO, a),
                true,
                "",
            ),
            (
                "another tip",
                &with_main,
                update("refs/heads/main", ZERO, b),
                false,
                "wants aaaaaaa, push has bbbbbbb",
            ),
            (
                "deleting a listed ref",
                &with_main,
                update("refs/heads/main", &a.to_string(), Oid::parse(ZERO).expect("zero")),
                false,
                "cannot be deleted",
            ),
            (
                "creating an unlisted ref",
                &with_main,
                update("refs/heads/dev", ZERO, a),
                false,
                "not in the state",
            ),
            (
                "deleting an unlisted ref",
                &with_main,
                update("refs/heads/old", &b.to_string(), Oid::parse(ZERO).expect("zero")),
                true,
                "",
            ),
        ];
        for (case, facts, update, allowed, words) in cases {
            let verdict = one(facts, update);
            assert_eq!(verdict.allowed, allowed, "{case}: {}", verdict.message);
            assert!(verdict.message.contains(words), "{case}: {}", verdict.message);
        }
    }

    #[test]
    fn without_an_announcement_or_a_state_every_ref_is_refused() {
        let unannounced = PushFacts::default();
        let verdicts = decide(
            &repo(),
            &[
                update("refs/heads/main", ZERO, oid('a')),
                update("refs/heads/dev", ZERO, oid('b')),
            ],
            &unannounced,
        );
        assert!(
            verdicts
                .iter()
                .all(|v| !v.allowed && v.message.contains("is not announced"))
        );
        let stateless = one(&facts(None), update("refs/heads/main", ZERO, oid('a')));
        assert!(!stateless.allowed);
        assert!(
            stateless
                .message
                .contains("publish the state event before pushing")
        );
    }

    #[test]
    fn a_ref_the_state_names_by_an_abbreviated_id_cannot_be_pushed() {
        let abbreviated = facts(Some(state(&[], &[("refs/heads/main", "aaaaaaa")])));
        let verdict = one(&abbreviated, update("refs/heads/main", ZERO, oid('a')));
        assert!(!verdict.allowed);
        assert!(
            verdict
                .message
                .contains("'aaaaaaa', which is not a full object id")
        );
    }

    #[test]
    fn a_prs_repository_takes_only_pull_request_refs_that_belong_there() {
        let contributor = Keys::generate().public_key();
        let repo = RepoId::pull_requests(contributor, Identifier::parse("r").expect("identifier"));
        let known = EventId::from_slice(&[1; 32]).expect("id");
        let foreign = EventId::from_slice(&[2; 32]).expect("id");
        let unknown = EventId::from_slice(&[3; 32]).expect("id");
        let mut open = PushFacts {
            announced: true,
            ..PushFacts::default()
        };
        open.pull_requests.insert(known, KnownPullRequest::Tip(oid('c')));
        open.pull_requests
            .insert(foreign, KnownPullRequest::NamesAnotherRepository);
        let closed = PushFacts::default();
        let nostr = |id: &EventId| format!("refs/nostr/{}", id.to_hex());
        let zero = Oid::parse(ZERO).expect("zero");
        let cases: Vec<(&str, &PushFacts, RefUpdate, bool, &str)> = vec![
            (
                "its pull request's tip",
                &open,
                update(&nostr(&known), ZERO, oid('c')),
                true,
                "",
            ),
            (
                "another tip",
                &open,
                update(&nostr(&known), ZERO, oid('d')),
                false,
                "has tip ccccccc, push has ddddddd",
            ),
            (
                "an unknown event: a placeholder",
                &open,
                update(&nostr(&unknown), ZERO, oid('e')),
                true,
                "",
            ),
            (
                "a pull request that names another repository",
                &open,
                update(&nostr(&foreign), ZERO, oid('c')),
                false,
                "does not put its commits here",
            ),
            (
                "a branch",
                &open,
                update("refs/heads/main", ZERO, oid('c')),
                false,
                "takes only refs/nostr/<event-id>",
            ),
            (
                "a malformed event id",
                &open,
                update("refs/nostr/not-an-id", ZERO, oid('c')),
                false,
                "64 lowercase hex",
            ),
            (
                "a deletion",
                &open,
                update(&nostr(&known), &oid('c').to_string(), zero),
                false,
                "cannot be deleted",
            ),
            (
                "GRASP-06 off",
                &closed,
                update(&nostr(&unknown), ZERO, oid('c')),
                false,
                "GRASP-06 is off",
            ),
        ];
        for (case, facts, update, allowed, words) in cases {
            let verdict = decide(&repo, &[update], facts).remove(0);
            assert_eq!(verdict.allowed, allowed, "{case}: {}", verdict.message);
            assert!(verdict.message.contains(words), "{case}: {}", verdict.message);
        }
    }

    #[test]
    fn placeholders_beyond_the_repository_or_server_limit_are_refused() {
        let counts = |in_repo, total| PlaceholderCounts {
            in_repo,
            total,
            max_in_repo: 3,
            max_total: 10,
        };
        let placeholder = |n: u8| {
            let id = EventId::from_slice(&[n; 32]).expect("id");
            update(&format!("refs/nostr/{}", id.to_hex()), ZERO, oid('c'))
        };
        let known = EventId::from_slice(&[9; 32]).expect("id");
        let with = |counts| {
            let mut facts = facts(None);
            facts.placeholders = Some(counts);
            facts.pull_requests.insert(known, KnownPullRequest::Tip(oid('c')));
            facts
        };
        let allowed = |facts: &PushFacts, updates: &[RefUpdate]| -> Vec<bool> {
            decide(&repo(), updates, facts)
                .iter()
                .map(|v| v.allowed)
                .collect()
        };
        // Room for one more in the repository: the second of the push is refused.
        let one_left = with(counts(2, 0));
        assert_eq!(
            allowed(&one_left, &[placeholder(1), placeholder(2)]),
            [true, false]
        );
        let verdict = decide(&repo(), &[placeholder(1), placeholder(2)], &one_left).remove(1);
        assert!(
            verdict.message.contains("this repository already holds 2"),
            "{}",
            verdict.message
        );
        // A known pull request's ref is no placeholder and takes no room.
        let known_ref = update(&format!("refs/nostr/{}", known.to_hex()), ZERO, oid('c'));
        assert_eq!(allowed(&with(counts(3, 10)), &[known_ref]), [true]);
        // The server's limit.
        let server_full = with(counts(0, 10));
        let verdict = decide(&repo(), &[placeholder(1)], &server_full).remove(0);
        assert!(!verdict.allowed && verdict.message.contains("this server already holds 10"));
        // No limits configured.
        assert_eq!(
            allowed(&facts(None), &[placeholder(1), placeholder(2)]),
            [true, true]
        );
    }

    #[test]
    fn a_push_of_pull_request_refs_alone_is_held_to_its_size_and_hourly_share() {
        let a = oid('a');
        let pr = |n: u8| {
            let id = EventId::from_slice(&[n; 32]).expect("id");
            update(&format!("refs/nostr/{}", id.to_hex()), ZERO, oid('c'))
        };
        let with = |bytes, over| {
            let mut facts = facts(Some(state(&[("refs/heads/main", a)], &[])));
            facts.contribution = Some(ContributionFacts {
                bytes,
                max_bytes: 512 << 20,
                over,
            });
            facts
        };
        let words = |facts: &PushFacts, updates: &[RefUpdate]| -> Vec<(bool, String)> {
            decide(&repo(), updates, facts)
                .into_iter()
                .map(|v| (v.allowed, v.message))
                .collect()
        };
        // (case, facts, updates, allowed, words in every refusal)
        let cases: Vec<(&str, PushFacts, Vec<RefUpdate>, bool, &str)> = vec![
            (
                "within the limits",
                with(Some(512 << 20), None),
                vec![pr(1), pr(2)],
                true,
                "",
            ),
            (
                "too big",
                with(Some(600 << 20), None),
                vec![pr(1), pr(2)],
                false,
                "this push carries 600 MiB of objects; this server takes at most 512 MiB",
            ),
            (
                "the owner's share taken",
                with(Some(10), Some(Over::Owner(600))),
                vec![pr(1)],
                false,
                "this owner's repositories took 600 pushes of pull request refs within the hour",
            ),
            (
                "the address's share taken",
                with(None, Some(Over::Address(60))),
                vec![pr(1)],
                false,
                "60 pushes of pull request refs came from your address within the hour",
            ),
            (
                "no quarantine named: no size known",
                with(None, None),
                vec![pr(1)],
                true,
                "",
            ),
            (
                "a maintainer's push with a branch is no contribution",
                with(Some(1 << 40), Some(Over::Address(60))),
                vec![update("refs/heads/main", ZERO, a), pr(1)],
                true,
                "",
            ),
        ];
        for (case, facts, updates, allowed, expected) in cases {
            for (verdict, message) in words(&facts, &updates) {
                assert_eq!(verdict, allowed, "{case}: {message}");
                assert!(message.contains(expected), "{case}: {message}");
            }
        }
        // A push refused on its own merits keeps its own reasons.
        let refused = words(&with(Some(1 << 40), None), &[update("refs/nostr/x", ZERO, a)]);
        assert!(refused[0].1.contains("64 lowercase hex"), "{}", refused[0].1);
        assert_eq!(human_bytes(900), "900 bytes");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
    }

    #[test]
    fn pull_request_refs_follow_their_event() {
        let known = EventId::from_slice(&[1; 32]).expect("id");
        let other = EventId::from_slice(&[2; 32]).expect("id");
        let unreadable = EventId::from_slice(&[3; 32]).expect("id");
        let unknown = EventId::from_slice(&[4; 32]).expect("id");
        let mut facts = facts(None);
        facts.pull_requests.insert(known, KnownPullRequest::Tip(oid('c')));
        facts
            .pull_requests
            .insert(other, KnownPullRequest::NotAPullRequest);
        facts
            .pull_requests
            .insert(unreadable, KnownPullRequest::Unreadable("missing 'c' tag".into()));
        let nostr = |id: &EventId| format!("refs/nostr/{}", id.to_hex());
        let zero = Oid::parse(ZERO).expect("zero");
        let cases: Vec<(&str, RefUpdate, bool, &str)> = vec![
            ("its tip", update(&nostr(&known), ZERO, oid('c')), true, ""),
            (
                "another tip",
                update(&nostr(&known), ZERO, oid('d')),
                false,
                "has tip ccccccc, push has ddddddd",
            ),
            (
                "a deletion",
                update(&nostr(&known), &oid('c').to_string(), zero),
                false,
                "cannot be deleted",
            ),
            (
                "not a pull request",
                update(&nostr(&other), ZERO, oid('c')),
                false,
                "is not a pull request",
            ),
            (
                "an unreadable one",
                update(&nostr(&unreadable), ZERO, oid('c')),
                false,
                "unreadable: missing 'c' tag",
            ),
            (
                "an unknown event: a placeholder",
                update(&nostr(&unknown), ZERO, oid('e')),
                true,
                "",
            ),
            (
                "not an event id",
                update("refs/nostr/abc", ZERO, oid('c')),
                false,
                "64 lowercase hex",
            ),
        ];
        for (case, update, allowed, words) in cases {
            let verdict = one(&facts, update);
            assert_eq!(verdict.allowed, allowed, "{case}: {}", verdict.message);
            assert!(verdict.message.contains(words), "{case}: {}", verdict.message);
        }
    }
}
