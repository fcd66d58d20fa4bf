//! CommitLog recovery over arbitrary segment bytes: `MessageStore::open` over a `MemStorage`
//! holding fuzzed CommitLog segments and ConsumeQueue files never panics. Every store it opens
//! serves only valid records (dense queue offsets, valid body CRC, each record at its own
//! offset), accepts a new put afterwards, and recovering it again finds the same queues.
//!
//! Segments start either as raw fuzzed bytes or as a valid log written through the store and
//! then damaged (bytes overwritten, files cut short, files dropped), so the fuzzer reaches the
//! interesting recovery paths instead of stopping at the first bad magic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vostok_core::message::Properties;
use vostok_core::store::commitlog::segment_path;
use vostok_core::store::{MemStorage, MessageStore, SegmentStorage, StoreConfig};
use vostok_fuzz::{check_store, make_record, queue_ranges, NAMES};

/// Small segments: a few records each, so rolls and BLANK fillers are common.
const SEGMENT_BYTES: u64 = 1024;

#[derive(Debug, Arbitrary)]
struct Put {
    topic: u8,
    queue_id: u8,
    body: Vec<u8>,
    tags: Option<u8>,
}

#[derive(Debug, Arbitrary)]
enum Damage {
    /// Overwrite bytes at a position of one file.
    Write { file: u8, pos: u16, bytes: Vec<u8> },
    /// Cut a file short.
    Truncate { file: u8, len: u16 },
    /// Remove a file.
    Delete { file: u8 },
}

#[derive(Debug, Arbitrary)]
enum Input {
    /// Segment k (start k × SEGMENT_BYTES) with these bytes; `None` length means a full segment.
    Raw {
        segments: Vec<(u8, Vec<u8>, bool)>,
        queue_files: Vec<(u8, u8, Vec<u8>)>,
    },
    /// A valid log, then damage.
    Damaged { puts: Vec<Put>, damage: Vec<Damage> },
}

fn config() -> StoreConfig {
    StoreConfig {
        commitlog_segment_bytes: SEGMENT_BYTES,
        consume_queue_units_per_segment: 8,
        max_message_size_bytes: 512,
        index: vostok_fuzz::small_index_config(),
        ..StoreConfig::default()
    }
}

fn topic(index: u8) -> &'static str {
    // Only names that can be queue directories, so puts reach the log.
    ["TopicA", "TopicB", "%RETRY%cg", "T"][usize::from(index) % 4]
}

fn build(input: Input) -> Option<MemStorage> {
    let mut storage = MemStorage::new();
    match input {
        Input::Raw {
            segments,
            queue_files,
        } => {
            for (index, bytes, full) in segments {
                let path = segment_path(u64::from(index % 8) * SEGMENT_BYTES);
                let len = if full {
                    SEGMENT_BYTES
                } else {
                    (bytes.len() as u64).min(2 * SEGMENT_BYTES)
                };
                let _ = storage.delete(&path);
                storage.create(&path, len).ok()?;
                let n = bytes.len().min(len as usize);
                storage.write_at(&path, 0, &bytes[..n]).ok()?;
            }
            for (t, q, bytes) in queue_files {
                let path = format!("consumequeue/{}/{}/00000000000000000000", topic(t), q % 4);
                let bytes = &bytes[..bytes.len().min(400)];
                storage.replace(&path, bytes).ok()?;
            }
        }
        Input::Damaged { puts, damage } => {
            let mut store = MessageStore::open(storage, config()).ok()?;
            for (i, put) in puts.iter().take(64).enumerate() {
                let mut props = Properties::new();
                if let Some(tag) = put.tags {
                    props.insert("TAGS", NAMES[usize::from(tag) % NAMES.len()]);
                }
                let body = &put.body[..put.body.len().min(300)];
                let record = make_record(
                    topic(put.topic),
                    i32::from(put.queue_id % 4),
                    body,
                    props,
                    1_700_000_000_000 + i as i64,
                );
                store
                    .put(record)
                    .expect("a put into a healthy store succeeds");
            }
            check_store(&store, u64::MAX);
            storage = store.into_storage();
            for d in damage.iter().take(8) {
                let paths = storage.paths();
                if paths.is_empty() {
                    break;
                }
                let pick = |f: u8| paths[usize::from(f) % paths.len()].clone();
                match d {
                    Damage::Write { file, pos, bytes } => {
                        let path = pick(*file);
                        let len = storage.len(&path).ok()?;
                        let pos = u64::from(*pos) % len.max(1);
                        let n = bytes.len().min((len - pos.min(len)) as usize);
                        let _ = storage.write_at(&path, pos, &bytes[..n]);
                    }
                    Damage::Truncate { file, len } => {
                        let path = pick(*file);
                        let _ = storage.truncate(&path, u64::from(*len) % (SEGMENT_BYTES + 1));
                    }
                    Damage::Delete { file } => {
                        let _ = storage.delete(&pick(*file));
                    }
                }
            }
        }
    }
    Some(storage)
}

fuzz_target!(|input: Input| {
    let Some(storage) = build(input) else {
        return;
    };
    let Ok(store) = MessageStore::open(storage, config()) else {
        // Refusing to open is allowed (an unreadable store); panicking is not.
        return;
    };
    check_store(&store, u64::MAX);
    let before = queue_ranges(&store);
    let written = store.written_offset();

    // Recovery is idempotent: opening what recovery left finds the same log.
    let storage = store.into_storage();
    let mut store = MessageStore::open(storage, config()).expect("a recovered store reopens");
    assert_eq!(
        queue_ranges(&store),
        before,
        "a second recovery changed the queues"
    );
    assert_eq!(
        store.written_offset(),
        written,
        "a second recovery moved the end of the log"
    );

    // The recovered store accepts appends that continue every queue densely.
    let record = make_record(
        "TopicA",
        0,
        b"after recovery",
        Properties::new(),
        1_800_000_000_000,
    );
    let expected_offset = store.max_offset("TopicA", 0).0;
    let put = store.put(record).expect("a put after recovery succeeds");
    assert_eq!(put.queue_offset.0, expected_offset);
    check_store(&store, u64::MAX);
});
