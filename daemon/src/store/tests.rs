//! The store against real databases: NIP-01 filters and ordering, replaceable and addressable
//! events, NIP-09 deletions, purgatory rows, and what survives closing and reopening. The suite
//! (`tests/cases.rs`) runs on SQLite files and on PostgreSQL, a fresh database per test on the
//! server `GRASPD_TEST_POSTGRES_URL` names (`.ci/postgres start` runs one). Without it the
//! PostgreSQL cases are skipped, with a message, except under CI, where that is a failure.

use std::collections::BTreeSet;

use nostr::event::FinalizeEvent;
use nostr::{Alphabet, Event, EventBuilder, EventId, Filter, Keys, Kind, SingleLetterTag, Tag, Timestamp};
use nostr_database::{DatabaseEventStatus, NostrDatabase, RejectedReason, SaveEventStatus};
use tempfile::TempDir;

use super::{Backend, PurgatoryRow, SqlDatabase, Store};

const ANNOUNCEMENT: u16 = 30617;
const DELETION: u16 = 5;

/// A fresh, empty database: a SQLite file in a directory that lives as long as this, or a new
/// PostgreSQL database (left to the throwaway server).
struct TestDb {
    url: String,
    _dir: Option<TempDir>,
}

/// A fresh database on `backend`; `None` (after saying so) when PostgreSQL is not available.
async fn temp_db(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            Some(TestDb {
                url: format!("sqlite://{}", dir.path().join("graspd.db").display()),
                _dir: Some(dir),
            })
        }
        Backend::Postgres => {
            let url = crate::testing::postgres_database().await?;
            Some(TestDb { url, _dir: None })
        }
    }
}

/// A store on a fresh database; the database lives as long as the returned guard.
async fn temp_store(backend: Backend) -> Option<(TestDb, Store)> {
    let db = temp_db(backend).await?;
    let store = Store::open(&db.url).await.expect("open store");
    Some((db, store))
}

fn event(keys: &Keys, kind: u16, created_at: u64, content: &str, tags: &[&[&str]]) -> Event {
    let tags = tags.iter().map(|t| Tag::parse(t.iter().copied()).expect("tag"));
    EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .custom_created_at(Timestamp::from(created_at))
        .finalize(keys)
        .expect("sign event")
}

/// A repository announcement at (30617, author, `d`).
fn announcement(keys: &Keys, d: &str, created_at: u64, content: &str) -> Event {
    event(keys, ANNOUNCEMENT, created_at, content, &[&["d", d]])
}

/// Two distinct events at the same address with the same `created_at`, lowest id first.
fn tied_pair(keys: &Keys, kind: u16, created_at: u64, tags: &[&[&str]]) -> (Event, Event) {
    let a = event(keys, kind, created_at, "one", tags);
    let b = event(keys, kind, created_at, "two", tags);
    assert_ne!(a.id, b.id, "distinct content gives distinct ids");
    if a.id < b.id { (a, b) } else { (b, a) }
}

fn coordinate(kind: u16, keys: &Keys, d: &str) -> String {
    format!("{kind}:{}:{d}", keys.public_key().to_hex())
}

async fn save(store: &Store, event: &Event) -> SaveEventStatus {
    store.save_event(event).await.expect("save event")
}

async fn ids_of(store: &Store, filter: Filter) -> Vec<EventId> {
    store
        .query(&filter)
        .await
        .expect("query")
        .iter()
        .map(|e| e.id)
        .collect()
}

fn tag(letter: Alphabet) -> SingleLetterTag {
    SingleLetterTag::lowercase(letter)
}

fn purgatory_row(event: &Event, identifier: &str, expires_at_ms: i64) -> PurgatoryRow {
    PurgatoryRow {
        event: event.clone(),
        identifier: identifier.to_owned(),
        received_at_ms: 1_000,
        expires_at_ms,
        source: "user".to_owned(),
    }
}

mod sqlite {
    use super::*;

    const BACKEND: Backend = Backend::Sqlite;

    include!("tests/cases.rs");

    /// With checkpoints every MiB, the WAL stays near the writer's backstop (2 MiB) however much
    /// is written: the background checkpoints and the writer's own let it start over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_near_twice_the_checkpoint_interval_under_sustained_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("graspd.db");
        let settings = crate::store::StoreSettings {
            wal_checkpoint_mib: 1,
        };
        let store = Store::open_with(&format!("sqlite://{}", path.display()), settings)
            .await
            .expect("open store");
        let keys = Keys::generate();
        let body = "x".repeat(3000);
        // ~9 MiB of rows alone, saved 100 at a time as concurrent clients would.
        for round in 0..30u64 {
            let events: Vec<Event> = (0..100u64)
                .map(|i| event(&keys, 1, 1_700_000_000 + round * 100 + i, &body, &[]))
                .collect();
            let saved = futures_util::future::join_all(events.iter().map(|e| store.save_event(e))).await;
            assert!(saved.iter().all(|s| s.as_ref().is_ok_and(|s| s.is_success())));
        }
        let wal = std::fs::metadata(dir.path().join("graspd.db-wal"))
            .expect("WAL")
            .len();
        assert!(wal < 6 * 1024 * 1024, "the WAL grew to {wal} bytes");
        let stored = ids_of(&store, Filter::new().kind(Kind::from(1u16)).limit(5000)).await;
        assert_eq!(stored.len(), 3000);
    }

    #[tokio::test]
    async fn an_unknown_database_url_is_refused() {
        let result = Store::open("mysql://localhost/graspd").await;
        assert!(matches!(result, Err(crate::store::StoreError::UnsupportedUrl(_))));
    }

    /// Migration 0004 gives the tag rows of a store written before it their event's kind.
    #[test]
    fn tag_rows_written_before_the_kind_column_get_their_events_kind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = rusqlite::Connection::open(dir.path().join("old.db")).expect("open");
        conn.execute_batch(include_str!("../../migrations/sqlite/0001_events.sql"))
            .expect("0001");
        conn.execute_batch(
            "INSERT INTO events (id, pubkey, created_at, kind, json) VALUES ('e1', 'p', 1, 1621, '{}'), ('e2', 'p', 2, 1618, '{}');
             INSERT INTO event_tags (event_id, name, value, created_at) VALUES ('e1', 'a', 'repo', 1), ('e2', 'a', 'repo', 2), ('e2', 'p', 'x', 2);",
        )
        .expect("old rows");
        conn.execute_batch(include_str!("../../migrations/sqlite/0004_tag_kind.sql"))
            .expect("0004");
        let mut rows = conn
            .prepare("SELECT event_id, name, kind FROM event_tags ORDER BY event_id, name")
            .expect("prepare");
        let rows: Vec<(String, String, i64)> = rows
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("e1".into(), "a".into(), 1621),
                ("e2".into(), "a".into(), 1618),
                ("e2".into(), "p".into(), 1618)
            ]
        );
    }

    /// The repository-scoped REQ walks the tag index in serving order: no temporary sort, no list of
    /// every match built first (what made it slow with many matches).
    #[tokio::test]
    async fn a_coordinate_filter_is_served_in_index_order() {
        let Some((_db, store)) = temp_store(BACKEND).await else {
            return;
        };
        let filter = Filter::new()
            .kinds([Kind::from(1621u16), Kind::from(1618u16)])
            .custom_tag(tag(Alphabet::A), "30617:ab:repo")
            .limit(10);
        let plan = store.query_plan(&filter).await.expect("plan");
        assert!(plan.contains("event_tags_by_value"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        assert!(!plan.contains("LIST SUBQUERY"), "{plan}");
    }

    /// A repository's announcements and states from every author are found through their own
    /// index, not by walking every event of the kind.
    #[tokio::test]
    async fn events_by_identifier_are_looked_up_in_their_index() {
        let Some((_db, store)) = temp_store(BACKEND).await else {
            return;
        };
        let crate::store::Pool::Sqlite(_, readers) = &store.pool else {
            panic!("a SQLite store");
        };
        let plan = readers
            .now(|conn| {
                let sql = format!("EXPLAIN QUERY PLAN {}", crate::store::BY_IDENTIFIER);
                let mut statement = conn.prepare(&sql)?;
                let steps =
                    statement.query_map(rusqlite::params![30617, "web"], |row| row.get::<_, String>(3))?;
                Ok(steps.collect::<Result<Vec<_>, _>>()?)
            })
            .expect("plan")
            .join("\n");
        assert!(plan.contains("events_by_identifier"), "{plan}");
    }
}

mod postgres {
    use super::*;

    const BACKEND: Backend = Backend::Postgres;

    include!("tests/cases.rs");
}
