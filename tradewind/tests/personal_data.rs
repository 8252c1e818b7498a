//! Shoppers' personal data at rest, over a real demo mesh (three regions, an edge each): after
//! orders shipping to China, Singapore and the United States, no file any process keeps
//! (stores, Raft logs, outboxes, logs, configs) holds a recipient's name, address or phone in
//! the clear; each address opens only at its home region (cn-shanghai, ap-singapore, us-east
//! by the demo's policy), for its owner and the admin API there, and reads elsewhere (also
//! through an edge whose own core is down) show it redacted with the reason; a key rotated while the mesh runs is taken up without a restart,
//! and orders sealed under the old key still open; a customer's personal data erased on
//! request is erased in every region's copy, and the rest of their orders kept.

mod common;

use std::time::Duration;

use common::{client, edge_urls, eventually, first_sku, free_base_port, start_small_demo};
use serde_json::{Value, json};

/// The demo's regions, in mesh.json's order.
const REGIONS: [&str; 3] = ["cn-shanghai", "ap-singapore", "us-east"];

/// A shopper's personal data, each field text found nowhere else.
struct Recipient {
    country: &'static str,
    currency: &'static str,
    name: String,
    line1: String,
    postal_code: String,
    phone: String,
}

impl Recipient {
    fn new(country: &'static str, currency: &'static str, tag: &str) -> Recipient {
        Recipient {
            country,
            currency,
            name: format!("Quintessa Vandersloot-{tag}"),
            line1: format!("4242 Zyzzogeton Lane {tag}"),
            postal_code: format!("ZQ{tag}X"),
            phone: format!("+1 555 0199 {tag}"),
        }
    }

    fn texts(&self) -> [&str; 4] {
        [&self.name, &self.line1, &self.postal_code, &self.phone]
    }

    fn ship_to(&self) -> Value {
        json!({"country": self.country, "name": self.name, "line1": self.line1,
            "city": "Xanadu", "postal_code": self.postal_code, "phone": self.phone})
    }
}

/// Places an order for `customer` at `edge`; its id.
async fn place(mesh: &Value, edge: &str, customer: &str, sku: &str, r: &Recipient) -> String {
    let res = client()
        .post(format!("{edge}/v1/orders"))
        .bearer_auth(common::demo_shopper_token(mesh, customer))
        .header(
            "idempotency-key",
            common::admin_key(&format!("{customer}-{}", r.line1)),
        )
        .json(
            &json!({"currency": r.currency, "lines": [{"sku": sku, "qty": 1}],
            "ship_to": r.ship_to()}),
        )
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let placed: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{edge}: {placed}");
    placed["order_id"].as_str().unwrap().to_owned()
}

/// The order `id` as the admin API of region `i` shows it, once committed there.
async fn committed_at(mesh: &Value, i: usize, id: &str) -> Value {
    let admin = mesh["regions"][i]["core"]["admin_url"].as_str().unwrap();
    let token = mesh["admin_token"].as_str().unwrap();
    let url = format!("{admin}/admin/v1/orders/{id}");
    let read = || async {
        let res = client().get(&url).bearer_auth(token).send().await.unwrap();
        if res.status() != 200 {
            return Value::Null;
        }
        res.json::<Value>().await.unwrap()
    };
    eventually(
        "the order committed in every region",
        Duration::from_secs(20),
        || async { read().await["status"] == "committed" },
    )
    .await;
    read().await
}

/// The order `id` as its owner reads it at `edge`.
async fn owner_reads(mesh: &Value, edge: &str, customer: &str, id: &str) -> Value {
    let res = client()
        .get(format!("{edge}/v1/orders/{id}"))
        .bearer_auth(common::demo_shopper_token(mesh, customer))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Whether `ship_to` shows `r` in the clear.
fn shows(ship_to: &Value, r: &Recipient) -> bool {
    ship_to["name"] == r.name.as_str()
        && ship_to["line1"] == r.line1.as_str()
        && ship_to["postal_code"] == r.postal_code.as_str()
        && ship_to["phone"] == r.phone.as_str()
}

/// Whether `ship_to` is redacted, sealed for `home`, with nothing of the address.
fn redacted_for(ship_to: &Value, home: &str) -> bool {
    ship_to["redacted"]["reason"] == "sealed"
        && ship_to["redacted"]["home_region"] == home
        && ship_to.get("line1").is_none()
        && ship_to.get("name").is_none()
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_sealed_everywhere_it_is_kept_and_opens_only_at_its_home_region() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let (mut demo, mesh) = start_small_demo(&state, free_base_port(), "none");
    let edges = edge_urls(&mesh);
    let sku = first_sku(&edges[0]).await;

    // Shoppers shipping to each region's countries, each ordering at another region's edge.
    let cn = Recipient::new("CN", "CNY", "7001");
    let sg = Recipient::new("SG", "USD", "7002");
    let us = Recipient::new("US", "USD", "7003");
    let orders = [
        (&cn, "shopper-cn", 2, 0), // placed in us-east, home cn-shanghai
        (&sg, "shopper-sg", 0, 1), // placed in cn-shanghai, home ap-singapore
        (&us, "shopper-us", 1, 2), // placed in ap-singapore, home us-east
    ];
    let mut ids = Vec::new();
    for (r, customer, at, _) in orders {
        ids.push(place(&mesh, &edges[at], customer, &sku, r).await);
    }

    for ((r, customer, _, home), id) in orders.iter().zip(&ids) {
        for (i, region) in REGIONS.iter().enumerate() {
            // The admin API opens it at its home region only.
            let seen = committed_at(&mesh, i, id).await;
            if i == *home {
                assert!(shows(&seen["ship_to"], r), "{region}: {seen}");
            } else {
                assert!(
                    redacted_for(&seen["ship_to"], REGIONS[*home]),
                    "{region}: {seen}"
                );
                assert_eq!(seen["ship_to"]["country"], r.country);
                // What is not personal stays readable everywhere.
                assert_eq!(seen["lines"][0]["sku"], sku.as_str());
            }
            // So does the storefront, for its owner.
            let read = owner_reads(&mesh, &edges[i], customer, id).await;
            if i == *home {
                assert!(shows(&read["ship_to"], r), "{region}: {read}");
            } else {
                assert!(
                    redacted_for(&read["ship_to"], REGIONS[*home]),
                    "{region}: {read}"
                );
            }
        }
    }
    // The owner's list shows the same, and nobody else's.
    let list = client()
        .get(format!("{}/v1/orders", edges[0]))
        .bearer_auth(common::demo_shopper_token(&mesh, "shopper-cn"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert!(shows(&items[0]["ship_to"], &cn), "{list}");

    // Erasure on request, at any region: the Singapore shopper's address is erased in every
    // region's copy, the rest of the order kept; no one else's is touched; audited; asking
    // again erases nothing more.
    let token = mesh["admin_token"].as_str().unwrap();
    let admin0 = mesh["regions"][0]["core"]["admin_url"].as_str().unwrap();
    // Under one Idempotency-Key: asking again is a retry, answered as such.
    let erase = || async {
        let res = client()
            .delete(format!(
                "{admin0}/admin/v1/customers/shopper-sg/personal-data"
            ))
            .bearer_auth(token)
            .header("idempotency-key", common::admin_key("erase-shopper-sg"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    let first = erase().await;
    assert_eq!(first["erased_orders"], 1, "{first}");
    for i in 0..REGIONS.len() {
        let admin = mesh["regions"][i]["core"]["admin_url"].as_str().unwrap();
        let url = format!("{admin}/admin/v1/orders/{}", ids[1]);
        eventually(
            "the erasure in every region",
            Duration::from_secs(20),
            || async {
                let seen: Value = client()
                    .get(&url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                seen["ship_to"]["redacted"]["reason"] == "erased"
                    && seen["ship_to"]["country"] == "SG"
                    && seen["lines"][0]["sku"] == sku.as_str()
            },
        )
        .await;
    }
    let read = owner_reads(&mesh, &edges[1], "shopper-sg", &ids[1]).await;
    assert_eq!(read["ship_to"]["redacted"]["reason"], "erased", "{read}");
    let untouched = committed_at(&mesh, 0, &ids[0]).await;
    assert!(shows(&untouched["ship_to"], &cn), "{untouched}");
    assert_eq!(erase().await["erased_orders"], 0);
    // Every home region destroyed the key its erased epochs were kept under.
    for i in 0..REGIONS.len() {
        let admin = mesh["regions"][i]["core"]["admin_url"].as_str().unwrap();
        let url = format!("{admin}/admin/v1/personal-data");
        eventually(
            "the erased epochs' keys destroyed in every region",
            Duration::from_secs(20),
            || async {
                let s = common::get_value(&url, Some(token)).await;
                s["erased_epochs"]["keys_due"] == 0
                    && s["erased_epochs"]["keys_destroyed"].as_u64() >= Some(1)
            },
        )
        .await;
    }
    // The audit log, oldest first, a page at a time to its end.
    let (mut erasures, mut after) = (0, String::new());
    loop {
        let page: Value = client()
            .get(format!("{admin0}/admin/v1/audit?limit=1000{after}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        erasures += page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["command"] == "erase_personal" && r["outcome"] == "applied")
            .count();
        match page["next"].as_u64() {
            Some(v) => after = format!("&after={v}"),
            None => break,
        }
    }
    assert!(erasures >= 2, "{erasures} erasures audited");

    // A key rotated while the mesh runs: every edge seals to it within seconds, no restart,
    // and what was sealed before still opens.
    let keys = state.join("certs/keys");
    let out = std::process::Command::new(common::bin())
        .args(["keys", "rotate", "--dir"])
        .arg(&keys)
        .args(["--region", "cn-shanghai"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for e in &edges {
        eventually(
            "every edge sealing to the new key",
            Duration::from_secs(15),
            || async {
                let status = common::get_value(&format!("{e}/v1/status"), None).await;
                status["sealing_keys"]
                    .as_array()
                    .is_some_and(|k| k.contains(&json!("cn-shanghai/2")))
            },
        )
        .await;
    }
    let after = Recipient::new("CN", "CNY", "7004");
    let rotated = place(&mesh, &edges[1], "shopper-cn", &sku, &after).await;
    let seen = committed_at(&mesh, 0, &rotated).await;
    assert!(shows(&seen["ship_to"], &after), "{seen}");
    let before = committed_at(&mesh, 0, &ids[0]).await;
    assert!(shows(&before["ship_to"], &cn), "{before}");

    // An edge whose own core is down reads from another region's: the home region's core
    // opens nothing for it, so it shows the address redacted, as everywhere but at home.
    let us_core = mesh["regions"][2]["core"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(us_core),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let list_at_us = || async {
        let res = client()
            .get(format!("{}/v1/orders", edges[2]))
            .bearer_auth(common::demo_shopper_token(&mesh, "shopper-cn"))
            .send()
            .await
            .unwrap();
        if res.status() != 200 {
            return None;
        }
        res.json::<Value>().await.ok()
    };
    eventually(
        "the us-east edge reading from another region",
        Duration::from_secs(30),
        || async { list_at_us().await.is_some() },
    )
    .await;
    let list = list_at_us().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for item in items {
        assert!(redacted_for(&item["ship_to"], "cn-shanghai"), "{list}");
    }

    // No file of any process holds any of it in the clear. The search is shown to work: each
    // region's store and Raft log hold the orders' ids.
    demo.terminate();
    let all = common::carve::files(&state);
    let mut searched = 0;
    for path in &all {
        let bytes = std::fs::read(path).unwrap();
        for r in [&cn, &sg, &us, &after] {
            for text in r.texts() {
                assert!(
                    !holds(&bytes, text),
                    "{} holds {text:?} in the clear",
                    path.display()
                );
            }
        }
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "core.redb" || name == "raft-log.redb" {
            assert!(
                ids.iter().all(|id| holds(&bytes, id)),
                "{} holds no order",
                path.display()
            );
            searched += 1;
        }
    }
    assert_eq!(searched, 6, "every region's store and log: {all:?}");
    assert!(all.iter().any(|p| p.ends_with("outbox.redb")));
    // Searched for sealed values: no copy of the erased address kept at its home opens any
    // more, in any region's files, while the others' still do. (Copies sealed at intake open
    // until their region key is retired, a week after the next one by default.)
    let keys = state.join("certs/keys");
    let (values, _) = common::carve::carve_files(&state, &keys, "ap-singapore", &[]);
    let sg_home = common::carve::open_all(&keys, "ap-singapore", "SG", &values, "shopper-sg");
    assert!(
        sg_home.kept.is_empty(),
        "a kept copy of the erased address opens"
    );
    assert!(sg_home.erased >= 1, "{sg_home:?}");
    let (values, _) = common::carve::carve_files(&state, &keys, "cn-shanghai", &[]);
    let cn_home = common::carve::open_all(&keys, "cn-shanghai", "CN", &values, "shopper-cn");
    assert!(!cn_home.kept.is_empty(), "{cn_home:?}");
}
