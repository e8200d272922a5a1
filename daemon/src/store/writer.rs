//! The single writer of events: group commit on a thread of its own.
//!
//! Every change to the event tables (saves, releases from purgatory, operator deletions, wipe) is a
//! request on one channel. A dedicated OS thread takes whatever has queued up (up to
//! `MAX_BATCH` saves), applies them in arrival order inside one `BEGIN IMMEDIATE` transaction,
//! commits once and answers each request. If the batch fails, each save is retried alone so one
//! bad event cannot fail its neighbours.
//!
//! **Durability.** Nothing is answered before it is on disk, with one deliberate exception below. The connection runs with
//! `synchronous = NORMAL` and the writer `fdatasync`s the WAL itself after each commit, before it
//! answers: that is what `FULL` does, except that SQLite (as bundled) syncs with `fsync`, which
//! also writes the inode on every commit; the WAL is rewritten in place after each checkpoint, so
//! its size rarely changes and `fdatasync` writes the data alone. A header written after a WAL
//! reset reaches the disk with the first frames; frames whose header did not are discarded by
//! recovery, and those were never answered.
//!
//! The exception is a release from purgatory: it is answered as soon as its transaction commits,
//! and the sync follows. The events it moves were already on disk (in purgatory), and the one
//! transaction moves each whole: if the machine loses it, the events are back in purgatory at
//! restart, where start-up reconciliation finds their git data and releases them again. This
//! takes the sync (about half a millisecond here) out of every push's post-receive.
//!
//! Why a thread with a synchronous SQLite connection (rusqlite) and not sqlx: sqlx runs each
//! SQLite connection on a worker thread and every statement, `BEGIN` and `COMMIT` is a round
//! trip between threads. On a small virtual machine each round trip cost 0.3 ms of wake-ups, and
//! a batch needed five, more than the SQL itself. Here a batch costs one wake-up, and plain
//! per-row statements (cached, prepared once) are as cheap as the multi-row ones they replace.
//! Reads stay on the sqlx pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashSet;
use nostr::{Event, Kind, PublicKey};
use nostr_database::{RejectedReason, SaveEventStatus};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{Checkpointer, wal_committed, wal_frames};
use super::memo::Memo;
use super::{Pool, StoreError, address_d_tag, timestamp_i64};

/// Saves committed in one transaction at most. Under load the writer takes what queued up while
/// it committed the batch before; a larger batch writes each index page it touches once for more
/// events (up to 5,120 are in flight in the relay bench: 40 connections × `MAX_IN_FLIGHT`).
pub(super) const MAX_BATCH: usize = 2048;
/// The writer's page cache. SQLite's default (2,000 KiB, ~500 pages) is smaller than what a full
/// batch touches (each event's row, and a leaf of every index, the id index's at random): the
/// cache spilled dirty pages into the WAL in the middle of a transaction, to write them again at
/// its commit, and read evicted pages back from the WAL. 8 MiB took a tenth off the CPU of an
/// accepted event in the relay bench (104 → 96 µs, with batches of up to 512); 16 MiB holds what
/// a batch of `MAX_BATCH` touches.
const WRITER_CACHE_KIB: u32 = 16384;
/// Tag values longer than this are not indexed (no filter asks for them; they only bloat the
/// index).
const MAX_INDEXED_TAG_VALUE: usize = 1024;

/// What NIP-09 deletions name, kept in memory so that the common case — nothing was deleted —
/// costs no query. It may hold more than the tables (a deletion noted before its transaction
/// failed): that only costs one more query, and the tables stay authoritative.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    pub ids: DashSet<String>,
    pub addresses: DashSet<(i64, String, String)>,
}

impl Tombstones {
    /// Loads what the tables hold.
    pub async fn load(pool: &Pool) -> Result<Self, StoreError> {
        let tombstones = Self::default();
        on_pool!(pool, pool => {
            for row in sqlx::query("SELECT event_id FROM deleted_events")
                .fetch_all(pool)
                .await?
            {
                tombstones.ids.insert(row.try_get(0)?);
            }
            for row in sqlx::query("SELECT kind, pubkey, d_tag FROM deleted_addresses")
                .fetch_all(pool)
                .await?
            {
                tombstones
                    .addresses
                    .insert((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
        });
        Ok(tombstones)
    }

    pub(super) fn note(&self, deletion: &Event) {
        for tag in deletion.tags.iter() {
            match (tag.as_slice().first().map(String::as_str), tag.as_slice().get(1)) {
                (Some("e"), Some(id)) => {
                    self.ids.insert(id.clone());
                }
                (Some("a"), Some(coordinate)) => {
                    if let Some((kind, pubkey, d)) = split_coordinate(coordinate)
                        && pubkey == deletion.pubkey
                    {
                        self.addresses.insert((kind, pubkey.to_hex(), d.to_owned()));
                    }
                }
                _ => {}
            }
        }
    }
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A change to the event tables.
// Nearly every request is a `Save`: boxing it to shrink the rare others would cost an
// allocation per event.
#[allow(clippy::large_enum_variant)]
pub(super) enum Request {
    /// Store one event (NIP-01 replaceable/addressable rules, NIP-09 deletions). `json` is the
    /// event serialized by the caller, off the writer's serial path.
    Save {
        /// Shared with the caller, which gets it back alone once answered (no copy).
        event: Arc<Event>,
        json: String,
        reply: Reply<SaveEventStatus>,
    },
    /// Store events released from purgatory and drop their purgatory rows, in one transaction.
    Release {
        events: Vec<Event>,
        reply: Reply<Vec<SaveEventStatus>>,
    },
    /// Remove events by id (operator action, not NIP-09).
    Delete { ids: Vec<String>, reply: Reply<()> },
    /// Empty every event table and purgatory (`NostrDatabase::wipe`).
    Wipe { reply: Reply<()> },
}

/// What a writer shares with the rest of the store.
pub(super) struct Shared {
    pub tombstones: Arc<Tombstones>,
    pub memo: Arc<Memo>,
}

/// Opens the writer's connection (errors surface here, at start-up) and starts its thread. The
/// thread ends when every sender is dropped.
pub(super) fn spawn(
    path: &Path,
    shared: Shared,
    checkpointer: Checkpointer,
) -> Result<mpsc::Sender<Request>, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // The pool's settings (see `Store::open`; WAL mode is a property of the file, set there),
    // except `synchronous`: NORMAL, because the writer syncs the WAL itself (module docs), and a
    // larger page cache (`WRITER_CACHE_KIB`), and checkpoints: the WAL hook `wal_committed`
    // takes the place of SQLite's automatic checkpoint (see `checkpoint`).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA mmap_size = {}; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -{WRITER_CACHE_KIB};",
        super::MMAP_BYTES
    ))?;
    conn.wal_hook(Some(wal_committed));
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let (tx, rx) = mpsc::channel::<Request>(4096);
    std::thread::Builder::new()
        .name("graspd-writer".to_owned())
        .spawn(move || {
            let writer = Writer {
                conn,
                shared,
                checkpointer,
                wal,
                answers: Vec::new(),
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run(rx)));
            if outcome.is_err() {
                // Without its writer the daemon would stay up answering every save with an
                // error. Exiting lets the service manager restart it; nothing answered is lost
                // (every answered write was committed), unanswered requests are retried by their
                // clients, and start-up reconciliation picks up releases.
                tracing::error!(
                    "the store's writer thread panicked; exiting (status 70) so graspd is restarted"
                );
                std::process::exit(70);
            }
        })
        .map_err(StoreError::WriterThread)?;
    Ok(tx)
}

struct Writer {
    conn: Connection,
    shared: Shared,
    checkpointer: Checkpointer,
    wal: PathBuf,
    /// Answers for the work done since the last sync.
    answers: Vec<Answer>,
}

/// An answer to send once the commit it reports on is durable; it is given the sync's error, if
/// the sync failed.
type Answer = Box<dyn FnOnce(Option<&std::io::Error>) + Send>;

fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Answer {
    Box::new(move |sync_error| {
        let result = match sync_error {
            // Committed, but perhaps not on disk: the client is told it failed, and a retry is
            // answered as a duplicate.
            Some(error) if result.is_ok() => Err(StoreError::NotDurable(error.to_string())),
            _ => result,
        };
        let _ = reply.send(result);
    })
}

/// `fdatasync` of the WAL. A missing WAL holds nothing to sync: SQLite removes it only after a
/// checkpoint has copied and synced everything into the database file.
fn sync_data(wal: &Path) -> std::io::Result<()> {
    match std::fs::File::open(wal) {
        Ok(file) => file.sync_data(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

pub(super) struct SaveRequest {
    pub event: Arc<Event>,
    pub json: String,
    pub reply: Reply<SaveEventStatus>,
}

/// Adds to `batch` the saves already waiting, up to [`MAX_BATCH`]. Another kind of request ends
/// the batch and is returned, to run after it: arrival order is kept.
pub(super) fn take_waiting_saves(
    requests: &mut mpsc::Receiver<Request>,
    batch: &mut Vec<SaveRequest>,
) -> Option<Request> {
    while batch.len() < MAX_BATCH {
        match requests.try_recv() {
            Ok(Request::Save { event, json, reply }) => batch.push(SaveRequest { event, json, reply }),
            Ok(other) => return Some(other),
            Err(_) => break,
        }
    }
    None
}

impl Writer {
    fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut batch: Vec<SaveRequest> = Vec::with_capacity(MAX_BATCH);
        let mut next = requests.blocking_recv();
        while let Some(request) = next.take() {
            match request {
                Request::Save { event, json, reply } => {
                    batch.push(SaveRequest { event, json, reply });
                    next = take_waiting_saves(&mut requests, &mut batch);
                    self.commit_batch(&mut batch);
                }
                Request::Release { events, reply } => {
                    // Answered before the sync below: released events were durable already, in
                    // purgatory. If the machine loses this transaction, they are back in
                    // purgatory at restart and start-up reconciliation releases them again.
                    let _ = reply.send(self.release(&events));
                }
                Request::Delete { ids, reply } => {
                    let result = self.delete(&ids);
                    self.answers.push(answer(reply, result));
                }
                Request::Wipe { reply } => {
                    let result = self.wipe();
                    self.answers.push(answer(reply, result));
                }
            }
            let synced = sync_data(&self.wal);
            if let Err(error) = &synced {
                tracing::error!(%error, wal = %self.wal.display(), "cannot sync the WAL; saves answered as failed");
            }
            for answer in self.answers.drain(..) {
                answer(synced.as_ref().err());
            }
            let frames = wal_frames();
            self.checkpointer.committed(frames);
            if frames >= self.checkpointer.backstop() {
                // After the answers: the clients do not wait for it.
                if let Err(error) = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(%error, frames, "WAL checkpoint on the writer failed; the next commit tries again");
                }
            }
            if next.is_none() {
                next = requests.blocking_recv();
            }
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<SaveRequest>) {
        match self.try_batch(batch) {
            Ok(statuses) => {
                for (request, status) in batch.drain(..).zip(statuses) {
                    self.answers.push(answer(request.reply, Ok(status)));
                }
            }
            Err(error) => {
                tracing::warn!(%error, events = batch.len(), "batch commit failed; saving one by one");
                for request in batch.drain(..) {
                    let result = self.save_alone(&request.event, &request.json);
                    self.answers.push(answer(request.reply, result));
                }
            }
        }
    }

    fn try_batch(&mut self, batch: &[SaveRequest]) -> Result<Vec<SaveEventStatus>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let statuses = batch
            .iter()
            .map(|request| save_in(&tx, &self.shared, &request.event, &request.json))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        if batch.iter().any(|request| changes_addresses(&request.event)) {
            self.shared.memo.addresses.invalidate();
        }
        Ok(statuses)
    }

    fn save_alone(&mut self, event: &Event, json: &str) -> Result<SaveEventStatus, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let status = save_in(&tx, &self.shared, event, json)?;
        tx.commit()?;
        if changes_addresses(event) {
            self.shared.memo.addresses.invalidate();
        }
        Ok(status)
    }

    /// Stores released events and removes them from purgatory in one transaction, so a crash
    /// between the two can neither lose nor duplicate them.
    fn release(&mut self, events: &[Event]) -> Result<Vec<SaveEventStatus>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut statuses = Vec::with_capacity(events.len());
        for event in events {
            statuses.push(save_in(&tx, &self.shared, event, &event.as_json())?);
            tx.prepare_cached("DELETE FROM purgatory WHERE event_id = ?")?
                .execute([event.id.to_hex()])?;
        }
        tx.commit()?;
        self.shared.memo.addresses.invalidate();
        Ok(statuses)
    }

    fn delete(&mut self, ids: &[String]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for id in ids {
            delete_event_rows(&tx, id)?;
        }
        tx.commit()?;
        self.shared.memo.addresses.invalidate();
        Ok(())
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "DELETE FROM event_tags; DELETE FROM events; DELETE FROM deleted_events; \
             DELETE FROM deleted_addresses; DELETE FROM purgatory;",
        )?;
        tx.commit()?;
        self.shared.memo.addresses.invalidate();
        Ok(())
    }
}

/// Whether saving this event can change what an address holds (replaceable, addressable) or
/// delete events (NIP-09); regular events never do.
pub(super) fn changes_addresses(event: &Event) -> bool {
    let kind = event.kind;
    kind.is_replaceable() || kind.is_addressable() || kind == Kind::EventDeletion
}

/// The single-letter tags a filter can ask for: (name, first value).
pub(super) fn indexed_tags(event: &Event) -> impl Iterator<Item = (&str, &str)> {
    event.tags.iter().filter_map(|tag| {
        let values = tag.as_slice();
        let name = values.first()?;
        let value = values.get(1)?;
        (name.chars().count() == 1 && value.len() <= MAX_INDEXED_TAG_VALUE)
            .then_some((name.as_str(), value.as_str()))
    })
}

/// Applies one save inside a transaction: duplicate and deletion checks, replaceable/addressable
/// replacement, the insert with its tag index, and NIP-09 effects of a deletion event. The
/// in-memory summaries spare the queries whose answer is known: an id the Bloom filter has
/// never seen is not stored, an id no tombstone names was not deleted.
fn save_in(
    tx: &Transaction<'_>,
    shared: &Shared,
    event: &Event,
    json: &str,
) -> Result<SaveEventStatus, StoreError> {
    if event.kind.is_ephemeral() {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Ephemeral));
    }
    let id = event.id.to_hex();
    let pubkey = event.pubkey.to_hex();
    let created_at = timestamp_i64(event.created_at);
    let kind = i64::from(event.kind.as_u16());

    if shared.memo.might_be_stored(&event.id)
        && tx
            .prepare_cached("SELECT 1 FROM events WHERE id = ?")?
            .exists([&id])?
    {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Duplicate));
    }
    if shared.tombstones.ids.contains(&id)
        && tx
            .prepare_cached("SELECT 1 FROM deleted_events WHERE event_id = ? AND pubkey = ?")?
            .exists([&id, &pubkey])?
    {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Deleted));
    }

    let d_tag = address_d_tag(event);
    if let Some(d) = &d_tag {
        let deleted = tx
            .prepare_cached(
                "SELECT 1 FROM deleted_addresses WHERE kind = ? AND pubkey = ? AND d_tag = ? AND until >= ?",
            )?
            .exists(params![kind, pubkey, d, created_at])?;
        if deleted {
            return Ok(SaveEventStatus::Rejected(RejectedReason::Deleted));
        }
        let current: Option<(String, i64)> = tx
            .prepare_cached("SELECT id, created_at FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ?")?
            .query_row(params![kind, pubkey, d], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((current_id, current_at)) = current {
            // NIP-01: newest wins; on equal timestamps the lowest id is kept.
            if crate::nip01::newer((current_at, current_id.as_str()), (created_at, id.as_str())) {
                return Ok(SaveEventStatus::Rejected(RejectedReason::Replaced));
            }
            delete_event_rows(tx, &current_id)?;
        }
    }

    tx.prepare_cached(
        "INSERT INTO events (id, pubkey, created_at, kind, d_tag, json) VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![id, pubkey, created_at, kind, d_tag, json])?;
    shared.memo.note_stored(event);
    let mut insert_tag = tx.prepare_cached(
        "INSERT INTO event_tags (event_id, name, value, created_at, kind) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )?;
    for (name, value) in indexed_tags(event) {
        insert_tag.execute(params![id, name, value, created_at, kind])?;
    }

    if event.kind == Kind::EventDeletion {
        shared.tombstones.note(event);
        apply_deletion(tx, event)?;
    }
    Ok(SaveEventStatus::Success)
}

/// Deletes an event and its tag rows.
fn delete_event_rows(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    let Some(json) = tx
        .prepare_cached("SELECT json FROM events WHERE id = ?")?
        .query_row([id], |row| row.get::<_, String>(0))
        .optional()?
    else {
        return Ok(());
    };
    // Tag rows are found through their (name, value, created_at, event_id) key: the event's own
    // tags say which.
    if let Ok(event) = Event::from_json(&json) {
        let created_at = timestamp_i64(event.created_at);
        let mut delete_tag = tx.prepare_cached(
            "DELETE FROM event_tags WHERE name = ? AND value = ? AND created_at = ? AND event_id = ?",
        )?;
        for (name, value) in indexed_tags(&event) {
            delete_tag.execute(params![name, value, created_at, id])?;
        }
    }
    tx.prepare_cached("DELETE FROM events WHERE id = ?")?
        .execute([id])?;
    Ok(())
}

/// NIP-09: a deletion removes the author's own events named by `e` tags and, for `a` tags, the
/// author's events at that address up to the deletion's `created_at`; tombstones keep them from
/// coming back.
fn apply_deletion(tx: &Transaction<'_>, deletion: &Event) -> Result<(), StoreError> {
    let author = deletion.pubkey.to_hex();
    let until = timestamp_i64(deletion.created_at);
    for tag in deletion.tags.iter() {
        let values = tag.as_slice();
        match (values.first().map(String::as_str), values.get(1)) {
            (Some("e"), Some(target)) if is_hex64(target) => {
                let stored: Option<(String, i64)> = tx
                    .prepare_cached("SELECT pubkey, kind FROM events WHERE id = ?")?
                    .query_row([target], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                // Only the author may delete an event, and deletions are not deletable (NIP-09).
                // An id not stored yet is tombstoned for this author: if it arrives, it counts
                // as deleted only when this author wrote it.
                let deletable = stored.is_none_or(|(pubkey, kind)| {
                    pubkey == author && kind != i64::from(Kind::EventDeletion.as_u16())
                });
                if deletable {
                    delete_event_rows(tx, target)?;
                    tx.prepare_cached(
                        "INSERT INTO deleted_events (event_id, pubkey) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    )?
                    .execute([target, &author])?;
                }
            }
            (Some("a"), Some(coordinate)) => {
                let Some((kind, pubkey, d_tag)) = split_coordinate(coordinate) else {
                    continue;
                };
                if pubkey != deletion.pubkey {
                    continue;
                }
                // At most one event lives at an address.
                let doomed: Option<String> = tx
                    .prepare_cached(
                        "SELECT id FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ? AND created_at <= ?",
                    )?
                    .query_row(params![kind, author, d_tag, until], |row| row.get(0))
                    .optional()?;
                if let Some(doomed) = doomed {
                    delete_event_rows(tx, &doomed)?;
                }
                tx.prepare_cached(
                    "INSERT INTO deleted_addresses (kind, pubkey, d_tag, until) VALUES (?, ?, ?, ?)
                     ON CONFLICT (kind, pubkey, d_tag) DO UPDATE SET until = MAX(until, excluded.until)",
                )?
                .execute(params![kind, author, d_tag, until])?;
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `<kind>:<pubkey-hex>:<d>` of a replaceable or addressable event.
pub(crate) fn split_coordinate(value: &str) -> Option<(i64, PublicKey, &str)> {
    let address = crate::nip01::Address::parse(value)?;
    let kind = address.kind;
    (kind.is_replaceable() || kind.is_addressable()).then_some((
        i64::from(kind.as_u16()),
        address.author,
        address.d,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_wal_has_nothing_to_sync_and_a_present_one_syncs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("graspd.db-wal");
        assert!(sync_data(&wal).is_ok(), "no WAL: nothing to sync");
        std::fs::write(&wal, b"frames").expect("write");
        assert!(sync_data(&wal).is_ok());
    }

    #[test]
    fn a_failed_sync_turns_a_saved_answer_into_an_error_but_keeps_refusals() {
        let (reply, answer_rx) = oneshot::channel();
        answer(reply, Ok(SaveEventStatus::Success))(Some(&std::io::Error::other("disk gone")));
        let result = answer_rx.blocking_recv().expect("answered");
        assert!(matches!(result, Err(StoreError::NotDurable(message)) if message.contains("disk gone")));

        let (reply, answer_rx) = oneshot::channel::<Result<SaveEventStatus, StoreError>>();
        answer(reply, Err(StoreError::WriterGone))(Some(&std::io::Error::other("disk gone")));
        let result = answer_rx.blocking_recv().expect("answered");
        assert!(matches!(result, Err(StoreError::WriterGone)));
    }
}
