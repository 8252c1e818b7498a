//! Versioned bincode values: one format-version byte, then a bincode 2 payload.
//!
//! bincode carries no field names, so a reader must know exactly which layout it reads. The
//! leading byte names it; a reader refuses a version it does not know instead of misreading it.
//! Decoding is bounded (`DECODE_LIMIT_BYTES`) so a length prefix in hostile or corrupt input
//! cannot make the reader allocate gigabytes, and trailing bytes are an error, not ignored.

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

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty input")]
    Empty,
    #[error("unknown format version {found} (this build reads {expected})")]
    UnknownVersion { found: u8, expected: u8 },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encodes `value` as format `version`.
pub fn encode<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![version];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by `encode(version, ..)`.
pub fn decode<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, CodecError> {
    let (&found, payload) = bytes.split_first().ok_or(CodecError::Empty)?;
    if found != version {
        return Err(CodecError::UnknownVersion {
            found,
            expected: version,
        });
    }
    let (value, read) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != payload.len() {
        return Err(CodecError::Trailing(payload.len() - read));
    }
    Ok(value)
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

    #[test]
    fn round_trip_and_refusals() {
        let s = Sample {
            id: "a".into(),
            items: vec![1, 2, 300],
            tag: Some(-5),
        };
        let bytes = encode(1, &s).unwrap();
        assert_eq!(decode::<Sample>(1, &bytes).unwrap(), s);
        assert_eq!(
            decode::<Sample>(2, &bytes),
            Err(CodecError::UnknownVersion {
                found: 1,
                expected: 2
            })
        );
        assert_eq!(decode::<Sample>(1, &[]), Err(CodecError::Empty));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode::<Sample>(1, &long), Err(CodecError::Trailing(1)));
        assert!(matches!(
            decode::<Sample>(1, &bytes[..bytes.len() - 1]),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        // Version 1, then a Vec<u64> length of u64::MAX in varint form.
        let mut bytes = vec![1u8, 1, b'a', 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Sample>(1, &bytes),
            Err(CodecError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Sample>(1, &bytes);
            let _ = decode::<Vec<String>>(1, &bytes);
        }
    }
}
