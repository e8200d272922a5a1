//! Several graspd nodes on one PostgreSQL database: what one node's writes tell the others.
//!
//! Every write that changes what another node holds in memory sends a notification on the
//! `graspd` channel, inside its own transaction (PostgreSQL delivers it only if the transaction
//! commits): the ids of newly stored events (`E`), an identifier whose purgatory rows or
//! placeholders changed (`P`), an event that left purgatory (`R`). Each node listens
//! ([`spawn_listener`]), skips its own notifications, brings its id filters, tombstones and
//! address cache up to date, and hands the rest to the daemon as [`Change`]s (purgatory indexes,
//! live subscribers). A lost connection means notifications may have been missed: the listener
//! reports [`Change::Resync`] once it is back, and the daemon reloads what it holds.
//!
//! Notifications arrive a moment after the commit. Decisions must not depend on that moment:
//! the writers' counter (`write_seq`, moved by every event transaction of any node that can
//! change what an address holds: replaceable, addressable and deletion events, releases,
//! operator deletions) is read when
//! a node takes an identifier's lock ([`Store::catch_up`](super::Store::catch_up)); if another
//! node wrote since, the address cache is dropped before anything is read from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use nostr::{Event, EventId};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{PgConnection, Row};
use tokio::sync::broadcast;

use super::StoreError;
use super::memo::Memo;
use super::writer::{Tombstones, changes_addresses};

/// The notification channel.
const CHANNEL: &str = "graspd";

/// A notification's payload must stay under PostgreSQL's 8000 bytes: ids go in chunks.
const IDS_PER_NOTIFICATION: usize = 100;

/// What another node changed, for the parts of the daemon that hold it in memory.
#[derive(Debug, Clone)]
pub enum Change {
    /// Events another node stored (saved or released), to forward to live subscribers and to
    /// take out of purgatory.
    Stored(Vec<Event>),
    /// The purgatory rows or placeholders of this identifier changed.
    Identifier(String),
    /// This event left purgatory (expired, deleted, refused) on another node.
    Forgotten(EventId),
    /// Notifications may have been missed (the listening connection was lost): reload.
    Resync,
}

/// This node's part in the cluster, shared by the store's handle, its writer and its listener.
#[derive(Debug)]
pub(super) struct Cluster {
    pub node: String,
    /// The writers' counter as this node last saw it.
    seen: AtomicI64,
    changes: broadcast::Sender<Change>,
}

impl Cluster {
    pub fn new(node: String) -> Self {
        Self {
            node,
            seen: AtomicI64::new(0),
            changes: broadcast::channel(1024).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Records the counter `n` this node's own transaction moved it to: if it moved by more than
    /// one, another node wrote in between, and the address cache is dropped.
    pub fn wrote(&self, n: i64, memo: &Memo) {
        if self.seen.swap(n, Ordering::AcqRel) != n - 1 {
            memo.addresses.invalidate();
        }
    }

    /// Records the counter `n` just read: if it moved, the address cache is dropped.
    pub fn saw(&self, n: i64, memo: &Memo) {
        if self.seen.swap(n, Ordering::AcqRel) != n {
            memo.addresses.invalidate();
        }
    }
}

/// Moves the writers' counter inside the caller's transaction; returns its new value.
pub(super) async fn bump(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query("UPDATE write_seq SET n = n + 1 RETURNING n")
        .fetch_one(conn)
        .await?
        .try_get(0)?)
}

/// The writers' counter.
pub(super) async fn read_seq(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT n FROM write_seq")
        .fetch_one(pool)
        .await?
        .try_get(0)?)
}

/// Tells the other nodes, when the caller's transaction commits, that these events are stored.
pub(super) async fn notify_stored(
    conn: &mut PgConnection,
    node: &str,
    ids: impl Iterator<Item = EventId>,
) -> Result<(), StoreError> {
    let ids: Vec<String> = ids.map(|id| id.to_hex()).collect();
    for chunk in ids.chunks(IDS_PER_NOTIFICATION) {
        notify(conn, &format!("{node}\tE\t{}", chunk.join(","))).await?;
    }
    Ok(())
}

/// Tells the other nodes that `identifier`'s purgatory rows or placeholders changed.
pub(super) async fn notify_identifier(
    conn: &mut PgConnection,
    node: &str,
    identifier: &str,
) -> Result<(), StoreError> {
    notify(conn, &format!("{node}\tP\t{identifier}")).await
}

/// Tells the other nodes that `id` left purgatory.
pub(super) async fn notify_forgotten(
    conn: &mut PgConnection,
    node: &str,
    id: &EventId,
) -> Result<(), StoreError> {
    notify(conn, &format!("{node}\tR\t{}", id.to_hex())).await
}

async fn notify(conn: &mut PgConnection, payload: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a notification says, once parsed.
#[derive(Debug, PartialEq, Eq)]
enum Note<'a> {
    Stored(Vec<EventId>),
    Identifier(&'a str),
    Forgotten(EventId),
}

/// Reads a payload; `None` for this node's own notifications and for anything unreadable.
fn parse<'a>(payload: &'a str, own_node: &str) -> Option<Note<'a>> {
    let mut fields = payload.splitn(3, '\t');
    let (node, kind, arg) = (fields.next()?, fields.next()?, fields.next()?);
    if node == own_node {
        return None;
    }
    match kind {
        "E" => Some(Note::Stored(
            arg.split(',')
                .filter_map(|id| EventId::from_hex(id).ok())
                .collect(),
        )),
        "P" => Some(Note::Identifier(arg)),
        "R" => EventId::from_hex(arg).ok().map(Note::Forgotten),
        _ => None,
    }
}

/// Listens for the other nodes' notifications until the pool closes. Keeps the id filters,
/// tombstones and address cache right, then passes each change on.
pub(super) fn spawn_listener(
    pool: PgPool,
    cluster: Arc<Cluster>,
    memo: Arc<Memo>,
    tombstones: Arc<Tombstones>,
) {
    tokio::spawn(async move {
        let mut listener = loop {
            match listen(&pool).await {
                Ok(listener) => break listener,
                Err(error) if pool.is_closed() => {
                    tracing::debug!(%error, "store closed before listening");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other nodes' changes; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Some(note) = parse(notification.payload(), &cluster.node) else {
                        continue;
                    };
                    let change = match note {
                        Note::Stored(ids) => match stored(&pool, &ids).await {
                            Ok(events) => {
                                for event in &events {
                                    memo.note_stored(event);
                                    if event.kind == nostr::Kind::EventDeletion {
                                        tombstones.note(event);
                                    }
                                }
                                if events.iter().any(changes_addresses) {
                                    memo.addresses.invalidate();
                                }
                                Change::Stored(events)
                            }
                            Err(error) => {
                                tracing::warn!(%error, "cannot load events another node stored; reloading");
                                Change::Resync
                            }
                        },
                        Note::Identifier(identifier) => Change::Identifier(identifier.to_owned()),
                        Note::Forgotten(id) => Change::Forgotten(id),
                    };
                    let _ = cluster.changes.send(change);
                }
                // The connection was lost and is back: what was sent meanwhile is gone.
                Ok(None) => {
                    tracing::warn!("lost the connection that hears other nodes' changes; reloading");
                    memo.addresses.invalidate();
                    let _ = cluster.changes.send(Change::Resync);
                }
                Err(error) if pool.is_closed() => {
                    tracing::debug!(%error, "store closed; no longer listening");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "listening for other nodes' changes failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The stored events among `ids` (one may already be gone again).
async fn stored(pool: &PgPool, ids: &[EventId]) -> Result<Vec<Event>, StoreError> {
    let ids: Vec<String> = ids.iter().map(EventId::to_hex).collect();
    let rows = sqlx::query("SELECT json FROM events WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|row| super::parse_json_column(row, 0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_read_and_own_ones_skipped() {
        let id = EventId::all_zeros();
        let two = format!("{},{}", id.to_hex(), id.to_hex());
        assert_eq!(
            parse(&format!("b\tE\t{two}"), "a"),
            Some(Note::Stored(vec![id, id]))
        );
        assert_eq!(parse(&format!("a\tE\t{two}"), "a"), None, "own");
        assert_eq!(parse("b\tP\trepo", "a"), Some(Note::Identifier("repo")));
        assert_eq!(
            parse(&format!("b\tR\t{}", id.to_hex()), "a"),
            Some(Note::Forgotten(id))
        );
        assert_eq!(parse("b\tR\tnot-hex", "a"), None);
        assert_eq!(parse("b\tZ\tx", "a"), None);
        assert_eq!(parse("garbage", "a"), None);
    }
}
