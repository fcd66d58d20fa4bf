//! Helpers shared by the fuzz targets: frame building, the command round trip and the store
//! invariants every harness checks after driving the core.

use bytes::{Bytes, BytesMut};
use vostok_core::message::MessageRecord;
use vostok_core::remoting::{
    encode, wire_serialize_type, FrameDecoder, FrameError, RemotingCommand, SerializeType,
};
use vostok_core::store::{MessageStore, QueueOffset, SegmentStorage};

/// One frame around `header` and `body`, the header in `serialize_type` (0 JSON, 1 ROCKETMQ).
///
/// ```text
/// | total_len = 4 + H + B : i32 | serialize_type : u8 | H : u24 | header | body |
/// ```
pub fn frame(serialize_type: u8, header: &[u8], body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(8 + header.len() + body.len());
    let total = (4 + header.len() + body.len()) as u32;
    out.extend_from_slice(&total.to_be_bytes());
    let header_word = (u32::from(serialize_type) << 24) | (header.len() as u32 & 0x00FF_FFFF);
    out.extend_from_slice(&header_word.to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// Decodes exactly one frame that must be whole: `Ok(None)` would mean the frame was cut short.
pub fn decode_whole(mut buf: BytesMut) -> Result<RemotingCommand, FrameError> {
    let mut decoder = FrameDecoder::default();
    match decoder.decode(&mut buf)? {
        Some(cmd) => {
            assert!(buf.is_empty(), "a whole frame left {} bytes", buf.len());
            Ok(cmd)
        }
        None => panic!("a whole frame was reported incomplete"),
    }
}

/// Encodes a decoded command and decodes it again: every field survives, the header encoding is
/// the one the encoder chose, and encoding the result again gives the same bytes (the encoder's
/// output is canonical).
pub fn assert_command_round_trip(cmd: &RemotingCommand) {
    let mut first = BytesMut::new();
    encode(cmd, &mut first);
    assert!(!first.is_empty(), "a decoded command could not be encoded");
    let again = decode_whole(first.clone()).expect("an encoded command decodes");

    let mut expected = cmd.clone();
    expected.serialize_type = wire_serialize_type(cmd);
    if expected.serialize_type == SerializeType::RocketMq && expected.remark.as_deref() == Some("")
    {
        // Documented: the binary header cannot tell an empty remark from none.
        expected.remark = None;
    }
    assert_eq!(again, expected, "command changed across encode/decode");

    let mut second = BytesMut::new();
    encode(&again, &mut second);
    assert_eq!(
        first, second,
        "re-encoding a decoded frame changed its bytes"
    );
}

/// Checks what a store serves: for every queue `min <= max`, every offset in `[min, max)` is
/// readable, records come back in dense queue order, each decodes with a valid body CRC and
/// belongs to its queue. `max_records_per_queue` bounds the work for large queues.
pub fn check_store<S: SegmentStorage>(store: &MessageStore<S>, max_records_per_queue: u64) {
    let topics: Vec<String> = store.topics().map(str::to_owned).collect();
    for topic in topics {
        for queue_id in store.queue_ids(&topic) {
            let min = store.min_offset(&topic, queue_id).0;
            let max = store.max_offset(&topic, queue_id).0;
            assert!(min <= max, "{topic}/{queue_id}: min {min} > max {max}");
            let end = max.min(min.saturating_add(max_records_per_queue));
            let mut next = min;
            while next < end {
                let got = store
                    .get(&topic, queue_id, QueueOffset(next), 32, &|_| true)
                    .unwrap_or_else(|e| panic!("{topic}/{queue_id} @ {next}: get failed: {e}"));
                assert!(
                    !got.records.is_empty(),
                    "{topic}/{queue_id} @ {next} (min {min}, max {max}): no record, {:?}",
                    got.status
                );
                for raw in &got.records {
                    let record = MessageRecord::decode(raw, true).unwrap_or_else(|e| {
                        panic!("{topic}/{queue_id} @ {next}: served record is bad: {e}")
                    });
                    assert_eq!(record.topic, topic, "record served from another topic");
                    assert_eq!(
                        record.queue_id, queue_id,
                        "record served from another queue"
                    );
                    assert_eq!(
                        record.queue_offset, next as i64,
                        "{topic}/{queue_id}: queue offsets are not dense"
                    );
                    let physical = record.physical_offset as u64;
                    let stored = store
                        .read_record(vostok_core::store::CommitLogOffset(physical))
                        .unwrap_or_else(|e| panic!("record at {physical} unreadable: {e}"))
                        .unwrap_or_else(|| panic!("no record at its own offset {physical}"));
                    assert_eq!(
                        &stored, raw,
                        "record at {physical} differs from what was served"
                    );
                    next += 1;
                }
                assert_eq!(
                    got.next_begin_offset.0, next,
                    "next_begin_offset skips records"
                );
            }
        }
    }
}

/// A property string built from fuzzed pairs, the way producers write one.
pub fn property_string(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        out.push_str(name);
        out.push('\u{1}');
        out.push_str(value);
        out.push('\u{2}');
    }
    out
}

/// The bytes as one `Bytes`.
pub fn bytes_of(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(data)
}

/// Ext-field keys the core reads, so fuzzed headers hit real fields most of the time.
pub const KNOWN_KEYS: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "producerGroup",
    "topic",
    "defaultTopic",
    "defaultTopicQueueNums",
    "queueId",
    "sysFlag",
    "bornTimestamp",
    "flag",
    "properties",
    "reconsumeTimes",
    "unitMode",
    "maxReconsumeTimes",
    "batch",
    "bname",
    "consumerGroup",
    "queueOffset",
    "maxMsgNums",
    "commitOffset",
    "suspendTimeoutMillis",
    "subscription",
    "subVersion",
    "expressionType",
    "maxMsgBytes",
    "timestamp",
    "clientID",
    "readQueueNums",
    "writeQueueNums",
    "perm",
    "topicFilterType",
    "topicSysFlag",
    "order",
    "attributes",
    "clusterName",
    "brokerName",
    "brokerAddr",
    "haServerAddr",
    "brokerId",
    "compressed",
    "bodyCrc32",
    "heartbeatTimeoutMillis",
    "enableActingMaster",
    "__ZONE_NAME",
    "boundaryType",
    "lo",
    "namespace",
    "key",
    "value",
];

/// Topic and group names the harnesses draw from, so requests meet each other's state.
pub const NAMES: &[&str] = &[
    "TopicA",
    "TopicB",
    "%RETRY%cg",
    "%DLQ%cg",
    "TBW102",
    "SCHEDULE_TOPIC_XXXX",
    "cg",
    "pg",
    "DefaultCluster",
    "broker-a",
    "",
    " ",
    "a/b",
    "..",
    "TopicA\u{1}x",
    "é",
];

/// A fuzzed ext-field value.
#[derive(Clone, Debug, arbitrary::Arbitrary)]
pub enum FuzzValue {
    Int(i64),
    Small(u8),
    Name(u8),
    Bool(bool),
    Text(String),
}

impl FuzzValue {
    pub fn render(&self) -> String {
        match self {
            FuzzValue::Int(n) => n.to_string(),
            FuzzValue::Small(n) => (i64::from(*n) - 16).to_string(),
            FuzzValue::Name(i) => NAMES[usize::from(*i) % NAMES.len()].to_owned(),
            FuzzValue::Bool(b) => b.to_string(),
            FuzzValue::Text(s) => s.clone(),
        }
    }
}

/// A fuzzed ext-field key: mostly a known one, sometimes anything.
#[derive(Clone, Debug, arbitrary::Arbitrary)]
pub enum FuzzKey {
    Known(u8),
    Other(String),
}

impl FuzzKey {
    pub fn render(&self) -> String {
        match self {
            FuzzKey::Known(i) => KNOWN_KEYS[usize::from(*i) % KNOWN_KEYS.len()].to_owned(),
            FuzzKey::Other(s) => s.clone(),
        }
    }
}

/// Fuzzed ext fields.
pub type FuzzExt = Vec<(FuzzKey, FuzzValue)>;

/// A request with `code`, the fuzzed ext fields and `body`.
pub fn request_with(code: i32, ext: &FuzzExt, body: Vec<u8>) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code);
    for (key, value) in ext {
        cmd.ext_fields.insert(key.render(), value.render());
    }
    cmd.body = Bytes::from(body);
    cmd
}

/// A store small enough to fuzz: 64 KiB CommitLog segments (so segment rolls happen), 64-unit
/// ConsumeQueue segments, 8 KiB bodies and a small key index (files fill up and roll). The
/// default index file alone is 420 MB, created at full size in memory.
pub fn small_store_config() -> vostok_core::store::StoreConfig {
    vostok_core::store::StoreConfig {
        commitlog_segment_bytes: 64 * 1024,
        consume_queue_units_per_segment: 64,
        max_message_size_bytes: 8 * 1024,
        index: small_index_config(),
        ..Default::default()
    }
}

/// A key index of 64 hash slots and 128 entries per file.
pub fn small_index_config() -> vostok_core::store::index::IndexConfig {
    vostok_core::store::index::IndexConfig {
        enabled: true,
        hash_slot_count: 64,
        max_index_count: 128,
    }
}

/// A broker config over [`small_store_config`], with one NameServer so registration runs.
pub fn small_broker_config() -> vostok_core::broker::BrokerConfig {
    vostok_core::broker::BrokerConfig {
        store: small_store_config(),
        namesrv_addrs: vec!["127.0.0.1:9876".to_owned()],
        default_topic_queue_nums: 4,
        ..Default::default()
    }
}

/// A record as a producer would have it stored: born and store hosts on loopback, the store
/// fills in the offsets.
pub fn make_record(
    topic: &str,
    queue_id: i32,
    body: &[u8],
    properties: vostok_core::message::Properties,
    now_ms: i64,
) -> MessageRecord {
    MessageRecord {
        queue_id,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp_ms: now_ms,
        born_host: "127.0.0.1:40000".parse().expect("literal address"),
        store_timestamp_ms: now_ms,
        store_host: "127.0.0.1:10911".parse().expect("literal address"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::copy_from_slice(body),
        topic: topic.to_owned(),
        properties,
    }
}

/// Every queue's `(min, max)` offsets, to compare a store before and after reopening.
pub fn queue_ranges<S: SegmentStorage>(
    store: &MessageStore<S>,
) -> std::collections::BTreeMap<(String, i32), (u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for topic in store.topics() {
        for queue_id in store.queue_ids(topic) {
            out.insert(
                (topic.to_owned(), queue_id),
                (
                    store.min_offset(topic, queue_id).0,
                    store.max_offset(topic, queue_id).0,
                ),
            );
        }
    }
    out
}
