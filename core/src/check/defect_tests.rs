//! The checkers bite: each deliberate defect of [`crate::defects`], run through the real store or
//! broker over MemStorage, yields a history the checkers flag; the same scenario without the
//! defect yields a clean history. The defect-enabled halves need `--features defects`.

use super::*;
use crate::broker::{Broker, BrokerConfig, BrokerOutput, FlushDiskType};
use crate::defects::Defects;
use crate::message::{keys, MessageRecord, Properties};
use crate::remoting::codes::{request, response};
use crate::remoting::headers::SendMessageRequestHeader;
use crate::remoting::RemotingCommand;
use crate::rng::SeededRng;
use crate::store::{GetStatus, MemStorage, MessageStore, PowerLoss, SegmentStorage, StoreConfig};
use crate::ConnId;
use bytes::Bytes;
use std::collections::BTreeSet;

const BROKER: &str = "broker-a";
const TOPIC: &str = "TopicA";
const T0: u64 = 1_718_000_000_000;

fn store_config(defects: Defects) -> StoreConfig {
    StoreConfig {
        commitlog_segment_bytes: 1 << 16,
        consume_queue_units_per_segment: 64,
        index: crate::store::index::IndexConfig {
            enabled: false,
            hash_slot_count: 16,
            max_index_count: 16,
        },
        defects,
        ..StoreConfig::default()
    }
}

fn body(key: &str) -> Vec<u8> {
    format!("the body of message {key}, long enough to span a few words").into_bytes()
}

fn record(key: &str) -> MessageRecord {
    let mut properties = Properties::new();
    properties.insert(keys::UNIQ_KEY, key);
    let host = "10.0.0.1:50000".parse().expect("test address");
    MessageRecord {
        queue_id: 0,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp_ms: T0 as i64,
        born_host: host,
        store_timestamp_ms: T0 as i64,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(body(key)),
        topic: TOPIC.to_string(),
        properties,
    }
}

/// Puts `key` into the store as an acked send of `flush` mode.
fn put(h: &mut History, store: &mut MessageStore<MemStorage>, key: &str, flush: FlushMode) {
    let op = h.send_invoked(h.len() as u64, "p0", TOPIC, key, &body(key));
    let put = store.put(record(key)).expect("put");
    let queue = QueueRef::new(BROKER, TOPIC, 0);
    h.send_ok(h.len() as u64, op, queue, put.queue_offset.0, flush);
}

/// Makes everything written durable, as a driver would.
fn sync_all(store: &mut MessageStore<MemStorage>) {
    if let Some(req) = store.sync_request() {
        for r in &req.ranges {
            store
                .storage_mut()
                .sync(&r.path, r.start, r.end)
                .expect("sync");
        }
        store.handle_synced(req.up_to);
    }
}

/// Reads every queue back offset by offset, as the simulator's healed phase does: every queue
/// the store has and every queue of `TopicA`'s config (one, queue 0) even when the store lost
/// it. An offset that cannot be read is left out (a hole).
fn read_back(h: &mut History, store: &MessageStore<MemStorage>) {
    let mut queues: BTreeSet<(String, i32)> = BTreeSet::new();
    queues.insert((TOPIC.to_string(), 0));
    for topic in store.topics() {
        for queue_id in store.queue_ids(topic) {
            queues.insert((topic.to_string(), queue_id));
        }
    }
    {
        for (topic, queue_id) in queues {
            let queue = QueueRef::new(BROKER, &topic, queue_id as u32);
            let min = store.min_offset(&topic, queue_id).0;
            let max = store.max_offset(&topic, queue_id).0;
            let mut records = Vec::new();
            for offset in min..max {
                // The stored bytes as they are: the checkers judge them.
                let got = store.get_unverified(
                    &topic,
                    queue_id,
                    crate::store::QueueOffset(offset),
                    1,
                    &|_| true,
                );
                let Ok(got) = got else { continue };
                if got.status != GetStatus::Found {
                    continue;
                }
                for bytes in got.records {
                    let Ok(r) = MessageRecord::decode(&bytes, false) else {
                        continue;
                    };
                    records.push(ReadBackRecord {
                        queue: queue.clone(),
                        queue_offset: r.queue_offset as u64,
                        key: r.properties.get(keys::UNIQ_KEY).unwrap_or("").to_string(),
                        body_crc: body_crc(&r.body),
                        record_crc_ok: MessageRecord::decode(&bytes, true).is_ok(),
                    });
                }
            }
            h.read_back_queue(h.len() as u64, queue, min, max, records);
        }
    }
}

#[cfg(feature = "defects")]
fn invariants(v: &[Violation]) -> Vec<Invariant> {
    let mut out: Vec<Invariant> = v.iter().map(|v| v.invariant).collect();
    out.sort();
    out.dedup();
    out
}

// ---- drop_consume_queue_entry ------------------------------------------------------------------

/// Six SYNC_FLUSH sends to one queue, then the read-back.
fn dropped_entry_scenario(defects: Defects) -> History {
    let mut h = History::new();
    let mut store = MessageStore::open(MemStorage::new(), store_config(defects)).expect("open");
    for i in 0..6 {
        put(&mut h, &mut store, &format!("k{i}"), FlushMode::Sync);
        sync_all(&mut store);
    }
    h.healed(h.len() as u64);
    read_back(&mut h, &store);
    h
}

#[test]
fn without_the_dropped_entry_defect_the_history_is_clean() {
    let h = dropped_entry_scenario(Defects::NONE);
    assert_eq!(check_all(&h, &CheckConfig::default()), vec![]);
}

#[cfg(feature = "defects")]
#[test]
fn a_dropped_consume_queue_entry_is_caught() {
    let h = dropped_entry_scenario(Defects::NONE.with_drop_consume_queue_entry_every(3));
    let v = check_all(&h, &CheckConfig::default());
    assert_eq!(
        invariants(&v),
        vec![Invariant::LostWrite, Invariant::DenseOffsets],
        "{v:#?}"
    );
    // A pull covering the unwritten entry fails, so nothing before it can be read either: the
    // first violation is k0's acknowledgement (event 1).
    assert_eq!(
        (v[0].invariant, v[0].event_index),
        (Invariant::LostWrite, 1)
    );
}

// ---- skip_recovery_crc -------------------------------------------------------------------------

/// Three ASYNC_FLUSH sends; the first two are synced. The third's un-synced sector is torn (a
/// flipped body bit stands for it) when the power fails; the store recovers and is read back.
fn torn_tail_scenario(defects: Defects) -> History {
    let mut h = History::new();
    let config = store_config(defects);
    let mut store = MessageStore::open(MemStorage::new(), config.clone()).expect("open");
    put(&mut h, &mut store, "k0", FlushMode::Async);
    put(&mut h, &mut store, "k1", FlushMode::Async);
    sync_all(&mut store);
    put(&mut h, &mut store, "k2", FlushMode::Async);

    let mut storage = store.into_storage();
    let path = "commitlog/00000000000000000000";
    let contents = storage.contents(path).expect("segment");
    let needle = body("k2");
    let pos = contents
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("k2's body is in the log") as u64;
    assert!(
        pos >= storage.synced_len(path).unwrap_or(0),
        "k2 must be un-synced"
    );
    storage.flip_bit(path, pos + 10, 3).expect("flip");
    storage.power_loss(PowerLoss::KeepUnsynced, &mut SeededRng::new(7));
    h.power_lost(h.len() as u64, BROKER, PowerLossPolicy::TearUnsynced);

    let store = MessageStore::open(storage, config).expect("recovery");
    h.node_restarted(h.len() as u64, BROKER);
    h.healed(h.len() as u64);
    read_back(&mut h, &store);
    h
}

#[test]
fn without_the_recovery_crc_defect_a_torn_tail_is_cut_off() {
    let h = torn_tail_scenario(Defects::NONE);
    assert_eq!(check_all(&h, &CheckConfig::default()), vec![]);
    assert_eq!(statistics(&h).allowed_losses, 1);
}

#[cfg(feature = "defects")]
#[test]
fn recovery_accepting_a_bad_crc_is_caught() {
    let h = torn_tail_scenario(Defects::NONE.with_skip_recovery_crc(true));
    let v = check_all(&h, &CheckConfig::default());
    assert_eq!(
        invariants(&v),
        vec![Invariant::Corrupt, Invariant::BadCrc],
        "{v:#?}"
    );
    let last = h.len() - 1;
    assert_eq!(v[0].event_index, last, "{v:#?}");
}

// ---- ack_before_sync ---------------------------------------------------------------------------

fn send_command(key: &str) -> RemotingCommand {
    let mut properties = Properties::new();
    properties.insert(keys::UNIQ_KEY, key);
    properties.insert(keys::WAIT, "true");
    let header = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: TOPIC.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp_ms: T0 as i64,
        flag: 0,
        properties: Some(properties.encode()),
        reconsume_times: Some(0),
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
        broker_name: None,
    };
    let mut cmd =
        RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(Bytes::from(body(key)));
    header.write_to(&mut cmd, true);
    cmd
}

/// A SYNC_FLUSH broker takes one send; the power fails before the driver completes the sync
/// it asked for; the store recovers and is read back.
fn early_ack_scenario(defects: Defects) -> History {
    let mut h = History::new();
    let mut config = BrokerConfig {
        flush_disk_type: FlushDiskType::SyncFlush,
        ..BrokerConfig::default()
    };
    config.store = store_config(defects);
    let store_config = config.store.clone();
    let mut broker = Broker::new(config, MemStorage::new(), T0).expect("broker");
    let conn = ConnId(1);
    broker.handle_connected(T0, conn, "10.0.0.1:40000".parse().expect("addr"));
    let op = h.send_invoked(1, "p0", TOPIC, "k0", &body("k0"));
    let mut cmd = send_command("k0");
    cmd.opaque = 1;
    broker.handle_request(T0, conn, cmd);
    let outputs: Vec<BrokerOutput> = std::iter::from_fn(|| broker.poll_output()).collect();
    let answer = outputs.iter().find_map(|o| match o {
        BrokerOutput::Send { command, .. } if command.is_response() && command.opaque == 1 => {
            Some(command.clone())
        }
        _ => None,
    });
    match answer {
        Some(resp) if resp.code == response::SUCCESS => {
            let offset: u64 = resp.ext_num("queueOffset").expect("queueOffset");
            h.send_ok(
                2,
                op,
                QueueRef::new(BROKER, TOPIC, 0),
                offset,
                FlushMode::Sync,
            );
        }
        Some(resp) => h.send_failed(2, op, &format!("code {}", resp.code)),
        None => h.send_timed_out(2, op),
    }
    // The power fails before the requested sync is done.
    let mut storage = broker.store().storage().clone();
    storage.power_loss(PowerLoss::DropUnsynced, &mut SeededRng::new(1));
    h.power_lost(3, BROKER, PowerLossPolicy::DropUnsynced);
    let store = MessageStore::open(storage, store_config).expect("recovery");
    h.node_restarted(4, BROKER);
    h.healed(5);
    read_back(&mut h, &store);
    h
}

#[test]
fn without_the_early_ack_defect_an_unsynced_send_is_not_acknowledged() {
    let h = early_ack_scenario(Defects::NONE);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::SendTimedOut { .. })));
    assert_eq!(check_all(&h, &CheckConfig::default()), vec![]);
}

#[cfg(feature = "defects")]
#[test]
fn an_ack_before_sync_is_caught() {
    let h = early_ack_scenario(Defects::NONE.with_ack_before_sync(true));
    let v = check_all(&h, &CheckConfig::default());
    assert_eq!(invariants(&v), vec![Invariant::LostWrite], "{v:#?}");
    assert_eq!(v[0].event_index, 1, "{v:#?}");
    assert!(v[0]
        .to_string()
        .starts_with("lost-write: acked Sync send k0"));
}

#[test]
fn defects_are_off_by_default() {
    assert_eq!(StoreConfig::default().defects, Defects::NONE);
    assert!(!Defects::default().any());
    assert!(!BrokerConfig::default().store.defects.any());
}
