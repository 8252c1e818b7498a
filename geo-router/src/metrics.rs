//! The router's counters, and `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_server::proto::op::ResponseCode;

use crate::health::EdgeState;

/// Response codes the router answers with, in the order of `Metrics::rcodes` (the last counts
/// any other).
const RCODES: [&str; 7] = [
    "NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP", "BADVERS", "OTHER",
];

pub struct Metrics {
    rcodes: [AtomicU64; RCODES.len()],
    udp: AtomicU64,
    tcp: AtomicU64,
    /// Queries that carried an EDNS Client Subnet the router placed the client by.
    ecs: AtomicU64,
    /// Storefront answers, by the region chosen.
    answers: Vec<AtomicU64>,
    /// Storefront answers given with no healthy region.
    fail_open: AtomicU64,
    /// Storefront answers that passed over the client's own region.
    failed_over: AtomicU64,
}

impl Metrics {
    pub fn new(regions: usize) -> Metrics {
        Metrics {
            rcodes: Default::default(),
            udp: AtomicU64::new(0),
            tcp: AtomicU64::new(0),
            ecs: AtomicU64::new(0),
            answers: (0..regions).map(|_| AtomicU64::new(0)).collect(),
            fail_open: AtomicU64::new(0),
            failed_over: AtomicU64::new(0),
        }
    }

    pub fn query(&self, tcp: bool) {
        let c = if tcp { &self.tcp } else { &self.udp };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self, code: ResponseCode) {
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
        self.rcodes[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn ecs(&self) {
        self.ecs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn routed(&self, region: usize, skipped: bool, fail_open: bool) {
        if let Some(c) = self.answers.get(region) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if fail_open {
            self.fail_open.fetch_add(1, Ordering::Relaxed);
        } else if skipped {
            self.failed_over.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn fail_open_total(&self) -> u64 {
        self.fail_open.load(Ordering::Relaxed)
    }

    pub fn render(&self, regions: &[String], edges: &[EdgeState]) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP tradewind_router_dns_queries_total DNS queries answered, by transport.\n# TYPE tradewind_router_dns_queries_total counter\n");
        let _ = writeln!(
            out,
            "tradewind_router_dns_queries_total{{transport=\"udp\"}} {}",
            get(&self.udp)
        );
        let _ = writeln!(
            out,
            "tradewind_router_dns_queries_total{{transport=\"tcp\"}} {}",
            get(&self.tcp)
        );
        out.push_str("# HELP tradewind_router_dns_responses_total DNS responses, by response code.\n# TYPE tradewind_router_dns_responses_total counter\n");
        for (name, c) in RCODES.iter().zip(&self.rcodes) {
            let _ = writeln!(
                out,
                "tradewind_router_dns_responses_total{{rcode=\"{name}\"}} {}",
                get(c)
            );
        }
        out.push_str("# HELP tradewind_router_ecs_queries_total Queries placed by their EDNS Client Subnet.\n# TYPE tradewind_router_ecs_queries_total counter\n");
        let _ = writeln!(out, "tradewind_router_ecs_queries_total {}", get(&self.ecs));
        out.push_str("# HELP tradewind_router_answers_total Storefront answers, by the region answered with.\n# TYPE tradewind_router_answers_total counter\n");
        for (name, c) in regions.iter().zip(&self.answers) {
            let _ = writeln!(
                out,
                "tradewind_router_answers_total{{region=\"{name}\"}} {}",
                get(c)
            );
        }
        out.push_str("# HELP tradewind_router_failed_over_total Storefront answers that passed over the client's first region for having no healthy edge.\n# TYPE tradewind_router_failed_over_total counter\n");
        let _ = writeln!(
            out,
            "tradewind_router_failed_over_total {}",
            get(&self.failed_over)
        );
        out.push_str("# HELP tradewind_router_fail_open_total Storefront answers given while no region had a healthy edge.\n# TYPE tradewind_router_fail_open_total counter\n");
        let _ = writeln!(
            out,
            "tradewind_router_fail_open_total {}",
            get(&self.fail_open)
        );
        out.push_str("# HELP tradewind_router_edge_up Whether an edge is in the answers.\n# TYPE tradewind_router_edge_up gauge\n");
        for e in edges {
            let _ = writeln!(
                out,
                "tradewind_router_edge_up{{edge=\"{}\",region=\"{}\"}} {}",
                e.name,
                e.region,
                u8::from(e.up)
            );
        }
        out.push_str("# HELP tradewind_router_health_checks_total Health checks of edges, by result.\n# TYPE tradewind_router_health_checks_total counter\n");
        for e in edges {
            let _ = writeln!(
                out,
                "tradewind_router_health_checks_total{{edge=\"{}\",result=\"pass\"}} {}",
                e.name, e.checks_passed
            );
            let _ = writeln!(
                out,
                "tradewind_router_health_checks_total{{edge=\"{}\",result=\"fail\"}} {}",
                e.name, e.checks_failed
            );
        }
        out
    }
}
