//! The purgatory expiry task: sleeps until the earliest deadline (or until purgatory changes),
//! discards what expired, and deletes repositories whose announcement expired before any git data
//! arrived.

use std::time::Duration;

use crate::app::App;
use crate::nip34::{Nip34Kind, RepoId};
use crate::purgatory::now_ms;
use crate::shutdown::Signal;

/// Longest nap between checks when nothing is due: a safety net against missed notifications.
const MAX_NAP: Duration = Duration::from_secs(60);
/// How often a node that does not lead checks whether it leads now.
const FOLLOWER_NAP: Duration = Duration::from_secs(5);

pub async fn run(app: App, mut shutdown: Signal) {
    loop {
        // Several nodes on one database: the leader expires for all (the others forget what it
        // removes as they hear of it), and looks again as soon as it could lead.
        let nap = if app.is_leader() {
            expire_due(&app).await;
            match app.purgatory().next_deadline_ms() {
                Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_NAP),
                None => MAX_NAP,
            }
        } else {
            FOLLOWER_NAP
        };
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = app.purgatory().changed() => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Discards every expired entry and placeholder. Errors are logged and retried on the next
/// round.
pub async fn expire_due(app: &App) {
    expire_placeholders(app).await;
    for entry in app.purgatory().expired(now_ms()) {
        match app.purgatory().remove(&entry.event.id).await {
            Ok(Some(_)) => {
                tracing::info!(event_id = %entry.event.id, kind = entry.kind.as_str(), identifier = %entry.identifier,
                    "purgatory entry expired without its git data");
            }
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(event_id = %entry.event.id, %error, "cannot expire purgatory entry");
                continue;
            }
        }
        if entry.kind == Nip34Kind::Announcement {
            let repo = RepoId::new(entry.event.pubkey, entry.identifier.clone());
            discard_unserved_repo(app, &repo).await;
        }
    }
}

/// Deletes a repository whose announcement is no longer pending, was never stored, and that
/// received no git data.
pub async fn discard_unserved_repo(app: &App, repo: &RepoId) {
    match app.is_hosted(repo).await {
        Ok(true) => return,
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(repo = %repo, %error, "cannot check repository before deleting it");
            return;
        }
    }
    match app.git().remove_if_empty(repo).await {
        Ok(true) => tracing::info!(repo = %repo, "deleted empty repository of an expired announcement"),
        Ok(false) => {}
        Err(error) => tracing::warn!(repo = %repo, %error, "cannot delete empty repository"),
    }
}

/// A pull request ref whose event never came is removed (if it still points where it was
/// pushed).
async fn expire_placeholders(app: &App) {
    for placeholder in app.purgatory().expired_placeholders(now_ms()) {
        let known = app.purgatory().contains(&placeholder.event_id)
            || app.store().contains(&placeholder.event_id).await.unwrap_or(true);
        if !known && let Some(name) = crate::process::pull_request_ref(&placeholder.event_id) {
            match app
                .git()
                .delete_ref_if(&placeholder.repo, name, placeholder.tip)
                .await
            {
                Ok(true) => {
                    tracing::info!(repo = %placeholder.repo, event_id = %placeholder.event_id,
                        "pull request ref expired without its event; removed");
                    if placeholder.repo.is_pull_request_area() {
                        super::contributions::remove_if_empty(app, &placeholder.repo).await;
                    }
                    // Its objects go now, not after git's two weeks (anyone may push one).
                    if app.git().exists(&placeholder.repo) {
                        app.housekeeping().request_prune(&placeholder.repo);
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(repo = %placeholder.repo, %error, "cannot remove expired pull request ref");
                    continue;
                }
            }
        }
        if let Err(error) = app
            .purgatory()
            .remove_placeholder(&placeholder.event_id, &placeholder.repo)
            .await
        {
            tracing::warn!(%error, "cannot forget expired placeholder");
        }
    }
}
