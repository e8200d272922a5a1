//! Repository housekeeping, off the push path.
//!
//! Git normally checks after every push whether a repository needs `gc` (receive-pack starts
//! `git maintenance run --auto` and waits for it: a few milliseconds on every push, paid by the
//! pusher). graspd's repositories set `receive.autogc=false`, and the fetches graspd makes itself
//! pass `--no-auto-gc`; instead, every run of the unified procedure asks for housekeeping of the
//! repositories it touched, and this task runs `git maintenance run --auto` for them in the
//! background, one repository at a time, a moment after the data arrived (so bursts of pushes or
//! fetches into one repository are checked once). Git decides what is due (too many packs or
//! loose objects), exactly as it would have after the push.

use std::time::Duration;

use tokio::time::Instant;

use crate::app::App;
use crate::git::{Oid, RefName};
use crate::metrics;
use crate::nip34::RepoId;
use crate::shutdown::Signal;

/// How long after a request a repository is checked: requests arriving meanwhile coalesce.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Every repository on disk is checked this long after start (or after the configured interval,
/// if shorter), and then once per `--housekeeping-interval-secs`, new data or not: repositories
/// that received data before graspd took over their `gc` check get packed too, and git's
/// time-based work (pruning, expiring reflogs) happens in repositories nobody pushes to.
pub const FIRST_SWEEP: Duration = Duration::from_secs(3600);

/// Longest one run may take before it is asked to stop (a stuck or enormous `gc` must not hold
/// up every other repository).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs the requested checks until shutdown. A check that is running when shutdown comes is not
/// waited for and not killed: git finishes it (or cleans up on the service manager's SIGTERM),
/// so no lock file is left behind to block later runs.
pub async fn run(app: App, mut shutdown: Signal) {
    let taken = app.housekeeping().take_requests();
    let Some(mut requests) = taken else {
        tracing::error!("housekeeping started twice; the second task does nothing");
        return;
    };
    let interval = app.config().housekeeping_interval;
    let mut next_sweep = interval.map(|interval| Instant::now() + interval.min(FIRST_SWEEP));
    loop {
        let (repo, requested) = tokio::select! {
            next = requests.recv() => match next {
                Some(next) => next,
                None => return,
            },
            () = sweep_due(next_sweep) => {
                next_sweep = interval.map(|interval| Instant::now() + interval);
                // Several nodes on one git root: the leader sweeps for all.
                if app.is_leader() {
                    sweep(&app).await;
                }
                continue;
            }
            _ = shutdown.wait() => return,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(requested + SETTLE) => {}
            _ = shutdown.wait() => return,
        }
        // Taken off the list before the check: data arriving during it asks again.
        app.housekeeping().take(&repo);
        if !app.git().exists(&repo) {
            continue;
        }
        let started = std::time::Instant::now();
        let work = async {
            if app.housekeeping().take_prune(&repo) {
                let grace = prune_grace(app.config().purgatory_expiry);
                app.git().prune_unreachable(&repo, grace, RUN_TIMEOUT).await
            } else {
                app.git().maintain(&repo, RUN_TIMEOUT).await
            }
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            _ = shutdown.wait() => return,
        };
        match outcome {
            Ok(()) => {
                metrics::inc(&app.metrics().maintenance_ok);
                tracing::debug!(repo = %repo, ms = started.elapsed().as_millis() as u64, "housekeeping checked");
            }
            // Deleted meanwhile (an announcement expired before any data): nothing to keep.
            Err(error) if !app.git().exists(&repo) => {
                tracing::debug!(repo = %repo, %error, "housekeeping skipped: the repository is gone");
            }
            Err(error) => {
                metrics::inc(&app.metrics().maintenance_failed);
                tracing::warn!(repo = %repo, %error, "housekeeping failed");
            }
        }
    }
}

/// How old an unreachable object must be to be pruned at once (see `GitRepos::prune_unreachable`):
/// half the placeholder expiry, at most 10 minutes. The objects of an expired placeholder are as
/// old as the expiry; those of a push landing meanwhile are younger than this.
pub fn prune_grace(expiry: Duration) -> Duration {
    (expiry / 2).min(Duration::from_secs(600))
}

/// Resolves at `at`; never without one.
async fn sweep_due(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Queues every repository on disk.
async fn sweep(app: &App) {
    let repos = app.git().repos_on_disk().await;
    tracing::info!(
        repositories = repos.len(),
        "housekeeping: checking every repository"
    );
    for repo in &repos {
        app.housekeeping().request(repo);
    }
}

/// After a crash (graspd killed with the git processes it ran, as systemd stops a service), run
/// once at start, after the spool is drained:
/// * a push that landed a pull request ref but was killed before its report left a ref no
///   placeholder waits on, which nothing would ever delete: it becomes a placeholder, expiring as
///   if pushed now ([`adopt_pull_request_refs`]);
/// * a push killed in the middle of its ref update leaves a ref lock that git never removes, and
///   every later push of that ref would fail on it. The repositories holding a lock are noted;
///   once [`crate::git::STALE_REF_LOCK`] has passed, the locks still there and that old are
///   removed (a live git's lock lasts milliseconds).
pub async fn tidy_after_a_crash(app: App, mut shutdown: Signal) {
    let leftovers = app.git().crash_leftovers().await;
    let adopted = adopt_pull_request_refs(&app, leftovers.pull_request_refs).await;
    if adopted > 0 {
        tracing::warn!(
            adopted,
            "pull request refs a push landed without reporting now wait for their events"
        );
    }
    let locked = leftovers.locked;
    if locked.is_empty() {
        return;
    }
    tracing::info!(
        repositories = locked.len(),
        "ref locks found at start; removing those still there once stale"
    );
    tokio::select! {
        () = tokio::time::sleep(crate::git::STALE_REF_LOCK + std::time::Duration::from_secs(1)) => {}
        _ = shutdown.wait() => return,
    }
    let identifiers: std::collections::BTreeSet<_> = locked
        .iter()
        .filter_map(|dir| app.git().repo_at(dir))
        .map(|repo| repo.identifier)
        .collect();
    let removed = app.git().clear_stale_locks(locked).await;
    if removed > 0 {
        tracing::warn!(removed, "removed ref locks a crash left behind");
    }
    // What waited on those refs (a release the crash stopped half-way) goes now, not at the
    // sync's next try.
    for identifier in identifiers {
        if !app.purgatory().for_identifier(&identifier).is_empty() {
            super::process_data_on_disk(&app, &identifier, "reconcile").await;
        }
    }
}

/// Makes a placeholder of each of `refs` whose event is neither known nor already awaited by
/// one, deciding under the identifier's lock (a push's report releases and records under it too).
/// Returns how many.
pub async fn adopt_pull_request_refs(app: &App, refs: Vec<(RepoId, RefName, Oid)>) -> usize {
    let mut adopted = 0;
    for (repo, name, tip) in refs {
        let Some(Ok(event_id)) = crate::authorize::pull_request_ref(&name) else {
            continue;
        };
        let _serial = app.lock_identifier(&repo.identifier).await;
        let awaited = app
            .purgatory()
            .placeholders_for(&event_id)
            .iter()
            .any(|placeholder| placeholder.repo == repo);
        if awaited || app.purgatory().contains(&event_id) {
            continue;
        }
        let before = app.purgatory().placeholder_count_in(&repo);
        super::record_placeholders(app, &repo, &[(name, tip)]).await;
        if app.purgatory().placeholder_count_in(&repo) > before {
            adopted += 1;
        }
    }
    adopted
}
