//! The admin API over real HTTP on a loopback port: round trips of each kind of write, and bad
//! input (malformed, oversized, invalid, unknown, slow, unauthenticated) answered with a problem
//! document while nothing is written.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "tw_test_token";

struct Core {
    base: String,
    http: Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Core {
    async fn start(body_max_bytes: usize) -> Core {
        Self::start_with(body_max_bytes, "").await
    }

    /// Starts a core with extra lines for its `[admin]` table.
    async fn start_with(body_max_bytes: usize, admin_extra: &str) -> Core {
        let dir = tempfile::tempdir().unwrap();
        let digest = http_api::bearer::sha256_hex(TOKEN);
        let toml = format!(
            r#"
region = "test-region"
[store]
backend = "redb"
path = "core.redb"
[admin]
listen = "127.0.0.1:0"
token_sha256 = ["{digest}"]
body_max_bytes = {body_max_bytes}
{admin_extra}
[admin.http]
plain_http = true
"#
        );
        let path = dir.path().join("core.toml");
        std::fs::write(&path, toml).unwrap();
        let config = util::config::load::<core_region::config::CoreConfig>(&path).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            core_region::server::serve(
                config,
                async {
                    let _ = stop_rx.await;
                },
                |s| {
                    let _ = ready_tx.send(s.admin);
                },
            )
            .await
            .unwrap();
        });
        let addr = tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("core ready within 10 s")
            .unwrap();
        Core {
            base: format!("http://{addr}"),
            http: Client::new(),
            _dir: dir,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(method, path, body.map(|b| b.to_string()), &[])
            .await
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let is_problem = res
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json");
        let text = res.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            assert!(is_problem, "{status} without a problem document: {v}");
            assert_eq!(v["status"], status.as_u16(), "{v}");
            assert!(
                v["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://tradewind.dev/problems/")
            );
        }
        (status, v)
    }

    async fn version(&self) -> u64 {
        self.call(Method::GET, "/admin/v1/cluster", None).await.1["version"]
            .as_u64()
            .unwrap()
    }

    async fn seed(&self) {
        let (s, _) = self
            .call(
                Method::PUT,
                "/admin/v1/markets/sea",
                Some(json!({"id": "sea", "countries": ["SG"], "currencies": ["SGD", "USD"]})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = self
            .call(
                Method::PUT,
                "/admin/v1/products/P-1",
                Some(
                    json!({"id": "P-1", "title": "Trail runner", "category": "apparel/shoes",
                    "skus": [{"sku": "S-40", "attributes": {"size": "40"}, "max_order_qty": 5},
                             {"sku": "S-41", "attributes": {"size": "41"}}]}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = self
            .call(
                Method::POST,
                "/admin/v1/prices",
                Some(json!({"changes": [
                    {"sku": "S-40", "currency": "USD", "amount_minor": 12000,
                     "tiers": [{"min_qty": 3, "amount_minor": 11000}]},
                    {"sku": "S-41", "currency": "USD", "amount_minor": 12000},
                    {"sku": "S-40", "currency": "USD", "amount_minor": 10000, "customer_group": "member"}
                ]})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = self
            .call(
                Method::POST,
                "/admin/v1/stock",
                Some(json!({"changes": [{"sku": "S-40", "set": 10}, {"sku": "S-41", "set": 2}]})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

/// A bad request: method, path, body, headers, and the status and problem type it must get.
type Case<'a> = (
    Method,
    &'a str,
    Option<String>,
    Vec<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

/// An order an edge accepted from its grant: one unit of `sku` at `unit_minor` USD.
fn edge_order(key: &str, edge: &str, sku: &str, unit_minor: i64) -> Value {
    let customer = commerce::CustomerId::new("cust-1").unwrap();
    let money = json!({"amount_minor": unit_minor, "currency": "USD"});
    json!({
        "order_id": commerce::testing::order_ids().order_id(&customer, key),
        "idempotency_key": key,
        "customer_id": customer,
        "customer_group": null,
        "currency": "USD",
        "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"},
        "lines": [{"sku": sku, "qty": 1, "unit_price": money, "total": money, "breakdown": []}],
        "subtotal": money,
        "discount": null,
        "total": money,
        "price_version": 3,
        "origin": {"region": "ap-singapore", "edge": edge},
        "accepted_at_ms": 0,
        "status": "accepted",
        "commit_version": null,
        "reject_reason": null
    })
}

fn order_body(sku: &str, qty: u64) -> String {
    json!({"customer_id": "cust-1", "currency": "USD", "lines": [{"sku": sku, "qty": qty}],
           "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"}})
    .to_string()
}

#[tokio::test]
async fn writes_and_reads_round_trip() {
    let core = Core::start(1 << 20).await;
    core.seed().await;
    let (s, p) = core.call(Method::GET, "/admin/v1/products/P-1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["skus"][0]["attributes"]["size"], "40");
    let (_, page) = core
        .call(Method::GET, "/admin/v1/products?limit=1", None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, q) = core
        .call(
            Method::GET,
            "/admin/v1/skus/S-40/quote?qty=3&currency=USD",
            None,
        )
        .await;
    assert_eq!(
        q["total"],
        json!({"amount_minor": 33000, "currency": "USD"})
    );
    let (_, q) = core
        .call(
            Method::GET,
            "/admin/v1/skus/S-40/quote?qty=1&currency=USD&customer_group=member",
            None,
        )
        .await;
    assert_eq!(q["unit_price"]["amount_minor"], 10000);

    // A central order: priced, allocated, stored; a retry with the key returns the same order.
    let key = [("idempotency-key", "order-1")];
    let (s, o) = core
        .raw(
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 2)),
            &key,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["status"], "committed");
    assert_eq!(o["total"]["amount_minor"], 24000);
    let res = core
        .http
        .post(format!("{}/admin/v1/orders", core.base))
        .bearer_auth(TOKEN)
        .header("idempotency-key", "order-1")
        .header("content-type", "application/json")
        .body(order_body("S-40", 2))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["order_id"], o["order_id"]);
    // Keys are per customer: another shopper's "order-1" is another order.
    let other = order_body("S-40", 1).replace("cust-1", "cust-2");
    let (s, o2) = core
        .raw(Method::POST, "/admin/v1/orders", Some(other), &key)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o2}");
    assert_ne!(o2["order_id"], o["order_id"]);
    let (_, inv) = core
        .call(Method::GET, "/admin/v1/inventory/S-40", None)
        .await;
    assert_eq!(
        (
            inv["stocked"].as_u64(),
            inv["on_hand"].as_u64(),
            inv["committed"].as_u64(),
            inv["available"].as_u64()
        ),
        (Some(10), Some(7), Some(3), Some(7))
    );
    let (s, _) = core
        .call(
            Method::GET,
            &format!("/admin/v1/orders/{}", o["order_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = core
        .call(Method::GET, "/admin/v1/orders?limit=10", None)
        .await;
    let ids: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["order_id"])
        .collect();
    assert_eq!(ids, [&o["order_id"], &o2["order_id"]]);
    // Paging with the cursor gives the second order alone.
    let (_, first) = core
        .call(Method::GET, "/admin/v1/orders?limit=1", None)
        .await;
    let next = first["next"].as_str().unwrap().to_owned();
    let (_, rest) = core
        .call(Method::GET, &format!("/admin/v1/orders?after={next}"), None)
        .await;
    assert_eq!(rest["items"][0]["order_id"], o2["order_id"]);
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);

    // Escrow: a grant out of a pool well above the low-stock line, then returned.
    let (s, _) = core
        .call(
            Method::POST,
            "/admin/v1/stock",
            Some(json!({"changes": [{"sku": "S-40", "add": 100}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, g) = core
        .call(
            Method::POST,
            "/admin/v1/escrow/grants",
            Some(json!({"edge": "sg-1", "sku": "S-40", "demand_units": 0, "window_ms": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["units"], 1);
    let (s, g) = core
        .call(
            Method::POST,
            "/admin/v1/escrow/grants",
            Some(json!({"edge": "sg-1", "sku": "S-40", "demand_units": 0, "window_ms": 0})),
        )
        .await;
    assert_eq!((s, g["units"].as_u64()), (StatusCode::OK, Some(1)));
    let (_, inv) = core
        .call(Method::GET, "/admin/v1/inventory/S-40", None)
        .await;
    assert_eq!(inv["granted"]["sg-1"], 2);
    // The edge sold one unit from its grant; its forwarder commits the order (twice: a retry).
    let order = edge_order(
        "019a0000-0000-7000-8000-000000000001",
        "sg-1",
        "S-40",
        12000,
    );
    for duplicate in [false, true] {
        let (s, c) = core
            .call(
                Method::POST,
                "/admin/v1/escrow/commits",
                Some(json!({"edge": "sg-1", "orders": [order]})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        assert_eq!(c["results"][0]["status"], "committed");
        assert_eq!(c["results"][0]["duplicate"], duplicate);
    }
    let (s, r) = core
        .call(
            Method::POST,
            "/admin/v1/escrow/returns",
            Some(json!({"edge": "sg-1", "sku": "S-40", "units": 5})),
        )
        .await;
    assert_eq!((s, r["units"].as_u64()), (StatusCode::OK, Some(1)));
    let (_, inv) = core
        .call(Method::GET, "/admin/v1/inventory/S-40", None)
        .await;
    assert_eq!(inv["granted"], json!({}));
    assert_eq!(inv["committed"], 4);

    // A price list for one market: its price applies to destinations in that market only.
    let (s, v) = core
        .call(
            Method::PUT,
            "/admin/v1/price-lists/sea-launch",
            Some(json!({"id": "sea-launch", "currency": "USD", "market": "sea"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = core
        .call(
            Method::POST,
            "/admin/v1/prices",
            Some(json!({"changes": [{"sku": "S-41", "currency": "USD", "amount_minor": 9000, "list": "sea-launch"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let quote = |country: &'static str| {
        let core = &core;
        async move {
            core.call(
                Method::GET,
                &format!("/admin/v1/skus/S-41/quote?currency=USD&country={country}"),
                None,
            )
            .await
            .1["unit_price"]["amount_minor"]
                .clone()
        }
    };
    assert_eq!(quote("SG").await, 9000);
    assert_eq!(quote("US").await, 12000);

    // Promotions and price lists.
    let (s, v) = core
        .call(
            Method::PUT,
            "/admin/v1/promotions/shoes-10",
            Some(json!({"id": "shoes-10", "target": {"category": "apparel"},
                        "discount": {"percent_off_bps": 1000}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, q) = core
        .call(Method::GET, "/admin/v1/skus/S-41/quote?currency=USD", None)
        .await;
    assert_eq!(q["unit_price"]["amount_minor"], 10800);
    let (s, _) = core
        .call(Method::DELETE, "/admin/v1/promotions/shoes-10", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = core
        .call(Method::DELETE, "/admin/v1/promotions/shoes-10", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    core.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_writes_nothing() {
    let core = Core::start(64 * 1024).await;
    core.seed().await;
    let before = core.version().await;
    let prices = "/admin/v1/prices";
    let price = |v: Value| Some(json!({"changes": [v]}).to_string());
    let cases: Vec<Case<'_>> = vec![
        (
            Method::POST,
            prices,
            Some("{\"changes\": [".into()),
            vec![],
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            Method::POST,
            prices,
            Some("[]".into()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            Some(format!(
                "{{\"changes\": [{}]}}",
                "{\"sku\":\"S-40\",\"currency\":\"USD\",\"amount_minor\":1},"
                    .repeat(3000)
                    .trim_end_matches(',')
            )),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "USD", "amount_minor": 5, "colour": "red"})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "NOPE", "currency": "USD", "amount_minor": 5})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-sku",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "ABC", "amount_minor": 5})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "USD", "amount_minor": 0})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "USD", "amount_minor": -100})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "USD", "amount_minor": 1e30})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "USD", "amount_minor": 9.99})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "USD", "amount_minor": 5_000_000_000_000i64})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(
                json!({"sku": "S-40", "currency": "USD", "amount_minor": 500, "tiers": [{"min_qty": 5, "amount_minor": 600}]}),
            ),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            prices,
            price(json!({"sku": "S-40", "currency": "USD", "amount_minor": 5, "list": "nope"})),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-price-list",
        ),
        (
            Method::PUT,
            "/admin/v1/price-lists/eu",
            Some(json!({"id": "eu", "currency": "EUR", "market": "nope"}).to_string()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-market",
        ),
        (
            Method::POST,
            "/admin/v1/escrow/commits",
            Some(json!({"edge": "sg-1", "orders": []}).to_string()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::DELETE,
            "/admin/v1/promotions/none-such",
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "unknown-promotion",
        ),
        (
            Method::POST,
            prices,
            Some("{\"changes\": []}".into()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            "/admin/v1/stock",
            Some(json!({"changes": [{"sku": "S-40", "set": -1}]}).to_string()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            "/admin/v1/stock",
            Some(json!({"changes": [{"sku": "S-40", "set": 1, "add": 1}]}).to_string()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            "/admin/v1/stock",
            Some(json!({"changes": [{"sku": "S-40", "add": 2_000_000_000_000u64}]}).to_string()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            "/admin/v1/stock",
            Some(json!({"changes": [{"sku": "S-40", "remove": 11}]}).to_string()),
            vec![],
            StatusCode::CONFLICT,
            "held-in-grants",
        ),
        (
            Method::POST,
            "/admin/v1/stock",
            Some(
                json!({"changes": [{"sku": "S-40", "set": 5}, {"sku": "NOPE", "set": 1}]})
                    .to_string(),
            ),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-sku",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 1)),
            vec![],
            StatusCode::BAD_REQUEST,
            "missing-idempotency-key",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 0)),
            vec![("idempotency-key", "b1")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-quantity",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 6)),
            vec![("idempotency-key", "b2")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-quantity",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 4_294_967_296)),
            vec![("idempotency-key", "b3")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("NOPE", 1)),
            vec![("idempotency-key", "b4")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-sku",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-41", 3)),
            vec![("idempotency-key", "b5")],
            StatusCode::CONFLICT,
            "out-of-stock",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 1).replace("\"SG\"", "\"US\"")),
            vec![("idempotency-key", "b6")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-sold-in-market",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 1).replace("USD", "SGD")),
            vec![("idempotency-key", "b7")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-price",
        ),
        (
            Method::POST,
            "/admin/v1/orders",
            Some(order_body("S-40", 1)),
            vec![("idempotency-key", "has space")],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            Method::PUT,
            "/admin/v1/products/P-2",
            Some(
                json!({"id": "P-3", "title": "x", "category": "a", "skus": [{"sku": "Z"}]})
                    .to_string(),
            ),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            Method::PUT,
            "/admin/v1/products/P-2",
            Some(
                json!({"id": "P-2", "title": "x", "category": "a", "skus": [{"sku": "S-40"}]})
                    .to_string(),
            ),
            vec![],
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            Method::PUT,
            "/admin/v1/products/bad%20id",
            Some("{}".into()),
            vec![],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        // An admin write's key must say when it was made (a UUIDv7 or ULID), so that a retry
        // past the time keys are honoured is refused instead of applied again.
        (
            Method::POST,
            "/admin/v1/stock",
            Some(json!({"changes": [{"sku": "S-40", "add": 1}]}).to_string()),
            vec![("idempotency-key", "stock-1")],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            Method::GET,
            "/admin/v1/orders?limit=100000",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            Method::GET,
            "/admin/v1/orders?after=garbage",
            None,
            vec![],
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            Method::GET,
            "/admin/v1/skus/S-40/quote?currency=USD&qty=0",
            None,
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-quantity",
        ),
        (
            Method::GET,
            "/admin/v1/inventory/NOPE",
            None,
            vec![],
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            Method::DELETE,
            "/admin/v1/stock",
            None,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        ),
    ];
    for (method, path, body, headers, status, kind) in cases {
        let shown = format!(
            "{method} {path} {}",
            body.as_deref()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect::<String>()
        );
        let (s, v) = core.raw(method, path, body, &headers).await;
        assert_eq!(s, status, "{shown}: {v}");
        assert_eq!(
            v["type"],
            format!("https://tradewind.dev/problems/{kind}"),
            "{shown}"
        );
    }
    // Some refusals happen at apply and consume a log index; none of them wrote anything.
    let (_, inv) = core
        .call(Method::GET, "/admin/v1/inventory/S-40", None)
        .await;
    assert_eq!(
        (inv["on_hand"].as_u64(), inv["committed"].as_u64()),
        (Some(10), Some(0))
    );
    let (_, stored) = core.call(Method::GET, "/admin/v1/prices/S-40", None).await;
    assert_eq!(stored["prices"][0]["amount_minor"], 12000);
    let (_, list) = core.call(Method::GET, "/admin/v1/orders", None).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    assert!(
        core.call(Method::GET, "/admin/v1/products/P-2", None)
            .await
            .0
            == StatusCode::NOT_FOUND
    );

    // Wrong content type, and missing or wrong tokens.
    let res = core
        .http
        .post(format!("{}{prices}", core.base))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for auth in [
        None,
        Some("Bearer nope"),
        Some("tw_test_token"),
        Some("Basic dHc6dHc="),
    ] {
        let mut req = core
            .http
            .post(format!("{}{prices}", core.base))
            .header("content-type", "application/json")
            .body(
                json!({"changes": [{"sku": "S-40", "currency": "USD", "amount_minor": 1}]})
                    .to_string(),
            );
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }
    let after = core.version().await;
    let (_, stored) = core.call(Method::GET, "/admin/v1/prices/S-40", None).await;
    assert_eq!(stored["prices"][0]["amount_minor"], 12000);
    assert!(after >= before);
    core.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_refused() {
    let core = Core::start(1 << 20).await;
    core.seed().await;
    let made = commerce::order_id::time_led_key(util::clock::now_ms().unsigned_abs(), 7);
    let key = [("idempotency-key", made.as_str())];
    let body = |n: u64| Some(json!({"changes": [{"sku": "S-41", "add": n}]}).to_string());
    let (s, first) = core
        .raw(Method::POST, "/admin/v1/stock", body(3), &key)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, again) = core
        .raw(Method::POST, "/admin/v1/stock", body(3), &key)
        .await;
    assert_eq!((s, &again), (StatusCode::OK, &first));
    let (s, v) = core
        .raw(Method::POST, "/admin/v1/stock", body(4), &key)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["type"],
        "https://tradewind.dev/problems/idempotency-key-reused"
    );
    let (_, inv) = core
        .call(Method::GET, "/admin/v1/inventory/S-41", None)
        .await;
    assert_eq!(inv["on_hand"], 5);
    core.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let core = Core::start_with(1 << 20, "write_timeout_ms = 200\nrequest_timeout_ms = 400").await;
    let addr = core.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /admin/v1/prices HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"changes\": ["
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // Everyone else is served meanwhile.
    let (s, _) = core.call(Method::GET, "/admin/v1/cluster", None).await;
    assert_eq!(s, StatusCode::OK);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = slow.read(&mut buf).await.unwrap();
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled request");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("https://tradewind.dev/problems/request-timeout"),
        "{text}"
    );
    core.stop().await;
}
