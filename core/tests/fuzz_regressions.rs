//! Inputs found by the fuzz targets in `fuzz/` that once broke the core, kept as tests so the
//! bugs stay fixed. Each test names the target that found it and states what went wrong.

use bytes::Bytes;
use vostok_core::message::{MessageRecord, Properties};
use vostok_core::store::commitlog::segment_path;
use vostok_core::store::{MemStorage, MessageStore, QueueOffset, SegmentStorage, StoreConfig};

const SEGMENT_BYTES: u64 = 1024;

fn config() -> StoreConfig {
    StoreConfig {
        commitlog_segment_bytes: SEGMENT_BYTES,
        consume_queue_units_per_segment: 8,
        max_message_size_bytes: 512,
        ..StoreConfig::default()
    }
}

fn record(body: &[u8]) -> MessageRecord {
    MessageRecord {
        queue_id: 0,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp_ms: 1_700_000_000_000,
        born_host: "127.0.0.1:40000".parse().unwrap(),
        store_timestamp_ms: 1_700_000_000_000,
        store_host: "127.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::copy_from_slice(body),
        topic: "TopicA".to_owned(),
        properties: Properties::new(),
    }
}

/// The bodies of every record of TopicA/0, read through `get`.
fn bodies<S: SegmentStorage>(store: &MessageStore<S>) -> Vec<Bytes> {
    let max = store.max_offset("TopicA", 0).0;
    let got = store
        .get("TopicA", 0, QueueOffset(0), 64, &|_| true)
        .expect("get");
    assert_eq!(got.records.len() as u64, max);
    got.records
        .iter()
        .map(|r| MessageRecord::decode(r, true).expect("valid record").body)
        .collect()
}

/// commitlog_recovery: a zero-length CommitLog segment file (a crash between creating the file
/// and giving it its size) was kept as the segment holding the end of the log, and every put
/// afterwards failed with "no segment holds 3072".
#[test]
fn an_empty_segment_file_does_not_wedge_appends() {
    let mut storage = MemStorage::new();
    storage.create(&segment_path(3 * SEGMENT_BYTES), 0).unwrap();
    let mut store = MessageStore::open(storage, config()).expect("open");
    let put = store
        .put(record(b"first"))
        .expect("a put after recovery succeeds");
    assert_eq!(
        put.physical_offset.0,
        3 * SEGMENT_BYTES,
        "the log still ends where it did"
    );
    let store = MessageStore::open(store.into_storage(), config()).expect("reopen");
    assert_eq!(bodies(&store), vec![Bytes::from_static(b"first")]);
}

/// commitlog_recovery: the same empty segment file, recovered twice without a put in between:
/// the end of the log must not move (deleting the file instead put the end of the log back at 0
/// at the second recovery).
#[test]
fn recovering_an_empty_segment_file_twice_keeps_the_end_of_the_log() {
    let mut storage = MemStorage::new();
    storage.create(&segment_path(2 * SEGMENT_BYTES), 0).unwrap();
    let store = MessageStore::open(storage, config()).expect("open");
    let end = store.written_offset();
    let store = MessageStore::open(store.into_storage(), config()).expect("reopen");
    assert_eq!(store.written_offset(), end);
    assert_eq!(end.0, 2 * SEGMENT_BYTES);
}

/// commitlog_recovery: a segment file shorter than a BLANK filler (8 bytes) at the end of the
/// log was kept; the first put tried to close it with a filler that did not fit, failed, and so
/// did every put after it.
#[test]
fn a_segment_shorter_than_a_filler_does_not_wedge_appends() {
    let mut storage = MemStorage::new();
    let path = segment_path(0);
    storage.create(&path, 5).unwrap();
    storage
        .write_at(&path, 0, &[0xDA, 0xA3, 0x20, 0xA7, 0x01])
        .unwrap();
    let mut store = MessageStore::open(storage, config()).expect("open");
    store
        .put(record(b"first"))
        .expect("a put after recovery succeeds");
    store.put(record(b"second")).expect("a second put succeeds");
    let store = MessageStore::open(store.into_storage(), config()).expect("reopen");
    assert_eq!(
        bodies(&store),
        vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")]
    );
}

/// commitlog_recovery: recovery accepted a record whose STOREHOST port was outside 0..=65535
/// (its body CRC still valid) and served it, though `MessageRecord::decode`, and clients, refuse
/// such a record. Recovery now ends the log before it.
#[test]
fn recovery_does_not_serve_a_record_with_an_impossible_port() {
    let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
    store.put(record(b"good")).expect("put");
    let bad = store.put(record(b"bad port")).expect("put");
    let mut storage = store.into_storage();
    // IPv4 hosts: STOREHOST is 8 bytes at 64, its port the int32 at 68.
    let port_pos = bad.physical_offset.0 + 68;
    storage
        .write_at(&segment_path(0), port_pos, &65_536i32.to_be_bytes())
        .unwrap();

    let store = MessageStore::open(storage, config()).expect("open");
    assert_eq!(bodies(&store), vec![Bytes::from_static(b"good")]);
    assert_eq!(store.read_record(bad.physical_offset).unwrap(), None);
}

/// commitlog_recovery: a record whose QUEUEOFFSET was near 2^63 made recovery compute its
/// ConsumeQueue file name as offset × 20, which overflowed (a panic with overflow checks, a
/// wrong file otherwise). Such an offset cannot come from a store; recovery ends the log there.
#[test]
fn recovery_refuses_a_queue_offset_whose_unit_position_overflows() {
    let mut store = MessageStore::open(MemStorage::new(), config()).expect("open");
    store.put(record(b"good")).expect("put");
    // The first record of its queue: nothing earlier in the queue contradicts its offset.
    let mut first_of_queue = record(b"huge offset");
    first_of_queue.queue_id = 1;
    let bad = store.put(first_of_queue).expect("put");
    let mut storage = store.into_storage();
    // QUEUEOFFSET is the int64 at 20.
    storage
        .write_at(
            &segment_path(0),
            bad.physical_offset.0 + 20,
            &(1i64 << 60).to_be_bytes(),
        )
        .unwrap();

    let store = MessageStore::open(storage, config()).expect("open");
    assert_eq!(bodies(&store), vec![Bytes::from_static(b"good")]);
    assert_eq!(store.max_offset("TopicA", 1), QueueOffset(0));
}
