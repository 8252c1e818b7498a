//! Every commerce format read from hostile bytes: its golden bytes (a real, whole value of every
//! kind) with random bytes changed, cut short or grown, and bytes that are noise throughout.
//! Reading must answer a value or an error, never panic or allocate past the input's bounds.

use std::path::PathBuf;

use commerce::format::LABELS;
use proptest::prelude::*;

/// Every golden file: its format's label (as in the file name) and its bytes.
fn goldens() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let all: Vec<(String, Vec<u8>)> = codec::golden_files(&dir)
        .into_iter()
        .map(|(name, bytes)| (name.split("-v").next().unwrap_or("").to_owned(), bytes))
        .collect();
    assert!(all.len() >= 12, "golden files found: {}", all.len());
    all
}

/// Reads `bytes` as the format named `label`.
fn read_as(label: &str, bytes: &[u8]) {
    if commerce::format::read_as(label, bytes).is_none() {
        panic!("a golden file of no known format: {label}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn real_values_with_bytes_changed_cut_or_grown_read_without_panicking(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        grow in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let all = goldens();
        let (label, bytes) = pick.get(&all);
        let bytes = codec::damaged(bytes, &edits, cut, &grow);
        read_as(label, &bytes);
    }

    #[test]
    fn noise_reads_as_no_format_without_panicking(noise in prop::collection::vec(any::<u8>(), 0..512)) {
        for label in LABELS {
            read_as(label, &noise);
        }
    }
}
