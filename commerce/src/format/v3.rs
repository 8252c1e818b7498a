//! Version 3 of the values whose layout has changed since, frozen as they were (see `v1`).
//!
//! - Proposal v3 → v4: a proposal may carry a note of a change to the group's membership
//!   (`Command::NoteMembership`), which members of a build before version 4 cannot read. The
//!   layout is unchanged: `Command` only gained a variant at its end, so every proposal of
//!   version 3 reads as the same command now.

use codec::{Format, Versioned};

use crate::command::{self, Actor, Command};

/// (`Command` of version 3 is today's without `NoteMembership`; a change to an existing
/// variant must freeze the version-3 layout here first.)
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
            actor: p.actor,
        }
    }
}

/// A proposal as version 3 writes it: what members of the build before version 4 read, for
/// every command but a membership note.
impl From<command::Proposal> for Proposal {
    fn from(p: command::Proposal) -> Self {
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
