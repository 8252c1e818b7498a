//! Version 1 of the values whose layout has changed since, frozen as they were so that what
//! stores hold in this layout stays readable, and migrated forward (`Versioned::migrate`).
//! Nothing here ever changes: a new layout gets a module of its own.
//!
//! Outcome v1 → v2: an order result says which order stands when its id was first decided for
//! an order taken elsewhere (`original`), and whether this edge's copy asked for something
//! else under the key (`key_reused`). Dedup records carry outcomes, so they move with them.

use codec::{FirstVersion, Format};

use crate::command::{self, Rejection};
use crate::id::OrderId;
use crate::order::{Order, OrderStatus};

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
