//! Message verbs: queryMsgById, queryMsgByKey, queryMsgByUniqueKey, queryMsgByOffset,
//! sendMessage, consumeMessage. Output follows mqadmin's `tools/command/message` (RocketMQ 5.x),
//! except that a message's body is printed (`Message Body:`, as UTF-8) where mqadmin writes it
//! to a file under /tmp and prints the path.

use bytes::Bytes;
use vostok_core::message::record::MessageRecord;
use vostok_core::message::{decode_offset_msg_id, keys, offset_msg_id};
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::headers::{
    pull_sys_flag, PullMessageRequestHeader, QueryMessageRequestHeader,
};
use vostok_core::remoting::RemotingCommand;

use super::rpc::{expect_ok, human_time, text, Admin, BrokerTarget, NamesrvArg};
use crate::RunError;

/// RocketMQ's group for admin tools' pulls and sends (`MixAll.TOOLS_CONSUMER_GROUP`).
pub(super) const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
/// mqadmin consumeMessage's default message count.
const CONSUME_MESSAGE_COUNT: i64 = 128;
/// Messages asked for per pull by consumeMessage.
const PULL_BATCH: i32 = 32;

#[derive(Debug, clap::Args)]
pub struct QueryMsgByIdArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Message ids (offset ids, or with -t the ids producers got), comma separated.
    #[arg(
        short = 'i',
        long = "msgId",
        value_name = "IDS",
        value_delimiter = ',',
        required = true
    )]
    pub msg_ids: Vec<String>,
    /// The messages' topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: Option<String>,
    /// With -d: have this group's consumer consume the message again, directly.
    #[arg(
        short = 'g',
        long = "consumerGroup",
        value_name = "GROUP",
        requires = "client_id"
    )]
    pub group: Option<String>,
    /// The consumer (its client id) that consumes it directly.
    #[arg(
        short = 'd',
        long = "clientId",
        value_name = "CLIENT_ID",
        requires = "group"
    )]
    pub client_id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct QueryMsgByKeyArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// Message key.
    #[arg(short = 'k', long = "msgKey", value_name = "KEY")]
    pub key: String,
    /// From this store time (epoch ms).
    #[arg(
        short = 'b',
        long = "beginTimestamp",
        value_name = "MS",
        default_value_t = 0
    )]
    pub begin_ms: i64,
    /// Until this store time (epoch ms).
    #[arg(short = 'e', long = "endTimestamp", value_name = "MS", default_value_t = i64::MAX)]
    pub end_ms: i64,
    /// At most this many messages per broker.
    #[arg(short = 'm', long = "maxNum", value_name = "N", default_value_t = 64)]
    pub max_num: i32,
}

#[derive(Debug, clap::Args)]
pub struct QueryMsgByUniqueKeyArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// The message id its producer got (UNIQ_KEY).
    #[arg(short = 'i', long = "msgId", value_name = "MSG_ID")]
    pub msg_id: String,
    /// Topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// With -d: have this group's consumer consume the message again, directly.
    #[arg(
        short = 'g',
        long = "consumerGroup",
        value_name = "GROUP",
        requires = "client_id"
    )]
    pub group: Option<String>,
    /// The consumer (its client id) that consumes it directly.
    #[arg(
        short = 'd',
        long = "clientId",
        value_name = "CLIENT_ID",
        requires = "group"
    )]
    pub client_id: Option<String>,
    /// Print every stored copy (at most 32), not only the first.
    #[arg(short = 'a', long = "showAll")]
    pub show_all: bool,
}

#[derive(Debug, clap::Args)]
pub struct QueryMsgByOffsetArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// Broker name.
    #[arg(short = 'b', long = "brokerName", value_name = "NAME")]
    pub broker_name: String,
    /// Queue id.
    #[arg(short = 'i', long = "queueId", value_name = "ID")]
    pub queue_id: i32,
    /// Queue offset.
    #[arg(short = 'o', long = "offset", value_name = "OFFSET")]
    pub offset: i64,
}

#[derive(Debug, clap::Args)]
pub struct SendMessageArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// The body, as UTF-8 text.
    #[arg(
        short = 'p',
        long = "body",
        value_name = "TEXT",
        allow_hyphen_values = true
    )]
    pub body: String,
    /// Keys (space separated).
    #[arg(short = 'k', long = "key", value_name = "KEYS")]
    pub keys: Option<String>,
    /// Tags.
    #[arg(short = 'c', long = "tags", value_name = "TAGS")]
    pub tags: Option<String>,
    /// Send to this broker (name).
    #[arg(short = 'b', long = "broker", value_name = "NAME")]
    pub broker_name: Option<String>,
    /// Send to this queue (with -b).
    #[arg(short = 'i', long = "qid", value_name = "ID", requires = "broker_name")]
    pub queue_id: Option<i32>,
    /// Message trace (not offered: only false is accepted).
    #[arg(short = 'm', long = "msgTraceEnable", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub trace: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConsumeMessageArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Topic.
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    pub topic: String,
    /// Only this broker (name).
    #[arg(short = 'b', long = "brokerName", value_name = "NAME")]
    pub broker_name: Option<String>,
    /// Only this queue (with -b).
    #[arg(
        short = 'i',
        long = "queueId",
        value_name = "ID",
        requires = "broker_name"
    )]
    pub queue_id: Option<i32>,
    /// From this queue offset (with -i).
    #[arg(
        short = 'o',
        long = "offset",
        value_name = "OFFSET",
        requires = "queue_id"
    )]
    pub offset: Option<i64>,
    /// The group the pulls name (nothing is committed).
    #[arg(short = 'g', long = "consumerGroup", value_name = "GROUP", default_value = TOOLS_CONSUMER_GROUP)]
    pub group: String,
    /// From this store time (epoch ms).
    #[arg(short = 's', long = "beginTimestamp", value_name = "MS")]
    pub begin_ms: Option<i64>,
    /// Until this store time (epoch ms).
    #[arg(short = 'e', long = "endTimestamp", value_name = "MS")]
    pub end_ms: Option<i64>,
    /// At most this many messages.
    #[arg(short = 'c', long = "MessageNumber", value_name = "N", default_value_t = CONSUME_MESSAGE_COUNT, value_parser = clap::value_parser!(i64).range(1..))]
    pub count: i64,
}

/// A stored message as a broker answered it.
#[derive(Clone, Debug)]
pub struct FoundMessage {
    pub broker_name: String,
    pub record: MessageRecord,
}

impl FoundMessage {
    pub fn offset_msg_id(&self) -> String {
        offset_msg_id(self.record.store_host, self.record.physical_offset as u64)
    }

    /// What clients call its id: UNIQ_KEY, else the offset id.
    pub fn msg_id(&self) -> String {
        self.record
            .properties
            .get(keys::UNIQ_KEY)
            .map_or_else(|| self.offset_msg_id(), str::to_owned)
    }
}

/// The records of a QUERY_MESSAGE, PULL_MESSAGE or VIEW_MESSAGE_BY_ID body.
fn records(body: &Bytes, what: &str) -> Result<Vec<MessageRecord>, RunError> {
    let mut body = body.clone();
    let mut out = Vec::new();
    while body.len() >= 4 {
        let size = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let size = usize::try_from(size).unwrap_or(0);
        if size < 4 || size > body.len() {
            return Err(RunError::Task(format!(
                "{what}: malformed answer (a record of {size} bytes)"
            )));
        }
        let one = body.split_to(size);
        out.push(
            MessageRecord::decode(&one, false)
                .map_err(|e| RunError::Task(format!("{what}: {e}")))?,
        );
    }
    Ok(out)
}

/// QUERY_MESSAGE on every master of the topic: by key (records whose KEYS hold it) or by
/// unique key (records whose UNIQ_KEY is it).
pub async fn query(
    admin: &Admin,
    topic: &str,
    key: &str,
    unique: bool,
    max_num: i32,
    begin_ms: i64,
    end_ms: i64,
) -> Result<Vec<FoundMessage>, RunError> {
    let (_, masters) = admin.topic_masters(topic).await?;
    let mut found = Vec::new();
    for b in masters {
        let mut ask = RemotingCommand::request(request::QUERY_MESSAGE);
        QueryMessageRequestHeader {
            topic: topic.to_owned(),
            key: key.to_owned(),
            max_num,
            begin_timestamp_ms: begin_ms,
            end_timestamp_ms: end_ms,
            unique_key_query: unique,
        }
        .write_to(&mut ask);
        let answer = admin.call(&b.addr, ask).await?;
        if answer.code == response::QUERY_NOT_FOUND {
            continue;
        }
        let answer = expect_ok(answer, &format!("query {key} on {}", b.addr))?;
        for record in records(&answer.body, "the query")? {
            // The index matches hashes: keep what really carries the key, as the client does.
            let matches = if unique {
                record.properties.get(keys::UNIQ_KEY) == Some(key)
            } else {
                record
                    .properties
                    .get(keys::KEYS)
                    .is_some_and(|k| k.split(' ').any(|k| k == key))
            };
            if matches && record.topic == topic {
                found.push(FoundMessage {
                    broker_name: b.broker_name.clone(),
                    record,
                });
            }
        }
    }
    Ok(found)
}

/// VIEW_MESSAGE_BY_ID at the broker and offset an offset id names.
async fn view_by_offset_id(admin: &Admin, msg_id: &str) -> Result<FoundMessage, RunError> {
    let (addr, offset) = decode_offset_msg_id(msg_id)
        .map_err(|e| RunError::Task(format!("{msg_id} is not an offset message id: {e}")))?;
    let addr = crate::server::dialable(addr).to_string();
    let ask =
        RemotingCommand::request(request::VIEW_MESSAGE_BY_ID).with_ext("offset", offset as i64);
    let answer = expect_ok(admin.call(&addr, ask).await?, &format!("message {msg_id}"))?;
    let record = records(&answer.body, "the message")?
        .into_iter()
        .next()
        .ok_or_else(|| RunError::Task(format!("message {msg_id} not found")))?;
    let broker_name = admin
        .brokers(None)
        .await
        .ok()
        .and_then(|all| {
            all.into_iter()
                .find(|b| b.addr == addr)
                .map(|b| b.broker_name)
        })
        .unwrap_or_default();
    Ok(FoundMessage {
        broker_name,
        record,
    })
}

/// mqadmin's `printMsg`: one field per line.
pub fn print_message(m: &FoundMessage) {
    let r = &m.record;
    let or_null = |v: Option<&str>| v.map_or_else(|| "null".to_owned(), str::to_owned);
    out!("{:<20} {}", "OffsetID:", m.offset_msg_id());
    out!("{:<20} {}", "Topic:", r.topic);
    out!(
        "{:<20} [{}]",
        "Tags:",
        or_null(r.properties.get(keys::TAGS))
    );
    out!(
        "{:<20} [{}]",
        "Keys:",
        or_null(r.properties.get(keys::KEYS))
    );
    out!("{:<20} {}", "Queue ID:", r.queue_id);
    out!("{:<20} {}", "Queue Offset:", r.queue_offset);
    out!("{:<20} {}", "CommitLog Offset:", r.physical_offset);
    out!("{:<20} {}", "Reconsume Times:", r.reconsume_times);
    out!(
        "{:<20} {}",
        "Born Timestamp:",
        human_time(r.born_timestamp_ms)
    );
    out!(
        "{:<20} {}",
        "Store Timestamp:",
        human_time(r.store_timestamp_ms)
    );
    out!("{:<20} {}", "Born Host:", r.born_host);
    out!("{:<20} {}", "Store Host:", r.store_host);
    out!("{:<20} {}", "System Flag:", r.sys_flag);
    out!("{:<20} {}", "Properties:", properties_text(&r.properties));
    out!(
        "{:<20} {}",
        "Message Body:",
        String::from_utf8_lossy(&r.body)
    );
}

/// Properties as Java prints a map, `{KEYS=k1, TAGS=a}` (sorted here).
fn properties_text(properties: &vostok_core::message::Properties) -> String {
    let mut pairs: Vec<(&str, &str)> = properties.iter().collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// What happened to a message in each group subscribed to its topic (mqadmin's
/// `messageTrackDetail`): CONSUMED when the group's committed offset of its queue is past it,
/// NOT_CONSUME_YET when not, PULL for a pull consumer, CONSUME_BROADCASTING for a broadcasting
/// one, NOT_ONLINE (with the broker's answer) for a group nobody consumes with now.
async fn print_tracks(admin: &Admin, m: &FoundMessage) {
    let groups = super::topic::groups_of_topic(admin, &m.record.topic)
        .await
        .unwrap_or_default();
    if groups.is_empty() {
        out!("\n\nWARN: No Consumer\n");
        return;
    }
    out!("\n");
    for group in groups {
        let (track, desc) = match super::group::consumer_connection(admin, &group, None).await {
            Err(e) => (
                "NOT_ONLINE",
                format!("CODE:{} DESC:{e}", response::CONSUMER_NOT_ONLINE),
            ),
            Ok(cc) if text(&cc, "messageModel") == "BROADCASTING" => {
                ("CONSUME_BROADCASTING", "null".to_owned())
            }
            Ok(cc) if text(&cc, "consumeType") == "CONSUME_ACTIVELY" => ("PULL", "null".to_owned()),
            Ok(_) => {
                match super::group::consume_stats(admin, &group, Some(&m.record.topic)).await {
                    Ok(stats) => {
                        let consumed = stats.queues.iter().any(|q| {
                            q.topic == m.record.topic
                                && q.broker_name == m.broker_name
                                && q.queue_id == m.record.queue_id
                                && q.consumer_offset > m.record.queue_offset
                        });
                        (
                            if consumed {
                                "CONSUMED"
                            } else {
                                "NOT_CONSUME_YET"
                            },
                            "null".to_owned(),
                        )
                    }
                    Err(e) => ("UNKNOWN", e.to_string()),
                }
            }
        };
        out!("MessageTrack [consumerGroup={group}, trackType={track}, exceptionDesc={desc}]");
    }
}

/// CONSUME_MESSAGE_DIRECTLY through the broker that stores the message.
async fn consume_directly(
    admin: &Admin,
    m: &FoundMessage,
    group: &str,
    client_id: &str,
) -> Result<(), RunError> {
    let addr = crate::server::dialable(m.record.store_host).to_string();
    let ask = RemotingCommand::request(request::CONSUME_MESSAGE_DIRECTLY)
        .with_ext("consumerGroup", group)
        .with_ext("clientId", client_id)
        .with_ext("msgId", m.offset_msg_id())
        .with_ext("topic", m.record.topic.as_str())
        .with_ext("brokerName", m.broker_name.as_str());
    let answer = expect_ok(
        admin.call(&addr, ask).await?,
        &format!("consume directly by {client_id}"),
    )?;
    out!("{}", String::from_utf8_lossy(&answer.body));
    Ok(())
}

pub async fn query_msg_by_id(args: QueryMsgByIdArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let mut failures = Vec::new();
    for id in &args.msg_ids {
        let found = match view_by_offset_id(&admin, id).await {
            Ok(found) => Ok(found),
            // Not an offset id (or its broker is gone): with a topic, try it as a client id.
            Err(e) => match &args.topic {
                Some(topic) => query(&admin, topic, id, true, 32, 0, i64::MAX)
                    .await
                    .and_then(|f| {
                        f.into_iter()
                            .next()
                            .ok_or_else(|| RunError::Task(format!("message {id} not found")))
                    }),
                None => Err(e),
            },
        };
        match found {
            Ok(m) => {
                if let (Some(group), Some(client_id)) = (&args.group, &args.client_id) {
                    consume_directly(&admin, &m, group, client_id).await?;
                } else {
                    print_message(&m);
                    print_tracks(&admin, &m).await;
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    super::broker::fail_if_any(failures)
}

pub async fn query_msg_by_key(args: QueryMsgByKeyArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let found = query(
        &admin,
        &args.topic,
        &args.key,
        false,
        args.max_num,
        args.begin_ms,
        args.end_ms,
    )
    .await?;
    out!("{:<50} {:>4} {:>40}", "#Message ID", "#QID", "#Offset");
    for m in found {
        out!(
            "{:<50} {:>4} {:>40}",
            m.msg_id(),
            m.record.queue_id,
            m.record.queue_offset
        );
    }
    Ok(())
}

pub async fn query_msg_by_unique_key(args: QueryMsgByUniqueKeyArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let found = query(&admin, &args.topic, &args.msg_id, true, 32, 0, i64::MAX).await?;
    let Some(first) = found.first() else {
        return Err(RunError::Task(format!(
            "message {} not found in {}",
            args.msg_id, args.topic
        )));
    };
    if let (Some(group), Some(client_id)) = (&args.group, &args.client_id) {
        return consume_directly(&admin, first, group, client_id).await;
    }
    let shown = if args.show_all {
        &found[..]
    } else {
        &found[..1]
    };
    for m in shown {
        print_message(m);
        print_tracks(&admin, m).await;
    }
    Ok(())
}

/// PULL_MESSAGE of one queue as the tools group, nothing committed: (records, next offset).
pub async fn pull(
    admin: &Admin,
    addr: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max: i32,
) -> Result<(Vec<MessageRecord>, i64, i32), RunError> {
    let mut ask = RemotingCommand::request(request::PULL_MESSAGE);
    PullMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.to_owned(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: max,
        sys_flag: pull_sys_flag::SUBSCRIPTION,
        commit_offset: 0,
        suspend_timeout_ms: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    }
    .write_to(&mut ask);
    let answer = admin.call(addr, ask).await?;
    let next = answer.ext_num("nextBeginOffset").unwrap_or(offset);
    if answer.code != response::SUCCESS {
        return Ok((Vec::new(), next, answer.code));
    }
    Ok((records(&answer.body, "the pull")?, next, answer.code))
}

/// The master of `broker_name` in the topic's route.
async fn master_of(
    admin: &Admin,
    topic: &str,
    broker_name: &str,
) -> Result<BrokerTarget, RunError> {
    let (_, masters) = admin.topic_masters(topic).await?;
    masters
        .into_iter()
        .find(|b| b.broker_name == broker_name)
        .ok_or_else(|| {
            RunError::Task(format!(
                "broker {broker_name} has no master serving {topic}"
            ))
        })
}

pub async fn query_msg_by_offset(args: QueryMsgByOffsetArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let broker = master_of(&admin, &args.topic, &args.broker_name).await?;
    let (found, _, code) = pull(
        &admin,
        &broker.addr,
        TOOLS_CONSUMER_GROUP,
        &args.topic,
        args.queue_id,
        args.offset,
        1,
    )
    .await?;
    let Some(record) = found.into_iter().next() else {
        return Err(RunError::Task(format!(
            "no message at {}:{}:{} offset {} (pull answered code {code})",
            args.topic, args.broker_name, args.queue_id, args.offset
        )));
    };
    let m = FoundMessage {
        broker_name: broker.broker_name,
        record,
    };
    print_message(&m);
    print_tracks(&admin, &m).await;
    Ok(())
}

pub async fn send_message(args: SendMessageArgs) -> Result<(), RunError> {
    use crate::client::{Message, MessageQueue, Producer};
    if args.trace {
        return Err(RunError::Usage(
            "-m true: message trace is not offered by sendMessage".to_owned(),
        ));
    }
    let admin = Admin::new(&args.ns)?;
    let producer = Producer::builder()
        .namesrv_addr(&admin.namesrvs().join(";"))
        .group(TOOLS_CONSUMER_GROUP)
        .build()
        .map_err(|e| RunError::Task(format!("producer: {e}")))?
        .start()
        .await
        .map_err(|e| RunError::Task(format!("producer: {e}")))?;
    let mut message = Message::new(args.topic.as_str(), args.body.clone().into_bytes());
    if let Some(tags) = &args.tags {
        message = message.with_tags(tags);
    }
    if let Some(keys_text) = &args.keys {
        message = message.with_keys(keys_text);
    }
    let sent = match (&args.broker_name, args.queue_id) {
        (Some(broker_name), queue_id) => {
            let queue_id = match queue_id {
                Some(q) => q,
                None => producer
                    .queues(&args.topic)
                    .await
                    .ok()
                    .and_then(|qs| {
                        qs.into_iter()
                            .find(|q| &q.broker_name == broker_name)
                            .map(|q| q.queue_id)
                    })
                    .ok_or_else(|| {
                        RunError::Task(format!(
                            "broker {broker_name} has no queue of {}",
                            args.topic
                        ))
                    })?,
            };
            let queue = MessageQueue {
                topic: args.topic.clone(),
                broker_name: broker_name.clone(),
                queue_id,
            };
            producer.send_to_queue(message, queue).await
        }
        (None, _) => producer.send(message).await,
    };
    producer.shutdown().await;
    out!(
        "{:<32}  {:<4}  {:<20}    #MsgId",
        "#Broker Name",
        "#QID",
        "#Send Result"
    );
    match sent {
        Ok(result) => {
            out!(
                "{:<32}  {:<4}  {:<20}    {}",
                result.queue.broker_name,
                result.queue.queue_id,
                send_status_name(result.status),
                result.msg_id
            );
            Ok(())
        }
        Err(e) => {
            out!(
                "{:<32}  {:<4}  {:<20}    None",
                "Unknown",
                "Unknown",
                "Failed"
            );
            Err(RunError::Task(format!("send to {}: {e}", args.topic)))
        }
    }
}

/// GET_MAX_OFFSET (`max`) or GET_MIN_OFFSET of one queue.
pub(super) async fn queue_offset(
    admin: &Admin,
    addr: &str,
    topic: &str,
    queue_id: i32,
    max: bool,
) -> Result<i64, RunError> {
    let code = if max {
        request::GET_MAX_OFFSET
    } else {
        request::GET_MIN_OFFSET
    };
    let ask = RemotingCommand::request(code)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id);
    let answer = expect_ok(
        admin.call(addr, ask).await?,
        &format!("the offsets of {topic}:{queue_id}"),
    )?;
    answer
        .ext_num("offset")
        .map_err(|e| RunError::Task(format!("the offsets of {topic}:{queue_id}: {e}")))
}

/// A send status as Java's `SendStatus` prints it.
fn send_status_name(status: crate::client::SendStatus) -> &'static str {
    use crate::client::SendStatus as S;
    match status {
        S::SendOk => "SEND_OK",
        S::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
        S::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
        S::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
    }
}

pub async fn consume_message(args: ConsumeMessageArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    if let (Some(begin), Some(end)) = (args.begin_ms, args.end_ms) {
        if begin > end {
            return Err(RunError::Usage("-s must not be after -e".to_owned()));
        }
    }
    let (route, masters) = admin.topic_masters(&args.topic).await?;
    let mut queues = Vec::new();
    for b in &masters {
        if args
            .broker_name
            .as_ref()
            .is_some_and(|n| n != &b.broker_name)
        {
            continue;
        }
        let read_queues = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name == b.broker_name)
            .map_or(0, |q| q.read_queue_nums as i32);
        for queue_id in 0..read_queues {
            if args.queue_id.is_some_and(|q| q != queue_id) {
                continue;
            }
            queues.push((b.clone(), queue_id));
        }
    }
    if queues.is_empty() {
        return Err(RunError::Task(format!(
            "no queue of {} matches",
            args.topic
        )));
    }
    let mut left = args.count;
    for (b, queue_id) in queues {
        let queue = format!(
            "MessageQueue [topic={}, brokerName={}, queueId={queue_id}]",
            args.topic, b.broker_name
        );
        let mut offset = match (args.offset, args.begin_ms) {
            (Some(offset), _) => offset,
            (None, Some(begin_ms)) => {
                let ask = RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP)
                    .with_ext("topic", args.topic.as_str())
                    .with_ext("queueId", queue_id)
                    .with_ext("timestamp", begin_ms);
                let answer = expect_ok(admin.call(&b.addr, ask).await?, "search offset")?;
                answer
                    .ext_num("offset")
                    .map_err(|e| RunError::Task(e.to_string()))?
            }
            (None, None) => queue_offset(&admin, &b.addr, &args.topic, queue_id, false).await?,
        };
        let max = queue_offset(&admin, &b.addr, &args.topic, queue_id, true).await?;
        while left > 0 && offset < max {
            let batch = PULL_BATCH.min(left as i32);
            let (found, next, code) = pull(
                &admin,
                &b.addr,
                &args.group,
                &args.topic,
                queue_id,
                offset,
                batch,
            )
            .await?;
            if found.is_empty() {
                out!("{queue} no matched msg. status={code}, offset={offset}");
                break;
            }
            out!("Consume ok");
            for record in found {
                if args
                    .end_ms
                    .is_some_and(|end| record.store_timestamp_ms > end)
                {
                    left = 0;
                    break;
                }
                let m = FoundMessage {
                    broker_name: b.broker_name.clone(),
                    record,
                };
                out!(
                    "MSGID: {} MessageExt [brokerName={}, queueId={}, queueOffset={}, storeTimestamp={}, topic={}, properties={}] BODY: {}",
                    m.msg_id(),
                    m.broker_name,
                    m.record.queue_id,
                    m.record.queue_offset,
                    m.record.store_timestamp_ms,
                    m.record.topic,
                    properties_text(&m.record.properties),
                    String::from_utf8_lossy(&m.record.body)
                );
                left -= 1;
                if left == 0 {
                    break;
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        out!("{queue} print msg finished. offset={offset}");
        if left == 0 {
            break;
        }
    }
    Ok(())
}
