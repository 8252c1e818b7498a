//! Version 4 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v4 → v5: the orders that order commands carry are orders of version 2 (`v1`
//!   says what changed), so a member of a build before version 5 cannot read them. Commands
//!   without orders keep their layout, and are still written in the earliest version that can
//!   carry them (`Proposal::earliest`), so that such a member goes on reading them.

use codec::{Format, Versioned};

use crate::catalog::Product;
use crate::command::{self, Actor, PriceChange, StockChange};
use crate::escrow::{Demand, GrantPolicy};
use crate::id::{EdgeId, OrderId, PromotionId, SkuId};
use crate::market::Market;
use crate::pricing::{PriceList, Promotion};

use super::v1::{self, Order, OrderRequest};

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
        orders: Vec<Order>,
    },
    CentralOrder {
        order_id: OrderId,
        idempotency_key: Option<String>,
        request: OrderRequest,
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

impl Command {
    /// `c` in this layout, when it carries no order (whose layout has changed since) and is no
    /// command of a later version.
    fn earlier(c: command::Command) -> Result<Command, Box<command::Command>> {
        use command::Command as C;
        Ok(match c {
            C::UpsertProduct(p) => Command::UpsertProduct(p),
            C::UpsertMarket(m) => Command::UpsertMarket(m),
            C::UpsertPriceList(l) => Command::UpsertPriceList(l),
            C::UpsertPromotion(p) => Command::UpsertPromotion(p),
            C::DeletePromotion(id) => Command::DeletePromotion(id),
            C::PriceBatch(v) => Command::PriceBatch(v),
            C::StockBatch(v) => Command::StockBatch(v),
            C::Grant {
                edge,
                sku,
                demand,
                policy,
                request,
            } => Command::Grant {
                edge,
                sku,
                demand,
                policy,
                request,
            },
            C::ReturnGrant {
                edge,
                sku,
                units,
                request,
            } => Command::ReturnGrant {
                edge,
                sku,
                units,
                request,
            },
            C::NoteMembership { change } => Command::NoteMembership { change },
            later @ (C::CommitOrders { .. }
            | C::CentralOrder { .. }
            | C::ErasePersonal { .. }
            | C::EraseOrders { .. }) => {
                return Err(Box::new(later));
            }
        })
    }
}

#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    pub command_id: [u8; 16],
    pub fingerprint: [u8; 16],
    pub at_ms: i64,
    pub command: Command,
    pub key_ms: Option<u64>,
    pub actor: Option<Actor>,
}

impl Versioned for Proposal {
    const FORMAT: Format = Format {
        label: "proposal",
        version: 4,
    };
    type Previous = super::v3::Proposal;
    fn migrate(p: super::v3::Proposal) -> Self {
        p.into()
    }
}

impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        command::Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command.into(),
            key_ms: p.key_ms,
            actor: p.actor,
        }
    }
}

/// A proposal in the earliest version that can carry it, encoded: what members of earlier
/// builds read, for as long as what is proposed is something they can.
pub fn earliest(p: command::Proposal) -> Result<Vec<u8>, codec::CodecError> {
    let command = match Command::earlier(p.command) {
        Ok(c) => c,
        Err(orders) => {
            return codec::encode(&command::Proposal {
                command: *orders,
                ..p
            });
        }
    };
    let membership = matches!(command, Command::NoteMembership { .. });
    let v4 = Proposal {
        command_id: p.command_id,
        fingerprint: p.fingerprint,
        at_ms: p.at_ms,
        command,
        key_ms: p.key_ms,
        actor: p.actor,
    };
    match (membership, &v4.actor) {
        (true, _) => codec::encode(&v4),
        (false, Some(_)) => codec::encode(&super::v3::Proposal {
            command_id: v4.command_id,
            fingerprint: v4.fingerprint,
            at_ms: v4.at_ms,
            command: v4.command,
            key_ms: v4.key_ms,
            actor: v4.actor,
        }),
        (false, None) => codec::encode(&super::v2::Proposal {
            command_id: v4.command_id,
            fingerprint: v4.fingerprint,
            at_ms: v4.at_ms,
            command: v4.command,
            key_ms: v4.key_ms,
        }),
    }
}
