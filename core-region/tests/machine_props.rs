//! Property test of the state machine over a real redb file: any sequence of stock changes,
//! grants, returns, edge commits and central orders, applied in batches of any size, with the
//! log replayed and the store reopened at any point, keeps invariant I2 for every SKU, commits
//! every order at most once, and reloads to exactly the state it had in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use commerce::command::{Command, Proposal, StockChange};
use commerce::escrow::{Demand, GrantPolicy, StockOp};
use commerce::order::{
    LineRequest, Order, OrderRequest, OrderStatus, Origin, ShipTo, order_id_for, price_order,
};
use commerce::{Country, Currency, CustomerId, EdgeId, Market, MarketId, Product, SkuId};
use core_region::machine::{LogEntry, StateMachine, orders_after};
use core_region::store::redb::RedbStore;
use proptest::prelude::*;

const SKUS: [&str; 3] = ["A", "B", "C"];
const EDGES: [&str; 2] = ["e0", "e1"];

#[derive(Debug, Clone)]
enum Op {
    Stock {
        sku: usize,
        op: StockOp,
    },
    Grant {
        edge: usize,
        sku: usize,
        demand: u64,
    },
    Return {
        edge: usize,
        sku: usize,
        units: u64,
    },
    /// An edge order under key `key`; the edge may have sold beyond its grant.
    EdgeOrder {
        edge: usize,
        sku: usize,
        qty: u32,
        key: u8,
    },
    Central {
        sku: usize,
        qty: u32,
        key: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let sku = 0..SKUS.len();
    let edge = 0..EDGES.len();
    prop_oneof![
        (sku.clone(), 0u64..30).prop_map(|(sku, n)| Op::Stock {
            sku,
            op: StockOp::Set(n)
        }),
        (sku.clone(), 0u64..30).prop_map(|(sku, n)| Op::Stock {
            sku,
            op: StockOp::Add(n)
        }),
        (sku.clone(), 0u64..30).prop_map(|(sku, n)| Op::Stock {
            sku,
            op: StockOp::Remove(n)
        }),
        (edge.clone(), sku.clone(), 0u64..20).prop_map(|(edge, sku, demand)| Op::Grant {
            edge,
            sku,
            demand
        }),
        (edge.clone(), sku.clone(), 0u64..10).prop_map(|(edge, sku, units)| Op::Return {
            edge,
            sku,
            units
        }),
        (edge, sku.clone(), 1u32..5, 0u8..12).prop_map(|(edge, sku, qty, key)| Op::EdgeOrder {
            edge,
            sku,
            qty,
            key
        }),
        (sku, 1u32..5, 0u8..12).prop_map(|(sku, qty, key)| Op::Central { sku, qty, key }),
    ]
}

fn sku(i: usize) -> SkuId {
    SkuId::new(SKUS[i]).unwrap()
}

fn edge(i: usize) -> EdgeId {
    EdgeId::new(EDGES[i]).unwrap()
}

fn request(i: usize, qty: u32) -> OrderRequest {
    OrderRequest {
        customer_id: CustomerId::new("cust").unwrap(),
        customer_group: None,
        currency: Currency::from_code("USD").unwrap(),
        lines: vec![LineRequest { sku: sku(i), qty }],
        ship_to: ShipTo {
            country: Country::new("SG").unwrap(),
            line1: "1 Raffles Place".into(),
            city: "Singapore".into(),
            postal_code: "048616".into(),
        },
    }
}

fn command(m: &StateMachine, op: &Op) -> Command {
    match op.clone() {
        Op::Stock { sku: s, op } => Command::StockBatch(vec![StockChange { sku: sku(s), op }]),
        Op::Grant {
            edge: e,
            sku: s,
            demand,
        } => Command::Grant {
            edge: edge(e),
            sku: sku(s),
            demand: Demand {
                units: demand,
                window_ms: 30_000,
            },
            policy: GrantPolicy {
                low_stock_units: 2,
                ..GrantPolicy::default()
            },
        },
        Op::Return {
            edge: e,
            sku: s,
            units,
        } => Command::ReturnGrant {
            edge: edge(e),
            sku: sku(s),
            units,
        },
        Op::EdgeOrder {
            edge: e,
            sku: s,
            qty,
            key,
        } => {
            let req = request(s, qty);
            let state = m.state();
            let priced = price_order(&req, |x| state.sku_facts(x), &state.book, 0).unwrap();
            let key = format!("key-{key}");
            let order = Order::accepted(
                order_id_for(&req.customer_id, &key),
                Some(key),
                req,
                priced,
                Origin {
                    region: "r".into(),
                    edge: Some(edge(e)),
                },
                0,
            );
            Command::CommitOrders {
                edge: edge(e),
                orders: vec![order],
            }
        }
        Op::Central { sku: s, qty, key } => {
            let req = request(s, qty);
            let key = format!("key-{key}");
            Command::CentralOrder {
                order_id: order_id_for(&req.customer_id, &key),
                idempotency_key: Some(key),
                request: req,
                region: "r".into(),
                edge: None,
            }
        }
    }
}

fn open(path: &std::path::Path) -> StateMachine {
    StateMachine::open(Arc::new(RedbStore::open(path).unwrap())).unwrap()
}

fn seed(m: &mut StateMachine) {
    let product: Product = serde_json::from_value(serde_json::json!({
        "id": "P", "title": "Thing", "category": "things",
        "skus": SKUS.iter().map(|s| serde_json::json!({"sku": s})).collect::<Vec<_>>()
    }))
    .unwrap();
    let market = Market {
        id: MarketId::new("sea").unwrap(),
        countries: [Country::new("SG").unwrap()].into(),
        currencies: [Currency::from_code("USD").unwrap()].into(),
    };
    let prices = (0..SKUS.len())
        .map(|i| commerce::command::PriceChange {
            sku: sku(i),
            currency: Currency::from_code("USD").unwrap(),
            amount_minor: 100,
            list: None,
            customer_group: None,
            tiers: vec![],
        })
        .collect();
    let cmds = [
        Command::UpsertProduct(product),
        Command::UpsertMarket(market),
        Command::PriceBatch(prices),
    ];
    let entries: Vec<LogEntry> = cmds
        .into_iter()
        .enumerate()
        .map(|(i, command)| LogEntry {
            index: i as u64 + 1,
            proposal: Some(Proposal {
                command_id: [200 + i as u8; 16],
                fingerprint: [0; 16],
                at_ms: 0,
                command,
            }),
        })
        .collect();
    m.apply(&entries).unwrap();
}

fn inventories(m: &StateMachine) -> BTreeMap<String, commerce::escrow::Inventory> {
    m.state()
        .inventories()
        .map(|(s, i)| (s.to_string(), i.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_history_keeps_i2_and_exactly_once(
        ops in proptest::collection::vec(op(), 1..40),
        cuts in proptest::collection::vec(1usize..6, 1..40),
        reopen_at in proptest::collection::vec(any::<bool>(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.redb");
        let mut m = open(&path);
        seed(&mut m);
        let mut log: Vec<LogEntry> = Vec::new();
        let mut i = 0;
        let mut round = 0;
        while i < ops.len() {
            let n = cuts[round % cuts.len()].min(ops.len() - i);
            let first = m.applied() + 1;
            let batch: Vec<LogEntry> = ops[i..i + n]
                .iter()
                .enumerate()
                .map(|(k, op)| {
                    let id = ((i + k) as u128).to_be_bytes();
                    LogEntry {
                        index: first + k as u64,
                        proposal: Some(Proposal { command_id: id, fingerprint: id, at_ms: 0, command: command(&m, op) }),
                    }
                })
                .collect();
            let outcomes = m.apply(&batch).unwrap();
            prop_assert_eq!(outcomes.len(), batch.len());
            log.extend(batch);
            // I2 for every SKU after every batch.
            for (s, inv) in m.state().inventories() {
                prop_assert!(inv.holds_i2(), "I2 broken for {}: {:?}", s, inv);
            }
            // Replaying the whole log so far (a restart that re-reads its log) changes nothing.
            let before = inventories(&m);
            m.apply(&log).unwrap();
            prop_assert_eq!(&inventories(&m), &before);
            if reopen_at[round % reopen_at.len()] {
                drop(m);
                m = open(&path);
                prop_assert_eq!(&inventories(&m), &before, "reloaded state differs");
            }
            i += n;
            round += 1;
        }
        // Every committed order is counted once: the units of committed orders equal what the
        // inventories say was committed, and no order id appears twice.
        let (orders, _) = orders_after(&**m.store(), None, 1_000).unwrap();
        let mut ids = std::collections::HashSet::new();
        let mut committed: BTreeMap<String, u64> = BTreeMap::new();
        for o in &orders {
            prop_assert!(ids.insert(o.order_id.clone()), "order {} twice", o.order_id);
            if o.status == OrderStatus::Committed {
                for (s, q) in o.units() {
                    *committed.entry(s.to_string()).or_default() += u64::from(q);
                }
            }
        }
        for (s, inv) in inventories(&m) {
            prop_assert_eq!(committed.get(&s).copied().unwrap_or(0), inv.committed, "sku {}", s);
        }
    }
}
