//! Version 3 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v3 → v4: a proposal may carry a note of a change to the group's membership
//!   (`Command::NoteMembership`), which members of a build before version 4 cannot read. The
//!   layout is unchanged: `Command` only gained a variant at its end, so every proposal of
//!   version 3 reads as the same command now.

use codec::{Format, Versioned};

use crate::command::{self, Actor};

use super::v4::Command;

/// (`Command` of version 3 is version 4's without `NoteMembership`.)
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    pub command_id: [u8; 16],
    pub fingerprint: [u8; 16],
    pub at_ms: i64,
    pub command: Command,
    pub key_ms: Option<u64>,
    pub actor: Option<Actor>,
}

impl Versioned for Proposal {
    const FORMAT: Format = Format {
        label: "proposal",
        version: 3,
    };
    type Previous = super::v2::Proposal;
    fn migrate(p: super::v2::Proposal) -> Self {
        p.with_actor(None)
    }
}

impl From<Proposal> for super::v4::Proposal {
    fn from(p: Proposal) -> Self {
        super::v4::Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command,
            key_ms: p.key_ms,
            actor: p.actor,
        }
    }
}

/// Proposals of version 3 read as today's.
impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        super::v4::Proposal::from(p).into()
    }
}
