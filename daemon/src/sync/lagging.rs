//! The git-data sync for accepted events (GRASP-02): at least hourly, every hosted repository's
//! refs are compared with the newest state it serves. A lagging repository whose objects are
//! here is aligned at once; for the others the identifier goes into the sync queue, which fetches
//! the missing objects from the other clone URLs through the same throttles and then runs the
//! unified procedure (`process::process_fetched_git_data`), which aligns them.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::app::App;
use crate::nip34::Identifier;
use crate::process::lag;
use crate::queue::SyncQueue;
use crate::shutdown::Signal;

/// Checks every `every` (the first check one `every` after start) until shutdown.
pub async fn run(app: App, queue: SyncQueue, every: Duration, mut shutdown: Signal) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.wait() => return,
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
        let lags = match lag::lagging(app, &identifier).await {
            Ok(lags) if lags.is_empty() => continue,
            Ok(lags) => lags,
            Err(error) => {
                tracing::warn!(%identifier, %error, "cannot check refs against states");
                continue;
            }
        };
        // Objects already on disk in one of the group's repositories: align from there.
        let sources: Vec<_> = lags.iter().map(|lag| lag.repo.clone()).collect();
        for source in &sources {
            let result = crate::process::process_fetched_git_data(app, source, &HashSet::new()).await;
            if result.repos_synced > 0 {
                aligned += 1;
            }
        }
        if lag::lagging(app, &identifier)
            .await
            .is_ok_and(|left| !left.is_empty())
        {
            queue.enqueue(identifier, Duration::ZERO);
            queued += 1;
        }
    }
    (aligned, queued)
}
