//! The single writer of events on PostgreSQL: group commit on a task of its own.
//!
//! The same requests as the SQLite writer (`writer`), taken the same way: whatever saves have
//! queued up (up to `MAX_BATCH`) go into one transaction, applied in arrival order, committed
//! once; if the batch fails, each save is retried alone so one bad event cannot fail its
//! neighbours. An answer is sent only after its commit returned, and PostgreSQL's commit returns
//! once the server has flushed its WAL (`synchronous_commit` on, the server's default): an
//! acknowledged event is on the server's disk.
//!
//! Several graspd nodes may share the database. Every write transaction first takes one
//! transaction-scoped advisory lock ([`WRITE_LOCK`]), so the writers of all nodes apply the
//! replaceable and deletion rules in one serial order, as the single SQLite writer does. The
//! in-memory summaries (the id filters, the tombstones) only ever know this node's writes and
//! what the others have told so far, so the checks here ask the tables, never the summaries.
//! Each transaction moves the writers' counter and tells the other nodes what it stored
//! (`cluster`).

use std::sync::Arc;

use nostr::{Event, Kind};
use nostr_database::{RejectedReason, SaveEventStatus};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::mpsc;

use super::cluster::{self, Cluster};

use super::writer::{
    MAX_BATCH, Request, SaveRequest, Shared, changes_addresses, indexed_tags, is_hex64, split_coordinate,
    take_waiting_saves,
};
use super::{StoreError, address_d_tag, timestamp_i64};

/// The advisory lock key every node's writer holds for the length of a write transaction
/// ("graspd-w" in ASCII).
pub(super) const WRITE_LOCK: i64 = 0x6772_6173_7064_2d77;

/// Starts the writer task; it ends when every sender is dropped.
pub(super) fn spawn(pool: PgPool, shared: Shared, cluster: Arc<Cluster>) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel::<Request>(4096);
    tokio::spawn(
        Writer {
            pool,
            shared,
            cluster,
        }
        .run(rx),
    );
    tx
}

struct Writer {
    pool: PgPool,
    shared: Shared,
    cluster: Arc<Cluster>,
}

impl Writer {
    async fn run(self, mut requests: mpsc::Receiver<Request>) {
        let mut batch: Vec<SaveRequest> = Vec::with_capacity(MAX_BATCH);
        let mut next = requests.recv().await;
        while let Some(request) = next.take() {
            match request {
                Request::Save { event, json, reply } => {
                    batch.push(SaveRequest { event, json, reply });
                    next = take_waiting_saves(&mut requests, &mut batch);
                    self.commit_batch(&mut batch).await;
                }
                Request::Release { events, reply } => {
                    let _ = reply.send(self.release(&events).await);
                }
                Request::Delete { ids, reply } => {
                    let _ = reply.send(self.delete(&ids).await);
                }
                Request::Wipe { reply } => {
                    let _ = reply.send(self.wipe().await);
                }
            }
            if next.is_none() {
                next = requests.recv().await;
            }
        }
    }

    async fn commit_batch(&self, batch: &mut Vec<SaveRequest>) {
        match self.try_batch(batch).await {
            Ok(statuses) => {
                for (request, status) in batch.drain(..).zip(statuses) {
                    let _ = request.reply.send(Ok(status));
                }
            }
            Err(error) => {
                tracing::warn!(%error, events = batch.len(), "batch commit failed; saving one by one");
                for request in batch.drain(..) {
                    let result = self.try_batch(std::slice::from_ref(&request)).await;
                    let _ = request.reply.send(
                        result
                            .map(|statuses| statuses.into_iter().next().unwrap_or(SaveEventStatus::Success)),
                    );
                }
            }
        }
    }

    async fn try_batch(&self, batch: &[SaveRequest]) -> Result<Vec<SaveEventStatus>, StoreError> {
        let mut tx = self.begin().await?;
        let statuses = save_all(&mut tx, &self.shared, batch).await?;
        let stored = batch
            .iter()
            .zip(&statuses)
            .filter(|(_, status)| status.is_success())
            .map(|(request, _)| request.event.id);
        cluster::notify_stored(&mut tx, &self.cluster.node, stored).await?;
        let addresses_changed = batch.iter().any(|request| changes_addresses(&request.event));
        if addresses_changed {
            self.commit(tx).await?;
            self.shared.memo.addresses.invalidate();
        } else {
            // Regular events change no address: the other nodes' caches stay good.
            tx.commit().await?;
        }
        Ok(statuses)
    }

    /// A write transaction holding [`WRITE_LOCK`].
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Moves the writers' counter (what another node's address cache depends on changed) and
    /// commits.
    async fn commit(&self, mut tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<(), StoreError> {
        let n = cluster::bump(&mut tx).await?;
        tx.commit().await?;
        self.cluster.wrote(n, &self.shared.memo);
        Ok(())
    }

    /// Stores released events and removes them from purgatory in one transaction.
    async fn release(&self, events: &[Event]) -> Result<Vec<SaveEventStatus>, StoreError> {
        let mut tx = self.begin().await?;
        let mut statuses = Vec::with_capacity(events.len());
        for event in events {
            let status = save_in(&mut tx, &self.shared, event, &event.as_json()).await?;
            sqlx::query("DELETE FROM purgatory WHERE event_id = $1")
                .bind(event.id.to_hex())
                .execute(&mut *tx)
                .await?;
            if status.is_success() {
                cluster::notify_stored(&mut tx, &self.cluster.node, std::iter::once(event.id)).await?;
            } else {
                cluster::notify_forgotten(&mut tx, &self.cluster.node, &event.id).await?;
            }
            statuses.push(status);
        }
        self.commit(tx).await?;
        self.shared.memo.addresses.invalidate();
        Ok(statuses)
    }

    async fn delete(&self, ids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for id in ids {
            delete_event_rows(&mut tx, id).await?;
        }
        self.commit(tx).await?;
        self.shared.memo.addresses.invalidate();
        Ok(())
    }

    async fn wipe(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("TRUNCATE event_tags, events, deleted_events, deleted_addresses, purgatory")
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        self.shared.memo.addresses.invalidate();
        Ok(())
    }
}

/// Applies a batch of saves in order. Runs of plain events (regular kinds: nothing to replace,
/// nothing they delete) are applied together, in three round trips whatever their number: one
/// look for those already stored or deleted, one multi-row insert of the events, one of their
/// tags. Every other event is applied alone, in its place, by [`save_in`].
async fn save_all(
    conn: &mut PgConnection,
    shared: &Shared,
    batch: &[SaveRequest],
) -> Result<Vec<SaveEventStatus>, StoreError> {
    let mut statuses = Vec::with_capacity(batch.len());
    let mut run: Vec<&SaveRequest> = Vec::new();
    for request in batch {
        if is_plain(&request.event) {
            run.push(request);
            continue;
        }
        statuses.extend(save_plain(conn, shared, &run).await?);
        run.clear();
        statuses.push(save_in(conn, shared, &request.event, &request.json).await?);
    }
    statuses.extend(save_plain(conn, shared, &run).await?);
    Ok(statuses)
}

/// An event whose save touches no other event: not ephemeral, replaceable, addressable or a
/// deletion.
fn is_plain(event: &Event) -> bool {
    let kind = event.kind;
    !(kind.is_ephemeral() || kind.is_replaceable() || kind.is_addressable() || kind == Kind::EventDeletion)
}

/// Saves a run of plain events (see [`save_all`]).
async fn save_plain(
    conn: &mut PgConnection,
    shared: &Shared,
    run: &[&SaveRequest],
) -> Result<Vec<SaveEventStatus>, StoreError> {
    if run.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = run.iter().map(|r| r.event.id.to_hex()).collect();
    let pubkeys: Vec<String> = run.iter().map(|r| r.event.pubkey.to_hex()).collect();
    let known = sqlx::query(
        "SELECT e.id, FALSE FROM events e WHERE e.id = ANY($1)
         UNION ALL
         SELECT d.event_id, TRUE FROM deleted_events d
           JOIN UNNEST($1::text[], $2::text[]) AS u (id, pubkey) ON d.event_id = u.id AND d.pubkey = u.pubkey",
    )
    .bind(&ids)
    .bind(&pubkeys)
    .fetch_all(&mut *conn)
    .await?;
    let mut stored = std::collections::HashSet::new();
    let mut deleted = std::collections::HashSet::new();
    for row in &known {
        let id: String = row.try_get(0)?;
        if row.try_get::<bool, _>(1)? {
            deleted.insert(id);
        } else {
            stored.insert(id);
        }
    }
    let mut statuses = Vec::with_capacity(run.len());
    let mut fresh = Vec::new();
    for (request, id) in run.iter().zip(&ids) {
        // An id stored before, or earlier in this run, is a duplicate.
        statuses.push(if stored.contains(id) {
            SaveEventStatus::Rejected(RejectedReason::Duplicate)
        } else if deleted.contains(id) {
            SaveEventStatus::Rejected(RejectedReason::Deleted)
        } else {
            stored.insert(id.clone());
            fresh.push(*request);
            SaveEventStatus::Success
        });
    }
    if fresh.is_empty() {
        return Ok(statuses);
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tags = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for request in &fresh {
        let event = &request.event;
        let id = event.id.to_hex();
        let created_at = timestamp_i64(event.created_at);
        let kind = i64::from(event.kind.as_u16());
        for (name, value) in indexed_tags(event) {
            tags.0.push(id.clone());
            tags.1.push(name);
            tags.2.push(value);
            tags.3.push(created_at);
            tags.4.push(kind);
        }
        columns.0.push(id);
        columns.1.push(event.pubkey.to_hex());
        columns.2.push(created_at);
        columns.3.push(i64::from(event.kind.as_u16()));
        columns.4.push(request.json.as_str());
    }
    sqlx::query(
        "INSERT INTO events (id, pubkey, created_at, kind, json)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])",
    )
    .bind(&columns.0)
    .bind(&columns.1)
    .bind(&columns.2)
    .bind(&columns.3)
    .bind(&columns.4)
    .execute(&mut *conn)
    .await?;
    if !tags.0.is_empty() {
        sqlx::query(
            "INSERT INTO event_tags (event_id, name, value, created_at, kind)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&tags.0)
        .bind(&tags.1)
        .bind(&tags.2)
        .bind(&tags.3)
        .bind(&tags.4)
        .execute(&mut *conn)
        .await?;
    }
    for request in &fresh {
        shared.memo.note_stored(&request.event);
    }
    Ok(statuses)
}

/// Applies one save inside a transaction, as the SQLite writer's `save_in` does: duplicate and
/// deletion checks, replaceable/addressable replacement, the insert with its tag index, and the
/// NIP-09 effects of a deletion event.
async fn save_in(
    conn: &mut PgConnection,
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

    // Both checks in one round trip, against the tables: another node may have stored or
    // deleted this id a moment ago, before its notification reached this node's summaries.
    let known = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM events WHERE id = $1),
                EXISTS (SELECT 1 FROM deleted_events WHERE event_id = $1 AND pubkey = $2)",
    )
    .bind(&id)
    .bind(&pubkey)
    .fetch_one(&mut *conn)
    .await?;
    if known.try_get::<bool, _>(0)? {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Duplicate));
    }
    if known.try_get::<bool, _>(1)? {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Deleted));
    }

    let d_tag = address_d_tag(event);
    if let Some(d) = &d_tag {
        let deleted = sqlx::query(
            "SELECT 1 FROM deleted_addresses WHERE kind = $1 AND pubkey = $2 AND d_tag = $3 AND until >= $4",
        )
        .bind(kind)
        .bind(&pubkey)
        .bind(d)
        .bind(created_at)
        .fetch_optional(&mut *conn)
        .await?;
        if deleted.is_some() {
            return Ok(SaveEventStatus::Rejected(RejectedReason::Deleted));
        }
        let current =
            sqlx::query("SELECT id, created_at FROM events WHERE kind = $1 AND pubkey = $2 AND d_tag = $3")
                .bind(kind)
                .bind(&pubkey)
                .bind(d)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(row) = current {
            let current_id: String = row.try_get(0)?;
            let current_at: i64 = row.try_get(1)?;
            // NIP-01: newest wins; on equal timestamps the lowest id is kept.
            if crate::nip01::newer((current_at, current_id.as_str()), (created_at, id.as_str())) {
                return Ok(SaveEventStatus::Rejected(RejectedReason::Replaced));
            }
            delete_event_rows(conn, &current_id).await?;
        }
    }

    sqlx::query(
        "INSERT INTO events (id, pubkey, created_at, kind, d_tag, json) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&pubkey)
    .bind(created_at)
    .bind(kind)
    .bind(&d_tag)
    .bind(json)
    .execute(&mut *conn)
    .await?;
    shared.memo.note_stored(event);
    let (names, values): (Vec<&str>, Vec<&str>) = indexed_tags(event).unzip();
    if !names.is_empty() {
        // One round trip for every tag row.
        sqlx::query(
            "INSERT INTO event_tags (event_id, name, value, created_at, kind)
             SELECT $1, name, value, $2, $5 FROM UNNEST($3::text[], $4::text[]) AS t (name, value)
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(created_at)
        .bind(&names)
        .bind(&values)
        .bind(kind)
        .execute(&mut *conn)
        .await?;
    }

    if event.kind == Kind::EventDeletion {
        shared.tombstones.note(event);
        apply_deletion(conn, event).await?;
    }
    Ok(SaveEventStatus::Success)
}

/// Deletes an event and its tag rows.
/// Its tag rows are found through their `(name, value, created_at, event_id)` key, which the
/// event's own tags give (as in SQLite's writer): no index by event id to keep up on every
/// insert.
async fn delete_event_rows(conn: &mut PgConnection, id: &str) -> Result<(), StoreError> {
    let Some(row) = sqlx::query("DELETE FROM events WHERE id = $1 RETURNING json")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let json: String = row.try_get(0)?;
    if let Ok(event) = Event::from_json(&json) {
        let (names, values): (Vec<&str>, Vec<&str>) = indexed_tags(&event).unzip();
        sqlx::query(
            "DELETE FROM event_tags t USING UNNEST($1::text[], $2::text[]) AS k (name, value)
             WHERE t.name = k.name AND t.value = k.value AND t.created_at = $3 AND t.event_id = $4",
        )
        .bind(&names)
        .bind(&values)
        .bind(timestamp_i64(event.created_at))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// NIP-09, as the SQLite writer's `apply_deletion`.
async fn apply_deletion(conn: &mut PgConnection, deletion: &Event) -> Result<(), StoreError> {
    let author = deletion.pubkey.to_hex();
    let until = timestamp_i64(deletion.created_at);
    for tag in deletion.tags.iter() {
        let values = tag.as_slice();
        match (values.first().map(String::as_str), values.get(1)) {
            (Some("e"), Some(target)) if is_hex64(target) => {
                let stored = sqlx::query("SELECT pubkey, kind FROM events WHERE id = $1")
                    .bind(target)
                    .fetch_optional(&mut *conn)
                    .await?;
                let deletable = match stored {
                    None => true,
                    Some(row) => {
                        let pubkey: String = row.try_get(0)?;
                        let kind: i64 = row.try_get(1)?;
                        pubkey == author && kind != i64::from(Kind::EventDeletion.as_u16())
                    }
                };
                if deletable {
                    delete_event_rows(conn, target).await?;
                    sqlx::query("INSERT INTO deleted_events (event_id, pubkey) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(target)
                        .bind(&author)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            (Some("a"), Some(coordinate)) => {
                let Some((kind, pubkey, d_tag)) = split_coordinate(coordinate) else {
                    continue;
                };
                if pubkey != deletion.pubkey {
                    continue;
                }
                let doomed = sqlx::query(
                    "SELECT id FROM events WHERE kind = $1 AND pubkey = $2 AND d_tag = $3 AND created_at <= $4",
                )
                .bind(kind)
                .bind(&author)
                .bind(d_tag)
                .bind(until)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = doomed {
                    let doomed: String = row.try_get(0)?;
                    delete_event_rows(conn, &doomed).await?;
                }
                sqlx::query(
                    "INSERT INTO deleted_addresses (kind, pubkey, d_tag, until) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (kind, pubkey, d_tag) DO UPDATE SET until = GREATEST(deleted_addresses.until, excluded.until)",
                )
                .bind(kind)
                .bind(&author)
                .bind(d_tag)
                .bind(until)
                .execute(&mut *conn)
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}
