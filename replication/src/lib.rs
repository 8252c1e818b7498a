//! The mesh's wire protocol and transport.
//!
//! - `certs` and `tls`: the deployment CA, node certificates, and TLS 1.3 with mutual
//!   authentication, where a peer's identity is the node name its certificate carries;
//!   `revoked`: the certificates no longer trusted, though the CA signed them;
//! - `frame` and `transport`: length-delimited, versioned frames over QUIC streams, one
//!   request per stream, answered with one reply or a stream of them;
//! - `protocol`: the messages those frames carry (`MeshRequest`, `MeshResponse`) and the
//!   values in them, below everything else here;
//! - `app`: what replication asks of the application it carries (its state machine, its judge
//!   of edges' writes, its feed snapshots, its mirror) and the error they answer with;
//! - `raft`: consensus between core regions (openraft), its log in redb, its state machine in
//!   the application, its RPCs over the transport;
//! - `feed`: the change feed from a core to the edges that follow it: bounded history,
//!   snapshots when a subscriber is too far behind, heartbeats, resume.
//!
//! Everything it stores or sends is encoded by the `codec` crate under a format of its own:
//! frames (`frame::PROTOCOL`), the Raft log (`raft::LOG`) and Raft's record of what was
//! applied (`raft::RaftMeta`); `decoders` reads outside bytes as all of them at once.
//!
//! This crate never names a commerce type: it moves and stores opaque, versioned values that
//! its callers define.

#![forbid(unsafe_code)]

pub mod app;
pub mod certs;
pub mod decoders;
pub mod failpoint;
pub mod feed;
pub mod frame;
pub mod protocol;
pub mod raft;
pub mod revoked;
pub mod sim;
pub mod tls;
pub mod transport;
pub mod wire;
