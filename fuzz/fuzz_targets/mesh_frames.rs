//! Bytes from a peer over QUIC, read as every mesh message and every value the Raft log keeps
//! (`replication::decoders`): nothing may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = replication::decoders::read_all(data);
});
