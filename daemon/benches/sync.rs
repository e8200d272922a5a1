//! Sync benchmark (not a test): `cargo bench -p graspd --bench sync`.
//!
//! Part 1 runs the sync's own code (`graspd::sync`) in this process against a mock context: 50
//! fake domains, every identifier missing one object that its one clone URL serves at once, and
//! a no-op unified procedure. It measures
//! 1a. the cost of one loop tick (`SyncQueue::take_ready` plus `next_deadline`, what the loop does
//!     before it spawns the due runs) with 10,000 identifiers queued and K = 0, 10, 100, 1000 of
//!     them due; and at K = 10 with 1,000, 10,000 and 100,000 queued: it should follow K, not the
//!     queue;
//! 1b. memory: the process RSS (`VmRSS`) and live heap added by 10,000 queued entries;
//! 1c. the real loop (`graspd::sync::run`, throttles of 5 concurrent fetches per domain and a rate
//!     limit out of the way) draining 10,000 due identifiers across the 50 domains.
//!
//! Part 2 runs two real release daemons, A on 127.0.0.1 and B on 127.0.0.2. A holds a ~100 MiB
//! commit of incompressible data after a push; B then receives the announcement (listing both
//! servers) and the state, and syncs at once (`--sync-default-delay-secs 0`). Measured from
//! publishing the state on B until B serves it (a websocket REQ every 50 ms), against a plain
//! `git fetch <A's clone URL> <oid>` into a fresh bare repository, rotating which goes first. The
//! plain fetch runs twice: with `transfer.unpackLimit=1`, the config graspd gives its repositories
//! (the received pack is kept), which is the like-for-like baseline; and with git's stock config,
//! which explodes a pack of fewer than 100 objects into loose objects and compresses them again.
//!
//! Targets: a tick costs O(due entries); sync time / plain fetch time ≤ 1.10. Figures and ratios
//! are printed; only correctness is asserted.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use graspd::config::{Domain, SyncSettings};
use graspd::git::Oid;
use graspd::nip34::{Identifier, RepoId};
use graspd::process::ProcessResult;
use graspd::shutdown::Shutdown;
use graspd::sync::{Needed, Outcome, SyncContext, SyncError, SyncQueue, SyncUrl, Syncer};
use nostr::{Event, Keys, PublicKey};
use serde_json::json;
use support::{Server, announcement, event, git, state, work_tree_with_noise};

const DOMAINS: usize = 50;
const QUEUED: usize = 10_000;
const DUE: [usize; 4] = [0, 10, 100, 1000];
const QUEUE_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const TICKS: usize = 300;
const DOMAIN_CONCURRENT: usize = 5;
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

const LARGE_MIB: u64 = 100;
const FETCH_RUNS: usize = 3;
const POLL: Duration = Duration::from_millis(50);
const SYNC_LIMIT: Duration = Duration::from_secs(120);
const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

/// Counts live heap bytes, so the queue's memory can be read exactly next to the coarser RSS.
struct CountingAllocator;

static LIVE_HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`; `ptr` came from this allocator with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_HEAP.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    println!("== part 1: sync queue and loop against a mock context ({DOMAINS} fake domains)");
    // Memory first, while the allocator has handed out little that could be reused.
    queue_memory();
    tick_cost();
    drain(Latency::Yield).await;
    drain(Latency::Sleep(Duration::from_millis(1))).await;
    println!("== part 2: one real ~{LARGE_MIB} MiB fetch between two daemons against plain git fetch");
    real_fetch().await;
}

// ---- part 1 --------------------------------------------------------------------------------

fn identifier(i: usize) -> Identifier {
    Identifier::parse(&format!("repo-{i:06}")).expect("identifier")
}

fn identifiers(n: usize) -> Vec<Identifier> {
    (0..n).map(identifier).collect()
}

/// Part 1b: RSS and heap added by `QUEUED` entries, identifiers included (made by the enqueue
/// loop and owned by the queue from then on).
fn queue_memory() {
    let queue = SyncQueue::new();
    let rss_before = rss_bytes();
    let heap_before = LIVE_HEAP.load(Ordering::Relaxed);
    for i in 0..QUEUED {
        queue.enqueue(identifier(i), Duration::from_secs(3600));
    }
    let rss_after = rss_bytes();
    let heap = LIVE_HEAP.load(Ordering::Relaxed) - heap_before;
    assert_eq!(queue.len(), QUEUED);
    let rss = match (rss_before, rss_after) {
        (Some(before), Some(after)) => {
            let delta = after.saturating_sub(before);
            format!(
                "RSS +{:.2} MiB = {} bytes per entry",
                delta as f64 / 1_048_576.0,
                delta / QUEUED as u64
            )
        }
        _ => "RSS n/a (no /proc)".to_owned(),
    };
    println!(
        "memory, {QUEUED} queued entries: {rss}; live heap +{:.2} MiB = {} bytes per entry \
         (identifier 'repo-NNNNNN', map entry, deadline)",
        heap as f64 / 1_048_576.0,
        heap / QUEUED as isize
    );
}

/// `VmRSS` of this process (Linux `/proc`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Part 1a: one tick with `due` of `queued` entries due, median of `TICKS`.
fn tick(queued: usize, due: usize) -> Duration {
    let queue = SyncQueue::new();
    let ids = identifiers(queued);
    let start = tokio::time::Instant::now();
    // Not due for an hour, each at its own time, as entries queued over a while would be.
    for (i, id) in ids.iter().enumerate() {
        queue.enqueue_at(
            id.clone(),
            start + Duration::from_secs(3600) + Duration::from_millis(i as u64),
        );
    }
    let mut times = Vec::with_capacity(TICKS);
    for _ in 0..TICKS {
        // A new event pulls the first `due` entries to now (past runs left them 20 s ahead).
        for id in &ids[..due] {
            queue.enqueue_at(id.clone(), start);
        }
        let now = tokio::time::Instant::now();
        let began = Instant::now();
        let ready = queue.take_ready(now);
        let next = queue.next_deadline();
        times.push(began.elapsed());
        assert_eq!(ready.len(), due, "exactly the due entries are taken");
        assert!(next.is_some_and(|at| at > now), "nothing else is due");
        // The runs end with objects still missing: back off.
        for id in &ready {
            queue.finish(id, Outcome::StillNeeded, now);
        }
    }
    assert_eq!(queue.len(), queued);
    median(&times)
}

fn tick_cost() {
    let clock = clock_overhead();
    let mut by_due = Vec::new();
    for due in DUE {
        by_due.push((due, tick(QUEUED, due)));
    }
    let line: Vec<String> = by_due
        .iter()
        .map(|(due, t)| match due {
            0 => format!("K=0 {:.2} µs", us(*t)),
            _ => format!(
                "K={due} {:.2} µs ({:.0} ns per due entry)",
                us(*t),
                t.as_nanos() as f64 / *due as f64
            ),
        })
        .collect();
    println!(
        "loop tick (take_ready + next_deadline), {QUEUED} queued, K due, median of {TICKS}: {}; \
         K=1000/K=10 ratio {:.1} (100x the due entries); clock read {:.0} ns",
        line.join(", "),
        by_due[3].1.as_secs_f64() / by_due[1].1.as_secs_f64(),
        clock.as_nanos()
    );
    let by_size: Vec<(usize, Duration)> = QUEUE_SIZES.iter().map(|&n| (n, tick(n, 10))).collect();
    let line: Vec<String> = by_size
        .iter()
        .map(|(n, t)| format!("{n} queued {:.2} µs", us(*t)))
        .collect();
    println!(
        "loop tick at K=10, median of {TICKS}: {}; 100,000/1,000 ratio {:.2} (100x the queue)",
        line.join(", "),
        by_size[2].1.as_secs_f64() / by_size[0].1.as_secs_f64()
    );
}

/// What a pair of `Instant::now()` reads costs, for scale (median of many).
fn clock_overhead() -> Duration {
    let times: Vec<Duration> = (0..1000)
        .map(|_| {
            let began = Instant::now();
            began.elapsed()
        })
        .collect();
    median(&times)
}

/// How long the mock's fetch takes.
#[derive(Debug, Clone, Copy)]
enum Latency {
    /// Returns at its first poll after yielding once: as quick as a fetch can be while still
    /// letting other runs start meanwhile (so the throttles fill).
    Yield,
    /// Sleeps, as a fetch over a fast network would.
    Sleep(Duration),
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Yield => f.write_str("fetch yields once"),
            Self::Sleep(d) => write!(f, "fetch takes {} ms", d.as_millis()),
        }
    }
}

/// One identifier's repository in the mock world.
#[derive(Debug, Default)]
struct MockRepo {
    missing: HashSet<Oid>,
    urls: Vec<String>,
}

#[derive(Debug, Default)]
struct MockState {
    repos: HashMap<Identifier, MockRepo>,
    in_flight: HashMap<String, usize>,
    peak_in_flight: HashMap<String, usize>,
}

/// Every identifier misses objects its clone URLs serve; fetches bring all of them.
struct MockContext {
    domain: Domain,
    owner: PublicKey,
    latency: Latency,
    state: Mutex<MockState>,
    fetches: AtomicUsize,
    processed: AtomicUsize,
}

impl MockContext {
    fn new(latency: Latency) -> Self {
        Self {
            domain: Domain::parse("ours.example").expect("domain"),
            owner: Keys::generate().public_key(),
            latency,
            state: Mutex::default(),
            fetches: AtomicUsize::new(0),
            processed: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().expect("mock state")
    }

    /// `identifier` misses one object, served by its URL on domain `i % DOMAINS`.
    fn add(&self, i: usize, identifier: &Identifier) {
        let repo = MockRepo {
            missing: HashSet::from([Oid::parse(&format!("{i:040x}")).expect("oid")]),
            urls: vec![format!("https://d{:02}.example/{identifier}.git", i % DOMAINS)],
        };
        self.state().repos.insert(identifier.clone(), repo);
    }
}

impl SyncContext for MockContext {
    async fn needed(&self, identifier: &Identifier) -> Result<Option<Needed>, SyncError> {
        let state = self.state();
        let missing = state.repos.get(identifier).map(|r| &r.missing);
        Ok(missing.filter(|m| !m.is_empty()).map(|oids| Needed {
            target: RepoId::new(self.owner, identifier.clone()),
            oids: oids.clone(),
        }))
    }

    async fn candidate_urls(&self, identifier: &Identifier) -> Result<Vec<String>, SyncError> {
        Ok(self
            .state()
            .repos
            .get(identifier)
            .map(|r| r.urls.clone())
            .unwrap_or_default())
    }

    async fn fetch(
        &self,
        target: &RepoId,
        url: &SyncUrl,
        oids: &HashSet<Oid>,
    ) -> Result<HashSet<Oid>, SyncError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = self.state();
            let in_flight = state.in_flight.entry(url.domain().to_owned()).or_default();
            *in_flight += 1;
            let now = *in_flight;
            let peak = state.peak_in_flight.entry(url.domain().to_owned()).or_default();
            *peak = (*peak).max(now);
        }
        match self.latency {
            Latency::Yield => tokio::task::yield_now().await,
            Latency::Sleep(d) => tokio::time::sleep(d).await,
        }
        let mut state = self.state();
        if let Some(n) = state.in_flight.get_mut(url.domain()) {
            *n -= 1;
        }
        let repo = state.repos.entry(target.identifier.clone()).or_default();
        let arrived: HashSet<Oid> = oids.intersection(&repo.missing).cloned().collect();
        repo.missing.retain(|oid| !arrived.contains(oid));
        Ok(arrived)
    }

    async fn process_newly_available_git_data(
        &self,
        _target: &RepoId,
        _new_oids: &HashSet<Oid>,
    ) -> ProcessResult {
        self.processed.fetch_add(1, Ordering::Relaxed);
        ProcessResult::default()
    }

    /// Pending events here always miss objects: the sync never runs this.
    async fn process_data_on_disk(&self, _identifier: &Identifier) -> ProcessResult {
        ProcessResult::default()
    }

    fn push_in_flight(&self, _identifier: &Identifier) -> bool {
        false
    }

    fn has_pending_events(&self, identifier: &Identifier) -> bool {
        self.state()
            .repos
            .get(identifier)
            .is_some_and(|r| !r.missing.is_empty())
    }

    fn our_domain(&self) -> &Domain {
        &self.domain
    }
}

/// Part 1c: `QUEUED` due identifiers, drained by the real loop and throttles.
async fn drain(latency: Latency) {
    let ctx = MockContext::new(latency);
    let ids = identifiers(QUEUED);
    for (i, id) in ids.iter().enumerate() {
        ctx.add(i, id);
    }
    let settings = SyncSettings {
        default_delay: Duration::ZERO,
        immediate_delay: Duration::ZERO,
        loop_interval: Duration::from_secs(1),
        domain_concurrent: DOMAIN_CONCURRENT,
        // 200 identifiers per domain: never the limit here.
        domain_rate_limit: 1_000_000,
        fetch_timeout: Duration::from_secs(60),
        private_addresses: false,
        refs_check_interval: None,
    };
    let queue = SyncQueue::new();
    let syncer = Syncer::new(ctx, queue.clone(), &settings);
    let (shutdown, signal) = Shutdown::new();
    let cpu_before = process_cpu_seconds();
    let began = Instant::now();
    for id in ids {
        queue.enqueue(id, Duration::ZERO);
    }
    let sync_loop = tokio::spawn(graspd::sync::run(syncer.clone(), signal));
    while !queue.is_empty() {
        assert!(
            began.elapsed() < DRAIN_LIMIT,
            "drained within {DRAIN_LIMIT:?}: {} identifiers left",
            queue.len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = began.elapsed();
    let cpu = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    shutdown.trigger();
    sync_loop.await.expect("sync loop");

    let ctx = syncer.context();
    let state = ctx.state();
    assert!(
        state.repos.values().all(|r| r.missing.is_empty()),
        "every identifier got its object"
    );
    let peak = state.peak_in_flight.values().copied().max().unwrap_or(0);
    assert!(
        peak <= DOMAIN_CONCURRENT,
        "at most {DOMAIN_CONCURRENT} fetches per domain at once"
    );
    let fetches = ctx.fetches.load(Ordering::Relaxed);
    let cpu = cpu.map_or_else(
        || "n/a".to_owned(),
        |s| format!("{:.1} µs per identifier", s * 1e6 / QUEUED as f64),
    );
    println!(
        "drain ({latency}): {QUEUED} identifiers over {DOMAINS} domains in {:.1} ms = {:.0} identifiers/s; \
         {fetches} fetches, {} procedure runs; peak {peak} fetches in flight per domain (limit \
         {DOMAIN_CONCURRENT}); process CPU {cpu}",
        ms(elapsed),
        QUEUED as f64 / elapsed.as_secs_f64(),
        ctx.processed.load(Ordering::Relaxed),
    );
}

/// CPU seconds (user + system) this process has used (Linux `/proc`).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

// ---- part 2 --------------------------------------------------------------------------------

/// Daemons as they would run in production: quiet logs, and B syncs as soon as a state waits.
const DAEMON_ARGS: &[&str] = &[
    "--log",
    "warn",
    "--max-new-repos-per-hour-per-owner",
    "0",
    "--max-new-repos-per-hour-per-address",
    "0",
];
const SYNC_AT_ONCE: &[&str] = &[
    "--max-new-repos-per-hour-per-owner",
    "0",
    "--max-new-repos-per-hour-per-address",
    "0",
    "--log",
    "warn",
    "--sync-default-delay-secs",
    "0",
    "--sync-private-addresses",
];

/// An announcement listing A's clone URL, then B's, and both relays.
fn shared_announcement(owner: &Keys, a: &Server, b: &Server, identifier: &str) -> Event {
    let clone = [
        "clone".to_owned(),
        a.clone_url(owner, identifier),
        b.clone_url(owner, identifier),
    ];
    let relays = ["relays".to_owned(), a.ws_url(), b.ws_url()];
    let clone: Vec<&str> = clone.iter().map(String::as_str).collect();
    let relays: Vec<&str> = relays.iter().map(String::as_str).collect();
    event(owner, 30617, "", &[&["d", identifier], &clone, &relays])
}

async fn real_fetch() {
    let started = Instant::now();
    let (work, oid) = work_tree_with_noise(LARGE_MIB, 0x853c_49e6_748f_ea9b, &[]);
    println!(
        "(generated and committed the {LARGE_MIB} MiB file in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let a = Server::start_on("127.0.0.1", DAEMON_ARGS);
    let owner = Keys::generate();
    let identifier = "big";
    // Each run starts a fresh B (on a new port), whose copy of the announcement lists both
    // servers; A's copy needs only A, which just serves the data.
    let st = state(&owner, identifier, &[("refs/heads/main", &oid)], Some("main"));
    let mut client_a = a.client().await;
    assert!(
        client_a
            .publish(&announcement(&owner, &a, identifier))
            .await
            .accepted
    );
    assert!(client_a.publish(&st).await.accepted);
    let started = Instant::now();
    git(
        work.path(),
        &["push", "-q", &a.clone_url(&owner, identifier), "main"],
    );
    println!("(pushed it to A in {:.1} s)", started.elapsed().as_secs_f64());
    // The data is on A now; the work tree is not needed any more.
    drop(work);
    assert_eq!(
        client_a.ids(json!({"kinds": [30618]})).await,
        vec![st.id.to_hex()],
        "A serves the state after the push"
    );
    let url = a.clone_url(&owner, identifier);

    let mut synced = Vec::with_capacity(FETCH_RUNS);
    let mut live = Vec::with_capacity(FETCH_RUNS);
    let mut kept = Vec::with_capacity(FETCH_RUNS);
    let mut stock = Vec::with_capacity(FETCH_RUNS);
    for run in 0..FETCH_RUNS {
        // Rotate the order so no side always reads A's pack from a warmer cache.
        let mut delivered = None;
        for step in 0..3 {
            match (run + step) % 3 {
                0 => {
                    let (poll, seen) = sync_fetch(&a, &owner, identifier, &st, &oid).await;
                    synced.push(poll);
                    live.extend(seen);
                    delivered = seen;
                }
                1 => kept.push(plain_fetch(&url, &oid, Unpack::KeepPack).await),
                _ => stock.push(plain_fetch(&url, &oid, Unpack::Stock).await),
            }
        }
        println!(
            "  run {}: graspd sync {:.0} ms (live subscriber {}); plain git fetch {:.0} ms \
             (transfer.unpackLimit=1, as graspd's repositories), {:.0} ms (stock config)",
            run + 1,
            ms(synced[run]),
            delivered.map_or("n/a".to_owned(), |d| format!("{:.0} ms", ms(d))),
            ms(kept[run]),
            ms(stock[run])
        );
    }
    let (s, k, p) = (ms(median(&synced)), ms(median(&kept)), ms(median(&stock)));
    println!(
        "fetch {LARGE_MIB} MiB, A -> B, medians of {FETCH_RUNS}: graspd sync {s:.0} ms (state published \
         on B -> served by B, REQ every {} ms); plain git fetch with graspd's repository config {k:.0} ms, \
         ratio {:.2} (target <= 1.10); plain git fetch, stock config (explodes the 3-object pack into \
         loose objects) {p:.0} ms, ratio {:.2}",
        POLL.as_millis(),
        s / k,
        s / p
    );
    if live.len() == FETCH_RUNS {
        let l = ms(median(&live));
        println!(
            "fetch {LARGE_MIB} MiB, A -> B: graspd sync seen by a live subscriber after {l:.0} ms (no poll \
             granularity), ratio {:.2} to the like-for-like plain fetch; {:.0} MiB/s",
            l / k,
            LARGE_MIB as f64 / (l / 1000.0)
        );
    }
}

/// One sync on a fresh B: the announcement first, then the state, timed from publishing the state
/// until a REQ returns it. Returns that time and, if a live subscriber saw the state, its time.
async fn sync_fetch(
    a: &Server,
    owner: &Keys,
    identifier: &str,
    st: &Event,
    oid: &str,
) -> (Duration, Option<Duration>) {
    let b = Server::start_on("127.0.0.2", SYNC_AT_ONCE);
    let mut publisher = b.client().await;
    let announcement = shared_announcement(owner, a, &b, identifier);
    assert_eq!(publisher.publish(&announcement).await.message, PURGATORY_OK);
    let mut poller = b.client().await;
    let mut watcher = b.client().await;
    watcher
        .send_raw(&json!(["REQ", "live", {"kinds": [30618], "limit": 0}]).to_string())
        .await;
    assert_eq!(watcher.next().await[0], "EOSE");
    let want = st.id.to_hex();
    let (seen, mut seen_at) = tokio::sync::oneshot::channel();
    let watching = {
        let want = want.clone();
        tokio::spawn(async move {
            loop {
                let message = watcher.next().await;
                if message[0] == "EVENT" && message[2]["id"] == want.as_str() {
                    let _ = seen.send(Instant::now());
                    return;
                }
            }
        })
    };

    let began = Instant::now();
    assert_eq!(
        publisher.publish(st).await.message,
        PURGATORY_OK,
        "B waits for the git data"
    );
    let served = loop {
        if poller.ids(json!({"kinds": [30618], "ids": [want]})).await == vec![want.clone()] {
            break began.elapsed();
        }
        assert!(
            began.elapsed() < SYNC_LIMIT,
            "B served the state within {SYNC_LIMIT:?}: {}",
            b.log()
        );
        tokio::time::sleep(POLL).await;
    };
    let delivered = match tokio::time::timeout(Duration::from_secs(1), &mut seen_at).await {
        Ok(Ok(at)) => Some(at - began),
        _ => None,
    };
    watching.abort();
    let b_repo = b.repo_path(owner, identifier);
    assert_eq!(
        git(&b_repo, &["rev-parse", "refs/heads/main"]),
        oid,
        "B's main is the synced commit"
    );
    (served, delivered)
}

/// How the plain fetch's repository stores what arrives.
#[derive(Debug, Clone, Copy)]
enum Unpack {
    /// `transfer.unpackLimit=1`, as graspd configures its repositories: the pack is kept.
    KeepPack,
    /// git's default (100): a pack of fewer objects is exploded into loose objects, each
    /// compressed again.
    Stock,
}

/// `git fetch <url> <oid>` into a fresh bare repository, timed from spawn to exit.
async fn plain_fetch(url: &str, oid: &str, unpack: Unpack) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q", "--bare"]);
    if let Unpack::KeepPack = unpack {
        git(dir.path(), &["config", "transfer.unpackLimit", "1"]);
    }
    let (url, oid_owned) = (url.to_owned(), oid.to_owned());
    let path = dir.path().to_owned();
    let (elapsed, output) = tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let output = client_git(&path)
            .args(["fetch", "-q", &url, &oid_owned])
            .output()
            .expect("run git fetch");
        (began.elapsed(), output)
    })
    .await
    .expect("fetch task");
    assert!(
        output.status.success(),
        "plain git fetch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    git(dir.path(), &["cat-file", "-e", oid]);
    elapsed
}

/// git as a client, with the same clean environment as the e2e tests' helper.
fn client_git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0");
    command
}

// ---- figures -------------------------------------------------------------------------------

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
