//! The demo (BENCHMARKS.md, "Demo"): how long `tradewind demo` takes from the command to ready
//! (every region serving, the catalog loaded, every edge holding it), fresh and restarted, with
//! links without delay and with the real regions' round trips; and with `--wan realistic`, how long a
//! price change sent to the leader takes to show at every edge, against the round trip of the
//! link between the leader's region and the edge's, and to be purged from every region's CDN
//! cache (the time until the cache serves the new price; the edge purges it when the change
//! reaches it).
//!
//! Run: `cargo bench -p tradewind --bench demo` (the release binary; nothing else running);
//! `-- --prices-only` measures the price changes alone.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proc, edge_urls, first_sku, get_value, median, percentile, start_demo};
use serde_json::{Value, json};

const STARTS: usize = 3;
const PRICE_CHANGES: usize = 200;
const REGIONS: [&str; 3] = ["cn-shanghai", "ap-singapore", "us-east"];
/// The demo's round trips between its first three regions (tradewind/src/demo.rs, `rtt_ms`).
const RTT_MS: [[u64; 3]; 3] = [[0, 35, 200], [35, 0, 220], [200, 220, 0]];

/// Starts the demo; the seconds until its ready line, and the mesh.
fn start(state: &Path, base: u16, wan: &str, fresh: bool) -> (Proc, f64, Value) {
    let base = base.to_string();
    let state = state.to_str().unwrap();
    let mut args = vec!["--base-port", &base, "--state-dir", state, "--wan", wan];
    if fresh {
        args.push("--fresh");
    }
    start_demo(&args)
}

/// Milliseconds from sending a price change to the leader until each edge quotes it, and until
/// each region's cache does, for `PRICE_CHANGES` changes one after another; and the leader's
/// region.
async fn price_propagation(mesh: &Value) -> (usize, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let token = mesh["admin_token"].as_str().unwrap();
    let regions = mesh["regions"].as_array().unwrap();
    let admin0 = regions[0]["core"]["admin_url"].as_str().unwrap();
    let cluster = get_value(&format!("{admin0}/admin/v1/cluster"), Some(token)).await;
    let leader = REGIONS
        .iter()
        .position(|r| cluster["leader"] == *r)
        .unwrap();
    let admin = regions[leader]["core"]["admin_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let edges = edge_urls(mesh);
    let caches: Vec<String> = regions
        .iter()
        .map(|r| r["cdn"]["url"].as_str().unwrap().to_owned())
        .collect();
    let sku = first_sku(&edges[0]).await;
    let http = common::client();
    let mut arrivals = vec![Vec::new(); edges.len()];
    let mut purged = vec![Vec::new(); caches.len()];
    for i in 0..PRICE_CHANGES {
        let amount = 100_000 + i as i64;
        let t = Instant::now();
        let write = {
            let (http, admin, sku, token) =
                (http.clone(), admin.clone(), sku.clone(), token.to_owned());
            tokio::spawn(async move {
                let res = http
                    .post(format!("{admin}/admin/v1/prices"))
                    .bearer_auth(token)
                    .json(&json!({"changes": [{"sku": sku, "currency": "USD", "amount_minor": amount}]}))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success());
            })
        };
        let seen: Vec<_> = edges
            .iter()
            .chain(&caches)
            .map(|e| {
                let (http, url) = (
                    http.clone(),
                    format!("{e}/v1/skus/{sku}/quote?currency=USD"),
                );
                tokio::spawn(async move {
                    loop {
                        let q: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
                        if q["breakdown"][0]["list_price"]["unit_minor"] == amount {
                            return t.elapsed().as_secs_f64() * 1000.0;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        for (k, s) in seen.into_iter().enumerate() {
            let ms = s.await.unwrap();
            if k < edges.len() {
                arrivals[k].push(ms);
            } else {
                purged[k - edges.len()].push(ms);
            }
        }
        write.await.unwrap();
    }
    (leader, arrivals, purged)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = 27_000;
    let mut rows = Vec::new();
    let prices_only = std::env::args().any(|a| a == "--prices-only");
    for wan in ["none", "realistic"].into_iter().filter(|_| !prices_only) {
        let state = dir.path().join(wan);
        let (mut fresh, mut again) = (Vec::new(), Vec::new());
        for _ in 0..STARTS {
            let (mut demo, took, _) = start(&state, base, wan, true);
            fresh.push(took);
            assert!(demo.terminate().success());
            let (mut demo, took, _) = start(&state, base, wan, false);
            again.push(took);
            assert!(demo.terminate().success());
        }
        eprintln!("{wan}: fresh {fresh:?} restarted {again:?}");
        rows.push((wan, fresh, again));
    }
    let (mut demo, _, mesh) = start(&dir.path().join("realistic"), base, "realistic", false);
    let (leader, arrivals, purged) = rt.block_on(price_propagation(&mesh));
    assert!(demo.terminate().success());

    println!("tradewind demo, 3 regions with an edge each, the sample catalog (1,000 products):");
    for (wan, fresh, again) in rows {
        println!(
            "  --wan {wan:<9}: command to ready, fresh (catalog loaded): median {:.1} s of {fresh:.1?}; restarted: median {:.1} s of {again:.1?}",
            median(fresh.clone()),
            median(again.clone())
        );
    }
    println!(
        "  --wan realistic: {PRICE_CHANGES} price changes sent to the leader ({}), until each edge quotes them:",
        REGIONS[leader]
    );
    for (what, rows) in [("edge", arrivals), ("cache", purged)] {
        for (k, a) in rows.into_iter().enumerate() {
            let rtt = RTT_MS[leader][k];
            println!(
                "    {what:<5} of {:<13} p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms   bound: round trip {rtt} ms + 100 = {} ms",
                REGIONS[k],
                percentile(&a, 0.50),
                percentile(&a, 0.99),
                percentile(&a, 1.0),
                rtt + 100
            );
        }
    }
}
