//! Counters, gauges and latency histograms, kept in atomics so the hot paths pay one relaxed add.
//! Read by the gRPC `StatusService` and rendered as Prometheus text at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::types::RepoId;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus-style cumulative histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Everything counted since start.
#[derive(Debug)]
pub struct Metrics {
    pub started: Instant,
    pub events_accepted: AtomicU64,
    pub events_refused: AtomicU64,
    pub events_to_purgatory: AtomicU64,
    pub events_released: AtomicU64,
    pub pushes_allowed: AtomicU64,
    pub pushes_refused: AtomicU64,
    pub syncs_ok: AtomicU64,
    pub syncs_failed: AtomicU64,
    /// Background `git maintenance` checks (see `process::maintenance`).
    pub maintenance_ok: AtomicU64,
    pub maintenance_failed: AtomicU64,
    pub websocket_connections: AtomicI64,
    /// Live events not sent to a connection whose client read too slowly (see `live`).
    pub live_events_missed: AtomicU64,
    pub git_requests_in_flight: AtomicI64,
    /// Events the event sync fetched, by what the write policy made of them: accepted, held,
    /// refused, duplicate, failed (see [`SYNCED_OUTCOMES`]).
    pub events_synced: [AtomicU64; 5],
    /// Relays the event sync follows, and of those, the ones connected now.
    pub event_sync_relays: AtomicI64,
    pub event_sync_connected: AtomicI64,
    /// Relays named by hosted repositories but left out by the cap on followed relays.
    pub event_sync_left_out: AtomicI64,
    /// AuthorizePush handling time.
    pub authorize_seconds: Histogram,
    /// ReportPush handling time (the unified procedure after a push).
    pub report_seconds: Histogram,
    pub sync_fetch_ok_seconds: Histogram,
    pub sync_fetch_failed_seconds: Histogram,
    last_push_ms: DashMap<RepoId, i64>,
    last_sync_ms: DashMap<RepoId, i64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            events_accepted: AtomicU64::new(0),
            events_refused: AtomicU64::new(0),
            events_to_purgatory: AtomicU64::new(0),
            events_synced: Default::default(),
            event_sync_relays: AtomicI64::new(0),
            event_sync_left_out: AtomicI64::new(0),
            event_sync_connected: AtomicI64::new(0),
            events_released: AtomicU64::new(0),
            pushes_allowed: AtomicU64::new(0),
            pushes_refused: AtomicU64::new(0),
            syncs_ok: AtomicU64::new(0),
            syncs_failed: AtomicU64::new(0),
            maintenance_ok: AtomicU64::new(0),
            maintenance_failed: AtomicU64::new(0),
            websocket_connections: AtomicI64::new(0),
            live_events_missed: AtomicU64::new(0),
            git_requests_in_flight: AtomicI64::new(0),
            authorize_seconds: Histogram::default(),
            report_seconds: Histogram::default(),
            sync_fetch_ok_seconds: Histogram::default(),
            sync_fetch_failed_seconds: Histogram::default(),
            last_push_ms: DashMap::new(),
            last_sync_ms: DashMap::new(),
        }
    }
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Current value of a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Holds a gauge up by one while alive.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl<'a> GaugeGuard<'a> {
    pub fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }

    /// The gauge's value now (this guard included).
    pub fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The labels of [`Metrics::events_synced`], in order.
pub const SYNCED_OUTCOMES: [&str; 5] = ["accepted", "held", "refused", "duplicate", "failed"];

/// Gauges read from the rest of the daemon when rendering.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub repositories: u64,
    pub purgatory_entries: u64,
    pub placeholders: u64,
    pub sync_queue_length: u64,
    pub maintenance_queue_length: u64,
    pub spooled_reports: u64,
    pub stored_events: u64,
    /// Bytes of the store's in-memory id filters (see `store::memo`).
    pub store_filter_bytes: u64,
    /// Open subscriptions over every websocket connection (see `live`).
    pub live_subscriptions: u64,
}

impl Metrics {
    pub fn note_push(&self, repo: &RepoId, at_ms: i64) {
        self.last_push_ms.insert(repo.clone(), at_ms);
    }

    pub fn note_sync(&self, repo: &RepoId, at_ms: i64) {
        self.last_sync_ms.insert(repo.clone(), at_ms);
    }

    pub fn last_push_ms(&self, repo: &RepoId) -> i64 {
        self.last_push_ms.get(repo).map(|v| *v).unwrap_or(0)
    }

    pub fn last_sync_ms(&self, repo: &RepoId) -> i64 {
        self.last_sync_ms.get(repo).map(|v| *v).unwrap_or(0)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::with_capacity(8192);
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "graspd_events_accepted_total",
                "Events accepted and stored.",
                &self.events_accepted,
            ),
            (
                "graspd_events_refused_total",
                "Events refused.",
                &self.events_refused,
            ),
            (
                "graspd_events_purgatory_total",
                "Events acknowledged into purgatory.",
                &self.events_to_purgatory,
            ),
            (
                "graspd_events_released_total",
                "Events released from purgatory.",
                &self.events_released,
            ),
            (
                "graspd_pushes_allowed_total",
                "Pushes allowed by AuthorizePush.",
                &self.pushes_allowed,
            ),
            (
                "graspd_pushes_refused_total",
                "Pushes refused by AuthorizePush.",
                &self.pushes_refused,
            ),
            (
                "graspd_syncs_ok_total",
                "Successful sync fetches.",
                &self.syncs_ok,
            ),
            (
                "graspd_syncs_failed_total",
                "Failed sync fetches.",
                &self.syncs_failed,
            ),
            (
                "graspd_maintenance_ok_total",
                "Background git maintenance checks that succeeded (whether or not git had work to do).",
                &self.maintenance_ok,
            ),
            (
                "graspd_maintenance_failed_total",
                "Background git maintenance checks that failed.",
                &self.maintenance_failed,
            ),
            (
                "graspd_live_events_missed_total",
                "Live events not sent to a connection whose client read too slowly.",
                &self.live_events_missed,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(value)
            );
        }
        let gauges: [(&str, &str, i64); 11] = [
            (
                "graspd_uptime_seconds",
                "Seconds since start.",
                i64::try_from(self.started.elapsed().as_secs()).unwrap_or(0),
            ),
            (
                "graspd_repositories",
                "Repositories on disk.",
                to_i64(snapshot.repositories),
            ),
            (
                "graspd_stored_events",
                "Events in the store.",
                to_i64(snapshot.stored_events),
            ),
            (
                "graspd_store_filter_bytes",
                "Memory held by the store's Bloom filters over stored and referenced ids.",
                to_i64(snapshot.store_filter_bytes),
            ),
            (
                "graspd_purgatory_entries",
                "Events waiting in purgatory.",
                to_i64(snapshot.purgatory_entries),
            ),
            (
                "graspd_placeholders",
                "Pull request refs waiting for their event.",
                to_i64(snapshot.placeholders),
            ),
            (
                "graspd_sync_queue_length",
                "Identifiers in the sync queue.",
                to_i64(snapshot.sync_queue_length),
            ),
            (
                "graspd_maintenance_queue_length",
                "Repositories waiting for a background git maintenance check.",
                to_i64(snapshot.maintenance_queue_length),
            ),
            (
                "graspd_spooled_reports",
                "Push reports waiting in the hook spool.",
                to_i64(snapshot.spooled_reports),
            ),
            (
                "graspd_websocket_connections",
                "Open websocket connections.",
                self.websocket_connections.load(Ordering::Relaxed),
            ),
            (
                "graspd_live_subscriptions",
                "Open subscriptions over every websocket connection.",
                to_i64(snapshot.live_subscriptions),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let name = "graspd_event_sync_events_total";
        let _ = writeln!(
            out,
            "# HELP {name} Events the event sync fetched from other relays, by what the write policy made of them.\n# TYPE {name} counter"
        );
        for (outcome, value) in SYNCED_OUTCOMES.iter().zip(&self.events_synced) {
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {}", get(value));
        }
        for (name, help, value) in [
            (
                "graspd_event_sync_relays",
                "Relays the event sync follows.",
                &self.event_sync_relays,
            ),
            (
                "graspd_event_sync_relays_connected",
                "Relays the event sync is connected to.",
                &self.event_sync_connected,
            ),
            (
                "graspd_event_sync_relays_left_out",
                "Relays named by hosted repositories that the event sync does not follow (over --event-sync-max-relays).",
                &self.event_sync_left_out,
            ),
        ] {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let in_flight = self.git_requests_in_flight.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP graspd_git_requests_in_flight git http-backend requests being served.\n# TYPE graspd_git_requests_in_flight gauge\ngraspd_git_requests_in_flight {in_flight}"
        );
        self.authorize_seconds.render(
            &mut out,
            "graspd_hook_authorize_seconds",
            "AuthorizePush handling time.",
            "",
        );
        self.report_seconds.render(
            &mut out,
            "graspd_hook_report_seconds",
            "ReportPush handling time.",
            "",
        );
        let name = "graspd_sync_fetch_seconds";
        let mut fetches = String::new();
        self.sync_fetch_ok_seconds.render(
            &mut fetches,
            name,
            "Sync fetch duration by outcome.",
            "outcome=\"ok\"",
        );
        let mut failed = String::new();
        self.sync_fetch_failed_seconds.render(
            &mut failed,
            name,
            "Sync fetch duration by outcome.",
            "outcome=\"failed\"",
        );
        out.push_str(&fetches);
        // One HELP/TYPE per metric family.
        out.extend(
            failed
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n")),
        );
        out
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help", "");
        assert!(out.contains("x_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 1"));
        assert!(out.contains("x_seconds_bucket{le=\"0.5\"} 2"));
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(out.contains("x_seconds_count 2"));
    }

    #[test]
    fn render_has_one_type_line_per_family() {
        let m = Metrics::default();
        inc(&m.events_accepted);
        let text = m.render(&Snapshot::default());
        assert!(text.contains("graspd_events_accepted_total 1"));
        assert_eq!(
            text.matches("# TYPE graspd_sync_fetch_seconds histogram").count(),
            1
        );
    }
}
