//! Arbitrary bytes as a stored record (CommitLog record, pull-body element): `peek_header`,
//! `MessageRecord::decode` and the store's `check_record` never panic, and `check_record` accepts
//! nothing `decode` refuses;
//! a record that decodes survives encode → decode, and re-encoding a canonical record (V1 magic,
//! canonical property string) reproduces its bytes exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vostok_core::message::record::{MAGIC_V1, MAGIC_V2, RECORD_LEN_MIN};
use vostok_core::message::{peek_header, MessageRecord};
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

    // Recovery's check (the same parser plus checks on how a store ends a record) never
    // accepts what decoding refuses, and reads the same fields.
    if let Ok(verified) = check_record(bytes_of(raw)) {
        assert_eq!(
            Ok(&verified),
            checked.as_ref(),
            "check_record and decode disagree"
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

    let canonical_props =
        &raw[properties_start(&record, magic)..] == record.properties.encode().as_bytes();
    if magic == MAGIC_V1 && canonical_props && checked.is_ok() {
        assert_eq!(encoded, raw, "a canonical record re-encoded differently");
    }
});

/// Where the property string starts in a record that decoded to `record`.
fn properties_start(record: &MessageRecord, magic: i32) -> usize {
    let topic_len_field = if magic == MAGIC_V2 { 2 } else { 1 };
    let extra_host = |ipv6: bool| if ipv6 { 12 } else { 0 };
    RECORD_LEN_MIN - 1
        + topic_len_field
        + extra_host(record.born_host.is_ipv6())
        + extra_host(record.store_host.is_ipv6())
        + record.body.len()
        + record.topic.len()
}
