//! mqadmin's view of a gRPC consumer: a Node.js PushConsumer (rocketmq-client-nodejs 1.0.8)
//! on `vostok standalone`'s gRPC port is listed among its group's consumers, and
//! GET_CONSUMER_RUNNING_INFO (mqadmin `consumerStatus`) reaches it as a
//! PrintThreadStackTraceCommand on its Telemetry stream; its thread stacks come back as the
//! running info's `jstack`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TOPIC: &str = "GrpcAdminTopic";
const GROUP: &str = "GrpcAdminGroup";
/// GET_CONSUMER_LIST_BY_GROUP and GET_CONSUMER_RUNNING_INFO (REMOTING.md §2.1).
const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
const GET_CONSUMER_RUNNING_INFO: i32 = 307;

/// The Node consumer, killed on drop.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A push consumer that keeps running (it waits for far more messages than are sent).
fn start_push_consumer(grpc_addr: &str) -> Node {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/grpc-node");
    let child = Command::new("node")
        .arg(dir.join("push-consumer.mjs"))
        .args([grpc_addr, TOPIC, GROUP, "1000000"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    Node(child)
}

#[test]
fn a_grpc_consumers_running_info_carries_its_thread_stacks() {
    let broker = Standalone::start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, TOPIC, 4);
    let _node = start_push_consumer(&broker.grpc_addr);
    let mut conn = RawConn::connect(&broker.broker_addr);
    // The consumer registers once its Telemetry settings are in.
    let deadline = Instant::now() + Duration::from_secs(20);
    let client_id = loop {
        let list = conn.request(
            GET_CONSUMER_LIST_BY_GROUP,
            &[("consumerGroup", GROUP.to_owned())],
            b"",
        );
        if list.code() == 0 {
            let ids: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
            if let Some(id) = ids["consumerIdList"][0].as_str() {
                break id.to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the gRPC consumer never registered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let info = conn.request(
        GET_CONSUMER_RUNNING_INFO,
        &[
            ("consumerGroup", GROUP.to_owned()),
            ("clientId", client_id.clone()),
            ("jstackEnable", "true".to_owned()),
        ],
        b"",
    );
    assert_eq!(info.code(), 0, "{}", info.remark());
    let body: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert!(
        body["jstack"].as_str().is_some_and(|s| !s.is_empty()),
        "the client's thread stacks: {body}"
    );
}
