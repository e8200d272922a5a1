//! Push authorization (GRASP-01 [36], [45]): may these ref updates land in this owner's
//! repository?
//!
//! The authoritative state for owner O's repository is the newest state event — stored, or
//! still waiting in purgatory (clients publish the state *before* pushing) — authored by anyone
//! in O's recursive maintainer set. A push is allowed only when every updated ref ends where that
//! state says; a ref the state does not list may only be deleted. Pushes to
//! `refs/nostr/<event-id>` carry pull request tips and follow their own rule.

use nostr::{Event, EventId, Kind};

use crate::app::App;
use crate::git::{Oid, RefName};
use crate::nip34::{KIND_STATE, Nip34Kind, PullRequest, RepoId, RepoState};
use crate::purgatory::is_newer;
use crate::store::StoreError;

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

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides each update. The caller refuses the whole push if any verdict is a refusal (git's
/// pre-receive is all or nothing).
pub async fn authorize_push(
    app: &App,
    repo: &RepoId,
    updates: &[RefUpdate],
) -> Result<Vec<Verdict>, AuthorizeError> {
    let group = app.repo_group(&repo.identifier).await?;
    if !group.by_owner.contains_key(&repo.owner) {
        return Ok(refuse_all(
            updates,
            &format!("repository {repo} is not announced on this server"),
        ));
    }
    let maintainers = group.maintainers(&repo.owner);
    let state = authoritative_state(app, repo, &maintainers).await?;

    let mut verdicts = Vec::with_capacity(updates.len());
    for update in updates {
        let verdict = if let Some(event_id) = update.name.as_str().strip_prefix("refs/nostr/") {
            pull_request_ref(app, update, event_id).await?
        } else {
            match &state {
                Some((event, state)) => state_ref(update, event, state),
                None => refuse(
                    update,
                    "no repository state from a maintainer is known yet: publish the state event before pushing",
                ),
            }
        };
        verdicts.push(verdict);
    }
    Ok(verdicts)
}

/// The newest state, stored or pending, by a member of `maintainers`.
pub async fn authoritative_state(
    app: &App,
    repo: &RepoId,
    maintainers: &std::collections::BTreeSet<nostr::PublicKey>,
) -> Result<Option<(Event, RepoState)>, StoreError> {
    let stored = app
        .store()
        .by_identifier(Kind::from(KIND_STATE), repo.identifier.as_str())
        .await?;
    let pending = app
        .purgatory()
        .for_identifier(&repo.identifier)
        .into_iter()
        .filter(|entry| entry.kind == Nip34Kind::State)
        .map(|entry| entry.event.clone());
    let newest = stored
        .into_iter()
        .chain(pending)
        .filter(|event| maintainers.contains(&event.pubkey))
        .reduce(|a, b| if is_newer(&a, &b) { a } else { b });
    Ok(newest.and_then(|event| RepoState::parse(&event).ok().map(|state| (event, state))))
}

fn state_ref(update: &RefUpdate, event: &Event, state: &RepoState) -> Verdict {
    let short_event = &event.id.to_hex()[..12];
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
async fn pull_request_ref(app: &App, update: &RefUpdate, suffix: &str) -> Result<Verdict, StoreError> {
    let well_formed = suffix.len() == 64
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let Some(event_id) = well_formed.then(|| EventId::from_hex(suffix).ok()).flatten() else {
        return Ok(refuse(
            update,
            "refs/nostr/ refs must be named by an event id (64 lowercase hex digits)",
        ));
    };
    if update.new.is_zero() {
        return Ok(refuse(update, "pull request refs cannot be deleted by a push"));
    }
    let known = match app.purgatory().get(&event_id) {
        Some(entry) => Some(entry.event.clone()),
        None => app.store().event_by_id(&event_id).await?,
    };
    let Some(event) = known else {
        return Ok(allow(update));
    };
    if !matches!(
        Nip34Kind::of(event.kind),
        Some(Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate)
    ) {
        return Ok(refuse(
            update,
            &format!("event {suffix} is not a pull request or pull request update"),
        ));
    }
    Ok(match PullRequest::parse(&event) {
        Ok(pr) if pr.tip == update.new => allow(update),
        Ok(pr) => refuse(
            update,
            &format!(
                "pull request {}… has tip {}, push has {}",
                &suffix[..12],
                pr.tip.short(),
                update.new.short()
            ),
        ),
        Err(e) => refuse(
            update,
            &format!("pull request {}… is unreadable: {e}", &suffix[..12]),
        ),
    })
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

fn refuse_all(updates: &[RefUpdate], why: &str) -> Vec<Verdict> {
    updates
        .iter()
        .map(|u| Verdict {
            ref_name: u.name.to_string(),
            allowed: false,
            message: format!("ref {}: {why}", u.name),
        })
        .collect()
}
