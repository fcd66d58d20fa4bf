//! Timer messages: routing into `rmq_sys_wheel_timer`, delivery within the precision and never
//! early, the maximum delay, restarts, crashes and power losses, bounded memory.

use super::*;
use crate::broker::timer::store::{TimerStore, TimerStoreConfig, TimerUnit, MAGIC_DEFAULT};
use crate::broker::timer::{
    TimerConfig, TIMER_DELAY_MS, TIMER_DELAY_SEC, TIMER_DELIVER_MS, TIMER_OUT_MS, TIMER_TOPIC,
};
use crate::message::keys;
use crate::store::{MemStorage, PowerLoss, QueueOffset};

/// A wheel of one hour (7 202 slots), small timer log segments.
fn timer_config() -> BrokerConfig {
    let mut config = test_config();
    config.timer = TimerConfig {
        max_delay_sec: 3_600,
        log_segment_bytes: 52 * 64,
        ..TimerConfig::default()
    };
    config
}

fn timed(topic: &str, body: &[u8], property: &str, value: &str) -> RemotingCommand {
    send_request(
        request::SEND_MESSAGE_V2,
        topic,
        0,
        body,
        &props(&[("TAGS", "t"), ("WAIT", "true"), (property, value)]),
    )
}

/// Sends a request and answers the syncs it causes (a dropped `Sync` output would leave the
/// broker waiting for it forever), like a driver.
fn send(h: &mut Harness, cmd: RemotingCommand) -> RemotingCommand {
    let outputs = h.request(1, cmd);
    let opaque = h.next_opaque;
    let answer = responses_on(&outputs, 1)
        .into_iter()
        .find(|c| c.opaque == opaque)
        .expect("answered at once");
    answer_syncs(h, outputs);
    answer
}

fn bodies(h: &Harness, topic: &str) -> Vec<String> {
    let got = h
        .broker
        .store()
        .get(topic, 0, QueueOffset(0), 1_000, &|_| true)
        .unwrap();
    let mut out: Vec<String> = got
        .records
        .iter()
        .map(|b| {
            String::from_utf8_lossy(&MessageRecord::decode(b, true).unwrap().body).into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Steps the clock by 100 ms up to `until_ms`, recording when each body first appears.
fn watch(h: &mut Harness, until_ms: u64) -> BTreeMap<String, u64> {
    let mut seen = BTreeMap::new();
    let mut now = h.now_ms;
    while now <= until_ms {
        step(h, now);
        for body in bodies(h, "TopicA") {
            seen.entry(body).or_insert(now);
        }
        now += 100;
    }
    seen
}

#[test]
fn a_timer_waits_in_the_timer_topic_with_its_real_queue() {
    let mut h = Harness::new(timer_config());
    let resp = send(&mut h, timed("TopicA", b"a", TIMER_DELAY_SEC, "2"));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert!(bodies(&h, "TopicA").is_empty());
    let topic = h.broker.topics().get(TIMER_TOPIC).cloned().expect("exists");
    assert_eq!(topic.read_queue_nums, 1);
    let got = h
        .broker
        .store()
        .get(TIMER_TOPIC, 0, QueueOffset(0), 10, &|_| true)
        .unwrap();
    let record = MessageRecord::decode(&got.records[0], true).unwrap();
    assert_eq!(
        record.properties.get(TIMER_OUT_MS),
        Some(&*(T0 + 2_000).to_string())
    );
    assert_eq!(record.properties.get(keys::REAL_TOPIC), Some("TopicA"));
    assert_eq!(record.properties.get(keys::REAL_QID), Some("0"));
    let stats = h.broker.timer_stats();
    assert_eq!((stats.pending, stats.enqueued_queue_offset), (1, 1));
    let next = h.broker.timer_stats().next_delivery_ms;
    assert_eq!(
        next,
        Some(T0 + 2_000),
        "the broker wakes when the slot is due"
    );
}

#[test]
fn timers_arrive_within_the_precision_and_never_early() {
    let mut h = Harness::new(timer_config());
    let cases = [
        (
            "deliver-2500",
            TIMER_DELIVER_MS,
            (T0 + 2_500).to_string(),
            T0 + 2_500,
        ),
        (
            "delay-ms-1200",
            TIMER_DELAY_MS,
            "1200".to_owned(),
            T0 + 1_200,
        ),
        ("delay-sec-4", TIMER_DELAY_SEC, "4".to_owned(), T0 + 4_000),
        (
            "deliver-3000",
            TIMER_DELIVER_MS,
            (T0 + 3_000).to_string(),
            T0 + 3_000,
        ),
    ];
    for (body, property, value, _) in &cases {
        let resp = send(&mut h, timed("TopicA", body.as_bytes(), property, value));
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    }
    let seen = watch(&mut h, T0 + 6_000);
    for (body, _, _, due) in &cases {
        let at = seen[*body];
        assert!(at >= *due, "{body} arrived {} ms early", due - at);
        assert!(at <= due + 1_000, "{body} arrived {} ms late", at - due);
    }
    // Exactly once each, the timer bookkeeping added.
    assert_eq!(bodies(&h, "TopicA").len(), cases.len());
    let got = h
        .broker
        .store()
        .get("TopicA", 0, QueueOffset(0), 10, &|_| true)
        .unwrap();
    let record = MessageRecord::decode(&got.records[0], true).unwrap();
    assert!(record.properties.get("TIMER_DEQUEUE_MS").is_some());
    assert_eq!(record.properties.get("TAGS"), Some("t"));
    assert_eq!(h.broker.timer_stats().pending, 0);
    // Nothing waits: the timer does not wake the broker.
    step(&mut h, T0 + 20_000);
    assert_eq!(h.broker.timer_stats().next_delivery_ms, None);
}

#[test]
fn precedence_follows_rocketmq() {
    let mut h = Harness::new(timer_config());
    // TIMER_DELAY_SEC wins over TIMER_DELIVER_MS.
    let both = props(&[
        (TIMER_DELAY_SEC, "1"),
        (TIMER_DELIVER_MS, &(T0 + 3_000).to_string()),
    ]);
    let resp = send(
        &mut h,
        send_request(request::SEND_MESSAGE_V2, "TopicA", 0, b"sec", &both),
    );
    assert_eq!(resp.code, response::SUCCESS);
    // A delay level wins over every timer property, which is dropped.
    let level = props(&[(keys::DELAY, "1"), (TIMER_DELAY_SEC, "30")]);
    let resp = send(
        &mut h,
        send_request(request::SEND_MESSAGE_V2, "TopicA", 0, b"lvl", &level),
    );
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(
        h.broker.timer_stats().pending,
        1,
        "only the timer is in the wheel"
    );
    let seen = watch(&mut h, T0 + 2_500);
    assert!(
        seen["sec"] >= T0 + 1_000 && seen["sec"] <= T0 + 2_000,
        "{seen:?}"
    );
    assert!(seen["lvl"] >= T0 + 1_000, "{seen:?}");
}

#[test]
fn a_time_in_the_past_is_delivered_at_once() {
    let mut h = Harness::new(timer_config());
    for (body, property, value) in [
        ("past", TIMER_DELIVER_MS, (T0 - 20_000).to_string()),
        ("now", TIMER_DELIVER_MS, T0.to_string()),
        ("zero", TIMER_DELAY_SEC, "0".to_owned()),
        ("negative", TIMER_DELAY_MS, "-5".to_owned()),
    ] {
        let resp = send(&mut h, timed("TopicA", body.as_bytes(), property, &value));
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    }
    assert_eq!(bodies(&h, "TopicA"), ["negative", "now", "past", "zero"]);
    assert_eq!(h.broker.store().max_offset(TIMER_TOPIC, 0).0, 0);
}

#[test]
fn a_time_beyond_the_maximum_delay_is_rejected() {
    // RocketMQ's default: 3 days.
    let mut h = Harness::new(test_config());
    let three_days_sec = 3 * 24 * 3_600;
    let resp = send(
        &mut h,
        timed(
            "TopicA",
            b"far",
            TIMER_DELAY_SEC,
            &(three_days_sec + 1).to_string(),
        ),
    );
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL);
    assert_eq!(
        resp.remark.as_deref(),
        Some(
            "timer message illegal, the delay time should not be bigger than the max delay \
             259200000ms; or if set del msg, the delay time should be bigger than the current time"
        )
    );
    let resp = send(
        &mut h,
        timed(
            "TopicA",
            b"ms",
            TIMER_DELIVER_MS,
            &(T0 + 259_200_001).to_string(),
        ),
    );
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL);
    let resp = send(&mut h, timed("TopicA", b"nan", TIMER_DELAY_MS, "soon"));
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL);
    assert_eq!(h.broker.store().max_offset(TIMER_TOPIC, 0).0, 0);
    assert!(h.broker.store().storage().contents("timerwheel").is_none());
    // Exactly the maximum is accepted.
    let resp = send(
        &mut h,
        timed(
            "TopicA",
            b"max",
            TIMER_DELAY_SEC,
            &three_days_sec.to_string(),
        ),
    );
    assert_eq!(resp.code, response::SUCCESS);

    // A configured maximum.
    let mut h = Harness::new(timer_config());
    let resp = send(&mut h, timed("TopicA", b"far", TIMER_DELAY_SEC, "3601"));
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL);
    assert!(resp.remark.unwrap().contains("3600000ms"));

    // Timers switched off.
    let mut config = timer_config();
    config.timer.enable = false;
    let mut h = Harness::new(config);
    let resp = send(&mut h, timed("TopicA", b"off", TIMER_DELAY_SEC, "5"));
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(!h.broker.topics().contains_key(TIMER_TOPIC));
}

#[test]
fn config_validation() {
    assert!(TimerConfig::default().validate().is_ok());
    assert_eq!(TimerConfig::default().slot_count(), 518_402);
    let bad = [
        TimerConfig {
            precision_ms: 0,
            ..TimerConfig::default()
        },
        TimerConfig {
            max_delay_sec: 0,
            ..TimerConfig::default()
        },
        TimerConfig {
            max_delay_sec: 2_147_484,
            ..TimerConfig::default()
        },
        TimerConfig {
            precision_ms: 1,
            ..TimerConfig::default()
        },
        TimerConfig {
            log_segment_bytes: 51,
            ..TimerConfig::default()
        },
    ];
    for config in bad {
        assert!(config.validate().is_err(), "{config:?}");
    }
}

#[test]
fn a_clean_restart_keeps_pending_timers() {
    let mut h = Harness::new(timer_config());
    send(&mut h, timed("TopicA", b"a", TIMER_DELAY_SEC, "1"));
    send(&mut h, timed("TopicA", b"b", TIMER_DELAY_SEC, "3"));
    watch(&mut h, T0 + 1_500);
    assert_eq!(bodies(&h, "TopicA"), ["a"]);
    h.broker.shutdown(h.now_ms);
    let out = h.drain();
    answer_syncs(&mut h, out);
    let cp = h.broker.timer_stats().checkpoint;
    assert_eq!(cp.last_read_time_ms, (T0 + 2_000) as i64);
    assert_eq!(cp.last_timer_queue_offset, 2);
    let storage = h.broker.store().storage().clone();

    let mut h = Harness::with_storage(timer_config(), storage, T0 + 2_000);
    assert_eq!(h.broker.timer_stats().pending, 1);
    let seen = watch(&mut h, T0 + 4_500);
    assert_eq!(bodies(&h, "TopicA"), ["a", "b"], "each exactly once");
    assert!(
        seen["b"] >= T0 + 3_000 && seen["b"] <= T0 + 4_000,
        "{seen:?}"
    );
}

/// Sends three timers (due at +1 s, +2 s, +4 s), makes them durable, delivers the first one,
/// then cuts the power before anything else is synced.
fn crash_after_first_delivery(mode: PowerLoss, seed: u64) -> MemStorage {
    let mut h = Harness::new(timer_config());
    for (body, sec) in [("a", "1"), ("b", "2"), ("d", "4")] {
        send(
            &mut h,
            timed("TopicA", body.as_bytes(), TIMER_DELAY_SEC, sec),
        );
    }
    sync_all(&mut h);
    h.advance_to(T0 + 1_000);
    assert_eq!(bodies(&h, "TopicA"), ["a"]);
    let mut storage = h.broker.store().storage().clone();
    storage.power_loss(mode, &mut crate::rng::SeededRng::new(seed));
    storage
}

#[test]
fn a_power_loss_redelivers_but_never_loses_or_delivers_early() {
    for (mode, seed) in [
        (PowerLoss::DropUnsynced, 1),
        (PowerLoss::KeepUnsynced, 2),
        (PowerLoss::TearUnsynced, 3),
        (PowerLoss::TearUnsynced, 4),
        (PowerLoss::TearUnsynced, 5),
    ] {
        let storage = crash_after_first_delivery(mode, seed);
        let mut h = Harness::with_storage(timer_config(), storage, T0 + 1_100);
        let seen = watch(&mut h, T0 + 6_000);
        for (body, due) in [("a", T0 + 1_000), ("b", T0 + 2_000), ("d", T0 + 4_000)] {
            let at = *seen
                .get(body)
                .unwrap_or_else(|| panic!("{body} lost ({mode:?}, {seed})"));
            assert!(at >= due, "{body} early ({mode:?})");
            assert!(
                at <= due.max(T0 + 1_100) + 1_000,
                "{body} late: {at} ({mode:?})"
            );
        }
        let all = bodies(&h, "TopicA");
        for body in ["b", "d"] {
            assert_eq!(
                all.iter().filter(|b| *b == body).count(),
                1,
                "{all:?} ({mode:?})"
            );
        }
        // The process crashes again (written bytes survive) before the next checkpoint: all
        // were delivered at least once and none is delivered again early.
        let storage = h.broker.store().storage().clone();
        let mut h = Harness::with_storage(timer_config(), storage, T0 + 6_100);
        step(&mut h, T0 + 8_000);
        let after = bodies(&h, "TopicA");
        for body in ["a", "b", "d"] {
            assert!(after.iter().any(|b| b == body), "{after:?}");
        }
    }
}

#[test]
fn timers_lost_with_their_unsynced_records_leave_no_trace() {
    // Goal: a timer whose CommitLog record did not survive a power loss must not be delivered
    // from a timer log unit pointing at whatever is written there later.
    let mut h = Harness::new(timer_config());
    send(&mut h, timed("TopicA", b"kept", TIMER_DELAY_SEC, "2"));
    sync_all(&mut h);
    step(&mut h, T0 + 100);
    send(&mut h, timed("TopicA", b"lost", TIMER_DELAY_SEC, "2"));
    let mut storage = h.broker.store().storage().clone();
    storage.power_loss(PowerLoss::DropUnsynced, &mut crate::rng::SeededRng::new(9));

    let mut h = Harness::with_storage(timer_config(), storage, T0 + 200);
    assert_eq!(h.broker.timer_stats().pending, 1);
    assert_eq!(h.broker.timer_stats().enqueued_queue_offset, 1);
    send(&mut h, timed("TopicA", b"new", TIMER_DELAY_SEC, "1"));
    let seen = watch(&mut h, T0 + 3_000);
    assert_eq!(bodies(&h, "TopicA"), ["kept", "new"], "{seen:?}");
}

#[test]
fn a_torn_unit_whose_slot_was_lost_is_entered_again() {
    // Goal (simulator seed 50058809): a timer log unit written after the last timer checkpoint
    // whose last bytes (its slot time) never reached the disk still names its message, whose
    // record is durable; recovery took the zero slot for one delivered before the checkpoint,
    // and the acknowledged timer was never delivered. Method: timer "a" covered by a
    // checkpoint, timer "b" after it (its record synced, as under SYNC_FLUSH), the unit's slot
    // time zeroed, a crash, then watch "b" arrive on time.
    let mut h = Harness::new(timer_config());
    send(&mut h, timed("TopicA", b"a", TIMER_DELAY_SEC, "3"));
    sync_all(&mut h);
    watch(&mut h, T0 + 1_500);
    let unit_bytes = crate::broker::timer::store::UNIT_BYTES;
    assert_eq!(
        h.broker.timer_stats().checkpoint.last_timer_log_flush_pos,
        unit_bytes as i64,
        "the checkpoint covers a's unit"
    );
    send(&mut h, timed("TopicA", b"b", TIMER_DELAY_SEC, "2"));
    let mut storage = h.broker.store().storage().clone();
    let path = crate::broker::timer::store::log_segment_path(0);
    // The slot time is the unit's last 8 bytes.
    storage
        .write_at(&path, 2 * unit_bytes - 8, &[0u8; 8])
        .expect("tear the unit");

    let mut h = Harness::with_storage(timer_config(), storage, T0 + 1_600);
    let seen = watch(&mut h, T0 + 5_000);
    assert_eq!(bodies(&h, "TopicA"), ["a", "b"], "{seen:?}");
    assert!(
        seen["b"] >= T0 + 3_500 && seen["b"] <= T0 + 4_500,
        "{seen:?}"
    );
}

#[test]
fn a_long_stop_delivers_every_overdue_timer_at_once() {
    let mut h = Harness::new(timer_config());
    for i in 0..20u64 {
        let body = format!("m{i:02}");
        send(
            &mut h,
            timed(
                "TopicA",
                body.as_bytes(),
                TIMER_DELAY_SEC,
                &(60 + i * 60).to_string(),
            ),
        );
    }
    h.broker.shutdown(h.now_ms);
    let out = h.drain();
    answer_syncs(&mut h, out);
    let storage = h.broker.store().storage().clone();
    // Back after a day: the wheel spans two hours, the timers are all overdue.
    let later = T0 + 24 * 3_600_000;
    let mut h = Harness::with_storage(timer_config(), storage, later);
    step(&mut h, later);
    step(&mut h, later + 1_000);
    assert_eq!(bodies(&h, "TopicA").len(), 20);
    assert_eq!(h.broker.timer_stats().pending, 0);
}

#[test]
fn a_full_slot_is_delivered_in_batches_and_old_log_segments_are_deleted() {
    let mut h = Harness::new(timer_config());
    let n = 2_500u64;
    for i in 0..n {
        let resp = send(
            &mut h,
            timed("TopicA", format!("{i:05}").as_bytes(), TIMER_DELAY_SEC, "1"),
        );
        assert_eq!(resp.code, response::SUCCESS);
    }
    let stats = h.broker.timer_stats();
    assert_eq!(stats.pending, n);
    // 64 units a segment.
    assert!(stats.log_segments >= 39, "{stats:?}");
    let outputs = h.advance_to(T0 + 1_000);
    let first = h.broker.store().max_offset("TopicA", 0).0;
    assert_eq!(first, u64::from(crate::broker::timer::DELIVER_BATCH));
    assert_eq!(
        h.broker.poll_timeout(),
        Some(T0 + 1_000),
        "continues at once"
    );
    answer_syncs(&mut h, outputs);
    step(&mut h, T0 + 1_000);
    step(&mut h, T0 + 1_000);
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, n);
    step(&mut h, T0 + 3_000);
    step(&mut h, T0 + 5_000);
    let stats = h.broker.timer_stats();
    assert!(
        stats.log_segments <= 1,
        "delivered segments deleted: {stats:?}"
    );
    assert_eq!(stats.checkpoint.last_timer_queue_offset, n as i64);
}

#[test]
fn pending_timers_keep_memory_bounded() {
    // Goal: the wheel and the log are files; memory holds counters and one entry per log
    // segment, whatever the number of timers. 200 000 timers keep the test at a few seconds
    // in debug builds; `vostok bench timers` runs a million through a broker on disk.
    let config = TimerStoreConfig {
        precision_ms: 1_000,
        slot_count: TimerConfig::default().slot_count(),
        log_segment_bytes: 52 * 40_000,
    };
    let mut storage = MemStorage::default();
    let mut store = TimerStore::open(&storage, config).unwrap();
    store.reset_wheel(&mut storage).unwrap();
    let n = 200_000u64;
    let base = T0 as i64;

    for i in 0..n {
        // Spread over three days of slots.
        let slot = base + ((i * 7_919) % 259_200) as i64 * 1_000;
        let unit = TimerUnit {
            prev_pos: -1,
            magic: MAGIC_DEFAULT,
            write_time_ms: base,
            delay_ms: (slot - base) as i32,
            offset_py: (i * 200) as i64,
            size_py: 200,
            topic_hash: 0,
            slot_time_ms: slot,
        };
        store.append(&mut storage, unit).unwrap();
    }
    assert_eq!(store.pending(), n);
    assert_eq!(
        store.memory_entries(),
        5,
        "one entry per 40 000-unit segment"
    );
    assert_eq!(store.log_end(), n * 52);
    // Every unit is reachable from its slot, in the slot's list.
    let mut reached = 0u64;
    for k in 0..259_200i64 {
        let slot_time = base + k * 1_000;
        if let Some(slot) = store.detach(&mut storage, slot_time).unwrap() {
            let mut pos = slot.last_pos;
            while pos >= 0 {
                let unit = store.read_unit(&storage, pos as u64).unwrap().unwrap();
                assert_eq!(unit.slot_time_ms, slot_time);
                reached += 1;
                pos = unit.prev_pos;
            }
        }
    }
    assert_eq!(reached, n);
    assert_eq!(store.pending(), 0);
}
