//! What sealing shoppers' personal data costs an order, across three core regions (the release
//! binary, Raft over QUIC on loopback): durable order intake at an edge, and the orders'
//! commits (majority-replicated, in every region's log), with every address sealed at the edge
//! (HPKE to its home region's key, then AES-256-GCM) against the same mesh leaving addresses in
//! the clear, in the same run.
//!
//! One mesh serves both: region r1 has two edges, one sealing (the default) and one with
//! `[personal_data] plaintext_on_loopback = true`; the cores take what each sends as it is. Runs
//! alternate between the two edges (wrk, `scripts/wrk/load.lua`, every order signed in and with
//! a recipient's name, address and phone), so that the machine's noise falls on both. A run's
//! commit rate is its orders over the time from its start until the edge's outbox is empty
//! (every order committed at the core).
//!
//! Run: `scripts/bench-personal.sh`, which installs wrk from Debian first and builds with the
//! `measure-plaintext` feature (without it, the baseline's config is refused).

#[path = "../tests/common/mod.rs"]
mod common;
mod load;

use std::time::{Duration, Instant};

use common::{CoreProcess, EdgeProcess, client, median, write_edge_config_with, write_group_of};
use load::{Report, intake};

const REGIONS: [&str; 3] = ["r1", "r2", "r3"];
const SHOPPERS: usize = 64;
const RUNS: usize = 5;
const RUN: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_secs(2);

/// Waits until `edge`'s outbox holds no order a core has not taken.
async fn drained(edge: &EdgeProcess) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = common::get_value(&edge.url("/v1/status"), None).await;
        if status["outbox_pending"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One run at `edge`: its intake report, and its orders per second until all had committed.
async fn run(edge: &EdgeProcess, n: u16) -> (Report, f64) {
    let started = Instant::now();
    let (report, _) = intake(edge, n, SHOPPERS, RUN).await;
    drained(edge).await;
    let committed = report.requests as f64 / started.elapsed().as_secs_f64();
    (report, committed)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        load::sign_in(dir.path());
        let configs = write_group_of(dir.path(), &REGIONS);
        for c in &configs {
            // The cores take each edge's orders as they come: sealed from the one, in the
            // clear from the other (a core seals what it is sent in the clear by default).
            let mut text = std::fs::read_to_string(c).unwrap();
            text.push_str("\n[personal_data]\nplaintext_on_loopback = true\n");
            std::fs::write(c, text).unwrap();
        }
        let cores: Vec<CoreProcess> = configs.iter().map(|c| CoreProcess::start(c, &[])).collect();
        let leader = loop {
            let health = common::get_value(&cores[0].url("/healthz"), None).await;
            if let Some(i) = REGIONS.iter().position(|r| health["leader"] == *r) {
                break i;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        load::seed(&cores[leader]).await;
        let addrs: Vec<(&str, std::net::SocketAddr)> = REGIONS
            .iter()
            .zip(&cores)
            .map(|(r, c)| (*r, c.quic.unwrap()))
            .collect();
        let http = "[http]\nclient_rate_per_s = 1000000\nclient_burst = 1000000\n";
        let edge = |name: &str, extra: &str| {
            EdgeProcess::start(&write_edge_config_with(
                &dir.path().join(name),
                &dir.path().join("certs"),
                name,
                "r1",
                &addrs,
                &format!("{http}{extra}"),
            ))
        };
        let sealing = edge("r1-1", "");
        let plain = edge("r1-2", "[personal_data]\nplaintext_on_loopback = true\n");
        // Each edge's runs have numbers of their own (a run's number makes its keys).
        for (e, first) in [(&sealing, 0), (&plain, 20)] {
            while client().get(e.url("/healthz")).send().await.unwrap().status() != 200 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            load::warm_up(e, first, SHOPPERS, WARMUP).await;
            drained(e).await;
        }

        let (mut s, mut p) = (Vec::new(), Vec::new());
        for r in 0..RUNS {
            let r16 = r as u16;
            // Alternating which goes first, so neither always follows the other's drain.
            for turn in 0..2 {
                if (turn == 0) == (r % 2 == 0) {
                    s.push(run(&sealing, 100 + r16).await);
                } else {
                    p.push(run(&plain, 200 + r16).await);
                }
            }
            eprintln!("run {} done", r + 1);
        }

        let m = |v: &[(Report, f64)], f: fn(&(Report, f64)) -> f64| median(v.iter().map(f).collect());
        let rate = |x: &(Report, f64)| x.0.per_s();
        let committed = |x: &(Report, f64)| x.1;
        let p50 = |x: &(Report, f64)| x.0.p50_ms;
        let p99 = |x: &(Report, f64)| x.0.p99_ms;
        println!(
            "three core regions, one edge each way in r1, {SHOPPERS} shoppers, medians of {RUNS} alternating runs of {RUN:?}:"
        );
        for (what, v) in [("addresses sealed (AES-256-GCM)", &s), ("addresses in the clear", &p)] {
            println!(
                "  {what}: intake {:>8.0} orders/s, p50 {:.2} ms, p99 {:.2} ms; committed {:>8.0} orders/s ({} errors)",
                m(v, rate),
                m(v, p50),
                m(v, p99),
                m(v, committed),
                v.iter().map(|x| x.0.errors).sum::<u64>()
            );
        }
        println!(
            "  ratio sealed / clear: intake {:.3}, commits {:.3}",
            m(&s, rate) / m(&p, rate),
            m(&s, committed) / m(&p, committed)
        );
        println!(
            "  peak memory (VmHWM): edge sealing {} MiB, edge in the clear {} MiB, cores {} MiB",
            sealing.peak_rss_mib(),
            plain.peak_rss_mib(),
            cores
                .iter()
                .map(|c| c.peak_rss_mib().to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        );
    });
}
