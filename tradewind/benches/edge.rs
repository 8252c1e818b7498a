//! Durable order intake at one edge (the release binary, with a core region behind it), against
//! a trivial axum handler in the same run: orders per second and latency percentiles at a fixed
//! number of concurrent shoppers, each order written and fsynced before its 201.
//!
//! Then product reads: a 2 KiB product from the edge's cache, against nginx serving the same
//! bytes as a static file.
//!
//! Run: `scripts/bench-edge.sh` (it installs nginx from Debian first), or `cargo bench -p
//! tradewind --bench edge` (reads without the nginx baseline when nginx is missing). The load
//! generator runs on the same machine. The intake baseline is this benchmark's own binary
//! started as a trivial server (`TRADEWIND_BENCH_TRIVIAL=1`): an axum handler that answers every
//! POST with a fixed 201.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{CoreProcess, EdgeProcess, client, write_edge_config_with, write_group_of};
use serde_json::{Value, json};

/// Shoppers sending orders at once, each waiting for its answer before the next.
const SHOPPERS: usize = 64;
const SKUS: usize = 100;
/// SKUs of the product read: its JSON is about 2 KiB.
const READ_SKUS: usize = 12;
const RUNS: usize = 5;
const RUN: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_secs(2);

fn sku(i: usize) -> String {
    format!("B-{i:03}")
}

/// The trivial server: one route that reads nothing and answers 201 with a small body.
fn trivial_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/v1/orders",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::CREATED,
                    [("content-type", "application/json")],
                    r#"{"order_id":"o-1","status":"accepted"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "trivial ready http=http://{}",
            listener.local_addr().unwrap()
        );
        axum::serve(listener, app).await.unwrap();
    });
}

async fn admin(core: &CoreProcess, path: &str, body: Value) {
    let res = client()
        .post(core.url(path))
        .bearer_auth(common::TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
}

async fn seed(core: &CoreProcess) {
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

/// nginx from Debian serving `body` as a static file on a free port, when nginx is installed.
fn nginx(dir: &std::path::Path, body: &[u8]) -> Option<(std::process::Child, String)> {
    let bin = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("-v").output().is_ok())?;
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("product.json"), body).unwrap();
    let port = common::free_port(false);
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port};\n    root {r};\n    location / {{ default_type application/json; }}\n  }}\n}}\n",
            d = dir.display(),
            r = root.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .spawn()
        .ok()?;
    Some((child, format!("http://127.0.0.1:{port}/product.json")))
}

/// What one run measured.
struct Run {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers that were not 201 accepted from a grant (central orders, refusals).
    other: usize,
}

/// What a shopper sends: an order (a new Idempotency-Key each time) or a read.
#[derive(Clone, Copy)]
enum Ask<'a> {
    Order { tag: &'a str },
    Read,
}

/// `SHOPPERS` shoppers send `ask` to `url` for `for_`, each waiting for its answer before the
/// next. An order counts as other unless accepted from a grant; a read unless 200.
async fn load(url: &str, ask: Ask<'_>, for_: Duration) -> Run {
    let bodies: Vec<axum::body::Bytes> = (0..SKUS)
        .map(|i| {
            json!({"customer_id": "bench", "currency": "USD", "lines": [{"sku": sku(i), "qty": 1}],
                   "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"}})
                .to_string()
                .into()
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(SHOPPERS)
        .build()
        .unwrap();
    let tag = match ask {
        Ask::Order { tag } => Some(tag.to_owned()),
        Ask::Read => None,
    };
    let start = Instant::now();
    let tasks: Vec<_> = (0..SHOPPERS)
        .map(|s| {
            let (http, url, bodies, tag) =
                (http.clone(), url.to_owned(), bodies.clone(), tag.clone());
            tokio::spawn(async move {
                let (mut lat, mut other) = (Vec::new(), 0);
                let mut n = 0usize;
                while start.elapsed() < for_ {
                    let t = Instant::now();
                    let req = match &tag {
                        Some(tag) => http
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("idempotency-key", format!("{tag}-{s}-{n}"))
                            .body(bodies[(s * 7 + n) % SKUS].clone()),
                        None => http.get(&url),
                    };
                    let res = req.send().await.unwrap();
                    let status = res.status();
                    let body = res.bytes().await.unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    let ok = match tag {
                        Some(_) => status == 201 && body.windows(10).any(|w| w == b"\"accepted\""),
                        None => status == 200,
                    };
                    other += usize::from(!ok);
                    n += 1;
                }
                (lat, other)
            })
        })
        .collect();
    let (mut lat, mut other) = (Vec::new(), 0);
    for t in tasks {
        let (l, o) = t.await.unwrap();
        lat.extend(l);
        other += o;
    }
    let took = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    Run {
        per_s: lat.len() as f64 / took,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        other,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::var_os("TRADEWIND_BENCH_TRIVIAL").is_some() {
        return trivial_server();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = write_group_of(dir.path(), &["bench"]).remove(0);
        let core = CoreProcess::start(&config, &[]);
        while client()
            .get(core.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["leader"]
            .is_null()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seed(&core).await;
        let edge_config = write_edge_config_with(
            &dir.path().join("edge"),
            &dir.path().join("certs"),
            "bench-1",
            "bench",
            &[("bench", core.quic.unwrap())],
            "[limits]\nclient_rate_per_s = 1000000\nclient_burst = 1000000\n",
        );
        let edge = EdgeProcess::start(&edge_config);
        while client().get(edge.url("/healthz")).send().await.unwrap().status() != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let trivial = common::Proc::spawn_program(
            &std::env::current_exe().unwrap(),
            &[],
            &[("TRADEWIND_BENCH_TRIVIAL", "1")],
            |line| Some(line.split("http=").nth(1)?.trim().to_owned()),
        );

        // Demand builds the edge's grants; then the runs, alternating edge and baseline.
        let orders = edge.url("/v1/orders");
        // Until almost every order is taken from a grant (the first of each SKU go central).
        for w in 0.. {
            let r = load(&orders, Ask::Order { tag: &format!("warmup{w}") }, WARMUP).await;
            if r.other * 100 <= r.per_s as usize || w == 10 {
                break;
            }
        }
        let (mut e, mut t) = (Vec::new(), Vec::new());
        for r in 0..RUNS {
            e.push(load(&orders, Ask::Order { tag: &format!("run{r}") }, RUN).await);
            t.push(load(&format!("{}/v1/orders", trivial.1), Ask::Order { tag: "trivial" }, RUN).await);
            eprintln!("run {} done", r + 1);
        }
        // Product reads: the edge's cached rendering against nginx serving the same bytes.
        let read_url = edge.url("/v1/products/R-1?currency=USD");
        let body = client().get(&read_url).send().await.unwrap().bytes().await.unwrap();
        let www = tempfile::tempdir().unwrap();
        let static_server = nginx(www.path(), &body);
        if let Some((_, url)) = &static_server {
            let deadline = Instant::now() + Duration::from_secs(10);
            while client().get(url).send().await.is_err() {
                assert!(Instant::now() < deadline, "nginx did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let (mut er, mut nr) = (Vec::new(), Vec::new());
        for r in 0..RUNS {
            er.push(load(&read_url, Ask::Read, RUN).await);
            if let Some((_, url)) = &static_server {
                nr.push(load(url, Ask::Read, RUN).await);
            }
            eprintln!("read run {} done", r + 1);
        }
        if let Some((mut child, _)) = static_server {
            // SIGTERM: the master stops its workers too (SIGKILL would leave them running).
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }

        let m = |v: &[Run], f: fn(&Run) -> f64| median(v.iter().map(f).collect());
        println!("one edge, {SHOPPERS} shoppers at once, medians of {RUNS} runs of {RUN:?}:");
        println!(
            "  durable order intake: {:>8.0} orders/s, p50 {:.2} ms, p99 {:.2} ms ({} of all answers not accepted from a grant)",
            m(&e, |r| r.per_s),
            m(&e, |r| r.p50_ms),
            m(&e, |r| r.p99_ms),
            e.iter().map(|r| r.other).sum::<usize>()
        );
        println!(
            "  baseline, a trivial axum handler: {:>8.0} requests/s, p50 {:.2} ms, p99 {:.2} ms   ratio {:.2}",
            m(&t, |r| r.per_s),
            m(&t, |r| r.p50_ms),
            m(&t, |r| r.p99_ms),
            m(&e, |r| r.per_s) / m(&t, |r| r.per_s)
        );
        println!(
            "  a product read ({} bytes of JSON) from the edge's cache: {:>8.0} requests/s, p50 {:.2} ms, p99 {:.2} ms ({} not 200)",
            body.len(),
            m(&er, |r| r.per_s),
            m(&er, |r| r.p50_ms),
            m(&er, |r| r.p99_ms),
            er.iter().map(|r| r.other).sum::<usize>()
        );
        if nr.is_empty() {
            println!("    baseline: nginx not installed (scripts/bench-edge.sh installs it)");
        } else {
            println!(
                "    baseline: nginx serving the same bytes as a static file: {:>8.0} requests/s, p50 {:.2} ms, p99 {:.2} ms   ratio {:.2}",
                m(&nr, |r| r.per_s),
                m(&nr, |r| r.p50_ms),
                m(&nr, |r| r.p99_ms),
                m(&er, |r| r.per_s) / m(&nr, |r| r.per_s)
            );
        }
        drop(trivial);
    });
}
