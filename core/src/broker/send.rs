//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320), and the group commit
//! that holds SYNC_FLUSH answers until their bytes are durable.
//!
//! Checks run in Java's order (REMOTING.md §3.3): topic name (29), forbidden topics (16),
//! existence / auto-creation (17), write permission (16), queue id (29), content sizes (13).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::ids::{decode_batch, offset_msg_id};
use super::topics::{is_send_forbidden_topic, validate_topic};
use super::{Broker, BrokerOutput, FlushDiskType, WaitingSend};
use crate::message::{keys, sys_flag, MessageRecord, Properties};
use crate::remoting::codes::response;
use crate::remoting::headers::{SendMessageRequestHeader, SendMessageResponseHeader};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::{CommitLogOffset, PutResult, SegmentStorage};
use crate::topic::{perm, DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};
use crate::ConnId;

/// Largest encoded property string a record can carry (int16 length).
const MAX_PROPERTIES_BYTES: usize = 32_767;
/// Region id reported to producers (`regionId`).
pub(super) const REGION_ID: &str = "DefaultRegion";
/// Reconsume limit of a retry send that names none (`retryMaxTimes`).
const DEFAULT_MAX_RECONSUME_TIMES: i32 = 16;
/// Clients older than this do not send a meaningful `maxReconsumeTimes` (V3_4_9).
const MAX_RECONSUME_TIMES_MIN_VERSION: i32 = 121;

fn illegal(req: &RemotingCommand, remark: String) -> RemotingCommand {
    RemotingCommand::response_to(req, response::MESSAGE_ILLEGAL, Some(remark))
}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn store_host(&self) -> SocketAddr {
        SocketAddr::new(self.config.broker_ip1, self.config.listen_port)
    }

    pub(super) fn born_host(&self, conn: ConnId) -> SocketAddr {
        self.peers
            .get(&conn)
            .copied()
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }

    /// Adds what the broker stamps on every stored message (REMOTING.md §3.3 step 8).
    fn stamp_properties(&mut self, now_ms: u64, properties: &mut Properties) -> String {
        properties.remove("POP_CK");
        // MSG_REGION and TRACE_ON are stored, as RocketMQ 5.x's broker stores them: its
        // SendMessageProcessor calls AbstractSendMessageProcessor.buildMsgContext on every send,
        // which writes both into the request's properties (4.9.x did so only when a send hook
        // was registered). Consumers need them too: rocketmq-client-rust drops the consume
        // trace of a message without a region.
        if properties.get(keys::MSG_REGION).is_none() {
            properties.insert(keys::MSG_REGION, REGION_ID);
        }
        if properties.get(keys::TRACE_ON).is_none() {
            properties.insert(keys::TRACE_ON, "true");
        }
        properties.insert(keys::CLUSTER, self.config.broker_cluster_name.clone());
        match properties.get(keys::UNIQ_KEY) {
            Some(key) if !key.is_empty() => key.to_owned(),
            _ => {
                let key = self.uniq_keys.next(now_ms);
                properties.insert(keys::UNIQ_KEY, key.clone());
                key
            }
        }
    }

    /// Every send code.
    pub(super) fn handle_send(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let h = SendMessageRequestHeader::parse(req)?;
        if let Some(reason) = &self.durability_failure {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::SERVICE_NOT_AVAILABLE,
                Some(format!(
                    "the store cannot make messages durable ({reason}); restart the broker once the disk is healthy"
                )),
            )));
        }
        // RocketMQ's checkStoreStatus: a slave's store takes no puts.
        if self.is_slave() {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::SERVICE_NOT_AVAILABLE,
                Some(self.disk_full_remark()),
            )));
        }
        let mut topic_name = h.topic.clone();
        // RocketMQ's msgCheck: a broker whose brokerPermission lacks write takes no sends.
        if self.config.broker_permission & perm::WRITE == 0 {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::NO_PERMISSION,
                Some(format!(
                    "the broker[{}] sending message is forbidden",
                    self.config.broker_ip1
                )),
            )));
        }
        if let Err(reason) = validate_topic(&topic_name) {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::INVALID_PARAMETER,
                Some(reason),
            )));
        }
        if is_send_forbidden_topic(&topic_name) {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::NO_PERMISSION,
                Some(format!(
                    "Sending message to topic[{topic_name}] is forbidden."
                )),
            )));
        }
        let topic = match self.topic_for_send(
            now_ms,
            &topic_name,
            &h.default_topic,
            h.default_topic_queue_nums,
        ) {
            Ok(t) => t,
            Err((code, remark)) => {
                return Ok(Some(RemotingCommand::response_to(req, code, Some(remark))))
            }
        };
        if topic.perm & perm::WRITE == 0 {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::NO_PERMISSION,
                Some(format!(
                    "the topic[{topic_name}] sending message is forbidden"
                )),
            )));
        }
        let queue_limit = topic.write_queue_nums.max(topic.read_queue_nums) as i64;
        if h.queue_id as i64 >= queue_limit {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::INVALID_PARAMETER,
                Some(format!(
                    "request queueId[{}] is illegal, topic: {topic_name} writeQueueNums: {} readQueueNums: {}",
                    h.queue_id, topic.write_queue_nums, topic.read_queue_nums
                )),
            )));
        }
        let mut queue_id = if h.queue_id < 0 {
            self.rng.below(u64::from(topic.write_queue_nums.max(1))) as i32
        } else {
            h.queue_id
        };
        let max_body = self.store.config().max_message_size_bytes as usize;
        if req.body.len() > max_body {
            return Ok(Some(illegal(
                req,
                format!(
                    "the message body size {} bytes exceeds the limit of {max_body} bytes",
                    req.body.len()
                ),
            )));
        }
        let header_properties = Properties::parse(h.properties.as_deref().unwrap_or(""));
        let wait_store = header_properties.get(keys::WAIT) != Some("false");
        // A half message waits in the transaction half topic until END_TRANSACTION or the
        // check-back decides ([`super::transaction`]).
        let transactional = header_properties.get(keys::TRAN_MSG) == Some("true")
            || h.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_PREPARED;
        let message_type = super::metrics::MessageType::of_send(transactional, &header_properties);
        if transactional && h.batch {
            return Ok(Some(illegal(
                req,
                "batch messages do not support transactions".to_owned(),
            )));
        }

        let mut sys_flag = h.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
        if topic.topic_filter_type == "MULTI_TAG" {
            sys_flag |= sys_flag::MULTI_TAGS;
        }
        let born_host = self.born_host(conn);
        let store_host = self.store_host();
        let base = MessageRecord {
            queue_id,
            flag: h.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag,
            born_timestamp_ms: h.born_timestamp_ms,
            born_host,
            store_timestamp_ms: now_ms as i64,
            store_host,
            reconsume_times: h.reconsume_times.unwrap_or(0),
            prepared_transaction_offset: 0,
            body: req.body.clone(),
            topic: topic_name.clone(),
            properties: Properties::new(),
        };

        if let Some(refused) = self.disk_full_response(req) {
            return Ok(Some(refused));
        }
        let (puts, transaction_id) = if h.batch {
            if topic_name.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
                return Ok(Some(illegal(
                    req,
                    format!("batch messages are not allowed for retry topic {topic_name}"),
                )));
            }
            let entries = match decode_batch(&req.body) {
                Ok(e) if !e.is_empty() => e,
                Ok(_) => return Ok(Some(illegal(req, "the batch body is empty".to_owned()))),
                Err(reason) => {
                    return Ok(Some(illegal(
                        req,
                        format!("the batch body is malformed: {reason}"),
                    )))
                }
            };
            let mut records = Vec::with_capacity(entries.len());
            for entry in entries {
                let mut properties = entry.properties;
                self.stamp_properties(now_ms, &mut properties);
                if properties.encode().len() > MAX_PROPERTIES_BYTES {
                    return Ok(Some(illegal(
                        req,
                        format!("the message properties exceed {MAX_PROPERTIES_BYTES} bytes"),
                    )));
                }
                records.push(MessageRecord {
                    flag: entry.flag,
                    body: entry.body,
                    properties,
                    ..base.clone()
                });
            }
            match self.store.put_batch(records) {
                Ok(puts) => (puts, None),
                Err(e) => return Ok(Some(self.store_error_response(req, &e))),
            }
        } else {
            let mut properties = header_properties;
            // A retry beyond its reconsume limit goes to the group's dead-letter queue, and so
            // does any retry of a group holding queue locks (an orderly group: its consumers
            // send to the retry topic only once their own limit is reached), as Java's
            // handleRetryAndDLQ does.
            if let Some(group) = topic_name.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
                let max = match h.max_reconsume_times {
                    Some(m) if req.version >= MAX_RECONSUME_TIMES_MIN_VERSION => m,
                    _ => DEFAULT_MAX_RECONSUME_TIMES,
                };
                if h.reconsume_times.unwrap_or(0) > max
                    || self.locks.group_has_live_lock(now_ms, group)
                {
                    self.metrics.on_dlq(group, &topic_name);
                    topic_name = format!("{DLQ_GROUP_TOPIC_PREFIX}{group}");
                    self.ensure_group_topic(now_ms, &topic_name);
                    queue_id = 0;
                    properties.remove(keys::DELAY);
                }
            }
            let uniq_key = self.stamp_properties(now_ms, &mut properties);
            // Not stored: its answer was read above (`wait_store`), and RocketMQ 4.9.8 drops it
            // from a single message's stored properties to save its 9 bytes (a batch's entries
            // keep theirs, as there).
            properties.remove(keys::WAIT);
            if properties.encode().len() > MAX_PROPERTIES_BYTES {
                return Ok(Some(illegal(
                    req,
                    format!("the message properties exceed {MAX_PROPERTIES_BYTES} bytes"),
                )));
            }
            let record = MessageRecord {
                queue_id,
                topic: topic_name.clone(),
                properties,
                ..base
            };
            let put = if transactional {
                self.put_half_message(now_ms, record)
                    .map_err(super::timer::TimerPutError::Store)
            } else {
                self.put_with_timer_routing(now_ms, record)
            };
            match put {
                Ok(put) => (vec![put], Some(uniq_key)),
                Err(super::timer::TimerPutError::Rejected { code, remark }) => {
                    return Ok(Some(RemotingCommand::response_to(req, code, Some(remark))))
                }
                Err(super::timer::TimerPutError::Store(e)) => {
                    return Ok(Some(self.store_error_response(req, &e)))
                }
            }
        };

        let stored_bytes = puts.iter().map(|p| u64::from(p.size_bytes)).sum();
        let system = self.is_system_topic(&topic_name);
        self.stats.on_put(
            now_ms,
            &self.config.broker_cluster_name,
            &topic_name,
            system,
            puts.len() as u64,
            stored_bytes,
        );
        self.metrics
            .on_put(&topic_name, message_type, puts.len() as u64, stored_bytes);
        self.wake_held_pulls(now_ms, &topic_name, queue_id);
        let response = self.send_response(req, &puts, queue_id, transaction_id);
        let end = puts
            .iter()
            .map(|p| p.physical_offset.0 + u64::from(p.size_bytes))
            .max()
            .unwrap_or(0);
        let sync_flush = self.config.flush_disk_type == FlushDiskType::SyncFlush;
        let sync_master = self.config.replication.needed_slave_acks() > 0;
        if wait_store && !req.is_oneway() && (sync_flush || sync_master) {
            let mut response = response;
            let mut replica_deadline_ms = None;
            if sync_master {
                // RocketMQ 4.x: too few slaves close enough → 11 at once (the message stays
                // stored); otherwise wait up to slaveTimeout for their acks.
                match self.slave_not_available(end) {
                    Some(reason) => {
                        response.code = response::SLAVE_NOT_AVAILABLE;
                        response.remark = Some(reason);
                    }
                    None => {
                        replica_deadline_ms =
                            Some(now_ms + self.config.replication.slave_timeout_ms)
                    }
                }
            }
            if sync_flush || replica_deadline_ms.is_some() {
                self.waiting_sends.push(WaitingSend {
                    end: CommitLogOffset(end),
                    conn,
                    response,
                    durable_needed: sync_flush,
                    replica_deadline_ms,
                    replica_failed: false,
                });
                self.release_durable_sends();
                if sync_flush {
                    self.request_sync_if_idle();
                } else {
                    self.after_async_put();
                }
                return Ok(None);
            }
            self.after_async_put();
            return Ok(Some(response));
        }
        if self.config.flush_disk_type == FlushDiskType::AsyncFlush {
            self.after_async_put();
        }
        Ok(Some(response))
    }

    fn send_response(
        &self,
        req: &RemotingCommand,
        puts: &[PutResult],
        queue_id: i32,
        transaction_id: Option<String>,
    ) -> RemotingCommand {
        let store_host = self.store_host();
        let msg_id = puts
            .iter()
            .map(|p| offset_msg_id(store_host, p.physical_offset.0))
            .collect::<Vec<_>>()
            .join(",");
        let mut response = RemotingCommand::response_to(req, response::SUCCESS, None);
        SendMessageResponseHeader {
            msg_id,
            queue_id,
            queue_offset: puts.first().map_or(0, |p| p.queue_offset.0 as i64),
            transaction_id,
            msg_region: REGION_ID.to_owned(),
            trace_on: true,
        }
        .write_to(&mut response);
        response
    }

    /// Answers every waiting send the store now holds durable (SYNC_FLUSH) and enough slaves
    /// acked, or whose slave wait timed out (SYNC_MASTER).
    pub(super) fn release_durable_sends(&mut self) {
        let durable = self.store.durable_offset();
        // The deliberate `ack_before_sync` defect (tests only) answers without waiting.
        let ack_early = self.config.store.defects.ack_before_sync();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_sends)
            .into_iter()
            .partition(|w| {
                let flushed = !w.durable_needed || w.end <= durable;
                let replicated =
                    w.replica_deadline_ms.is_none() || w.replica_failed || self.replicated(w.end.0);
                ack_early || (flushed && replicated)
            });
        self.waiting_sends = waiting;
        for w in ready {
            self.outputs.push_back(BrokerOutput::Send {
                conn: w.conn,
                command: w.response,
            });
        }
    }

    /// Emits one Sync covering everything written, unless one is already in flight (group
    /// commit: sends arriving meanwhile ride on the next one).
    pub(super) fn request_sync_if_idle(&mut self) {
        if self.sync_in_flight || self.durability_failure.is_some() {
            return;
        }
        if let Some(sync) = self.store.sync_request() {
            self.sync_in_flight = true;
            self.outputs.push_back(BrokerOutput::Sync(sync));
        }
    }
}
