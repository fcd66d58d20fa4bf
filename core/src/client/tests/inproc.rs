//! The client state machines against the core's Broker and NameServer, wired in-process:
//! every command passes through the codec, time is advanced by hand from timer to timer.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::*;
use crate::broker::{Broker, BrokerConfig, BrokerOutput};
use crate::client::requests::MessageModel;
use crate::client::{
    ClientConfig, ConsumeStatus, Message, MessageExt, MessageQueue, Producer, ProducerConfig,
    PullConsumer, PullConsumerConfig, PushConsumer, PushConsumerConfig, SendMode,
};
use crate::namesrv::{NameServer, NamesrvConfig, NamesrvOutput};
use crate::store::MemStorage;
use crate::ConnId;

pub(super) enum Client {
    Producer(Producer),
    Push(PushConsumer),
    Lite(PullConsumer),
}

impl Client {
    fn poll_output(&mut self) -> Option<ClientOutput> {
        match self {
            Client::Producer(c) => c.poll_output(),
            Client::Push(c) => c.poll_output(),
            Client::Lite(c) => c.poll_output(),
        }
    }
    fn poll_timeout(&self) -> Option<u64> {
        match self {
            Client::Producer(c) => c.poll_timeout(),
            Client::Push(c) => c.poll_timeout(),
            Client::Lite(c) => c.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: u64) {
        match self {
            Client::Producer(c) => c.handle_timeout(now),
            Client::Push(c) => c.handle_timeout(now),
            Client::Lite(c) => c.handle_timeout(now),
        }
    }
    fn handle_response(&mut self, now: u64, addr: &str, cmd: RemotingCommand) {
        match self {
            Client::Producer(c) => c.handle_response(now, addr, cmd),
            Client::Push(c) => c.handle_response(now, addr, cmd),
            Client::Lite(c) => c.handle_response(now, addr, cmd),
        }
    }
    fn handle_request(&mut self, now: u64, addr: &str, cmd: RemotingCommand) {
        match self {
            Client::Producer(c) => c.handle_request(now, addr, cmd),
            Client::Push(c) => c.handle_request(now, addr, cmd),
            Client::Lite(c) => c.handle_request(now, addr, cmd),
        }
    }
}

/// What the application side of a push consumer does with a delivered batch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    Succeed,
    /// RECONSUME_LATER for messages seen fewer than this many times.
    FailFirst(i32),
    /// Orderly: SUSPEND_CURRENT_QUEUE_A_MOMENT for batches holding a message with this body,
    /// SUCCESS for the others.
    SuspendBody(&'static str),
}

pub(super) struct Cluster {
    pub now: u64,
    pub namesrv: NameServer,
    /// address → broker.
    pub brokers: BTreeMap<String, Broker<MemStorage>>,
    pub clients: Vec<Client>,
    pub listeners: Vec<Listener>,
    /// Messages consumed per client, in delivery order.
    pub consumed: Vec<Vec<MessageExt>>,
    /// Every batch delivered per client (also those answered with a retry), in order.
    pub delivered: Vec<Vec<Vec<MessageExt>>>,
    /// Send results per client.
    pub done: Vec<Vec<ClientOutput>>,
    /// Every request a client wrote, per client (address, code).
    pub wire: Vec<Vec<(String, i32)>>,
}

const BROKER_NS_CONN: u64 = 1_000_000;

fn client_conn(client: usize, peer: usize) -> ConnId {
    ConnId((client as u64 + 1) * 1_000 + peer as u64)
}

impl Cluster {
    /// A NameServer and `broker_count` brokers (`broker-a` on port 10911, `broker-b` on 10921,
    /// …), registered.
    pub fn new(broker_count: usize) -> Self {
        let mut cluster = Self {
            now: T0,
            namesrv: NameServer::new(NamesrvConfig::default()),
            brokers: BTreeMap::new(),
            clients: Vec::new(),
            listeners: Vec::new(),
            consumed: Vec::new(),
            delivered: Vec::new(),
            done: Vec::new(),
            wire: Vec::new(),
        };
        for i in 0..broker_count {
            let mut config = BrokerConfig::default();
            config.store.commitlog_segment_bytes = 1 << 20;
            config.store.consume_queue_units_per_segment = 1_000;
            config.broker_name = format!("broker-{}", (b'a' + i as u8) as char);
            config.listen_port = 10911 + 10 * i as u16;
            config.namesrv_addrs = vec![NAMESRV.to_owned()];
            config.default_topic_queue_nums = 4;
            config.seed = i as u64;
            let addr = format!("127.0.0.1:{}", config.listen_port);
            let broker = Broker::new(config, MemStorage::default(), T0).expect("broker opens");
            cluster.brokers.insert(addr, broker);
        }
        let addrs: Vec<String> = cluster.brokers.keys().cloned().collect();
        for addr in addrs {
            cluster.brokers.get_mut(&addr).unwrap().handle_timeout(T0);
        }
        cluster.pump();
        cluster
    }

    pub fn client_config(&self, n: usize) -> ClientConfig {
        ClientConfig {
            namesrv_addrs: vec![NAMESRV.to_owned()],
            instance_name: format!("client{n}"),
            seed: 100 + n as u64,
            ..ClientConfig::default()
        }
    }

    pub fn add(&mut self, client: Client, listener: Listener) -> usize {
        self.clients.push(client);
        self.listeners.push(listener);
        self.consumed.push(Vec::new());
        self.delivered.push(Vec::new());
        self.done.push(Vec::new());
        self.wire.push(Vec::new());
        let index = self.clients.len() - 1;
        let addrs: Vec<String> = self.brokers.keys().cloned().collect();
        for (peer, addr) in addrs.iter().enumerate() {
            let socket: SocketAddr = format!("127.0.0.{}:{}", index + 2, 50_000 + peer)
                .parse()
                .unwrap();
            self.brokers.get_mut(addr).unwrap().handle_connected(
                self.now,
                client_conn(index, peer),
                socket,
            );
        }
        index
    }

    pub fn producer(&mut self) -> usize {
        let n = self.clients.len();
        let config = ProducerConfig {
            client: self.client_config(n),
            producer_group: "PG".to_owned(),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(config, self.now);
        self.add(Client::Producer(producer), Listener::Succeed)
    }

    pub fn push_consumer(
        &mut self,
        group: &str,
        topic: &str,
        expression: &str,
        model: MessageModel,
        listener: Listener,
    ) -> usize {
        let n = self.clients.len();
        let config = PushConsumerConfig {
            client: self.client_config(n),
            consumer_group: group.to_owned(),
            message_model: model,
            consume_from_where: crate::client::requests::ConsumeFromWhere::FirstOffset,
            ..PushConsumerConfig::default()
        };
        let mut consumer = PushConsumer::new(config, self.now);
        consumer.subscribe(self.now, topic, expression).unwrap();
        consumer.start(self.now);
        self.add(Client::Push(consumer), listener)
    }

    pub fn lite_consumer(&mut self, group: &str) -> usize {
        let n = self.clients.len();
        let config = PullConsumerConfig {
            client: self.client_config(n),
            consumer_group: group.to_owned(),
            consume_from_where: crate::client::requests::ConsumeFromWhere::FirstOffset,
            ..PullConsumerConfig::default()
        };
        let consumer = PullConsumer::new(config, self.now);
        self.add(Client::Lite(consumer), Listener::Succeed)
    }

    pub fn producer_mut(&mut self, i: usize) -> &mut Producer {
        match &mut self.clients[i] {
            Client::Producer(p) => p,
            _ => panic!("client {i} is not a producer"),
        }
    }

    pub fn push_mut(&mut self, i: usize) -> &mut PushConsumer {
        match &mut self.clients[i] {
            Client::Push(p) => p,
            _ => panic!("client {i} is not a push consumer"),
        }
    }

    pub fn lite_mut(&mut self, i: usize) -> &mut PullConsumer {
        match &mut self.clients[i] {
            Client::Lite(p) => p,
            _ => panic!("client {i} is not a lite consumer"),
        }
    }

    fn broker_peer_index(&self, addr: &str) -> Option<usize> {
        self.brokers.keys().position(|a| a == addr)
    }

    /// Delivers every output until all state machines are quiet.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut progress = false;
            // Brokers.
            let addrs: Vec<String> = self.brokers.keys().cloned().collect();
            for (peer, addr) in addrs.iter().enumerate() {
                while let Some(output) = self.brokers.get_mut(addr).unwrap().poll_output() {
                    progress = true;
                    match output {
                        // No gRPC clients here.
                        BrokerOutput::Grpc(_) => {}
                        BrokerOutput::SendToNamesrv { command, .. } => {
                            let command = through_wire(&command);
                            self.namesrv.handle_request(
                                self.now,
                                ConnId(BROKER_NS_CONN + peer as u64),
                                command,
                            );
                        }
                        BrokerOutput::Send { conn, command } => {
                            let command = through_wire(&command);
                            let client = (conn.0 / 1_000) as usize - 1;
                            let now = self.now;
                            let c = &mut self.clients[client];
                            if command.is_response() {
                                c.handle_response(now, addr, command);
                            } else {
                                c.handle_request(now, addr, command);
                            }
                        }
                        BrokerOutput::Sync(sync) => {
                            let now = self.now;
                            self.brokers
                                .get_mut(addr)
                                .unwrap()
                                .handle_synced(now, sync.up_to);
                        }
                        BrokerOutput::Checkpoint(request) => {
                            let now = self.now;
                            self.brokers
                                .get_mut(addr)
                                .unwrap()
                                .write_checkpoint_inline(now, &request);
                        }
                        // No ACL in these tests.
                        BrokerOutput::Close { .. }
                        | BrokerOutput::WriteAclFile { .. }
                        | BrokerOutput::Ha(_) => {}
                    }
                }
            }
            // NameServer.
            while let Some(NamesrvOutput::Send { conn, command }) = self.namesrv.poll_output() {
                progress = true;
                let command = through_wire(&command);
                if conn.0 >= BROKER_NS_CONN {
                    let addr = addrs[(conn.0 - BROKER_NS_CONN) as usize].clone();
                    let now = self.now;
                    self.brokers
                        .get_mut(&addr)
                        .unwrap()
                        .handle_namesrv_response(now, NAMESRV, command);
                } else {
                    let client = (conn.0 / 1_000) as usize - 1;
                    let now = self.now;
                    self.clients[client].handle_response(now, NAMESRV, command);
                }
            }
            // Clients.
            for i in 0..self.clients.len() {
                while let Some(output) = self.clients[i].poll_output() {
                    progress = true;
                    self.client_output(i, output);
                }
            }
            if !progress {
                return;
            }
        }
        panic!("the cluster never went quiet");
    }

    fn client_output(&mut self, i: usize, output: ClientOutput) {
        let now = self.now;
        match output {
            ClientOutput::Send { addr, command } => {
                self.wire[i].push((addr.clone(), command.code));
                let command = through_wire(&command);
                if addr == NAMESRV {
                    self.namesrv
                        .handle_request(now, client_conn(i, 999), command);
                } else if let Some(peer) = self.broker_peer_index(&addr) {
                    self.brokers.get_mut(&addr).unwrap().handle_request(
                        now,
                        client_conn(i, peer),
                        command,
                    );
                } else {
                    // Nobody listens there.
                    let c = &mut self.clients[i];
                    match c {
                        Client::Producer(p) => p.handle_connection_closed(now, &addr),
                        Client::Push(p) => p.handle_connection_closed(now, &addr),
                        Client::Lite(p) => p.handle_connection_closed(now, &addr),
                    }
                }
            }
            ClientOutput::Consume {
                token, messages, ..
            } => {
                self.delivered[i].push(messages.clone());
                let status = match self.listeners[i] {
                    Listener::Succeed => ConsumeStatus::ConsumeSuccess,
                    Listener::SuspendBody(body) => {
                        if messages
                            .iter()
                            .any(|m| m.body().as_ref() == body.as_bytes())
                        {
                            ConsumeStatus::ReconsumeLater
                        } else {
                            ConsumeStatus::ConsumeSuccess
                        }
                    }
                    Listener::FailFirst(n) => {
                        if messages.iter().all(|m| m.reconsume_times() >= n) {
                            ConsumeStatus::ConsumeSuccess
                        } else {
                            ConsumeStatus::ReconsumeLater
                        }
                    }
                };
                if status == ConsumeStatus::ConsumeSuccess {
                    self.consumed[i].extend(messages);
                }
                self.push_mut(i).handle_consume_result(now, token, status);
            }
            other => self.done[i].push(other),
        }
    }

    /// Advances time to `until`, waking every state machine at its timers on the way.
    pub fn run_until(&mut self, until: u64) {
        loop {
            self.pump();
            let mut next = u64::MAX;
            for c in &self.clients {
                if let Some(t) = c.poll_timeout() {
                    next = next.min(t);
                }
            }
            for b in self.brokers.values() {
                if let Some(t) = b.poll_timeout() {
                    next = next.min(t);
                }
            }
            if let Some(t) = self.namesrv.poll_timeout() {
                next = next.min(t);
            }
            let next = next.max(self.now);
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            let now = self.now;
            for c in &mut self.clients {
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(now);
                }
            }
            for b in self.brokers.values_mut() {
                if b.poll_timeout().is_some_and(|t| t <= now) {
                    b.handle_timeout(now);
                }
            }
            if self.namesrv.poll_timeout().is_some_and(|t| t <= now) {
                self.namesrv.handle_timeout(now);
            }
            if self.now == until {
                self.pump();
                return;
            }
        }
    }

    /// Send results of client `i`: Ok results only, panics on an error.
    pub fn send_results(&self, i: usize) -> Vec<crate::client::SendResult> {
        self.done[i]
            .iter()
            .filter_map(|o| match o {
                ClientOutput::SendDone { result, .. } => {
                    Some(result.clone().expect("send succeeds"))
                }
                _ => None,
            })
            .collect()
    }
}

fn bodies(messages: &[MessageExt]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect()
}

/// Goal: a producer sends to an auto-created topic through the default-topic route, and a push
/// consumer of a new group (from the first offset) receives every message exactly once, with
/// its UNIQ_KEY as msgId; offsets are committed to the broker.
#[test]
fn produce_and_push_consume_end_to_end() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    for i in 0..20 {
        let now = cluster.now;
        let message = Message::new("TopicA", format!("m{i}")).with_tags("tagA");
        cluster.producer_mut(p).send(now, message, SendMode::Sync);
        cluster.pump();
    }
    let results = cluster.send_results(p);
    assert_eq!(results.len(), 20);
    // Round-robin over the 4 queues of the auto-created topic.
    let mut per_queue = BTreeMap::new();
    for r in &results {
        *per_queue.entry(r.queue.queue_id).or_insert(0) += 1;
        assert_eq!(r.queue.broker_name, "broker-a");
        assert_eq!(r.msg_id.len(), 32);
        assert_eq!(r.offset_msg_id.len(), 32);
    }
    assert_eq!(
        per_queue.values().copied().collect::<Vec<_>>(),
        vec![5, 5, 5, 5]
    );

    let c = cluster.push_consumer(
        "G1",
        "TopicA",
        "*",
        MessageModel::Clustering,
        Listener::Succeed,
    );
    cluster.run_until(T0 + 10_000);
    let consumed = &cluster.consumed[c];
    assert_eq!(consumed.len(), 20, "consumed {:?}", bodies(consumed));
    let mut got = bodies(consumed);
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    let sent_ids: std::collections::BTreeSet<String> =
        results.iter().map(|r| r.msg_id.clone()).collect();
    for m in consumed {
        assert!(sent_ids.contains(&m.msg_id()));
        assert_eq!(m.topic(), "TopicA");
    }
    assert_eq!(cluster.push_mut(c).assigned_queues().len(), 4);
    // The periodic commit reached the broker.
    let broker = cluster.brokers.values().next().unwrap();
    for q in 0..4 {
        assert_eq!(broker.consumer_offset("TopicA", "G1", q), Some(5));
    }
}

/// Goal: two consumers of one group split the queues (averagely) and together consume every
/// message once; a third group in broadcasting mode gets everything too.
#[test]
fn clustering_splits_queues_and_broadcasting_gets_all() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    let now = cluster.now;
    cluster
        .producer_mut(p)
        .send(now, Message::new("TopicB", "warm-up"), SendMode::Sync);
    cluster.pump();
    let c1 = cluster.push_consumer(
        "G2",
        "TopicB",
        "*",
        MessageModel::Clustering,
        Listener::Succeed,
    );
    let c2 = cluster.push_consumer(
        "G2",
        "TopicB",
        "*",
        MessageModel::Clustering,
        Listener::Succeed,
    );
    let b = cluster.push_consumer(
        "G3",
        "TopicB",
        "*",
        MessageModel::Broadcasting,
        Listener::Succeed,
    );
    cluster.run_until(T0 + 25_000);
    let q1 = cluster.push_mut(c1).assigned_queues();
    let q2 = cluster.push_mut(c2).assigned_queues();
    let topic_queues = |qs: &[MessageQueue]| qs.iter().filter(|q| q.topic == "TopicB").count();
    assert_eq!(topic_queues(&q1), 2, "{q1:?}");
    assert_eq!(topic_queues(&q2), 2, "{q2:?}");
    for i in 0..40 {
        let now = cluster.now;
        cluster.producer_mut(p).send(
            now,
            Message::new("TopicB", format!("b{i}")),
            SendMode::Async,
        );
    }
    cluster.run_until(T0 + 30_000);
    let n1 = cluster.consumed[c1].len();
    let n2 = cluster.consumed[c2].len();
    assert_eq!(n1 + n2, 41);
    assert!(n1 > 0 && n2 > 0);
    assert_eq!(cluster.consumed[b].len(), 41);
}

/// Goal: the client-side exact-tag filter drops other tags.
#[test]
fn tag_subscription_filters() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    for (i, tag) in ["tagA", "tagB", "tagA", "tagC"].iter().enumerate() {
        let now = cluster.now;
        cluster.producer_mut(p).send(
            now,
            Message::new("TopicT", format!("t{i}")).with_tags(tag),
            SendMode::Sync,
        );
        cluster.pump();
    }
    let c = cluster.push_consumer(
        "GT",
        "TopicT",
        "tagA || tagC",
        MessageModel::Clustering,
        Listener::Succeed,
    );
    cluster.run_until(T0 + 5_000);
    let mut got = bodies(&cluster.consumed[c]);
    got.sort();
    assert_eq!(got, vec!["t0", "t2", "t3"]);
}

/// Goal: RECONSUME_LATER sends the message back; it comes back through %RETRY%group (after the
/// broker's delay level 3 = 10 s) with the original topic restored, and is consumed then.
#[test]
fn reconsume_later_comes_back_through_the_retry_topic() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    let now = cluster.now;
    cluster
        .producer_mut(p)
        .send(now, Message::new("TopicR", "retry-me"), SendMode::Sync);
    cluster.pump();
    let c = cluster.push_consumer(
        "GR",
        "TopicR",
        "*",
        MessageModel::Clustering,
        Listener::FailFirst(1),
    );
    cluster.run_until(T0 + 60_000);
    let consumed = &cluster.consumed[c];
    assert_eq!(consumed.len(), 1, "{:?}", bodies(consumed));
    assert_eq!(consumed[0].topic(), "TopicR");
    assert_eq!(consumed[0].reconsume_times(), 1);
    assert_eq!(consumed[0].queue.topic, "%RETRY%GR");
    assert!(cluster.wire[c].iter().any(|(_, code)| *code == 36));
    // The broker took the send-back: the consumer never re-sent the message itself.
    assert!(
        !cluster.wire[c]
            .iter()
            .any(|(_, code)| [10, 310].contains(code)),
        "{:?}",
        cluster.wire[c]
    );
}

/// Goal: a message that keeps failing is sent back until the consumer's maxReconsumeTimes (2)
/// and then lands in %DLQ%<group> on the broker (conformance: retry → DLQ), never consumed and
/// never re-sent by the consumer itself.
#[test]
fn reconsume_beyond_the_limit_lands_in_the_dead_letter_queue() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    let now = cluster.now;
    cluster
        .producer_mut(p)
        .send(now, Message::new("TopicD", "doomed"), SendMode::Sync);
    cluster.pump();
    let n = cluster.clients.len();
    let config = PushConsumerConfig {
        client: cluster.client_config(n),
        consumer_group: "GDLQ".to_owned(),
        message_model: MessageModel::Clustering,
        consume_from_where: crate::client::requests::ConsumeFromWhere::FirstOffset,
        max_reconsume_times: 2,
        ..PushConsumerConfig::default()
    };
    let mut consumer = PushConsumer::new(config, cluster.now);
    consumer.subscribe(cluster.now, "TopicD", "*").unwrap();
    consumer.start(cluster.now);
    let c = cluster.add(Client::Push(consumer), Listener::FailFirst(i32::MAX));
    // Two retries (10 s and 30 s once delays are scheduled) and the dead letter.
    cluster.run_until(T0 + 180_000);

    assert!(cluster.consumed[c].is_empty());
    let send_backs = cluster.wire[c]
        .iter()
        .filter(|(_, code)| *code == 36)
        .count();
    assert_eq!(send_backs, 3, "{:?}", cluster.wire[c]);
    assert!(!cluster.wire[c]
        .iter()
        .any(|(_, code)| [10, 310].contains(code)));
    let broker = cluster.brokers.values().next().unwrap();
    assert_eq!(broker.store().max_offset("%DLQ%GDLQ", 0).0, 1);
    let dlq = &broker.topics()["%DLQ%GDLQ"];
    assert_eq!(dlq.perm, crate::topic::perm::READ_WRITE);
}

/// Goal: a lite pull consumer assigned one queue polls what was sent there, and its commit
/// reaches the broker.
#[test]
fn lite_pull_assign_poll_commit() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    let queue = MessageQueue::new("TopicL", "broker-a", 1);
    let now = cluster.now;
    cluster
        .producer_mut(p)
        .send(now, Message::new("TopicL", "first"), SendMode::Sync);
    cluster.pump();
    for i in 0..5 {
        let now = cluster.now;
        cluster.producer_mut(p).send_to_queue(
            now,
            Message::new("TopicL", format!("l{i}")),
            queue.clone(),
            SendMode::Sync,
        );
        cluster.pump();
    }
    let l = cluster.lite_consumer("GL");
    let now = cluster.now;
    cluster.lite_mut(l).assign(now, vec![queue.clone()]);
    cluster.lite_mut(l).start(now);
    cluster.run_until(T0 + 2_000);
    let now = cluster.now;
    let polled = cluster.lite_mut(l).poll(now, 3);
    assert_eq!(bodies(&polled), vec!["l0", "l1", "l2"]);
    let polled = cluster.lite_mut(l).poll(now, 100);
    assert_eq!(bodies(&polled), vec!["l3", "l4"]);
    assert_eq!(cluster.lite_mut(l).committed_offset(&queue), Some(5));
    cluster.lite_mut(l).commit(now);
    cluster.pump();
    let broker = cluster.brokers.values().next().unwrap();
    assert_eq!(broker.consumer_offset("TopicL", "GL", 1), Some(5));
}

/// Goal: a batch lands in one queue with consecutive offsets and per-message UNIQ_KEYs.
#[test]
fn batch_send_end_to_end() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    let now = cluster.now;
    let batch = (0..3)
        .map(|i| Message::new("TopicBatch", format!("x{i}")))
        .collect();
    cluster
        .producer_mut(p)
        .send_batch(now, batch, SendMode::Sync);
    cluster.pump();
    let results = cluster.send_results(p);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].msg_id.split(',').count(), 3);
    assert_eq!(results[0].offset_msg_id.split(',').count(), 3);
    assert_eq!(results[0].queue_offset, 0);
    let c = cluster.push_consumer(
        "GB",
        "TopicBatch",
        "*",
        MessageModel::Clustering,
        Listener::Succeed,
    );
    cluster.run_until(T0 + 5_000);
    let consumed = &cluster.consumed[c];
    assert_eq!(bodies(consumed), vec!["x0", "x1", "x2"]);
    let ids: Vec<String> = consumed.iter().map(|m| m.msg_id()).collect();
    assert_eq!(ids.join(","), results[0].msg_id);
}

/// Goal: with two brokers, sends alternate between them; when one broker's address is dead,
/// sends retry on the other broker and all succeed.
#[test]
fn retries_move_to_another_broker() {
    let mut cluster = Cluster::new(2);
    let p = cluster.producer();
    let now = cluster.now;
    cluster
        .producer_mut(p)
        .send(now, Message::new("TopicM", "m"), SendMode::Sync);
    cluster.pump();
    // Both brokers created the topic? Only the one that got the send; refresh after the next
    // registration makes the route list both (auto-create from TBW102 on both).
    for i in 0..8 {
        let now = cluster.now;
        cluster
            .producer_mut(p)
            .send(now, Message::new("TopicM", format!("m{i}")), SendMode::Sync);
        cluster.pump();
    }
    let results = cluster.send_results(p);
    assert_eq!(results.len(), 9);
    let brokers: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r.queue.broker_name.as_str())
        .collect();
    assert_eq!(brokers.len(), 2, "{results:?}");
    // broker-b disappears: its address no longer answers.
    let dead = cluster.brokers.keys().nth(1).unwrap().clone();
    cluster.brokers.remove(&dead);
    let before = cluster.send_results(p).len();
    for i in 0..6 {
        let now = cluster.now;
        cluster
            .producer_mut(p)
            .send(now, Message::new("TopicM", format!("n{i}")), SendMode::Sync);
        cluster.pump();
    }
    let results = cluster.send_results(p);
    assert_eq!(results.len(), before + 6);
    assert!(results[before..]
        .iter()
        .all(|r| r.queue.broker_name == "broker-a"));
}
