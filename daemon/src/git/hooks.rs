//! Hook installation: one shared hooks directory whose `pre-receive` and `post-receive` are links
//! to grasp-hook, and per-repository git config that points git at it (`core.hooksPath`) and
//! tells the hook where its daemon listens (`graspd.socket`) and where to spool (`graspd.spool`).
//! Writing the socket into the repository's own config is what lets a hook run by any
//! git-http-backend (ours, or nginx + fcgiwrap) find the daemon.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{GitError, REPO_CONFIG};
use crate::config::HookSetup;

const HOOK_NAMES: [&str; 2] = ["pre-receive", "post-receive"];

/// The fast hook (hook/fast), built for this platform by build.rs; empty where there is none.
pub const FAST_HOOK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/grasp-hook-fast"));
/// The fast hook's file name in the hooks directory.
pub const FAST_NAME: &str = "grasp-hook-fast";
/// The link, next to the fast hook, to the full grasp-hook it hands unusual runs to.
pub const FULL_NAME: &str = "grasp-hook";

/// Creates or repairs the hooks directory. Returns what changed.
///
/// With a fast hook for this platform: `grasp-hook-fast` (a file graspd writes), `grasp-hook` (a
/// link to the full hook), and `pre-receive`/`post-receive` linking to `grasp-hook-fast`.
/// Without: `pre-receive`/`post-receive` link to the full hook directly.
pub(super) fn prepare_hooks_dir(hooks: &HookSetup, dry_run: bool) -> Result<Vec<String>, GitError> {
    let mut changes = Vec::new();
    if !hooks.hooks_dir.is_dir() {
        changes.push(format!("create {}", hooks.hooks_dir.display()));
        if !dry_run {
            std::fs::create_dir_all(&hooks.hooks_dir).map_err(io(&hooks.hooks_dir))?;
        }
    }
    let hook_target = if FAST_HOOK.is_empty() {
        hooks.hook_binary.clone()
    } else {
        write_fast_hook(&hooks.hooks_dir.join(FAST_NAME), dry_run, &mut changes)?;
        ensure_link(
            &hooks.hooks_dir.join(FULL_NAME),
            &hooks.hook_binary,
            dry_run,
            &mut changes,
        )?;
        PathBuf::from(FAST_NAME)
    };
    for name in HOOK_NAMES {
        ensure_link(&hooks.hooks_dir.join(name), &hook_target, dry_run, &mut changes)?;
    }
    Ok(changes)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GitError + use<> {
    let path = path.to_owned();
    move |source| GitError::Io { path, source }
}

/// Points the symbolic link `link` at `target`, replacing whatever is there atomically: the new
/// link is made beside it and renamed over it, so a push arriving meanwhile never finds the hook
/// missing (git would then run no pre-receive at all and accept the push unchecked).
fn ensure_link(link: &Path, target: &Path, dry_run: bool, changes: &mut Vec<String>) -> Result<(), GitError> {
    if std::fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    changes.push(format!("link {} -> {}", link.display(), target.display()));
    if dry_run {
        return Ok(());
    }
    let temporary = link.with_extension("new-link");
    if temporary.symlink_metadata().is_ok() {
        std::fs::remove_file(&temporary).map_err(io(&temporary))?;
    }
    std::os::unix::fs::symlink(target, &temporary).map_err(io(&temporary))?;
    std::fs::rename(&temporary, link).map_err(io(link))
}

/// Writes the fast hook (mode 0755) unless the same bytes are already there; atomically, so a
/// push running meanwhile starts either the old hook or the new one.
fn write_fast_hook(path: &Path, dry_run: bool, changes: &mut Vec<String>) -> Result<(), GitError> {
    let current = std::fs::read(path).ok();
    let executable = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o755 == 0o755);
    if current.as_deref() == Some(FAST_HOOK) && executable {
        return Ok(());
    }
    changes.push(format!(
        "write {} (fast hook, {} bytes)",
        path.display(),
        FAST_HOOK.len()
    ));
    if dry_run {
        return Ok(());
    }
    // Written whole and synced before it takes the name: after a crash the hook is the old one
    // or the new one, never a truncated file.
    let temporary = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, FAST_HOOK)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        file.sync_all()
    };
    write().map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// graspd's own layout under `data`, with the full hook in `data/bin`.
    fn setup(data: &Path) -> HookSetup {
        HookSetup::resolve(data, None, Some(&data.join("bin").join("grasp-hook")))
    }

    #[test]
    fn the_hooks_directory_puts_the_fast_hook_in_front_of_the_full_one() {
        let data = tempfile::tempdir().expect("tempdir");
        let hooks = setup(data.path());
        let dir = &hooks.hooks_dir;

        let planned = prepare_hooks_dir(&hooks, true).expect("dry run");
        assert!(!dir.exists(), "a dry run changes nothing");
        let changes = prepare_hooks_dir(&hooks, false).expect("prepare");
        assert_eq!(planned, changes);
        if FAST_HOOK.is_empty() {
            for name in HOOK_NAMES {
                assert_eq!(
                    std::fs::read_link(dir.join(name)).expect("link"),
                    hooks.hook_binary
                );
            }
            return;
        }
        let fast = dir.join(FAST_NAME);
        assert_eq!(std::fs::read(&fast).expect("fast hook"), FAST_HOOK);
        assert_eq!(
            std::fs::metadata(&fast).expect("meta").permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_link(dir.join(FULL_NAME)).expect("link"),
            hooks.hook_binary
        );
        for name in HOOK_NAMES {
            assert_eq!(
                std::fs::read_link(dir.join(name)).expect("link"),
                Path::new(FAST_NAME)
            );
        }
        assert!(
            prepare_hooks_dir(&hooks, false).expect("again").is_empty(),
            "idempotent"
        );

        // An older layout (hooks linked to the full hook directly) is replaced link by link.
        std::fs::remove_file(dir.join("pre-receive")).expect("unlink");
        std::os::unix::fs::symlink(&hooks.hook_binary, dir.join("pre-receive")).expect("link");
        assert_eq!(prepare_hooks_dir(&hooks, false).expect("upgrade").len(), 1);
        assert_eq!(
            std::fs::read_link(dir.join("pre-receive")).expect("link"),
            Path::new(FAST_NAME)
        );
        assert!(!dir.join("pre-receive.new-link").exists());

        // A stale or damaged fast hook (an older graspd's) is replaced whole.
        std::fs::write(&fast, b"old").expect("write");
        let changes = prepare_hooks_dir(&hooks, false).expect("repair");
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].starts_with("write "), "{changes:?}");
        assert_eq!(std::fs::read(&fast).expect("fast hook"), FAST_HOOK);
        assert!(!fast.with_extension("tmp").exists());
    }
}
