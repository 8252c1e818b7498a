//! One core region: the authoritative store (`store`, with redb and FoundationDB backends), the
//! commerce state machine that applies the log to it exactly once (`machine`), the state
//! machine as the application of the regions' Raft group (`replicated`), the change feed edges
//! follow (`feed`), bounded admission of writes into that log (`writes`), the writes edges
//! send over the mesh (`edges`), the admin API
//! (`api`), retention of personal data (`retention`), keeping it under keys an erasure can
//! destroy (`keeping`), configuration and start-up.
//!
//! Only this crate writes the authoritative store. It depends on `commerce` for every rule and
//! on `replication` for encoding; nothing here decides a price or a grant size on its own.

#![deny(unsafe_code)]

pub mod api;
pub mod backup;
pub mod config;
pub mod edges;
pub mod feed;
pub mod keeping;
pub mod machine;
pub mod reads;
pub mod replicated;
pub mod retention;
pub mod sample;
pub mod server;
pub mod store;
pub mod writes;
