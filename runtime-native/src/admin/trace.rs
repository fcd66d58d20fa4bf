//! queryMsgTraceById: QUERY_MESSAGE (12) by the message id on the trace topic of every broker
//! holding it, the trace messages' bodies decoded ([`vostok_core::message::trace`]) and printed
//! as mqadmin prints them: the send (Pub) rows, then each consumer group's (Sub) rows.

use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::RemotingCommand;

use super::rpc::{Admin, NamesrvArg};
use crate::RunError;

#[derive(Debug, clap::Args)]
pub struct QueryMsgTraceArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// The message id (its UNIQ_KEY, as the send returned it).
    #[arg(short = 'i', long = "msgId", value_name = "MSG_ID")]
    pub msg_id: String,
    /// The trace topic.
    #[arg(short = 't', long = "traceTopic", value_name = "TOPIC", default_value = vostok_core::message::trace::DEFAULT_TRACE_TOPIC)]
    pub trace_topic: String,
    /// Only trace messages stored from this time (epoch ms).
    #[arg(
        short = 'b',
        long = "beginTimestamp",
        value_name = "MS",
        default_value_t = 0
    )]
    pub begin_timestamp_ms: i64,
    /// Only trace messages stored until this time (epoch ms).
    #[arg(short = 'e', long = "endTimestamp", value_name = "MS", default_value_t = i64::MAX)]
    pub end_timestamp_ms: i64,
    /// At most this many trace messages per broker.
    #[arg(long = "num", value_name = "N", default_value_t = 64)]
    pub max_num: i32,
}

pub async fn run(args: QueryMsgTraceArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let rows = query_msg_trace(
        &admin,
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
    admin: &Admin,
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

    let route = admin.route(trace_topic).await?;
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
        let answer = admin.call(addr, ask).await?;
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
        out!("{a:<10} {b:<20} {c:<20} {d:<20} {e:<10} {f:<10}");
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
        out!();
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
        out!();
    }
}
