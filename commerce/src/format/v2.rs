//! Version 2 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v2 → v3: an admin write says who made it and through which route (`actor`), for
//!   the audit log. Proposals of version 2 had none.

use codec::{Format, Versioned};

use crate::command::{self, Command};

/// (`Command` of version 2 is today's without `NoteMembership`; a change to an existing variant
/// must freeze its version-2 layout here first.)
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    pub command_id: [u8; 16],
    pub fingerprint: [u8; 16],
    pub at_ms: i64,
    pub command: Command,
    pub key_ms: Option<u64>,
}

impl Versioned for Proposal {
    const FORMAT: Format = Format {
        label: "proposal",
        version: 2,
    };
    type Previous = super::v1::Proposal;
    fn migrate(p: super::v1::Proposal) -> Self {
        command::Proposal::from(p).into()
    }
}

impl From<Proposal> for command::Proposal {
    fn from(p: Proposal) -> Self {
        command::Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command,
            key_ms: p.key_ms,
            actor: None,
        }
    }
}

/// A proposal without an actor, as version 2 writes it: what members of the build before
/// version 3 read.
impl From<command::Proposal> for Proposal {
    fn from(p: command::Proposal) -> Self {
        Proposal {
            command_id: p.command_id,
            fingerprint: p.fingerprint,
            at_ms: p.at_ms,
            command: p.command,
            key_ms: p.key_ms,
        }
    }
}
