//! What the mesh's HTTP APIs (a core's admin API, an edge's storefront) share: RFC 9457 problem
//! documents with stable types (`problem`), extractors that answer with them (`extract`), the
//! time limit and fallbacks every router ends with (`limits`), and `/metrics` (`metrics`).

#![forbid(unsafe_code)]

pub mod extract;
pub mod limits;
pub mod metrics;
pub mod problem;

pub use extract::{Body, Path, Query, idempotency_key};
pub use fault::Kind;
pub use problem::{Problem, ProblemDocument};
