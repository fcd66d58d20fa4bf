//! The Broker state machine fed arbitrary request sequences through a direct harness (a Broker
//! over `MemStorage`): connects, disconnects, well-formed sends, batches, pulls, offset commits,
//! heartbeats and locks, POPs with acks, batch acks and changes of invisible time on the
//! handles they returned, requests with fuzzed codes, ext fields and bodies, timeouts with an
//! advancing clock, syncs (succeeding or failing) and crash-restarts over the same storage.
//!
//! Asserted after every step: nothing panics; every request that is not oneway gets at most one
//! response; every record a pull returns decodes with a valid body CRC and belongs to the queue
//! pulled; every record a POP returns decodes, carries the topic asked for and is listed in the
//! answer's offset lists; the store serves dense queues with `min <= max`; offsets committed by well-behaved
//! consumers never exceed the queue's max offset.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vostok_core::broker::{Broker, BrokerOutput, CheckpointFailure};
use vostok_core::message::{encode_batch, peek_header, BatchEntry, MessageRecord, Properties};
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::headers::{PullMessageRequestHeader, SendMessageRequestHeader};
use vostok_core::remoting::pop::{
    parse_msg_offset_info, parse_start_offset_info, AckMessageRequestHeader, BatchAck,
    BatchAckMessageRequestBody, ExtraInfo, PopMessageRequestHeader, PopMessageResponseHeader,
    RetryFlag, POP_CK_PROPERTY,
};
use vostok_core::remoting::RemotingCommand;
use vostok_core::store::{CheckpointRequest, MemStorage, SegmentStorage, SyncRequest};
use vostok_core::ConnId;
use vostok_fuzz::{check_store, request_with, small_broker_config, FuzzExt};

/// The group of the well-behaved consumer; fuzzed requests are kept off it so its committed
/// offsets are only ever what a real consumer would commit.
const GOOD_GROUP: &str = "well-behaved-group";
/// The group the POP operations consume as.
const POP_GROUP: &str = "pop-group";

const TOPICS: [&str; 4] = ["TopicA", "TopicB", "%RETRY%cg", "TBW102"];

const CODES: [i32; 27] = [
    request::SEND_MESSAGE,
    request::SEND_MESSAGE_V2,
    request::SEND_BATCH_MESSAGE,
    request::PULL_MESSAGE,
    request::LITE_PULL_MESSAGE,
    request::QUERY_CONSUMER_OFFSET,
    request::UPDATE_CONSUMER_OFFSET,
    request::GET_MAX_OFFSET,
    request::GET_MIN_OFFSET,
    request::SEARCH_OFFSET_BY_TIMESTAMP,
    request::GET_EARLIEST_MSG_STORETIME,
    request::HEART_BEAT,
    request::UNREGISTER_CLIENT,
    request::GET_CONSUMER_LIST_BY_GROUP,
    request::CHECK_CLIENT_CONFIG,
    request::LOCK_BATCH_MQ,
    request::UNLOCK_BATCH_MQ,
    request::UPDATE_AND_CREATE_TOPIC,
    request::GET_ALL_TOPIC_CONFIG,
    request::VIEW_MESSAGE_BY_ID,
    request::POP_MESSAGE,
    request::ACK_MESSAGE,
    request::BATCH_ACK_MESSAGE,
    request::PEEK_MESSAGE,
    request::CHANGE_MESSAGE_INVISIBLETIME,
    request::NOTIFICATION,
    request::POLLING_INFO,
];

#[derive(Debug, Arbitrary)]
enum Op {
    Connect {
        conn: u8,
    },
    Disconnect {
        conn: u8,
    },
    Send {
        conn: u8,
        v2: bool,
        topic: u8,
        queue_id: i8,
        body: Vec<u8>,
        tags: Option<u8>,
        wait: bool,
        oneway: bool,
    },
    Batch {
        conn: u8,
        topic: u8,
        queue_id: i8,
        bodies: Vec<(Vec<u8>, Option<u8>)>,
    },
    Pull {
        conn: u8,
        topic: u8,
        queue_id: u8,
        offset: PullOffset,
        max_nums: u8,
        suspend_ms: u16,
        commit: bool,
        tag_filter: Option<u8>,
    },
    Commit {
        conn: u8,
        topic: u8,
        queue_id: u8,
    },
    Heartbeat {
        conn: u8,
        client: u8,
        group: u8,
        topic: u8,
    },
    Lock {
        conn: u8,
        client: u8,
        unlock: bool,
        queues: Vec<(u8, u8)>,
    },
    Raw {
        conn: u8,
        code: RawCode,
        ext: FuzzExt,
        body: Vec<u8>,
        oneway: bool,
    },
    Advance {
        ms: u16,
        far: bool,
    },
    Synced,
    SyncFailed,
    CheckpointWritten,
    CheckpointFailed {
        sync: bool,
    },
    Restart,
    Pop {
        conn: u8,
        topic: u8,
        queue_id: i8,
        max_nums: u8,
        invisible_ms: u16,
        poll_ms: u16,
        order: bool,
    },
    AckPopped {
        conn: u8,
        which: u8,
        how: AckHow,
    },
}

#[derive(Debug, Arbitrary)]
enum AckHow {
    Ack,
    Batch,
    Change(u16),
}

/// A message a POP returned, with what an ack of it names.
#[derive(Clone, Debug)]
struct PoppedHandle {
    topic: String,
    real_topic: String,
    queue_id: i32,
    offset: i64,
    handle: ExtraInfo,
}

#[derive(Debug, Arbitrary)]
enum PullOffset {
    Next,
    Max,
    Min,
    Any(i64),
}

#[derive(Debug, Arbitrary)]
enum RawCode {
    Known(u8),
    Any(i32),
}

struct Harness {
    broker: Broker<MemStorage>,
    now_ms: u64,
    open: BTreeSet<u64>,
    /// Requests awaiting their response: opaque → (connection, pulled topic and queue if a pull).
    pending: BTreeMap<i32, (u64, Option<(String, i32)>)>,
    next_opaque: i32,
    /// The well-behaved consumer's position per (topic, queue): the next offset to pull.
    positions: BTreeMap<(String, i32), u64>,
    sync: Option<SyncRequest>,
    checkpoint: Option<CheckpointRequest>,
    /// POPs awaiting their answer: opaque → topic asked for.
    pops: BTreeMap<i32, String>,
    /// What POPs returned, newest last (at most 64 kept).
    popped: Vec<PoppedHandle>,
}

fn topic(index: u8) -> &'static str {
    TOPICS[usize::from(index) % TOPICS.len()]
}

fn tag(index: u8) -> &'static str {
    ["TagA", "TagB", "TagC"][usize::from(index) % 3]
}

impl Harness {
    fn new() -> Self {
        let broker = Broker::new(small_broker_config(), MemStorage::new(), 1_000)
            .expect("a broker opens over empty storage");
        Self {
            broker,
            now_ms: 1_000,
            open: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_opaque: 1,
            positions: BTreeMap::new(),
            sync: None,
            checkpoint: None,
            pops: BTreeMap::new(),
            popped: Vec::new(),
        }
    }

    fn conn(&mut self, conn: u8) -> ConnId {
        let id = u64::from(conn % 4);
        if self.open.insert(id) {
            let peer = format!("127.0.0.1:{}", 40_000 + id)
                .parse()
                .expect("address");
            self.broker.handle_connected(self.now_ms, ConnId(id), peer);
        }
        ConnId(id)
    }

    fn submit(&mut self, conn: ConnId, mut cmd: RemotingCommand, pull: Option<(String, i32)>) {
        cmd.opaque = self.next_opaque;
        self.next_opaque += 1;
        if !cmd.is_oneway() {
            self.pending.insert(cmd.opaque, (conn.0, pull));
        }
        self.broker.handle_request(self.now_ms, conn, cmd);
    }

    fn send_header(topic: &str, queue_id: i32, props: &Properties) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: "pg".to_owned(),
            topic: topic.to_owned(),
            default_topic: "TBW102".to_owned(),
            default_topic_queue_nums: 4,
            queue_id,
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            flag: 0,
            properties: Some(props.encode()),
            reconsume_times: None,
            unit_mode: false,
            max_reconsume_times: None,
            batch: false,
            broker_name: Some("broker-a".to_owned()),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Connect { conn } => {
                self.conn(conn);
            }
            Op::Disconnect { conn } => {
                let id = u64::from(conn % 4);
                if self.open.remove(&id) {
                    self.broker.handle_disconnected(self.now_ms, ConnId(id));
                    self.pending.retain(|_, (c, _)| *c != id);
                }
            }
            Op::Send {
                conn,
                v2,
                topic: t,
                queue_id,
                body,
                tags,
                wait,
                oneway,
            } => {
                let conn = self.conn(conn);
                let mut props = Properties::new();
                if let Some(tg) = tags {
                    props.insert("TAGS", tag(tg));
                }
                props.insert("WAIT", wait.to_string());
                props.insert("UNIQ_KEY", format!("UK{}", self.next_opaque));
                let header = Self::send_header(topic(t), i32::from(queue_id % 6), &props);
                let code = if v2 {
                    request::SEND_MESSAGE_V2
                } else {
                    request::SEND_MESSAGE
                };
                let mut cmd = RemotingCommand::request(code).with_body(body);
                header.write_to(&mut cmd, v2);
                if oneway {
                    cmd.mark_oneway();
                }
                self.submit(conn, cmd, None);
            }
            Op::Batch {
                conn,
                topic: t,
                queue_id,
                bodies,
            } => {
                let conn = self.conn(conn);
                let entries: Vec<BatchEntry> = bodies
                    .into_iter()
                    .take(16)
                    .enumerate()
                    .map(|(i, (body, tg))| {
                        let mut properties = Properties::new();
                        if let Some(tg) = tg {
                            properties.insert("TAGS", tag(tg));
                        }
                        properties.insert("UNIQ_KEY", format!("B{}-{i}", self.next_opaque));
                        BatchEntry {
                            flag: 0,
                            body: Bytes::from(body),
                            properties,
                        }
                    })
                    .collect();
                let Ok(body) = encode_batch(&entries) else {
                    return;
                };
                let mut header =
                    Self::send_header(topic(t), i32::from(queue_id % 6), &Properties::new());
                header.batch = true;
                let mut cmd = RemotingCommand::request(request::SEND_BATCH_MESSAGE).with_body(body);
                header.write_to(&mut cmd, true);
                self.submit(conn, cmd, None);
            }
            Op::Pull {
                conn,
                topic: t,
                queue_id,
                offset,
                max_nums,
                suspend_ms,
                commit,
                tag_filter,
            } => {
                let conn = self.conn(conn);
                let topic = topic(t).to_owned();
                let queue_id = i32::from(queue_id % 4);
                let store = self.broker.store();
                let position = *self.positions.get(&(topic.clone(), queue_id)).unwrap_or(&0);
                let queue_offset = match offset {
                    PullOffset::Next => position as i64,
                    PullOffset::Max => store.max_offset(&topic, queue_id).0 as i64,
                    PullOffset::Min => store.min_offset(&topic, queue_id).0 as i64,
                    PullOffset::Any(n) => n,
                };
                let header = PullMessageRequestHeader {
                    consumer_group: GOOD_GROUP.to_owned(),
                    topic: topic.clone(),
                    queue_id,
                    queue_offset,
                    max_msg_nums: i32::from(max_nums),
                    // COMMIT_OFFSET | SUSPEND | SUBSCRIPTION
                    sys_flag: if commit { 0x1 | 0x2 | 0x4 } else { 0x2 | 0x4 },
                    commit_offset: position as i64,
                    suspend_timeout_ms: i64::from(suspend_ms),
                    subscription: Some(tag_filter.map_or("*".to_owned(), |t| tag(t).to_owned())),
                    sub_version: 1,
                    expression_type: Some("TAG".to_owned()),
                    max_msg_bytes: None,
                };
                let mut cmd = RemotingCommand::request(request::PULL_MESSAGE);
                header.write_to(&mut cmd);
                self.submit(conn, cmd, Some((topic, queue_id)));
            }
            Op::Pop {
                conn,
                topic: t,
                queue_id,
                max_nums,
                invisible_ms,
                poll_ms,
                order,
            } => {
                let conn = self.conn(conn);
                let topic = topic(t).to_owned();
                let header = PopMessageRequestHeader {
                    consumer_group: POP_GROUP.to_owned(),
                    topic: topic.clone(),
                    queue_id: i32::from(queue_id % 5),
                    max_msg_nums: i32::from(max_nums % 40),
                    invisible_time_ms: i64::from(invisible_ms),
                    poll_time_ms: i64::from(poll_ms),
                    born_time_ms: self.now_ms as i64,
                    init_mode: 0,
                    exp_type: Some("TAG".to_owned()),
                    exp: Some("*".to_owned()),
                    order,
                    attempt_id: None,
                };
                let mut cmd = RemotingCommand::request(request::POP_MESSAGE);
                header.write_to(&mut cmd);
                self.pops.insert(self.next_opaque, topic);
                self.submit(conn, cmd, None);
            }
            Op::AckPopped { conn, which, how } => {
                if self.popped.is_empty() {
                    return;
                }
                let conn = self.conn(conn);
                let p = self.popped[usize::from(which) % self.popped.len()].clone();
                let cmd = match how {
                    AckHow::Ack | AckHow::Change(_) => {
                        let header = AckMessageRequestHeader {
                            consumer_group: POP_GROUP.to_owned(),
                            topic: p.real_topic.clone(),
                            queue_id: p.queue_id,
                            extra_info: p.handle.encode(),
                            offset: p.offset,
                        };
                        let code = match how {
                            AckHow::Ack => request::ACK_MESSAGE,
                            _ => request::CHANGE_MESSAGE_INVISIBLETIME,
                        };
                        let mut cmd = RemotingCommand::request(code);
                        header.write_to(&mut cmd);
                        if let AckHow::Change(ms) = how {
                            cmd = cmd.with_ext("invisibleTime", ms);
                        }
                        cmd
                    }
                    AckHow::Batch => {
                        let body = BatchAckMessageRequestBody {
                            acks: vec![BatchAck {
                                consumer_group: POP_GROUP.to_owned(),
                                topic: p.topic.clone(),
                                retry: p.handle.retry,
                                start_offset: p.handle.ck_start_offset,
                                queue_id: p.queue_id,
                                revive_qid: p.handle.revive_qid,
                                pop_time_ms: p.handle.pop_time_ms,
                                invisible_time_ms: p.handle.invisible_time_ms,
                                bit_set: BatchAck::bits_of(p.handle.ck_start_offset, &[p.offset]),
                            }],
                            broker_name: Some(p.handle.broker_name.clone()),
                        };
                        RemotingCommand::request(request::BATCH_ACK_MESSAGE)
                            .with_body(serde_json::to_vec(&body).expect("serializes"))
                    }
                };
                self.submit(conn, cmd, None);
            }
            Op::Commit {
                conn,
                topic: t,
                queue_id,
            } => {
                let conn = self.conn(conn);
                let topic = topic(t).to_owned();
                let queue_id = i32::from(queue_id % 4);
                let position = *self.positions.get(&(topic.clone(), queue_id)).unwrap_or(&0);
                let cmd = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
                    .with_ext("consumerGroup", GOOD_GROUP)
                    .with_ext("topic", &topic)
                    .with_ext("queueId", queue_id)
                    .with_ext("commitOffset", position);
                self.submit(conn, cmd, None);
            }
            Op::Heartbeat {
                conn,
                client,
                group,
                topic: t,
            } => {
                let conn = self.conn(conn);
                let body = format!(
                    concat!(
                        r#"{{"clientID":"127.0.0.1@{}","consumerDataSet":[{{"groupName":"cg{}","#,
                        r#""consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","#,
                        r#""consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":"#,
                        r#"[{{"topic":"{}","subString":"*","subVersion":1}}]}}],"#,
                        r#""producerDataSet":[{{"groupName":"pg"}}]}}"#
                    ),
                    client % 4,
                    group % 3,
                    topic(t)
                );
                let cmd = RemotingCommand::request(request::HEART_BEAT).with_body(body);
                self.submit(conn, cmd, None);
            }
            Op::Lock {
                conn,
                client,
                unlock,
                queues,
            } => {
                let conn = self.conn(conn);
                let mq: Vec<String> = queues
                    .iter()
                    .take(8)
                    .map(|(t, q)| {
                        format!(
                            r#"{{"brokerName":"broker-a","queueId":{},"topic":"{}"}}"#,
                            q % 4,
                            topic(*t)
                        )
                    })
                    .collect();
                let body = format!(
                    r#"{{"clientId":"127.0.0.1@{}","consumerGroup":"cg0","mqSet":[{}]}}"#,
                    client % 4,
                    mq.join(",")
                );
                let code = if unlock {
                    request::UNLOCK_BATCH_MQ
                } else {
                    request::LOCK_BATCH_MQ
                };
                let cmd = RemotingCommand::request(code).with_body(body);
                self.submit(conn, cmd, None);
            }
            Op::Raw {
                conn,
                code,
                ext,
                body,
                oneway,
            } => {
                let conn = self.conn(conn);
                let code = match code {
                    RawCode::Known(i) => CODES[usize::from(i) % CODES.len()],
                    RawCode::Any(c) => c,
                };
                let mut cmd = request_with(code, &ext, body);
                for value in cmd.ext_fields.values_mut() {
                    if value.contains(GOOD_GROUP) {
                        *value = "cg".to_owned();
                    }
                }
                if oneway {
                    cmd.mark_oneway();
                }
                self.submit(conn, cmd, None);
            }
            Op::Advance { ms, far } => {
                let step = if far {
                    u64::from(ms) * 1_000
                } else {
                    u64::from(ms)
                };
                self.now_ms += step;
                self.broker.handle_timeout(self.now_ms);
            }
            Op::Synced => {
                if let Some(sync) = self.sync.take() {
                    let storage = self.broker.store_mut().storage_mut();
                    for range in &sync.ranges {
                        storage
                            .sync(&range.path, range.start, range.end)
                            .expect("a requested sync range lies inside its file");
                    }
                    self.broker.handle_synced(self.now_ms, sync.up_to);
                }
            }
            Op::SyncFailed => {
                if self.sync.take().is_some() {
                    self.broker
                        .handle_sync_failed(self.now_ms, "fuzzed failure");
                }
            }
            Op::CheckpointWritten => {
                if let Some(request) = self.checkpoint.take() {
                    self.broker.write_checkpoint_inline(self.now_ms, &request);
                }
            }
            Op::CheckpointFailed { sync } => {
                if self.checkpoint.take().is_some() {
                    let failure = if sync {
                        CheckpointFailure::Sync("fuzzed failure".into())
                    } else {
                        CheckpointFailure::WriteFile("fuzzed failure".into())
                    };
                    self.broker.handle_checkpoint_failed(self.now_ms, failure);
                }
            }
            Op::Restart => {
                // A crash: what was written survives (page cache), unanswered requests are lost.
                let storage = self.broker.store().storage().clone();
                self.broker = Broker::new(small_broker_config(), storage, self.now_ms)
                    .expect("a broker reopens over what it wrote");
                self.open.clear();
                self.pending.clear();
                self.pops.clear();
                self.sync = None;
                self.checkpoint = None;
            }
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                BrokerOutput::Send { conn, command } => self.delivered(conn, &command),
                // An ACL admin request changed a file: the write succeeds here (there are no
                // files), so its success answer goes out as a driver would send it.
                BrokerOutput::WriteAclFile { answer, .. } => {
                    if let Some(answer) = answer {
                        self.delivered(answer.conn, &answer.success);
                    }
                }
                BrokerOutput::Sync(request) => {
                    assert!(self.sync.is_none(), "a second sync while one is in flight");
                    self.sync = Some(request);
                }
                BrokerOutput::Checkpoint(request) => {
                    assert!(
                        self.checkpoint.is_none(),
                        "a second checkpoint while one is in flight"
                    );
                    assert!(
                        request.sync.up_to <= self.broker.store().durable_offset(),
                        "a checkpoint claims CommitLog bytes no sync made durable"
                    );
                    self.checkpoint = Some(request);
                }
                BrokerOutput::Close { conn } => {
                    if self.open.remove(&conn.0) {
                        self.broker.handle_disconnected(self.now_ms, conn);
                        self.pending.retain(|_, (c, _)| *c != conn.0);
                    }
                }
                // The fuzzed broker is a master with no slave: no HA link to carry; its gRPC
                // calls are fuzzed by `grpc_calls`.
                BrokerOutput::SendToNamesrv { .. }
                | BrokerOutput::Ha(_)
                | BrokerOutput::Grpc(_) => {}
            }
        }
    }

    /// A command written to `conn`: a response must answer a pending request of that connection.
    fn delivered(&mut self, conn: ConnId, command: &RemotingCommand) {
        assert!(self.open.contains(&conn.0), "output for a closed {conn}");
        if !command.is_response() {
            return;
        }
        let Some((owner, pull)) = self.pending.remove(&command.opaque) else {
            panic!("response {} answers no pending request", command.opaque);
        };
        assert_eq!(owner, conn.0, "response sent to another connection");
        if let Some((topic, queue_id)) = pull {
            self.check_pull(&topic, queue_id, command);
        }
        if let Some(topic) = self.pops.remove(&command.opaque) {
            self.check_pop(&topic, command);
        }
    }

    /// A POP's answer: whole records of the topic asked for, each listed in the offset lists
    /// (or carrying its handle); the handles are kept for later acks.
    fn check_pop(&mut self, topic: &str, answer: &RemotingCommand) {
        let header = PopMessageResponseHeader::parse(answer)
            .expect("every POP answer carries popTime, invisibleTime, reviveQid and restNum");
        if answer.code != response::SUCCESS {
            return;
        }
        let starts = parse_start_offset_info(header.start_offset_info.as_deref().unwrap_or(""))
            .expect("startOffsetInfo parses");
        let lists = parse_msg_offset_info(header.msg_offset_info.as_deref().unwrap_or(""))
            .expect("msgOffsetInfo parses");
        let mut rest = answer.body.clone();
        let mut records = 0;
        while !rest.is_empty() {
            let (size, _) = peek_header(&rest).expect("a POP body holds whole records");
            let record = MessageRecord::decode(&rest, true)
                .unwrap_or_else(|e| panic!("a popped record is bad: {e}"));
            assert_eq!(record.topic, topic, "popped a record of another topic");
            let handle = match record.properties.get(POP_CK_PROPERTY) {
                Some(ck) => ExtraInfo::parse(ck).expect("POP_CK parses"),
                None => {
                    // The flag of the topic read: a topic whose own name starts with %RETRY% is
                    // listed as a retry topic, as clients expect (its orderly reads carry no
                    // POP_CK).
                    let key = (RetryFlag::of_topic(topic), record.queue_id);
                    assert!(
                        lists
                            .get(&key)
                            .is_some_and(|l| l.contains(&record.queue_offset)),
                        "a popped record is missing from msgOffsetInfo"
                    );
                    ExtraInfo {
                        ck_start_offset: starts[&key],
                        pop_time_ms: header.pop_time_ms,
                        invisible_time_ms: header.invisible_time_ms,
                        revive_qid: header.revive_qid,
                        retry: key.0,
                        broker_name: "broker-a".to_owned(),
                        queue_id: record.queue_id,
                        msg_queue_offset: Some(record.queue_offset),
                    }
                }
            };
            let real_topic = handle.retry.real_topic(topic, POP_GROUP);
            self.popped.push(PoppedHandle {
                topic: topic.to_owned(),
                real_topic,
                queue_id: record.queue_id,
                offset: record.queue_offset,
                handle,
            });
            records += 1;
            let _ = rest.split_to(size as usize);
        }
        let listed: usize = lists.values().map(Vec::len).sum();
        assert_eq!(listed, records, "msgOffsetInfo lists every record once");
        if self.popped.len() > 64 {
            self.popped.drain(..self.popped.len() - 64);
        }
    }

    fn check_pull(&mut self, topic: &str, queue_id: i32, response: &RemotingCommand) {
        if response.code != response::SUCCESS {
            return;
        }
        let mut rest = response.body.clone();
        let mut last = None;
        while !rest.is_empty() {
            let (size, _) = peek_header(&rest).expect("a pull body holds whole records");
            let record = MessageRecord::decode(&rest, true)
                .unwrap_or_else(|e| panic!("a pulled record is bad: {e}"));
            assert_eq!(record.topic, topic, "pulled a record of another topic");
            assert_eq!(
                record.queue_id, queue_id,
                "pulled a record of another queue"
            );
            if let Some(previous) = last {
                assert!(
                    record.queue_offset > previous,
                    "pulled records out of order"
                );
            }
            last = Some(record.queue_offset);
            let _ = rest.split_to(size as usize);
        }
        let next = response
            .ext("nextBeginOffset")
            .and_then(|n| n.parse::<u64>().ok())
            .expect("a successful pull names its next offset");
        self.positions.insert((topic.to_owned(), queue_id), next);
    }

    fn check_invariants(&self) {
        let store = self.broker.store();
        check_store(store, 64);
        for ((topic, queue_id), _) in self.positions.iter() {
            if let Some(committed) = self.broker.consumer_offset(topic, GOOD_GROUP, *queue_id) {
                let max = store.max_offset(topic, *queue_id).0;
                assert!(
                    committed >= 0 && committed as u64 <= max,
                    "{topic}/{queue_id}: committed offset {committed} beyond max {max}"
                );
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut harness = Harness::new();
    for op in ops.into_iter().take(64) {
        harness.apply(op);
        harness.drain();
        harness.check_invariants();
    }
    harness.broker.shutdown(harness.now_ms);
    harness.drain();
    harness.check_invariants();
});
