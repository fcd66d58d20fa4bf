//! The admin surface against `vostok standalone`, through `rocketmq-client-rust`'s
//! `DefaultMQAdminExt`: what mqadmin's topicStatus, consumerProgress, consumerConnection,
//! producerConnection, brokerStatus, getBrokerConfig, updateBrokerConfig, topicConsumeByWho,
//! statsAll and deleteSubGroup read and change, answered as RocketMQ answers them.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumerAdmin, DefaultMQAdminExt,
    MQPushConsumer, MessageListenerConcurrently, TopicAdmin,
};
use rocketmq_model::common::message::message_ext::MessageExt as RealMessageExt;
use rocketmq_model::common::message::message_single::Message as RealMessage;
use tokio::task::block_in_place;

use common::*;

const QUEUES: u32 = 2;
const MESSAGES: usize = 10;

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

/// The client's string type (`CheetahString`) from a `&str`.
fn s<T: for<'a> From<&'a str>>(v: &str) -> T {
    T::from(v)
}

/// One broker, one producer, one consuming group, and every admin read the tools make, with
/// the numbers they must show; then the changes (broker config, group deletion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_mq_admin_ext_reads_and_changes_a_running_broker() {
    let limit = Duration::from_secs(90);
    tokio::time::timeout(limit, scenario())
        .await
        .expect("the admin scenario finishes within 90 s");
}

async fn scenario() {
    use rocketmq_client_rust::BrokerAdmin;
    let topic = "AdminTopic";
    let group = "AdminGroup";
    let producer_group = unique("AdminProducer");
    let broker = block_in_place(|| {
        let broker = Standalone::start();
        create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, QUEUES);
        create_topic(
            &broker.broker_addr,
            &broker.namesrv_addr,
            &format!("%RETRY%{group}"),
            1,
        );
        broker
    });

    let mut producer = start_producer_in(&broker.namesrv_addr, &producer_group).await;
    wait_for_publish_route(&mut producer, topic, QUEUES as usize).await;
    let mut first_offset_msg_id = None;
    for i in 0..MESSAGES {
        let message = RealMessage::builder()
            .topic(topic)
            .tags("T")
            .body(format!("m-{i}").into_bytes())
            .build()
            .expect("message builds");
        let sent = producer.send(message).await.expect("send succeeds");
        if first_offset_msg_id.is_none() {
            first_offset_msg_id = sent
                .as_ref()
                .and_then(|r| r.offset_msg_id.clone())
                .filter(|id| !id.is_empty());
        }
    }
    let count = Count::default();
    let mut consumer = push_consumer_builder(&broker.namesrv_addr, group).build();
    consumer.subscribe(topic, "*").await.expect("subscribes");
    consumer.register_message_listener_concurrently(count.clone());
    consumer.start().await.expect("consumer starts");
    let seen = count.clone();
    wait_until(
        "every message consumed",
        Duration::from_secs(30),
        move || seen.0.load(std::sync::atomic::Ordering::SeqCst) >= MESSAGES,
    )
    .await;
    let broker_addr = broker.broker_addr.clone();
    wait_until(
        "the group commits every queue to its end",
        Duration::from_secs(20),
        move || {
            block_in_place(|| {
                let mut conn = RawConn::connect(&broker_addr);
                (0..QUEUES as i32).all(|q| {
                    committed_offset(&mut conn, group, topic, q)
                        == Some(max_offset(&mut conn, topic, q))
                })
            })
        },
    )
    .await;

    let mut admin = DefaultMQAdminExt::new(client_runtime("admin"));
    admin.set_namesrv_addr(broker.namesrv_addr.as_str());
    admin.start().await.expect("admin starts");

    // topicStatus (202): every queue with its offsets; through the route as well.
    let stats = admin
        .examine_topic_stats(s(topic), Some(s(&broker.broker_addr)))
        .await
        .expect("topic stats");
    assert_eq!(stats.get_offset_table().len(), QUEUES as usize);
    let total: i64 = stats
        .get_offset_table()
        .values()
        .map(|o| o.get_max_offset() - o.get_min_offset())
        .sum();
    assert_eq!(total, MESSAGES as i64);
    assert!(stats
        .get_offset_table()
        .values()
        .all(|o| o.get_max_offset() == 0 || o.get_last_update_timestamp() > 0));
    let routed = admin
        .examine_topic_stats(s(topic), None)
        .await
        .expect("topic stats through the route");
    assert_eq!(routed.get_offset_table().len(), QUEUES as usize);
    // (Its code, TOPIC_NOT_EXIST, is checked in the core's tests: this client redacts it.)
    admin
        .examine_topic_stats(s("NoSuchAdminTopic"), Some(s(&broker.broker_addr)))
        .await
        .expect_err("an unknown topic is refused");

    // consumerProgress (208): broker and consumer offsets per queue, nothing behind.
    let progress = ConsumerAdmin::examine_consume_stats(
        &admin,
        s(group),
        Some(s(topic)),
        None,
        Some(s(&broker.broker_addr)),
        None,
    )
    .await
    .expect("consume stats");
    assert_eq!(progress.get_offset_table().len(), QUEUES as usize);
    assert_eq!(progress.compute_total_diff(), 0);
    let consumed: i64 = progress
        .get_offset_table()
        .values()
        .map(|o| o.get_consumer_offset())
        .sum();
    assert_eq!(consumed, MESSAGES as i64);

    // consumerConnection (203): the live member and its subscription.
    let connection = admin
        .examine_consumer_connection_info(s(group), Some(s(&broker.broker_addr)))
        .await
        .expect("consumer connection");
    assert_eq!(connection.get_connection_set().len(), 1);
    let member = connection.get_connection_set().iter().next().unwrap();
    assert!(!member.get_client_id().is_empty());
    assert!(member.get_client_addr().starts_with("127.0.0.1:"));
    assert!(connection.get_subscription_table().contains_key(topic));
    let offline = admin
        .examine_consumer_connection_info(s("NobodyHere"), Some(s(&broker.broker_addr)))
        .await
        .expect_err("a group nobody is in is not online");
    assert_eq!(offline.broker_response_code(), Some(206), "{offline:?}");

    // consumerStatus (307) and consumeMessage (309): relayed to the live member, its answers
    // come back.
    let client_id = member.get_client_id();
    let running = admin
        .get_consumer_running_info(s(group), client_id.clone(), false, None)
        .await
        .expect("consumer running info");
    assert!(
        format!("{running:?}").contains(topic),
        "the running info names the subscription: {running:?}"
    );
    let msg_id = first_offset_msg_id.expect("the send returned an offset message id");
    let direct = admin
        .consume_message_directly(s(group), client_id.clone(), s(topic), s(&msg_id))
        .await
        .expect("consumed directly");
    assert!(direct.consume_result().is_some(), "{direct:?}");
    let absent = admin
        .get_consumer_running_info(s(group), s("nobody@0"), false, None)
        .await
        .expect_err("a client id that is not connected");
    let _ = absent;

    // producerConnection (204) and the producer table (328).
    let producers = admin
        .examine_producer_connection_info(s(&producer_group), s(topic))
        .await
        .expect("producer connection");
    assert_eq!(producers.connection_set().len(), 1, "{producers:?}");
    let table = admin
        .get_all_producer_info(s(&broker.broker_addr))
        .await
        .expect("producer table");
    assert!(format!("{table:?}").contains(&producer_group), "{table:?}");

    // topicConsumeByWho (300).
    let who = admin
        .query_topic_consume_by_who(s(topic))
        .await
        .expect("consumed by who");
    assert!(who.group_list.contains(group), "{who:?}");

    // brokerStatus (28): RocketMQ's keys from real counters.
    let runtime = admin
        .fetch_broker_runtime_stats(s(&broker.broker_addr))
        .await
        .expect("runtime info");
    let get = |k: &str| {
        runtime
            .table
            .get(k)
            .unwrap_or_else(|| panic!("runtime info has {k}: {:?}", runtime.table))
            .to_string()
    };
    assert_eq!(get("putTps").split(' ').count(), 3);
    assert!(get("msgPutTotalTodayNow").parse::<u64>().unwrap() >= MESSAGES as u64);
    assert!(get("msgGetTotalTodayNow").parse::<u64>().unwrap() >= MESSAGES as u64);
    assert!(get("commitLogMaxOffset").parse::<u64>().unwrap() > 0);
    assert!(get("earliestMessageTimeStamp").parse::<i64>().unwrap() > 0);
    assert!(get("commitLogDiskRatio").parse::<f64>().is_ok());
    for key in [
        "brokerVersionDesc",
        "getTransferedTps",
        "getTransferredTps",
        "runtime",
    ] {
        get(key);
    }

    // statsAll (315): the topic's put counter exists; an unknown one is refused.
    let put_stats = admin
        .view_broker_stats_data(s(&broker.broker_addr), s("TOPIC_PUT_NUMS"), s(topic))
        .await
        .expect("put stats");
    assert!(put_stats.get_stats_day().get_sum() <= MESSAGES as u64);
    admin
        .view_broker_stats_data(
            s(&broker.broker_addr),
            s("TOPIC_PUT_NUMS"),
            s("NoSuchAdminTopic"),
        )
        .await
        .expect_err("no counter for a topic nobody sent to");

    // getBrokerConfig (26) and updateBrokerConfig (25): read-only without write permission.
    let config = admin
        .get_broker_config(s(&broker.broker_addr))
        .await
        .expect("broker config");
    let port = broker.broker_addr.rsplit(':').next().unwrap();
    assert_eq!(config.get("listenPort").map(|v| v.as_str()), Some(port));
    assert_eq!(
        config.get("brokerPermission").map(|v| v.as_str()),
        Some("6")
    );
    let update = |k: &str, v: &str| HashMap::from([(s(k), s(v))]);
    admin
        .update_broker_config(s(&broker.broker_addr), update("brokerPermission", "4"))
        .await
        .expect("permission update");
    let config = admin
        .get_broker_config(s(&broker.broker_addr))
        .await
        .unwrap();
    assert_eq!(
        config.get("brokerPermission").map(|v| v.as_str()),
        Some("4")
    );
    let refused = block_in_place(|| {
        let mut conn = RawConn::connect(&broker.broker_addr);
        send_v2(&mut conn, topic, 0, b"while read-only", "T")
    });
    assert_eq!(refused.code(), 16, "{}", refused.remark());
    admin
        .update_broker_config(s(&broker.broker_addr), update("listenPort", "1"))
        .await
        .expect_err("a start-time key is refused at run time");
    admin
        .update_broker_config(s(&broker.broker_addr), update("brokerPermission", "6"))
        .await
        .expect("permission restored");
    let accepted = block_in_place(|| {
        let mut conn = RawConn::connect(&broker.broker_addr);
        send_v2(&mut conn, topic, 0, b"writable again", "T")
    });
    assert_eq!(accepted.code(), 0, "{}", accepted.remark());

    // wipeWritePerm / addWritePerm (205, 327) on the NameServer: the count of topics touched.
    let wiped = admin
        .wipe_write_perm_of_broker(s(&broker.namesrv_addr), s("broker-a"))
        .await
        .expect("write permission wiped");
    assert!(wiped >= 2, "{wiped} topics");
    let added = admin
        .add_write_perm_of_broker(s(&broker.namesrv_addr), s("broker-a"))
        .await
        .expect("write permission added");
    assert_eq!(added, wiped);

    // deleteSubGroup (207) with its offsets: the group's progress starts over.
    consumer.shutdown().await;
    admin
        .delete_subscription_group(s(&broker.broker_addr), s(group), Some(true))
        .await
        .expect("group deleted");
    let after = ConsumerAdmin::examine_consume_stats(
        &admin,
        s(group),
        Some(s(topic)),
        None,
        Some(s(&broker.broker_addr)),
        None,
    )
    .await
    .expect("consume stats after the deletion");
    assert!(after
        .get_offset_table()
        .values()
        .all(|o| o.get_consumer_offset() == 0));

    // deleteTopic (215 on the broker, 216 on the NameServer): its stats and route are gone.
    admin
        .delete_topic(s(topic), s("DefaultCluster"))
        .await
        .expect("topic deleted");
    admin
        .examine_topic_stats(s(topic), Some(s(&broker.broker_addr)))
        .await
        .expect_err("a deleted topic has no stats");
    let topics = admin.fetch_all_topic_list().await.expect("topic list");
    assert!(
        !topics.topic_list.iter().any(|t| t.as_str() == topic),
        "{topics:?}"
    );
    producer.shutdown().await;
}
