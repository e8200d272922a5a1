//! Which job this run of `grasp-hook` does.
//!
//! git runs a hook by its file name, so graspd installs `pre-receive` and `post-receive` as links
//! to this one binary and the mode comes from `argv[0]`. Run by hand (or by `graspd doctor`), the
//! mode is the first argument instead: `grasp-hook pre-receive|post-receive|check`.

use std::ffi::OsString;
use std::path::Path;

/// Printed on stderr, with exit status 2, for `--help` and anything not understood.
pub const USAGE: &str = "\
usage: grasp-hook pre-receive | post-receive | check

The git receive hook of graspd. git runs it as hooks/pre-receive and hooks/post-receive (links to
this binary); it reads git's `<old-oid> <new-oid> <ref-name>` lines on stdin and asks graspd.

  pre-receive    ask graspd whether the push may land (HookService.AuthorizePush);
                 exit 1 refuses the push, also when graspd cannot be reached
  post-receive   tell graspd the push landed (HookService.ReportPush); always exits 0,
                 records the report in the spool directory when graspd cannot be reached
  check          test that graspd answers on its socket (HookService.Check) and knows
                 the repository in $GIT_DIR or the current directory, if any

Environment (each falls back to the repository's git config, section [graspd]):
  GRASPD_SOCKET            graspd's hook socket        (git config graspd.socket)
  GRASPD_SPOOL             spool directory             (git config graspd.spool)
  GRASP_HOOK_TIMEOUT_SECS  deadline for connect + call (default 30)
";

/// The three jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PreReceive,
    PostReceive,
    Check,
}

impl Mode {
    fn from_hook_name(name: &str) -> Option<Mode> {
        match name {
            "pre-receive" => Some(Mode::PreReceive),
            "post-receive" => Some(Mode::PostReceive),
            _ => None,
        }
    }
}

/// Picks the mode from the full argument list (`args[0]` is the program). `None` means: print
/// [`USAGE`] and exit 2. git passes no arguments to these hooks, so extra arguments are refused
/// rather than ignored.
pub fn select_mode(args: &[OsString]) -> Option<Mode> {
    let program = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .and_then(|name| name.to_str());
    if let Some(mode) = program.and_then(Mode::from_hook_name) {
        return (args.len() == 1).then_some(mode);
    }
    let [_, mode] = args else { return None };
    match mode.to_str()? {
        "check" => Some(Mode::Check),
        name => Mode::from_hook_name(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(args: &[&str]) -> Option<Mode> {
        select_mode(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn git_runs_the_hook_by_its_link_name() {
        assert_eq!(mode(&["hooks/pre-receive"]), Some(Mode::PreReceive));
        assert_eq!(mode(&["/srv/graspd/hooks/post-receive"]), Some(Mode::PostReceive));
        assert_eq!(mode(&["pre-receive"]), Some(Mode::PreReceive));
    }

    #[test]
    fn run_by_hand_the_first_argument_is_the_mode() {
        assert_eq!(mode(&["grasp-hook", "pre-receive"]), Some(Mode::PreReceive));
        assert_eq!(
            mode(&["/usr/bin/grasp-hook", "post-receive"]),
            Some(Mode::PostReceive)
        );
        assert_eq!(mode(&["grasp-hook", "check"]), Some(Mode::Check));
    }

    #[test]
    fn help_unknown_missing_or_extra_arguments_mean_usage() {
        assert_eq!(mode(&["grasp-hook"]), None);
        assert_eq!(mode(&["grasp-hook", "--help"]), None);
        assert_eq!(mode(&["grasp-hook", "-h"]), None);
        assert_eq!(mode(&["grasp-hook", "update"]), None);
        assert_eq!(mode(&["grasp-hook", "check", "extra"]), None);
        assert_eq!(mode(&["hooks/pre-receive", "--help"]), None);
        assert_eq!(mode(&["hooks/update", "refs/heads/main"]), None);
        assert_eq!(mode(&[]), None);
    }

    #[test]
    fn check_is_not_a_hook_name() {
        assert_eq!(mode(&["hooks/check"]), None);
    }
}
