//! The whole-record CRC (`__CRC32#`, `enabledAppendPropCRC`) through the store: what a put
//! stores, re-puts, damage detection by [`check_record`], the key off, and the properties limit.

use std::net::SocketAddr;

use bytes::Bytes;

use super::commitlog::{check_record, segment_path};
use super::segment::MemStorage;
use super::*;
use crate::message::properties::PROPERTIES_LEN_MAX;
use crate::message::record::field_pos;
use crate::message::record_crc::{crc_digits, record_crc, CRC32_RESERVED_LEN, PROPERTY_CRC32};
use crate::message::{keys, MessageRecord, Properties, RecordError};

fn host(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn record(key: &str, extra: &[(&str, &str)]) -> MessageRecord {
    let mut properties = Properties::new();
    properties.insert(keys::KEYS, key);
    properties.insert(keys::UNIQ_KEY, format!("UNIQ-{key}"));
    properties.insert(keys::TAGS, "tagA");
    for (name, value) in extra {
        properties.insert(name, *value);
    }
    MessageRecord {
        queue_id: 1,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp_ms: 1_000,
        born_host: host("10.0.0.1:50000"),
        store_timestamp_ms: 1_001,
        store_host: host("10.0.0.2:10911"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(format!("body of {key}")),
        topic: "TopicCrc".to_string(),
        properties,
    }
}

fn config(append_prop_crc: bool) -> StoreConfig {
    StoreConfig {
        commitlog_segment_bytes: 64 * 1024,
        consume_queue_units_per_segment: 8,
        max_message_size_bytes: 4096,
        append_prop_crc,
        index: crate::store::index::IndexConfig {
            enabled: true,
            hash_slot_count: 64,
            max_index_count: 256,
        },
        ..StoreConfig::default()
    }
}

fn open(storage: MemStorage, config: &StoreConfig) -> MessageStore<MemStorage> {
    MessageStore::open(storage, config.clone()).expect("open")
}

fn stored(store: &MessageStore<MemStorage>, put: &PutResult) -> Bytes {
    let bytes = store
        .read_record(put.physical_offset)
        .expect("read")
        .expect("a valid record at the put's offset");
    assert_eq!(bytes.len(), put.size_bytes as usize);
    bytes
}

/// The names of a stored record's properties, in order.
fn names(bytes: &Bytes) -> Vec<String> {
    let decoded = MessageRecord::decode(bytes, true).expect("decodes");
    decoded
        .properties
        .iter()
        .map(|(k, _)| k.to_owned())
        .collect()
}

/// The `__CRC32#` value a record of these bytes must carry.
fn expected_crc_value(bytes: &[u8]) -> String {
    let crc = record_crc(&bytes[..bytes.len() - CRC32_RESERVED_LEN]);
    String::from_utf8(crc_digits(crc).to_vec()).expect("digits")
}

#[test]
fn a_stored_record_ends_with_one_correct_crc_property() {
    // Goal: a put stores `__CRC32#` once, last, holding the CRC of every byte before it, with
    // the offsets and store time it was given. Method: put two records, read them back.
    let mut store = open(MemStorage::new(), &config(true));
    let plain = record("k0", &[]);
    let first = store.put(plain.clone()).expect("put");
    let second = store.put(record("k1", &[])).expect("put");
    assert_eq!(
        first.size_bytes as usize,
        plain.encoded_len() + CRC32_RESERVED_LEN
    );
    for put in [&first, &second] {
        let bytes = stored(&store, put);
        let decoded = check_record(bytes.clone()).expect("verifies");
        assert_eq!(decoded.physical_offset, put.physical_offset.0 as i64);
        assert_eq!(decoded.queue_offset, put.queue_offset.0 as i64);
        assert_eq!(names(&bytes), ["KEYS", "UNIQ_KEY", "TAGS", PROPERTY_CRC32]);
        assert_eq!(
            decoded.properties.get(PROPERTY_CRC32),
            Some(expected_crc_value(&bytes).as_str())
        );
        // The trailer is the last 20 bytes, byte for byte.
        let tail = &bytes[bytes.len() - CRC32_RESERVED_LEN..];
        assert_eq!(&tail[..9], b"__CRC32#\x01");
        assert_eq!(tail[19], 0x02);
    }
    // Different offsets, different CRCs.
    let a = stored(&store, &first);
    let b = stored(&store, &second);
    assert_ne!(expected_crc_value(&a), expected_crc_value(&b));
}

#[test]
fn a_reput_record_still_carries_exactly_one_correct_crc() {
    // Goal: a record that brings `__CRC32#` along (a schedule/timer/transaction re-put or a
    // retry copies the stored properties; a producer may forward one anywhere in its
    // properties) is stored with exactly one, last, right for its new place.
    let mut store = open(MemStorage::new(), &config(true));
    let first = store.put(record("k0", &[])).expect("put");
    let copied = MessageRecord::decode(&stored(&store, &first), true).expect("decodes");
    assert!(copied.properties.contains(PROPERTY_CRC32));

    let mut reput = copied.clone();
    reput.topic = "TopicCrcRetry".to_string();
    reput.properties.insert(keys::REAL_TOPIC, "TopicCrc");
    let again = store.put(reput).expect("re-put");
    let bytes = stored(&store, &again);
    assert_eq!(
        names(&bytes),
        ["KEYS", "UNIQ_KEY", "TAGS", "REAL_TOPIC", PROPERTY_CRC32]
    );
    let decoded = check_record(bytes.clone()).expect("verifies");
    assert_eq!(
        decoded.properties.get(PROPERTY_CRC32),
        Some(expected_crc_value(&bytes).as_str())
    );

    // A stale value in the middle of the properties is dropped too.
    let forwarded = record("k2", &[(PROPERTY_CRC32, "1234567890"), ("AFTER", "x")]);
    let put = store.put(forwarded).expect("put");
    let bytes = stored(&store, &put);
    assert_eq!(
        names(&bytes),
        ["KEYS", "UNIQ_KEY", "TAGS", "AFTER", PROPERTY_CRC32]
    );
    assert!(check_record(bytes).is_ok());

    // A batch gets one per record.
    let puts = store
        .put_batch(vec![copied.clone(), record("k3", &[]), copied])
        .expect("batch");
    for put in &puts {
        let bytes = stored(&store, put);
        assert_eq!(
            names(&bytes).last().map(String::as_str),
            Some(PROPERTY_CRC32)
        );
        assert_eq!(
            names(&bytes)
                .iter()
                .filter(|n| n.as_str() == PROPERTY_CRC32)
                .count(),
            1
        );
        assert!(check_record(bytes).is_ok());
    }
}

#[test]
fn every_single_bit_flip_of_a_stored_record_is_detected() {
    // Goal: with the record CRC, damage anywhere in a record — header, body, topic, properties,
    // the trailer itself — is an error, not a record served with a wrong field. Method: flip
    // each bit of each byte of a stored record and run `check_record`.
    let mut store = open(MemStorage::new(), &config(true));
    store.put(record("k0", &[])).expect("put");
    let put = store.put(record("k1", &[])).expect("put");
    let bytes = stored(&store, &put);
    for pos in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.to_vec();
            damaged[pos] ^= 1 << bit;
            assert!(
                check_record(Bytes::from(damaged)).is_err(),
                "flip of bit {bit} at byte {pos} of {} went unnoticed",
                bytes.len()
            );
        }
    }

    // The fields BODYCRC does not cover fail on the record CRC by name.
    let body_len = "body of k1".len();
    let topic_at = 88 + body_len + 1;
    let properties_at = topic_at + "TopicCrc".len() + 2;
    for pos in [
        field_pos::QUEUE_ID,
        field_pos::FLAG,
        field_pos::QUEUE_OFFSET + 7,
        field_pos::PHYSICAL_OFFSET + 6,
        field_pos::BORN_TIMESTAMP + 7,
        56 + 7, // STORETIMESTAMP
        72 + 3, // RECONSUMETIMES
        topic_at,
        properties_at + 5, // a byte of the KEYS value
    ] {
        let mut damaged = bytes.to_vec();
        damaged[pos] ^= 0x01;
        assert!(
            matches!(
                check_record(Bytes::from(damaged)),
                Err(RecordError::RecordCrcMismatch { .. })
            ),
            "byte {pos}"
        );
    }
    // A body flip still fails on BODYCRC first.
    let mut damaged = bytes.to_vec();
    damaged[88] ^= 0x01;
    assert!(matches!(
        check_record(Bytes::from(damaged)),
        Err(RecordError::BadCrc { .. })
    ));
}

#[test]
fn a_flipped_read_makes_the_record_unreadable() {
    // Goal: a bit flipped on the way from the disk (the simulator's fault) in a field BODYCRC
    // does not cover is caught where the store reads records. Method: flip reads of each byte
    // of a stored record in turn; `read_record` must refuse it, and serve it again once the
    // fault is gone.
    let mut store = open(MemStorage::new(), &config(true));
    let put = store.put(record("k0", &[])).expect("put");
    let offset = put.physical_offset;
    let path = segment_path(0);
    for pos in 0..put.size_bytes as u64 {
        store
            .storage_mut()
            .flip_on_read(&path, offset.0 + pos, 0x10);
        assert_eq!(store.read_record(offset).expect("read"), None, "byte {pos}");
        store.storage_mut().flip_on_read(&path, offset.0 + pos, 0);
    }
    assert!(store.read_record(offset).expect("read").is_some());
}

#[test]
fn with_the_key_off_records_carry_no_crc_and_old_records_still_pass() {
    // Goal: `enabledAppendPropCRC=false` stores records as before (no `__CRC32#`, one brought
    // along is dropped); such records, and a log mixing both kinds, verify and recover.
    let mut store = open(MemStorage::new(), &config(false));
    let plain = record("k0", &[]);
    let put = store.put(plain.clone()).expect("put");
    assert_eq!(put.size_bytes as usize, plain.encoded_len());
    let bytes = stored(&store, &put);
    assert_eq!(names(&bytes), ["KEYS", "UNIQ_KEY", "TAGS"]);
    assert_eq!(
        &bytes[..],
        &{
            let mut expected = plain.clone();
            expected.physical_offset = put.physical_offset.0 as i64;
            expected.queue_offset = put.queue_offset.0 as i64;
            expected.encode_to_vec().expect("encodes")
        }[..]
    );
    let brought = store
        .put(record("k1", &[(PROPERTY_CRC32, "1234567890")]))
        .expect("put");
    let old_bytes = stored(&store, &brought);
    assert_eq!(names(&old_bytes), ["KEYS", "UNIQ_KEY", "TAGS"]);
    assert!(check_record(old_bytes.clone()).is_ok());

    // Reopen with the key on: the old records recover and read; new ones get the property.
    let storage = store.into_storage();
    let mut store = open(storage, &config(true));
    assert_eq!(store.max_offset("TopicCrc", 1), QueueOffset(2));
    assert_eq!(stored(&store, &put), bytes);
    let new = store.put(record("k2", &[])).expect("put");
    assert_eq!(
        names(&stored(&store, &new)).last().map(String::as_str),
        Some(PROPERTY_CRC32)
    );
    let storage = store.into_storage();
    let store = open(storage, &config(true));
    assert_eq!(store.max_offset("TopicCrc", 1), QueueOffset(3));
    // Every record verified, nothing truncated.
    let report = store.recovery_report();
    assert_eq!(report.end, store.written_offset());
    assert_eq!(report.bytes_truncated, 0);
    assert!(
        report
            .entries
            .iter()
            .all(|e| e.level == RecoveryLevel::Info),
        "{:#?}",
        report.entries
    );

    // Old records get the body CRC only: a header flip there is not detectable (why the key
    // is on by default).
    let mut damaged = old_bytes.to_vec();
    damaged[field_pos::QUEUE_OFFSET + 7] ^= 0x01;
    assert!(check_record(Bytes::from(damaged)).is_ok());
}

#[test]
fn the_properties_limit_counts_the_crc_property() {
    // Goal: the 32767-byte properties limit holds with the 20 trailer bytes counted: a record
    // whose own properties leave less than 20 bytes is refused, and nothing is stored.
    let mut store = open(MemStorage::new(), &config(true));
    let base = record("k0", &[]).properties.encoded_len();
    // "PAD" 01 value 02 takes 5 bytes besides the value.
    let fits = PROPERTIES_LEN_MAX - CRC32_RESERVED_LEN - base - 5;
    let written = store.written_offset();
    let err = store
        .put(record("k0", &[("PAD", &"v".repeat(fits + 1))]))
        .expect_err("one byte too many");
    assert_eq!(
        err,
        StoreError::Record(RecordError::PropertiesTooLong(PROPERTIES_LEN_MAX + 1))
    );
    assert_eq!(store.written_offset(), written);
    let put = store
        .put(record("k0", &[("PAD", &"v".repeat(fits))]))
        .expect("exactly at the limit");
    let bytes = stored(&store, &put);
    let decoded = check_record(bytes).expect("verifies");
    assert_eq!(decoded.properties.encoded_len(), PROPERTIES_LEN_MAX);

    // With the key off the same record fits.
    let mut store = open(MemStorage::new(), &config(false));
    assert!(store
        .put(record("k0", &[("PAD", &"v".repeat(fits + 1))]))
        .is_ok());
}

#[cfg(feature = "defects")]
#[test]
fn the_skip_recovery_crc_defect_skips_the_record_crc_too() {
    // Goal: the deliberate defect still lets a damaged record through recovery when the damage
    // is outside the body, so the simulator's checkers keep something to catch. Method: damage a
    // property byte of the un-synced last record, recover with and without the defect, and see
    // whether the queue still holds the record (read raw, as the simulator's read-back does).
    fn scenario(defects: crate::defects::Defects) -> (QueueOffset, Option<String>) {
        let config = StoreConfig {
            defects,
            ..config(true)
        };
        let mut store = open(MemStorage::new(), &config);
        store.put(record("k0", &[])).expect("put");
        store.sync_inline().expect("sync");
        let put = store.put(record("k1", &[])).expect("put");
        let bytes = stored(&store, &put);
        let uniq_at = bytes
            .windows(b"UNIQ-k1".len())
            .position(|w| w == b"UNIQ-k1")
            .expect("the UNIQ_KEY value");
        let mut storage = store.into_storage();
        storage
            .flip_bit(&segment_path(0), put.physical_offset.0 + uniq_at as u64, 0)
            .expect("flip"); // 'U' (0x55) becomes 'T'
        let store = open(storage, &config);
        // Whatever recovery kept, a verified read never serves the damaged record.
        let verified = store
            .get("TopicCrc", 1, QueueOffset(1), 1, &|_| true)
            .expect("get");
        assert!(verified.records.is_empty());
        // The raw read-back shows what recovery kept.
        let got = store
            .get_unverified("TopicCrc", 1, QueueOffset(1), 1, &|_| true)
            .expect("get");
        let uniq = got.records.first().map(|raw| {
            let decoded = MessageRecord::decode(raw, false).expect("decodes");
            decoded
                .properties
                .get(keys::UNIQ_KEY)
                .unwrap_or("")
                .to_owned()
        });
        (store.max_offset("TopicCrc", 1), uniq)
    }
    assert_eq!(
        scenario(crate::defects::Defects::NONE),
        (QueueOffset(1), None)
    );
    assert_eq!(
        scenario(crate::defects::Defects::NONE.with_skip_recovery_crc(true)),
        (QueueOffset(2), Some("TNIQ-k1".to_owned()))
    );
}
