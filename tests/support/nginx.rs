//! Real nginx + fcgiwrap in front of a graspd started with `--git-http external`, configured
//! with the text `graspd nginx-config` prints: the deployment docs/deployment.md describes, on
//! loopback, in temp directories, as the current user. Used by tests/nginx.rs and
//! benches/nginx.rs.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nostr::{Event, Keys, Timestamp};

use super::{DEADLINE, Server, event_at, free_addr, npub};

/// Where nginx and fcgiwrap were found.
pub struct Binaries {
    pub nginx: PathBuf,
    pub fcgiwrap: PathBuf,
}

/// nginx and fcgiwrap, looked up in /usr/sbin (where Debian puts them) and on `PATH`. `None`
/// after printing why the caller skips.
pub fn binaries(what: &str) -> Option<Binaries> {
    let nginx = find("nginx");
    let fcgiwrap = find("fcgiwrap");
    match (nginx, fcgiwrap) {
        (Some(nginx), Some(fcgiwrap)) => Some(Binaries { nginx, fcgiwrap }),
        (nginx, fcgiwrap) => {
            let missing: Vec<&str> = [("nginx", nginx.is_none()), ("fcgiwrap", fcgiwrap.is_none())]
                .iter()
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| *name)
                .collect();
            eprintln!(
                "SKIPPED {what}: {} not found in /usr/sbin, /usr/local/sbin or PATH \
                 (apt-get install nginx fcgiwrap; .ci/run installs them)",
                missing.join(" and ")
            );
            None
        }
    }
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/usr/local/sbin"]
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A free loopback address for nginx: graspd must know it (as `--domain`) before nginx starts.
pub fn nginx_addr() -> SocketAddr {
    free_addr()
}

/// graspd in external mode with its address for announcements set to `front`, and flags a
/// production server would use.
pub fn start_graspd(front: SocketAddr, extra: &[&str]) -> Server {
    let domain = front.to_string();
    let mut args = vec![
        "--git-http",
        "external",
        "--grpc-socket-mode",
        "0660",
        "--domain",
        domain.as_str(),
    ];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// nginx and fcgiwrap, running until dropped.
pub struct Front {
    pub addr: SocketAddr,
    pub prefix: tempfile::TempDir,
    nginx: Option<Child>,
    fcgiwrap: Option<Child>,
}

impl Front {
    /// Starts fcgiwrap on a Unix socket and nginx on `addr` with the configuration
    /// `graspd nginx-config` prints for `server`.
    pub fn start(binaries: &Binaries, server: &Server, addr: SocketAddr) -> Self {
        let prefix = tempfile::tempdir().expect("tempdir");
        let p = prefix.path().to_owned();
        let socket = p.join("fcgiwrap.sock");
        let mut front = Self {
            addr,
            prefix,
            nginx: None,
            fcgiwrap: None,
        };
        // Its own process group, so the workers it forks go with it.
        let fcgiwrap = Command::new(&binaries.fcgiwrap)
            .arg("-c")
            .arg("4")
            .arg("-s")
            .arg(format!("unix:{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&p.join("fcgiwrap.log")))
            .process_group(0)
            .spawn()
            .expect("start fcgiwrap");
        front.fcgiwrap = Some(fcgiwrap);
        front.wait_for("fcgiwrap's socket", || socket.exists());

        let site = graspd_nginx_config(server, addr, &socket);
        std::fs::write(p.join("graspd.conf"), site).expect("write graspd.conf");
        std::fs::write(p.join("nginx.conf"), nginx_conf(&p)).expect("write nginx.conf");
        let nginx = Command::new(&binaries.nginx)
            .arg("-p")
            .arg(&p)
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .arg("-e")
            .arg(p.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&p.join("nginx.stderr")))
            .process_group(0)
            .spawn()
            .expect("start nginx");
        front.nginx = Some(nginx);
        front.wait_for("nginx to listen", || TcpStream::connect(addr).is_ok());
        front
    }

    fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if ready() {
                return;
            }
            let exited = [&mut self.nginx, &mut self.fcgiwrap]
                .into_iter()
                .flatten()
                .find_map(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "waiting for {what}: a process exited with {status}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}\n{}", self.logs());
    }

    /// nginx's and fcgiwrap's logs, for failure messages.
    pub fn logs(&self) -> String {
        ["error.log", "nginx.stderr", "fcgiwrap.log", "access.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.prefix.path().join(name)).unwrap_or_default();
                format!("--- {name}\n{text}")
            })
            .collect()
    }

    /// `ws://<nginx>`: the relay, through nginx.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `http://<nginx>/<npub>/<identifier>.git`
    pub fn clone_url(&self, owner: &Keys, identifier: &str) -> String {
        format!("http://{}/{}/{identifier}.git", self.addr, npub(owner))
    }

    /// The configuration nginx runs with (what `graspd nginx-config` printed).
    pub fn site_config(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("graspd.conf")).expect("graspd.conf")
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        // SIGTERM to the process group: nginx's master and workers, fcgiwrap and its workers.
        for child in [self.nginx.take(), self.fcgiwrap.take()].into_iter().flatten() {
            stop_group(child);
        }
    }
}

fn stop_group(mut child: Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::File::create(path).expect("log file")
}

/// Runs `graspd nginx-config` with the flags `server` runs with.
fn graspd_nginx_config(server: &Server, addr: SocketAddr, socket: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_graspd"))
        .arg("nginx-config")
        .arg("--listen")
        .arg(server.addr.to_string())
        .arg("--data-dir")
        .arg(server.data.path())
        .args(["--git-http", "external", "--domain"])
        .arg(addr.to_string())
        .arg("--nginx-listen")
        .arg(addr.to_string())
        .arg("--fcgiwrap-socket")
        .arg(socket)
        .output()
        .expect("run graspd nginx-config");
    assert!(
        output.status.success(),
        "graspd nginx-config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 configuration")
}

/// A minimal nginx.conf around the generated site: everything inside the temp prefix, in the
/// foreground. Running as root (as CI does), workers would drop to `nobody` and could not reach
/// the temp dir or fcgiwrap's socket, so they stay root there.
fn nginx_conf(prefix: &Path) -> String {
    let p = prefix.display();
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    format!(
        "daemon off;\n\
         {user}\
         worker_processes 2;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log {p}/access.log;\n\
         \x20   client_body_temp_path {p}/client_body;\n\
         \x20   proxy_temp_path {p}/proxy;\n\
         \x20   fastcgi_temp_path {p}/fastcgi;\n\
         \x20   uwsgi_temp_path {p}/uwsgi;\n\
         \x20   scgi_temp_path {p}/scgi;\n\
         \x20   include {p}/graspd.conf;\n\
         }}\n",
        user = if as_root { "user root;\n" } else { "" },
    )
}

/// A repository announcement naming `front` (nginx) in `clone` and `relays`.
pub fn announcement_at(keys: &Keys, front: SocketAddr, identifier: &str) -> Event {
    let clone = format!("http://{front}/{}/{identifier}.git", npub(keys));
    let relay = format!("ws://{front}");
    let tags: [&[&str]; 5] = [
        &["d", identifier],
        &["name", identifier],
        &["description", "a test repository behind nginx"],
        &["clone", &clone],
        &["relays", &relay],
    ];
    event_at(keys, 30617, "", &tags, Timestamp::now())
}
