//! Allocation strategies against results worked out from RocketMQ's Java algorithms.

use crate::client::allocate::*;
use crate::client::MessageQueue;

fn queues(n: i32) -> Vec<MessageQueue> {
    (0..n)
        .map(|i| MessageQueue::new("TopicA", "broker-a", i))
        .collect()
}

fn cids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{}@c", i + 1)).collect()
}

fn ids(qs: &[MessageQueue]) -> Vec<i32> {
    qs.iter().map(|q| q.queue_id).collect()
}

/// Goal: Java's averagely: the first `len % n` consumers take one more, in contiguous blocks;
/// with more consumers than queues the extra ones get nothing; an unknown id gets nothing.
#[test]
fn averagely_matches_java() {
    let mq = queues(8);
    let c = cids(3);
    let got: Vec<Vec<i32>> = c
        .iter()
        .map(|cid| ids(&allocate_averagely(cid, &mq, &c)))
        .collect();
    assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);

    let c = cids(4);
    let got: Vec<Vec<i32>> = c
        .iter()
        .map(|cid| ids(&allocate_averagely(cid, &mq, &c)))
        .collect();
    assert_eq!(got, vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7]]);

    let c = cids(5);
    let mq = queues(3);
    let got: Vec<Vec<i32>> = c
        .iter()
        .map(|cid| ids(&allocate_averagely(cid, &mq, &c)))
        .collect();
    assert_eq!(got, vec![vec![0], vec![1], vec![2], vec![], vec![]]);

    assert!(allocate_averagely("stranger", &queues(4), &cids(2)).is_empty());
    assert!(allocate_averagely("10.0.0.1@c", &queues(4), &[]).is_empty());
    assert!(allocate_averagely("10.0.0.1@c", &[], &cids(2)).is_empty());
}

/// Goal: Java's by-circle: queue i to consumer i % n.
#[test]
fn averagely_by_circle_matches_java() {
    let mq = queues(8);
    let c = cids(3);
    let got: Vec<Vec<i32>> = c
        .iter()
        .map(|cid| ids(&allocate_averagely_by_circle(cid, &mq, &c)))
        .collect();
    assert_eq!(got, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
    let c = cids(5);
    let mq = queues(3);
    assert_eq!(
        ids(&allocate_averagely_by_circle(&c[4], &mq, &c)),
        Vec::<i32>::new()
    );
}

/// Goal: the MD5 hash is Java's (first four digest bytes as an unsigned int), checked against
/// independently computed MD5 digests, and the consistent-hash allocation matches the Java
/// router (ring of "<cid>-<i>" virtual nodes, queue key `MessageQueue.toString()`, ceiling
/// lookup wrapping to the first node). Expected assignment computed with an independent
/// implementation of the Java algorithm over a standard MD5.
#[test]
fn consistent_hash_matches_java() {
    assert_eq!(md5_hash("client0-0"), 3_728_819_548);
    assert_eq!(
        md5_hash("MessageQueue [topic=T, brokerName=b, queueId=0]"),
        562_732_085
    );
    let mq = queues(8);
    let c: Vec<String> = ["10.0.0.1@a", "10.0.0.2@b", "10.0.0.3@c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let got: Vec<Vec<i32>> = c
        .iter()
        .map(|cid| ids(&allocate_consistent_hash(cid, &mq, &c, 10)))
        .collect();
    assert_eq!(got, vec![vec![1, 3], vec![2], vec![0, 4, 5, 6, 7]]);
    // Every queue goes to exactly one consumer.
    let total: usize = got.iter().map(Vec::len).sum();
    assert_eq!(total, 8);
    assert!(allocate_consistent_hash("stranger", &mq, &c, 10).is_empty());
}

/// Goal: by-config returns the configured queues whatever the group.
#[test]
fn by_config_and_names() {
    let configured = vec![MessageQueue::new("TopicA", "broker-b", 3)];
    let strategy = AllocateStrategy::ByConfig(configured.clone());
    assert_eq!(strategy.allocate("x", &queues(8), &cids(3)), configured);
    assert_eq!(allocate_by_config(&configured), configured);
    assert_eq!(AllocateStrategy::Averagely.name(), "AVG");
    assert_eq!(AllocateStrategy::AveragelyByCircle.name(), "AVG_BY_CIRCLE");
    assert_eq!(
        AllocateStrategy::ConsistentHash {
            virtual_node_cnt: 10
        }
        .name(),
        "CONSISTENT_HASH"
    );
    assert_eq!(strategy.name(), "CONFIG");
}
