//! Version 1 of the values whose layout has changed since, frozen as they were so that what
//! stores hold in this layout stays readable, and migrated forward (`Versioned::migrate`).
//! Nothing here ever changes: a new layout gets a module of its own.
//!
//! - Outcome v1 → v2: an order result says which order stands when its id was first decided
//!   for an order taken elsewhere (`original`), and whether this edge's copy asked for
//!   something else under the key (`key_reused`). Dedup records carry outcomes, so they move
//!   with them.
//! - Proposal v1 → v2: grants and returns carry an edge's number (`request`), and a keyed
//!   write the time its key says it was made (`key_ms`). Proposals of version 1 are grants and
//!   returns unnumbered, applied once by their dedup records as they were.
//! - Edge write v1 → v2: an edge numbers its grants and returns instead of keying them; the
//!   number was the tail of the key (`grant-7`).
//! - Inventory v1 → v2: an inventory keeps each edge's last numbered requests (none before).
//! - Order v1 → v2: where an order ships to keeps the country apart from the personal fields,
//!   which are sealed for their home region (`personal`); an order of version 1 holds them in
//!   the clear, and reads as `Personal::Plain`. Read replies carry orders, so they move with
//!   them (and every value that carries an order: see `v2` and `v4`).
//! - Edge read v1 → v2: an edge says its region, so that a core opens addresses only for its
//!   own region's edges.

use std::collections::BTreeMap;

use codec::{FirstVersion, Format};

use crate::catalog::Product;
use crate::command::{self, PriceChange, StockChange};
use crate::escrow::{self, Demand, GrantPolicy};
use crate::id::{CustomerGroup, CustomerId};
use crate::id::{EdgeId, OrderId, PromotionId, SkuId};
use crate::market::Country;
use crate::market::Market;
use crate::money::{Currency, Money};
use crate::order::{LineRequest, OrderLine, OrderStatus, Origin};
use crate::personal::{Address, Personal};
use crate::pricing::{OrderDiscount, PriceList, Promotion};
use crate::refusal::Rejection;

/// Where an order ships to, all in the clear.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipTo {
    pub country: Country,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
}

impl std::fmt::Debug for ShipTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShipTo")
            .field("country", &self.country)
            .finish_non_exhaustive()
    }
}

impl From<ShipTo> for crate::personal::ShipTo {
    fn from(s: ShipTo) -> Self {
        crate::personal::ShipTo {
            country: s.country,
            personal: Personal::Plain(Box::new(Address {
                name: None,
                line1: s.line1,
                line2: None,
                city: s.city,
                postal_code: s.postal_code,
                phone: None,
            })),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub customer_id: CustomerId,
    #[serde(default)]
    pub customer_group: Option<CustomerGroup>,
    pub currency: Currency,
    pub lines: Vec<LineRequest>,
    pub ship_to: ShipTo,
}

impl From<OrderRequest> for crate::order::OrderRequest {
    fn from(r: OrderRequest) -> Self {
        crate::order::OrderRequest {
            customer_id: r.customer_id,
            customer_group: r.customer_group,
            currency: r.currency,
            lines: r.lines,
            ship_to: r.ship_to.into(),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub idempotency_key: Option<String>,
    pub customer_id: CustomerId,
    pub customer_group: Option<CustomerGroup>,
    pub currency: Currency,
    pub ship_to: ShipTo,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub discount: Option<OrderDiscount>,
    pub total: Money,
    pub price_version: u64,
    pub origin: Origin,
    pub accepted_at_ms: i64,
    pub status: OrderStatus,
    pub commit_version: Option<u64>,
    pub reject_reason: Option<String>,
}

impl FirstVersion for Order {
    const FORMAT: Format = Format {
        label: "order",
        version: 1,
    };
}

impl From<Order> for crate::order::Order {
    fn from(o: Order) -> Self {
        crate::order::Order {
            order_id: o.order_id,
            idempotency_key: o.idempotency_key,
            customer_id: o.customer_id,
            customer_group: o.customer_group,
            currency: o.currency,
            ship_to: o.ship_to.into(),
            lines: o.lines,
            subtotal: o.subtotal,
            discount: o.discount,
            total: o.total,
            price_version: o.price_version,
            origin: o.origin,
            accepted_at_ms: o.accepted_at_ms,
            status: o.status,
            commit_version: o.commit_version,
            reject_reason: o.reject_reason,
        }
    }
}

/// Orders of version 1, as today's.
pub(crate) fn orders(v: Vec<Order>) -> Vec<crate::order::Order> {
    v.into_iter().map(Into::into).collect()
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum EdgeRead {
    CustomerOrders {
        customer: CustomerId,
        after: Option<command::OrderCursor>,
        limit: u32,
    },
    Order {
        customer: CustomerId,
        id: OrderId,
    },
}

impl FirstVersion for EdgeRead {
    const FORMAT: Format = Format {
        label: "edge read",
        version: 1,
    };
}

/// A read from an edge of a build before edges said their region: answered as to another
/// region's edge, its addresses sealed.
impl From<EdgeRead> for command::EdgeRead {
    fn from(r: EdgeRead) -> Self {
        match r {
            EdgeRead::CustomerOrders {
                customer,
                after,
                limit,
            } => command::EdgeRead::CustomerOrders {
                customer,
                after,
                limit,
                region: String::new(),
            },
            EdgeRead::Order { customer, id } => command::EdgeRead::Order {
                customer,
                id,
                region: String::new(),
            },
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum ReadReply {
    Orders(Vec<Order>),
    Order(Option<Box<Order>>),
}

impl FirstVersion for ReadReply {
    const FORMAT: Format = Format {
        label: "read reply",
        version: 1,
    };
}

impl From<ReadReply> for command::ReadReply {
    fn from(r: ReadReply) -> Self {
        match r {
            ReadReply::Orders(v) => command::ReadReply::Orders(orders(v)),
            ReadReply::Order(o) => command::ReadReply::Order(o.map(|o| Box::new((*o).into()))),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct OrderResult {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub version: u64,
    pub duplicate: bool,
    pub reject_reason: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Applied {
        version: u64,
    },
    Granted {
        version: u64,
        units: u64,
    },
    Returned {
        version: u64,
        units: u64,
    },
    Orders {
        version: u64,
        results: Vec<OrderResult>,
    },
    Order {
        order: Box<Order>,
        duplicate: bool,
    },
    Rejected(Rejection),
}

impl FirstVersion for Outcome {
    const FORMAT: Format = Format {
        label: "outcome",
        version: 1,
    };
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupRecord {
    pub version: u64,
    pub fingerprint: [u8; 16],
    pub outcome: Outcome,
}

impl FirstVersion for DedupRecord {
    const FORMAT: Format = Format {
        label: "dedup record",
        version: 1,
    };
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Command {
    UpsertProduct(Product),
    UpsertMarket(Market),
    UpsertPriceList(PriceList),
    UpsertPromotion(Promotion),
    DeletePromotion(PromotionId),
    PriceBatch(Vec<PriceChange>),
    StockBatch(Vec<StockChange>),
    Grant {
        edge: EdgeId,
        sku: SkuId,
        demand: Demand,
        policy: GrantPolicy,
    },
    ReturnGrant {
        edge: EdgeId,
        sku: SkuId,
        units: u64,
    },
    CommitOrders {
        edge: EdgeId,
        orders: Vec<Order>,
    },
    CentralOrder {
        order_id: OrderId,
        idempotency_key: Option<String>,
        request: OrderRequest,
        region: String,
        edge: Option<EdgeId>,
    },
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    pub command_id: [u8; 16],
    pub fingerprint: [u8; 16],
    pub at_ms: i64,
    pub command: Command,
}

impl FirstVersion for Proposal {
    const FORMAT: Format = Format {
        label: "proposal",
        version: 1,
    };
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum EdgeRequest {
    Commit(Vec<Order>),
    Grant {
        sku: SkuId,
        demand: Demand,
    },
    Return {
        sku: SkuId,
        units: u64,
    },
    CentralOrder {
        idempotency_key: String,
        request: OrderRequest,
    },
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct EdgeWrite {
    pub key: Option<String>,
    pub request: EdgeRequest,
}

impl FirstVersion for EdgeWrite {
    const FORMAT: Format = Format {
        label: "edge write",
        version: 1,
    };
}

#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Inventory {
    pub stocked: u64,
    pub committed: u64,
    pub granted: BTreeMap<EdgeId, u64>,
    pub recall: bool,
}

impl FirstVersion for Inventory {
    const FORMAT: Format = Format {
        label: "inventory",
        version: 1,
    };
}

impl From<Inventory> for escrow::Inventory {
    fn from(i: Inventory) -> Self {
        escrow::Inventory {
            stocked: i.stocked,
            committed: i.committed,
            granted: i.granted,
            recall: i.recall,
            requests: BTreeMap::new(),
        }
    }
}
