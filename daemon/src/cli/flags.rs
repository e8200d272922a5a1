//! The command line: clap definitions of every subcommand and flag (each `serve` flag with a
//! `GRASPD_*` environment variable), and [`config`], which turns `serve`'s arguments into the
//! library's [`Config`]. `docs/configuration.md` lists them all.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use graspd::config::{
    AbuseLimits, ArchiveEntry, ArchiveSettings, Config, Domain, DomainError, EventSyncSettings,
    Grasp06Settings, HookSetup, Limits, SyncSettings, absolute, git_root,
};
use graspd::git::RefName;

#[derive(Debug, Parser)]
#[command(
    name = "graspd",
    version,
    about = "GRASP server: a Nostr relay and git smart-HTTP host for NIP-34 repositories"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: relay at `/`, repositories at `/<npub>/<identifier>.git`.
    Serve(Box<ServeArgs>),
    /// Bring existing bare repositories under graspd: point their hooks at grasp-hook and write
    /// the git config the hook and GRASP-01 need. Idempotent; reports what it changed.
    InstallHooks(InstallHooksArgs),
    /// Print an nginx configuration (a `map` and a `server` block) that serves git through
    /// fcgiwrap + `git http-backend` and proxies everything else to `graspd serve` started with
    /// the same flags. See docs/deployment.md.
    NginxConfig(Box<NginxConfigArgs>),
    /// Check a deployment: hooks, the gRPC socket as the hook sees it, repository git config,
    /// permissions. Prints OK/FAIL lines with fixes; exits 1 when a check fails.
    Doctor(DoctorArgs),
    /// Ask a running graspd what it hosts, what waits and why (gRPC StatusService). Without a
    /// subcommand: an overview.
    Status(StatusArgs),
    /// Print a shell completion script, e.g. `graspd completions bash >
    /// /etc/bash_completion.d/graspd`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, or write one page per command into a directory,
    /// e.g. `graspd man --out-dir /usr/local/share/man/man1`.
    Man {
        /// Write graspd.1 and graspd-<command>.1 here instead.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// `graspd status`: how to reach the daemon, output format, what to show.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Data directory of the daemon (its socket is `<data-dir>/graspd.sock`).
    #[arg(long, env = "GRASPD_DATA_DIR", default_value = "./graspd-data")]
    pub data_dir: PathBuf,

    /// The daemon's gRPC Unix socket. Default: `<data-dir>/graspd.sock`.
    #[arg(long, env = "GRASPD_GRPC_SOCKET")]
    pub grpc_socket: Option<PathBuf>,

    /// Reach the daemon over TCP instead, e.g. `http://127.0.0.1:50051` (needs --token-file).
    #[arg(long, env = "GRASPD_GRPC_ENDPOINT")]
    pub grpc_endpoint: Option<String>,

    /// File with the bearer token for --grpc-endpoint.
    #[arg(long, env = "GRASPD_GRPC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Print JSON (stable field names: those of proto/grasp/v1/status.proto) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub what: Option<StatusCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum StatusCommand {
    /// Hosted repositories.
    Repos {
        /// Only this owner (npub).
        #[arg(long)]
        owner: Option<String>,
        /// Only identifiers starting with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// One repository: `<npub>/<identifier>`.
    Repo { repository: String },
    /// Events waiting in purgatory and what they miss.
    Purgatory {
        /// Only this identifier.
        #[arg(long)]
        identifier: Option<String>,
    },
    /// The sync queue, per-domain throttles and the relays the event sync follows; `sync trigger
    /// <identifier>` syncs one now.
    Sync {
        #[command(subcommand)]
        action: Option<SyncAction>,
    },
    /// Print every processing result as it happens (Ctrl-C to stop).
    Watch,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SyncAction {
    /// Sync an identifier now.
    Trigger { identifier: String },
}

/// `graspd nginx-config`: the `serve` flags of the deployment, plus where nginx listens and how
/// it reaches fcgiwrap.
#[derive(Debug, Clone, Args)]
pub struct NginxConfigArgs {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// nginx's `listen` parameter, e.g. `80`, `127.0.0.1:8081` or `443 ssl`. Default: the port
    /// of --domain, or 80 when --domain has none.
    #[arg(long)]
    pub nginx_listen: Option<String>,

    /// The Unix socket fcgiwrap listens on (Debian's fcgiwrap.socket: /run/fcgiwrap.socket).
    #[arg(long, default_value = "/run/fcgiwrap.socket")]
    pub fcgiwrap_socket: PathBuf,

    /// The `git-http-backend` program fcgiwrap runs. Default: `$(git --exec-path)/git-http-backend`
    /// of the --git executable.
    #[arg(long)]
    pub http_backend: Option<PathBuf>,
}

/// `graspd doctor`: the same locations as `install-hooks`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Directory for the database and other state (hooks directory, spool).
    #[arg(long, env = "GRASPD_DATA_DIR", default_value = "./graspd-data")]
    pub data_dir: PathBuf,

    /// Where the bare repositories live. Default: `<data-dir>/repos`.
    #[arg(long, env = "GRASPD_GIT_ROOT")]
    pub git_root: Option<PathBuf>,

    #[command(flatten)]
    pub hooks: HookArgs,
}

/// Who serves git smart HTTP (`/<npub>/<identifier>.git/...`): `graspd::config::GitHttp` as a
/// flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GitHttp {
    /// graspd runs `git http-backend` itself.
    Embedded,
    /// A front web server (nginx + fcgiwrap) runs it; graspd answers those paths with 404.
    External,
}

/// Where the hook and the daemon meet: shared by `serve` and `install-hooks`.
#[derive(Debug, Clone, Args)]
pub struct HookArgs {
    /// Unix socket of the gRPC API (hooks and operators). Default: `<data-dir>/graspd.sock`.
    #[arg(long, env = "GRASPD_GRPC_SOCKET")]
    pub grpc_socket: Option<PathBuf>,

    /// The grasp-hook binary installed as each repository's pre-receive and post-receive hook.
    /// Default: `grasp-hook` next to the graspd executable.
    #[arg(long, env = "GRASPD_HOOK_BINARY")]
    pub hook_binary: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct InstallHooksArgs {
    /// Directory for the database and other state (hooks directory, spool).
    #[arg(long, env = "GRASPD_DATA_DIR", default_value = "./graspd-data")]
    pub data_dir: PathBuf,

    /// Where the bare repositories live. Default: `<data-dir>/repos`.
    #[arg(long, env = "GRASPD_GIT_ROOT")]
    pub git_root: Option<PathBuf>,

    #[command(flatten)]
    pub hooks: HookArgs,

    /// Show what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML file with any of these flags as keys (`listen = "0.0.0.0:8080"`). A flag or its
    /// environment variable wins over the file. Default: /etc/graspd/graspd.toml, if it exists.
    #[arg(long, env = "GRASPD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML (where each value came from in a comment) and
    /// exit.
    #[arg(long)]
    pub print_config: bool,

    /// Address the HTTP listener (relay, git, pages) binds to.
    #[arg(long, env = "GRASPD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Public `host[:port]` of this server. Announcements must list
    /// `http(s)://<domain>/<npub>/<identifier>.git` in `clone` and `ws(s)://<domain>` in `relays`.
    /// Default: the listen address.
    #[arg(long, env = "GRASPD_DOMAIN")]
    pub domain: Option<String>,

    /// Directory for the database and other state.
    #[arg(long, env = "GRASPD_DATA_DIR", default_value = "./graspd-data")]
    pub data_dir: PathBuf,

    /// Database URL. Default: `sqlite://<data-dir>/graspd.db`.
    #[arg(long, env = "GRASPD_DATABASE_URL")]
    pub database_url: Option<String>,

    /// SQLite: MiB of WAL growth between two background checkpoints (1-4096). The WAL grows to
    /// about twice this under sustained writes before it starts over.
    #[arg(long, env = "GRASPD_WAL_CHECKPOINT_MIB", default_value_t = graspd::store::DEFAULT_CHECKPOINT_MIB,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub wal_checkpoint_mib: u32,

    /// Where bare repositories live (`<git-root>/<npub>/<identifier>.git`). Default: `<data-dir>/repos`.
    #[arg(long, env = "GRASPD_GIT_ROOT")]
    pub git_root: Option<PathBuf>,

    #[command(flatten)]
    pub hooks: HookArgs,

    /// Permissions of the gRPC socket (octal). 0600: only graspd's user; 0660: also its group
    /// (e.g. when nginx/fcgiwrap run the hooks as another user in graspd's group).
    #[arg(long, env = "GRASPD_GRPC_SOCKET_MODE", default_value = "0600", value_parser = parse_mode)]
    pub grpc_socket_mode: u32,

    /// Also serve the gRPC API on this TCP address (e.g. 127.0.0.1:50051).
    #[arg(long, env = "GRASPD_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,

    /// File holding the bearer token TCP clients of the status service must send
    /// (`authorization: Bearer <token>`). Required with --grpc-listen.
    #[arg(long, env = "GRASPD_GRPC_TOKEN_FILE")]
    pub grpc_token_file: Option<PathBuf>,

    /// Serve Prometheus metrics at `http://<ADDR>/metrics` (e.g. 127.0.0.1:9464). Off by
    /// default; never served on the public --listen address.
    #[arg(long, env = "GRASPD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Also serve the hook service on --grpc-listen (hooks normally use the Unix socket).
    #[arg(long, env = "GRASPD_GRPC_TCP_HOOKS")]
    pub grpc_tcp_hooks: bool,

    /// The git executable used for `git http-backend` and object copies.
    #[arg(long, env = "GRASPD_GIT", default_value = "git")]
    pub git_program: PathBuf,

    /// Branch HEAD of a new repository names until a maintainer's state says otherwise (what an
    /// empty clone checks out). Default: what `git init --bare` would choose on this machine,
    /// the --git executable's `init.defaultBranch`, or git's own `master` when that is unset.
    #[arg(long, env = "GRASPD_INITIAL_BRANCH")]
    pub initial_branch: Option<String>,

    /// Who serves git smart HTTP: `embedded` (graspd runs `git http-backend`) or `external` (a
    /// front web server does, e.g. nginx + fcgiwrap from `graspd nginx-config`).
    #[arg(long, env = "GRASPD_GIT_HTTP", value_enum, default_value_t = GitHttp::Embedded)]
    pub git_http: GitHttp,

    /// Seconds the sync waits before fetching the git data of a state or pull request a user
    /// published from the repository's other servers: the push that carries it usually follows.
    #[arg(long, env = "GRASPD_SYNC_DEFAULT_DELAY_SECS", default_value_t = 180)]
    pub sync_default_delay_secs: u64,

    /// Milliseconds the sync waits before fetching the git data of an event that came from
    /// another server's sync (its data is already out there).
    #[arg(long, env = "GRASPD_SYNC_IMMEDIATE_DELAY_MS", default_value_t = 500)]
    pub sync_immediate_delay_ms: u64,

    /// Longest pause of the sync loop, in milliseconds. The loop wakes at the next due
    /// identifier or when one is queued; this is only a safety net.
    #[arg(long, env = "GRASPD_SYNC_LOOP_INTERVAL_MS", default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub sync_loop_interval_ms: u64,

    /// Sync fetches in flight at once against one domain (host[:port]).
    #[arg(long, env = "GRASPD_SYNC_DOMAIN_CONCURRENT", default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_domain_concurrent: u32,

    /// Sync fetches started against one domain in any sliding minute.
    #[arg(long, env = "GRASPD_SYNC_DOMAIN_RATE_LIMIT", default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_domain_rate_limit: u32,

    /// Seconds one sync fetch (a `git fetch` child process) may run before it is killed.
    #[arg(long, env = "GRASPD_SYNC_FETCH_TIMEOUT_SECS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub sync_fetch_timeout_secs: u64,

    /// Let the sync fetch from clone URLs whose host is, or resolves to, a loopback, private,
    /// link-local or otherwise non-public address. Off by default, so that an announcement
    /// cannot make the server probe its own network; turn it on for mirrors on a LAN (and for
    /// tests on loopback).
    #[arg(long, env = "GRASPD_SYNC_PRIVATE_ADDRESSES")]
    pub sync_private_addresses: bool,

    /// Seconds between checks of every hosted repository's refs against the newest state it
    /// serves; a lagging repository is aligned, fetching missing objects from the other clone
    /// URLs. 0 turns the check off.
    #[arg(long, env = "GRASPD_SYNC_REFS_CHECK_SECS", default_value_t = 3600)]
    pub sync_refs_check_secs: u64,

    /// Do not sync events from the other relays that hosted repositories list (GRASP-02). By
    /// default graspd keeps each repository's events in sync with those relays: NIP-77
    /// negentropy where the relay speaks it, REQ otherwise, then live subscriptions.
    #[arg(long, env = "GRASPD_NO_EVENT_SYNC")]
    pub no_event_sync: bool,

    /// A relay to ask for announcements that list this server but were published elsewhere.
    /// Repeatable.
    #[arg(
        long = "event-sync-bootstrap-relay",
        env = "GRASPD_EVENT_SYNC_BOOTSTRAP_RELAYS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub event_sync_bootstrap_relays: Vec<String>,

    /// GRASP-05 archive mode: also accept announcements that do not list this server when the
    /// archive rules allow them (`--archive-allow`, `--archive-allow-file`, `--archive-all`);
    /// implied by any archive flag.
    #[arg(long, env = "GRASPD_ARCHIVE")]
    pub archive: bool,

    /// Archive every announced repository not denied by `--archive-deny`.
    #[arg(long, env = "GRASPD_ARCHIVE_ALL")]
    pub archive_all: bool,

    /// Archive the repositories this entry names: `npub`, `npub/identifier` or `identifier`.
    /// Repeatable.
    #[arg(
        long = "archive-allow",
        env = "GRASPD_ARCHIVE_ALLOW",
        value_delimiter = ',',
        value_name = "ENTRY"
    )]
    pub archive_allow: Vec<String>,

    /// A file of `--archive-allow` entries, one a line (`#` starts a comment).
    #[arg(long, env = "GRASPD_ARCHIVE_ALLOW_FILE", value_name = "FILE")]
    pub archive_allow_file: Option<PathBuf>,

    /// Never host or archive the repositories this entry names, even when their announcement
    /// lists this server. Repeatable.
    #[arg(
        long = "archive-deny",
        env = "GRASPD_ARCHIVE_DENY",
        value_delimiter = ',',
        value_name = "ENTRY"
    )]
    pub archive_deny: Vec<String>,

    /// A read-only mirror: announcements that list this server are accepted only by the archive
    /// rules, like any other.
    #[arg(long, env = "GRASPD_ARCHIVE_ONLY")]
    pub archive_only: bool,

    /// GRASP-06: serve contributors' pull request repositories at `/prs/<npub>/<identifier>.git`
    /// (pushes of `refs/nostr/<event-id>` only, each matched to its signed pull request).
    #[arg(long, env = "GRASPD_GRASP06")]
    pub grasp06: bool,

    /// Seconds a ref pushed to a `/prs/` repository waits for its pull request event before it
    /// is deleted (GRASP-06 asks for 20 minutes).
    #[arg(long, env = "GRASPD_GRASP06_REF_EXPIRY_SECS", default_value_t = 1200,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub grasp06_ref_expiry_secs: u64,

    /// Relays the event sync follows at most (one connection each). When the hosted
    /// repositories name more, those serving the most repositories are followed, the bootstrap
    /// relays first; the others are logged and counted in `/metrics`.
    #[arg(long, env = "GRASPD_EVENT_SYNC_MAX_RELAYS", default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub event_sync_max_relays: u64,

    /// Do not fetch the discussion around hosted repositories from their participants' own
    /// outbox relays (GRASP-03, NIP-65 lists).
    #[arg(long, env = "GRASPD_NO_OUTBOX_SYNC")]
    pub no_outbox_sync: bool,

    /// Participants per repository whose outbox relays the event sync follows (GRASP-03).
    #[arg(long, env = "GRASPD_OUTBOX_MAX_AUTHORS", default_value_t = 32)]
    pub outbox_max_authors: usize,

    /// Outbox relays per repository the event sync follows (GRASP-03).
    #[arg(long, env = "GRASPD_OUTBOX_MAX_RELAYS", default_value_t = 24)]
    pub outbox_max_relays: usize,

    /// Seconds between recomputations of what the event sync asks each relay.
    #[arg(long, env = "GRASPD_EVENT_SYNC_REFRESH_SECS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub event_sync_refresh_secs: u64,

    /// Seconds the event sync waits for a relay (connect, EOSE, a negentropy answer).
    #[arg(long, env = "GRASPD_EVENT_SYNC_TIMEOUT_SECS", default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub event_sync_timeout_secs: u64,

    /// Seconds between full passes over a connected relay's history (jittered by up to an hour
    /// when a day or more).
    #[arg(long, env = "GRASPD_EVENT_SYNC_FULL_PASS_SECS", default_value_t = 86400,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub event_sync_full_pass_secs: u64,

    /// Seconds an event waits in purgatory for its git data before it is discarded.
    #[arg(long, env = "GRASPD_PURGATORY_EXPIRY_SECS", default_value_t = 1800)]
    pub purgatory_expiry_secs: u64,

    /// Seconds between checks of every repository with `git maintenance run --auto`, new data
    /// or not (repositories are also checked after each push or fetch). The first comes an hour
    /// after start, or after this many seconds if fewer. 0 turns the periodic check off.
    #[arg(long, env = "GRASPD_HOUSEKEEPING_INTERVAL_SECS", default_value_t = 86400)]
    pub housekeeping_interval_secs: u64,

    /// Relay name shown in the NIP-11 document and on pages.
    #[arg(long, env = "GRASPD_NAME", default_value = "graspd")]
    pub name: String,

    /// Relay description shown in the NIP-11 document and on pages.
    #[arg(
        long,
        env = "GRASPD_DESCRIPTION",
        default_value = "A GRASP server: git repositories authorized by signed Nostr events"
    )]
    pub description: String,

    /// Largest websocket message accepted, in bytes.
    #[arg(long, env = "GRASPD_MAX_MESSAGE_BYTES", default_value_t = 512 * 1024)]
    pub max_message_bytes: usize,

    /// Largest event accepted (its EVENT message), in bytes.
    #[arg(long, env = "GRASPD_MAX_EVENT_BYTES", default_value_t = 256 * 1024)]
    pub max_event_bytes: usize,

    /// Open subscriptions allowed per connection.
    #[arg(long, env = "GRASPD_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,

    /// Largest `limit` honoured in a filter; larger ones are lowered to it.
    #[arg(long, env = "GRASPD_MAX_FILTER_LIMIT", default_value_t = 5000)]
    pub max_filter_limit: usize,

    /// Events per minute a connection may publish once its burst is spent (token bucket refill).
    #[arg(long, env = "GRASPD_EVENTS_PER_MINUTE", default_value_t = 600)]
    pub events_per_minute: u32,

    /// Events a connection may publish in a burst (token bucket size).
    #[arg(long, env = "GRASPD_EVENT_BURST", default_value_t = 200)]
    pub event_burst: u32,

    /// Simultaneous websocket connections allowed.
    #[arg(long, env = "GRASPD_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Pull request refs pushed before their event (placeholders) one repository may hold; a
    /// push that would add more is refused.
    #[arg(long, env = "GRASPD_MAX_PLACEHOLDERS_PER_REPO", default_value_t = 100)]
    pub max_placeholders_per_repo: usize,

    /// Placeholders the whole server may hold.
    #[arg(long, env = "GRASPD_MAX_PLACEHOLDERS", default_value_t = 10_000)]
    pub max_placeholders: usize,

    /// Largest push (the pack git receives) into an owner's repository, in bytes: git's
    /// `receive.maxInputSize`. 0: no limit.
    #[arg(long, env = "GRASPD_MAX_PUSH_BYTES", default_value_t = 4 << 30)]
    pub max_push_bytes: u64,

    /// Largest push of pull request refs, which anyone may send, in bytes: into a contributor's
    /// `/prs/` repository (GRASP-06), or of `refs/nostr/<event-id>` refs alone into an owner's
    /// repository. 0: no limit.
    #[arg(long, env = "GRASPD_MAX_PR_PUSH_BYTES", default_value_t = 512 << 20)]
    pub max_pr_push_bytes: u64,

    /// Only this owner's announcements get a repository here (repeatable; an npub or 64-hex
    /// key). Without any, every announcement that lists this server does.
    #[arg(
        long = "allow-owner",
        env = "GRASPD_ALLOW_OWNERS",
        value_delimiter = ',',
        value_name = "NPUB"
    )]
    pub allow_owners: Vec<String>,

    /// New repositories one owner's announcements may create within an hour. 0: no limit.
    #[arg(long, env = "GRASPD_MAX_NEW_REPOS_PER_HOUR_PER_OWNER", default_value_t = 50)]
    pub max_new_repos_per_hour_per_owner: usize,

    /// New repositories announcements from one client address may create within an hour.
    /// 0: no limit.
    #[arg(long, env = "GRASPD_MAX_NEW_REPOS_PER_HOUR_PER_ADDRESS", default_value_t = 50)]
    pub max_new_repos_per_hour_per_address: usize,

    /// Pushes of pull request refs alone (`refs/nostr/<event-id>`, which anyone may push) into
    /// one owner's repositories within an hour. 0: no limit.
    #[arg(long, env = "GRASPD_MAX_PR_PUSHES_PER_HOUR_PER_OWNER", default_value_t = 600)]
    pub max_pr_pushes_per_hour_per_owner: usize,

    /// Owners' repositories this server hosts, at most: past it, announcements of new ones are
    /// refused. 0: no limit.
    #[arg(long, env = "GRASPD_MAX_REPOSITORIES", default_value_t = 100_000)]
    pub max_repositories: usize,

    /// Pushes of pull request refs alone from one client address within an hour. 0: no limit.
    #[arg(long, env = "GRASPD_MAX_PR_PUSHES_PER_HOUR_PER_ADDRESS", default_value_t = 60)]
    pub max_pr_pushes_per_hour_per_address: usize,

    /// A file of `--allow-owner` keys, one a line (`#` starts a comment).
    #[arg(long, env = "GRASPD_ALLOW_OWNER_FILE", value_name = "FILE")]
    pub allow_owner_file: Option<PathBuf>,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `graspd=debug`.
    #[arg(long, env = "GRASPD_LOG", default_value = "info")]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "GRASPD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("'{s}' is not an octal file mode such as 0600"))
}

/// The status token from --grpc-token-file (trimmed); required when --grpc-listen is set.
fn read_token(args: &ServeArgs) -> Result<Option<String>, ConfigError> {
    let Some(path) = &args.grpc_token_file else {
        return if args.grpc_listen.is_some() {
            Err(ConfigError::TokenRequired)
        } else {
            Ok(None)
        };
    };
    let token = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Token(format!("cannot read {}: {e}", path.display())))?
        .trim()
        .to_owned();
    if token.len() < 16 {
        return Err(ConfigError::Token(format!(
            "{} holds fewer than 16 characters",
            path.display()
        )));
    }
    Ok(Some(token))
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("--event-burst and --events-per-minute must be at least 1")]
    RateLimit,
    #[error("--grpc-listen needs --grpc-token-file: the status service on TCP requires a bearer token")]
    TokenRequired,
    #[error("--grpc-token-file: {0}")]
    Token(String),
    #[error("--initial-branch '{0}': not a valid branch name")]
    InitialBranch(String),
    #[error("{0}")]
    Archive(String),
    #[error("{0}")]
    AllowOwner(String),
}

/// The archive rules (GRASP-05) from the flags and the allow file; a bad entry is an error that
/// names it (and its line in the file).
/// `--allow-owner` and `--allow-owner-file`: `None` when neither names anyone.
fn allowed_owners(args: &ServeArgs) -> Result<Option<BTreeSet<nostr::PublicKey>>, ConfigError> {
    let parse = |what: &str, raw: &str| {
        nostr::PublicKey::parse(raw.trim())
            .map_err(|_| ConfigError::AllowOwner(format!("{what} '{}': not an npub or hex key", raw.trim())))
    };
    let mut owners = BTreeSet::new();
    for raw in &args.allow_owners {
        owners.insert(parse("--allow-owner", raw)?);
    }
    if let Some(path) = &args.allow_owner_file {
        let entries = entries_in_file("--allow-owner-file", path).map_err(ConfigError::AllowOwner)?;
        for (what, entry) in entries {
            owners.insert(parse(&what, &entry)?);
        }
    }
    Ok((!owners.is_empty()).then_some(owners))
}

/// The entries of a list file (`--allow-owner-file`, `--archive-allow-file`): one a line, `#`
/// starts a comment, blank lines skipped; each with what names it in an error (`<flag> <path>
/// line <n>:`).
fn entries_in_file(flag: &str, path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{flag} {}: {error}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(number, line)| {
            let entry = line.split('#').next().unwrap_or_default().trim();
            (!entry.is_empty()).then(|| {
                let what = format!("{flag} {} line {}:", path.display(), number + 1);
                (what, entry.to_owned())
            })
        })
        .collect())
}

fn archive_settings(args: &ServeArgs) -> Result<ArchiveSettings, ConfigError> {
    let parse = |flag: &str, raw: &str| {
        ArchiveEntry::parse(raw).map_err(|error| ConfigError::Archive(format!("{flag} {error}")))
    };
    let mut allow = args
        .archive_allow
        .iter()
        .map(|raw| parse("--archive-allow", raw))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = &args.archive_allow_file {
        let entries = entries_in_file("--archive-allow-file", path).map_err(ConfigError::Archive)?;
        for (what, entry) in entries {
            allow.push(parse(&what, &entry)?);
        }
    }
    let deny = args
        .archive_deny
        .iter()
        .map(|raw| parse("--archive-deny", raw))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ArchiveSettings {
        enabled: args.archive
            || args.archive_all
            || args.archive_only
            || args.archive_allow_file.is_some()
            || !allow.is_empty()
            || !deny.is_empty(),
        all: args.archive_all,
        allow,
        deny,
        only: args.archive_only,
    })
}

/// The server's configuration from `graspd serve`'s arguments (after the configuration file was
/// applied): defaults resolved, values checked, the token file read.
pub fn config(args: &ServeArgs) -> Result<Config, ConfigError> {
    let domain = match &args.domain {
        Some(domain) => Domain::parse(domain)?,
        None => Domain::parse(&args.listen.to_string())?,
    };
    if args.event_burst == 0 || args.events_per_minute == 0 {
        return Err(ConfigError::RateLimit);
    }
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("graspd.db").display()));
    let data_dir = absolute(&args.data_dir);
    let archive = archive_settings(args)?;
    let initial_head = match &args.initial_branch {
        Some(name) => RefName::branch(name).ok_or_else(|| ConfigError::InitialBranch(name.clone()))?,
        None => graspd::git::default_branch(&args.git_program),
    };
    Ok(Config {
        listen: args.listen,
        hooks: args.hooks.setup(&data_dir),
        grpc_socket_mode: args.grpc_socket_mode,
        grpc_listen: args.grpc_listen,
        grpc_token: read_token(args)?,
        grpc_tcp_hooks: args.grpc_tcp_hooks,
        metrics_listen: args.metrics_listen,
        git_program: graspd::config::resolve_program(&args.git_program),
        git_http: args.git_http.into(),
        initial_head,
        domain,
        data_dir: args.data_dir.clone(),
        database_url,
        wal_checkpoint_mib: args.wal_checkpoint_mib,
        git_root: git_root(&args.data_dir, args.git_root.as_deref()),
        purgatory_expiry: Duration::from_secs(args.purgatory_expiry_secs),
        housekeeping_interval: (args.housekeeping_interval_secs > 0)
            .then(|| Duration::from_secs(args.housekeeping_interval_secs)),
        name: args.name.clone(),
        description: args.description.clone(),
        limits: Limits {
            max_message_bytes: args.max_message_bytes,
            max_event_bytes: args.max_event_bytes,
            max_subscriptions: args.max_subscriptions,
            max_filter_limit: args.max_filter_limit,
            events_per_minute: args.events_per_minute,
            event_burst: args.event_burst,
            max_connections: args.max_connections,
        },
        sync: SyncSettings {
            default_delay: Duration::from_secs(args.sync_default_delay_secs),
            immediate_delay: Duration::from_millis(args.sync_immediate_delay_ms),
            loop_interval: Duration::from_millis(args.sync_loop_interval_ms),
            domain_concurrent: usize::try_from(args.sync_domain_concurrent).unwrap_or(usize::MAX),
            domain_rate_limit: usize::try_from(args.sync_domain_rate_limit).unwrap_or(usize::MAX),
            fetch_timeout: Duration::from_secs(args.sync_fetch_timeout_secs),
            private_addresses: args.sync_private_addresses,
            refs_check_interval: (args.sync_refs_check_secs > 0)
                .then(|| Duration::from_secs(args.sync_refs_check_secs)),
        },
        event_sync: EventSyncSettings {
            enabled: !args.no_event_sync,
            refresh: Duration::from_secs(args.event_sync_refresh_secs),
            timeout: Duration::from_secs(args.event_sync_timeout_secs),
            resume_window: Duration::from_secs(15 * 60),
            full_pass: Duration::from_secs(args.event_sync_full_pass_secs),
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            bootstrap_relays: args.event_sync_bootstrap_relays.clone(),
            max_relays: usize::try_from(args.event_sync_max_relays).unwrap_or(usize::MAX),
            outbox: !args.no_outbox_sync,
            outbox_max_authors: args.outbox_max_authors,
            outbox_max_relays: args.outbox_max_relays,
        },
        archive,
        abuse: AbuseLimits {
            max_placeholders_per_repo: args.max_placeholders_per_repo,
            max_placeholders: args.max_placeholders,
            max_push_bytes: args.max_push_bytes,
            max_pr_push_bytes: args.max_pr_push_bytes,
            allowed_owners: allowed_owners(args)?,
            new_repos_per_hour_per_owner: args.max_new_repos_per_hour_per_owner,
            new_repos_per_hour_per_address: args.max_new_repos_per_hour_per_address,
            pr_pushes_per_hour_per_owner: args.max_pr_pushes_per_hour_per_owner,
            pr_pushes_per_hour_per_address: args.max_pr_pushes_per_hour_per_address,
            max_repositories: args.max_repositories,
        },
        grasp06: Grasp06Settings {
            enabled: args.grasp06,
            ref_expiry: Duration::from_secs(args.grasp06_ref_expiry_secs),
        },
    })
}

impl HookArgs {
    /// Where the hook and the daemon meet, for data kept in `data_dir`.
    pub fn setup(&self, data_dir: &std::path::Path) -> HookSetup {
        HookSetup::resolve(data_dir, self.grpc_socket.as_deref(), self.hook_binary.as_deref())
    }
}

impl From<GitHttp> for graspd::config::GitHttp {
    fn from(value: GitHttp) -> Self {
        match value {
            GitHttp::Embedded => Self::Embedded,
            GitHttp::External => Self::External,
        }
    }
}
