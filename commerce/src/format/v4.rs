//! Version 4 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v4 → v5: the orders that order commands carry are orders of version 2 (`v1`
//!   says what changed), so a member of a build before version 5 cannot read them. Commands
//!   without orders keep their layout, and are still written in the earliest version that can
//!   carry them (`format::earliest`), so that such a member goes on reading them.

use codec::{Format, Versioned};

use crate::command::{self, Actor};

use super::v2::Command;
use super::v3;

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
        version: 4,
    };
    type Previous = v3::Proposal;
    fn migrate(p: v3::Proposal) -> Self {
        Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command,
            key_ms: p.key_ms,
            actor: p.actor,
        }
    }
}

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
