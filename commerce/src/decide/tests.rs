//! The rules of `decide`, shown on the in-memory machine: all-or-nothing commands, escrow at
//! commit, each order once by its id, one key one order; and, for any history, invariant I2
//! and orders counted once.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::MemoryMachine;
use crate::command::{Command, Outcome, PriceChange};
use crate::escrow::{Demand, GrantPolicy, Inventory, StockOp};
use crate::id::{OrderId, PriceListId};
use crate::order::OrderStatus;
use crate::order_id::v1_id;
use crate::pricing::PriceList;
use crate::refusal::RejectKind;
use crate::testing::{
    EDGES, SKUS, catalog, central_order, edge, edge_order, exact_grant, op, request, sku, stock,
    usd,
};

/// The catalog of `testing`, with 10 units of A and 3 of B.
fn machine() -> MemoryMachine {
    let mut m = MemoryMachine::new();
    for c in catalog()
        .into_iter()
        .chain([stock("A", StockOp::Set(10)), stock("B", StockOp::Set(3))])
    {
        assert!(matches!(m.apply(&c, 1_000), Outcome::Applied { .. }));
    }
    m
}

fn inv(m: &MemoryMachine, s: &str) -> Inventory {
    m.state.inventory(&sku(s)).cloned().unwrap_or_default()
}

fn rejected(o: &Outcome) -> RejectKind {
    match o {
        Outcome::Rejected(r) => r.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn results(o: Outcome) -> Vec<crate::command::OrderResult> {
    match o {
        Outcome::Orders { results, .. } => results,
        other => panic!("expected order results, got {other:?}"),
    }
}

fn price(s: &str, amount: i64) -> PriceChange {
    PriceChange {
        sku: sku(s),
        currency: usd(),
        amount_minor: amount,
        list: None,
        customer_group: None,
        tiers: vec![],
    }
}

#[test]
fn a_price_batch_is_all_or_nothing() {
    let mut m = machine();
    let out = m.apply(
        &Command::PriceBatch(vec![price("A", 2_000), price("NOPE", 2_000)]),
        0,
    );
    assert_eq!(rejected(&out), RejectKind::UnknownSku);
    assert_eq!(m.state.book.prices(&sku("A"))[0].amount_minor, 1_000);
    for bad in [price("A", 0), price("A", -5), price("A", i64::MAX)] {
        let out = m.apply(&Command::PriceBatch(vec![bad]), 0);
        assert_eq!(rejected(&out), RejectKind::Invalid);
    }
    let dup = m.apply(&Command::PriceBatch(vec![price("A", 1), price("A", 2)]), 0);
    assert_eq!(rejected(&dup), RejectKind::Invalid);
    assert_eq!(m.state.book.prices(&sku("A"))[0].amount_minor, 1_000);
}

#[test]
fn catalog_rules_keep_skus_lists_and_markets_consistent() {
    let mut m = machine();
    // A SKU belongs to one product.
    let mut other = match &catalog()[0] {
        Command::UpsertProduct(p) => p.clone(),
        _ => unreachable!(),
    };
    other.id = crate::ProductId::new("Q").unwrap();
    other.skus.truncate(1);
    let out = m.apply(&Command::UpsertProduct(other), 0);
    assert_eq!(rejected(&out), RejectKind::Conflict);
    // A list never changes currency; a list names a known market.
    let mut sgd = PriceList::implicit(usd(), None);
    sgd.currency = crate::Currency::from_code("SGD").unwrap();
    assert_eq!(
        rejected(&m.apply(&Command::UpsertPriceList(sgd), 0)),
        RejectKind::Conflict
    );
    let mut far = PriceList::implicit(usd(), None);
    far.id = PriceListId::new("far").unwrap();
    far.market = Some(crate::MarketId::new("nowhere").unwrap());
    assert_eq!(
        rejected(&m.apply(&Command::UpsertPriceList(far), 0)),
        RejectKind::UnknownMarket
    );
    // A grant policy out of range is refused, whatever the edge asks.
    let bad = Command::Grant {
        edge: edge("e0"),
        sku: sku("A"),
        demand: Demand::default(),
        policy: GrantPolicy {
            max_share_bps: 20_000,
            ..GrantPolicy::default()
        },
        request: None,
    };
    assert_eq!(rejected(&m.apply(&bad, 0)), RejectKind::Invalid);
    assert!(inv(&m, "A").granted.is_empty());
}

#[test]
fn stock_held_in_grants_cannot_be_removed() {
    let mut m = machine();
    let e = edge("sg-1");
    let out = m.apply(
        &Command::Grant {
            edge: e.clone(),
            sku: sku("A"),
            demand: Demand {
                units: 100,
                window_ms: 1_000,
            },
            policy: GrantPolicy {
                low_stock_units: 0,
                ..GrantPolicy::default()
            },
            request: None,
        },
        0,
    );
    // A quarter of the pool of 10.
    assert_eq!(
        out,
        Outcome::Granted {
            version: m.version,
            units: 2
        }
    );
    let out = m.apply(&stock("A", StockOp::Set(1)), 0);
    assert_eq!(rejected(&out), RejectKind::HeldInGrants);
    assert_eq!(inv(&m, "A").on_hand(), 10);
    let out = m.apply(
        &Command::ReturnGrant {
            edge: e,
            sku: sku("A"),
            units: 5,
            request: None,
        },
        0,
    );
    assert!(matches!(out, Outcome::Returned { units: 2, .. }));
    assert!(inv(&m, "A").granted.is_empty());
}

/// An edge's grant requests and returns are numbered: one sent again, however late (its answer
/// lost, the edge restarted days later), is answered as it was and applied once.
#[test]
fn an_edges_numbered_requests_apply_once_however_late() {
    let mut m = machine();
    let e = edge("sg-1");
    let numbered = |request| {
        let mut c = exact_grant(&e, "A", 3);
        if let Command::Grant { request: r, .. } = &mut c {
            *r = Some(request);
        }
        c
    };
    assert!(matches!(
        m.apply(&numbered(7), 0),
        Outcome::Granted { units: 3, .. }
    ));
    // Sent again (the answer was lost): the same answer, nothing more granted.
    for _ in 0..3 {
        assert!(matches!(
            m.apply(&numbered(7), 0),
            Outcome::Granted { units: 3, .. }
        ));
    }
    assert_eq!(inv(&m, "A").granted[&e], 3);
    // The next request grants again; the old one, arriving late, grants nothing.
    assert!(matches!(
        m.apply(&numbered(9), 0),
        Outcome::Granted { units: 3, .. }
    ));
    assert!(matches!(
        m.apply(&numbered(7), 0),
        Outcome::Granted { units: 0, .. }
    ));
    assert_eq!(inv(&m, "A").granted[&e], 6);
    let give_back = |request| Command::ReturnGrant {
        edge: e.clone(),
        sku: sku("A"),
        units: 2,
        request: Some(request),
    };
    assert!(matches!(
        m.apply(&give_back(10), 0),
        Outcome::Returned { units: 2, .. }
    ));
    assert!(matches!(
        m.apply(&give_back(10), 0),
        Outcome::Returned { units: 0, .. }
    ));
    assert_eq!(inv(&m, "A").granted[&e], 4);
    assert!(inv(&m, "A").holds_i2());
}

#[test]
fn edge_orders_commit_once_against_their_grant() {
    let mut m = machine();
    let e = edge("sg-1");
    m.apply(&exact_grant(&e, "A", 4), 0);
    assert_eq!(inv(&m, "A").granted[&e], 4);
    let o1 = edge_order(&m.state, "e-1", &e, request(&[("A", 3)]));
    let o2 = edge_order(&m.state, "e-2", &e, request(&[("A", 2), ("B", 1)]));
    let batch = Command::CommitOrders {
        edge: e.clone(),
        orders: vec![o1, o2],
    };
    let r = results(m.apply(&batch, 0));
    assert!(
        r.iter()
            .all(|r| r.status == OrderStatus::Committed && !r.duplicate)
    );
    // 3 + 2 from a grant of 4 (one unit from the pool), 1 of B from the pool.
    let a = inv(&m, "A");
    assert_eq!((a.committed, a.granted_total(), a.available()), (5, 0, 5));
    assert_eq!(inv(&m, "B").committed, 1);
    // The forwarder sends the whole batch again: nothing changes.
    let r = results(m.apply(&batch, 0));
    assert!(r.iter().all(|r| r.duplicate));
    assert_eq!(inv(&m, "A").committed, 5);
    // An order beyond grant and pool is stored as rejected, never oversold.
    let big = edge_order(&m.state, "e-3", &e, request(&[("B", 3)]));
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: e,
            orders: vec![big.clone()],
        },
        0,
    ));
    assert_eq!(r[0].status, OrderStatus::Rejected);
    assert_eq!(m.orders[&big.order_id].status, OrderStatus::Rejected);
    assert_eq!(inv(&m, "B").committed, 1);
    assert!(inv(&m, "B").holds_i2());
}

/// An erasure reaches the orders of its customer named, and any of theirs accepted before it
/// that commits after (from an outbox); never another customer's, nor what was accepted after.
#[test]
fn an_erasure_reaches_its_customers_orders_then_and_later_and_no_one_elses() {
    use crate::personal::Personal;
    let mut m = machine();
    let e = edge("sg-1");
    m.apply(&exact_grant(&e, "A", 4), 0);
    let mine = request(&[("A", 1)]);
    let mut theirs = request(&[("A", 1)]);
    theirs.customer_id = crate::CustomerId::new("c-2").unwrap();
    let mut kept = edge_order(&m.state, "e-1", &e, mine.clone());
    kept.accepted_at_ms = 100;
    let mut other = edge_order(&m.state, "e-2", &e, theirs);
    other.accepted_at_ms = 100;
    let mut pending = edge_order(&m.state, "e-3", &e, mine.clone());
    pending.accepted_at_ms = 150;
    m.apply(
        &Command::CommitOrders {
            edge: e.clone(),
            orders: vec![kept.clone(), other.clone()],
        },
        0,
    );
    let customer = kept.customer_id.clone();
    let erase = Command::ErasePersonal {
        customer: customer.clone(),
        // Another customer's order named by mistake is left alone.
        orders: vec![kept.order_id.clone(), other.order_id.clone()],
    };
    assert!(matches!(m.apply(&erase, 200), Outcome::Applied { .. }));
    let erased = |m: &MemoryMachine, id: &OrderId| {
        matches!(
            m.orders[id].ship_to.personal,
            Personal::Erased { at_ms: 200 }
        )
    };
    assert!(erased(&m, &kept.order_id));
    assert_eq!(
        m.orders[&kept.order_id].total, kept.total,
        "the rest is kept"
    );
    assert!(!erased(&m, &other.order_id));
    // Accepted before the erasure, committed after: erased as it is stored.
    let mut after = edge_order(&m.state, "e-4", &e, mine);
    after.accepted_at_ms = 300;
    m.apply(
        &Command::CommitOrders {
            edge: e.clone(),
            orders: vec![pending.clone(), after.clone()],
        },
        0,
    );
    assert!(erased(&m, &pending.order_id));
    assert!(!erased(&m, &after.order_id), "accepted after the erasure");
    // Again: nothing changes but the time kept; never back in time (a proposer whose clock
    // is behind), and never reaching what was accepted after it.
    assert!(matches!(m.apply(&erase, 400), Outcome::Applied { .. }));
    assert!(erased(&m, &kept.order_id));
    assert_eq!(m.state.erasure(&customer).unwrap().at_ms, 400);
    let late = Command::ErasePersonal {
        customer: customer.clone(),
        orders: vec![after.order_id.clone()],
    };
    m.apply(&late, 250);
    assert_eq!(m.state.erasure(&customer).unwrap().at_ms, 400);
    assert!(
        matches!(
            m.orders[&after.order_id].ship_to.personal,
            Personal::Erased { at_ms: 400 }
        ),
        "accepted at 300, before the erasure kept at 400"
    );
    let too_many = Command::ErasePersonal {
        customer,
        orders: vec![kept.order_id.clone(); crate::command::ERASE_BATCH_MAX + 1],
    };
    assert_eq!(rejected(&m.apply(&too_many, 0)), RejectKind::Invalid);
}

/// An address kept by its home region replaces the order's while it is the same address and
/// the customer's epoch is the one it was kept for; each erasure that moves the epoch on says
/// which it ended, so that its key is destroyed.
#[test]
fn kept_addresses_replace_the_same_address_at_the_epoch_they_name_only() {
    use crate::personal::{KeptAddress, Personal, SealedPersonal};
    let sealed = |digest: u8, bytes: &[u8]| SealedPersonal {
        home: "cn-east".into(),
        digest: [digest; 16],
        sealed: bytes.to_vec(),
    };
    let mut m = machine();
    let e = edge("sg-1");
    m.apply(&exact_grant(&e, "A", 4), 0);
    let mut orders = Vec::new();
    for (n, at) in [(1, 100), (2, 300)] {
        let mut o = edge_order(&m.state, &format!("e-{n}"), &e, request(&[("A", 1)]));
        o.accepted_at_ms = at;
        o.ship_to.personal = Personal::Sealed(sealed(1, &[1, n]));
        orders.push(o);
    }
    m.apply(
        &Command::CommitOrders {
            edge: e,
            orders: orders.clone(),
        },
        0,
    );
    let customer = orders[0].customer_id.clone();
    let keep = |o: &crate::order::Order, epoch, personal| Command::KeepAddresses {
        kept: vec![KeptAddress {
            order_id: o.order_id.clone(),
            epoch,
            personal,
        }],
    };
    let holds = |m: &MemoryMachine, o: &crate::order::Order, bytes: &[u8]| matches!(&m.orders[&o.order_id].ship_to.personal, Personal::Sealed(s) if s.sealed == bytes);
    // Another address (digest), or another epoch: passed over.
    m.apply(&keep(&orders[0], 0, sealed(2, &[9])), 150);
    m.apply(&keep(&orders[0], 5, sealed(1, &[9])), 150);
    assert!(holds(&m, &orders[0], &[1, 1]));
    assert!(m.ended.is_empty());
    m.apply(&keep(&orders[0], 0, sealed(1, &[2, 1])), 150);
    m.apply(&keep(&orders[1], 0, sealed(1, &[2, 2])), 150);
    assert!(holds(&m, &orders[0], &[2, 1]));
    assert_eq!(m.orders[&orders[0].order_id].total, orders[0].total);
    // The erasure at 200 ends epoch 0: the order accepted before is erased, the one after is
    // kept again only at the new epoch.
    let erase = Command::ErasePersonal {
        customer: customer.clone(),
        orders: vec![orders[0].order_id.clone()],
    };
    m.apply(&erase, 200);
    assert_eq!(m.ended, [(customer.clone(), 0)].into());
    m.apply(&keep(&orders[0], 200, sealed(1, &[3, 1])), 250);
    assert!(matches!(
        m.orders[&orders[0].order_id].ship_to.personal,
        Personal::Erased { .. }
    ));
    m.apply(&keep(&orders[1], 0, sealed(1, &[3, 2])), 250);
    assert!(holds(&m, &orders[1], &[2, 2]), "kept for an epoch ended");
    m.apply(&keep(&orders[1], 200, sealed(1, &[3, 2])), 250);
    assert!(holds(&m, &orders[1], &[3, 2]));
    // Again at a time behind: the epoch stays, nothing more ends; later, 200 ends.
    m.apply(&erase, 150);
    assert_eq!(m.ended.len(), 1);
    m.apply(&erase, 400);
    assert_eq!(m.ended, [(customer.clone(), 0), (customer, 200)].into());
    let too_many = Command::KeepAddresses {
        kept: vec![
            KeptAddress {
                order_id: orders[1].order_id.clone(),
                epoch: 400,
                personal: sealed(1, &[4]),
            };
            crate::command::ERASE_BATCH_MAX + 1
        ],
    };
    assert_eq!(rejected(&m.apply(&too_many, 0)), RejectKind::Invalid);
}

/// Retention erases the orders named that were accepted before its cutoff, whoever's, and
/// none after; a cutoff past its own time is refused.
#[test]
fn retention_erases_what_was_accepted_before_its_cutoff_only() {
    use crate::personal::Personal;
    let mut m = machine();
    let e = edge("sg-1");
    m.apply(&exact_grant(&e, "A", 4), 0);
    let mut old = edge_order(&m.state, "e-1", &e, request(&[("A", 1)]));
    old.accepted_at_ms = 100;
    let mut young = edge_order(&m.state, "e-2", &e, request(&[("A", 1)]));
    young.accepted_at_ms = 900;
    m.apply(
        &Command::CommitOrders {
            edge: e,
            orders: vec![old.clone(), young.clone()],
        },
        0,
    );
    let retain = |before_ms| Command::EraseOrders {
        orders: vec![old.order_id.clone(), young.order_id.clone()],
        before_ms,
    };
    assert_eq!(
        rejected(&m.apply(&retain(2_000), 1_000)),
        RejectKind::Invalid
    );
    assert!(matches!(
        m.apply(&retain(500), 1_000),
        Outcome::Applied { .. }
    ));
    assert!(matches!(
        m.orders[&old.order_id].ship_to.personal,
        Personal::Erased { at_ms: 1_000 }
    ));
    assert!(matches!(
        m.orders[&young.order_id].ship_to.personal,
        Personal::Plain(_)
    ));
    assert_eq!(m.orders[&old.order_id].lines, old.lines);
}

#[test]
fn central_orders_are_priced_allocated_and_idempotent() {
    let mut m = machine();
    let out = m.apply(&central_order(request(&[("B", 2)]), "k1"), 5_000);
    let Outcome::Order { order, duplicate } = out else {
        panic!("{out:?}")
    };
    assert!(!duplicate);
    assert_eq!(order.total.amount_minor, 2_000);
    assert_eq!(order.status, OrderStatus::Committed);
    assert_eq!(order.accepted_at_ms, 5_000);
    assert!(order.price_version > 0);
    assert_eq!(inv(&m, "B").available(), 1);
    // Same key, same request: the same order, nothing taken.
    let out = m.apply(&central_order(request(&[("B", 2)]), "k1"), 0);
    assert!(matches!(
        out,
        Outcome::Order {
            duplicate: true,
            ..
        }
    ));
    assert_eq!(inv(&m, "B").available(), 1);
    // Same key, another request.
    let out = m.apply(&central_order(request(&[("B", 1)]), "k1"), 0);
    assert_eq!(rejected(&out), RejectKind::IdempotencyKeyReused);
    // Out of stock: refused whole, nothing taken from the other line either.
    let out = m.apply(&central_order(request(&[("A", 1), ("B", 2)]), "k3"), 0);
    assert_eq!(rejected(&out), RejectKind::OutOfStock);
    assert_eq!(inv(&m, "A").available(), 10);
    let mut far = request(&[("A", 1)]);
    far.ship_to.country = crate::Country::new("US").unwrap();
    assert_eq!(
        rejected(&m.apply(&central_order(far, "k4"), 0)),
        RejectKind::NotSoldInMarket
    );
}

#[test]
fn a_malformed_edge_order_is_rejected_once_and_takes_nothing() {
    let mut m = machine();
    let e = edge("sg-1");
    m.apply(&exact_grant(&e, "A", 4), 0);
    let mut bad = edge_order(&m.state, "e-bad", &e, request(&[("A", 2)]));
    // A breakdown no pricing engine produced, and a reason the edge has no say in.
    let step = bad.lines[0].breakdown[0].clone();
    bad.lines[0].breakdown = vec![step; 5_000];
    bad.reject_reason = Some("x".repeat(89_000));
    let good = edge_order(&m.state, "e-good", &e, request(&[("A", 1)]));
    let batch = Command::CommitOrders {
        edge: e.clone(),
        orders: vec![bad.clone(), good.clone(), bad.clone(), good],
    };
    let summary: Vec<(OrderStatus, bool)> = results(m.apply(&batch, 0))
        .iter()
        .map(|r| (r.status, r.duplicate))
        .collect();
    assert_eq!(
        summary,
        [
            (OrderStatus::Rejected, false),
            (OrderStatus::Committed, false),
            (OrderStatus::Rejected, true),
            (OrderStatus::Committed, true),
        ]
    );
    // Only the good order's unit left the grant.
    let a = inv(&m, "A");
    assert_eq!((a.committed, a.granted[&e]), (1, 3));
    // The whole batch again changes nothing.
    assert!(results(m.apply(&batch, 0)).iter().all(|r| r.duplicate));
    assert_eq!(inv(&m, "A"), a);
    let stored = &m.orders[&bad.order_id];
    assert_eq!(stored.status, OrderStatus::Rejected);
    assert!(stored.lines.is_empty());
    assert!(stored.reject_reason.as_ref().unwrap().len() <= 512);
}

#[test]
fn one_key_commits_once_across_edges_and_the_core() {
    let mut m = machine();
    let (sg, my) = (edge("sg-1"), edge("my-1"));
    for e in [&sg, &my] {
        m.apply(&exact_grant(e, "A", 3), 0);
    }
    // The shopper's order, accepted at one edge under the id its key names.
    let first = edge_order(&m.state, "k-42", &sg, request(&[("A", 1)]));
    let id = first.order_id.clone();
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: sg.clone(),
            orders: vec![first],
        },
        0,
    ));
    assert!(!r[0].duplicate);
    // The same key retried at another edge names the same order: a duplicate, answered with
    // the order that stands, which took nothing from the second edge's grant.
    let retry = edge_order(&m.state, "k-42", &my, request(&[("A", 1)]));
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: my.clone(),
            orders: vec![retry.clone()],
        },
        0,
    ));
    assert!(r[0].duplicate);
    assert_eq!(r[0].order_id, id);
    let stands = r[0].original.as_ref().expect("the order that stands");
    assert_eq!(stands.origin.edge.as_ref(), Some(&sg));
    assert!(!r[0].key_reused);
    assert_eq!(inv(&m, "A").granted[&my], 3);
    // The first edge sending its own order again is told nothing more.
    let mut own = m.orders[&id].clone();
    own.status = OrderStatus::Accepted;
    own.commit_version = None;
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: sg.clone(),
            orders: vec![own],
        },
        0,
    ));
    assert!(r[0].duplicate && r[0].original.is_none());
    // Another request under the key, at the second edge: the order that stands, and the
    // reuse said.
    let reused = edge_order(&m.state, "k-42", &my, request(&[("A", 2)]));
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: my.clone(),
            orders: vec![reused],
        },
        0,
    ));
    assert!(r[0].original.is_some() && r[0].key_reused);
    // An edge that names a keyed order otherwise is refused: one key, one id.
    let mut stray = retry.clone();
    stray.order_id = OrderId::new("my-1-0001").unwrap();
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: my.clone(),
            orders: vec![stray],
        },
        0,
    ));
    assert_eq!(r[0].status, OrderStatus::Rejected);
    // An edge speaks for its own orders only.
    let mut theirs = edge_order(&m.state, "k-43", &sg, request(&[("A", 1)]));
    theirs.origin.edge = Some(sg.clone());
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: my,
            orders: vec![theirs],
        },
        0,
    ));
    assert_eq!(r[0].status, OrderStatus::Rejected);
    // And at the core, centrally: under another id it is refused, under its own a duplicate.
    let mut wrong_id = central_order(request(&[("A", 1)]), "k-42");
    if let Command::CentralOrder { order_id, .. } = &mut wrong_id {
        *order_id = OrderId::new("c-other").unwrap();
    }
    assert_eq!(rejected(&m.apply(&wrong_id, 0)), RejectKind::Invalid);
    let out = m.apply(&central_order(request(&[("A", 1)]), "k-42"), 0);
    assert!(matches!(
        out,
        Outcome::Order {
            duplicate: true,
            ..
        }
    ));
    assert_eq!(inv(&m, "A").committed, 1);
    assert_eq!(
        id,
        crate::testing::order_ids().order_id(&crate::CustomerId::new("cust-1").unwrap(), "k-42")
    );
}

/// The same order under its v1 id (as an edge not yet upgraded takes it).
fn as_v1(mut o: crate::order::Order) -> crate::order::Order {
    o.order_id = v1_id(&o.customer_id, o.idempotency_key.as_deref().unwrap());
    o
}

/// A key first used before v2 ids and retried after names two ids; the retry is answered with
/// the order the first one stands for, whether it comes from an edge or to the core, and its
/// units go back (I3 across the switch).
#[test]
fn a_key_first_used_under_a_v1_id_is_one_order_when_retried_under_v2() {
    let mut m = machine();
    let (old_edge, new_edge) = (edge(EDGES[0]), edge(EDGES[1]));
    for e in [&old_edge, &new_edge] {
        m.apply(&exact_grant(e, "A", 3), 0);
    }
    let first = as_v1(edge_order(&m.state, "k-1", &old_edge, request(&[("A", 1)])));
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: old_edge.clone(),
            orders: vec![first.clone()],
        },
        0,
    ));
    assert_eq!(
        (r[0].status, r[0].duplicate),
        (OrderStatus::Committed, false)
    );
    // The retry at an upgraded edge: answered by the order that stands, under the id it sent.
    let retry = edge_order(&m.state, "k-1", &new_edge, request(&[("A", 1)]));
    assert_ne!(retry.order_id, first.order_id);
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: new_edge.clone(),
            orders: vec![retry.clone()],
        },
        0,
    ));
    assert!(r[0].duplicate);
    assert_eq!(r[0].order_id, retry.order_id);
    assert_eq!(r[0].original.as_ref().unwrap().order_id, first.order_id);
    assert!(!r[0].key_reused);
    // The same key for something else is the key reused.
    let other = edge_order(&m.state, "k-1", &new_edge, request(&[("A", 2)]));
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: new_edge,
            orders: vec![other],
        },
        0,
    ));
    assert!(r[0].duplicate && r[0].key_reused);
    // And at the core, centrally.
    let out = m.apply(&central_order(request(&[("A", 1)]), "k-1"), 0);
    assert!(
        matches!(&out, Outcome::Order { order, duplicate: true } if order.order_id == first.order_id),
        "{out:?}"
    );
    assert_eq!(inv(&m, "A").committed, 1, "one order, one unit");
}

/// The other way round, during a rolling upgrade: a key first used under a v2 id and retried
/// under its v1 id (by an edge or a leader of the build before) is that order too.
#[test]
fn a_key_first_used_under_a_v2_id_is_one_order_when_retried_under_v1() {
    let mut m = machine();
    let (new_edge, old_edge) = (edge(EDGES[0]), edge(EDGES[1]));
    for e in [&old_edge, &new_edge] {
        m.apply(&exact_grant(e, "A", 3), 0);
    }
    let first = edge_order(&m.state, "k-1", &new_edge, request(&[("A", 1)]));
    m.apply(
        &Command::CommitOrders {
            edge: new_edge,
            orders: vec![first.clone()],
        },
        0,
    );
    let retry = as_v1(edge_order(&m.state, "k-1", &old_edge, request(&[("A", 1)])));
    let r = results(m.apply(
        &Command::CommitOrders {
            edge: old_edge,
            orders: vec![retry.clone()],
        },
        0,
    ));
    assert!(r[0].duplicate, "{r:?}");
    assert_eq!(r[0].order_id, retry.order_id);
    assert_eq!(r[0].original.as_ref().unwrap().order_id, first.order_id);
    // A central order of the build before, under the v1 id.
    let mut central = central_order(request(&[("A", 1)]), "k-1");
    if let Command::CentralOrder { order_id, .. } = &mut central {
        *order_id = v1_id(&first.customer_id, "k-1");
    }
    let out = m.apply(&central, 0);
    assert!(
        matches!(&out, Outcome::Order { order, duplicate: true } if order.order_id == first.order_id),
        "{out:?}"
    );
    assert_eq!(inv(&m, "A").committed, 1, "one order, one unit");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any history keeps I2 for every SKU after every command, decides each order id once, and
    /// counts as committed exactly the units of the orders stored as committed.
    #[test]
    fn any_history_keeps_i2_and_decides_each_order_once(
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut m = MemoryMachine::new();
        for c in catalog() {
            m.apply(&c, 0);
        }
        let mut decided: HashSet<OrderId> = HashSet::new();
        for op in &ops {
            let command = op.command(&m.state);
            let outcome = m.apply(&command, 0);
            for (s, inv) in m.state.inventories() {
                prop_assert!(inv.holds_i2(), "I2 broken for {}: {:?}", s, inv);
            }
            match outcome {
                Outcome::Orders { results, .. } => {
                    for r in results.iter().filter(|r| !r.duplicate) {
                        prop_assert!(decided.insert(r.order_id.clone()), "{} decided twice", r.order_id);
                    }
                }
                Outcome::Order { order, duplicate: false } => {
                    prop_assert!(decided.insert(order.order_id.clone()), "{} decided twice", order.order_id);
                }
                _ => {}
            }
        }
        let mut committed: BTreeMap<String, u64> = BTreeMap::new();
        for o in m.orders.values().filter(|o| o.status == OrderStatus::Committed) {
            for (s, q) in o.units() {
                *committed.entry(s.to_string()).or_default() += u64::from(q);
            }
        }
        for s in SKUS {
            let inv = m.state.inventory(&sku(s)).cloned().unwrap_or_default();
            prop_assert_eq!(committed.get(s).copied().unwrap_or(0), inv.committed, "sku {}", s);
        }
        // Grants are only ever held by the edges that asked for them.
        for (_, inv) in m.state.inventories() {
            for holder in inv.granted.keys() {
                prop_assert!(EDGES.contains(&holder.as_str()), "{} holds a grant", holder);
            }
        }
    }
}
