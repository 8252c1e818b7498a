//! Faults for Tradewind's drills. `proxy`: the fault proxy that makes links between regions
//! behave like a WAN (latency, jitter, loss, bandwidth) and cuts them (partitions), changed at
//! runtime through a small HTTP API.

#![forbid(unsafe_code)]

pub mod proxy;
