//! SQLite reads on connections of our own.
//!
//! sqlx runs each SQLite connection on a worker thread and hands every row across a channel to
//! the task that asked; for a REQ's hundred rows, or a duplicate's one-row lookup, that hand-over
//! cost more than the read itself (the start-up bench measured rows through it at eight times a
//! plain read). Here a read runs whole on a blocking thread, on a plain rusqlite connection, and
//! only its answer crosses back. The writer thread and the purgatory writes stay as they were.
//!
//! Connections are opened as needed and kept for reuse (up to [`MAX_IDLE`]); each reads the
//! database's latest committed state when its statement starts (WAL mode), so a read that follows
//! a save's answer sees it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Idle connections kept for reuse: more than the reads that run at once on a small machine.
const MAX_IDLE: usize = 8;

/// Prepared statements each connection keeps (the filters' shapes, the lookups by id).
const STATEMENT_CACHE: usize = 64;

#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Readers of the database at `path`, with one connection opened now (so that a database
    /// that cannot be read fails at start, not at the first REQ).
    pub(super) fn open(path: PathBuf) -> Result<Arc<Self>, StoreError> {
        let first = connect(&path)?;
        Ok(Arc::new(Self {
            path,
            idle: Mutex::new(vec![first]),
        }))
    }

    /// Runs `read` on a connection, on the blocking pool.
    pub(super) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = match readers.take() {
                Some(conn) => conn,
                None => connect(&readers.path)?,
            };
            let answer = read(&conn);
            readers.put(conn);
            answer
        })
        .await
        .map_err(|error| StoreError::WriterThread(std::io::Error::other(error)))?
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
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
