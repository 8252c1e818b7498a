//! Golden bytes of every commerce format (`commerce::format`): each stored or sent value, with
//! every field and every variant filled in, must encode to exactly the bytes kept in
//! `tests/golden/<label>-v<version>[-<case>].hex`, and those bytes must decode back to it. A
//! field added to `Order` fails here, in the order's own file and in every file of a value that
//! carries an order, instead of silently changing what stores and peers hold.

use std::path::PathBuf;

use codec::{Versioned, check_golden};
use commerce::command::{AuditRecord, EdgeRead, EdgeWrite, Outcome, Proposal, ReadReply};
use commerce::dedup::DedupRecord;
use commerce::escrow::Inventory;
use commerce::format::{self, CommitLog};
use commerce::format::{v1, v2, v4};
use commerce::order::{Order, ShipTo};
use commerce::personal::{Address, Personal, SealedPersonal};
use commerce::pricing::{PriceEntry, PriceList, Promotion};
use commerce::{Market, Product};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A value read from JSON (the readable way to write one with every field set).
fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a sample that parses")
}

/// Checks `value` against its golden file; `case` tells apart samples of one format.
fn golden<T: Versioned + PartialEq + std::fmt::Debug>(case: Option<&str>, value: &T) {
    let f = T::FORMAT;
    let mut name = format!("{}-v{}", f.label.replace(' ', "-"), f.version);
    if let Some(c) = case {
        name = format!("{name}-{c}");
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.hex"));
    if let Err(e) = check_golden(&path, value) {
        panic!("{e}");
    }
}

/// `ship_to` sealed, as every order since order v2 holds it (the bytes stand for a sealed
/// address: this crate never opens one).
fn seal(ship_to: &mut ShipTo) {
    ship_to.personal = Personal::Sealed(SealedPersonal {
        home: "ap-singapore".into(),
        digest: [0xd1; 16],
        sealed: (0u8..90).collect(),
    });
}

fn sealed_order(o: &mut Order) {
    seal(&mut o.ship_to);
}

fn sealed_outcome(o: &mut Outcome) {
    match o {
        Outcome::Order { order, .. } => sealed_order(order),
        Outcome::Orders { results, .. } => results
            .iter_mut()
            .filter_map(|r| r.original.as_deref_mut())
            .for_each(sealed_order),
        _ => {}
    }
}

fn usd(amount: i64) -> Value {
    json!({"amount_minor": amount, "currency": "USD"})
}

fn product() -> Value {
    json!({"id": "P-1", "title": "Linen shirt", "category": "apparel/shirts",
        "skus": [{"sku": "P-1-RED-M", "attributes": {"colour": "red", "size": "M"},
                  "min_order_qty": 1, "max_order_qty": 10},
                 {"sku": "P-1-RED-L", "attributes": {}, "min_order_qty": 2, "max_order_qty": 500}]})
}

fn market() -> Value {
    json!({"id": "sea", "countries": ["MY", "SG"], "currencies": ["SGD", "USD"]})
}

fn price_list() -> Value {
    json!({"id": "member-sea-USD", "currency": "USD", "customer_group": "member",
        "market": "sea", "valid_from_ms": 1_700_000_000_000i64, "valid_until_ms": 1_800_000_000_000i64})
}

fn promotion() -> Value {
    json!({"id": "flash", "target": {"category": "apparel"}, "discount": {"percent_off_bps": 3000},
        "customer_group": "member", "market": "sea", "valid_from_ms": 1, "valid_until_ms": 2,
        "version": 41})
}

fn order_request() -> Value {
    json!({"customer_id": "c-42", "customer_group": "member", "currency": "USD",
        "lines": [{"sku": "P-1-RED-M", "qty": 2}],
        "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"}})
}

fn order() -> Value {
    json!({"order_id": "o-0193c2a0b1c2-aabbccddeeff00112233", "idempotency_key": "01932c07-a6b3-7d2e-9f00-1a2b3c4d5e6f",
        "customer_id": "c-42", "customer_group": "member", "currency": "USD",
        "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"},
        "lines": [{"sku": "P-1-RED-M", "qty": 2, "unit_price": usd(1500), "total": usd(3000),
                   "breakdown": [{"list_price": {"list": "base-USD", "unit_minor": 2000}},
                                 {"tier": {"min_qty": 2, "unit_minor": 1800}},
                                 {"promotion": {"promotion": "flash", "unit_off_minor": 300}}]}],
        "subtotal": usd(3000), "discount": {"promotion": "spend-30", "off": usd(500)}, "total": usd(2500),
        "price_version": 17, "origin": {"region": "ap-singapore", "edge": "ap-singapore-1"},
        "accepted_at_ms": 1_733_000_000_000i64, "status": "rejected", "commit_version": 99,
        "reject_reason": "sku P-1-RED-M: out of stock"})
}

/// A proposal of `command`, without the field version 2 added (`key_ms`).
fn proposal_v1(command: Value) -> Value {
    json!({"command_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        "fingerprint": [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
        "at_ms": 1_733_000_000_123i64, "command": command})
}

fn policy() -> Value {
    json!({"horizon_ms": 30000, "min_units": 1, "max_units": 1000, "max_share_bps": 2500, "low_stock_units": 10})
}

#[test]
fn catalog_records() {
    golden::<Product>(None, &from(product()));
    golden::<Market>(None, &from(market()));
    golden::<PriceList>(None, &from(price_list()));
    golden::<PriceEntry>(
        None,
        &from(json!({"list": "base-USD", "amount_minor": 2000,
            "tiers": [{"min_qty": 10, "amount_minor": 1800}, {"min_qty": 100, "amount_minor": 1500}],
            "version": 12})),
    );
    golden::<Promotion>(None, &from(promotion()));
}

fn inventory_v1() -> Value {
    json!({"stocked": 1000, "committed": 250,
        "granted": {"ap-singapore-1": 40, "us-east-1": 7}, "recall": true})
}

#[test]
fn inventory_orders_and_the_commit_log() {
    let mut inventory = inventory_v1();
    inventory["requests"] =
        json!({"ap-singapore-1": {"grant": 1_733_000_000_001u64, "granted": 40, "returned": 0}});
    golden::<Inventory>(None, &from(inventory));
    // Version 1, kept: the address in the clear; reads as version 2 with it plain.
    let old: v1::Order = from(order());
    golden(None, &old);
    let now: Order = codec::decode(&codec::encode(&old).unwrap()).unwrap();
    assert_eq!(now, Order::from(old.clone()));
    assert!(matches!(now.ship_to.personal, Personal::Plain(_)));
    // Version 2: sealed.
    let mut sealed = Order::from(old);
    sealed_order(&mut sealed);
    golden(None, &sealed);
    golden::<commerce::personal::Erasure>(
        None,
        &commerce::personal::Erasure {
            at_ms: 1_733_000_000_000,
        },
    );
    // An ended epoch's row: version 1 held the erasure alone, and reads as of no known
    // version.
    let end = commerce::personal::EpochEnd {
        at_ms: 1_733_000_000_000,
        version: 4_242,
    };
    golden(None, &end);
    let v1 = codec::encode(&commerce::personal::Erasure {
        at_ms: 1_733_000_000_000,
    })
    .unwrap();
    assert_eq!(
        codec::decode::<commerce::personal::EpochEnd>(&v1).unwrap(),
        commerce::personal::EpochEnd { version: 0, ..end }
    );
    golden::<Address>(
        None,
        &Address {
            name: Some("Tan Ah Kow".into()),
            line1: "1 Raffles Place".into(),
            line2: Some("#10-01".into()),
            city: "Singapore".into(),
            postal_code: "048616".into(),
            phone: Some("+65 6123 4567".into()),
        },
    );
    golden::<CommitLog>(
        None,
        &from(json!(["o-0193c2a0b1c2-aabbccddeeff00112233", "o-1"])),
    );
}

/// Commands of every kind, as version 1 wrote them (grants and returns unnumbered).
fn commands_v1() -> Vec<(&'static str, Value)> {
    vec![
        ("upsert-product", json!({"UpsertProduct": product()})),
        ("upsert-market", json!({"UpsertMarket": market()})),
        (
            "upsert-price-list",
            json!({"UpsertPriceList": price_list()}),
        ),
        ("upsert-promotion", json!({"UpsertPromotion": promotion()})),
        ("delete-promotion", json!({"DeletePromotion": "flash"})),
        (
            "price-batch",
            json!({"PriceBatch": [{"sku": "P-1-RED-M", "currency": "USD", "amount_minor": 1999,
                "list": "member-sea-USD", "customer_group": "member",
                "tiers": [{"min_qty": 10, "amount_minor": 1800}]}]}),
        ),
        (
            "stock-batch",
            json!({"StockBatch": [{"sku": "A", "op": {"set": 10}}, {"sku": "B", "op": {"add": 5}},
                {"sku": "C", "op": {"remove": 1}}]}),
        ),
        (
            "grant",
            json!({"Grant": {"edge": "ap-singapore-1", "sku": "A",
                "demand": {"units": 12, "window_ms": 10000}, "policy": policy()}}),
        ),
        (
            "return-grant",
            json!({"ReturnGrant": {"edge": "ap-singapore-1", "sku": "A", "units": 3}}),
        ),
        (
            "commit-orders",
            json!({"CommitOrders": {"edge": "ap-singapore-1", "orders": [order()]}}),
        ),
        (
            "central-order",
            json!({"CentralOrder": {"order_id": "o-1", "idempotency_key": "k-1",
                "request": order_request(), "region": "ap-singapore", "edge": "ap-singapore-1"}}),
        ),
    ]
}

#[test]
fn proposals_of_every_command() {
    for (case, mut command) in commands_v1() {
        // Version 2: numbered grants and returns, and the time a keyed write's key says.
        for kind in ["Grant", "ReturnGrant"] {
            if let Some(c) = command.get_mut(kind) {
                c["request"] = json!(1_733_000_000_001u64);
            }
        }
        let mut p = proposal_v1(command);
        p["key_ms"] = json!(1_733_000_000_000u64);
        // Version 2, kept, reads as version 3 without an actor.
        let v2: format::v2::Proposal = from(p.clone());
        golden(Some(case), &v2);
        let now: Proposal = codec::decode(&codec::encode(&v2).unwrap()).unwrap();
        assert_eq!(now, Proposal::from(v2));
        // Version 3: who made an admin write; reads as version 4 the same.
        p["actor"] = json!({"token": "pricing-bot", "route": "POST /admin/v1/prices"});
        let v3: format::v3::Proposal = from(p.clone());
        golden(Some(case), &v3);
        let now: Proposal = codec::decode(&codec::encode(&v3).unwrap()).unwrap();
        assert_eq!(now, Proposal::from(v3));
        let v4: v4::Proposal = from(p);
        golden(Some(case), &v4);
        // Version 5: orders of version 2, sealed.
        let mut now = Proposal::from(v4);
        for (_, ship_to) in now.command.ship_tos_mut() {
            seal(ship_to);
        }
        golden(Some(case), &format::v5::Proposal(now));
    }
    // Version 6: an erasure of a customer's personal data.
    golden(
        Some("erase-personal"),
        &format::v6::Proposal(from(
            json!({"command_id": vec![3u8; 16], "fingerprint": vec![4u8; 16], "at_ms": 1_733_000_000_000i64,
            "command": {"ErasePersonal": {"customer": "c-42", "orders": ["o-1", "o-0193c2a0b1c2-aabbccddeeff00112233"]}},
            "key_ms": 1_733_000_000_000u64,
            "actor": {"token": "privacy-desk", "route": "DELETE /admin/v1/customers/{id}/personal-data"}}),
        )),
    );
    // Version 6: retention's erasure of old orders.
    golden(
        Some("erase-orders"),
        &format::v6::Proposal(from(
            json!({"command_id": vec![5u8; 16], "fingerprint": vec![0u8; 16], "at_ms": 1_733_000_000_000i64,
            "command": {"EraseOrders": {"orders": ["o-1", "o-2"], "before_ms": 1_700_000_000_000i64}},
            "key_ms": null,
            "actor": {"token": "retention", "route": "retention"}}),
        )),
    );
    // Version 7: addresses as their home region keeps them.
    golden::<Proposal>(
        Some("keep-addresses"),
        &from(
            json!({"command_id": vec![6u8; 16], "fingerprint": vec![0u8; 16], "at_ms": 1_733_000_000_000i64,
            "command": {"KeepAddresses": {"kept": [
                {"order_id": "o-1", "epoch": 0, "personal": {"home": "cn-shanghai", "digest": vec![7u8; 16], "sealed": [2, 1, 2, 3]}},
                {"order_id": "o-2", "epoch": 1_733_000_000_000i64, "personal": {"home": "us-east", "digest": vec![8u8; 16], "sealed": [2, 4]}}
            ]}},
            "key_ms": null,
            "actor": null}),
        ),
    );
    // Version 4: a note of a membership change.
    golden::<v4::Proposal>(
        Some("note-membership"),
        &from(
            json!({"command_id": vec![1u8; 16], "fingerprint": vec![2u8; 16], "at_ms": 1_733_000_000_000i64,
            "command": {"NoteMembership": {"change": "add member 4 (eu-west, voter): asked"}},
            "key_ms": null,
            "actor": {"token": "ops", "route": "POST /admin/v1/cluster/members"}}),
        ),
    );
}

#[test]
fn audit_records() {
    golden::<AuditRecord>(
        None,
        &from(
            json!({"version": 42, "at_ms": 1_733_000_000_123i64, "token": "pricing-bot",
            "route": "POST /admin/v1/prices", "command_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
            "command": "price_batch", "outcome": "rejected: unknown-sku"}),
        ),
    );
}

/// What version 1 wrote reads as version 2: proposals (in a Raft log written by the previous
/// build), edge writes and inventories.
#[test]
fn proposals_edge_writes_and_inventories_of_version_1_read_as_version_2() {
    for (case, command) in commands_v1() {
        let old: format::v1::Proposal = from(proposal_v1(command));
        golden(Some(case), &old);
        let now: Proposal = codec::decode(&codec::encode(&old).unwrap()).unwrap();
        assert_eq!(now, Proposal::from(old));
    }
    for (case, write) in edge_writes_v1() {
        let old: format::v1::EdgeWrite = from(write);
        golden(Some(case), &old);
        let now: EdgeWrite = codec::decode(&codec::encode(&old).unwrap()).unwrap();
        assert_eq!(now, EdgeWrite::from(old));
    }
    let old: format::v1::Inventory = from(inventory_v1());
    golden(None, &old);
    let now: Inventory = codec::decode(&codec::encode(&old).unwrap()).unwrap();
    assert_eq!(now, Inventory::from(old));
    assert!(now.requests.is_empty());
}

/// Outcomes of every kind, as version 1 wrote them (before order results named the order that
/// stands).
fn outcomes_v1() -> Vec<(&'static str, Value)> {
    vec![
        ("applied", json!({"Applied": {"version": 7}})),
        ("granted", json!({"Granted": {"version": 7, "units": 30}})),
        ("returned", json!({"Returned": {"version": 7, "units": 3}})),
        (
            "orders",
            json!({"Orders": {"version": 7, "results": [
                {"order_id": "o-1", "status": "committed", "version": 7, "duplicate": false, "reject_reason": null},
                {"order_id": "o-2", "status": "rejected", "version": 5, "duplicate": true,
                 "reject_reason": "sku A: out of stock"}]}}),
        ),
        (
            "order",
            json!({"Order": {"order": order(), "duplicate": true}}),
        ),
        (
            "rejected",
            json!({"Rejected": {"kind": "held_in_grants", "detail": "12 units are held in grants"}}),
        ),
    ]
}

#[test]
fn outcomes_of_every_kind() {
    let mut v2s: Vec<(&str, v2::Outcome)> = outcomes_v1()
        .into_iter()
        .filter(|(case, _)| *case != "orders")
        .map(|(case, o)| (case, from(o)))
        .collect();
    let orders = json!({"Orders": {"version": 7, "results": [
        {"order_id": "o-1", "status": "committed", "version": 7, "duplicate": false,
         "reject_reason": null, "original": null, "key_reused": false},
        {"order_id": "o-0193c2a0b1c2-aabbccddeeff00112233", "status": "rejected", "version": 5,
         "duplicate": true, "reject_reason": "sku P-1-RED-M: out of stock",
         "original": order(), "key_reused": true}]}});
    v2s.push(("orders", from(orders)));
    for (case, old) in v2s {
        golden(Some(case), &old);
        // Version 3: orders of version 2, sealed.
        let mut now = Outcome::from(old);
        sealed_outcome(&mut now);
        golden(Some(case), &now);
    }
}

/// What version 1 wrote reads as version 2: the migration path of outcomes, and of the dedup
/// records that hold them.
#[test]
fn outcomes_and_dedup_records_of_version_1_read_as_version_2() {
    for (case, outcome) in outcomes_v1() {
        let old: format::v1::Outcome = from(outcome);
        golden(Some(case), &old);
        let bytes = codec::encode(&old).unwrap();
        assert_eq!(
            codec::decode::<Outcome>(&bytes).unwrap(),
            Outcome::from(old)
        );
    }
    let record =
        |outcome: Value| json!({"version": 9, "fingerprint": vec![7; 16], "outcome": outcome});
    let old: format::v1::DedupRecord = from(record(outcomes_v1()[3].1.clone()));
    golden(None, &old);
    let now: DedupRecord = codec::decode(&codec::encode(&old).unwrap()).unwrap();
    assert_eq!(now.outcome, Outcome::from(old.outcome));
    let old: v2::DedupRecord = from(record(json!({"Applied": {"version": 9}})));
    golden(None, &old);
    golden::<DedupRecord>(None, &old.into());
}

/// Edge writes of every request, as version 1 wrote them (grants and returns keyed).
fn edge_writes_v1() -> Vec<(&'static str, Value)> {
    vec![
        (
            "commit",
            json!({"key": null, "request": {"Commit": [order()]}}),
        ),
        (
            "grant",
            json!({"key": "grant-7", "request": {"Grant": {"sku": "A", "demand": {"units": 1, "window_ms": 60000}}}}),
        ),
        (
            "return",
            json!({"key": "return-8", "request": {"Return": {"sku": "A", "units": 4}}}),
        ),
        (
            "central-order",
            json!({"key": null, "request": {"CentralOrder": {"idempotency_key": "k-1", "request": order_request()}}}),
        ),
    ]
}

#[test]
fn edge_writes_of_every_request() {
    let cases = [
        ("commit", json!({"request": {"Commit": [order()]}})),
        (
            "grant",
            json!({"request": {"Grant": {"sku": "A", "demand": {"units": 1, "window_ms": 60000}, "request": 7}}}),
        ),
        (
            "return",
            json!({"request": {"Return": {"sku": "A", "units": 4, "request": 8}}}),
        ),
        (
            "central-order",
            json!({"request": {"CentralOrder": {"idempotency_key": "k-1", "request": order_request()}}}),
        ),
    ];
    for (case, write) in cases {
        let old: v2::EdgeWrite = from(write);
        golden(Some(case), &old);
        // Version 3: orders of version 2, sealed.
        let mut now = EdgeWrite::from(old);
        match &mut now.request {
            commerce::command::EdgeRequest::Commit(orders) => {
                orders.iter_mut().for_each(sealed_order)
            }
            commerce::command::EdgeRequest::CentralOrder { request, .. } => {
                seal(&mut request.ship_to)
            }
            _ => {}
        }
        golden(Some(case), &now);
    }
}

#[test]
fn edge_reads_and_their_replies() {
    let reads = [
        (
            "customer-orders",
            json!({"CustomerOrders": {"customer": "c-42", "limit": 20,
                "after": {"accepted_at_ms": 1_733_000_000_000i64, "order_id": "o-0193c2a0b1c2-aabbccddeeff00112233"}}}),
        ),
        (
            "order",
            json!({"Order": {"customer": "c-42", "id": "o-0193c2a0b1c2-aabbccddeeff00112233"}}),
        ),
    ];
    for (case, read) in reads {
        let old: v1::EdgeRead = from(read);
        golden(Some(case), &old);
        // Version 2: the asking edge's region.
        let mut now = EdgeRead::from(old);
        match &mut now {
            EdgeRead::CustomerOrders { region, .. } | EdgeRead::Order { region, .. } => {
                assert_eq!(region, "", "a read of version 1 names no region");
                *region = "ap-singapore".into();
            }
        }
        golden(Some(case), &now);
    }
    for (case, reply) in [
        ("orders", json!({"Orders": [order()]})),
        ("order", json!({"Order": order()})),
    ] {
        let old: v1::ReadReply = from(reply);
        golden(Some(case), &old);
        // Version 2: orders of version 2, sealed.
        let mut now = ReadReply::from(old);
        match &mut now {
            ReadReply::Orders(v) => v.iter_mut().for_each(sealed_order),
            ReadReply::Order(o) => o.iter_mut().for_each(|o| sealed_order(o)),
        }
        golden(Some(case), &now);
    }
}

/// A proposal goes into the log in the earliest version that carries it, so that members of
/// older builds apply what they can through a rolling upgrade: without an actor (an edge's
/// write) version 2, an admin write version 3, a membership note version 4, a command with
/// orders (sealed since version 5) version 5, and an erasure version 6; all read back whole.
#[test]
fn proposals_are_written_in_the_earliest_version_that_carries_them() {
    let base = Proposal {
        command_id: [1; 16],
        fingerprint: [2; 16],
        at_ms: 1_733_000_000_000,
        command: commerce::command::Command::DeletePromotion(
            commerce::PromotionId::new("flash").unwrap(),
        ),
        key_ms: None,
        actor: None,
    };
    let admin = Proposal {
        actor: Some(commerce::command::Actor {
            token: "pricing-bot".into(),
            route: "DELETE /admin/v1/promotions/flash".into(),
        }),
        ..base.clone()
    };
    let note = Proposal {
        command: commerce::command::Command::NoteMembership {
            change: "remove member 3: asked".into(),
        },
        ..admin.clone()
    };
    let mut request: commerce::order::OrderRequest = from(order_request());
    seal(&mut request.ship_to);
    let order = Proposal {
        command: commerce::command::Command::CentralOrder {
            order_id: commerce::OrderId::new("o-1").unwrap(),
            idempotency_key: Some("k-1".into()),
            request,
            region: "r1".into(),
            edge: None,
        },
        ..base.clone()
    };
    let erasure = Proposal {
        command: commerce::command::Command::ErasePersonal {
            customer: commerce::CustomerId::new("c-42").unwrap(),
            orders: vec![commerce::OrderId::new("o-1").unwrap()],
        },
        ..admin.clone()
    };
    let keep = Proposal {
        command: commerce::command::Command::KeepAddresses { kept: Vec::new() },
        ..base.clone()
    };
    for (p, version) in [
        (base, 2),
        (admin, 3),
        (note, 4),
        (order, 5),
        (erasure, 6),
        (keep, 7),
    ] {
        let bytes = format::earliest(p.clone()).unwrap();
        assert_eq!(bytes[0], version, "{:?}", p.command.kind());
        assert_eq!(codec::decode::<Proposal>(&bytes).unwrap(), p);
    }
}
