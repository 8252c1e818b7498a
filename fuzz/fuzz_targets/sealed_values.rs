//! Bytes read back as a sealed value (`sealing::Sealed`, as stores, logs and outboxes will keep
//! shoppers' personal data) and opened with a region's keys: the decoder, HPKE's decapsulation
//! of whatever key share the bytes carry, and the cipher must answer an error, never panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sealing::{FileKeys, Opener, Sealed};

fn opener() -> &'static Opener {
    static OPENER: OnceLock<(tempfile::TempDir, Opener)> = OnceLock::new();
    &OPENER
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            sealing::keys::init(dir.path(), &["ap-singapore".to_owned()]).expect("keys");
            let keys = FileKeys::load(dir.path(), "ap-singapore").expect("keys read back");
            let opener = Opener::new(Arc::new(keys));
            (dir, opener)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    if let Ok(sealed) = codec::decode::<Sealed>(data) {
        // No input can carry a value sealed to this process's fresh key.
        assert!(opener().open(&sealed, b"o2-1").is_err());
    }
});
