//! Store start-up at scale (not a test): `cargo bench -p graspd --bench startup`.
//!
//! Builds a SQLite store of 1,000,000 events (a NIP-34 mix written straight into the tables:
//! issues and comments tagging repositories and root events, states and announcements at
//! addresses), then times `Store::open` on it: migrations, the tombstones and the in-memory id
//! filters, which are rebuilt from the tables at every start. Target (issue 19): ≤ 1 s per
//! million events. `GRASP_STARTUP_EVENTS` changes the count.

use std::time::Instant;

use rusqlite::params;

fn main() {
    let events: usize = std::env::var("GRASP_STARTUP_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("graspd.db");
    let url = format!("sqlite://{}", path.display());
    // The schema, from the store itself.
    runtime.block_on(async {
        graspd::store::Store::open(&url).await.expect("create");
    });
    let started = Instant::now();
    fill(&path, events);
    println!(
        "built a store of {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let store = runtime.block_on(graspd::store::Store::open(&url)).expect("open");
        times.push(started.elapsed().as_secs_f64());
        let bytes = store.filter_bytes();
        drop(store);
        println!(
            "Store::open over {events} events: {:.2} s (id filters {:.1} MiB)",
            times.last().copied().unwrap_or_default(),
            bytes as f64 / (1 << 20) as f64
        );
    }
    times.sort_by(f64::total_cmp);
    let per_million = times[1] / (events as f64 / 1e6);
    println!(
        "start-up: median {:.2} s = {per_million:.2} s per million events; target <= 1 s per million, ratio {:.2}",
        times[1], per_million
    );
    upgrade_to_tag_kinds(&path, &dir.path().join("before-0004.db"), events);
}

/// The one-off upgrade of migration 0004 (each tag row gets its event's kind), timed on a store
/// of the same rows written before it: what the first start after that upgrade adds.
fn upgrade_to_tag_kinds(filled: &std::path::Path, old: &std::path::Path, events: usize) {
    let conn = rusqlite::Connection::open(old).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .expect("pragmas");
    conn.execute_batch(include_str!("../migrations/sqlite/0001_events.sql"))
        .expect("0001");
    conn.execute("ATTACH ?1 AS filled", [filled.display().to_string()])
        .expect("attach");
    conn.execute_batch(
        "INSERT INTO events SELECT * FROM filled.events;
         INSERT INTO event_tags (event_id, name, value, created_at)
             SELECT event_id, name, value, created_at FROM filled.event_tags;
         DETACH filled;",
    )
    .expect("copy the rows");
    let started = Instant::now();
    conn.execute_batch(&format!(
        "BEGIN; {} COMMIT;",
        include_str!("../migrations/sqlite/0004_tag_kind.sql")
    ))
    .expect("migration 0004");
    let took = started.elapsed().as_secs_f64();
    println!(
        "upgrade: migration 0004 over {events} events: {took:.1} s = {:.1} s per million events (once)",
        took / (events as f64 / 1e6)
    );
}

/// Rows as the store's writer writes them: the event, its address for replaceable and
/// addressable kinds, and its single-letter tags. Ids are distinct 64-hex strings; the JSON is a
/// placeholder the start-up never parses.
fn fill(path: &std::path::Path, events: usize) {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .expect("pragmas");
    let tx = conn.transaction().expect("transaction");
    {
        let mut event = tx
            .prepare(
                "INSERT INTO events (id, pubkey, created_at, kind, d_tag, json) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .expect("prepare");
        let mut tag = tx
            .prepare(
                "INSERT INTO event_tags (event_id, name, value, created_at, kind) VALUES (?, ?, ?, ?, ?)",
            )
            .expect("prepare");
        for i in 0..events {
            let id = format!("{:064x}", (i as u128) * 0x9e37_79b9_7f4a_7c15 + 1);
            let pubkey = format!("{:064x}", i % 5_000 + 1);
            let created_at = 1_700_000_000 + i as i64;
            let repo = format!("30617:{:064x}:repo-{}", i % 10_000 + 1, i % 10_000);
            let (kind, d_tag): (i64, Option<String>) = match i % 50 {
                // Each address once (a store keeps the newest event of an address only).
                0 => (30617, Some(format!("repo-{i}"))),
                1 => (30618, Some(format!("repo-{i}"))),
                2..=20 => (1621, None),
                _ => (1111, None),
            };
            event
                .execute(params![id, pubkey, created_at, kind, d_tag, "{}"])
                .expect("event");
            tag.execute(params![id, "a", repo, created_at, kind])
                .expect("tag");
            if kind == 1111 {
                let root = format!("{:064x}", ((i / 7) as u128) * 0x9e37_79b9_7f4a_7c15 + 1);
                tag.execute(params![id, "E", root, created_at, kind])
                    .expect("tag");
                tag.execute(params![id, "e", root, created_at, kind])
                    .expect("tag");
                tag.execute(params![id, "p", pubkey, created_at, kind])
                    .expect("tag");
            }
        }
    }
    tx.commit().expect("commit");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
}
