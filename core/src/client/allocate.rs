//! Queue allocation strategies for rebalancing: pure functions with the exact results of
//! RocketMQ's `AllocateMessageQueueAveragely`, `AllocateMessageQueueAveragelyByCircle`,
//! `AllocateMessageQueueConsistentHash` and `AllocateMessageQueueByConfig`.
//!
//! Inputs are what Java passes: every queue of the topic and every consumer id of the group,
//! both **sorted** by the caller (queues by topic, broker name, queue id; ids as strings). A
//! consumer id missing from `cid_all` gets nothing.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use super::MessageQueue;

/// Which allocation strategy a consumer uses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AllocateStrategy {
    /// Contiguous blocks, the first `len % consumers` consumers one queue more (the default).
    #[default]
    Averagely,
    /// Queue `i` to consumer `i % consumers`.
    AveragelyByCircle,
    /// A consistent-hash ring of consumer ids with `virtual_node_cnt` virtual nodes each (Java
    /// default 10), MD5-based.
    ConsistentHash { virtual_node_cnt: u32 },
    /// Exactly these queues, whatever the group looks like.
    ByConfig(Vec<MessageQueue>),
}

impl AllocateStrategy {
    /// The strategy name Java reports (`getName()`).
    pub fn name(&self) -> &'static str {
        match self {
            AllocateStrategy::Averagely => "AVG",
            AllocateStrategy::AveragelyByCircle => "AVG_BY_CIRCLE",
            AllocateStrategy::ConsistentHash { .. } => "CONSISTENT_HASH",
            AllocateStrategy::ByConfig(_) => "CONFIG",
        }
    }

    /// The queues of `mq_all` that `current_cid` takes.
    pub fn allocate(
        &self,
        current_cid: &str,
        mq_all: &[MessageQueue],
        cid_all: &[String],
    ) -> Vec<MessageQueue> {
        match self {
            AllocateStrategy::Averagely => allocate_averagely(current_cid, mq_all, cid_all),
            AllocateStrategy::AveragelyByCircle => {
                allocate_averagely_by_circle(current_cid, mq_all, cid_all)
            }
            AllocateStrategy::ConsistentHash { virtual_node_cnt } => {
                allocate_consistent_hash(current_cid, mq_all, cid_all, *virtual_node_cnt)
            }
            AllocateStrategy::ByConfig(queues) => queues.clone(),
        }
    }
}

fn index_of(current_cid: &str, cid_all: &[String]) -> Option<usize> {
    if mq_or_cid_empty(cid_all) {
        return None;
    }
    cid_all.iter().position(|c| c == current_cid)
}

fn mq_or_cid_empty(cid_all: &[String]) -> bool {
    cid_all.is_empty()
}

/// `AllocateMessageQueueAveragely`.
pub fn allocate_averagely(
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Vec<MessageQueue> {
    let Some(index) = index_of(current_cid, cid_all) else {
        return Vec::new();
    };
    if mq_all.is_empty() {
        return Vec::new();
    }
    let (mq_len, cid_len, index) = (mq_all.len() as i64, cid_all.len() as i64, index as i64);
    let modulo = mq_len % cid_len;
    let average_size = if mq_len <= cid_len {
        1
    } else if modulo > 0 && index < modulo {
        mq_len / cid_len + 1
    } else {
        mq_len / cid_len
    };
    let start_index = if modulo > 0 && index < modulo {
        index * average_size
    } else {
        index * average_size + modulo
    };
    let range = average_size.min(mq_len - start_index);
    (0..range.max(0))
        .map(|i| mq_all[((start_index + i) % mq_len) as usize].clone())
        .collect()
}

/// `AllocateMessageQueueAveragelyByCircle`.
pub fn allocate_averagely_by_circle(
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Vec<MessageQueue> {
    let Some(index) = index_of(current_cid, cid_all) else {
        return Vec::new();
    };
    (index..mq_all.len())
        .filter(|i| i % cid_all.len() == index)
        .map(|i| mq_all[i].clone())
        .collect()
}

/// RocketMQ's `ConsistentHashRouter.MD5Hash`: the first four digest bytes, big-endian, as a
/// non-negative long.
pub fn md5_hash(key: &str) -> i64 {
    let digest = Md5::digest(key.as_bytes());
    digest[..4]
        .iter()
        .fold(0i64, |h, byte| (h << 8) | i64::from(*byte))
}

/// `AllocateMessageQueueConsistentHash` with `virtual_node_cnt` virtual nodes per consumer
/// (Java refuses 0; it is treated as 1 here).
pub fn allocate_consistent_hash(
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
    virtual_node_cnt: u32,
) -> Vec<MessageQueue> {
    if index_of(current_cid, cid_all).is_none() {
        return Vec::new();
    }
    // The ring: hash of "<cid>-<replica>" → cid; a later node overwrites an equal hash, as a
    // Java TreeMap.put does.
    let mut ring: BTreeMap<i64, &str> = BTreeMap::new();
    for cid in cid_all {
        for replica in 0..virtual_node_cnt.max(1) {
            ring.insert(md5_hash(&format!("{cid}-{replica}")), cid.as_str());
        }
    }
    mq_all
        .iter()
        .filter(|mq| {
            let hash = md5_hash(&mq.to_string());
            let node = ring
                .range(hash..)
                .next()
                .or_else(|| ring.iter().next())
                .map(|(_, cid)| *cid);
            node == Some(current_cid)
        })
        .cloned()
        .collect()
}

/// `AllocateMessageQueueByConfig`: the configured queues.
pub fn allocate_by_config(configured: &[MessageQueue]) -> Vec<MessageQueue> {
    configured.to_vec()
}
