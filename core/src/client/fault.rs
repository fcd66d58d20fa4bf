//! Latency-based broker fault avoidance: RocketMQ's `MQFaultStrategy` and
//! `LatencyFaultToleranceImpl`.
//!
//! After every send attempt the producer reports the broker's latency (or a failure, counted as
//! an isolating 30 s latency). The latency maps to a not-available window:
//!
//! ```text
//! latencyMax (ms)            50  100  550    1000    2000    3000    15000
//! notAvailableDuration (ms)   0    0  30000  60000  120000  180000  600000
//! ```
//!
//! (the window of the largest `latencyMax` not above the latency). While a broker is inside its
//! window it is skipped by queue choice, when `sendLatencyFaultEnable` is on.

use std::collections::BTreeMap;

use super::route::PublishInfo;
use super::MessageQueue;

const LATENCY_MAX_MS: [u64; 7] = [50, 100, 550, 1_000, 2_000, 3_000, 15_000];
const NOT_AVAILABLE_DURATION_MS: [u64; 7] = [0, 0, 30_000, 60_000, 120_000, 180_000, 600_000];
/// The latency a failed attempt counts as (`isolation`).
const ISOLATION_LATENCY_MS: u64 = 30_000;

/// One broker's fault record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FaultItem {
    pub current_latency_ms: u64,
    /// Available again from this instant.
    pub start_timestamp_ms: u64,
}

#[derive(Debug, Default)]
pub(super) struct FaultStrategy {
    pub enabled: bool,
    pub items: BTreeMap<String, FaultItem>,
    /// `whichItemWorst`: rotates among the better half in `pick_one_at_least`.
    which_item_worst: u32,
}

/// The not-available window for a latency (`computeNotAvailableDuration`).
pub(super) fn not_available_duration_ms(latency_ms: u64) -> u64 {
    LATENCY_MAX_MS
        .iter()
        .zip(NOT_AVAILABLE_DURATION_MS)
        .rev()
        .find(|(max, _)| latency_ms >= **max)
        .map(|(_, duration)| duration)
        .unwrap_or(0)
}

impl FaultStrategy {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    /// `updateFaultItem(brokerName, currentLatency, isolation)`.
    pub fn update(&mut self, now_ms: u64, broker_name: &str, latency_ms: u64, isolation: bool) {
        if !self.enabled {
            return;
        }
        let latency = if isolation {
            ISOLATION_LATENCY_MS
        } else {
            latency_ms
        };
        let duration = not_available_duration_ms(latency);
        self.items.insert(
            broker_name.to_owned(),
            FaultItem {
                current_latency_ms: latency_ms,
                start_timestamp_ms: now_ms + duration,
            },
        );
    }

    pub fn is_available(&self, now_ms: u64, broker_name: &str) -> bool {
        self.items
            .get(broker_name)
            .is_none_or(|item| now_ms >= item.start_timestamp_ms)
    }

    /// `pickOneAtLeast`: among the faulty brokers sorted best first (available, then lower
    /// latency, then earlier end of window), one of the better half, rotating.
    fn pick_one_at_least(&mut self, now_ms: u64) -> Option<String> {
        let mut items: Vec<(&String, &FaultItem)> = self.items.iter().collect();
        if items.is_empty() {
            return None;
        }
        items.sort_by_key(|(_, item)| {
            (
                now_ms < item.start_timestamp_ms,
                item.current_latency_ms,
                item.start_timestamp_ms,
            )
        });
        let half = items.len() / 2;
        if half == 0 {
            return Some(items[0].0.clone());
        }
        self.which_item_worst = self.which_item_worst.wrapping_add(1);
        let i = (self.which_item_worst & 0x7FFF_FFFF) as usize % half;
        Some(items[i].0.clone())
    }

    /// `selectOneMessageQueue(tpInfo, lastBrokerName)`.
    pub fn select(
        &mut self,
        now_ms: u64,
        info: &mut PublishInfo,
        last_broker: Option<&str>,
    ) -> Option<MessageQueue> {
        if info.queues.is_empty() {
            return None;
        }
        if !self.enabled {
            return info.select(last_broker);
        }
        let len = info.queues.len();
        let mut index = info.next_index();
        for _ in 0..len {
            let pos = (index & 0x7FFF_FFFF) as usize % len;
            index = index.wrapping_add(1);
            let mq = &info.queues[pos];
            if self.is_available(now_ms, &mq.broker_name) {
                return Some(mq.clone());
            }
        }
        if let Some(not_best) = self.pick_one_at_least(now_ms) {
            let write_queue_nums = info.write_queue_nums(&not_best);
            if write_queue_nums > 0 {
                let queue_id = (info.next_index() & 0x7FFF_FFFF) as i32 % write_queue_nums;
                return Some(MessageQueue::new(info.topic.clone(), not_best, queue_id));
            }
            self.items.remove(&not_best);
        }
        info.select(None)
    }
}
