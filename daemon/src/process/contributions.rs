//! GRASP-06 upkeep of contributors' `/prs/` repositories: a ref whose pull request never came is
//! deleted, and a repository left without refs goes.
//!
//! Placeholders (durable, with `--grasp06-ref-expiry-secs`) delete the refs pushed while graspd
//! runs; this sweep catches the rest: at start (after the spool is drained, before the public port
//! opens) refs no event and no placeholder explains, and, then every few minutes, repositories with
//! no refs (a push refused by its hook leaves one), unless a push may be running in it.

use std::time::{Duration, SystemTime};

use crate::app::App;
use crate::authorize::pull_request_ref as parse_pull_request_ref;
use crate::git::RefName;
use crate::nip34::RepoId;
use crate::shutdown::Signal;

/// How often the sweep looks for repositories left without refs (more often when refs expire
/// sooner).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// Sweeps every [`SWEEP_INTERVAL`] until shutdown (the start-up sweep runs before this).
pub async fn run(app: App, mut shutdown: Signal) {
    if !app.config().grasp06.enabled {
        return;
    }
    let interval = SWEEP_INTERVAL.min(app.config().grasp06.ref_expiry);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => return,
        }
        // Several nodes on one git root: the leader sweeps for all.
        if app.is_leader() {
            sweep(&app, false).await;
        }
    }
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub refs: usize,
    pub repositories: usize,
}

/// One pass over every `/prs/` repository. `orphans`: also delete refs that no known event and no
/// placeholder explains (only safe when no push can be between its ref update and its report,
/// i.e. at start).
pub async fn sweep(app: &App, orphans: bool) -> Swept {
    let mut swept = Swept::default();
    if !app.config().grasp06.enabled {
        return swept;
    }
    for repo in app.git().pull_request_repos_on_disk().await {
        let _serial = app.lock_identifier(&repo.identifier).await;
        if orphans {
            swept.refs += delete_orphan_refs(app, &repo).await;
        }
        if remove_empty(app, &repo).await {
            swept.repositories += 1;
        }
    }
    if swept != Swept::default() {
        tracing::info!(
            refs = swept.refs,
            repositories = swept.repositories,
            "pull request repositories swept"
        );
    }
    swept
}

/// Deletes `repo` if it holds no refs (GRASP-06: a `/prs/` repository with none left goes).
pub async fn remove_if_empty(app: &App, repo: &RepoId) {
    let _serial = app.lock_identifier(&repo.identifier).await;
    remove_empty(app, repo).await;
}

async fn remove_empty(app: &App, repo: &RepoId) -> bool {
    let just_made = JUST_MADE.min(app.config().grasp06.ref_expiry);
    if push_may_be_running(&app.git().path(repo), just_made) {
        return false;
    }
    match app.git().remove_if_empty(repo).await {
        Ok(true) => {
            tracing::info!(repo = %repo, "pull request repository without refs removed");
            true
        }
        Ok(false) => false,
        Err(error) => {
            tracing::warn!(repo = %repo, %error, "cannot remove empty pull request repository");
            false
        }
    }
}

/// Refs no pull request explains: anything but `refs/nostr/<event-id>` (the hook never lets one
/// in), and pull request refs whose event is neither known nor awaited by a placeholder.
async fn delete_orphan_refs(app: &App, repo: &RepoId) -> usize {
    let refs = match app.git().refs(repo).await {
        Ok(refs) => refs,
        Err(error) => {
            tracing::warn!(repo = %repo, %error, "cannot list pull request repository refs");
            return 0;
        }
    };
    let mut deleted = 0;
    for (name, tip) in refs {
        let Ok(name) = RefName::parse(&name) else {
            continue;
        };
        let explained = match parse_pull_request_ref(&name) {
            Some(Ok(event_id)) => {
                app.purgatory().contains(&event_id)
                    || app
                        .purgatory()
                        .placeholders_for(&event_id)
                        .iter()
                        .any(|p| p.repo == *repo)
                    // On a store error the ref is kept: deleting is the one thing not to guess.
                    || app.store().contains(&event_id).await.unwrap_or(true)
            }
            _ => false,
        };
        if explained {
            continue;
        }
        match app.git().delete_ref_if(repo, name.clone(), tip).await {
            Ok(true) => {
                tracing::info!(repo = %repo, r#ref = %name, "ref without a pull request removed");
                deleted += 1;
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(repo = %repo, r#ref = %name, %error, "cannot remove ref"),
        }
    }
    deleted
}

/// A push may be on its way into the repository at `path`: it was created or touched a moment ago
/// (a push creates it just before receive-pack starts), or receive-pack's quarantine directory
/// (`objects/incoming-*`) is there and recent (one left by a killed push is ignored after an hour).
fn push_may_be_running(path: &std::path::Path, just_made: Duration) -> bool {
    let age = |p: &std::path::Path| {
        p.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .unwrap_or_default()
    };
    if age(path) < just_made || age(&path.join("objects")) < just_made {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(path.join("objects")) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        entry.file_name().to_string_lossy().starts_with("incoming-") && age(&entry.path()) < STALE_QUARANTINE
    })
}

/// A repository this young may be about to receive its first push (or less, when refs expire
/// sooner).
const JUST_MADE: Duration = Duration::from_secs(60);
/// A quarantine directory older than this was left by a push that was killed.
const STALE_QUARANTINE: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &std::path::Path, by: Duration) {
        let at = SystemTime::now() - by;
        std::fs::File::open(path)
            .and_then(|f| f.set_modified(at))
            .expect("set mtime");
    }

    #[test]
    fn a_push_may_be_running_in_a_young_repository_or_one_with_a_recent_quarantine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("r.git");
        let objects = repo.join("objects");
        std::fs::create_dir_all(&objects).expect("mkdir");
        let minute = Duration::from_secs(60);
        assert!(push_may_be_running(&repo, minute), "just made");
        let settle = |extra: &[&std::path::Path]| {
            for path in [repo.as_path(), objects.as_path()].iter().chain(extra) {
                age(path, Duration::from_secs(600));
            }
        };
        settle(&[]);
        assert!(!push_may_be_running(&repo, minute), "idle for ten minutes");
        let quarantine = objects.join("incoming-abc");
        std::fs::create_dir(&quarantine).expect("mkdir");
        age(&objects, Duration::from_secs(600));
        assert!(
            push_may_be_running(&repo, minute),
            "receive-pack's quarantine is there"
        );
        age(&quarantine, Duration::from_secs(7200));
        assert!(
            !push_may_be_running(&repo, minute),
            "a quarantine a killed push left"
        );
    }
}
