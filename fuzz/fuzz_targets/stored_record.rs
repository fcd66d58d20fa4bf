//! Arbitrary bytes as a stored record (CommitLog record, pull-body element): `peek_header`,
//! `MessageRecord::decode` and the store's `check_record` never panic and agree with each other;
//! a record that decodes survives encode → decode, and re-encoding a canonical record (V1 magic,
//! canonical property string) reproduces its bytes exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vostok_core::message::record::{MAGIC_V1, MAGIC_V2};
use vostok_core::message::{peek_header, MessageRecord, Properties};
use vostok_core::store::commitlog::check_record;
use vostok_fuzz::bytes_of;

fuzz_target!(|data: &[u8]| {
    let buf = bytes_of(data);
    let Ok((total_size, magic)) = peek_header(&buf) else {
        assert!(data.len() < 8, "peek_header refused 8 or more bytes");
        assert!(MessageRecord::decode(&buf, false).is_err());
        return;
    };
    let unchecked = MessageRecord::decode(&buf, false);
    let checked = MessageRecord::decode(&buf, true);
    if checked.is_ok() {
        assert_eq!(checked, unchecked, "the CRC check changed a decoded record");
    }
    let Ok(record) = unchecked else {
        return;
    };
    assert!(magic == MAGIC_V1 || magic == MAGIC_V2);
    let total = total_size as usize;
    let raw = &data[..total];

    if let Ok(checked) = &checked {
        // A record a client would accept is one recovery accepts, with the same fields.
        let meta = check_record(raw).unwrap_or_else(|e| panic!("check_record refused: {e}"));
        assert_eq!(meta.total_size_bytes, total_size);
        assert_eq!(meta.queue_id, checked.queue_id);
        assert_eq!(meta.queue_offset, checked.queue_offset);
        assert_eq!(meta.physical_offset, checked.physical_offset);
        assert_eq!(meta.store_timestamp_ms, checked.store_timestamp_ms);
        assert_eq!(meta.topic, checked.topic);
        assert_eq!(
            Properties::parse(&String::from_utf8_lossy(meta.properties)),
            checked.properties
        );
    }

    let encoded = record
        .encode_to_vec()
        .expect("a decoded record can be encoded");
    let again =
        MessageRecord::decode(&bytes_of(&encoded), true).expect("an encoded record decodes");
    let mut expected = record.clone();
    if checked.is_err() {
        // Encoding computes the CRC afresh, so only the stored one may differ.
        expected = again.clone();
        assert_eq!(again.body, record.body);
    }
    assert_eq!(again, expected, "record changed across encode/decode");

    let props_raw = check_record_props(raw);
    let canonical_props = props_raw.as_deref() == Some(record.properties.encode().as_bytes());
    if magic == MAGIC_V1 && canonical_props && checked.is_ok() {
        assert_eq!(encoded, raw, "a canonical record re-encoded differently");
    }
});

/// The raw property bytes of a record that passes `check_record`.
fn check_record_props(raw: &[u8]) -> Option<Vec<u8>> {
    check_record(raw).ok().map(|meta| meta.properties.to_vec())
}
