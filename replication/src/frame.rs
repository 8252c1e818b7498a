//! Frames on the wire: `[length: u32 big-endian][protocol version: u8][bincode payload]`, one
//! request and one reply per QUIC stream. The length bounds what a reader allocates before it
//! has seen a byte of payload; the version byte lets a peer refuse a protocol it does not speak
//! instead of misreading it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use codec::{CodecError, Format};

/// The protocol this build speaks: every frame's body is encoded as this format. A peer of
/// another version is refused on each stream with a message that names both; members and
/// edges of one deployment are upgraded together. Version 2: a refused write says what kind
/// of refusal it is (`WriteError::Refused`).
pub const PROTOCOL: Format = Format {
    label: "mesh frame",
    version: 2,
};

/// Largest frame accepted by default: room for a batch of log entries or a snapshot chunk.
pub const FRAME_MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame: {0}")]
    Codec(#[from] CodecError),
    #[error("stream: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream already closed")]
    Closed(#[from] quinn::ClosedStream),
}

/// Encodes `value` as one frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = codec::encode_as(PROTOCOL, value)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes the body of a frame (what follows the length).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(codec::decode_as(PROTOCOL, body)?)
}

/// Writes one encoded frame (`encode`) and finishes the stream.
pub async fn write(send: &mut quinn::SendStream, frame: &[u8]) -> Result<(), FrameError> {
    self::send(send, frame).await?;
    send.finish()?;
    Ok(())
}

/// Writes one encoded frame of a stream of frames, waiting while the peer's flow control is
/// full.
pub async fn send(send: &mut quinn::SendStream, frame: &[u8]) -> Result<(), FrameError> {
    send.write_all(frame).await?;
    Ok(())
}

/// What a frame's body is first given, at most; it grows as its bytes arrive.
const FIRST_ALLOCATION: usize = 64 * 1024;

/// Reads one frame of at most `max` bytes.
pub async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<T, FrameError> {
    read_next(recv, max)
        .await?
        .ok_or(FrameError::Read(quinn::ReadExactError::FinishedEarly(0)))
}

/// Reads the next frame of a stream of frames, at most `max` bytes; `None` when the sender
/// finished the stream between two frames.
pub async fn read_next<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        r => r?,
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // Memory is taken as the bytes arrive, not from the declared length: a peer that declares
    // 16 MiB and sends ten bytes holds ten bytes (and a first allocation), not 16 MiB.
    let mut body = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(FrameError::Read(quinn::ReadExactError::FinishedEarly(
                    body.len(),
                )));
            }
            Err(e) => return Err(FrameError::Read(quinn::ReadExactError::ReadError(e))),
        }
    }
    decode_body(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_refuse_other_versions() {
        let bytes = encode(&("hello", 42u64)).unwrap();
        assert_eq!(&bytes[..4], &((bytes.len() - 4) as u32).to_be_bytes());
        let back: (String, u64) = decode_body(&bytes[4..]).unwrap();
        assert_eq!(back, ("hello".to_owned(), 42));
        let mut other = bytes[4..].to_vec();
        other[0] = PROTOCOL.version + 1;
        assert!(matches!(
            decode_body::<(String, u64)>(&other),
            Err(FrameError::Codec(CodecError::UnknownVersion { .. }))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bodies_never_panics(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = decode_body::<(String, Vec<u64>, Option<i32>)>(&body);
            let _ = decode_body::<Vec<Vec<u8>>>(&body);
        }
    }
}
