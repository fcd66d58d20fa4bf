//! The push and lite pull consumers against scripted NameServer and broker answers.

use bytes::Bytes;

use super::*;
use crate::client::requests::{ConsumeFromWhere, MessageModel};
use crate::client::{
    ClientConfig, ClientError, ConsumeStatus, ConsumeToken, MessageExt, MessageQueue, PushConsumer,
    PushConsumerConfig,
};
use crate::message::{MessageRecord, Properties};
use crate::remoting::codes::{request, response};

const BROKER_A: &str = "127.0.0.1:10911";

fn config() -> PushConsumerConfig {
    PushConsumerConfig {
        client: ClientConfig {
            namesrv_addrs: vec![NAMESRV.to_owned()],
            instance_name: "c".to_owned(),
            seed: 3,
            ..ClientConfig::default()
        },
        consumer_group: "G".to_owned(),
        ..PushConsumerConfig::default()
    }
}

fn drain(c: &mut PushConsumer) -> Vec<ClientOutput> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn find(out: &[ClientOutput], code: i32) -> Vec<(String, RemotingCommand)> {
    sends(out)
        .into_iter()
        .filter(|(_, c)| c.code == code)
        .collect()
}

fn one(out: &[ClientOutput], code: i32) -> (String, RemotingCommand) {
    let found = find(out, code);
    assert_eq!(found.len(), 1, "expected one request {code} in {out:?}");
    found.into_iter().next().unwrap()
}

fn consumes(out: &[ClientOutput]) -> Vec<(ConsumeToken, Vec<MessageExt>)> {
    out.iter()
        .filter_map(|o| match o {
            ClientOutput::Consume {
                token, messages, ..
            } => Some((*token, messages.clone())),
            _ => None,
        })
        .collect()
}

fn record(
    topic: &str,
    queue_id: i32,
    offset: i64,
    body: &str,
    tags: Option<&str>,
) -> MessageRecord {
    let mut properties = Properties::new();
    properties.insert("UNIQ_KEY", format!("UNIQ{offset:028}"));
    if let Some(t) = tags {
        properties.insert("TAGS", t);
    }
    MessageRecord {
        queue_id,
        flag: 0,
        queue_offset: offset,
        physical_offset: 1_000 + offset * 100,
        sys_flag: 0,
        born_timestamp_ms: T0 as i64,
        born_host: "127.0.0.1:5000".parse().unwrap(),
        store_timestamp_ms: T0 as i64,
        store_host: BROKER_A.parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(body.to_owned()),
        topic: topic.to_owned(),
        properties,
    }
}

fn found(req: &RemotingCommand, records: &[MessageRecord], next: i64) -> RemotingCommand {
    let mut body = Vec::new();
    for r in records {
        body.extend(r.encode_to_vec().unwrap());
    }
    RemotingCommand::response_to(req, response::SUCCESS, None)
        .with_ext("nextBeginOffset", next)
        .with_ext("minOffset", 0)
        .with_ext("maxOffset", next)
        .with_ext("suggestWhichBrokerId", 0)
        .with_body(body)
}

fn pull_answer(req: &RemotingCommand, code: i32, next: i64) -> RemotingCommand {
    RemotingCommand::response_to(req, code, None)
        .with_ext("nextBeginOffset", next)
        .with_ext("minOffset", 0)
        .with_ext("maxOffset", next)
        .with_ext("suggestWhichBrokerId", 0)
}

fn offset_answer(req: &RemotingCommand, offset: i64) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS, None).with_ext("offset", offset)
}

/// Starts a clustering consumer of `TopicA` (one queue on broker-a) alone in its group and
/// brings it to its first pull of queue 0 at `start_offset`. Returns the pull request.
fn started(mut config: PushConsumerConfig, queues: u32) -> (PushConsumer, RemotingCommand) {
    config.consume_from_where = ConsumeFromWhere::LastOffset;
    let mut c = PushConsumer::new(config, T0);
    c.subscribe(T0, "TopicA", "tagA || tagB").unwrap();
    c.start(T0);
    let out = drain(&mut c);
    let routes = find(&out, request::GET_ROUTEINFO_BY_TOPIC);
    let topics: Vec<&str> = routes
        .iter()
        .map(|(_, r)| r.ext("topic").unwrap())
        .collect();
    assert_eq!(topics, vec!["%RETRY%G", "TopicA"]);
    // No retry topic yet: 17.
    let missing = RemotingCommand::response_to(&routes[0].1, response::TOPIC_NOT_EXIST, None);
    c.handle_response(T0, NAMESRV, missing);
    let r = route(&[("broker-a", BROKER_A)], queues);
    c.handle_response(T0, NAMESRV, through_wire(&route_response(&routes[1].1, &r)));
    let out = drain(&mut c);
    // A heartbeat first (the broker must know us before naming the group), then the group.
    let s = sends(&out);
    assert_eq!(s[0].1.code, request::HEART_BEAT);
    let body = String::from_utf8(s[0].1.body.to_vec()).unwrap();
    assert!(
        body.contains(r#""groupName":"G","messageModel":"CLUSTERING""#),
        "{body}"
    );
    assert!(body.contains(r#""topic":"%RETRY%G""#));
    let (addr, list) = one(&out, request::GET_CONSUMER_LIST_BY_GROUP);
    assert_eq!(addr, BROKER_A);
    assert_eq!(list.ext("consumerGroup"), Some("G"));
    let answer = RemotingCommand::response_to(&list, 0, None)
        .with_body(format!(r#"{{"consumerIdList":["{}"]}}"#, c.client_id()).into_bytes());
    c.handle_response(T0, BROKER_A, through_wire(&answer));
    let out = drain(&mut c);
    let queries = find(&out, request::QUERY_CONSUMER_OFFSET);
    assert_eq!(queries.len(), queues as usize);
    // No committed offset: CONSUME_FROM_LAST_OFFSET asks for the max offset.
    for (_, q) in &queries {
        let nf = RemotingCommand::response_to(q, response::QUERY_NOT_FOUND, None);
        c.handle_response(T0, BROKER_A, nf);
    }
    let out = drain(&mut c);
    let maxes = find(&out, request::GET_MAX_OFFSET);
    assert_eq!(maxes.len(), queues as usize);
    for (_, m) in &maxes {
        let q: i32 = m.ext_num("queueId").unwrap();
        c.handle_response(T0, BROKER_A, offset_answer(m, 10 + i64::from(q)));
    }
    let out = drain(&mut c);
    let pulls = find(&out, request::PULL_MESSAGE);
    assert_eq!(pulls.len(), queues as usize);
    let pull = pulls
        .into_iter()
        .find(|(_, p)| p.ext("queueId") == Some("0"))
        .unwrap()
        .1;
    (c, pull)
}

/// Goal: the start sequence (routes, heartbeat, group list, offset query, max offset) ends in a
/// long-poll pull with Java's fields; found messages are decoded, tag-filtered and delivered;
/// consuming them advances the committed offset, which the next pull carries.
#[test]
fn start_pull_deliver_commit() {
    let (mut c, pull) = started(config(), 1);
    assert_eq!(pull.ext("queueOffset"), Some("10"));
    assert_eq!(
        pull.ext("sysFlag"),
        Some("2"),
        "suspend, no commit, no subscription"
    );
    assert_eq!(pull.ext("suspendTimeoutMillis"), Some("15000"));
    assert_eq!(pull.ext("maxMsgNums"), Some("32"));
    assert_eq!(pull.ext("subscription"), None);
    assert_eq!(pull.ext("expressionType"), Some("TAG"));
    let records = [
        record("TopicA", 0, 10, "a", Some("tagA")),
        record("TopicA", 0, 11, "c", Some("tagC")),
        record("TopicA", 0, 12, "b", Some("tagB")),
        record("TopicA", 0, 13, "n", None),
    ];
    c.handle_response(T0 + 5, BROKER_A, through_wire(&found(&pull, &records, 14)));
    let out = drain(&mut c);
    let delivered = consumes(&out);
    let bodies: Vec<&[u8]> = delivered
        .iter()
        .flat_map(|(_, ms)| ms.iter().map(|m| &m.body()[..]))
        .collect();
    assert_eq!(bodies, vec![&b"a"[..], &b"b"[..]]);
    assert_eq!(delivered.len(), 2, "consumeMessageBatchMaxSize 1");
    assert_eq!(delivered[0].1[0].property("MAX_OFFSET"), Some("14"));
    // The next pull goes out at once, from nextBeginOffset.
    let (_, next_pull) = one(&out, request::PULL_MESSAGE);
    assert_eq!(next_pull.ext("queueOffset"), Some("14"));
    assert_eq!(c.cached_message_count(), 2);
    let queue = MessageQueue::new("TopicA", "broker-a", 0);
    assert_eq!(c.committed_offset(&queue), None);
    // Consuming the second first: the first still holds the offset back.
    c.handle_consume_result(T0 + 6, delivered[1].0, ConsumeStatus::ConsumeSuccess);
    assert_eq!(c.committed_offset(&queue), Some(10));
    c.handle_consume_result(T0 + 6, delivered[0].0, ConsumeStatus::ConsumeSuccess);
    // One past the last message held (Java's queueOffsetMax + 1): the filtered-out tail is
    // not consumed yet.
    assert_eq!(c.committed_offset(&queue), Some(13));
    assert_eq!(c.cached_message_count(), 0);
    // Repeated tokens are ignored.
    c.handle_consume_result(T0 + 6, delivered[0].0, ConsumeStatus::ReconsumeLater);
    assert!(drain(&mut c).is_empty());
    // No new messages and nothing held: the position itself counts as consumed
    // (correctTagsOffset), and the pull after that carries the commit bit and offset.
    c.handle_response(
        T0 + 15_000,
        BROKER_A,
        pull_answer(&next_pull, response::PULL_NOT_FOUND, 14),
    );
    let out = drain(&mut c);
    let (_, third) = one(&out, request::PULL_MESSAGE);
    assert_eq!(third.ext("sysFlag"), Some("3"));
    assert_eq!(third.ext("commitOffset"), Some("14"));
    // Periodic commit: UPDATE_CONSUMER_OFFSET oneway at start + 5 s.
    c.handle_timeout(T0 + 5_000);
    let out = drain(&mut c);
    let (_, update) = one(&out, request::UPDATE_CONSUMER_OFFSET);
    assert!(update.is_oneway());
    assert_eq!(update.ext("commitOffset"), Some("14"));
    assert_eq!(update.ext("queueId"), Some("0"));
    // The next period sends nothing: the offset has not moved since (re-sending it could move
    // the group's offset back over what another instance committed after the queue moved).
    c.handle_timeout(T0 + 10_000);
    assert!(find(&drain(&mut c), request::UPDATE_CONSUMER_OFFSET).is_empty());
    // Shutdown: commit again and unregister.
    c.shutdown(T0 + 6_000);
    let out = drain(&mut c);
    one(&out, request::UPDATE_CONSUMER_OFFSET);
    let (_, unregister) = one(&out, request::UNREGISTER_CLIENT);
    assert_eq!(unregister.ext("consumerGroup"), Some("G"));
    assert_eq!(unregister.ext("clientID"), Some(c.client_id()));
}

/// Goal: flow control: a queue holding more than pullThresholdForQueue messages is not pulled;
/// it is checked again every 50 ms and pulled once the application caught up.
#[test]
fn flow_control_pauses_pulling() {
    let mut cfg = config();
    cfg.pull_threshold_for_queue = 2;
    cfg.consume_message_batch_max_size = 10;
    let (mut c, pull) = started(cfg, 1);
    let records: Vec<MessageRecord> = (10..13)
        .map(|o| record("TopicA", 0, o, "x", Some("tagA")))
        .collect();
    c.handle_response(T0 + 1, BROKER_A, found(&pull, &records, 13));
    let out = drain(&mut c);
    assert!(
        find(&out, request::PULL_MESSAGE).is_empty(),
        "3 > 2 held: paused"
    );
    let delivered = consumes(&out);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].1.len(), 3, "one batch of up to 10");
    assert_eq!(c.poll_timeout(), Some(T0 + 1 + 50));
    c.handle_timeout(T0 + 51);
    assert!(
        find(&drain(&mut c), request::PULL_MESSAGE).is_empty(),
        "still full"
    );
    c.handle_consume_result(T0 + 60, delivered[0].0, ConsumeStatus::ConsumeSuccess);
    assert!(
        find(&drain(&mut c), request::PULL_MESSAGE).is_empty(),
        "waits for its timer"
    );
    c.handle_timeout(T0 + 101);
    let (_, next) = one(&drain(&mut c), request::PULL_MESSAGE);
    assert_eq!(next.ext("queueOffset"), Some("13"));
}

/// Goal: PULL_OFFSET_MOVED commits nextBeginOffset, drops the queue and a rebalance takes it
/// again, starting where the broker said.
#[test]
fn offset_moved_resets_the_queue() {
    let (mut c, pull) = started(config(), 1);
    c.handle_response(
        T0 + 1,
        BROKER_A,
        pull_answer(&pull, response::PULL_OFFSET_MOVED, 100),
    );
    let out = drain(&mut c);
    let (_, update) = one(&out, request::UPDATE_CONSUMER_OFFSET);
    assert_eq!(update.ext("commitOffset"), Some("100"));
    assert!(c.assigned_queues().is_empty());
    c.handle_timeout(T0 + 1);
    let out = drain(&mut c);
    let (_, list) = one(&out, request::GET_CONSUMER_LIST_BY_GROUP);
    let answer = RemotingCommand::response_to(&list, 0, None)
        .with_body(format!(r#"{{"consumerIdList":["{}"]}}"#, c.client_id()).into_bytes());
    c.handle_response(T0 + 2, BROKER_A, answer);
    let (_, query) = one(&drain(&mut c), request::QUERY_CONSUMER_OFFSET);
    c.handle_response(T0 + 3, BROKER_A, offset_answer(&query, 100));
    let (_, pull) = one(&drain(&mut c), request::PULL_MESSAGE);
    assert_eq!(pull.ext("queueOffset"), Some("100"));
}

/// Goal: a failed pull is retried after 1 s; a timed-out pull (30 s RPC timeout) likewise.
#[test]
fn failed_pulls_retry_later() {
    let (mut c, pull) = started(config(), 1);
    let err = RemotingCommand::response_to(&pull, response::SUBSCRIPTION_NOT_EXIST, None);
    c.handle_response(T0 + 10, BROKER_A, err);
    assert!(find(&drain(&mut c), request::PULL_MESSAGE).is_empty());
    c.handle_timeout(T0 + 1_010);
    let (_, again) = one(&drain(&mut c), request::PULL_MESSAGE);
    c.handle_timeout(T0 + 1_010 + 30_000);
    let out = drain(&mut c);
    assert!(find(&out, request::PULL_MESSAGE).is_empty());
    c.handle_timeout(T0 + 1_010 + 31_000);
    let (_, third) = one(&drain(&mut c), request::PULL_MESSAGE);
    assert_eq!(third.ext("queueOffset"), again.ext("queueOffset"));
}

/// Goal: NOTIFY_CONSUMER_IDS_CHANGED makes the consumer ask for the group at once; a second
/// member halves the assignment (averagely).
#[test]
fn notify_triggers_rebalance() {
    let (mut c, _) = started(config(), 4);
    assert_eq!(c.assigned_queues().len(), 4);
    let notify = RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED)
        .with_ext("consumerGroup", "G");
    let mut notify = notify;
    notify.mark_oneway();
    c.handle_request(T0 + 100, BROKER_A, notify);
    let out = drain(&mut c);
    let (_, list) = one(&out, request::GET_CONSUMER_LIST_BY_GROUP);
    assert_eq!(out.len(), 1, "oneway notifications are not answered");
    // The other member's id sorts after ours: we keep queues 0 and 1.
    let answer = RemotingCommand::response_to(&list, 0, None).with_body(
        format!(r#"{{"consumerIdList":["zzz@other","{}"]}}"#, c.client_id()).into_bytes(),
    );
    c.handle_response(T0 + 101, BROKER_A, answer);
    let out = drain(&mut c);
    let ids: Vec<i32> = c.assigned_queues().iter().map(|q| q.queue_id).collect();
    assert_eq!(ids, vec![0, 1]);
    // Queues given up are committed (their offsets were known: none consumed yet, so none).
    assert!(find(&out, request::QUERY_CONSUMER_OFFSET).is_empty());
    // Other broker requests are refused.
    let other = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO);
    c.handle_request(T0 + 102, BROKER_A, other);
    let out = sends(&drain(&mut c));
    assert_eq!(out[0].1.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert!(out[0].1.is_response());
}

/// Goal: RECONSUME_LATER sends the message back (CONSUMER_SEND_MSG_BACK with the physical
/// offset and delay level 0); when that fails, the message is re-sent to %RETRY%G with Java's
/// properties; when that fails too, it is consumed again locally after 5 s. The offset stays
/// held until the message is done.
#[test]
fn send_back_and_fallbacks() {
    let (mut c, pull) = started(config(), 1);
    let records = [record("TopicA", 0, 10, "a", Some("tagA"))];
    c.handle_response(T0 + 1, BROKER_A, found(&pull, &records, 11));
    let delivered = consumes(&drain(&mut c));
    c.handle_consume_result(T0 + 2, delivered[0].0, ConsumeStatus::ReconsumeLater);
    let (addr, back) = one(&drain(&mut c), request::CONSUMER_SEND_MSG_BACK);
    assert_eq!(addr, BROKER_A);
    assert_eq!(back.ext("offset"), Some("2000"));
    assert_eq!(back.ext("group"), Some("G"));
    assert_eq!(back.ext("delayLevel"), Some("0"));
    assert_eq!(back.ext("originTopic"), Some("TopicA"));
    assert_eq!(back.ext("maxReconsumeTimes"), Some("16"));
    let queue = MessageQueue::new("TopicA", "broker-a", 0);
    let fail = RemotingCommand::response_to(&back, response::SYSTEM_ERROR, None);
    c.handle_response(T0 + 3, BROKER_A, fail);
    let (_, resend) = one(&drain(&mut c), request::SEND_MESSAGE_V2);
    assert_eq!(resend.ext("b"), Some("%RETRY%G"));
    assert_eq!(resend.ext("j"), Some("1"));
    assert_eq!(resend.ext("l"), Some("16"));
    let props = Properties::parse(resend.ext("i").unwrap());
    assert_eq!(props.get("RETRY_TOPIC"), Some("TopicA"));
    assert_eq!(props.get("DELAY"), Some("3"));
    assert_eq!(props.get("RECONSUME_TIME"), Some("1"));
    assert_eq!(props.get("MAX_RECONSUME_TIMES"), Some("16"));
    assert_eq!(
        props.get("ORIGIN_MESSAGE_ID"),
        Some(format!("UNIQ{:028}", 10).as_str())
    );
    assert_eq!(c.committed_offset(&queue), None, "still held");
    c.handle_connection_closed(T0 + 4, BROKER_A);
    let out = drain(&mut c);
    assert!(consumes(&out).is_empty());
    c.handle_timeout(T0 + 4 + 5_000);
    let again = consumes(&drain(&mut c));
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0].1[0].body()[..], b"a");
    c.handle_consume_result(T0 + 5_010, again[0].0, ConsumeStatus::ConsumeSuccess);
    assert_eq!(c.committed_offset(&queue), Some(11));
}

/// Goal: CONSUME_FROM_TIMESTAMP searches by (creation − 30 min) when nothing is committed; a
/// retry queue starts at its max offset instead.
#[test]
fn consume_from_timestamp() {
    let mut cfg = config();
    cfg.consume_from_where = ConsumeFromWhere::Timestamp;
    let mut c = PushConsumer::new(cfg, T0);
    c.subscribe(T0, "TopicA", "*").unwrap();
    c.start(T0);
    let out = drain(&mut c);
    let routes = find(&out, request::GET_ROUTEINFO_BY_TOPIC);
    let r = route(&[("broker-a", BROKER_A)], 1);
    for (_, req) in &routes {
        c.handle_response(T0, NAMESRV, route_response(req, &r));
    }
    let out = drain(&mut c);
    for (_, list) in find(&out, request::GET_CONSUMER_LIST_BY_GROUP) {
        let answer = RemotingCommand::response_to(&list, 0, None)
            .with_body(format!(r#"{{"consumerIdList":["{}"]}}"#, c.client_id()).into_bytes());
        c.handle_response(T0, BROKER_A, answer);
    }
    let out = drain(&mut c);
    let queries = find(&out, request::QUERY_CONSUMER_OFFSET);
    assert_eq!(queries.len(), 2);
    for (_, q) in &queries {
        c.handle_response(
            T0,
            BROKER_A,
            RemotingCommand::response_to(q, response::QUERY_NOT_FOUND, None),
        );
    }
    let out = drain(&mut c);
    let (_, search) = one(&out, request::SEARCH_OFFSET_BY_TIMESTAMP);
    assert_eq!(search.ext("topic"), Some("TopicA"));
    assert_eq!(
        search.ext("timestamp"),
        Some((T0 - 1_800_000).to_string().as_str())
    );
    let (_, max) = one(&out, request::GET_MAX_OFFSET);
    assert_eq!(max.ext("topic"), Some("%RETRY%G"));
    c.handle_response(T0, BROKER_A, offset_answer(&search, 5));
    c.handle_response(T0, BROKER_A, offset_answer(&max, 2));
    let out = drain(&mut c);
    let pulls: Vec<(String, String)> = find(&out, request::PULL_MESSAGE)
        .into_iter()
        .map(|(_, p)| {
            (
                p.ext("topic").unwrap().to_owned(),
                p.ext("queueOffset").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pulls,
        vec![
            ("TopicA".to_owned(), "5".to_owned()),
            ("%RETRY%G".to_owned(), "2".to_owned())
        ]
    );
}

/// Goal: broadcasting takes every queue without asking the group, starts from offsets the
/// driver kept, commits nothing to the broker and reports its offsets locally.
#[test]
fn broadcasting_keeps_offsets_locally() {
    let mut cfg = config();
    cfg.message_model = MessageModel::Broadcasting;
    let mut c = PushConsumer::new(cfg, T0);
    c.subscribe(T0, "TopicA", "*").unwrap();
    let q0 = MessageQueue::new("TopicA", "broker-a", 0);
    c.load_local_offsets([(q0.clone(), 7)].into_iter().collect());
    c.start(T0);
    let out = drain(&mut c);
    let routes = find(&out, request::GET_ROUTEINFO_BY_TOPIC);
    assert_eq!(routes.len(), 1, "no retry topic in broadcasting");
    let r = route(&[("broker-a", BROKER_A)], 2);
    c.handle_response(T0, NAMESRV, route_response(&routes[0].1, &r));
    let out = drain(&mut c);
    assert!(find(&out, request::GET_CONSUMER_LIST_BY_GROUP).is_empty());
    assert!(find(&out, request::QUERY_CONSUMER_OFFSET).is_empty());
    let body = String::from_utf8(one(&out, request::HEART_BEAT).1.body.to_vec()).unwrap();
    assert!(body.contains("BROADCASTING"));
    // Queue 0 resumes at 7; queue 1 (no local offset) asks for the max offset.
    let pulls = find(&out, request::PULL_MESSAGE);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].1.ext("queueOffset"), Some("7"));
    assert_eq!(pulls[0].1.ext("sysFlag"), Some("2"));
    let (_, max) = one(&out, request::GET_MAX_OFFSET);
    assert_eq!(max.ext("queueId"), Some("1"));
    c.handle_response(
        T0 + 1,
        BROKER_A,
        found(&pulls[0].1, &[record("TopicA", 0, 7, "x", None)], 8),
    );
    let delivered = consumes(&drain(&mut c));
    // A failed message is dropped in broadcasting mode, as Java does.
    c.handle_consume_result(T0 + 2, delivered[0].0, ConsumeStatus::ReconsumeLater);
    assert_eq!(c.committed_offset(&q0), Some(8));
    c.handle_timeout(T0 + 5_000);
    let out = drain(&mut c);
    assert!(find(&out, request::UPDATE_CONSUMER_OFFSET).is_empty());
    let persisted: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            ClientOutput::PersistLocalOffsets { offsets } => Some(offsets.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(persisted.len(), 1);
    assert_eq!(persisted[0].get(&q0), Some(&8));
}

/// Goal: garbage from peers never panics: malformed route, group list, pull body and offsets.
#[test]
fn malformed_answers_do_not_panic() {
    let (mut c, pull) = started(config(), 1);
    let bad = RemotingCommand::response_to(&pull, response::SUCCESS, None)
        .with_ext("nextBeginOffset", 20)
        .with_body(vec![0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1]);
    c.handle_response(T0 + 1, BROKER_A, bad);
    let out = drain(&mut c);
    assert!(consumes(&out).is_empty());
    c.handle_timeout(T0 + 1_001);
    let (_, again) = one(&drain(&mut c), request::PULL_MESSAGE);
    assert_eq!(
        again.ext("queueOffset"),
        Some("10"),
        "the bad body is not skipped over"
    );
    let no_next = RemotingCommand::response_to(&again, response::SUCCESS, None);
    c.handle_response(T0 + 1_002, BROKER_A, no_next);
    c.handle_request(
        T0,
        NAMESRV,
        RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED),
    );
    let out = drain(&mut c);
    for (addr, list) in find(&out, request::GET_CONSUMER_LIST_BY_GROUP) {
        let junk = RemotingCommand::response_to(&list, 0, None).with_body(&b"{not json"[..]);
        c.handle_response(T0, &addr, junk);
    }
    assert_eq!(c.assigned_queues().len(), 1);
}

/// Goal: an SQL92 subscription: an expression that does not compile is refused at subscribe
/// time; a valid one goes into the heartbeat (expressionType SQL92, the expression as
/// subString, no tags or codes) and into every pull (expressionType, and the expression as
/// subscription when posted), and the client's tag check lets every returned message through
/// (the broker filtered them).
#[test]
fn sql92_subscription_in_heartbeat_and_pull() {
    let mut cfg = config();
    cfg.message_model = MessageModel::Broadcasting;
    cfg.post_subscription_when_pull = true;
    let mut c = PushConsumer::new(cfg, T0);
    let refused = c.subscribe_sql(T0, "TopicA", "a BETWEEN 1");
    assert!(
        matches!(&refused, Err(ClientError::InvalidSubscription(m)) if m.starts_with("Invalid MessageSelector. ")),
        "{refused:?}"
    );
    let expr = "a BETWEEN 3 AND 5 AND color = 'red'";
    c.subscribe_sql(T0, "TopicA", expr).unwrap();
    c.start(T0);
    let out = drain(&mut c);
    let (_, route_req) = one(&out, request::GET_ROUTEINFO_BY_TOPIC);
    let r = route(&[("broker-a", BROKER_A)], 1);
    c.handle_response(T0, NAMESRV, route_response(&route_req, &r));
    let out = drain(&mut c);
    let body = String::from_utf8(one(&out, request::HEART_BEAT).1.body.to_vec()).unwrap();
    let heartbeat: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sub = &heartbeat["consumerDataSet"][0]["subscriptionDataSet"][0];
    assert_eq!(sub["topic"], "TopicA");
    assert_eq!(sub["expressionType"], "SQL92");
    assert_eq!(sub["subString"], expr);
    assert_eq!(sub["subVersion"], T0);
    assert_eq!(sub["tagsSet"], serde_json::json!([]));
    assert_eq!(sub["codeSet"], serde_json::json!([]));
    let (_, max) = one(&out, request::GET_MAX_OFFSET);
    c.handle_response(T0, BROKER_A, offset_answer(&max, 0));
    let out = drain(&mut c);
    let (_, pull) = one(&out, request::PULL_MESSAGE);
    assert_eq!(pull.ext("expressionType"), Some("SQL92"));
    assert_eq!(pull.ext("subscription"), Some(expr));
    assert_eq!(pull.ext("subVersion"), Some(T0.to_string().as_str()));
    let records = [
        record("TopicA", 0, 0, "tagged", Some("tagA")),
        record("TopicA", 0, 1, "bare", None),
    ];
    c.handle_response(T0 + 1, BROKER_A, found(&pull, &records, 2));
    let delivered = consumes(&drain(&mut c));
    let bodies: Vec<&[u8]> = delivered
        .iter()
        .flat_map(|(_, ms)| ms.iter().map(|m| &m.body()[..]))
        .collect();
    assert_eq!(bodies, vec![&b"tagged"[..], &b"bare"[..]]);
}

/// Goal: RESET_CONSUMER_CLIENT_OFFSET drops what the queue holds (its pending consume results
/// no longer count), commits the new offset at once and pulls from it; tables for another
/// group or topic, and malformed ones, change nothing.
#[test]
fn reset_offset_from_the_broker_restarts_the_queue_there() {
    use crate::remoting::reset_offset::{encode_offset_table, QueueKey, ResetOffsetRequestHeader};
    let (mut c, pull) = started(config(), 2);
    let records: Vec<MessageRecord> = (10..13)
        .map(|o| record("TopicA", 0, o, "x", Some("tagA")))
        .collect();
    c.handle_response(T0 + 1, BROKER_A, found(&pull, &records, 13));
    let out = drain(&mut c);
    let delivered = consumes(&out);
    assert_eq!(delivered.len(), 3);
    let queue = MessageQueue::new("TopicA", "broker-a", 0);
    let reset = |group: &str, topic: &str, body: Vec<u8>| {
        let mut cmd = RemotingCommand::request(request::RESET_CONSUMER_CLIENT_OFFSET);
        ResetOffsetRequestHeader {
            topic: topic.into(),
            group: group.into(),
            timestamp_ms: T0 as i64,
            is_force: true,
            queue_id: None,
            offset: None,
        }
        .write_to(&mut cmd);
        cmd.body = body.into();
        cmd.mark_oneway();
        cmd
    };
    let key = |q: i32| QueueKey {
        broker_name: "broker-a".into(),
        queue_id: q,
        topic: "TopicA".into(),
    };
    let table = encode_offset_table(&[(key(0), 2)]);
    for ignored in [
        reset("OtherGroup", "TopicA", table.clone()),
        reset("G", "OtherTopic", table.clone()),
        reset("G", "TopicA", b"not json".to_vec()),
    ] {
        c.handle_request(T0 + 2, BROKER_A, through_wire(&ignored));
        assert!(drain(&mut c).is_empty());
    }
    c.handle_request(T0 + 3, BROKER_A, through_wire(&reset("G", "TopicA", table)));
    let out = drain(&mut c);
    let (_, update) = one(&out, request::UPDATE_CONSUMER_OFFSET);
    assert_eq!(
        (update.ext("queueId"), update.ext("commitOffset")),
        (Some("0"), Some("2"))
    );
    let (_, pull) = one(&out, request::PULL_MESSAGE);
    assert_eq!(
        (pull.ext("queueId"), pull.ext("queueOffset")),
        (Some("0"), Some("2"))
    );
    assert_eq!(c.committed_offset(&queue), Some(2));
    assert_eq!(c.cached_message_count(), 0);
    // Results of the dropped batch do not move the offset.
    for (token, _) in delivered {
        c.handle_consume_result(T0 + 4, token, ConsumeStatus::ConsumeSuccess);
    }
    assert_eq!(c.committed_offset(&queue), Some(2));
    // Queue 1 kept its own position.
    assert_eq!(
        c.committed_offset(&MessageQueue::new("TopicA", "broker-a", 1)),
        None
    );
    // The messages from 2 on are delivered again.
    let again: Vec<MessageRecord> = (2..4)
        .map(|o| record("TopicA", 0, o, "y", Some("tagA")))
        .collect();
    c.handle_response(T0 + 5, BROKER_A, found(&pull, &again, 4));
    assert_eq!(consumes(&drain(&mut c)).len(), 2);
}

/// Goal: the broker's "0" for a new group (its young-queue rule) wins over
/// CONSUME_FROM_LAST_OFFSET: the consumer pulls from 0 without asking for the max offset.
#[test]
fn broker_zero_for_a_new_group_starts_at_the_beginning() {
    let mut cfg = config();
    cfg.consume_from_where = ConsumeFromWhere::LastOffset;
    let mut c = PushConsumer::new(cfg, T0);
    c.subscribe(T0, "TopicA", "*").unwrap();
    c.start(T0);
    let out = drain(&mut c);
    for (_, r) in find(&out, request::GET_ROUTEINFO_BY_TOPIC) {
        let answer = if r.ext("topic") == Some("TopicA") {
            route_response(&r, &route(&[("broker-a", BROKER_A)], 1))
        } else {
            RemotingCommand::response_to(&r, response::TOPIC_NOT_EXIST, None)
        };
        c.handle_response(T0, NAMESRV, answer);
    }
    let (_, list) = one(&drain(&mut c), request::GET_CONSUMER_LIST_BY_GROUP);
    let answer = RemotingCommand::response_to(&list, 0, None)
        .with_body(format!(r#"{{"consumerIdList":["{}"]}}"#, c.client_id()).into_bytes());
    c.handle_response(T0, BROKER_A, answer);
    let (_, query) = one(&drain(&mut c), request::QUERY_CONSUMER_OFFSET);
    c.handle_response(T0, BROKER_A, offset_answer(&query, 0));
    let out = drain(&mut c);
    assert!(find(&out, request::GET_MAX_OFFSET).is_empty());
    let (_, pull) = one(&out, request::PULL_MESSAGE);
    assert_eq!(pull.ext("queueOffset"), Some("0"));
}

const BROKER_A_SLAVE: &str = "127.0.0.1:10921";

fn pull_with_suggestion(req: &RemotingCommand, next: i64, broker_id: u64) -> RemotingCommand {
    RemotingCommand::response_to(req, response::PULL_NOT_FOUND, None)
        .with_ext("nextBeginOffset", next)
        .with_ext("minOffset", 0)
        .with_ext("maxOffset", next)
        .with_ext("suggestWhichBrokerId", broker_id)
}

/// Goal: a consumer pulls from the group member the broker suggests (Java's
/// `pullFromWhichNodeTable`), sends no piggy-backed commit to a slave, and when its master
/// stops answering reads and commits on the slave at once, not after the NameServer's route
/// has dropped the master (up to 30 s later in Java).
#[test]
fn pulls_follow_the_suggested_broker_and_fall_back_to_a_slave_when_the_master_is_gone() {
    let mut config = config();
    config.client.poll_namesrv_interval_ms = 10_000;
    let (mut c, pull) = started(config, 1);
    // A route refresh brings broker-a's slave (the pull still in flight).
    let mut now = T0 + 10_000;
    c.handle_timeout(now);
    let out = drain(&mut c);
    let (_, ask) = find(&out, request::GET_ROUTEINFO_BY_TOPIC)
        .into_iter()
        .find(|(_, r)| r.ext("topic") == Some("TopicA"))
        .expect("a route refresh");
    let mut r = route(&[("broker-a", BROKER_A)], 1);
    r.broker_datas[0]
        .broker_addrs
        .insert(1, BROKER_A_SLAVE.to_owned());
    c.handle_response(now, NAMESRV, through_wire(&route_response(&ask, &r)));
    drain(&mut c);

    // The master suggests its slave: the next pull goes there, without a commit.
    c.handle_response(now, BROKER_A, pull_with_suggestion(&pull, 10, 1));
    let (addr, to_slave) = one(&drain(&mut c), request::PULL_MESSAGE);
    assert_eq!(addr, BROKER_A_SLAVE);
    let flags: i32 = to_slave.ext_num("sysFlag").unwrap();
    assert_eq!(flags & 1, 0, "no piggy-backed commit to a slave");
    // The slave suggests the master: back there, with the commit.
    c.handle_response(now, BROKER_A_SLAVE, pull_with_suggestion(&to_slave, 10, 0));
    let (addr, to_master) = one(&drain(&mut c), request::PULL_MESSAGE);
    assert_eq!(addr, BROKER_A);
    let flags: i32 = to_master.ext_num("sysFlag").unwrap();
    assert_eq!(flags & 1, 1, "the commit rides on a pull to the master");

    // The master dies with the pull in flight: the slave serves the next pull, the route is
    // asked for again at once, and offsets are committed on the slave.
    c.handle_connection_closed(now, BROKER_A);
    let out = drain(&mut c);
    assert!(
        find(&out, request::PULL_MESSAGE).is_empty(),
        "backs off first"
    );
    now += 1_000;
    c.handle_timeout(now);
    let out = drain(&mut c);
    assert!(
        find(&out, request::GET_ROUTEINFO_BY_TOPIC)
            .iter()
            .any(|(_, r)| r.ext("topic") == Some("TopicA")),
        "the route is refreshed at once: {out:?}"
    );
    let (addr, _) = one(&out, request::PULL_MESSAGE);
    assert_eq!(
        addr, BROKER_A_SLAVE,
        "read from the slave while the master is away"
    );
    now += 10_000;
    c.handle_timeout(now);
    let commits = find(&drain(&mut c), request::UPDATE_CONSUMER_OFFSET);
    assert!(!commits.is_empty());
    assert!(
        commits.iter().all(|(addr, _)| addr == BROKER_A_SLAVE),
        "commits go to the slave while the master is away: {commits:?}"
    );
}
