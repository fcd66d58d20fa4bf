//! Push delivery: handing process-queue messages to the application in batches, taking its
//! consume results, and sending failed messages back to the broker (CONSUMER_SEND_MSG_BACK,
//! else a re-send to the retry topic, else a local redelivery).

use super::*;

impl Engine {
    pub(super) fn deliver(&mut self, queue: &MessageQueue) {
        let batch_max = self.config.consume_message_batch_max_size;
        let Some(pq) = self.process_queues.get_mut(queue) else {
            return;
        };
        if self.orderly.is_some() {
            // Orderly batches are taken from the head of `msgs`, one at a time (orderly.rs).
            pq.to_deliver.clear();
            return;
        }
        while !pq.to_deliver.is_empty() {
            let take = batch_max.min(pq.to_deliver.len());
            let offsets: Vec<i64> = pq.to_deliver.drain(..take).collect();
            let messages: Vec<MessageExt> = offsets
                .iter()
                .filter_map(|o| pq.msgs.get(o).cloned())
                .collect();
            if messages.is_empty() {
                continue;
            }
            self.next_token += 1;
            let token = ConsumeToken(self.next_token);
            self.consuming
                .insert(token, (queue.clone(), pq.epoch, offsets));
            self.outputs.push_back(ClientOutput::Consume {
                token,
                queue: queue.clone(),
                messages,
            });
        }
    }

    pub fn consume_result(&mut self, now_ms: u64, token: ConsumeToken, status: ConsumeStatus) {
        let Some((queue, epoch, offsets)) = self.consuming.remove(&token) else {
            return;
        };
        if self
            .process_queues
            .get(&queue)
            .is_none_or(|pq| pq.epoch != epoch)
        {
            return;
        }
        if status == ConsumeStatus::ReconsumeLater && self.clustering() {
            for offset in offsets {
                self.send_back(now_ms, &queue, epoch, offset);
            }
        } else {
            // Broadcasting drops failed messages, as Java does.
            self.consumed(&queue, epoch, &offsets);
        }
        self.tick(now_ms);
    }

    /// `offsets` of `queue` are done: they leave the process queue and the offset advances.
    pub(in crate::client) fn consumed(
        &mut self,
        queue: &MessageQueue,
        epoch: u64,
        offsets: &[i64],
    ) {
        let Some(pq) = self
            .process_queues
            .get_mut(queue)
            .filter(|pq| pq.epoch == epoch)
        else {
            return;
        };
        pq.remove(offsets);
        if let Some(point) = pq.commit_point() {
            self.advance_offset(queue, point);
        }
    }

    pub(super) fn send_back(&mut self, now_ms: u64, queue: &MessageQueue, epoch: u64, offset: i64) {
        let Some(message) = self
            .process_queues
            .get(queue)
            .and_then(|pq| pq.msgs.get(&offset))
            .cloned()
        else {
            return;
        };
        let addr = match self.base.master_addr(&queue.broker_name) {
            Some(a) => a.to_owned(),
            None => message.record.store_host.to_string(),
        };
        let request = requests::SendBackRequest {
            offset: message.record.physical_offset,
            group: self.config.group.clone(),
            delay_level: self.config.delay_level_when_next_consume,
            origin_msg_id: message.msg_id(),
            origin_topic: message.record.topic.clone(),
            max_reconsume_times: self.config.max_reconsume_times,
        };
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            requests::consumer_send_msg_back(&request),
            now_ms + self.config.client.request_timeout_ms,
            Call::SendBack {
                queue: queue.clone(),
                epoch,
                offset,
                fallback: false,
            },
        );
    }

    /// CONSUMER_SEND_MSG_BACK failed: re-send the message to `%RETRY%<group>` with
    /// SEND_MESSAGE_V2, as Java's consumer does through its inner producer. It goes to queue 0
    /// of the retry topic on the broker the message came from.
    pub(super) fn resend_to_retry(
        &mut self,
        now_ms: u64,
        queue: &MessageQueue,
        epoch: u64,
        offset: i64,
    ) {
        let Some(message) = self
            .process_queues
            .get(queue)
            .and_then(|pq| pq.msgs.get(&offset))
            .cloned()
        else {
            return;
        };
        let Some(addr) = self.base.master_addr(&queue.broker_name).map(str::to_owned) else {
            self.redeliver_later(now_ms, queue, epoch, offset);
            return;
        };
        let record = &message.record;
        let mut properties: Properties = record
            .properties
            .iter()
            .filter(|(k, _)| *k != "MIN_OFFSET" && *k != "MAX_OFFSET")
            .collect();
        if !properties.contains(keys::ORIGIN_MESSAGE_ID) {
            properties.insert(keys::ORIGIN_MESSAGE_ID, message.msg_id());
        }
        properties.insert(keys::RETRY_TOPIC, record.topic.clone());
        properties.insert(
            keys::RECONSUME_TIME,
            (record.reconsume_times + 1).to_string(),
        );
        properties.insert(
            keys::MAX_RECONSUME_TIMES,
            self.config.max_reconsume_times.to_string(),
        );
        properties.remove(keys::TRAN_MSG);
        properties.insert(keys::DELAY, (3 + record.reconsume_times).to_string());
        let properties = crate::client::producer::java_map_order(&properties);
        let header = SendMessageRequestHeader {
            producer_group: requests::CLIENT_INNER_PRODUCER_GROUP.to_owned(),
            topic: self.retry_topic(),
            default_topic: crate::topic::AUTO_CREATE_TOPIC_KEY.to_owned(),
            default_topic_queue_nums: 4,
            queue_id: 0,
            sys_flag: 0,
            born_timestamp_ms: now_ms as i64,
            flag: record.flag,
            properties: Some(properties.encode()),
            reconsume_times: Some(record.reconsume_times + 1),
            unit_mode: false,
            max_reconsume_times: Some(self.config.max_reconsume_times),
            batch: false,
            broker_name: None,
        };
        self.rpcs.call(
            &mut self.outputs,
            &addr,
            requests::send_message(&header, record.body.clone()),
            now_ms + self.config.client.request_timeout_ms,
            Call::SendBack {
                queue: queue.clone(),
                epoch,
                offset,
                fallback: true,
            },
        );
    }

    pub(super) fn redeliver_later(
        &mut self,
        now_ms: u64,
        queue: &MessageQueue,
        epoch: u64,
        offset: i64,
    ) {
        if let Some(pq) = self
            .process_queues
            .get_mut(queue)
            .filter(|pq| pq.epoch == epoch)
        {
            pq.redeliver.push((now_ms + REDELIVER_DELAY_MS, offset));
        }
    }

    pub(super) fn on_send_back(
        &mut self,
        now_ms: u64,
        queue: MessageQueue,
        epoch: u64,
        offset: i64,
        fallback: bool,
        ok: bool,
    ) {
        if ok {
            self.consumed(&queue, epoch, &[offset]);
        } else if !fallback {
            self.resend_to_retry(now_ms, &queue, epoch, offset);
        } else {
            self.redeliver_later(now_ms, &queue, epoch, offset);
        }
    }
}
