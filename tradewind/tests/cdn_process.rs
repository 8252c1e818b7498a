//! The CDN cache as deployed: `tradewind cdn` in front of a `tradewind edge` (over TLS), the
//! edge purging it by surrogate key when the change feed changes a price.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The example admin token, which the test cache takes on loopback.
const PURGE_TOKEN: &str = "tw_example_change_me";

/// `tradewind cdn`, running.
struct CdnProcess {
    _proc: Proc,
    http: String,
    admin: String,
}

impl CdnProcess {
    /// Series `name` of the cache's `/metrics` (0 when absent).
    async fn metric(&self, name: &str) -> f64 {
        let page = client()
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        http_api::metrics::sample(&page, name).unwrap_or(0.0)
    }
}

fn start_cdn(config: &std::path::Path) -> CdnProcess {
    let args = ["cdn".as_ref(), "--config".as_ref(), config.as_os_str()];
    let (proc, (http, admin)) = Proc::spawn(&args, &[], |line| {
        let http = line
            .split("http=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_owned();
        let admin = line
            .split("admin=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_owned();
        Some((http, admin))
    });
    CdnProcess {
        _proc: proc,
        http,
        admin,
    }
}

async fn product(url: &str, token: Option<&str>) -> (String, Value, reqwest::header::HeaderMap) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    let headers = res.headers().clone();
    let status = headers
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, res.json().await.unwrap(), headers)
}

/// Sets S-1's USD price at the core, under Idempotency-Key `key`.
async fn set_price(core: &CoreProcess, key: &str, amount_minor: i64) {
    let res = client()
        .post(core.url("/admin/v1/prices"))
        .bearer_auth(TOKEN)
        .header("idempotency-key", admin_key(key))
        .json(&serde_json::json!({"changes": [{"sku": "S-1", "currency": "USD", "amount_minor": amount_minor}]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
}

fn price(v: &Value) -> i64 {
    v["skus"][0]["price"]["amount_minor"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_purges_the_product_page_from_the_cache_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let core_config = write_group_of(dir.path(), &["solo"]).remove(0);
    let core = CoreProcess::start(&core_config, &[]);
    eventually("a leader", Duration::from_secs(30), || async {
        get_value(&core.url("/healthz"), None).await["leader"].is_string()
    })
    .await;
    seed(&core.admin, 1_000).await;

    // The edge trusts the cache's X-Forwarded-For and purges it; the cache keeps anonymous
    // product pages for a minute, so only a purge makes a new price show within it.
    let admin_port = free_port(false);
    let token_file = dir.path().join("purge.token");
    std::fs::write(&token_file, PURGE_TOKEN).unwrap();
    let edge_config = write_edge_config_with(
        &dir.path().join("solo-1"),
        &dir.path().join("certs"),
        "solo-1",
        "solo",
        &[("solo", core.quic.unwrap())],
        &format!(
            "[http]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[cdn]\nmax_age_s = 60\npurge_urls = [\"http://127.0.0.1:{admin_port}/admin/v1/purge\"]\npurge_token_file = {token_file:?}\n"
        ),
    );
    let edge = EdgeProcess::start(&edge_config);
    eventually("the edge's catalog", Duration::from_secs(30), || async {
        client()
            .get(edge.url("/v1/products/P-1?currency=USD&country=SG"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let cdn_config = dir.path().join("cdn.toml");
    let http_port = free_port(false);
    std::fs::write(
        &cdn_config,
        format!(
            r#"name = "solo-cdn"
[http]
listen = "127.0.0.1:{http_port}"
listener = {{ plain_http = true }}
[admin]
listen = "127.0.0.1:{admin_port}"
listener = {{ plain_http = true }}
token_sha256 = ["{}"]
[[origins]]
name = "storefront"
url = "{}"
ca = {:?}
[disk]
dir = "cdn-cache"
bytes_max = 67108864
"#,
            http_api::bearer::EXAMPLE_TOKEN_SHA256,
            edge.http,
            dir.path().join("certs/ca.pem"),
        ),
    )
    .unwrap();
    let cdn = start_cdn(&cdn_config);
    let url = format!("{}/v1/products/P-1?currency=USD&country=SG", cdn.http);

    let (first, v, headers) = product(&url, None).await;
    assert!(first.contains("fwd=uri-miss; stored"), "{first}");
    assert_eq!(price(&v), 2500);
    assert!(
        headers.get("surrogate-key").is_none(),
        "the keys stay in the cache"
    );
    assert_eq!(headers["cache-control"], "no-cache", "browsers revalidate");
    let (second, _, headers) = product(&url, None).await;
    assert!(second.starts_with("solo-cdn; hit"), "{second}");
    assert!(headers.contains_key("age"));

    // A signed-in shopper's page is theirs: never served from, or into, the shared copy.
    let token = shopper_token("c-1", None);
    for _ in 0..2 {
        let (status, _, headers) = product(&url, Some(&token)).await;
        assert!(!status.contains("hit"), "{status}");
        assert_eq!(headers["cache-control"], "private, no-cache");
    }

    set_price(&core, "cdn-price", 3100).await;
    let changed = Instant::now();
    let mut seen = 0;
    while seen != 3100 {
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "the cache still serves the old price after 10 s"
        );
        seen = price(&product(&url, None).await.1);
    }
    println!(
        "the new price through the cache after {:?}",
        changed.elapsed()
    );
    // Stored again (grants changing the units shown purge it too, so not always at once).
    eventually(
        "the new page stored again",
        Duration::from_secs(10),
        || async { product(&url, None).await.0.starts_with("solo-cdn; hit") },
    )
    .await;
    assert!(edge.metric("tradewind_edge_cdn_purges_total").await >= 1);
    assert!(cdn.metric("cdn_purged_objects_total").await >= 1.0);

    // The disk tier: a cache killed and started again serves the page it kept, new price and
    // all, without asking the edge (unless the edge purged it meanwhile: grants changing the
    // units shown purge it at times of their own).
    const ON_DISK: &str = "cdn_disk_objects";
    eventually("the page on disk", Duration::from_secs(10), || async {
        cdn.metric(ON_DISK).await >= 1.0
    })
    .await;
    drop(cdn);
    let cdn = start_cdn(&cdn_config);
    let indexed = cdn.metric(ON_DISK).await;
    let (status, v, _) = product(&url, None).await;
    let purged = cdn.metric("cdn_purged_objects_total").await;
    assert!(
        (indexed >= 1.0 && status.starts_with("solo-cdn; hit")) || purged > 0.0,
        "{indexed} on disk at start; {status}"
    );
    assert_eq!(price(&v), 3100);

    // A price change while the cache is down: its purge fails, the edge owes the cache a
    // purge of everything and sends it once the cache is back, so the page kept on disk is
    // not served with the old price for the rest of its minute. (Here the purges of other
    // changes, grants moving the units shown, may get there first; the purger's own test
    // shows the owed purge alone.)
    eventually(
        "the page on disk again",
        Duration::from_secs(10),
        || async {
            product(&url, None).await;
            cdn.metric(ON_DISK).await >= 1.0
        },
    )
    .await;
    const FAILED: &str = "tradewind_edge_cdn_purges_failed_total";
    let failed_before = edge.metric(FAILED).await;
    drop(cdn);
    set_price(&core, "cdn-price-2", 4200).await;
    let at_edge = edge.url("/v1/products/P-1?currency=USD&country=SG");
    eventually(
        "the new price at the edge",
        Duration::from_secs(10),
        || async { price(&product(&at_edge, None).await.1) == 4200 },
    )
    .await;
    // The edge gave the purge up: the cache is owed one of everything.
    eventually("a purge given up", Duration::from_secs(15), || async {
        edge.metric(FAILED).await > failed_before
    })
    .await;
    let _cdn = start_cdn(&cdn_config);
    eventually(
        "the new price through the restarted cache",
        Duration::from_secs(15),
        || async { price(&product(&url, None).await.1) == 4200 },
    )
    .await;
}
