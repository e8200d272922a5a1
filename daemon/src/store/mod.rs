//! The event store and the durable half of purgatory, on sqlx.
//!
//! `Store` is a cheap-to-clone handle. Reads go to the sqlx connection pool (SQLite in WAL mode
//! serves readers while a writer commits), after the in-memory summaries of `memo` had their
//! say. Event writes go to one writer thread that commits whatever has queued up as one
//! transaction (group commit): under load, one fsync covers many events, and replaceable/deletion
//! rules are applied in a single, serial order.
//!
//! Two backends behind the one handle, chosen by the URL: SQLite (`sqlite://PATH`, the embedded
//! default) and PostgreSQL (`postgres://...`). Reads are the same SQL on both (`$n` parameters,
//! which sqlx's SQLite driver also takes), run on the backend's pool by `on_pool!`. Each
//! backend has its own writer with the same requests and group commit: a thread on a rusqlite
//! connection for SQLite (`writer`), a task on one pooled connection for PostgreSQL
//! (`pg_writer`). Migrations are per backend (`daemon/migrations/sqlite`, `.../postgres`) and
//! run at open.

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend it is: the body is
/// compiled once per backend, so the SQL in it must suit both.
macro_rules! on_pool {
    ($store_pool:expr, $pool:ident => $body:expr) => {
        match $store_pool {
            Pool::Sqlite($pool, ..) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

mod checkpoint;
pub use checkpoint::DEFAULT_CHECKPOINT_MIB;
pub mod cluster;
mod filter;
mod memo;
mod nostr_db;
mod pg_writer;
mod read;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use nostr::{Event, EventId, Filter, Kind, PublicKey, Timestamp};
use nostr_database::SaveEventStatus;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Database, PgConnection, Postgres, Row, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

pub use nostr_db::SqlDatabase;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
    #[error("stored event {id} does not parse: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the store's writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("a database read stopped before it answered: {0}")]
    ReadStopped(String),
    #[error("saved, but not known to be on disk: {0}")]
    NotDurable(String),
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if graspd has it.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

/// The backend's connection pool.
#[derive(Debug, Clone)]
enum Pool {
    /// sqlx's pool (migrations, purgatory writes) and our own connections for reads.
    Sqlite(SqlitePool, Arc<read::Readers>),
    Postgres(PgPool),
}

/// A pool that opens write transactions: SQLite's take the write lock up front.
trait BeginWrite {
    type Db: Database;
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    /// `BEGIN IMMEDIATE`, taking the write lock up front (waiting out the busy timeout if
    /// needed). A deferred transaction that reads and then writes fails with SQLITE_BUSY at
    /// once, busy timeout or not, when another connection committed in between, and the writer
    /// thread and the purgatory writes do commit side by side.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// Handle to the database. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    writer: mpsc::Sender<writer::Request>,
    tombstones: Arc<writer::Tombstones>,
    memo: Arc<memo::Memo>,
    /// PostgreSQL only: this node among the others on the same database.
    cluster: Option<Arc<cluster::Cluster>>,
    /// Why the last save failed, when it is worth telling the client (see
    /// [`recent_failure`](Self::recent_failure)).
    failure: Arc<std::sync::Mutex<Option<(std::time::Instant, &'static str)>>>,
}

/// One node sharing the database, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    pub address: String,
    pub started_at_ms: i64,
    pub seen_at_ms: i64,
}

/// Advisory lock classes (the two-key form, apart from the writers' single-key lock).
const IDENTIFIER_LOCKS: i32 = 0x6772_0001;
const SYNC_CLAIMS: i32 = 0x6772_0002;
const LEADER: i32 = 0x6772_0003;

/// An identifier's key in a lock class: FNV-1a, the same on every node (two identifiers that
/// share one only wait for each other).
fn lock_key(identifier: &str) -> i32 {
    let hash = identifier.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    // The low 32 bits, as PostgreSQL's int4.
    hash as u32 as i32
}

/// A fresh id for this process among the nodes of a database.
fn new_node_id() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let random = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos));
    format!("{random:016x}")
}

/// A cluster-wide advisory lock, held on its own pooled connection until dropped. If this
/// process dies, PostgreSQL releases it with the connection.
#[derive(Debug)]
pub struct ClusterLock {
    conn: Option<sqlx::pool::PoolConnection<Postgres>>,
    class: i32,
    key: i32,
}

impl ClusterLock {
    /// Whether the connection that holds the lock still answers (a lost connection has lost the
    /// lock with it).
    pub async fn is_held(&mut self) -> bool {
        match self.conn.as_mut() {
            Some(conn) => sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok(),
            None => false,
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let (class, key) = (self.class, self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                        .bind(class)
                        .bind(key)
                        .execute(&mut *conn)
                        .await;
                    if let Err(error) = unlocked {
                        // A connection that may still hold the lock must not go back to the pool.
                        tracing::warn!(%error, "cannot release a cluster lock; closing its connection");
                        conn.close_on_drop();
                    }
                });
            }
            // Closing the connection releases the lock.
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// A placeholder row as stored (see migration 0002).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceholderRow {
    pub event_id: String,
    /// `""` for an owner's repository, `"prs"` for a pull request repository (GRASP-06).
    pub area: String,
    pub owner: String,
    pub identifier: String,
    pub tip: String,
    pub expires_at_ms: i64,
}

/// A stored event as the store holds it (see [`Store::query_stored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Lowercase hex.
    pub id: String,
    pub created_at: i64,
    pub json: String,
}

/// A purgatory row as stored.
#[derive(Debug, Clone)]
pub struct PurgatoryRow {
    pub event: Event,
    pub identifier: String,
    pub received_at_ms: i64,
    pub expires_at_ms: i64,
    pub source: String,
}

/// How much of a SQLite database is read through a memory map (SQLite's own ceiling, ~2 GiB):
/// beyond it every page read is a `pread` and a copy, which at a million events was a large
/// part of a REQ's time. The mapped pages are the kernel's page cache, shared, and counted in
/// the process's RSS only while they are mapped in.
pub(crate) const MMAP_BYTES: u64 = 0x7fff_0000;

/// How a store runs, beside its URL (`serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// SQLite: MiB of WAL growth between two background checkpoints; the writer checkpoints
    /// itself past twice that (`--wal-checkpoint-mib`, see `checkpoint`).
    pub wal_checkpoint_mib: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            wal_checkpoint_mib: checkpoint::DEFAULT_CHECKPOINT_MIB,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, StoreSettings::default()).await
    }

    /// [`Store::open`] with `settings`.
    pub async fn open_with(url: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        match Backend::of(url) {
            Some(Backend::Sqlite) => Self::open_sqlite(url, settings).await,
            Some(Backend::Postgres) => Self::open_postgres(url).await,
            None => Err(StoreError::UnsupportedUrl(url.to_owned())),
        }
    }

    async fn open_sqlite(url: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an event acknowledged with OK survives power loss, not only a crash. Group
            // commit in the writer keeps the fsync cost per event low.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // Read pages through a memory map instead of a read() and a copy per page.
            .pragma("mmap_size", MMAP_BYTES.to_string())
            .pragma(
                "wal_autocheckpoint",
                checkpoint::backstop_frames(settings.wal_checkpoint_mib).to_string(),
            )
            .foreign_keys(true);
        // No ping before each acquire: these are local files, and the ping is one more round trip
        // to the connection's worker thread on every query.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let readers = read::Readers::open(options.get_filename().to_owned())?;
        let tombstones =
            Arc::new(writer::Tombstones::load(&Pool::Sqlite(pool.clone(), Arc::clone(&readers))).await?);
        // A million rows read through sqlx's worker thread cost seconds; a plain connection on a
        // blocking thread reads them in a fraction of that.
        let file = options.get_filename().to_owned();
        let memo = Arc::new(
            tokio::task::spawn_blocking(move || load_memo_from_file(&file))
                .await
                .map_err(|error| StoreError::ReadStopped(error.to_string()))??,
        );
        let writer = writer::spawn(
            options.get_filename(),
            writer::Shared {
                tombstones: Arc::clone(&tombstones),
                memo: Arc::clone(&memo),
            },
            checkpoint::Checkpointer::spawn(pool.clone(), settings.wal_checkpoint_mib),
        )?;
        Ok(Self {
            pool: Pool::Sqlite(pool, readers),
            writer,
            tombstones,
            memo,
            cluster: None,
            failure: Arc::default(),
        })
    }

    /// PostgreSQL: `synchronous_commit` stays the server's (on by default), so a commit the
    /// writer answers is on the server's disk. Several graspd nodes may share the database:
    /// migrations take sqlx's advisory lock, the writers serialize their transactions, and
    /// `cluster` tells each node what the others wrote.
    async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        // Generic plans for the prepared statements: the queries are shaped to be driven by one
        // index whatever the values, and planning each execution anew cost as much as running
        // a repository-scoped REQ (about 1 ms here).
        let options = PgConnectOptions::from_str(url)?
            .application_name("graspd")
            .options([("plan_cache_mode", "force_generic_plan")]);
        // Reads, purgatory writes, the writer's transactions, and one connection for each
        // identifier whose cluster-wide lock this node holds.
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (tombstones, memo) = Self::summaries(&Pool::Postgres(pool.clone())).await?;
        let cluster = Arc::new(cluster::Cluster::new(new_node_id()));
        cluster.saw(cluster::read_seq(&pool).await?, &memo);
        let writer = pg_writer::spawn(
            pool.clone(),
            writer::Shared {
                tombstones: Arc::clone(&tombstones),
                memo: Arc::clone(&memo),
            },
            Arc::clone(&cluster),
        );
        cluster::spawn_listener(
            pool.clone(),
            Arc::clone(&cluster),
            Arc::clone(&memo),
            Arc::clone(&tombstones),
        );
        Ok(Self {
            pool: Pool::Postgres(pool),
            writer,
            tombstones,
            memo,
            cluster: Some(cluster),
            failure: Arc::default(),
        })
    }

    /// The in-memory summaries of the tables: tombstones and the id filters.
    async fn summaries(pool: &Pool) -> Result<(Arc<writer::Tombstones>, Arc<memo::Memo>), StoreError> {
        let tombstones = Arc::new(writer::Tombstones::load(pool).await?);
        let memo = Arc::new(load_memo(pool).await?);
        Ok((tombstones, memo))
    }

    /// This node's id among the nodes sharing the database (PostgreSQL only).
    pub fn node_id(&self) -> Option<&str> {
        self.cluster.as_deref().map(|cluster| cluster.node.as_str())
    }

    /// What the other nodes on the database change (PostgreSQL only; `None` on SQLite, where
    /// this process is the only writer).
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<cluster::Change>> {
        self.cluster.as_deref().map(cluster::Cluster::subscribe)
    }

    /// Before a decision that reads cached state: if another node wrote events since this one
    /// last looked, the address cache is dropped (PostgreSQL; nothing to do on SQLite).
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        if let (Pool::Postgres(pool), Some(cluster)) = (&self.pool, &self.cluster) {
            cluster.saw(cluster::read_seq(pool).await?, &self.memo);
        }
        Ok(())
    }

    /// Takes `identifier`'s lock across every node on the database, waiting for it (PostgreSQL;
    /// `None` on SQLite, where the caller's in-process lock is enough). Held until dropped.
    pub async fn lock_identifier(&self, identifier: &str) -> Result<Option<ClusterLock>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut conn = pool.acquire().await?;
        let key = lock_key(identifier);
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(IDENTIFIER_LOCKS)
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(Some(ClusterLock {
            conn: Some(conn),
            class: IDENTIFIER_LOCKS,
            key,
        }))
    }

    /// Tries to claim `identifier`'s git-data sync across the nodes (PostgreSQL): `Ok(None)` when
    /// another node holds it. On SQLite always granted (`Some(None)`).
    pub async fn claim_sync(&self, identifier: &str) -> Result<Option<Option<ClusterLock>>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Some(None));
        };
        let mut conn = pool.acquire().await?;
        let key = lock_key(identifier);
        let taken: bool = sqlx::query("SELECT pg_try_advisory_lock($1, $2)")
            .bind(SYNC_CLAIMS)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Ok(taken.then_some(Some(ClusterLock {
            conn: Some(conn),
            class: SYNC_CLAIMS,
            key,
        })))
    }

    /// Tries to become the one node that runs the periodic sweeps (PostgreSQL): the lock is held
    /// until the returned handle is dropped or its connection dies. `Ok(None)`: another node
    /// leads. Not called on SQLite, where this process is the only node.
    pub async fn try_lead(&self) -> Result<Option<ClusterLock>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut conn = pool.acquire().await?;
        let taken: bool = sqlx::query("SELECT pg_try_advisory_lock($1, 0)")
            .bind(LEADER)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Ok(taken.then_some(ClusterLock {
            conn: Some(conn),
            class: LEADER,
            key: 0,
        }))
    }

    /// Records that this node is alive (PostgreSQL; nothing on SQLite).
    pub async fn heartbeat(&self, address: &str, started_at_ms: i64, now_ms: i64) -> Result<(), StoreError> {
        if let (Pool::Postgres(pool), Some(cluster)) = (&self.pool, &self.cluster) {
            sqlx::query(
                "INSERT INTO nodes (id, address, started_at_ms, seen_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET seen_at_ms = excluded.seen_at_ms, address = excluded.address",
            )
            .bind(&cluster.node)
            .bind(address)
            .bind(started_at_ms)
            .bind(now_ms)
            .execute(pool)
            .await?;
            // Rows of nodes gone for a day are of no use to anyone.
            sqlx::query("DELETE FROM nodes WHERE seen_at_ms < $1")
                .bind(now_ms.saturating_sub(24 * 3600 * 1000))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The nodes seen since `since_ms` (PostgreSQL; empty on SQLite), by id.
    pub async fn live_nodes(&self, since_ms: i64) -> Result<Vec<NodeRow>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT id, address, started_at_ms, seen_at_ms FROM nodes WHERE seen_at_ms >= $1 ORDER BY id",
        )
        .bind(since_ms)
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NodeRow {
                    id: row.try_get(0)?,
                    address: row.try_get(1)?,
                    started_at_ms: row.try_get(2)?,
                    seen_at_ms: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(..) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Saves an event with NIP-01 replaceable/addressable and NIP-09 deletion semantics.
    pub async fn save_event(&self, event: &Event) -> Result<SaveEventStatus, StoreError> {
        self.save_shared(Arc::new(event.clone())).await
    }

    /// [`Self::save_event`] without copying the event for the writer: the writer lets go of
    /// `event` before it answers, so the caller's handle is the only one left then
    /// (`Arc::unwrap_or_clone` gives the event back without a copy).
    pub async fn save_shared(&self, event: Arc<Event>) -> Result<SaveEventStatus, StoreError> {
        let json = event.as_json();
        let saved = self
            .write(|reply| writer::Request::Save { event, json, reply })
            .await;
        if let Err(error) = &saved
            && let Some(reason) = crate::types::client_reason(error)
        {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            *failure = Some((std::time::Instant::now(), reason));
        }
        saved
    }

    /// Why a save failed in the last few seconds, if it is worth telling the client (the
    /// database's disk is full, say): the relay answers a failed save with a plain "database
    /// error", which the websocket bridge replaces by this.
    pub fn recent_failure(&self) -> Option<&'static str> {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure
            .filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(5))
            .map(|(_, reason)| reason)
    }

    /// Sends a request to the writer thread and waits for its answer.
    async fn write<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(request(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    fn dialect(&self) -> filter::Dialect {
        match self.pool {
            Pool::Sqlite(..) => filter::Dialect::Sqlite,
            Pool::Postgres(_) => filter::Dialect::Postgres,
        }
    }

    /// Events matching a NIP-01 filter, newest first (ties: lowest id first), at most `limit`.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<Event>, StoreError> {
        self.select_rows(
            filter,
            filter::Select::Json,
            |row| parse_json(read::text(row, 0)?),
            |row| parse_json_column(row, 0),
        )
        .await
    }

    /// The rows of `filter`'s query selecting `what`, each read by `sqlite` or `postgres`.
    async fn select_rows<T: Send + 'static>(
        &self,
        filter: &Filter,
        what: filter::Select,
        sqlite: fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
        postgres: fn(&sqlx::postgres::PgRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let Some(sql) = filter::select(self.dialect(), filter, what) else {
            return Ok(Vec::new());
        };
        match &self.pool {
            Pool::Sqlite(_, readers) => readers.run(move |conn| read::rows(conn, &sql, sqlite)).await,
            Pool::Postgres(pool) => sql.sqlx().fetch_all(pool).await?.iter().map(postgres).collect(),
        }
    }

    /// Like [`Store::query`], but each event as the store holds it: its id, `created_at` and
    /// JSON, not read into an `Event` (the websocket bridge sends the JSON on as it is).
    pub async fn query_stored(&self, filter: &Filter) -> Result<Vec<StoredEvent>, StoreError> {
        self.select_rows(
            filter,
            filter::Select::Stored,
            |row| {
                Ok(StoredEvent {
                    id: row.get(0)?,
                    created_at: row.get(1)?,
                    json: row.get(2)?,
                })
            },
            |row| {
                Ok(StoredEvent {
                    id: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    json: row.try_get(2)?,
                })
            },
        )
        .await
    }

    /// The database's query plan for `filter`, one step a line (for tests, benchmarks and the
    /// docs).
    pub async fn query_plan(&self, filter: &Filter) -> Result<String, StoreError> {
        let Some(sql) = filter::explain(self.dialect(), filter) else {
            return Ok(String::new());
        };
        // SQLite's EXPLAIN QUERY PLAN gives the step in its fourth column, PostgreSQL's EXPLAIN
        // a line of text a row.
        let steps = match &self.pool {
            Pool::Sqlite(_, readers) => {
                readers
                    .run(move |conn| read::rows(conn, &sql, |row| Ok(row.get::<_, String>(3)?)))
                    .await?
            }
            Pool::Postgres(pool) => sql
                .sqlx()
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?,
        };
        Ok(steps.join("\n"))
    }

    /// Ids and times of the events matching `filter` (NIP-77 items; a have-list for the event
    /// sync), read from the index without loading any event.
    pub async fn negentropy_items(&self, filter: &Filter) -> Result<Vec<(EventId, Timestamp)>, StoreError> {
        self.select_rows(
            filter,
            filter::Select::IdTime,
            |row| negentropy_item(read::text(row, 0)?, row.get(1)?),
            |row| negentropy_item(row.try_get(0)?, row.try_get(1)?),
        )
        .await
    }

    pub async fn count(&self, filter: &Filter) -> Result<usize, StoreError> {
        let Some(sql) = filter::select(self.dialect(), filter, filter::Select::Count) else {
            return Ok(0);
        };
        let n: i64 = match &self.pool {
            Pool::Sqlite(_, readers) => readers
                .run(move |conn| read::rows(conn, &sql, |row| Ok(row.get::<_, i64>(0)?)))
                .await?
                .first()
                .copied()
                .unwrap_or(0),
            Pool::Postgres(pool) => sql.sqlx().fetch_one(pool).await?.try_get(0)?,
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub async fn event_by_id(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let id = id.to_hex();
        match &self.pool {
            Pool::Sqlite(_, readers) => readers.now(|conn| {
                let mut statement = conn.prepare_cached("SELECT json FROM events WHERE id = ?")?;
                let mut rows = statement.query([&id])?;
                match rows.next()? {
                    Some(row) => Ok(Some(parse_json(read::text(row, 0)?)?)),
                    None => Ok(None),
                }
            }),
            Pool::Postgres(pool) => {
                let row = sqlx::query("SELECT json FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                row.map(|row| parse_json_column(&row, 0)).transpose()
            }
        }
    }

    pub async fn contains(&self, id: &EventId) -> Result<bool, StoreError> {
        if !self.memo.might_be_stored(id) {
            return Ok(false);
        }
        let id = id.to_hex();
        match &self.pool {
            Pool::Sqlite(_, readers) => {
                readers.now(|conn| read::exists(conn, "SELECT 1 FROM events WHERE id = ?", [&id]))
            }
            Pool::Postgres(pool) => {
                let row = sqlx::query("SELECT 1 FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
                Ok(row.is_some())
            }
        }
    }

    /// Whether a stored event references `id` through an `e`, `E` or `q` tag ("tagged by").
    pub async fn is_referenced(&self, id: &EventId) -> Result<bool, StoreError> {
        if !self.memo.might_be_referenced(id) {
            return Ok(false);
        }
        const SQL: &str = "SELECT 1 FROM event_tags WHERE name IN ('e', 'E', 'q') AND value = $1 LIMIT 1";
        let id = id.to_hex();
        match &self.pool {
            Pool::Sqlite(_, readers) => readers.now(|conn| read::exists(conn, SQL, [&id])),
            Pool::Postgres(pool) => {
                let row = sqlx::query(SQL).bind(id).fetch_optional(pool).await?;
                Ok(row.is_some())
            }
        }
    }

    /// Whether the author deleted this event (by id or by address) before it arrived.
    pub async fn is_deleted(&self, event: &Event) -> Result<bool, StoreError> {
        let d_tag = address_d_tag(event);
        let maybe_by_address = d_tag.as_ref().is_some_and(|d| {
            let address = (i64::from(event.kind.as_u16()), event.pubkey.to_hex(), d.clone());
            self.tombstones.addresses.contains(&address)
        });
        if !maybe_by_address && !self.tombstones.ids.contains(&event.id.to_hex()) {
            return Ok(false);
        }
        on_pool!(&self.pool, pool => {
            let by_id = sqlx::query("SELECT 1 FROM deleted_events WHERE event_id = $1 AND pubkey = $2")
                .bind(event.id.to_hex())
                .bind(event.pubkey.to_hex())
                .fetch_optional(pool)
                .await?;
            if by_id.is_some() {
                return Ok(true);
            }
            let Some(d_tag) = d_tag else {
                return Ok(false);
            };
            let by_address = sqlx::query(
                "SELECT 1 FROM deleted_addresses WHERE kind = $1 AND pubkey = $2 AND d_tag = $3 AND until >= $4",
            )
            .bind(i64::from(event.kind.as_u16()))
            .bind(event.pubkey.to_hex())
            .bind(d_tag)
            .bind(timestamp_i64(event.created_at))
            .fetch_optional(pool)
            .await?;
            Ok(by_address.is_some())
        })
    }

    /// The stored event at an address (`kind`, `pubkey`, `d`), if any.
    pub async fn at_address(
        &self,
        kind: Kind,
        pubkey: &PublicKey,
        d_tag: &str,
    ) -> Result<Option<Event>, StoreError> {
        let address = (kind.as_u16(), *pubkey, d_tag.to_owned());
        if let Some(cached) = self.memo.addresses.get(&address) {
            return Ok(cached);
        }
        let generation = self.memo.addresses.generation();
        const SQL: &str = "SELECT json FROM events WHERE kind = $1 AND pubkey = $2 AND d_tag = $3";
        let (kind, pubkey, d_tag) = (i64::from(kind.as_u16()), pubkey.to_hex(), d_tag.to_owned());
        let event = match &self.pool {
            // One row by a unique index.
            Pool::Sqlite(_, readers) => readers.now(|conn| {
                let mut statement = conn.prepare_cached(SQL)?;
                let mut rows = statement.query(rusqlite::params![kind, pubkey, d_tag])?;
                match rows.next()? {
                    Some(row) => Ok(Some(parse_json(read::text(row, 0)?)?)),
                    None => Ok(None),
                }
            })?,
            Pool::Postgres(pool) => {
                let row = sqlx::query(SQL)
                    .bind(kind)
                    .bind(pubkey)
                    .bind(d_tag)
                    .fetch_optional(pool)
                    .await?;
                row.map(|row| parse_json_column(&row, 0)).transpose()?
            }
        };
        self.memo.addresses.put(generation, address, event.clone());
        Ok(event)
    }

    /// Whether an event is stored at an address; from the cache when it can, without copying
    /// the event.
    pub async fn has_event_at(
        &self,
        kind: Kind,
        pubkey: &PublicKey,
        d_tag: &str,
    ) -> Result<bool, StoreError> {
        let address = (kind.as_u16(), *pubkey, d_tag.to_owned());
        match self.memo.addresses.holds(&address) {
            Some(held) => Ok(held),
            // Boxed: the memory answers almost always, and the read's future would make every
            // caller's future larger.
            None => Ok(Box::pin(self.at_address(kind, pubkey, d_tag)).await?.is_some()),
        }
    }

    /// Every stored event of `kind` whose `d` tag is `identifier` (all authors).
    /// Answered from memory while no address has changed since the last read (every push asks
    /// for its identifier's announcements and states several times).
    pub async fn by_identifier(&self, kind: Kind, identifier: &str) -> Result<Vec<Event>, StoreError> {
        if let Some(events) = self.memo.addresses.group(kind.as_u16(), identifier) {
            return Ok(events);
        }
        let generation = self.memo.addresses.generation();
        const SQL: &str = BY_IDENTIFIER;
        let (kind_number, d_tag) = (i64::from(kind.as_u16()), identifier.to_owned());
        let events = match &self.pool {
            Pool::Sqlite(_, readers) => {
                readers
                    .run(move |conn| {
                        let mut statement = conn.prepare_cached(SQL)?;
                        let mut rows = statement.query(rusqlite::params![kind_number, d_tag])?;
                        let mut events = Vec::new();
                        while let Some(row) = rows.next()? {
                            events.push(parse_json(read::text(row, 0)?)?);
                        }
                        Ok(events)
                    })
                    .await?
            }
            Pool::Postgres(pool) => {
                let rows = sqlx::query(SQL)
                    .bind(kind_number)
                    .bind(d_tag)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|row| parse_json_column(row, 0))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        self.memo
            .addresses
            .put_group(generation, kind.as_u16(), identifier, &events);
        Ok(events)
    }

    /// Deletes matching events (operator action; not NIP-09).
    pub async fn delete(&self, filter: &Filter) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .select_rows(
                filter,
                filter::Select::Id,
                |row| Ok(row.get(0)?),
                |row| Ok(row.try_get(0)?),
            )
            .await?;
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|reply| writer::Request::Delete { ids, reply }).await
    }

    pub async fn wipe(&self) -> Result<(), StoreError> {
        self.write(|reply| writer::Request::Wipe { reply }).await
    }

    // ---- purgatory rows -------------------------------------------------------------------

    /// Writes (or replaces) a purgatory row.
    pub async fn purgatory_put(&self, row: &PurgatoryRow) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => {
                bind_purgatory_row!(sqlx::query(PURGATORY_UPSERT), row)
                    .execute(pool)
                    .await?;
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                bind_purgatory_row!(sqlx::query(PURGATORY_UPSERT), row)
                    .execute(&mut *tx)
                    .await?;
                self.notify_identifier(&mut tx, &row.identifier).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Writes `row` and removes `replaced` in one transaction (a newer event takes an older
    /// one's place in purgatory).
    pub async fn purgatory_replace(&self, row: &PurgatoryRow, replaced: &EventId) -> Result<(), StoreError> {
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM purgatory WHERE event_id = $1")
                .bind(replaced.to_hex())
                .execute(&mut *tx)
                .await?;
            bind_purgatory_row!(sqlx::query(PURGATORY_INSERT), row)
                .execute(&mut *tx)
                .await?;
            (&mut *tx).notify_identifier(self, &row.identifier).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn purgatory_remove(&self, id: &EventId) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => {
                sqlx::query("DELETE FROM purgatory WHERE event_id = $1")
                    .bind(id.to_hex())
                    .execute(pool)
                    .await?;
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("DELETE FROM purgatory WHERE event_id = $1")
                    .bind(id.to_hex())
                    .execute(&mut *tx)
                    .await?;
                if let Some(cluster) = &self.cluster {
                    cluster::notify_forgotten(&mut tx, &cluster.node, id).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Records a pull request ref pushed before its event.
    pub async fn placeholder_put(&self, row: &PlaceholderRow) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO placeholders (event_id, area, owner, identifier, tip, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (event_id, area, owner, identifier) DO UPDATE SET tip = excluded.tip, expires_at_ms = excluded.expires_at_ms";
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(UPSERT)
                .bind(&row.event_id)
                .bind(&row.area)
                .bind(&row.owner)
                .bind(&row.identifier)
                .bind(&row.tip)
                .bind(row.expires_at_ms)
                .execute(&mut *tx)
                .await?;
            (&mut *tx).notify_identifier(self, &row.identifier).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn placeholder_remove(
        &self,
        event_id: &str,
        area: &str,
        owner: &str,
        identifier: &str,
    ) -> Result<(), StoreError> {
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "DELETE FROM placeholders WHERE event_id = $1 AND area = $2 AND owner = $3 AND identifier = $4",
            )
            .bind(event_id)
            .bind(area)
            .bind(owner)
            .bind(identifier)
            .execute(&mut *tx)
            .await?;
            (&mut *tx).notify_identifier(self, identifier).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Within `tx`: tells the other nodes that `identifier`'s purgatory rows or placeholders
    /// changed.
    async fn notify_identifier(&self, tx: &mut PgConnection, identifier: &str) -> Result<(), StoreError> {
        match &self.cluster {
            Some(cluster) => cluster::notify_identifier(tx, &cluster.node, identifier).await,
            None => Ok(()),
        }
    }

    /// The purgatory rows of one identifier (what another node may have changed).
    pub async fn purgatory_rows_for(&self, identifier: &str) -> Result<Vec<PurgatoryRow>, StoreError> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT json, identifier, received_at_ms, expires_at_ms, source FROM purgatory WHERE identifier = $1",
            )
            .bind(identifier)
            .fetch_all(pool)
            .await?;
            rows.iter().map(purgatory_row).collect()
        })
    }

    /// The placeholder rows of one identifier, in either area.
    pub async fn placeholders_for(&self, identifier: &str) -> Result<Vec<PlaceholderRow>, StoreError> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT event_id, area, owner, identifier, tip, expires_at_ms FROM placeholders WHERE identifier = $1",
            )
            .bind(identifier)
            .fetch_all(pool)
            .await?;
            rows.iter().map(placeholder_row).collect()
        })
    }

    /// Every placeholder row, for the reload at start.
    pub async fn placeholders_all(&self) -> Result<Vec<PlaceholderRow>, StoreError> {
        on_pool!(&self.pool, pool => {
            let rows =
                sqlx::query("SELECT event_id, area, owner, identifier, tip, expires_at_ms FROM placeholders")
                    .fetch_all(pool)
                    .await?;
            rows.iter().map(placeholder_row).collect()
        })
    }

    /// Every purgatory row, for the reload at start.
    pub async fn purgatory_all(&self) -> Result<Vec<PurgatoryRow>, StoreError> {
        on_pool!(&self.pool, pool => {
            let rows =
                sqlx::query("SELECT json, identifier, received_at_ms, expires_at_ms, source FROM purgatory")
                    .fetch_all(pool)
                    .await?;
            rows.iter().map(purgatory_row).collect()
        })
    }

    /// Stores a released event and removes it from purgatory in one transaction, so a crash
    /// between the two can neither lose nor duplicate it.
    pub async fn release(&self, event: &Event) -> Result<SaveEventStatus, StoreError> {
        let statuses = self.release_many(std::slice::from_ref(event)).await?;
        Ok(statuses.into_iter().next().unwrap_or(SaveEventStatus::Success))
    }

    /// Stored events per kind, for status.
    pub async fn counts_by_kind(&self) -> Result<Vec<(u16, u64)>, StoreError> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    let kind: i64 = row.try_get(0)?;
                    let count: i64 = row.try_get(1)?;
                    Ok((
                        u16::try_from(kind).unwrap_or(u16::MAX),
                        u64::try_from(count).unwrap_or(0),
                    ))
                })
                .collect()
        })
    }

    /// [`release`](Self::release) for several events in one transaction.
    pub async fn release_many(&self, events: &[Event]) -> Result<Vec<SaveEventStatus>, StoreError> {
        self.write(|reply| writer::Request::Release {
            events: events.to_vec(),
            reply,
        })
        .await
    }

    /// Memory held by the in-memory id filters, for `/metrics`.
    pub fn filter_bytes(&self) -> usize {
        self.memo.ids.heap_bytes() + self.memo.referenced.heap_bytes()
    }

    /// Whether the database answers a query (readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.pool, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Counts of stored events, for start-up logging and status.
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query("SELECT COUNT(*) FROM events")
                .fetch_one(pool)
                .await?
                .try_get(0)?)
        })
    }
}

/// Binds a [`PurgatoryRow`] to `PURGATORY_INSERT` or `PURGATORY_UPSERT`.
macro_rules! bind_purgatory_row {
    ($query:expr, $row:expr) => {
        $query
            .bind($row.event.id.to_hex())
            .bind(i64::from($row.event.kind.as_u16()))
            .bind($row.event.pubkey.to_hex())
            .bind(&$row.identifier)
            .bind($row.event.as_json())
            .bind($row.received_at_ms)
            .bind($row.expires_at_ms)
            .bind(&$row.source)
    };
}
use bind_purgatory_row;

/// Inserts a purgatory row; fails if the event is already there.
const PURGATORY_INSERT: &str =
    "INSERT INTO purgatory (event_id, kind, pubkey, identifier, json, received_at_ms, expires_at_ms, source)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Inserts a purgatory row, or only moves its expiry when the event is already there.
const PURGATORY_UPSERT: &str =
    "INSERT INTO purgatory (event_id, kind, pubkey, identifier, json, received_at_ms, expires_at_ms, source)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (event_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms";

/// Every stored event of a kind with a `d` tag, from every author (`events_by_identifier`).
const BY_IDENTIFIER: &str = "SELECT json FROM events WHERE kind = $1 AND d_tag = $2";

/// The `d` value that makes an event's address: `Some("")` for replaceable kinds, the `d` tag
/// for addressable kinds, `None` for everything else.
pub fn address_d_tag(event: &Event) -> Option<String> {
    if event.kind.is_replaceable() {
        Some(String::new())
    } else if event.kind.is_addressable() {
        Some(event.tags.identifier().unwrap_or_default())
    } else {
        None
    }
}

/// [`load_memo`] for a SQLite file, on a connection of its own (run on a blocking thread).
fn load_memo_from_file(path: &std::path::Path) -> Result<memo::Memo, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    let memo = memo::Memo::with_capacity(usize::try_from(count).unwrap_or(0));
    for (sql, filter) in [
        ("SELECT id FROM events", &memo.ids),
        (
            "SELECT value FROM event_tags WHERE name IN ('e', 'E', 'q')",
            &memo.referenced,
        ),
    ] {
        let mut statement = conn.prepare(sql)?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            if let Some(id) = row.get_ref(0)?.as_str().ok().and_then(memo::hex32) {
                filter.insert(&id);
            }
        }
    }
    Ok(memo)
}

/// Builds the in-memory summaries from the tables (one pass over the ids and the tag index).
async fn load_memo(pool: &Pool) -> Result<memo::Memo, StoreError> {
    use futures_util::TryStreamExt;
    on_pool!(pool, pool => {
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM events")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        let memo = memo::Memo::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut ids = sqlx::query("SELECT id FROM events").fetch(pool);
        while let Some(row) = ids.try_next().await? {
            if let Some(id) = memo::hex32(row.try_get(0)?) {
                memo.ids.insert(&id);
            }
        }
        drop(ids);
        let mut values = sqlx::query("SELECT value FROM event_tags WHERE name IN ('e', 'E', 'q')").fetch(pool);
        while let Some(row) = values.try_next().await? {
            if let Some(id) = memo::hex32(row.try_get(0)?) {
                memo.referenced.insert(&id);
            }
        }
        Ok(memo)
    })
}

/// Tells the other nodes about a purgatory or placeholder change inside the caller's transaction:
/// on PostgreSQL; on SQLite there are no other nodes.
trait NotifyWithin {
    async fn notify_identifier(self, store: &Store, identifier: &str) -> Result<(), StoreError>;
}

impl NotifyWithin for &mut sqlx::SqliteConnection {
    async fn notify_identifier(self, _store: &Store, _identifier: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

impl NotifyWithin for &mut PgConnection {
    async fn notify_identifier(self, store: &Store, identifier: &str) -> Result<(), StoreError> {
        store.notify_identifier(self, identifier).await
    }
}

fn purgatory_row<R>(row: &R) -> Result<PurgatoryRow, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(PurgatoryRow {
        event: parse_json_column(row, 0)?,
        identifier: row.try_get(1)?,
        received_at_ms: row.try_get(2)?,
        expires_at_ms: row.try_get(3)?,
        source: row.try_get(4)?,
    })
}

fn placeholder_row<R>(row: &R) -> Result<PlaceholderRow, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(PlaceholderRow {
        event_id: row.try_get(0)?,
        area: row.try_get(1)?,
        owner: row.try_get(2)?,
        identifier: row.try_get(3)?,
        tip: row.try_get(4)?,
        expires_at_ms: row.try_get(5)?,
    })
}

fn timestamp_i64(ts: Timestamp) -> i64 {
    i64::try_from(ts.as_secs()).unwrap_or(i64::MAX)
}

fn parse_json_column<'r, R>(row: &'r R, index: usize) -> Result<Event, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    parse_json(row.try_get(index)?)
}

fn parse_json(json: &str) -> Result<Event, StoreError> {
    Event::from_json(json).map_err(|e| StoreError::Corrupt {
        id: json.chars().skip(7).take(64).collect(),
        reason: e.to_string(),
    })
}

/// A NIP-77 item from its stored columns.
fn negentropy_item(id: &str, created_at: i64) -> Result<(EventId, Timestamp), StoreError> {
    let event_id = EventId::from_hex(id).map_err(|e| StoreError::Corrupt {
        reason: e.to_string(),
        id: id.to_owned(),
    })?;
    Ok((
        event_id,
        Timestamp::from_secs(u64::try_from(created_at).unwrap_or(0)),
    ))
}

#[cfg(test)]
mod tests;
