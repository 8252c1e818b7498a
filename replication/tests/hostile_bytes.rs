//! The mesh's decoders of outside bytes, fed hostile ones: every golden frame and Raft log
//! value (real, whole messages of every kind) with random bytes changed, cut short or grown,
//! and noise. A peer's frame is read as every message it could claim to be; reading must answer
//! a value or an error, never panic.

use std::path::PathBuf;

use proptest::prelude::*;
use replication::decoders::read_all;

fn goldens() -> Vec<(String, Vec<u8>)> {
    let all = codec::golden_files(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"));
    assert!(all.len() >= 13, "golden files found: {}", all.len());
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn real_frames_with_bytes_changed_cut_or_grown_read_without_panicking(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        grow in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let all = goldens();
        let (_, bytes) = pick.get(&all);
        let bytes = codec::damaged(bytes, &edits, cut, &grow);
        let _ = read_all(&bytes);
    }

    #[test]
    fn noise_reads_as_no_message_without_panicking(noise in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = read_all(&noise);
    }
}
