//! The router's counters, and `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_server::proto::op::ResponseCode;

use crate::config::REGIONS_MAX;
use crate::health::EdgeState;

/// Response codes the router answers with, in the order of `Metrics::rcodes` (the last counts
/// any other).
const RCODES: [&str; 7] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "BADVERS", "OTHER",
];

#[derive(Default)]
struct Counters {
    rcodes: [AtomicU64; RCODES.len()],
    udp: AtomicU64,
    tcp: AtomicU64,
    /// Queries that carried an EDNS Client Subnet the router placed the client by.
    ecs: AtomicU64,
    /// Storefront answers, by the region chosen.
    answers: [AtomicU64; REGIONS_MAX],
    /// Storefront answers given with no healthy region.
    fail_open: AtomicU64,
    /// Storefront answers that passed over the client's own region.
    failed_over: AtomicU64,
    /// Queries whose answer panicked.
    panics: AtomicU64,
    /// UDP answers given again from a loop's cache.
    cache_hits: AtomicU64,
}

/// What answering one query counted in the metrics: counted again when the same answer is
/// given from a loop's cache (`cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub tcp: bool,
    /// The client was placed by its EDNS Client Subnet.
    pub ecs: bool,
    /// A storefront answer: the region chosen, whether the client's own region was passed
    /// over, and whether no region was healthy.
    pub routed: Option<(usize, bool, bool)>,
    pub code: ResponseCode,
}

pub struct Metrics {
    counters: Counters,
    regions: usize,
}

impl Metrics {
    pub fn new(regions: usize) -> Metrics {
        Metrics {
            counters: Counters::default(),
            regions: regions.min(REGIONS_MAX),
        }
    }

    fn read(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        counter(&self.counters).load(Ordering::Relaxed)
    }

    /// Counts one answer.
    pub fn count(&self, t: &Tally) {
        self.query(t.tcp);
        if t.ecs {
            self.ecs();
        }
        if let Some((region, failed_over, fail_open)) = t.routed {
            self.routed(region, failed_over, fail_open);
        }
        self.answered(t.code);
    }

    fn query(&self, tcp: bool) {
        let s = &self.counters;
        let c = if tcp { &s.tcp } else { &s.udp };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn answered(&self, code: ResponseCode) {
        let i = match code {
            ResponseCode::NoError => 0,
            ResponseCode::NXDomain => 1,
            ResponseCode::Refused => 2,
            ResponseCode::FormErr => 3,
            ResponseCode::NotImp => 4,
            // BADVERS and BADSIG share code 16.
            c if u16::from(c) == 16 => 5,
            _ => 6,
        };
        self.counters.rcodes[i].fetch_add(1, Ordering::Relaxed);
    }

    fn ecs(&self) {
        self.counters.ecs.fetch_add(1, Ordering::Relaxed);
    }

    fn routed(&self, region: usize, skipped: bool, fail_open: bool) {
        let s = &self.counters;
        if let Some(c) = s.answers.get(region) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if fail_open {
            s.fail_open.fetch_add(1, Ordering::Relaxed);
        } else if skipped {
            s.failed_over.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn cache_hit(&self) {
        self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn panicked(&self) {
        self.counters.panics.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fail_open_total(&self) -> u64 {
        self.read(|s| &s.fail_open)
    }

    pub fn render(&self, regions: &[String], edges: &[EdgeState]) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        family(
            "tradewind_router_dns_queries_total",
            "counter",
            "DNS queries answered, by transport.",
            vec![
                ("{transport=\"udp\"}".into(), self.read(|s| &s.udp)),
                ("{transport=\"tcp\"}".into(), self.read(|s| &s.tcp)),
            ],
        );
        family(
            "tradewind_router_dns_responses_total",
            "counter",
            "DNS responses, by response code.",
            RCODES
                .iter()
                .enumerate()
                .map(|(i, code)| (format!("{{rcode=\"{code}\"}}"), self.read(|s| &s.rcodes[i])))
                .collect(),
        );
        family(
            "tradewind_router_ecs_queries_total",
            "counter",
            "Queries placed by their EDNS Client Subnet.",
            one(self.read(|s| &s.ecs)),
        );
        family(
            "tradewind_router_answers_total",
            "counter",
            "Storefront answers, by the region answered with.",
            regions
                .iter()
                .take(self.regions)
                .enumerate()
                .map(|(i, r)| (format!("{{region=\"{r}\"}}"), self.read(|s| &s.answers[i])))
                .collect(),
        );
        family(
            "tradewind_router_failed_over_total",
            "counter",
            "Storefront answers that passed over the client's first region for having no healthy edge.",
            one(self.read(|s| &s.failed_over)),
        );
        family(
            "tradewind_router_fail_open_total",
            "counter",
            "Storefront answers given while no region had a healthy edge.",
            one(self.fail_open_total()),
        );
        family(
            "tradewind_router_dns_cache_hits_total",
            "counter",
            "UDP answers given again from the answer cache (counted in the other counters too).",
            one(self.read(|s| &s.cache_hits)),
        );
        family(
            "tradewind_router_dns_panics_total",
            "counter",
            "Queries whose answer panicked (a bug; the listener went on).",
            one(self.read(|s| &s.panics)),
        );
        family(
            "tradewind_router_edge_up",
            "gauge",
            "Whether an edge is in the answers.",
            edges
                .iter()
                .map(|e| {
                    (
                        format!("{{edge=\"{}\",region=\"{}\"}}", e.name, e.region),
                        u64::from(e.up),
                    )
                })
                .collect(),
        );
        family(
            "tradewind_router_health_checks_total",
            "counter",
            "Health checks of edges, by result.",
            edges
                .iter()
                .flat_map(|e| {
                    [
                        (
                            format!("{{edge=\"{}\",result=\"pass\"}}", e.name),
                            e.checks_passed,
                        ),
                        (
                            format!("{{edge=\"{}\",result=\"fail\"}}", e.name),
                            e.checks_failed,
                        ),
                    ]
                })
                .collect(),
        );
        out
    }
}
