//! Push authorization's I/O half: gathers the [`PushFacts`] `authorize::decide` needs (the
//! repository group, the authoritative state, the events pull request refs name) and asks it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use nostr::{Event, EventId, Kind};

use crate::app::App;
use crate::authorize::{
    ContributionFacts, KnownPullRequest, PlaceholderCounts, PushFacts, RefUpdate, Verdict, decide,
    is_contribution, pull_request_ref,
};
use crate::nip01::is_newer;
use crate::nip34::{KIND_STATE, Nip34Kind, PullRequest, RepoId, RepoState, pull_request_repository};
use crate::store::StoreError;

/// Where a push came from, as git and the HTTP front tell the hook.
#[derive(Debug, Clone, Default)]
pub struct PushOrigin {
    /// git's quarantine directory holding the pushed objects (`GIT_QUARANTINE_PATH`).
    pub quarantine: Option<PathBuf>,
    /// The pusher's address (`REMOTE_ADDR`).
    pub client: Option<IpAddr>,
}

/// Decides each update: gathers what the decision needs ([`PushFacts`]), then [`decide`]s. The
/// caller refuses the whole push if any verdict is a refusal (git's pre-receive is all or
/// nothing). An allowed push of pull request refs alone counts toward its owner's and its
/// sender's hourly share.
pub async fn authorize_push(
    app: &App,
    repo: &RepoId,
    updates: &[RefUpdate],
    origin: &PushOrigin,
) -> Result<Vec<Verdict>, StoreError> {
    let facts = gather(app, repo, updates, origin).await?;
    let verdicts = decide(repo, updates, &facts);
    if facts.contribution.is_some() && verdicts.iter().all(|v| v.allowed) {
        app.pull_request_pushes()
            .record(&repo.owner, origin.client, Instant::now());
    }
    Ok(verdicts)
}

async fn gather(
    app: &App,
    repo: &RepoId,
    updates: &[RefUpdate],
    origin: &PushOrigin,
) -> Result<PushFacts, StoreError> {
    // Several nodes: what another node accepted a moment ago counts too.
    app.catch_up(&repo.identifier).await;
    let contribution = contribution_facts(app, repo, updates, origin).await;
    if repo.is_pull_request_area() {
        // GRASP-06: no announcement and no state; the pull requests decide.
        return Ok(PushFacts {
            announced: app.config().grasp06.enabled,
            state: None,
            pull_requests: known_pull_requests(app, repo, updates).await?,
            placeholders: Some(placeholder_counts(app, repo)),
            contribution,
        });
    }
    let group = app.repo_group(&repo.identifier).await?;
    if !group.by_owner.contains_key(&repo.owner) {
        return Ok(PushFacts::default());
    }
    let maintainers = group.maintainers(&repo.owner);
    let state = authoritative_state(app, repo, &maintainers)
        .await?
        .map(|(event, state)| (event.id, state));
    Ok(PushFacts {
        announced: true,
        state,
        pull_requests: known_pull_requests(app, repo, updates).await?,
        placeholders: Some(placeholder_counts(app, repo)),
        contribution,
    })
}

/// For a push of pull request refs alone: its size (read from git's quarantine; in a `/prs/`
/// repository git's `receive.maxInputSize` holds it already) and whether its owner's repositories
/// or its sender took their share within the hour. `None` for any other push.
async fn contribution_facts(
    app: &App,
    repo: &RepoId,
    updates: &[RefUpdate],
    origin: &PushOrigin,
) -> Option<ContributionFacts> {
    if !is_contribution(updates) {
        return None;
    }
    let limits = &app.config().abuse;
    let bytes = match &origin.quarantine {
        Some(dir) if !repo.is_pull_request_area() && limits.max_pr_push_bytes > 0 => {
            app.git().quarantine_bytes(repo, dir.clone()).await
        }
        _ => None,
    };
    let per_hour = (
        limits.pr_pushes_per_hour_per_owner,
        limits.pr_pushes_per_hour_per_address,
    );
    let over = app
        .pull_request_pushes()
        .check(&repo.owner, origin.client, per_hour, Instant::now())
        .err();
    Some(ContributionFacts {
        bytes,
        max_bytes: limits.max_pr_push_bytes,
        over,
    })
}

/// Placeholders waiting in `repo` and on the server, with the configured limits.
fn placeholder_counts(app: &App, repo: &RepoId) -> PlaceholderCounts {
    let limits = &app.config().abuse;
    PlaceholderCounts {
        in_repo: app.purgatory().placeholder_count_in(repo),
        total: app.purgatory().placeholder_count(),
        max_in_repo: limits.max_placeholders_per_repo,
        max_total: limits.max_placeholders,
    }
}

/// What each `refs/nostr/<event-id>` update's event is, where the event is known here (waiting in
/// purgatory or stored). In a `/prs/` repository a pull request must also name it (GRASP-06).
async fn known_pull_requests(
    app: &App,
    repo: &RepoId,
    updates: &[RefUpdate],
) -> Result<HashMap<EventId, KnownPullRequest>, StoreError> {
    let mut pull_requests = HashMap::new();
    for update in updates {
        let Some(Ok(event_id)) = pull_request_ref(&update.name) else {
            continue;
        };
        let known = match app.purgatory().get(&event_id) {
            Some(entry) => Some(entry.event.clone()),
            None => app.store().event_by_id(&event_id).await?,
        };
        let Some(event) = known else {
            continue;
        };
        let mut known = KnownPullRequest::of(&event);
        if repo.is_pull_request_area()
            && matches!(known, KnownPullRequest::Tip(_))
            && PullRequest::parse(&event)
                .ok()
                .and_then(|pr| pull_request_repository(&pr, &app.config().domain))
                .as_ref()
                != Some(repo)
        {
            known = KnownPullRequest::NamesAnotherRepository;
        }
        pull_requests.insert(event_id, known);
    }
    Ok(pull_requests)
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
