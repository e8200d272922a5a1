//! Event-sync benchmark (not a test): `cargo bench -p graspd --bench event_sync`.
//!
//! One graspd holds `GRASPD_BENCH_SYNC_EVENTS` issues (default 100,000) of a repository; a second
//! graspd hosting the same repository is told of the first one's relay and syncs them, by NIP-77
//! and by REQ pages (a proxy in front refusing NIP-77), once from empty and once already holding
//! 99% of them. Prints time, bytes on the wire and round trips (messages graspd sent), and the
//! NIP-77 / REQ byte ratio. Targets: 100,000 events from empty in ≤ 15 s; NIP-77 moves ≥ 5× fewer
//! bytes than REQ at 99% shared. Then the memory of a graspd hosting `GRASPD_BENCH_SYNC_REPOS`
//! repositories (default 1,000) that list 3 of 20 relays each: ≤ 100 MB RSS.
//! `GRASPD_BENCH_SYNC_EVENTS=0` runs only the memory part.

#[path = "../../tests/support/mod.rs"]
mod support;

use support::sync_bench::{Figures, memory_run, run};

fn print(label: &str, f: &Figures) {
    println!(
        "{label:<24} {:>7} events in {:>6.2} s ({:>6.0} events/s), pass done {:>6.2} s; {:>10} bytes, {:>5} round trips; target peak RSS {:>6.1} MiB, anonymous {:>6.1} MiB",
        f.synced,
        f.seconds,
        f.synced as f64 / f.seconds.max(1e-9),
        f.pass_seconds,
        f.bytes,
        f.round_trips,
        f.target_rss_mib,
        f.target_anon_mib
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("GRASPD_BENCH_SYNC_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if n > 0 {
        events(n).await;
    }
    memory().await;
}

async fn events(n: usize) {
    let shared = n * 99 / 100;
    println!("event sync of {n} issues between two graspd on loopback");
    let from_empty_neg = run(n, 0, true).await;
    print("from empty, NIP-77", &from_empty_neg);
    let from_empty_req = run(n, 0, false).await;
    print("from empty, REQ pages", &from_empty_req);
    let most_neg = run(n, shared, true).await;
    print("99% shared, NIP-77", &most_neg);
    let most_req = run(n, shared, false).await;
    print("99% shared, REQ pages", &most_req);
    println!(
        "bytes REQ / NIP-77 at 99% shared: {:.1}x (target >= 5x); from empty: {:.2}x",
        most_req.bytes as f64 / most_neg.bytes.max(1) as f64,
        from_empty_req.bytes as f64 / from_empty_neg.bytes.max(1) as f64
    );
}

async fn memory() {
    let repos: usize = std::env::var("GRASPD_BENCH_SYNC_REPOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (rss, anon, seconds) = memory_run(repos, 20).await;
    println!(
        "memory: {repos} hosted repositories across 20 relays, all connected and past a full pass after {seconds:.0} s: \
         target peak RSS {rss:.1} MiB (target <= 100 MB = 95.4 MiB), ratio {:.2}; anonymous {anon:.1} MiB",
        rss / 95.4
    );
}
