//! NameServer behaviour through its public contract: requests in, responses and closes out.

use std::collections::BTreeMap;

use super::register::{register_broker_request, unregister_broker_request, BrokerIdentity};
use super::route::{ClusterInfo, TopicList, TopicRouteData};
use super::*;
use crate::topic::{DataVersion, TopicConfig};

const CLUSTER: &str = "DefaultCluster";

fn identity(broker_name: &str, broker_id: u64, addr: &str) -> BrokerIdentity {
    BrokerIdentity {
        cluster_name: CLUSTER.into(),
        broker_name: broker_name.into(),
        broker_id,
        broker_addr: addr.into(),
        ha_server_addr: addr.replace(":10911", ":10912"),
    }
}

fn topics(names: &[(&str, u32)]) -> BTreeMap<String, TopicConfig> {
    names
        .iter()
        .map(|(name, queues)| ((*name).to_owned(), TopicConfig::new(*name, *queues)))
        .collect()
}

fn version(counter: i64) -> DataVersion {
    DataVersion {
        state_version: 0,
        timestamp: 1_718_000_000_000,
        counter,
    }
}

fn namesrv() -> NameServer {
    NameServer::new(NamesrvConfig::default())
}

/// Sends `command` on `conn` and returns every output it produced.
fn call(
    ns: &mut NameServer,
    now_ms: u64,
    conn: u64,
    command: RemotingCommand,
) -> Vec<NamesrvOutput> {
    ns.handle_request(now_ms, ConnId(conn), command);
    std::iter::from_fn(|| ns.poll_output()).collect()
}

/// Sends a request that must be answered on `conn` with exactly one response.
fn ask(
    ns: &mut NameServer,
    now_ms: u64,
    conn: u64,
    mut command: RemotingCommand,
) -> RemotingCommand {
    command.opaque = 77;
    let mut outputs = call(ns, now_ms, conn, command);
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    match outputs.remove(0) {
        NamesrvOutput::Send { conn: to, command } => {
            assert_eq!(to, ConnId(conn));
            assert!(command.is_response());
            assert_eq!(command.opaque, 77);
            command
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

fn register(
    ns: &mut NameServer,
    now_ms: u64,
    conn: u64,
    who: &BrokerIdentity,
    topic_list: &[(&str, u32)],
    counter: i64,
) {
    let reply = ask(
        ns,
        now_ms,
        conn,
        register_broker_request(who, &topics(topic_list), &version(counter)),
    );
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
}

fn route_request(topic: &str, version: i32) -> RemotingCommand {
    let mut command =
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
    command.version = version;
    command
}

fn route(ns: &mut NameServer, now_ms: u64, topic: &str) -> Option<TopicRouteData> {
    let reply = ask(ns, now_ms, 99, route_request(topic, 479));
    match reply.code {
        response::SUCCESS => Some(TopicRouteData::parse(&reply.body).expect("route body")),
        response::TOPIC_NOT_EXIST => None,
        code => panic!("unexpected code {code}: {:?}", reply.remark),
    }
}

fn body_text(command: &RemotingCommand) -> &str {
    std::str::from_utf8(&command.body).expect("utf8 body")
}

/// Goal: a registered topic's route is served in both JSON dialects exactly as a Java
/// NameServer writes it. Method: one master with one topic; ask with version 479, with version
/// 317, and with version 317 plus acceptStandardJsonOnly.
#[test]
fn register_then_route_in_both_dialects() {
    let mut ns = namesrv();
    let broker = identity("broker-a", 0, "192.168.1.10:10911");
    register(&mut ns, 1_000, 1, &broker, &[("TopicA", 4)], 1);

    let standard = ask(&mut ns, 1_001, 2, route_request("TopicA", 479));
    assert_eq!(standard.code, response::SUCCESS);
    assert_eq!(standard.remark, None);
    assert_eq!(
        body_text(&standard),
        r#"{"brokerDatas":[{"brokerAddrs":{"0":"192.168.1.10:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );

    let fastjson = ask(&mut ns, 1_002, 2, route_request("TopicA", 317));
    assert_eq!(
        body_text(&fastjson),
        r#"{"brokerDatas":[{"brokerAddrs":{0:"192.168.1.10:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );

    let opted_in = ask(
        &mut ns,
        1_003,
        2,
        route_request("TopicA", 317).with_ext("acceptStandardJsonOnly", "true"),
    );
    assert_eq!(opted_in.body, standard.body);
}

#[test]
fn unknown_topic_is_topic_not_exist() {
    let mut ns = namesrv();
    register(
        &mut ns,
        0,
        1,
        &identity("broker-a", 0, "10.0.0.1:10911"),
        &[("TopicA", 4)],
        1,
    );
    let reply = ask(&mut ns, 1, 2, route_request("Nope", 479));
    assert_eq!(reply.code, response::TOPIC_NOT_EXIST);
    let remark = reply.remark.expect("remark");
    assert!(
        remark.starts_with("No topic route info in name server for the topic: Nope"),
        "{remark}"
    );
    assert!(reply.body.is_empty());
}

/// Goal: two broker names of one cluster serving one topic both appear, sorted by name, and a
/// topic on only one of them routes to that one only.
#[test]
fn two_brokers_of_one_cluster() {
    let mut ns = namesrv();
    register(
        &mut ns,
        0,
        1,
        &identity("broker-b", 0, "10.0.0.2:10911"),
        &[("Shared", 8), ("OnlyB", 2)],
        1,
    );
    register(
        &mut ns,
        0,
        2,
        &identity("broker-a", 0, "10.0.0.1:10911"),
        &[("Shared", 4)],
        1,
    );

    let shared = route(&mut ns, 1, "Shared").expect("route");
    let names: Vec<&str> = shared
        .broker_datas
        .iter()
        .map(|b| b.broker_name.as_str())
        .collect();
    assert_eq!(names, ["broker-a", "broker-b"]);
    let queues: Vec<(&str, u32)> = shared
        .queue_datas
        .iter()
        .map(|q| (q.broker_name.as_str(), q.write_queue_nums))
        .collect();
    assert_eq!(queues, [("broker-a", 4), ("broker-b", 8)]);

    let only_b = route(&mut ns, 1, "OnlyB").expect("route");
    assert_eq!(only_b.broker_datas.len(), 1);
    assert_eq!(only_b.broker_datas[0].broker_addrs[&0], "10.0.0.2:10911");
}

/// Goal: UNREGISTER_BROKER removes the broker, its queues and topics left without queues.
#[test]
fn unregister_removes_broker_and_orphan_topics() {
    let mut ns = namesrv();
    let a = identity("broker-a", 0, "10.0.0.1:10911");
    let b = identity("broker-b", 0, "10.0.0.2:10911");
    register(&mut ns, 0, 1, &a, &[("Shared", 4), ("OnlyA", 4)], 1);
    register(&mut ns, 0, 2, &b, &[("Shared", 4)], 1);

    let reply = ask(&mut ns, 1, 1, unregister_broker_request(&a));
    assert_eq!(reply.code, response::SUCCESS);
    assert_eq!(route(&mut ns, 2, "OnlyA"), None);
    let shared = route(&mut ns, 2, "Shared").expect("route");
    assert_eq!(shared.broker_datas.len(), 1);
    assert_eq!(shared.broker_datas[0].broker_name, "broker-b");
    assert_eq!(shared.queue_datas.len(), 1);
    assert_eq!(ns.live_broker_count(), 1);
    let info = ns.cluster_info();
    assert_eq!(
        info.broker_addr_table.keys().collect::<Vec<_>>(),
        ["broker-b"]
    );
    assert_eq!(
        info.cluster_addr_table[CLUSTER].iter().collect::<Vec<_>>(),
        ["broker-b"]
    );

    ask(&mut ns, 3, 2, unregister_broker_request(&b));
    assert_eq!(route(&mut ns, 4, "Shared"), None);
    assert_eq!(ns.cluster_info(), ClusterInfo::default());
    assert_eq!(ns.live_broker_count(), 0);
}

/// Goal: a slave learns its master's addresses; removing the master keeps the broker name
/// (the slave still serves reads) and removing the slave too forgets everything.
#[test]
fn master_and_slave() {
    let mut ns = namesrv();
    let master = identity("broker-a", 0, "10.0.0.1:10911");
    let slave = identity("broker-a", 1, "10.0.0.3:10911");
    register(&mut ns, 0, 1, &master, &[("TopicA", 4)], 1);
    let reply = ask(
        &mut ns,
        0,
        2,
        register_broker_request(&slave, &topics(&[("TopicA", 4)]), &version(1)),
    );
    assert_eq!(reply.ext("masterAddr"), Some("10.0.0.1:10911"));
    assert_eq!(reply.ext("haServerAddr"), Some("10.0.0.1:10912"));

    let both = route(&mut ns, 1, "TopicA").expect("route");
    assert_eq!(
        both.broker_datas[0].broker_addrs,
        BTreeMap::from([
            (0, "10.0.0.1:10911".to_owned()),
            (1, "10.0.0.3:10911".to_owned())
        ])
    );

    ns.handle_disconnected(2, ConnId(1));
    let slave_only = route(&mut ns, 3, "TopicA").expect("route");
    assert_eq!(
        slave_only.broker_datas[0].broker_addrs,
        BTreeMap::from([(1, "10.0.0.3:10911".to_owned())])
    );
    ask(&mut ns, 4, 2, unregister_broker_request(&slave));
    assert_eq!(route(&mut ns, 5, "TopicA"), None);
}

/// Goal: a broker not refreshed for broker_channel_expired_ms is evicted at the next scan and
/// its connection closed, while a refreshed broker survives. Method: default config (120 s,
/// 5 s scans), two brokers, only one re-registers.
#[test]
fn expiry_by_time() {
    let mut ns = namesrv();
    let a = identity("broker-a", 0, "10.0.0.1:10911");
    let b = identity("broker-b", 0, "10.0.0.2:10911");
    register(&mut ns, 1_000, 1, &a, &[("TopicA", 4)], 1);
    register(&mut ns, 1_000, 2, &b, &[("TopicB", 4)], 1);
    assert_eq!(ns.poll_timeout(), Some(6_000));

    register(&mut ns, 60_000, 2, &b, &[("TopicB", 4)], 1);
    // Exactly at the deadline a broker is still alive (Java evicts when last + 120 s < now).
    ns.handle_timeout(121_000);
    assert_eq!(ns.poll_output(), None);
    assert_eq!(ns.poll_timeout(), Some(126_000));
    ns.handle_timeout(125_999);
    assert_eq!(ns.poll_output(), None);

    ns.handle_timeout(126_000);
    assert_eq!(
        ns.poll_output(),
        Some(NamesrvOutput::Close { conn: ConnId(1) })
    );
    assert_eq!(ns.poll_output(), None);
    assert_eq!(ns.poll_timeout(), Some(131_000));
    assert_eq!(route(&mut ns, 126_001, "TopicA"), None);
    assert!(route(&mut ns, 126_001, "TopicB").is_some());
    assert_eq!(ns.live_broker_count(), 1);
}

#[test]
fn poll_timeout_starts_at_first_input() {
    let mut ns = NameServer::new(NamesrvConfig {
        broker_channel_expired_ms: 1_000,
        scan_not_active_broker_interval_ms: 100,
    });
    assert_eq!(ns.poll_timeout(), None);
    ns.handle_timeout(5_000);
    assert_eq!(ns.poll_timeout(), Some(5_100));
    ns.handle_timeout(5_100);
    assert_eq!(ns.poll_timeout(), Some(5_200));
}

/// Goal: closing a broker's connection forgets it at once; other connections' brokers stay.
#[test]
fn disconnect_removes_brokers_of_that_connection() {
    let mut ns = namesrv();
    register(
        &mut ns,
        0,
        1,
        &identity("broker-a", 0, "10.0.0.1:10911"),
        &[("TopicA", 4)],
        1,
    );
    register(
        &mut ns,
        0,
        2,
        &identity("broker-b", 0, "10.0.0.2:10911"),
        &[("TopicB", 4)],
        1,
    );
    ns.handle_disconnected(1, ConnId(1));
    assert_eq!(ns.poll_output(), None);
    assert_eq!(route(&mut ns, 2, "TopicA"), None);
    assert!(route(&mut ns, 2, "TopicB").is_some());
    // A connection that registered nothing changes nothing.
    ns.handle_disconnected(3, ConnId(99));
    assert!(route(&mut ns, 4, "TopicB").is_some());
}

/// Goal: a restarted broker registered over a new connection is not forgotten when its
/// previous process's connection closes, even if a late registration arrived over the old one
/// after the new one (the old process sent it just before it died).
#[test]
fn a_late_registration_over_an_old_connection_does_not_forget_the_new_one() {
    let mut ns = namesrv();
    let a = identity("broker-a", 0, "10.0.0.1:10911");
    register(&mut ns, 0, 1, &a, &[("TopicA", 4)], 1);
    // The broker restarts: its new process registers over connection 2, then the old
    // process's last registration arrives over connection 1, which then closes.
    register(&mut ns, 10, 2, &a, &[("TopicA", 4)], 1);
    register(&mut ns, 11, 1, &a, &[("TopicA", 4)], 1);
    ns.handle_disconnected(12, ConnId(1));
    assert!(
        route(&mut ns, 13, "TopicA").is_some(),
        "the live connection keeps it"
    );
    assert_eq!(ns.live_broker_count(), 1);
    // Its last connection closes: forgotten at once.
    ns.handle_disconnected(14, ConnId(2));
    assert_eq!(route(&mut ns, 15, "TopicA"), None);
    assert_eq!(ns.live_broker_count(), 0);
}

#[test]
fn cluster_info_lists_brokers_in_fastjson_dialect() {
    let mut ns = namesrv();
    register(
        &mut ns,
        0,
        1,
        &identity("broker-a", 0, "10.0.0.1:10911"),
        &[("TopicA", 4)],
        1,
    );
    let mut other = identity("broker-x", 0, "10.0.0.9:10911");
    other.cluster_name = "OtherCluster".into();
    register(&mut ns, 0, 2, &other, &[("TopicX", 4)], 1);

    // Java answers ClusterInfo in the fastjson dialect whatever the request version.
    let reply = ask(
        &mut ns,
        1,
        3,
        RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO),
    );
    assert_eq!(reply.code, response::SUCCESS);
    assert_eq!(
        body_text(&reply),
        r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false},"broker-x":{"brokerAddrs":{0:"10.0.0.9:10911"},"brokerName":"broker-x","cluster":"OtherCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"],"OtherCluster":["broker-x"]}}"#
    );
    assert_eq!(
        ClusterInfo::parse(&reply.body).expect("parse"),
        ns.cluster_info()
    );
}

#[test]
fn topic_lists() {
    let mut ns = namesrv();
    register(
        &mut ns,
        0,
        1,
        &identity("broker-a", 0, "10.0.0.1:10911"),
        &[("TopicA", 4), ("TBW102", 8)],
        1,
    );
    let mut other = identity("broker-x", 0, "10.0.0.9:10911");
    other.cluster_name = "OtherCluster".into();
    register(&mut ns, 0, 2, &other, &[("TopicX", 4)], 1);

    let all = ask(
        &mut ns,
        1,
        3,
        RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
    );
    assert_eq!(all.code, response::SUCCESS);
    assert_eq!(
        body_text(&all),
        r#"{"topicList":["TBW102","TopicA","TopicX"]}"#
    );

    let by_cluster = ask(
        &mut ns,
        1,
        3,
        RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER)
            .with_ext("cluster", "OtherCluster"),
    );
    let list: TopicList = serde_json::from_slice(&by_cluster.body).expect("list");
    assert_eq!(list.topic_list, ["TopicX"]);

    let unknown = ask(
        &mut ns,
        1,
        3,
        RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER).with_ext("cluster", "Nope"),
    );
    assert_eq!(body_text(&unknown), r#"{"topicList":[]}"#);

    let missing = ask(
        &mut ns,
        1,
        3,
        RemotingCommand::request(request::GET_TOPICS_BY_CLUSTER),
    );
    assert_eq!(missing.code, response::SYSTEM_ERROR);
}

#[test]
fn unknown_code_is_not_supported() {
    let mut ns = namesrv();
    let reply = ask(
        &mut ns,
        0,
        1,
        RemotingCommand::request(request::PULL_MESSAGE),
    );
    assert_eq!(reply.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        reply.remark.as_deref(),
        Some(" request type 11 not supported")
    );
}

/// Goal: oneway requests are processed but never answered, even when they fail.
#[test]
fn oneway_gets_no_response() {
    let mut ns = namesrv();
    let mut unknown = RemotingCommand::request(12345);
    unknown.mark_oneway();
    assert_eq!(call(&mut ns, 0, 1, unknown), []);

    let mut registration = register_broker_request(
        &identity("broker-a", 0, "10.0.0.1:10911"),
        &topics(&[("TopicA", 4)]),
        &version(1),
    );
    registration.mark_oneway();
    assert_eq!(call(&mut ns, 0, 1, registration), []);
    assert!(route(&mut ns, 1, "TopicA").is_some());

    // A response arriving at the NameServer is dropped silently.
    let stray = RemotingCommand::response_to(&RemotingCommand::request(1), 0, None);
    assert_eq!(call(&mut ns, 2, 1, stray), []);
}

/// Goal: bad REGISTER_BROKER input is answered with SYSTEM_ERROR and changes nothing.
#[test]
fn malformed_register_is_an_error_response() {
    let mut ns = namesrv();
    let who = identity("broker-a", 0, "10.0.0.1:10911");
    let good = register_broker_request(&who, &topics(&[("TopicA", 4)]), &version(1));

    // Garbage body without a checksum.
    let mut garbage = good
        .clone()
        .with_body(&b"{\"topicConfigSerializeWrapper\":["[..]);
    garbage.ext_fields.remove("bodyCrc32");
    let reply = ask(&mut ns, 0, 1, garbage);
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert!(reply.remark.expect("remark").contains("RegisterBrokerBody"));

    // Body altered after the checksum was computed.
    let tampered = good
        .clone()
        .with_body(good.body.slice(..good.body.len() - 1));
    let reply = ask(&mut ns, 0, 1, tampered);
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert_eq!(reply.remark.as_deref(), Some("crc32 not match"));

    let compressed = good.clone().with_ext("compressed", "true");
    let reply = ask(&mut ns, 0, 1, compressed);
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert_eq!(
        reply.remark.as_deref(),
        Some("compressed REGISTER_BROKER bodies are not supported")
    );

    let mut no_name = good.clone();
    no_name.ext_fields.remove("brokerName");
    let reply = ask(&mut ns, 0, 1, no_name);
    assert_eq!(reply.code, response::SYSTEM_ERROR);
    assert!(reply.remark.expect("remark").contains("brokerName"));

    let bad_id = good.clone().with_ext("brokerId", "-1");
    assert_eq!(ask(&mut ns, 0, 1, bad_id).code, response::SYSTEM_ERROR);
    let bad_crc = good.clone().with_ext("bodyCrc32", "x");
    assert_eq!(ask(&mut ns, 0, 1, bad_crc).code, response::SYSTEM_ERROR);

    assert_eq!(ns.live_broker_count(), 0);
    assert_eq!(route(&mut ns, 1, "TopicA"), None);

    let mut bad_unregister = unregister_broker_request(&who);
    bad_unregister.ext_fields.remove("brokerAddr");
    assert_eq!(
        ask(&mut ns, 1, 1, bad_unregister).code,
        response::SYSTEM_ERROR
    );
    assert_eq!(
        ask(
            &mut ns,
            1,
            1,
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC)
        )
        .code,
        response::SYSTEM_ERROR
    );
}

/// Goal: what `register_broker_request` builds is accepted by the NameServer and yields routes
/// matching the topic configs, including perm and topicSysFlag; re-registering with a new
/// DataVersion replaces queue counts.
#[test]
fn register_broker_request_round_trip() {
    let mut ns = namesrv();
    let who = identity("broker-a", 0, "10.0.0.1:10911");
    let mut table = topics(&[("TopicA", 4)]);
    let mut tbw = TopicConfig::new("TBW102", 8);
    tbw.perm = 7;
    tbw.topic_sys_flag = 1;
    table.insert("TBW102".into(), tbw);
    let reply = ask(
        &mut ns,
        0,
        1,
        register_broker_request(&who, &table, &version(1)),
    );
    assert_eq!(reply.code, response::SUCCESS);
    assert_eq!(reply.ext("masterAddr"), None);

    let tbw_route = route(&mut ns, 1, "TBW102").expect("route");
    assert_eq!(tbw_route.queue_datas[0].perm, 7);
    assert_eq!(tbw_route.queue_datas[0].topic_sys_flag, 1);
    assert_eq!(tbw_route.queue_datas[0].read_queue_nums, 8);

    // Same version: existing queue data is kept (Java only adds unknown topics then).
    table.get_mut("TopicA").expect("topic").write_queue_nums = 16;
    table.insert("TopicB".into(), TopicConfig::new("TopicB", 2));
    ask(
        &mut ns,
        2,
        1,
        register_broker_request(&who, &table, &version(1)),
    );
    assert_eq!(
        route(&mut ns, 3, "TopicA").expect("route").queue_datas[0].write_queue_nums,
        4
    );
    assert!(route(&mut ns, 3, "TopicB").is_some());

    // New version: every topic is rewritten.
    ask(
        &mut ns,
        4,
        1,
        register_broker_request(&who, &table, &version(2)),
    );
    assert_eq!(
        route(&mut ns, 5, "TopicA").expect("route").queue_datas[0].write_queue_nums,
        16
    );
}

#[test]
fn kv_config() {
    let mut ns = namesrv();
    let put = RemotingCommand::request(request::PUT_KV_CONFIG)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG)
        .with_ext("key", "TopicA")
        .with_ext("value", "broker-a:4");
    assert_eq!(ask(&mut ns, 0, 1, put).code, response::SUCCESS);

    let get = RemotingCommand::request(request::GET_KV_CONFIG)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG)
        .with_ext("key", "TopicA");
    let reply = ask(&mut ns, 0, 1, get.clone());
    assert_eq!(reply.code, response::SUCCESS);
    assert_eq!(reply.ext("value"), Some("broker-a:4"));

    let list = RemotingCommand::request(request::GET_KVLIST_BY_NAMESPACE)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG);
    let reply = ask(&mut ns, 0, 1, list.clone());
    assert_eq!(body_text(&reply), r#"{"table":{"TopicA":"broker-a:4"}}"#);

    // The order-topic table travels back to registering brokers.
    let registered = ask(
        &mut ns,
        0,
        2,
        register_broker_request(
            &identity("broker-a", 0, "10.0.0.1:10911"),
            &topics(&[]),
            &version(1),
        ),
    );
    assert_eq!(
        body_text(&registered),
        r#"{"table":{"TopicA":"broker-a:4"}}"#
    );

    let delete = RemotingCommand::request(request::DELETE_KV_CONFIG)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG)
        .with_ext("key", "TopicA");
    assert_eq!(ask(&mut ns, 0, 1, delete).code, response::SUCCESS);
    let reply = ask(&mut ns, 0, 1, get);
    assert_eq!(reply.code, response::QUERY_NOT_FOUND);
    assert_eq!(ask(&mut ns, 0, 1, list).code, response::QUERY_NOT_FOUND);

    let incomplete = RemotingCommand::request(request::PUT_KV_CONFIG).with_ext("namespace", "n");
    assert_eq!(ask(&mut ns, 0, 1, incomplete).code, response::SYSTEM_ERROR);
}

/// Goal: QUERY_DATA_VERSION reports whether the broker's table changed and keeps it alive.
#[test]
fn query_data_version_refreshes_and_compares() {
    let mut ns = namesrv();
    let who = identity("broker-a", 0, "10.0.0.1:10911");
    register(&mut ns, 0, 1, &who, &[("TopicA", 4)], 1);
    let query = |counter: i64| {
        RemotingCommand::request(request::QUERY_DATA_VERSION)
            .with_ext("brokerName", "broker-a")
            .with_ext("brokerAddr", "10.0.0.1:10911")
            .with_ext("clusterName", CLUSTER)
            .with_ext("brokerId", 0)
            .with_body(serde_json::to_vec(&version(counter)).expect("json"))
    };
    let same = ask(&mut ns, 100_000, 1, query(1));
    assert_eq!(same.ext("changed"), Some("false"));
    let theirs: DataVersion = serde_json::from_slice(&same.body).expect("body");
    assert_eq!(theirs, version(1));
    assert_eq!(
        ask(&mut ns, 100_000, 1, query(2)).ext("changed"),
        Some("true")
    );

    // Refreshed at 100 s, so still alive at 200 s.
    ns.handle_timeout(200_000);
    assert_eq!(ns.poll_output(), None);
    assert!(route(&mut ns, 200_000, "TopicA").is_some());

    let garbage = query(1).with_body(&b"nope"[..]);
    assert_eq!(
        ask(&mut ns, 200_000, 1, garbage).code,
        response::SYSTEM_ERROR
    );
}

#[test]
fn delete_topic_in_namesrv() {
    let mut ns = namesrv();
    register(
        &mut ns,
        0,
        1,
        &identity("broker-a", 0, "10.0.0.1:10911"),
        &[("TopicA", 4), ("TopicB", 4)],
        1,
    );
    let delete =
        RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_ext("topic", "TopicA");
    assert_eq!(ask(&mut ns, 1, 2, delete).code, response::SUCCESS);
    assert_eq!(route(&mut ns, 2, "TopicA"), None);
    let delete_b = RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV)
        .with_ext("topic", "TopicB")
        .with_ext("clusterName", "OtherCluster");
    ask(&mut ns, 3, 2, delete_b);
    assert!(route(&mut ns, 4, "TopicB").is_some());
}

/// Goal: mqadmin wipeWritePerm / addWritePerm: every topic of the broker name loses (or gets
/// back) write permission in the routes, with the count in the answer's header; the change
/// survives a registration with the same table version, as in RocketMQ, and an unknown broker
/// counts 0.
#[test]
fn wipe_and_add_write_perm_of_a_broker() {
    let mut ns = namesrv();
    let broker = identity("broker-a", 0, "10.0.0.1:10911");
    register(&mut ns, 0, 1, &broker, &[("TopicA", 4), ("TopicB", 4)], 1);
    let wipe = RemotingCommand::request(request::WIPE_WRITE_PERM_OF_BROKER)
        .with_ext("brokerName", "broker-a");
    let reply = ask(&mut ns, 1, 2, wipe);
    assert_eq!(reply.code, response::SUCCESS);
    assert_eq!(reply.ext("wipeTopicCount"), Some("2"));
    assert_eq!(route(&mut ns, 2, "TopicA").unwrap().queue_datas[0].perm, 4);
    register(&mut ns, 3, 1, &broker, &[("TopicA", 4), ("TopicB", 4)], 1);
    assert_eq!(route(&mut ns, 4, "TopicB").unwrap().queue_datas[0].perm, 4);
    let add = RemotingCommand::request(request::ADD_WRITE_PERM_OF_BROKER)
        .with_ext("brokerName", "broker-a");
    let reply = ask(&mut ns, 5, 2, add);
    assert_eq!(reply.ext("addTopicCount"), Some("2"));
    assert_eq!(route(&mut ns, 6, "TopicA").unwrap().queue_datas[0].perm, 6);
    let unknown = RemotingCommand::request(request::WIPE_WRITE_PERM_OF_BROKER)
        .with_ext("brokerName", "broker-z");
    assert_eq!(ask(&mut ns, 7, 2, unknown).ext("wipeTopicCount"), Some("0"));
    let system = ask(
        &mut ns,
        8,
        2,
        RemotingCommand::request(request::GET_SYSTEM_TOPIC_LIST_FROM_NS),
    );
    assert_eq!(
        body_text(&system),
        r#"{"brokerAddr":"10.0.0.1:10911","topicList":["DefaultCluster","broker-a"]}"#
    );
}

/// Goal: an address that re-registers under another id (slave promoted to master) keeps one
/// entry only.
#[test]
fn address_reregistering_with_new_id_replaces_old_entry() {
    let mut ns = namesrv();
    register(
        &mut ns,
        0,
        1,
        &identity("broker-a", 1, "10.0.0.3:10911"),
        &[("TopicA", 4)],
        1,
    );
    assert_eq!(
        route(&mut ns, 1, "TopicA"),
        None,
        "a slave alone registers no queues"
    );
    register(
        &mut ns,
        2,
        1,
        &identity("broker-a", 0, "10.0.0.3:10911"),
        &[("TopicA", 4)],
        1,
    );
    let promoted = route(&mut ns, 3, "TopicA").expect("route");
    assert_eq!(
        promoted.broker_datas[0].broker_addrs,
        BTreeMap::from([(0, "10.0.0.3:10911".to_owned())])
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Goal: no request, however malformed, panics the NameServer, and every non-oneway
        /// request gets exactly one response. Method: arbitrary codes, header values and bodies,
        /// with the header keys the NameServer reads.
        #[test]
        fn arbitrary_requests_never_panic(
            code in prop_oneof![Just(100), Just(101), Just(102), 103..107i32, Just(206), Just(216),
                                Just(219), Just(224), Just(322), Just(904), any::<i32>()],
            values in proptest::collection::vec(".{0,12}", 12),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            json_body in "[{}\\[\\]:,\"0-9a-zA-Z ]{0,64}",
            use_json in any::<bool>(),
            version in any::<i32>(),
        ) {
            let keys = ["brokerName", "brokerAddr", "clusterName", "haServerAddr", "brokerId",
                        "compressed", "topic", "cluster", "namespace", "key", "value",
                        "acceptStandardJsonOnly"];
            let mut command = RemotingCommand::request(code);
            command.version = version;
            for (key, value) in keys.iter().zip(values) {
                command = command.with_ext(key, value);
            }
            command = if use_json { command.with_body(json_body.into_bytes()) } else { command.with_body(body) };
            let mut ns = namesrv();
            let outputs = call(&mut ns, 0, 1, command);
            prop_assert_eq!(outputs.len(), 1);
            ns.handle_timeout(1_000_000);
            ns.handle_disconnected(1_000_001, ConnId(1));
        }

        #[test]
        fn quoting_numeric_keys_never_panics(text in ".{0,64}") {
            let _ = super::super::json::quote_numeric_keys(&text);
            let _ = TopicRouteData::parse(text.as_bytes());
        }
    }
}
