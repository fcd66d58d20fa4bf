//! `vostok admin`, run as a process against `vostok standalone` with a live
//! `rocketmq-client-rust` producer and push consumer: every mqadmin verb it offers prints what
//! the test did (topics, queues, offsets, messages, client ids, lag), and bad flags or bad
//! targets end with a clear message and a non-zero exit.

mod common;

use std::process::Output;
use std::time::Duration;

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt as RealMessageExt;
use rocketmq_model::common::message::message_single::Message as RealMessage;
use tokio::task::block_in_place;

use common::*;

const QUEUES: u32 = 4;
const MESSAGES: usize = 6;

/// The verbs `vostok admin --help` must list: mqadmin's everyday commands.
const VERBS: [&str; 26] = [
    "updateTopic",
    "deleteTopic",
    "topicList",
    "topicRoute",
    "topicStatus",
    "topicClusterList",
    "updateTopicPerm",
    "clusterList",
    "brokerStatus",
    "getBrokerConfig",
    "updateBrokerConfig",
    "consumerProgress",
    "consumerConnection",
    "producerConnection",
    "queryMsgById",
    "queryMsgByKey",
    "queryMsgByUniqueKey",
    "queryMsgByOffset",
    "resetOffsetByTime",
    "updateSubGroup",
    "deleteSubGroup",
    "sendMessage",
    "consumeMessage",
    "wipeWritePerm",
    "addWritePerm",
    "statsAll",
];

#[derive(Clone, Default)]
struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl MessageListenerConcurrently for Count {
    fn consume_message(
        &self,
        msgs: &[&RealMessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        self.0
            .fetch_add(msgs.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Runs `vostok admin ARGS…` and returns its output.
fn admin(args: &[&str]) -> Output {
    block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vostok"))
            .arg("admin")
            .args(args)
            .output()
            .expect("vostok admin runs")
    })
}

/// Runs a verb against the NameServer and returns its stdout; it must succeed.
fn ok(namesrv: &str, verb: &str, args: &[&str]) -> String {
    let mut all = vec![verb, "-n", namesrv];
    all.extend_from_slice(args);
    let out = admin(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "vostok admin {all:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a verb that must fail with `code`; returns its stderr.
fn fails(code: i32, args: &[&str]) -> String {
    let out = admin(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "vostok admin {args:?}: stdout {} stderr {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.trim().is_empty(), "{args:?} says why on stderr");
    stderr
}

/// The whitespace-separated fields of the row starting with `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{table}"))
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_messages_and_groups_as_mqadmin_prints_them() {
    tokio::time::timeout(Duration::from_secs(150), topics_messages_and_groups())
        .await
        .expect("the scenario finishes within 150 s");
}

async fn topics_messages_and_groups() {
    let topic = "CliTopic";
    let group = "CliGroup";
    let producer_group = unique("CliProducer");
    let broker = block_in_place(Standalone::start);
    let ns = broker.namesrv_addr.as_str();

    // Topics.
    let created = ok(
        ns,
        "updateTopic",
        &["-c", "DefaultCluster", "-t", topic, "-r", "4", "-w", "4"],
    );
    assert!(
        created.contains(&format!("create topic to {} success.", broker.broker_addr)),
        "{created}"
    );
    assert!(
        created.contains("readQueueNums=4, writeQueueNums=4, perm=RW-"),
        "{created}"
    );
    assert!(ok(ns, "topicList", &[]).lines().any(|l| l == topic));
    assert_eq!(
        ok(ns, "topicClusterList", &["-t", topic]).trim(),
        "DefaultCluster"
    );
    let route = ok(ns, "topicRoute", &["-t", topic, "-l"]);
    let fields = row(&route, "DefaultCluster");
    assert_eq!(fields[1], "broker-a");
    assert_eq!(&fields[3..], ["4", "4", "6"], "{route}");
    let json = ok(ns, "topicRoute", &["-t", topic]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("the route prints as JSON");
    assert_eq!(json["queueDatas"][0]["writeQueueNums"], 4);

    // Messages: a real producer sends with keys; sendMessage adds one more to queue 2.
    let mut producer = start_producer_in(ns, &producer_group).await;
    wait_for_publish_route(&mut producer, topic, QUEUES as usize).await;
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let message = RealMessage::builder()
            .topic(topic)
            .tags("TagA")
            .keys(vec![format!("key-{}", i % 2)])
            .body(format!("body-{i}").into_bytes())
            .build()
            .expect("message builds");
        let sent = producer.send(message).await.expect("send succeeds");
        ids.push(
            sent.expect("a send result")
                .msg_id
                .expect("a msg id")
                .to_string(),
        );
    }
    let sent = ok(
        ns,
        "sendMessage",
        &[
            "-t", topic, "-p", "from-cli", "-k", "cli-key", "-c", "TagB", "-b", "broker-a", "-i",
            "2",
        ],
    );
    let fields = row(&sent, "broker-a");
    assert_eq!(&fields[1..3], ["2", "SEND_OK"], "{sent}");
    let cli_id = fields[3].to_owned();
    let total = MESSAGES as i64 + 1;

    let status = ok(ns, "topicStatus", &["-t", topic]);
    let max_sum: i64 = status
        .lines()
        .filter(|l| l.starts_with("broker-a"))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(max_sum, total, "{status}");
    assert!(status.contains("Topic Put TPS:"), "{status}");

    let by_key = ok(ns, "queryMsgByKey", &["-t", topic, "-k", "key-1"]);
    let listed: Vec<&str> = by_key
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let mut expected: Vec<&str> = ids.iter().skip(1).step_by(2).map(String::as_str).collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    expected.sort();
    assert_eq!(listed_sorted, expected, "{by_key}");

    let by_unique = ok(ns, "queryMsgByUniqueKey", &["-t", topic, "-i", &cli_id]);
    assert!(
        by_unique.contains("Message Body:        from-cli"),
        "{by_unique}"
    );
    assert!(
        by_unique.contains("Tags:                [TagB]"),
        "{by_unique}"
    );
    assert!(
        by_unique.contains("Keys:                [cli-key]"),
        "{by_unique}"
    );
    assert!(by_unique.contains("Queue ID:            2"), "{by_unique}");
    assert!(by_unique.contains("WARN: No Consumer"), "{by_unique}");
    let offset_id = by_unique
        .lines()
        .find_map(|l| l.strip_prefix("OffsetID:"))
        .expect("an OffsetID line")
        .trim()
        .to_owned();
    let by_id = ok(ns, "queryMsgById", &["-i", &offset_id]);
    assert!(by_id.contains("Message Body:        from-cli"), "{by_id}");
    let queue_offset = by_unique
        .lines()
        .find_map(|l| l.strip_prefix("Queue Offset:"))
        .expect("a Queue Offset line")
        .trim()
        .to_owned();
    let by_offset = ok(
        ns,
        "queryMsgByOffset",
        &[
            "-t",
            topic,
            "-b",
            "broker-a",
            "-i",
            "2",
            "-o",
            &queue_offset,
        ],
    );
    assert!(
        by_offset.contains(&format!("OffsetID:            {offset_id}")),
        "{by_offset}"
    );

    let consumed = ok(ns, "consumeMessage", &["-t", topic, "-c", "3"]);
    assert_eq!(
        consumed
            .lines()
            .filter(|l| l.starts_with("MSGID: "))
            .count(),
        3,
        "{consumed}"
    );
    let all = ok(ns, "consumeMessage", &["-t", topic]);
    assert_eq!(
        all.lines().filter(|l| l.starts_with("MSGID: ")).count() as i64,
        total,
        "{all}"
    );

    // A consuming group: connection, progress, and the messages' tracks.
    let count = Count::default();
    let mut consumer = push_consumer_builder(ns, group).build();
    consumer.subscribe(topic, "*").await.expect("subscribes");
    consumer.register_message_listener_concurrently(count.clone());
    consumer.start().await.expect("consumer starts");
    let seen = count.clone();
    wait_until(
        "every message consumed",
        Duration::from_secs(30),
        move || seen.0.load(std::sync::atomic::Ordering::SeqCst) as i64 >= total,
    )
    .await;
    let ns_owned = ns.to_owned();
    wait_until(
        "the group's lag reaches 0",
        Duration::from_secs(20),
        move || {
            let out = admin(&["consumerProgress", "-n", &ns_owned, "-g", group]);
            String::from_utf8_lossy(&out.stdout).contains("Consume Diff Total: 0")
        },
    )
    .await;
    let progress = ok(ns, "consumerProgress", &["-g", group, "-t", topic]);
    let rows: Vec<&str> = progress.lines().filter(|l| l.starts_with(topic)).collect();
    assert_eq!(rows.len(), QUEUES as usize, "{progress}");
    let consumer_sum: i64 = rows
        .iter()
        .map(|l| l.split_whitespace().nth(4).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(consumer_sum, total, "{progress}");
    assert!(progress.contains("Consume Diff Total: 0"), "{progress}");
    let connection = ok(ns, "consumerConnection", &["-g", group]);
    let client = connection.lines().nth(1).expect("a client row");
    assert!(client.contains('@'), "a client id: {connection}");
    assert!(
        connection.contains("Below is subscription:"),
        "{connection}"
    );
    assert!(row(&connection, topic).contains(&"*"), "{connection}");
    assert!(
        connection.contains("ConsumeType: CONSUME_PASSIVELY"),
        "{connection}"
    );
    assert!(
        connection.contains("MessageModel: CLUSTERING"),
        "{connection}"
    );

    // -s true: each queue's holder, by the IP of its client id.
    let client_ip = client.split('@').next().unwrap().to_owned();
    let with_ip = ok(
        ns,
        "consumerProgress",
        &["-g", group, "-t", topic, "-s", "true"],
    );
    assert!(with_ip.contains("#Client IP"), "{with_ip}");
    let holders: Vec<&str> = with_ip
        .lines()
        .filter(|l| l.starts_with(topic))
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(
        holders,
        vec![client_ip.as_str(); QUEUES as usize],
        "{with_ip}"
    );

    let producers = ok(
        ns,
        "producerConnection",
        &["-g", &producer_group, "-t", topic],
    );
    let first = row(&producers, "0001");
    assert!(first[1].contains('@'), "a client id: {producers}");
    assert!(
        first[2].starts_with("127.0.0.1:"),
        "the client's address: {producers}"
    );
    let all_groups = ok(ns, "consumerProgress", &[]);
    let fields = row(&all_groups, group);
    assert_eq!(fields[1], "1", "one member: {all_groups}");
    assert_eq!(&fields[3..5], ["PUSH", "CLUSTERING"], "{all_groups}");
    assert_eq!(fields.last(), Some(&"0"), "no backlog: {all_groups}");

    let tracked = ok(ns, "queryMsgByUniqueKey", &["-t", topic, "-i", &cli_id]);
    assert!(
        tracked.contains(&format!(
            "MessageTrack [consumerGroup={group}, trackType=CONSUMED"
        )),
        "{tracked}"
    );

    let ns_owned = ns.to_owned();
    wait_until(
        "statsAll counts the puts and gets",
        Duration::from_secs(30),
        move || {
            let out = admin(&["statsAll", "-n", &ns_owned, "-t", topic]);
            let table = String::from_utf8_lossy(&out.stdout).into_owned();
            table.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 7
                    && f[0] == topic
                    && f[1] == group
                    && f[2] == "0"
                    && f[5] == total.to_string()
                    && f[6] == total.to_string()
            })
        },
    )
    .await;

    // Groups: create, see, delete.
    let created = ok(
        ns,
        "updateSubGroup",
        &[
            "-c",
            "DefaultCluster",
            "-g",
            "CliGroup2",
            "-r",
            "3",
            "-q",
            "2",
        ],
    );
    assert!(created.contains("retryMaxTimes=3"), "{created}");
    assert!(created.contains("retryQueueNums=2"), "{created}");
    let deleted = ok(
        ns,
        "deleteSubGroup",
        &["-b", &broker.broker_addr, "-g", "CliGroup2"],
    );
    assert!(
        deleted.contains("delete subscription group [CliGroup2]"),
        "{deleted}"
    );

    consumer.shutdown().await;
    producer.shutdown().await;

    // Topic deletion: gone from the list and the route.
    let deleted = ok(ns, "deleteTopic", &["-c", "DefaultCluster", "-t", topic]);
    assert!(deleted.contains("from NameServer success."), "{deleted}");
    assert!(!ok(ns, "topicList", &[]).lines().any(|l| l == topic));
    let stderr = fails(1, &["topicStatus", "-n", ns, "-t", topic]);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_verbs_and_usage_errors() {
    let broker = block_in_place(Standalone::start);
    let ns = broker.namesrv_addr.as_str();
    let addr = broker.broker_addr.as_str();

    let help = admin(&["--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for verb in VERBS {
        assert!(help.contains(verb), "--help lists {verb}:\n{help}");
    }

    let clusters = ok(ns, "clusterList", &[]);
    let fields = row(&clusters, "DefaultCluster");
    assert_eq!(
        &fields[1..5],
        ["broker-a", "0", addr, "V5_3_3"],
        "{clusters}"
    );
    assert_eq!(fields.last(), Some(&"true"), "{clusters}");
    let more = ok(ns, "clusterList", &["-m"]);
    assert!(row(&more, "DefaultCluster").contains(&"broker-a"), "{more}");

    let status = ok(ns, "brokerStatus", &["-b", addr]);
    for key in [
        "putTps",
        "getTransferredTps",
        "commitLogMaxOffset",
        "msgPutTotalTodayNow",
        "brokerVersionDesc",
    ] {
        assert!(
            status.lines().any(|l| l.starts_with(key)),
            "brokerStatus shows {key}:\n{status}"
        );
    }
    let config = ok(ns, "getBrokerConfig", &["-b", addr]);
    assert!(
        config.starts_with(&format!("============{addr}============")),
        "{config}"
    );
    let value = |config: &str, key: &str| {
        config
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .and_then(|l| l.split("=  ").nth(1))
            .map(str::to_owned)
    };
    assert_eq!(value(&config, "brokerName").as_deref(), Some("broker-a"));
    assert_eq!(value(&config, "brokerPermission").as_deref(), Some("6"));

    // A run-time change, seen by the next read; then back.
    let updated = ok(
        ns,
        "updateBrokerConfig",
        &["-c", "DefaultCluster", "-k", "brokerPermission", "-v", "4"],
    );
    assert!(
        updated.contains(&format!("update broker config success, {addr}")),
        "{updated}"
    );
    let config = ok(ns, "getBrokerConfig", &["-c", "DefaultCluster"]);
    assert!(
        config.starts_with(&format!("============Master: {addr}============")),
        "{config}"
    );
    assert_eq!(value(&config, "brokerPermission").as_deref(), Some("4"));
    ok(
        ns,
        "updateBrokerConfig",
        &["-b", addr, "-k", "brokerPermission", "-v", "6"],
    );

    // Write permission through the NameServer, and a topic's own.
    ok(
        ns,
        "updateTopic",
        &["-b", addr, "-t", "PermTopic", "-r", "2", "-w", "2"],
    );
    let wiped = ok(ns, "wipeWritePerm", &["-b", "broker-a"]);
    assert!(
        wiped.starts_with(&format!(
            "wipe write perm of broker[broker-a] in name server[{ns}] OK, "
        )),
        "{wiped}"
    );
    let perm = |ns: &str| {
        row(
            &ok(ns, "topicRoute", &["-t", "PermTopic", "-l"]),
            "DefaultCluster",
        )[5]
        .to_owned()
    };
    assert_eq!(perm(ns), "4");
    let added = ok(ns, "addWritePerm", &["-b", "broker-a"]);
    assert!(added.contains("OK, "), "{added}");
    assert_eq!(perm(ns), "6");
    let changed = ok(
        ns,
        "updateTopicPerm",
        &["-c", "DefaultCluster", "-t", "PermTopic", "-p", "4"],
    );
    assert!(
        changed.contains(&format!("update topic perm from 6 to 4 in {addr} success.")),
        "{changed}"
    );
    let ns_owned = ns.to_owned();
    wait_until(
        "the route shows perm 4",
        Duration::from_secs(10),
        move || {
            let out = admin(&["topicRoute", "-n", &ns_owned, "-t", "PermTopic", "-l"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with("DefaultCluster") && l.trim_end().ends_with(" 4"))
        },
    )
    .await;

    // Usage mistakes: exit 2 with clap's message.
    let stderr = fails(2, &["updateTopic", "-n", ns, "-t", "X"]);
    assert!(
        stderr.contains("--brokerAddr") && stderr.contains("--clusterName"),
        "{stderr}"
    );
    let stderr = fails(
        2,
        &[
            "updateTopic",
            "-n",
            ns,
            "-c",
            "DefaultCluster",
            "-t",
            "X",
            "-p",
            "5",
        ],
    );
    assert!(stderr.contains("not a permission"), "{stderr}");
    fails(2, &["topicStatus", "-n", ns, "-t", "X", "--no-such-flag"]);
    fails(2, &["noSuchVerb"]);
    let stderr = fails(
        2,
        &[
            "resetOffsetByTime",
            "-n",
            ns,
            "-g",
            "G",
            "-t",
            "X",
            "-s",
            "yesterday",
        ],
    );
    assert!(stderr.contains("yyyy-MM-dd#HH:mm:ss:SSS"), "{stderr}");
    let stderr = fails(
        2,
        &[
            "updateSubGroup",
            "-n",
            ns,
            "-b",
            addr,
            "-g",
            "G",
            "--attributes",
            "x=y",
        ],
    );
    assert!(stderr.contains("+key=value"), "{stderr}");
    // Server-side refusals and unreachable servers: exit 1 with the reason.
    let stderr = fails(1, &["updateTopic", "-n", ns, "-c", "NoCluster", "-t", "X"]);
    assert!(stderr.contains("NoCluster"), "{stderr}");
    let stderr = fails(1, &["clusterList", "-n", "127.0.0.1:1"]);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    let stderr = fails(1, &["queryMsgById", "-n", ns, "-i", "not-an-id"]);
    assert!(stderr.contains("not-an-id"), "{stderr}");
    let stderr = fails(
        1,
        &[
            "updateBrokerConfig",
            "-n",
            ns,
            "-b",
            addr,
            "-k",
            "brokerConfigPath",
            "-v",
            "/x",
        ],
    );
    assert!(stderr.contains("code 16"), "{stderr}");
}
