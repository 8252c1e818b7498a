//! `tradewind catalog load-sample`: writes the sample catalog through a core's admin API, each
//! request under an Idempotency-Key of its own (sent again with it while the core is away).
//! A catalog already loaded is left alone: running it twice changes nothing.

use anyhow::bail;
use chaos_tests::admin::Admin;
use clap::Subcommand;
use core_region::sample;
use serde_json::json;
use tokio::task::JoinSet;

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Load the sample cross-border catalog (markets, products, prices, promotions, stock).
    LoadSample {
        /// The core's admin API, e.g. https://127.0.1.1:7101
        #[arg(long)]
        admin: String,
        /// The deployment's CA (PEM) to trust for an https admin URL (the demo's is
        /// `.tradewind/certs/ca.pem`).
        #[arg(long)]
        cacert: Option<std::path::PathBuf>,
        /// Admin bearer token.
        #[arg(long, env = "TRADEWIND_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Number of products (each has 1 to 12 SKUs).
        #[arg(long, default_value_t = 1_000)]
        products: usize,
        /// Seed of the generator: the same seed gives the same catalog.
        #[arg(long, default_value_t = SAMPLE_SEED)]
        seed: u64,
    },
}

/// The seed used unless one is given.
pub const SAMPLE_SEED: u64 = 42;

/// Requests in flight at once: enough to fill a group commit, few enough to be polite.
const IN_FLIGHT: usize = 32;
/// Changes per price or stock request.
const CHUNK: usize = 1_000;

pub async fn run(command: CatalogCommand) -> anyhow::Result<()> {
    let CatalogCommand::LoadSample {
        admin,
        cacert,
        token,
        products,
        seed,
    } = command;
    load_sample(&admin, token, cacert.as_deref(), products, seed).await
}

/// Writes the sample catalog of `products` products from `seed` to the core at `admin`.
pub async fn load_sample(
    admin: &str,
    token: String,
    ca: Option<&std::path::Path>,
    products: usize,
    seed: u64,
) -> anyhow::Result<()> {
    if products == 0 || products > 1_000_000 {
        bail!("--products must be 1 to 1000000");
    }
    let admin = Admin::new(admin, token, ca)?;
    let started = std::time::Instant::now();
    let catalog = sample::generate(products, seed);
    // The stock of the sample's last stocked SKU is written last: if the core has it, the
    // whole sample is there, and its stock may have sold since. Nothing is sent again.
    if let Some(last) = catalog
        .stock
        .iter()
        .rev()
        .find(|c| matches!(c.op, commerce::escrow::StockOp::Set(n) if n > 0))
        && admin.stocked(&last.sku).await?
    {
        println!("the sample catalog (seed {seed}) is already loaded: nothing to do");
        return Ok(());
    }
    // Keys that say when they were made (the core refuses others on admin writes), one per
    // request, and the same for every try of it.
    let run_ms = util::clock::now_ms().unsigned_abs();
    let key = |kind: &str, n: &dyn std::fmt::Display| {
        let tag = format!("{kind}-{n}");
        let bits = tag.bytes().fold(u128::from(seed), |h, b| {
            (h ^ u128::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        commerce::order_id::time_led_key(run_ms, bits)
    };
    use reqwest::Method;

    // Phase by phase (lists before the prices on them, products before their prices and
    // stock); within a phase nothing depends on anything else, so requests go out side by side:
    // over a WAN, one at a time would wait a round trip each.
    let markets = catalog.markets.iter().map(|m| {
        let path = format!("/admin/v1/markets/{}", m.id);
        (Method::PUT, path, key("market", &m.id), json!(m))
    });
    send_all(&admin, markets).await?;
    let lists = catalog.price_lists.iter().map(|l| {
        let path = format!("/admin/v1/price-lists/{}", l.id);
        (Method::PUT, path, key("list", &l.id), json!(l))
    });
    send_all(&admin, lists).await?;
    let products = catalog.products.iter().enumerate().map(|(i, p)| {
        let path = format!("/admin/v1/products/{}", p.id);
        (Method::PUT, path, key("product", &i), json!(p))
    });
    send_all(&admin, products).await?;
    let prices = catalog.prices.chunks(CHUNK).enumerate().map(|(i, chunk)| {
        let body = json!({ "changes": chunk });
        (
            Method::POST,
            "/admin/v1/prices".to_owned(),
            key("prices", &i),
            body,
        )
    });
    send_all(&admin, prices).await?;
    let promotions = catalog.promotions.iter().map(|p| {
        let path = format!("/admin/v1/promotions/{}", p.id);
        (Method::PUT, path, key("promo", &p.id), json!(p))
    });
    send_all(&admin, promotions).await?;
    let stock = catalog.stock.chunks(CHUNK).enumerate().map(|(i, chunk)| {
        let changes: Vec<serde_json::Value> = chunk
            .iter()
            .map(|c| match c.op {
                commerce::escrow::StockOp::Set(n) => json!({"sku": c.sku, "set": n}),
                commerce::escrow::StockOp::Add(n) => json!({"sku": c.sku, "add": n}),
                commerce::escrow::StockOp::Remove(n) => json!({"sku": c.sku, "remove": n}),
            })
            .collect();
        let body = json!({ "changes": changes });
        (
            Method::POST,
            "/admin/v1/stock".to_owned(),
            key("stock", &i),
            body,
        )
    });
    send_all(&admin, stock).await?;
    let skus: usize = catalog.products.iter().map(|p| p.skus.len()).sum();
    println!(
        "loaded sample catalog (seed {seed}): {} markets, {} products, {skus} skus, {} prices, {} promotions, stock for {} skus in {:.1} s",
        catalog.markets.len(),
        catalog.products.len(),
        catalog.prices.len(),
        catalog.promotions.len(),
        catalog.stock.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Sends `requests` (method, path, Idempotency-Key, body), `IN_FLIGHT` at a time; the first
/// failure is the answer.
async fn send_all(
    admin: &Admin,
    requests: impl Iterator<Item = (reqwest::Method, String, String, serde_json::Value)>,
) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for (method, path, key, body) in requests {
        if tasks.len() >= IN_FLIGHT
            && let Some(done) = tasks.join_next().await
        {
            done??;
        }
        let a = admin.clone();
        tasks.spawn(async move { a.send(method, &path, &key, &body).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}
