//! The cache over real sockets: an origin (axum) and a raw TCP origin that misbehaves, the
//! cache between them and a client, each on a port of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get as route_get;
use cdn_cache::CdnConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "tw_example_change_me";

/// What the origin was asked: each path's requests, with their headers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<String, Vec<HeaderMap>>>>);

impl Seen {
    fn note(&self, path: &str, headers: &HeaderMap) {
        self.0
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .push(headers.clone());
    }
    fn count(&self, path: &str) -> usize {
        self.0.lock().unwrap().get(path).map_or(0, Vec::len)
    }
    fn last(&self, path: &str) -> HeaderMap {
        self.0.lock().unwrap()[path].last().unwrap().clone()
    }
}

fn reply(
    status: StatusCode,
    headers: &[(&'static str, String)],
    body: impl Into<axum::body::Body>,
) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    for (k, v) in headers {
        r.headers_mut()
            .append(*k, HeaderValue::from_str(v).unwrap());
    }
    r
}

async fn origin(seen: Seen) -> SocketAddr {
    let fresh = |State(seen): State<Seen>, Path(n): Path<String>, h: HeaderMap| async move {
        seen.note(&format!("/fresh/{n}"), &h);
        if h.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
            return reply(StatusCode::NOT_MODIFIED, &[("etag", "\"v1\"".into())], "");
        }
        reply(
            StatusCode::OK,
            &[
                ("cache-control", "max-age=60".into()),
                ("etag", "\"v1\"".into()),
                ("surrogate-key", format!("product:{n} all")),
            ],
            format!("product {n}"),
        )
    };
    let slow = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/slow", &h);
        tokio::time::sleep(Duration::from_millis(200)).await;
        reply(
            StatusCode::OK,
            &[("cache-control", "max-age=60".into())],
            "slow but here",
        )
    };
    let validate = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/validate", &h);
        if h.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
            return reply(
                StatusCode::NOT_MODIFIED,
                &[
                    ("cache-control", "max-age=60".into()),
                    ("x-version", "2".into()),
                ],
                "",
            );
        }
        reply(
            StatusCode::OK,
            &[
                ("cache-control", "max-age=0".into()),
                ("etag", "\"v1\"".into()),
                ("x-version", "1".into()),
            ],
            "the body of v1",
        )
    };
    let vary = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/vary", &h);
        let lang = h
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        reply(
            StatusCode::OK,
            &[
                ("cache-control", "max-age=60".into()),
                ("vary", "Accept-Language".into()),
            ],
            lang,
        )
    };
    let private = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/private", &h);
        reply(
            StatusCode::OK,
            &[("cache-control", "private, max-age=60".into())],
            "mine",
        )
    };
    let cookie = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/cookie", &h);
        reply(
            StatusCode::OK,
            &[
                ("cache-control", "max-age=60".into()),
                ("set-cookie", "s=1".into()),
            ],
            "with a cookie",
        )
    };
    let stale = |State(seen): State<Seen>, Path(kind): Path<String>, h: HeaderMap| async move {
        seen.note(&format!("/stale/{kind}"), &h);
        let n = seen.count(&format!("/stale/{kind}"));
        let cc = match kind.as_str() {
            "swr" => "max-age=1, stale-while-revalidate=60",
            "sie" => "max-age=1, stale-if-error=60",
            _ => "max-age=1, must-revalidate, stale-if-error=60",
        };
        if n > 1 && kind != "swr" {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, &[], "origin down");
        }
        // Already 5 s old: stale when stored.
        reply(
            StatusCode::OK,
            &[("cache-control", cc.into()), ("age", "5".into())],
            format!("{kind} {n}"),
        )
    };
    let range = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/range", &h);
        let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        reply(
            StatusCode::OK,
            &[
                ("cache-control", "max-age=60".into()),
                ("etag", "\"r\"".into()),
            ],
            body,
        )
    };
    let big = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/big", &h);
        reply(
            StatusCode::OK,
            &[("cache-control", "max-age=60".into())],
            vec![7u8; 2 << 20],
        )
    };
    let hang = |State(seen): State<Seen>, h: HeaderMap| async move {
        seen.note("/hang", &h);
        tokio::time::sleep(Duration::from_secs(60)).await;
        "too late"
    };
    let app = axum::Router::new()
        .route(
            "/fresh/{n}",
            route_get(fresh).post(
                |State(seen): State<Seen>, Path(n): Path<String>, h: HeaderMap| async move {
                    seen.note(&format!("POST /fresh/{n}"), &h);
                    "changed"
                },
            ),
        )
        .route("/slow", route_get(slow))
        .route("/validate", route_get(validate))
        .route("/vary", route_get(vary))
        .route("/private", route_get(private))
        .route("/cookie", route_get(cookie))
        .route("/stale/{kind}", route_get(stale))
        .route("/range", route_get(range))
        .route("/big", route_get(big))
        .route("/hang", route_get(hang))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// An origin that answers every connection with `answer` and closes it.
async fn raw_origin(answer: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

struct Mesh {
    url: String,
    admin: String,
    seen: Seen,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The origins every cache here fronts.
struct Origins {
    seen: Seen,
    main: SocketAddr,
    garbage: SocketAddr,
    overlong: SocketAddr,
    closed: SocketAddr,
}

async fn origins() -> Origins {
    let seen = Seen::default();
    let main = origin(seen.clone()).await;
    let garbage = raw_origin(b"THIS IS NOT HTTP\r\n\r\n").await;
    let overlong = raw_origin(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncache-control: max-age=60\r\n\r\nhelloEXTRA BYTES",
    )
    .await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    Origins {
        seen,
        main,
        garbage,
        overlong,
        closed,
    }
}

async fn start() -> Mesh {
    cache(&origins().await, "").await
}

/// A cache in front of `o`, with `more` appended to its config.
async fn cache(o: &Origins, more: &str) -> Mesh {
    let Origins {
        main,
        garbage,
        overlong,
        closed,
        ..
    } = o;
    let text = format!(
        r#"
name = "test-cdn"
[http]
listen = "127.0.0.1:0"
listener = {{ plain_http = true, connections_per_client_max = 4096, connections_max = 8192, client_rate_per_s = 1000000, client_burst = 1000000 }}
[admin]
listen = "127.0.0.1:0"
listener = {{ plain_http = true }}
token_sha256 = ["{}"]
[[origins]]
name = "main"
url = "http://{main}"
[[origins]]
name = "garbage"
path_prefix = "/garbage"
url = "http://{garbage}"
[[origins]]
name = "overlong"
path_prefix = "/overlong"
url = "http://{overlong}"
[[origins]]
name = "closed"
path_prefix = "/closed"
url = "http://{closed}"
[[origins]]
name = "failover"
path_prefix = "/fresh/9"
url = "http://{closed}"
backups = ["http://{main}"]
[memory]
bytes_max = 8388608
object_bytes_max = 1048576
[fetch]
response_timeout_ms = 500
body_idle_timeout_ms = 500
{more}"#,
        http_api::bearer::EXAMPLE_TOKEN_SHA256
    );
    let config: CdnConfig =
        util::config::parse(&text, std::path::Path::new("."), "test.toml").unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, started) = tokio::sync::oneshot::channel();
    tokio::spawn(cdn_cache::serve(
        config,
        async {
            let _ = stopped.await;
        },
        move |s| {
            let _ = ready.send(s);
        },
    ));
    let s = started.await.unwrap();
    Mesh {
        url: format!("http://{}", s.http),
        admin: format!("http://{}", s.admin),
        seen: o.seen.clone(),
        _stop: stop,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str, headers: &[(&'static str, &'static str)]) -> reqwest::Response {
    let mut r = client().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Waits until `cond` holds, failing after 10 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_stored_and_the_next_request_is_a_hit_with_its_age() {
    let m = start().await;
    let first = get(&format!("{}/fresh/1", m.url), &[]).await;
    assert_eq!(first.status(), 200);
    assert!(
        header(&first, "cache-status").contains("fwd=uri-miss; stored"),
        "{first:?}"
    );
    assert_eq!(header(&first, "via"), "1.1 test-cdn");
    assert_eq!(
        header(&first, "surrogate-key"),
        "",
        "surrogate keys are the cache's"
    );
    let body = first.text().await.unwrap();
    let second = get(&format!("{}/fresh/1", m.url), &[]).await;
    assert!(
        header(&second, "cache-status").starts_with("test-cdn; hit; ttl="),
        "{second:?}"
    );
    assert!(header(&second, "age").parse::<u64>().unwrap() < 60);
    assert_eq!(second.text().await.unwrap(), body);
    assert_eq!(m.seen.count("/fresh/1"), 1);
    // HEAD is answered from the same stored response.
    let head = client()
        .head(format!("{}/fresh/1", m.url))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&head, "content-length"), body.len().to_string());
    assert_eq!(m.seen.count("/fresh/1"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_for_one_missing_url_make_one_origin_fetch() {
    let m = start().await;
    // Four HTTP/2 connections of 250 streams: a thousand requests in flight at once.
    let clients: Vec<reqwest::Client> = (0..4)
        .map(|_| {
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap()
        })
        .collect();
    let url = format!("{}/slow", m.url);
    let answers = futures::future::join_all((0..1000).map(|i| {
        let (c, url) = (clients[i % 4].clone(), url.clone());
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!((*status, body.as_str()), (StatusCode::OK, "slow but here"));
    }
    assert_eq!(
        m.seen.count("/slow"),
        1,
        "one origin fetch for 1,000 requests"
    );
    assert!(metric(&m, "cdn_collapsed_requests_total").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_response_is_validated_and_the_304_updates_what_is_stored() {
    let m = start().await;
    let url = format!("{}/validate", m.url);
    let first = get(&url, &[]).await;
    assert_eq!(header(&first, "x-version"), "1");
    let second = get(&url, &[]).await;
    assert_eq!(second.status(), 200);
    assert!(
        header(&second, "cache-status").contains("fwd=stale; fwd-status=304"),
        "{second:?}"
    );
    assert_eq!(
        header(&second, "x-version"),
        "2",
        "the 304's fields replace the stored ones"
    );
    assert_eq!(second.text().await.unwrap(), "the body of v1");
    assert_eq!(m.seen.last("/validate")["if-none-match"], "\"v1\"");
    let third = get(&url, &[]).await;
    assert!(header(&third, "cache-status").contains("hit"), "{third:?}");
    assert_eq!(m.seen.count("/validate"), 2);
    // A client's own condition is answered by the cache.
    let cond = get(&url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(cond.status(), 304);
    assert_eq!(m.seen.count("/validate"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keeps_a_variant_for_each_value() {
    let m = start().await;
    let url = format!("{}/vary", m.url);
    for (lang, want) in [("en", "en"), ("de", "de"), ("en", "en"), ("de", "de")] {
        let r = get(&url, &[("accept-language", lang)]).await;
        assert_eq!(r.text().await.unwrap(), want);
    }
    assert_eq!(get(&url, &[]).await.text().await.unwrap(), "none");
    assert_eq!(m.seen.count("/vary"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_responses_and_cookies_are_never_served_to_another() {
    let m = start().await;
    for path in ["/private", "/cookie"] {
        for _ in 0..3 {
            let r = get(&format!("{}{path}", m.url), &[]).await;
            assert_eq!(r.status(), 200);
            assert!(!header(&r, "cache-status").contains("hit"));
        }
        assert_eq!(m.seen.count(path), 3, "{path}");
    }
    // A request with Authorization is not stored for others either.
    let url = format!("{}/fresh/9", m.url);
    get(&url, &[("authorization", "Bearer a-shopper")]).await;
    get(&url, &[]).await;
    assert_eq!(m.seen.count("/fresh/9"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_by_key_and_url_hard_and_soft_need_the_token() {
    let m = start().await;
    let url = format!("{}/fresh/2", m.url);
    get(&url, &[]).await;
    let purge = |body: serde_json::Value, token: Option<&str>| {
        let mut r = client()
            .post(format!("{}/admin/v1/purge", m.admin))
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let refused = purge(serde_json::json!({"keys": ["product:2"]}), None)
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let refused = purge(serde_json::json!({"keys": ["product:2"]}), Some("tw_wrong"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(header(&get(&url, &[]).await, "cache-status").contains("hit"));

    // Soft: kept, but validated before it is served again.
    let r = purge(
        serde_json::json!({"keys": ["product:2"], "mode": "soft"}),
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 1);
    let after = get(&url, &[]).await;
    assert!(
        header(&after, "cache-status").contains("fwd=stale; fwd-status=304"),
        "{after:?}"
    );
    assert_eq!(m.seen.last("/fresh/2")["if-none-match"], "\"v1\"");
    assert_eq!(m.seen.count("/fresh/2"), 2);

    // Hard, by URL: gone, fetched whole.
    let r = purge(serde_json::json!({"urls": [url.clone()]}), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 1);
    let after = get(&url, &[]).await;
    assert!(
        header(&after, "cache-status").contains("fwd=uri-miss; stored"),
        "{after:?}"
    );
    assert!(!m.seen.last("/fresh/2").contains_key("if-none-match"));

    // By a key that many URLs share.
    get(&format!("{}/fresh/3", m.url), &[]).await;
    let r = purge(serde_json::json!({"keys": ["all"]}), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 2);
    let bad = purge(serde_json::json!({"urls": ["not a url"]}), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_method_invalidates_its_url() {
    let m = start().await;
    let url = format!("{}/fresh/4", m.url);
    get(&url, &[]).await;
    let posted = client().post(&url).body("x").send().await.unwrap();
    assert_eq!(posted.text().await.unwrap(), "changed");
    assert_eq!(m.seen.count("POST /fresh/4"), 1);
    let after = get(&url, &[]).await;
    assert!(
        header(&after, "cache-status").contains("fwd=uri-miss"),
        "{after:?}"
    );
    assert_eq!(m.seen.count("/fresh/4"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_from_the_whole_stored_response() {
    let m = start().await;
    let url = format!("{}/range", m.url);
    let part = get(&url, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(header(&part, "content-range"), "bytes 10-19/1000");
    let want: Vec<u8> = (10..20u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(part.bytes().await.unwrap().to_vec(), want);
    assert!(
        !m.seen.last("/range").contains_key("range"),
        "the origin is asked for it whole"
    );
    let tail = get(&url, &[("range", "bytes=-5")]).await;
    assert_eq!(header(&tail, "content-range"), "bytes 995-999/1000");
    let outside = get(&url, &[("range", "bytes=1000-")]).await;
    assert_eq!(outside.status(), 416);
    assert_eq!(header(&outside, "content-range"), "bytes */1000");
    let other = get(&url, &[("range", "bytes=0-1"), ("if-range", "\"other\"")]).await;
    assert_eq!(other.status(), 200);
    assert_eq!(m.seen.count("/range"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_behind() {
    let m = start().await;
    let url = format!("{}/stale/swr", m.url);
    assert_eq!(get(&url, &[]).await.text().await.unwrap(), "swr 1");
    let stale = get(&url, &[]).await;
    assert!(
        header(&stale, "cache-status").contains("hit; ttl=-"),
        "{stale:?}"
    );
    assert_eq!(stale.text().await.unwrap(), "swr 1");
    until("the background fetch", || m.seen.count("/stale/swr") == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stored_response_when_the_origin_fails() {
    let m = start().await;
    let url = format!("{}/stale/sie", m.url);
    assert_eq!(get(&url, &[]).await.text().await.unwrap(), "sie 1");
    let r = get(&url, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "sie 1");
    assert_eq!(m.seen.count("/stale/sie"), 2);
    // must-revalidate forbids it: the origin's error is passed on.
    let url = format!("{}/stale/strict", m.url);
    get(&url, &[]).await;
    assert_eq!(get(&url, &[]).await.status(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_origins_get_clear_errors_and_the_cache_keeps_serving() {
    let m = start().await;
    for (path, status, kind) in [
        ("/hang", 504, "origin-timeout"),
        ("/garbage", 502, "origin-broken"),
        ("/closed", 502, "origin-unreachable"),
    ] {
        let r = get(&format!("{}{path}", m.url), &[]).await;
        assert_eq!(r.status(), status, "{path}");
        let doc: serde_json::Value = r.json().await.unwrap();
        assert!(
            doc["type"].as_str().unwrap().ends_with(kind),
            "{path}: {doc}"
        );
    }
    // More bytes than its Content-Length: only the Content-Length is taken.
    let r = get(&format!("{}/overlong", m.url), &[]).await;
    assert_eq!(r.text().await.unwrap(), "hello");
    let only = get(
        &format!("{}/fresh/5", m.url),
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(only.status(), 504);
    assert_eq!(get(&format!("{}/fresh/5", m.url), &[]).await.status(), 200);
    let none = get(
        &format!("{}/fresh/5", m.url),
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(none.status(), 200);
}

/// An origin whose first server is down is reached at its next one, and stays there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_whose_first_server_is_down_is_served_by_the_next() {
    let m = start().await;
    for n in ["/fresh/91", "/fresh/92"] {
        let r = get(&format!("{}{n}", m.url), &[]).await;
        assert_eq!(r.status(), 200, "{r:?}");
        assert_eq!(r.text().await.unwrap(), format!("product {}", &n[7..]));
        assert_eq!(m.seen.count(n), 1);
    }
    // Writes too, when the server before could not be reached (nothing was sent to it).
    let posted = client()
        .post(format!("{}/fresh/93", m.url))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(m.seen.count("POST /fresh/93"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_larger_than_an_object_stream_through_unstored() {
    let m = start().await;
    let url = format!("{}/big", m.url);
    for _ in 0..2 {
        let r = get(&url, &[]).await;
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), 2 << 20);
        assert!(body.iter().all(|b| *b == 7));
    }
    assert_eq!(m.seen.count("/big"), 2);
    let health: serde_json::Value = client()
        .get(format!("{}/healthz", m.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(health["bytes"].as_u64().unwrap() < 1 << 20, "{health}");
}

/// The value of counter or gauge `name` on the cache's `/metrics`.
async fn metric(m: &Mesh, name: &str) -> u64 {
    let text = client()
        .get(format!("{}/metrics", m.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    http_api::metrics::sample(&text, name)
        .or_else(|| http_api::metrics::sample(&text, &format!("{name}_total")))
        .map_or(0, |v| v as u64)
}

/// Waits until `name` on `/metrics` is at least `n`.
async fn until_metric(m: &Mesh, name: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(m, name).await < n {
        assert!(Instant::now() < deadline, "{name} < {n} after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn disk(dir: &std::path::Path) -> String {
    format!(
        "[disk]\ndir = \"{}\"\nbytes_max = 67108864\n",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cache_serves_what_its_disk_kept_but_nothing_purged() {
    // Keys are by host, and the restarted cache listens on another port.
    const HOST: &[(&str, &str)] = &[("host", "shop.example")];
    let o = origins().await;
    let dir = tempfile::tempdir().unwrap();
    let first = cache(&o, &disk(dir.path())).await;
    for path in ["/fresh/10", "/fresh/11", "/fresh/12"] {
        get(&format!("{}{path}", first.url), HOST).await;
    }
    get(
        &format!("{}/vary", first.url),
        &[HOST[0], ("accept-language", "en")],
    )
    .await;
    until_metric(&first, "cdn_disk_writes", 4).await;
    assert_eq!(metric(&first, "cdn_disk_objects").await, 4);
    // Soft or hard, a purge takes the disk's copy: a restart must not bring it back fresh.
    let purge = |keys: &[&str], mode: &str| {
        client()
            .post(format!("{}/admin/v1/purge", first.admin))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"keys": keys, "mode": mode}))
            .send()
    };
    assert_eq!(purge(&["product:11"], "soft").await.unwrap().status(), 200);
    assert_eq!(purge(&["product:12"], "hard").await.unwrap().status(), 200);
    assert_eq!(metric(&first, "cdn_disk_objects").await, 2);
    drop(first);

    let second = cache(&o, &disk(dir.path())).await;
    assert_eq!(metric(&second, "cdn_disk_objects").await, 2);
    assert_eq!(metric(&second, "cdn_memory_objects").await, 0);
    let kept = get(&format!("{}/fresh/10", second.url), HOST).await;
    assert!(
        header(&kept, "cache-status").starts_with("test-cdn; hit"),
        "{kept:?}"
    );
    assert!(header(&kept, "age").parse::<u64>().unwrap() < 60);
    assert_eq!(kept.text().await.unwrap(), "product 10");
    assert_eq!(o.seen.count("/fresh/10"), 1, "no second fetch");
    for path in ["/fresh/11", "/fresh/12"] {
        let purged = get(&format!("{}{path}", second.url), HOST).await;
        assert!(
            header(&purged, "cache-status").contains("fwd=uri-miss"),
            "{path}: {purged:?}"
        );
        assert_eq!(o.seen.count(path), 2);
    }
    // Variants come back by their Vary.
    let en = get(
        &format!("{}/vary", second.url),
        &[HOST[0], ("accept-language", "en")],
    )
    .await;
    assert!(header(&en, "cache-status").contains("hit"), "{en:?}");
    assert_eq!(en.text().await.unwrap(), "en");
    let de = get(
        &format!("{}/vary", second.url),
        &[HOST[0], ("accept-language", "de")],
    )
    .await;
    assert_eq!(de.text().await.unwrap(), "de");
    assert_eq!(o.seen.count("/vary"), 2);
    assert!(metric(&second, "cdn_disk_reads").await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_cannot_be_written_leaves_the_cache_serving_from_memory() {
    let o = origins().await;
    let dir = tempfile::tempdir().unwrap();
    let m = cache(&o, &disk(dir.path())).await;
    // Where its writes go is no longer a directory: every write fails.
    std::fs::remove_dir_all(dir.path().join("tmp")).unwrap();
    std::fs::write(dir.path().join("tmp"), b"in the way").unwrap();
    let url = format!("{}/fresh/20", m.url);
    assert_eq!(get(&url, &[]).await.status(), 200);
    until_metric(&m, "cdn_disk_write_errors", 1).await;
    let again = get(&url, &[]).await;
    assert!(header(&again, "cache-status").contains("hit"), "{again:?}");
    assert_eq!(o.seen.count("/fresh/20"), 1);
    assert_eq!(metric(&m, "cdn_disk_objects").await, 0);

    // A directory that cannot be made is refused at start, with the path in the error.
    let text = format!(
        "name = \"c\"\n[http]\nlisten = \"127.0.0.1:0\"\nlistener = {{ plain_http = true }}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nlistener = {{ plain_http = true }}\n\
         token_sha256 = [\"{}\"]\n[[origins]]\nname = \"o\"\nurl = \"http://{}\"\n{}",
        http_api::bearer::EXAMPLE_TOKEN_SHA256,
        o.main,
        disk(&dir.path().join("tmp").join("below-a-file"))
    );
    let config: CdnConfig =
        util::config::parse(&text, std::path::Path::new("."), "t.toml").unwrap();
    let err = cdn_cache::check(&config).unwrap_err();
    assert!(format!("{err:#}").contains("below-a-file"), "{err:#}");
    assert!(cdn_cache::Cache::new(&config).is_err());
}
