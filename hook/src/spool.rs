//! The post-receive spool: where a push report waits while graspd is down.
//!
//! A push that reached post-receive has landed; failing the hook would not undo it, only confuse
//! the pusher. So when the daemon cannot take the report, the hook writes the exact
//! `ReportPushRequest` it would have sent into the spool directory and graspd replays the files
//! when it starts. The write is atomic and durable: a report is either absent or complete.
//!
//! Format: one file per report, named `<unix-nanos>-<pid>.report` (oldest first when sorted by
//! the number), holding the protobuf encoding of `grasp.v1.ReportPushRequest` (not
//! length-delimited). Files named `.tmp-*` are writes in progress or left by a crash; the daemon
//! ignores them (and may remove old ones).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use grasp_proto::v1::ReportPushRequest;
use prost::Message;

/// File name suffix of a complete report.
pub const REPORT_SUFFIX: &str = ".report";

/// Writes `report` into `dir` (created if missing) and returns the path of the new file.
///
/// Steps: write `.tmp-<pid>-<nanos>`, fsync it, rename it to its final name, fsync the directory —
/// so after a crash at any point the directory holds either no report or the whole one.
pub fn write_report(dir: &Path, report: &ReportPushRequest) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let pid = std::process::id();
    let nanos = unix_nanos();
    let tmp = dir.join(format!(".tmp-{pid}-{nanos}"));
    let written = write_synced(&tmp, &report.encode_to_vec()).and_then(|()| {
        // Never replace another report: the same process spooling twice within one clock tick
        // takes the next free nanosecond instead.
        let mut stamp = nanos;
        loop {
            let path = dir.join(format!("{stamp}-{pid}{REPORT_SUFFIX}"));
            if !path.try_exists()? {
                fs::rename(&tmp, &path)?;
                return Ok(path);
            }
            stamp += 1;
        }
    });
    let path = match written {
        Ok(path) => path,
        Err(err) => {
            let _ = fs::remove_file(&tmp);
            return Err(err);
        }
    };
    File::open(dir)?.sync_all()?;
    Ok(path)
}

/// Creates `path` (it must not exist), writes `bytes` and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn unix_nanos() -> u128 {
    // A clock before 1970 is a broken clock; 0 still yields a valid, unique-per-pid name.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use grasp_proto::v1::RefUpdate;

    /// A fresh, empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "grasp-hook-{name}-{}-{}",
                std::process::id(),
                unix_nanos()
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn report(ref_name: &str) -> ReportPushRequest {
        ReportPushRequest {
            repo_path: "/srv/git/npub1x/repo.git".to_owned(),
            updates: vec![RefUpdate {
                old_oid: "0".repeat(40),
                new_oid: "a".repeat(40),
                ref_name: ref_name.to_owned(),
            }],
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("spool dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_spooled_report_decodes_back_to_the_same_request_and_leaves_no_temp_file() {
        let spool = TempDir::new("spool");
        // The directory does not exist yet: the hook creates it.
        let dir = spool.0.join("nested");
        let request = report("refs/heads/main");
        let path = write_report(&dir, &request).expect("spooled");

        assert_eq!(
            names(&dir),
            vec![path.file_name().expect("name").to_string_lossy().into_owned()]
        );
        let decoded = ReportPushRequest::decode(&fs::read(&path).expect("read")[..]).expect("decodes");
        assert_eq!(decoded, request);
    }

    #[test]
    fn report_names_are_nanoseconds_and_pid_and_never_collide() {
        let spool = TempDir::new("names");
        let first = write_report(&spool.0, &report("refs/heads/a")).expect("first");
        let second = write_report(&spool.0, &report("refs/heads/b")).expect("second");
        assert_ne!(first, second);

        let pid = std::process::id().to_string();
        for name in names(&spool.0) {
            let stem = name.strip_suffix(REPORT_SUFFIX).expect("suffix");
            let (nanos, file_pid) = stem.split_once('-').expect("nanos-pid");
            assert!(nanos.parse::<u128>().is_ok(), "{name}");
            assert_eq!(file_pid, pid);
        }
        let decoded = ReportPushRequest::decode(&fs::read(&second).expect("read")[..]).expect("decodes");
        assert_eq!(decoded.updates[0].ref_name, "refs/heads/b");
    }

    #[test]
    fn an_unwritable_spool_is_an_error_not_a_partial_file() {
        let spool = TempDir::new("file");
        fs::write(&spool.0, b"not a directory").expect("setup");
        assert!(write_report(&spool.0, &report("refs/heads/main")).is_err());
        let _ = fs::remove_file(&spool.0);
    }
}
