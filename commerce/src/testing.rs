//! What tests of the state machine share, here and in the core's crate (feature `testing`): a
//! small catalog, orders for it, and random histories of commands (`op`, for proptest) with
//! the commands they stand for.

use proptest::prelude::*;

use crate::command::{Command, PriceChange, StockChange};
use crate::escrow::{Demand, GrantPolicy, StockOp};
use crate::id::{CustomerId, EdgeId, OrderId, SkuId};
use crate::market::{Country, Market};
use crate::money::Currency;
use crate::order::{LineRequest, Order, OrderRequest, Origin, ShipTo, price_order};
use crate::order_id::OrderIdKey;
use crate::state::State;
use crate::{Product, id::MarketId};

/// The SKUs of the catalog `catalog` makes.
pub const SKUS: [&str; 3] = ["A", "B", "C"];
/// The edges of the histories.
pub const EDGES: [&str; 2] = ["e0", "e1"];

pub fn usd() -> Currency {
    Currency::from_code("USD").expect("a known currency")
}

pub fn sku(s: &str) -> SkuId {
    SkuId::new(s).expect("a valid sku")
}

pub fn edge(s: &str) -> EdgeId {
    EdgeId::new(s).expect("a valid edge id")
}

/// One product with `SKUS`, a market shipping to Singapore in USD, and a price of 1,000 for
/// each SKU: the commands that make it.
pub fn catalog() -> Vec<Command> {
    let product = Product {
        id: crate::ProductId::new("P").expect("a valid id"),
        title: "Thing".into(),
        category: crate::Category::new("things").expect("a valid category"),
        skus: SKUS
            .iter()
            .map(|s| crate::catalog::Sku {
                sku: sku(s),
                attributes: Default::default(),
                min_order_qty: 1,
                max_order_qty: 1_000,
            })
            .collect(),
    };
    let market = Market {
        id: MarketId::new("sea").expect("a valid id"),
        countries: [Country::new("SG").expect("a country")].into(),
        currencies: [usd()].into(),
    };
    let prices = SKUS
        .iter()
        .map(|s| PriceChange {
            sku: sku(s),
            currency: usd(),
            amount_minor: 1_000,
            list: None,
            customer_group: None,
            tiers: vec![],
        })
        .collect();
    vec![
        Command::UpsertProduct(product),
        Command::UpsertMarket(market),
        Command::PriceBatch(prices),
    ]
}

/// `SKU` stocked at `units`.
pub fn stock(s: &str, op: StockOp) -> Command {
    Command::StockBatch(vec![StockChange { sku: sku(s), op }])
}

/// An order request of customer `cust-1` shipping to Singapore.
pub fn request(lines: &[(&str, u32)]) -> OrderRequest {
    OrderRequest {
        customer_id: CustomerId::new("cust-1").expect("a valid id"),
        customer_group: None,
        currency: usd(),
        lines: lines
            .iter()
            .map(|(s, q)| LineRequest {
                sku: sku(s),
                qty: *q,
            })
            .collect(),
        ship_to: ShipTo::plain(
            Country::new("SG").expect("a country"),
            crate::personal::Address {
                name: Some("Tan Ah Kow".into()),
                line1: "1 Raffles Place".into(),
                line2: None,
                city: "Singapore".into(),
                postal_code: "048616".into(),
                phone: Some("+65 6123 4567".into()),
            },
        ),
    }
}

/// The order-id secret of the tests' deployment.
pub fn order_ids() -> OrderIdKey {
    OrderIdKey::new(&[7; OrderIdKey::LEN])
}

/// The order `edge` accepts for `req` under Idempotency-Key `key`, priced from `state`.
pub fn edge_order(state: &State, key: &str, edge: &EdgeId, req: OrderRequest) -> Order {
    let priced = price_order(&req, |s| state.sku_facts(s), &state.book, 1_000)
        .expect("a request the catalog prices");
    Order::accepted(
        order_ids().order_id(&req.customer_id, key),
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

/// A central order for `req` under Idempotency-Key `key`.
pub fn central_order(req: OrderRequest, key: &str) -> Command {
    Command::CentralOrder {
        order_id: order_ids().order_id(&req.customer_id, key),
        idempotency_key: Some(key.into()),
        request: req,
        region: "r1".into(),
        edge: None,
    }
}

/// A grant of `units` of `s` for `edge` when the pool has them: demand over the whole horizon,
/// no low-stock line, no share cap.
pub fn exact_grant(edge: &EdgeId, s: &str, units: u64) -> Command {
    Command::Grant {
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
        request: None,
    }
}

/// One step of a random history over `catalog`.
#[derive(Debug, Clone)]
pub enum Op {
    Stock {
        sku: usize,
        op: StockOp,
    },
    /// A grant request, numbered or not; numbers are drawn from a few, so that histories
    /// send requests again and late.
    Grant {
        edge: usize,
        sku: usize,
        demand: u64,
        request: Option<u64>,
    },
    Return {
        edge: usize,
        sku: usize,
        units: u64,
        request: Option<u64>,
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
    /// The customer's personal data erased, naming the orders of some keys (placed or not).
    Erase {
        keys: Vec<u8>,
    },
    /// Retention, naming the orders of some keys (placed or not), accepted before `before_ms`.
    Retain {
        keys: Vec<u8>,
        before_ms: i64,
    },
}

/// The ids of the orders the test customer placed under `keys` (`key-<n>`).
fn ids_of(keys: &[u8]) -> Vec<OrderId> {
    let customer = request(&[]).customer_id;
    let ids = order_ids();
    keys.iter()
        .map(|k| ids.order_id(&customer, &format!("key-{k}")))
        .collect()
}

/// Any step; keys are drawn from a few, so that histories retry them.
pub fn op() -> impl Strategy<Value = Op> {
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
        (
            edge.clone(),
            sku.clone(),
            0u64..20,
            proptest::option::of(1u64..6)
        )
            .prop_map(|(edge, sku, demand, request)| Op::Grant {
                edge,
                sku,
                demand,
                request
            }),
        (
            edge.clone(),
            sku.clone(),
            0u64..10,
            proptest::option::of(1u64..6)
        )
            .prop_map(|(edge, sku, units, request)| Op::Return {
                edge,
                sku,
                units,
                request
            }),
        (edge, sku.clone(), 1u32..5, 0u8..12).prop_map(|(edge, sku, qty, key)| Op::EdgeOrder {
            edge,
            sku,
            qty,
            key
        }),
        (sku, 1u32..5, 0u8..12).prop_map(|(sku, qty, key)| Op::Central { sku, qty, key }),
        proptest::collection::vec(0u8..12, 0..4).prop_map(|keys| Op::Erase { keys }),
        (proptest::collection::vec(0u8..12, 0..4), -5i64..5_000)
            .prop_map(|(keys, before_ms)| Op::Retain { keys, before_ms }),
    ]
}

impl Op {
    /// The command this step stands for, priced from `state` where an edge prices it.
    pub fn command(&self, state: &State) -> Command {
        match self.clone() {
            Op::Stock { sku: s, op } => stock(SKUS[s], op),
            Op::Grant {
                edge: e,
                sku: s,
                demand,
                request,
            } => Command::Grant {
                edge: edge(EDGES[e]),
                sku: sku(SKUS[s]),
                demand: Demand {
                    units: demand,
                    window_ms: 30_000,
                },
                policy: GrantPolicy {
                    low_stock_units: 2,
                    ..GrantPolicy::default()
                },
                request,
            },
            Op::Return {
                edge: e,
                sku: s,
                units,
                request,
            } => Command::ReturnGrant {
                edge: edge(EDGES[e]),
                sku: sku(SKUS[s]),
                units,
                request,
            },
            Op::EdgeOrder {
                edge: e,
                sku: s,
                qty,
                key,
            } => {
                let at = edge(EDGES[e]);
                let order = edge_order(
                    state,
                    &format!("key-{key}"),
                    &at,
                    request(&[(SKUS[s], qty)]),
                );
                Command::CommitOrders {
                    edge: at,
                    orders: vec![order],
                }
            }
            Op::Central { sku: s, qty, key } => {
                central_order(request(&[(SKUS[s], qty)]), &format!("key-{key}"))
            }
            Op::Erase { keys } => Command::ErasePersonal {
                customer: request(&[]).customer_id,
                orders: ids_of(&keys),
            },
            Op::Retain { keys, before_ms } => Command::EraseOrders {
                orders: ids_of(&keys),
                before_ms,
            },
        }
    }
}
