//! What every process of the mesh shares, whatever part it is: its config file (`config`: one
//! loader and one error type for cores, edges, routers and the fault proxy) and the wall clock
//! (`clock`), read in one place and passed to everything that decides by it; and how the small
//! files of a deployment (keys, certificates) are written (`files`). For tests, a disk that
//! loses what was not synced (`disk_faults`, feature `disk-faults`).

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
#[cfg(feature = "disk-faults")]
pub mod disk_faults;
pub mod files;
