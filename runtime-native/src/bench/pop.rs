//! POP consumers of `vostok bench consume --pop` and `e2e --pop`: each loop sends POP_MESSAGE
//! for any queue of its topics (`queueId` −1, the broker picks) and acks every answer with one
//! BATCH_ACK_MESSAGE built from its offset lists, as RocketMQ's POP clients do.
//!
//! * Draining: `pollTime` 0; a loop ends once every topic answered "nothing" in a row.
//! * Following: long polling (`pollTime` 1 s) until told to stop; each message's end-to-end
//!   latency is now minus the send time stamped in its body.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::pop::{
    parse_msg_offset_info, parse_start_offset_info, BatchAck, BatchAckMessageRequestBody,
    PopMessageRequestHeader, PopMessageResponseHeader, INIT_MODE_MIN,
};
use vostok_core::remoting::RemotingCommand;

use super::consume::decode_records;
use super::direct::Conn;
use super::produce::epoch_us;
use super::stats::Recorder;

/// How long a popped message stays invisible: far longer than any run's ack takes.
const INVISIBLE_MS: i64 = 60_000;
/// How long a following POP may be held by the broker.
const FOLLOW_POLL_MS: i64 = 1_000;

/// Shared settings of the POP loops.
#[derive(Clone)]
pub struct PopPlan {
    pub group: String,
    pub topics: Vec<String>,
    /// `maxMsgNums` per POP (at most 32).
    pub batch: i32,
    pub timeout: Duration,
    /// Follow with long polling (e2e) rather than drain.
    pub follow: bool,
    /// Stop once this many messages were popped in all.
    pub count: Option<u64>,
    pub stop: Arc<AtomicBool>,
}

fn pop_request(plan: &PopPlan, topic: &str) -> RemotingCommand {
    let header = PopMessageRequestHeader {
        consumer_group: plan.group.clone(),
        topic: topic.to_owned(),
        queue_id: -1,
        max_msg_nums: plan.batch.clamp(1, 32),
        invisible_time_ms: INVISIBLE_MS,
        poll_time_ms: if plan.follow { FOLLOW_POLL_MS } else { 0 },
        born_time_ms: (epoch_us() / 1_000) as i64,
        init_mode: INIT_MODE_MIN,
        exp_type: Some("TAG".into()),
        exp: Some("*".into()),
        order: false,
        attempt_id: None,
    };
    let mut cmd = RemotingCommand::request(request::POP_MESSAGE);
    header.write_to(&mut cmd);
    cmd
}

/// The batch ack of everything one POP answer handed out: one entry per queue read.
fn batch_ack(group: &str, topic: &str, answer: &RemotingCommand) -> Option<RemotingCommand> {
    let header = PopMessageResponseHeader::parse(answer).ok()?;
    let starts = parse_start_offset_info(header.start_offset_info.as_deref()?)?;
    let lists = parse_msg_offset_info(header.msg_offset_info.as_deref()?)?;
    let acks = lists
        .iter()
        .filter_map(|((flag, queue_id), offsets)| {
            let start = *starts.get(&(*flag, *queue_id))?;
            Some(BatchAck {
                consumer_group: group.to_owned(),
                topic: topic.to_owned(),
                retry: *flag,
                start_offset: start,
                queue_id: *queue_id,
                revive_qid: header.revive_qid,
                pop_time_ms: header.pop_time_ms,
                invisible_time_ms: header.invisible_time_ms,
                bit_set: BatchAck::bits_of(start, offsets),
            })
        })
        .collect::<Vec<_>>();
    if acks.is_empty() {
        return None;
    }
    let body = BatchAckMessageRequestBody {
        acks,
        broker_name: None,
    };
    Some(
        RemotingCommand::request(request::BATCH_ACK_MESSAGE)
            .with_body(serde_json::to_vec(&body).ok()?),
    )
}

/// Pops (and acks) until drained, the count, or the stop flag. Each POP plus its ack is one
/// measured round trip.
pub async fn pop_loop(
    conn: Arc<Conn>,
    plan: PopPlan,
    pops: Arc<Recorder>,
    e2e: Option<Arc<Recorder>>,
) {
    let timeout = plan.timeout + Duration::from_millis(FOLLOW_POLL_MS as u64);
    let mut empty_in_a_row = 0usize;
    let mut turn = 0usize;
    loop {
        if plan.stop.load(Ordering::Relaxed)
            || plan.count.is_some_and(|c| pops.messages() >= c)
            || (!plan.follow && empty_in_a_row >= plan.topics.len())
        {
            return;
        }
        let topic = &plan.topics[turn % plan.topics.len()];
        turn += 1;
        let t = Instant::now();
        let answer = match conn.call(pop_request(&plan, topic), timeout).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!("pop failed: {e}");
                pops.record_send_failed();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match answer.code {
            response::SUCCESS => {
                empty_in_a_row = 0;
                let (n, bytes) = decode_records(&answer.body, e2e.as_deref());
                if let Some(ack) = batch_ack(&plan.group, topic, &answer) {
                    match conn.call(ack, plan.timeout).await {
                        Ok(a) if a.code == response::SUCCESS => {}
                        _ => pops.record_response_failed(),
                    }
                }
                pops.record_ok(t.elapsed(), n, bytes);
            }
            response::POLLING_TIMEOUT | response::PULL_NOT_FOUND => empty_in_a_row += 1,
            response::POLLING_FULL => tokio::time::sleep(Duration::from_millis(100)).await,
            code => {
                tracing::debug!(code, remark = ?answer.remark, "pop answered with an error");
                pops.record_response_failed();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vostok_core::remoting::pop::RetryFlag;

    #[test]
    fn one_batch_ack_entry_per_queue_read() {
        let answer = RemotingCommand::request(0)
            .with_ext("popTime", 1_000)
            .with_ext("invisibleTime", 60_000)
            .with_ext("reviveQid", 3)
            .with_ext("restNum", 0)
            .with_ext("startOffsetInfo", "0 1 10;2 0 4")
            .with_ext("msgOffsetInfo", "0 1 10,12;2 0 4");
        let ack = batch_ack("G", "T", &answer).expect("something to ack");
        let body: BatchAckMessageRequestBody = serde_json::from_slice(&ack.body).unwrap();
        assert_eq!(body.acks.len(), 2);
        let normal = body.acks.iter().find(|a| a.queue_id == 1).unwrap();
        assert_eq!(normal.offsets(), vec![10, 12]);
        assert_eq!((normal.revive_qid, normal.pop_time_ms), (3, 1_000));
        let retry = body.acks.iter().find(|a| a.queue_id == 0).unwrap();
        assert_eq!(retry.retry, RetryFlag::RetryV2);
        assert_eq!(
            retry.topic, "T",
            "the group's topic, the flag names the retry topic"
        );
    }
}
