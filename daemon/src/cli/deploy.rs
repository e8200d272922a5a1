//! Deployment behind nginx: the configuration `graspd nginx-config` prints.
//!
//! In this mode (`graspd serve --git-http external`) nginx is the only listener the world sees.
//! It runs stock `git http-backend` through fcgiwrap for the git smart-HTTP paths
//! (`/<npub>/<identifier>.git/...`) and proxies everything else — the websocket relay at `/`,
//! GRASP-06's `/prs/` repositories (which graspd serves itself),
//! NIP-11, pages, the `/healthz` and `/readyz` probes — to graspd (never `/metrics`, which graspd
//! serves only on its own `--metrics-listen` address). The hook in each repository reaches graspd over its Unix
//! socket, found through the repository's git config, so nothing here needs to know about it.
//!
//! [`nginx_config`] is a pure function of a [`NginxSite`], so the text is unit-tested here and
//! proven with real nginx in `tests/nginx.rs`. `docs/deployment.md` walks through using it.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use graspd::config::{Config, absolute};
use graspd::http::CORS_HEADERS;

use super::flags::NginxConfigArgs;

/// Timeout for git requests and proxied connections: a large push or clone, or a websocket
/// that stays quiet between events, must not be cut at nginx's 60 s default.
const LONG_TIMEOUT: &str = "3600s";

/// What the nginx configuration is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxSite {
    /// nginx's `listen` parameter (`80`, `127.0.0.1:8081`, `443 ssl`, ...).
    pub listen: String,
    /// `server_name`: the host of `--domain`.
    pub server_name: String,
    /// Where graspd listens (`--listen`), as nginx should dial it.
    pub upstream: SocketAddr,
    /// `GIT_PROJECT_ROOT`: the absolute git root.
    pub git_root: PathBuf,
    /// The `git-http-backend` program fcgiwrap runs (`SCRIPT_FILENAME`).
    pub http_backend: PathBuf,
    /// fcgiwrap's Unix socket.
    pub fcgiwrap_socket: PathBuf,
    /// The daemon's gRPC socket and the spool, passed to the hooks through git http-backend's
    /// environment.
    pub hook_socket: PathBuf,
    pub spool_dir: PathBuf,
    /// This node's hooks directory, given to git as command-line `core.hooksPath`: it wins over
    /// the repository's own, so a repository another node created (shared storage) runs this
    /// node's hooks.
    pub hooks_dir: PathBuf,
    /// `--max-push-bytes`: git's `receive.maxInputSize` (0: none).
    pub max_push_bytes: u64,
}

/// Why no configuration can be printed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "--domain is required: announcements must name the public host[:port] nginx serves, not \
         graspd's --listen address"
    )]
    NoDomain,
    #[error(
        "nginx would listen on port {0}, graspd's own --listen port: give graspd another --listen (e.g. \
         127.0.0.1:8080) or nginx another port with --nginx-listen"
    )]
    SamePort(u16),
    #[error("{what} '{value}' cannot be written into an nginx configuration (it contains {bad:?})")]
    Unquotable {
        what: &'static str,
        value: String,
        bad: char,
    },
    #[error("cannot run `{program} --exec-path` to find git-http-backend: {reason}")]
    ExecPath { program: String, reason: String },
}

impl NginxSite {
    /// The site for `graspd serve` started with `args.serve`. `http_backend` is
    /// [`http_backend_path`]'s answer unless the operator named one.
    pub fn new(config: &Config, args: &NginxConfigArgs, http_backend: PathBuf) -> Result<Self, DeployError> {
        if args.serve.domain.is_none() {
            return Err(DeployError::NoDomain);
        }
        let listen = match &args.nginx_listen {
            Some(listen) => listen.clone(),
            None => {
                let port = config.domain.port().unwrap_or(80);
                if port == config.listen.port() {
                    return Err(DeployError::SamePort(port));
                }
                port.to_string()
            }
        };
        let site = Self {
            listen,
            server_name: config.domain.host().to_owned(),
            upstream: dialable(config.listen),
            git_root: absolute(&config.git_root),
            http_backend: absolute(&http_backend),
            fcgiwrap_socket: absolute(&args.fcgiwrap_socket),
            hook_socket: config.hooks.socket.clone(),
            spool_dir: config.hooks.spool_dir.clone(),
            hooks_dir: absolute(&config.hooks.hooks_dir),
            max_push_bytes: config.abuse.max_push_bytes,
        };
        site.check()?;
        Ok(site)
    }

    /// Rejects values that would break out of their place in the configuration.
    fn check(&self) -> Result<(), DeployError> {
        let unquotable = |what, value: &str, forbidden: &[char]| match value
            .chars()
            .find(|c| c.is_control() || forbidden.contains(c))
        {
            Some(bad) => Err(DeployError::Unquotable {
                what,
                value: value.to_owned(),
                bad,
            }),
            None => Ok(()),
        };
        // Paths go inside double quotes; `$` would start an nginx variable there.
        let in_quotes = ['"', '\\', '$'];
        unquotable(
            "--nginx-listen",
            &self.listen,
            &[';', '{', '}', '"', '\'', '$', '#'],
        )?;
        unquotable("--git-root", &path_text(&self.git_root), &in_quotes)?;
        unquotable(
            "git-http-backend path",
            &path_text(&self.http_backend),
            &in_quotes,
        )?;
        unquotable("--fcgiwrap-socket", &path_text(&self.fcgiwrap_socket), &in_quotes)?;
        unquotable("--grpc-socket", &path_text(&self.hook_socket), &in_quotes)?;
        unquotable("the spool directory", &path_text(&self.spool_dir), &in_quotes)?;
        Ok(())
    }
}

/// `$(git --exec-path)/git-http-backend` for the git executable graspd is configured with.
pub fn http_backend_path(git_program: &Path) -> Result<PathBuf, DeployError> {
    let error = |reason: String| DeployError::ExecPath {
        program: git_program.display().to_string(),
        reason,
    };
    let output = std::process::Command::new(git_program)
        .arg("--exec-path")
        .output()
        .map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        return Err(error(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    let exec_path = String::from_utf8(output.stdout).map_err(|_| error("not UTF-8".to_owned()))?;
    Ok(Path::new(exec_path.trim()).join("git-http-backend"))
}

/// graspd's listen address as a client dials it: a wildcard address becomes loopback.
fn dialable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `access-control-allow-origin` → `Access-Control-Allow-Origin`, as people write them.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// The nginx configuration for `site`: a `map` for the websocket `Connection` header and one
/// `server` block, to be included in nginx's `http` context (Debian: a file in
/// `/etc/nginx/sites-available/`, linked from `sites-enabled/`).
pub fn nginx_config(site: &NginxSite) -> String {
    let mut cors = String::new();
    for (name, value) in CORS_HEADERS {
        let _ = writeln!(
            cors,
            "        add_header {} \"{value}\" always;",
            header_case(name)
        );
    }
    let git_root = path_text(&site.git_root);
    let http_backend = path_text(&site.http_backend);
    let fcgiwrap = path_text(&site.fcgiwrap_socket);
    let hook_socket = path_text(&site.hook_socket);
    let spool_dir = path_text(&site.spool_dir);
    let (socket_env, spool_env) = (graspd::http::SOCKET_ENV, graspd::http::SPOOL_ENV);
    let hooks_dir = path_text(&site.hooks_dir);
    let (config_count, push_limit) = match site.max_push_bytes {
        0 => (3, String::new()),
        bytes => (
            4,
            format!(
                "\n        # --max-push-bytes: git refuses a larger pack while receiving it.\n        \
                 fastcgi_param GIT_CONFIG_KEY_3 receive.maxInputSize;\n        \
                 fastcgi_param GIT_CONFIG_VALUE_3 {bytes};"
            ),
        ),
    };
    let NginxSite {
        listen,
        server_name,
        upstream,
        ..
    } = site;
    format!(
        r#"# Generated by `graspd nginx-config`: nginx serves git through fcgiwrap + git http-backend
# and proxies everything else to graspd (`graspd serve --git-http external`).
# See docs/deployment.md. Include in nginx's http context (e.g. /etc/nginx/sites-available/graspd).

# Websocket upgrades pass through to graspd; other requests keep their connection semantics.
map $http_upgrade $graspd_connection_upgrade {{
    default upgrade;
    ''      close;
}}

server {{
    listen {listen};
    server_name {server_name};

    # Pushes can be any size; stream them instead of refusing them.
    client_max_body_size 0;
    client_body_timeout {LONG_TIMEOUT};
    send_timeout {LONG_TIMEOUT};

    # Git smart HTTP (and the dumb protocol's files): stock git http-backend through fcgiwrap.
    # Its receive-pack runs the hooks from each repository's core.hooksPath; they find graspd
    # through GRASPD_SOCKET below (grasp-hook falls back to the repository's graspd.socket).
    location ~ "^/npub1[a-z0-9]{{58}}/[^/]+\.git/(HEAD|info/refs|objects/.+|git-upload-pack|git-receive-pack)$" {{
        # GRASP-01 CORS headers, on every answer (errors too).
{cors}
        if ($request_method = OPTIONS) {{
            return 204;
        }}

        fastcgi_pass "unix:{fcgiwrap}";
        fastcgi_param SCRIPT_FILENAME "{http_backend}";
        fastcgi_param GIT_PROJECT_ROOT "{git_root}";
        # Serve every repository under the root; graspd decides what exists there.
        fastcgi_param GIT_HTTP_EXPORT_ALL 1;
        # How the hooks reach graspd (git http-backend passes its environment on to them).
        fastcgi_param {socket_env} "{hook_socket}";
        fastcgi_param {spool_env} "{spool_dir}";
        # Anonymous receive-pack (http.receivepack = true per repository): authorization is the
        # hooks' job, against signed Nostr state, never an HTTP user.
        fastcgi_param REMOTE_USER "";
        # git-http-backend may run as another user than graspd, which owns the repositories:
        # trust them, and keep what git writes group-writable for graspd (docs/deployment.md).
        fastcgi_param GIT_CONFIG_COUNT {config_count};
        fastcgi_param GIT_CONFIG_KEY_0 safe.directory;
        fastcgi_param GIT_CONFIG_VALUE_0 "*";
        fastcgi_param GIT_CONFIG_KEY_1 core.sharedRepository;
        fastcgi_param GIT_CONFIG_VALUE_1 group;
        # This node's hooks, whichever node created the repository (several nodes may share the
        # git root); the same as each repository's core.hooksPath on a single node.
        fastcgi_param GIT_CONFIG_KEY_2 core.hooksPath;
        fastcgi_param GIT_CONFIG_VALUE_2 "{hooks_dir}";{push_limit}
        fastcgi_param PATH_INFO $uri;
        fastcgi_param QUERY_STRING $query_string;
        fastcgi_param REQUEST_METHOD $request_method;
        fastcgi_param CONTENT_TYPE $content_type;
        # No CONTENT_LENGTH: git http-backend then reads the streamed body to its end. Given the
        # length, git (2.47) loops forever when a client goes away before sending all of it.
        fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding if_not_empty;
        fastcgi_param GIT_PROTOCOL $http_git_protocol if_not_empty;
        fastcgi_param REQUEST_URI $request_uri;
        fastcgi_param GATEWAY_INTERFACE CGI/1.1;
        fastcgi_param SERVER_PROTOCOL $server_protocol;
        fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
        fastcgi_param SERVER_NAME $server_name;
        fastcgi_param SERVER_PORT $server_port;
        fastcgi_param REMOTE_ADDR $remote_addr;
        fastcgi_param REMOTE_PORT $remote_port;

        # Stream both ways: a large push or clone never sits in nginx's buffers, and long
        # server-side work (index-pack, hooks) does not time out.
        fastcgi_request_buffering off;
        fastcgi_buffering off;
        fastcgi_read_timeout {LONG_TIMEOUT};
        fastcgi_send_timeout {LONG_TIMEOUT};
    }}

    # GRASP-06 contributors' pull request repositories (`graspd serve --grasp06`; 404 without):
    # graspd runs git http-backend for these itself, as it creates a repository at its first
    # push and answers for one not there yet. Streamed both ways, like the git location above.
    location /prs/ {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout {LONG_TIMEOUT};
        proxy_send_timeout {LONG_TIMEOUT};
    }}

    # Everything else is graspd's: the websocket relay and NIP-11 at /, repository pages,
    # the /healthz and /readyz probes.
    location / {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $graspd_connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout {LONG_TIMEOUT};
        proxy_send_timeout {LONG_TIMEOUT};
    }}
}}
"#,
        cors = cors.trim_end(),
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::flags::{Cli, Command};
    use super::*;

    /// `graspd nginx-config <flags>` parsed as the binary parses it.
    fn args(flags: &[&str]) -> NginxConfigArgs {
        let argv = ["graspd", "nginx-config"].iter().chain(flags);
        match Cli::parse_from(argv).command {
            Command::NginxConfig(args) => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn site(flags: &[&str]) -> Result<NginxSite, DeployError> {
        let args = args(flags);
        let config = super::super::flags::config(&args.serve).expect("config");
        NginxSite::new(
            &config,
            &args,
            PathBuf::from("/usr/lib/git-core/git-http-backend"),
        )
    }

    fn example() -> NginxSite {
        site(&[
            "--domain",
            "git.example.com",
            "--listen",
            "0.0.0.0:8080",
            "--data-dir",
            "/var/lib/graspd",
        ])
        .expect("site")
    }

    #[test]
    fn site_follows_the_serve_flags() {
        let site = example();
        assert_eq!(site.listen, "80", "a domain without a port is served on 80");
        assert_eq!(site.server_name, "git.example.com");
        assert_eq!(
            site.upstream,
            "127.0.0.1:8080".parse().expect("addr"),
            "a wildcard listen address is dialled on loopback"
        );
        assert_eq!(site.git_root, Path::new("/var/lib/graspd/repos"));
        assert_eq!(site.fcgiwrap_socket, Path::new("/run/fcgiwrap.socket"));

        let site =
            self::site(&["--domain", "127.0.0.1:9000", "--nginx-listen", "127.0.0.1:9000"]).expect("site");
        assert_eq!(site.listen, "127.0.0.1:9000");
        let site = self::site(&["--domain", "git.example.com:8443"]).expect("site");
        assert_eq!(site.listen, "8443", "the domain's port");
    }

    #[test]
    fn a_domain_is_required_and_ports_may_not_collide() {
        assert!(matches!(site(&[]), Err(DeployError::NoDomain)));
        assert!(matches!(
            site(&["--domain", "example.com:8080", "--listen", "127.0.0.1:8080"]),
            Err(DeployError::SamePort(8080))
        ));
    }

    #[test]
    fn values_that_would_break_the_configuration_are_refused() {
        let refused = |flags: &[&str]| {
            matches!(
                site(&[&["--domain", "example.com"], flags].concat()),
                Err(DeployError::Unquotable { .. })
            )
        };
        assert!(refused(&["--git-root", "/srv/$git"]));
        assert!(refused(&["--fcgiwrap-socket", "/run/a\"b"]));
        assert!(refused(&["--grpc-socket", "/run/$graspd.sock"]));
        assert!(refused(&["--nginx-listen", "80; include /etc/passwd"]));
        assert!(!refused(&["--git-root", "/srv/git repos"]));
    }

    #[test]
    fn git_paths_go_to_git_http_backend_with_the_cgi_environment() {
        let text = nginx_config(&example());
        assert!(text.contains(r#"location ~ "^/npub1[a-z0-9]{58}/[^/]+\.git/(HEAD|info/refs|objects/.+|git-upload-pack|git-receive-pack)$" {"#));
        for line in [
            r#"fastcgi_pass "unix:/run/fcgiwrap.socket";"#,
            r#"fastcgi_param SCRIPT_FILENAME "/usr/lib/git-core/git-http-backend";"#,
            r#"fastcgi_param GIT_PROJECT_ROOT "/var/lib/graspd/repos";"#,
            "fastcgi_param GIT_HTTP_EXPORT_ALL 1;",
            r#"fastcgi_param GRASPD_SOCKET "/var/lib/graspd/graspd.sock";"#,
            r#"fastcgi_param GRASPD_SPOOL "/var/lib/graspd/spool";"#,
            r#"fastcgi_param REMOTE_USER "";"#,
            "fastcgi_param PATH_INFO $uri;",
            "fastcgi_param QUERY_STRING $query_string;",
            "fastcgi_param REQUEST_METHOD $request_method;",
            "fastcgi_param CONTENT_TYPE $content_type;",
            "fastcgi_param GIT_PROTOCOL $http_git_protocol if_not_empty;",
            "fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding if_not_empty;",
            "fastcgi_request_buffering off;",
            "fastcgi_buffering off;",
            "fastcgi_read_timeout 3600s;",
            "client_max_body_size 0;",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        // git http-backend reads to EOF without it; with it, git loops forever when a client
        // goes away mid-body (the request is streamed).
        assert!(!text.contains("fastcgi_param CONTENT_LENGTH"), "{text}");
    }

    #[test]
    fn git_answers_carry_the_grasp_cors_headers_and_options_is_204() {
        let text = nginx_config(&example());
        assert!(text.contains(r#"add_header Access-Control-Allow-Origin "*" always;"#));
        assert!(text.contains(r#"add_header Access-Control-Allow-Methods "GET, POST" always;"#));
        assert!(text.contains(r#"add_header Access-Control-Allow-Headers "Content-Type" always;"#));
        assert!(text.contains("if ($request_method = OPTIONS) {\n            return 204;\n        }"));
    }

    #[test]
    fn everything_else_is_proxied_to_graspd_with_websocket_upgrades() {
        let text = nginx_config(&example());
        for line in [
            "listen 80;",
            "server_name git.example.com;",
            "proxy_pass http://127.0.0.1:8080;",
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $graspd_connection_upgrade;",
            "proxy_set_header Host $host;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "proxy_read_timeout 3600s;",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(text.contains("map $http_upgrade $graspd_connection_upgrade {"));
    }

    #[test]
    fn the_push_limit_reaches_git_as_receive_max_input_size() {
        let text = nginx_config(&example());
        assert!(text.contains("fastcgi_param GIT_CONFIG_COUNT 4;"), "{text}");
        assert!(text.contains("fastcgi_param GIT_CONFIG_KEY_2 core.hooksPath;"));
        assert!(text.contains("fastcgi_param GIT_CONFIG_KEY_3 receive.maxInputSize;"));
        assert!(text.contains("fastcgi_param GIT_CONFIG_VALUE_3 4294967296;"));
        let mut unlimited = example();
        unlimited.max_push_bytes = 0;
        let text = nginx_config(&unlimited);
        assert!(text.contains("fastcgi_param GIT_CONFIG_COUNT 3;") && !text.contains("maxInputSize"));
    }

    #[test]
    fn prs_repositories_go_to_graspd_streamed() {
        let text = nginx_config(&example());
        let block = text
            .split("location /prs/ {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("a /prs/ location");
        for line in [
            "proxy_pass http://127.0.0.1:8080;",
            "proxy_request_buffering off;",
            "proxy_buffering off;",
            "proxy_read_timeout 3600s;",
        ] {
            assert!(block.contains(line), "missing `{line}` in:\n{block}");
        }
    }

    #[test]
    fn braces_balance() {
        let text = nginx_config(&example());
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        // The location regex's `{58}` is inside quotes and balanced too.
        assert_eq!(code.matches('{').count(), code.matches('}').count());
    }
}
