//! The edge's metrics: what it counts as it goes (orders accepted, placed centrally, refused;
//! units returned; the forwarder's verdicts; product cache reads; shopper tokens refused, by
//! reason; the intake latency histogram), and what is read at each scrape (outbox, grants, feed, staleness).

use std::time::Duration;

use http_api::metrics::{Counter, Family, Histogram, Registry, count, seconds};

use crate::forwarder::ForwardStats;

/// Upper bounds (s) of the intake latency buckets.
const BUCKETS_S: [f64; 11] = [
    0.001, 0.002, 0.005, 0.010, 0.015, 0.025, 0.050, 0.100, 0.250, 0.500, 1.0,
];

/// What the edge counts as it goes; handles are shared with the registry.
pub struct Metrics {
    accepted: Counter,
    central: Counter,
    refused: Counter,
    returned_units: Counter,
    tokens_refused: Family<Vec<(&'static str, &'static str)>, Counter>,
    intake: Histogram,
    registry: Registry,
}

/// Values read at a scrape.
pub struct Gauges {
    pub outbox_pending: u64,
    pub outbox_oldest_pending_ms: Option<u64>,
    pub intake_queued: u64,
    pub grant_units: u64,
    pub feed_version: u64,
    pub feed_lag: u64,
    pub staleness_ms: Option<u64>,
}

impl Metrics {
    /// The edge's metrics, with the forwarder's counters and the product cache's (hits,
    /// misses) among them.
    pub fn new(
        forward: &ForwardStats,
        cache: (Counter, Counter),
        purges: &crate::purge::PurgeCounters,
    ) -> Metrics {
        let m = Metrics {
            accepted: Counter::default(),
            central: Counter::default(),
            refused: Counter::default(),
            returned_units: Counter::default(),
            tokens_refused: Family::default(),
            intake: Histogram::new(BUCKETS_S),
            registry: Registry::default(),
        };
        let mut r = Registry::default();
        let counters = [
            (
                "tradewind_edge_orders_accepted",
                "Orders accepted from this edge's grants.",
                &m.accepted,
            ),
            (
                "tradewind_edge_orders_central",
                "Orders placed through the core's pool (no grant here).",
                &m.central,
            ),
            (
                "tradewind_edge_orders_refused",
                "Orders refused.",
                &m.refused,
            ),
            (
                "tradewind_edge_grant_units_returned",
                "Units of grants given back to the core (recalled, or on shutdown).",
                &m.returned_units,
            ),
            (
                "tradewind_edge_orders_committed",
                "Accepted orders the core committed.",
                &forward.committed,
            ),
            (
                "tradewind_edge_orders_rejected_at_commit",
                "Accepted orders the core rejected.",
                &forward.rejected,
            ),
            (
                "tradewind_edge_orders_superseded",
                "Orders accepted here whose key's order was taken elsewhere first; their units came back.",
                &forward.superseded,
            ),
            (
                "tradewind_edge_forward_failures",
                "Outbox batches no core took.",
                &forward.failures,
            ),
            (
                "tradewind_edge_forward_splits",
                "Outbox batches a core refused as they were, split and sent again.",
                &forward.splits,
            ),
            (
                "tradewind_edge_cdn_purges",
                "Purges the region's CDN caches took (a cache's changes since its last, merged).",
                &purges.sent,
            ),
            (
                "tradewind_edge_cdn_purges_failed",
                "Times a CDN cache stopped taking purges (counted once until it takes one again).",
                &purges.failed,
            ),
            (
                "tradewind_edge_product_cache_hits",
                "Product reads answered from the cache.",
                &cache.0,
            ),
            (
                "tradewind_edge_product_cache_misses",
                "Product reads rendered from the mirror.",
                &cache.1,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register(
            "tradewind_edge_tokens_refused",
            "Shopper tokens refused, by reason (expired, signature, audience, ...).",
            m.tokens_refused.clone(),
        );
        r.register(
            "tradewind_edge_intake_seconds",
            "Time from an order's request to its 201.",
            m.intake.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// An order accepted from this edge's grants, `took` from request to answer.
    pub fn accepted(&self, took: Duration) {
        self.accepted.inc();
        self.intake.observe(took.as_secs_f64());
    }

    /// An order the core placed from its pool for this edge.
    pub fn central(&self) {
        self.central.inc();
    }

    /// Units of grants given back to the core (recalled, or on shutdown).
    pub fn returned(&self, units: u64) {
        self.returned_units.inc_by(units);
    }

    /// A shopper token refused, for `reason` (`TokenError::reason`).
    pub fn token_refused(&self, reason: &'static str) {
        self.tokens_refused
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// An order refused (bad input, out of stock, unavailable).
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// What a scrape reads now, as a registry to write beside the counters.
    fn now(g: &Gauges) -> Registry {
        let mut r = Registry::default();
        let counts = [
            (
                "tradewind_edge_outbox_pending",
                "Accepted orders no core has acknowledged.",
                g.outbox_pending,
            ),
            (
                "tradewind_edge_intake_queued",
                "Orders waiting for the outbox's next commit.",
                g.intake_queued,
            ),
            (
                "tradewind_edge_grant_units",
                "Units this edge may still sell from its grants.",
                g.grant_units,
            ),
            (
                "tradewind_edge_feed_version",
                "The version of the region's state this edge has applied.",
                g.feed_version,
            ),
            (
                "tradewind_edge_feed_lag_versions",
                "Versions the core has applied that this edge has not.",
                g.feed_lag,
            ),
        ];
        for (name, help, v) in counts {
            r.register(name, help, count(v));
        }
        r.register(
            "tradewind_edge_outbox_oldest_pending_seconds",
            "Age of the oldest accepted order no core has acknowledged (0: none).",
            seconds(Some(g.outbox_oldest_pending_ms.unwrap_or(0))),
        );
        r.register(
            "tradewind_edge_staleness_seconds",
            "Time since a core was last heard from (NaN: never).",
            seconds(g.staleness_ms),
        );
        r
    }

    /// The answer to `GET /metrics`: the counters, and the gauges as they are now.
    pub fn respond(&self, g: &Gauges) -> axum::response::Response {
        http_api::metrics::respond(&[&self.registry, &Self::now(g)])
    }
}
