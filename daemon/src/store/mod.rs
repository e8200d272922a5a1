//! The event store and the durable half of purgatory, on sqlx.
//!
//! `Store` is a cheap-to-clone handle. Reads go to the sqlx connection pool (SQLite in WAL mode
//! serves readers while a writer commits), after the in-memory summaries of `memo` had their
//! say. Event writes go to one writer thread that commits whatever has queued up as one
//! transaction (group commit): under load, one fsync covers many events, and replaceable/deletion
//! rules are applied in a single, serial order.
//!
//! Only SQLite is wired up today. The schema in `daemon/migrations/` keeps to types and
//! constraints PostgreSQL shares; the queries still use SQLite's `?` placeholders, `BEGIN
//! IMMEDIATE` and `MAX(a, b)`, which a PostgreSQL backend would replace (`$n`, plain `BEGIN`,
//! `GREATEST`).

mod checkpoint;
mod filter;
mod memo;
mod nostr_db;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use nostr::{Event, EventId, Filter, Kind, PublicKey, Timestamp};
use nostr_database::SaveEventStatus;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};

pub use nostr_db::SqlDatabase;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL '{0}': use sqlite://PATH (PostgreSQL support is planned)")]
    UnsupportedUrl(String),
    #[error("stored event {id} does not parse: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the store's writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("saved, but not known to be on disk: {0}")]
    NotDurable(String),
}

/// Handle to the database. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    writer: mpsc::Sender<writer::Request>,
    tombstones: Arc<writer::Tombstones>,
    memo: Arc<memo::Memo>,
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

/// A purgatory row as stored.
#[derive(Debug, Clone)]
pub struct PurgatoryRow {
    pub event: Event,
    pub identifier: String,
    pub received_at_ms: i64,
    pub expires_at_ms: i64,
    pub source: String,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an event acknowledged with OK survives power loss, not only a crash. Group
            // commit in the writer keeps the fsync cost per event low.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // Read pages through a memory map instead of a read() per page.
            .pragma("mmap_size", "268435456")
            .pragma("wal_autocheckpoint", checkpoint::AUTOCHECKPOINT_PAGES)
            .foreign_keys(true);
        // No ping before each acquire: these are local files, and the ping is one more round trip
        // to the connection's worker thread on every query.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let tombstones = Arc::new(writer::Tombstones::load(&pool).await?);
        let memo = Arc::new(load_memo(&pool).await?);
        let writer = writer::spawn(
            options.get_filename(),
            writer::Shared {
                tombstones: Arc::clone(&tombstones),
                memo: Arc::clone(&memo),
                checkpointer: checkpoint::Checkpointer::spawn(pool.clone()),
            },
        )?;
        Ok(Self {
            pool,
            writer,
            tombstones,
            memo,
        })
    }

    /// Saves an event with NIP-01 replaceable/addressable and NIP-09 deletion semantics.
    pub async fn save_event(&self, event: &Event) -> Result<SaveEventStatus, StoreError> {
        self.write(|reply| writer::Request::Save {
            event: event.clone(),
            json: event.as_json(),
            reply,
        })
        .await
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

    /// Events matching a NIP-01 filter, newest first (ties: lowest id first), at most `limit`.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<Event>, StoreError> {
        let Some(mut query) = filter::select(filter, filter::Select::Json) else {
            return Ok(Vec::new());
        };
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(|row| parse_json_column(row, 0)).collect()
    }

    /// SQLite's query plan for `filter`, one step a line (for tests, benchmarks and the docs).
    pub async fn query_plan(&self, filter: &Filter) -> Result<String, StoreError> {
        let Some(mut query) = filter::explain(filter) else {
            return Ok(String::new());
        };
        let rows = query.build().fetch_all(&self.pool).await?;
        let steps: Vec<String> = rows
            .iter()
            .map(|row| row.try_get::<String, _>(3))
            .collect::<Result<_, _>>()?;
        Ok(steps.join("\n"))
    }

    /// Ids and times of the events matching `filter` (NIP-77 items; a have-list for the event
    /// sync), read from the index without loading any event.
    pub async fn negentropy_items(&self, filter: &Filter) -> Result<Vec<(EventId, Timestamp)>, StoreError> {
        let Some(mut query) = filter::select(filter, filter::Select::IdTime) else {
            return Ok(Vec::new());
        };
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let created_at: i64 = row.try_get(1)?;
                let id = EventId::from_hex(&id).map_err(|e| StoreError::Corrupt {
                    reason: e.to_string(),
                    id,
                })?;
                Ok((id, Timestamp::from_secs(u64::try_from(created_at).unwrap_or(0))))
            })
            .collect()
    }

    pub async fn count(&self, filter: &Filter) -> Result<usize, StoreError> {
        let Some(mut query) = filter::select(filter, filter::Select::Count) else {
            return Ok(0);
        };
        let n: i64 = query.build().fetch_one(&self.pool).await?.try_get(0)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub async fn event_by_id(&self, id: &EventId) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query("SELECT json FROM events WHERE id = ?")
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| parse_json_column(&row, 0)).transpose()
    }

    pub async fn contains(&self, id: &EventId) -> Result<bool, StoreError> {
        if !self.memo.might_be_stored(id) {
            return Ok(false);
        }
        let row = sqlx::query("SELECT 1 FROM events WHERE id = ?")
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Whether a stored event references `id` through an `e`, `E` or `q` tag ("tagged by").
    pub async fn is_referenced(&self, id: &EventId) -> Result<bool, StoreError> {
        if !self.memo.might_be_referenced(id) {
            return Ok(false);
        }
        let row = sqlx::query("SELECT 1 FROM event_tags WHERE name IN ('e', 'E', 'q') AND value = ? LIMIT 1")
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
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
        let by_id = sqlx::query("SELECT 1 FROM deleted_events WHERE event_id = ? AND pubkey = ?")
            .bind(event.id.to_hex())
            .bind(event.pubkey.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        if by_id.is_some() {
            return Ok(true);
        }
        let Some(d_tag) = d_tag else {
            return Ok(false);
        };
        let by_address = sqlx::query(
            "SELECT 1 FROM deleted_addresses WHERE kind = ? AND pubkey = ? AND d_tag = ? AND until >= ?",
        )
        .bind(i64::from(event.kind.as_u16()))
        .bind(event.pubkey.to_hex())
        .bind(d_tag)
        .bind(timestamp_i64(event.created_at))
        .fetch_optional(&self.pool)
        .await?;
        Ok(by_address.is_some())
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
        let row = sqlx::query("SELECT json FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ?")
            .bind(i64::from(kind.as_u16()))
            .bind(pubkey.to_hex())
            .bind(d_tag)
            .fetch_optional(&self.pool)
            .await?;
        let event = row.map(|row| parse_json_column(&row, 0)).transpose()?;
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
            None => Ok(self.at_address(kind, pubkey, d_tag).await?.is_some()),
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
        let rows = sqlx::query("SELECT json FROM events WHERE kind = ? AND d_tag = ?")
            .bind(i64::from(kind.as_u16()))
            .bind(identifier)
            .fetch_all(&self.pool)
            .await?;
        let events = rows
            .iter()
            .map(|row| parse_json_column(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        self.memo
            .addresses
            .put_group(generation, kind.as_u16(), identifier, &events);
        Ok(events)
    }

    /// Deletes matching events (operator action; not NIP-09).
    pub async fn delete(&self, filter: &Filter) -> Result<(), StoreError> {
        let Some(mut select) = filter::select(filter, filter::Select::Id) else {
            return Ok(());
        };
        let ids: Vec<String> = select
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        self.write(|reply| writer::Request::Delete { ids, reply }).await
    }

    pub async fn wipe(&self) -> Result<(), StoreError> {
        self.write(|reply| writer::Request::Wipe { reply }).await
    }

    // ---- purgatory rows -------------------------------------------------------------------

    /// Writes (or replaces) a purgatory row.
    pub async fn purgatory_put(&self, row: &PurgatoryRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO purgatory (event_id, kind, pubkey, identifier, json, received_at_ms, expires_at_ms, source)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (event_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
        )
        .bind(row.event.id.to_hex())
        .bind(i64::from(row.event.kind.as_u16()))
        .bind(row.event.pubkey.to_hex())
        .bind(&row.identifier)
        .bind(row.event.as_json())
        .bind(row.received_at_ms)
        .bind(row.expires_at_ms)
        .bind(&row.source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes `row` and removes `replaced` in one transaction (a newer event takes an older
    /// one's place in purgatory).
    pub async fn purgatory_replace(&self, row: &PurgatoryRow, replaced: &EventId) -> Result<(), StoreError> {
        let mut tx = begin_write(&self.pool).await?;
        sqlx::query("DELETE FROM purgatory WHERE event_id = ?")
            .bind(replaced.to_hex())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO purgatory (event_id, kind, pubkey, identifier, json, received_at_ms, expires_at_ms, source)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.event.id.to_hex())
        .bind(i64::from(row.event.kind.as_u16()))
        .bind(row.event.pubkey.to_hex())
        .bind(&row.identifier)
        .bind(row.event.as_json())
        .bind(row.received_at_ms)
        .bind(row.expires_at_ms)
        .bind(&row.source)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn purgatory_remove(&self, id: &EventId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM purgatory WHERE event_id = ?")
            .bind(id.to_hex())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a pull request ref pushed before its event.
    pub async fn placeholder_put(&self, row: &PlaceholderRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO placeholders (event_id, area, owner, identifier, tip, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (event_id, area, owner, identifier) DO UPDATE SET tip = excluded.tip, expires_at_ms = excluded.expires_at_ms",
        )
        .bind(&row.event_id)
        .bind(&row.area)
        .bind(&row.owner)
        .bind(&row.identifier)
        .bind(&row.tip)
        .bind(row.expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn placeholder_remove(
        &self,
        event_id: &str,
        area: &str,
        owner: &str,
        identifier: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM placeholders WHERE event_id = ? AND area = ? AND owner = ? AND identifier = ?",
        )
        .bind(event_id)
        .bind(area)
        .bind(owner)
        .bind(identifier)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every placeholder row, for the reload at start.
    pub async fn placeholders_all(&self) -> Result<Vec<PlaceholderRow>, StoreError> {
        let rows =
            sqlx::query("SELECT event_id, area, owner, identifier, tip, expires_at_ms FROM placeholders")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(PlaceholderRow {
                    event_id: row.try_get(0)?,
                    area: row.try_get(1)?,
                    owner: row.try_get(2)?,
                    identifier: row.try_get(3)?,
                    tip: row.try_get(4)?,
                    expires_at_ms: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// Every purgatory row, for the reload at start.
    pub async fn purgatory_all(&self) -> Result<Vec<PurgatoryRow>, StoreError> {
        let rows =
            sqlx::query("SELECT json, identifier, received_at_ms, expires_at_ms, source FROM purgatory")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(PurgatoryRow {
                    event: parse_json_column(row, 0)?,
                    identifier: row.try_get(1)?,
                    received_at_ms: row.try_get(2)?,
                    expires_at_ms: row.try_get(3)?,
                    source: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// Stores a released event and removes it from purgatory in one transaction, so a crash
    /// between the two can neither lose nor duplicate it.
    pub async fn release(&self, event: &Event) -> Result<SaveEventStatus, StoreError> {
        let statuses = self.release_many(std::slice::from_ref(event)).await?;
        Ok(statuses.into_iter().next().unwrap_or(SaveEventStatus::Success))
    }

    /// Stored events per kind, for status.
    pub async fn counts_by_kind(&self) -> Result<Vec<(u16, u64)>, StoreError> {
        let rows = sqlx::query("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind")
            .fetch_all(&self.pool)
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
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Counts of stored events, for start-up logging and status.
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }
}

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

/// Builds the in-memory summaries from the tables (one pass over the ids and the tag index).
async fn load_memo(pool: &SqlitePool) -> Result<memo::Memo, StoreError> {
    use futures_util::TryStreamExt;
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
}

/// Starts a write transaction with `BEGIN IMMEDIATE`, taking the write lock up front (waiting
/// out the busy timeout if needed). A deferred transaction that reads and then writes fails with
/// SQLITE_BUSY at once, busy timeout or not, when another connection committed in between, and
/// the writer thread and the purgatory writes do commit side by side.
async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

fn timestamp_i64(ts: Timestamp) -> i64 {
    i64::try_from(ts.as_secs()).unwrap_or(i64::MAX)
}

fn parse_json_column(row: &sqlx::sqlite::SqliteRow, index: usize) -> Result<Event, StoreError> {
    let json: String = row.try_get(index)?;
    Event::from_json(&json).map_err(|e| StoreError::Corrupt {
        id: json.chars().skip(7).take(64).collect(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
