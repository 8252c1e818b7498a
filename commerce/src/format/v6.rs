//! Version 6 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v6 → v7: a proposal may carry addresses as their home region keeps them
//!   (`Command::KeepAddresses`), which members of a build before version 7 cannot read. The
//!   layout is unchanged: `Command` only gained a variant at its end, so a proposal of version 6
//!   reads as the same proposal now, and is what today's is without it.

use codec::{Format, Versioned};

use crate::command;

use super::v5;

/// A proposal as version 6 has it: today's, without addresses kept.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Proposal(pub command::Proposal);

impl Versioned for Proposal {
    const FORMAT: Format = Format {
        label: "proposal",
        version: 6,
    };
    type Previous = v5::Proposal;
    fn migrate(p: v5::Proposal) -> Self {
        Proposal(p.into())
    }
}

/// Proposals of version 6 read as today's.
impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        p.0
    }
}
