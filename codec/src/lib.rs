//! The one encoding of everything Tradewind stores or sends: a format-version byte, then a
//! bincode 2 payload.
//!
//! bincode carries no field names, so a reader must know exactly which layout it reads. Every
//! stored or sent type says which it is, once, by implementing [`Versioned`]: a label for
//! messages and the version byte this build writes. A reader refuses a version it does not know
//! instead of misreading it, and reads the versions before its own through
//! [`Versioned::Previous`] and [`Versioned::migrate`], one step at a time, so a store or a peer
//! written by the previous build stays readable.
//!
//! Types whose first version is current implement [`FirstVersion`] instead. To change such a
//! type: copy it, as it is, into a frozen module (`v1`) where it never changes again; make the
//! new type implement `Versioned` with the next version, `Previous` the frozen copy, and
//! `migrate` from it; pin both versions with golden bytes. Types of other crates (openraft's log
//! entries) are encoded under a [`Format`] with [`encode_as`] and [`decode_as`].
//!
//! Decoding is bounded (`DECODE_LIMIT_BYTES`) so a length prefix in hostile or corrupt input
//! cannot make the reader allocate gigabytes, and trailing bytes are an error, not ignored.

#![forbid(unsafe_code)]

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most bytes one decoded value may claim. Large enough for the largest batch a command may
/// carry (10,000 price changes, 1,000 orders), small enough that a corrupt length cannot
/// exhaust memory.
pub const DECODE_LIMIT_BYTES: usize = 64 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

/// What a value is and which layout of it: the label names it in messages, the version byte
/// leads its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub label: &'static str,
    pub version: u8,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.label, self.version)
    }
}

/// Why bytes could not be decoded, or a value encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{label}: empty input")]
    Empty { label: &'static str },
    #[error("{label}: unknown format version {found} (this build reads {reads})")]
    UnknownVersion {
        label: &'static str,
        found: u8,
        reads: String,
    },
    #[error("{label}: malformed payload: {why}")]
    Malformed { label: &'static str, why: String },
    #[error("{label}: {trailing} trailing bytes after the value")]
    Trailing {
        label: &'static str,
        trailing: usize,
    },
    #[error("{label}: cannot encode: {why}")]
    Encode { label: &'static str, why: String },
}

/// A type that is stored or sent: its format, and how to read the version before it.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The label and the version this build writes.
    const FORMAT: Format;
    /// The type this one was before (`NoPrevious` for a first version).
    type Previous: Versioned;
    /// This version made from the one before.
    fn migrate(previous: Self::Previous) -> Self;
}

/// A type at its first version: nothing to migrate from.
pub trait FirstVersion: Serialize + DeserializeOwned {
    const FORMAT: Format;
}

impl<T: FirstVersion> Versioned for T {
    const FORMAT: Format = <T as FirstVersion>::FORMAT;
    type Previous = NoPrevious;
    fn migrate(previous: NoPrevious) -> Self {
        match previous {}
    }
}

/// Before the first version: never read (version 0 is never written).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum NoPrevious {}

impl Versioned for NoPrevious {
    const FORMAT: Format = Format {
        label: "nothing",
        version: 0,
    };
    type Previous = NoPrevious;
    fn migrate(previous: NoPrevious) -> Self {
        previous
    }
}

/// Encodes `value` in its current format.
pub fn encode<T: Versioned>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_as(T::FORMAT, value)
}

/// Decodes a value written in its current format or any earlier one it migrates from.
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&found, payload) = bytes.split_first().ok_or(CodecError::Empty {
        label: T::FORMAT.label,
    })?;
    decode_version::<T>(found, payload).ok_or_else(|| CodecError::UnknownVersion {
        label: T::FORMAT.label,
        found,
        reads: readable::<T>(),
    })?
}

/// A value at the start of `bytes`, in any version `T` reads, and how many bytes it took; what
/// follows it is left. For searching raw bytes (a disk, a file) for values of a kind, as the
/// tests that show no copy of a shopper's address opens after an erasure do.
pub fn decode_leading<T: Versioned>(bytes: &[u8]) -> Option<(T, usize)> {
    let (&found, payload) = bytes.split_first()?;
    leading_version::<T>(found, payload)
}

fn leading_version<T: Versioned>(found: u8, payload: &[u8]) -> Option<(T, usize)> {
    if T::FORMAT.version == 0 {
        return None;
    }
    if found == T::FORMAT.version {
        let (value, read) = bincode::serde::decode_from_slice(payload, config()).ok()?;
        return Some((value, read + 1));
    }
    leading_version::<T::Previous>(found, payload).map(|(v, n)| (T::migrate(v), n))
}

/// `T` from a payload of version `found`, reading it as the version that wrote it and
/// migrating forward; `None` when no version in `T`'s history is `found`.
fn decode_version<T: Versioned>(found: u8, payload: &[u8]) -> Option<Result<T, CodecError>> {
    if T::FORMAT.version == 0 {
        return None;
    }
    if found == T::FORMAT.version {
        return Some(body(T::FORMAT, payload));
    }
    decode_version::<T::Previous>(found, payload).map(|r| r.map(T::migrate))
}

/// The versions `T` reads, newest first: "3, 2, 1".
fn readable<T: Versioned>() -> String {
    if T::FORMAT.version == 0 {
        return String::new();
    }
    let older = readable::<T::Previous>();
    if older.is_empty() {
        T::FORMAT.version.to_string()
    } else {
        format!("{}, {older}", T::FORMAT.version)
    }
}

/// Encodes `value` as `format`: for types of other crates, which cannot implement `Versioned`
/// here.
pub fn encode_as<T: Serialize>(format: Format, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![format.version];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| {
        CodecError::Encode {
            label: format.label,
            why: e.to_string(),
        }
    })?;
    Ok(out)
}

/// Decodes a value written by `encode_as(format, ..)`.
pub fn decode_as<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T, CodecError> {
    let (&found, payload) = bytes.split_first().ok_or(CodecError::Empty {
        label: format.label,
    })?;
    if found != format.version {
        return Err(CodecError::UnknownVersion {
            label: format.label,
            found,
            reads: format.version.to_string(),
        });
    }
    body(format, payload)
}

fn body<T: DeserializeOwned>(format: Format, payload: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(payload, config()).map_err(|e| {
        CodecError::Malformed {
            label: format.label,
            why: e.to_string(),
        }
    })?;
    if read != payload.len() {
        return Err(CodecError::Trailing {
            label: format.label,
            trailing: payload.len() - read,
        });
    }
    Ok(value)
}

/// Lower-case hex of `bytes`, for golden-bytes tests and messages.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Bytes of lower-case or upper-case hex, ignoring whitespace; `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let d = |c: u8| char::from(c).to_digit(16);
            u8::try_from(d(pair[0])? * 16 + d(pair[1])?).ok()
        })
        .collect()
}

/// Why a value does not match its golden file.
#[cfg(feature = "golden")]
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("{}: {source}; a new format's golden file is written with UPDATE_GOLDEN=1", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not hex", path.display())]
    NotHex { path: std::path::PathBuf },
    #[error(
        "{format} ({type_name}) encodes differently from its golden bytes in {}:\n  kept: {kept}\n  now:  {now}\n\
         A stored or sent layout changed: give the type a new version with a migration \
         (codec's module docs), and a golden file of its own.",
        path.display()
    )]
    Changed {
        format: Format,
        type_name: &'static str,
        path: std::path::PathBuf,
        kept: String,
        now: String,
    },
    #[error("{}: the golden bytes decode to {back}, not {value}", path.display())]
    DecodesOtherwise {
        path: std::path::PathBuf,
        back: String,
        value: String,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Checks that `value` encodes to exactly the bytes kept in the golden file at `path` (hex),
/// and that those bytes decode back to `value`: a change to a stored or sent layout fails here
/// instead of silently changing what is on disk and on the wire. With `UPDATE_GOLDEN=1` in the
/// environment a missing file is written (for a new format version; an existing file is the
/// record of a version already shipped and never changes).
#[cfg(feature = "golden")]
pub fn check_golden<T: Versioned + PartialEq + fmt::Debug>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), GoldenError> {
    check_golden_as(T::FORMAT, path, value)
}

/// Every golden file (`*.hex`) in `dir`, by name (without `.hex`), with its bytes, in name
/// order: real, whole values of every kind a crate stores or sends, for tests that feed its
/// decoders damaged copies of them (`damaged`).
#[cfg(feature = "golden")]
pub fn golden_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .filter_map(|p| {
            let name = p.file_stem()?.to_string_lossy().into_owned();
            let bytes = unhex(&std::fs::read_to_string(&p).ok()?)?;
            Some((name, bytes))
        })
        .collect();
    out.sort();
    out
}

/// `bytes` with the bytes at `edits` changed (positions taken modulo the length), cut to
/// `cut` (modulo the length plus one), and `grow` appended: what a fuzzing test feeds a
/// decoder from one real value.
#[cfg(feature = "golden")]
pub fn damaged(bytes: &[u8], edits: &[(usize, u8)], cut: usize, grow: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        for &(at, b) in edits {
            let i = at % out.len();
            out[i] = b;
        }
    }
    out.truncate(cut % (out.len() + 1));
    out.extend_from_slice(grow);
    out
}

/// `check_golden` for a value encoded with `encode_as(format, ..)`.
#[cfg(feature = "golden")]
pub fn check_golden_as<T>(
    format: Format,
    path: &std::path::Path,
    value: &T,
) -> Result<(), GoldenError>
where
    T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
{
    let bytes = encode_as(format, value)?;
    if std::env::var_os("UPDATE_GOLDEN").is_some() && !path.exists() {
        std::fs::write(path, hex(&bytes) + "\n").map_err(|source| GoldenError::Write {
            path: path.to_owned(),
            source,
        })?;
    }
    let kept = std::fs::read_to_string(path).map_err(|source| GoldenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let kept = unhex(&kept).ok_or_else(|| GoldenError::NotHex {
        path: path.to_owned(),
    })?;
    if kept != bytes {
        return Err(GoldenError::Changed {
            format,
            type_name: std::any::type_name::<T>(),
            path: path.to_owned(),
            kept: hex(&kept),
            now: hex(&bytes),
        });
    }
    let back: T = decode_as(format, &kept)?;
    if &back != value {
        return Err(GoldenError::DecodesOtherwise {
            path: path.to_owned(),
            back: format!("{back:?}"),
            value: format!("{value:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: String,
        items: Vec<u64>,
        tag: Option<i64>,
    }

    impl FirstVersion for Sample {
        const FORMAT: Format = Format {
            label: "sample",
            version: 1,
        };
    }

    /// The next version of `Sample`: a field added, and one renamed.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct SampleV2 {
        id: String,
        items: Vec<u64>,
        label: Option<i64>,
        note: String,
    }

    impl Versioned for SampleV2 {
        const FORMAT: Format = Format {
            label: "sample",
            version: 2,
        };
        type Previous = Sample;
        fn migrate(p: Sample) -> Self {
            SampleV2 {
                id: p.id,
                items: p.items,
                label: p.tag,
                note: "migrated".into(),
            }
        }
    }

    /// A value found at the start of raw bytes, in its version or an earlier one, with its
    /// length; bytes of no value are none.
    #[test]
    fn a_value_is_read_from_the_start_of_raw_bytes() {
        let v1 = Sample {
            id: "a".into(),
            items: vec![1, 2],
            tag: Some(-3),
        };
        let mut raw = encode(&v1).unwrap();
        let n = raw.len();
        raw.extend_from_slice(b"and more");
        let (v2, read) = decode_leading::<SampleV2>(&raw).unwrap();
        assert_eq!(read, n);
        assert_eq!(v2.label, Some(-3));
        assert!(decode_leading::<SampleV2>(&[9, 1, 2]).is_none());
        assert!(decode_leading::<SampleV2>(&[]).is_none());
    }

    /// And a third, which migrates from the second, and through it from the first.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct SampleV3 {
        id: String,
        count: usize,
    }

    impl Versioned for SampleV3 {
        const FORMAT: Format = Format {
            label: "sample",
            version: 3,
        };
        type Previous = SampleV2;
        fn migrate(p: SampleV2) -> Self {
            SampleV3 {
                id: p.id,
                count: p.items.len(),
            }
        }
    }

    fn sample() -> Sample {
        Sample {
            id: "a".into(),
            items: vec![1, 2, 300],
            tag: Some(-5),
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let s = sample();
        let bytes = encode(&s).unwrap();
        assert_eq!(bytes[0], 1);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(
            decode::<Sample>(&other),
            Err(CodecError::UnknownVersion {
                label: "sample",
                found: 9,
                reads: "1".into()
            })
        );
        assert_eq!(
            decode::<Sample>(&[]),
            Err(CodecError::Empty { label: "sample" })
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode::<Sample>(&long),
            Err(CodecError::Trailing {
                label: "sample",
                trailing: 1
            })
        );
        assert!(matches!(
            decode::<Sample>(&bytes[..bytes.len() - 1]),
            Err(CodecError::Malformed { .. })
        ));
        // Version 0 is never a real version, even of a type whose history ends there.
        other[0] = 0;
        assert!(matches!(
            decode::<Sample>(&other),
            Err(CodecError::UnknownVersion { found: 0, .. })
        ));
    }

    #[test]
    fn earlier_versions_are_read_and_migrated_step_by_step() {
        let v1 = encode(&sample()).unwrap();
        let v2: SampleV2 = decode(&v1).unwrap();
        assert_eq!(
            v2,
            SampleV2 {
                id: "a".into(),
                items: vec![1, 2, 300],
                label: Some(-5),
                note: "migrated".into()
            }
        );
        let v3: SampleV3 = decode(&v1).unwrap();
        assert_eq!(
            v3,
            SampleV3 {
                id: "a".into(),
                count: 3
            }
        );
        let from_v2: SampleV3 = decode(&encode(&v2).unwrap()).unwrap();
        assert_eq!(from_v2, v3);
        // A newer version is refused by an older reader, naming what it reads.
        let v3_bytes = encode(&v3).unwrap();
        assert_eq!(
            decode::<SampleV2>(&v3_bytes),
            Err(CodecError::UnknownVersion {
                label: "sample",
                found: 3,
                reads: "2, 1".into()
            })
        );
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        // Version 1, then a Vec<u64> length of u64::MAX in varint form.
        let mut bytes = vec![1u8, 1, b'a', 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("0A ff\n"), Some(vec![10, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[cfg(feature = "golden")]
    #[test]
    fn golden_files_catch_a_changed_layout() {
        let dir = std::env::temp_dir().join(format!("codec-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sample-v1.hex");
        std::fs::write(&path, hex(&encode(&sample()).unwrap())).unwrap();
        check_golden(&path, &sample()).unwrap();
        let mut changed = sample();
        changed.items.push(4);
        let err = check_golden(&path, &changed).unwrap_err();
        assert!(matches!(err, GoldenError::Changed { .. }), "{err}");
        assert!(err.to_string().contains("encodes differently"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Sample>(&bytes);
            let _ = decode::<SampleV3>(&bytes);
            let _ = decode_as::<Vec<String>>(Format { label: "strings", version: 1 }, &bytes);
        }
    }
}
