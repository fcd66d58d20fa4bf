//! Orderly push consumption: against scripted broker answers (lock before pull, one batch at a
//! time, suspend, lock refresh and expiry, unlock) and in-process against the core's Broker
//! (the "order" conformance cases of OPERATIONS.md §2.1).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::inproc::{Client, Cluster, Listener};
use super::*;
use crate::client::requests::{ConsumeFromWhere, MessageModel};
use crate::client::{
    ClientConfig, ConsumeOrderlyStatus, ConsumeToken, Message, MessageExt, MessageQueue,
    OrderlyConfig, PushConsumer, PushConsumerConfig, SendMode,
};
use crate::message::{MessageRecord, Properties};
use crate::remoting::codes::{request, response};

const BROKER_A: &str = "127.0.0.1:10911";

fn drain(c: &mut PushConsumer) -> Vec<ClientOutput> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn find(out: &[ClientOutput], code: i32) -> Vec<(String, RemotingCommand)> {
    sends(out)
        .into_iter()
        .filter(|(_, c)| c.code == code)
        .collect()
}

fn one(out: &[ClientOutput], code: i32) -> RemotingCommand {
    let found = find(out, code);
    assert_eq!(found.len(), 1, "expected one request {code} in {out:?}");
    found.into_iter().next().unwrap().1
}

fn consumes(out: &[ClientOutput]) -> Vec<(ConsumeToken, Vec<MessageExt>)> {
    out.iter()
        .filter_map(|o| match o {
            ClientOutput::Consume {
                token, messages, ..
            } => Some((*token, messages.clone())),
            _ => None,
        })
        .collect()
}

fn record(offset: i64) -> MessageRecord {
    let mut properties = Properties::new();
    properties.insert("UNIQ_KEY", format!("UNIQ{offset:028}"));
    MessageRecord {
        queue_id: 0,
        flag: 0,
        queue_offset: offset,
        physical_offset: 1_000 + offset * 100,
        sys_flag: 0,
        born_timestamp_ms: T0 as i64,
        born_host: "127.0.0.1:5000".parse().unwrap(),
        store_timestamp_ms: T0 as i64,
        store_host: BROKER_A.parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(format!("m{offset}")),
        topic: "TopicA".to_owned(),
        properties,
    }
}

fn found(req: &RemotingCommand, from: i64, to: i64) -> RemotingCommand {
    let mut body = Vec::new();
    for offset in from..to {
        body.extend(record(offset).encode_to_vec().unwrap());
    }
    RemotingCommand::response_to(req, response::SUCCESS, None)
        .with_ext("nextBeginOffset", to)
        .with_ext("minOffset", 0)
        .with_ext("maxOffset", to)
        .with_ext("suggestWhichBrokerId", 0)
        .with_body(body)
}

fn lock_queues(req: &RemotingCommand) -> Vec<i32> {
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["consumerGroup"], "G");
    assert_eq!(body["onlyThisBroker"], false);
    body["mqSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queueId"].as_i64().unwrap() as i32)
        .collect()
}

fn lock_answer(req: &RemotingCommand, queue_ids: &[i32]) -> RemotingCommand {
    let set: Vec<_> = queue_ids
        .iter()
        .map(|q| serde_json::json!({"brokerName": "broker-a", "queueId": q, "topic": "TopicA"}))
        .collect();
    RemotingCommand::response_to(req, response::SUCCESS, None)
        .with_body(serde_json::to_vec(&serde_json::json!({ "lockOKMQSet": set })).unwrap())
}

fn bodies(batches: &[(ConsumeToken, Vec<MessageExt>)]) -> Vec<Vec<String>> {
    batches
        .iter()
        .map(|(_, ms)| {
            ms.iter()
                .map(|m| String::from_utf8_lossy(m.body()).into_owned())
                .collect()
        })
        .collect()
}

/// A clustering orderly consumer of `TopicA` (one queue), alone in its group, brought to its
/// first LOCK_BATCH_MQ. Returns it with the lock request.
fn orderly_started(orderly: OrderlyConfig) -> (PushConsumer, RemotingCommand) {
    let config = PushConsumerConfig {
        client: ClientConfig {
            namesrv_addrs: vec![NAMESRV.to_owned()],
            instance_name: "c".to_owned(),
            seed: 3,
            ..ClientConfig::default()
        },
        consumer_group: "G".to_owned(),
        consume_from_where: ConsumeFromWhere::FirstOffset,
        orderly: Some(orderly),
        ..PushConsumerConfig::default()
    };
    let mut c = PushConsumer::new(config, T0);
    assert!(c.is_orderly());
    c.subscribe(T0, "TopicA", "*").unwrap();
    c.start(T0);
    let out = drain(&mut c);
    let routes = find(&out, request::GET_ROUTEINFO_BY_TOPIC);
    let missing = RemotingCommand::response_to(&routes[0].1, response::TOPIC_NOT_EXIST, None);
    c.handle_response(T0, NAMESRV, missing);
    let r = route(&[("broker-a", BROKER_A)], 1);
    c.handle_response(T0, NAMESRV, through_wire(&route_response(&routes[1].1, &r)));
    let out = drain(&mut c);
    let list = one(&out, request::GET_CONSUMER_LIST_BY_GROUP);
    let body = format!(r#"{{"consumerIdList":["{}"]}}"#, c.client_id());
    c.handle_response(
        T0,
        BROKER_A,
        RemotingCommand::response_to(&list, response::SUCCESS, None).with_body(body.into_bytes()),
    );
    let out = drain(&mut c);
    // The queue is locked before anything else happens to it.
    assert!(
        find(&out, request::QUERY_CONSUMER_OFFSET).is_empty(),
        "{out:?}"
    );
    assert!(find(&out, request::PULL_MESSAGE).is_empty());
    let lock = one(&out, request::LOCK_BATCH_MQ);
    assert_eq!(lock_queues(&lock), vec![0]);
    let body: serde_json::Value = serde_json::from_slice(&lock.body).unwrap();
    assert_eq!(body["clientId"], c.client_id());
    (c, lock)
}

/// Goal (order, partition order): the queue is locked before its offset is read and it is
/// pulled; its messages go to the application one at a time in queue order, the next only
/// after the previous is answered; SUSPEND offers the same message again after the suspend
/// time with reconsumeTimes + 1, holding back the later ones; the offset moves only past
/// consumed messages.
#[test]
fn order_scripted_lock_then_one_batch_at_a_time_with_suspend() {
    let (mut c, lock) = orderly_started(OrderlyConfig::default());
    c.handle_response(T0, BROKER_A, lock_answer(&lock, &[0]));
    let queue = MessageQueue::new("TopicA", "broker-a", 0);
    assert_eq!(c.locked_queues(), vec![queue.clone()]);
    let out = drain(&mut c);
    let query = one(&out, request::QUERY_CONSUMER_OFFSET);
    c.handle_response(
        T0,
        BROKER_A,
        RemotingCommand::response_to(&query, response::SUCCESS, None).with_ext("offset", 0),
    );
    let out = drain(&mut c);
    let pull = one(&out, request::PULL_MESSAGE);
    c.handle_response(T0, BROKER_A, found(&pull, 0, 3));
    let out = drain(&mut c);
    let batches = consumes(&out);
    assert_eq!(bodies(&batches), vec![vec!["m0"]]);
    // The next pull runs while the batch is out, but no second batch of the queue goes out.
    assert_eq!(find(&out, request::PULL_MESSAGE).len(), 1);

    c.handle_consume_orderly_result(T0 + 5, batches[0].0, ConsumeOrderlyStatus::Success, None);
    let out = drain(&mut c);
    let batches = consumes(&out);
    assert_eq!(bodies(&batches), vec![vec!["m1"]]);
    assert_eq!(batches[0].1[0].reconsume_times(), 0);
    assert_eq!(c.committed_offset(&queue), Some(1));

    c.handle_consume_orderly_result(
        T0 + 10,
        batches[0].0,
        ConsumeOrderlyStatus::SuspendCurrentQueueAMoment,
        None,
    );
    assert!(consumes(&drain(&mut c)).is_empty());
    assert_eq!(c.committed_offset(&queue), Some(1));
    // Nothing before the suspend time (1 s) is over.
    assert_eq!(c.poll_timeout(), Some(T0 + 1_000));
    c.handle_timeout(T0 + 1_000);
    let out = drain(&mut c);
    // The first lock refresh falls due at the same instant.
    let refresh = one(&out, request::LOCK_BATCH_MQ);
    assert_eq!(lock_queues(&refresh), vec![0]);
    assert!(consumes(&out).is_empty(), "{out:?}");
    c.handle_timeout(T0 + 1_010);
    let out = drain(&mut c);
    let batches = consumes(&out);
    assert_eq!(bodies(&batches), vec![vec!["m1"]]);
    assert_eq!(batches[0].1[0].reconsume_times(), 1);
    // The broker says the lock is gone: consumption stops until a relock succeeds.
    c.handle_response(T0 + 1_020, BROKER_A, lock_answer(&refresh, &[]));
    assert!(c.locked_queues().is_empty());
    c.handle_consume_orderly_result(
        T0 + 1_030,
        batches[0].0,
        ConsumeOrderlyStatus::Success,
        None,
    );
    assert_eq!(c.committed_offset(&queue), Some(2));
    let out = drain(&mut c);
    assert!(consumes(&out).is_empty());
    let relock = one(&out, request::LOCK_BATCH_MQ);
    assert_eq!(lock_queues(&relock), vec![0]);
    // Refused: tried again 3 s later.
    c.handle_response(T0 + 1_040, BROKER_A, lock_answer(&relock, &[]));
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(T0 + 4_040);
    let out = drain(&mut c);
    let relock = one(&out, request::LOCK_BATCH_MQ);
    c.handle_response(T0 + 4_050, BROKER_A, lock_answer(&relock, &[0]));
    let out = drain(&mut c);
    assert_eq!(bodies(&consumes(&out)), vec![vec!["m2"]]);

    // Shutdown unlocks the queue before unregistering.
    c.shutdown(T0 + 5_000);
    let out = drain(&mut c);
    let codes: Vec<i32> = sends(&out).iter().map(|(_, c)| c.code).collect();
    let unlock = codes.iter().position(|c| *c == request::UNLOCK_BATCH_MQ);
    let unregister = codes.iter().position(|c| *c == request::UNREGISTER_CLIENT);
    assert!(unlock.is_some() && unlock < unregister, "{codes:?}");
    assert_eq!(lock_queues(&one(&out, request::UNLOCK_BATCH_MQ)), vec![0]);
}

/// Goal: a lock not refreshed for 30 s (refreshes unanswered) is not trusted: the next
/// batch waits for a relock; a queue not granted at rebalance is not pulled and the
/// rebalance runs again 500 ms later; a queue dropped by rebalance is unlocked.
#[test]
fn order_scripted_lock_expiry_refusal_and_unlock_on_rebalance() {
    let short = OrderlyConfig {
        lock_interval_ms: 20_000,
        ..OrderlyConfig::default()
    };
    let (mut c, lock) = orderly_started(short);
    // Refused at first: no offset query, no pull, a rebalance within 500 ms.
    c.handle_response(T0, BROKER_A, lock_answer(&lock, &[]));
    let out = drain(&mut c);
    assert!(sends(&out).is_empty(), "{out:?}");
    assert!(c.assigned_queues().is_empty());
    assert_eq!(c.poll_timeout(), Some(T0 + 500));
    c.handle_timeout(T0 + 500);
    let out = drain(&mut c);
    let list = one(&out, request::GET_CONSUMER_LIST_BY_GROUP);
    let body = format!(r#"{{"consumerIdList":["{}"]}}"#, c.client_id());
    c.handle_response(
        T0 + 500,
        BROKER_A,
        RemotingCommand::response_to(&list, response::SUCCESS, None).with_body(body.into_bytes()),
    );
    let lock = one(&drain(&mut c), request::LOCK_BATCH_MQ);
    c.handle_response(T0 + 500, BROKER_A, lock_answer(&lock, &[0]));
    let query = one(&drain(&mut c), request::QUERY_CONSUMER_OFFSET);
    c.handle_response(
        T0 + 500,
        BROKER_A,
        RemotingCommand::response_to(&query, response::SUCCESS, None).with_ext("offset", 0),
    );
    let pull = one(&drain(&mut c), request::PULL_MESSAGE);
    // Refreshes at +1 s and +21 s go unanswered (time out); past +30.5 s the lock is stale.
    c.handle_timeout(T0 + 1_000);
    assert_eq!(find(&drain(&mut c), request::LOCK_BATCH_MQ).len(), 1);
    c.handle_response(T0 + 1_500, BROKER_A, found(&pull, 0, 1));
    let out = drain(&mut c);
    let batches = consumes(&out);
    assert_eq!(bodies(&batches), vec![vec!["m0"]]);
    let pull = one(&out, request::PULL_MESSAGE);
    c.handle_consume_orderly_result(
        T0 + 1_500,
        batches[0].0,
        ConsumeOrderlyStatus::Success,
        None,
    );
    drain(&mut c);
    c.handle_timeout(T0 + 21_000);
    assert_eq!(find(&drain(&mut c), request::LOCK_BATCH_MQ).len(), 1);
    c.handle_timeout(T0 + 30_600);
    drain(&mut c);
    c.handle_response(T0 + 30_600, BROKER_A, found(&pull, 1, 2));
    let out = drain(&mut c);
    assert!(consumes(&out).is_empty(), "{out:?}");
    let relock = one(&out, request::LOCK_BATCH_MQ);
    c.handle_response(T0 + 30_610, BROKER_A, lock_answer(&relock, &[0]));
    let out = drain(&mut c);
    let batches = consumes(&out);
    assert_eq!(bodies(&batches), vec![vec!["m1"]]);
    c.handle_consume_orderly_result(
        T0 + 30_620,
        batches[0].0,
        ConsumeOrderlyStatus::Success,
        None,
    );
    drain(&mut c);
    // Another member takes the queue: it is unlocked (nothing cached: at once, oneway).
    c.handle_timeout(T0 + 41_000);
    let out = drain(&mut c);
    let list = one(&out, request::GET_CONSUMER_LIST_BY_GROUP);
    let body = format!(r#"{{"consumerIdList":["{}","0.0.0.0@a"]}}"#, c.client_id());
    c.handle_response(
        T0 + 40_000,
        BROKER_A,
        RemotingCommand::response_to(&list, response::SUCCESS, None).with_body(body.into_bytes()),
    );
    let out = drain(&mut c);
    let unlock = one(&out, request::UNLOCK_BATCH_MQ);
    assert!(unlock.is_oneway());
    assert_eq!(lock_queues(&unlock), vec![0]);
    assert!(c.assigned_queues().is_empty());
}

fn orderly_consumer(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    orderly: OrderlyConfig,
    listener: Listener,
) -> usize {
    let n = cluster.clients.len();
    let config = PushConsumerConfig {
        client: cluster.client_config(n),
        consumer_group: group.to_owned(),
        message_model: MessageModel::Clustering,
        consume_from_where: ConsumeFromWhere::FirstOffset,
        rebalance_interval_ms: 2_000,
        orderly: Some(orderly),
        ..PushConsumerConfig::default()
    };
    let mut consumer = PushConsumer::new(config, cluster.now);
    consumer.subscribe(cluster.now, topic, "*").unwrap();
    consumer.start(cluster.now);
    cluster.add(Client::Push(consumer), listener)
}

fn body(m: &MessageExt) -> String {
    String::from_utf8_lossy(m.body()).into_owned()
}

/// Sends `per_queue` messages `"<queue>-<n>"` into each of the topic's 4 queues, interleaved.
fn send_ordered(cluster: &mut Cluster, topic: &str, per_queue: usize) {
    let p = cluster.producer();
    let now = cluster.now;
    cluster.producer_mut(p).send_to_queue(
        now,
        Message::new(topic, "warm-up"),
        MessageQueue::new(topic, "broker-a", 0),
        SendMode::Sync,
    );
    cluster.pump();
    for n in 0..per_queue {
        for q in 0..4 {
            let now = cluster.now;
            cluster.producer_mut(p).send_to_queue(
                now,
                Message::new(topic, format!("{q}-{n}")),
                MessageQueue::new(topic, "broker-a", q),
                SendMode::Async,
            );
        }
    }
    cluster.pump();
}

/// Per queue id, the bodies consumed (warm-up left out).
fn per_queue(messages: &[MessageExt]) -> BTreeMap<i32, Vec<String>> {
    let mut by_queue: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for m in messages.iter().filter(|m| body(m) != "warm-up") {
        by_queue.entry(m.queue.queue_id).or_default().push(body(m));
    }
    by_queue
}

/// Goal (OrderMessageTest v4, partition order): 30 messages into each of 4 queues are
/// consumed by an orderly consumer in send order per queue, with the offsets committed.
#[test]
fn order_partition_order_is_kept_per_queue() {
    let mut cluster = Cluster::new(1);
    send_ordered(&mut cluster, "TopicO", 30);
    let c = orderly_consumer(
        &mut cluster,
        "GO",
        "TopicO",
        OrderlyConfig::default(),
        Listener::Succeed,
    );
    cluster.run_until(T0 + 10_000);
    let got = per_queue(&cluster.consumed[c]);
    assert_eq!(got.len(), 4);
    for (q, bodies) in got {
        let want: Vec<String> = (0..30).map(|n| format!("{q}-{n}")).collect();
        assert_eq!(bodies, want, "queue {q}");
    }
    // Each queue was locked before it was pulled.
    let wire = &cluster.wire[c];
    let first_lock = wire
        .iter()
        .position(|(_, code)| *code == request::LOCK_BATCH_MQ);
    let first_pull = wire
        .iter()
        .position(|(_, code)| *code == request::PULL_MESSAGE);
    assert!(first_lock < first_pull, "{wire:?}");
    let locked = cluster.push_mut(c).locked_queues();
    assert_eq!(
        locked.iter().filter(|q| q.topic == "TopicO").count(),
        4,
        "{locked:?}"
    );
    let broker = cluster.brokers.values().next().unwrap();
    assert_eq!(broker.consumer_offset("TopicO", "GO", 1), Some(30));
}

/// Goal (order, load balancing): two orderly consumers of one group never hold the same queue
/// (checked at every step of the run), together consume everything in order per queue, and
/// when one shuts down the survivor locks and consumes every queue.
#[test]
fn order_two_consumers_never_share_a_queue_and_the_survivor_takes_over() {
    let mut cluster = Cluster::new(1);
    send_ordered(&mut cluster, "TopicS", 10);
    let orderly = OrderlyConfig {
        unlock_delay_ms: 1_000,
        ..OrderlyConfig::default()
    };
    let a = orderly_consumer(
        &mut cluster,
        "GS",
        "TopicS",
        orderly.clone(),
        Listener::Succeed,
    );
    cluster.run_until(T0 + 300);
    let b = orderly_consumer(&mut cluster, "GS", "TopicS", orderly, Listener::Succeed);
    let mut step = cluster.now;
    while step < T0 + 10_000 {
        step += 100;
        cluster.run_until(step);
        let la: BTreeSet<_> = cluster.push_mut(a).locked_queues().into_iter().collect();
        let lb: BTreeSet<_> = cluster.push_mut(b).locked_queues().into_iter().collect();
        assert!(la.is_disjoint(&lb), "at {step}: {la:?} / {lb:?}");
    }
    let topic = |qs: Vec<MessageQueue>| qs.into_iter().filter(|q| q.topic == "TopicS").count();
    assert_eq!(topic(cluster.push_mut(a).locked_queues()), 2);
    assert_eq!(topic(cluster.push_mut(b).locked_queues()), 2);
    let mut all = cluster.consumed[a].clone();
    all.extend(cluster.consumed[b].clone());
    let got = per_queue(&all);
    for (q, bodies) in &got {
        // A queue handed over may repeat its last messages, but never goes back in order.
        let mut seen: Vec<String> = bodies.clone();
        seen.dedup();
        let want: Vec<String> = (0..10).map(|n| format!("{q}-{n}")).collect();
        assert_eq!(seen, want, "queue {q}");
    }

    let now = cluster.now;
    cluster.push_mut(a).shutdown(now);
    let codes: Vec<i32> = cluster.wire[a].iter().map(|(_, c)| *c).collect();
    cluster.run_until(now + 10);
    assert!(cluster.wire[a].len() > codes.len());
    assert!(cluster.wire[a][codes.len()..]
        .iter()
        .any(|(_, c)| *c == request::UNLOCK_BATCH_MQ));
    cluster.run_until(now + 6_000);
    assert_eq!(topic(cluster.push_mut(b).locked_queues()), 4);
    let p = 0;
    for q in 0..4 {
        let now = cluster.now;
        cluster.producer_mut(p).send_to_queue(
            now,
            Message::new("TopicS", format!("{q}-after")),
            MessageQueue::new("TopicS", "broker-a", q),
            SendMode::Sync,
        );
    }
    cluster.run_until(now + 8_000);
    let after: Vec<String> = cluster.consumed[b]
        .iter()
        .map(body)
        .filter(|b| b.ends_with("-after"))
        .collect();
    assert_eq!(after.len(), 4, "{after:?}");
}

/// Goal (PushConsumerRetryTest v4, orderly SUSPEND): a suspended message comes back after
/// about 1 s with reconsumeTimes + 1, and the messages behind it wait.
#[test]
fn order_suspend_redelivers_after_the_suspend_time() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    let queue = MessageQueue::new("TopicU", "broker-a", 0);
    for text in ["u0", "u1"] {
        let now = cluster.now;
        cluster.producer_mut(p).send_to_queue(
            now,
            Message::new("TopicU", text),
            queue.clone(),
            SendMode::Sync,
        );
        cluster.pump();
    }
    let c = orderly_consumer(
        &mut cluster,
        "GU",
        "TopicU",
        OrderlyConfig {
            max_reconsume_times: 2,
            ..OrderlyConfig::default()
        },
        Listener::FailFirst(1),
    );
    cluster.run_until(T0 + 5_000);
    let delivered: Vec<(String, i32)> = cluster.delivered[c]
        .iter()
        .flatten()
        .map(|m| (body(m), m.reconsume_times()))
        .collect();
    assert_eq!(
        delivered,
        vec![
            ("u0".to_owned(), 0),
            ("u0".to_owned(), 1),
            ("u1".to_owned(), 0),
            ("u1".to_owned(), 1)
        ]
    );
    let broker = cluster.brokers.values().next().unwrap();
    assert_eq!(broker.store().max_offset("%DLQ%GU", 0).0, 0);
    assert_eq!(cluster.push_mut(c).committed_offset(&queue), Some(2));
}

/// Goal (PushConsumerRetryTest v4, orderly, the first message always fails): the messages
/// behind it are blocked until it reaches the DLQ (after the orderly max of local retries,
/// each about 1 s apart), then everything else is received in order; maxReconsumeTimes=0
/// means no local retry at all.
#[test]
fn order_first_message_always_fails_reaches_the_dlq_then_the_rest_flows() {
    for max in [3, 0] {
        let mut cluster = Cluster::new(1);
        let p = cluster.producer();
        let queue = MessageQueue::new("TopicF", "broker-a", 0);
        for text in ["bad", "f1", "f2", "f3"] {
            let now = cluster.now;
            cluster.producer_mut(p).send_to_queue(
                now,
                Message::new("TopicF", text).with_keys("k"),
                queue.clone(),
                SendMode::Sync,
            );
            cluster.pump();
        }
        let bad_id = cluster.send_results(p)[0].msg_id.clone();
        let c = orderly_consumer(
            &mut cluster,
            "GF",
            "TopicF",
            OrderlyConfig {
                max_reconsume_times: max,
                ..OrderlyConfig::default()
            },
            Listener::SuspendBody("bad"),
        );
        cluster.run_until(T0 + 8_000);
        let delivered: Vec<(String, i32)> = cluster.delivered[c]
            .iter()
            .flatten()
            .map(|m| (body(m), m.reconsume_times()))
            .collect();
        let mut want: Vec<(String, i32)> = (0..=max).map(|n| ("bad".to_owned(), n)).collect();
        want.extend(["f1", "f2", "f3"].map(|b| (b.to_owned(), 0)));
        assert_eq!(delivered, want, "max {max}");
        assert_eq!(cluster.push_mut(c).committed_offset(&queue), Some(4));
        // One send to the retry topic, which the broker put in the DLQ.
        let sends = cluster.wire[c]
            .iter()
            .filter(|(_, code)| *code == request::SEND_MESSAGE_V2)
            .count();
        assert_eq!(sends, 1, "max {max}");
        let broker = cluster.brokers.values().next().unwrap();
        assert_eq!(broker.store().max_offset("%DLQ%GF", 0).0, 1, "max {max}");
        assert_eq!(broker.store().max_offset("%RETRY%GF", 0).0, 0);
        let got = broker
            .store()
            .get("%DLQ%GF", 0, crate::store::QueueOffset(0), 1, &|_| true)
            .unwrap();
        let dead = MessageRecord::decode(&got.records[0], false).unwrap();
        assert_eq!(dead.body.as_ref(), b"bad");
        assert_eq!(dead.properties.get("RETRY_TOPIC"), Some("TopicF"));
        assert_eq!(dead.properties.get("UNIQ_KEY"), Some(bad_id.as_str()));
        assert_eq!(
            dead.properties.get("ORIGIN_MESSAGE_ID"),
            Some(bad_id.as_str())
        );
        assert_eq!(dead.reconsume_times, max);
    }
}
