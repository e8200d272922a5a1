//! The resolved configuration of a running server and the value types it is made of. The
//! command line, environment and configuration file that produce it are the binary's
//! (`src/cli/flags.rs`); the library takes a finished [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::types::RefName;

/// Who serves git smart HTTP (`/<npub>/<identifier>.git/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHttp {
    /// graspd runs `git http-backend` itself.
    Embedded,
    /// A front web server (nginx + fcgiwrap) runs it; graspd answers those paths with 404.
    External,
}

/// Where the hook and the daemon meet, resolved.
#[derive(Debug, Clone)]
pub struct HookSetup {
    /// The gRPC Unix socket the hooks call.
    pub socket: PathBuf,
    /// Directory with `pre-receive` and `post-receive` links to grasp-hook (`core.hooksPath`).
    pub hooks_dir: PathBuf,
    /// Where hooks spool reports the daemon could not take.
    pub spool_dir: PathBuf,
    /// The grasp-hook binary.
    pub hook_binary: PathBuf,
}

impl HookSetup {
    /// The layout under `data_dir`; `grpc_socket` and `hook_binary` override their defaults
    /// (`<data-dir>/graspd.sock`, `grasp-hook` next to the running executable).
    pub fn resolve(data_dir: &Path, grpc_socket: Option<&Path>, hook_binary: Option<&Path>) -> Self {
        let data_dir = absolute(data_dir);
        let hook_binary = hook_binary.map(absolute).unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("grasp-hook")))
                .unwrap_or_else(|| PathBuf::from("grasp-hook"))
        });
        Self {
            socket: grpc_socket
                .map(absolute)
                .unwrap_or_else(|| data_dir.join("graspd.sock")),
            hooks_dir: data_dir.join("hooks"),
            spool_dir: data_dir.join("spool"),
            hook_binary,
        }
    }
}

/// Where the repositories live: `--git-root`, else `<data-dir>/repos`.
pub fn git_root(data_dir: &Path, git_root: Option<&Path>) -> PathBuf {
    git_root.map_or_else(|| data_dir.join("repos"), Path::to_owned)
}

/// `path` made absolute against the current directory (without resolving links), so paths
/// written into git config work from any working directory.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A program named without a directory (`git`) as the absolute path `PATH` finds it at, or as
/// given when it names a directory or `PATH` has no such executable (spawning it then fails with
/// the usual "not found"). Processes are started by the absolute path because the standard
/// library starts a program named without one, when the child gets its own `PATH`, by `fork`:
/// a copy of the whole daemon's page tables for every git request (measured: milliseconds a push
/// once graspd holds 10,000 repositories). With the path, it uses `posix_spawn`.
pub fn resolve_program(program: &Path) -> PathBuf {
    if program.components().count() != 1 {
        return program.to_owned();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return program.to_owned();
    };
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| program.to_owned())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `--domain` is not a `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--domain '{0}': expected host[:port] without scheme or path")]
pub struct DomainError(pub String);

/// The public `host[:port]` announcements must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    host: String,
    port: Option<u16>,
}

impl Domain {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError(s.to_owned());
        let url = url::Url::parse(&format!("http://{s}/")).map_err(|_| bad())?;
        if url.path() != "/" || url.username() != "" || url.query().is_some() {
            return Err(bad());
        }
        let host = url.host_str().ok_or_else(bad)?.to_ascii_lowercase();
        // Url drops the port when it is the scheme's default; keep what the operator wrote.
        let port = match url.port() {
            Some(port) => Some(port),
            None if s.ends_with(":80") => Some(80),
            None => None,
        };
        Ok(Self { host, port })
    }

    /// The host name or address, lowercase.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether `url` (http, https, ws or wss) points at this server. A domain without a port
    /// matches the scheme's default port.
    pub fn matches(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        if !host.eq_ignore_ascii_case(&self.host) {
            return false;
        }
        let default_port = match url.scheme() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return false,
        };
        let url_port = url.port().unwrap_or(default_port);
        match self.port {
            Some(port) => port == url_port,
            None => url_port == default_port,
        }
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Limits applied to websocket clients.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_event_bytes: usize,
    pub max_subscriptions: usize,
    pub max_filter_limit: usize,
    pub events_per_minute: u32,
    pub event_burst: u32,
    pub max_connections: usize,
}

/// How the purgatory git-data sync paces itself (see `crate::sync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// Wait before syncing an identifier after a user's event (a push usually follows).
    pub default_delay: Duration,
    /// Wait before syncing an identifier after an event that came from sync.
    pub immediate_delay: Duration,
    /// Longest pause of the sync loop (a safety net; it wakes on deadlines and changes).
    pub loop_interval: Duration,
    /// Fetches in flight at once per domain.
    pub domain_concurrent: usize,
    /// Fetches started per sliding minute per domain.
    pub domain_rate_limit: usize,
    /// Longest run of one `git fetch`.
    pub fetch_timeout: Duration,
    /// Whether clone URLs may point at non-public addresses (see `sync::address`).
    pub private_addresses: bool,
    /// Between checks of every hosted repository's refs against its state (`sync::lagging`);
    /// `None`: never.
    pub refs_check_interval: Option<Duration>,
}

/// How the event sync (GRASP-02, see `crate::sync::events`) reaches the relays that hosted
/// repositories list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSyncSettings {
    /// Off: graspd hears only what clients send it.
    pub enabled: bool,
    /// Between recomputations of what to ask each relay (new announcements, new root events).
    pub refresh: Duration,
    /// Longest wait for a relay: connecting, an EOSE, a negentropy answer.
    pub timeout: Duration,
    /// A reconnection within this long resumes with `since`; after longer, a full pass.
    pub resume_window: Duration,
    /// Between full passes over a relay's history while connected (jittered by ±1 h when a day
    /// or longer).
    pub full_pass: Duration,
    /// First wait after a failure; it doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A relay failing for this long is given up, until its plan changes (a new announcement).
    pub give_up_after: Duration,
    /// Relays asked, besides those in announcements, for announcements that list this server.
    pub bootstrap_relays: Vec<String>,
    /// Relays followed at once at most: past it, those serving the most repositories (the
    /// bootstrap relays first).
    pub max_relays: usize,
    /// GRASP-03: also fetch the discussion from participants' outbox relays.
    pub outbox: bool,
    /// Participants per repository whose outbox relays are used.
    pub outbox_max_authors: usize,
    /// Outbox relays per repository.
    pub outbox_max_relays: usize,
}

/// GRASP-05: announcements that do not list this server, accepted as archives (read-only
/// mirrors filled by the event and git-data syncs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveSettings {
    /// Archive mode is on (`--archive`, or implied by any rule below).
    pub enabled: bool,
    /// Archive every announcement not denied.
    pub all: bool,
    pub allow: Vec<ArchiveEntry>,
    /// Always wins, also over announcements that list this server.
    pub deny: Vec<ArchiveEntry>,
    /// A read-only mirror: announcements that list this server are accepted only by the rules
    /// above, like any other.
    pub only: bool,
}

/// An allow or deny rule: an owner (`npub`), one repository (`npub/identifier`) or an identifier
/// under any owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveEntry {
    Owner(nostr::PublicKey),
    Repository(nostr::PublicKey, String),
    Identifier(String),
}

impl std::fmt::Display for ArchiveEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Owner(key) => f.write_str(&crate::types::npub(key)),
            Self::Repository(key, id) => write!(f, "{}/{id}", crate::types::npub(key)),
            Self::Identifier(id) => f.write_str(id),
        }
    }
}

impl ArchiveEntry {
    /// `npub1...`, `npub1.../identifier` or `identifier` (64-hex keys are accepted for npubs).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let key = |text: &str| {
            nostr::PublicKey::parse(text).map_err(|_| format!("'{raw}': '{text}' is not an npub"))
        };
        let identifier = |text: &str| {
            crate::types::Identifier::parse(text)
                .map(|id| id.as_str().to_owned())
                .map_err(|error| format!("'{raw}': '{text}' is not a repository identifier ({error})"))
        };
        match raw.split_once('/') {
            Some((owner, id)) => Ok(Self::Repository(key(owner)?, identifier(id)?)),
            None if raw.starts_with("npub1")
                || (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit())) =>
            {
                Ok(Self::Owner(key(raw)?))
            }
            None => Ok(Self::Identifier(identifier(raw)?)),
        }
    }

    pub fn matches(&self, owner: &nostr::PublicKey, identifier: &str) -> bool {
        match self {
            Self::Owner(key) => key == owner,
            Self::Repository(key, id) => key == owner && id == identifier,
            Self::Identifier(id) => id == identifier,
        }
    }
}

/// What the archive rules make of a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveVerdict {
    /// A deny rule names it: refused, even when its announcement lists this server.
    Denied,
    /// Archived (`--archive-all`, or an allow rule names it).
    Allowed,
    /// Not archived: accepted only if its announcement lists this server.
    NotAllowed,
}

impl ArchiveSettings {
    /// The verdict on `owner`'s repository `identifier`; `None` with archive mode off.
    pub fn verdict(&self, owner: &nostr::PublicKey, identifier: &str) -> Option<ArchiveVerdict> {
        if !self.enabled {
            return None;
        }
        Some(if self.deny.iter().any(|e| e.matches(owner, identifier)) {
            ArchiveVerdict::Denied
        } else if self.all || self.allow.iter().any(|e| e.matches(owner, identifier)) {
            ArchiveVerdict::Allowed
        } else {
            ArchiveVerdict::NotAllowed
        })
    }

    /// Why the rules archive `owner`'s repository `identifier` (`--archive-all`, or the first
    /// allow rule naming it); `None` when they do not.
    pub fn why_archived(&self, owner: &nostr::PublicKey, identifier: &str) -> Option<String> {
        if self.verdict(owner, identifier) != Some(ArchiveVerdict::Allowed) {
            return None;
        }
        if self.all {
            return Some("--archive-all".to_owned());
        }
        self.allow
            .iter()
            .find(|e| e.matches(owner, identifier))
            .map(|e| format!("allow rule {e}"))
    }

    /// NIP-11's `curation`: what is archived, in one line; `None` with archive mode off.
    pub fn curation(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let what = if self.all {
            "every repository announced on the network".to_owned()
        } else if self.allow.is_empty() {
            "nothing yet (no allow rules)".to_owned()
        } else {
            format!(
                "repositories matching {} allow rule{} (owners, owner/identifier pairs, identifiers)",
                self.allow.len(),
                if self.allow.len() == 1 { "" } else { "s" }
            )
        };
        let denied = if self.deny.is_empty() {
            String::new()
        } else {
            format!(", except {} denied", self.deny.len())
        };
        let mode = if self.only {
            "Read-only archive of"
        } else {
            "Hosts repositories that list this server, and archives"
        };
        Some(format!("{mode} {what}{denied}."))
    }
}

/// The resolved configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub hooks: HookSetup,
    pub grpc_socket_mode: u32,
    pub grpc_listen: Option<SocketAddr>,
    /// Bearer token for the status service on TCP (read from --grpc-token-file).
    pub grpc_token: Option<String>,
    pub grpc_tcp_hooks: bool,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub git_program: PathBuf,
    pub git_http: GitHttp,
    /// HEAD of a new repository (`refs/heads/<branch>`).
    pub initial_head: RefName,
    pub domain: Domain,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// SQLite: MiB of WAL growth between two background checkpoints (`--wal-checkpoint-mib`).
    pub wal_checkpoint_mib: u32,
    pub git_root: PathBuf,
    pub purgatory_expiry: Duration,
    /// Between sweeps of every repository by housekeeping; `None`: no sweeps.
    pub housekeeping_interval: Option<Duration>,
    pub name: String,
    pub description: String,
    pub limits: Limits,
    pub sync: SyncSettings,
    pub event_sync: EventSyncSettings,
    pub archive: ArchiveSettings,
    pub grasp06: Grasp06Settings,
    pub abuse: AbuseLimits,
}

/// Limits that keep one person from filling a public server (see docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Placeholders (pull request refs pushed before their event) one repository may hold.
    pub max_placeholders_per_repo: usize,
    /// Placeholders the server may hold.
    pub max_placeholders: usize,
    /// `receive.maxInputSize` of owners' repositories; 0: none.
    pub max_push_bytes: u64,
    /// `receive.maxInputSize` of `/prs/` repositories (GRASP-06), and the largest push of
    /// `refs/nostr/<event-id>` refs alone into an owner's repository; 0: none.
    pub max_pr_push_bytes: u64,
    /// Only these owners' announcements get a repository here; `None`: anyone's.
    pub allowed_owners: Option<std::collections::BTreeSet<nostr::PublicKey>>,
    /// New repositories per owner, and per client address, within an hour; 0: no limit.
    pub new_repos_per_hour_per_owner: usize,
    pub new_repos_per_hour_per_address: usize,
    /// Pushes of pull request refs alone per owner, and per client address, within an hour; 0: no
    /// limit.
    pub pr_pushes_per_hour_per_owner: usize,
    pub pr_pushes_per_hour_per_address: usize,
    /// Owners' repositories the server hosts, at most; 0: no limit.
    pub max_repositories: usize,
}

impl AbuseLimits {
    /// Whether `owner` may have repositories here (`--allow-owner`; anyone without the list).
    pub fn owner_allowed(&self, owner: &nostr::PublicKey) -> bool {
        self.allowed_owners
            .as_ref()
            .is_none_or(|owners| owners.contains(owner))
    }
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self {
            max_placeholders_per_repo: 100,
            max_placeholders: 10_000,
            max_push_bytes: 4 << 30,
            max_pr_push_bytes: 512 << 20,
            allowed_owners: None,
            new_repos_per_hour_per_owner: 50,
            new_repos_per_hour_per_address: 50,
            pr_pushes_per_hour_per_owner: 600,
            pr_pushes_per_hour_per_address: 60,
            max_repositories: 100_000,
        }
    }
}

/// GRASP-06: contributors' pull request repositories under `/prs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grasp06Settings {
    pub enabled: bool,
    /// How long a pushed `refs/nostr/<event-id>` waits for its event before it is deleted.
    pub ref_expiry: Duration,
}

impl Default for Grasp06Settings {
    fn default() -> Self {
        Self {
            enabled: false,
            ref_expiry: Duration::from_secs(20 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_named_alone_is_found_on_path_and_others_are_left_as_given() {
        let git = resolve_program(Path::new("git"));
        assert!(git.is_absolute() && git.ends_with("git"), "{}", git.display());
        for given in ["/opt/git/bin/git", "./git", "bin/git", "no-such-program-graspd"] {
            assert_eq!(resolve_program(Path::new(given)), PathBuf::from(given));
        }
    }

    #[test]
    fn archive_entries_name_owners_repositories_or_identifiers() {
        let keys = nostr::Keys::generate().public_key();
        let npub = nostr::ToBech32::to_bech32(&keys).expect("npub");
        assert_eq!(ArchiveEntry::parse(&npub), Ok(ArchiveEntry::Owner(keys)));
        assert_eq!(
            ArchiveEntry::parse(&format!("{npub}/web")),
            Ok(ArchiveEntry::Repository(keys, "web".to_owned()))
        );
        assert_eq!(
            ArchiveEntry::parse(" web "),
            Ok(ArchiveEntry::Identifier("web".to_owned()))
        );
        assert!(ArchiveEntry::parse("npub1nope").is_err());
        assert!(ArchiveEntry::parse(&format!("{npub}/../x")).is_err());
        assert!(ArchiveEntry::parse("").is_err());
    }

    #[test]
    fn archive_deny_wins_then_all_or_allow() {
        let (alice, bob) = (
            nostr::Keys::generate().public_key(),
            nostr::Keys::generate().public_key(),
        );
        let mut settings = ArchiveSettings {
            enabled: true,
            allow: vec![
                ArchiveEntry::Owner(alice),
                ArchiveEntry::Identifier("shared".to_owned()),
            ],
            deny: vec![ArchiveEntry::Repository(alice, "secret".to_owned())],
            ..ArchiveSettings::default()
        };
        assert_eq!(settings.verdict(&alice, "web"), Some(ArchiveVerdict::Allowed));
        assert_eq!(settings.verdict(&alice, "secret"), Some(ArchiveVerdict::Denied));
        assert_eq!(settings.verdict(&bob, "shared"), Some(ArchiveVerdict::Allowed));
        assert_eq!(settings.verdict(&bob, "web"), Some(ArchiveVerdict::NotAllowed));
        assert_eq!(
            settings.why_archived(&bob, "shared"),
            Some("allow rule shared".to_owned())
        );
        assert_eq!(
            settings.why_archived(&alice, "web"),
            Some(format!("allow rule {}", crate::types::npub(&alice)))
        );
        assert_eq!(settings.why_archived(&alice, "secret"), None);
        settings.all = true;
        assert_eq!(
            settings.why_archived(&bob, "web"),
            Some("--archive-all".to_owned())
        );
        assert_eq!(settings.verdict(&bob, "web"), Some(ArchiveVerdict::Allowed));
        assert_eq!(settings.verdict(&alice, "secret"), Some(ArchiveVerdict::Denied));
        assert!(
            settings
                .curation()
                .is_some_and(|c| c.contains("every repository") && c.contains("1 denied"))
        );
        settings.enabled = false;
        assert_eq!(settings.verdict(&alice, "secret"), None);
        assert_eq!(settings.curation(), None);
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("url")
    }

    #[test]
    fn domain_with_port_matches_only_that_port() {
        let d = Domain::parse("127.0.0.1:8080").expect("domain");
        assert!(d.matches(&url("http://127.0.0.1:8080/npub/x.git")));
        assert!(d.matches(&url("ws://127.0.0.1:8080")));
        assert!(d.matches(&url("wss://127.0.0.1:8080/")));
        assert!(!d.matches(&url("http://127.0.0.1:8081/npub/x.git")));
        assert!(!d.matches(&url("http://127.0.0.2:8080/")));
        assert!(!d.matches(&url("ftp://127.0.0.1:8080/")));
    }

    #[test]
    fn domain_without_port_matches_default_ports() {
        let d = Domain::parse("Git.Example.com").expect("domain");
        assert!(d.matches(&url("https://git.example.com/x")));
        assert!(d.matches(&url("wss://git.example.com")));
        assert!(d.matches(&url("https://git.example.com:443/x")));
        assert!(!d.matches(&url("https://git.example.com:8443/x")));
    }

    #[test]
    fn domain_rejects_urls_and_paths() {
        assert!(Domain::parse("https://example.com").is_err());
        assert!(Domain::parse("example.com/path").is_err());
    }
}
