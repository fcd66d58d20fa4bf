//! What POP writes to its revive log: checkpoints (`ck`), acks (`ack`) and batch acks
//! (`bAck`), one JSON body each, with RocketMQ 5's field names (`PopCheckPoint`, `AckMsg`,
//! `BatchAckMsg`, serialised by fastjson with sorted keys; the long names are read too).
//!
//! ```text
//! ck   {"bm":0,"bn":"broker-a","c":"G1","d":[0,2],"it":60000,"n":2,"pt":1700000000000,
//!       "q":3,"reviveTime":1700000060000,"ro":0,"so":10,"t":"T1"}
//! ack  {"ao":12,"bn":"broker-a","c":"G1","pt":1700000000000,"q":3,"so":10,"t":"T1"}
//! bAck {"ao":-1,"aol":[10,12],"bn":"broker-a","c":"G1","pt":1700000000000,"q":3,"so":10,"t":"T1"}
//! ```
//!
//! `t` is the topic the messages were read from (a POP retry topic for redeliveries), `so` the
//! queue offset the read started at, `d` each message's offset minus `so`, `pt` the pop time
//! and `it` the invisible time (ms). An ack names its checkpoint by (`t`, `c`, `q`, `so`, `pt`,
//! `bn`): RocketMQ's merge key.

use serde::{Deserialize, Serialize};

/// The revive log's tag of a checkpoint.
pub const CK_TAG: &str = "ck";
/// The revive log's tag of an ack.
pub const ACK_TAG: &str = "ack";
/// The revive log's tag of a batch ack.
pub const BATCH_ACK_TAG: &str = "bAck";

/// A checkpoint: a POP handed out these messages of one queue at `pop_time_ms`; each one not
/// acked by `pop_time_ms + invisible_time_ms` is delivered again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopCheckPoint {
    #[serde(rename = "bm", alias = "bitMap", default)]
    pub bit_map: i32,
    #[serde(rename = "bn", alias = "brokerName", default)]
    pub broker_name: Option<String>,
    #[serde(rename = "c", alias = "cid")]
    pub group: String,
    #[serde(rename = "d", alias = "queueOffsetDiff", default)]
    pub queue_offset_diff: Vec<i64>,
    #[serde(rename = "it", alias = "invisibleTime")]
    pub invisible_time_ms: i64,
    #[serde(rename = "n", alias = "num")]
    pub num: i32,
    #[serde(rename = "pt", alias = "popTime")]
    pub pop_time_ms: i64,
    #[serde(rename = "q", alias = "queueId")]
    pub queue_id: i32,
    /// Derived (`pt + it`); written as Java's getter writes it, ignored when read.
    #[serde(rename = "reviveTime", default)]
    pub revive_time_ms: i64,
    #[serde(rename = "ro", alias = "reviveOffset", default)]
    pub revive_offset: i64,
    #[serde(rename = "so", alias = "startOffset")]
    pub start_offset: i64,
    #[serde(rename = "t", alias = "topic")]
    pub topic: String,
}

impl PopCheckPoint {
    /// The queue offsets of its messages (an old checkpoint without `d`: `so..so+n`).
    pub fn offsets(&self) -> Vec<i64> {
        if self.queue_offset_diff.is_empty() {
            (0..i64::from(self.num.max(0)))
                .map(|i| self.start_offset + i)
                .collect()
        } else {
            self.queue_offset_diff
                .iter()
                .map(|d| self.start_offset + d)
                .collect()
        }
    }

    pub fn revive_at_ms(&self) -> i64 {
        self.pop_time_ms.saturating_add(self.invisible_time_ms)
    }
}

/// An ack of one message (`ack_offsets` of one element) or several (`bAck`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckMsg {
    #[serde(rename = "ao", alias = "ackOffset")]
    pub ack_offset: i64,
    #[serde(
        rename = "aol",
        alias = "ackOffsetList",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ack_offset_list: Option<Vec<i64>>,
    #[serde(rename = "bn", alias = "brokerName", default)]
    pub broker_name: Option<String>,
    #[serde(rename = "c", alias = "consumerGroup")]
    pub group: String,
    #[serde(rename = "pt", alias = "popTime")]
    pub pop_time_ms: i64,
    #[serde(rename = "q", alias = "queueId")]
    pub queue_id: i32,
    #[serde(rename = "so", alias = "startOffset")]
    pub start_offset: i64,
    #[serde(rename = "t", alias = "topic")]
    pub topic: String,
}

impl AckMsg {
    /// Every offset it acks.
    pub fn offsets(&self) -> Vec<i64> {
        match &self.ack_offset_list {
            Some(list) => list.clone(),
            None => vec![self.ack_offset],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_written_with_javas_sorted_short_keys() {
        let ck = PopCheckPoint {
            bit_map: 0,
            broker_name: Some("broker-a".into()),
            group: "G1".into(),
            queue_offset_diff: vec![0, 2],
            invisible_time_ms: 60_000,
            num: 2,
            pop_time_ms: 1_700_000_000_000,
            queue_id: 3,
            revive_time_ms: 1_700_000_060_000,
            revive_offset: 0,
            start_offset: 10,
            topic: "T1".into(),
        };
        assert_eq!(
            serde_json::to_string(&ck).unwrap(),
            r#"{"bm":0,"bn":"broker-a","c":"G1","d":[0,2],"it":60000,"n":2,"pt":1700000000000,"q":3,"reviveTime":1700000060000,"ro":0,"so":10,"t":"T1"}"#
        );
        assert_eq!(ck.offsets(), vec![10, 12]);
        let ack = AckMsg {
            ack_offset: 12,
            ack_offset_list: None,
            broker_name: Some("broker-a".into()),
            group: "G1".into(),
            pop_time_ms: 1_700_000_000_000,
            queue_id: 3,
            start_offset: 10,
            topic: "T1".into(),
        };
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            r#"{"ao":12,"bn":"broker-a","c":"G1","pt":1700000000000,"q":3,"so":10,"t":"T1"}"#
        );
        // A checkpoint Java wrote with a re-put count, and one without `d`.
        let old: PopCheckPoint = serde_json::from_str(
            r#"{"bm":0,"c":"G","it":5,"n":3,"pt":1,"q":0,"ro":0,"rp":"1","so":7,"t":"T"}"#,
        )
        .unwrap();
        assert_eq!(old.offsets(), vec![7, 8, 9]);
        let batch: AckMsg = serde_json::from_str(
            r#"{"ao":-1,"aol":[10,12],"c":"G1","pt":1,"q":3,"so":10,"t":"T1"}"#,
        )
        .unwrap();
        assert_eq!(batch.offsets(), vec![10, 12]);
    }
}
