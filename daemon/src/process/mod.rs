//! Reacting to git data that is on disk: applying states, placing pull request refs, releasing
//! events from purgatory and promoting waiting announcements.
//!
//! Today this runs when an event arrives whose git data is already present. The push path and
//! the sync loop will call the same steps when git data arrives after its event.

pub mod expiry;

use nostr::{Event, Kind};

use crate::app::{App, RepoGroup};
use crate::git::{GitError, RefChanges, RefName};
use crate::nip34::{KIND_STATE, PullRequest, RepoId, RepoState};
use crate::purgatory::is_newer;
use crate::store::StoreError;

/// Errors while applying git data.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] GitError),
}

/// What applying a state did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub repos: Vec<RepoId>,
    pub changes: RefChanges,
}

/// Hosted repositories for which `state` is authoritative: the author is in the owner's recursive
/// maintainer set, the repository exists on disk, and no newer state by one of the owner's
/// maintainers is already served.
pub async fn authoritative_repos(
    app: &App,
    group: &RepoGroup,
    state: &RepoState,
) -> Result<Vec<RepoId>, StoreError> {
    let stored_states = app
        .store()
        .by_identifier(Kind::from(KIND_STATE), state.identifier.as_str())
        .await?;
    let mut repos = Vec::new();
    for owner in group.owners_authorizing(&state.author) {
        let repo = RepoId::new(owner, state.identifier.clone());
        if !app.git().exists(&repo) {
            continue;
        }
        let maintainers = group.maintainers(&owner);
        let superseded = stored_states.iter().any(|stored| {
            maintainers.contains(&stored.pubkey) && stored.id != state.id && is_state_newer(stored, state)
        });
        if !superseded {
            repos.push(repo);
        }
    }
    Ok(repos)
}

fn is_state_newer(stored: &Event, state: &RepoState) -> bool {
    (stored.created_at, std::cmp::Reverse(stored.id)) > (state.created_at, std::cmp::Reverse(state.id))
}

/// Applies `state` to every repository in `repos` if all of them already hold every object it
/// names: refs aligned, HEAD set, waiting announcements promoted. Returns `None` (and changes
/// nothing) when some object is missing somewhere.
pub async fn apply_state_if_present(
    app: &App,
    repos: &[RepoId],
    state: &RepoState,
) -> Result<Option<Applied>, ProcessError> {
    let wanted = state.wanted_oids();
    for repo in repos {
        if !app.git().has_objects(repo, wanted.clone()).await? {
            return Ok(None);
        }
    }
    let mut applied = Applied::default();
    for repo in repos {
        let changes = app.git().align(repo, state).await?;
        tracing::info!(repo = %repo, state = %state.id, created = changes.created, updated = changes.updated,
            deleted = changes.deleted, "aligned repository with state");
        applied.changes.created += changes.created;
        applied.changes.updated += changes.updated;
        applied.changes.deleted += changes.deleted;
        applied.changes.head_changed |= changes.head_changed;
        applied.repos.push(repo.clone());
        promote_announcement(app, repo).await?;
    }
    Ok(Some(applied))
}

/// Places `refs/nostr/<event-id>` at the pull request's tip in every hosted repository it names,
/// if each of them already has the commit. Returns whether it did.
pub async fn apply_pull_request_if_present(
    app: &App,
    repos: &[RepoId],
    pr: &PullRequest,
) -> Result<bool, ProcessError> {
    for repo in repos {
        if !app.git().has_objects(repo, vec![pr.tip.clone()]).await? {
            return Ok(false);
        }
    }
    let name = match RefName::parse(&format!("refs/nostr/{}", pr.id.to_hex())) {
        Ok(name) => name,
        Err(_) => return Ok(false),
    };
    for repo in repos {
        app.git()
            .set_ref(
                repo,
                name.clone(),
                pr.tip.clone(),
                format!("graspd: pull request {}", pr.id),
            )
            .await?;
        promote_announcement(app, repo).await?;
    }
    Ok(true)
}

/// Serves a repository's waiting announcement once the repository holds git data: stored and
/// removed from purgatory in one transaction, then pushed to live subscribers.
pub async fn promote_announcement(app: &App, repo: &RepoId) -> Result<bool, ProcessError> {
    let Some(entry) = app.purgatory().announcement(repo) else {
        return Ok(false);
    };
    if !app.git().has_refs(repo).await? {
        return Ok(false);
    }
    release(app, &entry.event).await?;
    tracing::info!(repo = %repo, event_id = %entry.event.id, "announcement released from purgatory");
    Ok(true)
}

/// Moves an event from purgatory to the store (one transaction) and notifies subscribers.
pub async fn release(app: &App, event: &Event) -> Result<(), ProcessError> {
    let status = app.store().release(event).await?;
    app.purgatory().forget(&event.id).await;
    if status.is_success() {
        app.publish_served(event.clone());
    }
    Ok(())
}

/// Whether `a` should replace `b` at one address.
pub fn newer(a: &Event, b: &Event) -> bool {
    is_newer(a, b)
}
