//! Reads at a big host's scale (not a test): `cargo bench -p graspd --bench reads`.
//!
//! Builds a SQLite store of 1,000,000 events shaped like a NIP-34 host's (written straight into
//! the tables, each event real JSON with its real id; the signatures are not checked on reading):
//! 10,000 repositories (announcements and states), five of them with 50,000 events each, the rest
//! ~73 each; issues, pull requests, NIP-22 comments (`E`/`e`/`A`/`K`/`p` tags, a third of a big
//! repository's comments on one busy thread), and reactions; one prolific author. Then starts the
//! release `graspd` on it and times the REQs clients send, REQ to EOSE, over one websocket:
//! by `#a` coordinate (+ kinds), by `#E`/`#e` root, by author + kind, by `#d`, by ids, and a
//! `since`/`until` window, each at `limit` 10, 100 and 500. Prints p50/p99 per REQ, the ratio to
//! the targets (`limit` 100: p50 ≤ 1 ms, p99 ≤ 5 ms), and SQLite's plan for each filter.
//! Then accepted ingest into that store (40 connections of 500 issues, as the relay bench sends
//! into an empty one) against the verify-only floor taken just before.
//! `GRASP_READS_EVENTS` changes the count, `GRASP_READS_REQS` the REQs per line (default 200),
//! `GRASP_READS_INGEST_EACH` the issues a connection sends (default 500);
//! `GRASP_READS_COMPARE=<another graspd executable>` times that build too, each build on its own
//! compacted copy of the store (`GRASP_READS_COMPARE_MIGRATIONS=<n>`: that build knows only the
//! first n migrations).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nostr::event::FinalizeEvent;
use nostr::{Event, EventId, Keys, Kind, PublicKey, Tag, Timestamp};
use rusqlite::params;
use serde_json::{Value, json};
use support::Server;
use support::ingest::{Spent, StoreFloor, ingest, signed_batches, store_floor, verify_rate};
use tokio_tungstenite::tungstenite::Message;

const REPOSITORIES: usize = 10_000;
const BIG: usize = 5;
const BIG_EVENTS: usize = 50_000;
const START: u64 = 1_700_000_000;

fn main() {
    let events: usize = env_or("GRASP_READS_EVENTS", 1_000_000);
    let reqs: usize = env_or("GRASP_READS_REQS", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("graspd.db");
    let url = format!("sqlite://{}", path.display());
    runtime.block_on(async {
        graspd::store::Store::open(&url).await.expect("create");
    });
    let started = Instant::now();
    let host = Host::new();
    let probes = fill(&path, &host, events);
    println!(
        "built a store of {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // An A/B against another build, in the same run: each on its own compacted copy of the
    // store, so neither gets a better laid-out file.
    let mut runs = vec![(
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_graspd")),
        url.clone(),
    )];
    if let Some(other) = std::env::var_os("GRASP_READS_COMPARE") {
        let known = std::env::var("GRASP_READS_COMPARE_MIGRATIONS").ok();
        let (this, that) = (dir.path().join("this.db"), dir.path().join("that.db"));
        compacted_copy(&path, &this, None);
        compacted_copy(&path, &that, known.as_deref());
        runs = vec![
            (runs[0].0.clone(), format!("sqlite://{}", this.display())),
            (other.into(), format!("sqlite://{}", that.display())),
        ];
    }
    for (binary, url) in &runs {
        println!("\ngraspd: {}", binary.display());
        runtime.block_on(measure(url, &probes, reqs, binary, events));
    }
    runtime.block_on(print_plans(&url, probes.lines()));
}

/// A compacted copy of the store (`VACUUM INTO`). For an older build, sqlx refuses a database
/// that records migrations it does not know, so the rows of those past `known` (the number of
/// migrations that build has) are removed from the copy's `_sqlx_migrations`; what they added
/// stays, unused by that build.
fn compacted_copy(store: &std::path::Path, copy: &std::path::Path, known: Option<&str>) {
    let conn = rusqlite::Connection::open(store).expect("open the store");
    conn.execute("VACUUM INTO ?", [copy.display().to_string()])
        .expect("copy the store");
    if let Some(known) = known {
        let known: i64 = known.parse().expect("GRASP_READS_COMPARE_MIGRATIONS: a number");
        rusqlite::Connection::open(copy)
            .expect("open the copy")
            .execute("DELETE FROM _sqlx_migrations WHERE version > ?", [known])
            .expect("forget newer migrations");
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*, seeded: the same store every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// The people of the host: repository owners and participants (real keys, since reading an event
/// checks that its pubkey is a point), and one valid-looking signature.
struct Host {
    owners: Vec<PublicKey>,
    participants: Vec<PublicKey>,
    sig: nostr::secp256k1::schnorr::Signature,
}

impl Host {
    fn new() -> Self {
        let keys = |n: usize| (0..n).map(|_| Keys::generate().public_key()).collect::<Vec<_>>();
        let signer = Keys::generate();
        let sig = nostr::EventBuilder::text_note("sig")
            .finalize(&signer)
            .expect("sign")
            .sig;
        Self {
            owners: keys(2_000),
            participants: keys(20_000),
            sig,
        }
    }

    fn owner(&self, repo: usize) -> PublicKey {
        self.owners[repo % self.owners.len()]
    }

    fn coordinate(&self, repo: usize) -> String {
        format!("30617:{}:repo-{repo}", self.owner(repo).to_hex())
    }
}

/// What the REQs ask for: a big repository, its busy thread's root, the prolific author, a small
/// repository, ids, and the time span of the store.
struct Probes {
    big: String,
    small: String,
    root: String,
    author: String,
    identifier: String,
    ids: Vec<String>,
    last: u64,
}

/// Writes `events` events as the store's writer does: the event row (its address for
/// replaceable and addressable kinds) and (name, first value) of every single-letter tag.
fn fill(path: &std::path::Path, host: &Host, events: usize) -> Probes {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    // A page cache that holds the indexes: inserts at random ids otherwise read pages from disk.
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -2000000;")
        .expect("pragmas");
    let tx = conn.transaction().expect("transaction");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Per repository: its first issue (a busy thread in a big one) and its latest few.
    let mut busy_root: Vec<Option<EventId>> = vec![None; REPOSITORIES];
    let mut recent_roots: Vec<Vec<EventId>> = vec![Vec::new(); REPOSITORIES];
    let mut ids = Vec::new();
    let prolific = host.participants[0];
    let big_total = (BIG * BIG_EVENTS).min(events / 4);
    {
        let mut insert_event = tx
            .prepare(
                "INSERT INTO events (id, pubkey, created_at, kind, d_tag, json) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .expect("prepare");
        let mut insert_tag = tx
            .prepare(
                "INSERT OR IGNORE INTO event_tags (event_id, name, value, created_at, kind) VALUES (?, ?, ?, ?, ?)",
            )
            .expect("prepare");
        for i in 0..events {
            let created_at = START + i as u64 * 60;
            let (repo, kind) = if i < 2 * REPOSITORIES {
                (i % REPOSITORIES, if i < REPOSITORIES { 30617 } else { 30618 })
            } else if i % 4 == 0 && i / 4 < big_total {
                (rng.below(BIG), kind_of(rng.below(100)))
            } else {
                (BIG + rng.below(REPOSITORIES - BIG), kind_of(rng.below(100)))
            };
            let coordinate = host.coordinate(repo);
            let author = match kind {
                30617 | 30618 => host.owner(repo),
                _ if rng.below(10) == 0 => prolific,
                _ => host.participants[rng.below(host.participants.len())],
            };
            let owner = host.owner(repo).to_hex();
            let mut tags: Vec<Vec<String>> = Vec::new();
            let mut content = String::new();
            match kind {
                30617 => {
                    tags.push(vec!["d".into(), format!("repo-{repo}")]);
                    tags.push(vec!["name".into(), format!("Repository {repo}")]);
                    tags.push(vec!["clone".into(), format!("https://git.example/{repo}.git")]);
                    tags.push(vec!["relays".into(), "wss://git.example".into()]);
                }
                30618 => {
                    tags.push(vec!["d".into(), format!("repo-{repo}")]);
                    tags.push(vec!["refs/heads/main".into(), format!("{:040x}", i)]);
                    tags.push(vec!["HEAD".into(), "ref: refs/heads/main".into()]);
                }
                1621 | 1618 => {
                    tags.push(vec!["a".into(), coordinate.clone()]);
                    tags.push(vec!["p".into(), owner.clone()]);
                    tags.push(vec!["subject".into(), format!("change {i}")]);
                    if kind == 1618 {
                        tags.push(vec!["c".into(), format!("{:040x}", i)]);
                    }
                    content = format!("Please look at change {i}: it fixes the thing.");
                }
                1111 => {
                    let root = match busy_root[repo] {
                        Some(root) if repo < BIG && rng.below(3) == 0 => Some(root),
                        _ => recent_roots[repo].last().copied(),
                    };
                    if let Some(root) = root {
                        let root = root.to_hex();
                        tags.push(vec!["E".into(), root.clone(), String::new(), owner.clone()]);
                        tags.push(vec!["K".into(), "1621".into()]);
                        tags.push(vec!["e".into(), root, String::new(), owner.clone()]);
                        tags.push(vec!["k".into(), "1621".into()]);
                    }
                    tags.push(vec!["A".into(), coordinate.clone()]);
                    tags.push(vec!["p".into(), owner.clone()]);
                    content = format!("Comment {i}: agreed, with one question.");
                }
                _ => {
                    if let Some(root) = recent_roots[repo].last() {
                        tags.push(vec!["e".into(), root.to_hex()]);
                    }
                    tags.push(vec!["p".into(), owner.clone()]);
                    content = "+".into();
                }
            }
            let event = build(host, author, created_at, kind, tags, content);
            if kind == 1621 {
                busy_root[repo].get_or_insert(event.id);
                let recent = &mut recent_roots[repo];
                recent.push(event.id);
                if recent.len() > 8 {
                    recent.remove(0);
                }
            }
            let id = event.id.to_hex();
            if i % 997 == 0 && ids.len() < 500 {
                ids.push(id.clone());
            }
            let d_tag = event.tags.identifier();
            let json = serde_json::to_string(&event).expect("json");
            insert_event
                .execute(params![
                    id,
                    author.to_hex(),
                    created_at as i64,
                    i64::from(kind),
                    d_tag,
                    json
                ])
                .expect("event");
            for tag in event.tags.iter() {
                let fields = tag.as_slice();
                if let (Some(name), Some(value)) = (fields.first(), fields.get(1))
                    && name.len() == 1
                {
                    insert_tag
                        .execute(params![id, name, value, created_at as i64, i64::from(kind)])
                        .expect("tag");
                }
            }
        }
    }
    tx.commit().expect("commit");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
        .expect("checkpoint");
    Probes {
        big: host.coordinate(0),
        small: host.coordinate(BIG + 17),
        root: busy_root[0].map(|id| id.to_hex()).unwrap_or_default(),
        author: prolific.to_hex(),
        identifier: format!("repo-{}", REPOSITORIES / 2),
        ids,
        last: START + events as u64 * 60,
    }
}

/// Issues 20%, pull requests 5%, comments 70%, reactions 5%.
fn kind_of(roll: usize) -> u16 {
    match roll {
        0..20 => 1621,
        20..25 => 1618,
        25..95 => 1111,
        _ => 7,
    }
}

fn build(
    host: &Host,
    author: PublicKey,
    created_at: u64,
    kind: u16,
    tags: Vec<Vec<String>>,
    content: String,
) -> Event {
    let tags = nostr::Tags::from_list(
        tags.into_iter()
            .map(|fields| Tag::parse(fields).expect("tag"))
            .collect(),
    );
    let created_at = Timestamp::from(created_at);
    let kind = Kind::from(kind);
    let id = EventId::new(&author, &created_at, &kind, &tags, &content);
    Event::new(id, author, created_at, kind, tags, content, host.sig)
}

/// A REQ's filter for a given `limit`.
type FilterAt<'a> = Box<dyn Fn(usize) -> Value + 'a>;

impl Probes {
    /// The REQs the bench times, by name, each a filter at a given limit.
    fn lines(&self) -> Vec<(&'static str, FilterAt<'_>)> {
        let window = (self.last - 30 * 24 * 3600, self.last - 29 * 24 * 3600);
        vec![
            (
                "#a big repository, kinds [1621]",
                Box::new(|n| json!({"kinds": [1621], "#a": [self.big], "limit": n})),
            ),
            (
                "#a big repository, kinds [1618]",
                Box::new(|n| json!({"kinds": [1618], "#a": [self.big], "limit": n})),
            ),
            (
                "#a small repository, kinds [1621, 1618, 1111]",
                Box::new(|n| json!({"kinds": [1621, 1618, 1111], "#a": [self.small], "limit": n})),
            ),
            (
                "#E busy root, kinds [1111]",
                Box::new(|n| json!({"kinds": [1111], "#E": [self.root], "limit": n})),
            ),
            (
                "#e busy root",
                Box::new(|n| json!({"#e": [self.root], "limit": n})),
            ),
            (
                "authors [prolific], kinds [1111]",
                Box::new(|n| json!({"authors": [self.author], "kinds": [1111], "limit": n})),
            ),
            (
                "#d [identifier], kinds [30617, 30618]",
                Box::new(|n| json!({"kinds": [30617, 30618], "#d": [self.identifier], "limit": n})),
            ),
            (
                "ids (as many as the limit)",
                Box::new(|n| json!({"ids": self.ids.iter().take(n).collect::<Vec<_>>()})),
            ),
            (
                "kinds [1621], one day a month ago",
                Box::new(move |n| json!({"kinds": [1621], "since": window.0, "until": window.1, "limit": n})),
            ),
        ]
    }
}

async fn measure(url: &str, probes: &Probes, reqs: usize, binary: &std::path::Path, stored: usize) {
    // The store-only floor goes first, while no daemon holds the store; its issues are on the
    // repository the ingest below announces, so the store grows by the same kind of events.
    let owner = Keys::generate();
    let store = store_floor(url, &ingest_issues(&owner, "saved issue"), AT_ONCE).await;
    let server = Server::start_binary(
        binary,
        &[
            "--database-url",
            url,
            "--log",
            "warn",
            "--max-filter-limit",
            "5000",
            "--event-burst",
            "100000000",
            "--events-per-minute",
            "100000000",
        ],
    );
    // Without Nagle's algorithm, as clients that wait for answers connect.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(server.ws_url(), None, true)
        .await
        .expect("connect");
    let lines = probes.lines();
    println!("REQ to EOSE over one websocket, {reqs} REQs a line (after 20 to warm up):");
    println!("| REQ | limit | events | p50 (ms) | p99 (ms) | of which the client's parsing (ms) |");
    println!("|---|---|---|---|---|---|");
    let mut worst: (f64, f64) = (0.0, 0.0);
    for (name, filter) in &lines {
        for limit in [10, 100, 500] {
            let filter = filter(limit);
            let mut times = Vec::with_capacity(reqs);
            let mut answer = Vec::new();
            for n in 0..reqs + 20 {
                let started = Instant::now();
                answer = req(&mut ws, &filter, n).await;
                if n >= 20 {
                    times.push(started.elapsed());
                }
            }
            times.sort();
            let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
            // The client's own share: parsing the same answer again, off the network.
            let started = Instant::now();
            for _ in 0..20 {
                for text in &answer {
                    std::hint::black_box(serde_json::from_str::<Value>(text).expect("json"));
                }
            }
            let parsing = started.elapsed().as_secs_f64() * 1e3 / 20.0;
            println!(
                "| {name} | {limit} | {} | {:.2} | {:.2} | {parsing:.2} |",
                answer.len().saturating_sub(1),
                p(0.5),
                p(0.99)
            );
            if limit == 100 {
                worst = (worst.0.max(p(0.5)), worst.1.max(p(0.99)));
            }
        }
    }
    println!(
        "limit 100, worst line: p50 {:.2} ms (target <= 1 ms, ratio {:.2}), p99 {:.2} ms (target <= 5 ms, ratio {:.2})",
        worst.0,
        worst.0,
        worst.1,
        worst.1 / 5.0
    );
    ingest_into(&server, &owner, stored, &store).await;
    drop(server);
}

/// Connections of the ingest into the big store, each sending `GRASP_READS_INGEST_EACH` issues.
const INGEST_CONNECTIONS: usize = 40;
/// Saves in flight at once in the store-only floor: what the ingest can have in flight.
const AT_ONCE: usize = INGEST_CONNECTIONS * graspd::relay::intake::MAX_IN_FLIGHT;

/// Issues on `owner`'s repository `ingest`, [`INGEST_CONNECTIONS`] batches of
/// `GRASP_READS_INGEST_EACH` (default 500), as EVENT messages.
fn ingest_issues(owner: &Keys, label: &str) -> Vec<Vec<String>> {
    let coordinate = support::coordinate(owner, "ingest");
    let each = env_or("GRASP_READS_INGEST_EACH", 500);
    signed_batches(INGEST_CONNECTIONS, each, |keys, c, i| {
        support::event(
            keys,
            1621,
            &format!("{label} {c}-{i}"),
            &[&["a", &coordinate], &["subject", "ingest"]],
        )
    })
}

/// Accepted ingest into the big store, as the relay bench measures it into an empty one, against
/// the verify-only floor taken right before and the store-only floor taken into the same store
/// before the daemon started (`store`, `stored` events then): what a big host's writes cost.
async fn ingest_into(server: &Server, owner: &Keys, stored: usize, store: &StoreFloor) {
    let mut client = server.client().await;
    assert!(
        client
            .publish(&support::announcement(owner, server, "ingest"))
            .await
            .accepted
    );
    let batches = ingest_issues(owner, "issue");
    let total: usize = batches.iter().map(Vec::len).sum();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let floor = verify_rate(&batches, threads);
    let spent = Spent::since(server);
    let (rate, accepted) = ingest(server, batches).await;
    assert_eq!(accepted, total, "every issue accepted");
    let cpu = spent.cpu(server, total, rate);
    let written = spent.written(server, total);
    println!(
        "store-only floor into the store of {stored} events: {:.0} events/s, {:.0} µs of CPU and \
         {:.1} KiB written an event ({total} other issues saved straight into it before the \
         daemon started, {AT_ONCE} at once, OK after the WAL sync)",
        store.rate, store.cpu_micros, store.written_kib,
    );
    println!(
        "ingest (accepted) into the store of {} events: {total} issues over \
         {INGEST_CONNECTIONS} connections = {rate:.0} events/s, {:.2}x the verify-only floor of \
         {floor:.0} events/s taken just before (target >= 0.5), {:.2}x the store-only floor; \
         daemon CPU {cpu}{written}",
        stored + total,
        rate / floor,
        rate / store.rate,
    );
}

async fn print_plans(url: &str, lines: Vec<(&str, FilterAt<'_>)>) {
    let store = graspd::store::Store::open(url).await.expect("open");
    println!("\nSQLite's plan for each filter (limit 100):");
    for (name, filter) in &lines {
        let filter: nostr::Filter = serde_json::from_value(filter(100)).expect("filter");
        let plan = store.query_plan(&filter).await.expect("plan");
        println!("{name}:\n    {}", plan.replace('\n', "\n    "));
    }
}

/// Sends one REQ and reads to its EOSE; returns the messages of the answer (the events, then the
/// EOSE).
async fn req(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    filter: &Value,
    n: usize,
) -> Vec<String> {
    let sub = format!("r{n}");
    ws.send(Message::Text(json!(["REQ", sub, filter]).to_string().into()))
        .await
        .expect("send");
    let mut answer = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("an answer within 30 s")
            .expect("open")
            .expect("message");
        let Message::Text(text) = message else { continue };
        let reply: Value = serde_json::from_str(text.as_str()).expect("json");
        match reply[0].as_str() {
            Some("EVENT") if reply[1] == sub => answer.push(text.to_string()),
            Some("EOSE") if reply[1] == sub => {
                answer.push(text.to_string());
                break;
            }
            Some("CLOSED") if reply[1] == sub => panic!("closed: {reply}"),
            _ => {}
        }
    }
    ws.send(Message::Text(json!(["CLOSE", sub]).to_string().into()))
        .await
        .expect("close");
    answer
}
