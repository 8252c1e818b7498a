//! The simulator: 3 or 5 voters and one member to join, with the real replication code (openraft, the project's
//! elections, rush and carried entries, the log on redb) over a simulated network and clock
//! (`replication::sim`), with everything random drawn from one seed. Messages are dropped,
//! delayed up to seconds, duplicated and reordered; links cut both ways or one, and made long;
//! members crash (their disks keep only what was synced) and restart, or lose their log disk
//! and rejoin; voters leave and join, two changes at once among them; a member that left may be
//! emptied and join again under its id.
//!
//! What the group carries is a `Workload`: its application (the state machine each member
//! applies to, on a disk that loses what was not synced), its clients, and its verdict at the
//! end. The tests run two: registers and a counter checked linearizable
//! (`tests/registers`), and the core's own commerce, orders and grants checked against the
//! mesh's invariants I1 to I3 (`tests/orders`).
//!
//! Checked at every step (`checks`): a leader under its own committed vote; log matching; every
//! committed entry in the log of the leader of the latest term; nothing the network layer tells
//! the leader a member holds that the member lacks; and, as members apply, the same entry at
//! each index everywhere (`Observed`).
//!
//! `SIM_SEED=n cargo test -p simulator --test registers -- --nocapture` (or `--test orders`)
//! replays seed `n` and prints its history; `scripts/sim-seeds.sh` runs seeds for a given time
//! and keeps the ones that fail in the workload's `regressions.txt`, which every run replays.

// The seeded runtime needs tokio's `rng_seed` (.cargo/config.toml sets the flag; a RUSTFLAGS
// of one's own replaces it): without it a seed would not replay the same run.
#[cfg(not(tokio_unstable))]
compile_error!("the simulator needs `--cfg tokio_unstable` (set in .cargo/config.toml)");

mod checks;
mod observed;
mod run;
mod seeds;

pub use observed::{Observed, Observing, digest as observed_digest};
pub use run::{Group, Outcome, Workload, run};
pub use seeds::seeded_runs;
