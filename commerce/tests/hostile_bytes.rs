//! Every commerce format read from hostile bytes: its golden bytes (a real, whole value of every
//! kind) with random bytes changed, cut short or grown, and bytes that are noise throughout.
//! Reading must answer a value or an error, never panic or allocate past the input's bounds.

use std::path::PathBuf;

use codec::{Versioned, decode};
use commerce::command::{EdgeWrite, Outcome, Proposal};
use commerce::dedup::DedupRecord;
use commerce::escrow::Inventory;
use commerce::format::CommitLog;
use commerce::order::Order;
use commerce::pricing::{PriceEntry, PriceList, Promotion};
use commerce::{Market, Product};
use proptest::prelude::*;

/// Every golden file: its format's label (as in the file name) and its bytes.
fn goldens() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let label = name.split("-v").next().unwrap().to_owned();
            let bytes = codec::unhex(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (label, bytes)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 12, "golden files found: {}", out.len());
    out
}

fn read<T: Versioned>(bytes: &[u8]) {
    let _ = decode::<T>(bytes);
}

/// Reads `bytes` as the format named `label`.
fn read_as(label: &str, bytes: &[u8]) {
    match label {
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
        other => panic!("a golden file of no known format: {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn real_values_with_bytes_changed_cut_or_grown_read_without_panicking(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        grow in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let all = goldens();
        let (label, bytes) = pick.get(&all);
        let mut bytes = bytes.clone();
        for (at, b) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes.extend_from_slice(&grow);
        read_as(label, &bytes);
    }

    #[test]
    fn noise_reads_as_no_format_without_panicking(noise in prop::collection::vec(any::<u8>(), 0..512)) {
        for label in ["product", "market", "price-list", "price", "promotion", "order",
                      "commit-log", "inventory", "proposal", "edge-write", "outcome", "dedup-record"] {
            read_as(label, &noise);
        }
    }
}
