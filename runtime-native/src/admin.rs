//! `vostok admin`: mqadmin-style operations against a running cluster.
//!
//! * `reset-offset` (mqadmin `resetOffsetByTime`): GET_ROUTEINFO_BY_TOPIC (105) from a
//!   NameServer, then INVOKE_BROKER_TO_RESET_OFFSET (222) to each master broker of the topic.
//!   Each broker computes the offsets, commits them and tells the group's live consumers with
//!   RESET_CONSUMER_CLIENT_OFFSET (220); they resume from there without a restart.

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
