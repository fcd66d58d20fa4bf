//! Arbitrary bytes as the JSON bodies the core reads: REGISTER_BROKER bodies, route and
//! cluster-info bodies (both dialects), and the broker's HEART_BEAT, LOCK_BATCH_MQ,
//! UNLOCK_BATCH_MQ, CHECK_CLIENT_CONFIG, UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, BATCH_ACK_MESSAGE,
//! SET_MESSAGE_REQUEST_MODE and QUERY_ASSIGNMENT bodies (parsed inside the broker, so they go
//! through a broker over memory), and POP's revive-log records. Nothing panics; what parses
//! survives to_json → parse unchanged, and the broker answers every request with exactly one
//! response, an error always with a remark saying why. Any body also goes through
//! `lenient::parse_fastjson`, which must read standard JSON as serde_json does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vostok_core::broker::pop::records::{AckMsg, PopCheckPoint};
use vostok_core::broker::{Broker, BrokerOutput};
use vostok_core::namesrv::register::RegisterBrokerBody;
use vostok_core::namesrv::route::{ClusterInfo, JsonDialect, TopicRouteData};
use vostok_core::remoting::codes::request;
use vostok_core::remoting::pop::BatchAckMessageRequestBody;
use vostok_core::remoting::{lenient, RemotingCommand};
use vostok_core::store::MemStorage;
use vostok_core::ConnId;
use vostok_fuzz::small_broker_config;

const BROKER_CODES: [i32; 8] = [
    request::HEART_BEAT,
    request::LOCK_BATCH_MQ,
    request::UNLOCK_BATCH_MQ,
    request::CHECK_CLIENT_CONFIG,
    request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    request::BATCH_ACK_MESSAGE,
    request::SET_MESSAGE_REQUEST_MODE,
    request::QUERY_ASSIGNMENT,
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    match selector % 13 {
        0 => {
            if let Ok(parsed) = RegisterBrokerBody::parse(body) {
                let json = parsed.to_json();
                let again = RegisterBrokerBody::parse(json.as_bytes())
                    .unwrap_or_else(|e| panic!("to_json output does not parse: {e}\n{json}"));
                assert_eq!(
                    again, parsed,
                    "RegisterBrokerBody changed across to_json/parse"
                );
            }
        }
        1 => {
            if let Ok(parsed) = TopicRouteData::parse(body) {
                for dialect in [JsonDialect::Fastjson, JsonDialect::Standard] {
                    let json = parsed.to_json(dialect);
                    let again = TopicRouteData::parse(json.as_bytes()).unwrap_or_else(|e| {
                        panic!("{dialect:?} route does not parse: {e}\n{json}")
                    });
                    assert_eq!(
                        again, parsed,
                        "route changed across {dialect:?} to_json/parse"
                    );
                }
            }
        }
        2 => {
            if let Ok(parsed) = ClusterInfo::parse(body) {
                for dialect in [JsonDialect::Fastjson, JsonDialect::Standard] {
                    let json = parsed.to_json(dialect);
                    let again = ClusterInfo::parse(json.as_bytes()).unwrap_or_else(|e| {
                        panic!("{dialect:?} cluster info does not parse: {e}\n{json}")
                    });
                    assert_eq!(
                        again, parsed,
                        "cluster info changed across {dialect:?} to_json/parse"
                    );
                }
            }
        }
        8 => {
            // Any body a Java peer answers (`vostok admin` reads them): no panic, and standard
            // JSON reads exactly as serde_json reads it.
            let parsed = lenient::parse_fastjson(body);
            if let Ok(standard) = serde_json::from_slice::<serde_json::Value>(body) {
                assert_eq!(parsed.ok(), Some(standard), "standard JSON changed");
            }
        }
        9 => {
            // POP's revive-log records and batch-ack bodies: what parses survives write/parse.
            if let Ok(ck) = serde_json::from_slice::<PopCheckPoint>(body) {
                let json = serde_json::to_vec(&ck).expect("a checkpoint serializes");
                let again: PopCheckPoint = serde_json::from_slice(&json).expect("reads back");
                assert_eq!(again, ck, "checkpoint changed across write/parse");
                let _ = ck.offsets();
            }
            if let Ok(ack) = serde_json::from_slice::<AckMsg>(body) {
                let json = serde_json::to_vec(&ack).expect("an ack serializes");
                let again: AckMsg = serde_json::from_slice(&json).expect("reads back");
                assert_eq!(again, ack, "ack changed across write/parse");
            }
            if let Ok(batch) = serde_json::from_slice::<BatchAckMessageRequestBody>(body) {
                let json = serde_json::to_vec(&batch).expect("a batch ack serializes");
                let again: BatchAckMessageRequestBody =
                    serde_json::from_slice(&json).expect("reads back");
                assert_eq!(again, batch, "batch ack changed across write/parse");
                for entry in &batch.acks {
                    assert!(entry.offsets().len() <= entry.bit_set.len() * 8);
                }
            }
        }
        n => {
            let index = if n < 8 { n - 3 } else { n - 5 };
            let code = BROKER_CODES[usize::from(index) % BROKER_CODES.len()];
            let mut broker = Broker::new(small_broker_config(), MemStorage::new(), 1_000)
                .expect("a broker opens over empty storage");
            let conn = ConnId(1);
            broker.handle_connected(1_000, conn, "127.0.0.1:40000".parse().unwrap());
            let mut cmd = RemotingCommand::request(code).with_body(body.to_vec());
            cmd.opaque = 7;
            if code == request::LOCK_BATCH_MQ || code == request::UNLOCK_BATCH_MQ {
                // Lock requests carry everything in the body; heartbeats too.
                cmd = cmd.with_ext("consumerGroup", "cg");
            }
            broker.handle_request(1_000, conn, cmd);
            let mut responses = 0;
            while let Some(output) = broker.poll_output() {
                if let BrokerOutput::Send { conn: to, command } = output {
                    if to == conn && command.is_response() && command.opaque == 7 {
                        responses += 1;
                        assert!(
                            command.code == 0
                                || command.remark.as_deref().is_some_and(|r| !r.is_empty()),
                            "request {code} got code {} without a remark",
                            command.code
                        );
                    }
                }
            }
            assert_eq!(responses, 1, "request {code} got {responses} responses");
            // Whatever the body registered, time passing must not break the broker.
            broker.handle_timeout(1_000 + 300_000);
            while broker.poll_output().is_some() {}
        }
    }
});
