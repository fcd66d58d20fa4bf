//! Store tests over [`MemStorage`]: round trips, segment rolls, recovery and pull semantics.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use proptest::prelude::*;

use super::commitlog::{self, CommitLog};
use super::consume_queue::{self, CqUnit};
use super::*;
use crate::message::record::{MAGIC_BLANK, MAGIC_V1};
use crate::message::{keys, tag_hash_code, MessageRecord, Properties};

fn host(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn record(
    topic: &str,
    queue_id: i32,
    body: &[u8],
    tag: Option<&str>,
    store_ms: i64,
) -> MessageRecord {
    let mut properties = Properties::new();
    if let Some(tag) = tag {
        properties.insert(keys::TAGS, tag);
    }
    properties.insert(keys::UNIQ_KEY, format!("KEY{}", body.len()));
    MessageRecord {
        queue_id,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp_ms: store_ms - 1,
        born_host: host("10.0.0.1:50000"),
        store_timestamp_ms: store_ms,
        store_host: host("10.0.0.2:10911"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::copy_from_slice(body),
        topic: topic.to_string(),
        properties,
    }
}

fn small_config() -> StoreConfig {
    StoreConfig {
        commitlog_segment_bytes: 4096,
        consume_queue_units_per_segment: 8,
        max_message_size_bytes: 1024,
        index: small_index(),
        ..StoreConfig::default()
    }
}

/// Index files small enough for MemStorage.
fn small_index() -> crate::store::index::IndexConfig {
    crate::store::index::IndexConfig {
        enabled: true,
        hash_slot_count: 64,
        max_index_count: 256,
    }
}

fn open(storage: MemStorage, config: &StoreConfig) -> MessageStore<MemStorage> {
    MessageStore::open(storage, config.clone()).expect("open")
}

fn reopen(store: MessageStore<MemStorage>) -> MessageStore<MemStorage> {
    let config = store.config().clone();
    open(store.into_storage(), &config)
}

fn accept_all(_: i64) -> bool {
    true
}

/// Every record of a queue, read with repeated pulls.
fn read_queue(store: &MessageStore<MemStorage>, topic: &str, queue_id: i32) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = store.min_offset(topic, queue_id);
    loop {
        let got = store
            .get(topic, queue_id, offset, 32, &accept_all)
            .expect("get");
        if got.status != GetStatus::Found {
            break;
        }
        out.extend(got.records);
        offset = got.next_begin_offset;
    }
    out
}

/// Everything a client could observe: per queue min, max and records; the write position.
type Snapshot = (BTreeMap<(String, i32), (u64, u64, Vec<Bytes>)>, u64);

fn snapshot(store: &MessageStore<MemStorage>) -> Snapshot {
    let mut queues = BTreeMap::new();
    let topics: Vec<String> = store.topics().map(str::to_string).collect();
    for topic in topics {
        for queue_id in store.queue_ids(&topic) {
            queues.insert(
                (topic.clone(), queue_id),
                (
                    store.min_offset(&topic, queue_id).0,
                    store.max_offset(&topic, queue_id).0,
                    read_queue(store, &topic, queue_id),
                ),
            );
        }
    }
    (queues, store.written_offset().0)
}

fn decode(bytes: &Bytes) -> MessageRecord {
    MessageRecord::decode(bytes, true).expect("stored record decodes")
}

#[test]
fn mem_storage_files_and_dirs() {
    // Goal: MemStorage behaves like a file system of fixed-size files. Method: exercise every
    // trait call, including out-of-bounds accesses and the synced-length bookkeeping.
    let mut s = MemStorage::new();
    s.create("a/b/f1", 10).unwrap();
    s.create("a/f0", 4).unwrap();
    s.create("a/c/d/f2", 1).unwrap();
    assert_eq!(
        s.create("a/f0", 4),
        Err(StorageError::AlreadyExists("a/f0".into()))
    );
    assert_eq!(s.list("a").unwrap(), vec!["f0".to_string()]);
    assert_eq!(
        s.list_dirs("a").unwrap(),
        vec!["b".to_string(), "c".to_string()]
    );
    assert_eq!(s.list_dirs("").unwrap(), vec!["a".to_string()]);
    assert!(s.list("missing").unwrap().is_empty());
    s.write_at("a/b/f1", 2, b"xyz").unwrap();
    let mut buf = [0u8; 5];
    s.read_at("a/b/f1", 1, &mut buf).unwrap();
    assert_eq!(&buf, b"\0xyz\0");
    assert!(matches!(
        s.write_at("a/b/f1", 8, b"xyz"),
        Err(StorageError::OutOfBounds { .. })
    ));
    assert!(matches!(
        s.read_at("a/b/f1", u64::MAX, &mut buf),
        Err(StorageError::OutOfBounds { .. })
    ));
    assert_eq!(s.synced_len("a/b/f1"), Some(0));
    s.sync("a/b/f1", 0, 6).unwrap();
    s.sync("a/b/f1", 8, 10).unwrap(); // leaves a gap: the durable prefix stays 6
    assert_eq!(s.synced_len("a/b/f1"), Some(6));
    s.truncate("a/b/f1", 3).unwrap();
    assert_eq!(s.len("a/b/f1").unwrap(), 3);
    assert_eq!(s.synced_len("a/b/f1"), Some(3));
    s.delete("a/b/f1").unwrap();
    assert_eq!(
        s.delete("a/b/f1"),
        Err(StorageError::NotFound("a/b/f1".into()))
    );
    assert_eq!(s.list_dirs("a").unwrap(), vec!["c".to_string()]);
    assert_eq!(s.read_all("config/x.json").unwrap(), None);
    s.replace("config/x.json", b"{}").unwrap();
    assert_eq!(s.read_all("config/x.json").unwrap(), Some(b"{}".to_vec()));
    assert_eq!(s.synced_len("config/x.json"), Some(2));
}

#[test]
fn store_put_get_round_trip_over_many_queues() {
    // Goal: every put comes back verbatim from its own queue with the offsets the put reported.
    // Method: 3 topics × 4 queues, 120 puts round robin, then read each queue and decode.
    let config = StoreConfig {
        index: small_index(),
        ..StoreConfig::default()
    };
    let mut store = open(MemStorage::new(), &config);
    let mut expected: BTreeMap<(String, i32), Vec<PutResult>> = BTreeMap::new();
    for i in 0..120u32 {
        let topic = format!("Topic{}", i % 3);
        let queue_id = (i / 3 % 4) as i32;
        let body = format!("body-{i}");
        let put = store
            .put(record(
                &topic,
                queue_id,
                body.as_bytes(),
                Some("tagA"),
                1000 + i as i64,
            ))
            .unwrap();
        expected.entry((topic, queue_id)).or_default().push(put);
    }
    for ((topic, queue_id), puts) in &expected {
        assert_eq!(
            store.max_offset(topic, *queue_id),
            QueueOffset(puts.len() as u64)
        );
        assert_eq!(store.min_offset(topic, *queue_id), QueueOffset(0));
        let records = read_queue(&store, topic, *queue_id);
        assert_eq!(records.len(), puts.len());
        for (n, (bytes, put)) in records.iter().zip(puts).enumerate() {
            let got = decode(bytes);
            assert_eq!(put.queue_offset, QueueOffset(n as u64));
            assert_eq!(got.queue_offset, n as i64);
            assert_eq!(got.physical_offset, put.physical_offset.0 as i64);
            assert_eq!(got.topic, *topic);
            assert_eq!(got.queue_id, *queue_id);
            assert_eq!(got.properties.get(keys::TAGS), Some("tagA"));
            assert_eq!(bytes.len() as u32, put.size_bytes);
            assert_eq!(got.store_timestamp_ms, put.store_timestamp_ms);
            assert_eq!(
                store.read_record(put.physical_offset).unwrap().as_ref(),
                Some(bytes)
            );
        }
    }
    assert_eq!(store.max_offset("Unknown", 0), QueueOffset(0));
}

#[test]
fn store_segments_roll_with_blank_fillers() {
    // Goal: records never span segments; a full segment ends with an 8-byte BLANK filler whose
    // TOTALSIZE is the rest of the file. Method: 4 KiB segments, ~300-byte records, inspect the
    // files directly.
    let config = small_config();
    let mut store = open(MemStorage::new(), &config);
    let mut puts = Vec::new();
    for i in 0..40 {
        puts.push(store.put(record("T", 0, &[i as u8; 200], None, i)).unwrap());
    }
    let names = store.storage().list("commitlog").unwrap();
    assert!(names.len() >= 3, "{names:?}");
    for (n, name) in names.iter().enumerate() {
        assert_eq!(*name, format!("{:020}", n as u64 * 4096));
        assert_eq!(
            store.storage().len(&format!("commitlog/{name}")).unwrap(),
            4096
        );
    }
    for put in &puts {
        let start = put.physical_offset.0 / 4096 * 4096;
        assert!(put.physical_offset.0 + put.size_bytes as u64 + 8 <= start + 4096);
    }
    // The filler sits right after the last record of segment 0.
    let last_in_first = puts.iter().rfind(|p| p.physical_offset.0 < 4096).unwrap();
    let blank_pos = last_in_first.physical_offset.0 + last_in_first.size_bytes as u64;
    let seg0 = store
        .storage()
        .contents("commitlog/00000000000000000000")
        .unwrap();
    let total = i32::from_be_bytes(seg0[blank_pos as usize..][..4].try_into().unwrap());
    let magic = i32::from_be_bytes(seg0[blank_pos as usize + 4..][..4].try_into().unwrap());
    assert_eq!(magic, MAGIC_BLANK);
    assert_eq!(total as u64, 4096 - blank_pos);
    // The next record starts the next segment.
    let first_in_second = puts.iter().find(|p| p.physical_offset.0 >= 4096).unwrap();
    assert_eq!(first_in_second.physical_offset.0, 4096);
    // And the reads still see everything, in order.
    let records = read_queue(&store, "T", 0);
    assert_eq!(records.len(), 40);
    for (i, bytes) in records.iter().enumerate() {
        assert_eq!(decode(bytes).body.as_ref(), &[i as u8; 200]);
    }
    // Consume queue files roll too (8 units per file): 40 units = 5 files.
    let cq = store.storage().list("consumequeue/T/0").unwrap();
    assert_eq!(cq.len(), 5);
    assert_eq!(cq[1], format!("{:020}", 8 * 20));
    assert_eq!(
        store
            .storage()
            .len("consumequeue/T/0/00000000000000000000")
            .unwrap(),
        8 * 20
    );
}

#[test]
fn store_consume_queue_units_are_rocketmq_layout() {
    // Goal: units are {offset i64, size i32, tags code i64} big-endian. Method: read the file.
    let mut store = open(MemStorage::new(), &small_config());
    let a = store.put(record("T", 3, b"a", Some("TagA"), 1)).unwrap();
    let b = store.put(record("T", 3, b"b", None, 2)).unwrap();
    let bytes = store
        .storage()
        .contents("consumequeue/T/3/00000000000000000000")
        .unwrap();
    let unit0 = CqUnit::decode(&bytes[..20]).unwrap();
    let unit1 = CqUnit::decode(&bytes[20..40]).unwrap();
    assert_eq!(&bytes[..8], &(a.physical_offset.0 as i64).to_be_bytes());
    assert_eq!(
        unit0,
        CqUnit {
            commitlog_offset: a.physical_offset.0 as i64,
            size_bytes: a.size_bytes as i32,
            tags_code: tag_hash_code("TagA"),
        }
    );
    assert_eq!(unit1.tags_code, 0);
    assert_eq!(unit1.commitlog_offset, b.physical_offset.0 as i64);
    assert!(bytes[40..].iter().all(|b| *b == 0));
}

#[test]
fn store_rejects_oversized_messages_before_writing() {
    // Goal: a body over max_message_size_bytes, or a record that cannot fit a segment, is
    // refused and leaves no trace. Method: compare storage before and after.
    let mut config = small_config();
    config.max_message_size_bytes = 8192;
    let mut store = open(MemStorage::new(), &config);
    store.put(record("T", 0, b"ok", None, 1)).unwrap();
    let before = store.storage().clone();
    let written = store.written_offset();

    let err = store.put(record("T", 0, &[0; 8193], None, 2)).unwrap_err();
    assert_eq!(
        err,
        StoreError::MessageTooLarge {
            size: 8193,
            max: 8192
        }
    );
    // Under the body limit but over a 4 KiB segment.
    let err = store.put(record("T", 0, &[0; 4096], None, 2)).unwrap_err();
    assert!(matches!(err, StoreError::MessageTooLarge { .. }), "{err:?}");
    let err = store
        .put_batch(vec![
            record("T", 0, b"fine", None, 3),
            record("T", 0, &[0; 9000], None, 3),
        ])
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::MessageTooLarge { size: 9000, .. }
    ));
    let err = store.put(record("a/b", 0, b"x", None, 3)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidQueue { .. }));
    let err = store.put(record("T", -1, b"x", None, 3)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidQueue { .. }));

    assert_eq!(store.written_offset(), written);
    assert_eq!(store.max_offset("T", 0), QueueOffset(1));
    assert_eq!(store.storage().paths(), before.paths());
    for path in before.paths() {
        assert_eq!(store.storage().contents(&path), before.contents(&path));
    }
}

#[test]
fn store_put_batch_is_contiguous_in_one_segment() {
    // Goal: a batch lands in one segment, records back to back, queue offsets consecutive.
    // Method: fill most of a segment, then put a batch that only fits in the next one.
    let mut store = open(MemStorage::new(), &small_config());
    // Fill the 4096-byte segment past 3700 bytes: how many records that takes depends on the
    // record size (the `__CRC32#` property adds 20 bytes to each).
    let mut filled = 0u64;
    while store.written_offset().0 < 3_700 {
        store
            .put(record("T", 1, &[1; 300], None, filled as i64))
            .unwrap();
        filled += 1;
    }
    assert_eq!(
        store.written_offset().0 / 4096,
        0,
        "still in the first segment"
    );
    let batch: Vec<_> = (0..4)
        .map(|i| record("T", 1, &[2; 200], None, 100 + i))
        .collect();
    let puts = store.put_batch(batch).unwrap();
    assert_eq!(
        puts[0].physical_offset.0 % 4096,
        0,
        "the batch rolled whole"
    );
    for (i, pair) in puts.windows(2).enumerate() {
        assert_eq!(
            pair[1].physical_offset.0,
            pair[0].physical_offset.0 + pair[0].size_bytes as u64
        );
        assert_eq!(pair[1].queue_offset.0, filled + i as u64 + 1);
    }
    assert_eq!(puts[0].queue_offset, QueueOffset(filled));
    assert_eq!(store.max_offset("T", 1), QueueOffset(filled + 4));
    assert!(store.put_batch(Vec::new()).unwrap().is_empty());
}

#[test]
fn store_reopen_restores_everything() {
    // Goal: a closed store reopens identical and continues where it stopped. Method: snapshot,
    // reopen, compare; then put again and check the offsets continue.
    let mut store = open(MemStorage::new(), &small_config());
    for i in 0..60 {
        store
            .put(record(
                &format!("T{}", i % 2),
                i % 3,
                &[i as u8; 150],
                Some("x"),
                i as i64,
            ))
            .unwrap();
    }
    store.sync_inline().unwrap();
    let before = snapshot(&store);
    // Reopen a copy of the files, keeping the original store running beside it.
    let mut reopened = open(store.storage().clone(), &small_config());
    assert_eq!(snapshot(&reopened), before);
    let report = reopened.recovery_report().clone();
    assert_eq!(report.records_scanned, 60);
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(report.consume_queue_units_rewritten, 0);
    // Both append exactly the same way, rolling to a new segment included.
    for i in 0..10 {
        let r = record("T0", 0, &[1; 600], None, 99 + i);
        assert_eq!(reopened.put(r.clone()).unwrap(), store.put(r).unwrap());
    }
    assert_eq!(reopened.max_offset("T0", 0), QueueOffset(20));
    assert_eq!(snapshot(&reopened), snapshot(&store));
    assert_eq!(reopened.storage().paths(), store.storage().paths());
    for path in store.storage().paths() {
        assert_eq!(
            reopened.storage().contents(&path),
            store.storage().contents(&path)
        );
    }
}

#[test]
fn store_reopen_of_empty_storage_is_empty() {
    let store = open(MemStorage::new(), &small_config());
    let store = reopen(store);
    assert_eq!(store.written_offset(), CommitLogOffset(0));
    assert_eq!(store.sync_request(), None);
    assert_eq!(store.topics().count(), 0);
}

#[test]
fn store_recovery_truncates_a_garbage_tail() {
    // Goal: bytes after the last record that are not a record are zeroed and the log ends where
    // it ended before. Method: write garbage after the write position, reopen twice.
    let mut store = open(MemStorage::new(), &small_config());
    for i in 0..15 {
        store.put(record("T", 0, &[7; 100], None, i)).unwrap();
    }
    let before = snapshot(&store);
    let end = store.written_offset().0;
    let seg = end / 4096 * 4096;
    let path = format!("commitlog/{seg:020}");
    store
        .storage_mut()
        .write_at(&path, end - seg, &[0xAB; 37])
        .unwrap();
    let store = reopen(store);
    assert_eq!(snapshot(&store), before);
    assert_eq!(store.recovery_report().bytes_truncated, 37);
    let tail = &store.storage().contents(&path).unwrap()[(end - seg) as usize..];
    assert!(tail.iter().all(|b| *b == 0));
    let store = reopen(store);
    assert_eq!(store.recovery_report().bytes_truncated, 0);
    assert_eq!(snapshot(&store), before);
}

#[test]
fn store_recovery_drops_a_torn_record_and_its_unit() {
    // Goal: a half-written record (its unit already dispatched) disappears entirely: the
    // CommitLog ends before it and its ConsumeQueue unit is dropped. Method: append a record,
    // then cut its second half off by zeroing it, reopen.
    let mut store = open(MemStorage::new(), &small_config());
    for i in 0..5 {
        store.put(record("T", 2, &[3; 100], Some("a"), i)).unwrap();
    }
    store.sync_inline().unwrap();
    let before = snapshot(&store);
    let torn = store.put(record("T", 2, &[4; 300], Some("a"), 9)).unwrap();
    assert_eq!(store.max_offset("T", 2), QueueOffset(6));
    let seg = torn.physical_offset.0 / 4096 * 4096;
    let half = torn.size_bytes as u64 / 2;
    store
        .storage_mut()
        .write_at(
            &format!("commitlog/{seg:020}"),
            torn.physical_offset.0 - seg + half,
            &vec![0; (torn.size_bytes as u64 - half) as usize],
        )
        .unwrap();
    let mut store = reopen(store);
    assert_eq!(snapshot(&store), before);
    assert_eq!(store.recovery_report().bytes_truncated, half);
    assert_eq!(store.max_offset("T", 2), QueueOffset(5));
    let cq = store
        .storage()
        .contents("consumequeue/T/2/00000000000000000000")
        .unwrap();
    assert!(cq[5 * 20..].iter().all(|b| *b == 0), "unit 5 dropped");
    // The next put reuses the torn record's place.
    let put = store.put(record("T", 2, b"again", None, 10)).unwrap();
    assert_eq!(put.physical_offset, torn.physical_offset);
    assert_eq!(put.queue_offset, QueueOffset(5));
}

#[test]
fn store_recovery_rebuilds_deleted_and_damaged_consume_queues() {
    // Goal: ConsumeQueues are derived data: deleted files, damaged units and stale units past
    // the end are all repaired from the CommitLog. Method: damage them three ways, reopen.
    let mut store = open(MemStorage::new(), &small_config());
    for i in 0..30 {
        store
            .put(record(
                &format!("T{}", i % 3),
                0,
                &[i as u8; 80],
                Some("t"),
                i as i64,
            ))
            .unwrap();
    }
    let before = snapshot(&store);
    let storage = store.storage_mut();
    for name in storage.list("consumequeue/T0/0").unwrap() {
        storage
            .delete(&format!("consumequeue/T0/0/{name}"))
            .unwrap();
    }
    storage
        .write_at("consumequeue/T1/0/00000000000000000000", 20, &[0xFF; 20])
        .unwrap();
    // A stale unit past the end of T2 (as if its record had been torn off).
    storage
        .write_at(
            "consumequeue/T2/0/00000000000000000160",
            2 * 20,
            &CqUnit {
                commitlog_offset: 1 << 20,
                size_bytes: 100,
                tags_code: 0,
            }
            .encode(),
        )
        .unwrap();
    // A queue with no records at all, and a file of the wrong size.
    storage
        .create("consumequeue/Ghost/0/00000000000000000000", 160)
        .unwrap();
    storage
        .create("consumequeue/T1/0/00000000000000099999", 3)
        .unwrap();
    let store = reopen(store);
    assert_eq!(snapshot(&store), before);
    let report = store.recovery_report();
    assert_eq!(report.consume_queue_units_rewritten, 10 + 1);
    assert_eq!(report.consume_queues_deleted, 1);
    assert!(store
        .storage()
        .list_dirs("consumequeue/Ghost")
        .unwrap()
        .is_empty());
    assert!(!store
        .storage()
        .paths()
        .contains(&"consumequeue/T1/0/00000000000000099999".to_string()));
}

#[test]
fn store_recovery_rebuilds_from_raw_records() {
    // Goal: recovery works from the CommitLog alone, whatever queue offsets its records carry.
    // Method: write raw records (queue offsets starting at 3) through the CommitLog API only,
    // open the store and pull. This also gives a queue whose min offset is not 0.
    let mut storage = MemStorage::new();
    let mut log = CommitLog::new(4096);
    for i in 0..4u64 {
        let mut r = record(
            "Raw",
            0,
            format!("m{i}").as_bytes(),
            Some("tagR"),
            100 + i as i64,
        );
        let len = r.encoded_len() as u64;
        let placement = log.place(len).unwrap();
        r.physical_offset = placement.offset as i64;
        r.queue_offset = 3 + i as i64;
        log.write(&mut storage, &placement, &r.encode_to_vec().unwrap())
            .unwrap();
    }
    let store = open(storage, &small_config());
    assert_eq!(store.min_offset("Raw", 0), QueueOffset(3));
    assert_eq!(store.max_offset("Raw", 0), QueueOffset(7));
    let got = store
        .get("Raw", 0, QueueOffset(1), 32, &accept_all)
        .unwrap();
    assert_eq!(got.status, GetStatus::OffsetTooSmall);
    assert_eq!(got.next_begin_offset, QueueOffset(3));
    let got = store
        .get("Raw", 0, QueueOffset(3), 32, &accept_all)
        .unwrap();
    assert_eq!(got.status, GetStatus::Found);
    assert_eq!(got.records.len(), 4);
    assert_eq!(decode(&got.records[3]).body.as_ref(), b"m3");
    let unit = store
        .storage()
        .contents("consumequeue/Raw/0/00000000000000000000")
        .unwrap();
    assert_eq!(
        CqUnit::decode(&unit[3 * 20..]).unwrap().tags_code,
        tag_hash_code("tagR")
    );
}

#[test]
fn store_recovery_stops_at_records_out_of_queue_sequence() {
    // Goal: a record whose queue offset breaks its queue's sequence was not written by this
    // store; the log ends before it. Method: raw records with queue offsets 0, 1, 5.
    let mut storage = MemStorage::new();
    let mut log = CommitLog::new(4096);
    let mut ends = Vec::new();
    for q in [0i64, 1, 5] {
        let mut r = record("Seq", 0, b"x", None, 1);
        let placement = log.place(r.encoded_len() as u64).unwrap();
        r.physical_offset = placement.offset as i64;
        r.queue_offset = q;
        log.write(&mut storage, &placement, &r.encode_to_vec().unwrap())
            .unwrap();
        ends.push(log.written_offset().0);
    }
    let store = open(storage, &small_config());
    assert_eq!(store.max_offset("Seq", 0), QueueOffset(2));
    assert_eq!(store.written_offset().0, ends[1]);
    assert_eq!(store.recovery_report().records_scanned, 2);
}

#[test]
fn store_recovery_handles_a_blank_at_the_end_of_the_last_segment() {
    // Goal: a log whose last segment was closed by a BLANK filler (the next segment never
    // created) reopens with its write position at the next segment's start. Method: fill a
    // segment, roll, then delete the (empty-but-for-one-record) second segment after zeroing it.
    let mut store = open(MemStorage::new(), &small_config());
    let mut n = 0;
    while store.written_offset().0 < 4096 {
        store.put(record("B", 0, &[1; 500], None, n)).unwrap();
        n += 1;
    }
    store
        .storage_mut()
        .delete("commitlog/00000000000000004096")
        .unwrap();
    let mut store = reopen(store);
    assert_eq!(store.written_offset(), CommitLogOffset(4096));
    assert_eq!(store.max_offset("B", 0), QueueOffset(n as u64 - 1));
    let put = store.put(record("B", 0, b"next", None, 99)).unwrap();
    assert_eq!(put.physical_offset, CommitLogOffset(4096));
    assert_eq!(put.queue_offset, QueueOffset(n as u64 - 1));
    let store = reopen(store);
    assert_eq!(store.max_offset("B", 0), QueueOffset(n as u64));
}

#[test]
fn store_get_statuses_at_edge_offsets() {
    // Goal: the RocketMQ status and next offset for each edge. Method: 5 messages, probe.
    let mut store = open(MemStorage::new(), &small_config());
    let got = store.get("Q", 0, QueueOffset(0), 32, &accept_all).unwrap();
    assert_eq!(got.status, GetStatus::NoMessageInQueue);
    assert_eq!(got.next_begin_offset, QueueOffset(0));
    let got = store.get("Q", 0, QueueOffset(7), 32, &accept_all).unwrap();
    assert_eq!(got.status, GetStatus::NoMessageInQueue);
    assert_eq!(got.next_begin_offset, QueueOffset(0));
    for i in 0..5 {
        store.put(record("Q", 0, b"m", None, i)).unwrap();
    }
    let cases = [
        (0, GetStatus::Found, 5, 5),
        (4, GetStatus::Found, 5, 1),
        (5, GetStatus::OffsetOverflowOne, 5, 0),
        (6, GetStatus::OffsetOverflowBadly, 5, 0),
        (1000, GetStatus::OffsetOverflowBadly, 5, 0),
    ];
    for (offset, status, next, count) in cases {
        let got = store
            .get("Q", 0, QueueOffset(offset), 32, &accept_all)
            .unwrap();
        assert_eq!(got.status, status, "offset {offset}");
        assert_eq!(got.next_begin_offset, QueueOffset(next), "offset {offset}");
        assert_eq!(got.records.len(), count, "offset {offset}");
        assert_eq!(
            (got.min_offset, got.max_offset),
            (QueueOffset(0), QueueOffset(5))
        );
    }
    let got = store.get("Q", 0, QueueOffset(1), 2, &accept_all).unwrap();
    assert_eq!(got.records.len(), 2);
    assert_eq!(got.next_begin_offset, QueueOffset(3));
    // max_count 0 still returns one message, as RocketMQ does.
    let got = store.get("Q", 0, QueueOffset(1), 0, &accept_all).unwrap();
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.next_begin_offset, QueueOffset(2));
}

#[test]
fn store_get_filters_by_tags_code() {
    // Goal: filtered-out units are skipped but still advance next_begin_offset; a pull that
    // matched nothing says NoMatchedMessage. Method: tags a,a,b,a,b,b; filter on b.
    let mut store = open(MemStorage::new(), &small_config());
    for (i, tag) in ["a", "a", "b", "a", "b", "b"].iter().enumerate() {
        store
            .put(record("F", 0, &[i as u8], Some(tag), i as i64))
            .unwrap();
    }
    let code_b = tag_hash_code("b");
    let only_b = move |code: i64| code == code_b;
    let got = store.get("F", 0, QueueOffset(0), 32, &only_b).unwrap();
    assert_eq!(got.status, GetStatus::Found);
    let bodies: Vec<u8> = got.records.iter().map(|r| decode(r).body[0]).collect();
    assert_eq!(bodies, vec![2, 4, 5]);
    assert_eq!(got.next_begin_offset, QueueOffset(6));
    let got = store.get("F", 0, QueueOffset(0), 1, &only_b).unwrap();
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.next_begin_offset, QueueOffset(3));
    let none = |_: i64| false;
    let got = store.get("F", 0, QueueOffset(1), 32, &none).unwrap();
    assert_eq!(got.status, GetStatus::NoMatchedMessage);
    assert!(got.records.is_empty());
    assert_eq!(got.next_begin_offset, QueueOffset(6));
}

#[test]
fn store_get_caps_bytes_but_returns_at_least_one() {
    // Goal: a pull returns at most 256 KiB of records, yet never nothing when a record matches.
    // Method: 100 KiB and 300 KiB records in 1 MiB segments.
    let config = StoreConfig {
        commitlog_segment_bytes: 1 << 20,
        consume_queue_units_per_segment: 100,
        max_message_size_bytes: 512 * 1024,
        index: small_index(),
        ..StoreConfig::default()
    };
    let mut store = open(MemStorage::new(), &config);
    for i in 0..4 {
        store
            .put(record("C", 0, &vec![i; 100 * 1024], None, 1))
            .unwrap();
    }
    store
        .put(record("C", 0, &vec![9; 300 * 1024], None, 1))
        .unwrap();
    let got = store.get("C", 0, QueueOffset(0), 32, &accept_all).unwrap();
    assert_eq!(got.records.len(), 2);
    assert_eq!(got.next_begin_offset, QueueOffset(2));
    let got = store.get("C", 0, QueueOffset(4), 32, &accept_all).unwrap();
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.status, GetStatus::Found);
    assert_eq!(got.next_begin_offset, QueueOffset(5));
}

#[test]
fn store_offset_by_timestamp_finds_the_lower_boundary() {
    // Goal: RocketMQ's lower-boundary search: the first offset stored at or after the time, the
    // min offset before everything, the max offset after everything. Method: store times
    // 1000 1000 2000 3000 3000 4000 over several ConsumeQueue files (8 units each).
    let mut store = open(MemStorage::new(), &small_config());
    assert_eq!(store.offset_by_timestamp("S", 0, 5), QueueOffset(0));
    assert_eq!(store.earliest_store_time_ms("S", 0), None);
    let times = [
        1000, 1000, 2000, 3000, 3000, 4000, 4000, 4000, 4000, 5000, 6000,
    ];
    for t in times {
        store.put(record("S", 0, b"t", None, t)).unwrap();
    }
    let cases = [
        (0, 0),
        (999, 0),
        (1000, 0),
        (1500, 2),
        (2000, 2),
        (3000, 3),
        (3500, 5),
        (4000, 5),
        (4001, 9),
        (6000, 10),
        (6001, 11),
    ];
    for (t, offset) in cases {
        assert_eq!(
            store.offset_by_timestamp("S", 0, t),
            QueueOffset(offset),
            "t={t}"
        );
    }
    assert_eq!(store.earliest_store_time_ms("S", 0), Some(1000));
    // IPv6 hosts move STORETIMESTAMP; the search must follow.
    let mut r = record("S6", 0, b"v6", None, 7777);
    r.born_host = host("[::1]:1234");
    store.put(r).unwrap();
    assert_eq!(store.earliest_store_time_ms("S6", 0), Some(7777));
    assert_eq!(store.offset_by_timestamp("S6", 0, 7777), QueueOffset(0));
}

#[test]
fn store_read_record_accepts_only_record_starts() {
    // Goal: a CommitLog offset from a client resolves only when a record starts there.
    let mut store = open(MemStorage::new(), &small_config());
    let mut puts = Vec::new();
    for i in 0..20 {
        puts.push(store.put(record("R", 0, &[5; 300], None, i)).unwrap());
    }
    for put in &puts {
        let bytes = store.read_record(put.physical_offset).unwrap().unwrap();
        assert_eq!(decode(&bytes).physical_offset, put.physical_offset.0 as i64);
        assert_eq!(
            store
                .read_record(CommitLogOffset(put.physical_offset.0 + 1))
                .unwrap(),
            None
        );
    }
    let end = store.written_offset().0;
    assert_eq!(store.read_record(CommitLogOffset(end)).unwrap(), None);
    assert_eq!(
        store.read_record(CommitLogOffset(u64::MAX - 3)).unwrap(),
        None
    );
    // The BLANK filler at the end of segment 0 is not a record.
    let last = puts.iter().rfind(|p| p.physical_offset.0 < 4096).unwrap();
    let blank = last.physical_offset.0 + last.size_bytes as u64;
    assert_eq!(store.read_record(CommitLogOffset(blank)).unwrap(), None);
}

#[test]
fn store_sync_requests_cover_unsynced_ranges() {
    // Goal: sync_request names exactly the CommitLog ranges written since the last sync, across
    // segment boundaries; handle_synced advances durable_offset.
    let mut store = open(MemStorage::new(), &small_config());
    assert_eq!(store.sync_request(), None);
    let a = store.put(record("Y", 0, &[1; 100], None, 1)).unwrap();
    let req = store.sync_request().unwrap();
    let end = a.size_bytes as u64;
    assert_eq!(req.up_to, CommitLogOffset(end));
    assert_eq!(
        req.ranges,
        vec![FileRange {
            path: "commitlog/00000000000000000000".into(),
            start: 0,
            end,
        }]
    );
    for range in &req.ranges {
        store
            .storage_mut()
            .sync(&range.path, range.start, range.end)
            .unwrap();
    }
    store.handle_synced(req.up_to);
    assert_eq!(store.durable_offset(), CommitLogOffset(end));
    assert_eq!(store.sync_request(), None);
    while store.written_offset().0 < 4096 + 100 {
        store.put(record("Y", 0, &[1; 500], None, 1)).unwrap();
    }
    let req = store.sync_request().unwrap();
    assert_eq!(req.ranges.len(), 2);
    assert_eq!(req.ranges[0].start, end);
    assert_eq!(req.ranges[0].end, 4096);
    assert_eq!(
        req.ranges[1],
        FileRange {
            path: "commitlog/00000000000000004096".into(),
            start: 0,
            end: store.written_offset().0 - 4096,
        }
    );
    store.sync_inline().unwrap();
    assert_eq!(store.durable_offset(), store.written_offset());
    assert_eq!(
        store.storage().synced_len("commitlog/00000000000000000000"),
        Some(4096)
    );
    // A reopened store asks for the whole recovered log to be made durable again.
    let store = reopen(store);
    let req = store.sync_request().unwrap();
    assert_eq!(req.ranges[0].start, 0);
    assert_eq!(req.up_to, store.written_offset());
}

#[test]
fn store_raw_check_matches_the_record_codec() {
    // Goal: the recovery scanner accepts exactly what the codec writes and reads the same
    // fields. Method: encode records with IPv4/IPv6 hosts and a long (V2) topic, check them.
    let long_topic = "L".repeat(200);
    let mut v6 = record("T6", 1, b"six", Some("t"), 42);
    v6.born_host = host("[2001:db8::1]:1");
    v6.store_host = host("[2001:db8::2]:2");
    for mut r in [
        record("T", 3, b"four", Some("tag"), 41),
        v6,
        record(&long_topic, 0, b"", None, 43),
    ] {
        r.queue_offset = 17;
        r.physical_offset = 4242;
        let bytes = r.encode_to_vec().unwrap();
        let checked = commitlog::check_record(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(checked.queue_id, r.queue_id);
        assert_eq!(checked.queue_offset, 17);
        assert_eq!(checked.physical_offset, 4242);
        assert_eq!(checked.store_timestamp_ms, r.store_timestamp_ms);
        assert_eq!(checked.topic, r.topic);
        assert_eq!(checked.body, r.body);
        assert_eq!(checked.properties.encode(), r.properties.encode());
        // Trailing bytes are not part of the record: refused.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(commitlog::check_record(Bytes::from(longer)).is_err());
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        if r.body.is_empty() {
            // No body to corrupt: damage TOTALSIZE instead.
            bad[3] ^= 1;
        } else {
            let body_pos = bytes.len()
                - 1
                - r.properties.encode().len()
                - 2
                - r.topic.len()
                - if r.topic.len() > 127 { 2 } else { 1 };
            bad[body_pos] ^= 1;
        }
        assert!(commitlog::check_record(Bytes::from(bad)).is_err());
    }
    let mut blank = vec![0u8; 8];
    blank[..4].copy_from_slice(&100i32.to_be_bytes());
    blank[4..].copy_from_slice(&MAGIC_BLANK.to_be_bytes());
    assert!(commitlog::check_record(Bytes::from(blank)).is_err());
    assert_ne!(MAGIC_V1, MAGIC_BLANK);
    assert!(consume_queue::is_valid_topic_dir("%RETRY%group"));
    assert!(!consume_queue::is_valid_topic_dir(".."));
}

/// The pull path's allocation-free check and the owned one judge every byte the same way: each
/// single-byte damage of records with and without the `__CRC32#` trailer (V1, V2, IPv6 hosts,
/// empty body) gets the same verdict and, when accepted, the same fields.
#[test]
fn the_borrowed_record_check_agrees_with_the_owned_one_on_every_damaged_byte() {
    let mut v6 = record("T6", 1, b"six", None, 60);
    v6.born_host = host("[fe80::1]:50000");
    let long_topic = "L".repeat(200);
    let mut records = Vec::new();
    for (i, base) in [
        record("T", 3, b"four", Some("tag"), 41),
        v6,
        record(&long_topic, 0, b"", None, 43),
    ]
    .into_iter()
    .enumerate()
    {
        let mut plain = base.clone();
        plain.queue_offset = 17 + i as i64;
        plain.physical_offset = 4242;
        records.push((plain.encode_to_vec().unwrap(), false));
        let mut sealed = plain;
        crate::message::record_crc::reserve(&mut sealed.properties);
        let mut bytes = sealed.encode_to_vec().unwrap();
        crate::message::record_crc::seal(&mut bytes).unwrap();
        records.push((bytes, true));
    }
    let fields = |r: &MessageRecord| {
        (
            r.queue_id,
            r.queue_offset,
            r.physical_offset,
            r.topic.clone(),
            r.body.to_vec(),
        )
    };
    let view_fields = |v: &crate::message::RecordView<'_>| {
        (
            v.queue_id,
            v.queue_offset,
            v.physical_offset,
            v.topic.to_owned(),
            v.body.to_vec(),
        )
    };
    let mut accepted_damaged = [0, 0];
    for (bytes, sealed) in &records {
        let mut variants = vec![bytes.clone()];
        for pos in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[pos] ^= flip;
                variants.push(damaged);
            }
        }
        for variant in variants {
            let owned = commitlog::check_record(Bytes::from(variant.clone()));
            let borrowed = commitlog::check_record_view(&variant);
            match (&owned, &borrowed) {
                (Ok(o), Ok(b)) => {
                    assert_eq!(fields(o), view_fields(b));
                    if &variant != bytes {
                        accepted_damaged[usize::from(*sealed)] += 1;
                    }
                }
                (Err(o), Err(b)) => assert_eq!(o, b),
                _ => panic!("verdicts differ: {owned:?} vs {borrowed:?}"),
            }
        }
    }
    // Damage the checks cannot see (FLAG, timestamps, hosts of a record without a trailer) is
    // accepted by both; a sealed record accepts none.
    assert!(accepted_damaged[0] > 0);
    assert_eq!(accepted_damaged[1], 0);
}

/// A message in the proptest model: its body and tag.
type ModelMessage = (Vec<u8>, Option<String>);

#[derive(Clone, Debug)]
enum Op {
    Put {
        topic: usize,
        queue_id: i32,
        body_len: usize,
        tag: Option<u8>,
    },
    Batch {
        topic: usize,
        queue_id: i32,
        count: usize,
        body_len: usize,
    },
    Reopen,
    TearTail {
        garbage: Vec<u8>,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3usize, 0..3i32, 0..700usize, proptest::option::of(0..3u8)).prop_map(
            |(topic, queue_id, body_len, tag)| Op::Put { topic, queue_id, body_len, tag }
        ),
        2 => (0..3usize, 0..3i32, 1..5usize, 0..300usize).prop_map(
            |(topic, queue_id, count, body_len)| Op::Batch { topic, queue_id, count, body_len }
        ),
        1 => Just(Op::Reopen),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(|garbage| Op::TearTail { garbage }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Goal: whatever sequence of puts, reopens and torn tails, every queue holds exactly the
    /// records a simple model says it should, before and after every reopen. Method: a model of
    /// per-queue bodies and tags; compare decoded pulls with it after every step.
    #[test]
    fn store_matches_model_across_reopens(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        let config = StoreConfig {
            commitlog_segment_bytes: 4096,
            consume_queue_units_per_segment: 5,
            max_message_size_bytes: 1024,
            index: small_index(),
            ..StoreConfig::default()
        };
        let topics = ["A", "B", "%RETRY%C"];
        let tags = ["x", "y", "z"];
        let mut model: BTreeMap<(String, i32), Vec<ModelMessage>> = BTreeMap::new();
        let mut store = open(MemStorage::new(), &config);
        let mut clock = 1_000i64;
        for op in ops {
            match op {
                Op::Put { topic, queue_id, body_len, tag } => {
                    clock += 1;
                    let body: Vec<u8> = (0..body_len).map(|i| (i + clock as usize) as u8).collect();
                    let tag = tag.map(|t| tags[t as usize]);
                    let put = store.put(record(topics[topic], queue_id, &body, tag, clock)).unwrap();
                    let entry = model.entry((topics[topic].to_string(), queue_id)).or_default();
                    prop_assert_eq!(put.queue_offset.0, entry.len() as u64);
                    entry.push((body, tag.map(str::to_string)));
                }
                Op::Batch { topic, queue_id, count, body_len } => {
                    clock += 1;
                    let records: Vec<_> = (0..count)
                        .map(|i| record(topics[topic], queue_id, &vec![i as u8; body_len], None, clock))
                        .collect();
                    let puts = store.put_batch(records).unwrap();
                    let entry = model.entry((topics[topic].to_string(), queue_id)).or_default();
                    prop_assert_eq!(puts[0].queue_offset.0, entry.len() as u64);
                    for i in 0..count {
                        entry.push((vec![i as u8; body_len], None));
                    }
                }
                Op::Reopen => {
                    let before = snapshot(&store);
                    store = reopen(store);
                    prop_assert_eq!(snapshot(&store), before);
                }
                Op::TearTail { garbage } => {
                    // Garbage after the end never survives a reopen.
                    let end = store.written_offset().0;
                    let seg = end / 4096 * 4096;
                    let path = format!("commitlog/{seg:020}");
                    if store.storage().len(&path).is_ok() {
                        let room = (4096 - (end - seg)) as usize;
                        let n = garbage.len().min(room);
                        store.storage_mut().write_at(&path, end - seg, &garbage[..n]).unwrap();
                    }
                    let before = snapshot(&store);
                    store = reopen(store);
                    prop_assert_eq!(snapshot(&store), before);
                }
            }
        }
        store = reopen(store);
        for ((topic, queue_id), expected) in &model {
            let records = read_queue(&store, topic, *queue_id);
            prop_assert_eq!(records.len(), expected.len());
            for (n, (bytes, (body, tag))) in records.iter().zip(expected).enumerate() {
                let got = decode(bytes);
                prop_assert_eq!(got.queue_offset, n as i64);
                prop_assert_eq!(got.body.as_ref(), body.as_slice());
                prop_assert_eq!(got.properties.get(keys::TAGS), tag.as_deref());
            }
        }
        let stored: usize = store.topics().map(|t| store.queue_ids(t).len()).sum();
        prop_assert_eq!(stored, model.len());
    }
}

/// MemStorage that fails writes and creates under a path prefix while `fail_prefix` is set.
#[derive(Clone, Debug, Default)]
struct FlakyStorage {
    inner: MemStorage,
    fail_prefix: Option<String>,
}

impl FlakyStorage {
    fn check(&self, path: &str) -> Result<(), StorageError> {
        match &self.fail_prefix {
            Some(prefix) if path.starts_with(prefix.as_str()) => Err(StorageError::NoSpace),
            _ => Ok(()),
        }
    }
}

impl SegmentStorage for FlakyStorage {
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list(dir)
    }
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list_dirs(dir)
    }
    fn create(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
        self.check(path)?;
        self.inner.create(path, len)
    }
    fn len(&self, path: &str) -> Result<u64, StorageError> {
        self.inner.len(path)
    }
    fn write_at(&mut self, path: &str, pos: u64, data: &[u8]) -> Result<(), StorageError> {
        self.check(path)?;
        self.inner.write_at(path, pos, data)
    }
    fn read_at(&self, path: &str, pos: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.inner.read_at(path, pos, buf)
    }
    fn truncate(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
        self.inner.truncate(path, len)
    }
    fn delete(&mut self, path: &str) -> Result<(), StorageError> {
        self.inner.delete(path)
    }
    fn sync(&mut self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
        self.inner.sync(path, start, end)
    }
    fn replace(&mut self, path: &str, data: &[u8]) -> Result<(), StorageError> {
        self.inner.replace(path, data)
    }
    fn read_all(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.read_all(path)
    }
}

#[test]
fn store_failed_put_leaves_no_trace() {
    // Goal: a put whose ConsumeQueue write fails is undone entirely: no offsets consumed, no
    // record resurrected by a later recovery. Method: fail writes to one queue's files during a
    // batch spanning two queues, then retry, reopen and compare.
    let mut store = MessageStore::open(FlakyStorage::default(), small_config()).unwrap();
    store.put(record("Ok", 0, b"first", None, 1)).unwrap();
    let written = store.written_offset();
    store.storage_mut().fail_prefix = Some("consumequeue/Bad/".to_string());
    let err = store
        .put_batch(vec![
            record("Ok", 0, b"a", None, 2),
            record("Bad", 0, b"b", None, 2),
        ])
        .unwrap_err();
    assert_eq!(err, StoreError::Storage(StorageError::NoSpace));
    assert_eq!(store.written_offset(), written);
    assert_eq!(store.max_offset("Ok", 0), QueueOffset(1));
    assert_eq!(store.max_offset("Bad", 0), QueueOffset(0));
    // A failing CommitLog write is undone too.
    store.storage_mut().fail_prefix = Some("commitlog/".to_string());
    assert!(store.put(record("Ok", 0, b"c", None, 3)).is_err());
    assert_eq!(store.written_offset(), written);

    store.storage_mut().fail_prefix = None;
    let put = store.put(record("Ok", 0, b"again", None, 4)).unwrap();
    assert_eq!(put.physical_offset, written);
    assert_eq!(put.queue_offset, QueueOffset(1));
    let store = MessageStore::open(store.into_storage(), small_config()).unwrap();
    assert_eq!(store.max_offset("Ok", 0), QueueOffset(2));
    assert_eq!(store.max_offset("Bad", 0), QueueOffset(0));
    assert_eq!(store.recovery_report().records_scanned, 2);
    let got = store.get("Ok", 0, QueueOffset(0), 32, &accept_all).unwrap();
    let bodies: Vec<Bytes> = got.records.iter().map(|r| decode(r).body).collect();
    assert_eq!(
        bodies,
        vec![Bytes::from_static(b"first"), Bytes::from_static(b"again")]
    );
}
