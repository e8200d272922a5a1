//! Command line and environment configuration (clap). Every flag has a `GRASPD_*` environment
//! variable; `docs/configuration.md` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

    /// The git executable used for `git http-backend` and object copies.
    #[arg(long, env = "GRASPD_GIT", default_value = "git")]
    pub git_program: PathBuf,

    /// Seconds an event waits in purgatory for its git data before it is discarded.
    #[arg(long, env = "GRASPD_PURGATORY_EXPIRY_SECS", default_value_t = 1800)]
    pub purgatory_expiry_secs: u64,

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
    pub fn resolve(data_dir: &std::path::Path, args: &HookArgs) -> Self {
        let data_dir = absolute(data_dir);
        let hook_binary = args.hook_binary.clone().map(|p| absolute(&p)).unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("grasp-hook")))
                .unwrap_or_else(|| PathBuf::from("grasp-hook"))
        });
        Self {
            socket: args
                .grpc_socket
                .clone()
                .map(|p| absolute(&p))
                .unwrap_or_else(|| data_dir.join("graspd.sock")),
            hooks_dir: data_dir.join("hooks"),
            spool_dir: data_dir.join("spool"),
            hook_binary,
        }
    }
}

/// `path` made absolute against the current directory (without resolving links), so paths
/// written into git config work from any working directory.
pub fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--domain '{0}': expected host[:port] without scheme or path")]
    Domain(String),
    #[error("--event-burst and --events-per-minute must be at least 1")]
    RateLimit,
}

/// The public `host[:port]` announcements must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    host: String,
    port: Option<u16>,
}

impl Domain {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Domain(s.to_owned());
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

/// The resolved configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub hooks: HookSetup,
    pub grpc_socket_mode: u32,
    pub grpc_listen: Option<SocketAddr>,
    pub git_program: PathBuf,
    pub domain: Domain,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub git_root: PathBuf,
    pub purgatory_expiry: Duration,
    pub name: String,
    pub description: String,
    pub limits: Limits,
}

impl Config {
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
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
        Ok(Self {
            listen: args.listen,
            hooks: HookSetup::resolve(&data_dir, &args.hooks),
            grpc_socket_mode: args.grpc_socket_mode,
            grpc_listen: args.grpc_listen,
            git_program: args.git_program.clone(),
            domain,
            data_dir: args.data_dir.clone(),
            database_url,
            git_root: args
                .git_root
                .clone()
                .unwrap_or_else(|| args.data_dir.join("repos")),
            purgatory_expiry: Duration::from_secs(args.purgatory_expiry_secs),
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
