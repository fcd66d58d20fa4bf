//! Pullers of `vostok bench consume` and `e2e`: one pull loop per queue, PULL_MESSAGE with an
//! explicit subscription (`*`), records decoded as a client decodes them.
//!
//! * Draining (`consume`): from each queue's min offset up to the max offset seen at the start,
//!   without long polling; the rate is messages decoded per second.
//! * Following (`e2e`): from the max offset at the start, long polling, until told to stop; each
//!   message's end-to-end latency is now minus the send time stamped in its body.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use vostok_core::message::record::MessageRecord;
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::headers::{pull_sys_flag, PullMessageRequestHeader};
use vostok_core::remoting::RemotingCommand;

use super::direct::Conn;
use super::produce::{epoch_us, stamp_of};
use super::stats::Recorder;

/// How long a following pull may be held by the broker.
const SUSPEND_MS: i64 = 1000;

/// One queue to pull.
#[derive(Clone, Debug)]
pub struct PullTarget {
    pub topic: String,
    pub queue_id: i32,
    /// First offset to pull.
    pub from: i64,
    /// Stop at this offset (draining); `None`: follow until stopped.
    pub until: Option<i64>,
}

/// Shared settings of the pull loops.
#[derive(Clone)]
pub struct PullPlan {
    pub group: String,
    /// `maxMsgNums` per pull.
    pub batch: i32,
    pub timeout: Duration,
    /// Stop once this many messages were pulled in all.
    pub count: Option<u64>,
    pub stop: Arc<AtomicBool>,
}

fn pull_request(plan: &PullPlan, target: &PullTarget, offset: i64) -> RemotingCommand {
    let follow = target.until.is_none();
    let header = PullMessageRequestHeader {
        consumer_group: plan.group.clone(),
        topic: target.topic.clone(),
        queue_id: target.queue_id,
        queue_offset: offset,
        max_msg_nums: plan.batch,
        sys_flag: pull_sys_flag::SUBSCRIPTION | if follow { pull_sys_flag::SUSPEND } else { 0 },
        commit_offset: 0,
        suspend_timeout_ms: SUSPEND_MS,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let mut cmd = RemotingCommand::request(request::PULL_MESSAGE);
    header.write_to(&mut cmd);
    cmd
}

/// Decodes the stored records of a pull (or POP) body; returns (messages, body bytes) and
/// feeds each message's end-to-end latency to `e2e`. Stops at the first malformed record.
pub(super) fn decode_records(body: &Bytes, e2e: Option<&Recorder>) -> (u64, u64) {
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut pos = 0usize;
    while body.len() - pos >= 4 {
        let size = i32::from_be_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]);
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        if size < 4 || body.len() - pos < size {
            break;
        }
        let Ok(record) = MessageRecord::decode(&body.slice(pos..pos + size), false) else {
            break;
        };
        pos += size;
        n += 1;
        bytes += record.body.len() as u64;
        if let (Some(e2e), Some(sent)) = (e2e, stamp_of(&record.body)) {
            let us = epoch_us().saturating_sub(sent);
            e2e.record_ok(Duration::from_micros(us), 1, record.body.len() as u64);
        }
    }
    (n, bytes)
}

/// Pulls one queue until its end, the count, or the stop flag.
pub async fn pull_queue(
    conn: Arc<Conn>,
    plan: PullPlan,
    target: PullTarget,
    pulls: Arc<Recorder>,
    e2e: Option<Arc<Recorder>>,
) {
    let mut offset = target.from;
    let timeout = plan.timeout + Duration::from_millis(SUSPEND_MS as u64);
    loop {
        if plan.stop.load(Ordering::Relaxed)
            || target.until.is_some_and(|end| offset >= end)
            || plan.count.is_some_and(|c| pulls.messages() >= c)
        {
            return;
        }
        let t = Instant::now();
        let reply = match conn
            .call(pull_request(&plan, &target, offset), timeout)
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!("pull failed: {e}");
                pulls.record_send_failed();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let next = reply.ext_num::<i64>("nextBeginOffset").ok();
        match reply.code {
            response::SUCCESS => {
                let (n, bytes) = decode_records(&reply.body, e2e.as_deref());
                pulls.record_ok(t.elapsed(), n, bytes);
                offset = next.unwrap_or(offset + n as i64);
            }
            response::PULL_NOT_FOUND
            | response::PULL_RETRY_IMMEDIATELY
            | response::PULL_OFFSET_MOVED => {
                let moved = next.is_some_and(|n| n != offset);
                offset = next.unwrap_or(offset);
                if target.until.is_some() && !moved && reply.code == response::PULL_NOT_FOUND {
                    // Draining a backlog that is shorter than announced: nothing more comes.
                    return;
                }
            }
            code => {
                tracing::debug!(code, remark = ?reply.remark, "pull answered with an error");
                pulls.record_response_failed();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use vostok_core::message::properties::Properties;

    #[test]
    fn decodes_back_to_back_records_and_their_latency() {
        let host: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut body = bytes::BytesMut::new();
        for i in 0..3 {
            let record = MessageRecord {
                queue_id: 0,
                flag: 0,
                queue_offset: i,
                physical_offset: 0,
                sys_flag: 0,
                born_timestamp_ms: 0,
                born_host: host,
                store_timestamp_ms: 0,
                store_host: host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: super::super::produce::stamped_body(&Bytes::from(vec![0u8; 100])),
                topic: "T".into(),
                properties: Properties::new(),
            };
            record.encode(&mut body).unwrap();
        }
        body.extend_from_slice(&[0, 0, 0]);
        let e2e = Recorder::new();
        assert_eq!(decode_records(&body.freeze(), Some(&e2e)), (3, 300));
        assert_eq!(e2e.totals().ok, 3);
    }
}
