//! The key index driven through the [`MessageStore`] over [`MemStorage`]: collisions, time
//! ranges, rollover, reopen and repair after lost, truncated or stale files.

use bytes::Bytes;

use super::*;
use crate::message::{keys, MessageRecord, Properties};
use crate::store::{MemStorage, MessageStore, RecoveryMode, StoreConfig};

const T0: i64 = 1_718_000_000_000;

fn config(slots: u32, entries: u32) -> StoreConfig {
    StoreConfig {
        commitlog_segment_bytes: 4096,
        consume_queue_units_per_segment: 16,
        max_message_size_bytes: 1024,
        index: IndexConfig {
            enabled: true,
            hash_slot_count: slots,
            max_index_count: entries,
        },
        ..StoreConfig::default()
    }
}

/// A record of `topic` with UNIQ_KEY `uniq` and KEYS `keys_prop`, stored at `store_ms`.
fn record(topic: &str, uniq: &str, keys_prop: &str, store_ms: i64) -> MessageRecord {
    let mut properties = Properties::new();
    properties.insert(keys::UNIQ_KEY, uniq);
    if !keys_prop.is_empty() {
        properties.insert(keys::KEYS, keys_prop);
    }
    MessageRecord {
        queue_id: 0,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp_ms: store_ms - 1,
        born_host: "10.0.0.1:50000".parse().expect("addr"),
        store_timestamp_ms: store_ms,
        store_host: "10.0.0.2:10911".parse().expect("addr"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(format!("body of {uniq}")),
        topic: topic.to_owned(),
        properties,
    }
}

fn open(storage: MemStorage, config: &StoreConfig) -> MessageStore<MemStorage> {
    MessageStore::open(storage, config.clone()).expect("open")
}

fn reopen(store: MessageStore<MemStorage>) -> MessageStore<MemStorage> {
    let config = store.config().clone();
    open(store.into_storage(), &config)
}

/// The UNIQ_KEYs of what a query over all time answers, in answer order.
fn query(store: &MessageStore<MemStorage>, topic: &str, key: &str, max: u32) -> Vec<String> {
    query_range(store, topic, key, max, 0, i64::MAX)
}

fn query_range(
    store: &MessageStore<MemStorage>,
    topic: &str,
    key: &str,
    max: u32,
    begin: i64,
    end: i64,
) -> Vec<String> {
    let result = store
        .query_message(topic, key, max, begin, end)
        .expect("query");
    result
        .records
        .iter()
        .map(|r| {
            let record = MessageRecord::decode(r, true).expect("a whole record");
            assert_eq!(record.topic, topic);
            record
                .properties
                .get(keys::UNIQ_KEY)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Stores `n` records of TopicA: UNIQ_KEY `u<i>`, KEYS `k<i % groups> all`, one second apart.
fn fill(store: &mut MessageStore<MemStorage>, n: usize, groups: usize) {
    for i in 0..n {
        let keys_prop = format!("k{} all", i % groups);
        store
            .put(record(
                "TopicA",
                &format!("u{i}"),
                &keys_prop,
                T0 + i as i64 * 1000,
            ))
            .expect("put");
    }
}

/// `u<i>` for every i in `range` with `i % groups == group`, newest first.
fn expected(range: std::ops::Range<usize>, groups: usize, group: usize) -> Vec<String> {
    range
        .rev()
        .filter(|i| i % groups == group)
        .map(|i| format!("u{i}"))
        .collect()
}

#[test]
fn collisions_in_one_slot_never_mix_keys() {
    // Goal: with every key in the same slot, each query answers exactly its own records.
    // Method: one hash slot, 40 records over 5 KEYS groups plus unique keys.
    let mut store = open(MemStorage::new(), &config(1, 1000));
    fill(&mut store, 40, 5);
    for group in 0..5 {
        assert_eq!(
            query(&store, "TopicA", &format!("k{group}"), 64),
            expected(0..40, 5, group)
        );
    }
    assert_eq!(query(&store, "TopicA", "u17", 64), vec!["u17"]);
    assert!(query(&store, "TopicA", "nope", 64).is_empty());
}

#[test]
fn a_key_of_another_topic_is_not_an_answer() {
    let mut store = open(MemStorage::new(), &config(16, 1000));
    store.put(record("TopicA", "a1", "order-1", T0)).unwrap();
    store.put(record("TopicB", "b1", "order-1", T0)).unwrap();
    assert_eq!(query(&store, "TopicA", "order-1", 64), vec!["a1"]);
    assert_eq!(query(&store, "TopicB", "order-1", 64), vec!["b1"]);
    assert!(query(&store, "TopicC", "order-1", 64).is_empty());
}

#[test]
fn max_num_limits_answers_newest_first() {
    let mut store = open(MemStorage::new(), &config(64, 1000));
    fill(&mut store, 100, 1);
    assert_eq!(query(&store, "TopicA", "all", 3), vec!["u99", "u98", "u97"]);
    // The broker never answers more than 64 records at once.
    assert_eq!(query(&store, "TopicA", "all", 1000).len(), 64);
    assert!(query(&store, "TopicA", "all", 0).is_empty());
}

#[test]
fn time_ranges_filter_exactly() {
    // Goal: the range is inclusive on both ends and exact to the millisecond, although entries
    // only keep whole seconds. Method: records 1 s apart, 500 ms off the file's begin.
    let mut store = open(MemStorage::new(), &config(64, 1000));
    for i in 0..10 {
        let at = T0 + 500 + i * 1000;
        store
            .put(record("TopicA", &format!("u{i}"), "k", at))
            .unwrap();
    }
    let q = |b: i64, e: i64| query_range(&store, "TopicA", "k", 64, b, e);
    assert_eq!(q(T0 + 2500, T0 + 4500), vec!["u4", "u3", "u2"]);
    assert_eq!(q(T0 + 2501, T0 + 4499), vec!["u3"]);
    assert!(q(T0 + 2501, T0 + 3499).is_empty());
    assert!(q(T0 + 20_000, T0 + 30_000).is_empty());
    assert!(q(0, T0).is_empty());
    assert!(q(T0 + 4500, T0 + 2500).is_empty());
    assert_eq!(q(0, i64::MAX).len(), 10);
}

#[test]
fn full_files_roll_and_queries_span_them() {
    // Goal: a full file rolls to a new one (named later), and queries search every file newest
    // first. Method: 7 entries per file, 3 keys per record, 30 records.
    let mut store = open(MemStorage::new(), &config(4, 8));
    fill(&mut store, 30, 3);
    let paths = store.index().file_paths();
    assert!(paths.len() >= 10, "{paths:?}");
    let mut sorted = paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, paths, "names are unique and in creation order");
    for group in 0..3 {
        assert_eq!(
            query(&store, "TopicA", &format!("k{group}"), 64),
            expected(0..30, 3, group)
        );
    }
    assert_eq!(query(&store, "TopicA", "u0", 64), vec!["u0"]);
    // A time range picks out the middle files only.
    assert_eq!(
        query_range(&store, "TopicA", "all", 64, T0 + 10_000, T0 + 12_000),
        vec!["u12", "u11", "u10"]
    );
    // Every full file was synced when it was sealed.
    for path in &paths[..paths.len() - 1] {
        let len = store.storage().contents(path).unwrap().len() as u64;
        assert_eq!(store.storage().synced_len(path), Some(len), "{path}");
    }
}

#[test]
fn reopen_keeps_the_index_without_reindexing() {
    let mut store = open(MemStorage::new(), &config(8, 16));
    fill(&mut store, 20, 4);
    let paths = store.index().file_paths();
    let store = reopen(store);
    assert_eq!(store.index().recovery(), &IndexRecovery::default());
    assert_eq!(store.index().file_paths(), paths);
    assert_eq!(query(&store, "TopicA", "k1", 64), expected(0..20, 4, 1));
    assert_eq!(store.index().failure(), None);
}

#[test]
fn records_written_behind_the_index_are_indexed_at_open() {
    // Goal: the open hook indexes CommitLog records the index has not seen. Method: store with
    // the index disabled, reopen with it enabled.
    let mut off = config(8, 64);
    off.index.enabled = false;
    let mut store = open(MemStorage::new(), &off);
    fill(&mut store, 12, 3);
    assert!(store.index().file_paths().is_empty());
    assert!(query(&store, "TopicA", "k0", 64).is_empty());
    let store = open(store.into_storage(), &config(8, 64));
    assert_eq!(store.index().recovery().records_reindexed, 12);
    assert_eq!(query(&store, "TopicA", "k0", 64), expected(0..12, 3, 0));
}

#[test]
fn deleted_index_files_are_rebuilt() {
    let mut store = open(MemStorage::new(), &config(8, 16));
    fill(&mut store, 30, 3);
    let paths = store.index().file_paths();
    // The newest file only.
    let newest = paths.last().unwrap().clone();
    store.storage_mut().delete(&newest).unwrap();
    let mut store = reopen(store);
    assert!(store.index().recovery().records_reindexed > 0);
    for group in 0..3 {
        assert_eq!(
            query(&store, "TopicA", &format!("k{group}"), 64),
            expected(0..30, 3, group)
        );
    }
    // All of them.
    for path in store.index().file_paths() {
        store.storage_mut().delete(&path).unwrap();
    }
    let store = reopen(store);
    assert_eq!(store.index().recovery().records_reindexed, 30);
    assert_eq!(query(&store, "TopicA", "k2", 64), expected(0..30, 3, 2));
    assert_eq!(query(&store, "TopicA", "u29", 64), vec!["u29"]);
}

#[test]
fn a_truncated_file_is_deleted_with_its_successors_and_rebuilt() {
    let mut store = open(MemStorage::new(), &config(8, 16));
    fill(&mut store, 30, 3);
    let paths = store.index().file_paths();
    assert!(paths.len() >= 4);
    store.storage_mut().truncate(&paths[1], 100).unwrap();
    let store = reopen(store);
    assert_eq!(
        store.index().recovery().files_deleted,
        paths.len() as u64 - 1
    );
    for group in 0..3 {
        assert_eq!(
            query(&store, "TopicA", &format!("k{group}"), 64),
            expected(0..30, 3, group)
        );
    }
}

#[test]
fn lost_entries_of_the_newest_file_are_cut_and_reindexed() {
    // Goal: a power loss that zeroes part of the newest file's entries (while its header and
    // slots survived) loses no answer. Method: zero entry 5 of the newest file; reopen.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    fill(&mut store, 20, 4);
    let path = store.index().file_paths().pop().unwrap();
    let pos = HEADER_BYTES + 8 * SLOT_BYTES + 5 * ENTRY_BYTES;
    store
        .storage_mut()
        .write_at(&path, pos, &[0u8; ENTRY_BYTES as usize])
        .unwrap();
    let store = reopen(store);
    let recovery = store.index().recovery().clone();
    // Entry 4 (u1's UNIQ_KEY) goes too: its record was only partly left.
    assert_eq!(recovery.entries_dropped, 60 - 3);
    assert!(recovery.records_reindexed > 0);
    for group in 0..4 {
        assert_eq!(
            query(&store, "TopicA", &format!("k{group}"), 64),
            expected(0..20, 4, group)
        );
    }
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 20);
}

#[test]
fn a_wrong_slot_is_rebuilt_from_the_entries() {
    // A slot pointing at an entry the file never finished (a torn write) is repaired.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    fill(&mut store, 10, 2);
    let path = store.index().file_paths().pop().unwrap();
    for slot in 0..8u64 {
        store
            .storage_mut()
            .write_at(&path, HEADER_BYTES + slot * SLOT_BYTES, &7i32.to_be_bytes())
            .unwrap();
    }
    let store = reopen(store);
    assert_eq!(query(&store, "TopicA", "k1", 64), expected(0..10, 2, 1));
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 10);
}

#[test]
fn entries_past_a_truncated_commitlog_never_answer() {
    // Goal: when recovery cuts the CommitLog below indexed records, their entries are dropped
    // and new records at the same offsets answer only for their own keys. Method: tear the last
    // record, reopen, store a record with other keys at the same offset.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    store.put(record("TopicA", "u0", "old", T0)).unwrap();
    let torn = store.put(record("TopicA", "u1", "old", T0 + 1000)).unwrap();
    let seg = crate::store::commitlog::segment_path(0);
    let zeros = vec![0u8; torn.size_bytes as usize - 20];
    store
        .storage_mut()
        .write_at(&seg, torn.physical_offset.0 + 20, &zeros)
        .unwrap();
    let mut store = reopen(store);
    assert_eq!(store.written_offset(), torn.physical_offset);
    assert_eq!(query(&store, "TopicA", "old", 64), vec!["u0"]);
    let again = store.put(record("TopicA", "u2", "new", T0 + 2000)).unwrap();
    assert_eq!(again.physical_offset, torn.physical_offset);
    assert_eq!(query(&store, "TopicA", "old", 64), vec!["u0"]);
    assert_eq!(query(&store, "TopicA", "new", 64), vec!["u2"]);
    assert!(query(&store, "TopicA", "u1", 64).is_empty());
    let store = reopen(store);
    assert_eq!(query(&store, "TopicA", "new", 64), vec!["u2"]);
    assert_eq!(query(&store, "TopicA", "old", 64), vec!["u0"]);
}

#[test]
fn duplicate_entries_answer_once() {
    // Entries written twice for one record (as re-indexing after a crash can) give one answer.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    let put = store.put(record("TopicA", "u0", "dup", T0)).unwrap();
    let rec = record("TopicA", "u0", "dup", T0);
    let mut storage = std::mem::take(store.storage_mut());
    let mut index = store.index().clone();
    index.indexed_end = 0;
    index.put_record(&mut storage, &rec, put.physical_offset.0, put.size_bytes);
    *store.storage_mut() = storage;
    let store = reopen(store);
    assert_eq!(query(&store, "TopicA", "dup", 64), vec!["u0"]);
    assert_eq!(query(&store, "TopicA", "u0", 64), vec!["u0"]);
}

#[test]
fn retention_deletes_old_files_but_never_the_newest() {
    let mut store = open(MemStorage::new(), &config(8, 16));
    fill(&mut store, 30, 3);
    let before = store.index().file_paths();
    // Everything below the 20th record's offset.
    let cut = store
        .query_message("TopicA", "u20", 1, 0, i64::MAX)
        .unwrap()
        .records[0]
        .clone();
    let cut_offset = MessageRecord::decode(&cut, true).unwrap().physical_offset as u64;
    let deleted = store
        .delete_index_files_below(CommitLogOffset(cut_offset))
        .unwrap();
    assert!(deleted > 0 && (deleted as usize) < before.len());
    let after = store.index().file_paths();
    assert_eq!(after, before[deleted as usize..]);
    for path in &before[..deleted as usize] {
        assert!(store.storage().contents(path).is_none(), "{path}");
    }
    // Newer records still answer.
    assert_eq!(query(&store, "TopicA", "u29", 64), vec!["u29"]);
    let everything = store
        .delete_index_files_below(CommitLogOffset(u64::MAX))
        .unwrap();
    assert_eq!(store.index().file_paths().len(), 1);
    assert_eq!(everything as usize, after.len() - 1);
}

#[test]
fn rollback_records_are_not_indexed_and_disabled_index_answers_nothing() {
    let mut store = open(MemStorage::new(), &config(8, 64));
    let mut rolled_back = record("TopicA", "r0", "k", T0);
    rolled_back.sys_flag = crate::message::sys_flag::TRANSACTION_ROLLBACK;
    store.put(rolled_back).unwrap();
    store.put(record("TopicA", "u1", "k", T0)).unwrap();
    assert_eq!(query(&store, "TopicA", "k", 64), vec!["u1"]);

    let mut off = config(8, 64);
    off.index.enabled = false;
    let store = open(store.into_storage(), &off);
    assert!(query(&store, "TopicA", "k", 64).is_empty());
}

#[test]
fn index_files_are_rocketmq_shaped() {
    // Header, slot and entry bytes where RocketMQ's IndexFile puts them.
    let mut store = open(MemStorage::new(), &config(8, 16));
    let put = store.put(record("TopicA", "u0", "", T0 + 1234)).unwrap();
    store.put(record("TopicA", "u1", "", T0 + 3456)).unwrap();
    let path = store.index().file_paths().pop().unwrap();
    assert_eq!(path, format!("index/{}", file_name((T0 + 1234) as u64)));
    let bytes = store.storage().contents(&path).unwrap();
    assert_eq!(bytes.len() as u64, HEADER_BYTES + 8 * 4 + 16 * 20);
    let header = Header::decode(bytes[..40].try_into().unwrap());
    assert_eq!(header.begin_timestamp_ms, T0 + 1234);
    assert_eq!(header.end_timestamp_ms, T0 + 3456);
    assert_eq!(header.begin_phy_offset, put.physical_offset.0 as i64);
    assert_eq!(header.index_count, 3);
    assert_eq!(header.hash_slot_count, 2);
    let hash = key_hash("TopicA#u1");
    let slot_at = 40 + (hash as usize % 8) * 4;
    assert_eq!(&bytes[slot_at..slot_at + 4], &2i32.to_be_bytes());
    let entry = Entry::decode(&bytes[40 + 32 + 2 * 20..]);
    assert_eq!(entry.key_hash, hash);
    assert_eq!(entry.time_diff_s, 2);
}

#[test]
fn a_record_indexed_halfway_is_indexed_again_whole() {
    // Goal: a crash between the keys of one record loses none of its keys. Method: move the
    // newest header back by one entry (the record's last key), reopen.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    fill(&mut store, 5, 5);
    let path = store.index().file_paths().pop().unwrap();
    let mut raw = [0u8; HEADER_BYTES as usize];
    store.storage().read_at(&path, 0, &mut raw).unwrap();
    let mut header = Header::decode(&raw);
    header.index_count -= 1;
    store
        .storage_mut()
        .write_at(&path, 0, &header.encode())
        .unwrap();
    let store = reopen(store);
    assert_eq!(store.index().recovery().records_reindexed, 1);
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 5);
    assert_eq!(query(&store, "TopicA", "k4", 64), vec!["u4"]);
    assert_eq!(query(&store, "TopicA", "u4", 64), vec!["u4"]);
}

#[test]
fn a_checkpoint_syncs_the_index_and_names_its_progress() {
    // Goal: a checkpoint makes the newest index file durable and claims the index up to the
    // records indexed (it used to claim nothing). Method: checkpoint over MemStorage, which
    // tracks each file's durable prefix.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    fill(&mut store, 12, 3);
    store.checkpoint_inline().unwrap();
    let cp = *store.last_checkpoint().unwrap();
    assert_eq!(cp.index_durable_offset, store.written_offset().0);
    assert_eq!(cp.index_msg_timestamp_ms, T0 + 11_000);
    let path = store.index().file_paths().pop().unwrap();
    // 12 records × 3 keys = 36 entries, all durable with the header and slots before them.
    let entries_end = HEADER_BYTES + 8 * SLOT_BYTES + 37 * ENTRY_BYTES;
    assert!(store.storage().synced_len(&path).unwrap() >= entries_end);
}

#[test]
fn a_crash_checks_only_the_entries_after_the_checkpoint() {
    // Goal: after a crash, entries the checkpoint synced are trusted; those after it are cut,
    // their slots walked back to the checkpoint, and their records indexed again; nothing is
    // lost. Method: checkpoint after 20 records, 7 more, drop the store (a process crash).
    let mut store = open(MemStorage::new(), &config(8, 1000));
    fill(&mut store, 20, 4);
    store.checkpoint_inline().unwrap();
    fill_from(&mut store, 20..27);
    let store = reopen(store);
    assert_eq!(store.recovery_report().mode, RecoveryMode::Crash);
    let recovery = store.index().recovery().clone();
    assert!(recovery.checked_from_checkpoint);
    assert_eq!(recovery.entries_dropped, 7 * 3);
    assert_eq!(recovery.records_reindexed, 7);
    for group in 0..4 {
        assert_eq!(
            query(&store, "TopicA", &format!("k{group}"), 64),
            expected(0..27, 4, group)
        );
    }
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 27);
    assert_eq!(query(&store, "TopicA", "u26", 64), vec!["u26"]);

    // A clean close claims everything: the next open checks nothing and indexes nothing.
    let mut store = store;
    store.close_inline().unwrap();
    let store = reopen(store);
    assert_eq!(store.recovery_report().mode, RecoveryMode::Clean);
    let recovery = store.index().recovery().clone();
    assert!(recovery.checked_from_checkpoint);
    assert_eq!(recovery.entries_dropped, 0);
    assert_eq!(recovery.records_reindexed, 0);
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 27);
}

#[test]
fn a_slot_pointing_at_a_lost_entry_falls_back_to_the_full_check() {
    // Goal: when a slot's chain after the checkpoint is broken (its entry never reached the
    // disk), the slot's value at the checkpoint is unknown: the whole file is checked instead,
    // and every answer is still there. Method: zero the newest entry after a checkpoint.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    fill(&mut store, 20, 4);
    store.checkpoint_inline().unwrap();
    fill_from(&mut store, 20..24);
    let path = store.index().file_paths().pop().unwrap();
    let last = 24 * 3;
    let pos = HEADER_BYTES + 8 * SLOT_BYTES + last * ENTRY_BYTES;
    store
        .storage_mut()
        .write_at(&path, pos, &[0u8; ENTRY_BYTES as usize])
        .unwrap();
    let store = reopen(store);
    let recovery = store.index().recovery().clone();
    assert!(!recovery.checked_from_checkpoint);
    for group in 0..4 {
        assert_eq!(
            query(&store, "TopicA", &format!("k{group}"), 64),
            expected(0..24, 4, group)
        );
    }
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 24);
}

#[test]
fn a_full_scan_rewrite_below_the_checkpoint_withdraws_its_index_claim() {
    // Goal: when recovery rewrites index entries the checkpoint claimed durable, the checkpoint
    // stops claiming them, so a second crash cannot trust entries not yet synced again.
    // Method: checkpoint, then damage an entry the checkpoint covers and the header so only the
    // full check runs; reopen; the checkpoint on disk no longer claims the index.
    let mut store = open(MemStorage::new(), &config(8, 1000));
    fill(&mut store, 20, 4);
    store.checkpoint_inline().unwrap();
    let path = store.index().file_paths().pop().unwrap();
    let pos = HEADER_BYTES + 8 * SLOT_BYTES + 5 * ENTRY_BYTES;
    store
        .storage_mut()
        .write_at(&path, pos, &[0u8; ENTRY_BYTES as usize])
        .unwrap();
    // The newest entry's record now disagrees with it: the tail check gives up.
    let last = HEADER_BYTES + 8 * SLOT_BYTES + 60 * ENTRY_BYTES;
    store
        .storage_mut()
        .write_at(&path, last, &[0x7Fu8; 4])
        .unwrap();
    let store = reopen(store);
    assert!(!store.index().recovery().checked_from_checkpoint);
    assert_eq!(store.last_checkpoint().unwrap().index_durable_offset, 0);
    let on_disk = store
        .storage()
        .read_all(crate::store::checkpoint::CHECKPOINT_PATH)
        .unwrap()
        .unwrap();
    let cp = crate::store::Checkpoint::decode(&on_disk).unwrap();
    assert_eq!(cp.index_durable_offset, 0);
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 20);
}

/// Stores the records `u<i>` of [`fill`] for `i` in `range`.
fn fill_from(store: &mut MessageStore<MemStorage>, range: std::ops::Range<usize>) {
    for i in range {
        store
            .put(record(
                "TopicA",
                &format!("u{i}"),
                &format!("k{} all", i % 4),
                T0 + i as i64 * 1000,
            ))
            .expect("put");
    }
}

#[test]
fn a_record_whose_keys_span_a_roll_after_the_checkpoint_keeps_every_key() {
    // Goal: when the newest file holds only entries after the checkpoint and its first record
    // began in the previous file, no key of that record is lost. Method: 7 entries per file,
    // 3 keys per record: u2's first key ends file 1, its other two open file 2; checkpoint
    // after u0; crash after u3.
    let mut store = open(MemStorage::new(), &config(8, 8));
    fill_from(&mut store, 0..1);
    store.checkpoint_inline().unwrap();
    fill_from(&mut store, 1..4);
    assert_eq!(store.index().file_paths().len(), 2);
    let store = reopen(store);
    assert_eq!(store.recovery_report().mode, RecoveryMode::Crash);
    assert_eq!(query(&store, "TopicA", "all", 64).len(), 4);
    assert_eq!(query(&store, "TopicA", "k2", 64), vec!["u2"]);
    assert_eq!(query(&store, "TopicA", "u2", 64), vec!["u2"]);
}
