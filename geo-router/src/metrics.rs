//! The router's metrics: what it counts as it answers (queries by transport, responses by
//! code, placements, answers by region, failovers, cache hits, panics), and every edge's state
//! read at each scrape.

use hickory_server::proto::op::ResponseCode;
use http_api::metrics::{Counter, Family, Gauge, Registry};

use crate::config::REGIONS_MAX;
use crate::health::EdgeState;

/// Response codes the router answers with, in the order of `Metrics::rcodes` (the last counts
/// any other).
const RCODES: [&str; 7] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "BADVERS", "OTHER",
];

/// A metric's labels.
type Labels = Vec<(&'static str, String)>;

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

/// The counters, each labelled series made once at start so that counting on the answer path
/// is one atomic add.
pub struct Metrics {
    /// Queries by transport: UDP, TCP.
    queries: [Counter; 2],
    rcodes: [Counter; RCODES.len()],
    /// Queries that carried an EDNS Client Subnet the router placed the client by.
    ecs: Counter,
    /// Storefront answers, by the region chosen.
    answers: Vec<Counter>,
    /// Storefront answers given with no healthy region.
    fail_open: Counter,
    /// Storefront answers that passed over the client's own region.
    failed_over: Counter,
    /// Queries whose answer panicked.
    panics: Counter,
    /// UDP answers given again from a loop's cache.
    cache_hits: Counter,
    /// UDP answers over a network's rate: dropped, and sent truncated (`rrl`).
    rate_limited: [Counter; 2],
    registry: Registry,
}

/// A family of counters by one label, with a series made for each value.
fn family(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = String>,
) -> Vec<Counter> {
    let f = Family::<Labels, Counter>::default();
    let series = values
        .into_iter()
        .map(|v| f.get_or_create(&vec![(label, v)]).clone())
        .collect();
    r.register(name, help, f);
    series
}

fn array<const N: usize>(v: Vec<Counter>) -> [Counter; N] {
    std::array::from_fn(|i| v.get(i).cloned().unwrap_or_default())
}

impl Metrics {
    /// The router's metrics, for the regions it answers with (in the config's order).
    pub fn new(regions: &[String]) -> Metrics {
        let mut r = Registry::default();
        let queries = family(
            &mut r,
            "tradewind_router_dns_queries",
            "DNS queries answered, by transport.",
            "transport",
            ["udp", "tcp"].map(String::from),
        );
        let rcodes = family(
            &mut r,
            "tradewind_router_dns_responses",
            "DNS responses, by response code.",
            "rcode",
            RCODES.map(String::from),
        );
        let answers = family(
            &mut r,
            "tradewind_router_answers",
            "Storefront answers, by the region answered with.",
            "region",
            regions.iter().take(REGIONS_MAX).cloned(),
        );
        let rate_limited = family(
            &mut r,
            "tradewind_router_dns_rate_limited",
            "UDP answers over their network's rate (response-rate limiting): dropped, or sent truncated so that a real resolver retries over TCP.",
            "action",
            ["dropped".to_owned(), "truncated".to_owned()],
        );
        let mut one = |name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let ecs = one(
            "tradewind_router_ecs_queries",
            "Queries placed by their EDNS Client Subnet.",
        );
        let failed_over = one(
            "tradewind_router_failed_over",
            "Storefront answers that passed over the client's first region for having no healthy edge.",
        );
        let fail_open = one(
            "tradewind_router_fail_open",
            "Storefront answers given while no region had a healthy edge.",
        );
        let cache_hits = one(
            "tradewind_router_dns_cache_hits",
            "UDP answers given again from the answer cache (counted in the other counters too).",
        );
        let panics = one(
            "tradewind_router_dns_panics",
            "Queries whose answer panicked (a bug; the listener went on).",
        );
        Metrics {
            queries: array(queries),
            rcodes: array(rcodes),
            ecs,
            answers,
            fail_open,
            failed_over,
            panics,
            cache_hits,
            rate_limited: array(rate_limited),
            registry: r,
        }
    }

    /// Counts one answer.
    pub fn count(&self, t: &Tally) {
        self.queries[usize::from(t.tcp)].inc();
        if t.ecs {
            self.ecs.inc();
        }
        if let Some((region, failed_over, fail_open)) = t.routed {
            if let Some(c) = self.answers.get(region) {
                c.inc();
            }
            if fail_open {
                self.fail_open.inc();
            } else if failed_over {
                self.failed_over.inc();
            }
        }
        let i = match t.code {
            ResponseCode::NoError => 0,
            ResponseCode::NXDomain => 1,
            ResponseCode::Refused => 2,
            ResponseCode::FormErr => 3,
            ResponseCode::NotImp => 4,
            // BADVERS and BADSIG share code 16.
            c if u16::from(c) == 16 => 5,
            _ => 6,
        };
        self.rcodes[i].inc();
    }

    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// An answer held back by response-rate limiting: sent truncated, or dropped.
    pub fn rate_limited(&self, truncated: bool) {
        self.rate_limited[usize::from(truncated)].inc();
    }

    pub fn panicked(&self) {
        self.panics.inc();
    }

    pub fn fail_open_total(&self) -> u64 {
        self.fail_open.get()
    }

    /// Every edge's state now, as a registry to write beside the counters.
    fn edges(edges: &[EdgeState]) -> Registry {
        let mut r = Registry::default();
        let up = Family::<Labels, Gauge>::default();
        // Counted by the health checker; made afresh at each scrape with the totals so far.
        let checks = Family::<Labels, Counter>::default();
        for e in edges {
            let service = match e.service {
                crate::health::Service::Storefront => "storefront",
                crate::health::Service::Assets => "assets",
            };
            up.get_or_create(&vec![
                ("edge", e.name.clone()),
                ("region", e.region.clone()),
                ("service", service.into()),
            ])
            .set(i64::from(e.up));
            for (result, n) in [("pass", e.checks_passed), ("fail", e.checks_failed)] {
                checks
                    .get_or_create(&vec![("edge", e.name.clone()), ("result", result.into())])
                    .inc_by(n);
            }
        }
        r.register(
            "tradewind_router_edge_up",
            "Whether an edge (or, for the assets service, a cache) is in the answers.",
            up,
        );
        r.register(
            "tradewind_router_health_checks",
            "Health checks of edges and caches, by result.",
            checks,
        );
        r
    }

    /// The answer to `GET /metrics`: the counters, and every edge's state now.
    pub fn respond(&self, edges: &[EdgeState]) -> axum::response::Response {
        http_api::metrics::respond(&[&self.registry, &Self::edges(edges)])
    }
}
