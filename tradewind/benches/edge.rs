//! Durable order intake at one edge (the release binary, with a core region behind it), against
//! a trivial axum handler in the same run: orders per second and latency percentiles at a fixed
//! number of concurrent shoppers, each order signed in (one of 1,000 customers' shopper tokens,
//! checked by the edge at every order) and written and fsynced before its 201.
//!
//! Then product reads: a 2 KiB product from the edge's cache, against nginx serving the same
//! bytes as a static file. Every server speaks TLS 1.3 with the same kind of certificate (the
//! edge, the trivial server through the same `http_api::serve` listener, nginx with
//! `ssl_protocols TLSv1.3`); wrk keeps its connections, so this is TLS's cost per request, not
//! per handshake.
//!
//! The load generator is wrk on the same machine (`scripts/wrk/load.lua` gives each order its
//! own Idempotency-Key, a UUIDv7 as the API recommends). Run: `scripts/bench-edge.sh`, which
//! installs wrk and nginx from Debian first. The intake baseline is this benchmark's own binary started as a trivial server
//! (`TRADEWIND_BENCH_TRIVIAL=1`, with the certificate and key in `TRADEWIND_BENCH_CERT` and
//! `TRADEWIND_BENCH_KEY`): an axum handler that answers every POST with a fixed 201.
//! `TRADEWIND_BENCH_HOLD=1` sets everything up, prints the addresses and waits (for profiling).

#[path = "../tests/common/mod.rs"]
mod common;
mod load;

use std::time::{Duration, Instant};

use common::{CoreProcess, EdgeProcess, client, median, write_edge_config_with, write_group_of};
use load::{Report, intake, wrk};
use serde_json::Value;

/// Shoppers at once, each sending its next request when the last is answered: intake is
/// measured at each of these.
const SHOPPERS: [usize; 2] = [64, 128];
/// Shoppers of the product reads.
const READERS: usize = 64;
const RUNS: usize = 5;
const RUN: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_secs(2);

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
            "trivial ready http=https://{}",
            listener.local_addr().unwrap()
        );
        let var = |k: &str| std::path::PathBuf::from(std::env::var_os(k).expect(k));
        let settings = http_api::serve::Settings {
            client_rate_per_s: 1_000_000,
            client_burst: 1_000_000,
            ..http_api::serve::Settings::tls(
                var("TRADEWIND_BENCH_CERT"),
                var("TRADEWIND_BENCH_KEY"),
            )
        };
        let front = http_api::serve::Front::new(&settings).unwrap();
        front.serve(listener, app, std::future::pending()).await;
    });
}

/// nginx from Debian serving `body` as a static file on a free port over TLS 1.3 with `cert`
/// and `key`, when nginx is installed.
fn nginx(
    dir: &std::path::Path,
    body: &[u8],
    (cert, key): (&std::path::Path, &std::path::Path),
) -> Option<(std::process::Child, String)> {
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
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_protocols TLSv1.3;\n    ssl_certificate {c};\n    ssl_certificate_key {k};\n    root {r};\n    location / {{ default_type application/json; }}\n  }}\n}}\n",
            d = dir.display(),
            r = root.display(),
            c = cert.display(),
            k = key.display()
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
    Some((child, format!("https://127.0.0.1:{port}/product.json")))
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
        let tokens = load::sign_in(dir.path());
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
        load::seed(&core).await;
        let edge_config = write_edge_config_with(
            &dir.path().join("edge"),
            &dir.path().join("certs"),
            "bench-1",
            "bench",
            &[("bench", core.quic.unwrap())],
            "[http]\nclient_rate_per_s = 1000000\nclient_burst = 1000000\n",
        );
        let edge = EdgeProcess::start(&edge_config);
        while client().get(edge.url("/healthz")).send().await.unwrap().status() != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (cert, key) = replication::certs::issue_server(
            &dir.path().join("certs"),
            "baseline",
            &["127.0.0.1".to_owned()],
        )
        .unwrap();
        let trivial = common::Proc::spawn_program(
            &std::env::current_exe().unwrap(),
            &[],
            &[
                ("TRADEWIND_BENCH_TRIVIAL", "1"),
                ("TRADEWIND_BENCH_CERT", cert.to_str().unwrap()),
                ("TRADEWIND_BENCH_KEY", key.to_str().unwrap()),
            ],
            |line| Some(line.split("http=").nth(1)?.trim().to_owned()),
        );

        load::warm_up(&edge, 0, SHOPPERS[1], WARMUP).await;
        if std::env::var_os("TRADEWIND_BENCH_HOLD").is_some() {
            println!(
                "hold edge={} trivial={} tokens={}",
                edge.url(""),
                trivial.1,
                tokens.display()
            );
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let trivial_orders = format!("{}/v1/orders", trivial.1);
        let mut intake_rows = Vec::new();
        for (i, shoppers) in SHOPPERS.into_iter().enumerate() {
            let (mut e, mut t, mut others) = (Vec::new(), Vec::new(), 0);
            for r in 0..RUNS {
                let (report, other) = intake(&edge, 100 + 10 * i as u16 + r as u16, shoppers, RUN).await;
                others += other;
                e.push(report);
                let url = trivial_orders.clone();
                t.push(
                    tokio::task::spawn_blocking(move || wrk(&url, Some(999), shoppers, RUN))
                        .await
                        .unwrap(),
                );
                eprintln!("{shoppers} shoppers: run {} done", r + 1);
            }
            intake_rows.push((shoppers, e, t, others));
        }
        // Product reads: the edge's cached rendering against nginx serving the same bytes.
        let read_url = edge.url("/v1/products/R-1?currency=USD");
        let body = client().get(&read_url).send().await.unwrap().bytes().await.unwrap();
        let www = tempfile::tempdir().unwrap();
        let static_server = nginx(www.path(), &body, (&cert, &key));
        if let Some((_, url)) = &static_server {
            let deadline = Instant::now() + Duration::from_secs(10);
            while client().get(url).send().await.is_err() {
                assert!(Instant::now() < deadline, "nginx did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let (mut er, mut nr) = (Vec::new(), Vec::new());
        for r in 0..RUNS {
            let url = read_url.clone();
            er.push(tokio::task::spawn_blocking(move || wrk(&url, None, READERS, RUN)).await.unwrap());
            if let Some((_, url)) = &static_server {
                let url = url.clone();
                nr.push(tokio::task::spawn_blocking(move || wrk(&url, None, READERS, RUN)).await.unwrap());
            }
            eprintln!("read run {} done", r + 1);
        }
        if let Some((mut child, _)) = static_server {
            // SIGTERM: the master stops its workers too (SIGKILL would leave them running).
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }

        let m = |v: &[Report], f: fn(&Report) -> f64| median(v.iter().map(f).collect());
        println!("one edge, medians of {RUNS} runs of {RUN:?}, load from wrk on the same machine:");
        for (shoppers, e, t, others) in &intake_rows {
            println!(
                "  {shoppers} shoppers: durable order intake: {:>8.0} orders/s, p50 {:.2} ms, p99 {:.2} ms ({others} answers not accepted from a grant, {} errors)",
                m(e, Report::per_s),
                m(e, |r| r.p50_ms),
                m(e, |r| r.p99_ms),
                e.iter().map(|r| r.errors).sum::<u64>()
            );
            println!(
                "    baseline, a trivial axum handler: {:>8.0} requests/s, p50 {:.2} ms, p99 {:.2} ms   ratio {:.2}",
                m(t, Report::per_s),
                m(t, |r| r.p50_ms),
                m(t, |r| r.p99_ms),
                m(e, Report::per_s) / m(t, Report::per_s)
            );
        }
        println!(
            "  {READERS} readers: a product read ({} bytes of JSON) from the edge's cache: {:>8.0} requests/s, p50 {:.2} ms, p99 {:.2} ms ({} errors)",
            body.len(),
            m(&er, Report::per_s),
            m(&er, |r| r.p50_ms),
            m(&er, |r| r.p99_ms),
            er.iter().map(|r| r.errors).sum::<u64>()
        );
        if nr.is_empty() {
            println!("    baseline: nginx not installed (scripts/bench-edge.sh installs it)");
        } else {
            println!(
                "    baseline: nginx serving the same bytes as a static file: {:>8.0} requests/s, p50 {:.2} ms, p99 {:.2} ms   ratio {:.2}",
                m(&nr, Report::per_s),
                m(&nr, |r| r.p50_ms),
                m(&nr, |r| r.p99_ms),
                m(&er, Report::per_s) / m(&nr, Report::per_s)
            );
        }
        println!(
            "  peak memory (VmHWM): the edge {} MiB, the core {} MiB",
            edge.peak_rss_mib(),
            core.peak_rss_mib()
        );
        drop(trivial);
    });
}
