//! Hook installation: one shared hooks directory whose `pre-receive` and `post-receive` are links
//! to grasp-hook, and per-repository git config that points git at it (`core.hooksPath`) and
//! tells the hook where its daemon listens (`graspd.socket`) and where to spool (`graspd.spool`).
//! Writing the socket into the repository's own config is what lets a hook run by any
//! git-http-backend (ours, or nginx + fcgiwrap) find the daemon.

use std::path::Path;

use super::{GitError, REPO_CONFIG};
use crate::config::HookSetup;

const HOOK_NAMES: [&str; 2] = ["pre-receive", "post-receive"];

/// Creates or repairs the hooks directory. Returns what changed.
pub(super) fn prepare_hooks_dir(hooks: &HookSetup, dry_run: bool) -> Result<Vec<String>, GitError> {
    let mut changes = Vec::new();
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GitError::Io { path, source }
    };
    if !hooks.hooks_dir.is_dir() {
        changes.push(format!("create {}", hooks.hooks_dir.display()));
        if !dry_run {
            std::fs::create_dir_all(&hooks.hooks_dir).map_err(io(&hooks.hooks_dir))?;
        }
    }
    for name in HOOK_NAMES {
        let link = hooks.hooks_dir.join(name);
        let current = std::fs::read_link(&link).ok();
        if current.as_deref() == Some(hooks.hook_binary.as_path()) {
            continue;
        }
        changes.push(format!(
            "link {} -> {}",
            link.display(),
            hooks.hook_binary.display()
        ));
        if dry_run {
            continue;
        }
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).map_err(io(&link))?;
        }
        std::os::unix::fs::symlink(&hooks.hook_binary, &link).map_err(io(&link))?;
    }
    Ok(changes)
}

/// Writes GRASP's git config and the hook settings into one bare repository. Returns what
/// changed.
pub(super) fn configure_repo(path: &Path, hooks: &HookSetup, dry_run: bool) -> Result<Vec<String>, GitError> {
    let repository = git2::Repository::open_bare(path)?;
    let mut config = repository.config()?.open_level(git2::ConfigLevel::Local)?;
    let hooks_path = hooks.hooks_dir.display().to_string();
    let socket = hooks.socket.display().to_string();
    let spool = hooks.spool_dir.display().to_string();
    let wanted = REPO_CONFIG.iter().map(|(k, v)| (*k, *v)).chain([
        ("core.hooksPath", hooks_path.as_str()),
        ("graspd.socket", socket.as_str()),
        ("graspd.spool", spool.as_str()),
    ]);
    let mut changes = Vec::new();
    for (key, value) in wanted {
        if config.get_string(key).ok().as_deref() == Some(value) {
            continue;
        }
        changes.push(format!("{}: set {key} = {value}", path.display()));
        if !dry_run {
            config.set_str(key, value)?;
        }
    }
    Ok(changes)
}
