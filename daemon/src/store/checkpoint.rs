//! WAL checkpoints off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! committing thread: the writer would stop taking events while the checkpoint copies every page
//! of the WAL into the database file at random places and syncs that file (at a million stored
//! events, a third of the writer's time, and it waited on the sync besides). Here the writer's
//! WAL hook ([`wal_committed`], which replaces the automatic checkpoint: it is the same hook)
//! notes the WAL's length after each commit; every `--wal-checkpoint-mib` of growth (default
//! [`DEFAULT_CHECKPOINT_MIB`]) the writer asks a background task to run a `PASSIVE` checkpoint on
//! a pooled connection, which copies what is committed while the writer keeps appending on the
//! other core. The writer checkpoints on its own thread only past twice that
//! ([`Checkpointer::backstop`]), after it has answered the commit: a `PASSIVE` checkpoint that
//! runs beside commits never catches up with the last of them, so the WAL can start over from its
//! beginning only after one that no commit interrupts; by then the background task has copied
//! all but the newest frames.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::SqlitePool;
use tokio::sync::mpsc;

/// MiB of WAL growth between two background checkpoints, unless `--wal-checkpoint-mib` says
/// otherwise. Rarer checkpoints write the pages every batch touches (appends, inner pages, the id
/// index's leaves) fewer times: every 32 MiB wrote a quarter more an event than every 128 at a
/// million stored events.
pub const DEFAULT_CHECKPOINT_MIB: u32 = 128;
/// WAL frames a MiB: SQLite's default page of 4 KiB, which the store keeps.
const FRAMES_PER_MIB: u32 = 256;

/// WAL frames past which the writer checkpoints on its own thread, for checkpoints every
/// `every_mib`: twice the background task's interval. Also every pooled connection's
/// `wal_autocheckpoint`.
pub fn backstop_frames(every_mib: u32) -> u32 {
    every_frames(every_mib).saturating_mul(2)
}

fn every_frames(every_mib: u32) -> u32 {
    every_mib.max(1).saturating_mul(FRAMES_PER_MIB)
}

thread_local! {
    /// Frames in the WAL after the last commit on this thread, from [`wal_committed`]. The
    /// writer owns its thread and its connection, so the value is its own.
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

/// SQLite's WAL hook for the writer's connection (`Connection::wal_hook`), called after each
/// commit with the number of frames in the WAL: notes it for [`wal_frames`]. Setting it turns
/// SQLite's automatic checkpoint off on that connection (the writer checkpoints instead).
pub fn wal_committed(_wal: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|cell| cell.set(u32::try_from(frames).unwrap_or(0)));
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
    /// WAL frames of growth between two background checkpoints.
    every: u32,
    wake: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts the background task, which checkpoints on `pool` every `every_mib` MiB of WAL the
    /// writer reports.
    pub fn spawn(pool: SqlitePool, every_mib: u32) -> Self {
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
            every: every_frames(every_mib),
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

    /// WAL frames past which the writer checkpoints on its own thread.
    pub fn backstop(&self) -> u32 {
        self.every.saturating_mul(2)
    }

    /// Whether a WAL of `frames` frames has grown by `every` since the last checkpoint was asked
    /// for; if so, that is now.
    fn due(&self, frames: u32) -> bool {
        let asked_at = self.asked_at.load(Ordering::Relaxed);
        // Fewer frames than then: the WAL started over from its beginning.
        let asked_at = if frames < asked_at { 0 } else { asked_at };
        let due = frames - asked_at >= self.every;
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
    async fn a_checkpoint_is_asked_for_every_interval_of_growth_and_again_after_the_wal_restarts() {
        let pool = SqlitePool::connect("sqlite::memory:").await.expect("pool");
        let checkpointer = Checkpointer::spawn(pool, 2);
        let every = 2 * FRAMES_PER_MIB;
        assert_eq!(checkpointer.backstop(), 2 * every);
        assert_eq!(backstop_frames(2), 2 * every);
        assert!(!checkpointer.due(10));
        assert!(!checkpointer.due(every - 1));
        assert!(checkpointer.due(every));
        assert!(!checkpointer.due(every + 100));
        assert!(checkpointer.due(2 * every + 5));
        // The WAL started over: counted from its beginning again.
        assert!(!checkpointer.due(50));
        assert!(checkpointer.due(every + 50));
    }
}
