//! Three core regions as real processes, replicating over QUIC with mutual TLS on loopback: the
//! leader killed and another region committing, nothing committed lost, a killed region
//! catching up, a region cut off from the others unable to commit alone, an order retried
//! across a failover committed once, edges following a region's change feed through the loss
//! of that region, and edges writing over the mesh, each only for itself.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use commerce::command::{EdgeRequest, EdgeWrite, Outcome};
use commerce::escrow::Demand;
use commerce::order::OrderStatus;
use common::{
    CoreProcess, REGIONS, SharedMirror, TOKEN, client, edge_order, edge_write, follow_feed,
    mesh_node, order, write_group,
};
use fault::Kind;
use replication::feed::Core;
use replication::protocol::{Payload, WriteError};
use serde_json::{Value, json};

struct Group {
    _dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    cores: Vec<Option<CoreProcess>>,
}

impl Group {
    fn start() -> Group {
        let dir = tempfile::tempdir().unwrap();
        let configs = write_group(dir.path());
        let cores = configs
            .iter()
            .map(|c| Some(CoreProcess::start(c, &[])))
            .collect();
        Group {
            _dir: dir,
            configs,
            cores,
        }
    }

    fn certs(&self) -> PathBuf {
        self._dir.path().join("certs")
    }

    /// Region `i`'s feed, as an edge finds it.
    fn feed(&self, i: usize) -> Core {
        Core {
            name: REGIONS[i].into(),
            addr: self
                .core(i)
                .quic
                .expect("a region of a group has a QUIC endpoint"),
        }
    }

    fn core(&self, i: usize) -> &CoreProcess {
        self.cores[i].as_ref().expect("region is up")
    }

    async fn cluster(&self, i: usize) -> Value {
        get(self.core(i), "/admin/v1/cluster").await
    }

    /// Waits until some region leads, seen from region `ask`, and returns its index.
    async fn leader(&self, ask: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.cluster(ask).await;
            if let Some(name) = c["leader"].as_str()
                && let Some(i) = REGIONS.iter().position(|r| *r == name)
                && self.cores[i].is_some()
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader: {c}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until region `i` has applied `version`.
    async fn applied(&self, i: usize, version: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h: Value = client()
                .get(self.core(i).url("/healthz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if h["version"].as_u64().unwrap_or(0) >= version {
                return;
            }
            assert!(Instant::now() < deadline, "{} stuck at {h}", REGIONS[i]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn get(core: &CoreProcess, path: &str) -> Value {
    let res = client()
        .get(core.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap()
}

/// Posts `body` to `path` under Idempotency-Key `key`: as it is for an order (any key names
/// one), as a key that says when it was made for any other admin write (`admin_key`).
async fn post(core: &CoreProcess, path: &str, key: &str, body: &Value) -> reqwest::Response {
    let key = if path == "/admin/v1/orders" {
        key.to_owned()
    } else {
        common::admin_key(key)
    };
    client()
        .post(core.url(path))
        .bearer_auth(TOKEN)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A catalog of one product with one SKU, written at region `via` (any region takes writes).
async fn seed(g: &Group, via: usize) -> u64 {
    common::seed(&g.core(via).admin, 1000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_dies_another_region_commits_and_nothing_is_lost() {
    let mut g = Group::start();
    let leader = g.leader(0).await;
    let follower = (leader + 1) % 3;
    // Writes at a follower are forwarded to the leader.
    seed(&g, follower).await;
    // Orders keep coming through the follower while the leader is killed: the kill lands
    // with orders in flight, some acknowledged and not yet at every region.
    let url = g.core(follower).url("/admin/v1/orders");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let shopper = tokio::spawn(async move {
        let mut answers = Vec::new();
        for i in 0u32.. {
            if *stopped.borrow_and_update() {
                break;
            }
            let res = client()
                .post(&url)
                .bearer_auth(TOKEN)
                .header(
                    "idempotency-key",
                    format!("019a0000-0000-7000-8000-{i:012x}"),
                )
                .json(&order("S-1"))
                .send()
                .await;
            let acked = match res {
                Ok(r) if r.status() == 201 => {
                    let o: Value = r.json().await.unwrap();
                    Some(o["order_id"].clone())
                }
                _ => None,
            };
            answers.push(acked);
        }
        answers
    });
    let mut waited = 0;
    while g.cluster(leader).await["version"].as_u64().unwrap_or(0) < 20 && waited < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    // The leader's process is killed; another region takes writes.
    let killed_at = Instant::now();
    g.cores[leader].take().unwrap().kill();
    let survivor = follower;
    let mut committed = None;
    while committed.is_none() {
        let r = post(
            g.core(survivor),
            "/admin/v1/stock",
            "after-failover",
            &json!({"changes": [{"sku": "S-1", "add": 1}]}),
        )
        .await;
        if r.status().is_success() {
            committed = Some(killed_at.elapsed());
        } else {
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "no write after failover: {}",
                r.status()
            );
        }
    }
    let _ = stop.send(true);
    let answers = shopper.await.unwrap();
    let recovered = committed.unwrap();
    println!(
        "first write committed {recovered:?} after the leader was killed; {} orders sent, {} acknowledged",
        answers.len(),
        answers.iter().flatten().count()
    );
    // Held to a bound, not only printed: DESIGN's RTO is 2 s; this debug build shares two
    // cores with three cores' processes, so 10 s.
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    let new_leader = g.leader(survivor).await;
    assert_ne!(new_leader, leader);
    // Nothing acknowledged is lost, in flight at the kill or not.
    let list = get(g.core(survivor), "/admin/v1/orders?limit=1000").await;
    let ids: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["order_id"])
        .collect();
    let acked: Vec<&Value> = answers.iter().flatten().collect();
    assert!(!acked.is_empty());
    for o in &acked {
        assert!(ids.contains(o), "order {o} acknowledged, then lost");
    }
    // The killed region comes back and catches up: the same orders, the same stock.
    g.cores[leader] = Some(CoreProcess::start(&g.configs[leader], &[]));
    let latest = g.cluster(survivor).await["version"].as_u64().unwrap();
    g.applied(leader, latest).await;
    let inv = get(g.core(leader), "/admin/v1/inventory/S-1").await;
    let committed_orders = ids.len() as u64;
    assert_eq!(
        (inv["on_hand"].as_u64(), inv["committed"].as_u64()),
        (Some(1_001 - committed_orders), Some(committed_orders)),
        "{inv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_cut_off_cannot_commit_alone_and_an_order_retried_across_failover_commits_once() {
    let g = Group::start();
    let leader = g.leader(0).await;
    seed(&g, leader).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    // The leader is cut off from both others: it cannot commit alone.
    for i in &others {
        g.core(*i).freeze();
    }
    let r = post(
        g.core(leader),
        "/admin/v1/orders",
        "019a0000-0000-7000-8000-0000000000aa",
        &order("S-1"),
    )
    .await;
    assert!(
        r.status().is_server_error(),
        "committed without a majority: {}",
        r.status()
    );
    // The others come back and the cut-off leader goes silent in turn: the two elect a new
    // leader between them (a failover), and the same order, retried there, commits once.
    for i in &others {
        g.core(*i).thaw();
    }
    g.core(leader).freeze();
    let deadline = Instant::now() + Duration::from_secs(30);
    let retry_at = loop {
        let seen = g.cluster(others[0]).await;
        if let Some(i) = seen["leader"]
            .as_str()
            .and_then(|name| REGIONS.iter().position(|r| *r == name))
            .filter(|i| *i != leader)
        {
            break i;
        }
        assert!(Instant::now() < deadline, "no failover: {seen}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(retry_at, leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    let placed = loop {
        let r = post(
            g.core(retry_at),
            "/admin/v1/orders",
            "019a0000-0000-7000-8000-0000000000aa",
            &order("S-1"),
        )
        .await;
        if r.status() == 201 {
            break r.json::<Value>().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "order never committed: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The old leader comes back, follows, and holds the order once; asked there, the same
    // order again: the one placed, nothing taken twice.
    g.core(leader).thaw();
    let version = g.cluster(retry_at).await["version"].as_u64().unwrap();
    g.applied(leader, version).await;
    let again = post(
        g.core(leader),
        "/admin/v1/orders",
        "019a0000-0000-7000-8000-0000000000aa",
        &order("S-1"),
    )
    .await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["order_id"], placed["order_id"]);
    let version = g.cluster(retry_at).await["version"].as_u64().unwrap();
    for (i, region) in REGIONS.iter().enumerate() {
        g.applied(i, version).await;
        let inv = get(g.core(i), "/admin/v1/inventory/S-1").await;
        assert_eq!(inv["committed"], 1, "region {region}");
    }
}

/// The USD price of S-1 and the units of S-1 available, as an edge's mirror holds them.
fn mirrored(m: &SharedMirror) -> (Option<i64>, Option<u64>) {
    let sku = commerce::SkuId::new("S-1").unwrap();
    m.with(|m| {
        (
            m.state.book.prices(&sku).first().map(|p| p.amount_minor),
            m.state.inventory(&sku).map(|i| i.available()),
        )
    })
}

async fn set_price(g: &Group, via: usize, key: &str, amount: i64) -> u64 {
    let r = post(
        g.core(via),
        "/admin/v1/prices",
        key,
        &json!({"changes": [{"sku": "S-1", "currency": "USD", "amount_minor": amount}]}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<Value>().await.unwrap()["version"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_follow_a_regions_feed_through_its_loss_and_a_restarted_region_sends_a_snapshot() {
    const WAIT: Duration = Duration::from_secs(20);
    let mut g = Group::start();
    let leader = g.leader(0).await;
    let home = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let version = seed(&g, leader).await;
    // An edge of the home region follows it (and the others when it is gone).
    let (edge, _follower) = follow_feed(
        &g.certs(),
        "edge-home-1",
        vec![g.feed(home), g.feed(other), g.feed(leader)],
    );
    edge.applied(version, WAIT).await;
    assert_eq!(mirrored(&edge), (Some(2500), Some(1000)));
    // The region started with the group, so its history reaches back to the start: no snapshot.
    assert_eq!(edge.with(|m| m.snapshots), 0);
    // A price changed at the leader reaches the edge of another region.
    let v = set_price(&g, leader, "price-1", 2300).await;
    edge.applied(v, WAIT).await;
    assert_eq!(mirrored(&edge).0, Some(2300));

    // The edge's region dies: the edge goes on with another region's feed, from where it was.
    g.cores[home].take().unwrap().kill();
    let v = set_price(&g, leader, "price-2", 2100).await;
    edge.applied(v, WAIT).await;
    assert_eq!(mirrored(&edge).0, Some(2100));
    assert_eq!(
        edge.with(|m| m.snapshots),
        0,
        "resumed from its version, not resent it all"
    );

    // The region comes back. Its feed's history begins at its restart, so an edge that holds
    // nothing gets a snapshot, and then the same state as the edge that never stopped.
    g.cores[home] = Some(CoreProcess::start(&g.configs[home], &[]));
    let v = set_price(&g, leader, "price-3", 1900).await;
    g.applied(home, v).await;
    let (fresh, _fresh_follower) = follow_feed(&g.certs(), "edge-home-2", vec![g.feed(home)]);
    fresh.applied(v, WAIT).await;
    edge.applied(v, WAIT).await;
    assert_eq!(fresh.with(|m| m.snapshots), 1);
    assert_eq!(mirrored(&fresh), (Some(1900), Some(1000)));
    assert_eq!(mirrored(&edge), mirrored(&fresh));
    let products = |m: &SharedMirror| m.with(|m| (m.state.product_count(), m.state.sku_count()));
    assert_eq!(products(&fresh), (1, 1));
    assert_eq!(products(&edge), products(&fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_write_over_the_mesh_at_any_region_each_only_for_itself() {
    let g = Group::start();
    let lead = g.leader(0).await;
    seed(&g, lead).await;
    let at = (lead + 1) % 3;
    let core = g.feed(at);
    let edge = mesh_node(&g.certs(), "edge-sg-1");
    let write = |request| EdgeWrite { request };

    // A grant, sized by the region's policy, asked of a region that does not lead.
    let demand = Demand {
        units: 10,
        window_ms: 1_000,
    };
    let grant = write(EdgeRequest::Grant {
        sku: commerce::SkuId::new("S-1").unwrap(),
        demand,
        request: 1,
    });
    let Ok(Outcome::Granted { units, .. }) = edge_write(&edge, &core.name, core.addr, &grant).await
    else {
        panic!("no grant");
    };
    assert!(units > 0);

    // Orders from that grant commit once; the same batch again is answered as duplicates.
    let orders: Vec<commerce::order::Order> = (0..3)
        .map(|i| serde_json::from_value(edge_order("edge-sg-1", &format!("k-{i}"), "S-1")).unwrap())
        .collect();
    let commit = write(EdgeRequest::Commit(orders.clone()));
    for duplicate in [false, true] {
        let Ok(Outcome::Orders { results, .. }) =
            edge_write(&edge, &core.name, core.addr, &commit).await
        else {
            panic!("no commit");
        };
        assert!(
            results
                .iter()
                .all(|r| r.status == OrderStatus::Committed && r.duplicate == duplicate),
            "{results:?}"
        );
    }
    let id = orders[0].order_id.as_str();
    let o = get(g.core(lead), &format!("/admin/v1/orders/{id}")).await;
    assert_eq!(o["status"], "committed", "{o}");

    // An edge speaks only for itself: an order another edge accepted is refused at commit.
    let other: commerce::order::Order =
        serde_json::from_value(edge_order("edge-other", "k-x", "S-1")).unwrap();
    let Ok(Outcome::Orders { results, .. }) = edge_write(
        &edge,
        &core.name,
        core.addr,
        &write(EdgeRequest::Commit(vec![other])),
    )
    .await
    else {
        panic!("no answer");
    };
    assert_eq!(results[0].status, OrderStatus::Rejected, "{results:?}");

    // An order whose id was derived under another deployment secret is still committed (its
    // shopper has a 201); the region says so in its log.
    let mut foreign: commerce::order::Order =
        serde_json::from_value(edge_order("edge-sg-1", "k-foreign", "S-1")).unwrap();
    foreign.order_id =
        commerce::order_id::OrderIdKey::new(&[9; 32]).order_id(&foreign.customer_id, "k-foreign");
    let Ok(Outcome::Orders { results, .. }) = edge_write(
        &edge,
        &core.name,
        core.addr,
        &write(EdgeRequest::Commit(vec![foreign])),
    )
    .await
    else {
        panic!("no answer");
    };
    assert_eq!(results[0].status, OrderStatus::Committed, "{results:?}");

    // A central order through the edge and the same Idempotency-Key at the admin API: one order.
    let request: commerce::order::OrderRequest = serde_json::from_value(order("S-1")).unwrap();
    let central = write(EdgeRequest::CentralOrder {
        idempotency_key: "central-1".into(),
        request,
    });
    let Ok(Outcome::Order {
        order: first,
        duplicate: false,
    }) = edge_write(&edge, &core.name, core.addr, &central).await
    else {
        panic!("no central order");
    };
    let again = post(g.core(lead), "/admin/v1/orders", "central-1", &order("S-1")).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["order_id"], first.order_id.as_str());

    // What is not an edge write, or not a valid one, is refused with the reason, and the
    // region goes on serving.
    let transport_refusal = replication::raft::submit(
        &edge,
        &core.name,
        core.addr,
        Payload(b"garbage".to_vec()),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        matches!(transport_refusal, Err(WriteError::Refused { kind: Kind::InvalidBody, ref reason }) if reason.contains("not an edge write")),
        "{transport_refusal:?}"
    );
    let empty = edge_write(
        &edge,
        &core.name,
        core.addr,
        &write(EdgeRequest::Commit(vec![])),
    )
    .await;
    assert!(
        matches!(empty, Err(WriteError::Refused { kind: Kind::InvalidBody, ref reason }) if reason.contains("1 to")),
        "{empty:?}"
    );
    let bad_key = edge_write(
        &edge,
        &core.name,
        core.addr,
        &write(EdgeRequest::CentralOrder {
            idempotency_key: "a key with spaces".into(),
            request: serde_json::from_value(order("S-1")).unwrap(),
        }),
    )
    .await;
    assert!(
        matches!(
            bad_key,
            Err(WriteError::Refused {
                kind: Kind::InvalidBody,
                ..
            })
        ),
        "{bad_key:?}"
    );
    assert!(matches!(
        edge_write(&edge, &core.name, core.addr, &grant).await,
        Ok(Outcome::Granted { .. })
    ));
}
