//! INVOKE_BROKER_TO_RESET_OFFSET (222): an admin tool resets a consumer group's offsets on one
//! topic to a point in time, and the group's live consumers are told with
//! RESET_CONSUMER_CLIENT_OFFSET (220, oneway, broker → client).
//!
//! As RocketMQ's `Broker2Client.resetOffset` does it, for each write queue of the topic:
//!
//! ```text
//! committed = the group's committed offset           (none: SYSTEM_ERROR "group not exist")
//! target    = max offset             when timestamp = −1
//!           = first offset stored at or after timestamp otherwise
//! new       = target                 when isForce or target < committed
//!           = committed              otherwise
//! ```
//!
//! No live consumer channel in the group: CONSUMER_NOT_ONLINE (206). Otherwise every channel
//! gets a 220 with the table, the new offsets are committed here too (so a consumer that
//! restarts before committing starts there), and the answer is SUCCESS with the same
//! `ResetOffsetBody` (see [`crate::remoting::reset_offset`]).
//!
//! With `useServerSideResetOffset` (off by default) a group without consumers online or
//! without committed offsets can be reset as well, and a RocketMQ 5 `queueId` + `offset` pair
//! sets one queue's offset directly.

use super::{Broker, BrokerOutput};
use crate::remoting::codes::{request, response};
use crate::remoting::reset_offset::{encode_offset_table, QueueKey, ResetOffsetRequestHeader};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::SegmentStorage;
use crate::ConnId;

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn handle_invoke_reset_offset(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = ResetOffsetRequestHeader::parse(req)?;
        let error =
            |code: i32, remark: String| Ok(RemotingCommand::response_to(req, code, Some(remark)));
        let Some(queue_nums) = self.topics.topics.get(&h.topic).map(|t| t.write_queue_nums) else {
            return error(
                response::SYSTEM_ERROR,
                format!(
                    "[reset-offset] reset offset failed, no topic in this broker. topic={}",
                    h.topic
                ),
            );
        };
        let server_side = self.config.use_server_side_reset_offset;
        let only_queue = h.queue_id.filter(|q| server_side && *q >= 0);
        let mut table: Vec<(QueueKey, i64)> = Vec::new();
        for queue_id in 0..queue_nums as i32 {
            if only_queue.is_some_and(|q| q != queue_id) {
                continue;
            }
            let committed = self.offsets.query(&h.topic, &h.group, queue_id);
            if committed.is_none() && !server_side {
                return error(
                    response::SYSTEM_ERROR,
                    format!("THe consumer group <{}> not exist", h.group),
                );
            }
            let target = match (only_queue, h.offset.filter(|o| *o >= 0)) {
                (Some(_), Some(offset)) => offset,
                _ if h.timestamp_ms == -1 => self.store.max_offset(&h.topic, queue_id).0 as i64,
                _ => {
                    self.store
                        .offset_by_timestamp(&h.topic, queue_id, h.timestamp_ms)
                        .0 as i64
                }
            };
            let offset = match committed {
                Some(committed) if !h.is_force && target >= committed => committed,
                _ => target,
            };
            table.push((
                QueueKey {
                    broker_name: self.config.broker_name.clone(),
                    queue_id,
                    topic: h.topic.clone(),
                },
                offset,
            ));
        }
        let conns: Vec<ConnId> = self
            .clients
            .consumers
            .get(&h.group)
            .map(|g| g.channels.keys().copied().collect())
            .unwrap_or_default();
        if conns.is_empty() && !server_side {
            return error(
                response::CONSUMER_NOT_ONLINE,
                format!(
                    "Consumer not online, so can not reset offset, Group: {} Topic: {} Timestamp: {}",
                    h.group, h.topic, h.timestamp_ms
                ),
            );
        }
        for (queue, offset) in &table {
            self.offsets
                .commit(&h.topic, &h.group, queue.queue_id, *offset);
            // Offsets the broker computed now, told to every live consumer: new positions.
            self.recovery_fence.pass(&h.topic, queue.queue_id, &h.group);
        }
        let body = encode_offset_table(&table);
        for conn in conns {
            let mut notify = RemotingCommand::request(request::RESET_CONSUMER_CLIENT_OFFSET);
            ResetOffsetRequestHeader {
                topic: h.topic.clone(),
                group: h.group.clone(),
                timestamp_ms: h.timestamp_ms,
                is_force: h.is_force,
                queue_id: None,
                offset: None,
            }
            .write_to(&mut notify);
            notify.body = body.clone().into();
            notify.mark_oneway();
            notify.opaque = self.next_opaque();
            self.outputs.push_back(BrokerOutput::Send {
                conn,
                command: notify,
            });
        }
        let mut reply = RemotingCommand::response_to(req, response::SUCCESS, None);
        reply.body = body.into();
        Ok(reply)
    }
}
