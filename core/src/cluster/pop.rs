//! POP consumers in the world: the core's [`SimpleConsumer`] state machine, driven like a
//! RocketMQ 5 application would drive it.
//!
//! Each POP consumer keeps one receive outstanding (the broker holds it up to
//! [`POP_AWAIT_MS`] for messages) while it holds fewer than [`POP_MAX_HELD`] messages. Every
//! message received is hidden from the group for [`POP_INVISIBLE_MS`]; the consumer
//! acknowledges it after [`POP_PROCESS_MS`] (behaviour `ok`), after [`SLOW_CONSUME_MS`]
//! (`slow`), or never (`fail`, or one of its next `pop_fail_next` messages). A message not
//! acknowledged in time becomes visible again; the broker's revive copies it into the group's
//! POP retry topic `%RETRY%<group>+<topic>` with reconsume times + 1, and any member of the
//! group receives it from there.
//!
//! Events: `popped` (from the receive results), `pop_acked` / `pop_ack_failed` (from the ack
//! results), `pop_expired` (the world's timer at the invisible-until instant of a message still
//! held), `pop_revived` (a record of a POP retry topic appeared in a CommitLog).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::client::simple::{
    ConsumeInitMode, ReceivedMessage, SimpleCallId, SimpleConsumer, SimpleConsumerConfig,
    SimpleResult,
};
use crate::topic::RETRY_GROUP_TOPIC_PREFIX;

/// How long a received message stays invisible to the group unless acknowledged.
pub const POP_INVISIBLE_MS: u64 = 5_000;
/// How long an `ok` POP consumer works on a message before acknowledging it.
pub const POP_PROCESS_MS: u64 = 300;
/// How long the broker holds a receive that finds nothing.
pub const POP_AWAIT_MS: u64 = 2_000;
/// Most messages a POP consumer holds (received, not yet acknowledged or come back).
pub const POP_MAX_HELD: usize = 4;
/// After a failed receive (no route yet, broker down), the consumer tries again this much later.
const POP_BACKOFF_MS: u64 = 500;
/// After an empty receive, the next one waits this long (a broker that answers at once must
/// not spin the clock).
const POP_IDLE_MS: u64 = 50;
/// Snapshots show this many of the retry topic's last messages.
const RETRY_SHOWN: u64 = 32;

/// A held message: the queue it was read from (broker, topic, queue id) and its offset there.
pub(super) type HeldKey = (String, String, i32, i64);

pub(super) struct Held {
    message: ReceivedMessage,
    msg_id: String,
    reconsume_times: i32,
    popped_ms: u64,
    invisible_until_ms: u64,
    will_ack: bool,
}

/// The world's side of one POP consumer.
pub(super) struct PopClient {
    group: String,
    /// The receive outstanding.
    receiving: Option<SimpleCallId>,
    /// No receive before this instant.
    idle_until_ms: u64,
    fail_next: u32,
    held: BTreeMap<HeldKey, Held>,
    /// Ack call → the message acknowledged.
    acks: BTreeMap<SimpleCallId, HeldKey>,
    popped: u64,
    acked: u64,
    expired: u64,
    /// (broker, topic, queue id) → messages received from it.
    popped_from: BTreeMap<(String, String, i32), u64>,
}

/// The group's POP retry topic (the broker's default, `enableRetryTopicV2`).
pub fn pop_retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}+{TOPIC}")
}

impl Cluster {
    pub(super) fn add_pop_consumer(&mut self, group: &str, behaviour: Behaviour) -> String {
        self.pop_groups.insert(group.to_owned());
        self.next_pop_consumer_no += 1;
        let id = format!("pop-consumer-{}", self.next_pop_consumer_no);
        let ip = self.new_client_ip();
        let config = SimpleConsumerConfig {
            client: self.client_config(&id, ip),
            consumer_group: group.to_owned(),
            await_duration_ms: POP_AWAIT_MS,
            init_mode: ConsumeInitMode::Min,
            orderly: false,
        };
        let now = epoch(self.now_ms);
        let mut consumer = SimpleConsumer::new(config, now);
        // The topic name is a constant that always validates.
        let _ = consumer.subscribe(now, TOPIC, "*");
        self.pop_clients.insert(
            id.clone(),
            PopClient {
                group: group.to_owned(),
                receiving: None,
                idle_until_ms: 0,
                fail_next: 0,
                held: BTreeMap::new(),
                acks: BTreeMap::new(),
                popped: 0,
                acked: 0,
                expired: 0,
                popped_from: BTreeMap::new(),
            },
        );
        self.insert_client(
            &id,
            ClientNode {
                kind: NodeKind::PopConsumer,
                ip,
                group: Some(group.to_owned()),
                behaviour,
                machine: Some(Machine::Pop(Box::new(consumer))),
                state: ClientState::Running,
                started: false,
                assigned: Vec::new(),
                sent: 0,
            },
        );
        id
    }

    pub(super) fn pop_fail_next(&mut self, id: &str, count: u32) {
        if let Some(pop) = self.pop_clients.get_mut(id) {
            pop.fail_next = count;
        }
    }

    /// Sends a receive when the consumer has none outstanding and room for more messages;
    /// true when it did.
    pub(super) fn pump_pop(&mut self, id: &str) -> bool {
        let now_ms = self.now_ms;
        let (Some(client), Some(pop)) = (self.clients.get_mut(id), self.pop_clients.get_mut(id))
        else {
            return false;
        };
        if !client.running()
            || !client.started
            || pop.receiving.is_some()
            || pop.idle_until_ms > now_ms
            || pop.held.len() >= POP_MAX_HELD
        {
            return false;
        }
        let Some(Machine::Pop(consumer)) = &mut client.machine else {
            return false;
        };
        let room = POP_MAX_HELD - pop.held.len();
        pop.receiving = Some(consumer.receive(epoch(now_ms), room, POP_INVISIBLE_MS));
        true
    }

    /// A `SimpleDone` of POP consumer `id`.
    pub(super) fn pop_done(&mut self, id: &str, call: SimpleCallId, result: SimpleResult) {
        match result {
            SimpleResult::Received(result) => {
                let Some(pop) = self.pop_clients.get_mut(id) else {
                    return;
                };
                if pop.receiving == Some(call) {
                    pop.receiving = None;
                }
                match result {
                    Ok(messages) if !messages.is_empty() => {
                        for message in messages {
                            self.popped(id, message);
                        }
                    }
                    Ok(_) => self.pop_idle(id, POP_IDLE_MS),
                    Err(_) => self.pop_idle(id, POP_BACKOFF_MS),
                }
            }
            SimpleResult::Acked(result) => {
                let Some(pop) = self.pop_clients.get_mut(id) else {
                    return;
                };
                let Some(key) = pop.acks.remove(&call) else {
                    return;
                };
                let group = pop.group.clone();
                match result {
                    Ok(()) => {
                        let Some(held) = pop.held.remove(&key) else {
                            return;
                        };
                        pop.acked += 1;
                        let (_, topic, queue_id, queue_offset) = key;
                        self.emit(EventKind::PopAcked {
                            group,
                            consumer: id.to_owned(),
                            topic,
                            queue_id,
                            queue_offset,
                            msg_id: held.msg_id,
                            reconsume_times: held.reconsume_times,
                        });
                    }
                    Err(error) => {
                        let msg_id = pop
                            .held
                            .get(&key)
                            .map_or_else(String::new, |h| h.msg_id.clone());
                        self.emit(EventKind::PopAckFailed {
                            group,
                            consumer: id.to_owned(),
                            msg_id,
                            error: error.to_string(),
                        });
                    }
                }
            }
            // The playground's POP consumers never change invisible times.
            SimpleResult::InvisibleChanged(_) => {}
        }
    }

    fn pop_idle(&mut self, id: &str, ms: u64) {
        let at = self.now_ms + ms;
        if let Some(pop) = self.pop_clients.get_mut(id) {
            pop.idle_until_ms = at;
        }
        self.add_timer(at, Timer::PopWake);
    }

    fn popped(&mut self, id: &str, message: ReceivedMessage) {
        let behaviour = self.clients.get(id).map_or(Behaviour::Ok, |c| c.behaviour);
        let Some(pop) = self.pop_clients.get_mut(id) else {
            return;
        };
        let queue = &message.message.queue;
        let key: HeldKey = (
            queue.broker_name.clone(),
            queue.topic.clone(),
            queue.queue_id,
            message.queue_offset(),
        );
        let failing = pop.fail_next > 0;
        pop.fail_next = pop.fail_next.saturating_sub(1);
        let will_ack = !failing && behaviour != Behaviour::Fail;
        let until = u64::try_from(message.receipt_handle().invisible_until_ms()).unwrap_or(0);
        let invisible_until_ms = virtual_ms(until);
        let msg_id = message.msg_id();
        let reconsume_times = message.reconsume_times();
        pop.popped += 1;
        *pop.popped_from
            .entry((key.0.clone(), key.1.clone(), key.2))
            .or_insert(0) += 1;
        let group = pop.group.clone();
        pop.held.insert(
            key.clone(),
            Held {
                message,
                msg_id: msg_id.clone(),
                reconsume_times,
                popped_ms: self.now_ms,
                invisible_until_ms,
                will_ack,
            },
        );
        self.emit(EventKind::Popped {
            group,
            consumer: id.to_owned(),
            broker: key.0.clone(),
            topic: key.1.clone(),
            queue_id: key.2,
            queue_offset: key.3,
            msg_id,
            reconsume_times,
            invisible_until_ms,
            will_ack,
        });
        if will_ack {
            let delay = if behaviour == Behaviour::Slow {
                SLOW_CONSUME_MS
            } else {
                POP_PROCESS_MS
            };
            self.add_timer(
                self.now_ms + delay,
                Timer::PopAck {
                    consumer: id.to_owned(),
                    key: key.clone(),
                },
            );
        }
        self.add_timer(
            invisible_until_ms.max(self.now_ms),
            Timer::PopExpire {
                consumer: id.to_owned(),
                key,
                until_ms: invisible_until_ms,
            },
        );
    }

    /// The consumer finished working on a message: it acknowledges it.
    pub(super) fn pop_ack(&mut self, id: &str, key: HeldKey) {
        let now = epoch(self.now_ms);
        let (Some(client), Some(pop)) = (self.clients.get_mut(id), self.pop_clients.get_mut(id))
        else {
            return;
        };
        let Some(Machine::Pop(consumer)) = &mut client.machine else {
            return;
        };
        let Some(held) = pop.held.get(&key) else {
            return;
        };
        let call = consumer.ack(now, &held.message);
        pop.acks.insert(call, key);
    }

    /// A held message's invisible time ran out: it is the group's again.
    pub(super) fn pop_expire(&mut self, id: &str, key: HeldKey, until_ms: u64) {
        let Some(pop) = self.pop_clients.get_mut(id) else {
            return;
        };
        if pop.held.get(&key).map(|h| h.invisible_until_ms) != Some(until_ms) {
            return;
        }
        let Some(held) = pop.held.remove(&key) else {
            return;
        };
        pop.expired += 1;
        let group = pop.group.clone();
        self.emit(EventKind::PopExpired {
            group,
            consumer: id.to_owned(),
            msg_id: held.msg_id,
            reconsume_times: held.reconsume_times,
        });
    }

    /// The POP group whose retry topic `topic` is.
    pub(super) fn pop_group_of_retry_topic(&self, topic: &str) -> Option<String> {
        self.pop_groups
            .iter()
            .find(|g| topic == pop_retry_topic(g))
            .cloned()
    }

    /// The POP groups as a snapshot shows them. `queues`: (topic, broker, queue id) → (min,
    /// max) of every shown queue.
    pub(super) fn pop_group_views(
        &self,
        queues: &BTreeMap<(String, String, i32), (u64, u64)>,
    ) -> Vec<PopGroupView> {
        let mut views = Vec::new();
        for name in &self.pop_groups {
            let retry_topic = pop_retry_topic(name);
            let members: Vec<(&String, &PopClient)> = self
                .pop_clients
                .iter()
                .filter(|(_, p)| p.group == *name)
                .collect();
            let consumers = members
                .iter()
                .map(|(id, pop)| {
                    let client = self.clients.get(*id);
                    let mut in_flight: Vec<PopInFlightView> = pop
                        .held
                        .iter()
                        .map(
                            |((broker, topic, queue_id, queue_offset), h)| PopInFlightView {
                                broker: broker.clone(),
                                topic: topic.clone(),
                                queue_id: *queue_id,
                                queue_offset: *queue_offset,
                                msg_id: h.msg_id.clone(),
                                reconsume_times: h.reconsume_times,
                                popped_ms: h.popped_ms,
                                invisible_until_ms: h.invisible_until_ms,
                                will_ack: h.will_ack,
                            },
                        )
                        .collect();
                    in_flight.sort_by(|a, b| {
                        (a.invisible_until_ms, &a.msg_id).cmp(&(b.invisible_until_ms, &b.msg_id))
                    });
                    PopConsumerView {
                        id: (*id).clone(),
                        state: match client.map(|c| c.state) {
                            Some(ClientState::Running) | None => "running",
                            Some(ClientState::Stopped) => "stopped",
                            Some(ClientState::Killed) => "killed",
                        }
                        .to_owned(),
                        behaviour: client.map_or(Behaviour::Ok, |c| c.behaviour),
                        fail_next: pop.fail_next,
                        in_flight,
                        popped: pop.popped,
                        acked: pop.acked,
                        expired: pop.expired,
                    }
                })
                .collect();
            let mut group_queues = Vec::new();
            let mut retry_total = 0;
            for ((topic, broker, queue_id), (_, max)) in queues {
                if *topic == retry_topic {
                    retry_total += max;
                }
                if topic != TOPIC && *topic != retry_topic {
                    continue;
                }
                let mut popped_by = BTreeMap::new();
                for (id, pop) in &members {
                    let key = (broker.clone(), topic.clone(), *queue_id);
                    if let Some(n) = pop.popped_from.get(&key) {
                        popped_by.insert((*id).clone(), *n);
                    }
                }
                group_queues.push(PopQueueView {
                    broker: broker.clone(),
                    topic: topic.clone(),
                    queue_id: *queue_id,
                    max_offset: *max as i64,
                    consumed_offset: self.committed_offset(name, topic, broker, *queue_id),
                    popped_by,
                });
            }
            views.push(PopGroupView {
                name: name.clone(),
                retry_messages: self.retry_messages(&retry_topic),
                retry_topic,
                consumers,
                queues: group_queues,
                retry_total,
            });
        }
        views
    }

    /// The last messages of a POP retry topic on the running brokers, oldest first.
    fn retry_messages(&self, retry_topic: &str) -> Vec<PopRetryView> {
        let mut out = Vec::new();
        for (id, node) in &self.brokers {
            let Some(broker) = &node.broker else {
                continue;
            };
            let Some(config) = broker.topics().get(retry_topic) else {
                continue;
            };
            let store = broker.store();
            let count = config.read_queue_nums.max(config.write_queue_nums) as i32;
            for queue_id in 0..count {
                let min = store.min_offset(retry_topic, queue_id).0;
                let max = store.max_offset(retry_topic, queue_id).0;
                let from = max.saturating_sub(RETRY_SHOWN).max(min);
                let units = store
                    .consume_queue_units(retry_topic, queue_id, QueueOffset(from), max - from)
                    .unwrap_or_default();
                for (i, unit) in units.into_iter().enumerate() {
                    let offset = CommitLogOffset(unit.commitlog_offset.max(0) as u64);
                    let Ok(Some(bytes)) = store.read_record(offset) else {
                        continue;
                    };
                    let Ok(record) = MessageRecord::decode(&bytes, false) else {
                        continue;
                    };
                    out.push(PopRetryView {
                        broker: id.clone(),
                        queue_id,
                        queue_offset: (from + i as u64) as i64,
                        msg_id: record_msg_id(&record),
                        reconsume_times: record.reconsume_times,
                        store_ms: record.store_timestamp_ms - EPOCH_MS as i64,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (a.store_ms, &a.broker, a.queue_id, a.queue_offset).cmp(&(
                b.store_ms,
                &b.broker,
                b.queue_id,
                b.queue_offset,
            ))
        });
        let skip = out.len().saturating_sub(RETRY_SHOWN as usize);
        out.split_off(skip)
    }

    /// POP consumers in id order (for the drain loop).
    pub(super) fn pop_client_ids(&self) -> BTreeSet<String> {
        self.pop_clients.keys().cloned().collect()
    }
}
