//! Broker behaviour driven through its public contract: requests in, outputs out, over
//! MemStorage with a hand-advanced clock.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::message::{keys, sys_flag, MessageRecord, Properties};
use crate::remoting::headers::{pull_sys_flag, PullMessageRequestHeader, SendMessageRequestHeader};
use crate::store::{MemStorage, QueueOffset};

const T0: u64 = 1_718_000_000_000;

#[path = "query_tests.rs"]
mod query_tests;
#[path = "send_back_tests.rs"]
mod send_back_tests;

/// Defaults with small CommitLog segments, so MemStorage stays small.
fn test_config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.store.commitlog_segment_bytes = 1 << 20;
    config.store.consume_queue_units_per_segment = 1_000;
    // Index files are allocated whole in MemStorage.
    config.store.index.hash_slot_count = 1_024;
    config.store.index.max_index_count = 4_096;
    config
}

/// Feeds requests to a broker and collects what it emits.
struct Harness {
    broker: Broker<MemStorage>,
    now_ms: u64,
    next_opaque: i32,
}

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 40_000 + u16::from(n)))
}

impl Harness {
    fn new(config: BrokerConfig) -> Self {
        Self::with_storage(config, MemStorage::default(), T0)
    }

    fn with_storage(config: BrokerConfig, storage: MemStorage, now_ms: u64) -> Self {
        let broker = Broker::new(config, storage, now_ms).expect("broker opens");
        let mut h = Self {
            broker,
            now_ms,
            next_opaque: 0,
        };
        for n in 1..=4 {
            h.broker
                .handle_connected(now_ms, ConnId(u64::from(n)), peer(n));
        }
        h
    }

    fn drain(&mut self) -> Vec<BrokerOutput> {
        std::iter::from_fn(|| self.broker.poll_output()).collect()
    }

    /// Sends one request and returns every output it caused.
    fn request(&mut self, conn: u64, mut cmd: RemotingCommand) -> Vec<BrokerOutput> {
        self.next_opaque += 1;
        cmd.opaque = self.next_opaque;
        self.broker.handle_request(self.now_ms, ConnId(conn), cmd);
        self.drain()
    }

    /// Sends one request that must be answered at once, and returns the answer.
    fn call(&mut self, conn: u64, cmd: RemotingCommand) -> RemotingCommand {
        let outputs = self.request(conn, cmd);
        let opaque = self.next_opaque;
        let mut answers: Vec<RemotingCommand> = responses_on(&outputs, conn)
            .into_iter()
            .filter(|c| c.opaque == opaque)
            .collect();
        assert_eq!(answers.len(), 1, "expected one answer, got {outputs:?}");
        answers.remove(0)
    }

    fn advance_to(&mut self, now_ms: u64) -> Vec<BrokerOutput> {
        self.now_ms = now_ms;
        self.broker.handle_timeout(now_ms);
        self.drain()
    }
}

/// Responses written on `conn`.
fn responses_on(outputs: &[BrokerOutput], conn: u64) -> Vec<RemotingCommand> {
    outputs
        .iter()
        .filter_map(|o| match o {
            BrokerOutput::Send { conn: c, command }
                if *c == ConnId(conn) && command.is_response() =>
            {
                Some(command.clone())
            }
            _ => None,
        })
        .collect()
}

/// Broker → client requests written on `conn`.
fn requests_on(outputs: &[BrokerOutput], conn: u64) -> Vec<RemotingCommand> {
    outputs
        .iter()
        .filter_map(|o| match o {
            BrokerOutput::Send { conn: c, command }
                if *c == ConnId(conn) && !command.is_response() =>
            {
                Some(command.clone())
            }
            _ => None,
        })
        .collect()
}

fn syncs(outputs: &[BrokerOutput]) -> Vec<SyncRequest> {
    outputs
        .iter()
        .filter_map(|o| match o {
            BrokerOutput::Sync(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Does what a driver does with `Sync` and `Checkpoint` outputs: makes the ranges durable and
/// reports back, until the broker asks for nothing more.
fn answer_syncs(h: &mut Harness, mut outputs: Vec<BrokerOutput>) {
    loop {
        let pending = syncs(&outputs);
        let checkpoints: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                BrokerOutput::Checkpoint(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        if pending.is_empty() && checkpoints.is_empty() {
            return;
        }
        for checkpoint in checkpoints {
            h.broker.write_checkpoint_inline(h.now_ms, &checkpoint);
        }
        for sync in pending {
            for range in &sync.ranges {
                h.broker
                    .store_mut()
                    .storage_mut()
                    .sync(&range.path, range.start, range.end)
                    .unwrap();
            }
            h.broker.handle_synced(h.now_ms, sync.up_to);
        }
        outputs = h.drain();
    }
}

/// Advances the clock to `now_ms`, answering syncs like a driver.
fn step(h: &mut Harness, now_ms: u64) {
    let outputs = h.advance_to(now_ms);
    answer_syncs(h, outputs);
}

/// Makes everything written so far durable (a send with WAIT under ASYNC_FLUSH is not yet).
fn sync_all(h: &mut Harness) {
    if let Some(sync) = h.broker.store().sync_request() {
        answer_syncs(h, vec![BrokerOutput::Sync(sync)]);
    }
}

/// The CommitLog file and position where `bytes` (a body) are first stored.
fn commitlog_position_of(h: &Harness, bytes: &[u8]) -> (String, u64) {
    let storage = h.broker.store().storage();
    storage
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("commitlog/"))
        .find_map(|p| {
            let data = storage.contents(&p)?;
            let at = data.windows(bytes.len()).position(|w| w == bytes)?;
            Some((p, at as u64))
        })
        .expect("the bytes are in the CommitLog")
}

/// The bodies stored in a queue, from offset 0.
fn bodies(h: &Harness, topic: &str, queue_id: i32) -> Vec<String> {
    let got = h
        .broker
        .store()
        .get(topic, queue_id, QueueOffset(0), 1_000, &|_| true)
        .unwrap();
    got.records
        .iter()
        .map(|b| {
            String::from_utf8_lossy(&MessageRecord::decode(b, true).unwrap().body).into_owned()
        })
        .collect()
}

/// A half message as a RocketMQ producer sends it (property and sysFlag bit).
fn half(topic: &str, queue_id: i32, body: &[u8], uniq: &str) -> RemotingCommand {
    let mut cmd = send_request(
        request::SEND_MESSAGE_V2,
        topic,
        queue_id,
        body,
        &props(&[
            ("TAGS", "t"),
            ("WAIT", "true"),
            (keys::TRAN_MSG, "true"),
            (keys::PGROUP, "PG"),
            (keys::UNIQ_KEY, uniq),
        ]),
    );
    cmd.ext_fields
        .insert("f".into(), sys_flag::TRANSACTION_PREPARED.to_string());
    cmd
}

fn namesrv_requests(outputs: &[BrokerOutput]) -> Vec<(String, i32)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            BrokerOutput::SendToNamesrv { addr, command } => Some((addr.clone(), command.code)),
            _ => None,
        })
        .collect()
}

fn props(pairs: &[(&str, &str)]) -> String {
    let mut p = Properties::new();
    for (k, v) in pairs {
        p.insert(k, *v);
    }
    p.encode()
}

fn send_request(
    code: i32,
    topic: &str,
    queue_id: i32,
    body: &[u8],
    properties: &str,
) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp_ms: (T0 - 5) as i64,
        flag: 0,
        properties: Some(properties.to_owned()),
        reconsume_times: Some(0),
        unit_mode: false,
        max_reconsume_times: None,
        batch: code == request::SEND_BATCH_MESSAGE,
        broker_name: None,
    };
    let mut cmd = RemotingCommand::request(code).with_body(Bytes::copy_from_slice(body));
    header.write_to(&mut cmd, code != request::SEND_MESSAGE);
    cmd
}

fn send_v2(topic: &str, queue_id: i32, body: &[u8], tag: &str) -> RemotingCommand {
    send_request(
        request::SEND_MESSAGE_V2,
        topic,
        queue_id,
        body,
        &props(&[("TAGS", tag), ("WAIT", "true")]),
    )
}

fn pull_request(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    sys_flag: i32,
    subscription: Option<&str>,
) -> RemotingCommand {
    let header = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag,
        commit_offset: 0,
        suspend_timeout_ms: 15_000,
        subscription: subscription.map(str::to_owned),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let mut cmd = RemotingCommand::request(request::PULL_MESSAGE);
    header.write_to(&mut cmd);
    cmd
}

fn heartbeat(client_id: &str, group: &str, topic: &str, sub: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [{"groupName": "CLIENT_INNER_PRODUCER"}],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [
                {"topic": topic, "subString": sub, "tagsSet": [], "codeSet": [], "subVersion": 0,
                 "expressionType": "TAG", "classFilterMode": false},
                {"topic": format!("%RETRY%{group}"), "subString": "*", "subVersion": 0}
            ],
            "unitMode": false,
            "someFutureKey": 1
        }],
        "heartbeatFingerprint": 0
    });
    RemotingCommand::request(request::HEART_BEAT).with_body(serde_json::to_vec(&body).unwrap())
}

/// Splits a pull body into its stored records.
fn decode_records(body: &Bytes) -> Vec<MessageRecord> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let size = i32::from_be_bytes(body[pos..pos + 4].try_into().unwrap()) as usize;
        let one = body.slice(pos..pos + size);
        out.push(MessageRecord::decode(&one, true).expect("record decodes"));
        pos += size;
    }
    out
}

fn code_of(cmd: &RemotingCommand) -> i32 {
    cmd.code
}

#[test]
fn send_then_pull_round_trip() {
    // Goal: what a producer sends is what a consumer pulls, with the broker's stamps.
    // Method: three V2 sends to a fresh topic, then one pull carrying its subscription.
    let mut h = Harness::new(test_config());
    let mut offsets = Vec::new();
    for i in 0..3u8 {
        let resp = h.call(1, send_v2("TopicA", 0, &[b'm', i], "tagA"));
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
        assert_eq!(resp.ext("queueId"), Some("0"));
        assert_eq!(resp.ext("MSG_REGION"), Some("DefaultRegion"));
        assert_eq!(resp.ext("TRACE_ON"), Some("true"));
        assert!(resp.ext("transactionId").is_some());
        assert_eq!(resp.ext("msgId").map(str::len), Some(32));
        offsets.push(resp.ext("queueOffset").unwrap().to_owned());
    }
    assert_eq!(offsets, ["0", "1", "2"]);

    let resp = h.call(
        2,
        pull_request("G1", "TopicA", 0, 0, pull_sys_flag::SUBSCRIPTION, Some("*")),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(resp.ext("nextBeginOffset"), Some("3"));
    assert_eq!(resp.ext("minOffset"), Some("0"));
    assert_eq!(resp.ext("maxOffset"), Some("3"));
    assert_eq!(resp.ext("suggestWhichBrokerId"), Some("0"));
    let records = decode_records(&resp.body);
    assert_eq!(records.len(), 3);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(&r.body[..], &[b'm', i as u8]);
        assert_eq!(r.topic, "TopicA");
        assert_eq!(r.queue_offset, i as i64);
        assert_eq!(r.born_host, peer(1));
        assert_eq!(r.store_host, "127.0.0.1:10911".parse().unwrap());
        assert_eq!(r.properties.get("TAGS"), Some("tagA"));
        assert_eq!(r.properties.get("CLUSTER"), Some("DefaultCluster"));
        assert!(r.properties.get("UNIQ_KEY").is_some());
        // The client's properties without WAIT (RocketMQ 4.9.8 drops it), plus CLUSTER,
        // UNIQ_KEY, the region and trace switch (see stamp_properties) and the record CRC.
        let mut names: Vec<&str> = r.properties.iter().map(|(k, _)| k).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "CLUSTER",
                "MSG_REGION",
                "TAGS",
                "TRACE_ON",
                "UNIQ_KEY",
                "__CRC32#"
            ]
        );
    }
    // Caught up: 19 without suspension.
    let resp = h.call(
        2,
        pull_request("G1", "TopicA", 0, 3, pull_sys_flag::SUBSCRIPTION, Some("*")),
    );
    assert_eq!(resp.code, response::PULL_NOT_FOUND);
    assert_eq!(resp.ext("nextBeginOffset"), Some("3"));
}

#[test]
fn pull_filters_by_tag_and_needs_a_subscription() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"a", "tagA"));
    h.call(1, send_v2("TopicA", 0, b"b", "tagB"));
    let resp = h.call(
        2,
        pull_request(
            "G1",
            "TopicA",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION,
            Some("tagB"),
        ),
    );
    assert_eq!(resp.code, response::SUCCESS);
    let records = decode_records(&resp.body);
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"b");

    // No subscription in the request and none from a heartbeat: 24.
    let resp = h.call(2, pull_request("G9", "TopicA", 0, 0, 0, None));
    assert_eq!(resp.code, response::SUBSCRIPTION_NOT_EXIST);
    // With a heartbeat the registered subscription is used.
    h.call(2, heartbeat("c1", "G9", "TopicA", "tagA || tagC"));
    let resp = h.call(2, pull_request("G9", "TopicA", 0, 0, 0, None));
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(decode_records(&resp.body).len(), 1);
}

#[test]
fn batch_send_stores_every_entry() {
    let mut h = Harness::new(test_config());
    let mut body = BytesMut::new();
    for i in 0..2u8 {
        let props = props(&[("UNIQ_KEY", &format!("U{i}")), ("TAGS", "t")]);
        let payload = [b'x', i];
        body.extend_from_slice(&((22 + payload.len() + props.len()) as i32).to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&7i32.to_be_bytes());
        body.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        body.extend_from_slice(&payload);
        body.extend_from_slice(&(props.len() as i16).to_be_bytes());
        body.extend_from_slice(props.as_bytes());
    }
    let resp = h.call(
        1,
        send_request(
            request::SEND_BATCH_MESSAGE,
            "TopicB",
            1,
            &body,
            &props(&[("WAIT", "true")]),
        ),
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(resp.ext("queueOffset"), Some("0"));
    assert_eq!(resp.ext("msgId").unwrap().split(',').count(), 2);
    let resp = h.call(
        2,
        pull_request("G", "TopicB", 1, 0, pull_sys_flag::SUBSCRIPTION, Some("*")),
    );
    let records = decode_records(&resp.body);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].properties.get("UNIQ_KEY"), Some("U1"));
    assert_eq!(records[1].flag, 7);
}

#[test]
fn unknown_topic_is_auto_created_and_registered() {
    // Goal: a send to an unknown topic creates it from TBW102 and tells the NameServers at once.
    let config = BrokerConfig {
        namesrv_addrs: vec!["ns1:9876".into(), "ns2:9876".into()],
        ..test_config()
    };
    let mut h = Harness::new(config);
    let first = h.advance_to(T0);
    assert_eq!(
        namesrv_requests(&first),
        [
            ("ns1:9876".to_owned(), request::REGISTER_BROKER),
            ("ns2:9876".to_owned(), request::REGISTER_BROKER)
        ]
    );
    assert!(h.broker.topics().contains_key("TBW102"));

    let outputs = h.request(1, send_v2("NewTopic", 0, b"x", "t"));
    assert_eq!(responses_on(&outputs, 1)[0].code, response::SUCCESS);
    assert_eq!(namesrv_requests(&outputs).len(), 2);
    let created = &h.broker.topics()["NewTopic"];
    assert_eq!(created.write_queue_nums, 4);
    assert_eq!(created.perm, crate::topic::perm::READ_WRITE);

    // Periodic registration.
    let later = h.advance_to(T0 + 30_000);
    assert_eq!(namesrv_requests(&later).len(), 2);
}

#[test]
fn unknown_topic_without_auto_creation_is_17() {
    let config = BrokerConfig {
        auto_create_topic_enable: false,
        ..test_config()
    };
    let mut h = Harness::new(config);
    let resp = h.call(1, send_v2("NewTopic", 0, b"x", "t"));
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST);
    // Retry topics are still created on demand.
    let resp = h.call(1, send_v2("%RETRY%G1", 0, b"x", "t"));
    assert_eq!(resp.code, response::SUCCESS);
}

#[test]
fn long_poll_is_woken_by_an_arrival() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"first", "t"));
    let held = h.request(
        2,
        pull_request(
            "G",
            "TopicA",
            0,
            1,
            pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
            Some("*"),
        ),
    );
    assert!(held.is_empty(), "{held:?}");
    let deadline = h.broker.poll_timeout().unwrap();
    assert!(deadline <= T0 + 15_000);

    let outputs = h.request(1, send_v2("TopicA", 0, b"second", "t"));
    let pulls = responses_on(&outputs, 2);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].code, response::SUCCESS);
    let records = decode_records(&pulls[0].body);
    assert_eq!(&records[0].body[..], b"second");
    assert_eq!(pulls[0].ext("nextBeginOffset"), Some("2"));
}

#[test]
fn long_poll_times_out_with_19() {
    let mut h = Harness::new(test_config());
    let held = h.request(
        2,
        pull_request(
            "G",
            "TopicA",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
            Some("*"),
        ),
    );
    // The topic does not exist yet: answered at once with 17.
    assert_eq!(responses_on(&held, 2)[0].code, response::TOPIC_NOT_EXIST);

    h.call(1, send_v2("TopicA", 1, b"other queue", "t"));
    let held = h.request(
        2,
        pull_request(
            "G",
            "TopicA",
            0,
            0,
            pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
            Some("*"),
        ),
    );
    assert!(held.is_empty());
    assert!(h.broker.poll_timeout().unwrap() <= T0 + 15_000);
    assert!(responses_on(&h.advance_to(T0 + 14_999), 2).is_empty());
    let outputs = h.advance_to(T0 + 15_000);
    let answers = responses_on(&outputs, 2);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].code, response::PULL_NOT_FOUND);
    assert_eq!(answers[0].ext("nextBeginOffset"), Some("0"));
}

#[test]
fn held_pulls_of_a_closed_connection_are_dropped() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"x", "t"));
    h.request(
        2,
        pull_request(
            "G",
            "TopicA",
            0,
            1,
            pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
            Some("*"),
        ),
    );
    h.broker.handle_disconnected(h.now_ms, ConnId(2));
    let outputs = h.request(1, send_v2("TopicA", 0, b"y", "t"));
    assert!(responses_on(&outputs, 2).is_empty());
}

#[test]
fn sync_flush_answers_after_durability_with_group_commit() {
    // Goal: SYNC_FLUSH sends are answered only once durable, with one sync in flight at a time.
    let config = BrokerConfig {
        flush_disk_type: FlushDiskType::SyncFlush,
        ..test_config()
    };
    let mut h = Harness::new(config);
    let mut all = Vec::new();
    for i in 0..3u8 {
        all.extend(h.request(1, send_v2("TopicA", 0, &[i], "t")));
    }
    assert!(responses_on(&all, 1).is_empty(), "{all:?}");
    let first_syncs = syncs(&all);
    assert_eq!(first_syncs.len(), 1);

    h.broker.handle_synced(h.now_ms, first_syncs[0].up_to);
    let after_first = h.drain();
    // The first send is durable; the two that arrived during the sync ride on one more.
    assert_eq!(responses_on(&after_first, 1).len(), 1);
    let second_syncs = syncs(&after_first);
    assert_eq!(second_syncs.len(), 1);
    h.broker.handle_synced(h.now_ms, second_syncs[0].up_to);
    let after_second = h.drain();
    assert_eq!(responses_on(&after_second, 1).len(), 2);
    assert!(syncs(&after_second).is_empty());

    // WAIT=false is answered at once.
    let resp = h.request(
        1,
        send_request(
            request::SEND_MESSAGE,
            "TopicA",
            0,
            b"q",
            &props(&[("WAIT", "false")]),
        ),
    );
    assert_eq!(responses_on(&resp, 1).len(), 1);
}

fn checkpoints(outputs: &[BrokerOutput]) -> Vec<crate::store::CheckpointRequest> {
    outputs
        .iter()
        .filter_map(|o| match o {
            BrokerOutput::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn async_flush_syncs_periodically() {
    // Goal: RocketMQ's ASYNC_FLUSH policy, bounded by the checkpoint period. A small write
    // waits for the checkpoint tick (1 s), which flushes the CommitLog tail as a Sync of its own;
    // as that Sync completes the checkpoint of the ConsumeQueue unit is taken, claiming the
    // flushed tail; nothing more happens once everything is durable.
    let mut h = Harness::new(test_config());
    let out = h.request(1, send_v2("TopicA", 0, b"x", "t"));
    assert_eq!(responses_on(&out, 1).len(), 1);
    assert!(syncs(&out).is_empty());
    // Below flushCommitLogLeastPages (4 pages): the 500 ms tick does not flush.
    assert!(syncs(&h.advance_to(T0 + 500)).is_empty());
    let out = h.advance_to(T0 + 1_000);
    let s = syncs(&out);
    assert_eq!(s.len(), 1);
    assert!(s[0].ranges.iter().all(|r| r.path.starts_with("commitlog/")));
    assert!(
        checkpoints(&out).is_empty(),
        "the checkpoint follows the flush"
    );
    h.broker.handle_synced(h.now_ms, s[0].up_to);
    let written = h.broker.store().written_offset();
    assert_eq!(h.broker.store().durable_offset(), written);
    let c = checkpoints(&h.drain());
    assert_eq!(c.len(), 1);
    assert!(c[0]
        .sync
        .ranges
        .iter()
        .all(|r| !r.path.starts_with("commitlog/")));
    assert!(c[0]
        .sync
        .ranges
        .iter()
        .any(|r| r.path == "consumequeue/TopicA/0/00000000000000000000"));
    assert_eq!(c[0].checkpoint.commitlog_durable_offset, written.0);
    h.broker.write_checkpoint_inline(h.now_ms, &c[0]);
    assert!(h.broker.store().storage().contents("checkpoint").is_some());
    assert!(!h.broker.store().background_checkpoint_due());
    let out = h.advance_to(T0 + 2_000);
    assert!(syncs(&out).is_empty() && checkpoints(&out).is_empty());
    assert_eq!(h.broker.poll_timeout(), None);
}

#[test]
fn a_checkpoint_in_flight_never_holds_up_a_group_commit() {
    // Goal: the checkpoint is a stream of its own. A group commit in flight when the period
    // comes is not joined by the checkpoint's syncs: the checkpoint is taken as it completes,
    // and while the checkpoint's ConsumeQueue and index syncs are in flight, SYNC_FLUSH sends
    // get their group commits and answers. A checkpoint claims only CommitLog bytes a Sync had
    // already made durable.
    let mut config = test_config();
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let mut h = Harness::new(config);
    let out = h.request(1, send_v2("TopicA", 0, b"first", "t"));
    let s = syncs(&out);
    assert_eq!(s.len(), 1);
    h.broker.handle_synced(h.now_ms, s[0].up_to);
    assert_eq!(responses_on(&h.drain(), 1).len(), 1);

    // A send whose group commit is in flight when the checkpoint period comes.
    let out = h.request(1, send_v2("TopicA", 0, b"second", "t"));
    let commit = syncs(&out);
    assert_eq!(commit.len(), 1);
    let out = h.advance_to(T0 + 1_000);
    assert!(checkpoints(&out).is_empty() && syncs(&out).is_empty());
    // The group commit completes: the send is answered, and the checkpoint taken.
    h.broker.handle_synced(h.now_ms, commit[0].up_to);
    let out = h.drain();
    assert_eq!(responses_on(&out, 1).len(), 1);
    let c = checkpoints(&out);
    assert_eq!(c.len(), 1);
    let durable = h.broker.store().durable_offset();
    assert_eq!(c[0].checkpoint.commitlog_durable_offset, durable.0);
    assert_eq!(c[0].sync.up_to, durable);
    assert!(c[0]
        .sync
        .ranges
        .iter()
        .all(|r| !r.path.starts_with("commitlog/")));

    // Sends while the checkpoint is in flight: each gets its commit and its answer.
    for body in [b"third".as_slice(), b"fourth"] {
        let out = h.request(1, send_v2("TopicA", 0, body, "t"));
        let s = syncs(&out);
        assert_eq!(s.len(), 1);
        assert!(s[0].ranges.iter().all(|r| r.path.starts_with("commitlog/")));
        h.broker.handle_synced(h.now_ms, s[0].up_to);
        assert_eq!(responses_on(&h.drain(), 1).len(), 1);
    }
    // No second checkpoint while one is in flight.
    assert!(checkpoints(&h.advance_to(T0 + 2_000)).is_empty());
    h.broker.write_checkpoint_inline(h.now_ms, &c[0]);
    assert_eq!(
        h.broker
            .store()
            .last_checkpoint()
            .unwrap()
            .commitlog_durable_offset,
        durable.0
    );
    // The next period catches up with everything durable.
    let c = checkpoints(&h.advance_to(T0 + 3_000));
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].checkpoint.commitlog_durable_offset,
        h.broker.store().written_offset().0
    );
}

#[test]
fn a_failed_checkpoint_sync_stops_counting_anything_durable_a_failed_file_write_does_not() {
    use crate::broker::CheckpointFailure;
    let mut config = test_config();
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let mut h = Harness::new(config);
    let out = h.request(1, send_v2("TopicA", 0, b"x", "t"));
    answer_syncs(&mut h, out);
    // The file write fails: the old checkpoint stays, the next period tries again.
    let c = checkpoints(&h.advance_to(T0 + 1_000));
    assert_eq!(c.len(), 1);
    h.broker.handle_checkpoint_failed(
        h.now_ms,
        CheckpointFailure::WriteFile("checkpoint: no space".into()),
    );
    let c = checkpoints(&h.advance_to(T0 + 2_000));
    assert_eq!(c.len(), 1);
    // A send waits for its group commit when the checkpoint's sync fails: it is answered
    // FLUSH_DISK_TIMEOUT, and later sends are refused.
    let out = h.request(1, send_v2("TopicA", 0, b"y", "t"));
    assert_eq!(syncs(&out).len(), 1);
    h.broker.handle_checkpoint_failed(
        h.now_ms,
        CheckpointFailure::Sync("consumequeue/TopicA/0/00000000000000000000: EIO".into()),
    );
    let answers = responses_on(&h.drain(), 1);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].code, response::FLUSH_DISK_TIMEOUT);
    let out = h.request(1, send_v2("TopicA", 0, b"z", "t"));
    let answers = responses_on(&out, 1);
    assert_eq!(answers[0].code, response::SERVICE_NOT_AVAILABLE);
    assert!(checkpoints(&h.advance_to(T0 + 5_000)).is_empty());
}

#[test]
fn async_flush_follows_least_pages_and_the_thorough_interval() {
    // Goal: a tick flushes once 4 pages are un-synced; below that only the thorough tick (10 s)
    // does. Method: checkpoints far apart so only the flush timer acts.
    let mut config = test_config();
    config.checkpoint_interval_ms = 1_000_000;
    let mut h = Harness::new(config);
    h.request(1, send_v2("TopicA", 0, b"small", "t"));
    for t in (500..10_000).step_by(500) {
        assert!(syncs(&h.advance_to(T0 + t)).is_empty(), "{t}");
    }
    let s = syncs(&h.advance_to(T0 + 10_000));
    assert_eq!(s.len(), 1);
    h.broker.handle_synced(h.now_ms, s[0].up_to);
    // 20 KiB (5 pages) un-synced: the next tick flushes.
    h.request(1, send_v2("TopicA", 0, &[7u8; 20 * 1024], "t"));
    assert_eq!(h.broker.poll_timeout(), Some(T0 + 10_500));
    assert_eq!(syncs(&h.advance_to(T0 + 10_500)).len(), 1);
}

#[test]
fn untimed_async_flush_syncs_on_the_put_reaching_least_pages() {
    let mut config = test_config();
    config.flush_commitlog_timed = false;
    let mut h = Harness::new(config);
    assert!(syncs(&h.request(1, send_v2("TopicA", 0, &[1u8; 8 * 1024], "t"))).is_empty());
    assert_eq!(
        syncs(&h.request(1, send_v2("TopicA", 0, &[1u8; 9 * 1024], "t"))).len(),
        1
    );
}

#[test]
fn consumer_offsets_persist_and_reload() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"x", "t"));
    let mut update = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", "G1")
        .with_ext("topic", "TopicA")
        .with_ext("queueId", 0)
        .with_ext("commitOffset", 1);
    update.mark_oneway();
    assert!(h.request(1, update).is_empty());
    h.advance_to(T0 + 5_000);
    let storage = h.broker.store().storage().clone();
    let saved = storage
        .read_all("config/consumerOffsets.json")
        .unwrap()
        .expect("offsets written");
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["offsetTable"]["TopicA@G1"]["0"], 1);

    let mut h2 = Harness::with_storage(test_config(), storage, T0 + 6_000);
    let query = |queue: i32| {
        RemotingCommand::request(request::QUERY_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "G1")
            .with_ext("topic", "TopicA")
            .with_ext("queueId", queue)
    };
    let resp = h2.call(1, query(0));
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(resp.ext("offset"), Some("1"));
    assert!(h2.broker.topics().contains_key("TopicA"));
    // Nothing committed on queue 1, which is empty: 22.
    assert_eq!(h2.call(1, query(1)).code, response::QUERY_NOT_FOUND);
    // Nothing committed on a queue whose message 0 exists: the "start at 0" quirk.
    let resp = h2.call(
        1,
        RemotingCommand::request(request::QUERY_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "G2")
            .with_ext("topic", "TopicA")
            .with_ext("queueId", 0),
    );
    assert_eq!(
        (resp.code, resp.ext("offset")),
        (response::SUCCESS, Some("0"))
    );
}

#[test]
fn offset_queries() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"x", "t"));
    h.call(1, send_v2("TopicA", 0, b"y", "t"));
    let q = |code| {
        RemotingCommand::request(code)
            .with_ext("topic", "TopicA")
            .with_ext("queueId", 0)
    };
    assert_eq!(
        h.call(1, q(request::GET_MAX_OFFSET)).ext("offset"),
        Some("2")
    );
    assert_eq!(
        h.call(1, q(request::GET_MIN_OFFSET)).ext("offset"),
        Some("0")
    );
    assert_eq!(
        h.call(1, q(request::GET_EARLIEST_MSG_STORETIME))
            .ext("timestamp"),
        Some(T0.to_string().as_str())
    );
    let resp = h.call(
        1,
        q(request::SEARCH_OFFSET_BY_TIMESTAMP).with_ext("timestamp", T0 - 1),
    );
    assert_eq!(resp.ext("offset"), Some("0"));
}

#[test]
fn a_group_with_notify_consumer_ids_changed_off_is_never_notified() {
    let mut h = Harness::new(test_config());
    h.advance_to(T0);
    let group = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(
        serde_json::json!({"groupName":"G1","notifyConsumerIdsChangedEnable":false})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(h.call(9, group).code, response::SUCCESS);
    let out = h.request(1, heartbeat("10.0.0.1@b", "G1", "TopicA", "*"));
    assert!(requests_on(&out, 1).is_empty());
    let out = h.request(2, heartbeat("10.0.0.2@a", "G1", "TopicA", "*"));
    assert!(requests_on(&out, 1).is_empty() && requests_on(&out, 2).is_empty());
}

#[test]
fn heartbeat_registers_and_notifies_every_member() {
    let mut h = Harness::new(BrokerConfig {
        namesrv_addrs: vec!["ns:9876".into()],
        ..test_config()
    });
    h.advance_to(T0);
    let out = h.request(1, heartbeat("10.0.0.1@b", "G1", "TopicA", "*"));
    assert_eq!(responses_on(&out, 1)[0].code, response::SUCCESS);
    assert!(h.broker.topics().contains_key("%RETRY%G1"));
    assert_eq!(
        namesrv_requests(&out).len(),
        1,
        "retry topic registered at once"
    );
    // The first member is told too: its rebalance runs at once rather than in 20 s.
    let notes = requests_on(&out, 1);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].code, request::NOTIFY_CONSUMER_IDS_CHANGED);
    // A repeated heartbeat changes nothing.
    let out = h.request(1, heartbeat("10.0.0.1@b", "G1", "TopicA", "*"));
    assert!(requests_on(&out, 1).is_empty());
    assert!(namesrv_requests(&out).is_empty());

    // A new member: every member is notified, the new one included (RocketMQ's
    // registerConsumer notifies all channels of the group).
    let out = h.request(2, heartbeat("10.0.0.2@a", "G1", "TopicA", "*"));
    for conn in [1, 2] {
        let notes = requests_on(&out, conn);
        assert_eq!(notes.len(), 1, "connection {conn}");
        assert_eq!(notes[0].code, request::NOTIFY_CONSUMER_IDS_CHANGED);
        assert!(notes[0].is_oneway());
        assert_eq!(notes[0].ext("consumerGroup"), Some("G1"));
    }

    let list = h.call(
        3,
        RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP)
            .with_ext("consumerGroup", "G1"),
    );
    let body: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(
        body["consumerIdList"],
        serde_json::json!(["10.0.0.1@b", "10.0.0.2@a"])
    );

    // Disconnect: the remaining member is told.
    h.broker.handle_disconnected(h.now_ms, ConnId(1));
    let out = h.drain();
    assert_eq!(requests_on(&out, 2).len(), 1);

    // Expiry after 120 s without heartbeat.
    let out = h.advance_to(T0 + 130_000);
    assert!(requests_on(&out, 2).is_empty());
    let list = h.call(
        3,
        RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP)
            .with_ext("consumerGroup", "G1"),
    );
    assert_eq!(list.code, response::SYSTEM_ERROR);
}

#[test]
fn queue_locks_conflict_and_expire() {
    let mut h = Harness::new(test_config());
    let lock = |client: &str, queues: &[i32]| {
        let mq: Vec<_> = queues
            .iter()
            .map(|q| serde_json::json!({"topic": "TopicA", "brokerName": "broker-a", "queueId": q}))
            .collect();
        let body = serde_json::json!({"clientId": client, "consumerGroup": "G", "mqSet": mq, "onlyThisBroker": false});
        RemotingCommand::request(request::LOCK_BATCH_MQ)
            .with_body(serde_json::to_vec(&body).unwrap())
    };
    let locked = |resp: &RemotingCommand| -> Vec<i64> {
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        v["lockOKMQSet"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["queueId"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(locked(&h.call(1, lock("A", &[0, 1]))), [0, 1]);
    assert_eq!(locked(&h.call(2, lock("B", &[1, 2]))), [2]);
    // A refreshes its lock: still its own.
    assert_eq!(locked(&h.call(1, lock("A", &[1]))), [1]);
    // After 60 s without refresh another client takes it.
    h.advance_to(T0 + 60_001);
    assert_eq!(locked(&h.call(2, lock("B", &[1]))), [1]);
    // Unlock frees it for A.
    let mut unlock = lock("B", &[1]);
    unlock.code = request::UNLOCK_BATCH_MQ;
    assert_eq!(h.call(2, unlock).code, response::SUCCESS);
    assert_eq!(locked(&h.call(1, lock("A", &[1]))), [1]);
}

/// Goal: while a group holds a live queue lock (an orderly group), a send to its retry topic
/// goes straight to `%DLQ%<group>`, as Java's handleRetryAndDLQ does; once the locks lapse,
/// retry sends stay in the retry topic again.
#[test]
fn retry_sends_of_a_group_holding_locks_go_to_the_dlq() {
    let mut h = Harness::new(test_config());
    h.request(1, heartbeat("A", "G", "TopicA", "*"));
    let retry = || {
        send_request(
            request::SEND_MESSAGE_V2,
            "%RETRY%G",
            0,
            b"r",
            &props(&[("RETRY_TOPIC", "TopicA"), ("RECONSUME_TIME", "1")]),
        )
    };
    assert_eq!(h.call(1, retry()).code, response::SUCCESS);
    assert_eq!(h.broker.store().max_offset("%RETRY%G", 0).0, 1);
    let body = serde_json::json!({"clientId": "A", "consumerGroup": "G", "mqSet": [
        {"topic": "TopicA", "brokerName": "broker-a", "queueId": 0}], "onlyThisBroker": false});
    let lock = RemotingCommand::request(request::LOCK_BATCH_MQ)
        .with_body(serde_json::to_vec(&body).unwrap());
    assert_eq!(h.call(1, lock).code, response::SUCCESS);
    assert_eq!(h.call(1, retry()).code, response::SUCCESS);
    assert_eq!(h.broker.store().max_offset("%RETRY%G", 0).0, 1);
    assert_eq!(h.broker.store().max_offset("%DLQ%G", 0).0, 1);
    // The lock lapses after 60 s: retries stay retries.
    h.advance_to(T0 + 60_001);
    h.request(1, heartbeat("A", "G", "TopicA", "*"));
    assert_eq!(h.call(1, retry()).code, response::SUCCESS);
    assert_eq!(h.broker.store().max_offset("%RETRY%G", 0).0, 2);
    assert_eq!(h.broker.store().max_offset("%DLQ%G", 0).0, 1);
}

#[test]
fn unknown_code_is_3() {
    let mut h = Harness::new(test_config());
    let resp = h.call(1, RemotingCommand::request(9999));
    assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 9999 not supported")
    );
    assert!(resp.is_response());
}

#[test]
fn oneway_requests_get_no_response() {
    let mut h = Harness::new(test_config());
    let mut cmd = RemotingCommand::request(9999);
    cmd.mark_oneway();
    assert!(h.request(1, cmd).is_empty());
    let mut send = send_v2("TopicA", 0, b"x", "t");
    send.mark_oneway();
    assert!(responses_on(&h.request(1, send), 1).is_empty());
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, 1);
}

#[test]
fn malformed_headers_are_system_errors() {
    let mut h = Harness::new(test_config());
    let mut send = send_v2("TopicA", 0, b"x", "t");
    send.ext_fields.remove("b");
    let resp = h.call(1, send);
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("b"));
    let pull = pull_request("G", "TopicA", 0, 0, 4, Some("*")).with_ext("queueId", "zero");
    let resp = h.call(1, pull);
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("queueId"));
    let resp = h.call(
        1,
        RemotingCommand::request(request::HEART_BEAT).with_body("{not json"),
    );
    assert_eq!(code_of(&resp), response::SYSTEM_ERROR);
}

#[test]
fn oversized_body_is_13() {
    let mut config = test_config();
    config.store.max_message_size_bytes = 16;
    let mut h = Harness::new(config);
    let resp = h.call(1, send_v2("TopicA", 0, &[0; 17], "t"));
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL);
    assert!(resp.remark.unwrap().contains("17"));
    let resp = h.call(1, send_v2("Bad Topic", 0, b"x", "t"));
    assert_eq!(resp.code, response::INVALID_PARAMETER);
    let resp = h.call(1, send_v2("TopicA", 99, b"x", "t"));
    assert_eq!(resp.code, response::INVALID_PARAMETER);
}

#[test]
fn shutdown_unregisters_and_answers_held_pulls() {
    let mut h = Harness::new(BrokerConfig {
        namesrv_addrs: vec!["ns:9876".into()],
        ..test_config()
    });
    h.call(1, send_v2("TopicA", 0, b"x", "t"));
    h.request(
        2,
        pull_request(
            "G",
            "TopicA",
            0,
            1,
            pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
            Some("*"),
        ),
    );
    h.broker.shutdown(h.now_ms);
    let out = h.drain();
    assert_eq!(responses_on(&out, 2)[0].code, response::PULL_NOT_FOUND);
    assert_eq!(
        namesrv_requests(&out),
        [("ns:9876".to_owned(), request::UNREGISTER_BROKER)]
    );
}

#[test]
fn create_topic_and_list_topics() {
    let mut h = Harness::new(test_config());
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "Admin1")
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", 2)
        .with_ext("writeQueueNums", 2)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("order", "false");
    assert_eq!(h.call(1, create).code, response::SUCCESS);
    let all = h.call(1, RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG));
    let v: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(v["topicConfigTable"]["Admin1"]["readQueueNums"], 2);
    let saved = h
        .broker
        .store()
        .storage()
        .read_all("config/topics.json")
        .unwrap();
    assert!(saved.is_some());
}

#[test]
fn pull_commits_the_piggy_backed_offset_once() {
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"x", "t"));
    let mut pull = pull_request(
        "G1",
        "TopicA",
        0,
        1,
        pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND | pull_sys_flag::COMMIT_OFFSET,
        Some("*"),
    )
    .with_ext("commitOffset", 1);
    assert!(h.request(2, pull.clone()).is_empty());
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(1));
    // A wake-up re-runs the pull without committing again.
    h.call(
        1,
        RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
            .with_ext("consumerGroup", "G1")
            .with_ext("topic", "TopicA")
            .with_ext("queueId", 0)
            .with_ext("commitOffset", 0),
    );
    let out = h.request(1, send_v2("TopicA", 0, b"y", "t"));
    assert_eq!(responses_on(&out, 2)[0].code, response::SUCCESS);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(0));
    // Without the commit bit nothing is stored.
    pull.ext_fields
        .insert("sysFlag".into(), pull_sys_flag::SUBSCRIPTION.to_string());
    pull.ext_fields.insert("consumerGroup".into(), "G2".into());
    h.call(2, pull);
    assert_eq!(h.broker.consumer_offset("TopicA", "G2", 0), None);
}

#[test]
fn poll_timeout_covers_pending_work_only() {
    let mut h = Harness::new(test_config());
    // Nothing to do: no NameServers, no data, no clients.
    assert_eq!(h.broker.poll_timeout(), None);
    h.call(1, send_v2("TopicA", 0, b"x", "t"));
    // Too little for a flush tick; the checkpoint period covers it.
    assert_eq!(h.broker.poll_timeout(), Some(T0 + 1_000));
}

#[test]
fn a_pull_is_held_no_longer_than_the_configured_maximum() {
    let mut config = test_config();
    config.long_polling_max_hold_ms = 20_000;
    let mut h = Harness::new(config);
    h.call(1, send_v2("TopicA", 1, b"other queue", "t"));
    let mut pull = pull_request(
        "G",
        "TopicA",
        0,
        0,
        pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
        Some("*"),
    );
    pull.ext_fields
        .insert("suspendTimeoutMillis".into(), i64::MAX.to_string());
    assert!(h.request(2, pull).is_empty());
    assert!(responses_on(&h.advance_to(T0 + 19_999), 2).is_empty());
    let answers = responses_on(&h.advance_to(T0 + 20_000), 2);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].code, response::PULL_NOT_FOUND);
}

#[test]
fn heartbeats_of_groups_with_illegal_names_create_nothing() {
    let mut h = Harness::new(test_config());
    let topics_before = h.broker.topics().len();
    let answer = h.call(1, heartbeat("c1", "bad/group name", "TopicA", "*"));
    assert_eq!(answer.code, response::SUCCESS);
    assert_eq!(h.broker.topics().len(), topics_before);
}

#[test]
fn a_failed_sync_is_reported_and_never_counted_as_durable() {
    let config = BrokerConfig {
        flush_disk_type: FlushDiskType::SyncFlush,
        ..test_config()
    };
    let mut h = Harness::new(config);
    let out = h.request(1, send_v2("TopicA", 0, b"a", "t"));
    let sync = syncs(&out).remove(0);
    h.broker.handle_sync_failed(h.now_ms, "EIO");
    let answers = responses_on(&h.drain(), 1);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].code, response::FLUSH_DISK_TIMEOUT);
    // A late success for the same range does not make it durable.
    h.broker.handle_synced(h.now_ms, sync.up_to);
    assert!(h.broker.store().durable_offset() < sync.up_to);
    // New sends are refused with SERVICE_NOT_AVAILABLE rather than acknowledged.
    assert_eq!(
        h.call(1, send_v2("TopicA", 0, b"b", "t")).code,
        response::SERVICE_NOT_AVAILABLE
    );
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, 1);
}

mod acl;
mod admin;
mod bodies;
mod fence;
mod grpc;
mod grpc_receive;
mod grpc_send;
mod listener;
mod metrics;
mod pop;
mod replication;
mod reply;
mod retention;
mod schedule;
mod timer;
mod transaction;

/// A heartbeat like [`heartbeat`] whose subscription to `topic` has version `sub_version`.
fn heartbeat_with_version(
    client_id: &str,
    group: &str,
    topic: &str,
    sub_version: i64,
) -> RemotingCommand {
    let mut cmd = heartbeat(client_id, group, topic, "*");
    let mut body: serde_json::Value = serde_json::from_slice(&cmd.body).unwrap();
    body["consumerDataSet"][0]["subscriptionDataSet"][0]["subVersion"] = sub_version.into();
    cmd.body = Bytes::from(serde_json::to_vec(&body).unwrap());
    cmd
}

#[test]
fn an_older_subscription_version_never_replaces_a_newer_one() {
    // Goal: two members of a group whose heartbeats interleave: the one that subscribed later
    // (newer subVersion) must keep pulling; RocketMQ keeps the newest version of a topic's
    // subscription, so the older member's heartbeat must not push it back.
    let mut h = Harness::new(test_config());
    h.advance_to(T0);
    let sent = h.call(9, send_v2("TopicA", 0, b"m", "t"));
    assert_eq!(sent.code, response::SUCCESS);
    h.request(
        1,
        heartbeat_with_version("10.0.0.1@new", "G1", "TopicA", 200),
    );
    h.request(
        2,
        heartbeat_with_version("10.0.0.2@old", "G1", "TopicA", 100),
    );
    let mut pull = pull_request("G1", "TopicA", 0, 0, pull_sys_flag::SUSPEND, None);
    pull.ext_fields.insert("subVersion".into(), "200".into());
    let out = h.request(1, pull);
    let answers = responses_on(&out, 1);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].code,
        response::SUCCESS,
        "{:?}",
        answers[0].remark
    );
    // A newer version still replaces it.
    h.request(
        2,
        heartbeat_with_version("10.0.0.2@old", "G1", "TopicA", 300),
    );
    let mut pull = pull_request("G1", "TopicA", 0, 0, pull_sys_flag::SUSPEND, None);
    pull.ext_fields.insert("subVersion".into(), "300".into());
    let answers = responses_on(&h.request(2, pull), 2);
    assert_eq!(
        answers[0].code,
        response::SUCCESS,
        "{:?}",
        answers[0].remark
    );
}
mod filter;

mod offsets;

#[test]
fn a_pull_serves_no_record_whose_body_reads_back_damaged() {
    // Goal: a record whose body comes back from the medium flipped is never served; the records
    // before it are, and the consumer is told to pull the bad one's offset again (not past it).
    // Method: three sends; reads of one byte of the second body come back flipped; pull from 0,
    // then from 1; heal the read path and pull from 1 again.
    let mut h = Harness::new(test_config());
    for body in [&b"first-body"[..], b"second-body", b"third-body"] {
        let resp = h.call(1, send_v2("TopicA", 0, body, "tagA"));
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    }
    let (path, body_pos) = commitlog_position_of(&h, b"second-body");
    let pos = body_pos + 3;
    h.broker
        .store_mut()
        .storage_mut()
        .flip_on_read(&path, pos, 0x10);

    let pull = |h: &mut Harness, offset| {
        h.call(
            2,
            pull_request(
                "G1",
                "TopicA",
                0,
                offset,
                pull_sys_flag::SUBSCRIPTION,
                Some("*"),
            ),
        )
    };
    let resp = pull(&mut h, 0);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(resp.ext("nextBeginOffset"), Some("1"));
    let records = decode_records(&resp.body);
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"first-body");

    let resp = pull(&mut h, 1);
    assert_eq!(resp.code, response::PULL_NOT_FOUND, "{resp:?}");
    assert_eq!(resp.ext("nextBeginOffset"), Some("1"));
    assert!(resp.body.is_empty());
    let remark = resp.remark.clone().unwrap_or_default();
    assert!(remark.contains("RECORD_CHECK_FAILED"), "{remark}");

    // The stored bytes were intact all along: once reads are right again, both are served.
    h.broker
        .store_mut()
        .storage_mut()
        .flip_on_read(&path, pos, 0);
    let resp = pull(&mut h, 1);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(resp.ext("nextBeginOffset"), Some("3"));
    let bodies: Vec<_> = decode_records(&resp.body)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, [&b"second-body"[..], b"third-body"]);
}

/// Goal: a topic auto-created while its config could not be written is not lost: the write is
/// retried once the disk works again, and a broker that stopped before that gives the topic a
/// config again from the queues its store holds, so its messages are routed and consumed.
#[test]
fn a_topic_created_while_config_writes_fail_survives() {
    use crate::store::segment::FaultOp;
    use crate::store::StorageError;

    let topics_in = |storage: &MemStorage| -> Vec<String> {
        let raw = storage
            .read_all(topics::TOPICS_PATH)
            .unwrap()
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        json["topicConfigTable"]
            .as_object()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut h = Harness::new(test_config());
    h.broker
        .store_mut()
        .storage_mut()
        .set_fault(FaultOp::Replace, Some(StorageError::Io("EIO".into())));
    let resp = h.call(1, send_v2("Created", 2, b"kept", "t"));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert!(!topics_in(h.broker.store().storage()).contains(&"Created".to_owned()));

    // The broker stops before the disk recovers: the next start restores the topic.
    let mut restarted = h.broker.store().storage().clone();
    restarted.set_fault(FaultOp::Replace, None);
    let h2 = Harness::with_storage(test_config(), restarted, T0 + 1_000);
    let config = h2.broker.topics.topics.get("Created").expect("restored");
    assert!(config.write_queue_nums >= 3, "{config:?}");
    assert!(topics_in(h2.broker.store().storage()).contains(&"Created".to_owned()));

    // The broker keeps running: the periodic persist writes it once the disk works.
    h.broker
        .store_mut()
        .storage_mut()
        .set_fault(FaultOp::Replace, None);
    h.advance_to(T0 + OFFSET_PERSIST_INTERVAL_MS + 1);
    assert!(topics_in(h.broker.store().storage()).contains(&"Created".to_owned()));
}
