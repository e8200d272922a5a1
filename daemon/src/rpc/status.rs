//! `grasp.v1.StatusService`: the operator's view, answered from what the store, purgatory and the
//! repositories on disk actually hold.

use crate::sync::ThrottleManager;
use std::collections::BTreeSet;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use grasp_proto::v1 as pb;
use grasp_proto::v1::status_service_server::StatusService;
use nostr::{FromBech32, PublicKey};
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use crate::app::{App, Processed};
use crate::metrics::get;
use crate::nip34::{Announcement, Identifier, Nip34Kind, PullRequest, RepoId, RepoState, npub};
use crate::purgatory::{Entry, now_ms};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// How long a listing's later pages reuse the walk of the git root its first page made.
const LISTING_REUSE: std::time::Duration = std::time::Duration::from_secs(10);

/// The repositories on disk, sorted, as of a walk of the git root.
type Listing = std::sync::Arc<Vec<RepoId>>;

#[derive(Debug, Clone)]
pub struct StatusApi {
    app: App,
    /// Where the daemon listens, as shown by GetStatus.
    listen: Vec<String>,
    /// The sync loop's per-domain throttles, shown by ListSync.
    throttle: ThrottleManager,
    /// The event sync's per-relay status, shown by ListSync.
    event_sync: crate::sync::events::EventSyncStatus,
    /// The last walk of the git root, for the later pages of a listing.
    listing: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, Listing)>>>,
}

impl StatusApi {
    pub fn new(
        app: App,
        listen: Vec<String>,
        throttle: ThrottleManager,
        event_sync: crate::sync::events::EventSyncStatus,
    ) -> Self {
        Self {
            app,
            listen,
            throttle,
            event_sync,
            listing: Default::default(),
        }
    }

    /// Every repository on disk, sorted. A first page walks the git root (off the runtime's
    /// workers: 10,000 repositories are 10,000 directory reads and path checks); the pages after
    /// it (`continuing`) reuse that walk for [`LISTING_REUSE`], so paging through a big host
    /// walks it once rather than once a page.
    async fn repositories(&self, continuing: bool) -> Listing {
        let recent = |cached: &Option<(std::time::Instant, Listing)>| {
            cached
                .as_ref()
                .filter(|(at, _)| at.elapsed() < LISTING_REUSE)
                .map(|(_, repos)| repos.clone())
        };
        if continuing && let Some(repos) = recent(&self.listing.lock().unwrap_or_else(|p| p.into_inner())) {
            return repos;
        }
        let mut repos = self.app.git().repos_on_disk().await;
        repos.sort_by_cached_key(|r| r.to_string());
        let repos: Listing = std::sync::Arc::new(repos);
        *self.listing.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), repos.clone()));
        repos
    }

    async fn summary(&self, repo: &RepoId) -> Result<pb::RepositorySummary, Status> {
        let known = self.app.announcement(repo).await.map_err(internal)?;
        let has_data = self.app.git().has_refs(repo).await.map_err(internal)?;
        Ok(pb::RepositorySummary {
            owner_npub: repo.npub(),
            identifier: repo.identifier.to_string(),
            name: known
                .as_ref()
                .and_then(|k| k.announcement.name.clone())
                .unwrap_or_default(),
            announcement_pending: known.as_ref().is_some_and(|k| k.pending),
            has_data,
            pending_events: u32::try_from(self.app.purgatory().for_identifier(&repo.identifier).len())
                .unwrap_or(u32::MAX),
            archive: known
                .as_ref()
                .map(|k| self.why_archived(&k.announcement))
                .unwrap_or_default(),
        })
    }

    /// GRASP-05: why the repository is an archive; empty when it is hosted because its
    /// announcement lists this server.
    fn why_archived(&self, announcement: &Announcement) -> String {
        let config = self.app.config();
        let repo = &announcement.repo;
        let listed = crate::nip34::lists_server(announcement, &config.domain).is_ok();
        if listed && !config.archive.only && config.abuse.owner_allowed(&repo.owner) {
            return String::new();
        }
        config
            .archive
            .why_archived(&repo.owner, repo.identifier.as_str())
            .unwrap_or_else(|| "archived under rules no longer configured".to_owned())
    }

    /// Objects a waiting event needs that no hosted repository of its identifier holds.
    async fn missing(&self, entry: &Entry) -> Vec<String> {
        let wanted = match entry.kind {
            Nip34Kind::State => RepoState::parse(&entry.event)
                .map(|s| s.wanted_oids())
                .unwrap_or_default(),
            Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate => PullRequest::parse(&entry.event)
                .map(|p| vec![p.tip])
                .unwrap_or_default(),
            Nip34Kind::Announcement => Vec::new(),
        };
        let repos = match self.app.repo_group(&entry.identifier).await {
            Ok(group) => group
                .by_owner
                .keys()
                .map(|o| RepoId::new(*o, entry.identifier.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut missing = Vec::new();
        'oid: for oid in wanted {
            for repo in &repos {
                if self.app.git().has_objects(repo, vec![oid]).await.unwrap_or(false) {
                    continue 'oid;
                }
            }
            missing.push(oid.to_string());
        }
        missing
    }

    async fn entry(&self, entry: &Entry) -> pb::PurgatoryEntry {
        let now = now_ms();
        pb::PurgatoryEntry {
            kind: entry.kind.as_str().to_owned(),
            event_id: entry.event.id.to_hex(),
            identifier: entry.identifier.to_string(),
            author_npub: npub(&entry.event.pubkey),
            age_seconds: u64::try_from((now - entry.received_at_ms) / 1000).unwrap_or(0),
            deadline_ms: entry.expires_at_ms,
            missing_oids: self.missing(entry).await,
            source: entry.source.as_str().to_owned(),
        }
    }
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

/// `<npub>` + identifier from a request, validated.
fn repo_from(owner: &str, identifier: &str) -> Result<RepoId, Status> {
    let owner = PublicKey::from_bech32(owner)
        .map_err(|_| Status::invalid_argument(format!("'{owner}' is not an npub")))?;
    let identifier =
        Identifier::parse(identifier).map_err(|e| Status::invalid_argument(format!("identifier: {e}")))?;
    Ok(RepoId::new(owner, identifier))
}

pub fn processing_event(p: &Processed) -> pb::ProcessingEvent {
    pb::ProcessingEvent {
        source: p.source.to_owned(),
        repository: p.repo.to_string(),
        at_ms: p.at_ms,
        result: Some(super::hook::to_proto(&p.result)),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::ProcessingEvent, Status>> + Send>>;

#[tonic::async_trait]
impl StatusService for StatusApi {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let app = &self.app;
        let snapshot = app.snapshot().await;
        let stored = app.store().counts_by_kind().await.map_err(internal)?;
        let live_since = crate::purgatory::now_ms()
            - i64::try_from(3 * crate::sync::cluster::HEARTBEAT.as_millis()).unwrap_or(i64::MAX);
        let nodes = app.store().live_nodes(live_since).await.map_err(internal)?;
        let mut purgatory: std::collections::BTreeMap<u16, u64> = Default::default();
        for entry in app.purgatory().all() {
            *purgatory.entry(entry.event.kind.as_u16()).or_default() += 1;
        }
        let m = app.metrics();
        Ok(Response::new(pb::GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: m.started.elapsed().as_secs(),
            domain: app.config().domain.to_string(),
            listen: self.listen.clone(),
            database: app.store().backend().name().to_owned(),
            node_id: app.store().node_id().unwrap_or_default().to_owned(),
            leader: app.is_leader(),
            nodes: nodes
                .into_iter()
                .map(|node| pb::Node {
                    id: node.id,
                    address: node.address,
                    started_at_ms: node.started_at_ms,
                    seen_at_ms: node.seen_at_ms,
                })
                .collect(),
            git_root: app.config().git_root.display().to_string(),
            repositories: snapshot.repositories,
            stored_events: stored
                .into_iter()
                .map(|(kind, count)| pb::KindCount {
                    kind: kind.into(),
                    count,
                })
                .collect(),
            purgatory: purgatory
                .into_iter()
                .map(|(kind, count)| pb::KindCount {
                    kind: kind.into(),
                    count,
                })
                .collect(),
            sync_queue_length: snapshot.sync_queue_length,
            spooled_reports: snapshot.spooled_reports,
            placeholders: snapshot.placeholders,
            totals: Some(pb::Totals {
                events_accepted: get(&m.events_accepted),
                events_refused: get(&m.events_refused),
                events_to_purgatory: get(&m.events_to_purgatory),
                events_released: get(&m.events_released),
                pushes_allowed: get(&m.pushes_allowed),
                pushes_refused: get(&m.pushes_refused),
                syncs_ok: get(&m.syncs_ok),
                syncs_failed: get(&m.syncs_failed),
            }),
        }))
    }

    async fn list_repositories(
        &self,
        request: Request<pb::ListRepositoriesRequest>,
    ) -> Result<Response<pb::ListRepositoriesResponse>, Status> {
        let request = request.into_inner();
        let page = match request.page_size {
            0 => DEFAULT_PAGE,
            n => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
        };
        let listing = self.repositories(!request.page_token.is_empty()).await;
        let repos: Vec<&RepoId> = listing
            .iter()
            .filter(|r| request.owner_npub.is_empty() || r.npub() == request.owner_npub)
            .filter(|r| r.identifier.as_str().starts_with(&request.identifier_prefix))
            .collect();
        let start = if request.page_token.is_empty() {
            0
        } else {
            repos.partition_point(|r| r.to_string() <= request.page_token)
        };
        let slice: Vec<RepoId> = repos
            .iter()
            .skip(start)
            .take(page)
            .map(|r| (*r).clone())
            .collect();
        let next_page_token = if start + slice.len() < repos.len() {
            slice.last().map(|r| r.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        let mut repositories = Vec::with_capacity(slice.len());
        for repo in &slice {
            repositories.push(self.summary(repo).await?);
        }
        Ok(Response::new(pb::ListRepositoriesResponse {
            repositories,
            next_page_token,
        }))
    }

    async fn get_repository(
        &self,
        request: Request<pb::GetRepositoryRequest>,
    ) -> Result<Response<pb::GetRepositoryResponse>, Status> {
        let request = request.into_inner();
        let repo = repo_from(&request.owner_npub, &request.identifier)?;
        if !self.app.is_hosted(&repo).await.map_err(internal)? {
            return Err(Status::not_found(format!("no repository {repo} is hosted here")));
        }
        let group = self.app.repo_group(&repo.identifier).await.map_err(internal)?;
        let maintainers: BTreeSet<PublicKey> = group.maintainers(&repo.owner);
        let announcements = group
            .by_owner
            .values()
            .map(|k| pb::AnnouncementInfo {
                owner_npub: npub(&k.event.pubkey),
                event_id: k.event.id.to_hex(),
                created_at: i64::try_from(k.event.created_at.as_secs()).unwrap_or(i64::MAX),
                pending: k.pending,
                clone: k.announcement.clone.clone(),
                relays: k.announcement.relays.clone(),
                maintainers_npub: k.announcement.maintainers.iter().map(npub).collect(),
            })
            .collect();
        let state = crate::process::push::authoritative_state(&self.app, &repo, &maintainers)
            .await
            .map_err(internal)?;
        let on_disk = self.app.git().refs(&repo).await.map_err(internal)?;
        let mut names: BTreeSet<String> = on_disk.iter().map(|(n, _)| n.clone()).collect();
        if let Some((_, state)) = &state {
            names.extend(state.refs.keys().map(|r| r.to_string()));
            names.extend(state.unresolved.keys().map(|r| r.to_string()));
        }
        let refs = names
            .into_iter()
            .map(|name| pb::RefInfo {
                on_disk: on_disk
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, o)| o.to_string())
                    .unwrap_or_default(),
                in_state: state
                    .as_ref()
                    .and_then(|(_, s)| {
                        let found = s.refs.iter().find(|(r, _)| r.as_str() == name);
                        found.map(|(_, o)| o.to_string()).or_else(|| {
                            // Shown as the state wrote it: an abbreviated id is why it waits.
                            let unresolved = s.unresolved.iter().find(|(r, _)| r.as_str() == name);
                            unresolved.map(|(_, value)| value.clone())
                        })
                    })
                    .unwrap_or_default(),
                name,
            })
            .collect();
        let authoritative_state = state.as_ref().map(|(event, s)| pb::StateInfo {
            event_id: event.id.to_hex(),
            author_npub: npub(&event.pubkey),
            created_at: i64::try_from(event.created_at.as_secs()).unwrap_or(i64::MAX),
            pending: self.app.purgatory().contains(&event.id),
            head: s.head.as_ref().map(|h| h.0.to_string()).unwrap_or_default(),
        });
        let mut pending = Vec::new();
        for entry in self.app.purgatory().for_identifier(&repo.identifier) {
            pending.push(self.entry(&entry).await);
        }
        Ok(Response::new(pb::GetRepositoryResponse {
            summary: Some(self.summary(&repo).await?),
            announcements,
            maintainers_npub: maintainers.iter().map(npub).collect(),
            authoritative_state,
            refs,
            pending,
            last_push_ms: self.app.metrics().last_push_ms(&repo),
            last_sync_ms: self.app.metrics().last_sync_ms(&repo),
            refs_lag_state: crate::process::lag::lagging(&self.app, &repo.identifier)
                .await
                .map_err(internal)?
                .iter()
                .any(|lag| lag.repo == repo),
        }))
    }

    async fn list_purgatory(
        &self,
        request: Request<pb::ListPurgatoryRequest>,
    ) -> Result<Response<pb::ListPurgatoryResponse>, Status> {
        let identifier = request.into_inner().identifier;
        let mut entries: Vec<_> = self
            .app
            .purgatory()
            .all()
            .into_iter()
            .filter(|e| identifier.is_empty() || e.identifier.as_str() == identifier)
            .collect();
        entries.sort_by_key(|e| (e.expires_at_ms, e.event.id));
        let mut out = Vec::with_capacity(entries.len());
        for entry in &entries {
            out.push(self.entry(entry).await);
        }
        Ok(Response::new(pb::ListPurgatoryResponse { entries: out }))
    }

    async fn list_sync(
        &self,
        _: Request<pb::ListSyncRequest>,
    ) -> Result<Response<pb::ListSyncResponse>, Status> {
        let now = tokio::time::Instant::now();
        let queue = self
            .app
            .sync_queue()
            .entries()
            .into_iter()
            .map(|(identifier, entry)| pb::SyncQueueEntry {
                identifier: identifier.to_string(),
                next_attempt_in_ms: i64::try_from(
                    entry.next_attempt.saturating_duration_since(now).as_millis(),
                )
                .unwrap_or(i64::MAX),
                attempt_count: entry.attempt_count,
                in_progress: entry.in_progress,
            })
            .collect();
        let throttles = self
            .throttle
            .snapshot(now)
            .into_iter()
            .map(|(domain, in_flight, last_minute, waiting)| pb::DomainThrottle {
                domain,
                in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
                requests_last_minute: u32::try_from(last_minute).unwrap_or(u32::MAX),
                queued_identifiers: waiting.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let relays = self
            .event_sync
            .snapshot()
            .into_iter()
            .map(|relay| pb::RelaySync {
                url: relay.url,
                connected: relay.connected,
                method: match relay.negentropy {
                    Some(true) => "nip77",
                    Some(false) => "req",
                    None => "",
                }
                .to_owned(),
                repositories: u32::try_from(relay.repositories).unwrap_or(u32::MAX),
                filters: u32::try_from(relay.filters).unwrap_or(u32::MAX),
                last_full_pass: relay.last_full_pass.unwrap_or(0),
                fetched: relay.fetched,
                accepted: relay.accepted,
                held: relay.held,
                refused: relay.refused,
                duplicates: relay.duplicates,
                errors: relay.errors,
                last_error: relay.last_error.unwrap_or_default(),
                retry_at: relay.retry_at.unwrap_or(0),
                given_up: relay.given_up,
            })
            .collect();
        Ok(Response::new(pb::ListSyncResponse {
            queue,
            throttles,
            sync_enabled: true,
            event_sync_enabled: self.app.config().event_sync.enabled,
            relays,
        }))
    }

    async fn trigger_sync(
        &self,
        request: Request<pb::TriggerSyncRequest>,
    ) -> Result<Response<pb::TriggerSyncResponse>, Status> {
        let identifier = request.into_inner().identifier;
        let identifier = Identifier::parse(&identifier)
            .map_err(|e| Status::invalid_argument(format!("identifier: {e}")))?;
        if self.app.purgatory().for_identifier(&identifier).is_empty() {
            return Ok(Response::new(pb::TriggerSyncResponse {
                queued: false,
                message: format!("nothing waits in purgatory for '{identifier}'; nothing to sync"),
            }));
        }
        self.app
            .sync_queue()
            .enqueue(identifier.clone(), std::time::Duration::ZERO);
        Ok(Response::new(pb::TriggerSyncResponse {
            queued: true,
            message: format!("'{identifier}' queued for sync now"),
        }))
    }

    type WatchProcessingStream = WatchStream;

    async fn watch_processing(
        &self,
        _: Request<pb::WatchProcessingRequest>,
    ) -> Result<Response<Self::WatchProcessingStream>, Status> {
        let stream = BroadcastStream::new(self.app.subscribe_processed())
            .filter_map(|item| async move { item.ok().map(|p| Ok(processing_event(&p))) });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paging through the repositories on disk lists each exactly once, in order, and the pages
    /// after the first reuse the first page's walk: a repository created mid-listing is not
    /// listed by it, and is by the next listing.
    #[tokio::test]
    async fn pages_list_every_repository_once_from_one_walk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = App::open(crate::testing::config(dir.path())).await.expect("app");
        let owner = nostr::Keys::generate().public_key();
        let repo = |name: &str| RepoId::new(owner, Identifier::parse(name).expect("identifier"));
        for name in ["e", "a", "d", "b", "c"] {
            app.git().provision(&repo(name)).await.expect("provision");
        }
        let throttle = crate::sync::throttle_for(&app.config().sync);
        let api = StatusApi::new(app.clone(), Vec::new(), throttle, Default::default());
        let list = |token: String| {
            let api = api.clone();
            async move {
                let request = pb::ListRepositoriesRequest {
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                };
                api.list_repositories(Request::new(request))
                    .await
                    .expect("page")
                    .into_inner()
            }
        };
        let mut listed = Vec::new();
        let mut token = String::new();
        loop {
            let page = list(token).await;
            listed.extend(page.repositories.iter().map(|r| r.identifier.clone()));
            if listed.len() == 2 {
                app.git().provision(&repo("bb")).await.expect("provision");
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(listed, ["a", "b", "c", "d", "e"]);
        let first = list(String::new()).await;
        let names: Vec<&str> = first.repositories.iter().map(|r| r.identifier.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let second = list(first.next_page_token).await;
        assert_eq!(
            second.repositories[0].identifier, "bb",
            "a new listing walks again"
        );
    }
}
