//! Resources running out, against the real binary: a git root too small for a push, a git root
//! that turns read-only, a database whose disk fills up. Each is a small tmpfs mounted for the
//! test (root only: without the privilege the tests say so and skip). What must hold: the
//! client gets a clear error, nothing acknowledged is lost, nothing half-written stays, and
//! graspd works again once the space (or write access) is back.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use nostr::Keys;
use serde_json::json;
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

/// A tmpfs of `mib` MiB mounted on a fresh directory; unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (after saying why) where this process may not mount.
    fn mount(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Self { path, _dir: dir }),
            Ok(output) => {
                eprintln!(
                    "skipped: cannot mount a small tmpfs (needs root): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("skipped: cannot run mount: {error}");
                None
            }
        }
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {mode}");
    }

    /// Fills the disk up to `leave` bytes free with a file it returns.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let free = free_bytes(&self.path);
        let size = free.saturating_sub(leave);
        write_noise(&filler, size, 11);
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .expect("df figure")
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A push bigger than the git root's free space fails with git's own message, leaves no ref and
/// no space taken, and the store goes on accepting events; a push that fits then works.
#[tokio::test]
async fn a_push_larger_than_free_disk_fails_cleanly_and_the_next_one_works() {
    let Some(disk) = SmallDisk::mount(12) else {
        return;
    };
    let root = disk.path.join("repos");
    let server = Server::start_with(&["--git-root", root.to_str().expect("utf-8")]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    let ann = announcement(&owner, &server, "big");
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    let (work, oid) = work_tree_with_noise(16, 5, &[]);
    let st = state(&owner, "big", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let free = free_bytes(&disk.path);

    let url = server.clone_url(&owner, "big");
    let pushed = git_output(work.path(), &["push", &url, "main"]);
    assert!(!pushed.status.success(), "a 16 MiB push into 12 MiB");
    assert!(
        stderr(&pushed).contains("No space left on device") || stderr(&pushed).contains("unpack"),
        "git says why: {}",
        stderr(&pushed)
    );
    let repo = root.join(npub(&owner)).join("big.git");
    assert_eq!(git(&repo, &["for-each-ref"]), "", "no ref moved");
    let after = free_bytes(&disk.path);
    assert!(
        after + (256 << 10) >= free,
        "the failed push's objects are gone: {free} bytes free before, {after} after"
    );
    let issue = event(
        &Keys::generate(),
        1621,
        "still taking events",
        &[&["a", &coordinate(&owner, "big")]],
    );
    assert!(
        client.publish(&issue).await.accepted,
        "the store is elsewhere and fine"
    );

    // A state that fits, and its push.
    let (small, small_oid) = work_tree_with_noise(1, 6, &[]);
    let st2 = state_at(
        &owner,
        "big",
        &[("refs/heads/main", &small_oid)],
        Some("main"),
        st.created_at + 1,
    );
    assert_eq!(client.publish(&st2).await.message, PURGATORY_OK);
    let pushed = git_output(small.path(), &["push", &url, "main"]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st2.id.to_hex()]);
}

/// The git root turns read-only under a running graspd: a push fails with git's message, a new
/// repository cannot be created and the announcement is answered with an error (nothing stored),
/// events that need no disk are still accepted; once writable again, all of it works.
#[tokio::test]
async fn a_read_only_git_root_is_a_clear_error_and_recovers() {
    let Some(disk) = SmallDisk::mount(64) else {
        return;
    };
    let root = disk.path.join("repos");
    let server = Server::start_with(&["--git-root", root.to_str().expect("utf-8")]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    let ann = announcement(&owner, &server, "ro");
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    let (work, oid) = work_tree_with_commit("read-only");
    let st = state(&owner, "ro", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);

    disk.remount("ro");
    let url = server.clone_url(&owner, "ro");
    let pushed = git_output(work.path(), &["push", &url, "main"]);
    assert!(!pushed.status.success(), "nothing can be written");
    let other = Keys::generate();
    let refused = client.publish(&announcement(&other, &server, "new")).await;
    assert!(
        !refused.accepted,
        "a repository that cannot be created: {}",
        refused.message
    );
    assert_eq!(
        refused.message,
        "error: the server's storage is read-only; try again later"
    );
    let issue = event(
        &Keys::generate(),
        1621,
        "no disk needed",
        &[&["a", &coordinate(&owner, "ro")]],
    );
    assert!(client.publish(&issue).await.accepted);

    disk.remount("rw");
    let pushed = git_output(work.path(), &["push", &url, "main"]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
    let accepted = client.publish(&announcement(&other, &server, "new")).await;
    assert_eq!(accepted.message, PURGATORY_OK);
}

/// The database's disk fills up: events are answered with an error (not OK true), none of those
/// answered OK true is lost, and once space is back the same events are accepted.
#[tokio::test]
async fn a_full_database_disk_refuses_clearly_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount(16) else {
        return;
    };
    let database = format!("sqlite://{}", disk.path.join("graspd.db").display());
    let server = Server::start_with(&["--database-url", &database]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "full"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "full");
    let filler = disk.fill(256 << 10);

    let body = "y".repeat(8192);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..400 {
        let issue = event(&Keys::generate(), 1621, &format!("{i} {body}"), &[&["a", &coord]]);
        let reply = client.publish(&issue).await;
        if reply.accepted {
            acknowledged.push(issue.id.to_hex());
        } else {
            refused = Some((issue, reply.message));
            break;
        }
    }
    let (issue, message) = refused.expect("the disk filled up before 400 events of 8 KiB");
    assert_eq!(message, "error: the server's storage is full; try again later");

    std::fs::remove_file(filler).expect("free the space");
    eventually("the refused event is accepted once there is room", || {
        let server = &server;
        let issue = issue.clone();
        async move { server.client().await.publish(&issue).await.accepted }
    })
    .await;
    for id in &acknowledged {
        assert_eq!(
            client.ids(json!({"ids": [id]})).await.len(),
            1,
            "{id} was acknowledged"
        );
    }
}
