//! Edges and cores as real processes on loopback: the storefront from an edge's mirror, orders
//! accepted from its grants and committed at the core, orders accepted while the core is down
//! and committed once it is back, an edge killed with orders in its outbox forwarding them
//! after restart, one Idempotency-Key sent 100 times at once making one order, buyers at three
//! edges never getting more units than there are, an edge cut off from its core serving stale
//! reads and selling from its grants, bad input, and a graceful shutdown.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    CoreProcess, EdgeProcess, REGIONS, TOKEN, client, eventually, order, seed, shopper_client,
    write_edge_config, write_edge_config_with, write_group, write_group_of,
};
use serde_json::Value;

/// GET `url`: an admin API's with the admin token, a storefront's signed in as `CUSTOMER`.
async fn get_json(url: &str) -> (u16, Value) {
    let req = if url.contains("/admin/") {
        client().get(url).bearer_auth(TOKEN)
    } else {
        shopper_client().get(url)
    };
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Places an order for one unit of S-1 at `edge` under `key`: the status and the body.
async fn place(edge: &EdgeProcess, key: &str) -> (u16, Value) {
    let res = shopper_client()
        .post(edge.url("/v1/orders"))
        .header("idempotency-key", key)
        .json(&order("S-1"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits until `edge` is healthy (it has its region's catalog and hears from a core).
async fn ready(edge: &EdgeProcess) {
    eventually("edge healthy", Duration::from_secs(30), || async {
        get_json(&edge.url("/healthz")).await.0 == 200
    })
    .await;
}

/// Places orders until one is accepted from the edge's own grant (the first go to the core
/// while the grant keeper asks for one); returns how many it took.
async fn until_granted(edge: &EdgeProcess, prefix: &str) -> usize {
    for n in 0..200 {
        let (status, body) = place(edge, &format!("{prefix}-{n}")).await;
        assert!(status == 201, "{status} {body}");
        if body["status"] == "accepted" {
            return n + 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no grant arrived");
}

async fn committed_at_core(core: &CoreProcess, order_id: &str) -> bool {
    let (status, o) = get_json(&core.url(&format!("/admin/v1/orders/{order_id}"))).await;
    status == 200 && o["status"] == "committed"
}

/// The config of edge `name` of `region`, following `core` alone, with `extra` TOML (keys, then
/// sections).
fn edge_in(
    dir: &Path,
    core: &CoreProcess,
    region: &str,
    name: &str,
    extra: &str,
) -> std::path::PathBuf {
    write_edge_config_with(
        &dir.join(name),
        &dir.join("certs"),
        name,
        region,
        &[(region, core.quic.unwrap())],
        extra,
    )
}

/// Units the edge may sell from its grants.
async fn grant_units(edge: &EdgeProcess) -> u64 {
    edge.metric("tradewind_edge_grant_units").await
}

/// One region alone (a group of one, with its QUIC endpoint) seeded with `units` of S-1, and
/// its edge `solo-1` (config `extra`), healthy.
struct Solo {
    _dir: tempfile::TempDir,
    core_config: std::path::PathBuf,
    core: CoreProcess,
    edge_config: std::path::PathBuf,
    edge: EdgeProcess,
}

async fn solo(units: u64, extra: &str) -> Solo {
    let dir = tempfile::tempdir().unwrap();
    let core_config = write_group_of(dir.path(), &["solo"]).remove(0);
    let core = CoreProcess::start(&core_config, &[]);
    eventually("a leader", Duration::from_secs(30), || async {
        get_json(&core.url("/healthz")).await.1["leader"].is_string()
    })
    .await;
    seed(&core.admin, units).await;
    let edge_config = edge_in(dir.path(), &core, "solo", "solo-1", extra);
    let edge = EdgeProcess::start(&edge_config);
    ready(&edge).await;
    Solo {
        _dir: dir,
        core_config,
        core,
        edge_config,
        edge,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_serves_the_regions_catalog_and_orders_commit_at_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_group(dir.path());
    let cores: Vec<CoreProcess> = configs.iter().map(|c| CoreProcess::start(c, &[])).collect();
    // Any region takes writes; the edge follows the second region's feed first.
    seed(&cores[0].admin, 1_000).await;
    let order_of_cores: Vec<(&str, std::net::SocketAddr)> = [1, 0, 2]
        .iter()
        .map(|&i| (REGIONS[i], cores[i].quic.unwrap()))
        .collect();
    let config = write_edge_config(
        &dir.path().join("edge"),
        &dir.path().join("certs"),
        "ap-singapore-1",
        REGIONS[1],
        &order_of_cores,
    );
    let edge = EdgeProcess::start(&config);
    ready(&edge).await;

    let res = client()
        .get(edge.url("/v1/products/P-1?currency=USD"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].clone();
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["skus"][0]["price"]["amount_minor"], 2500, "{p}");
    assert_eq!(p["skus"][0]["available"], 1000, "{p}");
    let again = client()
        .get(edge.url("/v1/products/P-1?currency=USD"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    // A price change at the core reaches the edge's rendering through the feed.
    let res = client()
        .post(cores[2].url("/admin/v1/prices"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"changes": [{"sku": "S-1", "currency": "USD", "amount_minor": 2600}]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    eventually("the new price at the edge", Duration::from_secs(10), || async {
        get_json(&edge.url("/v1/products/P-1?currency=USD")).await.1["skus"][0]["price"]["amount_minor"]
            == 2600
    })
    .await;
    let (status, list) = get_json(&edge.url("/v1/products?limit=10&currency=USD")).await;
    assert_eq!(
        (status, list["items"][0]["id"].as_str()),
        (200, Some("P-1"))
    );
    let (status, q) = get_json(&edge.url("/v1/skus/S-1/quote?qty=3&currency=USD")).await;
    assert_eq!(
        (status, &q["total"]["amount_minor"]),
        (200, &Value::from(7800))
    );

    // The first orders go to the core (no grant yet); once the grant arrives they are
    // accepted here, and the forwarder commits them.
    until_granted(&edge, "first").await;
    let (status, o) = place(&edge, "local-1").await;
    assert_eq!(status, 201, "{o}");
    assert_eq!(o["status"], "accepted");
    assert_eq!(o["edge"], "ap-singapore-1");
    assert!(o["price_version"].as_u64().unwrap() > 0);
    let id = o["order_id"].as_str().unwrap().to_owned();
    // Its id is keyed by the deployment's secret: no function of the customer and key alone.
    let customer = commerce::CustomerId::new(common::CUSTOMER).unwrap();
    let secret =
        replication::certs::read_secret(&common::test_ca().join(replication::certs::SECRET_FILE))
            .unwrap();
    let keyed = commerce::order_id::OrderIdKey::of_deployment(&secret);
    assert_eq!(id, keyed.order_id(&customer, "local-1").as_str());
    assert!(id.starts_with("o2-"), "{id}");
    assert_ne!(id, commerce::order_id::v1_id(&customer, "local-1").as_str());
    eventually("committed at the core", Duration::from_secs(20), || {
        committed_at_core(&cores[2], &id)
    })
    .await;
    eventually(
        "committed as the edge sees it",
        Duration::from_secs(20),
        || async {
            get_json(&edge.url(&format!("/v1/orders/{id}"))).await.1["status"] == "committed"
        },
    )
    .await;

    // The same key again: the same order. Bad input: problem documents.
    let (status, same) = place(&edge, "local-1").await;
    assert_eq!((status, &same["order_id"]), (200, &Value::from(id.clone())));
    let res = shopper_client()
        .post(edge.url("/v1/orders"))
        .json(&order("S-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert!(
        p["type"]
            .as_str()
            .unwrap()
            .ends_with("missing-idempotency-key"),
        "{p}"
    );
    let mut unknown = order("NOPE");
    unknown["lines"][0]["sku"] = "NOPE".into();
    let res = shopper_client()
        .post(edge.url("/v1/orders"))
        .header("idempotency-key", "bad-1")
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let metrics = edge.metrics().await;
    assert!(
        metrics.contains("tradewind_edge_orders_accepted_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_taken_while_the_core_is_down_and_kept_through_an_edge_crash_commit_later() {
    let Solo {
        _dir,
        core_config,
        mut core,
        edge_config,
        mut edge,
    } = solo(1_000, "").await;
    // Demand grows the grants: sell until the edge holds a few units.
    until_granted(&edge, "warm").await;
    let mut n = 0;
    while grant_units(&edge).await < 3 {
        place(&edge, &format!("more-{n}")).await;
        n += 1;
        assert!(n < 200, "grants stay small");
    }

    // The core dies; the edge goes on selling from its grants.
    core.kill();
    let mut accepted = Vec::new();
    for i in 0..3 {
        let (status, o) = place(&edge, &format!("down-{i}")).await;
        assert_eq!(
            (status, &o["status"]),
            (201, &Value::from("accepted")),
            "{o}"
        );
        accepted.push(o["order_id"].as_str().unwrap().to_owned());
    }
    // Nothing left here and no core: a clear refusal, not an acknowledgement.
    while grant_units(&edge).await > 0 {
        let (status, o) = place(&edge, &format!("drain-{}", accepted.len())).await;
        assert_eq!(status, 201, "{o}");
        accepted.push(o["order_id"].as_str().unwrap().to_owned());
    }
    let (status, p) = place(&edge, "no-grant").await;
    assert_eq!(status, 503, "{p}");

    // The edge is killed with its outbox full; both come back; every order commits once.
    edge.kill();
    let core = CoreProcess::start(&core_config, &[]);
    let edge = EdgeProcess::start(&edge_config);
    for id in &accepted {
        eventually(
            "committed after the restarts",
            Duration::from_secs(30),
            || committed_at_core(&core, id),
        )
        .await;
    }
    eventually("the outbox drained", Duration::from_secs(30), || async {
        get_json(&edge.url("/v1/status")).await.1["outbox_pending"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_a_hundred_times_at_once_makes_one_order() {
    let Solo {
        _dir, core, edge, ..
    } = solo(1_000, "").await;
    until_granted(&edge, "warm").await;
    let tries: Vec<_> = (0..100)
        .map(|_| {
            let url = edge.url("/v1/orders");
            tokio::spawn(async move {
                let res = shopper_client()
                    .post(url)
                    .header("idempotency-key", "the-same-key")
                    .json(&order("S-1"))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for t in tries {
        let (status, o) = t.await.unwrap();
        assert!(status == 200 || status == 201, "{status} {o}");
        created += usize::from(status == 201);
        ids.insert(o["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(created, 1);
    let id = ids.into_iter().next().unwrap();
    eventually("committed", Duration::from_secs(20), || {
        committed_at_core(&core, &id)
    })
    .await;
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    // The warm-up orders and this one: one unit each.
    let (_, orders) = get_json(&core.url("/admin/v1/orders?limit=1000")).await;
    let units = orders["items"].as_array().unwrap().len() as u64;
    assert_eq!(inv["committed"], units, "{inv}");
}

/// Units of S-1 in stock, and buyers at each edge (one unit each): half again as many buyers
/// as units, so the last units are fought over.
const STOCK: u64 = 100;
const BUYERS_PER_EDGE: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_at_three_edges_never_get_more_than_the_units_in_stock() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_group(dir.path());
    let cores: Vec<CoreProcess> = configs.iter().map(|c| CoreProcess::start(c, &[])).collect();
    seed(&cores[0].admin, STOCK).await;
    let edges: Vec<EdgeProcess> = (0..3)
        .map(|i| {
            EdgeProcess::start(&edge_in(
                dir.path(),
                &cores[i],
                REGIONS[i],
                &format!("{}-1", REGIONS[i]),
                "",
            ))
        })
        .collect();
    // One buyer at each edge first: the demand that makes each edge ask for a grant, which
    // every edge holds before the rush.
    let mut sold = Vec::new();
    for (i, e) in edges.iter().enumerate() {
        ready(e).await;
        let res = shopper_client()
            .post(e.url("/v1/orders"))
            .header("idempotency-key", format!("first-{i}"))
            .json(&order("S-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        sold.push(
            res.json::<Value>().await.unwrap()["order_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for e in &edges {
        eventually("a grant at every edge", Duration::from_secs(30), || async {
            e.metric("tradewind_edge_grant_units").await > 0
        })
        .await;
    }
    // The buyers at each edge, each for one unit, all at once: the edges sell from their
    // grants (escrow) and, past them, through the core's pool.
    let tries: Vec<_> = edges
        .iter()
        .enumerate()
        .flat_map(|(e, edge)| {
            (0..BUYERS_PER_EDGE).map(move |b| {
                let url = edge.url("/v1/orders");
                tokio::spawn(async move {
                    let res = shopper_client()
                        .post(url)
                        .header("idempotency-key", format!("buyer-{e}-{b}"))
                        .json(&order("S-1"))
                        .send()
                        .await
                        .unwrap();
                    let status = res.status().as_u16();
                    (status, res.json::<Value>().await.unwrap())
                })
            })
        })
        .collect();
    let (mut refused, mut unavailable) = (0, 0);
    for t in tries {
        let (status, o) = t.await.unwrap();
        match status {
            201 => sold.push(o["order_id"].as_str().unwrap().to_owned()),
            409 => refused += 1,
            503 => unavailable += 1,
            _ => panic!("{status} {o}"),
        }
    }
    let from_grants: u64 = {
        let mut n = 0;
        for e in &edges {
            n += e.metric("tradewind_edge_orders_accepted_total").await;
        }
        n
    };
    println!(
        "{} sold ({from_grants} from the edges' grants), {refused} refused, {unavailable} unavailable",
        sold.len()
    );
    assert!(
        sold.len() as u64 <= STOCK,
        "{} units sold of {STOCK}",
        sold.len()
    );
    // Not a test that passes when nothing sells: most buyers were answered, and the edges'
    // grants sold some of the units.
    assert!(
        unavailable < BUYERS_PER_EDGE,
        "{unavailable} buyers of {} got 503",
        3 * BUYERS_PER_EDGE
    );
    // (Units held in one edge's grant are not sold to another's buyers: some are left.)
    assert!(sold.len() as u64 >= STOCK / 4, "only {} sold", sold.len());
    assert!(from_grants > 0, "no order was sold from a grant");
    for id in &sold {
        eventually("every sold unit committed", Duration::from_secs(30), || {
            committed_at_core(&cores[0], id)
        })
        .await;
    }
    let (_, inv) = get_json(&cores[0].url("/admin/v1/inventory/S-1")).await;
    assert_eq!(inv["committed"], sold.len() as u64, "{inv}");
    // What is committed and what the edges still hold is at most the stock.
    let granted: u64 = inv["granted"]
        .as_object()
        .map_or(0, |g| g.values().filter_map(Value::as_u64).sum());
    assert!(
        inv["committed"].as_u64().unwrap() + granted <= STOCK,
        "{inv}"
    );
}

/// The problem `type` slug of a response, and its status.
async fn problem(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let p: Value = res.json().await.unwrap();
    assert_eq!(ct, "application/problem+json", "{p}");
    let slug = p["type"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    (status, slug)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_document_and_the_edge_serves_everyone_else() {
    let Solo { _dir, edge, .. } = solo(
        1_000,
        "[limits]\nrequest_timeout_ms = 500\n[http]\nclient_rate_per_s = 20\nclient_burst = 40\n",
    )
    .await;
    let post = |body: reqwest::Body, key: Option<&str>| {
        let mut req = shopper_client()
            .post(edge.url("/v1/orders"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        async move { problem(req.send().await.unwrap()).await }
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut o = order("S-1");
        f(&mut o);
        reqwest::Body::from(o.to_string())
    };
    let cases: Vec<(reqwest::Body, Option<&str>, u16, &str)> = vec![
        (
            vec![b' '; 70 * 1024].into(),
            Some("k1"),
            413,
            "body-too-large",
        ),
        (
            "{\"customer_id\": ".into(),
            Some("k2"),
            400,
            "malformed-json",
        ),
        (
            with(&|o| o["colour"] = "red".into()),
            Some("k3"),
            422,
            "invalid-body",
        ),
        (
            with(&|o| o["lines"][0]["qty"] = 0.into()),
            Some("k4"),
            422,
            "bad-quantity",
        ),
        (
            with(&|o| o["lines"][0]["qty"] = 4_294_967_295u64.into()),
            Some("k5"),
            422,
            "bad-quantity",
        ),
        (
            with(&|o| o["lines"][0]["qty"] = (-1).into()),
            Some("k6"),
            422,
            "invalid-body",
        ),
        (
            with(&|o| o["lines"][0]["sku"] = "NOPE".into()),
            Some("k7"),
            422,
            "unknown-sku",
        ),
        (
            with(&|o| o["currency"] = "EUR".into()),
            Some("k8"),
            422,
            "not-sold-in-market",
        ),
        (with(&|_| {}), None, 400, "missing-idempotency-key"),
        (with(&|_| {}), Some("a key with spaces"), 400, "bad-request"),
    ];
    for (body, key, status, slug) in cases {
        assert_eq!(post(body, key).await, (status, slug.to_owned()), "{slug}");
    }
    let (status, slug) = problem(
        client()
            .get(edge.url("/v1/products/NOPE"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, slug.as_str()), (404, "not-found"));
    let (status, slug) = problem(
        client()
            .get(edge.url("/v1/products?limit=x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, slug.as_str()), (400, "bad-request"));

    // A client that never finishes its body is cut off.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = common::tls_stream(&edge.http).await;
    slow.write_all(b"POST /v1/orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nidempotency-key: slow\r\ncontent-length: 100\r\n\r\n{\"cus")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // One address flooding: 429 with Retry-After; another address is served meanwhile.
    let flood: Vec<u16> = futures_statuses(&edge, "127.0.0.1", 100).await;
    assert!(flood.contains(&429), "{flood:?}");
    let other = futures_statuses(&edge, "127.0.0.2", 1).await;
    assert_eq!(other, vec![200]);
    let res = client().get(edge.url("/v1/status")).send().await.unwrap();
    if res.status() == 429 {
        assert!(res.headers().contains_key("retry-after"));
    }
}

/// Statuses of `n` status reads sent at once from `from`.
async fn futures_statuses(edge: &EdgeProcess, from: &str, n: usize) -> Vec<u16> {
    let http = http_api::client::trusting(&common::test_ca().join("ca.pem"))
        .unwrap()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url) = (http.clone(), edge.url("/v1/status"));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_forwards_the_outbox_and_gives_the_grants_back() {
    let Solo {
        _dir,
        core,
        mut edge,
        ..
    } = solo(1_000, "").await;
    until_granted(&edge, "warm").await;
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    assert!(inv["granted"]["solo-1"].as_u64().unwrap_or(0) > 0, "{inv}");
    assert!(edge.terminate().success());
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    assert_eq!(inv["granted"]["solo-1"].as_u64().unwrap_or(0), 0, "{inv}");
    let (_, orders) = get_json(&core.url("/admin/v1/orders?limit=1000")).await;
    assert!(
        orders["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "committed")
    );
    assert_eq!(
        inv["committed"],
        orders["items"].as_array().unwrap().len() as u64,
        "{inv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_hears_from_no_core_serves_stale_reads_and_sells_from_its_grants() {
    let Solo {
        _dir, core, edge, ..
    } = solo(1_000, "stale_after_ms = 1000\n").await;
    until_granted(&edge, "warm").await;
    let fresh = client()
        .get(edge.url("/v1/products/P-1"))
        .send()
        .await
        .unwrap();
    assert!(!fresh.headers().contains_key("x-tradewind-stale"));

    // The core freezes: past the bound the edge says it is stale, and keeps serving.
    core.freeze();
    eventually("stale", Duration::from_secs(10), || async {
        get_json(&edge.url("/healthz")).await.0 == 503
    })
    .await;
    let (_, status) = get_json(&edge.url("/v1/status")).await;
    assert_eq!(status["core_connected"], false, "{status}");
    assert!(status["staleness_ms"].as_u64().unwrap() > 1000, "{status}");
    let res = client()
        .get(edge.url("/v1/products/P-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tradewind-stale"], "true");
    let (status, o) = place(&edge, "while-stale").await;
    assert_eq!(
        (status, &o["status"]),
        (201, &Value::from("accepted")),
        "{o}"
    );

    // The core runs on: fresh again, and the order commits.
    core.thaw();
    eventually("fresh", Duration::from_secs(10), || async {
        get_json(&edge.url("/healthz")).await.0 == 200
    })
    .await;
    let id = o["order_id"].as_str().unwrap().to_owned();
    eventually("committed", Duration::from_secs(20), || {
        committed_at_core(&core, &id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_stock_runs_low_the_core_recalls_the_grants_and_the_last_units_sell_centrally() {
    let Solo {
        _dir, core, edge, ..
    } = solo(40, "").await;
    until_granted(&edge, "warm").await;
    let mut n = 0;
    while grant_units(&edge).await < 2 {
        place(&edge, &format!("more-{n}")).await;
        n += 1;
        assert!(n < 200, "grants stay small");
    }
    // Stock taken away until the pool is nearly gone: the next grant request is refused and
    // the core recalls the grants.
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    let pool = inv["available"].as_u64().unwrap();
    let res = client()
        .post(core.url("/admin/v1/stock"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"changes": [{"sku": "S-1", "remove": pool - 5}]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    // Another edge asks for a grant: refused, the pool being low, and the grants are recalled.
    let res = client()
        .post(core.url("/admin/v1/escrow/grants"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"edge": "solo-2", "sku": "S-1", "demand_units": 50, "window_ms": 1000}))
        .send()
        .await
        .unwrap();
    let g: Value = res.json().await.unwrap();
    assert_eq!(g["units"], 0, "{g}");
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    assert_eq!(inv["recall"], true, "{inv}");
    eventually("the grant given back", Duration::from_secs(20), || async {
        let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
        inv["granted"].as_object().is_some_and(|g| g.is_empty())
    })
    .await;
    // The edge gave units back before it had sold them all: the core recalled them. (It counts
    // them once the core's answer is back, a moment after the core applied the return.)
    eventually(
        "the return counted at the edge",
        Duration::from_secs(10),
        || async {
            edge.metric("tradewind_edge_grant_units_returned_total")
                .await
                > 0
        },
    )
    .await;
    // Now every order goes to the core, which sells the last units and then says no.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let (status, o) = place(&edge, &format!("last-{i}")).await;
        assert!(status == 201 || status == 409, "{status} {o}");
        if status == 201 {
            assert_eq!(o["status"], "committed", "{o}");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&409), "{statuses:?}");
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    assert_eq!(inv["available"], 0, "{inv}");
}

/// The properties an object of schema `schema` may have, and those it must, following `$ref`s
/// into `spec`'s components and `allOf` (what a flattened struct becomes).
fn schema_properties(spec: &Value, schema: &Value) -> (Vec<String>, Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return schema_properties(spec, &spec["components"]["schemas"][name]);
    }
    let (mut may, mut must) = (Vec::new(), Vec::new());
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (m, r) = schema_properties(spec, part);
        may.extend(m);
        must.extend(r);
    }
    may.extend(
        schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone()),
    );
    must.extend(
        schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned)),
    );
    (may, must)
}

/// The OpenAPI description at /openapi.json is in step with the routes: every operation it
/// names, called with sample values, is served (never the router's "no such route" or "method
/// not allowed"), answers with a status the description lists for it, and a JSON answer has
/// exactly the properties its schema names. Nothing else is routed: the router and the
/// description are built from the same declarations (`edge_node::api::routes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_is_in_step_with_the_routes() {
    let s = solo(1_000, "").await;
    let (status, spec) = get_json(&s.edge.url("/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.1.0", "{spec}");
    let (status, placed) = place(&s.edge, "openapi-order").await;
    assert_eq!(status, 201, "{placed}");
    let order_id = placed["order_id"].as_str().unwrap().to_owned();

    let mut served = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = if template.starts_with("/v1/orders") {
                order_id.as_str()
            } else {
                "P-1"
            };
            let path = template.replace("{id}", id).replace("{sku}", "S-1");
            assert!(
                !path.contains('{'),
                "no sample for a parameter of {template}"
            );
            let mut req =
                shopper_client().request(method.to_uppercase().parse().unwrap(), s.edge.url(&path));
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                match (p["in"].as_str().unwrap(), p["required"] == true) {
                    ("query", true) => {
                        assert_eq!(name, "currency", "no sample for query parameter {name}");
                        req = req.query(&[(name, "USD")]);
                    }
                    ("header", true) => {
                        assert_eq!(name, "Idempotency-Key", "no sample for header {name}");
                        req = req.header(name, format!("openapi-{method}-{template}"));
                    }
                    _ => {}
                }
            }
            if op["requestBody"].is_object() {
                req = req.json(&order("S-1"));
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let json = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or("").contains("json"));
            let body: Value = if json {
                res.json().await.unwrap()
            } else {
                Value::Null
            };
            let what = format!("{} {template}: {status} {body}", method.to_uppercase());
            assert!(
                status != 405 && !(status == 404 && body["detail"] == "no such route"),
                "documented but not routed: {what}"
            );
            let documented = &op["responses"][status.to_string()];
            assert!(
                documented.is_object(),
                "answered with an undocumented status: {what}"
            );
            let schema = &documented["content"]["application/json"]["schema"];
            if schema.is_object() && path != "/openapi.json" {
                let (may, must) = schema_properties(&spec, schema);
                let got: Vec<&String> = body.as_object().unwrap().keys().collect();
                for k in &got {
                    assert!(may.contains(k), "property {k} not in the schema: {what}");
                }
                for k in &must {
                    assert!(
                        body.get(k).is_some(),
                        "required property {k} missing: {what}"
                    );
                }
            }
            served.push(format!("{} {template}", method.to_uppercase()));
        }
    }
    served.sort();
    assert_eq!(
        served,
        [
            "GET /healthz",
            "GET /metrics",
            "GET /openapi.json",
            "GET /v1/orders",
            "GET /v1/orders/{id}",
            "GET /v1/products",
            "GET /v1/products/{id}",
            "GET /v1/skus/{sku}/quote",
            "GET /v1/status",
            "POST /v1/orders",
        ]
    );
}

/// SKUs of the wide product `seed_wide` makes: an order may name them all on its lines.
const WIDE_SKUS: usize = 50;

fn wide_sku(i: usize) -> String {
    format!("WIDE-{i:02}-{}", "X".repeat(40))
}

/// A product `W` with `WIDE_SKUS` SKUs of long names, each priced and stocked with `units`.
async fn seed_wide(core: &CoreProcess, units: u64) {
    let skus: Vec<Value> = (0..WIDE_SKUS)
        .map(|i| serde_json::json!({"sku": wide_sku(i)}))
        .collect();
    let puts = [
        (
            "/admin/v1/markets/sea",
            serde_json::json!({"id": "sea", "countries": ["SG"], "currencies": ["USD"]}),
        ),
        (
            "/admin/v1/products/W",
            serde_json::json!({"id": "W", "title": "Wide", "category": "home", "skus": skus}),
        ),
    ];
    for (path, body) in puts {
        let res = client()
            .put(core.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
    let prices: Vec<Value> = (0..WIDE_SKUS)
        .map(|i| serde_json::json!({"sku": wide_sku(i), "currency": "USD", "amount_minor": 100}))
        .collect();
    let stock: Vec<Value> = (0..WIDE_SKUS)
        .map(|i| serde_json::json!({"sku": wide_sku(i), "set": units}))
        .collect();
    for (path, body) in [
        ("/admin/v1/prices", serde_json::json!({ "changes": prices })),
        ("/admin/v1/stock", serde_json::json!({ "changes": stock })),
    ] {
        let res = client()
            .post(core.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
}

/// An order of one unit of each of the wide product's SKUs.
fn wide_order() -> Value {
    let lines: Vec<Value> = (0..WIDE_SKUS)
        .map(|i| serde_json::json!({"sku": wide_sku(i), "qty": 1}))
        .collect();
    serde_json::json!({"customer_id": "c-1", "currency": "USD", "lines": lines,
        "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"}})
}

async fn place_wide(edge: &EdgeProcess, key: &str) -> (u16, Value) {
    let res = shopper_client()
        .post(edge.url("/v1/orders"))
        .header("idempotency-key", key)
        .json(&wide_order())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Orders accepted while the core was away pile up in the outbox; once it is back they all
/// commit, however many and however large: batches are bounded by their encoded size and a
/// batch the core refuses as too large is split. Meanwhile the edge says how old its oldest
/// unsent order is, and stops calling itself healthy past its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_large_orders_commits_once_the_core_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let core_config = write_group_of(dir.path(), &["solo"]).remove(0);
    // A small command bound, so that a backlog of a few dozen orders is past it; grants large
    // enough to sell the whole backlog here.
    let mut text = std::fs::read_to_string(&core_config).unwrap();
    text.push_str(
        "[writes]\ncommand_max_bytes = 65536\n[grant_policy]\nhorizon_ms = 30000\nmin_units = 200\nmax_units = 1000\nmax_share_bps = 10000\nlow_stock_units = 0\n",
    );
    std::fs::write(&core_config, text).unwrap();
    let core = CoreProcess::start(&core_config, &[]);
    eventually("a leader", Duration::from_secs(30), || async {
        get_json(&core.url("/healthz")).await.1["leader"].is_string()
    })
    .await;
    seed_wide(&core, 10_000).await;
    let edge_config = edge_in(
        dir.path(),
        &core,
        "solo",
        "solo-1",
        "[forward]\npending_age_max_ms = 1500\n",
    );
    let edge = EdgeProcess::start(&edge_config);
    ready(&edge).await;
    // The first order goes to the core and asks for a grant of every SKU.
    let (status, o) = place_wide(&edge, "warm").await;
    assert_eq!(status, 201, "{o}");
    eventually("grants of every SKU", Duration::from_secs(30), || async {
        grant_units(&edge).await >= (WIDE_SKUS * 200) as u64
    })
    .await;

    core.freeze();
    let mut ids = Vec::new();
    for i in 0..30 {
        let (status, o) = place_wide(&edge, &format!("backlog-{i}")).await;
        assert_eq!(
            (status, o["status"].as_str()),
            (201, Some("accepted")),
            "{o}"
        );
        ids.push(o["order_id"].as_str().unwrap().to_owned());
    }
    // Past its bound, the oldest unsent order makes the edge unhealthy, and says how old it is.
    eventually(
        "unhealthy for its backlog",
        Duration::from_secs(10),
        || async {
            let (status, h) = get_json(&edge.url("/healthz")).await;
            status == 503 && h["outbox_oldest_pending_ms"].as_u64() >= Some(1_500)
        },
    )
    .await;
    let age = http_api::metrics::sample(
        &edge.metrics().await,
        "tradewind_edge_outbox_oldest_pending_seconds",
    )
    .unwrap_or(0.0);
    assert!(age >= 1.5, "{age}");
    core.thaw();

    eventually(
        "the whole backlog committed",
        Duration::from_secs(60),
        || async { get_json(&edge.url("/v1/status")).await.1["outbox_pending"] == 0 },
    )
    .await;
    for id in &ids {
        assert!(committed_at_core(&core, id).await, "{id}");
    }
    ready(&edge).await;
    let (_, s) = get_json(&edge.url("/v1/status")).await;
    assert_eq!(s["outbox_oldest_pending_ms"], Value::Null, "{s}");
}

/// Places `body` at `edge` under `key`: the status and the body.
async fn place_body(edge: &EdgeProcess, key: &str, body: &Value) -> (u16, Value) {
    let res = shopper_client()
        .post(edge.url("/v1/orders"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A shopper whose first edge went away retries the same Idempotency-Key at another edge,
/// which accepts it from its own grant. The core answers with the order that stands under the
/// key's id: the second edge takes its units back and shows that order; a different request
/// under the same key is then refused with `idempotency-key-reused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_at_a_second_edge_returns_its_units_and_shows_the_order_that_stands() {
    let dir = tempfile::tempdir().unwrap();
    let core_config = write_group_of(dir.path(), &["solo"]).remove(0);
    let mut text = std::fs::read_to_string(&core_config).unwrap();
    text.push_str(
        "[grant_policy]\nhorizon_ms = 30000\nmin_units = 50\nmax_units = 1000\nmax_share_bps = 10000\nlow_stock_units = 0\n",
    );
    std::fs::write(&core_config, text).unwrap();
    let core = CoreProcess::start(&core_config, &[]);
    eventually("a leader", Duration::from_secs(30), || async {
        get_json(&core.url("/healthz")).await.1["leader"].is_string()
    })
    .await;
    seed(&core.admin, 10_000).await;
    let edges: Vec<EdgeProcess> = ["solo-1", "solo-2"]
        .iter()
        .map(|name| EdgeProcess::start(&edge_in(dir.path(), &core, "solo", name, "")))
        .collect();
    for (i, e) in edges.iter().enumerate() {
        ready(e).await;
        until_granted(e, &format!("warm-{i}")).await;
    }
    let (first, second) = (&edges[0], &edges[1]);
    // The shopper's order at the first edge, committed at the core.
    let (status, o) = place(first, "k-retried").await;
    assert_eq!(
        (status, o["status"].as_str()),
        (201, Some("accepted")),
        "{o}"
    );
    let id = o["order_id"].as_str().unwrap().to_owned();
    eventually("committed at the core", Duration::from_secs(20), || {
        committed_at_core(&core, &id)
    })
    .await;
    // The same key and request at the second edge: accepted there from its grant (its units
    // may be back before they can be looked at: the forwarder does not wait, so the counter of
    // orders accepted from a grant says it).
    const ACCEPTED: &str = "tradewind_edge_orders_accepted_total";
    let before = grant_units(second).await;
    let accepted = second.metric(ACCEPTED).await;
    let (status, o) = place(second, "k-retried").await;
    assert_eq!(
        (status, o["status"].as_str()),
        (201, Some("accepted")),
        "{o}"
    );
    assert_eq!(o["order_id"], id.as_str());
    assert_eq!(second.metric(ACCEPTED).await, accepted + 1);
    // Once forwarded, the second edge has its unit back and shows the first edge's order.
    eventually(
        "the unit back at the second edge",
        Duration::from_secs(20),
        || async { grant_units(second).await == before },
    )
    .await;
    let (_, shown) = get_json(&second.url(&format!("/v1/orders/{id}"))).await;
    assert_eq!(shown["status"], "committed", "{shown}");
    assert_eq!(shown["origin"]["edge"], "solo-1", "{shown}");
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    let committed = inv["committed"].as_u64().unwrap();

    // A different request under a key already used at the first edge: the second edge cannot
    // know at once, and accepts it; the core's answer supersedes it, and from then on the
    // key is refused there for that request.
    let (status, o) = place(first, "k-reused").await;
    assert_eq!(status, 201, "{o}");
    let reused = o["order_id"].as_str().unwrap().to_owned();
    eventually("committed at the core", Duration::from_secs(20), || {
        committed_at_core(&core, &reused)
    })
    .await;
    let mut other = order("S-1");
    other["lines"][0]["qty"] = 2.into();
    let before = grant_units(second).await;
    let (status, _) = place_body(second, "k-reused", &other).await;
    assert_eq!(status, 201);
    eventually(
        "the units back at the second edge",
        Duration::from_secs(20),
        || async { grant_units(second).await == before },
    )
    .await;
    let (status, problem) = place_body(second, "k-reused", &other).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        problem["type"],
        "https://tradewind.dev/problems/idempotency-key-reused"
    );
    // Nothing of the second edge's copies was counted as sold.
    let (_, inv) = get_json(&core.url("/admin/v1/inventory/S-1")).await;
    assert_eq!(inv["committed"].as_u64().unwrap(), committed + 1, "{inv}");
}

/// A sold-out SKU: the edge's mirror shows the pool empty, so orders are answered out of stock
/// here, saying the version they were judged at, and the core is not written to for each one
/// (no central orders, no grant request after the first granted nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_sku_is_answered_here_without_writes_at_the_core() {
    let Solo {
        _dir, core, edge, ..
    } = solo(0, "").await;
    let version = |core: &CoreProcess| {
        let url = core.url("/healthz");
        async move { get_json(&url).await.1["version"].as_u64().unwrap() }
    };
    let (status, o) = place(&edge, "first").await;
    assert_eq!(status, 409, "{o}");
    // Let the grant keeper's one request (granted nothing) land, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = version(&core).await;
    for i in 0..50 {
        let (status, o) = place(&edge, &format!("sold-out-{i}")).await;
        assert_eq!(status, 409, "{o}");
        assert_eq!(
            o["type"], "https://tradewind.dev/problems/out-of-stock",
            "{o}"
        );
        assert!(
            o["detail"].as_str().unwrap().contains("as of version"),
            "{o}"
        );
    }
    assert_eq!(version(&core).await, before, "writes at the core");
    assert_eq!(edge.metric("tradewind_edge_orders_central_total").await, 0);
}

/// The storefront speaks TLS 1.3 over HTTP/2 with HSTS, takes a renewed certificate on SIGHUP
/// (and lives on), and `--check-config` refuses plain HTTP on an address that is not loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_serves_tls_takes_a_renewed_certificate_on_sighup_and_refuses_public_plain_http()
 {
    let Solo { _dir, edge, .. } = solo(10, "").await;
    let res = client().get(edge.url("/v1/status")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let leaf = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    let before = leaf(&common::tls_stream(&edge.http).await);

    // A renewed pair, then SIGHUP: new handshakes get it, the process is still serving.
    let certs = _dir.path().join("certs");
    replication::certs::issue_server(
        &certs,
        "solo-1",
        &["127.0.0.1".to_owned(), "renewed.shop.example".to_owned()],
    )
    .unwrap();
    edge.signal(nix::sys::signal::Signal::SIGHUP).unwrap();
    eventually(
        "the renewed certificate served",
        Duration::from_secs(10),
        || async { leaf(&common::tls_stream(&edge.http).await) != before },
    )
    .await;
    let res = client().get(edge.url("/v1/status")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Plain HTTP is for loopback only.
    let dir = tempfile::tempdir().unwrap();
    let config = write_edge_config_with(
        dir.path(),
        &dir.path().join("certs"),
        "public-1",
        "solo",
        &[("solo", "127.0.0.1:1".parse().unwrap())],
        "[http]\nplain_http = true\n",
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"");
    // The test's keys name a certificate too: keep plain_http alone.
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("tls_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(common::bin())
        .args([
            "edge",
            "--config",
            config.to_str().unwrap(),
            "--check-config",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("http.plain_http") && err.contains("loopback"),
        "{err}"
    );
}

/// A client of the storefront that sends `token` (none: an anonymous shopper).
fn as_shopper(token: Option<&str>) -> impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let token = token.map(str::to_owned);
    move |req| match &token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// Who a shopper is comes only from their token: group prices only for the group the token
/// names (asking for another in the query or the body is 403 `group-not-granted`), orders only
/// for the token's customer, and an order shown only to that customer (anyone else gets the
/// same 404 as an unknown id). Tokens that do not verify are 401 `invalid-token`, counted by
/// reason; none at all is an anonymous shopper with public prices and no orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_gets_their_own_group_price_and_sees_only_their_own_orders() {
    let s = solo(1_000, "").await;
    let res = client()
        .post(s.core.url("/admin/v1/prices"))
        .bearer_auth(TOKEN)
        .header("idempotency-key", common::admin_key("wholesale-price"))
        .json(&serde_json::json!({"changes": [{"sku": "S-1", "currency": "USD", "amount_minor": 2000, "customer_group": "wholesale"}]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let wholesale = common::shopper_token("w-1", Some("wholesale"));
    let member = common::shopper_token("m-1", Some("member"));
    let plain = common::shopper_token("c-1", None);
    let quote = |token: Option<&str>, query: &str| {
        let req = as_shopper(token)(
            client().get(
                s.edge
                    .url(&format!("/v1/skus/S-1/quote?currency=USD{query}")),
            ),
        );
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    eventually(
        "the group price at the edge",
        Duration::from_secs(20),
        || async { quote(Some(&wholesale), "").await.1["unit_price"]["amount_minor"] == 2000 },
    )
    .await;
    let price = |v: &Value| v["unit_price"]["amount_minor"].as_i64();
    assert_eq!(price(&quote(None, "").await.1), Some(2500));
    assert_eq!(price(&quote(Some(&member), "").await.1), Some(2500));
    assert_eq!(
        price(&quote(Some(&wholesale), "&customer_group=wholesale").await.1),
        Some(2000)
    );
    let (status, page) = {
        let res =
            as_shopper(Some(&wholesale))(client().get(s.edge.url("/v1/products?currency=USD")))
                .send()
                .await
                .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(
        (
            status,
            page["items"][0]["skus"][0]["price"]["amount_minor"].as_i64()
        ),
        (200, Some(2000))
    );
    // A group asked for without the token granting it: refused, whoever asks.
    for (who, path) in [
        (
            None,
            "/v1/skus/S-1/quote?currency=USD&customer_group=wholesale",
        ),
        (
            Some(&member),
            "/v1/skus/S-1/quote?currency=USD&customer_group=wholesale",
        ),
        (None, "/v1/products?currency=USD&customer_group=wholesale"),
        (
            Some(&plain),
            "/v1/products/P-1?currency=USD&customer_group=wholesale",
        ),
    ] {
        let res = as_shopper(who.map(String::as_str))(client().get(s.edge.url(path)))
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem(res).await,
            (403, "group-not-granted".into()),
            "{path}"
        );
    }

    // Orders: only signed in, only for the token's customer and group.
    let post = |token: Option<&str>, key: &str, body: Value| {
        let req = as_shopper(token)(client().post(s.edge.url("/v1/orders")))
            .header("idempotency-key", key)
            .json(&body);
        async move { req.send().await.unwrap() }
    };
    let body = |extra: Value| {
        let mut o = order("S-1");
        o.as_object_mut().unwrap().remove("customer_id");
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        o
    };
    let res = post(None, "anon-1", body(serde_json::json!({}))).await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(problem(res).await, (401, "token-required".into()));
    let now = util::clock::now_ms().unsigned_abs() / 1_000;
    let expired = http_api::identity::issuer::Issuer::demo(common::test_identity())
        .unwrap()
        .sign("c-1", None, now - 7_200, 600)
        .unwrap();
    let foreign_dir = tempfile::tempdir().unwrap();
    http_api::identity::issuer::init(foreign_dir.path()).unwrap();
    let forged = http_api::identity::issuer::Issuer::demo(foreign_dir.path())
        .unwrap()
        .sign("c-1", Some("wholesale"), now, 600)
        .unwrap();
    for bad in [expired.as_str(), forged.as_str(), "not-a-jwt"] {
        let res = post(Some(bad), "bad-token", body(serde_json::json!({}))).await;
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        assert_eq!(problem(res).await, (401, "invalid-token".into()));
    }
    let res = post(
        Some(&plain),
        "other-customer",
        body(serde_json::json!({"customer_id": "w-1"})),
    )
    .await;
    assert_eq!(problem(res).await, (403, "customer-not-granted".into()));
    let res = post(
        Some(&plain),
        "richer-group",
        body(serde_json::json!({"customer_group": "wholesale"})),
    )
    .await;
    assert_eq!(problem(res).await, (403, "group-not-granted".into()));
    let res = post(Some(&wholesale), "wholesale-1", body(serde_json::json!({}))).await;
    assert_eq!(res.status(), 201);
    let placed: Value = res.json().await.unwrap();
    assert_eq!(placed["total"]["amount_minor"], 2000, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_owned();

    // The order is its customer's alone.
    let get = |token: Option<&str>, id: &str| {
        let req = as_shopper(token)(client().get(s.edge.url(&format!("/v1/orders/{id}"))));
        async move { req.send().await.unwrap() }
    };
    let mine: Value = get(Some(&wholesale), &id).await.json().await.unwrap();
    assert_eq!(
        (
            mine["customer_id"].as_str(),
            mine["customer_group"].as_str()
        ),
        (Some("w-1"), Some("wholesale"))
    );
    let theirs = get(Some(&plain), &id).await;
    let unknown = get(Some(&plain), "o-00000000000000000000000000000000").await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(theirs.text().await.unwrap(), unknown.text().await.unwrap());
    assert_eq!(
        problem(get(None, &id).await).await,
        (401, "token-required".into())
    );

    let metrics = s.edge.metrics().await;
    for reason in ["expired", "unknown-key", "malformed"] {
        assert!(
            metrics.contains(&format!(
                "tradewind_edge_tokens_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
}

/// A shopper's orders, placed at two edges, are listed at either edge newest first, a page at a
/// time, each exactly once (from the core; what an edge holds that no core has yet is merged
/// in by `commerce::command::orders_page`, tested there); another customer's orders never
/// appear, and a single order placed at the other edge is readable at this one by its
/// customer only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shoppers_orders_are_listed_across_edges_newest_first_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let core_config = write_group_of(dir.path(), &["solo"]).remove(0);
    let core = CoreProcess::start(&core_config, &[]);
    eventually("a leader", Duration::from_secs(30), || async {
        get_json(&core.url("/healthz")).await.1["leader"].is_string()
    })
    .await;
    seed(&core.admin, 10_000).await;
    let edges: Vec<EdgeProcess> = ["solo-1", "solo-2"]
        .iter()
        .map(|name| EdgeProcess::start(&edge_in(dir.path(), &core, "solo", name, "")))
        .collect();
    for e in &edges {
        ready(e).await;
    }
    let me = common::shopper_token("lister", None);
    let other = common::shopper_token("someone-else", None);
    let place_as = |edge: &EdgeProcess, token: &str, key: &str| {
        let mut body = order("S-1");
        body.as_object_mut().unwrap().remove("customer_id");
        let req = client()
            .post(edge.url("/v1/orders"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap();
            assert!(status == 201, "{status} {v}");
            v["order_id"].as_str().unwrap().to_owned()
        }
    };
    let mut placed = Vec::new();
    for i in 0..7 {
        let key = common::admin_key(&format!("list-{i}"));
        placed.push(place_as(&edges[i % 2], &me, &key).await);
        // Distinct milliseconds, so newest first is the order placed.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    place_as(&edges[0], &other, &common::admin_key("not-mine")).await;
    placed.reverse();
    let list = |edge: &EdgeProcess, token: &str, query: String| {
        let req = client()
            .get(edge.url(&format!("/v1/orders{query}")))
            .bearer_auth(token);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    for edge in &edges {
        // An order accepted from a grant reaches the core a moment later; until then only the
        // edge that took it lists it.
        eventually("every order listed", Duration::from_secs(20), || async {
            let mut seen = Vec::new();
            let mut query = "?limit=3".to_owned();
            loop {
                let page = list(edge, &me, query.clone()).await;
                let items = page["items"].as_array().unwrap();
                assert!(items.len() <= 3, "{page}");
                for o in items {
                    assert_eq!(o["customer_id"], "lister", "{o}");
                    seen.push(o["order_id"].as_str().unwrap().to_owned());
                }
                match page["next_cursor"].as_str() {
                    Some(c) => query = format!("?limit=3&cursor={c}"),
                    None => break,
                }
            }
            seen == placed
        })
        .await;
    }
    // The other customer sees only their own.
    let theirs = list(&edges[1], &other, String::new()).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1, "{theirs}");
    // One order placed at the first edge, read at the second: by its customer only.
    let id = &placed[placed.len() - 1];
    let one = |token: &str| {
        let req = client()
            .get(edges[1].url(&format!("/v1/orders/{id}")))
            .bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    let mine: Value = one(&me).await.json().await.unwrap();
    assert_eq!(mine["order_id"], id.as_str(), "{mine}");
    assert_eq!(problem(one(&other).await).await, (404, "not-found".into()));
    // Bad pages are refused.
    for q in ["?limit=0", "?limit=101", "?cursor=nonsense"] {
        let res = client()
            .get(edges[0].url(&format!("/v1/orders{q}")))
            .bearer_auth(&me)
            .send()
            .await
            .unwrap();
        assert_eq!(problem(res).await, (400, "bad-request".into()), "{q}");
    }
    let res = client()
        .get(edges[0].url("/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await, (401, "token-required".into()));
}

/// The files a core and an edge keep their data in (the store, the Raft log, the outbox), and
/// every key file, are readable by their owner alone: shoppers' details are in them.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_key_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let Solo {
        _dir,
        core: _core,
        edge,
        ..
    } = solo(1_000, "").await;
    until_granted(&edge, "private").await;
    let (status, o) = place(&edge, "at-the-edge").await;
    assert_eq!(status, 201, "{o}");
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(_dir.path(), &mut files);
    let private: Vec<_> = files
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".redb") || name.ends_with(".key") || name.ends_with(".secret")
        })
        .collect();
    for kind in [
        "core.redb",
        "raft-log.redb",
        "outbox.redb",
        ".key",
        "deployment.secret",
    ] {
        assert!(
            private.iter().any(|p| p.to_string_lossy().ends_with(kind)),
            "no {kind} among {files:?}"
        );
    }
    for p in private {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}
