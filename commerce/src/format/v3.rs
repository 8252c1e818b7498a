//! Version 3 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v3 → v4: a proposal may carry a note of a change to the group's membership
//!   (`Command::NoteMembership`), which members of a build before version 4 cannot read. The
//!   layout is unchanged: `Command` only gained a variant at its end, so every proposal of
//!   version 3 reads as the same command now.

use codec::{Format, Versioned};

use crate::command::{self, Actor};

use super::v2::{self, Command};

/// (`Command` of version 3 is `v2::Command` without `NoteMembership`.)
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
    type Previous = v2::Proposal;
    fn migrate(p: v2::Proposal) -> Self {
        Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command,
            key_ms: p.key_ms,
            actor: None,
        }
    }
}

/// Proposals of version 3 read as today's.
impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        command::Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command.into(),
            key_ms: p.key_ms,
            actor: p.actor,
        }
    }
}
