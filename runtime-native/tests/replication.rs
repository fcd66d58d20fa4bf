//! A replicated broker group of real processes: a `vostok namesrv`, a SYNC_MASTER and a SLAVE
//! `vostok broker` that learns its master's HA address from the NameServer. A
//! `rocketmq-client-rust` producer's sends are acknowledged once the slave has them; the
//! slave's CommitLog is byte-identical to the master's, so are the ConsumeQueues it builds, and
//! it serves the same messages once it has copied its master's topics (SlaveSynchronize).
//!
//! Then the master is SIGKILLed under a consuming Vostok consumer: it reads and commits on the
//! slave, sends go to the other group, and the restarted master has every acknowledged message
//! and takes the offsets committed on the slave back, so nothing is consumed again.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocketmq_model::common::message::message_single::Message as RealMessage;
use tokio::task::block_in_place;

use common::*;

const SEGMENT_BYTES: u64 = 1 << 20;
const MESSAGES: usize = 30;

/// A `vostok` child process, killed when dropped.
struct Proc {
    child: Child,
    /// The ready line's `key=value` fields.
    ready: Vec<(String, String)>,
    stderr: PathBuf,
}

impl Proc {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_vostok"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("vostok starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{name} never got ready: {}", tail(&stderr)));
        let ready = line
            .strip_prefix("vostok ready ")
            .unwrap_or_else(|| panic!("{name}: not a ready line: {line}"))
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Proc {
            child,
            ready,
            stderr,
        }
    }

    fn get(&self, key: &str) -> String {
        self.ready
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.ready))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn broker(dir: &Path, name: &str, namesrv: &str, conf: &str) -> Proc {
    broker_of(dir, name, "repl-a", namesrv, conf, 0)
}

/// A `vostok broker` of group `broker_name` with its data in `dir/name` (kept across starts),
/// on `port` (0: any).
fn broker_of(
    dir: &Path,
    name: &str,
    broker_name: &str,
    namesrv: &str,
    conf: &str,
    port: u16,
) -> Proc {
    let conf_path = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf_path,
        format!(
            "{HOST_DISK_NEUTRAL_CONF}brokerClusterName=ReplCluster\nbrokerName={broker_name}\n\
             mappedFileSizeCommitLog={SEGMENT_BYTES}\n{conf}"
        ),
    )
    .unwrap();
    let data = dir.join(name);
    Proc::start(
        dir,
        name,
        &[
            "broker",
            "-n",
            namesrv,
            "-c",
            conf_path.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--broker-port",
            &port.to_string(),
            // A free gRPC port: parallel tests would all want 8081.
            "--grpc-port",
            "0",
        ],
    )
}

/// The first segment of a broker's CommitLog.
fn first_segment(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name).join("commitlog").join(format!("{:020}", 0))).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_master_acks_once_its_slave_holds_the_same_bytes() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("the replication scenario finishes within 120 s");
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let namesrv = block_in_place(|| Proc::start(dir.path(), "namesrv", &["namesrv", "-p", "0"]));
    let ns = namesrv.get("namesrv");
    let ha_port = free_port();
    let master = block_in_place(|| {
        broker(
            dir.path(),
            "master",
            &ns,
            &format!("brokerRole=SYNC_MASTER\nhaListenPort={ha_port}\n"),
        )
    });
    // The slave names no master: it learns the HA address from the NameServer.
    let slave =
        block_in_place(|| broker(dir.path(), "slave", &ns, "brokerRole=SLAVE\nbrokerId=1\n"));
    let (master_addr, slave_addr) = (master.get("broker"), slave.get("broker"));
    let topic = "ReplTopic";
    block_in_place(|| create_topic(&master_addr, &ns, topic, 2));

    let mut producer = start_producer_in(&ns, &unique("repl_pg")).await;
    wait_for_publish_route(&mut producer, topic, 2).await;
    // Until the slave has connected and caught up, a SYNC_MASTER answers SLAVE_NOT_AVAILABLE
    // (the message is stored all the same).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = 0;
    loop {
        let message = RealMessage::builder()
            .topic(topic)
            .body(format!("probe-{probes}").into_bytes())
            .build()
            .unwrap();
        probes += 1;
        let sent = producer
            .send(message)
            .await
            .expect("send")
            .expect("a result");
        if format!("{:?}", sent.send_status) == "SendOk" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave never caught up: {:?}\nmaster: {}\nslave: {}",
            sent.send_status,
            tail(&master.stderr),
            tail(&slave.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..MESSAGES {
        let message = RealMessage::builder()
            .topic(topic)
            .tags("R")
            .body(format!("m-{i}").into_bytes())
            .build()
            .unwrap();
        let sent = producer
            .send(message)
            .await
            .expect("send")
            .expect("a result");
        assert_eq!(
            format!("{:?}", sent.send_status),
            "SendOk",
            "message {i} acknowledged once the slave has it"
        );
    }
    producer.shutdown().await;

    // Every acknowledged byte is on the slave: the segments are identical.
    let (m, s) = (
        first_segment(dir.path(), "master"),
        first_segment(dir.path(), "slave"),
    );
    assert_eq!(m.len() as u64, SEGMENT_BYTES);
    assert!(
        m == s,
        "the slave's CommitLog segment differs from the master's"
    );
    // The slave built its own ConsumeQueues from the records, unit for unit the master's, and
    // serves them once SlaveSynchronize has copied the master's topic configs.
    let on_master = block_in_place(|| stored_messages(&master_addr, topic, 2));
    assert_eq!(on_master.len(), probes + MESSAGES);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = block_in_place(|| RawConn::connect(&slave_addr));
        let (frame, _) = block_in_place(|| pull(&mut conn, "repl_cg", topic, 0, 0));
        if frame.code() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave never served {topic}: {} {}\nslave: {}",
            frame.code(),
            frame.remark(),
            tail(&slave.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let on_slave = block_in_place(|| stored_messages(&slave_addr, topic, 2));
    let bodies = |v: &[(String, std::collections::HashMap<String, String>)]| {
        v.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        bodies(&on_slave),
        bodies(&on_master),
        "the slave serves the same messages"
    );
    for queue in 0..2 {
        let path = |name: &str| {
            dir.path()
                .join(name)
                .join("consumequeue")
                .join(topic)
                .join(queue.to_string())
                .join(format!("{:020}", 0))
        };
        let (m, s) = (
            std::fs::read(path("master")).expect("the master's queue file"),
            std::fs::read(path("slave")).expect("the slave's queue file"),
        );
        assert!(m == s, "ConsumeQueue {topic}/{queue} differs on the slave");
        assert!(m.iter().any(|b| *b != 0));
    }
    // vostok admin haStatus: the master's one slave, caught up; the slave's link.
    let status = block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_vostok"))
            .args(["admin", "haStatus", "-n", &ns, "-b", &master_addr])
            .output()
            .unwrap()
    });
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "{table}");
    assert!(table.contains("#SlaveNum\t1"), "{table}");
    assert!(table.contains("#InSyncSlaveNum\t1"), "{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no slave row: {table}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[2], "0", "no bytes behind: {table}");
    assert_eq!(row[4], "OK", "{table}");
    let status = block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_vostok"))
            .args(["admin", "haStatus", "-n", &ns, "-b", &slave_addr])
            .output()
            .unwrap()
    });
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        table.contains(&format!("#MasterAddr\t127.0.0.1:{ha_port}")),
        "{table}"
    );
    // A slave takes no sends.
    let mut raw = block_in_place(|| RawConn::connect(&slave_addr));
    let refused = block_in_place(|| send_v2(&mut raw, topic, 0, b"to-the-slave", "R"));
    assert_eq!(refused.code(), 14, "{}", refused.remark());
    drop((namesrv, master, slave));
}

const FAILOVER_MESSAGES: usize = 40;

/// What a consumer received: message bodies in arrival order.
type Bodies = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// `rocketmq-client-rust`'s listener collecting bodies.
struct RustListener(Bodies);

impl rocketmq_client_rust::MessageListenerConcurrently for RustListener {
    fn consume_message(
        &self,
        msgs: &[&rocketmq_model::common::message::message_ext::MessageExt],
        _context: &rocketmq_client_rust::ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<rocketmq_client_rust::ConsumeConcurrentlyStatus> {
        let mut sink = self.0.lock().unwrap();
        for m in msgs {
            sink.push(
                String::from_utf8_lossy(m.body().as_deref().unwrap_or_default()).into_owned(),
            );
        }
        Ok(rocketmq_client_rust::ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Waits until `received` holds every acknowledged body.
async fn until_all_consumed(received: &Bodies, acked: &[(String, String)], what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::BTreeSet<String> =
            received.lock().unwrap().iter().cloned().collect();
        let missing: Vec<&String> = acked
            .iter()
            .map(|(b, _)| b)
            .filter(|b| !got.contains(*b))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never consumed {missing:?}\nslave: {}",
            tail(log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `group`'s offsets of `topic`'s two queues on `broker_addr` are `expected`.
async fn until_committed(
    broker_addr: &str,
    group: &str,
    topic: &str,
    expected: &[i64],
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed: Vec<Option<i64>> = block_in_place(|| {
            let mut conn = RawConn::connect(broker_addr);
            (0..2)
                .map(|q| committed_offset(&mut conn, group, topic, q))
                .collect()
        });
        if committed == expected.iter().map(|m| Some(*m)).collect::<Vec<_>>() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {group} committed {committed:?}, the queues end at {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends probes to queue 0 of `topic` on a SYNC_MASTER until one is SEND_OK: until then it
/// answers SLAVE_NOT_AVAILABLE (the probes are stored all the same).
async fn until_a_slave_acks(conn: &mut RawConn, topic: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while block_in_place(|| send_v2(conn, topic, 0, b"probe", "P")).code() != 0 {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `topic` (2 queues) on a second group's broker, once the first group has it: waits
/// until the NameServer's route lists both groups' queues.
fn create_topic_on_second_group(broker_addr: &str, namesrv_addr: &str, topic: &str) {
    let mut broker = RawConn::connect(broker_addr);
    let created = broker.request(
        17, // UPDATE_AND_CREATE_TOPIC
        &[
            ("topic", topic.to_owned()),
            ("defaultTopic", "TBW102".to_owned()),
            ("readQueueNums", "2".to_owned()),
            ("writeQueueNums", "2".to_owned()),
            ("perm", "6".to_owned()),
            ("topicFilterType", "SINGLE_TAG".to_owned()),
            ("topicSysFlag", "0".to_owned()),
            ("order", "false".to_owned()),
        ],
        &[],
    );
    assert_eq!(created.code(), 0, "{}", created.remark());
    let mut namesrv = RawConn::connect(namesrv_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let route = namesrv.request(105, &[("topic", topic.to_owned())], &[]); // GET_ROUTEINFO_BY_TOPIC
        let text = String::from_utf8_lossy(&route.body).into_owned();
        if text.matches("writeQueueNums").count() == 2 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the second group's queues never routed: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `count` messages through Vostok's producer; returns the bodies acknowledged SEND_OK,
/// with the broker group each went to.
async fn send_bodies(
    producer: &vostok::client::Producer,
    topic: &str,
    prefix: &str,
    count: usize,
) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    for i in 0..count {
        let body = format!("{prefix}-{i}");
        let sent = producer
            .send(vostok::client::Message::new(
                topic,
                body.clone().into_bytes(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(sent.status, vostok::client::SendStatus::SendOk, "{body}");
        acked.push((body, sent.queue.broker_name.clone()));
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_s_consumers_carry_on_at_its_slave_and_nothing_is_consumed_twice() {
    tokio::time::timeout(Duration::from_secs(150), failover_scenario())
        .await
        .expect("the failover scenario finishes within 150 s");
}

async fn failover_scenario() {
    use std::sync::{Arc, Mutex};
    use vostok::client::{ConsumeFromWhere, ConsumeStatus, MessageExt, PushConsumer};

    let dir = tempfile::tempdir().unwrap();
    let namesrv = block_in_place(|| Proc::start(dir.path(), "namesrv", &["namesrv", "-p", "0"]));
    let ns = namesrv.get("namesrv");
    let (ha_port, other_ha_port) = (free_port(), free_port());
    let master_conf = format!("brokerRole=SYNC_MASTER\nhaListenPort={ha_port}\n");
    let mut master = block_in_place(|| broker(dir.path(), "master", &ns, &master_conf));
    let slave =
        block_in_place(|| broker(dir.path(), "slave", &ns, "brokerRole=SLAVE\nbrokerId=1\n"));
    let other = block_in_place(|| {
        broker_of(
            dir.path(),
            "other",
            "repl-b",
            &ns,
            &format!("haListenPort={other_ha_port}\n"),
            0,
        )
    });
    let (master_addr, slave_addr) = (master.get("broker"), slave.get("broker"));
    let topic = "FailoverTopic";
    let group = "failover_cg";
    block_in_place(|| create_topic(&master_addr, &ns, topic, 2));
    block_in_place(|| create_topic_on_second_group(&other.get("broker"), &ns, topic));

    let producer = vostok::client::Producer::builder()
        .namesrv_addr(&ns)
        .group(&unique("failover_pg"))
        .send_timeout(Duration::from_secs(5))
        .route_refresh_interval(Duration::from_secs(1))
        .build()
        .expect("producer builds")
        .start()
        .await
        .expect("producer starts");
    let mut conn = block_in_place(|| RawConn::connect(&master_addr));
    until_a_slave_acks(&mut conn, topic, "the slave never caught up").await;
    drop(conn);
    let mut acked = send_bodies(&producer, topic, "before", FAILOVER_MESSAGES).await;
    // The slave knows the topic (SlaveSynchronize) before its master goes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut conn = block_in_place(|| RawConn::connect(&slave_addr));
        let (frame, _) = block_in_place(|| pull(&mut conn, "probe_cg", topic, 0, 0));
        if frame.code() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the slave never served {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A consumer of rocketmq-client-rust in a group of its own (routes polled every 10 s, its
    // shortest).
    let rust_group = "failover_rust_cg";
    let rust_received: Bodies = Arc::default();
    let mut rust_consumer = {
        use rocketmq_client_rust::MQPushConsumer as _;
        let mut config = rocketmq_client_rust::ClientConfig::new();
        config.namesrv_addr = Some(ns.clone().into());
        config.set_poll_name_server_interval(10_000);
        let mut consumer = push_consumer_builder(&ns, rust_group)
            .client_config(config)
            .pull_batch_size(1)
            .pull_threshold_for_queue(1)
            .build();
        consumer.subscribe(topic, "*").await.expect("subscribes");
        consumer.register_message_listener_concurrently(RustListener(rust_received.clone()));
        consumer
            .start()
            .await
            .expect("rocketmq-client-rust consumer starts");
        consumer
    };
    let received: Bodies = Arc::default();
    let consumer = {
        let sink = received.clone();
        PushConsumer::builder()
            .namesrv_addr(&ns)
            .group(group)
            .subscribe(topic, "*")
            .consume_from(ConsumeFromWhere::FirstOffset)
            .rebalance_interval(Duration::from_secs(1))
            .persist_offset_interval(Duration::from_secs(1))
            // One message in hand per queue: what follows the kill is read from the slave.
            .pull_batch_size(1)
            .pull_threshold_for_queue(1)
            .consume_batch_size(1)
            .consume_concurrency(1)
            .listener(move |messages: Vec<MessageExt>| {
                let sink = sink.clone();
                async move {
                    // Slow enough that the master dies mid-consumption.
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    let mut sink = sink.lock().unwrap();
                    for m in &messages {
                        sink.push(String::from_utf8_lossy(m.body()).into_owned());
                    }
                    ConsumeStatus::ConsumeSuccess
                }
            })
            .build()
            .expect("consumer builds")
            .start()
            .await
            .expect("consumer starts")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < 8 {
        assert!(
            Instant::now() < deadline,
            "nothing consumed from the master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let master_port: u16 = master_addr.rsplit(':').next().unwrap().parse().unwrap();
    master.child.kill().unwrap();
    master.child.wait().unwrap();
    let consumed_at_kill = received.lock().unwrap().len();
    let rust_consumed_at_kill = rust_received.lock().unwrap().len();

    // Sends go to the other group.
    let during = send_bodies(&producer, topic, "during", 10).await;
    assert!(
        during.iter().all(|(_, b)| b == "repl-b"),
        "every send after the kill lands on repl-b: {during:?}"
    );
    acked.extend(during);

    // Every acknowledged message reaches both consumers: repl-a's from its slave.
    until_all_consumed(&received, &acked, "Vostok's consumer", &slave.stderr).await;
    until_all_consumed(
        &rust_received,
        &acked,
        "rocketmq-client-rust",
        &slave.stderr,
    )
    .await;
    // Commits continued on the slave, up to the end of each queue.
    let slave_max: Vec<i64> = block_in_place(|| {
        let mut conn = RawConn::connect(&slave_addr);
        (0..2).map(|q| max_offset(&mut conn, topic, q)).collect()
    });
    // Both read repl-a's messages from the slave after the kill.
    let on_a: std::collections::BTreeSet<&String> = acked
        .iter()
        .filter(|(_, b)| b == "repl-a")
        .map(|(m, _)| m)
        .collect();
    for (what, got, at_kill) in [
        ("Vostok's consumer", &received, consumed_at_kill),
        (
            "rocketmq-client-rust",
            &rust_received,
            rust_consumed_at_kill,
        ),
    ] {
        let got = got.lock().unwrap();
        let from_slave = got[at_kill..].iter().filter(|b| on_a.contains(b)).count();
        assert!(
            from_slave > 0,
            "{what} read nothing of repl-a after its master died ({at_kill} consumed before)"
        );
    }
    until_committed(&slave_addr, group, topic, &slave_max, "on the slave").await;
    until_committed(&slave_addr, rust_group, topic, &slave_max, "on the slave").await;
    // The consumers leave while the master is still down (their last commits go to the slave).
    consumer.shutdown().await;
    rust_consumer.shutdown().await;
    let consumed = received.lock().unwrap().len();

    // The master returns on its port, from its own disk.
    let master = block_in_place(|| {
        broker_of(
            dir.path(),
            "master",
            "repl-a",
            &ns,
            &master_conf,
            master_port,
        )
    });
    let on_master = block_in_place(|| stored_messages(&master_addr, topic, 2));
    let stored: std::collections::BTreeSet<String> =
        on_master.into_iter().map(|(b, _)| b).collect();
    for (body, broker) in &acked {
        if broker == "repl-a" {
            assert!(
                stored.contains(body),
                "acknowledged {body} lost by the master"
            );
        }
    }
    // The slave hands the commits made on it back: the master's offsets reach the queues' ends.
    until_committed(&master_addr, group, topic, &slave_max, "handed back").await;
    until_committed(&master_addr, rust_group, topic, &slave_max, "handed back").await;
    // A consumer of the group starting now gets nothing already consumed.
    let again: Arc<Mutex<Vec<String>>> = Arc::default();
    let second = {
        let sink = again.clone();
        PushConsumer::builder()
            .namesrv_addr(&ns)
            .group(group)
            .subscribe(topic, "*")
            .consume_from(ConsumeFromWhere::FirstOffset)
            .rebalance_interval(Duration::from_secs(1))
            .listener(move |messages: Vec<MessageExt>| {
                let sink = sink.clone();
                async move {
                    let mut sink = sink.lock().unwrap();
                    for m in &messages {
                        sink.push(String::from_utf8_lossy(m.body()).into_owned());
                    }
                    ConsumeStatus::ConsumeSuccess
                }
            })
            .build()
            .expect("consumer builds")
            .start()
            .await
            .expect("consumer starts")
    };
    let fresh = send_bodies(&producer, topic, "after", 6).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fresh.iter().all(|(b, _)| again.lock().unwrap().contains(b)) {
        assert!(
            Instant::now() < deadline,
            "the new messages never came: {:?}",
            again.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = again.lock().unwrap().clone();
    assert!(
        again.iter().all(|b| b.starts_with("after-")),
        "consumed twice after the master returned: {again:?}"
    );
    second.shutdown().await;
    producer.shutdown().await;
    assert!(consumed >= FAILOVER_MESSAGES + 10);
    drop((namesrv, master, slave, other));
}

/// Reads from `stream` until the peer closes it (or `timeout` passes): whether it closed.
fn closed_within(stream: &mut std::net::TcpStream, timeout: Duration) -> bool {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ha_port_drops_garbage_and_fake_acks_and_the_group_keeps_serving() {
    tokio::time::timeout(Duration::from_secs(120), bad_ha_input())
        .await
        .expect("the bad HA input scenario finishes within 120 s");
}

/// Bad input on a master's HA port (issue acceptance: garbage, a report beyond the master's
/// end, a report that goes back, a peer that fakes acks): each connection is closed and
/// logged, a SYNC_MASTER never answers SEND_OK on a fake ack, the real slave stays in sync and
/// the master's CommitLog holds only what producers sent.
async fn bad_ha_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let namesrv = block_in_place(|| Proc::start(dir.path(), "namesrv", &["namesrv", "-p", "0"]));
    let ns = namesrv.get("namesrv");
    let ha_port = free_port();
    let ha_addr = format!("127.0.0.1:{ha_port}");
    let master = block_in_place(|| {
        broker(
            dir.path(),
            "master",
            &ns,
            &format!("brokerRole=SYNC_MASTER\nhaListenPort={ha_port}\nslaveTimeout=1000\n"),
        )
    });
    let mut slave = block_in_place(|| {
        broker(
            dir.path(),
            "slave",
            &ns,
            &format!("brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress={ha_addr}\n"),
        )
    });
    let master_addr = master.get("broker");
    let topic = "BadHaTopic";
    block_in_place(|| create_topic(&master_addr, &ns, topic, 1));
    let mut conn = block_in_place(|| RawConn::connect(&master_addr));
    until_a_slave_acks(&mut conn, topic, "the slave never caught up").await;
    let max = |conn: &mut RawConn| -> u64 {
        let f = conn.request(
            28, // GET_BROKER_RUNTIME_INFO
            &[],
            &[],
        );
        let text = String::from_utf8_lossy(&f.body).into_owned();
        let at = text
            .find("\"commitLogMaxOffset\":\"")
            .expect("commitLogMaxOffset")
            + 22;
        text[at..].split('"').next().unwrap().parse().unwrap()
    };

    // Garbage: eight bytes read as an offset far beyond the master's end.
    let mut garbage = std::net::TcpStream::connect(&ha_addr).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(
        block_in_place(|| closed_within(&mut garbage, Duration::from_secs(5))),
        "garbage on the HA port is closed: {}",
        tail(&master.stderr)
    );
    // A report that goes back: a valid start, then an offset below it.
    let end = block_in_place(|| max(&mut conn));
    let mut backwards = std::net::TcpStream::connect(&ha_addr).unwrap();
    backwards.write_all(&end.to_be_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    backwards.write_all(&(end / 2).to_be_bytes()).unwrap();
    assert!(
        block_in_place(|| closed_within(&mut backwards, Duration::from_secs(5))),
        "a report that goes back is closed: {}",
        tail(&master.stderr)
    );
    // The group kept serving: SYNC_MASTER sends are acknowledged with the real slave.
    for i in 0..5 {
        let sent =
            block_in_place(|| send_v2(&mut conn, topic, 0, format!("ok-{i}").as_bytes(), "R"));
        assert_eq!(sent.code(), 0, "{}", sent.remark());
    }

    // The real slave goes; a fake one claims at once to hold bytes it was never sent.
    slave.child.kill().unwrap();
    slave.child.wait().unwrap();
    let end = block_in_place(|| max(&mut conn));
    let mut fake = std::net::TcpStream::connect(&ha_addr).unwrap();
    fake.write_all(&end.to_be_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fake.write_all(&(end + 10_000).to_be_bytes()).unwrap();
    let sent = block_in_place(|| send_v2(&mut conn, topic, 0, b"unreplicated", "R"));
    assert!(
        sent.code() == 11 || sent.code() == 12,
        "a SYNC_MASTER send with only a fake slave is not SEND_OK: {} {}",
        sent.code(),
        sent.remark()
    );
    assert!(
        block_in_place(|| closed_within(&mut fake, Duration::from_secs(5))),
        "an ack beyond what was sent is closed"
    );
    let log = std::fs::read_to_string(&master.stderr).unwrap_or_default();
    assert!(
        log.matches("HA link closed: ").count() >= 3,
        "the closed HA connections are logged: {}",
        tail(&master.stderr)
    );

    // Nothing stored was touched: the queue holds exactly what producers sent.
    let stored = block_in_place(|| stored_messages(&master_addr, topic, 1));
    let bodies: Vec<String> = stored.into_iter().map(|(b, _)| b).collect();
    assert!(bodies
        .iter()
        .all(|b| b == "probe" || b.starts_with("ok-") || b == "unreplicated"));
    assert_eq!(bodies.iter().filter(|b| b.starts_with("ok-")).count(), 5);

    // The slave returns and catches up: sends are acknowledged again.
    slave = block_in_place(|| {
        broker(
            dir.path(),
            "slave",
            &ns,
            &format!("brokerRole=SLAVE\nbrokerId=1\nhaMasterAddress={ha_addr}\n"),
        )
    });
    until_a_slave_acks(&mut conn, topic, "the slave never came back").await;
    drop((namesrv, master, slave));
}
