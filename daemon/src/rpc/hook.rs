//! `grasp.v1.HookService`: what grasp-hook calls from pre-receive and post-receive.

use std::collections::HashSet;
use std::path::Path;

use grasp_proto::v1 as pb;
use grasp_proto::v1::hook_service_server::HookService;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::authorize::RefUpdate;
use crate::git::{Oid, RefName};
use crate::nip34::RepoId;
use crate::process::push::PushOrigin;
use crate::process::{self, ProcessResult};

/// Most ref updates accepted in one call (git sends one line per ref).
const MAX_UPDATES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Hooks {
    app: App,
}

impl Hooks {
    pub fn new(app: App) -> Self {
        Self { app }
    }

    fn repo(&self, path: &str) -> Result<RepoId, Status> {
        self.app.git().repo_at(Path::new(path)).ok_or_else(|| {
            Status::invalid_argument(format!(
                "'{path}' is not a graspd repository (<git-root>/<npub>/<identifier>.git, or \
             <git-root>/prs/<npub>/<identifier>.git, under {})",
                self.app.git().root().display()
            ))
        })
    }
}

/// Validates the updates of a request.
pub fn parse_updates(updates: &[pb::RefUpdate]) -> Result<Vec<RefUpdate>, Status> {
    if updates.len() > MAX_UPDATES {
        return Err(Status::invalid_argument(format!(
            "more than {MAX_UPDATES} ref updates"
        )));
    }
    updates
        .iter()
        .map(|u| {
            let bad = |e: crate::git::GitValueError| Status::invalid_argument(format!("ref update: {e}"));
            Ok(RefUpdate {
                old: Oid::parse(&u.old_oid).map_err(bad)?,
                new: Oid::parse(&u.new_oid).map_err(bad)?,
                name: RefName::parse(&u.ref_name).map_err(bad)?,
            })
        })
        .collect()
}

/// What a reported push sets off, whether the report came over the socket or from the spool:
/// placeholders for pushed pull request refs, the unified procedure on the objects it brought, and
/// the result to watchers (`source`: "push" or "spool").
pub async fn process_push(
    app: &App,
    repo: &RepoId,
    updates: &[RefUpdate],
    source: &'static str,
) -> ProcessResult {
    process::record_placeholders(app, repo, &pushed_refs(updates)).await;
    let result = process::process_newly_available_git_data(app, repo, &new_oids(updates)).await;
    app.publish_processed(source, repo, &result);
    if !result.errors.is_empty() {
        // The data is here but a release failed (a lock, the store): the git-data sync retries
        // the procedure on it, with backoff, instead of leaving the events in purgatory.
        app.sync_queue()
            .enqueue(repo.identifier.clone(), app.config().sync.immediate_delay);
    }
    result
}

/// The objects a push brought (new tips; deletions bring none).
/// Where the push came from; a path that is not absolute or an address that does not parse is
/// left out (the limits that need it do not apply), never trusted.
fn push_origin(request: &pb::AuthorizePushRequest) -> PushOrigin {
    let quarantine = Path::new(&request.quarantine_path);
    PushOrigin {
        quarantine: quarantine.is_absolute().then(|| quarantine.to_path_buf()),
        client: request.client_address.parse().ok(),
    }
}

fn new_oids(updates: &[RefUpdate]) -> HashSet<Oid> {
    updates
        .iter()
        .filter(|u| !u.new.is_zero())
        .map(|u| u.new)
        .collect()
}

/// (ref, new tip) of each update.
fn pushed_refs(updates: &[RefUpdate]) -> Vec<(RefName, Oid)> {
    updates.iter().map(|u| (u.name.clone(), u.new)).collect()
}

pub fn to_proto(result: &ProcessResult) -> pb::ProcessResult {
    pb::ProcessResult {
        states_released: result.states_released,
        pull_requests_released: result.pull_requests_released,
        announcements_released: result.announcements_released,
        repos_synced: result.repos_synced,
        refs_created: result.refs_created,
        refs_updated: result.refs_updated,
        refs_deleted: result.refs_deleted,
        errors: result.errors.clone(),
    }
}

#[tonic::async_trait]
impl HookService for Hooks {
    async fn check(&self, request: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        let path = request.into_inner().repo_path;
        let repo = (!path.is_empty())
            .then(|| self.app.git().repo_at(Path::new(&path)))
            .flatten();
        let known = match &repo {
            Some(repo) if repo.is_pull_request_area() => {
                self.app.config().grasp06.enabled && self.app.git().exists(repo)
            }
            Some(repo) => self
                .app
                .is_hosted(repo)
                .await
                .map_err(|e| Status::internal(e.to_string()))?,
            None => false,
        };
        let message = match (&repo, known) {
            (Some(repo), true) => format!("serving {repo}"),
            (Some(repo), false) => format!("{repo} is not announced on this server"),
            (None, _) if path.is_empty() => "reachable".to_owned(),
            (None, _) => format!("'{path}' is not a graspd repository"),
        };
        Ok(Response::new(pb::CheckResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            repo_known: known,
            message,
        }))
    }

    async fn authorize_push(
        &self,
        request: Request<pb::AuthorizePushRequest>,
    ) -> Result<Response<pb::AuthorizePushResponse>, Status> {
        let started = std::time::Instant::now();
        let request = request.into_inner();
        let repo = self.repo(&request.repo_path)?;
        let updates = parse_updates(&request.updates)?;
        let origin = push_origin(&request);
        let verdicts = crate::process::push::authorize_push(&self.app, &repo, &updates, &origin)
            .await
            .map_err(|e| Status::internal(format!("cannot authorize: {e}")))?;
        let allowed = verdicts.iter().all(|v| v.allowed);
        let metrics = self.app.metrics();
        metrics.authorize_seconds.observe(started.elapsed());
        crate::metrics::inc(if allowed {
            &metrics.pushes_allowed
        } else {
            &metrics.pushes_refused
        });
        if allowed {
            tracing::info!(repo = %repo, refs = updates.len(), "push allowed");
            self.app.push_started(&repo.identifier);
            // receive-pack locks these refs next; a lock a killed push left would fail it.
            let names = updates.iter().map(|u| u.name.clone()).collect();
            self.app.git().clear_stale_ref_locks(&repo, names).await;
        } else {
            tracing::info!(repo = %repo, refused = verdicts.iter().filter(|v| !v.allowed).count(), "push refused");
        }
        let mut verdicts: Vec<pb::RefVerdict> = verdicts
            .into_iter()
            .map(|v| pb::RefVerdict {
                ref_name: v.ref_name,
                allowed: v.allowed,
                message: v.message,
            })
            .collect();
        if !allowed {
            verdicts.push(pb::RefVerdict {
                ref_name: String::new(),
                allowed: false,
                message: if repo.is_pull_request_area() {
                    "graspd: push refused: a /prs/ repository takes refs/nostr/<event-id> refs of pull \
                     requests signed by its npub (GRASP-06)"
                } else {
                    "graspd: push refused: it must match the latest repository state signed by a maintainer"
                }
                .to_owned(),
            });
        }
        Ok(Response::new(pb::AuthorizePushResponse { allowed, verdicts }))
    }

    async fn report_push(
        &self,
        request: Request<pb::ReportPushRequest>,
    ) -> Result<Response<pb::ReportPushResponse>, Status> {
        let started = std::time::Instant::now();
        let request = request.into_inner();
        let repo = self.repo(&request.repo_path)?;
        let updates = parse_updates(&request.updates)?;
        self.app.push_ended(&repo.identifier);
        let result = process_push(&self.app, &repo, &updates, "push").await;
        self.app.metrics().report_seconds.observe(started.elapsed());
        Ok(Response::new(pb::ReportPushResponse {
            messages: result.summary(),
            result: Some(to_proto(&result)),
        }))
    }
}
