//! The mesh's wire protocol and transport.
//!
//! Today this holds the versioned codec of every record the core stores; the frames regions and
//! edges exchange will use it too. Consensus between core regions and the change feed to edges will land
//! here too. This crate never names a commerce type: it moves and stores opaque, versioned
//! values that its callers define.

#![forbid(unsafe_code)]

pub mod codec;
