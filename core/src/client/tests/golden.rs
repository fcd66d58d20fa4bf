//! Golden frames: the exact bytes of every request kind the clients send, built from fixed
//! inputs. Key sets and values were checked against REMOTING.md §3 (and the Java 4.9 request
//! headers); the frame layout against §1.2 and the worked example of §8.1.
//!
//! The JSON header lists ext fields in key order (the core codec writes them from a BTreeMap);
//! a Java client writes them in its HashMap's order. Receivers read ext fields by key, so the
//! two are equivalent on the wire; everything else is identical.

use bytes::{Bytes, BytesMut};

use crate::client::requests::*;
use crate::message::Properties;
use crate::remoting::codec::encode;
use crate::remoting::headers::{PullMessageRequestHeader, SendMessageRequestHeader};
use crate::remoting::RemotingCommand;

/// The whole frame of `command` with opaque 1.
fn frame(command: &RemotingCommand) -> Vec<u8> {
    let mut command = command.clone();
    command.opaque = 1;
    let mut out = BytesMut::new();
    encode(&command, &mut out);
    out.to_vec()
}

/// The frame a Java client writes: length, JSON marker and header length, header, body.
fn expected_frame(header_json: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + header_json.len() + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&(header_json.len() as u32).to_be_bytes());
    out.extend_from_slice(header_json.as_bytes());
    out.extend_from_slice(body);
    out
}

fn assert_frame(command: &RemotingCommand, header_json: &str, body: &[u8]) {
    let got = frame(command);
    let want = expected_frame(header_json, body);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "frames differ"
    );
    assert_eq!(got, want);
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Goal: GET_ROUTEINFO_BY_TOPIC is byte for byte REMOTING.md §8.1.
#[test]
fn get_route_info_frame() {
    let got = frame(&get_route_info("TopicA"));
    let header = r#"{"code":105,"extFields":{"topic":"TopicA"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    assert_eq!(header.len(), 128);
    assert_eq!(&got[..8], &unhex("00 00 00 84 00 00 00 80")[..]);
    assert_eq!(&got[8..10], b"{\"");
    assert_eq!(got, expected_frame(header, b""));
}

fn send_header(batch: bool) -> SendMessageRequestHeader {
    let mut properties = Properties::new();
    properties.insert("UNIQ_KEY", "7F00000100002A9F0000000000000001");
    properties.insert("WAIT", "true");
    properties.insert("TAGS", "tagA");
    SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: "TopicA".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: 0,
        born_timestamp_ms: 1_718_000_000_000,
        flag: 0,
        properties: Some(crate::client::producer::java_map_order(&properties).encode()),
        reconsume_times: Some(0),
        unit_mode: false,
        max_reconsume_times: None,
        batch,
        broker_name: None,
    }
}

/// Goal: SEND_MESSAGE_V2 carries the V2 one-letter keys a..k as Java 4.9 (no `l` unless a
/// retry send, no `m`, no `n`), properties in Java HashMap order, the
/// body as is. Java HashMap buckets: UNIQ_KEY 12, WAIT 13, TAGS 14 (the order real Java
/// producers write).
#[test]
fn send_message_v2_frame() {
    let command = send_message(&send_header(false), Bytes::from_static(b"hello"));
    let header = "{\"code\":310,\"extFields\":{\"a\":\"PG\",\"b\":\"TopicA\",\"c\":\"TBW102\",\"d\":\"4\",\"e\":\"2\",\"f\":\"0\",\"g\":\"1718000000000\",\"h\":\"0\",\"i\":\"UNIQ_KEY\\u00017F00000100002A9F0000000000000001\\u0002WAIT\\u0001true\\u0002TAGS\\u0001tagA\\u0002\",\"j\":\"0\",\"k\":\"false\"},\"flag\":0,\"language\":\"JAVA\",\"opaque\":1,\"serializeTypeCurrentRPC\":\"JSON\",\"version\":479}";
    assert_frame(&command, header, b"hello");
}

/// Goal: SEND_BATCH_MESSAGE is code 320 with the same V2 keys (no `m`).
#[test]
fn send_batch_frame() {
    let mut header = send_header(true);
    header.properties = Some("WAIT\u{1}true\u{2}".into());
    let command = send_message(&header, Bytes::from_static(b"BATCH"));
    let json = "{\"code\":320,\"extFields\":{\"a\":\"PG\",\"b\":\"TopicA\",\"c\":\"TBW102\",\"d\":\"4\",\"e\":\"2\",\"f\":\"0\",\"g\":\"1718000000000\",\"h\":\"0\",\"i\":\"WAIT\\u0001true\\u0002\",\"j\":\"0\",\"k\":\"false\"},\"flag\":0,\"language\":\"JAVA\",\"opaque\":1,\"serializeTypeCurrentRPC\":\"JSON\",\"version\":479}";
    assert_frame(&command, json, b"BATCH");
}

/// Goal: PULL_MESSAGE of a push consumer: suspend + commit bits (3), no subscription, TAG.
#[test]
fn pull_message_frame() {
    let header = PullMessageRequestHeader {
        consumer_group: "G1".into(),
        topic: "TopicA".into(),
        queue_id: 1,
        queue_offset: 42,
        max_msg_nums: 32,
        sys_flag: 3,
        commit_offset: 40,
        suspend_timeout_ms: 15_000,
        subscription: None,
        sub_version: 1_718_000_000_000,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let json = r#"{"code":11,"extFields":{"commitOffset":"40","consumerGroup":"G1","expressionType":"TAG","maxMsgNums":"32","queueId":"1","queueOffset":"42","subVersion":"1718000000000","suspendTimeoutMillis":"15000","sysFlag":"3","topic":"TopicA"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    assert_frame(&pull_message(&header, false), json, b"");

    let lite = PullMessageRequestHeader {
        sys_flag: 2 | 4 | 16,
        commit_offset: 0,
        suspend_timeout_ms: 20_000,
        subscription: Some("*".into()),
        max_msg_nums: 10,
        ..header
    };
    let json = r#"{"code":361,"extFields":{"commitOffset":"0","consumerGroup":"G1","expressionType":"TAG","maxMsgNums":"10","queueId":"1","queueOffset":"42","subVersion":"1718000000000","subscription":"*","suspendTimeoutMillis":"20000","sysFlag":"22","topic":"TopicA"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    assert_frame(&pull_message(&lite, true), json, b"");
}

/// Goal: the offset requests (14, 15 oneway, 29, 30, 31) carry exactly their §3.6/§3.7 keys.
#[test]
fn offset_request_frames() {
    let tail = r#","language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    assert_frame(
        &query_consumer_offset("G1", "TopicA", 3),
        &format!(
            r#"{{"code":14,"extFields":{{"consumerGroup":"G1","queueId":"3","topic":"TopicA"}},"flag":0{tail}"#
        ),
        b"",
    );
    let mut update = update_consumer_offset("G1", "TopicA", 3, 77);
    update.mark_oneway();
    assert_frame(
        &update,
        &format!(
            r#"{{"code":15,"extFields":{{"commitOffset":"77","consumerGroup":"G1","queueId":"3","topic":"TopicA"}},"flag":2{tail}"#
        ),
        b"",
    );
    assert_frame(
        &search_offset_by_timestamp("TopicA", 3, 1_718_000_000_000),
        &format!(
            r#"{{"code":29,"extFields":{{"queueId":"3","timestamp":"1718000000000","topic":"TopicA"}},"flag":0{tail}"#
        ),
        b"",
    );
    assert_frame(
        &get_max_offset("TopicA", 3),
        &format!(r#"{{"code":30,"extFields":{{"queueId":"3","topic":"TopicA"}},"flag":0{tail}"#),
        b"",
    );
    assert_frame(
        &get_min_offset("TopicA", 3),
        &format!(r#"{{"code":31,"extFields":{{"queueId":"3","topic":"TopicA"}},"flag":0{tail}"#),
        b"",
    );
}

/// Goal: group requests (38, 35) and CONSUMER_SEND_MSG_BACK (36) carry their §3.8/§3.10/§3.11
/// keys.
#[test]
fn group_request_frames() {
    let tail =
        r#","flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    assert_frame(
        &get_consumer_list_by_group("G1"),
        &format!(r#"{{"code":38,"extFields":{{"consumerGroup":"G1"}}{tail}"#),
        b"",
    );
    assert_frame(
        &unregister_client("127.0.0.1@client0", None, Some("G1")),
        &format!(
            r#"{{"code":35,"extFields":{{"clientID":"127.0.0.1@client0","consumerGroup":"G1"}}{tail}"#
        ),
        b"",
    );
    assert_frame(
        &unregister_client("127.0.0.1@client0", Some("PG"), None),
        &format!(
            r#"{{"code":35,"extFields":{{"clientID":"127.0.0.1@client0","producerGroup":"PG"}}{tail}"#
        ),
        b"",
    );
    let back = SendBackRequest {
        offset: 123_456,
        group: "G1".into(),
        delay_level: 0,
        origin_msg_id: "7F00000100002A9F0000000000000001".into(),
        origin_topic: "TopicA".into(),
        max_reconsume_times: 16,
    };
    assert_frame(
        &consumer_send_msg_back(&back),
        &format!(
            r#"{{"code":36,"extFields":{{"delayLevel":"0","group":"G1","maxReconsumeTimes":"16","offset":"123456","originMsgId":"7F00000100002A9F0000000000000001","originTopic":"TopicA","unitMode":"false"}}{tail}"#
        ),
        b"",
    );
}

/// Goal: HEART_BEAT has no ext fields and the §5.4 body: keys in fastjson order, the retry
/// subscription, tags and codes in Java HashSet order.
#[test]
fn heartbeat_frame() {
    let data = HeartbeatData {
        client_id: "192.168.1.5@4242#2871123".into(),
        producer_groups: vec![CLIENT_INNER_PRODUCER_GROUP.into()],
        consumers: vec![ConsumerData {
            consume_from_where: ConsumeFromWhere::LastOffset,
            consume_type: ConsumeType::Passively,
            group_name: "G1".into(),
            message_model: MessageModel::Clustering,
            subscription_data_set: vec![
                SubscriptionData::tag("TopicA", "tagA", 1_718_000_000_000),
                SubscriptionData::tag("%RETRY%G1", "*", 1_718_000_000_001),
            ],
            unit_mode: false,
        }],
    };
    // REMOTING.md §5.4's example, subscriptions sorted by topic.
    let body = r#"{"clientID":"192.168.1.5@4242#2871123","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G1","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1718000000001,"tagsSet":[],"topic":"%RETRY%G1"},{"classFilterMode":false,"codeSet":[3552231],"expressionType":"TAG","subString":"tagA","subVersion":1718000000000,"tagsSet":["tagA"],"topic":"TopicA"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false}"#;
    assert_eq!(data.to_json(), body);
    let json = r#"{"code":34,"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
    assert_frame(&heartbeat(&data), json, body.as_bytes());
}

/// Goal: multi-tag subscriptions list tags and codes in Java HashSet iteration order (bucket
/// of the spread hash, capacity 16), whatever order they were written in.
#[test]
fn multi_tag_subscription_order() {
    let sub = SubscriptionData::tag("TopicA", "TagB || TagA ||  TagB", 1);
    // "TagA".hashCode() = 2598919, "TagB" = 2598920; spread h ^ (h >>> 16) & 15 → 6 and 7.
    assert_eq!(sub.tags_set, vec!["TagA", "TagB"]);
    assert_eq!(sub.code_set, vec![2_598_919, 2_598_920]);
    assert_eq!(sub.sub_string, "TagB || TagA ||  TagB");
    assert!(sub.matches(Some("TagA")));
    assert!(!sub.matches(Some("TagC")));
    assert!(!sub.matches(None));
    let all = SubscriptionData::tag("TopicA", " * ", 1);
    assert_eq!(all.sub_string, "*");
    assert!(all.matches(None));
    // Order by bucket, not by insertion or value: 17 lands in bucket 1, 16 in bucket 0.
    assert_eq!(
        java_hash_set_order(vec![17, 16, 33], |v| *v),
        vec![16, 17, 33]
    );
}
