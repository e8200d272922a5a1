//! SQLite reads on connections of our own.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every row across a channel to
//! the task that asked; for a REQ's hundred rows, or a duplicate's one-row lookup, that hand-over
//! cost more than the read itself (the start-up bench measured rows through it at eight times a
//! plain read). Here a read runs whole on a blocking thread, on a plain rusqlite connection, and
//! only its answer crosses back. The writer thread and the purgatory writes stay as they were.
//!
//! At most [`MAX_OPEN`] reads run at once (the rest wait their turn, not a thread and a
//! connection each); connections are opened as needed and kept for reuse; each reads the
//! database's latest committed state when its statement starts (WAL mode), so a read that follows
//! a save's answer sees it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Reads on the blocking pool running at once: more than a small machine has cores, and few
/// enough that a flood of REQs holds neither hundreds of blocking threads nor hundreds of
/// connections. Each connection costs memory of its own (its statement cache, and the pages of
/// its own memory map, which count again in the process's RSS): 16 of them added 30 MiB to a
/// graspd syncing 1,000 repositories.
const MAX_OPEN: usize = 4;

/// Prepared statements each connection keeps (the filters' shapes, the lookups by id).
const STATEMENT_CACHE: usize = 32;

#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Connections kept for reuse: one for each read of the blocking pool, and one for each
    /// runtime thread's lookups ([`Readers::now`]).
    max_idle: usize,
    running: tokio::sync::Semaphore,
}

impl Readers {
    /// Readers of the database at `path`, with one connection opened now (so that a database
    /// that cannot be read fails at start, not at the first REQ).
    pub(super) fn open(path: PathBuf) -> Result<Arc<Self>, StoreError> {
        let first = connect(&path)?;
        Ok(Arc::new(Self {
            path,
            idle: Mutex::new(vec![first]),
            max_idle: MAX_OPEN + std::thread::available_parallelism().map_or(1, usize::from),
            running: tokio::sync::Semaphore::new(MAX_OPEN),
        }))
    }

    /// Runs `read` on a connection, on the blocking pool.
    pub(super) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // The semaphore is never closed, so this waits for a turn and does not fail.
        let turn = self.running.acquire().await.ok();
        let readers = Arc::clone(self);
        let answer = tokio::task::spawn_blocking(move || readers.now(read))
            .await
            .map_err(|error| StoreError::ReadStopped(error.to_string()))?;
        drop(turn);
        answer
    }

    /// Runs `lookup` on a connection right here, on the caller's thread: for a lookup of one
    /// row by a primary or unique index (is this id stored, is it referenced), which takes a few
    /// microseconds on mapped pages, less than handing it to another thread and waking the
    /// caller again, which was most of a duplicate event's cost. Nothing longer goes here: it
    /// would hold up the runtime thread's other tasks.
    pub(super) fn now<T>(
        &self,
        lookup: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match self.take() {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let answer = lookup(&conn);
        self.put(conn);
        answer
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

fn connect(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(
        None,
        "mmap_size",
        i64::try_from(super::MMAP_BYTES).unwrap_or(i64::MAX),
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Runs `sql` on `conn` and maps each row.
pub(super) fn rows<T>(
    conn: &Connection,
    sql: &super::filter::Sql,
    mut map: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut uncached;
    let mut cached;
    let statement = if sql.cached {
        cached = conn.prepare_cached(&sql.text)?;
        &mut *cached
    } else {
        uncached = conn.prepare(&sql.text)?;
        &mut uncached
    };
    let mut rows = statement.query(rusqlite::params_from_iter(&sql.binds))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Whether `sql` (a lookup with its values) returns any row.
pub(super) fn exists(conn: &Connection, sql: &str, binds: impl rusqlite::Params) -> Result<bool, StoreError> {
    Ok(conn.prepare_cached(sql)?.exists(binds)?)
}

/// Column `index` of `row` as text, borrowed.
pub(super) fn text<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> Result<&'r str, StoreError> {
    row.get_ref(index)?.as_str().map_err(|error| {
        StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            Box::new(error),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_reads_runs_at_most_max_open_at_once_and_all_are_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("read.db");
        let setup = Connection::open(&path).expect("create");
        setup
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (7);")
            .expect("schema");
        let readers = Readers::open(path).expect("readers");
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let reads = (0..4 * MAX_OPEN).map(|_| {
            let (now, most) = (Arc::clone(&now), Arc::clone(&most));
            let readers = Arc::clone(&readers);
            async move {
                readers
                    .run(move |conn| {
                        most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        // Long enough that the reads overlap.
                        std::thread::sleep(Duration::from_millis(20));
                        let n: i64 = conn.query_row("SELECT n FROM t", [], |row| row.get(0))?;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok(n)
                    })
                    .await
            }
        });
        let answers = futures_util::future::join_all(reads).await;
        assert!(answers.iter().all(|answer| matches!(answer, Ok(7))));
        let most = most.load(Ordering::SeqCst);
        assert!(most <= MAX_OPEN && most > 1, "{most} reads at once");
        assert!(readers.idle.lock().expect("idle").len() <= readers.max_idle);
    }
}
