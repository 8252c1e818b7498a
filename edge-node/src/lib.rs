//! An edge node: the storefront API answered from memory, and orders accepted locally from
//! escrow grants.
//!
//! The edge follows its region's change feed into a mirror of the catalog, prices, promotions,
//! markets and inventory (`mirror`). An order is priced from that mirror, its units taken from
//! this edge's grants and written with it in one durable transaction of the outbox (`outbox`,
//! group commit) before the shopper hears `201`; the forwarder sends the outbox to the core
//! (`forwarder`), where each order commits once by its id. With no grant left an order is sent
//! to the core while the shopper waits (central mode). The grant keeper asks for grants as
//! SKUs sell and gives them back on shutdown (`grants`). Writes reach the core over the mesh
//! (`cores`); the API is `api` (served over TLS with `http_api::serve`'s defences), its
//! rendered products `cache`, its counters `metrics`, start-up `server`. What the feed changes
//! is purged from the region's CDN caches (`purge`), by the surrogate keys the storefront tags
//! its reads with.
//!
//! The edge never imports the core: it speaks to it only through `replication`'s mesh and
//! `commerce`'s types.

#![forbid(unsafe_code)]

pub mod api;
pub mod cache;
pub mod config;
pub mod cores;
pub mod forwarder;
pub mod grants;
pub mod metrics;
pub mod mirror;
pub mod outbox;
pub mod purge;
pub mod server;
