//! RocketMQ 5's gRPC protocol on `vostok standalone`'s gRPC port, with the official Rust client
//! (crate `rocketmq` 5.0.0): the client's session (QueryRoute, Telemetry settings, Heartbeat,
//! NotifyClientTermination) works against the broker itself, with no proxy.

mod common;

use std::time::Duration;

use rocketmq::conf::{ClientOption, ProducerOption};
use rocketmq::Producer;
use tokio::time::timeout;

use common::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn client_option(grpc_addr: &str) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(grpc_addr);
    option.set_timeout(Duration::from_secs(5));
    option
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_5x_producer_starts_and_shuts_down_against_the_grpc_port() {
    let broker = Standalone::start();
    assert!(
        !broker.grpc_addr.is_empty(),
        "the ready line names the gRPC port"
    );
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "GrpcTopic", 4);
    timeout(TEST_TIMEOUT, async {
        let mut option = ProducerOption::default();
        option.set_topics(vec!["GrpcTopic"]);
        let mut producer = Producer::new(option, client_option(&broker.grpc_addr)).unwrap();
        // Start opens the session (Telemetry, settings) and fetches the topic's route.
        producer.start().await.expect("the producer starts");
        producer.shutdown().await.expect("the producer shuts down");
    })
    .await
    .expect("within the test timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_of_an_unknown_topic_fails_to_start_with_topic_not_found() {
    let broker = Standalone::start();
    timeout(TEST_TIMEOUT, async {
        let mut option = ProducerOption::default();
        option.set_topics(vec!["NoSuchTopic"]);
        let mut producer = Producer::new(option, client_option(&broker.grpc_addr)).unwrap();
        let err = producer
            .start()
            .await
            .expect_err("no route for an unknown topic");
        let text = format!("{err:?}");
        assert!(text.contains("TOPIC_NOT_FOUND"), "{text}");
    })
    .await
    .expect("within the test timeout");
}
