//! Faults for Tradewind's drills. `proxy`: the fault proxy that makes links between regions
//! behave like a WAN (latency, jitter, loss, bandwidth) and cuts them (partitions), changed at
//! runtime through a small HTTP API. `checker`: what a drill proves, the commerce invariants
//! checked against the history of what shoppers were told and the core's final state.
//! `workload`: the shoppers whose orders make that history, and the reading of the final state.
//! `report`: what the history measured (detect, rto, errors, lag) and its timeline. `drill`:
//! the drills themselves, on any mesh `mesh.json` describes (`mesh`), with the faults they
//! inject and heal, the write probe and the monitor. `admin`: a client of the admin API.

#![forbid(unsafe_code)]

pub mod admin;
pub mod checker;
pub mod drill;
pub mod mesh;
pub mod proxy;
pub mod report;
pub mod workload;
