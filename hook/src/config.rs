//! Where the hook runs and how it finds graspd: the repository path, the daemon's socket and the
//! spool directory.
//!
//! graspd cannot always put these in the hook's environment (behind nginx/fcgiwrap the daemon does
//! not start git), so when the environment does not say, the repository's own git config does:
//! graspd writes `graspd.socket` and `graspd.spool` into every repository it provisions. The hook
//! reads that file with the small parser below instead of linking a git library or running
//! `git config` (a process per push just to read two keys).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the daemon's hook socket; wins over git config `graspd.socket`.
pub const SOCKET_ENV: &str = "GRASPD_SOCKET";
/// Environment variable naming the spool directory; wins over git config `graspd.spool`.
pub const SPOOL_ENV: &str = "GRASPD_SPOOL";
/// Environment variable with the timeout, in whole seconds, for connecting and calling the daemon.
pub const TIMEOUT_ENV: &str = "GRASP_HOOK_TIMEOUT_SECS";
/// Timeout when [`TIMEOUT_ENV`] is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bare repository the hook runs for: `$GIT_DIR` (git sets it for hooks, often as a relative
/// path such as `.`) resolved against `cwd`, else `cwd` itself; canonicalized when it exists so
/// the daemon sees the same path it provisioned.
pub fn repo_dir(git_dir: Option<&OsStr>, cwd: &Path) -> PathBuf {
    let dir = match git_dir {
        Some(git_dir) if !git_dir.is_empty() => cwd.join(git_dir),
        _ => cwd.to_path_buf(),
    };
    dir.canonicalize().unwrap_or(dir)
}

/// Whether `dir` looks like a git directory (`HEAD` and `objects/`); used by `grasp-hook check`,
/// which may be run from anywhere.
pub fn looks_like_git_dir(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("objects").is_dir()
}

/// How to reach graspd, from the environment or else the repository's git config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// The daemon's gRPC Unix socket; `None`: not configured anywhere.
    pub socket: Option<PathBuf>,
    /// Where post-receive records a report the daemon could not take; `None`: not configured.
    pub spool: Option<PathBuf>,
}

impl Settings {
    /// Combines the environment (`env` looks a variable up) with the repository's git config.
    /// Relative paths in the config are taken relative to the repository, as git does for hooks'
    /// working directory; relative paths in the environment are left to the current directory.
    pub fn resolve(
        env: impl Fn(&str) -> Option<OsString>,
        config: Option<&GitConfig>,
        repo: Option<&Path>,
    ) -> Settings {
        let pick = |var: &str, key: &str| -> Option<PathBuf> {
            if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                return Some(PathBuf::from(value));
            }
            let value = config?.get("graspd", key).filter(|v| !v.is_empty())?;
            Some(match repo {
                Some(repo) => repo.join(value),
                None => PathBuf::from(value),
            })
        };
        Settings {
            socket: pick(SOCKET_ENV, "socket"),
            spool: pick(SPOOL_ENV, "spool"),
        }
    }
}

/// Parses [`TIMEOUT_ENV`]'s value: a positive whole number of seconds.
pub fn parse_timeout(value: Option<&OsStr>) -> Result<Duration, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_TIMEOUT);
    };
    match value.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{TIMEOUT_ENV}={value:?} is not a positive number of seconds"
        )),
    }
}

/// The entries of one git config file, in file order. Only what the hook needs is supported:
/// `[section]` / `[section "subsection"]` headers, `key = value` (a bare `key` is `true`), double
/// quotes with git's escapes, `#`/`;` comments and backslash line continuations. Section and key
/// names are case-insensitive, subsections are not, exactly as in git. `include` is not followed.
#[derive(Debug, Default)]
pub struct GitConfig {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    /// Lowercased section name.
    section: String,
    subsection: Option<String>,
    /// Lowercased key name.
    key: String,
    value: String,
}

impl GitConfig {
    /// Reads `<git-dir>/config`; a repository without one has an empty config.
    pub fn load(git_dir: &Path) -> io::Result<GitConfig> {
        match std::fs::read(git_dir.join("config")) {
            Ok(bytes) => Ok(GitConfig::parse(&String::from_utf8_lossy(&bytes))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(GitConfig::default()),
            Err(err) => Err(err),
        }
    }

    /// Parses a config file's text. Lines that are not valid config are skipped: the hook only
    /// ever looks two keys up, and a missing key already fails safe (no socket: push refused).
    pub fn parse(text: &str) -> GitConfig {
        let mut entries = Vec::new();
        let mut section: Option<(String, Option<String>)> = None;
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let mut rest = line.trim_start();
            if rest.starts_with('[') {
                let Some((header, after)) = parse_section_header(rest) else {
                    section = None;
                    continue;
                };
                section = Some(header);
                rest = after.trim_start();
            }
            if rest.is_empty() || rest.starts_with(['#', ';']) {
                continue;
            }
            let Some((name, subsection)) = &section else {
                continue;
            };
            let key_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(rest.len());
            let (key, after_key) = rest.split_at(key_len);
            let after_key = after_key.trim_start();
            let value = if after_key.is_empty() || after_key.starts_with(['#', ';']) {
                "true".to_owned()
            } else if let Some(value) = after_key.strip_prefix('=') {
                parse_value(value, &mut lines)
            } else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            entries.push(Entry {
                section: name.clone(),
                subsection: subsection.clone(),
                key: key.to_ascii_lowercase(),
                value,
            });
        }
        GitConfig { entries }
    }

    /// The value of `section.key` (no subsection), the last one when the key repeats — git's own
    /// rule for single-valued keys.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|e| {
                e.subsection.is_none()
                    && e.section.eq_ignore_ascii_case(section)
                    && e.key.eq_ignore_ascii_case(key)
            })
            .map(|e| e.value.as_str())
    }
}

/// Parses `[name]`, `[name "sub"]` or the old `[name.sub]` at the start of `line`; returns the
/// lowercased name, the subsection and the text after `]`.
fn parse_section_header(line: &str) -> Option<((String, Option<String>), &str)> {
    let inner = line.strip_prefix('[')?;
    if let Some(quote) = inner.find('"') {
        let name = inner[..quote].trim();
        let mut subsection = String::new();
        let mut chars = inner[quote + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => subsection.push(chars.next()?.1),
                '"' => {
                    let after = inner[quote + 1 + i + 1..].trim_start().strip_prefix(']')?;
                    return Some(((name.to_ascii_lowercase(), Some(subsection)), after));
                }
                c => subsection.push(c),
            }
        }
        return None;
    }
    let end = inner.find(']')?;
    let header = inner[..end].trim();
    let after = &inner[end + 1..];
    Some(match header.split_once('.') {
        // The deprecated `[section.subsection]` form: git lowercases the subsection too.
        Some((name, sub)) => ((name.to_ascii_lowercase(), Some(sub.to_ascii_lowercase())), after),
        None => ((header.to_ascii_lowercase(), None), after),
    })
}

/// Parses a value the way git does: surrounding whitespace dropped, inner whitespace kept, quotes
/// removed (they only protect whitespace and comment characters), `\n \t \b \" \\` unescaped, a
/// comment ends the value, and a backslash at the end of a line continues it on the next line.
fn parse_value<'a>(first: &'a str, lines: &mut impl Iterator<Item = &'a str>) -> String {
    let mut value = String::new();
    // Whitespace outside quotes is kept only if something follows it (no trailing whitespace).
    let mut pending_space = String::new();
    let mut in_quotes = false;
    let mut line = first;
    'lines: loop {
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            let literal = match c {
                '"' => {
                    in_quotes = !in_quotes;
                    value.push_str(&pending_space);
                    pending_space.clear();
                    continue;
                }
                '\\' => match chars.next() {
                    None => match lines.next() {
                        Some(next) => {
                            line = next;
                            continue 'lines;
                        }
                        None => break 'lines,
                    },
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('b') => '\u{8}',
                    Some(other) => other,
                },
                '#' | ';' if !in_quotes => break 'lines,
                c if c.is_whitespace() && !in_quotes => {
                    if !value.is_empty() {
                        pending_space.push(c);
                    }
                    continue;
                }
                c => c,
            };
            value.push_str(&pending_space);
            pending_space.clear();
            value.push(literal);
        }
        break;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_git_config_writes_is_found() {
        // What `git config graspd.socket /run/graspd/hook.sock` produces.
        let config = GitConfig::parse(
            "[core]\n\trepositoryformatversion = 0\n\tbare = true\n[graspd]\n\tsocket = /run/graspd/hook.sock\n",
        );
        assert_eq!(config.get("graspd", "socket"), Some("/run/graspd/hook.sock"));
        assert_eq!(config.get("core", "bare"), Some("true"));
        assert_eq!(config.get("graspd", "spool"), None);
    }

    #[test]
    fn section_and_key_names_are_case_insensitive() {
        let config = GitConfig::parse("[GraspD]\n  Socket=/a\n");
        assert_eq!(config.get("graspd", "socket"), Some("/a"));
        assert_eq!(config.get("GRASPD", "SOCKET"), Some("/a"));
    }

    #[test]
    fn the_last_value_wins() {
        let config = GitConfig::parse("[graspd]\nsocket = /first\n[graspd]\nsocket = /second\n");
        assert_eq!(config.get("graspd", "socket"), Some("/second"));
    }

    #[test]
    fn subsections_are_other_sections() {
        let config = GitConfig::parse(
            "[graspd \"x\"]\nsocket = /sub\n[graspd.y]\nsocket = /old-sub\n[remote \"origin\"]\nurl = u\n",
        );
        assert_eq!(config.get("graspd", "socket"), None);
        let config = GitConfig::parse("[graspd \"x\"]\nsocket = /sub\n[graspd]\nsocket = /main\n");
        assert_eq!(config.get("graspd", "socket"), Some("/main"));
    }

    #[test]
    fn quotes_protect_whitespace_and_comment_characters() {
        let config = GitConfig::parse(
            "[graspd]\nsocket = \"/run/with space/#not-a-comment;\" # a comment\nspool = /a b  ; comment\n",
        );
        assert_eq!(
            config.get("graspd", "socket"),
            Some("/run/with space/#not-a-comment;")
        );
        assert_eq!(config.get("graspd", "spool"), Some("/a b"));
    }

    #[test]
    fn escapes_and_continuations_are_understood() {
        let config = GitConfig::parse("[graspd]\nsocket = \"/a\\\"b\\\\c\"\nspool = /long\\\n/path\n");
        assert_eq!(config.get("graspd", "socket"), Some("/a\"b\\c"));
        assert_eq!(config.get("graspd", "spool"), Some("/long/path"));
    }

    #[test]
    fn comments_blank_lines_and_bare_keys() {
        let config = GitConfig::parse(
            "# socket = /nope\n; [graspd]\n\n[graspd] # the daemon\n  # socket = /commented\n  enabled\n  socket = /yes\n",
        );
        assert_eq!(config.get("graspd", "socket"), Some("/yes"));
        assert_eq!(config.get("graspd", "enabled"), Some("true"));
    }

    #[test]
    fn a_key_on_the_header_line_counts() {
        let config = GitConfig::parse("[graspd] socket = /inline\n");
        assert_eq!(config.get("graspd", "socket"), Some("/inline"));
    }

    #[test]
    fn keys_outside_a_section_or_after_a_broken_header_are_ignored() {
        let config = GitConfig::parse("socket = /none\n[graspd\nsocket = /broken\n");
        assert_eq!(config.get("graspd", "socket"), None);
    }

    #[test]
    fn the_environment_wins_over_git_config_and_config_paths_are_relative_to_the_repo() {
        let config = GitConfig::parse("[graspd]\nsocket = hook.sock\nspool = /var/spool/graspd\n");
        let env = |var: &str| (var == SOCKET_ENV).then(|| OsString::from("/env.sock"));
        let settings = Settings::resolve(env, Some(&config), Some(Path::new("/repos/r.git")));
        assert_eq!(settings.socket, Some(PathBuf::from("/env.sock")));
        assert_eq!(settings.spool, Some(PathBuf::from("/var/spool/graspd")));

        let settings = Settings::resolve(|_| None, Some(&config), Some(Path::new("/repos/r.git")));
        assert_eq!(settings.socket, Some(PathBuf::from("/repos/r.git/hook.sock")));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let config = GitConfig::parse("[graspd]\nsocket =\n");
        let env = |_: &str| Some(OsString::new());
        assert_eq!(Settings::resolve(env, Some(&config), None), Settings::default());
    }

    #[test]
    fn timeout_is_positive_whole_seconds() {
        assert_eq!(parse_timeout(None), Ok(DEFAULT_TIMEOUT));
        assert_eq!(parse_timeout(Some(OsStr::new("5"))), Ok(Duration::from_secs(5)));
        assert!(parse_timeout(Some(OsStr::new("0"))).is_err());
        assert!(parse_timeout(Some(OsStr::new("1.5"))).is_err());
    }

    #[test]
    fn git_dir_is_resolved_against_the_current_directory() {
        let cwd = std::env::temp_dir().canonicalize().expect("temp dir");
        assert_eq!(repo_dir(Some(OsStr::new(".")), &cwd), cwd);
        assert_eq!(repo_dir(None, &cwd), cwd);
        assert_eq!(
            repo_dir(Some(OsStr::new("does-not-exist")), &cwd),
            cwd.join("does-not-exist")
        );
    }
}
