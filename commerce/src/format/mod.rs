//! The formats of every commerce value that is stored or sent, in one table: which label and
//! version each is encoded as (`codec`), and so which golden file pins it
//! (`tests/golden/<label>-v<version>.hex`, checked by `tests/formats.rs`).
//!
//! | value | label | version | where it goes |
//! |---|---|---|---|
//! | `Product`, `Market`, `PriceList`, `PriceEntry`, `Promotion` | product, market, price list, price, promotion | 1 | a core's store rows; the change feed to edges, as the same bytes |
//! | `Inventory` | inventory | 2 (reads 1) | the same |
//! | `Order` | order | 2 (reads 1) | a core's store rows; an edge's outbox |
//! | `Address` | address | 1 | sealed inside an order (`personal`): what its home region opens |
//! | `CommitLog` | commit log | 1 | a core's store rows: the orders decided at one version |
//! | `Proposal` | proposal | 7 (reads 6, 5, 4, 3, 2, 1; writes the earliest that carries it, `earliest`) | the regions' Raft log: a command, its id, the proposer's clock and, for an admin write, who made it |
//! | `Outcome` | outcome | 3 (reads 2, 1) | Raft's reply to a proposal, and the core's reply to an edge, as the same bytes |
//! | `EdgeWrite` | edge write | 3 (reads 2, 1) | an edge's write to a core over the mesh |
//! | `DedupRecord` | dedup record | 3 (reads 2, 1) | a core's store rows: what a keyed command answered |
//! | `AuditRecord` | audit record | 1 | a core's store rows: an admin write, who made it, what became of it |
//! | `Erasure` | erasure | 1 | a core's store rows, and the change feed to edges: when a customer's personal data was erased (and, under `X` keys, which epoch each erasure ended) |
//! | `EdgeRead` | edge read | 2 (reads 1) | an edge's read of a customer's orders from a core over the mesh |
//! | `ReadReply` | read reply | 2 (reads 1) | the core's answer to it |
//!
//! Earlier versions, frozen, are in `v1` to `v6`.
//!
//! A value's version changes when its layout does, and with it the version of every value that
//! carries it (an `Order` inside a `Proposal` or an `Outcome`); the codec's module docs say how
//! the previous version stays readable.

pub mod v1;
pub mod v2;
pub mod v3;
pub mod v4;
pub mod v5;
pub mod v6;

use codec::{FirstVersion, Format, Versioned};

use crate::catalog::Product;
use crate::command::{AuditRecord, Command, EdgeRead, EdgeWrite, Outcome, Proposal, ReadReply};
use crate::dedup::DedupRecord;
use crate::escrow::Inventory;
use crate::id::OrderId;
use crate::market::Market;
use crate::order::Order;
use crate::personal::{Address, Erasure};
use crate::pricing::{PriceEntry, PriceList, Promotion};

/// The ids of the orders decided at one version, in the order they were decided: one row per
/// version rather than one per order keeps an order commit at three rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitLog(pub Vec<OrderId>);

macro_rules! first_version {
    ($($ty:ty => $label:literal),* $(,)?) => {
        $(impl FirstVersion for $ty {
            const FORMAT: Format = Format { label: $label, version: 1 };
        })*
    };
}

first_version! {
    Product => "product",
    Market => "market",
    PriceList => "price list",
    PriceEntry => "price",
    Promotion => "promotion",
    CommitLog => "commit log",
    AuditRecord => "audit record",
}

/// The label of every format in the table above, as golden files are named (spaces as `-`).
pub const LABELS: [&str; 18] = [
    "product",
    "market",
    "price-list",
    "price",
    "promotion",
    "order",
    "commit-log",
    "inventory",
    "proposal",
    "edge-write",
    "outcome",
    "dedup-record",
    "edge-read",
    "read-reply",
    "audit-record",
    "address",
    "erasure",
    "epoch-end",
];

/// Reads `bytes` as the format labelled `label` (one of `LABELS`): whether it gave a value;
/// `None` for a label of no format. What the hostile-bytes tests and the fuzz targets feed:
/// reading must answer a value or an error, never panic.
pub fn read_as(label: &str, bytes: &[u8]) -> Option<bool> {
    fn read<T: Versioned>(bytes: &[u8]) -> bool {
        codec::decode::<T>(bytes).is_ok()
    }
    Some(match label {
        "product" => read::<Product>(bytes),
        "market" => read::<Market>(bytes),
        "price-list" => read::<PriceList>(bytes),
        "price" => read::<PriceEntry>(bytes),
        "promotion" => read::<Promotion>(bytes),
        "order" => read::<Order>(bytes),
        "commit-log" => read::<CommitLog>(bytes),
        "inventory" => read::<Inventory>(bytes),
        "proposal" => read::<Proposal>(bytes),
        "edge-write" => read::<EdgeWrite>(bytes),
        "outcome" => read::<Outcome>(bytes),
        "dedup-record" => read::<DedupRecord>(bytes),
        "edge-read" => read::<EdgeRead>(bytes),
        "read-reply" => read::<ReadReply>(bytes),
        "audit-record" => read::<AuditRecord>(bytes),
        "address" => read::<Address>(bytes),
        "erasure" => read::<Erasure>(bytes),
        "epoch-end" => read::<crate::personal::EpochEnd>(bytes),
        _ => return None,
    })
}

/// A value whose previous version is frozen in `$module`, read by migrating it.
macro_rules! next_version {
    ($($ty:ident => $label:literal, $version:literal, $module:ident),* $(,)?) => {
        $(impl Versioned for $ty {
            const FORMAT: Format = Format { label: $label, version: $version };
            type Previous = $module::$ty;
            fn migrate(previous: $module::$ty) -> Self {
                previous.into()
            }
        })*
    };
}

next_version! {
    Inventory => "inventory", 2, v1,
    Order => "order", 2, v1,
    ReadReply => "read reply", 2, v1,
    EdgeRead => "edge read", 2, v1,
    EdgeWrite => "edge write", 3, v2,
    Outcome => "outcome", 3, v2,
    DedupRecord => "dedup record", 3, v2,
    Proposal => "proposal", 7, v6,
}

impl From<v2::DedupRecord> for DedupRecord {
    fn from(p: v2::DedupRecord) -> Self {
        DedupRecord {
            version: p.version,
            fingerprint: p.fingerprint,
            outcome: p.outcome.into(),
        }
    }
}

/// A proposal in the earliest version that can carry it, encoded: what members of earlier
/// builds read, for as long as what is proposed is something they can.
pub fn earliest(p: Proposal) -> Result<Vec<u8>, codec::CodecError> {
    let command = match earlier(p.command) {
        Ok(c) => c,
        Err(orders) => {
            let p = Proposal {
                command: *orders,
                ..p
            };
            return match p.command {
                Command::KeepAddresses { .. } => codec::encode(&p),
                Command::ErasePersonal { .. } | Command::EraseOrders { .. } => {
                    codec::encode(&v6::Proposal(p))
                }
                _ => codec::encode(&v5::Proposal(p)),
            };
        }
    };
    let membership = matches!(command, v2::Command::NoteMembership { .. });
    let v4 = v4::Proposal {
        command_id: p.command_id,
        fingerprint: p.fingerprint,
        at_ms: p.at_ms,
        command,
        key_ms: p.key_ms,
        actor: p.actor,
    };
    match (membership, &v4.actor) {
        (true, _) => codec::encode(&v4),
        (false, Some(_)) => codec::encode(&v3::Proposal {
            command_id: v4.command_id,
            fingerprint: v4.fingerprint,
            at_ms: v4.at_ms,
            command: v4.command,
            key_ms: v4.key_ms,
            actor: v4.actor,
        }),
        (false, None) => codec::encode(&v2::Proposal {
            command_id: v4.command_id,
            fingerprint: v4.fingerprint,
            at_ms: v4.at_ms,
            command: v4.command,
            key_ms: v4.key_ms,
        }),
    }
}

/// `c` in the layout of `v2::Command`, when it carries no order (whose layout has changed
/// since) and is no command of a later version.
fn earlier(c: Command) -> Result<v2::Command, Box<Command>> {
    use Command as C;
    use v2::Command as V2;
    Ok(match c {
        C::UpsertProduct(p) => V2::UpsertProduct(p),
        C::UpsertMarket(m) => V2::UpsertMarket(m),
        C::UpsertPriceList(l) => V2::UpsertPriceList(l),
        C::UpsertPromotion(p) => V2::UpsertPromotion(p),
        C::DeletePromotion(id) => V2::DeletePromotion(id),
        C::PriceBatch(v) => V2::PriceBatch(v),
        C::StockBatch(v) => V2::StockBatch(v),
        C::Grant {
            edge,
            sku,
            demand,
            policy,
            request,
        } => V2::Grant {
            edge,
            sku,
            demand,
            policy,
            request,
        },
        C::ReturnGrant {
            edge,
            sku,
            units,
            request,
        } => V2::ReturnGrant {
            edge,
            sku,
            units,
            request,
        },
        C::NoteMembership { change } => V2::NoteMembership { change },
        later @ (C::CommitOrders { .. }
        | C::CentralOrder { .. }
        | C::ErasePersonal { .. }
        | C::EraseOrders { .. }
        | C::KeepAddresses { .. }) => {
            return Err(Box::new(later));
        }
    })
}
