//! `graspd doctor`: checks a deployment the way a push will exercise it, and says how to fix
//! what is wrong.
//!
//! Run it as the user that runs `git http-backend` (e.g. `sudo -u www-data graspd doctor ...`)
//! to see the deployment as the hook sees it: every check here is an actual attempt (follow the
//! link, connect to the socket, run `grasp-hook check`, create a file), not a reading of
//! permission bits, so it answers for the user it runs as.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use graspd::config::HookSetup;
use graspd::git::GitRepos;

/// Repositories `grasp-hook check` is run for (one process each); the other checks cover all.
pub const HOOK_CHECK_SAMPLE: usize = 20;

const HOOK_NAMES: [&str; 2] = ["pre-receive", "post-receive"];

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    /// What was checked and what was found.
    pub what: String,
    /// How to fix it, for failures.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Self {
        Self {
            ok: true,
            what: what.into(),
            fix: None,
        }
    }

    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            ok: false,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<4} {}", if self.ok { "OK" } else { "FAIL" }, self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n     fix: {fix}")?;
        }
        Ok(())
    }
}

/// Runs every check against the git root and hook setup of `git`. `install_hooks` is the command
/// line that repairs hooks and repository config, quoted in fixes.
pub async fn run(git: &GitRepos, install_hooks: &str, progress: &mut super::Progress) -> Vec<Finding> {
    let (mut findings, repos) = {
        let git = git.clone();
        let install_hooks = install_hooks.to_owned();
        tokio::task::spawn_blocking(move || {
            let hooks = git.hooks();
            let mut findings = check_hooks_dir(hooks, &install_hooks);
            findings.push(check_socket(&hooks.socket));
            findings.push(check_spool(&hooks.spool_dir));
            findings.extend(check_git_root(git.root()));
            (findings, git.list_all_repo_dirs())
        })
        .await
        .unwrap_or_else(|e| {
            (
                vec![Finding::fail(format!("checks panicked: {e}"), "report a bug")],
                Vec::new(),
            )
        })
    };
    // One line for every repository whose config is right, one each for the others.
    let mut configured = 0;
    progress.start(repos.len());
    for (done, repo) in repos.iter().enumerate() {
        progress.at(done);
        findings.push(match git.install_hooks_at(repo.clone(), true).await {
            Ok(missing) if missing.is_empty() => {
                configured += 1;
                continue;
            }
            Ok(missing) => Finding::fail(
                format!("{}: git config differs: {}", repo.display(), missing.join("; ")),
                install_hooks.to_owned(),
            ),
            Err(error) => Finding::fail(
                format!("{}: cannot read its git config: {error}", repo.display()),
                "check the repository's ownership and permissions (see the git root checks)",
            ),
        });
    }
    progress.done(repos.len());
    if configured > 0 {
        findings.push(Finding::ok(format!(
            "{configured} repositor{}: git config has GRASP-01 [56] keys, core.hooksPath, graspd.socket, \
             graspd.spool",
            if configured == 1 { "y" } else { "ies" }
        )));
    }
    let git = git.clone();
    let hook_checks = tokio::task::spawn_blocking(move || {
        let mut findings: Vec<Finding> = repos
            .iter()
            .filter_map(|repo| check_repo_writable(repo))
            .collect();
        findings.extend(check_hook_reaches_daemon(git.hooks(), &repos));
        findings
    })
    .await
    .unwrap_or_default();
    findings.extend(hook_checks);
    findings
}

/// The hooks directory and its `pre-receive`/`post-receive` links to an executable grasp-hook.
fn check_hooks_dir(hooks: &HookSetup, install_hooks: &str) -> Vec<Finding> {
    let dir = &hooks.hooks_dir;
    if !dir.is_dir() {
        return vec![Finding::fail(
            format!("hooks directory {} does not exist", dir.display()),
            install_hooks.to_owned(),
        )];
    }
    let mut findings = vec![Finding::ok(format!("hooks directory {}", dir.display()))];
    // With the fast hook in front, the full hook it hands unusual runs to must work too.
    let fast = dir.join(graspd::git::FAST_HOOK_NAME).exists();
    let names: &[&str] = if fast {
        &["pre-receive", "post-receive", graspd::git::FULL_HOOK_NAME]
    } else {
        &HOOK_NAMES
    };
    for &name in names {
        let link = dir.join(name);
        let target = std::fs::read_link(&link).unwrap_or_else(|_| link.clone());
        let finding = match std::fs::metadata(&link) {
            Err(error) => Finding::fail(
                format!("{} -> {}: {error}", link.display(), target.display()),
                format!(
                    "install grasp-hook (cargo build --release -p grasp-hook) where --hook-binary points, \
                     then {install_hooks}"
                ),
            ),
            Ok(meta) if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 => Finding::fail(
                format!(
                    "{} -> {}: not an executable file",
                    link.display(),
                    target.display()
                ),
                format!("chmod 755 {}", target.display()),
            ),
            Ok(_) => Finding::ok(format!("{} -> {} (executable)", link.display(), target.display())),
        };
        findings.push(finding);
    }
    findings
}

/// The gRPC socket exists and accepts a connection from this user.
fn check_socket(socket: &Path) -> Finding {
    let meta = match std::fs::metadata(socket) {
        Ok(meta) => meta,
        Err(error) => {
            return Finding::fail(
                format!("socket {}: {error}", socket.display()),
                "start graspd (graspd serve with the same --data-dir/--grpc-socket), or pass the \
                 socket it uses with --grpc-socket",
            );
        }
    };
    if !meta.file_type().is_socket() {
        return Finding::fail(
            format!("{} is not a socket", socket.display()),
            "remove it and restart graspd",
        );
    }
    let owner = format!(
        "mode {:04o}, uid {} gid {}",
        meta.permissions().mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => Finding::ok(format!(
            "socket {} accepts connections ({owner})",
            socket.display()
        )),
        Err(error) if error.kind() == ErrorKind::PermissionDenied => Finding::fail(
            format!("socket {}: permission denied ({owner})", socket.display()),
            "run graspd with --grpc-socket-mode 0660 and put the user that runs git http-backend \
             (e.g. www-data for fcgiwrap) in graspd's group",
        ),
        Err(error) => Finding::fail(
            format!("socket {}: {error} ({owner})", socket.display()),
            "graspd is not running on this socket: start it (a stale socket file is replaced at start)",
        ),
    }
}

/// The spool directory exists and this user can leave a report there.
fn check_spool(spool: &Path) -> Finding {
    let fix = format!(
        "install -d -m 2775 -o <graspd user> -g <graspd group> {}",
        spool.display()
    );
    if !spool.is_dir() {
        // The hook creates it on first use, if it may write where it goes.
        let parent = spool.parent().unwrap_or(Path::new("/"));
        return match probe_write(parent) {
            Ok(()) => Finding::ok(format!(
                "spool directory {} does not exist yet; this user can create it in {}",
                spool.display(),
                parent.display()
            )),
            Err(error) => Finding::fail(
                format!(
                    "spool directory {} does not exist, and this user cannot create it in {}: {error}",
                    spool.display(),
                    parent.display()
                ),
                fix,
            ),
        };
    }
    match probe_write(spool) {
        Ok(()) => Finding::ok(format!("spool directory {} is writable", spool.display())),
        Err(error) => Finding::fail(
            format!("spool directory {}: cannot write: {error}", spool.display()),
            fix,
        ),
    }
}

/// The git root exists and this user can list it.
fn check_git_root(root: &Path) -> Vec<Finding> {
    let meta = match std::fs::metadata(root) {
        Ok(meta) => meta,
        Err(error) => {
            return vec![Finding::fail(
                format!("git root {}: {error}", root.display()),
                "pass graspd's --git-root (default <data-dir>/repos); graspd creates it at start",
            )];
        }
    };
    let owner = format!(
        "owner uid {} gid {}, mode {:04o}",
        meta.uid(),
        meta.gid(),
        meta.permissions().mode() & 0o7777
    );
    match std::fs::read_dir(root) {
        Ok(_) => vec![Finding::ok(format!(
            "git root {} is readable ({owner})",
            root.display()
        ))],
        Err(error) => vec![Finding::fail(
            format!("git root {}: {error} ({owner})", root.display()),
            "make the data directory and git root group-readable and -writable by graspd's group \
             (chmod -R g+rwX,g+s), and run the git http-backend user in that group",
        )],
    }
}

/// receive-pack writes into the repository directory, `objects/` and `refs/`: can this user?
fn check_repo_writable(repo: &Path) -> Option<Finding> {
    let dirs = [repo.to_owned(), repo.join("objects"), repo.join("refs")];
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| probe_write(dir).err().map(|e| format!("{}: {e}", dir.display())))
        .collect();
    if failures.is_empty() {
        return None;
    }
    Some(Finding::fail(
        format!(
            "{}: not writable by this user: {}",
            repo.display(),
            failures.join("; ")
        ),
        format!(
            "chmod -R g+rwX {0} && find {0} -type d -exec chmod g+s {{}} +  (and run graspd with \
             UMask=0002 so new repositories are group-writable)",
            repo.display()
        ),
    ))
}

/// `grasp-hook check` as git would run it (GIT_DIR set, no GRASPD_SOCKET): it reads the
/// repository's `graspd.socket` and asks the daemon whether it serves the repository. With no
/// repository yet, it checks the socket alone.
fn check_hook_reaches_daemon(hooks: &HookSetup, repos: &[PathBuf]) -> Vec<Finding> {
    // The full hook: `grasp-hook` beside the fast one, else whatever pre-receive links to.
    let full = hooks.hooks_dir.join(graspd::git::FULL_HOOK_NAME);
    let hook = if full.exists() {
        full
    } else {
        std::fs::read_link(hooks.hooks_dir.join("pre-receive"))
            .map(|target| hooks.hooks_dir.join(target))
            .unwrap_or_else(|_| hooks.hook_binary.clone())
    };
    let run = |repo: Option<&Path>| {
        let mut command = Command::new(&hook);
        command.arg("check").env_remove("GRASPD_SOCKET");
        match repo {
            Some(repo) => command.env("GIT_DIR", repo).current_dir(repo),
            None => command
                .env_remove("GIT_DIR")
                .env("GRASPD_SOCKET", &hooks.socket)
                .current_dir("/"),
        };
        let what = repo.map_or_else(
            || "grasp-hook check".to_owned(),
            |r| format!("grasp-hook check in {}", r.display()),
        );
        match command.output() {
            Ok(out) if out.status.success() => {
                Finding::ok(format!("{what}: {}", String::from_utf8_lossy(&out.stdout).trim()))
            }
            Ok(out) => Finding::fail(
                format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()),
                "see the socket and git config checks above; the hook must reach graspd for pushes to \
                 be accepted",
            ),
            Err(error) => Finding::fail(
                format!("{what}: cannot run {}: {error}", hook.display()),
                "see the hooks checks above",
            ),
        }
    };
    if repos.is_empty() {
        return vec![run(None)];
    }
    let mut findings: Vec<Finding> = repos
        .iter()
        .take(HOOK_CHECK_SAMPLE)
        .map(|r| run(Some(r)))
        .collect();
    if repos.len() > HOOK_CHECK_SAMPLE {
        findings.push(Finding::ok(format!(
            "grasp-hook check run for {HOOK_CHECK_SAMPLE} of {} repositories",
            repos.len()
        )));
    }
    findings
}

/// Whether this process runs as root, for whom every permission check passes: then the checks
/// say nothing about the user git http-backend runs as.
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Creates and removes a file in `dir`: the only reliable answer to "can I write here?".
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".graspd-doctor-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(data: &Path) -> HookSetup {
        HookSetup {
            socket: data.join("graspd.sock"),
            hooks_dir: data.join("hooks"),
            spool_dir: data.join("spool"),
            hook_binary: data.join("grasp-hook"),
        }
    }

    #[test]
    fn missing_hooks_directory_and_socket_fail_with_fixes() {
        let data = tempfile::tempdir().expect("tempdir");
        let hooks = setup(data.path());
        let findings = check_hooks_dir(&hooks, "graspd install-hooks");
        assert!(!findings[0].ok);
        assert_eq!(findings[0].fix.as_deref(), Some("graspd install-hooks"));
        let socket = check_socket(&hooks.socket);
        assert!(!socket.ok && socket.fix.as_deref().is_some_and(|f| f.contains("start graspd")));
        assert!(
            check_spool(&hooks.spool_dir).ok,
            "missing, but the hook may create it: the data directory is writable"
        );
        assert!(!check_spool(&data.path().join("gone").join("spool")).ok);
    }

    #[test]
    fn hook_links_must_reach_an_executable() {
        let data = tempfile::tempdir().expect("tempdir");
        let hooks = setup(data.path());
        std::fs::create_dir_all(&hooks.hooks_dir).expect("mkdir");
        std::fs::write(&hooks.hook_binary, "#!/bin/sh\n").expect("write");
        for name in HOOK_NAMES {
            std::os::unix::fs::symlink(&hooks.hook_binary, hooks.hooks_dir.join(name)).expect("link");
        }
        std::fs::set_permissions(&hooks.hook_binary, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let findings = check_hooks_dir(&hooks, "x");
        assert!(
            findings[1..]
                .iter()
                .all(|f| !f.ok && f.what.contains("not an executable"))
        );
        std::fs::set_permissions(&hooks.hook_binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(check_hooks_dir(&hooks, "x").iter().all(|f| f.ok));
    }

    #[test]
    fn with_the_fast_hook_the_full_hook_behind_it_is_checked_too() {
        let data = tempfile::tempdir().expect("tempdir");
        let hooks = setup(data.path());
        std::fs::create_dir_all(&hooks.hooks_dir).expect("mkdir");
        let fast = hooks.hooks_dir.join(graspd::git::FAST_HOOK_NAME);
        std::fs::write(&fast, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&fast, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for name in HOOK_NAMES {
            std::os::unix::fs::symlink(graspd::git::FAST_HOOK_NAME, hooks.hooks_dir.join(name))
                .expect("link");
        }
        let full = hooks.hooks_dir.join(graspd::git::FULL_HOOK_NAME);
        std::os::unix::fs::symlink(&hooks.hook_binary, &full).expect("link");
        // The full hook is not installed where the link points.
        let findings = check_hooks_dir(&hooks, "x");
        assert_eq!(findings.len(), 4);
        assert!(findings[1].ok && findings[2].ok, "{findings:?}");
        assert!(
            !findings[3].ok && findings[3].what.contains("grasp-hook"),
            "{findings:?}"
        );
        std::fs::write(&hooks.hook_binary, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&hooks.hook_binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(check_hooks_dir(&hooks, "x").iter().all(|f| f.ok));
    }

    #[test]
    fn findings_print_as_ok_and_fail_lines_with_the_fix_below() {
        assert_eq!(Finding::ok("a").to_string(), "OK   a");
        assert_eq!(Finding::fail("b", "do c").to_string(), "FAIL b\n     fix: do c");
    }
}
