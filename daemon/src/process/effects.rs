//! Carries out the write policy's decisions (`crate::admission`): the one place where accepting
//! or holding an event changes anything. The caller holds the lock of the identifier the event
//! concerns (see `relay::policy`), so the facts the decision was made on still hold.

use nostr::Event;

use super::{ProcessError, promote_announcement, pull_request_ref, sync_pull_request, sync_state};
use crate::admission::{Answer, Decision, Effect, PURGATORY_MESSAGE};
use crate::app::App;
use crate::nip34::{Nip34Kind, RepoId};
use crate::purgatory::{Inserted, Source};

/// Applies `decision`'s effects for `event` in order and returns the answer for the client
/// (holding an event may find it already waiting, which changes the answer). `origin` says who
/// brought the event: a client, or the event sync (its git data is then hunted sooner).
pub async fn apply(
    app: &App,
    event: &Event,
    origin: Source,
    decision: Decision,
) -> Result<Answer, ProcessError> {
    let mut answer = decision.answer;
    for effect in decision.effects {
        match effect {
            Effect::Provision(repo) => {
                if app.git().provision(&repo).await? {
                    tracing::info!(repo = %repo, "repository created");
                }
            }
            Effect::DropPending(id) => {
                app.purgatory().remove(&id).await?;
            }
            Effect::Hold {
                kind,
                identifier,
                sync,
            } => {
                let inserted = app
                    .purgatory()
                    .insert(event.clone(), kind, identifier.clone(), origin)
                    .await?;
                answer = match inserted {
                    Inserted::Added | Inserted::Replaced(_) => {
                        if sync {
                            let delay = crate::queue::delay_for(&app.config().sync, origin);
                            app.sync_queue().enqueue(identifier.clone(), delay);
                        }
                        tracing::debug!(event_id = %event.id, %identifier, "event held in purgatory");
                        answer
                    }
                    Inserted::Duplicate => Answer::Duplicate(format!(
                        "already have this event; it is in purgatory and {PURGATORY_MESSAGE}"
                    )),
                    Inserted::Superseded(newer) => Answer::Blocked(format!(
                        "a newer event for this address is already waiting ({newer})"
                    )),
                };
            }
            Effect::ApplyState { state, source, repos } => {
                sync_state(app, &source, &repos, &state).await?;
                promote_all(app, &repos).await?;
            }
            Effect::DropPullRequestRef { repo, at } => {
                if let Some(name) = pull_request_ref(&event.id) {
                    if app.git().delete_ref_if(&repo, name, at).await? {
                        // What only that tip reached goes now, not after git's two weeks.
                        app.housekeeping().request_prune(&repo);
                    }
                    app.purgatory().remove_placeholder(&event.id, &repo).await?;
                    tracing::info!(repo = %repo, event_id = %event.id, pushed = %at,
                        "pull request ref pushed at another tip removed");
                }
            }
            Effect::ApplyPullRequest {
                pull_request,
                source,
                targets,
            } => {
                sync_pull_request(app, &source, &targets, &pull_request).await?;
                promote_all(app, &targets).await?;
            }
            Effect::ApplyDeletion => {
                for removed in app.purgatory().apply_deletion(event).await? {
                    tracing::info!(event_id = %removed.event.id, "deleted from purgatory by its author");
                    if removed.kind == Nip34Kind::Announcement {
                        let repo = RepoId::new(removed.event.pubkey, removed.identifier.clone());
                        super::expiry::discard_unserved_repo(app, &repo).await;
                    }
                }
            }
        }
    }
    Ok(answer)
}

/// Releases the waiting announcements of `repos` that now hold data.
async fn promote_all(app: &App, repos: &[RepoId]) -> Result<(), ProcessError> {
    for repo in repos {
        promote_announcement(app, repo).await?;
    }
    Ok(())
}
