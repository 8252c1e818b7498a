//! Three core regions as real processes (the release binary) on loopback, replicating with Raft
//! over QUIC: replicated write throughput, durable in every region's store, and failover time
//! from SIGKILL of the leader's process to the first write committed at another region, and the
//! change feed's latency from a price change at the leader to an edge of another region.
//!
//! Run: `cargo bench -p tradewind --bench cluster`. Baselines in the same run: the same
//! throughput loads against a single region (no replication), the latency of one write in
//! steady state, and of the same price change until the leader answers.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce::command::{EdgeRequest, EdgeWrite, Outcome};
use common::{
    CoreProcess, TOKEN, client, edge_order, median, mesh_node, percentile, write_group,
    write_group_of,
};
use replication::protocol::Payload;
use replication::transport::Transport;
use serde_json::{Value, json};

const SKUS: usize = 10_000;
const PRICE_BATCH: usize = 1_000;
/// Orders per forwarded batch: an edge under load sends what its outbox holds, up to 1,000.
const ORDER_BATCH: usize = 250;
/// Concurrent clients: admin tools sending price batches, or edges forwarding their outboxes.
const CLIENTS: usize = 16;
const FAILOVERS: usize = 7;
/// Price changes timed through the feed: enough for a p99 that is not the maximum.
const FEED_SAMPLES: usize = 500;

fn sku(i: usize) -> String {
    format!("S-{i:05}")
}

async fn send(method: reqwest::Method, url: String, body: &Value) -> Value {
    let res = client()
        .request(method, &url)
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

async fn seed(admin: &str) {
    send(
        reqwest::Method::PUT,
        format!("{admin}/admin/v1/markets/sea"),
        &json!({"id": "sea", "countries": ["SG"], "currencies": ["USD"]}),
    )
    .await;
    for p in 0..SKUS / 200 {
        let skus: Vec<Value> = (0..200).map(|i| json!({"sku": sku(p * 200 + i)})).collect();
        send(
            reqwest::Method::PUT,
            format!("{admin}/admin/v1/products/P-{p}"),
            &json!({"id": format!("P-{p}"), "title": "Bolt", "category": "industrial", "skus": skus}),
        )
        .await;
    }
    for chunk in (0..SKUS).collect::<Vec<_>>().chunks(PRICE_BATCH) {
        let prices: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"sku": sku(*i), "currency": "USD", "amount_minor": 1000}))
            .collect();
        send(
            reqwest::Method::POST,
            format!("{admin}/admin/v1/prices"),
            &json!({"changes": prices}),
        )
        .await;
        let stock: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"sku": sku(*i), "set": 1_000_000_000u64}))
            .collect();
        send(
            reqwest::Method::POST,
            format!("{admin}/admin/v1/stock"),
            &json!({"changes": stock}),
        )
        .await;
    }
}

async fn version(admin: &str) -> u64 {
    let v: Value = client()
        .get(format!("{admin}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["version"].as_u64().unwrap_or(0)
}

/// Waits until every region has applied `target`.
async fn everywhere(admins: &[String], target: u64) {
    for a in admins {
        while version(a).await < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// How a load reaches a region: the admin API (HTTP/JSON, as admin tools send), or the mesh
/// (QUIC/bincode, as edges send), one edge per client.
#[derive(Clone)]
enum Via {
    Http(String),
    Mesh(Vec<Edge>),
}

/// An edge and the region it sends to.
#[derive(Clone)]
struct Edge {
    node: Arc<Transport>,
    region: String,
    addr: SocketAddr,
}

/// Per second: one client per element of `bodies` sends its bodies in turn `via`; timed until
/// the last write is applied in every region of `admins`. Bodies are encoded before the clock
/// starts and sent over pooled connections, so that the load generator, which shares the
/// machine with the regions, spends as little of it as it can.
async fn load(via: &Via, admins: &[String], bodies: Vec<Vec<Value>>, items: usize) -> f64 {
    #[derive(serde::Deserialize)]
    struct Committed {
        version: u64,
    }
    let http = client();
    let bodies: Vec<Vec<Vec<u8>>> = bodies
        .iter()
        .map(|bs| bs.iter().map(|b| encode(via, b)).collect())
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(client, bs)| {
            let (http, via) = (http.clone(), via.clone());
            tokio::spawn(async move {
                let mut last = 0;
                for b in bs {
                    let version = match &via {
                        Via::Http(url) => {
                            let res = http
                                .post(url)
                                .bearer_auth(TOKEN)
                                .header("content-type", "application/json")
                                .body(b)
                                .send()
                                .await
                                .unwrap();
                            let status = res.status();
                            let body = res.bytes().await.unwrap();
                            assert!(status.is_success(), "{url}: {status} {body:?}");
                            serde_json::from_slice::<Committed>(&body).unwrap().version
                        }
                        Via::Mesh(edges) => {
                            let e = &edges[client];
                            let reply = replication::raft::submit(
                                &e.node,
                                &e.region,
                                e.addr,
                                Payload(b),
                                Duration::from_secs(30),
                            )
                            .await
                            .unwrap();
                            match codec::decode(&reply.0).unwrap() {
                                Outcome::Orders { version, .. } => version,
                                other => panic!("{other:?}"),
                            }
                        }
                    };
                    last = last.max(version);
                }
                last
            })
        })
        .collect();
    let mut last = 0;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    everywhere(admins, last).await;
    items as f64 / start.elapsed().as_secs_f64()
}

/// `body` (an admin API body) as `via` sends it.
fn encode(via: &Via, body: &Value) -> Vec<u8> {
    match via {
        Via::Http(_) => serde_json::to_vec(body).unwrap(),
        Via::Mesh(..) => {
            let orders: Vec<commerce::order::Order> =
                serde_json::from_value(body["orders"].clone()).unwrap();
            let write = EdgeWrite {
                request: EdgeRequest::Commit(orders),
            };
            codec::encode(&write).unwrap()
        }
    }
}

fn price_bodies(round: usize) -> Vec<Vec<Value>> {
    (0..CLIENTS)
        .map(|c| {
            (0..SKUS / PRICE_BATCH)
                .map(|b| {
                    let changes: Vec<Value> = (0..PRICE_BATCH)
                        .map(|i| json!({"sku": sku((b * PRICE_BATCH + i) % SKUS), "currency": "USD", "amount_minor": 1000 + round * 10 + c}))
                        .collect();
                    json!({ "changes": changes })
                })
                .collect()
        })
        .collect()
}

/// Orders from `CLIENTS` edges (`edge-0`, ...), each `batches` batches of `ORDER_BATCH`, under
/// UUIDv7 keys.
fn order_bodies(round: usize, batches: usize) -> Vec<Vec<Value>> {
    (0..CLIENTS)
        .map(|e| {
            (0..batches)
                .map(|b| {
                    let orders: Vec<Value> = (0..ORDER_BATCH)
                        .map(|i| {
                            let n = ((round * CLIENTS + e) * batches + b) * ORDER_BATCH + i;
                            let ms = 1_764_000_000_000u64 + n as u64;
                            let key = format!(
                                "{:08x}-{:04x}-7000-8000-{:012x}",
                                ms >> 16,
                                ms & 0xffff,
                                n
                            );
                            edge_order(&format!("edge-{e}"), &key, &sku(n % SKUS))
                        })
                        .collect();
                    json!({"edge": format!("edge-{e}"), "orders": orders})
                })
                .collect()
        })
        .collect()
}

/// The region that leads, asked of region `ask`; `None` while there is none.
async fn leader_name(admin: &str) -> Option<String> {
    let res = client()
        .get(format!("{admin}/admin/v1/cluster"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let v: Value = res.json().await.ok()?;
    v["leader"].as_str().map(str::to_owned)
}

/// The region that leads, waiting out an election.
async fn current_leader(admin: &str) -> String {
    loop {
        if let Some(l) = leader_name(admin).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One small write at `admin`, retried until it commits; returns when it did.
async fn write_until_committed(admin: &str, n: usize) -> Instant {
    // One key for every attempt: an attempt that committed unheard is not applied again.
    let key = common::admin_key(&format!("failover-{n}"));
    loop {
        let res = client()
            .post(format!("{admin}/admin/v1/stock"))
            .bearer_auth(TOKEN)
            .header("idempotency-key", &key)
            .json(&json!({"changes": [{"sku": sku(0), "add": 1}]}))
            .send()
            .await;
        if res.is_ok_and(|r| r.status().is_success()) {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let configs = write_group(dir.path());
        let mut cores: Vec<Option<CoreProcess>> =
            configs.iter().map(|c| Some(CoreProcess::start(c, &[]))).collect();
        let admins: Vec<String> = cores.iter().map(|c| c.as_ref().unwrap().admin.clone()).collect();
        let names = common::REGIONS;
        current_leader(&admins[0]).await;
        seed(&admins[0]).await;

        // The baseline: one region alone (a group of one), same loads.
        let solo_dir = tempfile::tempdir().unwrap();
        let solo = CoreProcess::start(&write_group_of(solo_dir.path(), &["solo"])[0], &[]);
        current_leader(&solo.admin).await;
        seed(&solo.admin).await;
        let solo_admins = vec![solo.admin.clone()];

        // Edges, each with its own certificate. An edge's forwarder follows the leader, so the
        // edges send to the region that leads.
        let edges = |certs: &Path| -> Vec<Arc<Transport>> {
            (0..CLIENTS).map(|e| Arc::new(mesh_node(certs, &format!("edge-{e}")))).collect()
        };
        let to = |nodes: &[Arc<Transport>], region: &str, addr: SocketAddr| {
            Via::Mesh(nodes.iter().map(|n| Edge { node: Arc::clone(n), region: region.into(), addr }).collect())
        };
        let (group_edges, solo_edges) = (edges(&dir.path().join("certs")), edges(&solo_dir.path().join("certs")));
        let solo_mesh = to(&solo_edges, "solo", solo.quic.unwrap());

        let (mut prices, mut prices_solo) = (vec![], vec![]);
        let (mut orders, mut orders_solo, mut orders_http, mut orders_http_solo) = (vec![], vec![], vec![], vec![]);
        let order_batches = 10;
        for round in 0..5 {
            let lead = current_leader(&admins[0]).await;
            let li = names.iter().position(|n| *n == lead).unwrap();
            let at = |path: &str| Via::Http(format!("{}{path}", admins[li]));
            let solo_at = |path: &str| Via::Http(format!("{}{path}", solo.admin));
            let items = CLIENTS * SKUS;
            prices.push(load(&at("/admin/v1/prices"), &admins, price_bodies(round), items).await);
            prices_solo.push(load(&solo_at("/admin/v1/prices"), &solo_admins, price_bodies(round), items).await);
            let items = CLIENTS * order_batches * ORDER_BATCH;
            let mesh = to(&group_edges, &lead, cores[li].as_ref().unwrap().quic.unwrap());
            // Each round commits new orders: four rounds of bodies for the four loads.
            orders.push(load(&mesh, &admins, order_bodies(4 * round, order_batches), items).await);
            orders_solo.push(load(&solo_mesh, &solo_admins, order_bodies(4 * round + 1, order_batches), items).await);
            orders_http.push(load(&at("/admin/v1/escrow/commits"), &admins, order_bodies(4 * round + 2, order_batches), items).await);
            orders_http_solo.push(load(&solo_at("/admin/v1/escrow/commits"), &solo_admins, order_bodies(4 * round + 3, order_batches), items).await);
            eprintln!("throughput round {} done", round + 1);
        }
        drop(solo);

        // Feed: an edge of a region that does not lead follows that region's feed; price
        // changes go to the leader one at a time.
        let lead = current_leader(&admins[0]).await;
        let li = names.iter().position(|n| *n == lead).unwrap();
        let home = (li + 1) % 3;
        let (edge, _follower) = common::follow_feed(
            &dir.path().join("certs"),
            "bench-edge-1",
            vec![replication::feed::Core {
                name: names[home].into(),
                addr: cores[home].as_ref().unwrap().quic.unwrap(),
            }],
        );
        edge.applied(version(&admins[home]).await, Duration::from_secs(60)).await;
        let (mut feed_ms, mut write_ms) = (Vec::new(), Vec::new());
        for n in 0..FEED_SAMPLES {
            let body = json!({"changes": [{"sku": sku(n % SKUS), "currency": "USD", "amount_minor": 5000 + n}]});
            let start = Instant::now();
            let v = send(reqwest::Method::POST, format!("{}/admin/v1/prices", admins[li]), &body).await;
            write_ms.push(start.elapsed().as_secs_f64() * 1000.0);
            edge.applied(v["version"].as_u64().unwrap(), Duration::from_secs(10)).await;
            feed_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }

        // Steady-state latency of one write, the baseline of failover.
        let mut steady = Vec::new();
        for n in 0..20 {
            let start = Instant::now();
            write_until_committed(&admins[0], 100_000 + n).await;
            steady.push(start.elapsed().as_secs_f64() * 1000.0);
        }

        let mut failovers = Vec::new();
        for n in 0..FAILOVERS {
            let lead = current_leader(&admins[0]).await;
            let li = names.iter().position(|x| *x == lead).unwrap();
            let other = (li + 1) % 3;
            let killed = Instant::now();
            cores[li].take().unwrap().kill();
            let committed = write_until_committed(&admins[other], n).await;
            let ms = (committed - killed).as_secs_f64() * 1000.0;
            eprintln!("failover {}: leader {lead} killed, first write at {} after {ms:.0} ms", n + 1, names[other]);
            failovers.push(ms);
            // Back to three regions, caught up, before the next run.
            cores[li] = Some(CoreProcess::start(&configs[li], &[]));
            let target = version(&admins[other]).await;
            everywhere(&admins, target).await;
        }

        println!("3 regions on loopback, medians of 5 runs (failover: of {FAILOVERS}), per second unless noted:");
        println!("  price changes, batches of 1,000, {CLIENTS} clients, durable in all 3 regions: {:>9.0}", median(prices.clone()));
        println!("    baseline: one region alone:                                          {:>9.0}   ratio {:.2}", median(prices_solo.clone()), median(prices) / median(prices_solo));
        println!("  order commits from {CLIENTS} edges over the mesh, batches of {ORDER_BATCH}, durable in all 3:  {:>9.0}", median(orders.clone()));
        println!("    baseline: one region alone:                                          {:>9.0}   ratio {:.2}", median(orders_solo.clone()), median(orders) / median(orders_solo));
        println!("  the same through the admin API (HTTP/JSON), durable in all 3 regions:  {:>9.0}", median(orders_http.clone()));
        println!("    baseline: one region alone:                                          {:>9.0}   ratio {:.2}", median(orders_http_solo.clone()), median(orders_http) / median(orders_http_solo));
        let mut sorted = failovers.clone();
        sorted.sort_by(f64::total_cmp);
        println!("  failover, SIGKILL of the leader to the first write committed elsewhere (ms): median {:.0}, min {:.0}, max {:.0}", median(failovers), sorted[0], sorted[sorted.len() - 1]);
        println!("    baseline: one write in steady state (ms): median {:.1}", median(steady));
        println!("  feed, a price change sent to the leader until applied by an edge of another region (ms, {FEED_SAMPLES} changes): p50 {:.1}, p99 {:.1}", percentile(&feed_ms, 0.50), percentile(&feed_ms, 0.99));
        println!("    baseline: the same write until the leader answers (ms): p50 {:.1}, p99 {:.1}", percentile(&write_ms, 0.50), percentile(&write_ms, 0.99));
    });
}
