//! The single writer: group commit of event saves.
//!
//! Requests queue on a channel; the task takes everything that is waiting (up to `MAX_BATCH`),
//! applies each save in arrival order inside one transaction, commits once and answers each
//! request. If the batch transaction fails, each save is retried alone so one bad event cannot
//! fail its neighbours.

use nostr::{Event, Kind, PublicKey};
use nostr_database::{RejectedReason, SaveEventStatus};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, address_d_tag, timestamp_i64};

const MAX_BATCH: usize = 512;
/// Tag values longer than this are not indexed (no filter asks for them; they only bloat the
/// index).
const MAX_INDEXED_TAG_VALUE: usize = 1024;

pub(super) struct SaveRequest {
    pub event: Event,
    pub reply: oneshot::Sender<Result<SaveEventStatus, StoreError>>,
}

pub(super) fn spawn(pool: SqlitePool) -> mpsc::Sender<SaveRequest> {
    let (tx, mut rx) = mpsc::channel::<SaveRequest>(4096);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            commit_batch(&pool, &mut batch).await;
        }
    });
    tx
}

async fn commit_batch(pool: &SqlitePool, batch: &mut Vec<SaveRequest>) {
    match try_batch(pool, batch).await {
        Ok(statuses) => {
            for (request, status) in batch.drain(..).zip(statuses) {
                let _ = request.reply.send(Ok(status));
            }
        }
        Err(error) => {
            tracing::warn!(%error, events = batch.len(), "batch commit failed; saving one by one");
            for request in batch.drain(..) {
                let result = save_alone(pool, &request.event).await;
                let _ = request.reply.send(result);
            }
        }
    }
}

async fn try_batch(pool: &SqlitePool, batch: &[SaveRequest]) -> Result<Vec<SaveEventStatus>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut statuses = Vec::with_capacity(batch.len());
    for request in batch {
        statuses.push(save_in(&mut tx, &request.event).await?);
    }
    tx.commit().await?;
    Ok(statuses)
}

async fn save_alone(pool: &SqlitePool, event: &Event) -> Result<SaveEventStatus, StoreError> {
    let mut tx = pool.begin().await?;
    let status = save_in(&mut tx, event).await?;
    tx.commit().await?;
    Ok(status)
}

/// Applies one save inside a transaction: duplicate and deletion checks, replaceable/addressable
/// replacement, the insert with its tag index, and NIP-09 effects of a deletion event.
pub(super) async fn save_in(
    tx: &mut Transaction<'static, Sqlite>,
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
    let indexed: Vec<(&str, &str)> = event
        .tags
        .iter()
        .filter_map(|tag| {
            let values = tag.as_slice();
            let name = values.first()?;
            let value = values.get(1)?;
            (name.chars().count() == 1 && value.len() <= MAX_INDEXED_TAG_VALUE)
                .then_some((name.as_str(), value.as_str()))
        })
        .collect();
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
    sqlx::query("DELETE FROM event_tags WHERE event_id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
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
                let owned = sqlx::query("SELECT kind FROM events WHERE id = ? AND pubkey = ?")
                    .bind(target)
                    .bind(&author)
                    .fetch_optional(&mut **tx)
                    .await?;
                // Deletions are not deletable (NIP-09).
                let deletable = match owned {
                    Some(row) => row.try_get::<i64, _>(0)? != i64::from(Kind::EventDeletion.as_u16()),
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
                sqlx::query(
                    "DELETE FROM event_tags WHERE event_id IN
                       (SELECT id FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ? AND created_at <= ?)",
                )
                .bind(kind)
                .bind(&author)
                .bind(d_tag)
                .bind(until)
                .execute(&mut **tx)
                .await?;
                sqlx::query(
                    "DELETE FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ? AND created_at <= ?",
                )
                .bind(kind)
                .bind(&author)
                .bind(d_tag)
                .bind(until)
                .execute(&mut **tx)
                .await?;
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
