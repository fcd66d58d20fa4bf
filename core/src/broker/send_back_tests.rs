//! CONSUMER_SEND_MSG_BACK and subscription groups through the broker's request contract.
//!
//! The copies a send-back writes are read back at the CommitLog offset they were written to, and
//! their destination is the topic they were stored under or, once delay routing parks delayed
//! messages in `SCHEDULE_TOPIC_XXXX`, their `REAL_TOPIC`.

use super::*;
use crate::message::decode_offset_msg_id;
use crate::remoting::headers::QueryMessageRequestHeader;

const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

fn send_back(offset: i64, group: &str, delay_level: i32, max: Option<i32>) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK)
        .with_ext("offset", offset)
        .with_ext("group", group)
        .with_ext("delayLevel", delay_level)
        .with_ext("originMsgId", "ignored")
        .with_ext("originTopic", "TopicA")
        .with_ext("unitMode", false);
    if let Some(max) = max {
        cmd = cmd.with_ext("maxReconsumeTimes", max);
    }
    cmd
}

/// Sends one message to TopicA and returns its CommitLog offset and offset message id.
fn send_original(h: &mut Harness) -> (i64, String) {
    let mut cmd = send_request(
        request::SEND_MESSAGE_V2,
        "TopicA",
        0,
        b"payload",
        &props(&[
            ("TAGS", "tagA"),
            ("KEYS", "order-7"),
            ("UNIQ_KEY", "AC110001000078308DB1000000000001"),
            ("WAIT", "true"),
        ]),
    );
    cmd.ext_fields.insert("h".into(), "5".into());
    let reply = h.call(1, cmd);
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let msg_id = reply.ext("msgId").unwrap().to_owned();
    let (_, offset) = decode_offset_msg_id(&msg_id).unwrap();
    (offset as i64, msg_id)
}

/// Sends a send-back that must succeed; returns the copy it wrote and where that copy was.
fn send_back_ok(h: &mut Harness, cmd: RemotingCommand) -> (MessageRecord, i64) {
    let at = h.broker.store().written_offset();
    let reply = h.call(2, cmd);
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let bytes = h
        .broker
        .store()
        .read_record(at)
        .unwrap()
        .expect("the send-back wrote a record");
    (MessageRecord::decode(&bytes, false).unwrap(), at.0 as i64)
}

/// The topic a copy is finally delivered on.
fn destination(record: &MessageRecord) -> &str {
    if record.topic == SCHEDULE_TOPIC {
        record.properties.get("REAL_TOPIC").unwrap_or("")
    } else {
        &record.topic
    }
}

/// Goal: a failed message is copied for `%RETRY%<group>` with RocketMQ's delay ladder
/// (3 + reconsumeTimes), the retry properties, the original's content, and a retry topic and
/// subscription group created with RocketMQ's defaults.
#[test]
fn send_back_goes_to_the_retry_topic_with_the_delay_ladder() {
    let mut h = Harness::new(test_config());
    let (offset, msg_id) = send_original(&mut h);
    h.now_ms = T0 + 1_000;
    let (first, first_at) = send_back_ok(&mut h, send_back(offset, "G", 0, None));
    assert_eq!(destination(&first), "%RETRY%G");
    assert_eq!(first.reconsume_times, 1);
    assert_eq!(first.properties.get("DELAY"), Some("3"));
    assert_eq!(first.properties.get("RETRY_TOPIC"), Some("TopicA"));
    assert_eq!(
        first.properties.get("ORIGIN_MESSAGE_ID"),
        Some(msg_id.as_str())
    );
    assert_eq!(first.properties.get("WAIT"), Some("false"));
    assert_eq!(first.properties.get("TAGS"), Some("tagA"));
    assert_eq!(first.properties.get("KEYS"), Some("order-7"));
    assert_eq!(
        first.properties.get("UNIQ_KEY"),
        Some("AC110001000078308DB1000000000001")
    );
    assert_eq!(&first.body[..], b"payload");
    assert_eq!(first.flag, 5);
    assert_eq!(first.born_timestamp_ms, (T0 - 5) as i64);
    assert_eq!(first.born_host, peer(1));
    assert_eq!(first.store_timestamp_ms, (T0 + 1_000) as i64);

    let retry = &h.broker.topics()["%RETRY%G"];
    assert_eq!((retry.read_queue_nums, retry.write_queue_nums), (1, 1));
    assert_eq!(retry.perm, crate::topic::perm::READ_WRITE);
    let group = &h.broker.subscription_groups()["G"];
    assert_eq!((group.retry_max_times, group.retry_queue_nums), (16, 1));
    assert!(group.consume_enable);

    // The retried copy fails again: the next level, the first origin and topic kept.
    let (second, _) = send_back_ok(&mut h, send_back(first_at, "G", 0, None));
    assert_eq!(destination(&second), "%RETRY%G");
    assert_eq!(second.reconsume_times, 2);
    assert_eq!(second.properties.get("DELAY"), Some("4"));
    assert_eq!(second.properties.get("RETRY_TOPIC"), Some("TopicA"));
    assert_eq!(
        second.properties.get("ORIGIN_MESSAGE_ID"),
        Some(msg_id.as_str())
    );

    // An explicit level wins over the ladder.
    let (explicit, _) = send_back_ok(&mut h, send_back(offset, "G", 7, None));
    assert_eq!(explicit.properties.get("DELAY"), Some("7"));
    assert_eq!(explicit.reconsume_times, 1);
}

/// Goal: at the reconsume limit (per request, else the group's retryMaxTimes) or with a negative
/// delay level the message goes to `%DLQ%<group>` without delay; the DLQ topic (1 queue,
/// read-write) can be pulled and queried by key and by UNIQ_KEY.
#[test]
fn send_back_beyond_the_limit_lands_in_the_dead_letter_queue() {
    let mut h = Harness::new(test_config());
    let (offset, _) = send_original(&mut h);
    let (retried, retried_at) = send_back_ok(&mut h, send_back(offset, "GD", 0, Some(1)));
    assert_eq!(destination(&retried), "%RETRY%GD");
    let (dead, _) = send_back_ok(&mut h, send_back(retried_at, "GD", 0, Some(1)));
    assert_eq!(dead.topic, "%DLQ%GD");
    assert_eq!(dead.queue_id, 0);
    assert_eq!(dead.reconsume_times, 2);
    assert_eq!(dead.properties.get("DELAY"), Some("0"));
    assert_eq!(dead.properties.get("RETRY_TOPIC"), Some("TopicA"));
    let dlq = &h.broker.topics()["%DLQ%GD"];
    assert_eq!((dlq.read_queue_nums, dlq.write_queue_nums), (1, 1));
    assert_eq!(dlq.perm, crate::topic::perm::READ_WRITE);

    // Readable by a consumer of the DLQ topic.
    let reply = h.call(
        3,
        pull_request(
            "GD-admin",
            "%DLQ%GD",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION,
            Some("*"),
        ),
    );
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    let pulled = decode_records(&reply.body);
    assert_eq!(pulled.len(), 1);
    assert_eq!(&pulled[0].body[..], b"payload");

    // Queryable by key and by UNIQ_KEY.
    for (key, uniq) in [
        ("order-7", false),
        ("AC110001000078308DB1000000000001", true),
    ] {
        let mut cmd = RemotingCommand::request(request::QUERY_MESSAGE);
        QueryMessageRequestHeader {
            topic: "%DLQ%GD".into(),
            key: key.into(),
            max_num: 32,
            begin_timestamp_ms: 0,
            end_timestamp_ms: i64::MAX,
            unique_key_query: uniq,
        }
        .write_to(&mut cmd);
        let reply = h.call(3, cmd);
        assert_eq!(reply.code, response::SUCCESS, "{key}: {:?}", reply.remark);
        let found = decode_records(&reply.body);
        assert_eq!(found.len(), 1, "{key}");
        assert_eq!(found[0].topic, "%DLQ%GD");
    }

    // A negative level skips the retries.
    let (direct, _) = send_back_ok(&mut h, send_back(offset, "GD", -1, None));
    assert_eq!(direct.topic, "%DLQ%GD");
    assert_eq!(direct.reconsume_times, 1);
}

/// Goal: without a per-request limit (or from a client older than V3_4_9) the group's
/// retryMaxTimes applies; groups are created and listed through the admin codes and persisted.
#[test]
fn the_group_limit_applies_without_a_request_limit_and_groups_persist() {
    let mut h = Harness::new(test_config());
    let (offset, _) = send_original(&mut h);
    let mut config = SubscriptionGroupConfig::new("GZ");
    config.retry_max_times = 0;
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(serde_json::to_vec(&config).unwrap());
    assert_eq!(h.call(1, create).code, response::SUCCESS);

    let (dead, _) = send_back_ok(&mut h, send_back(offset, "GZ", 0, None));
    assert_eq!(dead.topic, "%DLQ%GZ");
    let mut old_client = send_back(offset, "GZ", 0, Some(16));
    old_client.version = 120;
    let (dead, _) = send_back_ok(&mut h, old_client);
    assert_eq!(
        dead.topic, "%DLQ%GZ",
        "a V3_4_8 client's limit is not trusted"
    );
    let (retried, _) = send_back_ok(&mut h, send_back(offset, "GZ", 0, Some(16)));
    assert_eq!(destination(&retried), "%RETRY%GZ");

    let all = h.call(
        1,
        RemotingCommand::request(request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
    );
    let body: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(
        body["subscriptionGroupTable"]["GZ"]["retryMaxTimes"],
        serde_json::json!(0)
    );
    assert_eq!(
        body["subscriptionGroupTable"]["GZ"]["retryQueueNums"],
        serde_json::json!(1)
    );

    let storage = h.broker.store().storage().clone();
    let reopened = Harness::with_storage(test_config(), storage, T0 + 10_000);
    assert_eq!(
        reopened.broker.subscription_groups()["GZ"].retry_max_times,
        0
    );
}

/// Goal: RocketMQ's refusals — an offset where no message starts (1, Java's remark), an unknown
/// group while auto-creation is off (26) — and a group without retry queues drops the message.
#[test]
fn send_back_refusals_and_dropping() {
    let mut config = test_config();
    config.auto_create_subscription_group = false;
    let mut h = Harness::new(config);
    let (offset, _) = send_original(&mut h);

    let reply = h.call(2, send_back(offset, "Unknown", 0, None));
    assert_eq!(reply.code, response::SUBSCRIPTION_GROUP_NOT_EXIST);
    assert!(!h.broker.topics().contains_key("%RETRY%Unknown"));

    let mut config = SubscriptionGroupConfig::new("G0");
    config.retry_queue_nums = 0;
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(serde_json::to_vec(&config).unwrap());
    assert_eq!(h.call(1, create).code, response::SUCCESS);
    let before = h.broker.store().written_offset();
    assert_eq!(
        h.call(2, send_back(offset, "G0", 0, None)).code,
        response::SUCCESS
    );
    assert_eq!(h.broker.store().written_offset(), before, "dropped");

    let config = SubscriptionGroupConfig::new("G1");
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(serde_json::to_vec(&config).unwrap());
    assert_eq!(h.call(1, create).code, response::SUCCESS);
    let reply = h.call(2, send_back(offset + 1, "G1", 0, None));
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert_eq!(
        reply.remark.as_deref(),
        Some(format!("look message by offset failed, {}", offset + 1).as_str())
    );
    let reply = h.call(2, send_back(-4, "G1", 0, None));
    assert_eq!(reply.code, response::SYSTEM_ERROR);

    // A malformed header is an error response, never a panic.
    let bad = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK)
        .with_ext("offset", "x")
        .with_ext("group", "G1")
        .with_ext("delayLevel", 0);
    assert_eq!(h.call(2, bad).code, response::SYSTEM_ERROR);
    let bad = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(&b"{not json"[..]);
    assert_eq!(h.call(1, bad).code, response::SYSTEM_ERROR);
}

/// Goal: a consumer's heartbeat creates its subscription group with RocketMQ's defaults and the
/// group's retry topic with `retryQueueNums` queues; a group's own retryQueueNums is honoured;
/// with auto-creation off an unknown group gets neither, as RocketMQ's heartbeat does.
#[test]
fn heartbeat_creates_the_group_and_its_retry_topic() {
    let mut h = Harness::new(test_config());
    assert_eq!(
        h.call(1, heartbeat("10.0.0.1@a", "GH", "TopicA", "*")).code,
        response::SUCCESS
    );
    assert_eq!(
        h.broker.subscription_groups()["GH"],
        SubscriptionGroupConfig::new("GH")
    );
    assert_eq!(h.broker.topics()["%RETRY%GH"].write_queue_nums, 1);

    let mut config = SubscriptionGroupConfig::new("GQ");
    config.retry_queue_nums = 3;
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(serde_json::to_vec(&config).unwrap());
    assert_eq!(h.call(1, create).code, response::SUCCESS);
    h.call(2, heartbeat("10.0.0.2@a", "GQ", "TopicA", "*"));
    let retry = &h.broker.topics()["%RETRY%GQ"];
    assert_eq!((retry.read_queue_nums, retry.write_queue_nums), (3, 3));

    let mut config = test_config();
    config.auto_create_subscription_group = false;
    let mut h = Harness::new(config);
    assert_eq!(
        h.call(1, heartbeat("10.0.0.1@a", "GN", "TopicA", "*")).code,
        response::SUCCESS
    );
    assert!(h.broker.subscription_groups().is_empty());
    assert!(!h.broker.topics().contains_key("%RETRY%GN"));
}
