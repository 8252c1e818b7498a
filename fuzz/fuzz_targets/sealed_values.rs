//! Bytes read back as a sealed value (`sealing::sealed::Seal`, as stores, logs and outboxes keep
//! shoppers' personal data: sealed at intake to a region key, or kept under a home region's
//! keeping keys) and opened with a region's keys: the decoder, HPKE's decapsulation of whatever
//! key share the bytes carry, the keeping keys' derivation for whatever period and epoch they
//! name, and the cipher must answer an error, never panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use commerce::personal::{Personal, SealedPersonal, ShipTo};
use libfuzzer_sys::fuzz_target;
use sealing::PersonalOpener;
use sealing::sealed::Seal;

fn opener() -> &'static PersonalOpener {
    static OPENER: OnceLock<(tempfile::TempDir, PersonalOpener)> = OnceLock::new();
    &OPENER
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            sealing::init(dir.path(), &["ap-singapore".to_owned()]).expect("keys");
            let shred = sealing::shred::ShredKeys::load(&sealing::shred::path(
                dir.path(),
                "ap-singapore",
            ))
            .expect("keeping keys read back");
            let opener = PersonalOpener::load(dir.path(), "ap-singapore", Some(Arc::new(shred) as _))
                .expect("keys read back");
            (dir, opener)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    if codec::decode::<Seal>(data).is_ok() {
        let mut ship_to = ShipTo {
            country: commerce::Country::new("SG").expect("a country"),
            personal: Personal::Sealed(SealedPersonal {
                home: "ap-singapore".into(),
                digest: [0; 16],
                sealed: data.to_vec(),
            }),
        };
        // No input can carry a value sealed to this process's fresh keys.
        let customer = commerce::CustomerId::new("c-1").expect("a customer");
        assert!(opener().open(&customer, &mut ship_to).is_err());
    }
});
