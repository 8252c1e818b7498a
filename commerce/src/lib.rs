//! Tradewind's business rules as pure code.
//!
//! This crate owns the domain model (products and SKUs, money, markets, price lists, orders)
//! and every rule over it: the pricing engine, order validation, escrow arithmetic and grant
//! sizing, the commands that change state and the one function that decides them (`decide`),
//! how long a key answers retries (`dedup`), what a signed-in shopper may ask for (`shopper`),
//! refusals with their kind (`refusal`), the formats
//! of everything stored or sent (`format`), and the key layout of the authoritative store.
//!
//! It must never do IO, spawn, sleep or read a clock: time is a parameter (`now_ms`), so that
//! every rule is a deterministic function that property tests can drive and every replica of
//! the log computes the same result.

#![forbid(unsafe_code)]

pub mod catalog;
pub mod command;
pub mod decide;
pub mod dedup;
pub mod escrow;
pub mod format;
pub mod id;
pub mod keys;
pub mod market;
pub mod money;
pub mod order;
pub mod order_id;
pub mod personal;
pub mod pricing;
pub mod record;
pub mod refusal;
#[cfg(feature = "openapi")]
mod schema;
pub mod shopper;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use catalog::{Category, Product, Sku};
pub use id::{
    CustomerGroup, CustomerId, EdgeId, IdError, MarketId, OrderId, PriceListId, ProductId,
    PromotionId, SkuId,
};
pub use market::{Country, Market};
pub use money::{Currency, Money, Rounding};
