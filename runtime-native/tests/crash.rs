//! A process crash loses nothing: `vostok standalone` is killed with SIGKILL in the middle of a
//! produce load from several connections, restarted on the same data directory, and every
//! acknowledged message must be there, at the queue offset its acknowledgement named, with the
//! same body, properties and offset message id. The page cache survives a process crash, so this
//! holds under ASYNC_FLUSH as much as under SYNC_FLUSH.
//!
//! Each run uses small CommitLog and ConsumeQueue segments so the load rolls over many files, and
//! kills at a different point (a number of acknowledgements), so the kill lands in different
//! places of a segment.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Concurrent producer connections.
const PRODUCERS: usize = 4;
/// Topics the load spreads over (4 queues each, created from TBW102).
const TOPICS: usize = 6;
const QUEUES_PER_TOPIC: i32 = 4;
/// Small segments: a CommitLog file every 32 KiB, a ConsumeQueue file every 50 units, an index
/// file every 1 000 entries (each message indexes two keys).
/// Checkpoints every 100 ms, so the kill finds one some way back.
const BROKER_CONF: &str = "mappedFileSizeCommitLog=32768\nmappedFileSizeConsumeQueue=1000\n\
                           maxHashSlotNum=500\nmaxIndexNum=1000\nflushIntervalConsumeQueue=100\n";
/// QUERY_MESSAGE (REMOTING.md §2.1).
const QUERY_MESSAGE: i32 = 12;
/// How long the load may take to reach a kill point before the test gives up.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// Properties the broker stamps on every stored message; everything else is the producer's.
/// `__CRC32#` is the whole-record CRC (`enabledAppendPropCRC`, on by default), which consumers
/// receive among the properties as RocketMQ's do.
const STAMPED: [&str; 4] = ["CLUSTER", "MSG_REGION", "TRACE_ON", "__CRC32#"];

/// One message a producer sent (acknowledged or not): what must be stored if it was.
#[derive(Clone, Debug)]
struct Sent {
    topic: String,
    queue_id: i32,
    body: Vec<u8>,
    properties: BTreeMap<String, String>,
}

/// A SEND_OK: where the broker said the message is.
#[derive(Clone, Debug)]
struct Ack {
    sent: Sent,
    queue_offset: i64,
    msg_id: String,
}

fn topic_name(run: &str, t: usize) -> String {
    format!("Crash{run}T{t}")
}

/// The message `seq` of producer `producer`: topic, queue, a body of varying length (so records
/// straddle segment ends at different points) and a few properties, one of them unique.
fn message(run: &str, producer: usize, seq: usize) -> Sent {
    let topic = topic_name(run, (producer + seq) % TOPICS);
    let queue_id = (seq % QUEUES_PER_TOPIC as usize) as i32;
    let mut body = format!("{run}/p{producer}/s{seq}/").into_bytes();
    // Deterministic filler of 0..600 bytes.
    let filler = (seq * 7919 + producer * 104_729) % 600;
    body.extend((0..filler).map(|i| b'a' + ((i + seq) % 26) as u8));
    let uniq = format!("{:08X}{:08X}{:016X}", producer, seq, 0xC0FFEEu64);
    let mut properties = BTreeMap::new();
    properties.insert("TAGS".to_string(), format!("tag{}", seq % 3));
    properties.insert("KEYS".to_string(), format!("key-{producer}-{seq}"));
    properties.insert("WAIT".to_string(), "true".to_string());
    properties.insert("UNIQ_KEY".to_string(), uniq);
    properties.insert("crashProducer".to_string(), producer.to_string());
    Sent {
        topic,
        queue_id,
        body,
        properties,
    }
}

fn encoded(properties: &BTreeMap<String, String>) -> String {
    let pairs: Vec<(&str, &str)> = properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    encode_properties(&pairs)
}

/// What the producers saw before the broker died.
struct Load {
    acks: Vec<Ack>,
    /// Every message sent, acknowledged or not, by its UNIQ_KEY.
    attempted: BTreeMap<String, Sent>,
}

/// Runs `PRODUCERS` connections sending as fast as the broker answers, kills the broker with
/// SIGKILL once `kill_after_acks` sends were acknowledged, and returns what was acknowledged.
fn load_and_kill(broker: &mut Standalone, run: &str, kill_after_acks: usize) -> Load {
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let attempted = Arc::new(Mutex::new(BTreeMap::<String, Sent>::new()));
    let ack_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let addr = broker.broker_addr.clone();
        let run = run.to_string();
        let (acks, attempted, ack_count, stop) = (
            Arc::clone(&acks),
            Arc::clone(&attempted),
            Arc::clone(&ack_count),
            Arc::clone(&stop),
        );
        producers.push(std::thread::spawn(move || {
            let mut conn = RawConn::connect(&addr);
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let sent = message(&run, producer, seq);
                seq += 1;
                let uniq = sent.properties["UNIQ_KEY"].clone();
                attempted.lock().unwrap().insert(uniq.clone(), sent.clone());
                let ext = send_v2_ext(&sent.topic, sent.queue_id, encoded(&sent.properties));
                let Some(response) =
                    try_request(&mut conn, code::SEND_MESSAGE_V2, &ext, &sent.body)
                else {
                    // The broker is gone: the message is unacknowledged.
                    return;
                };
                assert_eq!(
                    response.code(),
                    0,
                    "send {uniq} answered {:?}",
                    response.header
                );
                let queue_offset = response
                    .ext_i64("queueOffset")
                    .expect("SEND_OK carries queueOffset");
                assert_eq!(response.ext_i64("queueId"), Some(sent.queue_id as i64));
                let msg_id = response.ext("msgId").expect("SEND_OK carries msgId");
                acks.lock().unwrap().push(Ack {
                    sent,
                    queue_offset,
                    msg_id,
                });
                ack_count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let deadline = Instant::now() + LOAD_TIMEOUT;
    // A kill point also waits for a checkpoint, so the restart recovers from one.
    let checkpoint = broker.data_dir.join("checkpoint");
    while ack_count.load(Ordering::Relaxed) < kill_after_acks || !checkpoint.exists() {
        if Instant::now() >= deadline || producers.iter().all(|p| p.is_finished()) {
            stop.store(true, Ordering::Relaxed);
            broker.kill();
            for p in producers {
                let _ = p.join();
            }
            panic!(
                "load reached {} of {kill_after_acks} acknowledgements",
                ack_count.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    broker.kill();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().expect("producer thread");
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let attempted = std::mem::take(&mut *attempted.lock().unwrap());
    assert!(acks.len() >= kill_after_acks);
    Load { acks, attempted }
}

/// The producer's properties of a stored record: everything but what the broker stamps.
fn producer_properties(record: &StoredRecord) -> BTreeMap<String, String> {
    record
        .properties
        .iter()
        .filter(|(k, _)| !STAMPED.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Pulls every stored record of one queue (from offset 0 to its max offset) with its location.
fn pull_queue(conn: &mut RawConn, topic: &str, queue_id: i32) -> Vec<LocatedRecord> {
    let max = max_offset(conn, topic, queue_id);
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < max {
        let ext = pull_ext("crash-check", topic, queue_id, offset);
        let f = conn.request(code::PULL_MESSAGE, &ext, &[]);
        assert_eq!(
            f.code(),
            0,
            "pull {topic}/{queue_id}@{offset} (max {max}) failed: {:?}",
            f.header
        );
        let records = decode_located_records(&f.body);
        assert!(!records.is_empty(), "pull returned code 0 with no records");
        offset = f
            .ext_i64("nextBeginOffset")
            .expect("pull response carries nextBeginOffset");
        out.extend(records);
    }
    out
}

/// Restarts the killed broker on the same data directory and checks everything the load left.
/// Returns how many records the queues hold (acknowledged and not).
fn check_after_restart(broker: &mut Standalone, run: &str, load: &Load) -> usize {
    broker.spawn_again();
    // The log says it was a crash, recovered from the checkpoint.
    let (mode, marker, scan_start) = recovery_line(&broker.stderr_log());
    assert_eq!(mode, "crash", "{}", broker.stderr_tail());
    assert!(
        marker.starts_with("abort marker found"),
        "{marker}: {}",
        broker.stderr_tail()
    );
    assert!(
        scan_start > 0,
        "crash recovery scanned from 0, not from the checkpoint: {}",
        broker.stderr_tail()
    );
    let mut conn = RawConn::connect(&broker.broker_addr);

    let mut acked_by_queue: BTreeMap<(String, i32), BTreeMap<i64, &Ack>> = BTreeMap::new();
    for ack in &load.acks {
        let previous = acked_by_queue
            .entry((ack.sent.topic.clone(), ack.sent.queue_id))
            .or_default()
            .insert(ack.queue_offset, ack);
        assert!(
            previous.is_none(),
            "two sends acknowledged at {}/{}@{}",
            ack.sent.topic,
            ack.sent.queue_id,
            ack.queue_offset
        );
    }

    let mut seen_uniq = BTreeSet::new();
    let mut stored_total = 0usize;
    for t in 0..TOPICS {
        let topic = topic_name(run, t);
        for queue_id in 0..QUEUES_PER_TOPIC {
            let records = pull_queue(&mut conn, &topic, queue_id);
            stored_total += records.len();
            // Dense: the record at index i has queue offset i.
            for (i, located) in records.iter().enumerate() {
                let r = &located.record;
                assert_eq!(
                    r.queue_offset, i as i64,
                    "{topic}/{queue_id}: offsets not dense"
                );
                assert_eq!((r.topic.as_str(), r.queue_id), (topic.as_str(), queue_id));
                // Acknowledged or not, every stored record is one a producer sent, intact,
                // stored once.
                let props = producer_properties(r);
                let uniq = props
                    .get("UNIQ_KEY")
                    .unwrap_or_else(|| panic!("{topic}/{queue_id}@{i}: no UNIQ_KEY: {props:?}"));
                let sent = load
                    .attempted
                    .get(uniq)
                    .unwrap_or_else(|| panic!("{topic}/{queue_id}@{i}: unknown record {uniq}"));
                assert_eq!(
                    (&sent.topic, sent.queue_id),
                    (&topic, queue_id),
                    "{uniq} stored in the wrong queue"
                );
                assert!(r.body == sent.body, "{topic}/{queue_id}@{i}: body differs");
                // What the producer sent, but WAIT: read for the answer, not stored (RocketMQ
                // 4.9.8 drops it from a single message's stored properties too).
                let mut expected = sent.properties.clone();
                expected.remove("WAIT");
                assert_eq!(props, expected, "{topic}/{queue_id}@{i}: properties");
                for stamped in STAMPED {
                    assert!(
                        r.properties.iter().any(|(k, _)| k == stamped),
                        "{topic}/{queue_id}@{i}: {stamped} missing"
                    );
                }
                assert!(seen_uniq.insert(uniq.clone()), "{uniq} stored twice");
            }
            // Every acknowledged message is at the offset its acknowledgement named.
            for (offset, ack) in acked_by_queue
                .get(&(topic.clone(), queue_id))
                .into_iter()
                .flatten()
            {
                let located = records.get(*offset as usize).unwrap_or_else(|| {
                    panic!(
                        "{topic}/{queue_id}@{offset}: acknowledged, lost (queue holds {})",
                        records.len()
                    )
                });
                assert_eq!(
                    producer_properties(&located.record).get("UNIQ_KEY"),
                    ack.sent.properties.get("UNIQ_KEY"),
                    "{topic}/{queue_id}@{offset}: a different message"
                );
                assert_eq!(
                    located.offset_msg_id, ack.msg_id,
                    "{topic}/{queue_id}@{offset}: msgId"
                );
            }
        }
    }
    assert!(stored_total >= load.acks.len());
    assert!(
        stored_total <= load.acks.len() + PRODUCERS,
        "{stored_total} stored, {} acknowledged: more than one send in flight per producer",
        load.acks.len()
    );

    // The key index finds every acknowledged message by its KEYS and by its UNIQ_KEY.
    for ack in &load.acks {
        let uniq = &ack.sent.properties["UNIQ_KEY"];
        for (key, by_uniq) in [(&ack.sent.properties["KEYS"], false), (uniq, true)] {
            let found = query_by_key(&mut conn, &ack.sent.topic, key, by_uniq);
            assert!(
                found
                    .iter()
                    .any(|r| producer_properties(r).get("UNIQ_KEY") == Some(uniq)),
                "QUERY_MESSAGE {}/{key} does not find acknowledged {uniq}",
                ack.sent.topic
            );
        }
    }

    // The broker takes new sends and continues every queue's offsets.
    for t in 0..TOPICS {
        let topic = topic_name(run, t);
        for queue_id in 0..QUEUES_PER_TOPIC {
            let before = max_offset(&mut conn, &topic, queue_id);
            let f = send_v2(&mut conn, &topic, queue_id, b"after restart", "after");
            assert_eq!(f.code(), 0, "send after restart: {:?}", f.header);
            assert_eq!(f.ext_i64("queueOffset"), Some(before), "{topic}/{queue_id}");
            let (pulled, records) = pull(&mut conn, "crash-check", &topic, queue_id, before);
            assert_eq!(pulled.code(), 0);
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].body, b"after restart");
        }
    }
    stored_total
}

/// QUERY_MESSAGE by `key` over all time: the records answered (none on QUERY_NOT_FOUND).
fn query_by_key(conn: &mut RawConn, topic: &str, key: &str, by_uniq: bool) -> Vec<StoredRecord> {
    let mut ext = vec![
        ("topic", topic.to_string()),
        ("key", key.to_string()),
        ("maxNum", "32".to_string()),
        ("beginTimestamp", "0".to_string()),
        ("endTimestamp", i64::MAX.to_string()),
    ];
    if by_uniq {
        ext.push(("_UNIQUE_KEY_QUERY", "true".to_string()));
    }
    let f = conn.request(QUERY_MESSAGE, &ext, &[]);
    match f.code() {
        0 => decode_records(&f.body),
        22 => Vec::new(),
        other => panic!(
            "QUERY_MESSAGE {topic}/{key} answered {other}: {:?}",
            f.header
        ),
    }
}

/// The store's recovery line in a broker log: (mode, what it said of the abort marker, scan
/// start offset).
fn recovery_line(log: &str) -> (String, String, u64) {
    let line = log
        .lines()
        .find(|l| l.contains("recovery ("))
        .unwrap_or_else(|| panic!("no recovery line in the log:\n{log}"));
    let rest = &line[line.find("recovery (").unwrap() + "recovery (".len()..];
    let (mode, rest) = rest.split_once("): ").expect("recovery (<mode>): ...");
    let (marker, _) = rest.split_once(", ").expect("the abort marker is named");
    let from = rest
        .split_once("from offset ")
        .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no scan start in {line}"));
    (mode.to_string(), marker.to_string(), from)
}

fn crash_runs(sync_flush: bool, kill_points: &[usize]) {
    for (i, &kill_after_acks) in kill_points.iter().enumerate() {
        let run = format!("{}{i}", if sync_flush { "S" } else { "A" });
        let mut broker = Standalone::start_with(BrokerOptions {
            broker_conf: Some(BROKER_CONF.to_string()),
            sync_flush,
        });
        let load = load_and_kill(&mut broker, &run, kill_after_acks);
        let segments = std::fs::read_dir(broker.data_dir.join("commitlog"))
            .expect("commitlog directory")
            .count();
        assert!(
            segments >= 3,
            "the load rolled only {segments} CommitLog files"
        );
        let stored = check_after_restart(&mut broker, &run, &load);
        eprintln!(
            "run {run}: killed after {} acknowledged sends ({} attempted), {stored} stored, \
             {segments} CommitLog files",
            load.acks.len(),
            load.attempted.len()
        );
        let status = broker.stop();
        assert!(
            status.success(),
            "vostok exited with {status} after SIGTERM"
        );
        // After SIGTERM the store closed cleanly: the next start says so.
        broker.spawn_again();
        let (mode, marker, _) = recovery_line(&broker.stderr_log());
        assert_eq!(mode, "clean shutdown", "{}", broker.stderr_tail());
        assert_eq!(marker, "no abort marker");
        let mut conn = RawConn::connect(&broker.broker_addr);
        let last = load.acks.last().expect("acknowledged sends");
        let found = query_by_key(
            &mut conn,
            &last.sent.topic,
            &last.sent.properties["KEYS"],
            false,
        );
        assert_eq!(found.len(), 1, "after the clean restart");
        broker.kill();
    }
}

#[test]
fn sigkill_under_async_flush_loses_no_acknowledged_message() {
    crash_runs(false, &[300, 1200, 2500]);
}

#[test]
fn sigkill_under_sync_flush_loses_no_acknowledged_message() {
    crash_runs(true, &[300, 1200, 2500]);
}
