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

use std::collections::BTreeMap;

use codec::{FirstVersion, Format};

use crate::catalog::Product;
use crate::command::{self, PriceChange, StockChange};
use crate::escrow::{self, Demand, GrantPolicy};
use crate::id::{EdgeId, OrderId, PromotionId, SkuId};
use crate::market::Market;
use crate::order::{Order, OrderRequest, OrderStatus};
use crate::pricing::{PriceList, Promotion};
use crate::refusal::Rejection;

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

impl From<OrderResult> for command::OrderResult {
    fn from(r: OrderResult) -> Self {
        command::OrderResult {
            order_id: r.order_id,
            status: r.status,
            version: r.version,
            duplicate: r.duplicate,
            reject_reason: r.reject_reason,
            original: None,
            key_reused: false,
        }
    }
}

impl From<Outcome> for command::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Applied { version } => command::Outcome::Applied { version },
            Outcome::Granted { version, units } => command::Outcome::Granted { version, units },
            Outcome::Returned { version, units } => command::Outcome::Returned { version, units },
            Outcome::Orders { version, results } => command::Outcome::Orders {
                version,
                results: results.into_iter().map(Into::into).collect(),
            },
            Outcome::Order { order, duplicate } => command::Outcome::Order { order, duplicate },
            Outcome::Rejected(r) => command::Outcome::Rejected(r),
        }
    }
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

impl From<Command> for command::Command {
    fn from(c: Command) -> Self {
        use command::Command as C;
        match c {
            Command::UpsertProduct(p) => C::UpsertProduct(p),
            Command::UpsertMarket(m) => C::UpsertMarket(m),
            Command::UpsertPriceList(l) => C::UpsertPriceList(l),
            Command::UpsertPromotion(p) => C::UpsertPromotion(p),
            Command::DeletePromotion(id) => C::DeletePromotion(id),
            Command::PriceBatch(v) => C::PriceBatch(v),
            Command::StockBatch(v) => C::StockBatch(v),
            Command::Grant {
                edge,
                sku,
                demand,
                policy,
            } => C::Grant {
                edge,
                sku,
                demand,
                policy,
                request: None,
            },
            Command::ReturnGrant { edge, sku, units } => C::ReturnGrant {
                edge,
                sku,
                units,
                request: None,
            },
            Command::CommitOrders { edge, orders } => C::CommitOrders { edge, orders },
            Command::CentralOrder {
                order_id,
                idempotency_key,
                request,
                region,
                edge,
            } => C::CentralOrder {
                order_id,
                idempotency_key,
                request,
                region,
                edge,
            },
        }
    }
}

impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        command::Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command.into(),
            key_ms: None,
            actor: None,
        }
    }
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

impl From<EdgeWrite> for command::EdgeWrite {
    fn from(w: EdgeWrite) -> Self {
        // Version 1 keyed grants and returns `grant-<n>`, `return-<n>`: the number is the tail.
        let number = || {
            w.key
                .as_deref()
                .and_then(|k| k.rsplit('-').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let request = match w.request.clone() {
            EdgeRequest::Commit(orders) => command::EdgeRequest::Commit(orders),
            EdgeRequest::Grant { sku, demand } => command::EdgeRequest::Grant {
                sku,
                demand,
                request: number(),
            },
            EdgeRequest::Return { sku, units } => command::EdgeRequest::Return {
                sku,
                units,
                request: number(),
            },
            EdgeRequest::CentralOrder {
                idempotency_key,
                request,
            } => command::EdgeRequest::CentralOrder {
                idempotency_key,
                request,
            },
        };
        command::EdgeWrite { request }
    }
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
