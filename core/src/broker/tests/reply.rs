//! Request–reply: a reply sent with SEND_REPLY_MESSAGE(_V2) reaches its requester's connection
//! as PUSH_REPLY_MESSAGE_TO_CLIENT, is stored in the reply topic, and the replier learns
//! whether the requester got it.

use super::*;
use crate::broker::reply::{properties as reply_props, PUSH_REPLY_TIMEOUT_MS};

const REPLY_TOPIC: &str = "DefaultCluster_REPLY_TOPIC";
const REQUESTER: u64 = 1;
const REPLIER: u64 = 2;

/// A requester (client id `req@1`, producer group PG) registered on connection 1.
fn with_requester(config: BrokerConfig) -> Harness {
    let mut h = Harness::new(config);
    h.advance_to(T0);
    let body = serde_json::json!({
        "clientID": "req@1",
        "producerDataSet": [{"groupName": "PG"}, {"groupName": "CLIENT_INNER_PRODUCER"}],
        "consumerDataSet": []
    });
    let hb =
        RemotingCommand::request(request::HEART_BEAT).with_body(serde_json::to_vec(&body).unwrap());
    assert_eq!(h.call(REQUESTER, hb).code, response::SUCCESS);
    h
}

fn reply_request(code: i32, reply_to: Option<&str>) -> RemotingCommand {
    let mut pairs = vec![
        (reply_props::CORRELATION_ID, "corr-1"),
        (reply_props::MSG_TYPE, "reply"),
        ("TTL", "3000"),
        ("CLUSTER", "DefaultCluster"),
    ];
    if let Some(id) = reply_to {
        pairs.push((reply_props::REPLY_TO_CLIENT, id));
    }
    // 324 carries the V1 header (long keys), 325 the V2 one.
    let keys_of = if code == request::SEND_REPLY_MESSAGE {
        request::SEND_MESSAGE
    } else {
        request::SEND_MESSAGE_V2
    };
    let mut cmd = send_request(keys_of, REPLY_TOPIC, 0, b"the answer", &props(&pairs));
    cmd.code = code;
    cmd
}

fn stored_replies(h: &Harness) -> Vec<MessageRecord> {
    let got = h
        .broker
        .store()
        .get(REPLY_TOPIC, 0, QueueOffset(0), 32, &|_| true)
        .expect("reply queue reads");
    got.records
        .iter()
        .map(|m| MessageRecord::decode(m, true).expect("record decodes"))
        .collect()
}

#[test]
fn the_reply_topic_exists_from_the_start_with_one_queue() {
    let h = Harness::new(test_config());
    let topic = h.broker.topics().get(REPLY_TOPIC).expect("reply topic");
    assert_eq!((topic.read_queue_nums, topic.write_queue_nums), (1, 1));
    assert_eq!(topic.perm, crate::topic::perm::READ_WRITE);
}

#[test]
fn a_reply_is_pushed_to_its_requester_stored_and_acknowledged_once_pushed() {
    for code in [request::SEND_REPLY_MESSAGE, request::SEND_REPLY_MESSAGE_V2] {
        let mut h = with_requester(test_config());
        let out = h.request(REPLIER, reply_request(code, Some("req@1")));
        assert!(
            responses_on(&out, REPLIER).is_empty(),
            "answered before the push"
        );
        let pushes = requests_on(&out, REQUESTER);
        assert_eq!(pushes.len(), 1, "{code}");
        let push = &pushes[0];
        assert_eq!(push.code, request::PUSH_REPLY_MESSAGE_TO_CLIENT);
        assert_eq!(&push.body[..], b"the answer");
        assert_eq!(push.ext("topic"), Some(REPLY_TOPIC));
        assert_eq!(push.ext("producerGroup"), Some("PG"));
        assert_eq!(push.ext("queueId"), Some("0"));
        assert_eq!(
            push.ext("bornHost"),
            Some(peer(REPLIER as u8).to_string().as_str())
        );
        assert_eq!(push.ext("storeHost"), Some("127.0.0.1:10911"));
        assert_eq!(push.ext("storeTimestamp"), Some(T0.to_string().as_str()));
        let pushed = Properties::parse(push.ext("properties").unwrap());
        assert_eq!(pushed.get(reply_props::CORRELATION_ID), Some("corr-1"));
        assert_eq!(
            pushed.get(reply_props::PUSH_REPLY_TIME),
            Some(T0.to_string().as_str())
        );

        // Stored as it came.
        let stored = stored_replies(&h);
        assert_eq!(stored.len(), 1);
        assert_eq!(&stored[0].body[..], b"the answer");
        assert_eq!(
            stored[0].properties.get(reply_props::REPLY_TO_CLIENT),
            Some("req@1")
        );

        // The requester answers: the replier gets SUCCESS with the stored copy's position.
        let mut answer = RemotingCommand::response_to(push, response::SUCCESS, None);
        answer.opaque = push.opaque;
        h.broker.handle_request(h.now_ms, ConnId(REQUESTER), answer);
        let out = h.drain();
        let answers = responses_on(&out, REPLIER);
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers[0].code,
            response::SUCCESS,
            "{:?}",
            answers[0].remark
        );
        assert_eq!(answers[0].ext("queueId"), Some("0"));
        assert_eq!(answers[0].ext("queueOffset"), Some("0"));
        assert_ne!(answers[0].ext("msgId"), Some("0"), "the stored copy's id");
    }
}

#[test]
fn a_reply_to_an_unknown_requester_fails_at_once_but_is_stored() {
    let mut h = with_requester(test_config());
    let resp = h.call(
        REPLIER,
        reply_request(request::SEND_REPLY_MESSAGE_V2, Some("gone@9")),
    );
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert_eq!(
        resp.remark.as_deref(),
        Some("push reply message fail, channel of <gone@9> not found.")
    );
    assert_eq!(stored_replies(&h).len(), 1);
    assert_eq!(resp.ext("queueOffset"), Some("0"));

    let resp = h.call(REPLIER, reply_request(request::SEND_REPLY_MESSAGE_V2, None));
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert_eq!(
        resp.remark.as_deref(),
        Some("reply message properties[REPLY_TO_CLIENT] is null")
    );
}

#[test]
fn a_requester_that_does_not_answer_or_goes_away_fails_the_reply() {
    // Silent for the whole push timeout.
    let mut h = with_requester(test_config());
    let out = h.request(
        REPLIER,
        reply_request(request::SEND_REPLY_MESSAGE_V2, Some("req@1")),
    );
    assert_eq!(requests_on(&out, REQUESTER).len(), 1);
    assert!(h
        .broker
        .poll_timeout()
        .is_some_and(|t| t <= T0 + PUSH_REPLY_TIMEOUT_MS));
    assert!(responses_on(&h.advance_to(T0 + PUSH_REPLY_TIMEOUT_MS - 1), REPLIER).is_empty());
    let answers = responses_on(&h.advance_to(T0 + PUSH_REPLY_TIMEOUT_MS), REPLIER);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].code, response::SYSTEM_ERROR);
    assert_eq!(
        answers[0].remark.as_deref(),
        Some("push reply message to req@1fail.")
    );

    // Its connection closes while the push is in flight: failed at once, and a late answer on
    // another connection with the same opaque is ignored.
    let mut h = with_requester(test_config());
    let out = h.request(
        REPLIER,
        reply_request(request::SEND_REPLY_MESSAGE_V2, Some("req@1")),
    );
    let push = requests_on(&out, REQUESTER).remove(0);
    h.broker.handle_disconnected(h.now_ms, ConnId(REQUESTER));
    let answers = responses_on(&h.drain(), REPLIER);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].code, response::SYSTEM_ERROR);
    let mut late = RemotingCommand::response_to(&push, response::SUCCESS, None);
    late.opaque = push.opaque;
    h.broker.handle_request(h.now_ms, ConnId(3), late);
    assert!(h.drain().is_empty());
}

#[test]
fn a_requester_answering_with_an_error_fails_the_reply() {
    let mut h = with_requester(test_config());
    let out = h.request(
        REPLIER,
        reply_request(request::SEND_REPLY_MESSAGE_V2, Some("req@1")),
    );
    let push = requests_on(&out, REQUESTER).remove(0);
    let mut answer = RemotingCommand::response_to(&push, response::SYSTEM_ERROR, Some("no".into()));
    answer.opaque = push.opaque;
    h.broker.handle_request(h.now_ms, ConnId(REQUESTER), answer);
    let answers = responses_on(&h.drain(), REPLIER);
    assert_eq!(answers[0].code, response::SYSTEM_ERROR);
    assert_eq!(
        answers[0].remark.as_deref(),
        Some("push reply message to req@1fail.")
    );
}

#[test]
fn replies_are_not_stored_when_store_reply_message_enable_is_off() {
    let mut h = with_requester(BrokerConfig {
        store_reply_message_enable: false,
        ..test_config()
    });
    let out = h.request(
        REPLIER,
        reply_request(request::SEND_REPLY_MESSAGE_V2, Some("req@1")),
    );
    let push = requests_on(&out, REQUESTER).remove(0);
    let mut answer = RemotingCommand::response_to(&push, response::SUCCESS, None);
    answer.opaque = push.opaque;
    h.broker.handle_request(h.now_ms, ConnId(REQUESTER), answer);
    let answers = responses_on(&h.drain(), REPLIER);
    assert_eq!(answers[0].code, response::SUCCESS);
    assert_eq!(answers[0].ext("msgId"), Some("0"));
    assert_eq!(h.broker.store().max_offset(REPLY_TOPIC, 0).0, 0);
}

#[test]
fn a_reply_to_a_topic_that_cannot_take_it_is_refused_like_a_send() {
    let mut h = with_requester(test_config());
    let mut cmd = reply_request(request::SEND_REPLY_MESSAGE_V2, Some("req@1"));
    cmd.ext_fields.insert("b".into(), "bad topic!".into());
    let resp = h.call(REPLIER, cmd);
    assert_eq!(resp.code, response::INVALID_PARAMETER, "{:?}", resp.remark);
    let mut cmd = reply_request(request::SEND_REPLY_MESSAGE_V2, Some("req@1"));
    cmd.ext_fields.insert("e".into(), "5".into());
    let resp = h.call(REPLIER, cmd);
    assert_eq!(resp.code, response::INVALID_PARAMETER, "{:?}", resp.remark);
}
