//! Version 5 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v5 → v6: a proposal may carry an erasure (`Command::ErasePersonal`,
//!   `Command::EraseOrders`), which members of a build before version 6 cannot read. The
//!   layout is unchanged: `Command` only gained variants at its end, so a proposal of version 5
//!   reads as the same proposal now, and is what today's is without them.

use codec::{Format, Versioned};

use crate::command;

use super::v4;

/// A proposal as version 5 has it: today's, without an erasure.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Proposal(pub command::Proposal);

impl Versioned for Proposal {
    const FORMAT: Format = Format {
        label: "proposal",
        version: 5,
    };
    type Previous = v4::Proposal;
    fn migrate(p: v4::Proposal) -> Self {
        Proposal(p.into())
    }
}

/// Proposals of version 5 read as today's.
impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        p.0
    }
}
