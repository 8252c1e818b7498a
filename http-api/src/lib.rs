//! What the mesh's HTTP APIs (a core's admin API, an edge's storefront, the router's API) share:
//! the listener they are served on, TLS and its defences against abusive clients (`serve`);
//! who a shopper is, from their identity provider's signed token (`identity`);
//! RFC 9457 problem documents with stable types (`problem`), extractors that answer with them
//! (`extract`), `If-None-Match` (`conditional`), the time limit and fallbacks every router ends with (`limits`), `/metrics`
//! (`metrics`); and the client the mesh's tools reach them with (`client`).

#![forbid(unsafe_code)]

pub mod bearer;
pub mod client;
pub mod conditional;
pub mod extract;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod problem;
pub mod serve;

pub use extract::{Body, Path, Query, idempotency_key};
pub use fault::Kind;
pub use problem::{Problem, ProblemDocument};
