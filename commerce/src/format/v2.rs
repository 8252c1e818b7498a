//! Version 2 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v2 → v3: an admin write says who made it and through which route (`actor`), for
//!   the audit log. Proposals of version 2 had none.
//! - Outcome, dedup record and edge write v2 → v3: the orders they carry are orders of version
//!   2 (`v1` says what changed).

use codec::{Format, Versioned};

use crate::command::{self, Actor};
use crate::escrow::Demand;
use crate::id::{OrderId, SkuId};
use crate::order::OrderStatus;
use crate::refusal::Rejection;

use super::v1::{self, Order, OrderRequest};
use super::v4::Command;

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

impl Proposal {
    /// As version 3 has it: without an actor.
    pub(super) fn with_actor(self, actor: Option<Actor>) -> super::v3::Proposal {
        super::v3::Proposal {
            command_id: self.command_id,
            fingerprint: self.fingerprint,
            at_ms: self.at_ms,
            command: self.command,
            key_ms: self.key_ms,
            actor,
        }
    }
}

/// Proposals of version 2 read as today's.
impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        p.with_actor(None).into()
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
