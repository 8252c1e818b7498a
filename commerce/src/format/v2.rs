//! Version 2 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v2 → v3: an admin write says who made it and through which route (`actor`), for
//!   the audit log. Proposals of version 2 had none.
//! - Outcome, dedup record and edge write v2 → v3: the orders they carry are orders of version
//!   2 (`v1` says what changed).
//!
//! `Command` here is the layout of proposals of versions 2 to 4 (4 added `NoteMembership` at
//! its end). Each value here is read from version 1 (`From<v1::…>`) and as today's.

use codec::{Format, Versioned};

use crate::catalog::Product;
use crate::command::{self, PriceChange, StockChange};
use crate::escrow::{Demand, GrantPolicy};
use crate::id::{EdgeId, OrderId, PromotionId, SkuId};
use crate::market::Market;
use crate::order::OrderStatus;
use crate::pricing::{PriceList, Promotion};
use crate::refusal::Rejection;

use super::v1::{self, Order, OrderRequest};

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    pub command_id: [u8; 16],
    pub fingerprint: [u8; 16],
    pub at_ms: i64,
    pub command: Command,
    pub key_ms: Option<u64>,
}

impl Versioned for Proposal {
    const FORMAT: Format = Format {
        label: "proposal",
        version: 2,
    };
    type Previous = v1::Proposal;
    fn migrate(p: v1::Proposal) -> Self {
        p.into()
    }
}

/// Proposals of version 2 read as today's: without an actor.
impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        command::Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command.into(),
            key_ms: p.key_ms,
            actor: None,
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
    pub original: Option<Box<Order>>,
    pub key_reused: bool,
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

impl Versioned for Outcome {
    const FORMAT: Format = Format {
        label: "outcome",
        version: 2,
    };
    type Previous = v1::Outcome;
    fn migrate(previous: v1::Outcome) -> Self {
        previous.into()
    }
}

impl From<Outcome> for command::Outcome {
    fn from(o: Outcome) -> Self {
        use command::Outcome as O;
        match o {
            Outcome::Applied { version } => O::Applied { version },
            Outcome::Granted { version, units } => O::Granted { version, units },
            Outcome::Returned { version, units } => O::Returned { version, units },
            Outcome::Orders { version, results } => O::Orders {
                version,
                results: results
                    .into_iter()
                    .map(|r| command::OrderResult {
                        order_id: r.order_id,
                        status: r.status,
                        version: r.version,
                        duplicate: r.duplicate,
                        reject_reason: r.reject_reason,
                        original: r.original.map(|o| Box::new((*o).into())),
                        key_reused: r.key_reused,
                    })
                    .collect(),
            },
            Outcome::Order { order, duplicate } => O::Order {
                order: Box::new((*order).into()),
                duplicate,
            },
            Outcome::Rejected(r) => O::Rejected(r),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupRecord {
    pub version: u64,
    pub fingerprint: [u8; 16],
    pub outcome: Outcome,
}

impl Versioned for DedupRecord {
    const FORMAT: Format = Format {
        label: "dedup record",
        version: 2,
    };
    type Previous = v1::DedupRecord;
    fn migrate(p: v1::DedupRecord) -> Self {
        p.into()
    }
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum EdgeRequest {
    Commit(Vec<Order>),
    Grant {
        sku: SkuId,
        demand: Demand,
        request: u64,
    },
    Return {
        sku: SkuId,
        units: u64,
        request: u64,
    },
    CentralOrder {
        idempotency_key: String,
        request: OrderRequest,
    },
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct EdgeWrite {
    pub request: EdgeRequest,
}

impl Versioned for EdgeWrite {
    const FORMAT: Format = Format {
        label: "edge write",
        version: 2,
    };
    type Previous = v1::EdgeWrite;
    fn migrate(previous: v1::EdgeWrite) -> Self {
        previous.into()
    }
}

impl From<EdgeWrite> for command::EdgeWrite {
    fn from(w: EdgeWrite) -> Self {
        use command::EdgeRequest as R;
        let request = match w.request {
            EdgeRequest::Commit(orders) => R::Commit(v1::orders(orders)),
            EdgeRequest::Grant {
                sku,
                demand,
                request,
            } => R::Grant {
                sku,
                demand,
                request,
            },
            EdgeRequest::Return {
                sku,
                units,
                request,
            } => R::Return {
                sku,
                units,
                request,
            },
            EdgeRequest::CentralOrder {
                idempotency_key,
                request,
            } => R::CentralOrder {
                idempotency_key,
                request: request.into(),
            },
        };
        command::EdgeWrite { request }
    }
}

/// `Command` as versions 2 to 4 have it (version 2 and 3 without `NoteMembership`).
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
        request: Option<u64>,
    },
    ReturnGrant {
        edge: EdgeId,
        sku: SkuId,
        units: u64,
        request: Option<u64>,
    },
    CommitOrders {
        edge: EdgeId,
        orders: Vec<v1::Order>,
    },
    CentralOrder {
        order_id: OrderId,
        idempotency_key: Option<String>,
        request: v1::OrderRequest,
        region: String,
        edge: Option<EdgeId>,
    },
    NoteMembership {
        change: String,
    },
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
                request,
            } => C::Grant {
                edge,
                sku,
                demand,
                policy,
                request,
            },
            Command::ReturnGrant {
                edge,
                sku,
                units,
                request,
            } => C::ReturnGrant {
                edge,
                sku,
                units,
                request,
            },
            Command::CommitOrders { edge, orders } => C::CommitOrders {
                edge,
                orders: v1::orders(orders),
            },
            Command::CentralOrder {
                order_id,
                idempotency_key,
                request,
                region,
                edge,
            } => C::CentralOrder {
                order_id,
                idempotency_key,
                request: request.into(),
                region,
                edge,
            },
            Command::NoteMembership { change } => C::NoteMembership { change },
        }
    }
}

impl From<v1::OrderResult> for OrderResult {
    fn from(r: v1::OrderResult) -> Self {
        OrderResult {
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

impl From<v1::Outcome> for Outcome {
    fn from(o: v1::Outcome) -> Self {
        use v1::Outcome as V1;
        match o {
            V1::Applied { version } => Outcome::Applied { version },
            V1::Granted { version, units } => Outcome::Granted { version, units },
            V1::Returned { version, units } => Outcome::Returned { version, units },
            V1::Orders { version, results } => Outcome::Orders {
                version,
                results: results.into_iter().map(Into::into).collect(),
            },
            V1::Order { order, duplicate } => Outcome::Order { order, duplicate },
            V1::Rejected(r) => Outcome::Rejected(r),
        }
    }
}

/// Outcomes of version 1 read as today's.
impl From<v1::Outcome> for command::Outcome {
    fn from(o: v1::Outcome) -> Self {
        Outcome::from(o).into()
    }
}

impl From<v1::DedupRecord> for DedupRecord {
    fn from(p: v1::DedupRecord) -> Self {
        DedupRecord {
            version: p.version,
            fingerprint: p.fingerprint,
            outcome: p.outcome.into(),
        }
    }
}

impl From<v1::Command> for Command {
    fn from(c: v1::Command) -> Self {
        use v1::Command as V1;
        match c {
            V1::UpsertProduct(p) => Command::UpsertProduct(p),
            V1::UpsertMarket(m) => Command::UpsertMarket(m),
            V1::UpsertPriceList(l) => Command::UpsertPriceList(l),
            V1::UpsertPromotion(p) => Command::UpsertPromotion(p),
            V1::DeletePromotion(id) => Command::DeletePromotion(id),
            V1::PriceBatch(v) => Command::PriceBatch(v),
            V1::StockBatch(v) => Command::StockBatch(v),
            V1::Grant {
                edge,
                sku,
                demand,
                policy,
            } => Command::Grant {
                edge,
                sku,
                demand,
                policy,
                request: None,
            },
            V1::ReturnGrant { edge, sku, units } => Command::ReturnGrant {
                edge,
                sku,
                units,
                request: None,
            },
            V1::CommitOrders { edge, orders } => Command::CommitOrders { edge, orders },
            V1::CentralOrder {
                order_id,
                idempotency_key,
                request,
                region,
                edge,
            } => Command::CentralOrder {
                order_id,
                idempotency_key,
                request,
                region,
                edge,
            },
        }
    }
}

impl From<v1::Proposal> for Proposal {
    fn from(p: v1::Proposal) -> Self {
        Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command.into(),
            key_ms: None,
        }
    }
}

/// Proposals of version 1 read as today's.
impl From<v1::Proposal> for command::Proposal {
    fn from(p: v1::Proposal) -> Self {
        Proposal::from(p).into()
    }
}

impl From<v1::EdgeWrite> for EdgeWrite {
    fn from(w: v1::EdgeWrite) -> Self {
        use EdgeRequest as R;
        use v1::EdgeRequest as V1;
        // Version 1 keyed grants and returns `grant-<n>`, `return-<n>`: the number is the tail.
        let number = || {
            w.key
                .as_deref()
                .and_then(|k| k.rsplit('-').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let request = match w.request.clone() {
            V1::Commit(orders) => R::Commit(orders),
            V1::Grant { sku, demand } => R::Grant {
                sku,
                demand,
                request: number(),
            },
            V1::Return { sku, units } => R::Return {
                sku,
                units,
                request: number(),
            },
            V1::CentralOrder {
                idempotency_key,
                request,
            } => R::CentralOrder {
                idempotency_key,
                request,
            },
        };
        EdgeWrite { request }
    }
}

/// Edge writes of version 1 read as today's.
impl From<v1::EdgeWrite> for command::EdgeWrite {
    fn from(w: v1::EdgeWrite) -> Self {
        EdgeWrite::from(w).into()
    }
}
