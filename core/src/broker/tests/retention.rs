//! Retention and full or failing disks, through the broker's requests and driver feeds.

use super::*;
use crate::store::retention::{DiskUsage, HOUR_MS};
use crate::store::segment::FaultOp;
use crate::store::StorageError;

/// Small segments (2 KiB CommitLog, 4-unit ConsumeQueue files), one-hour retention at any hour.
fn retention_config() -> BrokerConfig {
    let mut config = test_config();
    config.store.commitlog_segment_bytes = 2048;
    config.store.consume_queue_units_per_segment = 4;
    config.retention.file_reserved_time_ms = HOUR_MS;
    config.retention.delete_when_hours = (0..24).collect();
    config
}

fn send_n(h: &mut Harness, n: usize, from: usize) {
    for i in from..from + n {
        let resp = h.call(1, send_v2("TopicA", 0, format!("m-{i:04}").as_bytes(), "t"));
        assert_eq!(resp.code, response::SUCCESS, "send {i}: {resp:?}");
    }
}

fn min_offset(h: &mut Harness) -> i64 {
    let req = RemotingCommand::request(request::GET_MIN_OFFSET)
        .with_ext("topic", "TopicA")
        .with_ext("queueId", 0);
    let resp = h.call(2, req);
    assert_eq!(resp.code, response::SUCCESS);
    resp.ext("offset")
        .and_then(|o| o.parse().ok())
        .expect("offset")
}

fn pull(h: &mut Harness, offset: i64) -> RemotingCommand {
    h.call(
        2,
        pull_request(
            "CG",
            "TopicA",
            0,
            offset,
            pull_sys_flag::SUBSCRIPTION,
            Some("*"),
        ),
    )
}

/// Pulls everything from `offset` to the end; returns the bodies.
fn pull_rest(h: &mut Harness, mut offset: i64) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let resp = pull(h, offset);
        if resp.code == response::PULL_NOT_FOUND {
            return bodies;
        }
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
        for r in decode_records(&resp.body) {
            assert_eq!(r.queue_offset, offset);
            bodies.push(String::from_utf8_lossy(&r.body).into_owned());
            offset += 1;
        }
        let next: i64 = resp.ext("nextBeginOffset").unwrap().parse().unwrap();
        assert_eq!(next, offset);
    }
}

#[test]
fn expired_segments_are_deleted_and_consumers_behind_them_move_on() {
    // Goal: acceptance 4 end to end in the core: expired segments go, min offsets advance,
    // GET_MIN_OFFSET reports it, a pull below it is told PULL_OFFSET_MOVED and continues.
    let mut h = Harness::new(retention_config());
    send_n(&mut h, 60, 0);
    h.broker.store_mut().sync_inline().expect("sync");
    let segments = h.broker.store().commitlog_segments().len();
    assert!(segments >= 4, "{segments}");
    assert_eq!(min_offset(&mut h), 0);

    // Not expired yet after half an hour.
    h.advance_to(T0 + HOUR_MS / 2);
    assert_eq!(h.broker.store().commitlog_segments().len(), segments);
    assert!(h.broker.poll_timeout().is_some(), "retention keeps a timer");

    h.advance_to(T0 + HOUR_MS + 20_000);
    assert_eq!(h.broker.store().commitlog_segments().len(), 1);
    let report = h.broker.take_last_clean().expect("ran").expect("ok");
    assert_eq!(report.deleted.len(), segments - 1);
    let min = min_offset(&mut h);
    assert!(min > 0 && min < 60, "{min}");

    let resp = pull(&mut h, 0);
    assert_eq!(resp.code, response::PULL_OFFSET_MOVED);
    assert_eq!(resp.ext("nextBeginOffset"), Some(min.to_string().as_str()));
    assert_eq!(resp.ext("minOffset"), Some(min.to_string().as_str()));
    let rest = pull_rest(&mut h, min);
    let expected: Vec<String> = (min as usize..60).map(|i| format!("m-{i:04}")).collect();
    assert_eq!(rest, expected);

    // New sends continue the queue's offsets.
    send_n(&mut h, 1, 60);
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, 61);
}

#[test]
fn a_disk_above_the_warning_ratio_refuses_sends_until_space_returns() {
    let mut h = Harness::new(test_config());
    send_n(&mut h, 2, 0);
    h.broker.handle_disk_usage(
        h.now_ms,
        DiskUsage {
            total_bytes: 1000,
            available_bytes: 50,
        },
    );
    let resp = h.call(1, send_v2("TopicA", 0, b"refused", "t"));
    assert_eq!(resp.code, response::SERVICE_NOT_AVAILABLE);
    let remark = resp.remark.clone().unwrap_or_default();
    assert!(
        remark.starts_with("service not available now. It may be caused by one of the following reasons: the broker's disk is full [CL:  0.95 CQ:  0.95 INDEX:  0.95]"),
        "{remark}"
    );
    // Reads still work and nothing changed.
    assert_eq!(pull_rest(&mut h, 0), vec!["m-0000", "m-0001"]);

    // 89 %: under the warning ratio again.
    h.broker.handle_disk_usage(
        h.now_ms,
        DiskUsage {
            total_bytes: 1000,
            available_bytes: 110,
        },
    );
    send_n(&mut h, 1, 2);
    assert_eq!(pull_rest(&mut h, 0), vec!["m-0000", "m-0001", "m-0002"]);
}

#[test]
fn no_space_for_a_new_segment_fails_the_send_and_service_resumes() {
    // Goal: acceptance 5: a send that needs a segment the disk cannot hold gets 14, nothing
    // stored before is damaged, the queues stay consistent, and sends resume with space.
    let mut h = Harness::new(retention_config());
    send_n(&mut h, 3, 0);
    let used = h.broker.store().storage().used_bytes();
    // Room for nothing more: the next CommitLog or ConsumeQueue file cannot be created.
    h.broker
        .store_mut()
        .storage_mut()
        .set_capacity_bytes(Some(used));
    let mut sent = 3;
    let mut refused = 0;
    for i in 3..40 {
        let resp = h.call(1, send_v2("TopicA", 0, format!("m-{i:04}").as_bytes(), "t"));
        match resp.code {
            response::SUCCESS => {
                assert_eq!(refused, 0, "no success after the first refusal");
                sent += 1;
            }
            response::SERVICE_NOT_AVAILABLE => {
                assert!(resp
                    .remark
                    .as_deref()
                    .unwrap_or_default()
                    .contains("the broker's disk is full"));
                refused += 1;
            }
            other => panic!("unexpected code {other}: {resp:?}"),
        }
    }
    assert!(refused > 0 && sent < 40);
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, sent as u64);
    let expected: Vec<String> = (0..sent).map(|i| format!("m-{i:04}")).collect();
    assert_eq!(pull_rest(&mut h, 0), expected);

    // What is stored recovers unchanged (the failed puts left no trace).
    let written = h.broker.store().written_offset();
    h.broker.store_mut().sync_inline().expect("sync");
    let storage = h.broker.store().storage().clone();
    let reopened =
        crate::store::MessageStore::open(storage, retention_config().store).expect("reopen");
    assert_eq!(reopened.written_offset(), written);
    assert_eq!(reopened.max_offset("TopicA", 0).0, sent as u64);

    // Space returns: the very next send succeeds with the next offset.
    h.broker.store_mut().storage_mut().set_capacity_bytes(None);
    let resp = h.call(1, send_v2("TopicA", 0, b"after", "t"));
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(resp.ext("queueOffset"), Some(sent.to_string().as_str()));
    let all = pull_rest(&mut h, 0);
    assert_eq!(all.len(), sent + 1);
    assert_eq!(all.last().map(String::as_str), Some("after"));
}

#[test]
fn an_io_error_fails_the_send_with_system_error_and_nothing_is_damaged() {
    let mut h = Harness::new(retention_config());
    send_n(&mut h, 3, 0);
    for op in [FaultOp::Write, FaultOp::Create] {
        h.broker
            .store_mut()
            .storage_mut()
            .set_fault(op, Some(StorageError::Io("EIO".into())));
        // Enough sends to need new files, so the Create fault is hit too.
        for _ in 0..20 {
            let resp = h.call(1, send_v2("TopicA", 0, b"failed", "t"));
            if op == FaultOp::Write {
                assert_eq!(resp.code, response::SYSTEM_ERROR, "{resp:?}");
            }
            if resp.code == response::SYSTEM_ERROR {
                assert!(resp
                    .remark
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("create mapped file failed, server is busy or broken."));
            }
        }
        h.broker.store_mut().storage_mut().set_fault(op, None);
    }
    let max = h.broker.store().max_offset("TopicA", 0).0 as usize;
    let bodies = pull_rest(&mut h, 0);
    assert_eq!(bodies.len(), max);
    assert_eq!(&bodies[..3], &["m-0000", "m-0001", "m-0002"]);
    assert!(bodies[3..].iter().all(|b| b == "failed"));
    send_n(&mut h, 1, 3);
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0 as usize, max + 1);
}

#[test]
fn forced_cleaning_frees_a_full_disk_and_sends_resume() {
    let mut config = retention_config();
    config.retention.file_reserved_time_ms = 72 * HOUR_MS;
    config.retention.delete_when_hours = vec![];
    let mut h = Harness::new(config);
    send_n(&mut h, 60, 0);
    h.broker.store_mut().sync_inline().expect("sync");
    let segments = h.broker.store().commitlog_segments().len();
    // 95 % of a 40 KiB disk: refused, and cleaning forcibly deletes until under 85 %.
    h.broker.handle_disk_usage(
        h.now_ms,
        DiskUsage {
            total_bytes: 40_960,
            available_bytes: 2_048,
        },
    );
    assert!(h.broker.is_disk_full());
    h.advance_to(T0 + 10_000);
    let deleted = segments - h.broker.store().commitlog_segments().len();
    // 2 KiB a segment: 95 % → 90 % → 85 %, which is no longer above the force ratio.
    assert_eq!(deleted, 2);
    assert!(!h.broker.is_disk_full());
    send_n(&mut h, 1, 60);
    let min = min_offset(&mut h);
    assert!(min > 0);
    assert_eq!(pull(&mut h, 0).code, response::PULL_OFFSET_MOVED);
}
