//! Delay levels: RocketMQ's `ScheduleMessageService`.
//!
//! A message whose `DELAY` property is a level `1..=N` (`N` = the number of `messageDelayLevel`
//! entries; a higher level is clamped to `N`, level 0 or below means no delay) is not stored in
//! its topic but in [`SCHEDULE_TOPIC`], queue `level - 1`, with its topic and queue id kept in
//! `REAL_TOPIC` / `REAL_QID`. The store gives such a record its delivery time (store time +
//! the level's delay) as ConsumeQueue tags code.
//!
//! Each level has a delivery offset: the first queue offset of its schedule queue not yet
//! delivered. When the head of a level is due, it is put again into its real topic and queue (a
//! new CommitLog record, `DELAY` removed so it is not delayed again, store time = now) and the
//! offset advances. Queues are delivered in order, so a level never delivers a later message
//! before an earlier one, and never before its delivery time.
//!
//! Offsets are persisted in `config/delayOffset.json`, RocketMQ's file and shape:
//!
//! ```text
//! {"offsetTable":{"1":3,"2":0}}      level → next queue offset to deliver
//! ```
//!
//! (Java writes the integer keys unquoted; both spellings are read.) The file only ever records
//! offsets whose re-put records are durable, so a crash can re-deliver (at least once) but never
//! lose a message: it is written every [`DELAY_OFFSET_PERSIST_INTERVAL_MS`] with the offsets of
//! the previous period once their records are synced, and at shutdown once the final sync is
//! done.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError, FlushDiskType};
use crate::message::{keys, MessageRecord};
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::store::message_store::schedule_level;
pub use crate::store::message_store::{DEFAULT_MESSAGE_DELAY_LEVEL_MS, SCHEDULE_TOPIC};
use crate::store::{CommitLogOffset, PutResult, QueueOffset, SegmentStorage, StoreError};
use crate::topic::TopicConfig;

/// Where the delivery offsets are kept (RocketMQ's `delayOffset.json`).
pub const DELAY_OFFSET_PATH: &str = "config/delayOffset.json";
/// How often changed delivery offsets are written (`flushDelayOffsetInterval`).
pub const DELAY_OFFSET_PERSIST_INTERVAL_MS: u64 = 10_000;
/// Queues of [`SCHEDULE_TOPIC`] when there are no more levels (`SCHEDULE_TOPIC_QUEUE_NUM`).
pub const SCHEDULE_TOPIC_QUEUE_NUMS: u32 = 18;
/// A re-put that failed (full disk, failed storage) is tried again this much later.
const RETRY_AFTER_FAILURE_MS: u64 = 1_000;
/// Records read from a schedule queue at a time.
const DELIVER_BATCH: u32 = 32;

/// Parses `messageDelayLevel`: space-separated durations, each a whole number followed by `s`,
/// `m`, `h` or `d` (`"1s 5s 10s 30s 1m"`). Returns the delay of each level in ms, level 1 first.
pub fn parse_message_delay_level(text: &str) -> Result<Vec<u64>, String> {
    let mut levels = Vec::new();
    for item in text.split_whitespace() {
        let unit_ms: u64 = match item.chars().last() {
            Some('s') => 1_000,
            Some('m') => 60_000,
            Some('h') => 3_600_000,
            Some('d') => 86_400_000,
            _ => {
                return Err(format!(
                    "{item:?} is not a duration (a number followed by s, m, h or d)"
                ))
            }
        };
        let number: u64 = item[..item.len() - 1].parse().map_err(|_| {
            format!("{item:?} is not a duration (a number followed by s, m, h or d)")
        })?;
        let delay_ms = number
            .checked_mul(unit_ms)
            .filter(|ms| *ms <= i64::MAX as u64)
            .ok_or_else(|| format!("{item:?} is too long"))?;
        levels.push(delay_ms);
    }
    if levels.is_empty() {
        return Err("expected at least one delay level".to_owned());
    }
    Ok(levels)
}

/// `DelayOffsetSerializeWrapper`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayOffsetFile {
    #[serde(default)]
    offset_table: BTreeMap<u32, u64>,
}

/// Quotes the bare integer object keys Java's JSON writer produces (`{1:0}` → `{"1":0}`).
fn quote_integer_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut after_open = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if after_open && (c.is_ascii_digit() || c == '-') {
            let mut key = String::from(c);
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                key.push(d);
                chars.next();
            }
            out.push('"');
            out.push_str(&key);
            out.push('"');
            after_open = false;
            continue;
        }
        if !c.is_whitespace() {
            after_open = matches!(c, '{' | ',');
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// Delivery progress of every level.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    /// Level → first schedule-queue offset not yet delivered.
    offsets: BTreeMap<u32, u64>,
    /// What `delayOffset.json` holds.
    persisted: BTreeMap<u32, u64>,
    /// Offsets to write once the CommitLog is durable up to the offset given: their re-put
    /// records must survive a crash before the file may say they were delivered.
    pending: Option<(BTreeMap<u32, u64>, CommitLogOffset)>,
    next_persist_ms: u64,
    /// When the earliest undelivered message of any level is due; `None` when none waits.
    next_due_ms: Option<u64>,
}

impl Schedule {
    /// The persisted offsets (none when the file does not exist).
    pub(super) fn load<S: SegmentStorage>(storage: &S, now_ms: u64) -> Result<Self, BrokerError> {
        let offsets = match storage
            .read_all(DELAY_OFFSET_PATH)
            .map_err(StoreError::from)?
        {
            None => BTreeMap::new(),
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let file: DelayOffsetFile = serde_json::from_str(&quote_integer_keys(&text))
                    .map_err(|e| BrokerError::CorruptConfig {
                        path: DELAY_OFFSET_PATH.to_owned(),
                        reason: e.to_string(),
                    })?;
                file.offset_table
            }
        };
        Ok(Self {
            persisted: offsets.clone(),
            offsets,
            pending: None,
            next_persist_ms: now_ms + DELAY_OFFSET_PERSIST_INTERVAL_MS,
            next_due_ms: None,
        })
    }

    fn to_json(offsets: &BTreeMap<u32, u64>) -> Vec<u8> {
        serde_json::to_vec(&DelayOffsetFile {
            offset_table: offsets.clone(),
        })
        .unwrap_or_default()
    }

    /// The next instant the schedule needs `handle_timeout`.
    pub(super) fn deadline_ms(&self) -> Option<u64> {
        let persist = (self.pending.is_some() || self.offsets != self.persisted)
            .then_some(self.next_persist_ms);
        match (self.next_due_ms, persist) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The delivery offset of a level (1-based).
    pub(super) fn offset(&self, level: u32) -> u64 {
        self.offsets.get(&level).copied().unwrap_or(0)
    }
}

/// What a delivery pass found at the head of a level.
enum Head {
    /// Nothing waits.
    Empty,
    /// The head is due at this instant.
    DueAt(u64),
}

impl<S: SegmentStorage> Broker<S> {
    /// The delay of each level, level 1 first.
    fn delay_levels_ms(&self) -> &[u64] {
        &self.config.store.message_delay_level_ms
    }

    /// Creates [`SCHEDULE_TOPIC`] (readable and writable like RocketMQ's, one queue per level and
    /// at least 18) and brings loaded offsets inside what the queues hold after recovery.
    pub(super) fn init_schedule(&mut self, now_ms: u64) {
        let queue_nums = SCHEDULE_TOPIC_QUEUE_NUMS.max(self.delay_levels_ms().len() as u32);
        let wanted = TopicConfig::new(SCHEDULE_TOPIC, queue_nums);
        let existing = self.topics.topics.get(SCHEDULE_TOPIC);
        // Created when missing; a configuration changed by an operator is kept, except that
        // more delay levels need more queues.
        if existing.is_none_or(|t| t.read_queue_nums < queue_nums) {
            self.topics.topics.insert(SCHEDULE_TOPIC.to_owned(), wanted);
            self.topics.data_version.bump(now_ms);
            self.persist_topics();
        }
        // Every level has an entry, as in RocketMQ's file. After a crash the file may be ahead
        // of what recovery kept: deliver from the end of the queue (`correctDelayOffset`). An
        // offset below what retention left is raised when delivering. Filling in missing levels
        // is no change worth a write; only a correction is.
        let mut waiting = false;
        for level in 1..=self.delay_levels_ms().len() as u32 {
            let max = self.store.max_offset(SCHEDULE_TOPIC, (level - 1) as i32).0;
            let offset = self.schedule.offset(level).min(max);
            self.schedule.offsets.insert(level, offset);
            self.schedule.persisted.entry(level).or_insert(0);
            waiting |= offset < max;
        }
        // The first `handle_timeout` finds when the waiting messages are due.
        self.schedule.next_due_ms = waiting.then_some(now_ms);
    }

    /// Writes `delayOffset.json` at once when [`Self::init_schedule`] lowered a level's offset
    /// to its queue's recovered max. Left ahead until the next period, a crash meanwhile would
    /// make the next start skip the delayed messages stored at those offsets since this one
    /// (the queue would have grown past the stale offset by then).
    pub(super) fn persist_clamped_delay_offsets(&mut self) -> Result<(), BrokerError> {
        let lowered = self.schedule.offsets.iter().any(|(level, offset)| {
            self.schedule
                .persisted
                .get(level)
                .is_some_and(|p| p > offset)
        });
        if !lowered {
            return Ok(());
        }
        let json = Schedule::to_json(&self.schedule.offsets);
        self.store
            .storage_mut()
            .replace(DELAY_OFFSET_PATH, &json)
            .map_err(StoreError::from)?;
        self.schedule.persisted = self.schedule.offsets.clone();
        Ok(())
    }

    /// Stores a message, sending it to [`SCHEDULE_TOPIC`] first when its `DELAY` property asks
    /// for a delay level (RocketMQ's `HookUtils.handleScheduleMessage`). Every put of a new
    /// message (sends, CONSUMER_SEND_MSG_BACK retries) goes through here. Returns where it was
    /// stored: for a delayed message, in the schedule queue (what the send response reports).
    /// The record's `store_timestamp_ms` (now) starts its delay.
    pub(crate) fn put_with_delay_routing(
        &mut self,
        mut record: MessageRecord,
    ) -> Result<PutResult, StoreError> {
        let level = schedule_level(&record.properties, self.delay_levels_ms().len());
        let Some(level) = level else {
            return self.store.put(record);
        };
        let real_topic = std::mem::replace(&mut record.topic, SCHEDULE_TOPIC.to_owned());
        record.properties.insert(keys::REAL_TOPIC, real_topic);
        record
            .properties
            .insert(keys::REAL_QID, record.queue_id.to_string());
        // Clamped as RocketMQ does, so the stored level matches the queue.
        record.properties.insert(keys::DELAY, level.to_string());
        record.queue_id = level as i32 - 1;
        let put = self.store.put(record)?;
        let delay_ms = self.delay_levels_ms()[level - 1];
        let due_ms = (put.store_timestamp_ms.max(0) as u64).saturating_add(delay_ms);
        self.schedule.next_due_ms =
            Some(self.schedule.next_due_ms.map_or(due_ms, |d| d.min(due_ms)));
        Ok(put)
    }

    /// Delivers every due message and persists offsets when their period has come.
    pub(super) fn schedule_tick(&mut self, now_ms: u64) {
        if self.schedule.next_due_ms.is_some_and(|due| due <= now_ms) {
            if self.durability_failure.is_some() || self.is_disk_full() {
                // Sends are refused now; deliveries wait too (they would add data the same way)
                // and are looked at again shortly.
                self.schedule.next_due_ms = Some(now_ms + RETRY_AFTER_FAILURE_MS);
            } else {
                self.deliver_due(now_ms);
            }
        }
        if now_ms >= self.schedule.next_persist_ms {
            self.persist_delay_offsets();
            self.schedule.next_persist_ms = now_ms + DELAY_OFFSET_PERSIST_INTERVAL_MS;
        }
    }

    fn deliver_due(&mut self, now_ms: u64) {
        let mut next_due: Option<u64> = None;
        let mut delivered = false;
        for level in 1..=self.delay_levels_ms().len() as u32 {
            let head = match self.deliver_level(now_ms, level, &mut delivered) {
                Ok(head) => head,
                // Tried again shortly; nothing was skipped.
                Err(_) => Head::DueAt(now_ms + RETRY_AFTER_FAILURE_MS),
            };
            if let Head::DueAt(due) = head {
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
            }
        }
        self.schedule.next_due_ms = next_due;
        if delivered {
            match self.config.flush_disk_type {
                FlushDiskType::AsyncFlush => self.after_async_put(),
                FlushDiskType::SyncFlush => self.request_sync_if_idle(),
            }
        }
    }

    /// Delivers the due head of one level, in queue order, and says when the next is due.
    fn deliver_level(
        &mut self,
        now_ms: u64,
        level: u32,
        delivered: &mut bool,
    ) -> Result<Head, StoreError> {
        let queue_id = (level - 1) as i32;
        let delay_ms = self.delay_levels_ms()[(level - 1) as usize];
        loop {
            let min = self.store.min_offset(SCHEDULE_TOPIC, queue_id).0;
            let max = self.store.max_offset(SCHEDULE_TOPIC, queue_id).0;
            let mut offset = self.schedule.offset(level).max(min);
            if offset >= max {
                return Ok(Head::Empty);
            }
            let got = self.store.get(
                SCHEDULE_TOPIC,
                queue_id,
                QueueOffset(offset),
                DELIVER_BATCH,
                &|_| true,
            )?;
            if let (Some(reason), true) = (&got.damaged, got.records.is_empty()) {
                // The head record failed its check on every read: tried again shortly, never
                // passed over.
                return Err(StoreError::Corrupt(reason.clone()));
            }
            if got.records.is_empty() {
                // Removed by retention meanwhile: move on to what is left.
                self.set_schedule_offset(level, got.next_begin_offset.0.max(offset + 1));
                continue;
            }
            for bytes in &got.records {
                let Ok(stored) = MessageRecord::decode(bytes, false) else {
                    offset += 1;
                    self.set_schedule_offset(level, offset);
                    continue;
                };
                let due_ms = (stored.store_timestamp_ms.max(0) as u64).saturating_add(delay_ms);
                if due_ms > now_ms {
                    return Ok(Head::DueAt(due_ms));
                }
                if let Some(record) = Self::real_message(now_ms, stored) {
                    let (topic, real_queue) = (record.topic.clone(), record.queue_id);
                    self.store.put(record)?;
                    *delivered = true;
                    self.ensure_topic_of_delivered(now_ms, &topic, real_queue);
                    self.wake_held_pulls(now_ms, &topic, real_queue);
                }
                // A record without a usable real topic cannot be delivered anywhere; it is
                // passed over rather than blocking its level.
                offset += 1;
                self.set_schedule_offset(level, offset);
            }
        }
    }

    fn set_schedule_offset(&mut self, level: u32, offset: u64) {
        self.schedule.offsets.insert(level, offset);
    }

    /// The message a schedule record stands for, as it goes into its real queue
    /// (`ScheduleMessageService.messageTimeup`): `DELAY` removed, `REAL_TOPIC` / `REAL_QID`
    /// kept, stored now.
    fn real_message(now_ms: u64, stored: MessageRecord) -> Option<MessageRecord> {
        let mut real = unpark(now_ms, stored, SCHEDULE_TOPIC)?;
        real.properties.remove(keys::DELAY);
        Some(real)
    }

    /// Writes `delayOffset.json` with the offsets of the last snapshot once the CommitLog is
    /// durable past the records it re-put, then snapshots the current offsets if they changed.
    fn persist_delay_offsets(&mut self) {
        let durable = self.store.durable_offset();
        if let Some((offsets, end)) = &self.schedule.pending {
            if *end > durable {
                return;
            }
            if *offsets != self.schedule.persisted {
                let json = Schedule::to_json(offsets);
                if self
                    .store
                    .storage_mut()
                    .replace(DELAY_OFFSET_PATH, &json)
                    .is_err()
                {
                    // The next period tries again.
                    return;
                }
                self.schedule.persisted = offsets.clone();
            }
            self.schedule.pending = None;
        }
        if self.schedule.offsets != self.schedule.persisted {
            let written = self.store.written_offset();
            self.schedule.pending = Some((self.schedule.offsets.clone(), written));
            // Nothing re-put since the last sync: write at once.
            if written <= durable {
                self.persist_delay_offsets();
            }
        }
    }

    /// GET_ALL_DELAY_OFFSET (45): what `delayOffset.json` holds (RocketMQ answers the file's
    /// text; a slave copies it).
    pub(super) fn handle_get_all_delay_offset(&self, req: &RemotingCommand) -> RemotingCommand {
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(Schedule::to_json(&self.schedule.persisted))
    }

    /// A slave takes its master's delay offsets (SlaveSynchronize's `syncDelayOffset`): written
    /// to `delayOffset.json` as they come, so a slave that later delivers starts where its
    /// master stood. A slave delivers nothing itself meanwhile.
    pub(super) fn take_delay_offsets_from_master(&mut self, body: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(body);
        let file: DelayOffsetFile = serde_json::from_str(&quote_integer_keys(&text))
            .map_err(|e| format!("not a delay offset table: {e}"))?;
        if file.offset_table == self.schedule.persisted {
            return Ok(());
        }
        self.store
            .storage_mut()
            .replace(DELAY_OFFSET_PATH, &Schedule::to_json(&file.offset_table))
            .map_err(|e| e.to_string())?;
        self.schedule.persisted = file.offset_table.clone();
        self.schedule.offsets = file.offset_table;
        Ok(())
    }

    /// A sync completed: writes the snapshot waiting for it.
    pub(super) fn schedule_synced(&mut self) {
        if self.schedule.pending.is_some() {
            self.persist_delay_offsets();
        }
    }

    /// Shutdown: snapshots the current offsets; they are written once the final sync makes
    /// everything durable ([`Broker::schedule_synced`]), or at once if it already is.
    pub(super) fn persist_delay_offsets_at_shutdown(&mut self) {
        if self.schedule.offsets != self.schedule.persisted {
            self.schedule.pending =
                Some((self.schedule.offsets.clone(), self.store.written_offset()));
        }
        self.persist_delay_offsets();
    }

    /// The delivery offset of a delay level (1-based): the first message of its schedule queue
    /// not yet delivered.
    pub fn delay_offset(&self, level: u32) -> u64 {
        self.schedule.offset(level)
    }

    /// Per delay level with messages (1-based): (its delivery offset, its queue's max offset),
    /// GET_BROKER_RUNTIME_INFO's `scheduleMessageOffset_<level>`.
    pub(super) fn schedule_offsets(&self) -> Vec<(u32, (u64, u64))> {
        (1..=self.delay_levels_ms().len() as u32)
            .filter_map(|level| {
                let max = self.store.max_offset(SCHEDULE_TOPIC, level as i32 - 1).0;
                (max > 0).then(|| (level, (self.schedule.offset(level), max)))
            })
            .collect()
    }
}

/// The message a record parked in `parking_topic` (the schedule or timer topic) stands for, as it
/// goes into its real queue: `REAL_TOPIC` / `REAL_QID` read (and kept, as RocketMQ keeps them),
/// stored now. `None` when they are missing, malformed or point back at the parking topic.
pub(super) fn unpark(
    now_ms: u64,
    stored: MessageRecord,
    parking_topic: &str,
) -> Option<MessageRecord> {
    let topic = stored.properties.get(keys::REAL_TOPIC)?.to_owned();
    let queue_id: i32 = stored.properties.get(keys::REAL_QID)?.parse().ok()?;
    if topic == parking_topic || queue_id < 0 {
        return None;
    }
    Some(MessageRecord {
        topic,
        queue_id,
        queue_offset: 0,
        physical_offset: 0,
        store_timestamp_ms: now_ms as i64,
        ..stored
    })
}
