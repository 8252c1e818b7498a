//! `tradewind demo` as a user runs it: three regions with an edge each on 127.0.N.1, the sample
//! catalog, orders at every edge committing at the core, a price change reaching every edge,
//! with links between regions without delay and with real round trips; the leader's
//! core killed and started again; the parts stopping when the demo is killed, and a restart
//! that finds the data again.

mod common;

use std::time::Duration;

use common::{
    client, edge_urls, eventually, first_sku, free_base_port, get_value, order,
    start_small_demo as start,
};
use serde_json::{Value, json};

/// One demo at a time: each is eight processes on a machine of two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pids(mesh: &Value) -> Vec<i32> {
    mesh["regions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            std::iter::once(r["core"]["pid"].as_i64().unwrap() as i32)
                .chain(
                    r["edges"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["pid"].as_i64().unwrap() as i32),
                )
                .chain(std::iter::once(r["cdn"]["pid"].as_i64().unwrap() as i32))
        })
        .chain(std::iter::once(
            mesh["assets"]["pid"].as_i64().unwrap() as i32
        ))
        .collect()
}

/// A GET through a cache: its `Cache-Status` and body.
async fn through_cache(url: &str) -> (String, Value) {
    let res = client().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    let status = res
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, res.json().await.unwrap_or_default())
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks for the process; a zombie is gone for our purposes.
    let running = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    running
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// Orders at every edge commit at the core, and a price change sent to one region reaches every
/// edge. Returns the orders' ids.
async fn orders_and_prices_arrive_everywhere(mesh: &Value, base: u16) -> Vec<String> {
    let token = mesh["admin_token"].as_str().unwrap().to_owned();
    let regions = mesh["regions"].as_array().unwrap().clone();
    assert_eq!(regions.len(), 3);
    for (i, r) in regions.iter().enumerate() {
        let want = format!("https://127.0.{}.1:{}", i + 1, base + 111);
        assert_eq!(r["edges"][0]["url"], want.as_str());
    }
    let edges = edge_urls(mesh);
    let admin = |i: usize| regions[i]["core"]["admin_url"].as_str().unwrap().to_owned();
    let sku = first_sku(&edges[0]).await;

    // An order at every edge commits at the core.
    let mut ids = Vec::new();
    for (i, e) in edges.iter().enumerate() {
        let mut body = order(&sku);
        let customer = format!("demo-{i}");
        body["customer_id"] = json!(customer);
        let res = client()
            .post(format!("{e}/v1/orders"))
            .bearer_auth(common::demo_shopper_token(mesh, &customer))
            .header("idempotency-key", format!("demo-order-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let placed: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{e}: {placed}");
        ids.push(placed["order_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        eventually("the order committed", Duration::from_secs(20), || async {
            let res = client()
                .get(format!("{}/admin/v1/orders/{id}", admin(1)))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            res.status() == 200 && res.json::<Value>().await.unwrap()["status"] == "committed"
        })
        .await;
    }

    // Every region's cache keeps the quote an anonymous shopper reads, and its product image.
    let caches: Vec<String> = regions
        .iter()
        .map(|r| r["cdn"]["url"].as_str().unwrap().to_owned())
        .collect();
    for (i, c) in caches.iter().enumerate() {
        assert_eq!(c, &format!("https://127.0.{}.1:{}", i + 1, base + 121));
        // The orders above change the product's stock, and the edges purge it from the caches
        // when the feed brings that change, which over slow links may come after a first read:
        // a read that follows another is a hit once the feed is quiet.
        let quote = format!("{c}/v1/skus/{sku}/quote?currency=USD");
        eventually(
            "a second read from the cache hits",
            Duration::from_secs(10),
            || async {
                through_cache(&quote).await;
                through_cache(&quote).await.0.contains("; hit")
            },
        )
        .await;
        let image = format!("{c}/assets/products/P-00000.svg");
        let first = client().get(&image).send().await.unwrap();
        assert_eq!(first.headers()["content-type"], "image/svg+xml");
        let again = client().get(&image).send().await.unwrap();
        let status = again.headers()["cache-status"].to_str().unwrap();
        assert!(status.contains("; hit"), "{image}: {status}");
    }

    // A price change, sent to any region, reaches every edge, and is purged from every cache.
    let changed = std::time::Instant::now();
    let res = client()
        .post(format!("{}/admin/v1/prices", admin(2)))
        .bearer_auth(&token)
        .json(&json!({"changes": [{"sku": sku, "currency": "USD", "amount_minor": 123}]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    for e in &edges {
        eventually(
            "the new price at every edge",
            Duration::from_secs(10),
            || async {
                let q = get_value(&format!("{e}/v1/skus/{sku}/quote?currency=USD"), None).await;
                q["breakdown"][0]["list_price"]["unit_minor"] == 123
            },
        )
        .await;
    }
    for c in &caches {
        let quote = format!("{c}/v1/skus/{sku}/quote?currency=USD");
        eventually(
            "the new price through every cache",
            Duration::from_secs(10),
            || async {
                through_cache(&quote).await.1["breakdown"][0]["list_price"]["unit_minor"] == 123
            },
        )
        .await;
        println!(
            "{c}: the new price through the cache {:?} after the change",
            changed.elapsed()
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_mesh_takes_orders_everywhere_spreads_prices_and_stops_with_its_parent() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let base = free_base_port();
    let (mut demo, mesh) = start(&state, base, "none");
    let ids = orders_and_prices_arrive_everywhere(&mesh, base).await;
    let token = mesh["admin_token"].as_str().unwrap().to_owned();
    let regions = mesh["regions"].as_array().unwrap().clone();
    let admin = |i: usize| regions[i]["core"]["admin_url"].as_str().unwrap().to_owned();

    // `tradewind status` shows the group, every region and its edge.
    let out = std::process::Command::new(common::bin())
        .arg("status")
        .arg("--mesh")
        .arg(state.join("mesh.json"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.starts_with("group: leader "), "{table}");
    for r in &regions {
        let name = r["name"].as_str().unwrap();
        let row = table.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(row.contains(" ok "), "{table}");
        assert!(
            row.contains("leader") || row.contains("follower"),
            "{table}"
        );
    }

    // The leader's core killed: another region leads; SIGUSR1 to the demo starts it again.
    let cluster = get_value(&format!("{}/admin/v1/cluster", admin(0)), Some(&token)).await;
    let leader = cluster["leader"].as_str().unwrap().to_owned();
    let down = regions
        .iter()
        .position(|r| r["name"] == leader.as_str())
        .unwrap();
    let survivor = admin((down + 1) % 3);
    let old_pid = regions[down]["core"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("another region leads", Duration::from_secs(20), || async {
        let h: Option<Value> = match client().get(format!("{survivor}/healthz")).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        h.is_some_and(|h| h["leader"].is_string() && h["leader"] != leader.as_str())
    })
    .await;
    demo.signal(nix::sys::signal::Signal::SIGUSR1).unwrap();
    let mesh_path = state.join("mesh.json");
    let mut mesh = mesh.clone();
    eventually(
        "the killed core started again",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&mesh_path).unwrap_or_default();
            if let Ok(m) = serde_json::from_str::<Value>(&text) {
                mesh = m;
            }
            let pid = mesh["regions"][down]["core"]["pid"].as_i64().unwrap_or(0) as i32;
            let url = admin(down);
            async move {
                pid != old_pid
                    && alive(pid)
                    && client()
                        .get(format!("{url}/healthz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
            }
        },
    )
    .await;

    // Killed outright, the demo takes every part with it.
    let parts = pids(&mesh);
    demo.kill();
    eventually(
        "every part gone with the demo",
        Duration::from_secs(30),
        || async { parts.iter().all(|p| !alive(*p)) },
    )
    .await;

    // Started again on the same state, the mesh has its orders; SIGTERM stops it cleanly.
    let (mut demo, mesh) = start(&state, base, "none");
    let admin0 = mesh["regions"][0]["core"]["admin_url"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in &ids {
        eventually("the order still there", Duration::from_secs(20), || async {
            let res = client()
                .get(format!("{admin0}/admin/v1/orders/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            res.status() == 200
        })
        .await;
    }
    let parts = pids(&mesh);
    assert!(demo.terminate().success());
    assert!(
        parts.iter().all(|p| !alive(*p)),
        "parts left after the demo stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_mesh_over_realistic_links_takes_orders_and_spreads_prices() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let (mut demo, mesh) = start(&dir.path().join("demo"), base, "realistic");
    assert_eq!(mesh["wan"], "realistic");
    orders_and_prices_arrive_everywhere(&mesh, base).await;
    // Every link between regions went through the proxy, with the round trips of the real
    // regions.
    let api = mesh["proxy"]["api"].as_str().unwrap();
    // Only with the mesh's token, and only by its own address.
    let anonymous = client()
        .get(format!("{api}/v1/links"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let rebound = client()
        .get(format!("{api}/v1/links"))
        .header("host", "evil.example")
        .bearer_auth(mesh["admin_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 400);
    let links = get_value(&format!("{api}/v1/links"), mesh["admin_token"].as_str()).await;
    let links = links["links"].as_array().unwrap();
    assert_eq!(links.len(), 6);
    for l in links {
        assert!(l["packets"].as_u64().unwrap() > 0, "{l}");
    }
    let shanghai_virginia = links
        .iter()
        .find(|l| l["name"] == "cn-shanghai->us-east")
        .unwrap();
    assert_eq!(shanghai_virginia["shape"]["latency_ms"], 100);
    let parts = pids(&mesh);
    assert!(demo.terminate().success());
    assert!(
        parts.iter().all(|p| !alive(*p)),
        "parts left after the demo stopped"
    );
}

/// A port of the layout in use, or a state directory made with another layout, is a clear
/// error before anything starts.
#[test]
fn a_port_in_use_or_another_layout_is_refused_with_its_reason() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let base = free_base_port();
    let held = std::net::TcpListener::bind(("127.0.2.1", base + 101)).unwrap();
    let demo = |base: u16, regions: &str| {
        std::process::Command::new(common::bin())
            .args([
                "demo",
                "--regions",
                regions,
                "--base-port",
                &base.to_string(),
            ])
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap()
    };
    let out = demo(base, "3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let port = format!(
        "127.0.2.1:{} (admin API of ap-singapore) is in use",
        base + 101
    );
    assert!(err.contains(&port), "{err}");
    drop(held);

    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("layout"),
        format!("regions=1 edges_per_region=1 base_port={base}\n"),
    )
    .unwrap();
    let out = demo(base, "3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("start it the same way, or add --fresh"),
        "{err}"
    );
}
