//! The NameServer state machine fed arbitrary request sequences: well-formed broker
//! registrations and unregistrations, route queries, requests with fuzzed codes, ext fields and
//! bodies, disconnects and timeouts with an advancing clock.
//!
//! Asserted: nothing panics; every request that is not oneway gets exactly one response, on its
//! own connection; every successful route answer parses in the dialect it was written in and
//! names a broker for each of its queue entries.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vostok_core::namesrv::register::{
    register_broker_request, unregister_broker_request, BrokerIdentity,
};
use vostok_core::namesrv::route::TopicRouteData;
use vostok_core::namesrv::{NameServer, NamesrvConfig, NamesrvOutput};
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::RemotingCommand;
use vostok_core::topic::{DataVersion, TopicConfig};
use vostok_core::ConnId;
use vostok_fuzz::{request_with, FuzzExt, NAMES};

const CODES: [i32; 14] = [
    request::PUT_KV_CONFIG,
    request::GET_KV_CONFIG,
    request::DELETE_KV_CONFIG,
    request::GET_KVLIST_BY_NAMESPACE,
    request::REGISTER_BROKER,
    request::UNREGISTER_BROKER,
    request::GET_ROUTEINFO_BY_TOPIC,
    request::GET_BROKER_CLUSTER_INFO,
    request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    request::GET_TOPICS_BY_CLUSTER,
    request::DELETE_TOPIC_IN_NAMESRV,
    request::QUERY_DATA_VERSION,
    request::BROKER_HEARTBEAT,
    request::REGISTER_TOPIC_IN_NAMESRV,
];

#[derive(Debug, Arbitrary)]
enum Op {
    Register {
        conn: u8,
        broker: u8,
        topics: Vec<(u8, u8, u8, bool)>,
        version: u8,
    },
    Unregister {
        conn: u8,
        broker: u8,
    },
    Route {
        conn: u8,
        topic: u8,
        version: u16,
    },
    Raw {
        conn: u8,
        code: u8,
        any_code: Option<i32>,
        ext: FuzzExt,
        body: Vec<u8>,
        oneway: bool,
    },
    Disconnect {
        conn: u8,
    },
    Advance {
        seconds: u16,
    },
}

fn identity(broker: u8) -> BrokerIdentity {
    let b = broker % 4;
    BrokerIdentity {
        cluster_name: ["DefaultCluster", "Other"][usize::from(b % 2)].to_owned(),
        broker_name: format!("broker-{}", b % 3),
        broker_id: u64::from(b / 3),
        broker_addr: format!("127.0.0.1:{}", 10_911 + u16::from(b)),
        ha_server_addr: format!("127.0.0.1:{}", 10_912 + u16::from(b)),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut namesrv = NameServer::new(NamesrvConfig::default());
    let mut now_ms = 1_000u64;
    let mut pending: BTreeMap<i32, (u64, bool)> = BTreeMap::new();
    let mut open: BTreeSet<u64> = BTreeSet::new();
    let mut next_opaque = 1;
    for op in ops.into_iter().take(64) {
        let (conn, mut cmd, is_route) = match op {
            Op::Register {
                conn,
                broker,
                topics,
                version,
            } => {
                let mut table = BTreeMap::new();
                for (t, read, write, order) in topics.into_iter().take(8) {
                    let name = NAMES[usize::from(t) % NAMES.len()];
                    let mut config = TopicConfig::new(name, u32::from(read % 17));
                    config.write_queue_nums = u32::from(write % 17);
                    config.order = order;
                    table.insert(name.to_owned(), config);
                }
                let mut data_version = DataVersion::default();
                for _ in 0..version % 3 {
                    data_version.bump(now_ms);
                }
                let cmd = register_broker_request(&identity(broker), &table, &data_version);
                (conn, cmd, false)
            }
            Op::Unregister { conn, broker } => {
                (conn, unregister_broker_request(&identity(broker)), false)
            }
            Op::Route {
                conn,
                topic,
                version,
            } => {
                let mut cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC)
                    .with_ext("topic", NAMES[usize::from(topic) % NAMES.len()]);
                cmd.version = i32::from(version);
                (conn, cmd, true)
            }
            Op::Raw {
                conn,
                code,
                any_code,
                ext,
                body,
                oneway,
            } => {
                let code = any_code.unwrap_or(CODES[usize::from(code) % CODES.len()]);
                let mut cmd = request_with(code, &ext, body);
                if oneway {
                    cmd.mark_oneway();
                }
                (conn, cmd, code == request::GET_ROUTEINFO_BY_TOPIC)
            }
            Op::Disconnect { conn } => {
                let id = u64::from(conn % 4);
                if open.remove(&id) {
                    namesrv.handle_disconnected(now_ms, ConnId(id));
                    pending.retain(|_, (c, _)| *c != id);
                }
                continue;
            }
            Op::Advance { seconds } => {
                now_ms += u64::from(seconds) * 100;
                namesrv.handle_timeout(now_ms);
                drain(&mut namesrv, &mut pending, &mut open, now_ms);
                continue;
            }
        };
        let id = u64::from(conn % 4);
        open.insert(id);
        cmd.opaque = next_opaque;
        next_opaque += 1;
        if !cmd.is_oneway() {
            pending.insert(cmd.opaque, (id, is_route));
        }
        namesrv.handle_request(now_ms, ConnId(id), cmd);
        drain(&mut namesrv, &mut pending, &mut open, now_ms);
        assert!(pending.is_empty(), "requests left unanswered: {pending:?}");
    }
});

fn drain(
    namesrv: &mut NameServer,
    pending: &mut BTreeMap<i32, (u64, bool)>,
    open: &mut BTreeSet<u64>,
    now_ms: u64,
) {
    while let Some(output) = namesrv.poll_output() {
        match output {
            NamesrvOutput::Send { conn, command } => {
                assert!(command.is_response(), "the NameServer sent a request");
                let (owner, is_route) = pending
                    .remove(&command.opaque)
                    .unwrap_or_else(|| panic!("response {} answers nothing", command.opaque));
                assert_eq!(owner, conn.0, "response sent to another connection");
                if is_route && command.code == response::SUCCESS {
                    let route = TopicRouteData::parse(&command.body).unwrap_or_else(|e| {
                        panic!("route body does not parse: {e}: {:?}", command.body)
                    });
                    let names: BTreeSet<&str> = route
                        .broker_datas
                        .iter()
                        .map(|b| b.broker_name.as_str())
                        .collect();
                    for queue in &route.queue_datas {
                        assert!(
                            names.contains(queue.broker_name.as_str()),
                            "route has queues of {} but not the broker",
                            queue.broker_name
                        );
                    }
                }
            }
            NamesrvOutput::Close { conn } => {
                if open.remove(&conn.0) {
                    namesrv.handle_disconnected(now_ms, conn);
                    pending.retain(|_, (c, _)| *c != conn.0);
                }
            }
        }
    }
}
