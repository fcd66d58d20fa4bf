//! The admin requests: answers, error codes and the changes they make (the shapes as tools
//! parse them are checked against `rocketmq-client-rust` in runtime-native/tests/admin.rs).

use super::*;

fn admin(code: i32, ext: &[(&str, &str)], body: &[u8]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code);
    for (k, v) in ext {
        cmd = cmd.with_ext(k, v);
    }
    cmd.with_body(body.to_vec())
}

/// Group `group` commits `offset` on queue 0 of `topic`.
fn commit(h: &mut Harness, topic: &str, group: &str, offset: i64) {
    let offset = offset.to_string();
    let ext = [
        ("topic", topic),
        ("consumerGroup", group),
        ("queueId", "0"),
        ("commitOffset", offset.as_str()),
    ];
    let answer = h.call(3, admin(request::UPDATE_CONSUMER_OFFSET, &ext, b""));
    assert_eq!(answer.code, response::SUCCESS);
}

fn body_text(cmd: &RemotingCommand) -> String {
    String::from_utf8_lossy(&cmd.body).into_owned()
}

#[test]
fn topic_and_consume_stats_show_offsets_with_queue_object_keys() {
    let mut h = Harness::new(test_config());
    for i in 0..3 {
        h.call(1, send_v2("TopicA", 0, format!("m{i}").as_bytes(), "t"));
    }
    let stats = h.call(
        2,
        admin(request::GET_TOPIC_STATS_INFO, &[("topic", "TopicA")], b""),
    );
    assert_eq!(stats.code, response::SUCCESS);
    let text = body_text(&stats);
    assert!(
        text.starts_with(r#"{"offsetTable":{{"brokerName":"#),
        "{text}"
    );
    assert!(text.contains(r#""maxOffset":3,"minOffset":0"#), "{text}");
    assert!(text.ends_with(r#","topicPutTps":0.0}"#), "{text}");
    let missing = h.call(
        2,
        admin(request::GET_TOPIC_STATS_INFO, &[("topic", "Nope")], b""),
    );
    assert_eq!(missing.code, response::TOPIC_NOT_EXIST);

    h.call(3, heartbeat("c1", "G", "TopicA", "*"));
    commit(&mut h, "TopicA", "G", 2);
    let progress = h.call(
        2,
        admin(
            request::GET_CONSUME_STATS,
            &[("consumerGroup", "G"), ("topic", "")],
            b"",
        ),
    );
    let text = body_text(&progress);
    assert!(
        text.contains(r#""brokerOffset":3,"consumerOffset":2,"#),
        "{text}"
    );
    assert!(text.contains(r#""pullOffset":2"#), "{text}");
    assert!(text.contains(r#""consumeTps":0.0"#), "{text}");
}

#[test]
fn connections_of_an_absent_group_are_refused_with_rocketmqs_codes() {
    let mut h = Harness::new(test_config());
    let consumer = h.call(
        2,
        admin(
            request::GET_CONSUMER_CONNECTION_LIST,
            &[("consumerGroup", "G")],
            b"",
        ),
    );
    assert_eq!(consumer.code, response::CONSUMER_NOT_ONLINE);
    let producer = h.call(
        2,
        admin(
            request::GET_PRODUCER_CONNECTION_LIST,
            &[("producerGroup", "P")],
            b"",
        ),
    );
    assert_eq!(producer.code, response::SYSTEM_ERROR);
    h.call(3, heartbeat("c1", "G", "TopicA", "a || b"));
    let consumer = h.call(
        2,
        admin(
            request::GET_CONSUMER_CONNECTION_LIST,
            &[("consumerGroup", "G")],
            b"",
        ),
    );
    assert_eq!(consumer.code, response::SUCCESS);
    let body: serde_json::Value = serde_json::from_slice(&consumer.body).unwrap();
    assert_eq!(body["connectionSet"][0]["clientId"], "c1");
    assert_eq!(
        body["subscriptionTable"]["TopicA"]["tagsSet"],
        serde_json::json!(["a", "b"])
    );
    let who = h.call(
        2,
        admin(
            request::QUERY_TOPIC_CONSUME_BY_WHO,
            &[("topic", "TopicA")],
            b"",
        ),
    );
    assert_eq!(body_text(&who), r#"{"groupList":["G"]}"#);
}

#[test]
fn broker_config_updates_apply_at_run_time_or_change_nothing() {
    let mut config = test_config();
    config.namesrv_addrs = vec!["127.0.0.1:9876".to_owned()];
    let mut h = Harness::new(config);
    h.call(1, send_v2("TopicA", 0, b"m", "t"));
    let got = h.call(2, admin(request::GET_BROKER_CONFIG, &[], b""));
    let text = body_text(&got);
    assert!(text.contains("brokerPermission=6\n"), "{text}");
    assert!(text.contains("listenPort=10911\n"), "{text}");
    let keys: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "sorted by key");

    // A black-listed key: NO_PERMISSION.
    let refused = h.call(
        2,
        admin(request::UPDATE_BROKER_CONFIG, &[], b"rocketmqHome=/tmp"),
    );
    assert_eq!(refused.code, response::NO_PERMISSION);
    // A key read at start only, with one that could change: nothing changes.
    let refused = h.call(
        2,
        admin(
            request::UPDATE_BROKER_CONFIG,
            &[],
            b"autoCreateTopicEnable=false\nlistenPort=1",
        ),
    );
    assert_eq!(refused.code, response::SYSTEM_ERROR);
    assert!(refused.remark.as_deref().unwrap().contains("listenPort"));
    assert!(h.broker.config_properties()["autoCreateTopicEnable"] == "true");
    // A bad value: nothing changes either.
    let refused = h.call(
        2,
        admin(request::UPDATE_BROKER_CONFIG, &[], b"brokerPermission=9"),
    );
    assert_eq!(refused.code, response::SYSTEM_ERROR);

    // Read-only: sends refused, routes registered read-only at once.
    let outputs = h.request(
        2,
        admin(request::UPDATE_BROKER_CONFIG, &[], b"brokerPermission=4"),
    );
    assert_eq!(responses_on(&outputs, 2)[0].code, response::SUCCESS);
    let registration = outputs
        .iter()
        .find_map(|o| match o {
            BrokerOutput::SendToNamesrv { command, .. } => Some(command.clone()),
            _ => None,
        })
        .expect("re-registered at once");
    let body = String::from_utf8_lossy(&registration.body);
    assert!(
        body.contains(r#""perm":4"#) && !body.contains(r#""perm":6"#),
        "{body}"
    );
    let send = h.call(1, send_v2("TopicA", 0, b"m", "t"));
    assert_eq!(send.code, response::NO_PERMISSION);
    let got = h.call(2, admin(request::GET_BROKER_CONFIG, &[], b""));
    assert!(got.ext("version").unwrap().contains(r#""counter":1"#));
    h.call(
        2,
        admin(request::UPDATE_BROKER_CONFIG, &[], b"brokerPermission=6"),
    );
    assert_eq!(
        h.call(1, send_v2("TopicA", 0, b"m", "t")).code,
        response::SUCCESS
    );
}

#[test]
fn runtime_info_and_stats_count_puts_and_gets() {
    let mut h = Harness::new(test_config());
    for i in 0..4 {
        h.call(1, send_v2("TopicA", 0, format!("m{i}").as_bytes(), "t"));
    }
    h.call(3, heartbeat("c1", "G", "TopicA", "*"));
    let pulled = h.call(3, pull_request("G", "TopicA", 0, 0, 0, None));
    assert_eq!(pulled.code, response::SUCCESS);
    let info = h.call(2, admin(request::GET_BROKER_RUNTIME_INFO, &[], b""));
    let body: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    let table = &body["table"];
    assert_eq!(table["msgPutTotalTodayNow"], "4");
    assert_eq!(table["msgGetTotalTodayNow"], "4");
    assert_eq!(table["putTps"], "  ");
    assert_eq!(
        table["commitLogMaxOffset"],
        h.broker.store().written_offset().0.to_string()
    );
    assert!(
        table["earliestMessageTimeStamp"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );

    let stats = h.call(
        2,
        admin(
            request::VIEW_BROKER_STATS_DATA,
            &[("statsName", "GROUP_GET_NUMS"), ("statsKey", "TopicA@G")],
            b"",
        ),
    );
    assert_eq!(stats.code, response::SUCCESS, "{:?}", stats.remark);
    let body: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert!(body["statsMinute"]["tps"].is_number());
    let missing = h.call(
        2,
        admin(
            request::VIEW_BROKER_STATS_DATA,
            &[("statsName", "TOPIC_PUT_NUMS"), ("statsKey", "Nope")],
            b"",
        ),
    );
    assert_eq!(missing.code, response::SYSTEM_ERROR);
}

#[test]
fn deleting_a_group_with_clean_offset_forgets_its_offsets() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"m", "t"));
    h.call(
        3,
        admin(
            request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
            &[],
            br#"{"groupName":"G"}"#,
        ),
    );
    commit(&mut h, "TopicA", "G", 1);
    assert!(h.broker.subscription_groups().contains_key("G"));
    let deleted = h.call(
        2,
        admin(
            request::DELETE_SUBSCRIPTIONGROUP,
            &[("groupName", "G"), ("cleanOffset", "true")],
            b"",
        ),
    );
    assert_eq!(deleted.code, response::SUCCESS);
    assert!(!h.broker.subscription_groups().contains_key("G"));
    let who = h.call(
        2,
        admin(
            request::QUERY_TOPIC_CONSUME_BY_WHO,
            &[("topic", "TopicA")],
            b"",
        ),
    );
    assert_eq!(body_text(&who), r#"{"groupList":[]}"#);
    // An unknown group: SUCCESS as well (RocketMQ).
    let again = h.call(
        2,
        admin(
            request::DELETE_SUBSCRIPTIONGROUP,
            &[("groupName", "G")],
            b"",
        ),
    );
    assert_eq!(again.code, response::SUCCESS);
}

#[test]
fn deleting_a_topic_removes_its_config_queues_and_offsets_and_its_route() {
    let mut config = test_config();
    config.namesrv_addrs = vec!["127.0.0.1:9876".to_owned()];
    let mut h = Harness::new(config);
    for i in 0..3 {
        h.call(1, send_v2("TopicA", 0, format!("m{i}").as_bytes(), "t"));
    }
    commit(&mut h, "TopicA", "G", 2);
    for (topic, code) in [
        ("", response::INVALID_PARAMETER),
        ("SCHEDULE_TOPIC_XXXX", response::INVALID_PARAMETER),
    ] {
        let refused = h.call(
            2,
            admin(request::DELETE_TOPIC_IN_BROKER, &[("topic", topic)], b""),
        );
        assert_eq!(refused.code, code, "{topic:?}");
    }
    let outputs = h.request(
        2,
        admin(request::DELETE_TOPIC_IN_BROKER, &[("topic", "TopicA")], b""),
    );
    assert_eq!(responses_on(&outputs, 2)[0].code, response::SUCCESS);
    let registration = outputs
        .iter()
        .find_map(|o| match o {
            BrokerOutput::SendToNamesrv { command, .. } => Some(command.clone()),
            _ => None,
        })
        .expect("re-registered at once");
    assert!(!String::from_utf8_lossy(&registration.body).contains("\"TopicA\""));
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, 0);
    assert!(h.broker.store().queue_ids("TopicA").is_empty());
    let who = h.call(
        2,
        admin(
            request::QUERY_TOPIC_CONSUME_BY_WHO,
            &[("topic", "TopicA")],
            b"",
        ),
    );
    assert_eq!(body_text(&who), r#"{"groupList":[]}"#);
    let stats = h.call(
        2,
        admin(request::GET_TOPIC_STATS_INFO, &[("topic", "TopicA")], b""),
    );
    assert_eq!(stats.code, response::TOPIC_NOT_EXIST);

    // Neither a crash (every record verified again) nor a clean restart brings it back; a new
    // send starts it over at offset 0.
    let crashed = h.broker.store().storage().clone();
    let mut after_crash = Harness::with_storage(test_config(), crashed, T0 + 5_000);
    let stats = after_crash.call(
        2,
        admin(request::GET_TOPIC_STATS_INFO, &[("topic", "TopicA")], b""),
    );
    assert_eq!(stats.code, response::TOPIC_NOT_EXIST);
    assert!(after_crash.broker.store().queue_ids("TopicA").is_empty());
    h.broker.shutdown(h.now_ms);
    h.broker.store_mut().close_inline().expect("closes cleanly");
    let storage = h.broker.store().storage().clone();
    let mut config = test_config();
    config.namesrv_addrs = vec!["127.0.0.1:9876".to_owned()];
    let mut h = Harness::with_storage(config, storage, T0 + 10_000);
    let stats = h.call(
        2,
        admin(request::GET_TOPIC_STATS_INFO, &[("topic", "TopicA")], b""),
    );
    assert_eq!(stats.code, response::TOPIC_NOT_EXIST);
    let sent = h.call(1, send_v2("TopicA", 0, b"again", "t"));
    assert_eq!(sent.code, response::SUCCESS);
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, 1);
}

#[test]
fn running_info_is_relayed_to_the_consumer_and_its_answer_comes_back() {
    let mut h = Harness::new(test_config());
    h.call(3, heartbeat("c1", "G", "TopicA", "*"));
    let ask = || {
        admin(
            request::GET_CONSUMER_RUNNING_INFO,
            &[
                ("consumerGroup", "G"),
                ("clientId", "c1"),
                ("jstackEnable", "false"),
            ],
            b"",
        )
    };
    let absent = h.call(
        2,
        admin(
            request::GET_CONSUMER_RUNNING_INFO,
            &[("consumerGroup", "G"), ("clientId", "c9")],
            b"",
        ),
    );
    assert_eq!(absent.code, response::SYSTEM_ERROR);

    // Relayed with the same code and header; the answer goes back as it is.
    let outputs = h.request(2, ask());
    assert!(responses_on(&outputs, 2).is_empty());
    let relayed = requests_on(&outputs, 3);
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].code, request::GET_CONSUMER_RUNNING_INFO);
    assert_eq!(relayed[0].ext("clientId"), Some("c1"));
    let admin_opaque = h.next_opaque;
    let mut answer = RemotingCommand::response_to(&relayed[0], response::SUCCESS, None);
    answer.body = bytes::Bytes::from_static(br#"{"properties":{}}"#);
    h.broker.handle_request(h.now_ms, ConnId(3), answer);
    let back = responses_on(&h.drain(), 2);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].opaque, admin_opaque);
    assert_eq!(&back[0].body[..], br#"{"properties":{}}"#);

    // No answer within 10 s: CONSUME_MSG_TIMEOUT.
    let outputs = h.request(2, ask());
    assert_eq!(requests_on(&outputs, 3).len(), 1);
    assert_eq!(h.broker.poll_timeout(), Some(h.now_ms + 10_000));
    let back = responses_on(&h.advance_to(T0 + 10_000), 2);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].code, response::CONSUME_MSG_TIMEOUT);

    // The consumer's connection closes: SYSTEM_ERROR at once.
    h.request(2, ask());
    h.broker.handle_disconnected(h.now_ms, ConnId(3));
    let back = responses_on(&h.drain(), 2);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].code, response::SYSTEM_ERROR);
}
