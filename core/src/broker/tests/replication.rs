//! A master and a slave broker joined by an in-memory HA link: what the slave stores, what a
//! SYNC_MASTER answers and when, and what bad HA input does.

use super::*;
use crate::broker::replication::{BrokerRole, HaOutput, SLAVE_SYNC_INTERVAL_MS};

const MASTER_HA: &str = "10.0.0.1:10912";
/// The link ids each side's driver gave the one connection.
const ON_MASTER: ConnId = ConnId(100);
const ON_SLAVE: ConnId = ConnId(200);

fn master_config(role: BrokerRole) -> BrokerConfig {
    let mut config = test_config();
    config.replication.role = role;
    config
}

fn slave_config() -> BrokerConfig {
    let mut config = test_config();
    config.broker_id = 1;
    config.replication.role = BrokerRole::Slave;
    config.replication.ha_master_address = Some(MASTER_HA.to_owned());
    config
}

/// Both brokers, and the outputs of each not yet carried across.
struct Pair {
    master: Harness,
    slave: Harness,
    /// Responses the master wrote to clients.
    answers: Vec<RemotingCommand>,
    /// Responses the slave wrote to clients.
    slave_answers: Vec<RemotingCommand>,
    /// Links either side closed, with the reason.
    closed: Vec<(ConnId, String)>,
    connected: bool,
}

impl Pair {
    fn new(role: BrokerRole) -> Self {
        Self {
            master: Harness::new(master_config(role)),
            slave: Harness::new(slave_config()),
            answers: Vec::new(),
            slave_answers: Vec::new(),
            closed: Vec::new(),
            connected: false,
        }
    }

    /// Carries HA outputs across until both sides are quiet; `deliver` false drops what the
    /// master sends (a partition).
    fn pump(&mut self, deliver: bool) {
        for _ in 0..1_000 {
            let now = self.master.now_ms;
            let from_master = self.master.drain();
            let from_slave = self.slave.drain();
            if from_master.is_empty() && from_slave.is_empty() {
                return;
            }
            for output in from_master {
                match output {
                    BrokerOutput::Ha(HaOutput::Transfer {
                        link,
                        header,
                        path,
                        file_offset,
                        len,
                    }) => {
                        let mut bytes = header.to_vec();
                        let mut body = vec![0u8; len as usize];
                        self.master
                            .broker
                            .store()
                            .storage()
                            .read_at(&path, file_offset, &mut body)
                            .unwrap();
                        bytes.extend(body);
                        if deliver && self.connected {
                            self.slave.broker.handle_ha_bytes(now, ON_SLAVE, &bytes);
                        }
                        self.master.broker.handle_ha_written(now, link, 12 + len);
                    }
                    BrokerOutput::Ha(HaOutput::Close { link, reason }) => {
                        self.closed.push((link, reason));
                        if link == ON_MASTER {
                            self.master.broker.handle_ha_closed(now, link);
                            self.slave.broker.handle_ha_closed(now, ON_SLAVE);
                            self.connected = false;
                        }
                    }
                    BrokerOutput::Send { command, .. } if command.is_response() => {
                        self.answers.push(command)
                    }
                    BrokerOutput::Sync(sync) => self.master.broker.handle_synced(now, sync.up_to),
                    _ => {}
                }
            }
            for output in from_slave {
                match output {
                    BrokerOutput::Ha(HaOutput::Connect { addr }) => {
                        assert_eq!(addr, MASTER_HA);
                        self.master
                            .broker
                            .handle_ha_accepted(now, ON_MASTER, peer(9));
                        self.slave.broker.handle_ha_connected(now, ON_SLAVE);
                        self.connected = true;
                    }
                    BrokerOutput::Ha(HaOutput::Report { link, report }) => {
                        assert_eq!(link, ON_SLAVE);
                        if deliver && self.connected {
                            self.master.broker.handle_ha_bytes(now, ON_MASTER, &report);
                        }
                    }
                    BrokerOutput::Ha(HaOutput::Close { link, reason }) => {
                        self.closed.push((link, reason));
                        self.slave.broker.handle_ha_closed(now, link);
                        self.master.broker.handle_ha_closed(now, ON_MASTER);
                        self.connected = false;
                    }
                    BrokerOutput::Send { command, .. } if command.is_response() => {
                        self.slave_answers.push(command)
                    }
                    BrokerOutput::Sync(sync) => self.slave.broker.handle_synced(now, sync.up_to),
                    _ => {}
                }
            }
        }
        panic!("the HA link never went quiet");
    }

    /// Moves both clocks to `now_ms` and lets each broker's timers run.
    fn advance_to(&mut self, now_ms: u64) {
        self.master.now_ms = now_ms;
        self.slave.now_ms = now_ms;
        self.master.broker.handle_timeout(now_ms);
        self.slave.broker.handle_timeout(now_ms);
    }

    fn send(&mut self, body: &[u8]) {
        self.master.next_opaque += 1;
        let mut cmd = send_v2("TopicR", 0, body, "t");
        cmd.opaque = self.master.next_opaque;
        self.master
            .broker
            .handle_request(self.master.now_ms, ConnId(1), cmd);
    }

    /// Sends `body` to the master with `properties`, and carries what follows across.
    fn send_with(&mut self, body: &[u8], properties: &[(&str, &str)]) {
        self.master.next_opaque += 1;
        let mut cmd = send_request(
            request::SEND_MESSAGE_V2,
            "TopicR",
            0,
            body,
            &props(properties),
        );
        cmd.opaque = self.master.next_opaque;
        self.master
            .broker
            .handle_request(self.master.now_ms, ConnId(1), cmd);
        self.pump(true);
    }

    /// `steps` half seconds from `from_ms`, both brokers' timers run and the link pumped.
    fn run_for(&mut self, from_ms: u64, steps: u64) {
        for step in 1..=steps {
            self.advance_to(from_ms + step * 500);
            self.pump(true);
        }
    }

    fn take_answers(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.answers)
            .into_iter()
            .map(|c| c.code)
            .collect()
    }

    fn commitlog(h: &Harness) -> Vec<u8> {
        let store = h.broker.store();
        let end = store.written_offset().0;
        let mut bytes = vec![0u8; end as usize];
        if end > 0 {
            store
                .storage()
                .read_at(&crate::store::commitlog::segment_path(0), 0, &mut bytes)
                .unwrap();
        }
        bytes
    }
}

#[test]
fn a_sync_master_answers_once_its_slave_has_the_bytes_and_the_slave_matches_it() {
    // Goal: SYNC_MASTER's rule (4.x: one slave ack, 11 from the pre-check) and a slave that is
    // a byte-identical copy serving the same records from its own queues.
    // Method: a send before any slave (11 at once, stored); the slave connects (it knows the
    // master's HA address from its config); more sends are answered only once the pump has
    // carried the bytes and the acks.
    let mut p = Pair::new(BrokerRole::SyncMaster);
    p.send(b"before-any-slave");
    p.pump(true);
    assert_eq!(p.take_answers(), vec![response::SLAVE_NOT_AVAILABLE]);

    p.advance_to(T0 + 10);
    p.pump(true);
    assert!(p.connected, "the slave connected to its master");
    for i in 0..5 {
        p.send(format!("m{i}").as_bytes());
        assert!(p.take_answers().is_empty(), "no answer before the ack");
        p.pump(true);
        assert_eq!(p.take_answers(), vec![response::SUCCESS], "message {i}");
    }
    assert_eq!(
        Pair::commitlog(&p.slave),
        Pair::commitlog(&p.master),
        "the slave's CommitLog is byte-identical"
    );
    assert_eq!(
        bodies(&p.slave, "TopicR", 0),
        vec!["before-any-slave", "m0", "m1", "m2", "m3", "m4"]
    );
    let status = p.master.broker.ha_status(p.master.now_ms);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].1, p.master.broker.store().written_offset().0);
    assert_eq!(status[0].2, 0, "no lag");
    // GET_BROKER_HA_STATUS, as mqadmin haStatus reads it.
    let end = p.master.broker.store().written_offset().0;
    let info: serde_json::Value = serde_json::from_slice(
        &p.master
            .call(3, RemotingCommand::request(request::GET_BROKER_HA_STATUS))
            .body,
    )
    .unwrap();
    assert_eq!(info["master"], true);
    assert_eq!(info["masterCommitLogMaxOffset"], end);
    assert_eq!(info["inSyncSlaveNums"], 1);
    assert_eq!(info["haConnectionInfo"][0]["slaveAckOffset"], end);
    assert_eq!(info["haConnectionInfo"][0]["diff"], 0);
    let info: serde_json::Value = serde_json::from_slice(
        &p.slave
            .call(3, RemotingCommand::request(request::GET_BROKER_HA_STATUS))
            .body,
    )
    .unwrap();
    assert_eq!(info["master"], false);
    assert_eq!(info["haClientRuntimeInfo"]["activated"], true);
    assert_eq!(info["haClientRuntimeInfo"]["masterAddr"], MASTER_HA);
    assert_eq!(info["haClientRuntimeInfo"]["maxOffset"], end);

    // A slave takes no sends.
    let answer = p.slave.call(1, send_v2("TopicR", 0, b"x", "t"));
    assert_eq!(answer.code, response::SERVICE_NOT_AVAILABLE);
    assert!(answer
        .remark
        .unwrap()
        .contains("messages are put to the slave"));
}

#[test]
fn a_silent_slave_makes_a_sync_master_answer_12_after_slave_timeout() {
    let mut p = Pair::new(BrokerRole::SyncMaster);
    p.advance_to(T0 + 10);
    p.pump(true);
    p.send(b"first");
    p.pump(true);
    assert_eq!(p.take_answers(), vec![response::SUCCESS]);

    // Partitioned: nothing reaches the slave.
    p.send(b"lost-ack");
    p.pump(false);
    assert!(p.take_answers().is_empty());
    p.advance_to(T0 + 10 + 2_999);
    p.pump(false);
    assert!(p.take_answers().is_empty(), "still within slaveTimeout");
    p.advance_to(T0 + 10 + 3_000);
    p.pump(false);
    assert_eq!(p.take_answers(), vec![response::FLUSH_SLAVE_TIMEOUT]);
    assert_eq!(
        bodies(&p.master, "TopicR", 0),
        vec!["first", "lost-ack"],
        "the message stays stored on the master"
    );
}

#[test]
fn an_async_master_answers_at_once_and_still_replicates() {
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    p.send(b"a");
    p.pump(true);
    assert_eq!(p.take_answers(), vec![response::SUCCESS]);
    p.advance_to(T0 + 10);
    p.pump(true);
    p.send(b"b");
    p.pump(true);
    assert_eq!(p.take_answers(), vec![response::SUCCESS]);
    assert_eq!(Pair::commitlog(&p.slave), Pair::commitlog(&p.master));
    assert_eq!(bodies(&p.slave, "TopicR", 0), vec!["a", "b"]);
}

#[test]
fn in_sync_replicas_one_is_rocketmq_5s_sync_master_that_waits_for_no_slave() {
    let mut config = master_config(BrokerRole::SyncMaster);
    config.replication.in_sync_replicas = Some(1);
    let mut master = Harness::new(config);
    assert_eq!(master.call(1, send_v2("TopicR", 0, b"x", "t")).code, 0);
}

#[test]
fn a_fake_ack_closes_its_link_and_is_never_counted() {
    // Goal: SYNC_MASTER never counts an ack from a link that was not shown the bytes.
    // Method: a peer connects to the HA port and reports an offset beyond what it was sent.
    let mut master = Harness::new(master_config(BrokerRole::SyncMaster));
    let fake = ConnId(300);
    master.broker.handle_ha_accepted(T0, fake, peer(8));
    master
        .broker
        .handle_ha_bytes(T0, fake, &crate::ha::codec::encode_report(0));
    master.drain();
    master.next_opaque += 1;
    let mut cmd = send_v2("TopicR", 0, b"x", "t");
    cmd.opaque = master.next_opaque;
    master.broker.handle_request(T0, ConnId(1), cmd);
    let _ = master.drain();
    let end = master.broker.store().written_offset().0;
    master
        .broker
        .handle_ha_bytes(T0, fake, &crate::ha::codec::encode_report(end + 1_000));
    let outputs = master.drain();
    assert!(
        outputs.iter().any(|o| matches!(o,
            BrokerOutput::Ha(HaOutput::Close { link, reason }) if *link == fake && reason.contains("beyond"))),
        "{outputs:?}"
    );
    assert!(
        responses_on(&outputs, 1).is_empty(),
        "the send is not answered on a fake ack"
    );
    // Garbage on the HA port: closed, the store untouched.
    let garbage = ConnId(301);
    master.broker.handle_ha_accepted(T0, garbage, peer(7));
    master.broker.handle_ha_bytes(T0, garbage, &[0xFF; 16]);
    assert!(master
        .drain()
        .iter()
        .any(|o| matches!(o, BrokerOutput::Ha(HaOutput::Close { link, .. }) if *link == garbage)));
    assert_eq!(master.broker.store().written_offset().0, end);
}

#[test]
fn a_slave_that_diverged_is_refused_with_both_offsets_never_looped_on() {
    // Goal: #323/#3388: a slave holding bytes its master does not have is refused and says so.
    // Method: the slave stores a record of its own (as a former master would have), then
    // meets a master with less.
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    {
        let mut config = slave_config();
        config.replication.role = BrokerRole::AsyncMaster;
        let mut former = Harness::new(config);
        for i in 0..3 {
            assert_eq!(
                former
                    .call(1, send_v2("TopicR", 0, format!("old{i}").as_bytes(), "t"))
                    .code,
                0
            );
        }
        sync_all(&mut former);
        let storage = former.broker.store().storage().clone();
        p.slave = Harness::with_storage(slave_config(), storage, T0);
    }
    p.send(b"new");
    p.pump(true);
    p.advance_to(T0 + 10);
    p.pump(true);
    let master_end = p.master.broker.store().written_offset().0;
    let slave_end = p.slave.broker.store().written_offset().0;
    assert!(slave_end > master_end);
    assert!(
        p.closed
            .iter()
            .any(|(_, reason)| reason.contains(&slave_end.to_string())
                && reason.contains(&master_end.to_string())),
        "the master names both offsets: {:?}",
        p.closed
    );
    // The master's heartbeat at its end told the slave, which stops and serves no reads of a
    // log its master does not share.
    let refused = p.slave.broker.replication_refused().map(str::to_owned);
    assert!(
        refused.as_deref().is_some_and(
            |r| r.contains(&master_end.to_string()) && r.contains(&slave_end.to_string())
        ),
        "{refused:?}"
    );
    let pulled = p.slave.call(
        2,
        pull_request("GR", "TopicR", 0, 0, pull_sys_flag::SUBSCRIPTION, Some("*")),
    );
    assert_eq!(
        pulled.code,
        response::SERVICE_NOT_AVAILABLE,
        "{:?}",
        pulled.remark
    );
}

#[test]
fn a_slave_copies_its_masters_topics_groups_and_offsets_then_serves_pulls() {
    // Goal: SlaveSynchronize: the master's topic configs, subscription groups and consumer
    // offsets reach the slave (RocketMQ's codes 21, 201 and 43), so the slave serves pulls.
    // Method: the NameServer's answer names the master; the slave's requests go to it through
    // the harness, and its answers come back as a driver would hand them.
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    p.master.call(
        1,
        RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(serde_json::to_vec(&SubscriptionGroupConfig::new("GR")).unwrap()),
    );
    p.send(b"r0");
    let commit = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("topic", "TopicR")
        .with_ext("consumerGroup", "GR")
        .with_ext("queueId", "0")
        .with_ext("commitOffset", 1);
    assert_eq!(p.master.call(3, commit).code, response::SUCCESS);
    p.advance_to(T0 + 10);
    p.pump(true);
    let pull = |h: &mut Harness| {
        h.call(
            2,
            pull_request("GR", "TopicR", 0, 0, pull_sys_flag::SUBSCRIPTION, Some("*")),
        )
    };
    assert_eq!(
        pull(&mut p.slave).code,
        response::TOPIC_NOT_EXIST,
        "no topic yet"
    );

    let master_addr = "10.0.0.1:10911";
    let registered = RemotingCommand::response_to(
        &RemotingCommand::request(request::REGISTER_BROKER),
        response::SUCCESS,
        None,
    )
    .with_ext("masterAddr", master_addr)
    .with_ext("haServerAddr", MASTER_HA);
    p.slave
        .broker
        .handle_namesrv_response(p.slave.now_ms, "ns:9876", registered);
    let now = T0 + 10 + 3_000;
    p.slave.now_ms = now;
    p.slave.broker.handle_timeout(now);
    let asks: Vec<RemotingCommand> = p
        .slave
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            BrokerOutput::SendToNamesrv { addr, command } if addr == master_addr => Some(command),
            _ => None,
        })
        .collect();
    let codes: Vec<i32> = asks.iter().map(|c| c.code).collect();
    assert_eq!(
        codes,
        vec![
            request::GET_ALL_TOPIC_CONFIG,
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
            request::GET_ALL_CONSUMER_OFFSET,
            request::GET_ALL_DELAY_OFFSET,
            request::GET_TIMER_CHECK_POINT
        ]
    );
    for ask in asks {
        let opaque = ask.opaque;
        let mut answer = p.master.call(3, ask);
        answer.opaque = opaque;
        p.slave
            .broker
            .handle_namesrv_response(now, master_addr, answer);
    }
    assert!(p.slave.broker.subscription_groups().contains_key("GR"));
    let query = RemotingCommand::request(request::QUERY_CONSUMER_OFFSET)
        .with_ext("topic", "TopicR")
        .with_ext("consumerGroup", "GR")
        .with_ext("queueId", "0");
    let committed = p.slave.call(3, query);
    assert_eq!(committed.code, response::SUCCESS);
    assert_eq!(
        committed.ext("offset"),
        Some("1"),
        "the master's offset reached the slave"
    );
    let pulled = pull(&mut p.slave);
    assert_eq!(pulled.code, response::SUCCESS);
    assert_eq!(decode_records(&pulled.body).len(), 1);
}

#[test]
fn a_slave_runs_no_delivery_of_its_own_and_stays_a_copy_of_its_master() {
    // Goal: delay levels, timers and transaction checks run on the master only: a slave that
    // delivered a replicated delayed message itself would write records at offsets its
    // master uses for others, and replication would break.
    // Method: the master stores a delay-level message; time passes beyond its delivery on
    // both; the master delivers it, the slave gets the delivery through replication; the two
    // CommitLogs stay identical. A put on the slave's store is refused outright.
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    p.advance_to(T0 + 10);
    p.pump(true);
    p.send_with(b"later", &[("TAGS", "t"), ("DELAY", "1")]);
    p.run_for(T0 + 10, 10);
    assert_eq!(
        bodies(&p.master, "TopicR", 0),
        vec!["later"],
        "delivered by the master"
    );
    assert_eq!(Pair::commitlog(&p.slave), Pair::commitlog(&p.master));
    assert_eq!(
        bodies(&p.slave, "TopicR", 0),
        vec!["later"],
        "replicated to the slave"
    );
    assert!(p.closed.is_empty(), "the link never broke: {:?}", p.closed);
    assert!(p
        .slave
        .broker
        .poll_timeout()
        .is_none_or(|t| t > p.slave.now_ms));

    // SlaveSynchronize copies the master's delay offsets (GET_ALL_DELAY_OFFSET, 45), so the
    // slave's file says level 1 has delivered its one message, as the master's does.
    let delay_offsets = |h: &Harness| {
        let bytes = h
            .broker
            .store()
            .storage()
            .read_all(crate::broker::schedule::DELAY_OFFSET_PATH)
            .unwrap()
            .unwrap_or_default();
        String::from_utf8(bytes).unwrap()
    };
    p.advance_to(T0 + 30_000);
    p.pump(true);
    assert!(
        delay_offsets(&p.master).contains(r#""1":1"#),
        "{}",
        delay_offsets(&p.master)
    );
    p.name_master();
    p.sync_round(T0 + 30_000 + SLAVE_SYNC_INTERVAL_MS, true);
    assert_eq!(delay_offsets(&p.slave), delay_offsets(&p.master));
}

const MASTER_ADDR: &str = "10.0.0.1:10911";

fn commit_request(group: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("topic", "TopicR")
        .with_ext("consumerGroup", group)
        .with_ext("queueId", queue_id)
        .with_ext("commitOffset", offset)
}

fn committed(h: &mut Harness, group: &str, queue_id: i32) -> Option<String> {
    let query = RemotingCommand::request(request::QUERY_CONSUMER_OFFSET)
        .with_ext("topic", "TopicR")
        .with_ext("consumerGroup", group)
        .with_ext("queueId", queue_id)
        .with_ext("setZeroIfNotFound", "false");
    let answer = h.call(3, query);
    (answer.code == response::SUCCESS).then(|| answer.ext("offset").unwrap().to_owned())
}

impl Pair {
    /// The slave learns its master from a NameServer answer.
    fn name_master(&mut self) {
        let registered = RemotingCommand::response_to(
            &RemotingCommand::request(request::REGISTER_BROKER),
            response::SUCCESS,
            None,
        )
        .with_ext("masterAddr", MASTER_ADDR)
        .with_ext("haServerAddr", MASTER_HA);
        self.slave
            .broker
            .handle_namesrv_response(self.slave.now_ms, "ns:9876", registered);
    }

    /// Runs the slave's SlaveSynchronize round due at `now_ms`: returns the codes it asked
    /// the master, in order; `reach_master` false loses them (the master is away).
    fn sync_round(&mut self, now_ms: u64, reach_master: bool) -> Vec<i32> {
        self.slave.now_ms = now_ms;
        self.slave.broker.handle_timeout(now_ms);
        let asks: Vec<RemotingCommand> = self
            .slave
            .drain()
            .into_iter()
            .filter_map(|o| match o {
                BrokerOutput::SendToNamesrv { addr, command } if addr == MASTER_ADDR => {
                    Some(command)
                }
                _ => None,
            })
            .collect();
        let codes = asks.iter().map(|c| c.code).collect();
        if reach_master {
            for ask in asks {
                let opaque = ask.opaque;
                let mut answer = self.master.call(3, ask);
                answer.opaque = opaque;
                self.slave
                    .broker
                    .handle_namesrv_response(now_ms, MASTER_ADDR, answer);
            }
        }
        codes
    }
}

#[test]
fn pull_answers_suggest_the_master_unless_slave_reads_are_on_and_the_consumer_reads_old_data() {
    // Goal: `suggestWhichBrokerId` as RocketMQ 4.9's PullMessageProcessor sets it: 0 with
    // slaveReadEnable off; with it on, the group's whichBrokerWhenConsumeSlowly (1) when the
    // pulled records lie further behind the CommitLog's end than accessMessageInMemoryMaxRatio
    // of the memory, else the group's brokerId.
    // Method: one broker, three configurations, the same pull of an old record.
    let suggestion = |read_enable: bool, memory_bytes: u64, group_broker_id: i64| {
        let mut config = test_config();
        config.replication.slave_read_enable = read_enable;
        config.total_physical_memory_bytes = memory_bytes;
        let mut h = Harness::new(config);
        let mut group = SubscriptionGroupConfig::new("GS");
        group.broker_id = group_broker_id;
        h.call(
            1,
            RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(serde_json::to_vec(&group).unwrap()),
        );
        for body in [b"old".as_slice(), &[7u8; 2_000]] {
            let sent = h.call(1, send_v2("TopicR", 0, body, "t"));
            assert_eq!(sent.code, response::SUCCESS);
        }
        let pulled = h.call(
            2,
            pull_request("GS", "TopicR", 0, 0, pull_sys_flag::SUBSCRIPTION, Some("*")),
        );
        assert_eq!(pulled.code, response::SUCCESS);
        pulled.ext("suggestWhichBrokerId").unwrap().to_owned()
    };
    // 40 % of 1,000 bytes is less than what was written after the pulled records: "slow".
    assert_eq!(
        suggestion(false, 1_000, 0),
        "0",
        "slave reads off: the master"
    );
    assert_eq!(
        suggestion(true, 1_000, 0),
        "1",
        "slow: whichBrokerWhenConsumeSlowly"
    );
    assert_eq!(
        suggestion(true, 1 << 30, 0),
        "0",
        "in memory: the group's brokerId"
    );
    assert_eq!(suggestion(true, 1 << 30, 2), "2", "the group's brokerId");
}

#[test]
fn commits_made_on_a_slave_while_its_master_is_away_survive_and_are_handed_back() {
    // Goal: RocketMQ's slave takes its master's offset table wholesale every 10 s, so offsets
    // consumers committed on the slave while the master was away are overwritten by the older
    // ones the master returns with, and are re-consumed (#1094/#1440). Here the slave keeps
    // its own commits until the master has them, hands them back first thing in each round,
    // and the master takes a handed-back offset only when it is ahead of its own.
    // Method: offsets committed on master and slave with the master reachable or not between
    // SlaveSynchronize rounds; both tables read through QUERY_CONSUMER_OFFSET.
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    for body in [b"a", b"b", b"c", b"d", b"e", b"f"] {
        p.send(body);
    }
    assert_eq!(
        p.master.call(3, commit_request("GR", 0, 1)).code,
        response::SUCCESS
    );
    p.advance_to(T0 + 10);
    p.pump(true);
    p.name_master();
    let mut now = T0 + 10 + 3_000;
    p.sync_round(now, true);
    assert_eq!(committed(&mut p.slave, "GR", 0).as_deref(), Some("1"));

    // The master goes away; consumers commit on the slave.
    assert_eq!(
        p.slave.call(3, commit_request("GR", 0, 4)).code,
        response::SUCCESS
    );
    now += SLAVE_SYNC_INTERVAL_MS;
    let asked = p.sync_round(now, false);
    assert_eq!(
        asked,
        vec![
            request::UPDATE_CONSUMER_OFFSET,
            request::GET_ALL_TOPIC_CONFIG,
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
            request::GET_ALL_CONSUMER_OFFSET,
            request::GET_ALL_DELAY_OFFSET,
            request::GET_TIMER_CHECK_POINT
        ],
        "the commit is handed back before the master's table is asked for"
    );
    assert_eq!(
        committed(&mut p.master, "GR", 0).as_deref(),
        Some("1"),
        "lost on the way"
    );

    // A round that reaches only the master's old table (its answer to the hand-back lost)
    // leaves the slave's newer commit alone.
    now += SLAVE_SYNC_INTERVAL_MS;
    p.slave.now_ms = now;
    p.slave.broker.handle_timeout(now);
    for output in p.slave.drain() {
        if let BrokerOutput::SendToNamesrv { command, .. } = output {
            if command.code == request::GET_ALL_CONSUMER_OFFSET {
                let opaque = command.opaque;
                let mut answer = p.master.call(3, command);
                answer.opaque = opaque;
                p.slave
                    .broker
                    .handle_namesrv_response(now, MASTER_ADDR, answer);
            }
        }
    }
    assert_eq!(
        committed(&mut p.slave, "GR", 0).as_deref(),
        Some("4"),
        "the master's older value does not overwrite the slave's commit"
    );

    // The slave restarts while its master is still away: the commit is still its own to hand
    // back (config/consumerOffsetsOwnOnSlave.json).
    now += SLAVE_SYNC_INTERVAL_MS;
    p.slave.now_ms = now;
    p.slave.broker.handle_timeout(now);
    p.slave.drain();
    let storage = p.slave.broker.store().storage().clone();
    p.slave = Harness::with_storage(slave_config(), storage, now);
    p.name_master();
    now += 3_000; // A slave's first SlaveSynchronize round.
    p.slave.now_ms = now;
    p.slave.broker.handle_timeout(now);
    let mut asked = false;
    for output in p.slave.drain() {
        if let BrokerOutput::SendToNamesrv { command, .. } = output {
            if command.code == request::GET_ALL_CONSUMER_OFFSET {
                asked = true;
                let opaque = command.opaque;
                let mut answer = p.master.call(3, command);
                answer.opaque = opaque;
                p.slave
                    .broker
                    .handle_namesrv_response(now, MASTER_ADDR, answer);
            }
        }
    }
    assert!(asked, "the restarted slave asked for its master's offsets");
    assert_eq!(
        committed(&mut p.slave, "GR", 0).as_deref(),
        Some("4"),
        "still the slave's own after its restart"
    );

    // The master is back: the next round hands the commit back and the master takes it.
    now += SLAVE_SYNC_INTERVAL_MS;
    p.sync_round(now, true);
    assert_eq!(committed(&mut p.master, "GR", 0).as_deref(), Some("4"));
    assert_eq!(committed(&mut p.slave, "GR", 0).as_deref(), Some("4"));
    // Written at once, not at the next period: the slave forgets it once answered, so a crash
    // of the master before that period must not lose it (simulator seed 20000993).
    let file = p
        .master
        .broker
        .store()
        .storage()
        .read_all(crate::broker::offsets::CONSUMER_OFFSETS_PATH)
        .unwrap()
        .expect("the master's offsets are written");
    let file: serde_json::Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(file["offsetTable"]["TopicR@GR"]["0"], 4, "{file}");
    now += SLAVE_SYNC_INTERVAL_MS;
    assert_eq!(
        p.sync_round(now, true)[0],
        request::GET_ALL_TOPIC_CONFIG,
        "confirmed by the master's table: nothing more to hand back"
    );

    // A consumer that moved on at the master is never moved back by a late hand-back, and
    // from then on the master's value is the slave's again.
    assert_eq!(
        p.slave.call(3, commit_request("GR", 0, 5)).code,
        response::SUCCESS
    );
    assert_eq!(
        p.master.call(3, commit_request("GR", 0, 6)).code,
        response::SUCCESS
    );
    now += SLAVE_SYNC_INTERVAL_MS;
    p.sync_round(now, true);
    assert_eq!(committed(&mut p.master, "GR", 0).as_deref(), Some("6"));
    assert_eq!(committed(&mut p.slave, "GR", 0).as_deref(), Some("6"));

    // A commit past the master's end of the queue (say the master lost its tail in a crash)
    // is stopped there, and once the master has answered, the slave hands it back no more.
    assert_eq!(
        p.slave.call(3, commit_request("GR", 0, 50)).code,
        response::SUCCESS
    );
    now += SLAVE_SYNC_INTERVAL_MS;
    assert_eq!(p.sync_round(now, true)[0], request::UPDATE_CONSUMER_OFFSET);
    assert_eq!(
        committed(&mut p.master, "GR", 0).as_deref(),
        Some("6"),
        "the queue ends at 6"
    );
    assert_eq!(committed(&mut p.slave, "GR", 0).as_deref(), Some("6"));
    now += SLAVE_SYNC_INTERVAL_MS;
    assert_eq!(p.sync_round(now, true)[0], request::GET_ALL_TOPIC_CONFIG);
}

#[test]
fn a_pull_held_on_a_slave_is_answered_as_soon_as_replication_brings_its_message() {
    // Goal: a consumer reading from a slave (its master away, or suggested there) gets a new
    // message when it is replicated, not when its long poll ends (RocketMQ's slaves wake held
    // pulls only in their 5 s check).
    // Method: a suspended pull at the slave's end of the queue; the master takes a send; the
    // HA link carries it; the slave's answer is there with the record, no time having passed.
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    p.send(b"first");
    p.advance_to(T0 + 10);
    p.pump(true);
    p.name_master();
    p.sync_round(T0 + 10 + 3_000, true);
    p.advance_to(T0 + 10 + 3_000);
    p.pump(true);
    let held = p.slave.request(
        2,
        pull_request(
            "GR",
            "TopicR",
            0,
            1,
            pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
            Some("*"),
        ),
    );
    assert!(
        responses_on(&held, 2).is_empty(),
        "held: nothing to read yet"
    );
    p.send(b"second");
    p.pump(true);
    let answers: Vec<&RemotingCommand> = p
        .slave_answers
        .iter()
        .filter(|c| c.code == response::SUCCESS && !c.body.is_empty())
        .collect();
    assert_eq!(
        answers.len(),
        1,
        "answered on replication: {:?}",
        p.slave_answers
    );
    let records = decode_records(&answers[0].body);
    assert_eq!(records[0].body.as_ref(), b"second");
}

#[test]
fn a_slave_takes_its_masters_timer_read_position_and_keeps_its_own_log_positions() {
    // Goal: GET_TIMER_CHECK_POINT (60) answers RocketMQ's 56 bytes, and a slave adopts what
    // RocketMQ 5's `syncTimerCheckPoint` does (lastReadTimeMs, masterTimerQueueOffset, data
    // version), not the log positions: it keeps no timer log of its own.
    // Method: a timer message delivered by the master; its checkpoint written; a
    // SlaveSynchronize round; both `timercheck` files decoded.
    use crate::broker::timer::checkpoint::{TimerCheckpoint, TIMER_CHECKPOINT_PATH};
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    p.advance_to(T0 + 10);
    p.pump(true);
    p.send_with(b"timed", &[("TAGS", "t"), ("TIMER_DELAY_MS", "2000")]);
    p.run_for(T0 + 10, 20);
    assert_eq!(bodies(&p.master, "TopicR", 0), vec!["timed"]);
    let checkpoint = |h: &Harness| {
        let bytes = h
            .broker
            .store()
            .storage()
            .read_all(TIMER_CHECKPOINT_PATH)
            .unwrap()
            .unwrap_or_default();
        TimerCheckpoint::decode(&bytes).unwrap_or_default()
    };
    let on_master = checkpoint(&p.master);
    assert!(on_master.last_read_time_ms > 0, "{on_master:?}");
    assert_eq!(on_master.master_timer_queue_offset, 1, "{on_master:?}");
    let answer = p
        .master
        .call(3, RemotingCommand::request(request::GET_TIMER_CHECK_POINT));
    assert_eq!(answer.body.len(), 56);
    assert_eq!(TimerCheckpoint::decode(&answer.body).unwrap(), on_master);

    p.name_master();
    p.sync_round(p.master.now_ms + SLAVE_SYNC_INTERVAL_MS, true);
    let on_slave = checkpoint(&p.slave);
    assert_eq!(on_slave.last_read_time_ms, on_master.last_read_time_ms);
    assert_eq!(on_slave.master_timer_queue_offset, 1);
    assert_eq!(on_slave.last_timer_queue_offset, 0, "its own: no timer log");
    assert_eq!(on_slave.last_timer_log_flush_pos, 0);
    assert_eq!(on_slave.counter, on_master.counter);
}

#[test]
fn bytes_a_slave_cannot_store_this_time_drop_the_link_and_replication_resumes() {
    // Goal: a failure to store what the master sent (a full disk, a write error) is not a
    // disagreement: the slave drops the link, says why, and resumes from its own end once it
    // reconnects, instead of refusing its master until restarted.
    // Method: the slave's writes fail while the master takes sends; then they succeed again.
    use crate::store::{segment::FaultOp, StorageError};
    let mut p = Pair::new(BrokerRole::AsyncMaster);
    p.send(b"before");
    p.advance_to(T0 + 10);
    p.pump(true);
    assert_eq!(Pair::commitlog(&p.slave), Pair::commitlog(&p.master));
    p.slave
        .broker
        .store_mut()
        .storage_mut()
        .set_fault(FaultOp::Write, Some(StorageError::NoSpace));
    p.send(b"while-full");
    p.pump(true);
    assert!(
        p.closed
            .iter()
            .any(|(_, reason)| reason.contains("could not be stored")),
        "{:?}",
        p.closed
    );
    assert!(p.slave.broker.store().written_offset() < p.master.broker.store().written_offset());
    p.slave
        .broker
        .store_mut()
        .storage_mut()
        .set_fault(FaultOp::Write, None);
    p.send(b"after");
    p.run_for(T0 + 10, 12);
    assert_eq!(
        Pair::commitlog(&p.slave),
        Pair::commitlog(&p.master),
        "caught up after reconnecting"
    );
}
