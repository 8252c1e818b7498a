//! Every rule over a command, as one pure function: [`decide`] takes the state, the orders
//! already decided under the ids the command names, the command, its version and its time, and
//! returns the effects (the rows to write and the outcome) or a typed refusal. Nothing is
//! changed here: the core writes the effects into its store and its memory, in one transaction
//! (`core-region`'s `machine.rs`), and every replica of the log computes the same effects.
//!
//! A command is decided whole: its effects are all of it, or it is refused and changes
//! nothing. What is decided where:
//! - `catalog`: products (a SKU belongs to one product), markets, price lists (a list never
//!   changes currency), promotions, price batches;
//! - `stock`: stock batches (never below what grants hold, invariant I2), escrow grants under
//!   the region's policy, and their return;
//! - `orders`: edge orders committed against their edge's grant, and central orders priced
//!   and allocated from the pool, each once by its id (I3) and under the id its
//!   Idempotency-Key names; a customer's personal data erased, from the orders kept and from
//!   any of theirs accepted before and committed after.

mod catalog;
mod memory;
mod orders;
mod stock;

pub use memory::MemoryMachine;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::command::{Command, Outcome};
use crate::id::{MarketId, OrderId, SkuId};
use crate::order::Order;
use crate::record::Write;
use crate::refusal::{RejectKind, Rejection};
use crate::state::State;

/// What a decision reads.
pub struct Input<'a> {
    pub state: &'a State,
    /// The orders already decided under the ids the command names (`Command::order_ids`),
    /// as the store holds them before this command.
    pub decided: &'a HashMap<OrderId, Order>,
    /// The version the command is applied at (its log index).
    pub version: u64,
    /// The proposer's clock (unix ms): central orders are priced at this time.
    pub at_ms: i64,
}

/// What a command does when it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effects {
    pub outcome: Outcome,
    /// The rows it writes, in the order they are written (and taken into memory).
    pub writes: Vec<Write>,
}

/// The effects of `command` on `input`, or why it is refused (and then changes nothing).
pub fn decide(input: &Input<'_>, command: &Command) -> Result<Effects, Rejection> {
    match command {
        Command::UpsertProduct(p) => catalog::upsert_product(input, p),
        Command::UpsertMarket(m) => catalog::upsert_market(input, m),
        Command::UpsertPriceList(l) => catalog::upsert_price_list(input, l),
        Command::UpsertPromotion(p) => catalog::upsert_promotion(input, p),
        Command::DeletePromotion(id) => catalog::delete_promotion(input, id),
        Command::PriceBatch(changes) => catalog::price_batch(input, changes),
        Command::StockBatch(changes) => stock::stock_batch(input, changes),
        Command::Grant {
            edge,
            sku,
            demand,
            policy,
            request,
        } => stock::grant(input, edge, sku, *demand, policy, *request),
        Command::ReturnGrant {
            edge,
            sku,
            units,
            request,
        } => stock::return_grant(input, edge, sku, *units, *request),
        Command::CommitOrders { edge, orders } => orders::commit_orders(input, edge, orders),
        Command::CentralOrder {
            order_id,
            idempotency_key,
            request,
            region,
            edge,
        } => orders::central_order(
            input,
            order_id,
            idempotency_key.as_deref(),
            request,
            crate::order::Origin {
                region: region.clone(),
                edge: edge.clone(),
            },
        ),
        Command::NoteMembership { change } => {
            if change.is_empty() || change.len() > crate::command::MEMBERSHIP_NOTE_MAX_BYTES {
                return reject(
                    RejectKind::Invalid,
                    format!(
                        "a membership note has 1 to {} bytes",
                        crate::command::MEMBERSHIP_NOTE_MAX_BYTES
                    ),
                );
            }
            input.applied(Vec::new())
        }
        Command::ErasePersonal { customer, orders } => {
            orders::erase_personal(input, customer, orders)
        }
        Command::EraseOrders { orders, before_ms } => {
            orders::erase_orders(input, orders, *before_ms)
        }
        Command::KeepAddresses { kept } => orders::keep_addresses(input, kept),
    }
}

impl Input<'_> {
    /// `Applied` at this version, with `writes`.
    fn applied(&self, writes: Vec<Write>) -> Result<Effects, Rejection> {
        Ok(Effects {
            outcome: Outcome::Applied {
                version: self.version,
            },
            writes,
        })
    }

    fn known_sku(&self, sku: &SkuId) -> Result<(), Rejection> {
        match self.state.owner(sku) {
            Some(_) => Ok(()),
            None => reject(RejectKind::UnknownSku, format!("unknown sku {sku}")),
        }
    }

    fn known_market(&self, market: Option<&MarketId>) -> Result<(), Rejection> {
        match market {
            Some(m) if self.state.book.market(m).is_none() => {
                reject(RejectKind::UnknownMarket, format!("unknown market {m}"))
            }
            _ => Ok(()),
        }
    }
}

fn reject<T>(kind: RejectKind, detail: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(kind, detail))
}
