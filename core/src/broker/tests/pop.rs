//! POP consumption: consumers sharing queues, invisible time and redelivery, acks, changes of
//! invisible time, orderly POP, long polling, restarts with messages in flight, request modes.

use super::*;
use crate::remoting::pop::{
    parse_msg_offset_info, parse_order_count_info, parse_start_offset_info,
    BatchAckMessageRequestBody, ExtraInfo, PopMessageRequestHeader, PopMessageResponseHeader,
    RetryFlag, POP_CK_PROPERTY,
};

const TOPIC: &str = "PopTopic";
const GROUP: &str = "PopGroup";
const INVISIBLE_MS: i64 = 10_000;

fn pop_request(
    queue_id: i32,
    max: i32,
    poll_ms: i64,
    order: bool,
    born_ms: u64,
) -> RemotingCommand {
    let header = PopMessageRequestHeader {
        consumer_group: GROUP.into(),
        topic: TOPIC.into(),
        queue_id,
        max_msg_nums: max,
        invisible_time_ms: INVISIBLE_MS,
        poll_time_ms: poll_ms,
        born_time_ms: born_ms as i64,
        init_mode: 0,
        exp_type: Some("TAG".into()),
        exp: Some("*".into()),
        order,
        attempt_id: None,
    };
    let mut cmd = RemotingCommand::request(request::POP_MESSAGE);
    header.write_to(&mut cmd);
    cmd
}

/// A delivered message and its receipt handle, built as RocketMQ's clients build it.
#[derive(Clone, Debug)]
struct Popped {
    message: MessageRecord,
    handle: ExtraInfo,
    /// The topic to ack on: the POP retry topic for a redelivery.
    real_topic: String,
}

fn popped(answer: &RemotingCommand) -> Vec<Popped> {
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let header = PopMessageResponseHeader::parse(answer).unwrap();
    let starts = parse_start_offset_info(header.start_offset_info.as_deref().unwrap()).unwrap();
    let msgs = parse_msg_offset_info(header.msg_offset_info.as_deref().unwrap()).unwrap();
    let mut seen: BTreeMap<(RetryFlag, i32), usize> = BTreeMap::new();
    decode_records(&answer.body)
        .into_iter()
        .map(|message| {
            if let Some(ck) = message.properties.get(POP_CK_PROPERTY) {
                let handle = ExtraInfo::parse(ck).unwrap();
                let real_topic = handle.retry.real_topic(&message.topic, GROUP);
                return Popped {
                    message,
                    handle,
                    real_topic,
                };
            }
            let key = (RetryFlag::Normal, message.queue_id);
            let index = seen.entry(key).or_default();
            let offset = msgs[&key][*index];
            *index += 1;
            assert_eq!(offset, message.queue_offset);
            let handle = ExtraInfo {
                ck_start_offset: starts[&key],
                pop_time_ms: header.pop_time_ms,
                invisible_time_ms: header.invisible_time_ms,
                revive_qid: header.revive_qid,
                retry: RetryFlag::Normal,
                broker_name: "broker-a".into(),
                queue_id: message.queue_id,
                msg_queue_offset: Some(offset),
            };
            Popped {
                real_topic: message.topic.clone(),
                message,
                handle,
            }
        })
        .collect()
}

fn ack_request(p: &Popped) -> RemotingCommand {
    RemotingCommand::request(request::ACK_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", &p.real_topic)
        .with_ext("queueId", p.handle.queue_id)
        .with_ext("extraInfo", p.handle.encode())
        .with_ext("offset", p.message.queue_offset)
}

fn change_request(p: &Popped, invisible_ms: i64) -> RemotingCommand {
    ack_request(p)
        .with_ext("invisibleTime", invisible_ms)
        .tap_code(request::CHANGE_MESSAGE_INVISIBLETIME)
}

trait TapCode {
    fn tap_code(self, code: i32) -> Self;
}

impl TapCode for RemotingCommand {
    fn tap_code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }
}

fn body_of(p: &Popped) -> String {
    String::from_utf8_lossy(&p.message.body).into_owned()
}

fn bodies_of(ps: &[Popped]) -> Vec<String> {
    let mut out: Vec<String> = ps.iter().map(body_of).collect();
    out.sort();
    out
}

/// A broker with `n` messages "m0".."m{n-1}" spread over the topic's four queues.
fn with_messages(config: BrokerConfig, n: usize) -> Harness {
    let mut h = Harness::new(config);
    for i in 0..n {
        let answer = h.call(
            1,
            send_v2(TOPIC, (i % 4) as i32, format!("m{i}").as_bytes(), "t"),
        );
        assert_eq!(answer.code, response::SUCCESS);
    }
    h
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    let mut out: Vec<String> = range.map(|i| format!("m{i}")).collect();
    out.sort();
    out
}

#[test]
fn consumers_sharing_queues_each_get_different_messages_and_acked_ones_never_return() {
    let mut h = with_messages(test_config(), 10);
    let first = popped(&h.call(1, pop_request(-1, 4, 0, false, T0)));
    let second = popped(&h.call(2, pop_request(-1, 32, 0, false, T0)));
    assert_eq!(first.len(), 4);
    assert_eq!(second.len(), 6);
    let mut all = first.clone();
    all.extend(second.clone());
    assert_eq!(bodies_of(&all), expected(0..10));
    // Nothing left: POLLING_TIMEOUT with the four numbers clients decode.
    let empty = h.call(3, pop_request(-1, 32, 0, false, T0));
    assert_eq!(empty.code, response::POLLING_TIMEOUT);
    assert!(PopMessageResponseHeader::parse(&empty).is_ok());
    for p in &all {
        assert_eq!(h.call(1, ack_request(p)).code, response::SUCCESS);
    }
    // An ack of what is no longer in flight is harmless.
    assert_eq!(h.call(1, ack_request(&all[0])).code, response::SUCCESS);
    step(&mut h, T0 + 2 * INVISIBLE_MS as u64);
    let again = h.call(
        3,
        pop_request(-1, 32, 0, false, T0 + 2 * INVISIBLE_MS as u64),
    );
    assert_eq!(
        again.code,
        response::POLLING_TIMEOUT,
        "acked messages came back"
    );
    assert!(!h
        .broker
        .topics()
        .contains_key(&format!("%RETRY%{GROUP}+{TOPIC}")));
}

#[test]
fn unacked_messages_come_back_after_their_invisible_time_with_reconsume_times_plus_one() {
    let mut h = with_messages(test_config(), 6);
    let got = popped(&h.call(1, pop_request(-1, 32, 0, false, T0)));
    assert_eq!(got.len(), 6);
    let (acked, kept) = got.split_at(2);
    for p in acked {
        assert_eq!(h.call(1, ack_request(p)).code, response::SUCCESS);
    }
    // Not before the invisible time has passed.
    step(&mut h, T0 + INVISIBLE_MS as u64 - 1);
    let early = h.call(2, pop_request(-1, 32, 0, false, h.now_ms));
    assert_eq!(early.code, response::POLLING_TIMEOUT);
    step(&mut h, T0 + INVISIBLE_MS as u64 + 1_000);
    let back = popped(&h.call(2, pop_request(-1, 32, 0, false, h.now_ms)));
    assert_eq!(bodies_of(&back), bodies_of(kept));
    for p in &back {
        assert_eq!(
            p.message.topic, TOPIC,
            "redeliveries carry the topic asked for"
        );
        assert_eq!(p.message.reconsume_times, 1);
        assert_eq!(p.handle.retry, RetryFlag::RetryV2);
        assert_eq!(p.real_topic, format!("%RETRY%{GROUP}+{TOPIC}"));
        assert!(p.message.properties.get("1ST_POP_TIME").is_some());
        let original = kept.iter().find(|k| body_of(k) == body_of(p)).unwrap();
        assert_eq!(
            p.message.properties.get(keys::UNIQ_KEY),
            original.message.properties.get(keys::UNIQ_KEY),
            "the message id stays"
        );
    }
    // An ack of a handle from before the redelivery is harmless: answered, nothing changes.
    assert_eq!(h.call(1, ack_request(&kept[0])).code, response::SUCCESS);
    for p in &back {
        assert_eq!(h.call(2, ack_request(p)).code, response::SUCCESS);
    }
    step(&mut h, T0 + 3 * INVISIBLE_MS as u64);
    let none = h.call(2, pop_request(-1, 32, 0, false, h.now_ms));
    assert_eq!(none.code, response::POLLING_TIMEOUT);
}

#[test]
fn changing_the_invisible_time_moves_the_redelivery_and_gives_a_new_handle() {
    let mut h = with_messages(test_config(), 1);
    let got = popped(&h.call(1, pop_request(-1, 32, 0, false, T0)));
    step(&mut h, T0 + 5_000);
    let changed = h.call(1, change_request(&got[0], 30_000));
    assert_eq!(changed.code, response::SUCCESS, "{changed:?}");
    let header = crate::remoting::pop::ChangeInvisibleTimeResponseHeader::parse(&changed).unwrap();
    assert_eq!(header.pop_time_ms, (T0 + 5_000) as i64);
    assert_eq!(header.invisible_time_ms, 30_000);
    // The old handle is spent: changing it again is refused, not a second delivery.
    let stale = h.call(1, change_request(&got[0], 30_000));
    assert_eq!(stale.code, response::NO_MESSAGE);
    assert!(crate::remoting::pop::ChangeInvisibleTimeResponseHeader::parse(&stale).is_ok());
    step(&mut h, T0 + 20_000);
    assert_eq!(
        h.call(2, pop_request(-1, 32, 0, false, h.now_ms)).code,
        response::POLLING_TIMEOUT,
        "still invisible past the first invisible time"
    );
    // The new handle, as clients build it, acks it.
    let mut renewed = got[0].clone();
    renewed.handle = ExtraInfo {
        ck_start_offset: renewed.message.queue_offset,
        pop_time_ms: header.pop_time_ms,
        invisible_time_ms: header.invisible_time_ms,
        revive_qid: header.revive_qid,
        ..renewed.handle
    };
    assert_eq!(h.call(1, ack_request(&renewed)).code, response::SUCCESS);
    step(&mut h, T0 + 60_000);
    assert_eq!(
        h.call(2, pop_request(-1, 32, 0, false, h.now_ms)).code,
        response::POLLING_TIMEOUT
    );
}

#[test]
fn an_unchanged_message_comes_back_after_its_new_invisible_time() {
    let mut h = with_messages(test_config(), 1);
    let got = popped(&h.call(1, pop_request(-1, 32, 0, false, T0)));
    assert_eq!(
        h.call(1, change_request(&got[0], 2_000)).code,
        response::SUCCESS
    );
    step(&mut h, T0 + 3_000);
    let back = popped(&h.call(2, pop_request(-1, 32, 0, false, h.now_ms)));
    assert_eq!(bodies_of(&back), ["m0"]);
}

#[test]
fn a_restart_keeps_messages_in_flight_and_what_was_acked() {
    let mut h = with_messages(test_config(), 4);
    let got = popped(&h.call(1, pop_request(-1, 32, 0, false, T0)));
    assert_eq!(got.len(), 4);
    assert_eq!(h.call(1, ack_request(&got[0])).code, response::SUCCESS);
    sync_all(&mut h);
    // A process crash: what was written stays (page cache), nothing was shut down cleanly.
    let storage = h.broker.store().storage().clone();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 1_000);
    assert_eq!(
        h.call(2, pop_request(-1, 32, 0, false, h.now_ms)).code,
        response::POLLING_TIMEOUT,
        "in flight stays invisible across the restart"
    );
    // The old handles still ack after the restart.
    assert_eq!(h.call(1, ack_request(&got[1])).code, response::SUCCESS);
    step(&mut h, T0 + INVISIBLE_MS as u64 + 2_000);
    let back = popped(&h.call(2, pop_request(-1, 32, 0, false, h.now_ms)));
    let mut want = vec![body_of(&got[2]), body_of(&got[3])];
    want.sort();
    assert_eq!(bodies_of(&back), want);
}

#[test]
fn the_popped_offset_reaches_the_offset_file_only_with_its_checkpoint_durable() {
    let mut h = with_messages(test_config(), 2);
    sync_all(&mut h);
    let got = popped(&h.call(1, pop_request(0, 32, 0, false, T0)));
    assert_eq!(got.len(), 1);
    assert_eq!(h.broker.consumer_offset(TOPIC, GROUP, 0), Some(1));
    // The offset period comes before any sync: the file keeps the position before the POP.
    h.now_ms = T0 + OFFSET_PERSIST_INTERVAL_MS;
    h.broker.handle_timeout(h.now_ms);
    let outputs = h.drain();
    let saved = |h: &Harness| -> serde_json::Value {
        let bytes = h
            .broker
            .store()
            .storage()
            .read_all(crate::broker::offsets::CONSUMER_OFFSETS_PATH)
            .unwrap()
            .expect("written");
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(saved(&h)["offsetTable"][format!("{TOPIC}@{GROUP}")]["0"], 0);
    answer_syncs(&mut h, outputs);
    sync_all(&mut h);
    step(&mut h, T0 + 2 * OFFSET_PERSIST_INTERVAL_MS);
    assert_eq!(saved(&h)["offsetTable"][format!("{TOPIC}@{GROUP}")]["0"], 1);
}

#[test]
fn a_held_pop_is_answered_by_an_arrival_or_times_out() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2(TOPIC, 0, b"first", "t"));
    let got = popped(&h.call(1, pop_request(-1, 32, 0, false, T0)));
    assert_eq!(got.len(), 1);
    let held = h.request(2, pop_request(-1, 32, 5_000, false, T0));
    assert!(responses_on(&held, 2).is_empty(), "held: {held:?}");
    let polling = RemotingCommand::request(request::POLLING_INFO)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", -1);
    assert_eq!(h.call(3, polling).ext("pollingNum"), Some("1"));
    let outputs = h.request(1, send_v2(TOPIC, 2, b"second", "t"));
    let answers = responses_on(&outputs, 2);
    assert_eq!(answers.len(), 1, "{outputs:?}");
    assert_eq!(bodies_of(&popped(&answers[0])), ["second"]);
    // Held again with nothing to come: POLLING_TIMEOUT at bornTime + pollTime.
    assert!(responses_on(&h.request(2, pop_request(-1, 32, 5_000, false, T0)), 2).is_empty());
    assert!(responses_on(&h.advance_to(T0 + 4_000), 2).is_empty());
    let expired = responses_on(&h.advance_to(T0 + 5_000), 2);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].code, response::POLLING_TIMEOUT);
    // A request its client has long given up on is not held.
    let late = h.call(2, pop_request(-1, 32, 1_000, false, T0));
    assert_eq!(late.code, response::POLLING_TIMEOUT);
}

#[test]
fn orderly_pop_keeps_a_queue_with_one_batch_until_it_is_acked() {
    let mut h = Harness::new(test_config());
    for i in 0..3 {
        h.call(1, send_v2(TOPIC, 0, format!("o{i}").as_bytes(), "t"));
    }
    let first = h.call(1, pop_request(0, 2, 0, true, T0));
    let batch = popped(&first);
    assert_eq!(
        batch.iter().map(body_of).collect::<Vec<_>>(),
        ["o0", "o1"],
        "in queue order"
    );
    assert_eq!(batch[0].handle.revive_qid, 999);
    // A second consumer gets nothing of the queue while the batch is in flight.
    assert_eq!(
        h.call(2, pop_request(0, 2, 0, true, T0)).code,
        response::POLLING_TIMEOUT
    );
    // The batch's invisible time passes unacked: the same messages again, counted.
    step(&mut h, T0 + INVISIBLE_MS as u64 + 1);
    let again = h.call(2, pop_request(0, 2, 0, true, h.now_ms));
    let counts = parse_order_count_info(again.ext("orderCountInfo").unwrap()).unwrap();
    let batch = popped(&again);
    assert_eq!(batch.iter().map(body_of).collect::<Vec<_>>(), ["o0", "o1"]);
    assert_eq!(counts.count(RetryFlag::Normal, 0, 0), 1);
    for p in &batch {
        assert_eq!(h.call(2, ack_request(p)).code, response::SUCCESS);
    }
    assert_eq!(h.broker.consumer_offset(TOPIC, GROUP, 0), Some(2));
    let next = popped(&h.call(1, pop_request(0, 2, 0, true, h.now_ms)));
    assert_eq!(next.iter().map(body_of).collect::<Vec<_>>(), ["o2"]);
    // An ack below the committed offset is old news; one outside the batch is refused.
    let mut old = next[0].clone();
    old.message.queue_offset = 0;
    assert_eq!(h.call(1, ack_request(&old)).code, response::SUCCESS);
    let mut outside = next[0].clone();
    outside.message.queue_offset = 3;
    assert_eq!(
        h.call(1, ack_request(&outside)).code,
        response::MESSAGE_ILLEGAL
    );
}

#[test]
fn batch_acks_in_rusts_shape_ack_every_offset_of_their_bit_set() {
    let mut h = with_messages(test_config(), 3);
    let got = popped(&h.call(1, pop_request(0, 32, 0, false, T0)));
    assert_eq!(got.len(), 1);
    let more: Vec<Popped> = (1..3)
        .flat_map(|q| popped(&h.call(1, pop_request(q, 32, 0, false, T0))))
        .collect();
    let entry = |p: &Popped| {
        serde_json::json!({
            "c": GROUP, "t": TOPIC, "r": "0", "so": p.handle.ck_start_offset, "q": p.handle.queue_id,
            "rq": p.handle.revive_qid, "pt": p.handle.pop_time_ms, "it": p.handle.invisible_time_ms,
            "b": [1, 0, 0, 0, 0, 0, 0, 0]
        })
    };
    let body = serde_json::json!({
        "brokerName": "broker-a",
        "acks": [entry(&got[0]), entry(&more[0]), entry(&more[1])]
    });
    let parsed: BatchAckMessageRequestBody = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(parsed.acks.len(), 3);
    let answer = h.call(
        1,
        RemotingCommand::request(request::BATCH_ACK_MESSAGE)
            .with_body(serde_json::to_vec(&body).unwrap()),
    );
    assert_eq!(answer.code, response::SUCCESS);
    step(&mut h, T0 + 2 * INVISIBLE_MS as u64);
    assert_eq!(
        h.call(2, pop_request(-1, 32, 0, false, h.now_ms)).code,
        response::POLLING_TIMEOUT
    );
    let empty = h.call(1, RemotingCommand::request(request::BATCH_ACK_MESSAGE));
    assert_eq!(empty.code, response::NO_MESSAGE);
}

#[test]
fn past_the_groups_retry_max_times_a_message_goes_to_the_dlq() {
    let mut h = with_messages(test_config(), 1);
    let group = serde_json::json!({"groupName": GROUP, "retryMaxTimes": 1});
    let update = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(serde_json::to_vec(&group).unwrap());
    assert_eq!(h.call(1, update).code, response::SUCCESS);
    popped(&h.call(1, pop_request(-1, 32, 0, false, T0)));
    step(&mut h, T0 + INVISIBLE_MS as u64 + 1_000);
    let back = popped(&h.call(1, pop_request(-1, 32, 0, false, h.now_ms)));
    assert_eq!(back[0].message.reconsume_times, 1);
    let later = h.now_ms + INVISIBLE_MS as u64 + 1_000;
    step(&mut h, later);
    assert_eq!(
        h.call(1, pop_request(-1, 32, 0, false, h.now_ms)).code,
        response::POLLING_TIMEOUT
    );
    assert_eq!(bodies(&h, &format!("%DLQ%{GROUP}"), 0), ["m0"]);
}

#[test]
fn pop_answers_rocketmqs_codes_for_bad_requests() {
    let mut h = with_messages(test_config(), 1);
    let too_many = h.call(1, pop_request(-1, 33, 0, false, T0));
    assert_eq!(too_many.code, response::INVALID_PARAMETER);
    assert!(PopMessageResponseHeader::parse(&too_many).is_ok());
    let mut unknown = pop_request(-1, 1, 0, false, T0);
    unknown
        .ext_fields
        .insert("topic".into(), "NoSuchTopic".into());
    assert_eq!(h.call(1, unknown).code, response::TOPIC_NOT_EXIST);
    assert_eq!(
        h.call(1, pop_request(9, 1, 0, false, T0)).code,
        response::INVALID_PARAMETER
    );
    let bad_handle = RemotingCommand::request(request::ACK_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("extraInfo", "not a handle")
        .with_ext("offset", 0);
    assert_eq!(h.call(1, bad_handle).code, response::SYSTEM_ERROR);
    let outside = RemotingCommand::request(request::ACK_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("extraInfo", "0 1 2 3 0 broker-a 0 5")
        .with_ext("offset", 5);
    assert_eq!(h.call(1, outside).code, response::NO_MESSAGE);
    let bad_queue = RemotingCommand::request(request::ACK_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 7)
        .with_ext("extraInfo", "0 1 2 3 0 broker-a 7 0")
        .with_ext("offset", 0);
    assert_eq!(h.call(1, bad_queue).code, response::MESSAGE_ILLEGAL);
}

#[test]
fn a_group_switched_to_pop_is_assigned_any_queue_of_the_broker() {
    let mut h = with_messages(test_config(), 1);
    h.call(1, heartbeat("client-1", GROUP, TOPIC, "*"));
    let mode = serde_json::json!({"topic": TOPIC, "consumerGroup": GROUP, "mode": "POP", "popShareQueueNum": 0});
    let set = RemotingCommand::request(request::SET_MESSAGE_REQUEST_MODE)
        .with_body(serde_json::to_vec(&mode).unwrap());
    assert_eq!(h.call(1, set).code, response::SUCCESS);
    let query = serde_json::json!({"topic": TOPIC, "consumerGroup": GROUP, "clientId": "client-1",
        "strategyName": "AVG", "messageModel": "CLUSTERING"});
    let answer = h.call(
        1,
        RemotingCommand::request(request::QUERY_ASSIGNMENT)
            .with_body(serde_json::to_vec(&query).unwrap()),
    );
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"messageQueueAssignments":[{"messageQueue":{"brokerName":"broker-a","queueId":-1,"topic":TOPIC},"mode":"POP"}]})
    );
    // Without a mode: PULL, the client's share of the four queues.
    let query2 = serde_json::json!({"topic": format!("%RETRY%{GROUP}"), "consumerGroup": GROUP,
        "clientId": "client-1", "strategyName": "AVG", "messageModel": "CLUSTERING"});
    let answer = h.call(
        1,
        RemotingCommand::request(request::QUERY_ASSIGNMENT)
            .with_body(serde_json::to_vec(&query2).unwrap()),
    );
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["messageQueueAssignments"][0]["mode"], "PULL");
    // Kept across a restart.
    let storage = h.broker.store().storage().clone();
    let h2 = Harness::with_storage(test_config(), storage, T0 + 1);
    assert_eq!(
        h2.broker.pop.modes.get(TOPIC, GROUP).map(|m| m.mode),
        Some(crate::remoting::pop::MessageRequestMode::Pop)
    );
    let retry_mode =
        serde_json::json!({"topic": "%RETRY%x", "consumerGroup": GROUP, "mode": "POP"});
    let mut h = h2;
    assert_eq!(
        h.call(
            1,
            RemotingCommand::request(request::SET_MESSAGE_REQUEST_MODE)
                .with_body(serde_json::to_vec(&retry_mode).unwrap())
        )
        .code,
        response::NO_PERMISSION
    );
}

/// Makes the one `Sync` among `outputs` durable and returns what the broker then writes.
fn sync_once(h: &mut Harness, outputs: &[BrokerOutput]) -> Vec<BrokerOutput> {
    let pending = syncs(outputs);
    assert_eq!(pending.len(), 1, "one sync in flight: {outputs:?}");
    for range in &pending[0].ranges {
        h.broker
            .store_mut()
            .storage_mut()
            .sync(&range.path, range.start, range.end)
            .unwrap();
    }
    h.broker.handle_synced(h.now_ms, pending[0].up_to);
    h.drain()
}

#[test]
fn under_sync_flush_pops_and_acks_are_answered_once_their_records_are_durable() {
    let config = BrokerConfig {
        flush_disk_type: FlushDiskType::SyncFlush,
        ..test_config()
    };
    let mut h = Harness::new(config);
    let sent = h.request(1, send_v2(TOPIC, 0, b"durable", "t"));
    assert_eq!(responses_on(&sync_once(&mut h, &sent), 1).len(), 1);
    let outputs = h.request(2, pop_request(0, 32, 0, false, T0));
    assert!(
        responses_on(&outputs, 2).is_empty(),
        "answered before its checkpoint is durable"
    );
    let answers = responses_on(&sync_once(&mut h, &outputs), 2);
    let got = popped(&answers[0]);
    let outputs = h.request(2, ack_request(&got[0]));
    assert!(
        responses_on(&outputs, 2).is_empty(),
        "answered before the ack is durable"
    );
    let answers = responses_on(&sync_once(&mut h, &outputs), 2);
    assert_eq!(answers[0].code, response::SUCCESS);
}

#[test]
fn an_assignment_covers_every_broker_of_the_topics_route() {
    let mut config = test_config();
    config.namesrv_addrs = vec!["10.0.0.9:9876".to_owned()];
    let mut h = Harness::new(config);
    h.call(1, send_v2(TOPIC, 0, b"m", "t"));
    h.call(1, heartbeat("client-1", GROUP, TOPIC, "*"));
    let mode = serde_json::json!({"topic": TOPIC, "consumerGroup": GROUP, "mode": "POP"});
    let set = RemotingCommand::request(request::SET_MESSAGE_REQUEST_MODE)
        .with_body(serde_json::to_vec(&mode).unwrap());
    assert_eq!(h.call(1, set).code, response::SUCCESS);
    let query = || {
        let body = serde_json::json!({"topic": TOPIC, "consumerGroup": GROUP,
            "clientId": "client-1", "strategyName": "AVG", "messageModel": "CLUSTERING"});
        RemotingCommand::request(request::QUERY_ASSIGNMENT)
            .with_body(serde_json::to_vec(&body).unwrap())
    };
    let outputs = h.request(1, query());
    assert!(responses_on(&outputs, 1).is_empty(), "waits for the route");
    let ask = outputs
        .iter()
        .find_map(|o| match o {
            BrokerOutput::SendToNamesrv { command, .. }
                if command.code == request::GET_ROUTEINFO_BY_TOPIC =>
            {
                Some(command.clone())
            }
            _ => None,
        })
        .expect("the route is asked for");
    assert_eq!(ask.ext("topic"), Some(TOPIC));
    let route = serde_json::json!({
        "queueDatas": [
            {"brokerName": "broker-a", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6, "topicSysFlag": 0},
            {"brokerName": "broker-b", "readQueueNums": 2, "writeQueueNums": 2, "perm": 6, "topicSysFlag": 0}
        ],
        "brokerDatas": [
            {"cluster": "DefaultCluster", "brokerName": "broker-a", "brokerAddrs": {"0": "10.0.0.1:10911"}},
            {"cluster": "DefaultCluster", "brokerName": "broker-b", "brokerAddrs": {"0": "10.0.0.2:10911"}}
        ]
    });
    let answer = RemotingCommand::response_to(&ask, response::SUCCESS, None)
        .with_body(serde_json::to_vec(&route).unwrap());
    h.broker
        .handle_namesrv_response(h.now_ms, "10.0.0.9:9876", answer);
    let answers = responses_on(&h.drain(), 1);
    assert_eq!(answers.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&answers[0].body).unwrap();
    let brokers: Vec<(&str, i64)> = body["messageQueueAssignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["messageQueue"]["brokerName"].as_str().unwrap(),
                a["messageQueue"]["queueId"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(brokers, [("broker-a", -1), ("broker-b", -1)]);
    // No answer from the NameServer: this broker's queues, in time.
    let outputs = h.request(1, query());
    assert!(responses_on(&outputs, 1).is_empty());
    let late = responses_on(
        &h.advance_to(T0 + crate::broker::pop::mode::ROUTE_WAIT_MS),
        1,
    );
    assert_eq!(late.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&late[0].body).unwrap();
    assert_eq!(
        body["messageQueueAssignments"][0]["messageQueue"]["brokerName"],
        "broker-a"
    );
}
