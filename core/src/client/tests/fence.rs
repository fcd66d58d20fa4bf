//! A push consumer that outlives a broker's power loss: its positions are beyond what the
//! broker recovered, and it still receives every message sent after the restart.

use std::collections::BTreeSet;

use super::inproc::{Cluster, Listener};
use crate::broker::Broker;
use crate::client::requests::MessageModel;
use crate::client::{Message, SendMode};
use crate::store::{MemStorage, SegmentStorage};

fn send_all(cluster: &mut Cluster, producer: usize, prefix: &str, count: usize) {
    for i in 0..count {
        let now = cluster.now;
        let message = Message::new("TopicA", format!("{prefix}{i}")).with_tags("t");
        cluster
            .producer_mut(producer)
            .send(now, message, SendMode::Sync);
        cluster.pump();
    }
}

/// The disk after a power cut that lost every write made after `synced` except the config
/// files, which are replaced whole and durably (`later` is the storage at the cut).
fn cut_back_to(synced: &MemStorage, later: &MemStorage) -> MemStorage {
    let mut storage = synced.clone();
    for path in later.paths() {
        if path.starts_with("config/") {
            let data = later.read_all(&path).unwrap().unwrap_or_default();
            storage.replace(&path, &data).unwrap();
        }
    }
    storage
}

#[test]
fn a_consumer_ahead_of_the_recovered_queues_receives_every_new_message() {
    let mut cluster = Cluster::new(1);
    let p = cluster.producer();
    send_all(&mut cluster, p, "a", 8);
    let addr = cluster.brokers.keys().next().unwrap().clone();
    // What the disk holds when the power goes, but for the config files.
    let synced = cluster.brokers[&addr].store().storage().clone();
    let c = cluster.push_consumer(
        "G1",
        "TopicA",
        "*",
        MessageModel::Clustering,
        Listener::Succeed,
    );
    send_all(&mut cluster, p, "b", 8);
    cluster.run_until(cluster.now + 20_000);
    assert_eq!(cluster.consumed[c].len(), 16);
    let broker = &cluster.brokers[&addr];
    for q in 0..4 {
        assert_eq!(broker.consumer_offset("TopicA", "G1", q), Some(4));
    }

    // The power goes; the broker comes back with two messages per queue, the clients stay.
    let storage = cut_back_to(&synced, broker.store().storage());
    let config = broker.config().clone();
    let now = cluster.now + 1_000;
    cluster.now = now;
    let mut restarted = Broker::new(config, storage, now).expect("broker opens");
    for q in 0..4 {
        assert_eq!(restarted.store().max_offset("TopicA", q).0, 2);
    }
    for (index, _) in cluster.clients.iter().enumerate() {
        let conn = crate::ConnId((index as u64 + 1) * 1_000);
        let socket = format!("127.0.0.{}:50000", index + 2).parse().unwrap();
        restarted.handle_connected(now, conn, socket);
    }
    restarted.handle_timeout(now);
    cluster.brokers.insert(addr.clone(), restarted);
    cluster.pump();

    send_all(&mut cluster, p, "c", 8);
    cluster.run_until(cluster.now + 60_000);
    let got: BTreeSet<String> = cluster.consumed[c]
        .iter()
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
        .collect();
    let missing: Vec<String> = (0..8)
        .map(|i| format!("c{i}"))
        .filter(|b| !got.contains(b))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    let broker = &cluster.brokers[&addr];
    for q in 0..4 {
        assert_eq!(broker.consumer_offset("TopicA", "G1", q), Some(4));
    }
}
