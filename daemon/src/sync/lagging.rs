//! The git-data sync for accepted events (GRASP-02): at least hourly, every hosted repository's
//! refs are compared with the newest state it serves. A lagging repository whose objects are
//! here is aligned at once; for the others the identifier goes into the sync queue, which fetches
//! the missing objects from the other clone URLs through the same throttles and then runs the
//! unified procedure (`process::process_fetched_git_data`), which aligns them. Pull request refs
//! (`refs/nostr/<event-id>` at each stored pull request's tip) are checked and put back the same
//! way.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::app::App;
use crate::nip34::{Identifier, RepoId};
use crate::process::{ProcessError, lag};
use crate::queue::SyncQueue;
use crate::shutdown::Signal;

/// Checks every `every` (the first check one `every` after start) until shutdown.
pub async fn run(app: App, queue: SyncQueue, every: Duration, mut shutdown: Signal) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.wait() => return,
        }
        // Several nodes on one database: the leader checks for all.
        if !app.is_leader() {
            continue;
        }
        let (aligned, queued) = pass(&app, &queue).await;
        if aligned + queued > 0 {
            tracing::info!(aligned, queued, "refs checked against states");
        }
    }
}

/// One pass over every hosted identifier: how many were aligned from local objects, and how
/// many were queued for a fetch.
pub async fn pass(app: &App, queue: &SyncQueue) -> (usize, usize) {
    let identifiers: BTreeSet<Identifier> = app
        .git()
        .repos_on_disk()
        .await
        .into_iter()
        .map(|repo| repo.identifier)
        .collect();
    let (mut aligned, mut queued) = (0, 0);
    for identifier in identifiers {
        let sources = match lagging_repos(app, &identifier).await {
            Ok(sources) if sources.is_empty() => continue,
            Ok(sources) => sources,
            Err(error) => {
                tracing::warn!(%identifier, %error, "cannot check refs against states");
                continue;
            }
        };
        // Objects already on disk in one of the group's repositories: align from there.
        for source in &sources {
            let result = crate::process::process_fetched_git_data(app, source, &HashSet::new()).await;
            if result.repos_synced > 0 {
                aligned += 1;
            }
        }
        if lagging_repos(app, &identifier)
            .await
            .is_ok_and(|left| !left.is_empty())
        {
            queue.enqueue(identifier, Duration::ZERO);
            queued += 1;
        }
    }
    (aligned, queued)
}

/// The hosted repositories of `identifier` whose branches and tags lag the served state, or
/// whose pull request refs lag the stored pull requests.
async fn lagging_repos(app: &App, identifier: &Identifier) -> Result<BTreeSet<RepoId>, ProcessError> {
    let mut repos: BTreeSet<RepoId> = lag::lagging(app, identifier)
        .await?
        .into_iter()
        .map(|lag| lag.repo)
        .collect();
    repos.extend(
        lag::lagging_pull_requests(app, identifier)
            .await?
            .into_iter()
            .map(|lag| lag.repo),
    );
    Ok(repos)
}
