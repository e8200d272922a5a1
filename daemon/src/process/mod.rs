//! The one place that reacts to git data being on disk.
//!
//! [`process_newly_available_git_data`] runs after every push (post-receive → `ReportPush`), for
//! every spooled report, at start-up reconciliation, and (later) after each sync fetch. It reads
//! as its steps: discover what waiting events the data satisfies → authorize them again (the
//! maintainer sets may have changed since they arrived) → sync every owner repository the event
//! is authoritative for (copy objects, align refs and HEAD) → store and release (one
//! transaction) → notify live subscribers. It is idempotent, and each event stands alone: one
//! failure is reported and does not block the others.
//!
//! When an event arrives whose git data is already on disk, the relay policy uses the same
//! sync steps ([`apply_state_now`], [`apply_pull_request_now`]) and lets the relay store it.

pub mod contributions;
pub mod effects;
pub mod expiry;
pub mod lag;
pub mod maintenance;
pub mod push;

use std::collections::HashSet;

use nostr::{Event, Kind};

use crate::app::{App, RepoGroup};
use crate::git::{GitError, Oid, RefChanges, RefName, RefTargets};
use crate::nip34::{
    Identifier, KIND_STATE, Nip34Kind, PullRequest, RepoId, RepoState, pull_request_repository,
};
use crate::purgatory::is_newer;
use crate::store::StoreError;
pub use crate::types::ProcessResult;

/// Errors while syncing one event.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Git data is now available in `source` (pushed, fetched, or found at start). `new_oids` are
/// the objects that just arrived; empty means "consider every waiting event".
pub async fn process_newly_available_git_data(
    app: &App,
    source: &RepoId,
    new_oids: &HashSet<Oid>,
) -> ProcessResult {
    let _serial = app.lock_identifier(&source.identifier).await;
    procedure(app, source, new_oids).await
}

/// The procedure after a sync fetch: as after a push, and then every lagging repository of the
/// identifier whose state's objects are now here is aligned with it (see [`lag`]).
pub async fn process_fetched_git_data(app: &App, source: &RepoId, new_oids: &HashSet<Oid>) -> ProcessResult {
    let _serial = app.lock_identifier(&source.identifier).await;
    let mut result = procedure(app, source, new_oids).await;
    lag::repair(app, source, &mut result).await;
    result
}

/// The unified procedure; the caller holds the identifier's lock.
async fn procedure(app: &App, source: &RepoId, new_oids: &HashSet<Oid>) -> ProcessResult {
    let mut result = ProcessResult::default();
    let group = match app.repo_group(&source.identifier).await {
        Ok(group) => group,
        Err(error) => {
            result
                .errors
                .push(format!("cannot load repository data: {error}"));
            return result;
        }
    };

    let (states, pull_requests) = discover(app, source, new_oids).await;
    // Released together at the end: one transaction (one fsync) for the whole run.
    let mut releases = Releases::default();
    for state in states {
        match release_state(app, &group, source, &state, &mut result, &mut releases).await {
            Ok(true) => result.states_released += 1,
            Ok(false) => {}
            Err(error) => result.errors.push(format!("state {}: {error}", state.id)),
        }
    }
    for (event, pr) in pull_requests {
        match release_pull_request(app, source, &event, &pr, &mut releases).await {
            Ok(true) => result.pull_requests_released += 1,
            Ok(false) => {}
            Err(error) => result.errors.push(format!("pull request {}: {error}", pr.id)),
        }
    }
    // The source repository holds data now, whatever the events: its announcement is served.
    releases.touched.push(source.clone());
    // A pack arrived here (pushed or fetched); object copies ask for their targets.
    app.housekeeping().request(source);
    match releases.commit(app).await {
        Ok(announcements) => result.announcements_released += announcements,
        Err(error) => {
            result.errors.push(format!("cannot release: {error}"));
            result.states_released = 0;
            result.pull_requests_released = 0;
        }
    }
    if !result.is_empty() {
        tracing::info!(repo = %source, states = result.states_released, prs = result.pull_requests_released,
            repos = result.repos_synced, errors = result.errors.len(), "processed new git data");
    }
    result
}

/// Waiting states and PRs for the identifier whose objects are all in `source`, oldest state
/// first (so the newest is aligned last).
async fn discover(
    app: &App,
    source: &RepoId,
    new_oids: &HashSet<Oid>,
) -> (Vec<RepoState>, Vec<(Event, PullRequest)>) {
    let mut states = Vec::new();
    let mut pull_requests = Vec::new();
    for entry in app.purgatory().for_identifier(&source.identifier) {
        match entry.kind {
            Nip34Kind::State => {
                let Ok(state) = RepoState::parse(&entry.event) else {
                    continue;
                };
                if !state.is_satisfiable() {
                    continue;
                }
                let wanted = state.wanted_oids();
                // Quick skip: nothing this state needs just arrived.
                if !new_oids.is_empty() && !wanted.is_empty() && !wanted.iter().any(|o| new_oids.contains(o))
                {
                    continue;
                }
                // Objects that just arrived in `source` are there (git updated refs to them or
                // fetched them): only a state wanting others needs git asked. Should the claim be
                // wrong, aligning refuses refs to missing objects and the state keeps waiting.
                let arrived = !wanted.is_empty() && wanted.iter().all(|o| new_oids.contains(o));
                if arrived || app.git().has_objects(source, wanted).await.unwrap_or(false) {
                    states.push((entry.event.clone(), state));
                }
            }
            Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate => {
                let Ok(pr) = PullRequest::parse(&entry.event) else {
                    continue;
                };
                if !new_oids.is_empty() && !new_oids.contains(&pr.tip) {
                    continue;
                }
                if app.git().has_objects(source, vec![pr.tip]).await.unwrap_or(false) {
                    pull_requests.push((entry.event.clone(), pr));
                }
            }
            Nip34Kind::Announcement => {}
        }
    }
    states.sort_by(|(a, _), (b, _)| {
        if is_newer(a, b) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        }
    });
    (states.into_iter().map(|(_, s)| s).collect(), pull_requests)
}

/// Syncs a satisfiable waiting state to every repository it is authoritative for and releases
/// it. Returns false (and changes nothing) when no hosted owner authorizes its author any more.
async fn release_state(
    app: &App,
    group: &RepoGroup,
    source: &RepoId,
    state: &RepoState,
    result: &mut ProcessResult,
    releases: &mut Releases,
) -> Result<bool, ProcessError> {
    if group.owners_authorizing(&state.author).is_empty() {
        return Ok(false);
    }
    let repos = authoritative_repos(app, group, state).await?;
    let changes = sync_state(app, source, &repos, state).await?;
    for (repo, change) in repos.iter().zip(&changes) {
        result.add(change);
        result.repos_synced += 1;
        releases.touched.push(repo.clone());
        if !state.refs.is_empty() {
            releases.given_refs.push(repo.clone());
        }
    }
    let Some(entry) = app.purgatory().get(&state.id) else {
        return Ok(false);
    };
    releases.events.push(entry.event.clone());
    tracing::info!(state = %state.id, identifier = %state.identifier, repos = repos.len(), "state released from purgatory");
    Ok(true)
}

/// Copies the state's objects from `source` into each repository and aligns its refs and HEAD.
async fn sync_state(
    app: &App,
    source: &RepoId,
    repos: &[RepoId],
    state: &RepoState,
) -> Result<Vec<RefChanges>, ProcessError> {
    let wanted = state.wanted_oids();
    let mut changes = Vec::with_capacity(repos.len());
    for repo in repos {
        if repo != source && !app.git().has_objects(repo, wanted.clone()).await? {
            app.git().copy_objects(source, repo, wanted.clone()).await?;
            app.housekeeping().request(repo);
        }
        let change = app.git().align(repo, &ref_targets(state)).await?;
        tracing::info!(repo = %repo, state = %state.id, created = change.created, updated = change.updated,
            deleted = change.deleted, "aligned repository with state");
        changes.push(change);
    }
    Ok(changes)
}

/// What a repository's refs are once it follows `state`.
fn ref_targets(state: &RepoState) -> RefTargets {
    RefTargets {
        refs: state.refs.clone(),
        head: state.head.as_ref().map(|head| head.0.clone()),
        reason: format!("align with state {}", state.id),
    }
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
            maintainers.contains(&stored.pubkey)
                && stored.id != state.id
                && crate::nip01::newer((stored.created_at, stored.id), (state.created_at, state.id))
        });
        if !superseded {
            repos.push(repo);
        }
    }
    Ok(repos)
}

/// Repositories a pull request goes to: every hosted repository of an owner it names (`a` tags)
/// or of an owner who lists a named owner as a (recursive) maintainer.
pub async fn pull_request_targets(app: &App, pr: &PullRequest) -> Result<Vec<RepoId>, StoreError> {
    let mut targets = Vec::new();
    for named in &pr.repos {
        let group = app.repo_group(&named.identifier).await?;
        for owner in group.by_owner.keys() {
            let repo = RepoId::new(*owner, named.identifier.clone());
            let related = *owner == named.owner || group.maintainers(owner).contains(&named.owner);
            if related && !targets.contains(&repo) && app.is_hosted(&repo).await? {
                targets.push(repo);
            }
        }
    }
    Ok(targets)
}

/// GRASP-06: whether `repo` is the `/prs/` repository `pr` names on this server and its own push
/// put the pull request's ref there at the tip. Only then does the pull request count as held
/// there: nothing but the repository's own pushes writes into `/prs/`.
pub async fn contribution_holds_tip(app: &App, repo: &RepoId, pr: &PullRequest) -> Result<bool, GitError> {
    let config = app.config();
    if !repo.is_pull_request_area()
        || !config.grasp06.enabled
        || pull_request_repository(pr, &config.domain).as_ref() != Some(repo)
    {
        return Ok(false);
    }
    let Some(name) = pull_request_ref(&pr.id) else {
        return Ok(false);
    };
    Ok(app.git().ref_target(repo, name).await? == Some(pr.tip))
}

/// The ref a pull request (or update) lives at.
pub fn pull_request_ref(event_id: &nostr::EventId) -> Option<RefName> {
    RefName::parse(&format!("refs/nostr/{}", event_id.to_hex())).ok()
}

/// After a push: pull request refs whose event is not known yet become placeholders that wait,
/// with purgatory's expiry, for their event (GRASP-01 [45]).
pub async fn record_placeholders(app: &App, repo: &RepoId, pushed: &[(RefName, Oid)]) {
    for (name, tip) in pushed {
        let Some(id) = name.as_str().strip_prefix("refs/nostr/") else {
            continue;
        };
        let Ok(event_id) = nostr::EventId::from_hex(id) else {
            continue;
        };
        if tip.is_zero() || app.purgatory().contains(&event_id) {
            continue;
        }
        match app.store().contains(&event_id).await {
            Ok(false) => {}
            Ok(true) => continue,
            Err(error) => {
                tracing::warn!(%error, "cannot check pull request event");
                continue;
            }
        }
        let expiry = if repo.is_pull_request_area() {
            app.config().grasp06.ref_expiry
        } else {
            app.config().purgatory_expiry
        };
        match app
            .purgatory()
            .add_placeholder_expiring(event_id, repo.clone(), *tip, expiry)
            .await
        {
            Ok(()) => {
                tracing::info!(repo = %repo, event_id = %event_id, "pull request ref waits for its event")
            }
            Err(error) => tracing::warn!(repo = %repo, %error, "cannot record pull request placeholder"),
        }
    }
}

/// Places `refs/nostr/<event-id>` at the tip in every target, copying the commit from `source`.
async fn sync_pull_request(
    app: &App,
    source: &RepoId,
    targets: &[RepoId],
    pr: &PullRequest,
) -> Result<(), ProcessError> {
    let Some(name) = pull_request_ref(&pr.id) else {
        return Ok(());
    };
    for repo in targets {
        if repo != source && !app.git().has_objects(repo, vec![pr.tip]).await? {
            app.git().copy_objects(source, repo, vec![pr.tip]).await?;
            app.housekeeping().request(repo);
        }
        app.git()
            .set_ref(
                repo,
                name.clone(),
                pr.tip,
                format!("graspd: pull request {}", pr.id),
            )
            .await?;
        // The event is here: the ref is no longer a placeholder.
        app.purgatory().remove_placeholder(&pr.id, repo).await?;
    }
    Ok(())
}

async fn release_pull_request(
    app: &App,
    source: &RepoId,
    event: &Event,
    pr: &PullRequest,
    releases: &mut Releases,
) -> Result<bool, ProcessError> {
    let mut targets = pull_request_targets(app, pr).await?;
    if contribution_holds_tip(app, source, pr).await? {
        targets.push(source.clone());
    }
    if targets.is_empty() {
        return Ok(false);
    }
    sync_pull_request(app, source, &targets, pr).await?;
    releases.touched.extend(targets);
    releases.events.push(event.clone());
    tracing::info!(event_id = %pr.id, "pull request released from purgatory");
    Ok(true)
}

/// Events a run releases, and the repositories whose waiting announcements may go with them.
#[derive(Debug, Default)]
struct Releases {
    events: Vec<Event>,
    touched: Vec<RepoId>,
    /// Touched repositories this run gave refs (aligned with a state naming some): they hold
    /// data without asking git again.
    given_refs: Vec<RepoId>,
}

impl Releases {
    /// Adds the waiting announcements of touched repositories that now hold data, then stores
    /// every event and deletes its purgatory row in one transaction, and notifies subscribers.
    /// Returns how many announcements went.
    async fn commit(mut self, app: &App) -> Result<u32, ProcessError> {
        let mut announcements = 0;
        self.touched.sort();
        self.touched.dedup();
        for repo in &self.touched {
            let Some(entry) = app.purgatory().announcement(repo) else {
                continue;
            };
            if self.given_refs.contains(repo) || app.git().has_refs(repo).await? {
                tracing::info!(repo = %repo, event_id = %entry.event.id, "announcement released from purgatory");
                self.events.push(entry.event.clone());
                announcements += 1;
            }
        }
        if self.events.is_empty() {
            return Ok(0);
        }
        let statuses = app.store().release_many(&self.events).await?;
        for (event, status) in self.events.iter().zip(statuses) {
            app.purgatory().forget(&event.id).await;
            crate::metrics::inc(&app.metrics().events_released);
            if status.is_success() {
                app.publish_served(event);
            }
        }
        Ok(announcements)
    }
}

/// Serves a repository's waiting announcement once the repository holds git data.
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
    crate::metrics::inc(&app.metrics().events_released);
    if status.is_success() {
        app.publish_served(event);
    }
    Ok(())
}

/// Processes every identifier with waiting events against the data already on disk: a push that
/// landed while the daemon was down (or whose report was lost) is not left behind.
pub async fn reconcile(app: &App) -> ProcessResult {
    let mut total = ProcessResult::default();
    for identifier in app.purgatory().identifiers() {
        total.absorb(process_data_on_disk(app, &identifier, "reconcile").await);
    }
    total
}

/// Runs the unified procedure (with the lag repair of a sync) on every repository of
/// `identifier` that holds git data, against the data already there, and tells watchers
/// (`source`).
pub async fn process_data_on_disk(app: &App, identifier: &Identifier, source: &'static str) -> ProcessResult {
    let mut total = ProcessResult::default();
    let group = match app.repo_group(identifier).await {
        Ok(group) => group,
        Err(error) => {
            total.errors.push(format!("{identifier}: {error}"));
            return total;
        }
    };
    for owner in group.by_owner.keys() {
        let repo = RepoId::new(*owner, identifier.clone());
        // Refs, or only objects: a fetch killed before it set the refs leaves those.
        if !app.git().has_data(&repo).await.unwrap_or(false) {
            continue;
        }
        let result = process_fetched_git_data(app, &repo, &HashSet::new()).await;
        app.publish_processed(source, &repo, &result);
        total.absorb(result);
    }
    total
}
