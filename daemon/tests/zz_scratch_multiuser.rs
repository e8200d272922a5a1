// Temporary manual validation (removed after use): only runs with SCRATCH_MULTIUSER=1.
#[path = "../../tests/support/mod.rs"]
mod support;
use nostr::Keys;
use serde_json::json;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    format!(
        "$ {cmd}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn scratch() {
    if std::env::var("SCRATCH_MULTIUSER").is_err() {
        return;
    }
    let base = Path::new("/tmp/mu");
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(base.join("bin")).unwrap();
    println!(
        "{}",
        sh(
            "getent group graspd || groupadd --system graspd; id graspd || useradd --system --gid graspd --no-create-home --shell /usr/sbin/nologin graspd"
        )
    );
    std::fs::copy(env!("CARGO_BIN_EXE_graspd"), base.join("bin/graspd")).unwrap();
    std::fs::copy(hook_binary(), base.join("bin/grasp-hook")).unwrap();
    println!(
        "{}",
        sh(
            "chmod 755 /tmp/mu /tmp/mu/bin /tmp/mu/bin/*; install -d -o graspd -g graspd -m 2775 /tmp/mu/data /tmp/mu/data/spool; install -d -o www-data -g www-data -m 755 /tmp/mu/run; mkdir -p /tmp/mu/nginx"
        )
    );
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let front = support::nginx::nginx_addr();
    let serve = format!(
        "umask 0002 && exec /tmp/mu/bin/graspd serve --git-http external --grpc-socket-mode 0660 --listen {listen} --domain {front} --data-dir /tmp/mu/data --log graspd=debug,info"
    );
    let log = std::fs::File::create(base.join("graspd.log")).unwrap();
    let mut graspd = Command::new("setpriv")
        .args([
            "--reuid=graspd",
            "--regid=graspd",
            "--init-groups",
            "sh",
            "-c",
            &serve,
        ])
        .stderr(log)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if TcpStream::connect(listen).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let conf = Command::new("/tmp/mu/bin/graspd")
        .args([
            "nginx-config",
            "--listen",
            &listen.to_string(),
            "--domain",
            &front.to_string(),
            "--nginx-listen",
            &front.to_string(),
            "--data-dir",
            "/tmp/mu/data",
            "--fcgiwrap-socket",
            "/tmp/mu/run/fcgiwrap.sock",
        ])
        .output()
        .unwrap();
    assert!(conf.status.success());
    std::fs::write(base.join("nginx/graspd.conf"), &conf.stdout).unwrap();
    std::fs::write(base.join("nginx/nginx.conf"), "daemon off;\nuser www-data;\npid /tmp/mu/nginx/nginx.pid;\nerror_log /tmp/mu/nginx/error.log info;\nevents {}\nhttp {\n access_log /tmp/mu/nginx/access.log;\n client_body_temp_path /tmp/mu/nginx/cb; proxy_temp_path /tmp/mu/nginx/px; fastcgi_temp_path /tmp/mu/nginx/fc; uwsgi_temp_path /tmp/mu/nginx/uw; scgi_temp_path /tmp/mu/nginx/sc;\n include /tmp/mu/nginx/graspd.conf;\n}\n").unwrap();
    let fcgi_log = std::fs::File::create(base.join("fcgiwrap.log")).unwrap();
    let mut fcgiwrap = Command::new("setpriv")
        .args([
            "--reuid=www-data",
            "--regid=www-data",
            "--groups=graspd",
            "/usr/sbin/fcgiwrap",
            "-c",
            "4",
            "-s",
            "unix:/tmp/mu/run/fcgiwrap.sock",
        ])
        .stderr(fcgi_log)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut nginx = Command::new("/usr/sbin/nginx")
        .args([
            "-p",
            "/tmp/mu/nginx",
            "-c",
            "/tmp/mu/nginx/nginx.conf",
            "-e",
            "/tmp/mu/nginx/error.log",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if TcpStream::connect(front).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }

    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("mu");
    let mut client = Client::connect(&format!("ws://{front}")).await;
    let ann = support::nginx::announcement_at(&owner, front, "mu");
    println!("ann: {:?}", client.publish(&ann).await);
    let st = state(&owner, "mu", &[("refs/heads/main", &oid)], Some("main"));
    println!("state: {:?}", client.publish(&st).await);
    let url = format!("http://{front}/{}/mu.git", npub(&owner));
    let out = git_output(work.path(), &["push", &url, "main"]);
    println!("push: {} {}", out.status, String::from_utf8_lossy(&out.stderr));
    println!("served states: {:?}", client.ids(json!({"kinds":[30618]})).await);
    // a second commit via a second state, so graspd and www-data both wrote in the repo
    std::fs::write(work.path().join("b"), "b").unwrap();
    git(work.path(), &["add", "b"]);
    git(work.path(), &["commit", "-q", "-m", "b"]);
    let oid2 = git(work.path(), &["rev-parse", "HEAD"]);
    let st2 = state(&owner, "mu", &[("refs/heads/main", &oid2)], Some("main"));
    println!("state2: {:?}", client.publish(&st2).await);
    let out = git_output(work.path(), &["push", &url, "main"]);
    println!("push2: {} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let c = tempfile::tempdir().unwrap();
    let out = git_output(c.path(), &["clone", "-q", &url, "c"]);
    println!("clone: {} {}", out.status, String::from_utf8_lossy(&out.stderr));
    println!("{}", sh("ls -laR /tmp/mu/data | head -80"));
    println!(
        "{}",
        sh(
            "setpriv --reuid=www-data --regid=www-data --groups=graspd /tmp/mu/bin/graspd doctor --data-dir /tmp/mu/data; echo exit=$?"
        )
    );
    println!(
        "{}",
        sh(
            "setpriv --reuid=graspd --regid=graspd --init-groups /tmp/mu/bin/graspd doctor --data-dir /tmp/mu/data; echo exit=$?"
        )
    );
    println!(
        "{}",
        sh(
            "setpriv --reuid=nobody --regid=nogroup --clear-groups /tmp/mu/bin/graspd doctor --data-dir /tmp/mu/data; echo exit=$?"
        )
    );
    println!(
        "{}",
        sh(
            "cat /tmp/mu/fcgiwrap.log; grep -v 'GET\\|POST' /tmp/mu/nginx/error.log | tail -20; tail -30 /tmp/mu/graspd.log"
        )
    );
    let _ = nginx.kill();
    let _ = nginx.wait();
    let _ = Command::new("kill").arg(fcgiwrap.id().to_string()).status();
    let _ = fcgiwrap.wait();
    let _ = graspd.kill();
    let _ = graspd.wait();
    drop(work);
}
