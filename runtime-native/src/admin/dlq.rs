//! resendDlq: reads `%DLQ%<group>` on every broker holding it (PULL_MESSAGE as the tools
//! group, no offset committed) and sends the chosen messages back to `%RETRY%<group>` with
//! their reconsume count reset, so that group — and only that group — consumes them again,
//! under their original topic (`RETRY_TOPIC`). The DLQ keeps its copy, as RocketMQ's does.

use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::RemotingCommand;

use super::message::{pull, queue_offset, TOOLS_CONSUMER_GROUP};
use super::rpc::{Admin, NamesrvArg};
use crate::RunError;

#[derive(Debug, clap::Args)]
pub struct ResendDlqArgs {
    #[command(flatten)]
    pub ns: NamesrvArg,
    /// Consumer group whose dead letters are resent.
    #[arg(short = 'g', long = "consumerGroup", value_name = "GROUP")]
    pub group: String,
    /// Resend only these messages (message id `UNIQ_KEY`, the original id, or the DLQ offset
    /// message id); repeatable.
    #[arg(short = 'i', long = "msgId", value_name = "MSG_ID")]
    pub msg_ids: Vec<String>,
}

pub async fn run(args: ResendDlqArgs) -> Result<(), RunError> {
    let admin = Admin::new(&args.ns)?;
    let resent = resend_dlq(&admin, &args.group, &args.msg_ids).await?;
    out!("{:<32} {:<34} #retryOffset", "#brokerName", "#msgId");
    for m in &resent {
        out!("{:<32} {:<34} {}", m.broker_name, m.msg_id, m.retry_offset);
    }
    let missing: Vec<&str> = args
        .msg_ids
        .iter()
        .filter(|id| !resent.iter().any(|m| m.matched_by(id)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(RunError::Task(format!(
            "not in %DLQ%{}: {}",
            args.group,
            missing.join(", ")
        )));
    }
    Ok(())
}

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
    admin: &Admin,
    group: &str,
    msg_ids: &[String],
) -> Result<Vec<ResentMessage>, RunError> {
    use vostok_core::message::{keys, offset_msg_id};
    use vostok_core::remoting::headers::SendMessageRequestHeader;

    let dlq_topic = format!("{}{group}", vostok_core::topic::DLQ_GROUP_TOPIC_PREFIX);
    let retry_topic = format!("{}{group}", vostok_core::topic::RETRY_GROUP_TOPIC_PREFIX);
    let route = admin.route(&dlq_topic).await?;
    let mut resent = Vec::new();
    for broker in &route.broker_datas {
        let Some(addr) = broker.broker_addrs.get(&0) else {
            continue;
        };
        let queues = route
            .queue_datas
            .iter()
            .filter(|q| q.broker_name == broker.broker_name)
            .map(|q| q.read_queue_nums)
            .max()
            .unwrap_or(0);
        for queue_id in 0..queues as i32 {
            let mut offset = queue_offset(admin, addr, &dlq_topic, queue_id, false).await?;
            let max = queue_offset(admin, addr, &dlq_topic, queue_id, true).await?;
            while offset < max {
                let (records, next, code) = pull(
                    admin,
                    addr,
                    TOOLS_CONSUMER_GROUP,
                    &dlq_topic,
                    queue_id,
                    offset,
                    DLQ_PULL_BATCH,
                )
                .await?;
                if code != response::SUCCESS {
                    return Err(RunError::Task(format!(
                        "reading {dlq_topic} on {} at offset {offset}: code {code}",
                        broker.broker_name,
                    )));
                }
                for record in records {
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
                    let sent = admin.call(addr, send).await?;
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
