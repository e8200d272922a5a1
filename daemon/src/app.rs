//! `App`: the handle every part of the daemon shares — configuration, store, purgatory and the git
//! root. Cloning is shallow (one `Arc`).

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use nostr::{Event, Kind, PublicKey};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::git::GitRepos;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::nip34::{Announcement, Identifier, KIND_ANNOUNCEMENT, Nip34Kind, RepoId};
use crate::purgatory::Purgatory;
use crate::store::{Store, StoreError, StoreSettings};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {url}: {source}")]
    Store { url: String, source: StoreError },
}

#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    purgatory: Purgatory,
    git: GitRepos,
    /// Open subscriptions, to which every event that becomes served is delivered.
    live: Live,
    /// One lock per identifier: git data for one identifier is processed by one task at a time,
    /// so two pushes cannot interleave their ref alignments.
    identifier_locks: DashMap<Identifier, Arc<tokio::sync::Mutex<()>>>,
    /// Pushes allowed by their pre-receive whose post-receive has not reported yet, per
    /// identifier: how many, and when the last began (see [`App::push_in_flight`]).
    pushes_in_flight: DashMap<Identifier, (u32, std::time::Instant)>,
    metrics: Metrics,
    /// Identifiers whose waiting events need git data from other servers (shared with the sync
    /// loop, which consumes it).
    sync_queue: crate::queue::SyncQueue,
    /// Every processing result, for `StatusService.WatchProcessing`.
    processed: broadcast::Sender<Processed>,
    /// Repositories waiting for `git maintenance` (consumed by `process::maintenance::run`).
    housekeeping: crate::queue::Housekeeping,
    /// Repositories created in the last hour, per owner and client address (the write policy's
    /// `--max-new-repos-per-hour-*`).
    creations: crate::queue::Hourly,
    pull_request_pushes: crate::queue::Hourly,
    /// What `/readyz` reports besides the store and the git root.
    readiness: Readiness,
    /// This node runs the periodic sweeps (always, on SQLite; on PostgreSQL, the one node that
    /// holds the leader lock: see `sync::cluster`).
    leader: std::sync::atomic::AtomicBool,
}

/// How long an allowed push counts as in flight without its report (see [`App::push_in_flight`]):
/// after its pre-receive, git only moves the objects it received and updates refs.
pub const PUSH_IN_FLIGHT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// An identifier's lock (see [`App::lock_identifier`]); released when dropped.
#[derive(Debug)]
pub struct IdentifierGuard {
    // Dropped first: the other nodes may go on before this process's other tasks.
    _cluster: Option<crate::store::ClusterLock>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// Flags the serving tasks set for the readiness probe (`/readyz`).
#[derive(Debug, Default)]
pub struct Readiness {
    /// The gRPC server on the Unix socket is serving (the hooks of a push can reach us).
    pub grpc_serving: std::sync::atomic::AtomicBool,
    /// Shutdown has begun: a balancer should stop sending new work.
    pub stopping: std::sync::atomic::AtomicBool,
}

/// One run of the unified procedure, as watchers see it.
#[derive(Debug, Clone)]
pub struct Processed {
    /// "push", "spool", "reconcile" or "sync".
    pub source: &'static str,
    pub repo: RepoId,
    pub at_ms: i64,
    pub result: crate::types::ProcessResult,
}

/// One owner's newest announcement for an identifier, from the store or from purgatory.
#[derive(Debug, Clone)]
pub struct KnownAnnouncement {
    pub announcement: Announcement,
    pub event: Event,
    pub pending: bool,
}

/// Every owner's announcement for one identifier, with maintainer-set queries over them.
#[derive(Debug, Clone, Default)]
pub struct RepoGroup {
    pub by_owner: BTreeMap<PublicKey, KnownAnnouncement>,
}

impl RepoGroup {
    /// The recursive maintainer set of `owner`'s repository (always includes the owner).
    pub fn maintainers(&self, owner: &PublicKey) -> std::collections::BTreeSet<PublicKey> {
        crate::nip34::maintainer_set(*owner, |key| {
            self.by_owner
                .get(key)
                .map(|k| k.announcement.maintainers.clone())
                .unwrap_or_default()
        })
    }

    /// Owners whose repository `author` may speak for.
    pub fn owners_authorizing(&self, author: &PublicKey) -> Vec<PublicKey> {
        self.by_owner
            .keys()
            .filter(|owner| self.maintainers(owner).contains(author))
            .copied()
            .collect()
    }
}

impl App {
    /// Creates the data directories, opens the store (running migrations) and reloads purgatory.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        for dir in [&config.data_dir, &config.git_root] {
            std::fs::create_dir_all(dir).map_err(|source| StartError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        let store_error = |source| StartError::Store {
            url: config.database_url.clone(),
            source,
        };
        let settings = StoreSettings {
            wal_checkpoint_mib: config.wal_checkpoint_mib,
        };
        let store = Store::open_with(&config.database_url, settings)
            .await
            .map_err(store_error)?;
        let purgatory = Purgatory::load(store.clone(), config.purgatory_expiry)
            .await
            .map_err(store_error)?;
        let git = GitRepos::new(
            config.git_root.clone(),
            config.hooks.clone(),
            config.git_program.clone(),
            config.initial_head.clone(),
        );
        let only_node = store.backend() == crate::store::Backend::Sqlite;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                purgatory,
                git,
                live: Live::new(),
                identifier_locks: DashMap::new(),
                pushes_in_flight: DashMap::new(),
                metrics: Metrics::default(),
                sync_queue: crate::queue::SyncQueue::new(),
                processed: broadcast::channel(256).0,
                housekeeping: Default::default(),
                creations: Default::default(),
                pull_request_pushes: Default::default(),
                readiness: Readiness::default(),
                leader: std::sync::atomic::AtomicBool::new(only_node),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn purgatory(&self) -> &Purgatory {
        &self.inner.purgatory
    }

    pub fn git(&self) -> &GitRepos {
        &self.inner.git
    }

    /// New repositories per owner and client address, within the hour.
    pub fn creations(&self) -> &crate::queue::Hourly {
        &self.inner.creations
    }

    /// Pushes of pull request refs only (anyone may send one) per owner and client address,
    /// within the hour.
    pub fn pull_request_pushes(&self) -> &crate::queue::Hourly {
        &self.inner.pull_request_pushes
    }

    pub fn housekeeping(&self) -> &crate::queue::Housekeeping {
        &self.inner.housekeeping
    }

    pub fn sync_queue(&self) -> &crate::queue::SyncQueue {
        &self.inner.sync_queue
    }

    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Gauges read from the store, purgatory and disk (for `/metrics` and `GetStatus`).
    pub async fn snapshot(&self) -> crate::metrics::Snapshot {
        let git = self.git().clone();
        let (repositories, spooled_reports) = tokio::task::spawn_blocking(move || {
            let spooled = std::fs::read_dir(&git.hooks().spool_dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.path().extension().is_some_and(|x| x == "report"))
                        .count()
                })
                .unwrap_or(0);
            (git.list_repo_dirs().len(), spooled)
        })
        .await
        .unwrap_or((0, 0));
        crate::metrics::Snapshot {
            repositories: repositories as u64,
            purgatory_entries: self.purgatory().len() as u64,
            placeholders: self.purgatory().placeholder_count() as u64,
            sync_queue_length: self.inner.sync_queue.len() as u64,
            maintenance_queue_length: self.inner.housekeeping.len() as u64,
            spooled_reports: spooled_reports as u64,
            stored_events: self
                .store()
                .event_count()
                .await
                .map(|n| u64::try_from(n).unwrap_or(0))
                .unwrap_or(0),
            store_filter_bytes: self.store().filter_bytes() as u64,
            live_subscriptions: self.live().subscriptions() as u64,
        }
    }

    /// Tells watchers what a run of the unified procedure did.
    pub fn publish_processed(
        &self,
        source: &'static str,
        repo: &RepoId,
        result: &crate::types::ProcessResult,
    ) {
        let at_ms = crate::purgatory::now_ms();
        if source == "push" {
            self.inner.metrics.note_push(repo, at_ms);
        } else if source == "sync" {
            self.inner.metrics.note_sync(repo, at_ms);
        }
        let _ = self.inner.processed.send(Processed {
            source,
            repo: repo.clone(),
            at_ms,
            result: result.clone(),
        });
    }

    pub fn subscribe_processed(&self) -> broadcast::Receiver<Processed> {
        self.inner.processed.subscribe()
    }

    /// Serializes work on one identifier's repositories (see `identifier_locks`). On
    /// PostgreSQL the lock is also taken across every node on the database, and what this node
    /// holds in memory for the identifier (purgatory, placeholders, cached addresses) is brought
    /// up to date before the caller decides anything: another node may have changed it a moment
    /// ago. Should the database not answer, the in-process lock alone is held (the writes that
    /// follow would fail on their own).
    pub async fn lock_identifier(&self, identifier: &Identifier) -> IdentifierGuard {
        let lock = Arc::clone(
            self.inner
                .identifier_locks
                .entry(identifier.clone())
                .or_default()
                .value(),
        );
        let local = lock.lock_owned().await;
        let cluster = match self.store().lock_identifier(identifier.as_str()).await {
            Ok(Some(cluster)) => {
                self.catch_up(identifier).await;
                Some(cluster)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%identifier, %error, "cannot take the identifier's lock across nodes");
                None
            }
        };
        IdentifierGuard {
            _cluster: cluster,
            _local: local,
        }
    }

    /// Whether this node runs the periodic sweeps (expiry, housekeeping and GRASP-06 sweeps, the
    /// refs check, the event sync): always on SQLite; on PostgreSQL only the leader.
    pub fn is_leader(&self) -> bool {
        self.inner.leader.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Set by `sync::cluster` as this node takes or loses the leader lock.
    pub fn set_leader(&self, leader: bool) {
        self.inner
            .leader
            .store(leader, std::sync::atomic::Ordering::Relaxed);
    }

    /// On PostgreSQL, brings what this node holds in memory for `identifier` (purgatory,
    /// placeholders, cached addresses) up to what the database says, which other nodes may have
    /// changed a moment ago; nothing to do on SQLite. Failures are logged: the decision that
    /// follows then uses what this node knew.
    pub async fn catch_up(&self, identifier: &Identifier) {
        if self.store().backend() != crate::store::Backend::Postgres {
            return;
        }
        let caught_up = async {
            self.store().catch_up().await?;
            self.purgatory().refresh(identifier).await
        };
        if let Err(error) = caught_up.await {
            tracing::warn!(%identifier, %error, "cannot read what other nodes changed");
        }
    }

    /// A push to `identifier` was allowed: git is about to move its objects out of quarantine
    /// and update its refs.
    pub fn push_started(&self, identifier: &Identifier) {
        let mut entry = self
            .inner
            .pushes_in_flight
            .entry(identifier.clone())
            .or_insert((0, std::time::Instant::now()));
        entry.0 += 1;
        entry.1 = std::time::Instant::now();
    }

    /// A push to `identifier` reported (its post-receive ran).
    pub fn push_ended(&self, identifier: &Identifier) {
        self.inner
            .pushes_in_flight
            .remove_if_mut(identifier, |_, (count, _)| {
                *count = count.saturating_sub(1);
                *count == 0
            });
    }

    /// Whether a push to `identifier` is between its pre-receive and its post-receive: its
    /// objects may be in the repository already and its refs not yet updated. Aligning the refs
    /// then (the sync's retry of the procedure on data already here) would fail the push, whose
    /// post-receive runs the procedure anyway. A push that never reports (receive-pack failed after
    /// its pre-receive, or the report went to the spool) counts for [`PUSH_IN_FLIGHT_FOR`] at most.
    pub fn push_in_flight(&self, identifier: &Identifier) -> bool {
        let stale = match self.inner.pushes_in_flight.get(identifier) {
            None => return false,
            Some(entry) => entry.1.elapsed() >= PUSH_IN_FLIGHT_FOR,
        };
        if stale {
            self.inner
                .pushes_in_flight
                .remove_if(identifier, |_, (_, since)| since.elapsed() >= PUSH_IN_FLIGHT_FOR);
        }
        !stale
    }

    /// Open subscriptions (the websocket bridge registers its clients' REQs there).
    pub fn live(&self) -> &Live {
        &self.inner.live
    }

    /// Delivers `event`, now served, to the open subscriptions it matches.
    pub fn publish_served(&self, event: &Event) {
        self.inner.live.publish(event);
    }

    /// Every owner's newest announcement for `identifier`, stored or pending.
    pub async fn repo_group(&self, identifier: &Identifier) -> Result<RepoGroup, StoreError> {
        let mut group = RepoGroup::default();
        let stored = self
            .store()
            .by_identifier(Kind::from(KIND_ANNOUNCEMENT), identifier.as_str())
            .await?;
        let pending = self
            .purgatory()
            .for_identifier(identifier)
            .into_iter()
            .filter(|e| e.kind == Nip34Kind::Announcement)
            .map(|e| (e.event.clone(), true));
        for (event, is_pending) in stored.into_iter().map(|e| (e, false)).chain(pending) {
            let Ok(announcement) = Announcement::parse(&event) else {
                continue;
            };
            let newer = match group.by_owner.get(&event.pubkey) {
                Some(known) => crate::purgatory::is_newer(&event, &known.event),
                None => true,
            };
            if newer {
                group.by_owner.insert(
                    event.pubkey,
                    KnownAnnouncement {
                        announcement,
                        event,
                        pending: is_pending,
                    },
                );
            }
        }
        Ok(group)
    }

    /// Whether this server hosts (owner, identifier): an announcement is stored or pending and
    /// the repository exists on disk.
    pub async fn is_hosted(&self, repo: &RepoId) -> Result<bool, StoreError> {
        // A contributor's `/prs/` repository (GRASP-06) is never an announced one, even when the
        // contributor announced a repository of the same name.
        if repo.is_pull_request_area() || !self.git().exists(repo) {
            return Ok(false);
        }
        if self.purgatory().announcement(repo).is_some() {
            return Ok(true);
        }
        self.store()
            .has_event_at(
                Kind::from(KIND_ANNOUNCEMENT),
                &repo.owner,
                repo.identifier.as_str(),
            )
            .await
    }

    /// The newest announcement of a repository, stored or pending.
    pub async fn announcement(&self, repo: &RepoId) -> Result<Option<KnownAnnouncement>, StoreError> {
        let group = self.repo_group(&repo.identifier).await?;
        Ok(group.by_owner.get(&repo.owner).cloned())
    }
}

#[cfg(test)]
mod tests {
    use nostr::event::FinalizeEvent;
    use nostr::{EventBuilder, Keys, Tag, Timestamp};

    use super::*;

    #[tokio::test]
    async fn a_push_is_in_flight_from_its_pre_receive_to_its_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = App::open(crate::testing::config(dir.path())).await.expect("app");
        let (one, other) = (
            Identifier::parse("one").expect("id"),
            Identifier::parse("other").expect("id"),
        );
        assert!(!app.push_in_flight(&one));
        app.push_started(&one);
        app.push_started(&one);
        assert!(app.push_in_flight(&one));
        assert!(!app.push_in_flight(&other));
        app.push_ended(&one);
        assert!(app.push_in_flight(&one), "the second push still lands");
        app.push_ended(&one);
        assert!(!app.push_in_flight(&one));
        // A report without its start (the spool, a restart) changes nothing.
        app.push_ended(&other);
        assert!(!app.push_in_flight(&other));
    }

    fn announcement(owner: &Keys, maintainers: &[&Keys], at: u64) -> KnownAnnouncement {
        let mut tags = vec![Tag::parse(["d", "repo"]).expect("tag")];
        if !maintainers.is_empty() {
            let mut list = vec!["maintainers".to_owned()];
            list.extend(maintainers.iter().map(|k| k.public_key().to_hex()));
            tags.push(Tag::parse(list).expect("tag"));
        }
        let event = EventBuilder::new(Kind::from(KIND_ANNOUNCEMENT), "")
            .tags(tags)
            .custom_created_at(Timestamp::from(at))
            .finalize(owner)
            .expect("sign");
        KnownAnnouncement {
            announcement: Announcement::parse(&event).expect("parse"),
            event,
            pending: false,
        }
    }

    #[test]
    fn owners_authorizing_follows_chains_and_a_newer_announcement_removes_a_maintainer() {
        let (o, m, n, stranger) = (
            Keys::generate(),
            Keys::generate(),
            Keys::generate(),
            Keys::generate(),
        );
        let mut group = RepoGroup::default();
        group.by_owner.insert(o.public_key(), announcement(&o, &[&m], 10));
        group.by_owner.insert(m.public_key(), announcement(&m, &[&n], 10));
        assert_eq!(
            group.owners_authorizing(&n.public_key()).len(),
            2,
            "n maintains o's (via m) and m's"
        );
        assert!(group.owners_authorizing(&stranger.public_key()).is_empty());
        // The owner's newer announcement lists nobody: only the owner speaks for its repository.
        group.by_owner.insert(o.public_key(), announcement(&o, &[], 20));
        assert_eq!(group.owners_authorizing(&n.public_key()), vec![m.public_key()]);
        assert_eq!(group.maintainers(&o.public_key()).len(), 1);
    }
}
