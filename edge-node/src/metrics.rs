//! The edge's counters and its intake latency histogram, rendered as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::forwarder::ForwardStats;

/// Upper bounds (ms) of the intake latency buckets.
const BUCKETS_MS: [u64; 11] = [1, 2, 5, 10, 15, 25, 50, 100, 250, 500, 1_000];

#[derive(Default)]
pub struct Metrics {
    accepted: AtomicU64,
    central: AtomicU64,
    refused: AtomicU64,
    returned_units: AtomicU64,
    /// Accepted orders by latency bucket; the last is +Inf.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    latency_us_sum: AtomicU64,
}

/// Values read when rendering.
pub struct Gauges<'a> {
    pub outbox_pending: u64,
    pub outbox_oldest_pending_ms: Option<u64>,
    pub intake_queued: u64,
    pub grant_units: u64,
    pub feed_version: u64,
    pub feed_lag: u64,
    /// Product cache (hits, misses).
    pub cache: (u64, u64),
    pub staleness_ms: Option<u64>,
    pub forward: &'a ForwardStats,
}

impl Metrics {
    /// An order accepted from this edge's grants, `took` from request to answer.
    pub fn accepted(&self, took: Duration) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let ms = took.as_millis() as u64;
        let i = BUCKETS_MS
            .iter()
            .position(|b| ms < *b)
            .unwrap_or(BUCKETS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.latency_us_sum
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// An order the core placed from its pool for this edge.
    pub fn central(&self) {
        self.central.fetch_add(1, Ordering::Relaxed);
    }

    /// Units of grants given back to the core (recalled, or on shutdown).
    pub fn returned(&self, units: u64) {
        self.returned_units.fetch_add(units, Ordering::Relaxed);
    }

    /// An order refused (bad input, out of stock, unavailable).
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, g: &Gauges<'_>) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "tradewind_edge_orders_accepted_total",
            "Orders accepted from this edge's grants.",
            load(&self.accepted),
        );
        counter(
            "tradewind_edge_orders_central_total",
            "Orders placed through the core's pool (no grant here).",
            load(&self.central),
        );
        counter(
            "tradewind_edge_orders_refused_total",
            "Orders refused.",
            load(&self.refused),
        );
        counter(
            "tradewind_edge_grant_units_returned_total",
            "Units of grants given back to the core (recalled, or on shutdown).",
            load(&self.returned_units),
        );
        counter(
            "tradewind_edge_orders_committed_total",
            "Accepted orders the core committed.",
            load(&g.forward.committed),
        );
        counter(
            "tradewind_edge_orders_rejected_at_commit_total",
            "Accepted orders the core rejected.",
            load(&g.forward.rejected),
        );
        counter(
            "tradewind_edge_orders_superseded_total",
            "Orders accepted here whose key's order was taken elsewhere first; their units came back.",
            load(&g.forward.superseded),
        );
        counter(
            "tradewind_edge_forward_failures_total",
            "Outbox batches no core took.",
            load(&g.forward.failures),
        );
        counter(
            "tradewind_edge_product_cache_hits_total",
            "Product reads answered from the cache.",
            g.cache.0,
        );
        counter(
            "tradewind_edge_product_cache_misses_total",
            "Product reads rendered from the mirror.",
            g.cache.1,
        );
        let name = "tradewind_edge_intake_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from an order's request to its 201.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            cumulative += load(&self.buckets[i]);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1000.0
            );
        }
        cumulative += load(&self.buckets[BUCKETS_MS.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {cumulative}",
            load(&self.latency_us_sum) as f64 / 1e6
        );
        let mut gauge = |name: &str, help: &str, v: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "tradewind_edge_outbox_pending",
            "Accepted orders no core has acknowledged.",
            g.outbox_pending.to_string(),
        );
        gauge(
            "tradewind_edge_outbox_oldest_pending_seconds",
            "Age of the oldest accepted order no core has acknowledged (0: none).",
            (g.outbox_oldest_pending_ms.unwrap_or(0) as f64 / 1000.0).to_string(),
        );
        gauge(
            "tradewind_edge_intake_queued",
            "Orders waiting for the outbox's next commit.",
            g.intake_queued.to_string(),
        );
        gauge(
            "tradewind_edge_grant_units",
            "Units this edge may still sell from its grants.",
            g.grant_units.to_string(),
        );
        gauge(
            "tradewind_edge_feed_version",
            "The version of the region's state this edge has applied.",
            g.feed_version.to_string(),
        );
        gauge(
            "tradewind_edge_feed_lag_versions",
            "Versions the core has applied that this edge has not.",
            g.feed_lag.to_string(),
        );
        gauge(
            "tradewind_edge_staleness_seconds",
            "Time since a core was last heard from (NaN: never).",
            g.staleness_ms
                .map_or_else(|| "NaN".to_owned(), |ms| (ms as f64 / 1000.0).to_string()),
        );
        out
    }
}
