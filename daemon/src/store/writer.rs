//! The single writer: group commit of event saves.
//!
//! Requests queue on a channel; the task takes everything that is waiting (up to `MAX_BATCH`),
//! applies the saves in arrival order inside one transaction on its own connection, commits once
//! and answers each request. Runs of plain events (not replaceable, addressable, ephemeral or
//! deletions: nothing in them depends on another event) are checked and inserted with a handful
//! of multi-row statements whatever their number; the others go one by one. If the batch
//! transaction fails, each save is retried alone so one bad event cannot fail its neighbours.

use nostr::{Event, Kind, PublicKey};
use nostr_database::{RejectedReason, SaveEventStatus};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashSet;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, address_d_tag, begin_write, timestamp_i64};

const MAX_BATCH: usize = 512;
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
    pub async fn load(pool: &SqlitePool) -> Result<Self, StoreError> {
        let tombstones = Self::default();
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
        Ok(tombstones)
    }

    fn note(&self, deletion: &Event) {
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

pub(super) struct SaveRequest {
    pub event: Event,
    pub reply: oneshot::Sender<Result<SaveEventStatus, StoreError>>,
}

pub(super) fn spawn(pool: SqlitePool, tombstones: Arc<Tombstones>) -> mpsc::Sender<SaveRequest> {
    let (tx, mut rx) = mpsc::channel::<SaveRequest>(4096);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            commit_batch(&pool, &tombstones, &mut batch).await;
        }
    });
    tx
}

async fn commit_batch(pool: &SqlitePool, tombstones: &Tombstones, batch: &mut Vec<SaveRequest>) {
    match try_batch(pool, tombstones, batch).await {
        Ok(statuses) => {
            for (request, status) in batch.drain(..).zip(statuses) {
                let _ = request.reply.send(Ok(status));
            }
        }
        Err(error) => {
            tracing::warn!(%error, events = batch.len(), "batch commit failed; saving one by one");
            for request in batch.drain(..) {
                let result = save_alone(pool, tombstones, &request.event).await;
                let _ = request.reply.send(result);
            }
        }
    }
}

async fn try_batch(
    pool: &SqlitePool,
    tombstones: &Tombstones,
    batch: &[SaveRequest],
) -> Result<Vec<SaveEventStatus>, StoreError> {
    let mut tx = begin_write(pool).await?;
    let mut statuses = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while let Some(first) = rest.first() {
        if is_plain(&first.event) {
            let run = rest.iter().take_while(|r| is_plain(&r.event)).count();
            let events: Vec<&Event> = rest[..run].iter().map(|r| &r.event).collect();
            statuses.extend(save_plain_run(&mut tx, &events, tombstones).await?);
            rest = &rest[run..];
        } else {
            statuses.push(save_in(&mut tx, tombstones, &first.event).await?);
            rest = &rest[1..];
        }
    }
    tx.commit().await?;
    Ok(statuses)
}

/// An event whose save depends on no other event's.
fn is_plain(event: &Event) -> bool {
    let kind = event.kind;
    !(kind.is_ephemeral() || kind.is_replaceable() || kind.is_addressable() || kind == Kind::EventDeletion)
}

/// Rows per multi-row statement: SQLite accepts 32766 bound parameters.
const ROWS_PER_STATEMENT: usize = 4000;

/// Saves a run of plain events with multi-row statements: one insert that reports which rows
/// were new (the rest are duplicates), one for their tags, and a tombstone check only when the
/// in-memory tombstones name one of the ids. Answers in input order.
async fn save_plain_run(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[&Event],
    tombstones: &Tombstones,
) -> Result<Vec<SaveEventStatus>, StoreError> {
    let ids: Vec<String> = events.iter().map(|e| e.id.to_hex()).collect();

    let suspects: Vec<&String> = ids.iter().filter(|id| tombstones.ids.contains(*id)).collect();
    let mut deleted = HashSet::new();
    for chunk in suspects.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT event_id, pubkey FROM deleted_events WHERE event_id IN (",
        );
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind((*id).clone());
        }
        q.push(")");
        for row in q.build().fetch_all(&mut **tx).await? {
            deleted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
        }
    }

    // Candidates: not deleted, first copy of each id in this run.
    let mut seen = HashSet::new();
    let candidates: Vec<(&Event, &str)> = events
        .iter()
        .zip(&ids)
        .filter(|(event, id)| {
            !deleted.contains(&((*id).clone(), event.pubkey.to_hex())) && seen.insert(id.as_str())
        })
        .map(|(event, id)| (*event, id.as_str()))
        .collect();
    let mut inserted = HashSet::new();
    for chunk in candidates.chunks(ROWS_PER_STATEMENT / 6) {
        let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, pubkey, created_at, kind, d_tag, json) ",
        );
        insert.push_values(chunk, |mut row, (event, id)| {
            row.push_bind(id.to_string())
                .push_bind(event.pubkey.to_hex())
                .push_bind(timestamp_i64(event.created_at))
                .push_bind(i64::from(event.kind.as_u16()))
                .push_bind(None::<String>)
                .push_bind(event.as_json());
        });
        insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
        for row in insert.build().fetch_all(&mut **tx).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }

    let tags: Vec<(&str, &str, &str, i64)> = candidates
        .iter()
        .filter(|(_, id)| inserted.contains(*id))
        .flat_map(|(event, id)| {
            let created_at = timestamp_i64(event.created_at);
            indexed_tags(event).map(move |(name, value)| (*id, name, value, created_at))
        })
        .collect();
    for chunk in tags.chunks(ROWS_PER_STATEMENT) {
        let mut insert =
            sqlx::QueryBuilder::<Sqlite>::new("INSERT INTO event_tags (event_id, name, value, created_at) ");
        insert.push_values(chunk, |mut row, (id, name, value, created_at)| {
            row.push_bind(*id)
                .push_bind(*name)
                .push_bind(*value)
                .push_bind(*created_at);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut **tx).await?;
    }

    let mut answered = HashSet::new();
    Ok(events
        .iter()
        .zip(&ids)
        .map(|(event, id)| {
            if deleted.contains(&(id.clone(), event.pubkey.to_hex())) {
                SaveEventStatus::Rejected(RejectedReason::Deleted)
            } else if inserted.contains(id) && answered.insert(id.as_str()) {
                SaveEventStatus::Success
            } else {
                SaveEventStatus::Rejected(RejectedReason::Duplicate)
            }
        })
        .collect())
}

/// The single-letter tags a filter can ask for: (name, first value).
fn indexed_tags(event: &Event) -> impl Iterator<Item = (&str, &str)> {
    event.tags.iter().filter_map(|tag| {
        let values = tag.as_slice();
        let name = values.first()?;
        let value = values.get(1)?;
        (name.chars().count() == 1 && value.len() <= MAX_INDEXED_TAG_VALUE)
            .then_some((name.as_str(), value.as_str()))
    })
}

async fn save_alone(
    pool: &SqlitePool,
    tombstones: &Tombstones,
    event: &Event,
) -> Result<SaveEventStatus, StoreError> {
    let mut tx = begin_write(pool).await?;
    let status = save_in(&mut tx, tombstones, event).await?;
    tx.commit().await?;
    Ok(status)
}

/// Applies one save inside a transaction: duplicate and deletion checks, replaceable/addressable
/// replacement, the insert with its tag index, and NIP-09 effects of a deletion event.
pub(super) async fn save_in(
    tx: &mut Transaction<'static, Sqlite>,
    tombstones: &Tombstones,
    event: &Event,
) -> Result<SaveEventStatus, StoreError> {
    if event.kind.is_ephemeral() {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Ephemeral));
    }
    let id = event.id.to_hex();
    let pubkey = event.pubkey.to_hex();
    let created_at = timestamp_i64(event.created_at);
    let kind = i64::from(event.kind.as_u16());

    let exists = sqlx::query("SELECT 1 FROM events WHERE id = ?")
        .bind(&id)
        .fetch_optional(&mut **tx)
        .await?;
    if exists.is_some() {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Duplicate));
    }
    let deleted = sqlx::query("SELECT 1 FROM deleted_events WHERE event_id = ? AND pubkey = ?")
        .bind(&id)
        .bind(&pubkey)
        .fetch_optional(&mut **tx)
        .await?;
    if deleted.is_some() {
        return Ok(SaveEventStatus::Rejected(RejectedReason::Deleted));
    }

    let d_tag = address_d_tag(event);
    if let Some(d) = &d_tag {
        let deleted = sqlx::query(
            "SELECT 1 FROM deleted_addresses WHERE kind = ? AND pubkey = ? AND d_tag = ? AND until >= ?",
        )
        .bind(kind)
        .bind(&pubkey)
        .bind(d)
        .bind(created_at)
        .fetch_optional(&mut **tx)
        .await?;
        if deleted.is_some() {
            return Ok(SaveEventStatus::Rejected(RejectedReason::Deleted));
        }
        let current =
            sqlx::query("SELECT id, created_at FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ?")
                .bind(kind)
                .bind(&pubkey)
                .bind(d)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(row) = current {
            let current_id: String = row.try_get(0)?;
            let current_at: i64 = row.try_get(1)?;
            // NIP-01: newest wins; on equal timestamps the lowest id is kept.
            if (current_at, std::cmp::Reverse(current_id.as_str()))
                > (created_at, std::cmp::Reverse(id.as_str()))
            {
                return Ok(SaveEventStatus::Rejected(RejectedReason::Replaced));
            }
            delete_event_rows(tx, &current_id).await?;
        }
    }

    sqlx::query("INSERT INTO events (id, pubkey, created_at, kind, d_tag, json) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&id)
        .bind(&pubkey)
        .bind(created_at)
        .bind(kind)
        .bind(d_tag)
        .bind(event.as_json())
        .execute(&mut **tx)
        .await?;
    insert_tags(tx, event, &id, created_at).await?;

    if event.kind == Kind::EventDeletion {
        tombstones.note(event);
        apply_deletion(tx, event).await?;
    }
    Ok(SaveEventStatus::Success)
}

async fn insert_tags(
    tx: &mut Transaction<'static, Sqlite>,
    event: &Event,
    id: &str,
    created_at: i64,
) -> Result<(), StoreError> {
    let indexed: Vec<(&str, &str)> = indexed_tags(event).collect();
    // SQLite allows 32766 bound parameters; four per row.
    for chunk in indexed.chunks(4000) {
        let mut insert =
            sqlx::QueryBuilder::<Sqlite>::new("INSERT INTO event_tags (event_id, name, value, created_at) ");
        insert.push_values(chunk, |mut row, (name, value)| {
            row.push_bind(id)
                .push_bind(*name)
                .push_bind(*value)
                .push_bind(created_at);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes an event and its tag rows.
pub(super) async fn delete_event_rows(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
) -> Result<(), StoreError> {
    let Some(row) = sqlx::query("SELECT json FROM events WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(());
    };
    // Tag rows are found through their (name, value, created_at, event_id) key: the event's own
    // tags say which.
    let json: String = row.try_get(0)?;
    if let Ok(event) = Event::from_json(&json) {
        let created_at = timestamp_i64(event.created_at);
        for (name, value) in indexed_tags(&event) {
            sqlx::query(
                "DELETE FROM event_tags WHERE name = ? AND value = ? AND created_at = ? AND event_id = ?",
            )
            .bind(name)
            .bind(value)
            .bind(created_at)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
    }
    sqlx::query("DELETE FROM events WHERE id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// NIP-09: a deletion removes the author's own events named by `e` tags and, for `a` tags, the
/// author's events at that address up to the deletion's `created_at`; tombstones keep them from
/// coming back.
async fn apply_deletion(tx: &mut Transaction<'static, Sqlite>, deletion: &Event) -> Result<(), StoreError> {
    let author = deletion.pubkey.to_hex();
    let until = timestamp_i64(deletion.created_at);
    for tag in deletion.tags.iter() {
        let values = tag.as_slice();
        match (values.first().map(String::as_str), values.get(1)) {
            (Some("e"), Some(target)) if is_hex64(target) => {
                let stored = sqlx::query("SELECT pubkey, kind FROM events WHERE id = ?")
                    .bind(target)
                    .fetch_optional(&mut **tx)
                    .await?;
                // Only the author may delete an event, and deletions are not deletable (NIP-09).
                // An id not stored yet is tombstoned for this author: if it arrives, it counts
                // as deleted only when this author wrote it.
                let deletable = match stored {
                    Some(row) => {
                        row.try_get::<String, _>(0)? == author
                            && row.try_get::<i64, _>(1)? != i64::from(Kind::EventDeletion.as_u16())
                    }
                    None => true,
                };
                if deletable {
                    delete_event_rows(tx, target).await?;
                    sqlx::query(
                        "INSERT INTO deleted_events (event_id, pubkey) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    )
                    .bind(target)
                    .bind(&author)
                    .execute(&mut **tx)
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
                // At most one event lives at an address.
                let doomed = sqlx::query(
                    "SELECT id FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ? AND created_at <= ?",
                )
                .bind(kind)
                .bind(&author)
                .bind(d_tag)
                .bind(until)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(row) = doomed {
                    delete_event_rows(tx, &row.try_get::<String, _>(0)?).await?;
                }
                sqlx::query(
                    "INSERT INTO deleted_addresses (kind, pubkey, d_tag, until) VALUES (?, ?, ?, ?)
                     ON CONFLICT (kind, pubkey, d_tag) DO UPDATE SET until = MAX(until, excluded.until)",
                )
                .bind(kind)
                .bind(&author)
                .bind(d_tag)
                .bind(until)
                .execute(&mut **tx)
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `<kind>:<pubkey-hex>:<d>` of a replaceable or addressable event.
pub(crate) fn split_coordinate(value: &str) -> Option<(i64, PublicKey, &str)> {
    let mut parts = value.splitn(3, ':');
    let kind: u16 = parts.next()?.parse().ok()?;
    let pubkey = PublicKey::from_hex(parts.next()?).ok()?;
    let d_tag = parts.next().unwrap_or("");
    let kind_value = Kind::from(kind);
    (kind_value.is_replaceable() || kind_value.is_addressable()).then_some((i64::from(kind), pubkey, d_tag))
}
