//! `grasp-hook`: git's pre-receive and post-receive hook for graspd repositories.
//!
//! A thin gateway, as Gitaly's `gitaly-hooks` is: it parses what git gives it, makes one call to
//! graspd's `HookService` over the daemon's Unix socket, relays the daemon's messages to the
//! pusher (stderr becomes `remote: ...`) and turns the answer into an exit status. Every decision
//! is the daemon's. See README.md for the operator's view.
//!
//! * pre-receive fails closed: no answer from graspd means the push is refused.
//! * post-receive never fails: the push has landed; an undelivered report goes to the spool.

#![forbid(unsafe_code)]

mod cli;
mod client;
mod config;
mod spool;
mod updates;

// The fast hook (hook/fast, a separate no_std binary built by build.rs) shares only the
// grasp-values rules with this one; its pure parts are compiled in here only to be unit-tested
// with std and prost (`crate::rules` is how its wire code reaches those rules).
#[cfg(test)]
mod fast_fuzz;
#[cfg(test)]
mod fast_tests;
#[cfg(test)]
#[path = "../fast/huffman.rs"]
mod huffman;
#[cfg(test)]
#[path = "../fast/wire.rs"]
#[allow(dead_code)] // the fast hook's reading side is exercised by the hook tests, not unit tests
mod wire;
#[cfg(test)]
use grasp_values as rules;

use std::ffi::OsString;
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use grasp_proto::v1::{AuthorizePushRequest, CheckRequest, ReportPushRequest};

use crate::cli::Mode;
use crate::client::Daemon;
use crate::config::{GitConfig, Settings};
use crate::updates::RefUpdate;

/// Exit status for usage errors, as is customary for command-line tools.
const USAGE_EXIT: u8 = 2;

/// Said when no socket is configured anywhere.
const NO_SOCKET: &str = "no graspd socket configured (GRASPD_SOCKET or git config graspd.socket)";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match cli::select_mode(&args) {
        Some(Mode::PreReceive) => pre_receive(),
        Some(Mode::PostReceive) => post_receive(),
        Some(Mode::Check) => check(),
        None => {
            let _ = std::io::stderr().write_all(cli::USAGE.as_bytes());
            ExitCode::from(USAGE_EXIT)
        }
    }
}

/// Asks graspd whether the push may land. Exit 0 only on graspd's explicit "allowed".
fn pre_receive() -> ExitCode {
    let updates = match read_stdin() {
        Ok(updates) => updates,
        Err(err) => {
            say(format_args!("grasp-hook: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let repo = match current_repo() {
        Ok(repo) => repo,
        Err(err) => {
            say(format_args!("grasp-hook: {err}; push refused"));
            return ExitCode::FAILURE;
        }
    };
    let Some(daemon) = daemon(Some(&repo)) else {
        say(format_args!("grasp-hook: {NO_SOCKET}; push refused"));
        return ExitCode::FAILURE;
    };
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let request = AuthorizePushRequest {
        repo_path: path_string(&repo),
        updates: into_proto(updates),
        quarantine_path: env("GIT_QUARANTINE_PATH"),
        client_address: env("REMOTE_ADDR"),
    };
    match daemon.authorize_push(request) {
        Ok(answer) => {
            let mut said_anything = false;
            for verdict in answer.verdicts.iter().filter(|v| !v.message.is_empty()) {
                say(&verdict.message);
                said_anything = true;
            }
            if answer.allowed {
                ExitCode::SUCCESS
            } else {
                if !said_anything {
                    say("grasp-hook: graspd refused the push");
                }
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            say(format_args!(
                "grasp-hook: cannot reach graspd at {}: {err}; push refused",
                daemon.socket.display()
            ));
            ExitCode::FAILURE
        }
    }
}

/// Tells graspd the push landed. Always exits 0: failing now would not undo the push.
fn post_receive() -> ExitCode {
    let updates = match read_stdin() {
        Ok(updates) => updates,
        Err(err) => {
            say(format_args!("grasp-hook: {err}"));
            return ExitCode::SUCCESS;
        }
    };
    let repo = match current_repo() {
        Ok(repo) => repo,
        Err(err) => {
            say(format_args!(
                "grasp-hook: warning: {err}; the push landed but graspd was not told about it"
            ));
            return ExitCode::SUCCESS;
        }
    };
    let settings = settings(Some(&repo));
    let request = ReportPushRequest {
        repo_path: path_string(&repo),
        updates: into_proto(updates),
    };
    let failure = match daemon_at(settings.socket.clone()) {
        None => NO_SOCKET.to_owned(),
        Some(daemon) => match daemon.report_push(request.clone()) {
            Ok(answer) => {
                for message in answer.messages.iter().filter(|m| !m.is_empty()) {
                    say(message);
                }
                return ExitCode::SUCCESS;
            }
            Err(err) => format!("{}: {err}", daemon.socket.display()),
        },
    };
    match settings.spool {
        Some(dir) => match spool::write_report(&dir, &request) {
            Ok(_) => say(format_args!(
                "grasp-hook: graspd unreachable ({failure}); push recorded in {} and will be processed when \
                 graspd is back",
                dir.display()
            )),
            Err(err) => say(format_args!(
                "grasp-hook: warning: graspd unreachable ({failure}) and the push could not be recorded in {}: \
                 {err}; the push landed but graspd was not told about it",
                dir.display()
            )),
        },
        None => say(format_args!(
            "grasp-hook: warning: graspd unreachable ({failure}) and no spool directory configured \
             (GRASPD_SPOOL or git config graspd.spool); the push landed but graspd was not told about it"
        )),
    }
    ExitCode::SUCCESS
}

/// `grasp-hook check`: can this hook reach graspd, and does graspd serve this repository?
/// The success line goes to stdout (for scripts and `graspd doctor`), problems to stderr.
fn check() -> ExitCode {
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(err) => {
            say(format_args!(
                "grasp-hook: cannot determine the current directory: {err}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let git_dir = std::env::var_os("GIT_DIR").filter(|dir| !dir.is_empty());
    let repo = match git_dir {
        Some(dir) => Some(config::repo_dir(Some(&dir), &cwd)),
        None if config::looks_like_git_dir(&cwd) => Some(config::repo_dir(None, &cwd)),
        None => None,
    };
    let Some(daemon) = daemon(repo.as_deref()) else {
        say(format_args!("grasp-hook: {NO_SOCKET}"));
        return ExitCode::FAILURE;
    };
    let repo_path = repo.as_deref().map(path_string).unwrap_or_default();
    let answer = match daemon.check(CheckRequest {
        repo_path: repo_path.clone(),
    }) {
        Ok(answer) => answer,
        Err(err) => {
            say(format_args!(
                "grasp-hook: cannot reach graspd at {}: {err}",
                daemon.socket.display()
            ));
            return ExitCode::FAILURE;
        }
    };
    let message = if answer.message.is_empty() {
        String::new()
    } else {
        format!("; {}", answer.message)
    };
    if !repo_path.is_empty() && !answer.repo_known {
        say(format_args!(
            "grasp-hook: graspd {} at {} does not serve {repo_path}{message}",
            answer.version,
            daemon.socket.display()
        ));
        return ExitCode::FAILURE;
    }
    let _ = writeln!(
        std::io::stdout(),
        "ok: graspd {} at {}{message}",
        answer.version,
        daemon.socket.display()
    );
    ExitCode::SUCCESS
}

/// Writes one line to stderr, which git relays to the pusher as `remote: ...`. A failed write
/// (the pusher hung up) is ignored: it must not change the hook's verdict.
fn say(line: impl Display) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn read_stdin() -> Result<Vec<RefUpdate>, updates::InputError> {
    updates::read_updates(std::io::stdin().lock())
}

/// The repository git runs the hook for (see [`config::repo_dir`]).
fn current_repo() -> Result<PathBuf, String> {
    let cwd =
        std::env::current_dir().map_err(|err| format!("cannot determine the current directory: {err}"))?;
    Ok(config::repo_dir(std::env::var_os("GIT_DIR").as_deref(), &cwd))
}

/// The socket and spool settings from the environment and `repo`'s git config. An unreadable
/// config file is reported and treated as empty: without a socket the push is refused anyway.
fn settings(repo: Option<&Path>) -> Settings {
    let config = repo.and_then(|repo| match GitConfig::load(repo) {
        Ok(config) => Some(config),
        Err(err) => {
            say(format_args!(
                "grasp-hook: warning: cannot read {}: {err}",
                repo.join("config").display()
            ));
            None
        }
    });
    Settings::resolve(|var| std::env::var_os(var), config.as_ref(), repo)
}

/// The daemon to call, if a socket is configured for `repo`.
fn daemon(repo: Option<&Path>) -> Option<Daemon> {
    daemon_at(settings(repo).socket)
}

fn daemon_at(socket: Option<PathBuf>) -> Option<Daemon> {
    let socket = socket?;
    let timeout =
        config::parse_timeout(std::env::var_os(config::TIMEOUT_ENV).as_deref()).unwrap_or_else(|err| {
            say(format_args!(
                "grasp-hook: warning: {err}; using {} s",
                config::DEFAULT_TIMEOUT.as_secs()
            ));
            config::DEFAULT_TIMEOUT
        });
    Some(Daemon { socket, timeout })
}

fn into_proto(updates: Vec<RefUpdate>) -> Vec<grasp_proto::v1::RefUpdate> {
    updates.into_iter().map(Into::into).collect()
}

/// graspd's repository paths are ASCII (`<git-root>/<npub>/<identifier>.git`); a path that is not
/// UTF-8 cannot be one of them, and the lossy form makes the daemon say so.
fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
