//! The commerce state machine over a real redb file: exactly-once application, all-or-nothing
//! commands, escrow at commit, and state that survives a reopen.

use std::sync::Arc;

use commerce::command::{Command, Outcome, PriceChange, Proposal, RejectKind, StockChange};
use commerce::escrow::{Demand, GrantPolicy, StockOp};
use commerce::order::{
    LineRequest, Order, OrderRequest, OrderStatus, Origin, ShipTo, order_id_for, price_order,
};
use commerce::{Country, Currency, CustomerId, EdgeId, Market, MarketId, OrderId, Product, SkuId};
use core_region::machine::{LogEntry, MachineError, StateMachine, orders_after, read_order};
use core_region::store::redb::RedbStore;

struct Harness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    machine: Option<StateMachine>,
    next_id: u8,
}

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn sku(s: &str) -> SkuId {
    SkuId::new(s).unwrap()
}

impl Harness {
    fn new() -> Self {
        Self::with_dedup_retain_versions(core_region::machine::DEDUP_RETAIN_VERSIONS)
    }

    fn with_dedup_retain_versions(retain: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.redb");
        let m = StateMachine::open(Arc::new(RedbStore::open(&path).unwrap()))
            .unwrap()
            .with_dedup_retain_versions(retain);
        let mut h = Harness {
            _dir: dir,
            path,
            machine: Some(m),
            next_id: 0,
        };
        h.seed();
        h
    }

    fn m(&self) -> &StateMachine {
        self.machine.as_ref().unwrap()
    }

    fn m_mut(&mut self) -> &mut StateMachine {
        self.machine.as_mut().unwrap()
    }

    /// Closes the store (releasing its file lock) and opens it again, as a restart does.
    fn reopen(&mut self) {
        drop(self.machine.take());
        let m = StateMachine::open(Arc::new(RedbStore::open(&self.path).unwrap())).unwrap();
        self.machine = Some(m);
    }

    fn proposal(&mut self, command: Command) -> Proposal {
        self.next_id += 1;
        Proposal {
            command_id: [self.next_id; 16],
            fingerprint: [self.next_id; 16],
            at_ms: 1_000,
            command,
        }
    }

    fn apply(&mut self, proposals: Vec<Proposal>) -> Vec<Outcome> {
        let entries = LogEntry::numbered(self.m().applied() + 1, proposals);
        self.m_mut().apply(&entries).unwrap()
    }

    fn run(&mut self, command: Command) -> Outcome {
        let p = self.proposal(command);
        self.apply(vec![p]).pop().unwrap()
    }

    fn seed(&mut self) {
        let product: Product = serde_json::from_value(serde_json::json!({
            "id": "P-1", "title": "Linen shirt", "category": "apparel/shirts",
            "skus": [{"sku": "S-RED", "attributes": {"colour": "red"}}, {"sku": "S-BLUE"}]
        }))
        .unwrap();
        assert!(matches!(
            self.run(Command::UpsertProduct(product)),
            Outcome::Applied { .. }
        ));
        let market = Market {
            id: MarketId::new("sea").unwrap(),
            countries: [Country::new("SG").unwrap()].into(),
            currencies: [usd()].into(),
        };
        assert!(matches!(
            self.run(Command::UpsertMarket(market)),
            Outcome::Applied { .. }
        ));
        let prices = ["S-RED", "S-BLUE"]
            .iter()
            .map(|s| price(s, 1_000))
            .collect();
        assert!(matches!(
            self.run(Command::PriceBatch(prices)),
            Outcome::Applied { .. }
        ));
        let stock = vec![
            StockChange {
                sku: sku("S-RED"),
                op: StockOp::Set(10),
            },
            StockChange {
                sku: sku("S-BLUE"),
                op: StockOp::Set(3),
            },
        ];
        assert!(matches!(
            self.run(Command::StockBatch(stock)),
            Outcome::Applied { .. }
        ));
    }

    /// Grants `edge` exactly `units` of `sku` (if the pool has them): demand over the grant
    /// horizon, no low-stock line, no share cap.
    fn grant(&mut self, edge: &EdgeId, s: &str, units: u64) -> Outcome {
        self.run(Command::Grant {
            edge: edge.clone(),
            sku: sku(s),
            demand: Demand {
                units,
                window_ms: 30_000,
            },
            policy: GrantPolicy {
                low_stock_units: 0,
                max_share_bps: 10_000,
                ..GrantPolicy::default()
            },
        })
    }

    fn inv(&self, s: &str) -> commerce::escrow::Inventory {
        self.m()
            .state()
            .inventory(&sku(s))
            .cloned()
            .unwrap_or_default()
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

fn request(lines: &[(&str, u32)]) -> OrderRequest {
    OrderRequest {
        customer_id: CustomerId::new("cust-1").unwrap(),
        customer_group: None,
        currency: usd(),
        lines: lines
            .iter()
            .map(|(s, q)| LineRequest {
                sku: sku(s),
                qty: *q,
            })
            .collect(),
        ship_to: ShipTo {
            country: Country::new("SG").unwrap(),
            line1: "1 Raffles Place".into(),
            city: "Singapore".into(),
            postal_code: "048616".into(),
        },
    }
}

fn rejected(o: &Outcome) -> RejectKind {
    match o {
        Outcome::Rejected(r) => r.kind,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// An order accepted at `edge` under the Idempotency-Key `key`, so under the id that key names.
fn edge_order(h: &Harness, key: &str, edge: &EdgeId, lines: &[(&str, u32)]) -> Order {
    let req = request(lines);
    let state = h.m().state();
    let priced = price_order(&req, |s| state.sku_facts(s), &state.book, 1_000).unwrap();
    Order::accepted(
        order_id_for(&req.customer_id, key),
        Some(key.to_owned()),
        req,
        priced,
        Origin {
            region: "r1".into(),
            edge: Some(edge.clone()),
        },
        1_000,
    )
}

#[test]
fn a_retried_command_applies_once() {
    let mut h = Harness::new();
    let add = h.proposal(Command::StockBatch(vec![StockChange {
        sku: sku("S-RED"),
        op: StockOp::Add(5),
    }]));
    let first = h.apply(vec![add.clone()]);
    // The same command again, in a later batch and twice within one batch.
    let again = h.apply(vec![add.clone(), add.clone()]);
    assert_eq!(again, vec![first[0].clone(), first[0].clone()]);
    assert_eq!(h.inv("S-RED").on_hand(), 15);
    // Survives a reopen: the dedup record is in the store.
    h.reopen();
    assert_eq!(h.apply(vec![add.clone()]), first);
    assert_eq!(h.inv("S-RED").on_hand(), 15);
    // The same id with a different request is refused, not applied.
    let mut other = add;
    other.fingerprint = [0xEE; 16];
    assert_eq!(
        rejected(&h.apply(vec![other])[0]),
        RejectKind::IdempotencyKeyReused
    );
    assert_eq!(h.inv("S-RED").on_hand(), 15);
}

#[test]
fn replayed_log_entries_are_skipped_and_gaps_refused() {
    let mut h = Harness::new();
    let applied = h.m().applied();
    let p = h.proposal(Command::StockBatch(vec![StockChange {
        sku: sku("S-RED"),
        op: StockOp::Add(1),
    }]));
    let entry = LogEntry {
        index: applied + 1,
        proposal: Some(p),
    };
    h.m_mut().apply(std::slice::from_ref(&entry)).unwrap();
    // A log replayed from the start after a crash: nothing applies twice.
    h.m_mut().apply(&[entry]).unwrap();
    assert_eq!(h.inv("S-RED").on_hand(), 11);
    let p = h.proposal(Command::DeletePromotion(
        commerce::PromotionId::new("x").unwrap(),
    ));
    let gap = LogEntry {
        index: h.m().applied() + 2,
        proposal: Some(p),
    };
    assert!(matches!(
        h.m_mut().apply(&[gap]),
        Err(MachineError::Gap { .. })
    ));
}

#[test]
fn a_price_batch_is_all_or_nothing() {
    let mut h = Harness::new();
    let before = h.m().applied();
    let out = h.run(Command::PriceBatch(vec![
        price("S-RED", 2_000),
        price("NOPE", 2_000),
    ]));
    assert_eq!(rejected(&out), RejectKind::UnknownSku);
    assert_eq!(
        h.m().state().book.prices(&sku("S-RED"))[0].amount_minor,
        1_000
    );
    // A refusal still consumes its index (it is in the log) but writes nothing else.
    assert_eq!(h.m().applied(), before + 1);
    for bad in [
        price("S-RED", 0),
        price("S-RED", -5),
        price("S-RED", i64::MAX),
    ] {
        assert_eq!(
            rejected(&h.run(Command::PriceBatch(vec![bad]))),
            RejectKind::Invalid
        );
    }
    let dup = h.run(Command::PriceBatch(vec![
        price("S-RED", 1),
        price("S-RED", 2),
    ]));
    assert_eq!(rejected(&dup), RejectKind::Invalid);
    h.reopen();
    assert_eq!(
        h.m().state().book.prices(&sku("S-RED"))[0].amount_minor,
        1_000
    );
}

#[test]
fn stock_held_in_grants_cannot_be_removed() {
    let mut h = Harness::new();
    let edge = EdgeId::new("sg-1").unwrap();
    let policy = GrantPolicy {
        low_stock_units: 0,
        ..GrantPolicy::default()
    };
    let out = h.run(Command::Grant {
        edge: edge.clone(),
        sku: sku("S-RED"),
        demand: Demand {
            units: 100,
            window_ms: 1_000,
        },
        policy,
    });
    // A quarter of the pool of 10.
    assert_eq!(
        out,
        Outcome::Granted {
            version: h.m().applied(),
            units: 2
        }
    );
    let out = h.run(Command::StockBatch(vec![StockChange {
        sku: sku("S-RED"),
        op: StockOp::Set(1),
    }]));
    assert_eq!(rejected(&out), RejectKind::HeldInGrants);
    assert_eq!(h.inv("S-RED").on_hand(), 10);
    let out = h.run(Command::ReturnGrant {
        edge: edge.clone(),
        sku: sku("S-RED"),
        units: 5,
    });
    assert!(matches!(out, Outcome::Returned { units: 2, .. }));
    assert!(h.inv("S-RED").granted.is_empty());
}

#[test]
fn edge_orders_commit_once_against_their_grant() {
    let mut h = Harness::new();
    let edge = EdgeId::new("sg-1").unwrap();
    h.grant(&edge, "S-RED", 4);
    assert_eq!(h.inv("S-RED").granted[&edge], 4);
    let o1 = edge_order(&h, "e-1", &edge, &[("S-RED", 3)]);
    let o2 = edge_order(&h, "e-2", &edge, &[("S-RED", 2), ("S-BLUE", 1)]);
    let out = h.run(Command::CommitOrders {
        edge: edge.clone(),
        orders: vec![o1.clone(), o2.clone()],
    });
    let Outcome::Orders { results, .. } = out else {
        panic!("{out:?}")
    };
    assert!(
        results
            .iter()
            .all(|r| r.status == OrderStatus::Committed && !r.duplicate)
    );
    // 3 + 2 from a grant of 4 (one unit from the pool), 1 blue from the pool.
    let red = h.inv("S-RED");
    assert_eq!(
        (red.committed, red.granted_total(), red.available()),
        (5, 0, 5)
    );
    assert_eq!(h.inv("S-BLUE").committed, 1);
    // The forwarder retries the whole batch: nothing changes.
    let out = h.run(Command::CommitOrders {
        edge: edge.clone(),
        orders: vec![o1, o2],
    });
    let Outcome::Orders { results, .. } = out else {
        panic!()
    };
    assert!(results.iter().all(|r| r.duplicate));
    assert_eq!(h.inv("S-RED").committed, 5);
    // An order beyond grant and pool is stored as rejected, never oversold.
    let big = edge_order(&h, "e-3", &edge, &[("S-BLUE", 3)]);
    let Outcome::Orders { results, .. } = h.run(Command::CommitOrders {
        edge: edge.clone(),
        orders: vec![big],
    }) else {
        panic!()
    };
    assert_eq!(results[0].status, OrderStatus::Rejected);
    assert_eq!(h.inv("S-BLUE").committed, 1);
    assert!(h.inv("S-BLUE").holds_i2());
    // Every decided order is readable and listed in commit order.
    h.reopen();
    let store = h.m().store().clone();
    let id = |key: &str| order_id_for(&CustomerId::new("cust-1").unwrap(), key);
    let o = read_order(&*store, &id("e-2")).unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Committed);
    let (page, cursor) = orders_after(&*store, None, 2).unwrap();
    let ids: Vec<&OrderId> = page.iter().map(|o| &o.order_id).collect();
    assert_eq!(ids, [&id("e-1"), &id("e-2")]);
    let (rest, _) = orders_after(&*store, cursor, 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].order_id, id("e-3"));
}

#[test]
fn central_orders_are_priced_allocated_and_idempotent() {
    let mut h = Harness::new();
    let central = |req: OrderRequest, key: &str| Command::CentralOrder {
        order_id: order_id_for(&req.customer_id, key),
        idempotency_key: Some(key.into()),
        request: req,
        region: "r1".into(),
        edge: None,
    };
    let out = h.run(central(request(&[("S-BLUE", 2)]), "k1"));
    let Outcome::Order { order, duplicate } = out else {
        panic!("{out:?}")
    };
    assert!(!duplicate);
    assert_eq!(order.total.amount_minor, 2_000);
    assert_eq!(order.status, OrderStatus::Committed);
    assert!(order.price_version > 0);
    assert_eq!(h.inv("S-BLUE").available(), 1);
    // Same key, same request (even under a fresh command id): the same order, nothing taken.
    let out = h.run(central(request(&[("S-BLUE", 2)]), "k1"));
    assert!(matches!(
        out,
        Outcome::Order {
            duplicate: true,
            ..
        }
    ));
    assert_eq!(h.inv("S-BLUE").available(), 1);
    // Same key, another request.
    let out = h.run(central(request(&[("S-BLUE", 1)]), "k1"));
    assert_eq!(rejected(&out), RejectKind::IdempotencyKeyReused);
    // Out of stock: refused whole, nothing taken from the other line either.
    let out = h.run(central(request(&[("S-RED", 1), ("S-BLUE", 2)]), "k3"));
    assert_eq!(rejected(&out), RejectKind::OutOfStock);
    assert_eq!(h.inv("S-RED").available(), 10);
    let mut far = request(&[("S-RED", 1)]);
    far.ship_to.country = Country::new("US").unwrap();
    assert_eq!(
        rejected(&h.run(central(far, "k4"))),
        RejectKind::NotSoldInMarket
    );
}

#[test]
fn dedup_records_are_pruned_after_the_retention_window() {
    let mut h = Harness::with_dedup_retain_versions(3);
    let add = h.proposal(Command::StockBatch(vec![StockChange {
        sku: sku("S-RED"),
        op: StockOp::Add(1),
    }]));
    h.apply(vec![add.clone()]);
    for _ in 0..3 {
        h.run(Command::StockBatch(vec![StockChange {
            sku: sku("S-BLUE"),
            op: StockOp::Add(1),
        }]));
    }
    // Three versions later the first record is gone: the same id applies again.
    h.apply(vec![add]);
    assert_eq!(h.inv("S-RED").on_hand(), 12);
    let (lo, hi) = commerce::keys::tag_range(commerce::keys::DEDUP);
    assert_eq!(h.m().store().scan(&lo, &hi, 100).unwrap().len(), 3);
}

#[test]
fn state_survives_reopen() {
    let mut h = Harness::new();
    let version = h.m().applied();
    h.reopen();
    assert_eq!(h.m().applied(), version);
    assert_eq!(h.m().state().product_count(), 1);
    assert_eq!(h.m().state().sku_count(), 2);
    assert_eq!(h.inv("S-BLUE").on_hand(), 3);
    let q = h
        .m()
        .state()
        .book
        .quote(
            &sku("S-RED"),
            &commerce::Category::new("apparel/shirts").unwrap(),
            2,
            &commerce::pricing::PriceContext {
                currency: usd(),
                customer_group: None,
                country: None,
                now_ms: 0,
            },
        )
        .unwrap();
    assert_eq!(q.total.amount_minor, 2_000);
}

#[test]
fn a_malformed_edge_order_is_rejected_once_and_takes_nothing() {
    let mut h = Harness::new();
    let edge = EdgeId::new("sg-1").unwrap();
    h.grant(&edge, "S-RED", 4);
    let mut bad = edge_order(&h, "e-bad", &edge, &[("S-RED", 2)]);
    // A breakdown no pricing engine produced, and a reason the edge has no say in.
    let step = bad.lines[0].breakdown[0].clone();
    bad.lines[0].breakdown = vec![step; 5_000];
    bad.reject_reason = Some("x".repeat(89_000));
    let good = edge_order(&h, "e-good", &edge, &[("S-RED", 1)]);
    let batch = vec![bad.clone(), good.clone(), bad.clone(), good.clone()];
    let Outcome::Orders { results, .. } = h.run(Command::CommitOrders {
        edge: edge.clone(),
        orders: batch.clone(),
    }) else {
        panic!()
    };
    let summary: Vec<(OrderStatus, bool)> =
        results.iter().map(|r| (r.status, r.duplicate)).collect();
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
    let inv = h.inv("S-RED");
    assert_eq!((inv.committed, inv.granted[&edge]), (1, 3));
    // A retry of the whole batch changes nothing.
    let Outcome::Orders { results, .. } = h.run(Command::CommitOrders {
        edge: edge.clone(),
        orders: batch,
    }) else {
        panic!()
    };
    assert!(results.iter().all(|r| r.duplicate));
    assert_eq!(h.inv("S-RED"), inv);
    let stored = read_order(&**h.m().store(), &bad.order_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, OrderStatus::Rejected);
    assert!(stored.lines.is_empty());
    assert!(stored.reject_reason.unwrap().len() <= 512);
}

#[test]
fn one_key_commits_once_across_edges_and_the_core() {
    let mut h = Harness::new();
    let (sg, my) = (EdgeId::new("sg-1").unwrap(), EdgeId::new("my-1").unwrap());
    for edge in [&sg, &my] {
        h.grant(edge, "S-RED", 3);
    }
    // The shopper's order, accepted at one edge under the id its key names.
    let first = edge_order(&h, "k-42", &sg, &[("S-RED", 1)]);
    let id = first.order_id.clone();
    let Outcome::Orders { results, .. } = h.run(Command::CommitOrders {
        edge: sg.clone(),
        orders: vec![first],
    }) else {
        panic!()
    };
    assert!(!results[0].duplicate);
    // The same key retried at another edge names the same order: a duplicate.
    let retry = edge_order(&h, "k-42", &my, &[("S-RED", 1)]);
    let Outcome::Orders { results, .. } = h.run(Command::CommitOrders {
        edge: my.clone(),
        orders: vec![retry.clone()],
    }) else {
        panic!()
    };
    assert!(results[0].duplicate);
    assert_eq!(results[0].order_id, id);
    // An edge that names a keyed order otherwise is refused: one key, one id.
    let mut stray = retry;
    stray.order_id = OrderId::new("my-1-0001").unwrap();
    let Outcome::Orders { results, .. } = h.run(Command::CommitOrders {
        edge: my.clone(),
        orders: vec![stray],
    }) else {
        panic!()
    };
    assert_eq!(results[0].status, OrderStatus::Rejected);
    // And at the core, centrally; under another id it is refused.
    let out = h.run(Command::CentralOrder {
        order_id: OrderId::new("c-other").unwrap(),
        idempotency_key: Some("k-42".into()),
        request: request(&[("S-RED", 1)]),
        region: "r1".into(),
        edge: None,
    });
    assert_eq!(rejected(&out), RejectKind::Invalid);
    let out = h.run(Command::CentralOrder {
        order_id: id.clone(),
        idempotency_key: Some("k-42".into()),
        request: request(&[("S-RED", 1)]),
        region: "r1".into(),
        edge: None,
    });
    assert!(matches!(
        out,
        Outcome::Order {
            duplicate: true,
            ..
        }
    ));
    assert_eq!(h.inv("S-RED").committed, 1);
}
