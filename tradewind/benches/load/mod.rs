//! What the storefront benchmarks share (`edge.rs`, `personal.rs`): the catalog they sell
//! (`seed`), the shoppers' tokens, and wrk running `scripts/wrk/load.lua` (`wrk`, `intake`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{self, CoreProcess, EdgeProcess, client};

/// SKUs sold (B-000, B-001, ...), each with stock enough for any run.
pub const SKUS: usize = 100;
/// SKUs of the product read: its JSON is about 2 KiB.
pub const READ_SKUS: usize = 12;
/// Customers placing the orders, each with their own shopper token (verified at every order).
pub const CUSTOMERS: usize = 1_000;
/// The file of their tokens, one per line, for `scripts/wrk/load.lua`.
static TOKENS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Writes the customers' tokens into `dir`, for every order run after; their file.
pub fn sign_in(dir: &std::path::Path) -> &'static std::path::Path {
    let tokens: Vec<String> = (0..CUSTOMERS)
        .map(|i| common::shopper_token(&format!("bench-{i}"), None))
        .collect();
    let path = dir.join("tokens");
    std::fs::write(&path, tokens.join("\n")).unwrap();
    TOKENS.get_or_init(|| path)
}

/// Demand builds an edge's grants: orders go on until almost every one is taken from a grant
/// (the first of each SKU go central). Its runs are numbered from `first` (a run's number makes
/// its Idempotency-Keys).
pub async fn warm_up(edge: &EdgeProcess, first: u16, shoppers: usize, for_: Duration) {
    for w in first..first + 10 {
        let (r, other) = intake(edge, w, shoppers, for_).await;
        if other * 100 <= r.requests {
            break;
        }
    }
}

pub fn sku(i: usize) -> String {
    format!("B-{i:03}")
}

pub async fn admin(core: &CoreProcess, path: &str, body: Value) {
    let res = client()
        .post(core.url(path))
        .bearer_auth(common::TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
}

/// The catalog: B-1 with `SKUS` SKUs at 19.99 USD, stocked without end, sold to SG; and R-1,
/// the product read.
pub async fn seed(core: &CoreProcess) {
    let res = client()
        .put(core.url("/admin/v1/markets/sea"))
        .bearer_auth(common::TOKEN)
        .json(&json!({"id": "sea", "countries": ["SG"], "currencies": ["USD"]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let skus: Vec<Value> = (0..SKUS).map(|i| json!({"sku": sku(i)})).collect();
    let res = client()
        .put(core.url("/admin/v1/products/B-1"))
        .bearer_auth(common::TOKEN)
        .json(&json!({"id": "B-1", "title": "Bolt", "category": "industrial", "skus": skus}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let prices: Vec<Value> = (0..SKUS)
        .map(|i| json!({"sku": sku(i), "currency": "USD", "amount_minor": 1999}))
        .collect();
    admin(core, "/admin/v1/prices", json!({"changes": prices})).await;
    let stock: Vec<Value> = (0..SKUS)
        .map(|i| json!({"sku": sku(i), "set": 1_000_000_000u64}))
        .collect();
    admin(core, "/admin/v1/stock", json!({"changes": stock})).await;
    // The product read: about 2 KiB of JSON with its prices and availability.
    let skus: Vec<Value> = (0..READ_SKUS)
        .map(|i| json!({"sku": format!("R-{i:02}"), "attributes": {"colour": "graphite", "size": format!("{}", 36 + i)}}))
        .collect();
    let res = client()
        .put(core.url("/admin/v1/products/R-1"))
        .bearer_auth(common::TOKEN)
        .json(&json!({"id": "R-1", "title": "Trail running shoe", "category": "apparel/shoes", "skus": skus}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let prices: Vec<Value> = (0..READ_SKUS)
        .map(|i| json!({"sku": format!("R-{i:02}"), "currency": "USD", "amount_minor": 8900 + i}))
        .collect();
    admin(core, "/admin/v1/prices", json!({"changes": prices})).await;
}

/// What one run measured.
#[derive(serde::Deserialize)]
pub struct Report {
    pub requests: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx answers, timeouts and broken connections.
    pub errors: u64,
}

impl Report {
    pub fn per_s(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// wrk with `shoppers` connections on `url` for `for_`: orders when `orders` names the run (its
/// keys are the run's own), else GETs of `url`.
pub fn wrk(url: &str, orders: Option<u16>, shoppers: usize, for_: Duration) -> Report {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/wrk/load.lua");
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t2", "--timeout", "10s", "-s", script])
        .arg(format!("-c{shoppers}"))
        .arg(format!("-d{}s", for_.as_secs()))
        .arg(url)
        .env("TRADEWIND_WRK_SKUS", SKUS.to_string());
    if let Some(run) = orders {
        cmd.env("TRADEWIND_WRK_ORDERS", run.to_string());
        if let Some(tokens) = TOKENS.get() {
            cmd.env("TRADEWIND_WRK_TOKENS", tokens);
        }
    }
    let out = cmd
        .output()
        .expect("wrk is not installed: scripts/bench-edge.sh installs it");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("wrk-report "))
        .unwrap_or_else(|| {
            panic!(
                "no report from wrk: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap()
}

/// A run of orders at the edge: the report, and how many were not accepted from a grant (sent
/// centrally, refused, or failed), from the edge's own counters.
pub async fn intake(
    edge: &EdgeProcess,
    run: u16,
    shoppers: usize,
    for_: Duration,
) -> (Report, u64) {
    const ACCEPTED: &str = "tradewind_edge_orders_accepted_total";
    let before = edge.metric(ACCEPTED).await;
    let url = edge.url("/v1/orders");
    let report = tokio::task::spawn_blocking(move || wrk(&url, Some(run), shoppers, for_))
        .await
        .unwrap();
    let accepted = edge.metric(ACCEPTED).await - before;
    let other = report.requests.saturating_sub(accepted);
    (report, other)
}
