//! WAL checkpoints off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold, so one batch
//! of events in every few dozen would wait while the whole WAL is copied into the database file
//! and synced. Here the writer only counts its commits; every [`COMMITS_PER_CHECKPOINT`] it asks
//! a background task to run a `PASSIVE` checkpoint on a pooled connection, which copies what it
//! can while the writer keeps appending to the WAL. SQLite's own automatic checkpoint stays on at
//! a higher threshold ([`AUTOCHECKPOINT_PAGES`]) as a backstop should this task fall behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::SqlitePool;
use tokio::sync::mpsc;

/// Commits between two requested checkpoints: up to ~25 MiB of WAL at the batch sizes seen under
/// load. Rarer checkpoints write the pages every batch touches (appends, inner pages) fewer
/// times; 16 measured about 5% slower ingest than 64.
const COMMITS_PER_CHECKPOINT: u32 = 64;
/// `wal_autocheckpoint` for every connection: 64 MiB of 4 KiB pages.
pub const AUTOCHECKPOINT_PAGES: &str = "16384";

/// Handle the writer uses to report commits. Cloning is shallow; the background task ends when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    commits: Arc<AtomicU32>,
    wake: mpsc::Sender<()>,
}

impl Checkpointer {
    pub fn spawn(pool: SqlitePool) -> Self {
        let (wake, mut requests) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                    tracing::warn!(%error, "WAL checkpoint failed; SQLite's own will run instead");
                }
            }
        });
        Self {
            commits: Arc::new(AtomicU32::new(0)),
            wake,
        }
    }

    /// Called after each commit.
    pub fn committed(&self) {
        let commits = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if commits >= COMMITS_PER_CHECKPOINT {
            self.commits.store(0, Ordering::Relaxed);
            // Full: a checkpoint is already queued, and it will cover these commits too.
            let _ = self.wake.try_send(());
        }
    }
}
