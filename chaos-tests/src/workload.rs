//! A drill's workload and what it learns: shoppers at every edge browsing and placing orders (a
//! UUIDv7 Idempotency-Key each, as the API recommends; one hot SKU takes a share of them) while
//! admins change prices and add stock, each request and each answer recorded with its time in
//! the history (JSON lines, `checker::Event`); and, once the mesh is quiet, the core's final
//! state, read through the admin API.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::checker::{Event, FinalInventory, FinalOrder, FinalState, Line};

/// History events waiting to be written.
const HISTORY_QUEUE: usize = 65_536;
/// How long one request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shopper waits after an edge did not answer, or answered 5xx.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
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
}

/// What the shoppers were told, counted.
#[derive(Debug, Default, serde::Serialize)]
pub struct Counts {
    pub attempted: u64,
    pub acked: u64,
    pub refused: u64,
    pub failed: u64,
    pub browsed: u64,
}

impl Live {
    pub fn counts(&self) -> Counts {
        Counts {
            attempted: self.attempted.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            browsed: self.browsed.load(Ordering::Relaxed),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A UUIDv7: the time in milliseconds, then random bits.
pub fn uuid_v7() -> String {
    let ms = now_ms();
    let r: u128 = rand::random();
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        ms >> 16,
        ms & 0xffff,
        (r >> 116) & 0xfff,
        0x8000 | ((r >> 100) & 0x3fff),
        r & 0xffff_ffff_ffff
    )
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
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap_or_default();
    let w = Arc::new(w);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(admin) = w.admin.clone() {
        tasks.spawn(admins(
            admin,
            Arc::clone(&w),
            http.clone(),
            history.clone(),
            stop.clone(),
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
            tasks.spawn(async move {
                while !stopped(&stop) {
                    if rand::random_range(0..100) < shopper.w.browse_percent {
                        shopper.browse(&edge).await;
                        continue;
                    }
                    let placed = shopper.live.attempted.fetch_add(1, Ordering::Relaxed);
                    if shopper.w.max_orders.is_some_and(|m| placed >= m) {
                        shopper.live.attempted.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                    shopper.order(&edge, &customer).await;
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
    fn pick_sku(&self) -> String {
        let w = &self.w;
        if rand::random_range(0..100) < w.hot_percent || w.skus.is_empty() {
            w.hot.clone()
        } else {
            w.skus[rand::random_range(0..w.skus.len())].clone()
        }
    }

    /// A quote for a SKU, or the first page of the catalog.
    async fn browse(&self, edge: &str) {
        let url = if rand::random() {
            format!(
                "{edge}/v1/skus/{}/quote?qty=1&currency=USD",
                self.pick_sku()
            )
        } else {
            format!("{edge}/v1/products?limit=20&currency=USD")
        };
        let at_ms = now_ms();
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
                took_ms: now_ms().saturating_sub(at_ms),
            })
            .await;
        if status != 200 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn order(&self, edge: &str, customer: &str) {
        let key = uuid_v7();
        let lines = vec![Line {
            sku: self.pick_sku(),
            qty: 1,
        }];
        let _ = self
            .history
            .send(Event::Order {
                at_ms: now_ms(),
                edge: edge.to_owned(),
                customer: customer.to_owned(),
                key: key.clone(),
                lines: lines.clone(),
            })
            .await;
        let body = serde_json::json!({
            "customer_id": customer, "currency": "USD",
            "lines": lines.iter().map(|l| serde_json::json!({"sku": l.sku, "qty": l.qty})).collect::<Vec<_>>(),
            "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"},
        });
        let res = self
            .http
            .post(format!("{edge}/v1/orders"))
            .header("idempotency-key", &key)
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
                at_ms: now_ms(),
                customer: customer.to_owned(),
                key,
                status,
                order_id,
                problem,
            })
            .await;
        // A shopper whose edge is down or overloaded, asks it to slow down (429), or has run out
        // of stock (409: the edges that still hold units sell them meanwhile) tries again a
        // moment later.
        if matches!(status, 0 | 409 | 429) || status >= 500 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Price changes and stock additions, in turn, at whichever core takes them first.
async fn admins(
    a: AdminLoad,
    w: Arc<Workload>,
    http: reqwest::Client,
    history: mpsc::Sender<Event>,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(a.every);
    let mut n: u64 = 0;
    while !stopped(&stop) {
        tick.tick().await;
        if w.skus.is_empty() || a.cores.is_empty() {
            return;
        }
        n += 1;
        let sku = &w.skus[rand::random_range(0..w.skus.len())];
        let (what, path, body) = if n.is_multiple_of(2) {
            let amount: u32 = rand::random_range(500..50_000);
            (
                format!("price {sku} USD {amount}"),
                "prices",
                serde_json::json!({"changes": [{"sku": sku, "currency": "USD", "amount_minor": amount}]}),
            )
        } else {
            (
                format!("stock {sku} +10"),
                "stock",
                serde_json::json!({"changes": [{"sku": sku, "add": 10}]}),
            )
        };
        let key = uuid_v7();
        let at_ms = now_ms();
        let (mut status, mut core) = (0, String::new());
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
            })
            .await;
    }
}

/// Every decided order and the inventory of `skus`, from the core at `admin`.
pub async fn final_state(admin: &str, token: &str, skus: &[String]) -> anyhow::Result<FinalState> {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
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
    #[test]
    fn keys_are_uuid_v7_led_by_the_time() {
        let k = super::uuid_v7();
        let b = k.as_bytes();
        assert_eq!(k.len(), 36, "{k}");
        assert!([8, 13, 18, 23].iter().all(|&i| b[i] == b'-'), "{k}");
        assert_eq!(b[14], b'7', "{k}");
        assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "{k}");
        let ms = u64::from_str_radix(&format!("{}{}", &k[..8], &k[9..13]), 16).unwrap();
        assert!(super::now_ms().abs_diff(ms) < 10_000);
        assert_ne!(super::uuid_v7(), k);
    }
}
