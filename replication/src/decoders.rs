//! Every decoder of bytes this crate takes from outside, at once: a frame's body read as every
//! message a peer could claim it to be, and every value the Raft log and its meta store. What
//! the hostile-bytes tests and the fuzz targets (`fuzz/`) feed; each must answer a value or an
//! error, never panic, and allocate no more than the bytes allow.

use crate::frame::decode_body;
use crate::protocol::{Entry, FeedMessage, MeshRequest, MeshResponse};
use crate::raft::{LOG, RaftMeta};

/// Reads `bytes` as everything a peer or the log could hand over; how many readings gave a
/// value.
pub fn read_all(bytes: &[u8]) -> usize {
    [
        decode_body::<MeshRequest>(bytes).is_ok(),
        decode_body::<MeshResponse>(bytes).is_ok(),
        decode_body::<FeedMessage>(bytes).is_ok(),
        codec::decode_as::<Entry>(LOG, bytes).is_ok(),
        codec::decode_as::<openraft::Vote<u64>>(LOG, bytes).is_ok(),
        codec::decode_as::<openraft::LogId<u64>>(LOG, bytes).is_ok(),
        codec::decode::<RaftMeta>(bytes).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}
