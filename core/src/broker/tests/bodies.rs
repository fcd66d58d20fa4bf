//! JSON bodies as each real client writes them: the broker accepts what Apache's (fastjson)
//! accepts, and answers anything else with one clear error that changes nothing.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn heartbeat_body(body: &str) -> RemotingCommand {
    RemotingCommand::request(request::HEART_BEAT).with_body(body.as_bytes().to_vec())
}

/// A group's registration as the broker holds it: (message model, consume type, consume from
/// where, subscribed topics with their versions).
type Registration = (String, String, String, Vec<(String, i64)>);

fn registered(h: &Harness, group: &str) -> Option<Registration> {
    let g = h.broker.clients.consumers.get(group)?;
    Some((
        g.message_model.clone(),
        g.consume_type.clone(),
        g.consume_from_where.clone(),
        g.subscriptions
            .iter()
            .map(|(t, s)| (t.clone(), s.sub_version))
            .collect(),
    ))
}

fn consumer_ids(h: &mut Harness, group: &str) -> Vec<String> {
    let cmd = RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP)
        .with_ext("consumerGroup", group);
    let resp = h.call(7, cmd);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    body["consumerIdList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_cpp_clients_heartbeat_with_enum_ordinals_registers_its_consumer() {
    // Goal: rocketmq-client-cpp 2.x (and the Python, PHP and Node bindings on it) writes the
    // enums as ordinals and subVersion as a string, with jsoncpp's FastWriter (a trailing
    // newline). Apache registers it; so must Vostok, or its consumers never get a queue.
    let mut h = Harness::new(test_config());
    let body = r#"{"clientID":"127.0.0.1@4242#1718000000","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,"groupName":"GCpp","messageModel":1,"subscriptionDataSet":[{"codeSet":[],"subString":"*","subVersion":"1718000000123","tagsSet":[],"topic":"TopicA"},{"subString":"*","subVersion":"1718000000124","topic":"%RETRY%GCpp"}]}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}
"#;
    let resp = h.call(1, heartbeat_body(body));
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    assert_eq!(
        registered(&h, "GCpp"),
        Some((
            "CLUSTERING".to_owned(),
            "CONSUME_PASSIVELY".to_owned(),
            "CONSUME_FROM_FIRST_OFFSET".to_owned(),
            vec![
                ("%RETRY%GCpp".to_owned(), 1718000000124),
                ("TopicA".to_owned(), 1718000000123)
            ]
        ))
    );
    assert_eq!(consumer_ids(&mut h, "GCpp"), ["127.0.0.1@4242#1718000000"]);
    // And it consumes: its pull finds the subscription the heartbeat registered.
    assert_eq!(
        h.call(2, send_v2("TopicA", 0, b"m", "t")).code,
        response::SUCCESS
    );
    let pull = pull_request(
        "GCpp",
        "TopicA",
        0,
        0,
        pull_sys_flag::SUBSCRIPTION,
        Some("*"),
    );
    assert_eq!(h.call(1, pull).code, response::SUCCESS);
}

#[test]
fn every_clients_heartbeat_shape_registers_the_same_consumer() {
    // Goal: the shapes of the Java, Go, ali-ons and older C++ clients (REMOTING.md §5.4) all
    // register group G as a clustering push consumer of TopicA.
    let shapes = [
        // Java 4.9 / 5.x: every key, enum names, 5.x extras.
        json!({"clientID":"c","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
            "consumeType":"CONSUME_PASSIVELY","groupName":"G","messageModel":"CLUSTERING",
            "subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG",
            "subString":"*","subVersion":5,"tagsSet":[],"topic":"TopicA"}],"unitMode":false}],
            "heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],
            "withoutSub":false}),
        // Go v2: its own key order, no 5.x keys.
        json!({"clientID":"c","producerDataSet":[],"consumerDataSet":[{"groupName":"G",
            "consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING",
            "consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{
            "classFilterMode":false,"topic":"TopicA","subString":"*","tagsSet":[],"codeSet":[],
            "subVersion":5,"expressionType":"TAG"}],"unitMode":false}]}),
        // ali-ons: no expressionType, no producer set, nulls where it has nothing.
        json!({"clientID":"c","consumerDataSet":[{"groupName":"G","consumeType":"CONSUME_PASSIVELY",
            "messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet":[{"topic":"TopicA","subString":"*","tagsSet":null,
            "codeSet":null,"subVersion":5}],"unitMode":null}],"producerDataSet":null}),
        // rocketmq-client-cpp 1.x: enum names, subVersion as a string.
        json!({"clientID":"c","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
            "consumeType":"CONSUME_PASSIVELY","groupName":"G","messageModel":"CLUSTERING",
            "subscriptionDataSet":[{"subString":"*","subVersion":"5","topic":"TopicA"}]}]}),
    ];
    for shape in shapes {
        let mut h = Harness::new(test_config());
        let resp = h.call(1, heartbeat_body(&shape.to_string()));
        assert_eq!(resp.code, response::SUCCESS, "{shape}: {:?}", resp.remark);
        assert_eq!(
            registered(&h, "G"),
            Some((
                "CLUSTERING".to_owned(),
                "CONSUME_PASSIVELY".to_owned(),
                "CONSUME_FROM_LAST_OFFSET".to_owned(),
                vec![("TopicA".to_owned(), 5)]
            )),
            "{shape}"
        );
    }
}

#[test]
fn a_heartbeat_fastjson_refuses_gets_one_clear_error_and_registers_nothing() {
    let mut h = Harness::new(test_config());
    for (body, says) in [
        (
            r#"{"clientID":"c","consumerDataSet":[{"groupName":"G","messageModel":7}]}"#,
            "parse enum MessageModel error, value : 7",
        ),
        (
            r#"{"clientID":"c","consumerDataSet":[{"groupName":"G","subscriptionDataSet":[{"topic":"T","subVersion":"soon"}]}]}"#,
            "expected a Java long",
        ),
        (
            r#"{"clientID":"c","consumerDataSet":{"groupName":"G"}}"#,
            "expected an array",
        ),
        (r#"{"clientID":"c""#, "the body is not valid HeartbeatData"),
    ] {
        let resp = h.call(1, heartbeat_body(body));
        assert_eq!(resp.code, response::SYSTEM_ERROR, "{body}");
        let remark = resp.remark.unwrap_or_default();
        assert!(remark.contains(says), "{body}: {remark}");
        assert!(h.broker.clients.consumers.is_empty(), "{body}");
    }
}

#[test]
fn lock_and_subscription_group_bodies_take_numbers_as_strings() {
    let mut h = Harness::new(test_config());
    h.call(1, heartbeat("c1", "G1", "TopicA", "*"));
    let lock = RemotingCommand::request(request::LOCK_BATCH_MQ).with_body(
        json!({"consumerGroup":"G1","clientId":"c1","mqSet":[{"topic":"TopicA",
            "brokerName":"broker-a","queueId":"2"}],"onlyThisBroker":"false"})
        .to_string()
        .into_bytes(),
    );
    let resp = h.call(1, lock);
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    let locked: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(locked["lockOKMQSet"][0]["queueId"], 2);

    let group = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(
        json!({"groupName":"G2","retryMaxTimes":"3","consumeEnable":"false",
            "consumeBroadcastEnable":null,"brokerId":"0","whichBrokerWhenConsumeSlowly":1.0,
            "attributes":{"n":1},"groupRetryPolicy":{"type":"CUSTOMIZED"}})
        .to_string()
        .into_bytes(),
    );
    let resp = h.call(1, group);
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    let config = h.broker.subscription_groups().get("G2").cloned().unwrap();
    assert_eq!(config.retry_max_times, 3);
    assert!(!config.consume_enable);
    assert!(
        config.consume_broadcast_enable,
        "null keeps RocketMQ's default"
    );
    assert_eq!(config.attributes.get("n").map(String::as_str), Some("1"));
}

/// A JSON value of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,12}".prop_map(Value::String),
        (0u64..8).prop_map(|n| Value::String(n.to_string())),
        prop::sample::select(vec![
            "CLUSTERING",
            "broadcasting",
            "CONSUME_POP",
            "TAG",
            "*"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every field path of the heartbeat body a client may fill.
const HEARTBEAT_FIELDS: &[&str] = &[
    "/clientID",
    "/producerDataSet",
    "/producerDataSet/0/groupName",
    "/consumerDataSet",
    "/consumerDataSet/0",
    "/consumerDataSet/0/groupName",
    "/consumerDataSet/0/consumeType",
    "/consumerDataSet/0/messageModel",
    "/consumerDataSet/0/consumeFromWhere",
    "/consumerDataSet/0/subscriptionDataSet",
    "/consumerDataSet/0/subscriptionDataSet/0",
    "/consumerDataSet/0/subscriptionDataSet/0/topic",
    "/consumerDataSet/0/subscriptionDataSet/0/subString",
    "/consumerDataSet/0/subscriptionDataSet/0/subVersion",
    "/consumerDataSet/0/subscriptionDataSet/0/expressionType",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any value in any heartbeat field: the broker answers once, with SUCCESS or SYSTEM_ERROR
    /// and a remark saying what was wrong, and an error registers nothing.
    #[test]
    fn any_heartbeat_field_value_gets_success_or_a_clear_error(
        replacements in prop::collection::vec(
            (prop::sample::select(HEARTBEAT_FIELDS), any_json()), 1..4),
    ) {
        let mut body: Value = serde_json::from_slice(&heartbeat("c1", "G1", "TopicA", "*").body)
            .unwrap();
        for (path, value) in replacements {
            if let Some(slot) = body.pointer_mut(path) {
                *slot = value;
            }
        }
        let mut h = Harness::new(test_config());
        let out = h.request(1, heartbeat_body(&body.to_string()));
        let answers = responses_on(&out, 1);
        prop_assert_eq!(answers.len(), 1);
        let resp = &answers[0];
        match resp.code {
            response::SUCCESS => {}
            response::SYSTEM_ERROR => {
                let remark = resp.remark.clone().unwrap_or_default();
                prop_assert!(remark.contains("HeartbeatData"), "{}", remark);
                prop_assert!(h.broker.clients.consumers.is_empty());
                prop_assert!(h.broker.clients.producers.is_empty());
            }
            other => prop_assert!(false, "code {} for {}", other, body),
        }
    }
}
