//! Erasure destroys keys: over a real core and edge, after a customer's personal data is
//! erased and the region keys in use then are retired, no copy of their address in any file
//! either process kept (the core's store and Raft log, the edge's outbox, freed pages included)
//! opens with every key the region still holds, while another customer's orders still open.
//!
//! The files are searched as a thief with a disk would: every offset is tried as the start of
//! a sealed value, and each value found is opened with the home region's key files as the run
//! left them.

mod common;

use std::path::Path;
use std::time::Duration;

use common::carve::{carve_files, open_all};
use common::{CoreProcess, EdgeProcess, TOKEN, client, eventually, seed, write_edge_config};
use sealing::sealed::Seal;
use serde_json::{Value, json};

const GONE: &str = "c-gone";

fn util_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
const STAYS: &str = "c-stays";

async fn admin(core: &CoreProcess, path: &str) -> Value {
    common::get_value(&core.url(path), Some(TOKEN)).await
}

/// Places an order for one unit of S-1 at `edge` as `customer`, shipping to `line1`.
async fn place(edge: &EdgeProcess, customer: &str, key: &str, line1: &str) -> String {
    let res = client()
        .post(edge.url("/v1/orders"))
        .bearer_auth(common::shopper_token(customer, None))
        .header("idempotency-key", key)
        .json(
            &json!({"currency": "USD", "lines": [{"sku": "S-1", "qty": 1}],
            "ship_to": {"country": "SG", "name": format!("Name of {customer}"), "line1": line1,
                "city": "Singapore", "postal_code": "048616"}}),
        )
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["order_id"].as_str().unwrap().to_owned()
}

/// A region alone (a group of one) with `personal_data` in its config, its edge, and the
/// catalog of `seed`; `prepare` is given the directory before anything starts.
async fn solo(
    personal_data: &str,
    prepare: impl FnOnce(&Path),
) -> (tempfile::TempDir, CoreProcess, EdgeProcess) {
    let dir = tempfile::tempdir().unwrap();
    let core_config = common::write_group_of(dir.path(), &["solo"]).remove(0);
    prepare(dir.path());
    let mut text = std::fs::read_to_string(&core_config).unwrap();
    text = text.replacen(
        "[admin]",
        &format!("[personal_data]\n{personal_data}\n[admin]"),
        1,
    );
    std::fs::write(&core_config, text).unwrap();
    let core = CoreProcess::start(&core_config, &[]);
    eventually("a leader", Duration::from_secs(30), || async {
        admin(&core, "/healthz").await["leader"].is_string()
    })
    .await;
    seed(&core.admin, 1_000).await;
    let edge_config = write_edge_config(
        &dir.path().join("solo-1"),
        &dir.path().join("certs"),
        "solo-1",
        "solo",
        &[("solo", core.quic.unwrap())],
    );
    let edge = EdgeProcess::start(&edge_config);
    eventually("edge healthy", Duration::from_secs(30), || async {
        client()
            .get(edge.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    (dir, core, edge)
}

/// Places `n` orders for each of `customers` (the first at the core, the rest from the edge's
/// grant), and waits until each is committed; their ids, by customer.
async fn orders(
    core: &CoreProcess,
    edge: &EdgeProcess,
    customers: &[(&str, &str)],
    n: usize,
) -> Vec<Vec<String>> {
    let mut ids = vec![Vec::new(); customers.len()];
    for i in 0..n {
        for (c, (customer, line1)) in customers.iter().enumerate() {
            ids[c].push(place(edge, customer, &format!("{customer}-{i}"), line1).await);
        }
    }
    for id in ids.iter().flatten() {
        let url = format!("/admin/v1/orders/{id}");
        eventually("committed", Duration::from_secs(20), || async {
            admin(core, &url).await["status"] == "committed"
        })
        .await;
    }
    ids
}

/// Waits until `customer`'s `n` addresses are kept at home: found in the files, and opening;
/// the kept values.
async fn kept(dir: &Path, customer: &str, n: usize, texts: &[&str]) -> Vec<Vec<u8>> {
    let keys = dir.join("certs/keys");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (values, _) = carve_files(dir, &dir.join("certs/keys"), "solo", texts);
        let kept = open_all(&keys, "solo", "SG", &values, customer).kept;
        if kept.len() >= n {
            return kept;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the addresses never kept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every region key of `held` is retired.
async fn retired(core: &CoreProcess, held: &[String], more: impl Fn(&Value) -> bool) {
    eventually("the keys destroyed", Duration::from_secs(40), || async {
        let s = admin(core, "/admin/v1/personal-data").await;
        let retired = s["region_keys"]["retired"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        held.iter().all(|k| retired.contains(&json!(k))) && more(&s)
    })
    .await;
}

/// The region keys held now.
async fn held(core: &CoreProcess) -> Vec<String> {
    let status = admin(core, "/admin/v1/personal-data").await;
    assert_eq!(status["home"], true, "{status}");
    serde_json::from_value(status["region_keys"]["held"].clone()).unwrap()
}

/// The kept values of `before` found again in `values`.
fn found_again(before: &[Vec<u8>], values: &[Seal]) -> usize {
    values
        .iter()
        .filter(|v| matches!(v, Seal::Kept(k) if before.contains(&k.ciphertext)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_erasure_no_copy_of_the_address_opens_in_any_file() {
    // Region keys made every 2 s and destroyed 5 s after they are replaced: a day and a week
    // in production.
    let (dir, mut core, mut edge) = solo(
        "intake_key_rotate_ms = 2000\nintake_key_grace_ms = 5000",
        |_| {},
    )
    .await;
    let texts = ["Marina View Gone", "Raffles Place Stays", "Name of c-"];
    let ids = orders(
        &core,
        &edge,
        &[
            (GONE, "8 Marina View Gone"),
            (STAYS, "1 Raffles Place Stays"),
        ],
        6,
    )
    .await;
    let (gone, stays) = (&ids[0], &ids[1]);
    // Every address kept at home under its customer's key: found in the files, and opening.
    let kept_before = kept(dir.path(), GONE, 6, &texts).await;
    let held_then = held(&core).await;
    let res = client()
        .delete(core.url(&format!("/admin/v1/customers/{GONE}/personal-data")))
        .bearer_auth(TOKEN)
        .header("idempotency-key", common::admin_key("erase-gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let erased: Value = res.json().await.unwrap();
    assert_eq!(erased["erased_orders"], 6, "{erased}");

    // The erased epochs' keys destroyed, and every region key in use at the erasure retired.
    retired(&core, &held_then, |s| {
        s["erased_epochs"]["keys_due"] == 0
            && s["erased_epochs"]["keys_destroyed"].as_u64() >= Some(1)
    })
    .await;
    // The other customer's orders still open at home; the erased one's show erased.
    for id in stays {
        let o = admin(&core, &format!("/admin/v1/orders/{id}")).await;
        assert_eq!(o["ship_to"]["line1"], "1 Raffles Place Stays", "{o}");
    }
    let o = admin(&core, &format!("/admin/v1/orders/{}", gone[0])).await;
    assert_eq!(o["ship_to"]["redacted"]["reason"], "erased", "{o}");

    edge.terminate();
    core.terminate();
    let keys = dir.path().join("certs/keys");
    let (values, searched) =
        carve_files(dir.path(), &dir.path().join("certs/keys"), "solo", &texts);
    let gone = open_all(&keys, "solo", "SG", &values, GONE);
    let stays = open_all(&keys, "solo", "SG", &values, STAYS);
    eprintln!(
        "{} sealed values found in {searched:?}; {GONE}: {gone:?}; {STAYS}: {stays:?}",
        values.len()
    );
    assert_eq!(gone.opened, 0, "a copy of the erased address still opens");
    // The very copies that opened before the erasure are still there (the Raft log keeps
    // them), and open no more.
    assert!(
        found_again(&kept_before, &values) >= 1,
        "the erased customer's kept copies were not found again"
    );
    assert!(gone.erased >= 1);
    assert!(
        stays.opened >= 1,
        "the other customer's kept copies still open"
    );
    assert!(
        gone.retired >= 1,
        "copies sealed at intake were found, and did not open"
    );
    for f in ["core.redb", "raft-log.redb", "outbox.redb"] {
        assert!(
            searched.iter().any(|s| s == f),
            "nothing found in {f}: {searched:?}"
        );
    }
}

/// Retention does the same for every order past its age: the region erases their addresses,
/// destroys the keys of the periods they were kept under and, in time, the region keys they
/// were sealed to at intake; then no copy of any opens, whoever's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_retention_no_copy_of_an_old_address_opens_in_any_file() {
    // Periods of a second (a day by default), made as an operator would for a region whose
    // keys came before keeping keys.
    let keeping = |dir: &Path| {
        let keys = dir.join("certs/keys");
        std::fs::remove_file(sealing::shred::path(&keys, "solo")).unwrap();
        let out = std::process::Command::new(common::bin())
            .args(["keys", "keeping", "--dir"])
            .arg(&keys)
            .args(["--region", "solo", "--period-ms", "1000", "--since-ms"])
            .arg(util_now_ms().to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let (dir, mut core, mut edge) = solo(
        "retention_ms = 3000\nintake_key_rotate_ms = 2000\nintake_key_grace_ms = 5000",
        keeping,
    )
    .await;
    let keys = dir.path().join("certs/keys");
    let texts = ["Marina View Old", "Raffles Place Old", "Name of c-"];
    let ids = orders(
        &core,
        &edge,
        &[
            ("c-old-1", "8 Marina View Old"),
            ("c-old-2", "1 Raffles Place Old"),
        ],
        3,
    )
    .await;
    let kept_before = kept(dir.path(), "c-old-1", 3, &texts).await;
    let held_then = held(&core).await;
    // Every period an order was accepted in, destroyed.
    let mut last = 0;
    for id in ids.iter().flatten() {
        let o = admin(&core, &format!("/admin/v1/orders/{id}")).await;
        last = last.max(o["accepted_at_ms"].as_u64().unwrap() / 1000);
    }
    retired(&core, &held_then, |s| {
        s["keeping_keys"]["first_period"].as_u64() > Some(last)
    })
    .await;
    for id in ids.iter().flatten() {
        let o = admin(&core, &format!("/admin/v1/orders/{id}")).await;
        assert_eq!(o["ship_to"]["redacted"]["reason"], "erased", "{o}");
    }
    edge.terminate();
    core.terminate();
    let (values, searched) =
        carve_files(dir.path(), &dir.path().join("certs/keys"), "solo", &texts);
    for customer in ["c-old-1", "c-old-2"] {
        let o = open_all(&keys, "solo", "SG", &values, customer);
        eprintln!(
            "{} sealed values found in {searched:?}; {customer}: {o:?}",
            values.len()
        );
        assert_eq!(o.opened, 0, "a copy of {customer}'s address still opens");
        assert!(o.expired >= 1, "kept copies were found, and did not open");
        assert!(
            o.retired >= 1,
            "copies sealed at intake were found, and did not open"
        );
    }
    assert!(
        found_again(&kept_before, &values) >= 1,
        "the kept copies were not found again"
    );
}

/// A region key that an order not kept yet still needs is not retired, however long ago it
/// was replaced: the sweep of the store finds the order, and its address keeps opening. Here
/// the orders cannot be kept (their period is before the keeping keys' first), so only the
/// sweep stands between them and the loss of their addresses; keys made after them are
/// retired meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_key_an_unkept_order_needs_is_not_retired() {
    let keeping = |dir: &Path| {
        let keys = dir.join("certs/keys");
        std::fs::remove_file(sealing::shred::path(&keys, "solo")).unwrap();
        let out = std::process::Command::new(common::bin())
            .args(["keys", "keeping", "--dir"])
            .arg(&keys)
            .args(["--region", "solo", "--period-ms", "1000", "--since-ms"])
            .arg((util_now_ms() + 3_600_000).to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let (_dir, core, edge) = solo(
        "intake_key_rotate_ms = 2000\nintake_key_grace_ms = 5000",
        keeping,
    )
    .await;
    let ids = orders(&core, &edge, &[("c-held", "3 Temasek Avenue Held")], 2).await;
    let held_then = held(&core).await;
    // A key made after the orders, which nothing needs, is retired: retirement has run past
    // the time the orders' key was due.
    eventually("a later key retired", Duration::from_secs(40), || async {
        let s = admin(&core, "/admin/v1/personal-data").await;
        s["region_keys"]["retired"].as_array().is_some_and(|r| {
            r.iter()
                .any(|k| !held_then.contains(&k.as_str().unwrap().to_owned()))
        })
    })
    .await;
    for id in &ids[0] {
        let o = admin(&core, &format!("/admin/v1/orders/{id}")).await;
        assert_eq!(o["ship_to"]["line1"], "3 Temasek Avenue Held", "{o}");
    }
}

/// Erases `customer`'s personal data at `core`.
async fn erase(core: &CoreProcess, customer: &str) {
    let res = client()
        .delete(core.url(&format!("/admin/v1/customers/{customer}/personal-data")))
        .bearer_auth(TOKEN)
        .header(
            "idempotency-key",
            common::admin_key(&format!("erase-{customer}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// Erasures make the tree of keeping keys grow; past its bound the core begins a new tree,
/// keeps every address again in it and drops the old one. The file is small again, what was
/// kept still opens, what was erased still does not, and an erasure after it destroys its key
/// in the new tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_what_was_kept_and_nothing_erased() {
    let (dir, mut core, mut edge) = solo("keeping_tree_nodes_max = 256", |_| {}).await;
    let customers = [
        ("c-a", "1 Erased Road A"),
        ("c-b", "2 Erased Road B"),
        ("c-c", "3 Erased Road C"),
        ("c-late", "4 Later Road"),
        (STAYS, "5 Raffles Place Stays"),
    ];
    let ids = orders(&core, &edge, &customers, 2).await;
    let texts = [
        "Erased Road",
        "Later Road",
        "Raffles Place Stays",
        "Name of c-",
    ];
    kept(dir.path(), STAYS, 2, &texts).await;
    kept(dir.path(), "c-late", 2, &texts).await;
    let trees = |s: &Value| s["keeping_keys"]["trees"].as_array().cloned().unwrap();
    // Three erased epochs put some 380 nodes in the first tree: past 256.
    for (c, _) in &customers[..3] {
        erase(&core, c).await;
    }
    eventually("the old tree dropped", Duration::from_secs(40), || async {
        let s = admin(&core, "/admin/v1/personal-data").await;
        let t = trees(&s);
        t.len() == 1 && t[0]["generation"] == 1 && s["erased_epochs"]["keys_due"] == 0
    })
    .await;
    let s = admin(&core, "/admin/v1/personal-data").await;
    assert_eq!(
        trees(&s)[0]["nodes"],
        1,
        "the new tree holds none of the erasures before it: {s}"
    );
    for id in &ids[4] {
        let o = admin(&core, &format!("/admin/v1/orders/{id}")).await;
        assert_eq!(o["ship_to"]["line1"], "5 Raffles Place Stays", "{o}");
    }
    // An erasure after it destroys its key in the new tree.
    erase(&core, "c-late").await;
    eventually(
        "the later erasure's key destroyed",
        Duration::from_secs(20),
        || async {
            let s = admin(&core, "/admin/v1/personal-data").await;
            s["erased_epochs"]["keys_due"] == 0 && trees(&s)[0]["nodes"].as_u64() > Some(1)
        },
    )
    .await;
    edge.terminate();
    core.terminate();
    let keys = dir.path().join("certs/keys");
    let (values, searched) = carve_files(dir.path(), &keys, "solo", &texts);
    let in_new_tree = values
        .iter()
        .filter(|v| matches!(v, Seal::Kept(k) if k.generation == 1))
        .count();
    assert!(
        in_new_tree >= 2,
        "no value kept in the new tree: {searched:?}"
    );
    // The copies sealed at intake open until their region key is retired (the first test);
    // what is kept, in either tree, is what compaction answers for.
    let kept: Vec<Seal> = values
        .into_iter()
        .filter(|v| matches!(v, Seal::Kept(_)))
        .collect();
    for (c, _) in &customers[..4] {
        let o = open_all(&keys, "solo", "SG", &kept, c);
        assert_eq!(
            o.opened, 0,
            "a kept copy of {c}'s erased address opens: {o:?}"
        );
        assert!(o.erased + o.compacted >= 1, "{c}: {o:?}");
    }
    let late = open_all(&keys, "solo", "SG", &kept, "c-late");
    assert!(
        late.erased >= 1,
        "c-late's copies in the new tree: {late:?}"
    );
    let stays = open_all(&keys, "solo", "SG", &kept, STAYS);
    assert!(stays.opened >= 2, "what was kept still opens: {stays:?}");
}
