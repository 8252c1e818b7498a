//! A drill's workload and what it learns: shoppers at every edge browsing and placing orders (a
//! UUIDv7 Idempotency-Key each, as the API recommends; one hot SKU takes a share of them; after
//! no answer or a 5xx a shopper sends the same order again under the same key, half the time
//! at another region's edge, as the router sends a shopper whose edge failed) while
//! admins change prices and add stock, each request and each answer recorded with its time in
//! the history (JSON lines, `checker::Event`); and, once the mesh is quiet, the core's final
//! state, read through the admin API.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::checker::{BASE_LIST, Event, FinalInventory, FinalOrder, FinalState, Line, PriceSet};
use crate::mesh::Mesh;

/// History events waiting to be written.
const HISTORY_QUEUE: usize = 65_536;
/// How long one request may take before it counts as unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shopper waits after an edge did not answer, or answered 5xx.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Times one order is sent at most: the first, and the retries after no answer or a 5xx.
pub const ATTEMPTS_MAX: u32 = 4;
/// How long an admin waits for one core before trying the next.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Orders per page when reading the core's orders.
const PAGE: usize = 1_000;

/// What the shoppers (and admins) do.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Storefront URLs, one per edge.
    pub edges: Vec<String>,
    pub shoppers_per_edge: usize,
    /// SKUs to buy, all sold in USD to SG.
    pub skus: Vec<String>,
    /// This SKU takes `hot_percent` of the orders.
    pub hot: String,
    pub hot_percent: u32,
    /// Share of a shopper's requests that read (a product page or a quote) rather than order.
    pub browse_percent: u32,
    /// Orders placed in all, when bounded (a flash sale's buyers).
    pub max_orders: Option<u64>,
    /// Admins changing prices and adding stock of `skus`, when present.
    pub admin: Option<AdminLoad>,
    /// The client requests go out with (it trusts the mesh's CA; `Mesh::client`). Each
    /// request is given `REQUEST_TIMEOUT`.
    pub http: reqwest::Client,
    /// Signs each shopper's token (the identity provider the edges trust: `Mesh::shoppers`).
    pub shoppers: Arc<http_api::identity::issuer::Issuer>,
    /// Every random choice (what each shopper does, which SKU, the keys' random bits) follows
    /// from this: a drill run again with it makes the same choices in the same order per
    /// shopper (the timings, and so what the mesh answers, are the machine's).
    pub seed: u64,
}

/// The random choices of one actor of a drill seeded `seed`: shopper `s` at edge `e` is stream
/// `(e, s)`; the admins, the write probe and the drill's own setup have streams of their own
/// (`ADMINS`, `PROBE`, `SETUP`).
pub fn chooser(seed: u64, e: u64, s: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ e.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ s.rotate_left(32))
}

/// The streams of `chooser` that are not shoppers'.
pub const ADMINS: (u64, u64) = (u64::MAX, 0);
pub const PROBE: (u64, u64) = (u64::MAX, 1);
pub const SETUP: (u64, u64) = (u64::MAX, 2);

/// An Idempotency-Key made now, its random bits drawn from `rng`.
pub fn key(rng: &mut StdRng) -> String {
    commerce::order_id::time_led_key(util::clock::now_ms().unsigned_abs(), rng.random())
}

/// Admins at work while shoppers shop: every `every`, a price change or a stock addition for
/// one of the workload's SKUs, sent to the first core that takes it.
#[derive(Clone, Debug)]
pub struct AdminLoad {
    /// Admin API URLs, one per core.
    pub cores: Vec<String>,
    pub token: String,
    pub every: Duration,
}

/// What the shoppers were told so far, counted as it happens (a drill watches its error budget
/// with it).
#[derive(Debug, Default)]
pub struct Live {
    pub attempted: AtomicU64,
    pub acked: AtomicU64,
    /// Refused with a 4xx: out of stock, slow down.
    pub refused: AtomicU64,
    /// No answer, or a 5xx.
    pub failed: AtomicU64,
    /// Reads answered 200.
    pub browsed: AtomicU64,
    /// Orders sent again under their key after no answer or a 5xx, and of those, sent to
    /// another edge than the attempt before.
    pub retried: AtomicU64,
    pub retried_elsewhere: AtomicU64,
}

/// What the shoppers were told, counted.
#[derive(Debug, Default, serde::Serialize)]
pub struct Counts {
    pub attempted: u64,
    pub acked: u64,
    pub refused: u64,
    pub failed: u64,
    pub browsed: u64,
    pub retried: u64,
    pub retried_elsewhere: u64,
}

impl Live {
    pub fn counts(&self) -> Counts {
        Counts {
            attempted: self.attempted.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            browsed: self.browsed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            retried_elsewhere: self.retried_elsewhere.load(Ordering::Relaxed),
        }
    }
}

/// Writes history events, one JSON line each, to `path` (on a thread of its own) until every
/// sender is gone; join the thread to know the file is complete.
pub fn history_writer(
    path: &Path,
) -> std::io::Result<(
    mpsc::Sender<Event>,
    std::thread::JoinHandle<std::io::Result<()>>,
)> {
    use std::io::Write;
    let file = std::fs::File::create(path)?;
    let (tx, mut rx) = mpsc::channel::<Event>(HISTORY_QUEUE);
    let writer = std::thread::Builder::new()
        .name("history".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Some(e) = rx.blocking_recv() {
                serde_json::to_writer(&mut out, &e)?;
                out.write_all(b"\n")?;
            }
            out.flush()
        })?;
    Ok((tx, writer))
}

/// Reads a history file back.
pub fn read_history(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

/// Runs the shoppers (and admins) until `stop` turns true or, when bounded, every order has
/// been placed; every request and answer goes to `history`, and is counted in `live`.
pub async fn run(
    w: Workload,
    history: mpsc::Sender<Event>,
    stop: watch::Receiver<bool>,
    live: Arc<Live>,
) -> Counts {
    let http = w.http.clone();
    let w = Arc::new(w);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(admin) = w.admin.clone() {
        tasks.spawn(admins(
            admin,
            Arc::clone(&w),
            http.clone(),
            history.clone(),
            stop.clone(),
            chooser(w.seed, ADMINS.0, ADMINS.1),
        ));
    }
    let shopper = Shopper {
        http,
        w: Arc::clone(&w),
        history,
        live: Arc::clone(&live),
    };
    for (e, edge) in w.edges.iter().enumerate() {
        for s in 0..w.shoppers_per_edge {
            let (shopper, stop) = (shopper.clone(), stop.clone());
            let (edge, customer) = (edge.clone(), format!("drill-{e}-{s}"));
            let mut rng = chooser(w.seed, e as u64, s as u64);
            let now_s = util::clock::now_ms().unsigned_abs() / 1_000;
            // A day: longer than any drill.
            let token = match w.shoppers.sign(&customer, None, now_s, 86_400) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "no shopper token; this shopper sits out");
                    continue;
                }
            };
            tasks.spawn(async move {
                while !stopped(&stop) {
                    if rng.random_range(0..100) < shopper.w.browse_percent {
                        shopper.browse(&edge, &mut rng).await;
                        continue;
                    }
                    let placed = shopper.live.attempted.fetch_add(1, Ordering::Relaxed);
                    if shopper.w.max_orders.is_some_and(|m| placed >= m) {
                        shopper.live.attempted.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                    shopper.order(e, &customer, &token, &mut rng, &stop).await;
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    live.counts()
}

/// Told to stop, or no one left to tell it (the drill is gone).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// One shopper's means: the client, the plan, where to record and count.
#[derive(Clone)]
struct Shopper {
    http: reqwest::Client,
    w: Arc<Workload>,
    history: mpsc::Sender<Event>,
    live: Arc<Live>,
}

impl Shopper {
    fn pick_sku(&self, rng: &mut StdRng) -> String {
        let w = &self.w;
        if rng.random_range(0..100) < w.hot_percent || w.skus.is_empty() {
            w.hot.clone()
        } else {
            w.skus[rng.random_range(0..w.skus.len())].clone()
        }
    }

    /// A quote for a SKU, or the first page of the catalog.
    async fn browse(&self, edge: &str, rng: &mut StdRng) {
        let url = if rng.random() {
            format!(
                "{edge}/v1/skus/{}/quote?qty=1&currency=USD",
                self.pick_sku(rng)
            )
        } else {
            format!("{edge}/v1/products?limit=20&currency=USD")
        };
        let at_ms = util::clock::now_ms().unsigned_abs();
        let status = match self.http.get(url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                // The whole body: a read is done when the shopper has the page.
                let _ = r.bytes().await;
                status
            }
            Err(_) => 0,
        };
        if status == 200 {
            self.live.browsed.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .history
            .send(Event::Browse {
                at_ms,
                edge: edge.to_owned(),
                status,
                took_ms: util::clock::now_ms().unsigned_abs().saturating_sub(at_ms),
            })
            .await;
        if status != 200 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// One order: sent at edge `home` first, and again under the same key after no answer or
    /// a 5xx, up to `ATTEMPTS_MAX` times, half the time at another edge.
    async fn order(
        &self,
        home: usize,
        customer: &str,
        token: &str,
        rng: &mut StdRng,
        stop: &watch::Receiver<bool>,
    ) {
        let key = key(rng);
        let lines = vec![Line {
            sku: self.pick_sku(rng),
            qty: 1,
        }];
        let edges = &self.w.edges;
        let mut at = home;
        for attempt in 0..ATTEMPTS_MAX {
            let Some(edge) = edges.get(at) else {
                return;
            };
            let status = self.attempt(edge, customer, token, &key, &lines).await;
            let retry = status == 0 || status >= 500;
            // A shopper whose edge is down or overloaded, asks it to slow down (429), or has
            // run out of stock (409: the edges that still hold units sell them meanwhile)
            // tries again a moment later.
            if retry || matches!(status, 409 | 429) {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            // A drill told to stop has its shoppers give up their retries too.
            if !retry || attempt + 1 == ATTEMPTS_MAX || stopped(stop) {
                return;
            }
            self.live.retried.fetch_add(1, Ordering::Relaxed);
            if edges.len() > 1 && rng.random() {
                at = (at + rng.random_range(1..edges.len())) % edges.len();
                self.live.retried_elsewhere.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One sending of an order, recorded and counted; the status it got (0: no answer).
    async fn attempt(
        &self,
        edge: &str,
        customer: &str,
        token: &str,
        key: &str,
        lines: &[Line],
    ) -> u16 {
        let _ = self
            .history
            .send(Event::Order {
                at_ms: util::clock::now_ms().unsigned_abs(),
                edge: edge.to_owned(),
                customer: customer.to_owned(),
                key: key.to_owned(),
                lines: lines.to_vec(),
            })
            .await;
        let body = serde_json::json!({
            "currency": "USD",
            "lines": lines.iter().map(|l| serde_json::json!({"sku": l.sku, "qty": l.qty})).collect::<Vec<_>>(),
            "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"},
        });
        let res = self
            .http
            .post(format!("{edge}/v1/orders"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await;
        let (status, order_id, problem) = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                (
                    status,
                    v["order_id"].as_str().map(str::to_owned),
                    v["type"].as_str().map(str::to_owned),
                )
            }
            Err(_) => (0, None, None),
        };
        let counter = match status {
            200 | 201 => &self.live.acked,
            400..500 => &self.live.refused,
            _ => &self.live.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .history
            .send(Event::OrderAnswer {
                at_ms: util::clock::now_ms().unsigned_abs(),
                customer: customer.to_owned(),
                key: key.to_owned(),
                status,
                order_id,
                problem,
            })
            .await;
        status
    }
}

/// Price changes and stock additions, in turn, at whichever core takes them first.
async fn admins(
    a: AdminLoad,
    w: Arc<Workload>,
    http: reqwest::Client,
    history: mpsc::Sender<Event>,
    stop: watch::Receiver<bool>,
    mut rng: StdRng,
) {
    let mut tick = tokio::time::interval(a.every);
    let mut n: u64 = 0;
    while !stopped(&stop) {
        tick.tick().await;
        if w.skus.is_empty() || a.cores.is_empty() {
            return;
        }
        n += 1;
        let sku = &w.skus[rng.random_range(0..w.skus.len())];
        let (what, path, body, price) = if n.is_multiple_of(2) {
            let amount: u32 = rng.random_range(500..50_000);
            (
                format!("price {sku} USD {amount}"),
                "prices",
                serde_json::json!({"changes": [{"sku": sku, "currency": "USD", "amount_minor": amount}]}),
                Some(PriceSet {
                    sku: sku.clone(),
                    amount_minor: i64::from(amount),
                }),
            )
        } else {
            (
                format!("stock {sku} +10"),
                "stock",
                serde_json::json!({"changes": [{"sku": sku, "add": 10}]}),
                None,
            )
        };
        let key = key(&mut rng);
        let at_ms = util::clock::now_ms().unsigned_abs();
        let (mut status, mut core, mut version) = (0, String::new(), None);
        // One Idempotency-Key for every core tried: a change that committed at one core whose
        // answer was lost is not applied twice at the next.
        for c in a
            .cores
            .iter()
            .cycle()
            .skip(n as usize % a.cores.len())
            .take(a.cores.len())
        {
            let res = http
                .post(format!("{c}/admin/v1/{path}"))
                .bearer_auth(&a.token)
                .header("idempotency-key", &key)
                .timeout(ADMIN_TIMEOUT)
                .json(&body)
                .send()
                .await;
            if let Ok(r) = res {
                (status, core) = (r.status().as_u16(), c.clone());
                if r.status().is_success() {
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    version = body["version"].as_u64();
                    break;
                }
            }
        }
        let _ = history
            .send(Event::Admin {
                at_ms,
                core,
                what,
                status,
                version,
                price,
            })
            .await;
    }
}

/// Per SKU, the unit list price an order's lines were priced at from `BASE_LIST` (the
/// `list_price` step of each line's breakdown).
fn base_prices(lines: &serde_json::Value) -> std::collections::BTreeMap<String, i64> {
    lines
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let step = l["breakdown"]
                .as_array()?
                .iter()
                .find_map(|s| s.get("list_price"))?;
            (step["list"] == BASE_LIST)
                .then(|| Some((l["sku"].as_str()?.to_owned(), step["unit_minor"].as_i64()?)))?
        })
        .collect()
}

/// Every decided order and the inventory of `skus`, from the core at `admin`.
pub async fn final_state(mesh: &Mesh, admin: &str, skus: &[String]) -> anyhow::Result<FinalState> {
    let http = mesh.client(REQUEST_TIMEOUT)?;
    let token = &mesh.admin_token;
    let get = |url: String| {
        let req = http.get(url).bearer_auth(token);
        async move {
            let res = req.send().await?.error_for_status()?;
            anyhow::Ok(res.json::<serde_json::Value>().await?)
        }
    };
    let mut orders = Vec::new();
    let mut after = String::new();
    loop {
        let page = get(format!(
            "{admin}/admin/v1/orders?limit={PAGE}&after={after}"
        ))
        .await?;
        for o in page["items"].as_array().into_iter().flatten() {
            orders.push(FinalOrder {
                order_id: o["order_id"].as_str().unwrap_or_default().to_owned(),
                status: o["status"].as_str().unwrap_or_default().to_owned(),
                customer_id: o["customer_id"].as_str().unwrap_or_default().to_owned(),
                idempotency_key: o["idempotency_key"].as_str().map(str::to_owned),
                lines: serde_json::from_value(o["lines"].clone()).unwrap_or_default(),
                price_version: o["price_version"].as_u64(),
                base_prices: base_prices(&o["lines"]),
            });
        }
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    let mut inventory = Vec::new();
    for sku in skus {
        let i = get(format!("{admin}/admin/v1/inventory/{sku}")).await?;
        inventory.push(FinalInventory {
            sku: sku.clone(),
            stocked: i["stocked"].as_u64().unwrap_or(0),
            committed: i["committed"].as_u64().unwrap_or(0),
            granted: i["granted"]
                .as_object()
                .map_or(0, |g| g.values().filter_map(|v| v.as_u64()).sum()),
        });
    }
    Ok(FinalState { orders, inventory })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed gives each shopper the same choices again, and shoppers different ones.
    #[test]
    fn choices_follow_the_seed() {
        let draws = |seed, e, s| {
            let mut r = chooser(seed, e, s);
            (0..8)
                .map(|_| r.random_range(0..1_000u32))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(42, 0, 1), draws(42, 0, 1));
        assert_ne!(draws(42, 0, 1), draws(42, 1, 0));
        assert_ne!(draws(42, 0, 1), draws(43, 0, 1));
        let k = key(&mut chooser(7, 0, 0));
        let ms = commerce::order_id::key_time_ms(&k).unwrap();
        assert!(
            util::clock::now_ms().unsigned_abs().abs_diff(ms) < 10_000,
            "{k}"
        );
    }
}
