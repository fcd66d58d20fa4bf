//! `vostok admin`: mqadmin-style operations against a running cluster.
//!
//! * `reset-offset` (mqadmin `resetOffsetByTime`): GET_ROUTEINFO_BY_TOPIC (105) from a
//!   NameServer, then INVOKE_BROKER_TO_RESET_OFFSET (222) to each master broker of the topic.
//!   Each broker computes the offsets, commits them and tells the group's live consumers with
//!   RESET_CONSUMER_CLIENT_OFFSET (220); they resume from there without a restart.
//! * `resend-dlq`: reads `%DLQ%<group>` on every broker holding it (PULL_MESSAGE as the tools
//!   group, no offset committed) and sends the chosen messages back to `%RETRY%<group>` with
//!   their reconsume count reset, so that group — and only that group — consumes them again,
//!   under their original topic (`RETRY_TOPIC`). The DLQ keeps its copy, as RocketMQ's does.
//! * `query-msg-trace-by-id` (mqadmin `queryMsgTraceById`): QUERY_MESSAGE (12) by the message id
//!   on the trace topic of every broker holding it, the trace messages' bodies decoded
//!   ([`vostok_core::message::trace`]) and printed as mqadmin prints them: the send (Pub) rows,
//!   then each consumer group's (Sub) rows.

use std::time::Duration;

use vostok_core::namesrv::route::TopicRouteData;
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::reset_offset::{
    decode_offset_table, QueueKey, ResetOffsetRequestHeader,
};
use vostok_core::remoting::{RemotingCommand, SerializeType};

use crate::bench::direct::Conn;
use crate::RunError;

/// How long one admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The operations `vostok admin` runs.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Reset a consumer group's offsets on a topic to a point in time (mqadmin
    /// resetOffsetByTime). Live consumers are notified and re-consume from there; the group
    /// must have committed offsets on every queue and (unless the broker sets
    /// useServerSideResetOffset=true) at least one consumer online.
    ResetOffset(ResetOffsetArgs),
    /// Send dead-lettered messages of a consumer group back to it: each chosen message of
    /// `%DLQ%<group>` goes to `%RETRY%<group>` with its reconsume count reset, and the group's
    /// consumers receive it again under its original topic. Without --msg-id, every message in
    /// the DLQ is resent.
    ResendDlq(ResendDlqArgs),
    /// Show a message's trace (mqadmin queryMsgTraceById): its send and every consumption,
    /// from what clients with message trace enabled sent to the trace topic.
    #[command(alias = "queryMsgTraceById")]
    QueryMsgTraceById(QueryMsgTraceArgs),
}

#[derive(Debug, clap::Args)]
pub struct QueryMsgTraceArgs {
    /// NameServer addresses, `host:port;host:port` (falls back to NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrv-addr", value_name = "ADDRS")]
    pub namesrv_addr: Option<String>,
    /// The message id (its UNIQ_KEY, as the send returned it).
    #[arg(short = 'i', long = "msg-id", value_name = "MSG_ID")]
    pub msg_id: String,
    /// The trace topic.
    #[arg(short = 't', long = "trace-topic", value_name = "TOPIC", default_value = vostok_core::message::trace::DEFAULT_TRACE_TOPIC)]
    pub trace_topic: String,
    /// Only trace messages stored from this time (epoch ms).
    #[arg(
        short = 'b',
        long = "begin-timestamp",
        value_name = "MS",
        default_value_t = 0
    )]
    pub begin_timestamp_ms: i64,
    /// Only trace messages stored until this time (epoch ms).
    #[arg(short = 'e', long = "end-timestamp", value_name = "MS", default_value_t = i64::MAX)]
    pub end_timestamp_ms: i64,
    /// At most this many trace messages per broker.
    #[arg(long = "num", value_name = "N", default_value_t = 64)]
    pub max_num: i32,
}

#[derive(Debug, clap::Args)]
pub struct ResendDlqArgs {
    /// NameServer addresses, `host:port;host:port` (falls back to NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrv-addr", value_name = "ADDRS")]
    pub namesrv_addr: Option<String>,
    /// Consumer group whose dead letters are resent.
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: String,
    /// Resend only these messages (message id `UNIQ_KEY`, the original id, or the DLQ offset
    /// message id); repeatable.
    #[arg(short = 'i', long = "msg-id", value_name = "MSG_ID")]
    pub msg_ids: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ResetOffsetArgs {
    /// NameServer addresses, `host:port;host:port` (falls back to NAMESRV_ADDR).
    #[arg(short = 'n', long = "namesrv-addr", value_name = "ADDRS")]
    pub namesrv_addr: Option<String>,
    /// Consumer group.
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: String,
    /// Topic.
    #[arg(short = 't', long, value_name = "TOPIC")]
    pub topic: String,
    /// Where to go: epoch milliseconds, `now`, or -1 for the end of every queue.
    #[arg(
        short = 's',
        long,
        value_name = "TIMESTAMP_MS|now",
        allow_hyphen_values = true
    )]
    pub timestamp: String,
    /// Also move offsets forward (false: only rewind).
    #[arg(short = 'f', long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub force: bool,
}

/// Runs one admin command, printing its result on stdout.
pub async fn run(command: AdminCommand) -> Result<(), RunError> {
    match command {
        AdminCommand::ResetOffset(args) => {
            let namesrv = args
                .namesrv_addr
                .or_else(|| std::env::var("NAMESRV_ADDR").ok())
                .ok_or_else(|| RunError::Usage("-n (or NAMESRV_ADDR) is required".to_owned()))?;
            let timestamp_ms = parse_timestamp(&args.timestamp)?;
            let table =
                reset_offset_by_time(&namesrv, &args.group, &args.topic, timestamp_ms, args.force)
                    .await?;
            println!("{:<32} {:<8} #offset", "#brokerName", "#queueId");
            for (queue, offset) in table {
                println!("{:<32} {:<8} {}", queue.broker_name, queue.queue_id, offset);
            }
            Ok(())
        }
        AdminCommand::ResendDlq(args) => {
            let namesrv = args
                .namesrv_addr
                .or_else(|| std::env::var("NAMESRV_ADDR").ok())
                .ok_or_else(|| RunError::Usage("-n (or NAMESRV_ADDR) is required".to_owned()))?;
            let resent = resend_dlq(&namesrv, &args.group, &args.msg_ids).await?;
            println!("{:<32} {:<34} #retryOffset", "#brokerName", "#msgId");
            for m in &resent {
                println!("{:<32} {:<34} {}", m.broker_name, m.msg_id, m.retry_offset);
            }
            let missing: Vec<&String> = args
                .msg_ids
                .iter()
                .filter(|id| !resent.iter().any(|m| m.matched_by(id)))
                .collect();
            if !missing.is_empty() {
                return Err(RunError::Task(format!(
                    "not in %DLQ%{}: {}",
                    args.group,
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(())
        }
        AdminCommand::QueryMsgTraceById(args) => {
            let namesrv = args
                .namesrv_addr
                .or_else(|| std::env::var("NAMESRV_ADDR").ok())
                .ok_or_else(|| RunError::Usage("-n (or NAMESRV_ADDR) is required".to_owned()))?;
            let rows = query_msg_trace(
                &namesrv,
                &args.trace_topic,
                &args.msg_id,
                args.max_num,
                args.begin_timestamp_ms,
                args.end_timestamp_ms,
            )
            .await?;
            print_trace(&rows);
            Ok(())
        }
    }
}

/// One line of a trace as mqadmin prints it (its `TraceView`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRow {
    pub trace_type: vostok_core::message::trace::TraceType,
    pub group: String,
    /// The address the trace message came from (mqadmin's `getBornHostString`: the IP).
    pub client_host: String,
    pub timestamp_ms: i64,
    pub cost_time_ms: i32,
    pub success: bool,
}

/// The Pub and SubAfter contexts naming `msg_id` in the trace messages of `trace_topic` on every
/// broker holding it, in the order the brokers answered. A SubAfter carries no group in its
/// fields: it takes the group of the SubBefore with its request id (mqadmin leaves it `null`).
pub async fn query_msg_trace(
    namesrv_addrs: &str,
    trace_topic: &str,
    msg_id: &str,
    max_num: i32,
    begin_timestamp_ms: i64,
    end_timestamp_ms: i64,
) -> Result<Vec<TraceRow>, RunError> {
    use vostok_core::message::keys;
    use vostok_core::message::record::MessageRecord;
    use vostok_core::message::trace::{self, TraceType};
    use vostok_core::remoting::headers::QueryMessageRequestHeader;

    let route = topic_route(namesrv_addrs, trace_topic).await?;
    let mut contexts = Vec::new();
    for broker in &route.broker_datas {
        let Some(addr) = broker.broker_addrs.get(&0) else {
            continue;
        };
        let mut ask = RemotingCommand::request(request::QUERY_MESSAGE);
        QueryMessageRequestHeader {
            topic: trace_topic.to_owned(),
            key: msg_id.to_owned(),
            max_num,
            begin_timestamp_ms,
            end_timestamp_ms,
            unique_key_query: false,
        }
        .write_to(&mut ask);
        let answer = call(addr, ask).await?;
        match answer.code {
            response::SUCCESS => {}
            response::QUERY_NOT_FOUND => continue,
            code => {
                return Err(RunError::Task(format!(
                    "{addr}: query of {trace_topic} failed (code {code}): {}",
                    answer.remark.unwrap_or_default()
                )))
            }
        }
        let mut body = answer.body.clone();
        while body.len() >= 4 {
            let size = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let size = usize::try_from(size).unwrap_or(0);
            if size < 4 || size > body.len() {
                return Err(RunError::Task(format!(
                    "{addr}: malformed query answer (a record of {size} bytes)"
                )));
            }
            let one = body.split_to(size);
            let record = MessageRecord::decode(&one, false)
                .map_err(|e| RunError::Task(format!("{addr}: undecodable trace record: {e}")))?;
            // The index matches hashes: keep what names the id in its keys, as mqadmin does.
            let named = record
                .properties
                .get(keys::KEYS)
                .is_some_and(|k| k.split(' ').any(|k| k == msg_id));
            if !named {
                continue;
            }
            let client_host = record.born_host.ip().to_string();
            for context in trace::decode(&String::from_utf8_lossy(&record.body)) {
                contexts.push((client_host.clone(), context));
            }
        }
    }
    let groups_by_request: std::collections::BTreeMap<String, String> = contexts
        .iter()
        .filter(|(_, c)| c.trace_type == TraceType::SubBefore)
        .map(|(_, c)| (c.request_id.clone(), c.group_name.clone()))
        .collect();
    Ok(contexts
        .into_iter()
        .filter(|(_, c)| c.msg_id == msg_id)
        .filter(|(_, c)| matches!(c.trace_type, TraceType::Pub | TraceType::SubAfter))
        .map(|(client_host, c)| TraceRow {
            trace_type: c.trace_type,
            group: if c.trace_type == TraceType::SubAfter {
                groups_by_request
                    .get(&c.request_id)
                    .cloned()
                    .unwrap_or_else(|| "null".to_owned())
            } else {
                c.group_name
            },
            client_host,
            timestamp_ms: c.timestamp_ms,
            cost_time_ms: c.cost_time_ms,
            success: c.success,
        })
        .collect())
}

/// The trace as mqadmin's `queryMsgTraceById` prints it.
pub fn print_trace(rows: &[TraceRow]) {
    use vostok_core::message::trace::TraceType;
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let status = |ok: bool| if ok { "success" } else { "failed" };
    let line = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str| {
        println!("{a:<10} {b:<20} {c:<20} {d:<20} {e:<10} {f:<10}");
    };
    for r in rows.iter().filter(|r| r.trace_type == TraceType::Pub) {
        line(
            "#Type",
            "#ProducerGroup",
            "#ClientHost",
            "#SendTime",
            "#CostTimes",
            "#Status",
        );
        line(
            "Pub",
            &r.group,
            &r.client_host,
            &time(r.timestamp_ms),
            &format!("{}ms", r.cost_time_ms),
            status(r.success),
        );
        println!();
    }
    let mut by_group: std::collections::BTreeMap<&str, Vec<&TraceRow>> = Default::default();
    for r in rows.iter().filter(|r| r.trace_type == TraceType::SubAfter) {
        by_group.entry(&r.group).or_default().push(r);
    }
    for rows in by_group.values() {
        line(
            "#Type",
            "#ConsumerGroup",
            "#ClientHost",
            "#ConsumerTime",
            "#CostTimes",
            "#Status",
        );
        for r in rows {
            line(
                "Sub",
                &r.group,
                &r.client_host,
                &time(r.timestamp_ms),
                &format!("{}ms", r.cost_time_ms),
                status(r.success),
            );
        }
        println!();
    }
}

/// `now`, epoch milliseconds, or -1.
fn parse_timestamp(text: &str) -> Result<i64, RunError> {
    if text.eq_ignore_ascii_case("now") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| RunError::Task(format!("the clock is before 1970: {e}")))?;
        return Ok(now.as_millis() as i64);
    }
    match text.trim().parse::<i64>() {
        Ok(ms) if ms >= -1 => Ok(ms),
        _ => Err(RunError::Usage(format!(
            "-s {text}: expected epoch milliseconds, now, or -1"
        ))),
    }
}

/// Resets `group` on `topic` to `timestamp_ms` on every master broker of the topic; returns
/// the offsets the brokers set, sorted.
pub async fn reset_offset_by_time(
    namesrv_addrs: &str,
    group: &str,
    topic: &str,
    timestamp_ms: i64,
    force: bool,
) -> Result<Vec<(QueueKey, i64)>, RunError> {
    let route = topic_route(namesrv_addrs, topic).await?;
    let mut table = Vec::new();
    for broker in &route.broker_datas {
        let Some(addr) = broker.broker_addrs.get(&0) else {
            continue;
        };
        let mut ask = RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET);
        ResetOffsetRequestHeader {
            topic: topic.to_owned(),
            group: group.to_owned(),
            timestamp_ms,
            is_force: force,
            queue_id: None,
            offset: None,
        }
        .write_to(&mut ask);
        let answer = call(addr, ask).await?;
        if answer.code != response::SUCCESS {
            return Err(RunError::Task(format!(
                "broker {} ({addr}) refused the reset (code {}): {}",
                broker.broker_name,
                answer.code,
                answer.remark.unwrap_or_default()
            )));
        }
        let offsets = decode_offset_table(&answer.body).map_err(|e| {
            RunError::Task(format!(
                "broker {}: bad offset table: {e}",
                broker.broker_name
            ))
        })?;
        table.extend(offsets);
    }
    table.sort();
    Ok(table)
}

/// The topic's route from the first NameServer that answers.
async fn topic_route(namesrv_addrs: &str, topic: &str) -> Result<TopicRouteData, RunError> {
    let mut last_error = RunError::Usage("no NameServer address given".to_owned());
    for addr in namesrv_addrs
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let ask =
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
        match call(addr, ask).await {
            Ok(answer) if answer.code == response::SUCCESS => {
                return TopicRouteData::parse(&answer.body)
                    .map_err(|e| RunError::Task(format!("bad route of {topic} from {addr}: {e}")));
            }
            Ok(answer) => {
                return Err(RunError::Task(format!(
                    "no route for topic {topic} (code {}): {}",
                    answer.code,
                    answer.remark.unwrap_or_default()
                )))
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

async fn call(addr: &str, command: RemotingCommand) -> Result<RemotingCommand, RunError> {
    let conn = Conn::connect(addr, SerializeType::Json).await?;
    conn.call(command, ADMIN_TIMEOUT)
        .await
        .map_err(|e| RunError::Task(format!("{addr}: {e}")))
}

/// RocketMQ's group for admin tools' pulls (`MixAll.TOOLS_CONSUMER_GROUP`).
const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
/// Messages asked for per pull of the DLQ.
const DLQ_PULL_BATCH: i32 = 32;

/// One dead letter sent back to its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResentMessage {
    pub broker_name: String,
    /// The message's id (`UNIQ_KEY`, else its DLQ offset id).
    pub msg_id: String,
    /// Its id before it was dead-lettered (`ORIGIN_MESSAGE_ID`), when known.
    pub origin_msg_id: Option<String>,
    /// Its offset id in the DLQ.
    pub dlq_offset_msg_id: String,
    /// Where it now sits in `%RETRY%<group>`.
    pub retry_offset: i64,
}

impl ResentMessage {
    fn matched_by(&self, id: &str) -> bool {
        self.msg_id == id
            || self.dlq_offset_msg_id == id
            || self.origin_msg_id.as_deref() == Some(id)
    }
}

/// Sends the messages of `%DLQ%<group>` (all, or those named in `msg_ids`) back to
/// `%RETRY%<group>` on the broker holding them; returns what was resent.
pub async fn resend_dlq(
    namesrv_addrs: &str,
    group: &str,
    msg_ids: &[String],
) -> Result<Vec<ResentMessage>, RunError> {
    use vostok_core::message::record::MessageRecord;
    use vostok_core::message::{keys, offset_msg_id};
    use vostok_core::remoting::headers::{
        pull_sys_flag, PullMessageRequestHeader, SendMessageRequestHeader,
    };

    let dlq_topic = format!("{}{group}", vostok_core::topic::DLQ_GROUP_TOPIC_PREFIX);
    let retry_topic = format!("{}{group}", vostok_core::topic::RETRY_GROUP_TOPIC_PREFIX);
    let route = topic_route(namesrv_addrs, &dlq_topic).await?;
    let mut resent = Vec::new();
    for broker in &route.broker_datas {
        let Some(addr) = broker.broker_addrs.get(&0) else {
            continue;
        };
        let conn = Conn::connect(addr, SerializeType::Json).await?;
        let queues = route
            .queue_datas
            .iter()
            .filter(|q| q.broker_name == broker.broker_name)
            .map(|q| q.read_queue_nums)
            .max()
            .unwrap_or(0);
        for queue_id in 0..queues as i32 {
            let mut offset =
                crate::bench::direct::queue_offset(&conn, &dlq_topic, queue_id, false).await?;
            let max = crate::bench::direct::queue_offset(&conn, &dlq_topic, queue_id, true).await?;
            while offset < max {
                let mut pull = RemotingCommand::request(request::PULL_MESSAGE);
                PullMessageRequestHeader {
                    consumer_group: TOOLS_CONSUMER_GROUP.to_owned(),
                    topic: dlq_topic.clone(),
                    queue_id,
                    queue_offset: offset,
                    max_msg_nums: DLQ_PULL_BATCH,
                    sys_flag: pull_sys_flag::SUBSCRIPTION,
                    commit_offset: 0,
                    suspend_timeout_ms: 0,
                    subscription: Some("*".into()),
                    sub_version: 0,
                    expression_type: Some("TAG".into()),
                    max_msg_bytes: None,
                }
                .write_to(&mut pull);
                let answer = conn
                    .call(pull, ADMIN_TIMEOUT)
                    .await
                    .map_err(|e| RunError::Task(format!("{addr}: {e}")))?;
                if answer.code != response::SUCCESS {
                    return Err(RunError::Task(format!(
                        "reading {dlq_topic} on {} at offset {offset}: code {} {}",
                        broker.broker_name,
                        answer.code,
                        answer.remark.unwrap_or_default()
                    )));
                }
                let next = answer
                    .ext_num("nextBeginOffset")
                    .map_err(|e| RunError::Task(format!("{addr}: {e}")))?;
                let mut body = answer.body.clone();
                while body.len() >= 4 {
                    let size = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
                    if size < 4 || size > body.len() {
                        break;
                    }
                    let record_bytes = body.split_to(size);
                    let record = MessageRecord::decode(&record_bytes, true).map_err(|e| {
                        RunError::Task(format!("a record of {dlq_topic} does not decode: {e}"))
                    })?;
                    let dlq_offset_msg_id =
                        offset_msg_id(record.store_host, record.physical_offset as u64);
                    let message = ResentMessage {
                        broker_name: broker.broker_name.clone(),
                        msg_id: record
                            .properties
                            .get(keys::UNIQ_KEY)
                            .map_or_else(|| dlq_offset_msg_id.clone(), str::to_owned),
                        origin_msg_id: record
                            .properties
                            .get(keys::ORIGIN_MESSAGE_ID)
                            .map(str::to_owned),
                        dlq_offset_msg_id,
                        retry_offset: -1,
                    };
                    if !msg_ids.is_empty() && !msg_ids.iter().any(|id| message.matched_by(id)) {
                        continue;
                    }
                    let mut properties = record.properties.clone();
                    for stale in [keys::DELAY, keys::RECONSUME_TIME, keys::MAX_RECONSUME_TIMES] {
                        properties.remove(stale);
                    }
                    let mut send = RemotingCommand::request(request::SEND_MESSAGE_V2)
                        .with_body(record.body.clone());
                    SendMessageRequestHeader {
                        producer_group: TOOLS_CONSUMER_GROUP.to_owned(),
                        topic: retry_topic.clone(),
                        default_topic: "TBW102".into(),
                        default_topic_queue_nums: 1,
                        queue_id: 0,
                        sys_flag: 0,
                        born_timestamp_ms: record.born_timestamp_ms,
                        flag: record.flag,
                        properties: Some(properties.encode()),
                        reconsume_times: Some(0),
                        unit_mode: false,
                        max_reconsume_times: None,
                        batch: false,
                        broker_name: None,
                    }
                    .write_to(&mut send, true);
                    let sent = conn
                        .call(send, ADMIN_TIMEOUT)
                        .await
                        .map_err(|e| RunError::Task(format!("{addr}: {e}")))?;
                    if sent.code != response::SUCCESS {
                        return Err(RunError::Task(format!(
                            "resending {} to {retry_topic} on {}: code {} {}",
                            message.msg_id,
                            broker.broker_name,
                            sent.code,
                            sent.remark.unwrap_or_default()
                        )));
                    }
                    let retry_offset = sent.ext_num("queueOffset").unwrap_or(-1);
                    resent.push(ResentMessage {
                        retry_offset,
                        ..message
                    });
                }
                if next <= offset {
                    break;
                }
                offset = next;
            }
        }
    }
    Ok(resent)
}
