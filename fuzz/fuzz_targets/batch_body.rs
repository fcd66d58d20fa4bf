//! Arbitrary bytes as a SEND_BATCH_MESSAGE body: `decode_batch` returns entries or an error and
//! never panics; decoded entries survive encode → decode; a body whose entries are canonical
//! (MAGICCODE and BODYCRC zero, canonical property strings) re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vostok_core::message::{decode_batch, encode_batch, BatchEntry};
use vostok_fuzz::bytes_of;

fuzz_target!(|data: &[u8]| {
    let body = bytes_of(data);
    let Ok(entries) = decode_batch(&body) else {
        return;
    };
    let total: usize = entries.iter().map(|e| e.encoded_len()).sum();
    let encoded = encode_batch(&entries).expect("decoded entries can be encoded");
    assert_eq!(
        encoded.len(),
        total,
        "encoded_len disagrees with encode_batch"
    );
    let again = decode_batch(&bytes_of(&encoded)).expect("an encoded batch decodes");
    assert_eq!(again, entries, "batch changed across encode/decode");
    if canonical(data, &entries) {
        assert_eq!(encoded, data, "a canonical batch re-encoded differently");
    }
});

/// Whether the body is what `encode_batch` writes for `entries`: MAGICCODE and BODYCRC zero and
/// every property string canonical. Called only on bodies that decoded to `entries`.
fn canonical(data: &[u8], entries: &[BatchEntry]) -> bool {
    let mut pos = 0;
    for entry in entries {
        let word =
            |at: usize| i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let size = word(pos) as usize;
        if data[pos + 4..pos + 12].iter().any(|b| *b != 0) {
            return false;
        }
        let body_len = word(pos + 16) as usize;
        let props = &data[pos + 20 + body_len + 2..pos + size];
        if props != entry.properties.encode().as_bytes() {
            return false;
        }
        pos += size;
    }
    true
}
