//! WAL checkpoints off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! committing thread: the writer would stop taking events while the checkpoint copies every page
//! of the WAL into the database file at random places and syncs that file (at a million stored
//! events, a third of the writer's time, and it waited on the sync besides). Here the writer's
//! WAL hook ([`wal_committed`]) notes the WAL's length after each commit; every
//! [`CHECKPOINT_FRAMES`] frames the writer asks a background task to run a `PASSIVE` checkpoint
//! on a pooled connection, which copies what is committed while the writer keeps appending on the
//! other core. The hook checkpoints on the writer's thread only past [`BACKSTOP_FRAMES`]: a
//! `PASSIVE` checkpoint that runs beside commits never catches up with the last of them, so the
//! WAL can start over from its beginning only after one that no commit interrupts; by then the
//! background task has copied all but the newest frames.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::SqlitePool;
use tokio::sync::mpsc;

/// WAL frames (4 KiB pages) between two background checkpoints: 32 MiB. Rarer checkpoints write
/// the pages every batch touches (appends, inner pages, the id index's leaves) fewer times.
pub const CHECKPOINT_FRAMES: u32 = 32768;
/// WAL frames past which the writer checkpoints itself (and every connection's
/// `wal_autocheckpoint`): 256 MiB. The WAL file keeps the largest size it reached.
pub const BACKSTOP_FRAMES: u32 = 65536;

thread_local! {
    /// Frames in the WAL after the last commit on this thread, from [`wal_committed`]. The
    /// writer owns its thread and its connection, so the value is its own.
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

/// SQLite's WAL hook for the writer's connection (`Connection::wal_hook`), called after each
/// commit with the number of frames in the WAL. It stands in for SQLite's own automatic
/// checkpoint, which is the same hook: a `PASSIVE` checkpoint past [`BACKSTOP_FRAMES`]. Errors
/// are logged and not returned: the commit has happened, and an error here would report it as
/// failed.
pub fn wal_committed(wal: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    let frames = u32::try_from(frames).unwrap_or(0);
    WAL_FRAMES.with(|cell| cell.set(frames));
    if frames >= BACKSTOP_FRAMES
        && let Err(error) = wal.checkpoint()
    {
        tracing::warn!(%error, frames, "WAL checkpoint on the writer failed; the next commit tries again");
    }
    Ok(())
}

/// Frames in the WAL after this thread's last commit (0 before any).
pub fn wal_frames() -> u32 {
    WAL_FRAMES.with(Cell::get)
}

/// Handle the writer uses to report commits. Cloning is shallow; the background task ends when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    /// WAL frames when the last checkpoint was asked for.
    asked_at: Arc<AtomicU32>,
    wake: mpsc::Sender<()>,
}

impl Checkpointer {
    pub fn spawn(pool: SqlitePool) -> Self {
        let (wake, mut requests) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                    tracing::warn!(%error, "WAL checkpoint failed; the writer's will run instead");
                }
            }
        });
        Self {
            asked_at: Arc::new(AtomicU32::new(0)),
            wake,
        }
    }

    /// Called after each commit with the WAL's length in frames ([`wal_frames`]).
    pub fn committed(&self, frames: u32) {
        if self.due(frames) {
            // Full: a checkpoint is already queued, and it will cover these frames too.
            let _ = self.wake.try_send(());
        }
    }

    /// Whether a WAL of `frames` frames has grown by [`CHECKPOINT_FRAMES`] since the last
    /// checkpoint was asked for; if so, that is now.
    fn due(&self, frames: u32) -> bool {
        let asked_at = self.asked_at.load(Ordering::Relaxed);
        // Fewer frames than then: the WAL started over from its beginning.
        let asked_at = if frames < asked_at { 0 } else { asked_at };
        let due = frames - asked_at >= CHECKPOINT_FRAMES;
        self.asked_at
            .store(if due { frames } else { asked_at }, Ordering::Relaxed);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_hook_notes_the_wal_length_after_each_commit_and_a_reset_starts_it_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = rusqlite::Connection::open(dir.path().join("hook.db")).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n BLOB);")
            .expect("schema");
        conn.wal_hook(Some(wal_committed));
        let page = vec![7u8; 3000];
        conn.execute("INSERT INTO t VALUES (?)", [&page]).expect("insert");
        let one = wal_frames();
        assert!(one > 0, "a commit appends frames");
        conn.execute("INSERT INTO t VALUES (?)", [&page]).expect("insert");
        let two = wal_frames();
        assert!(
            two > one,
            "{two} frames after a second commit, {one} after the first"
        );
        // Everything copied into the database, so the next commit writes from the WAL's start.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
        conn.execute("INSERT INTO t VALUES (?)", [&page]).expect("insert");
        assert!(
            wal_frames() < two,
            "the WAL started over: {} frames",
            wal_frames()
        );
    }

    #[tokio::test]
    async fn a_checkpoint_is_asked_for_every_checkpoint_frames_and_again_after_the_wal_restarts() {
        let pool = SqlitePool::connect("sqlite::memory:").await.expect("pool");
        let checkpointer = Checkpointer::spawn(pool);
        assert!(!checkpointer.due(10));
        assert!(!checkpointer.due(CHECKPOINT_FRAMES - 1));
        assert!(checkpointer.due(CHECKPOINT_FRAMES));
        assert!(!checkpointer.due(CHECKPOINT_FRAMES + 100));
        assert!(checkpointer.due(2 * CHECKPOINT_FRAMES + 5));
        // The WAL started over: counted from its beginning again.
        assert!(!checkpointer.due(50));
        assert!(checkpointer.due(CHECKPOINT_FRAMES + 50));
    }
}
