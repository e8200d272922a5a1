//! The real [`SyncContext`]: purgatory and the store say what is missing and where it may be,
//! `git fetch` brings it, the unified procedure releases what it satisfies.

use std::collections::{BTreeSet, HashSet};
use std::process::Stdio;
use std::time::Duration;

use super::address::FetchGuard;
use super::{Needed, SyncContext, SyncError, SyncQueue, SyncUrl, delay_for};
use crate::app::{App, RepoGroup};
use crate::config::Domain;
use crate::git::Oid;
use crate::nip34::{Identifier, Nip34Kind, PullRequest, RepoId, RepoState};
use crate::process::ProcessResult;
use crate::purgatory::{Entry, now_ms};

/// Longest stderr excerpt kept from a failed fetch (it ends up in logs).
const MAX_STDERR: usize = 500;

/// What git says when a server lacks one of the objects asked for: the whole batch fails, so
/// each object is then asked for on its own (different maintainers' states may need objects
/// that live on different servers).
const MISSING_OBJECT_MARKERS: &[&str] = &["not our ref", "unadvertised object", "no such remote ref"];

/// [`SyncContext`] over the daemon's [`App`]. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct RealSyncContext {
    app: App,
}

impl RealSyncContext {
    pub fn new(app: App) -> Self {
        Self { app }
    }

    /// The repository fetches go into: the first hosted repository of the identifier (owners in
    /// key order, so the choice is stable between the look and the fetch).
    fn target(&self, group: &RepoGroup, identifier: &Identifier) -> Option<RepoId> {
        group
            .by_owner
            .keys()
            .map(|owner| RepoId::new(*owner, identifier.clone()))
            .find(|repo| self.app.git().exists(repo))
    }

    /// One `git fetch` of `oids` from `url` into `target`, killed after the fetch timeout. The
    /// objects land in the object store only: no refspec (so no ref is written), no tags, no
    /// FETCH_HEAD, no prompt, no credential helper, and only http(s) transports. `guard` holds
    /// the settings from the address check (`sync::address`).
    async fn git_fetch(
        &self,
        target: &RepoId,
        url: &SyncUrl,
        guard: &FetchGuard,
        oids: &[&Oid],
    ) -> Result<(), SyncError> {
        let timeout = self.app.config().sync.fetch_timeout;
        let mut command = tokio::process::Command::new(self.app.git().git_program());
        command
            .arg("-C")
            .arg(self.app.git().path(target))
            .args(["-c", "credential.helper="]);
        for setting in &guard.git_config {
            command.arg("-c").arg(setting);
        }
        command
            .args([
                "fetch",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-auto-gc",
                "--no-recurse-submodules",
                "--quiet",
            ])
            .arg(url.as_str())
            .args(oids.iter().map(|oid| oid.to_string()))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "http:https")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Dropping the future on timeout (or shutdown) kills git.
            .kill_on_drop(true);
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Err(_) => {
                return Err(SyncError::Timeout {
                    url: url.to_string(),
                    after: timeout,
                });
            }
            Ok(Err(source)) => return Err(SyncError::Spawn(source)),
            Ok(Ok(output)) => output,
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(SyncError::Fetch {
            url: url.to_string(),
            stderr: stderr.trim().chars().take(MAX_STDERR).collect(),
        })
    }

    /// `git fetch` of all of `sorted` (the host already checked: `guard`); when the server lacks
    /// some of them, one object at a time, to take what it has.
    async fn git_fetch_all(
        &self,
        target: &RepoId,
        url: &SyncUrl,
        guard: &FetchGuard,
        sorted: &[&Oid],
    ) -> Result<(), SyncError> {
        match self.git_fetch(target, url, guard, sorted).await {
            Err(SyncError::Fetch { stderr, .. })
                if sorted.len() > 1
                    && MISSING_OBJECT_MARKERS
                        .iter()
                        .any(|marker| stderr.to_ascii_lowercase().contains(marker)) =>
            {
                let mut last = Ok(());
                for oid in sorted {
                    last = self.git_fetch(target, url, guard, &[oid]).await;
                    if matches!(last, Err(SyncError::Timeout { .. } | SyncError::Spawn(_))) {
                        break;
                    }
                }
                last
            }
            other => other,
        }
    }
}

/// Waiting entries the sync can help: states and pull requests (announcements wait for a push).
fn needs_git_data(entry: &Entry) -> bool {
    matches!(
        entry.kind,
        Nip34Kind::State | Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate
    )
}

impl SyncContext for RealSyncContext {
    async fn needed(&self, identifier: &Identifier) -> Result<Option<Needed>, SyncError> {
        let entries: Vec<_> = self
            .app
            .purgatory()
            .for_identifier(identifier)
            .into_iter()
            .filter(|entry| needs_git_data(entry))
            .collect();
        // Repositories whose refs lag their stored state (see `process::lag`).
        let lags = crate::process::lag::lagging(&self.app, identifier)
            .await
            .map_err(|error| SyncError::Process(error.to_string()))?;
        let pull_request_lags = crate::process::lag::lagging_pull_requests(&self.app, identifier)
            .await
            .map_err(|error| SyncError::Process(error.to_string()))?;
        if entries.is_empty() && lags.is_empty() && pull_request_lags.is_empty() {
            return Ok(None);
        }
        let group = self.app.repo_group(identifier).await?;
        let Some(target) = self.target(&group, identifier) else {
            return Ok(None);
        };
        let mut wanted = BTreeSet::new();
        for entry in &entries {
            match entry.kind {
                Nip34Kind::State => {
                    let Ok(state) = RepoState::parse(&entry.event) else {
                        continue;
                    };
                    // Fetching for a state nobody hosted lets its author speak for, or for
                    // one that names refs by abbreviated ids, would be wasted: the procedure
                    // would not release it.
                    if state.is_satisfiable() && !group.owners_authorizing(&state.author).is_empty() {
                        wanted.extend(state.wanted_oids());
                    }
                }
                Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate => {
                    if let Ok(pr) = PullRequest::parse(&entry.event) {
                        wanted.insert(pr.tip);
                    }
                }
                Nip34Kind::Announcement => {}
            }
        }
        for lag in lags {
            wanted.extend(lag.state.wanted_oids());
        }
        wanted.extend(pull_request_lags.iter().map(|lag| lag.pull_request.tip));
        if wanted.is_empty() {
            return Ok(None);
        }
        let oids = self
            .app
            .git()
            .missing_objects(&target, wanted.into_iter().collect())
            .await?;
        Ok((!oids.is_empty()).then_some(Needed { target, oids }))
    }

    async fn candidate_urls(&self, identifier: &Identifier) -> Result<Vec<String>, SyncError> {
        let group = self.app.repo_group(identifier).await?;
        let mut urls: Vec<String> = group
            .by_owner
            .values()
            .flat_map(|known| known.announcement.clone.iter().cloned())
            .collect();
        for entry in self.app.purgatory().for_identifier(identifier) {
            if matches!(entry.kind, Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate)
                && let Ok(pr) = PullRequest::parse(&entry.event)
            {
                urls.extend(pr.clone);
            }
        }
        // Lagging pull request refs: their tips may be only where their authors pushed them.
        if let Ok(lags) = crate::process::lag::lagging_pull_requests(&self.app, identifier).await {
            urls.extend(lags.into_iter().flat_map(|lag| lag.pull_request.clone));
        }
        Ok(urls)
    }

    async fn fetch(
        &self,
        target: &RepoId,
        url: &SyncUrl,
        oids: &HashSet<Oid>,
    ) -> Result<HashSet<Oid>, SyncError> {
        // One node fetches an identifier at a time (PostgreSQL, several nodes on one git root);
        // the others find its objects on disk at their next look.
        let claim = match self.app.store().claim_sync(target.identifier.as_str()).await {
            Ok(Some(claim)) => claim,
            Ok(None) => {
                tracing::debug!(repo = %target, "another node is fetching this identifier");
                return Ok(HashSet::new());
            }
            Err(error) => return Err(error.into()),
        };
        // Another node may have fetched them while this one waited for the claim.
        let missing = self
            .app
            .git()
            .missing_objects(target, oids.iter().cloned().collect())
            .await?;
        if missing.is_empty() {
            return Ok(oids.clone());
        }
        let started = std::time::Instant::now();
        let mut sorted: Vec<&Oid> = oids.iter().collect();
        sorted.sort();
        let outcome = match super::address::check(url, self.app.config().sync.private_addresses).await {
            Ok(guard) => self.git_fetch_all(target, url, &guard, &sorted).await,
            Err(error) => Err(error),
        };
        let still_missing = self
            .app
            .git()
            .missing_objects(target, oids.iter().cloned().collect())
            .await?;
        let arrived: HashSet<Oid> = oids.difference(&still_missing).cloned().collect();
        drop(claim);
        let metrics = self.app.metrics();
        match outcome {
            Err(error) if arrived.is_empty() => {
                crate::metrics::inc(&metrics.syncs_failed);
                metrics.sync_fetch_failed_seconds.observe(started.elapsed());
                tracing::info!(repo = %target, url = url.as_str(), %error, "sync fetch failed");
                Err(error)
            }
            _ => {
                crate::metrics::inc(&metrics.syncs_ok);
                metrics.sync_fetch_ok_seconds.observe(started.elapsed());
                tracing::info!(repo = %target, url = url.as_str(), objects = arrived.len(), "sync fetch brought objects");
                Ok(arrived)
            }
        }
    }

    async fn process_newly_available_git_data(
        &self,
        target: &RepoId,
        new_oids: &HashSet<Oid>,
    ) -> ProcessResult {
        let result = crate::process::process_fetched_git_data(&self.app, target, new_oids).await;
        self.app.publish_processed("sync", target, &result);
        result
    }

    async fn process_data_on_disk(&self, identifier: &Identifier) -> ProcessResult {
        crate::process::process_data_on_disk(&self.app, identifier, "sync").await
    }

    fn push_in_flight(&self, identifier: &Identifier) -> bool {
        self.app.push_in_flight(identifier)
    }

    fn has_pending_events(&self, identifier: &Identifier) -> bool {
        self.app
            .purgatory()
            .for_identifier(identifier)
            .iter()
            .any(|entry| needs_git_data(entry))
    }

    fn our_domain(&self) -> &Domain {
        &self.app.config().domain
    }
}

/// Queues every identifier whose states or pull requests wait in purgatory (at start: the queue
/// lives in memory, purgatory on disk). Each waits what is left of its delay since its newest
/// event arrived, and at least the immediate delay. Returns how many were queued.
pub fn enqueue_waiting(app: &App, queue: &SyncQueue) -> usize {
    let mut queued = 0;
    for identifier in app.purgatory().identifiers() {
        if enqueue_identifier(app, queue, identifier) {
            queued += 1;
        }
    }
    queued
}

/// Queues `identifier` if states or pull requests of it wait for git data, after what is left
/// of the delay since its newest such event arrived (at least the immediate delay). Returns
/// whether it queued.
pub fn enqueue_identifier(app: &App, queue: &SyncQueue, identifier: Identifier) -> bool {
    let settings = &app.config().sync;
    let now = now_ms();
    let delay = app
        .purgatory()
        .for_identifier(&identifier)
        .iter()
        .filter(|entry| needs_git_data(entry))
        .map(|entry| {
            let waited = u64::try_from(now.saturating_sub(entry.received_at_ms)).unwrap_or(0);
            delay_for(settings, entry.source)
                .saturating_sub(Duration::from_millis(waited))
                .max(settings.immediate_delay)
        })
        .min();
    if let Some(delay) = delay {
        queue.enqueue(identifier, delay);
    }
    delay.is_some()
}

#[cfg(test)]
mod tests {
    use nostr::event::FinalizeEvent;
    use nostr::{Event, EventBuilder, Keys, Kind, Tag};

    use super::*;
    use crate::nip34::{KIND_ANNOUNCEMENT, KIND_PULL_REQUEST, KIND_STATE};
    use crate::purgatory::Source;

    async fn app(dir: &std::path::Path) -> App {
        App::open(crate::testing::config(dir)).await.expect("app")
    }

    fn event(keys: &Keys, kind: u16, tags: Vec<Vec<String>>) -> Event {
        EventBuilder::new(Kind::from(kind), "")
            .tags(tags.into_iter().map(|t| Tag::parse(t).expect("tag")))
            .finalize(keys)
            .expect("sign")
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    /// A commit in the repository at `path`.
    fn commit(path: &std::path::Path) -> Oid {
        let repository = git2::Repository::open_bare(path).expect("repository");
        let tree = repository
            .treebuilder(None)
            .and_then(|b| b.write())
            .expect("tree");
        let tree = repository.find_tree(tree).expect("tree");
        let who = git2::Signature::now("t", "t@example").expect("signature");
        let id = repository
            .commit(None, &who, &who, "c", &tree, &[])
            .expect("commit");
        Oid::parse(&id.to_string()).expect("oid")
    }

    async fn wait(app: &App, event: Event, kind: Nip34Kind, identifier: &Identifier, source: Source) {
        app.purgatory()
            .insert(event, kind, identifier.clone(), source)
            .await
            .expect("purgatory");
    }

    /// Serves the files under `root` over plain HTTP (git's "dumb" protocol), enough for a real
    /// `git fetch` without a second daemon.
    async fn serve_files(root: std::path::PathBuf) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let root = root.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&request);
                    let path = request.split(' ').nth(1).unwrap_or("/");
                    let path = path.split('?').next().unwrap_or("").trim_start_matches('/');
                    let body = if path.contains("..") {
                        None
                    } else {
                        tokio::fs::read(root.join(path)).await.ok()
                    };
                    let response = match body {
                        Some(body) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend(body);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    };
                    let _ = stream.write_all(&response).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_fetch_brings_only_objects_and_the_procedure_releases_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app(&dir.path().join("daemon")).await;
        let ctx = RealSyncContext::new(app.clone());
        // The other server: a bare repository with the commit, served over HTTP.
        let remote = dir.path().join("remote");
        let remote_repo = remote.join("repo.git");
        git2::Repository::init_bare(&remote_repo).expect("init");
        let tip = commit(&remote_repo);
        let status = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&remote_repo)
            .args(["update-ref", "refs/heads/main", &*tip.hex()])
            .status()
            .await
            .expect("git");
        assert!(status.success());
        let status = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&remote_repo)
            .arg("update-server-info")
            .status()
            .await
            .expect("git");
        assert!(status.success());
        let addr = serve_files(remote).await;
        let clone_url = format!("http://{addr}/repo.git");

        let owner = Keys::generate();
        let identifier = Identifier::parse("repo").expect("identifier");
        let repo = RepoId::new(owner.public_key(), identifier.clone());
        let announcement = event(
            &owner,
            KIND_ANNOUNCEMENT,
            vec![
                strings(&["d", "repo"]),
                vec!["clone".to_owned(), clone_url.clone()],
            ],
        );
        wait(
            &app,
            announcement,
            Nip34Kind::Announcement,
            &identifier,
            Source::User,
        )
        .await;
        app.git().provision(&repo).await.expect("provision");
        let state = event(
            &owner,
            KIND_STATE,
            vec![
                strings(&["d", "repo"]),
                vec!["refs/heads/main".to_owned(), tip.to_string()],
                strings(&["HEAD", "ref: refs/heads/main"]),
            ],
        );
        let state_id = state.id;
        wait(&app, state, Nip34Kind::State, &identifier, Source::User).await;

        let url = SyncUrl::parse(&clone_url, ctx.our_domain()).expect("url");
        let fetched = crate::sync::sync_identifier_from_url(&ctx, &identifier, &url)
            .await
            .expect("fetch");
        assert_eq!(fetched, 1);
        assert!(
            !app.purgatory().contains(&state_id),
            "released by the unified procedure"
        );
        assert!(app.store().contains(&state_id).await.expect("store"));
        let main = crate::git::RefName::parse("refs/heads/main").expect("ref");
        assert_eq!(app.git().ref_target(&repo, main).await.expect("ref"), Some(tip));
        assert_eq!(ctx.needed(&identifier).await.expect("needed"), None);
        assert!(!ctx.has_pending_events(&identifier));
    }

    #[tokio::test]
    async fn needed_objects_and_urls_come_from_purgatory_and_every_announcement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = app(dir.path()).await;
        let ctx = RealSyncContext::new(app.clone());
        let (owner, maintainer, stranger) = (Keys::generate(), Keys::generate(), Keys::generate());
        let identifier = Identifier::parse("repo").expect("identifier");
        let repo = RepoId::new(owner.public_key(), identifier.clone());
        assert!(!ctx.has_pending_events(&identifier));
        assert_eq!(ctx.needed(&identifier).await.expect("needed"), None);

        let announce = |keys: &Keys, clone: &[&str], maintainers: Vec<String>| {
            let mut tags = vec![strings(&["d", "repo"])];
            let mut clone_tag = strings(&["clone"]);
            clone_tag.extend(strings(clone));
            tags.push(clone_tag);
            if !maintainers.is_empty() {
                let mut list = strings(&["maintainers"]);
                list.extend(maintainers);
                tags.push(list);
            }
            event(keys, KIND_ANNOUNCEMENT, tags)
        };
        let owners_announcement = announce(
            &owner,
            &["https://ours.example/npub/repo.git", "https://a.example/repo.git"],
            vec![maintainer.public_key().to_hex()],
        );
        let maintainers_announcement = announce(&maintainer, &["https://b.example/repo.git"], vec![]);
        for announcement in [owners_announcement, maintainers_announcement] {
            wait(
                &app,
                announcement,
                Nip34Kind::Announcement,
                &identifier,
                Source::User,
            )
            .await;
        }
        app.git().provision(&repo).await.expect("provision");
        let present = commit(&app.git().path(&repo));
        let missing = Oid::parse(&"ab".repeat(20)).expect("oid");
        let unauthorized = Oid::parse(&"cd".repeat(20)).expect("oid");
        let tip = Oid::parse(&"ef".repeat(20)).expect("oid");

        let state = |keys: &Keys, oids: &[&Oid]| {
            let mut tags = vec![strings(&["d", "repo"])];
            for (i, oid) in oids.iter().enumerate() {
                tags.push(vec![format!("refs/heads/b{i}"), oid.to_string()]);
            }
            event(keys, KIND_STATE, tags)
        };
        wait(
            &app,
            state(&maintainer, &[&present, &missing]),
            Nip34Kind::State,
            &identifier,
            Source::User,
        )
        .await;
        wait(
            &app,
            state(&stranger, &[&unauthorized]),
            Nip34Kind::State,
            &identifier,
            Source::User,
        )
        .await;
        let pr = event(
            &stranger,
            KIND_PULL_REQUEST,
            vec![
                vec!["a".to_owned(), repo.coordinate()],
                vec!["c".to_owned(), tip.to_string()],
                strings(&[
                    "clone",
                    "https://fork.example/repo.git",
                    "ssh://fork.example/repo.git",
                ]),
            ],
        );
        wait(&app, pr, Nip34Kind::PullRequest, &identifier, Source::User).await;

        assert!(ctx.has_pending_events(&identifier));
        let needed = ctx
            .needed(&identifier)
            .await
            .expect("needed")
            .expect("something missing");
        assert_eq!(needed.target, repo);
        assert_eq!(
            needed.oids,
            HashSet::from([missing, tip]),
            "not what is on disk, not what an unauthorized state names"
        );

        let mut urls = ctx.candidate_urls(&identifier).await.expect("urls");
        urls.sort();
        assert_eq!(
            urls,
            strings(&[
                "https://a.example/repo.git",
                "https://b.example/repo.git",
                "https://fork.example/repo.git",
                "https://ours.example/npub/repo.git",
                "ssh://fork.example/repo.git",
            ])
        );

        // An unreachable server: an error, and nothing written anywhere.
        let url = SyncUrl::parse("http://127.0.0.1:9/repo.git", ctx.our_domain()).expect("url");
        let result = ctx.fetch(&needed.target, &url, &needed.oids).await;
        assert!(matches!(result, Err(SyncError::Fetch { .. })), "{result:?}");
        let repository = git2::Repository::open_bare(app.git().path(&repo)).expect("repository");
        assert_eq!(repository.references().expect("refs").count(), 0);

        // At start, the identifier is queued again from purgatory.
        let queue = SyncQueue::new();
        assert_eq!(enqueue_waiting(&app, &queue), 1);
        assert!(queue.get(&identifier).is_some());
    }
}
