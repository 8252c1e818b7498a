//! Bytes read back from a store, an outbox or the wire as every commerce format
//! (`commerce::format::read_as`): the first byte picks the format, the rest is the record.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let labels = commerce::format::LABELS;
    let label = labels[usize::from(pick) % labels.len()];
    let _ = commerce::format::read_as(label, bytes);
});
