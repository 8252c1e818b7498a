//! Sealing over real key files: a value opens only in its home region, with its own associated
//! data, under the key and suite it names; rotation keeps old values open; key files are
//! private, and a wrong, missing or damaged one is a clear error.

use std::path::Path;
use std::sync::Arc;

use sealing::keys::{self, KeyError};
use sealing::{FileKeys, KeyId, OpenError, Opener, PublicKeys, Sealed, Sealer, Suite};

const ADDRESS: &[u8] = br#"{"line1":"1 Raffles Place","city":"Singapore","postal_code":"048616"}"#;

fn regions(dir: &Path) {
    keys::init(dir, &["ap-singapore".to_owned(), "cn-shanghai".to_owned()]).unwrap();
}

fn sealer(dir: &Path, region: &str, suite: Suite) -> Sealer {
    let (id, key) = PublicKeys::load(dir).unwrap().newest(region).unwrap();
    Sealer::new(&id, &key, suite).unwrap()
}

fn seal_to(dir: &Path, region: &str, suite: Suite, aad: &[u8]) -> Sealed {
    sealer(dir, region, suite).seal(aad, ADDRESS)
}

fn opener(dir: &Path, region: &str) -> Opener {
    Opener::new(Arc::new(FileKeys::load(dir, region).unwrap()))
}

#[test]
fn a_sealed_value_opens_only_at_home_with_its_own_binding() {
    let dir = tempfile::tempdir().unwrap();
    regions(dir.path());
    let home = opener(dir.path(), "ap-singapore");
    let away = opener(dir.path(), "cn-shanghai");
    for suite in Suite::ALL {
        let sealed = seal_to(dir.path(), "ap-singapore", suite, b"o2-1");
        assert_eq!(sealed.key.to_string(), "ap-singapore/1");
        let bytes = codec::encode(&sealed).unwrap();
        assert!(
            !bytes.windows(8).any(|w| w == b"Raffles "),
            "the plaintext is not in the sealed bytes"
        );
        assert_eq!(home.open(&sealed, b"o2-1").unwrap(), ADDRESS);
        // Another region holds no key that opens it.
        assert!(matches!(
            away.open(&sealed, b"o2-1"),
            Err(OpenError::Key(KeyError::NotHeld(_)))
        ));
        // Bound to its record: moved to another, it does not open.
        assert!(matches!(
            home.open(&sealed, b"o2-2"),
            Err(OpenError::Unauthentic(_))
        ));
        // Every part of it is authenticated: the data, the key share, the suite it names.
        let mut altered = sealed.clone();
        altered.ciphertext[3] ^= 0x20;
        assert!(home.open(&altered, b"o2-1").is_err());
        let mut altered = sealed.clone();
        altered.enc[0] ^= 1;
        assert!(home.open(&altered, b"o2-1").is_err());
        let mut altered = sealed.clone();
        altered.enc.truncate(7);
        assert!(home.open(&altered, b"o2-1").is_err());
        let mut altered = sealed.clone();
        altered.suite = if suite == Suite::Sm4Gcm {
            Suite::Aes256Gcm
        } else {
            Suite::Sm4Gcm
        };
        assert!(home.open(&altered, b"o2-1").is_err());
        // Sealing the same value again gives other bytes: nothing links two copies.
        assert_ne!(seal_to(dir.path(), "ap-singapore", suite, b"o2-1"), sealed);
    }
}

/// One sealer seals many values after one key exchange, each under its own key: the same value
/// twice gives two ciphertexts, each opens only as itself, and the opener decapsulates once.
#[test]
fn one_sealer_many_values_each_under_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    regions(dir.path());
    let home = opener(dir.path(), "ap-singapore");
    for suite in Suite::ALL {
        let s = sealer(dir.path(), "ap-singapore", suite);
        let values: Vec<Sealed> = (0..100).map(|_| s.seal(b"o2-1", ADDRESS)).collect();
        assert_eq!(s.sealed(), 100);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v.seq, i as u64);
            assert_eq!(v.enc, values[0].enc, "one key exchange");
            assert_eq!(home.open(v, b"o2-1").unwrap(), ADDRESS);
        }
        assert_ne!(values[0].ciphertext, values[1].ciphertext, "no key reused");
        // A value claiming another's place in the sequence does not open.
        let mut moved = values[1].clone();
        moved.seq = 2;
        assert!(home.open(&moved, b"o2-1").is_err());
    }
}

#[test]
fn rotation_seals_to_the_new_key_and_keeps_old_values_open() {
    let dir = tempfile::tempdir().unwrap();
    regions(dir.path());
    let old = seal_to(dir.path(), "cn-shanghai", Suite::Sm4Gcm, b"o2-1");
    let id = keys::rotate(dir.path(), "cn-shanghai").unwrap();
    assert_eq!(id.to_string(), "cn-shanghai/2");
    let new = seal_to(dir.path(), "cn-shanghai", Suite::Sm4Gcm, b"o2-2");
    assert_eq!(new.key, id);
    assert_eq!(
        FileKeys::load(dir.path(), "cn-shanghai")
            .unwrap()
            .ids()
            .len(),
        2
    );
    let keys = opener(dir.path(), "cn-shanghai");
    assert_eq!(keys.open(&old, b"o2-1").unwrap(), ADDRESS);
    assert_eq!(keys.open(&new, b"o2-2").unwrap(), ADDRESS);
    // Naming the other key of the same region does not open it either.
    let mut renamed = old.clone();
    renamed.key = id;
    assert!(keys.open(&renamed, b"o2-1").is_err());
    // The other region did not move.
    let (sg, _) = PublicKeys::load(dir.path())
        .unwrap()
        .newest("ap-singapore")
        .unwrap();
    assert_eq!(sg.to_string(), "ap-singapore/1");
}

/// A retired key is destroyed: what was sealed to it opens nowhere and says why, newer keys
/// still open, the newest is never retired, and a key file of the build before (no times)
/// still loads.
#[test]
fn a_retired_key_opens_nothing_and_the_newest_is_never_retired() {
    let dir = tempfile::tempdir().unwrap();
    regions(dir.path());
    let old = seal_to(dir.path(), "cn-shanghai", Suite::Sm4Gcm, b"o2-1");
    let id = keys::rotate(dir.path(), "cn-shanghai").unwrap();
    let new = seal_to(dir.path(), "cn-shanghai", Suite::Sm4Gcm, b"o2-2");
    let first: KeyId = "cn-shanghai/1".parse().unwrap();
    assert!(matches!(
        keys::retire(dir.path(), "cn-shanghai", std::slice::from_ref(&id)),
        Err(KeyError::Newest(_))
    ));
    keys::retire(dir.path(), "cn-shanghai", std::slice::from_ref(&first)).unwrap();
    let text = std::fs::read_to_string(dir.path().join("cn-shanghai.keys")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("cn-shanghai/1 retired "), "{text}");
    assert_eq!(
        lines[1].split(' ').count(),
        3,
        "a key says when it was made: {text}"
    );
    let held = FileKeys::load(dir.path(), "cn-shanghai").unwrap();
    assert_eq!(held.ids(), vec![&id]);
    assert_eq!(held.retired(), vec![&first]);
    assert!(held.made_ms(&id).is_some());
    let keys_now = opener(dir.path(), "cn-shanghai");
    assert!(matches!(
        keys_now.open(&old, b"o2-1"),
        Err(OpenError::Key(KeyError::Retired(_)))
    ));
    assert_eq!(keys_now.open(&new, b"o2-2").unwrap(), ADDRESS);
    // Numbering goes on after the retired key.
    assert_eq!(
        keys::rotate(dir.path(), "cn-shanghai").unwrap().to_string(),
        "cn-shanghai/3"
    );
    // A line with no time, as a build before wrote it.
    let sg = dir.path().join("ap-singapore.keys");
    let text = std::fs::read_to_string(&sg).unwrap();
    let (id, rest) = text.trim().split_once(' ').unwrap();
    let hex = rest.split(' ').next().unwrap();
    std::fs::write(&sg, format!("{id} {hex}\n")).unwrap();
    let loaded = FileKeys::load(dir.path(), "ap-singapore").unwrap();
    assert_eq!(loaded.made_ms(loaded.ids()[0]), None);
}

#[test]
fn key_files_are_private_and_bad_ones_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    regions(dir.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("ap-singapore.keys"), 0o600);
        assert_eq!(mode("cn-shanghai.keys"), 0o600);
    }
    // Made once: init again refuses to overwrite a region's keys.
    assert!(matches!(
        keys::init(dir.path(), &["ap-singapore".to_owned()]),
        Err(KeyError::Exists(_))
    ));
    assert!(keys::init(dir.path(), &["Bad_Region".to_owned()]).is_err());
    // `public` would name the public key file.
    assert!(matches!(
        keys::init(dir.path(), &["public".to_owned()]),
        Err(KeyError::BadRegion(_))
    ));
    // A region whose private keys went to its cores is not rotated here under a number given
    // already.
    let moved = dir.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    std::fs::rename(
        dir.path().join("cn-shanghai.keys"),
        moved.join("cn-shanghai.keys"),
    )
    .unwrap();
    assert!(matches!(
        keys::rotate(dir.path(), "cn-shanghai"),
        Err(KeyError::Elsewhere(..))
    ));
    std::fs::rename(
        moved.join("cn-shanghai.keys"),
        dir.path().join("cn-shanghai.keys"),
    )
    .unwrap();
    // A published key no secret can be shared with (a low-order point) seals nothing.
    let zero = tempfile::tempdir().unwrap();
    std::fs::write(
        zero.path().join("public.keys"),
        format!("us-east/1 {}\n", "00".repeat(32)),
    )
    .unwrap();
    let (id, key) = PublicKeys::load(zero.path())
        .unwrap()
        .newest("us-east")
        .unwrap();
    assert!(matches!(
        Sealer::new(&id, &key, Suite::Aes256Gcm),
        Err(KeyError::Unusable(_))
    ));
    // A region with no keys, a key id of no shape.
    assert!(matches!(
        PublicKeys::load(dir.path()).unwrap().newest("us-east"),
        Err(KeyError::NoRegion(_))
    ));
    assert!("ap-singapore".parse::<KeyId>().is_err());
    assert!("ap-singapore/0".parse::<KeyId>().is_err());
    assert!(matches!(
        FileKeys::load(dir.path(), "us-east"),
        Err(KeyError::Io { .. })
    ));
    // Damaged files: each names the file and the line.
    let path = dir.path().join("ap-singapore.keys");
    let good = std::fs::read_to_string(&path).unwrap();
    for (damaged, want) in [
        (good.replace(' ', "\t"), "not `<key id> <hex> [<made at>]`"),
        (good.replacen(' ', " 0", 1), "not 64 hex digits"),
        (
            good.replace('\n', " 1 2\n"),
            "not `<key id> <hex> [<made at>]`",
        ),
        (good.replace('\n', "x\n"), "bad time"),
        (
            good.replace("ap-singapore/1", "cn-shanghai/1"),
            "not region ap-singapore's",
        ),
        (format!("{good}{good}"), "given twice"),
        (
            good.replace("ap-singapore/1", "ap-singapore/x"),
            "bad key id",
        ),
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let err = FileKeys::load(dir.path(), "ap-singapore")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want) && (err.contains("line 1") || err.contains("line 2")),
            "{err}"
        );
        assert!(!err.contains(&good[15..40]), "a key in an error: {err}");
    }
    std::fs::write(&path, "").unwrap();
    assert!(matches!(
        FileKeys::load(dir.path(), "ap-singapore"),
        Err(KeyError::NoRegion(_))
    ));
}

/// The sealed format, pinned: what is stored and sent never changes under the same version.
#[test]
fn the_sealed_format_is_pinned() {
    let sealed = Sealed {
        key: "ap-singapore/3".parse().unwrap(),
        suite: Suite::Sm4Gcm,
        enc: vec![0xe5; 32],
        seq: 300,
        ciphertext: vec![0xc7; 40],
    };
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sealed-v1.hex");
    codec::check_golden(&golden, &sealed).unwrap();
    let back: Sealed = codec::decode(&codec::encode(&sealed).unwrap()).unwrap();
    assert_eq!(back, sealed);
    // A key id of no shape is refused on the way in.
    let mut bytes = codec::encode(&sealed).unwrap();
    let at = bytes
        .windows(14)
        .position(|w| w == b"ap-singapore/3")
        .unwrap();
    bytes[at + 13] = b'x';
    assert!(codec::decode::<Sealed>(&bytes).is_err());
    // Version 2: sealed data either way; version 1 reads as sealed at intake, and is what
    // intake still writes.
    let v1 = codec::encode(&sealed).unwrap();
    let intake = sealing::sealed::Seal::Intake(sealed);
    assert_eq!(codec::decode::<sealing::sealed::Seal>(&v1).unwrap(), intake);
    assert_eq!(intake.encode().unwrap(), v1);
    // Version 2: kept values, of no tree (read as tree 0).
    let v2 = sealing::sealed::v2::Seal::Kept(sealing::sealed::v2::Kept {
        period: 20_000,
        epoch: 1_733_000_000_000,
        suite: Suite::Aes256Gcm,
        salt: vec![0x5a; 16],
        ciphertext: vec![0xc7; 40],
    });
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sealed-v2.hex");
    codec::check_golden(&golden, &v2).unwrap();
    let kept = |generation| {
        sealing::sealed::Seal::Kept(sealing::shred::Kept {
            generation,
            period: 20_000,
            epoch: 1_733_000_000_000,
            suite: Suite::Aes256Gcm,
            salt: vec![0x5a; 16],
            ciphertext: vec![0xc7; 40],
        })
    };
    assert_eq!(
        codec::decode::<sealing::sealed::Seal>(&codec::encode(&v2).unwrap()).unwrap(),
        kept(0)
    );
    // Version 3: kept values name their tree.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sealed-v3.hex");
    codec::check_golden(&golden, &kept(3)).unwrap();
    let bytes = kept(3).encode().unwrap();
    assert_eq!(bytes[0], 3);
    assert_eq!(
        codec::decode::<sealing::sealed::Seal>(&bytes).unwrap(),
        kept(3)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any bytes read back as a sealed value, and any sealed value altered anywhere, are an
    /// error or a value, and never open as something else or panic.
    #[test]
    fn hostile_bytes_never_open_or_panic(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        at in proptest::prelude::any::<usize>(),
        flip in 1u8..=255,
    ) {
        let (home, good) = once();
        if let Ok(sealed) = codec::decode::<Sealed>(&noise) {
            proptest::prop_assert!(home.open(&sealed, b"o2-1").is_err());
        }
        let mut bad = good.clone();
        let i = at % bad.len();
        bad[i] ^= flip;
        if let Ok(sealed) = codec::decode::<Sealed>(&bad) {
            proptest::prop_assert!(home.open(&sealed, b"o2-1").is_err(), "byte {} altered", i);
        }
    }
}

/// For the property test's cases, made once: the home region's opener, and one sealed value's
/// bytes (which open).
fn once() -> &'static (Opener, Vec<u8>) {
    static ONCE: std::sync::OnceLock<(tempfile::TempDir, (Opener, Vec<u8>))> =
        std::sync::OnceLock::new();
    &ONCE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            regions(dir.path());
            let home = opener(dir.path(), "ap-singapore");
            let sealed = seal_to(dir.path(), "ap-singapore", Suite::Aes256Gcm, b"o2-1");
            assert_eq!(home.open(&sealed, b"o2-1").unwrap(), ADDRESS);
            let bytes = codec::encode(&sealed).unwrap();
            (dir, (home, bytes))
        })
        .1
}
