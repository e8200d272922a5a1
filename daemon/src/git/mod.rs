//! The bare repositories on disk: provisioning, inspection and ref alignment.
//!
//! Every repository lives at `<git-root>/<npub>/<identifier>.git`; the path is built only from a
//! [`RepoId`], whose identifier was validated where it entered, so nothing here can be steered
//! outside the git root. All git work is blocking (libgit2), so each public method runs it on
//! tokio's blocking pool.

mod hooks;

pub use hooks::{FAST_NAME as FAST_HOOK_NAME, FULL_NAME as FULL_HOOK_NAME};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::types::{GitValueError, Oid, RefChanges, RefName};

use crate::config::HookSetup;
use crate::types::{Area, RepoId};

/// Errors of the git layer.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("blocking git task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("git could not {what}: {stderr}")]
    Command { what: String, stderr: String },
}

/// The config GRASP-01 needs on every served repository ([56]: serve any available object, and
/// partial clones; receive-pack over HTTP without authentication).
pub(crate) const REPO_CONFIG: &[(&str, &str)] = &[
    ("uploadpack.allowTipSHA1InWant", "true"),
    ("uploadpack.allowReachableSHA1InWant", "true"),
    ("uploadpack.allowFilter", "true"),
    ("http.receivepack", "true"),
    ("receive.denyNonFastForwards", "false"),
    ("receive.denyDeletes", "false"),
    // Keep received packs as they are (indexed, not exploded into loose objects and compressed
    // again): large pushes and fetches cost what git's transfer costs.
    ("transfer.unpackLimit", "1"),
    // No `gc` check on the pusher's clock: the daemon runs it after the push, in the background
    // (see `process::maintenance`).
    ("receive.autogc", "false"),
];

/// What a repository's refs should be after [`GitRepos::align`]: its branches and tags exactly
/// `refs`, HEAD at `head` (left alone when `None`); `reason` goes into the reflog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefTargets {
    pub refs: BTreeMap<RefName, Oid>,
    pub head: Option<RefName>,
    pub reason: String,
}

/// See [`GitRepos::crash_leftovers`].
#[derive(Debug, Default)]
pub struct CrashLeftovers {
    /// Repositories holding a ref lock.
    pub locked: Vec<PathBuf>,
    /// Loose `refs/nostr/<name>` refs of owners' repositories, with their tips.
    pub pull_request_refs: Vec<(RepoId, RefName, Oid)>,
}

/// Handle to the git root. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct GitRepos {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    hooks: HookSetup,
    git_program: PathBuf,
    /// Where a new repository's HEAD points until a state says otherwise.
    initial_head: RefName,
    /// Owners' repositories on disk when last counted, and when (see [`GitRepos::count`]).
    counted: std::sync::Mutex<Option<(std::time::Instant, usize)>>,
    /// Repositories last found on disk, and when (see [`GitRepos::exists`]).
    seen: dashmap::DashMap<RepoId, std::time::Instant>,
}

/// How long a count of the repositories on disk is taken as current.
const COUNT_FOR: Duration = Duration::from_secs(10);
/// How long a repository found on disk is taken to be there without looking again. The write
/// policy asks for every event that tags a repository; building the path (the npub's bech32)
/// and a `stat` of its `HEAD` were ~4% of an accepted event's CPU in the relay bench. graspd's own
/// removals forget it at once; one made by hand is seen within this time.
const SEEN_FOR: Duration = Duration::from_secs(1);
/// The most repositories remembered as seen; past it the memory starts again.
const SEEN_MAX: usize = 16_384;

impl GitRepos {
    /// `initial_head` is the unborn branch new repositories start on (`refs/heads/<name>`), as
    /// `git init --bare` would choose it (see [`default_branch`]).
    pub fn new(root: PathBuf, hooks: HookSetup, git_program: PathBuf, initial_head: RefName) -> Self {
        Self {
            inner: Arc::new(Inner {
                root,
                hooks,
                git_program,
                initial_head,
                counted: std::sync::Mutex::new(None),
                seen: dashmap::DashMap::new(),
            }),
        }
    }

    /// Owners' repositories on disk: counted again when the last count is older than
    /// [`COUNT_FOR`], and meanwhile kept current with the ones this process creates (another
    /// node's show at the next count).
    pub async fn count(&self) -> usize {
        let fresh = |counted: &Option<(std::time::Instant, usize)>| {
            counted.filter(|(at, _)| at.elapsed() < COUNT_FOR).map(|(_, n)| n)
        };
        if let Some(n) = fresh(&self.inner.counted.lock().unwrap_or_else(|p| p.into_inner())) {
            return n;
        }
        let git = self.clone();
        let n = blocking(move || Ok(git.list_repo_dirs().len()))
            .await
            .unwrap_or(0);
        *self.inner.counted.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), n));
        n
    }

    pub fn hooks(&self) -> &HookSetup {
        &self.inner.hooks
    }

    pub fn git_program(&self) -> &Path {
        &self.inner.git_program
    }

    /// Creates the shared hooks directory: `pre-receive` and `post-receive` run the fast hook,
    /// which hands unusual runs to grasp-hook (see `hooks.rs`; git runs
    /// `<core.hooksPath>/<hook name>` and the hook picks its mode from that name).
    pub async fn prepare_hooks_dir(&self, dry_run: bool) -> Result<Vec<String>, GitError> {
        let hooks = self.inner.hooks.clone();
        blocking(move || hooks::prepare_hooks_dir(&hooks, dry_run)).await
    }

    /// Every `<git-root>/<npub>/<name>.git` directory that holds a repository (owners'
    /// repositories; see [`Self::list_pull_request_repo_dirs`] for GRASP-06's).
    pub fn list_repo_dirs(&self) -> Vec<PathBuf> {
        repo_dirs_under(self.root())
    }

    /// GRASP-06: every `<git-root>/prs/<npub>/<name>.git` directory that holds a repository.
    pub fn list_pull_request_repo_dirs(&self) -> Vec<PathBuf> {
        repo_dirs_under(&self.pull_request_root())
    }

    /// Both: every repository graspd's hooks guard (install-hooks and doctor go over these).
    pub fn list_all_repo_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.list_repo_dirs();
        dirs.extend(self.list_pull_request_repo_dirs());
        dirs
    }

    /// Every owner's repository on disk that names a valid owner and identifier, read off the
    /// runtime's workers (a directory walk blocks).
    pub async fn repos_on_disk(&self) -> Vec<RepoId> {
        let git = self.clone();
        self.parse_dirs(move || git.list_repo_dirs()).await
    }

    /// GRASP-06: every pull request repository on disk.
    pub async fn pull_request_repos_on_disk(&self) -> Vec<RepoId> {
        let git = self.clone();
        self.parse_dirs(move || git.list_pull_request_repo_dirs()).await
    }

    async fn parse_dirs(&self, list: impl FnOnce() -> Vec<PathBuf> + Send + 'static) -> Vec<RepoId> {
        let git = self.clone();
        tokio::task::spawn_blocking(move || list().iter().filter_map(|path| git.repo_at(path)).collect())
            .await
            .unwrap_or_default()
    }

    /// Brings an existing bare repository under graspd (config and hooks). Returns what changed
    /// (or would change, with `dry_run`).
    pub async fn install_hooks_at(&self, path: PathBuf, dry_run: bool) -> Result<Vec<String>, GitError> {
        let hooks = self.inner.hooks.clone();
        blocking(move || hooks::configure_repo(&path, &hooks, dry_run)).await
    }

    /// The repository a path names, if it is `<git-root>/<npub>/<identifier>.git` or (GRASP-06)
    /// `<git-root>/prs/<npub>/<identifier>.git`.
    pub fn repo_at(&self, path: &Path) -> Option<RepoId> {
        let root = std::fs::canonicalize(&self.inner.root).ok()?;
        let path = std::fs::canonicalize(path).ok()?;
        let relative = path.strip_prefix(&root).ok()?;
        let parts: Vec<&str> = relative
            .components()
            .map(|part| part.as_os_str().to_str())
            .collect::<Option<_>>()?;
        let (area, npub, dir) = match parts.as_slice() {
            [npub, dir] => (Area::Owner, *npub, *dir),
            [Area::PRS_DIR, npub, dir] => (Area::PullRequests, *npub, *dir),
            _ => return None,
        };
        let owner = nostr::PublicKey::parse(npub).ok()?;
        let identifier = crate::types::Identifier::parse(dir.strip_suffix(".git")?).ok()?;
        let repo = RepoId {
            owner,
            identifier,
            area,
        };
        (repo.npub() == npub).then_some(repo)
    }

    /// Copies `oids` (and what they reference) from `from` into `to` with a local `git fetch`,
    /// which verifies every object it writes. No ref changes; objects already present are not
    /// sent again.
    pub async fn copy_objects(&self, from: &RepoId, to: &RepoId, oids: Vec<Oid>) -> Result<(), GitError> {
        if oids.is_empty() {
            return Ok(());
        }
        let mut command = tokio::process::Command::new(self.git_program());
        command
            .arg("-C")
            .arg(self.path(to))
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-auto-gc",
            ])
            // Any object the source has may be wanted, referenced or not.
            .arg("--upload-pack=git -c uploadpack.allowAnySHA1InWant=true upload-pack")
            .arg(self.path(from))
            .args(oids.iter().map(Oid::to_string))
            .env("GIT_TERMINAL_PROMPT", "0")
            .kill_on_drop(true);
        let output = command.output().await.map_err(|source| GitError::Io {
            path: self.path(to),
            source,
        })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(GitError::Command {
                what: format!("fetch objects from {from} into {to}"),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// Runs `git maintenance run --auto` in the repository and waits for it: git packs and prunes
    /// what is due (by default `gc --auto`: too many packs or loose objects), or does nothing.
    ///
    /// A run that takes longer than `timeout` is asked to stop with SIGTERM (git then removes its
    /// lock files) and reported as failed. The process is not killed if this future is dropped
    /// (at shutdown): an interrupted run would leave its lock file behind. A lock file left by a
    /// run that was killed anyway (SIGKILL, a crash) would make git skip every later run without
    /// a word, so one older than [`STALE_MAINTENANCE_LOCK`] is removed first.
    pub async fn maintain(&self, repo: &RepoId, timeout: Duration) -> Result<(), GitError> {
        self.housekeep(repo, &["maintenance", "run", "--auto", "--quiet"], timeout)
            .await
    }

    /// Runs `git gc --prune=<grace ago>`: repacks the repository and drops unreachable objects
    /// older than `grace` (what an expired placeholder or a deleted pull request ref left), where
    /// git's own prune would wait two weeks. Objects younger than `grace` (a push landing
    /// meanwhile) are kept. Stopped and reported like [`Self::maintain`].
    pub async fn prune_unreachable(
        &self,
        repo: &RepoId,
        grace: Duration,
        timeout: Duration,
    ) -> Result<(), GitError> {
        let prune = format!("--prune={}.seconds.ago", grace.as_secs());
        self.housekeep(repo, &["gc", "--quiet", &prune], timeout).await
    }

    async fn housekeep(&self, repo: &RepoId, args: &[&str], timeout: Duration) -> Result<(), GitError> {
        use tokio::io::AsyncReadExt;
        let path = self.path(repo);
        remove_stale_maintenance_lock(&path);
        let io_error = |source| GitError::Io {
            path: path.clone(),
            source,
        };
        let mut child = tokio::process::Command::new(self.git_program())
            // Run in the foreground, so the daemon's one-at-a-time order holds.
            .args(["-c", "maintenance.autoDetach=false", "-c", "gc.autoDetach=false"])
            .arg("-C")
            .arg(&path)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(io_error)?;
        let mut stderr = child.stderr.take();
        let mut message = Vec::new();
        let read_stderr = async {
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.read_to_end(&mut message).await;
            }
        };
        let finished = tokio::time::timeout(timeout, async {
            let (status, ()) = tokio::join!(child.wait(), read_stderr);
            status
        })
        .await;
        let failed = |stderr: String| GitError::Command {
            what: format!("run `git {}` in {repo}", args.join(" ")),
            stderr,
        };
        match finished.map(|status| status.map_err(io_error)) {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(_)) => Err(failed(String::from_utf8_lossy(&message).trim().to_owned())),
            Ok(Err(error)) => Err(error),
            Err(_) => {
                ask_to_stop(&child);
                let stopped = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
                Err(failed(format!(
                    "still running after {} s; {}",
                    timeout.as_secs(),
                    if stopped.is_ok() {
                        "stopped with SIGTERM"
                    } else {
                        "sent SIGTERM, left running"
                    }
                )))
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn path(&self, repo: &RepoId) -> PathBuf {
        let owners = match repo.area {
            Area::Owner => self.inner.root.clone(),
            Area::PullRequests => self.pull_request_root(),
        };
        owners.join(repo.npub()).join(format!("{}.git", repo.identifier))
    }

    /// GRASP-06: where contributors' pull request repositories live, `<git-root>/prs`.
    pub fn pull_request_root(&self) -> PathBuf {
        self.inner.root.join(Area::PRS_DIR)
    }

    /// Whether the bare repository exists on disk: looked at once per [`SEEN_FOR`] for a
    /// repository that was there.
    pub fn exists(&self, repo: &RepoId) -> bool {
        let now = std::time::Instant::now();
        let seen = &self.inner.seen;
        if seen
            .get(repo)
            .is_some_and(|at| now.saturating_duration_since(*at) < SEEN_FOR)
        {
            return true;
        }
        let exists = self.path(repo).join("HEAD").is_file();
        if exists {
            if seen.len() >= SEEN_MAX {
                seen.clear();
            }
            seen.insert(repo.clone(), now);
        } else {
            seen.remove(repo);
        }
        exists
    }

    /// Creates the bare repository with GRASP's config, if it does not exist. Returns whether it
    /// was created now.
    pub async fn provision(&self, repo: &RepoId) -> Result<bool, GitError> {
        let path = self.path(repo);
        let hooks = self.inner.hooks.clone();
        let head = self.inner.initial_head.clone();
        let created = blocking(move || provision_at(&path, &hooks, &head)).await?;
        if created && repo.area == Area::Owner {
            let mut counted = self.inner.counted.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, n)) = counted.as_mut() {
                *n += 1;
            }
        }
        Ok(created)
    }

    /// Creates a bare repository with GRASP's config at `path`, outside the repository tree (the
    /// empty repository GRASP-06's `/prs/` answers from). Returns whether it was created now.
    pub async fn provision_at_path(&self, path: PathBuf) -> Result<bool, GitError> {
        let hooks = self.inner.hooks.clone();
        let head = self.inner.initial_head.clone();
        blocking(move || provision_at(&path, &hooks, &head)).await
    }

    /// Sets the repository directory's modification time to now: a push is about to start
    /// (GRASP-06's sweep leaves a repository touched a moment ago alone). Best effort.
    pub fn touch(&self, repo: &RepoId) {
        let path = self.path(repo);
        let touched =
            std::fs::File::open(&path).and_then(|dir| dir.set_modified(std::time::SystemTime::now()));
        if let Err(error) = touched {
            tracing::debug!(path = %path.display(), %error, "cannot touch repository");
        }
    }

    /// Removes the locks of `names` (and `HEAD.lock`, `packed-refs.lock`) that a killed git left
    /// behind, older than [`STALE_REF_LOCK`]: called before an allowed push updates its refs, which
    /// such a lock would otherwise fail for good. Best effort.
    pub async fn clear_stale_ref_locks(&self, repo: &RepoId, names: Vec<RefName>) {
        let path = self.path(repo);
        let cleared = blocking(move || Ok(remove_stale_locks_of(&path, &names, STALE_REF_LOCK))).await;
        if let Err(error) = cleared {
            tracing::debug!(repo = %repo, %error, "cannot look for stale ref locks");
        }
    }

    /// The size of the objects a push brought, waiting in git's quarantine `dir` (the hook's
    /// `GIT_QUARANTINE_PATH`) until pre-receive allows them. `None` unless `dir` is a quarantine
    /// directory of `repo`'s: a directory right under its `objects/` named `*incoming-*`.
    pub async fn quarantine_bytes(&self, repo: &RepoId, dir: PathBuf) -> Option<u64> {
        let objects = self.path(repo).join("objects");
        blocking(move || Ok(quarantine_size(&objects, &dir)))
            .await
            .ok()
            .flatten()
    }

    /// Removes the ref locks older than [`STALE_REF_LOCK`] of the repositories at `dirs`.
    /// Returns how many.
    pub async fn clear_stale_locks(&self, dirs: Vec<PathBuf>) -> usize {
        blocking(move || {
            Ok(dirs
                .iter()
                .map(|dir| remove_stale_ref_locks(dir, STALE_REF_LOCK))
                .sum())
        })
        .await
        .unwrap_or(0)
    }

    /// What a crash (graspd killed with the git processes it ran) may have left, found in one walk
    /// of every repository's `refs/` at start: the repositories holding a ref lock, and the owners'
    /// repositories' pull request refs (among them any a push landed but never reported; a
    /// housekeeping run at that moment may already have packed it, so `packed-refs` is read too).
    pub async fn crash_leftovers(&self) -> CrashLeftovers {
        let git = self.clone();
        blocking(move || {
            let mut found = CrashLeftovers::default();
            for dir in git.list_all_repo_dirs() {
                let walk = walk_refs(&dir);
                if walk.has_lock(&dir) {
                    found.locked.push(dir.clone());
                }
                let Some(repo) = git.repo_at(&dir).filter(|repo| !repo.is_pull_request_area()) else {
                    continue;
                };
                // Loose refs win over packed ones of the same name, as git reads them.
                let mut refs: std::collections::BTreeMap<RefName, Oid> = packed_pull_request_refs(&dir);
                for path in walk.pull_requests {
                    let name = path
                        .file_name()
                        .and_then(|name| name.to_str())
                        .and_then(|name| RefName::parse(&format!("refs/nostr/{name}")).ok());
                    let tip = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|text| Oid::parse(text.trim()).ok());
                    if let (Some(name), Some(tip)) = (name, tip) {
                        refs.insert(name, tip);
                    }
                }
                found
                    .pull_request_refs
                    .extend(refs.into_iter().map(|(name, tip)| (repo.clone(), name, tip)));
            }
            Ok(found)
        })
        .await
        .unwrap_or_default()
    }

    /// Whether the repository has any ref (has received git data).
    /// Whether the repository holds any git data: a ref, or objects. A fetch stopped (graspd
    /// killed) after its objects landed but before the refs were set leaves objects and no ref.
    pub async fn has_data(&self, repo: &RepoId) -> Result<bool, GitError> {
        if self.has_refs(repo).await? {
            return Ok(true);
        }
        let objects = self.path(repo).join("objects");
        blocking(move || Ok(holds_objects(&objects))).await
    }

    pub async fn has_refs(&self, repo: &RepoId) -> Result<bool, GitError> {
        let path = self.path(repo);
        blocking(move || {
            if !path.join("HEAD").is_file() {
                return Ok(false);
            }
            let repository = git2::Repository::open_bare(&path)?;
            let mut refs = repository.references()?;
            Ok(refs.next().is_some())
        })
        .await
    }

    /// Deletes the repository if it holds no refs. Returns whether it was deleted.
    pub async fn remove_if_empty(&self, repo: &RepoId) -> Result<bool, GitError> {
        if !self.exists(repo) || self.has_refs(repo).await? {
            return Ok(false);
        }
        let path = self.path(repo);
        let removed = blocking(move || {
            std::fs::remove_dir_all(&path).map_err(|source| GitError::Io {
                path: path.clone(),
                source,
            })?;
            // Drop the owner's directory too once it is empty; failure just means it is not.
            if let Some(parent) = path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
            Ok(true)
        })
        .await;
        // After the removal: a look during it may have seen the repository still there.
        self.inner.seen.remove(repo);
        removed
    }

    /// Whether every object in `oids` is in the repository's object store.
    pub async fn has_objects(&self, repo: &RepoId, oids: Vec<Oid>) -> Result<bool, GitError> {
        Ok(self.missing_objects(repo, oids).await?.is_empty())
    }

    /// Which of `oids` the repository lacks (all of them when it does not exist).
    pub async fn missing_objects(
        &self,
        repo: &RepoId,
        oids: Vec<Oid>,
    ) -> Result<std::collections::HashSet<Oid>, GitError> {
        let path = self.path(repo);
        blocking(move || {
            if !path.join("HEAD").is_file() {
                return Ok(oids.into_iter().collect());
            }
            let repository = git2::Repository::open_bare(&path)?;
            let odb = repository.odb()?;
            let mut missing = std::collections::HashSet::new();
            for oid in oids {
                // An id of the other hash (a SHA-256 id in a SHA-1 repository) names nothing here.
                let present = to_git2(&oid).is_ok_and(|id| odb.exists(id));
                if !present {
                    missing.insert(oid);
                }
            }
            Ok(missing)
        })
        .await
    }

    /// Points `name` at `oid` (creating or moving it). Returns whether anything changed.
    pub async fn set_ref(
        &self,
        repo: &RepoId,
        name: RefName,
        oid: Oid,
        reason: String,
    ) -> Result<bool, GitError> {
        let path = self.path(repo);
        blocking(move || {
            waiting_out_locks(&path, || {
                let repository = git2::Repository::open_bare(&path)?;
                let target = to_git2(&oid)?;
                let current = repository
                    .find_reference(name.as_str())
                    .ok()
                    .and_then(|r| r.target());
                if current == Some(target) {
                    return Ok(false);
                }
                repository.reference(name.as_str(), target, true, &reason)?;
                Ok(true)
            })
        })
        .await
    }

    /// Every ref (name, target) on disk, sorted by name; symbolic refs other than HEAD are skipped.
    pub async fn refs(&self, repo: &RepoId) -> Result<Vec<(String, Oid)>, GitError> {
        let path = self.path(repo);
        blocking(move || {
            if !path.join("HEAD").is_file() {
                return Ok(Vec::new());
            }
            let repository = git2::Repository::open_bare(&path)?;
            let mut refs = Vec::new();
            for reference in repository.references()? {
                let reference = reference?;
                let (Ok(name), Some(target)) = (reference.name(), reference.target()) else {
                    continue;
                };
                if let Ok(oid) = Oid::parse(&target.to_string()) {
                    refs.push((name.to_owned(), oid));
                }
            }
            refs.sort();
            Ok(refs)
        })
        .await
    }

    /// Where `name` points, if it exists.
    pub async fn ref_target(&self, repo: &RepoId, name: RefName) -> Result<Option<Oid>, GitError> {
        let path = self.path(repo);
        blocking(move || {
            let repository = git2::Repository::open_bare(&path)?;
            let target = match repository.find_reference(name.as_str()) {
                Ok(reference) => reference.target(),
                Err(e) if e.code() == git2::ErrorCode::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            Ok(target.and_then(|oid| Oid::parse(&oid.to_string()).ok()))
        })
        .await
    }

    /// Deletes `name` if it points at `expected`. Returns whether it did.
    pub async fn delete_ref_if(&self, repo: &RepoId, name: RefName, expected: Oid) -> Result<bool, GitError> {
        let path = self.path(repo);
        blocking(move || {
            waiting_out_locks(&path, || {
                let repository = git2::Repository::open_bare(&path)?;
                let mut reference = match repository.find_reference(name.as_str()) {
                    Ok(reference) => reference,
                    Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
                if reference.target().map(|o| o.as_bytes() == expected.as_bytes()) != Some(true) {
                    return Ok(false);
                }
                reference.delete()?;
                Ok(true)
            })
        })
        .await
    }

    /// Makes the repository's branches and tags exactly `targets`' (create, move, delete) and
    /// points HEAD where they say. Refs outside `refs/heads/` and `refs/tags/` that the state
    /// does not name (such as `refs/nostr/<event-id>`) are left alone. The caller has checked that
    /// the objects exist.
    pub async fn align(&self, repo: &RepoId, targets: &RefTargets) -> Result<RefChanges, GitError> {
        let path = self.path(repo);
        let targets = targets.clone();
        blocking(move || aligned(&path, &targets)).await
    }
}

/// How long ref writes wait for a lock another git process holds (git's own
/// `core.packedRefsTimeout` default is one second).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// libgit2 here handles SHA-1 only: a SHA-256 id is an error, never cut to its first 20 bytes.
fn to_git2(oid: &Oid) -> Result<git2::Oid, git2::Error> {
    git2::Oid::from_bytes(oid.as_bytes())
}

/// Runs `attempt` again while it fails on a lock file: git holds ref and `packed-refs` locks only
/// briefly (a concurrent receive-pack, `git maintenance` packing refs), and libgit2 does not wait
/// for them. `attempt` must be idempotent. When a lock is still there after
/// [`LOCK_WAIT`], locks of `repo` older than [`STALE_REF_LOCK`] are removed, once, and it tries on.
fn waiting_out_locks<T>(
    repo: &Path,
    mut attempt: impl FnMut() -> Result<T, GitError>,
) -> Result<T, GitError> {
    let mut deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(5);
    let mut swept = false;
    loop {
        match attempt() {
            Err(GitError::Git(error)) if error.code() == git2::ErrorCode::Locked => {
                if std::time::Instant::now() >= deadline {
                    // Once only: a lock this old was left by a killed git, which nothing else
                    // would ever remove.
                    if swept || remove_stale_ref_locks(repo, STALE_REF_LOCK) == 0 {
                        return Err(GitError::Git(error));
                    }
                    swept = true;
                    deadline = std::time::Instant::now() + LOCK_WAIT;
                }
                tracing::debug!(%error, "ref lock held by another process; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            outcome => return outcome,
        }
    }
}

/// A ref lock this old belongs to no live git: git holds one for the few milliseconds of a ref
/// transaction (and `packed-refs.lock` while it rewrites that file), and waits at most a second
/// for another's (`core.filesRefLockTimeout`, `core.packedRefsTimeout`).
pub const STALE_REF_LOCK: Duration = Duration::from_secs(20);

/// Removes ref lock files of the bare repository at `repo` (`HEAD.lock`, `packed-refs.lock`,
/// `refs/**/*.lock`) last modified more than `older_than` ago, as a killed push leaves them.
/// Returns how many it removed.
pub fn remove_stale_ref_locks(repo: &Path, older_than: Duration) -> usize {
    remove_if_stale(repo, walk_refs(repo).locks, older_than)
}

/// What one walk of a bare repository's `refs/` finds: ref lock files (`refs/**/*.lock`), and
/// loose pull request refs (the files right under `refs/nostr/`, as a push writes them).
#[derive(Debug, Default)]
struct RefsWalk {
    locks: Vec<PathBuf>,
    pull_requests: Vec<PathBuf>,
}

impl RefsWalk {
    /// Whether the repository at `repo` holds any ref lock: these, `HEAD.lock` or
    /// `packed-refs.lock`.
    fn has_lock(&self, repo: &Path) -> bool {
        !self.locks.is_empty() || repo.join("HEAD.lock").exists() || repo.join("packed-refs.lock").exists()
    }
}

/// The `refs/nostr/*` lines of the repository's `packed-refs` (none when it has no such file).
fn packed_pull_request_refs(repo: &Path) -> std::collections::BTreeMap<RefName, Oid> {
    let text = std::fs::read_to_string(repo.join("packed-refs")).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, name)| name.starts_with("refs/nostr/"))
        .filter_map(|(oid, name)| Some((RefName::parse(name).ok()?, Oid::parse(oid).ok()?)))
        .collect()
}

fn walk_refs(repo: &Path) -> RefsWalk {
    let mut found = RefsWalk::default();
    let nostr = repo.join("refs/nostr");
    let mut dirs = vec![repo.join("refs")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(path),
                Ok(kind) if kind.is_file() && path.extension().is_some_and(|ext| ext == "lock") => {
                    found.locks.push(path)
                }
                Ok(kind) if kind.is_file() && dir == nostr => found.pull_requests.push(path),
                _ => {}
            }
        }
    }
    found
}

/// [`remove_stale_ref_locks`] for the locks of `names` only (and `HEAD.lock`,
/// `packed-refs.lock`): a few `stat`s, cheap enough for every push.
fn remove_stale_locks_of(repo: &Path, names: &[RefName], older_than: Duration) -> usize {
    let locks = names
        .iter()
        .map(|name| repo.join(format!("{}.lock", name.as_str())))
        .collect();
    remove_if_stale(repo, locks, older_than)
}

/// Removes those of `locks` (and of `repo`'s `HEAD.lock` and `packed-refs.lock`) last modified
/// more than `older_than` ago.
fn remove_if_stale(repo: &Path, mut locks: Vec<PathBuf>, older_than: Duration) -> usize {
    locks.extend(["HEAD.lock", "packed-refs.lock"].map(|name| repo.join(name)));
    let mut removed = 0;
    for lock in locks {
        let age = std::fs::symlink_metadata(&lock)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        if age.is_none_or(|age| age <= older_than) {
            continue;
        }
        match std::fs::remove_file(&lock) {
            Ok(()) => {
                tracing::warn!(lock = %lock.display(), "removed a stale ref lock (a git process was killed holding it)");
                removed += 1;
            }
            Err(error) => tracing::warn!(lock = %lock.display(), %error, "cannot remove a stale ref lock"),
        }
    }
    removed
}

/// A `maintenance.lock` this old was left by a run that was killed: the daemon's own runs are
/// stopped after at most an hour, and receive-pack starts none in graspd's repositories.
pub const STALE_MAINTENANCE_LOCK: Duration = Duration::from_secs(2 * 3600);

fn remove_stale_maintenance_lock(repo: &Path) {
    let lock = repo.join("objects").join("maintenance.lock");
    let age = std::fs::metadata(&lock)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok());
    if age.is_some_and(|age| age > STALE_MAINTENANCE_LOCK) {
        match std::fs::remove_file(&lock) {
            Ok(()) => {
                tracing::warn!(lock = %lock.display(), "removed a stale git maintenance lock (a run was killed)")
            }
            Err(error) => {
                tracing::warn!(lock = %lock.display(), %error, "cannot remove a stale git maintenance lock")
            }
        }
    }
}

/// Sends SIGTERM to a child that has not been reaped yet (so its pid is still its own).
fn ask_to_stop(child: &tokio::process::Child) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // It may have exited meanwhile (then it is reaped later, and this fails harmlessly).
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// The branch `git init --bare` would start a repository on here: `init.defaultBranch` as the
/// `git` executable reads it (system and global config of graspd's user), else git's built-in
/// `master`. An unusable value is reported and ignored, as git itself would refuse it.
pub fn default_branch(git_program: &Path) -> RefName {
    let fallback = || RefName::branch("master").expect("a valid ref name");
    // From `/`, so that no repository's own config is read.
    let output = std::process::Command::new(git_program)
        .args(["config", "--get", "init.defaultBranch"])
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(output) = output else { return fallback() };
    let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || name.is_empty() {
        return fallback();
    }
    RefName::branch(&name).unwrap_or_else(|| {
        tracing::warn!(init_default_branch = %name, "git's init.defaultBranch is not a valid branch name: using master");
        fallback()
    })
}

/// Whether the object directory `objects` holds a pack or a loose object.
fn holds_objects(objects: &Path) -> bool {
    let non_empty = |dir: &Path, wanted: &dyn Fn(&std::ffi::OsStr) -> bool| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| wanted(&entry.file_name()))
    };
    let Ok(entries) = std::fs::read_dir(objects) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "pack" {
            non_empty(&entry.path(), &|file| file.to_string_lossy().ends_with(".pack"))
        } else {
            name.len() == 2
                && name.bytes().all(|b| b.is_ascii_hexdigit())
                && non_empty(&entry.path(), &|_| true)
        }
    })
}

/// See [`GitRepos::quarantine_bytes`]. Symbolic links are neither followed nor counted.
fn quarantine_size(objects: &Path, dir: &Path) -> Option<u64> {
    let dir = dir.canonicalize().ok()?;
    let named = dir
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.contains("incoming-"));
    if !named || dir.parent() != Some(objects.canonicalize().ok()?.as_path()) {
        return None;
    }
    // Loose objects sit two levels down (`ab/cdef…`), packs in `pack/`: a bounded walk.
    let mut total = 0u64;
    let mut stack = vec![(dir, 0)];
    while let Some((dir, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && depth < 2 {
                stack.push((entry.path(), depth + 1));
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Some(total)
}

async fn blocking<T, F>(f: F) -> Result<T, GitError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, GitError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Creates the repository beside its place and renames it there once its config and hooks are
/// written: a crash part way leaves no repository that git would serve without graspd's hooks
/// (a push to it would land unchecked), only a `.<name>.new-*` directory nothing serves.
fn provision_at(path: &Path, hooks: &HookSetup, head: &RefName) -> Result<bool, GitError> {
    if path.join("HEAD").is_file() {
        return Ok(false);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GitError::Io { path, source }
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io(path)(std::io::Error::other("not a repository path")));
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let staging = parent.join(format!(
        ".{}.new-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = git2::RepositoryInitOptions::new();
    options
        .bare(true)
        .no_reinit(true)
        .mkpath(true)
        .initial_head(head.as_str());
    let made = git2::Repository::init_opts(&staging, &options)
        .map_err(GitError::from)
        .and_then(|_| hooks::configure_repo(&staging, hooks, false).map(|_| ()));
    if let Err(error) = made {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    match std::fs::rename(&staging, path) {
        Ok(()) => Ok(true),
        // Made meanwhile by another request: that one stands.
        Err(_) if path.join("HEAD").is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(false)
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(io(path)(source))
        }
    }
}

fn is_aligned_namespace(name: &str) -> bool {
    name.starts_with("refs/heads/") || name.starts_with("refs/tags/")
}

/// [`align_at`], again while a lock is in the way; the changes count every attempt's work.
fn aligned(path: &Path, targets: &RefTargets) -> Result<RefChanges, GitError> {
    let mut changes = RefChanges::default();
    waiting_out_locks(path, || align_at(path, targets, &mut changes))?;
    Ok(changes)
}

/// One attempt at aligning; what it changed is added to `changes`, also when it fails part way.
fn align_at(path: &Path, targets: &RefTargets, changes: &mut RefChanges) -> Result<(), GitError> {
    let repository = git2::Repository::open_bare(path)?;
    let reflog = format!("graspd: {}", targets.reason);

    let mut stale = Vec::new();
    for reference in repository.references()? {
        let reference = reference?;
        let Ok(name) = reference.name() else { continue };
        if is_aligned_namespace(name) && !targets.refs.keys().any(|r| r.as_str() == name) {
            stale.push(name.to_owned());
        }
    }
    for name in stale {
        repository.find_reference(&name)?.delete()?;
        changes.deleted += 1;
    }

    for (name, oid) in &targets.refs {
        let target = to_git2(oid)?;
        match repository.find_reference(name.as_str()) {
            Ok(current) if current.target() == Some(target) => {}
            Ok(_) => {
                repository.reference(name.as_str(), target, true, &reflog)?;
                changes.updated += 1;
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                repository.reference(name.as_str(), target, true, &reflog)?;
                changes.created += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }

    if let Some(head) = &targets.head {
        let current = repository.find_reference("HEAD")?;
        if current.symbolic_target()? != Some(head.as_str()) {
            repository.reference_symbolic("HEAD", head.as_str(), true, &reflog)?;
            changes.head_changed = true;
        }
    }
    Ok(())
}

/// `<base>/<npub>/<name>.git` directories holding a repository (a `HEAD` file), sorted.
fn repo_dirs_under(base: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let Ok(owners) = std::fs::read_dir(base) else {
        return dirs;
    };
    for owner in owners.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
        let Ok(repos) = std::fs::read_dir(owner.path()) else {
            continue;
        };
        for repo in repos.filter_map(Result::ok).map(|e| e.path()) {
            if repo.extension().is_some_and(|x| x == "git") && repo.join("HEAD").is_file() {
                dirs.push(repo);
            }
        }
    }
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testing::git;

    /// Repositories under `root`, run with `git_program`.
    fn repos_at(root: &Path, git_program: &Path) -> GitRepos {
        GitRepos::new(
            root.to_owned(),
            HookSetup::resolve(root, None, None),
            git_program.to_owned(),
            RefName::parse("refs/heads/master").expect("ref"),
        )
    }

    fn repo_id(identifier: &str) -> RepoId {
        RepoId::new(
            nostr::Keys::generate().public_key(),
            crate::types::Identifier::parse(identifier).expect("identifier"),
        )
    }

    #[tokio::test]
    async fn an_id_of_the_other_hash_is_missing_not_an_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let repos = repos_at(root.path(), Path::new("git"));
        let repo = repo_id("r");
        assert!(repos.provision(&repo).await.expect("provision"));
        let sha256 = Oid::parse(&"b".repeat(64)).expect("oid");
        assert!(
            !repos
                .has_objects(&repo, vec![sha256])
                .await
                .expect("answer, not error")
        );
        // Provisioned atomically: nothing but the repository is left beside it.
        let beside: Vec<_> = std::fs::read_dir(repos.path(&repo).parent().expect("owner dir"))
            .expect("read")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(beside, vec![std::ffi::OsString::from("r.git")]);
    }

    #[tokio::test]
    async fn a_repository_removed_is_missing_at_once_and_one_removed_by_hand_soon_after() {
        let root = tempfile::tempdir().expect("tempdir");
        let repos = repos_at(root.path(), Path::new("git"));
        let repo = repo_id("gone");
        assert!(!repos.exists(&repo));
        assert!(repos.provision(&repo).await.expect("provision"));
        assert!(repos.exists(&repo), "seen after provisioning");
        assert!(repos.remove_if_empty(&repo).await.expect("remove"));
        assert!(!repos.exists(&repo), "graspd's own removal is seen at once");

        assert!(repos.provision(&repo).await.expect("provision again"));
        assert!(repos.exists(&repo));
        std::fs::remove_dir_all(repos.path(&repo)).expect("remove by hand");
        let deadline = std::time::Instant::now() + SEEN_FOR + Duration::from_secs(5);
        while repos.exists(&repo) {
            assert!(std::time::Instant::now() < deadline, "removal by hand never seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn packs(repo: &Path) -> usize {
        std::fs::read_dir(repo.join("objects/pack"))
            .expect("pack dir")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .count()
    }

    #[tokio::test]
    async fn maintenance_outside_a_repository_is_an_error_naming_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let repos = repos_at(root.path(), Path::new("git"));
        let repo = repo_id("absent");
        match repos.maintain(&repo, Duration::from_secs(60)).await {
            Err(error @ GitError::Command { .. }) => {
                assert!(
                    error
                        .to_string()
                        .contains(&format!("run `git maintenance run --auto --quiet` in {repo}")),
                    "{error}"
                )
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The daemon's one-at-a-time order (and its timeout) hold only if git does the work before
    /// it exits instead of detaching a background `gc`.
    #[tokio::test]
    async fn maintenance_has_packed_the_repository_when_it_returns() {
        let root = tempfile::tempdir().expect("tempdir");
        let repos = repos_at(root.path(), Path::new("git"));
        let repo = repo_id("packs");
        let path = repos.path(&repo);
        std::fs::create_dir_all(&path).expect("mkdir");
        git(&path, &["init", "-q", "--bare"]);
        for round in ["one", "two"] {
            let blob = path.join(round);
            std::fs::write(&blob, round).expect("write");
            let oid = git(&path, &["hash-object", "-w", blob.to_str().expect("utf-8")]);
            git(&path, &["update-ref", &format!("refs/tags/{round}"), &oid]);
            git(&path, &["repack", "-q"]);
        }
        assert_eq!(packs(&path), 2);
        git(&path, &["config", "gc.autoPackLimit", "1"]);
        repos
            .maintain(&repo, Duration::from_secs(60))
            .await
            .expect("maintain");
        assert_eq!(packs(&path), 1, "packed before maintain returned");
    }

    #[tokio::test]
    async fn maintenance_that_runs_too_long_is_stopped_and_reported() {
        let root = tempfile::tempdir().expect("tempdir");
        let fake_git = root.path().join("slow-git");
        std::fs::write(&fake_git, "#!/bin/sh\nexec sleep 60\n").expect("write");
        std::fs::set_permissions(&fake_git, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        // Another test thread may still hold the new script open in a forked child (ETXTBSY).
        for _ in 0..50 {
            match std::process::Command::new(&fake_git).arg("--version").spawn() {
                Err(error) if error.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(mut probe) => {
                    let _ = probe.kill();
                    let _ = probe.wait();
                    break;
                }
                Err(_) => break,
            }
        }
        let repos = repos_at(root.path(), &fake_git);
        let started = std::time::Instant::now();
        let outcome = repos.maintain(&repo_id("slow"), Duration::from_millis(300)).await;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not wait for the run"
        );
        match outcome {
            Err(error) => assert!(error.to_string().contains("stopped with SIGTERM"), "{error}"),
            Ok(()) => panic!("a run past its timeout is a failure"),
        }
    }

    #[tokio::test]
    async fn a_stale_maintenance_lock_is_removed_and_a_fresh_one_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let repos = repos_at(root.path(), Path::new("git"));
        let (stale, fresh) = (repo_id("stale"), repo_id("fresh"));
        for repo in [&stale, &fresh] {
            let path = repos.path(repo);
            std::fs::create_dir_all(&path).expect("mkdir");
            git(&path, &["init", "-q", "--bare"]);
            std::fs::write(path.join("objects/maintenance.lock"), "").expect("lock");
        }
        let old = std::time::SystemTime::now() - STALE_MAINTENANCE_LOCK - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(repos.path(&stale).join("objects/maintenance.lock"))
            .expect("open lock")
            .set_modified(old)
            .expect("age the lock");
        for repo in [&stale, &fresh] {
            repos
                .maintain(repo, Duration::from_secs(60))
                .await
                .expect("maintain");
        }
        assert!(!repos.path(&stale).join("objects/maintenance.lock").exists());
        assert!(repos.path(&fresh).join("objects/maintenance.lock").exists());
    }

    /// Creates a bare repository whose `refs/heads/main` points at a fresh empty-tree commit;
    /// returns the commit.
    fn repository_with_commit(path: &Path) -> git2::Oid {
        let repository = git2::Repository::init_bare(path).expect("init");
        let signature = git2::Signature::now("t", "t@example.org").expect("signature");
        let tree = repository
            .treebuilder(None)
            .expect("tree")
            .write()
            .expect("write tree");
        let tree = repository.find_tree(tree).expect("find tree");
        repository
            .commit(Some("refs/heads/main"), &signature, &signature, "c", &tree, &[])
            .expect("commit")
    }

    fn state_with(refs: &[(&str, git2::Oid)]) -> RefTargets {
        RefTargets {
            refs: refs
                .iter()
                .map(|(name, oid)| {
                    (
                        RefName::parse(name).expect("ref"),
                        Oid::parse(&oid.to_string()).expect("oid"),
                    )
                })
                .collect(),
            head: None,
            reason: "test".into(),
        }
    }

    #[test]
    fn aligning_waits_out_a_lock_another_git_holds_briefly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.git");
        let commit = repository_with_commit(&path);
        let lock = path.join("refs/heads/dev.lock");
        std::fs::write(&lock, "").expect("lock");
        let releaser = std::thread::spawn({
            let lock = lock.clone();
            move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::remove_file(lock).expect("unlock");
            }
        });
        let state = state_with(&[("refs/heads/main", commit), ("refs/heads/dev", commit)]);
        let changes = aligned(&path, &state).expect("aligned once unlocked");
        releaser.join().expect("releaser");
        assert_eq!(changes.created, 1);
        let repository = git2::Repository::open_bare(&path).expect("open");
        assert_eq!(repository.refname_to_id("refs/heads/dev").expect("dev"), commit);
    }

    #[test]
    fn a_lock_that_stays_is_an_error_in_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.git");
        let commit = repository_with_commit(&path);
        std::fs::write(path.join("refs/heads/dev.lock"), "").expect("lock");
        let state = state_with(&[("refs/heads/main", commit), ("refs/heads/dev", commit)]);
        match aligned(&path, &state) {
            Err(GitError::Git(error)) => assert_eq!(error.code(), git2::ErrorCode::Locked),
            other => panic!("expected a lock error, got {other:?}"),
        }
    }

    fn age(path: &Path, by: Duration) {
        let file = std::fs::File::options().write(true).open(path).expect("open");
        file.set_modified(std::time::SystemTime::now() - by)
            .expect("set mtime");
    }

    #[test]
    fn a_lock_a_killed_git_left_is_removed_and_aligning_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.git");
        let commit = repository_with_commit(&path);
        let lock = path.join("refs/heads/dev.lock");
        std::fs::write(&lock, "").expect("lock");
        age(&lock, STALE_REF_LOCK + Duration::from_secs(1));
        let state = state_with(&[("refs/heads/main", commit), ("refs/heads/dev", commit)]);
        let changes = aligned(&path, &state).expect("aligned once the stale lock is gone");
        assert_eq!(changes.created, 1);
        assert!(!lock.exists());
    }

    #[test]
    fn only_old_ref_locks_are_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.git");
        repository_with_commit(&path);
        std::fs::create_dir_all(path.join("refs/heads/feature")).expect("dir");
        let old = [
            "refs/heads/feature/x.lock",
            "packed-refs.lock",
            "HEAD.lock",
            "refs/nostr/a.lock",
        ];
        std::fs::create_dir_all(path.join("refs/nostr")).expect("dir");
        for name in old {
            std::fs::write(path.join(name), "").expect("lock");
            age(&path.join(name), Duration::from_secs(120));
        }
        std::fs::write(path.join("refs/heads/fresh.lock"), "").expect("lock");
        std::fs::write(path.join("config.lock"), "").expect("lock");
        age(&path.join("config.lock"), Duration::from_secs(120));

        let named = [RefName::parse("refs/heads/feature/x").expect("ref")];
        assert_eq!(remove_stale_locks_of(&path, &named, STALE_REF_LOCK), 3);
        assert!(path.join("refs/nostr/a.lock").exists(), "not named");
        assert_eq!(remove_stale_ref_locks(&path, STALE_REF_LOCK), 1);
        assert!(!path.join("refs/nostr/a.lock").exists());
        assert!(
            path.join("refs/heads/fresh.lock").exists(),
            "a live git may hold it"
        );
        assert!(path.join("config.lock").exists(), "not a ref lock");
    }

    #[test]
    fn a_quarantine_is_measured_only_inside_its_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.git");
        repository_with_commit(&path);
        let objects = path.join("objects");
        let quarantine = objects.join("tmp_objdir-incoming-Ab12");
        std::fs::create_dir_all(quarantine.join("pack")).expect("dir");
        std::fs::create_dir_all(quarantine.join("ab")).expect("dir");
        std::fs::write(quarantine.join("pack/pack-1.pack"), vec![0; 1000]).expect("pack");
        std::fs::write(quarantine.join("ab/cdef"), vec![0; 24]).expect("loose");
        // A link to something big is not the push's.
        let elsewhere = dir.path().join("big");
        std::fs::write(&elsewhere, vec![0; 5000]).expect("big");
        std::os::unix::fs::symlink(&elsewhere, quarantine.join("pack/link")).expect("link");
        assert_eq!(quarantine_size(&objects, &quarantine), Some(1024));
        // As git names it: through `./`.
        let dotted = path.join("./objects/tmp_objdir-incoming-Ab12");
        assert_eq!(quarantine_size(&objects, &dotted), Some(1024));
        let outside = dir.path().join("incoming-x");
        std::fs::create_dir_all(&outside).expect("dir");
        assert_eq!(quarantine_size(&objects, &outside), None);
        assert_eq!(quarantine_size(&objects, &objects.join("pack")), None);
        assert_eq!(quarantine_size(&objects, &quarantine.join("..").join("..")), None);
        assert_eq!(quarantine_size(&objects, &objects.join("incoming-gone")), None);
    }

    /// The unified procedure relies on this when it trusts a push's report that objects arrived:
    /// a ref is never pointed at an object the repository does not hold.
    #[test]
    fn aligning_refuses_refs_to_missing_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.git");
        git2::Repository::init_bare(&path).expect("init");
        let missing = Oid::parse("1234567890123456789012345678901234567890").expect("oid");
        let state = RefTargets {
            refs: BTreeMap::from([(RefName::parse("refs/heads/main").expect("ref"), missing)]),
            head: None,
            reason: "test".into(),
        };
        assert!(aligned(&path, &state).is_err());
        let repository = git2::Repository::open_bare(&path).expect("open");
        assert!(
            repository.find_reference("refs/heads/main").is_err(),
            "no ref was written"
        );
    }
}
