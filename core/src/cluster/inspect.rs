//! Inspection: the whole-world [`Snapshot`] and decoded CommitLog records, read from the state
//! machines' public inspection methods (or, for a down broker, what it had when it went down).

use std::collections::BTreeMap;

use super::*;

impl Cluster {
    /// The whole world at this instant.
    pub fn snapshot(&self) -> Snapshot {
        let mut nodes = vec![NodeView {
            id: NAMESRV_ID.to_owned(),
            kind: NodeKind::Namesrv,
            up: true,
            partitioned: self.partitioned.contains(NAMESRV_ID),
            state: "running".to_owned(),
            group: None,
            behaviour: None,
            addr: Some(NAMESRV_ADDR.to_owned()),
        }];
        for (id, node) in &self.brokers {
            nodes.push(NodeView {
                id: id.clone(),
                kind: NodeKind::Broker,
                up: node.broker.is_some(),
                partitioned: self.partitioned.contains(id),
                state: if node.broker.is_some() {
                    "running"
                } else {
                    "killed"
                }
                .to_owned(),
                group: None,
                behaviour: None,
                addr: Some(node.addr.clone()),
            });
        }
        for (id, client) in &self.clients {
            nodes.push(NodeView {
                id: id.clone(),
                kind: client.kind,
                up: client.running(),
                partitioned: self.partitioned.contains(id),
                state: match client.state {
                    ClientState::Running => "running",
                    ClientState::Stopped => "stopped",
                    ClientState::Killed => "killed",
                }
                .to_owned(),
                group: client.group.clone(),
                behaviour: matches!(client.kind, NodeKind::Consumer | NodeKind::PopConsumer)
                    .then_some(client.behaviour),
                addr: None,
            });
        }

        // (topic, broker, queue id) → (min, max), from live stores or what a dead broker had.
        let mut queues: BTreeMap<(String, String, i32), (u64, u64)> = BTreeMap::new();
        for (id, node) in &self.brokers {
            match &node.broker {
                Some(broker) => {
                    let store = broker.store();
                    for (topic, config) in broker.topics() {
                        if !shown_topic(topic) {
                            continue;
                        }
                        let count = config.read_queue_nums.max(config.write_queue_nums) as i32;
                        for queue_id in 0..count {
                            queues.insert(
                                (topic.clone(), id.clone(), queue_id),
                                (
                                    store.min_offset(topic, queue_id).0,
                                    store.max_offset(topic, queue_id).0,
                                ),
                            );
                        }
                    }
                }
                None => {
                    for ((topic, queue_id), range) in &node.cache.queues {
                        queues.insert((topic.clone(), id.clone(), *queue_id), *range);
                    }
                }
            }
        }
        let mut topics: BTreeMap<String, Vec<TopicQueueView>> = BTreeMap::new();
        for ((topic, broker, queue_id), (min, max)) in &queues {
            topics
                .entry(topic.clone())
                .or_default()
                .push(TopicQueueView {
                    broker: broker.clone(),
                    queue_id: *queue_id,
                    min_offset: *min,
                    max_offset: *max,
                });
        }
        let topics: Vec<TopicView> = topics
            .into_iter()
            .map(|(name, queues)| TopicView { name, queues })
            .collect();

        let mut groups = Vec::new();
        for (name, state) in &self.groups {
            let members: Vec<(&String, &ClientNode)> = self
                .clients
                .iter()
                .filter(|(_, c)| c.group.as_deref() == Some(name.as_str()) && c.running())
                .collect();
            let retry_topic = format!("{RETRY_GROUP_TOPIC_PREFIX}{name}");
            let dlq_topic = format!("{DLQ_GROUP_TOPIC_PREFIX}{name}");
            let mut group_queues = Vec::new();
            let mut retry_messages = 0;
            let mut dlq_messages = 0;
            for ((topic, broker, queue_id), (_, max)) in &queues {
                if *topic == dlq_topic {
                    dlq_messages += max;
                    continue;
                }
                if *topic == retry_topic {
                    retry_messages += max;
                } else if topic != TOPIC {
                    continue;
                }
                let queue = MessageQueue::new(topic.clone(), broker.clone(), *queue_id);
                let owners: Vec<String> = members
                    .iter()
                    .filter(|(_, c)| c.assigned.contains(&queue))
                    .map(|(id, _)| (*id).clone())
                    .collect();
                let committed = self.committed_offset(name, topic, broker, *queue_id);
                let max = *max as i64;
                group_queues.push(GroupQueueView {
                    broker: broker.clone(),
                    topic: topic.clone(),
                    queue_id: *queue_id,
                    owner: owners.first().cloned(),
                    owners,
                    committed_offset: committed,
                    max_offset: max,
                    lag: (max - committed).max(0),
                });
            }
            groups.push(GroupView {
                name: name.clone(),
                strategy: state.strategy,
                consumers: members.iter().map(|(id, _)| (*id).clone()).collect(),
                queues: group_queues,
                retry_messages,
                dlq_messages,
            });
        }

        let brokers = self
            .brokers
            .iter()
            .map(|(id, node)| self.broker_view(id, node))
            .collect();

        let in_flight = self
            .in_flight
            .values()
            .filter(|f| matches!(f.payload, Payload::Command(_)))
            .map(|f| FrameView {
                from: f.from.clone(),
                to: f.to.clone(),
                code: f.code,
                is_response: f.is_response,
                opaque: f.opaque,
                sent_ms: f.sent_ms,
                deliver_ms: f.deliver_ms,
            })
            .collect();

        Snapshot {
            now_ms: self.now_ms,
            seed: self.seed,
            scenario: self.scenario.clone(),
            nodes,
            topics,
            groups,
            brokers,
            in_flight,
            pop_groups: self.pop_group_views(&queues),
        }
    }

    pub(super) fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        broker: &str,
        queue_id: i32,
    ) -> i64 {
        let Some(node) = self.brokers.get(broker) else {
            return 0;
        };
        let offset = match &node.broker {
            Some(b) => b.consumer_offset(topic, group, queue_id),
            None => node
                .cache
                .offsets
                .get(&(group.to_owned(), topic.to_owned(), queue_id))
                .copied(),
        };
        offset.unwrap_or(0).max(0)
    }

    fn broker_view(&self, id: &str, node: &BrokerNode) -> BrokerView {
        let Some(broker) = &node.broker else {
            return BrokerView {
                id: id.to_owned(),
                up: false,
                written_offset: node.cache.written_offset,
                flushed_offset: node.cache.flushed_offset,
                min_offset: node.cache.min_offset,
                segments: Vec::new(),
                consume_queues: node
                    .cache
                    .queues
                    .iter()
                    .map(|((topic, queue_id), (min, max))| ConsumeQueueView {
                        topic: topic.clone(),
                        queue_id: *queue_id,
                        min_offset: *min,
                        max_offset: *max,
                        entries: Vec::new(),
                    })
                    .collect(),
            };
        };
        let store = broker.store();
        let mut consume_queues = Vec::new();
        for (topic, config) in broker.topics() {
            if !shown_topic(topic) {
                continue;
            }
            let count = config.read_queue_nums.max(config.write_queue_nums) as i32;
            for queue_id in 0..count {
                let min = store.min_offset(topic, queue_id).0;
                let max = store.max_offset(topic, queue_id).0;
                let from = max.saturating_sub(CQ_ENTRIES_SHOWN).max(min);
                let entries = store
                    .consume_queue_units(topic, queue_id, QueueOffset(from), max - from)
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(i, unit)| CqEntryView {
                        queue_offset: from + i as u64,
                        commitlog_offset: unit.commitlog_offset.max(0) as u64,
                        size: unit.size_bytes.max(0) as u64,
                    })
                    .collect();
                consume_queues.push(ConsumeQueueView {
                    topic: topic.clone(),
                    queue_id,
                    min_offset: min,
                    max_offset: max,
                    entries,
                });
            }
        }
        BrokerView {
            id: id.to_owned(),
            up: true,
            written_offset: store.written_offset().0,
            flushed_offset: store.durable_offset().0,
            min_offset: store.min_commitlog_offset().0,
            segments: store
                .commitlog_segments()
                .into_iter()
                .map(|(start, size)| SegmentView { start, size })
                .collect(),
            consume_queues,
        }
    }

    /// Up to `max_records` records of a running broker's CommitLog from `from_offset` (a record
    /// start, such as an event's `commitlog_offset`; an offset before the first record starts at
    /// the first). Empty for a down or unknown broker.
    pub fn commitlog(&self, broker: &str, from_offset: u64, max_records: usize) -> Vec<RecordView> {
        let Some(b) = self.brokers.get(broker).and_then(|b| b.broker.as_ref()) else {
            return Vec::new();
        };
        let store = b.store();
        let from = from_offset.max(store.min_commitlog_offset().0);
        read_records(b, from, store.written_offset().0, max_records)
            .records
            .into_iter()
            .map(|(offset, size, record)| RecordView {
                commitlog_offset: offset,
                size,
                msg_id: record_msg_id(&record),
                tags: record.properties.get(keys::TAGS).map(str::to_owned),
                keys: record.properties.get(keys::KEYS).map(str::to_owned),
                body_preview: String::from_utf8_lossy(&record.body[..record.body.len().min(64)])
                    .into_owned(),
                born_ms: record.born_timestamp_ms - EPOCH_MS as i64,
                store_ms: record.store_timestamp_ms - EPOCH_MS as i64,
                topic: record.topic,
                queue_id: record.queue_id,
                queue_offset: record.queue_offset,
                reconsume_times: record.reconsume_times,
            })
            .collect()
    }
}

/// Topics a snapshot shows: the scenario's, and the groups' retry and dead-letter topics.
pub(super) fn shown_topic(topic: &str) -> bool {
    topic == TOPIC
        || topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
        || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
}

pub(super) struct ReadRecords {
    /// (CommitLog offset, size, record).
    pub(super) records: Vec<(u64, u64, MessageRecord)>,
    /// Where reading stopped.
    pub(super) next_offset: u64,
}

/// Decodes the CommitLog records in `[from, until)`, skipping each segment's blank filler.
pub(super) fn read_records(
    broker: &Broker<MemStorage>,
    from: u64,
    until: u64,
    max_records: usize,
) -> ReadRecords {
    let store = broker.store();
    let segments = store.commitlog_segments();
    let mut records = Vec::new();
    let mut offset = from;
    while offset < until && records.len() < max_records {
        match store.read_record(CommitLogOffset(offset)) {
            Ok(Some(bytes)) => {
                let size = bytes.len() as u64;
                match MessageRecord::decode(&bytes, false) {
                    Ok(record) => records.push((offset, size, record)),
                    Err(_) => break,
                }
                offset += size.max(1);
            }
            _ => {
                // The end of a segment (its blank filler) or a position inside one: go on at
                // the next segment.
                match segments.iter().find(|(start, _)| *start > offset) {
                    Some((start, _)) => offset = *start,
                    None => break,
                }
            }
        }
    }
    ReadRecords {
        records,
        next_offset: offset,
    }
}
