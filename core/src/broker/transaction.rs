//! Transactional messages: half messages, END_TRANSACTION (37) and check-back
//! (CHECK_TRANSACTION_STATE, 39). RocketMQ's `TransactionalMessageServiceImpl`,
//! `TransactionalMessageBridge` and `EndTransactionProcessor`, with the same topics.
//!
//! ```text
//!  send TRAN_MSG=true ──▶ RMQ_SYS_TRANS_HALF_TOPIC q0   (REAL_TOPIC, REAL_QID, __transactionId__)
//!                              │
//!  END_TRANSACTION commit ─────┼──▶ real topic / queue (sysFlag COMMIT, preparedTransactionOffset)
//!                  commit or   └──▶ RMQ_SYS_TRANS_OP_HALF_TOPIC q0 (tag "d", body "<half offset>")
//!                  rollback
//!  no answer after transactionTimeOut ──▶ CHECK_TRANSACTION_STATE to a producer of PGROUP,
//!     again every transactionCheckInterval; after transactionCheckMax checks
//!     ──▶ TRANS_CHECK_MAX_TIME_TOPIC (and an op record: given up)
//! ```
//!
//! A transaction is named by the queue offset of its first half record in the half queue (its
//! *prepared offset*). Each check appends a copy of the half record with
//! `TRANSACTION_CHECK_TIMES` counted up and `TRAN_PREPARED_QUEUE_OFFSET` = the prepared offset,
//! so the count survives a restart; the check asks about the copy's CommitLog offset and the
//! prepared offset. An op record's body is the prepared offset it resolves. A transaction is
//! resolved once (a repeated or late END_TRANSACTION is answered but changes nothing), so a
//! committed message reaches its topic once.
//!
//! Everything is in the CommitLog; what is kept in memory is rebuilt on start from two
//! offsets persisted in `config/transactionOffset.json`:
//!
//! ```text
//! {"halfOffset":H,"opOffset":O}
//!   H: every transaction whose prepared offset is below H is resolved
//!   O: no op record below O resolves a transaction at or above H
//! ```
//!
//! On start the half queue is read from H (the latest copy of each transaction wins) and the op
//! queue from O (removing what they resolve). Like `delayOffset.json` ([`super::schedule`]) the
//! file only ever names progress whose op records and committed messages are durable: it is
//! written every [`TRANSACTION_OFFSET_PERSIST_INTERVAL_MS`] with the offsets of the previous
//! period once the CommitLog is synced past what they depend on, and at shutdown once the final
//! sync is done. A crash can thus check a transaction again (and commit it at least once) but
//! never forget one.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError, BrokerOutput, FlushDiskType};
use crate::message::{keys, offset_msg_id, sys_flag, MessageRecord, Properties};
use crate::remoting::codes::{request, response};
use crate::remoting::headers::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::{CommitLogOffset, QueueOffset, SegmentStorage, StoreError};
use crate::topic::{perm, TopicConfig};
use crate::ConnId;

/// Where half messages wait.
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where commits, rollbacks and give-ups are recorded.
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where half messages go once checked `transactionCheckMax` times without an answer.
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The persisted progress (see the module docs).
pub const TRANSACTION_OFFSET_PATH: &str = "config/transactionOffset.json";
/// How often changed progress is written.
pub const TRANSACTION_OFFSET_PERSIST_INTERVAL_MS: u64 = 5_000;
/// Tag of op records (`TransactionalMessageUtil.REMOVE_TAG`).
pub const OP_TAG: &str = "d";

/// Property keys of the transaction bookkeeping.
pub mod tx_keys {
    /// Copy of UNIQ_KEY on half messages.
    pub const TRANSACTION_ID: &str = "__transactionId__";
    /// The prepared offset a re-put copy stands for.
    pub const PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    /// How many checks were sent.
    pub const CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    /// Per-message first-check delay in seconds, set by the producer.
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
}

/// A check or discard that could not be written (full disk, failed storage) is tried again this
/// much later.
const RETRY_AFTER_FAILURE_MS: u64 = 1_000;
/// Records read at a time when rebuilding the state on start.
const LOAD_BATCH: u32 = 256;

/// The check-back knobs (RocketMQ's broker.conf keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `transactionTimeOut`: a half message is first checked this long after it was stored
    /// (unless it carries `CHECK_IMMUNITY_TIME_IN_SECONDS`).
    pub timeout_ms: u64,
    /// `transactionCheckInterval`: an unresolved half message is checked again this often.
    pub check_interval_ms: u64,
    /// `transactionCheckMax`: checks sent before the half message is given up.
    pub check_max: u32,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 6_000,
            check_interval_ms: 30_000,
            check_max: 15,
        }
    }
}

/// `config/transactionOffset.json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    #[serde(default)]
    half_offset: u64,
    #[serde(default)]
    op_offset: u64,
}

/// An unresolved transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingHalf {
    /// CommitLog offset of its latest half record.
    commitlog_offset: u64,
    /// Checks sent so far.
    check_times: u32,
    /// When it is checked next.
    next_check_ms: u64,
}

/// The in-memory view of the half and op queues.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    /// Prepared offset → unresolved transaction.
    pending: BTreeMap<u64, PendingHalf>,
    /// Prepared offsets at or above the progress's half offset that are resolved, with the op
    /// queue offset of the (first) op record resolving them.
    resolved: BTreeMap<u64, u64>,
    /// What the file holds.
    persisted: Progress,
    /// Progress to write once the CommitLog is durable up to the offset given.
    snapshot: Option<(Progress, CommitLogOffset)>,
    next_persist_ms: u64,
    /// Earliest `next_check_ms` of `pending`.
    next_check_ms: Option<u64>,
    /// Round-robin position among a group's producers.
    next_producer: u64,
}

impl Transactions {
    /// Reads the persisted progress (zero when the file does not exist).
    pub(super) fn load<S: SegmentStorage>(storage: &S, now_ms: u64) -> Result<Self, BrokerError> {
        let persisted = super::load_json_config::<Progress, S>(storage, TRANSACTION_OFFSET_PATH)?
            .unwrap_or_default();
        Ok(Self {
            persisted,
            next_persist_ms: now_ms + TRANSACTION_OFFSET_PERSIST_INTERVAL_MS,
            ..Self::default()
        })
    }

    fn refresh_next_check(&mut self) {
        self.next_check_ms = self.pending.values().map(|p| p.next_check_ms).min();
    }

    fn resolve(&mut self, prepared: u64, op_offset: u64) {
        self.pending.remove(&prepared);
        self.resolved.entry(prepared).or_insert(op_offset);
        self.refresh_next_check();
    }

    /// Whether `prepared` still waits for an answer.
    fn is_pending(&self, prepared: u64) -> bool {
        self.pending.contains_key(&prepared)
    }
}

/// The prepared offset a half record stands for: its own queue offset, or the one it copies.
fn prepared_offset_of(record: &MessageRecord) -> u64 {
    record
        .properties
        .get(tx_keys::PREPARED_QUEUE_OFFSET)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(record.queue_offset.max(0) as u64)
}

/// The prepared offsets an op record resolves (decimal, comma-separated as 5.x batches them).
fn op_offsets(body: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(body)
        .split(',')
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .collect()
}

/// When a half record first stored at `stored_ms` is first checked.
fn first_check_ms(config: &TransactionConfig, record: &MessageRecord, stored_ms: u64) -> u64 {
    let immunity_ms = record
        .properties
        .get(tx_keys::CHECK_IMMUNITY_TIME_IN_SECONDS)
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| s.saturating_mul(1_000))
        .unwrap_or(config.timeout_ms);
    stored_ms.saturating_add(immunity_ms)
}

impl<S: SegmentStorage> Broker<S> {
    fn tx_config(&self) -> &TransactionConfig {
        &self.config.transaction
    }

    fn tx_store_host(&self) -> SocketAddr {
        SocketAddr::new(self.config.broker_ip1, self.config.listen_port)
    }

    /// Creates a one-queue system topic the first time it is needed (as Java does).
    fn ensure_tx_topic(&mut self, now_ms: u64, topic: &str) {
        if !self.topics.topics.contains_key(topic) {
            let mut config = TopicConfig::new(topic, 1);
            config.perm = perm::READ_WRITE;
            self.put_topic(now_ms, config);
        }
    }

    /// Rebuilds the unresolved transactions from the half and op queues (see the module docs).
    pub(super) fn init_transactions(&mut self, now_ms: u64) -> Result<(), BrokerError> {
        let clamp = |offset: u64, min: u64, max: u64| offset.clamp(min, max.max(min));
        let half_min = self.store.min_offset(TRANS_HALF_TOPIC, 0).0;
        let half_max = self.store.max_offset(TRANS_HALF_TOPIC, 0).0;
        let op_min = self.store.min_offset(TRANS_OP_HALF_TOPIC, 0).0;
        let op_max = self.store.max_offset(TRANS_OP_HALF_TOPIC, 0).0;
        // After a crash the file may be ahead of what recovery kept; retention may have removed
        // what it points at.
        let half_from = clamp(self.transactions.persisted.half_offset, half_min, half_max);
        let op_from = clamp(self.transactions.persisted.op_offset, op_min, op_max);
        let config = self.tx_config().clone();
        let mut pending: BTreeMap<u64, PendingHalf> = BTreeMap::new();
        for record in self.read_queue(TRANS_HALF_TOPIC, half_from, half_max)? {
            let prepared = prepared_offset_of(&record);
            if prepared < half_from {
                continue;
            }
            let stored_ms = record.store_timestamp_ms.max(0) as u64;
            let check_times: u32 = record
                .properties
                .get(tx_keys::CHECK_TIMES)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let next_check_ms = if check_times == 0 {
                first_check_ms(&config, &record, stored_ms)
            } else {
                stored_ms.saturating_add(config.check_interval_ms)
            };
            pending.insert(
                prepared,
                PendingHalf {
                    commitlog_offset: record.physical_offset.max(0) as u64,
                    check_times,
                    next_check_ms,
                },
            );
        }
        let mut resolved = BTreeMap::new();
        for record in self.read_queue(TRANS_OP_HALF_TOPIC, op_from, op_max)? {
            for prepared in op_offsets(&record.body) {
                if prepared >= half_from {
                    pending.remove(&prepared);
                    resolved
                        .entry(prepared)
                        .or_insert(record.queue_offset.max(0) as u64);
                }
            }
        }
        let tx = &mut self.transactions;
        tx.pending = pending;
        tx.resolved = resolved;
        tx.refresh_next_check();
        let _ = now_ms;
        Ok(())
    }

    /// Lowers the persisted progress to the recovered max of the half and op queues and writes
    /// it at once when it was ahead (a power loss took records it counted). Left ahead, a crash
    /// before the next period would make the next start skip the half messages stored at those
    /// offsets since this one. Lowering keeps the file's promise: op records resolving the lost
    /// halves came after them in the CommitLog and are lost too.
    pub(super) fn clamp_transaction_progress_to_recovered_queues(
        &mut self,
    ) -> Result<(), BrokerError> {
        let persisted = self.transactions.persisted;
        let clamped = Progress {
            half_offset: persisted
                .half_offset
                .min(self.store.max_offset(TRANS_HALF_TOPIC, 0).0),
            op_offset: persisted
                .op_offset
                .min(self.store.max_offset(TRANS_OP_HALF_TOPIC, 0).0),
        };
        if clamped == persisted {
            return Ok(());
        }
        let json = serde_json::to_vec(&clamped).map_err(|e| BrokerError::CorruptConfig {
            path: TRANSACTION_OFFSET_PATH.to_owned(),
            reason: e.to_string(),
        })?;
        self.store
            .storage_mut()
            .replace(TRANSACTION_OFFSET_PATH, &json)
            .map_err(StoreError::from)?;
        self.transactions.persisted = clamped;
        Ok(())
    }

    /// Every decodable record of queue 0 of `topic` in `[from, to)`.
    fn read_queue(
        &self,
        topic: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let mut out = Vec::new();
        let mut offset = from;
        while offset < to {
            let got = self
                .store
                .get(topic, 0, QueueOffset(offset), LOAD_BATCH, &|_| true)?;
            for bytes in &got.records {
                if let Ok(record) = MessageRecord::decode(bytes, false) {
                    out.push(record);
                }
            }
            if let Some(reason) = got.damaged {
                // Rebuilding without it would forget a transaction: refuse with the reason.
                return Err(StoreError::Corrupt(reason));
            }
            if got.next_begin_offset.0 <= offset {
                break;
            }
            offset = got.next_begin_offset.0;
        }
        Ok(out)
    }

    /// Stores a half message (`TransactionalMessageBridge.parseHalfMessageInner`): the real
    /// topic and queue go into properties, the transaction bits of sysFlag are cleared, and it
    /// waits in [`TRANS_HALF_TOPIC`] queue 0, invisible to consumers. Returns where it was
    /// stored (what the send response reports).
    pub(super) fn put_half_message(
        &mut self,
        now_ms: u64,
        mut record: MessageRecord,
    ) -> Result<crate::store::PutResult, StoreError> {
        self.ensure_tx_topic(now_ms, TRANS_HALF_TOPIC);
        let real_topic = std::mem::replace(&mut record.topic, TRANS_HALF_TOPIC.to_owned());
        record.properties.insert(keys::REAL_TOPIC, real_topic);
        record
            .properties
            .insert(keys::REAL_QID, record.queue_id.to_string());
        if let Some(uniq) = record.properties.get(keys::UNIQ_KEY).map(str::to_owned) {
            record.properties.insert(tx_keys::TRANSACTION_ID, uniq);
        }
        record.queue_id = 0;
        record.sys_flag &= !sys_flag::TRANSACTION_MASK;
        let first_check = first_check_ms(self.tx_config(), &record, now_ms);
        let put = self.store.put(record)?;
        self.transactions.pending.insert(
            put.queue_offset.0,
            PendingHalf {
                commitlog_offset: put.physical_offset.0,
                check_times: 0,
                next_check_ms: first_check,
            },
        );
        self.transactions.refresh_next_check();
        Ok(put)
    }

    /// Appends an op record resolving `prepared`; returns its op queue offset.
    fn put_op_record(&mut self, now_ms: u64, prepared: u64) -> Result<u64, StoreError> {
        self.ensure_tx_topic(now_ms, TRANS_OP_HALF_TOPIC);
        let mut properties = Properties::new();
        properties.insert(keys::TAGS, OP_TAG);
        properties.insert(keys::WAIT, "false");
        let host = self.tx_store_host();
        let record = MessageRecord {
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp_ms: now_ms as i64,
            born_host: host,
            store_timestamp_ms: now_ms as i64,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: bytes::Bytes::from(prepared.to_string()),
            topic: TRANS_OP_HALF_TOPIC.to_owned(),
            properties,
        };
        Ok(self.store.put(record)?.queue_offset.0)
    }

    /// The half record at a CommitLog offset, if one is there.
    fn read_half(&self, commitlog_offset: u64) -> Option<MessageRecord> {
        let bytes = self
            .store
            .read_record(CommitLogOffset(commitlog_offset))
            .ok()??;
        MessageRecord::decode(&bytes, false)
            .ok()
            .filter(|r| r.topic == TRANS_HALF_TOPIC)
    }

    /// What the durability policy wants after internal puts.
    fn after_tx_put(&mut self) {
        match self.config.flush_disk_type {
            FlushDiskType::AsyncFlush => self.after_async_put(),
            FlushDiskType::SyncFlush => self.request_sync_if_idle(),
        }
    }

    /// END_TRANSACTION (37). Unknown (0) is ignored (the check will ask again); commit puts the
    /// message into its real topic and records the op; rollback only records the op. A
    /// transaction already resolved is answered SUCCESS without effect.
    pub(super) fn handle_end_transaction(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let h = EndTransactionRequestHeader::parse(req)?;
        let fail = |code: i32, remark: String| {
            Ok(Some(RemotingCommand::response_to(req, code, Some(remark))))
        };
        let commit = match h.commit_or_rollback {
            sys_flag::TRANSACTION_NOT_TYPE => return Ok(None),
            sys_flag::TRANSACTION_COMMIT => true,
            sys_flag::TRANSACTION_ROLLBACK => false,
            other => {
                return fail(
                    response::SYSTEM_ERROR,
                    format!("commitOrRollback {other} is none of 0, 8, 12"),
                )
            }
        };
        if let Some(reason) = &self.durability_failure {
            return fail(
                response::SERVICE_NOT_AVAILABLE,
                format!("the store cannot make messages durable ({reason})"),
            );
        }
        if let Some(refused) = self.disk_full_response(req) {
            return Ok(Some(refused));
        }
        let Ok(offset) = u64::try_from(h.commit_log_offset) else {
            return fail(
                response::SYSTEM_ERROR,
                "Find prepared transaction message failed".to_owned(),
            );
        };
        let Some(half) = self.read_half(offset) else {
            return fail(
                response::SYSTEM_ERROR,
                "Find prepared transaction message failed".to_owned(),
            );
        };
        if half.properties.get(keys::PGROUP) != Some(h.producer_group.as_str()) {
            return fail(
                response::SYSTEM_ERROR,
                "The producer group wrong".to_owned(),
            );
        }
        let prepared = prepared_offset_of(&half);
        if h.tran_state_table_offset != prepared as i64
            && h.tran_state_table_offset != half.queue_offset
        {
            return fail(
                response::SYSTEM_ERROR,
                "The transaction state table offset wrong".to_owned(),
            );
        }
        let ok = RemotingCommand::response_to(req, response::SUCCESS, None);
        if !self.transactions.is_pending(prepared) {
            // Resolved already (by the producer, a check answer, or given up).
            return Ok(Some(ok));
        }
        let real_topic = half.properties.get(keys::REAL_TOPIC).map(str::to_owned);
        if commit {
            let Some(record) = Self::committed_message(now_ms, half) else {
                return fail(
                    response::SYSTEM_ERROR,
                    "the half message names no real topic".to_owned(),
                );
            };
            let (topic, queue_id) = (record.topic.clone(), record.queue_id);
            // A committed message takes the route of any send: a delay level or a timer applies
            // from the commit on, as RocketMQ's put hooks do for the final message.
            match self.put_with_timer_routing(now_ms, record) {
                Ok(_) => {}
                Err(super::timer::TimerPutError::Rejected { code, remark }) => {
                    return fail(code, remark)
                }
                Err(super::timer::TimerPutError::Store(e)) => {
                    return Ok(Some(self.store_error_response(req, &e)))
                }
            }
            self.ensure_topic_of_delivered(now_ms, &topic, queue_id);
            self.wake_held_pulls(now_ms, &topic, queue_id);
        }
        match self.put_op_record(now_ms, prepared) {
            Ok(op_offset) => self.transactions.resolve(prepared, op_offset),
            Err(e) => {
                // A commit already stored must not be stored again by a later answer; the op is
                // written again when the half is checked after a restart.
                if commit {
                    let op_max = self.store.max_offset(TRANS_OP_HALF_TOPIC, 0).0;
                    self.transactions.resolve(prepared, op_max);
                }
                self.after_tx_put();
                return Ok(Some(self.store_error_response(req, &e)));
            }
        }
        self.after_tx_put();
        if let Some(topic) = real_topic {
            self.metrics.on_end_transaction(&topic, commit);
        }
        Ok(Some(ok))
    }

    /// The message a committed half record becomes in its real topic
    /// (`EndTransactionProcessor.endMessageTransaction`).
    fn committed_message(now_ms: u64, half: MessageRecord) -> Option<MessageRecord> {
        let topic = half.properties.get(keys::REAL_TOPIC)?.to_owned();
        let queue_id: i32 = half.properties.get(keys::REAL_QID)?.parse().ok()?;
        if queue_id < 0 || topic == TRANS_HALF_TOPIC {
            return None;
        }
        let mut properties = half.properties;
        for key in [
            keys::REAL_TOPIC,
            keys::REAL_QID,
            keys::TRAN_MSG,
            tx_keys::PREPARED_QUEUE_OFFSET,
        ] {
            properties.remove(key);
        }
        Some(MessageRecord {
            topic,
            queue_id,
            properties,
            sys_flag: (half.sys_flag & !sys_flag::TRANSACTION_MASK) | sys_flag::TRANSACTION_COMMIT,
            prepared_transaction_offset: half.physical_offset,
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp_ms: now_ms as i64,
            ..half
        })
    }

    /// Checks (or gives up) every due transaction and persists the progress when due.
    pub(super) fn transaction_tick(&mut self, now_ms: u64) {
        if self.transactions.next_check_ms.is_some_and(|t| t <= now_ms) {
            let due: Vec<u64> = self
                .transactions
                .pending
                .iter()
                .filter(|(_, p)| p.next_check_ms <= now_ms)
                .map(|(k, _)| *k)
                .collect();
            let mut wrote = false;
            for prepared in due {
                if self.durability_failure.is_some() || self.is_disk_full() {
                    self.postpone_check(prepared, now_ms + RETRY_AFTER_FAILURE_MS);
                    continue;
                }
                wrote |= self.check_one(now_ms, prepared);
            }
            self.transactions.refresh_next_check();
            if wrote {
                self.after_tx_put();
            }
        }
        if now_ms >= self.transactions.next_persist_ms {
            self.persist_transaction_progress();
            self.transactions.next_persist_ms = now_ms + TRANSACTION_OFFSET_PERSIST_INTERVAL_MS;
        }
    }

    fn postpone_check(&mut self, prepared: u64, at_ms: u64) {
        if let Some(p) = self.transactions.pending.get_mut(&prepared) {
            p.next_check_ms = at_ms;
        }
    }

    /// Sends one check, or gives the transaction up after `transactionCheckMax` checks. Returns
    /// whether anything was written.
    fn check_one(&mut self, now_ms: u64, prepared: u64) -> bool {
        let Some(state) = self.transactions.pending.get(&prepared).cloned() else {
            return false;
        };
        let Some(half) = self.read_half(state.commitlog_offset) else {
            // Removed by retention (or unreadable): nothing is left to deliver or check.
            if let Ok(op) = self.put_op_record(now_ms, prepared) {
                self.transactions.resolve(prepared, op);
                return true;
            }
            self.postpone_check(prepared, now_ms + RETRY_AFTER_FAILURE_MS);
            return false;
        };
        if state.check_times >= self.tx_config().check_max {
            return self.give_up(now_ms, prepared, half);
        }
        // The copy records the count, so a restart does not start it over.
        let mut copy = half.clone();
        copy.properties
            .insert(tx_keys::CHECK_TIMES, (state.check_times + 1).to_string());
        copy.properties
            .insert(tx_keys::PREPARED_QUEUE_OFFSET, prepared.to_string());
        copy.store_timestamp_ms = now_ms as i64;
        copy.queue_offset = 0;
        copy.physical_offset = 0;
        let put = match self.store.put(copy.clone()) {
            Ok(put) => put,
            Err(_) => {
                self.postpone_check(prepared, now_ms + RETRY_AFTER_FAILURE_MS);
                return false;
            }
        };
        let interval_ms = self.tx_config().check_interval_ms.max(1);
        if let Some(p) = self.transactions.pending.get_mut(&prepared) {
            p.commitlog_offset = put.physical_offset.0;
            p.check_times = state.check_times + 1;
            p.next_check_ms = now_ms + interval_ms;
        }
        copy.queue_offset = prepared as i64;
        copy.physical_offset = put.physical_offset.0 as i64;
        self.send_check(&copy);
        true
    }

    /// Moves a half message to [`TRANS_CHECK_MAX_TIME_TOPIC`] and records it as resolved.
    fn give_up(&mut self, now_ms: u64, prepared: u64, half: MessageRecord) -> bool {
        self.ensure_tx_topic(now_ms, TRANS_CHECK_MAX_TIME_TOPIC);
        let record = MessageRecord {
            topic: TRANS_CHECK_MAX_TIME_TOPIC.to_owned(),
            queue_id: 0,
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp_ms: now_ms as i64,
            ..half
        };
        if self.store.put(record).is_err() {
            self.postpone_check(prepared, now_ms + RETRY_AFTER_FAILURE_MS);
            return false;
        }
        match self.put_op_record(now_ms, prepared) {
            Ok(op) => self.transactions.resolve(prepared, op),
            Err(_) => {
                // Stored in the give-up topic already; not again.
                let op_max = self.store.max_offset(TRANS_OP_HALF_TOPIC, 0).0;
                self.transactions.resolve(prepared, op_max);
            }
        }
        true
    }

    /// CHECK_TRANSACTION_STATE (oneway) to the next live producer of the half's group.
    /// `half` carries the prepared offset as queue offset and the latest copy's CommitLog
    /// offset.
    fn send_check(&mut self, half: &MessageRecord) {
        let Some(group) = half.properties.get(keys::PGROUP) else {
            return;
        };
        let Some(conn) = self.pick_producer(group) else {
            return;
        };
        let Some(topic) = half.properties.get(keys::REAL_TOPIC).map(str::to_owned) else {
            return;
        };
        let queue_id: i32 = half
            .properties
            .get(keys::REAL_QID)
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        let uniq = half.properties.get(keys::UNIQ_KEY).map(str::to_owned);
        let transaction_id = half
            .properties
            .get(tx_keys::TRANSACTION_ID)
            .map(str::to_owned)
            .or_else(|| uniq.clone());
        let mut body_record = half.clone();
        body_record.topic = topic.clone();
        body_record.queue_id = queue_id;
        let mut body = BytesMut::new();
        if body_record.encode(&mut body).is_err() {
            return;
        }
        let mut command =
            RemotingCommand::request(request::CHECK_TRANSACTION_STATE).with_body(body.freeze());
        CheckTransactionStateRequestHeader {
            topic: Some(topic),
            tran_state_table_offset: half.queue_offset,
            commit_log_offset: half.physical_offset,
            msg_id: uniq,
            transaction_id,
            offset_msg_id: Some(offset_msg_id(
                self.tx_store_host(),
                half.physical_offset.max(0) as u64,
            )),
            broker_name: Some(self.config.broker_name.clone()),
        }
        .write_to(&mut command);
        command.mark_oneway();
        command.opaque = self.next_opaque();
        self.outputs.push_back(BrokerOutput::Send { conn, command });
    }

    /// The next producer connection of `group`, round-robin, so a check that went unanswered
    /// is asked of another member next time (`ProducerManager.getAvailableChannel`).
    fn pick_producer(&mut self, group: &str) -> Option<ConnId> {
        let channels = self.clients.producers.get(group)?;
        if channels.is_empty() {
            return None;
        }
        let index = (self.transactions.next_producer % channels.len() as u64) as usize;
        self.transactions.next_producer = self.transactions.next_producer.wrapping_add(1);
        channels.keys().nth(index).copied()
    }

    /// The progress as it stands (see the module docs).
    fn progress_now(&self) -> Progress {
        let tx = &self.transactions;
        let half_offset = tx
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.store.max_offset(TRANS_HALF_TOPIC, 0).0);
        let op_offset = tx
            .resolved
            .range(half_offset..)
            .map(|(_, op)| *op)
            .min()
            .unwrap_or_else(|| self.store.max_offset(TRANS_OP_HALF_TOPIC, 0).0);
        Progress {
            half_offset,
            op_offset,
        }
    }

    /// [`Self::progress_now`], forgetting resolutions it no longer needs.
    fn current_progress(&mut self) -> Progress {
        let progress = self.progress_now();
        let tx = &mut self.transactions;
        tx.resolved = tx.resolved.split_off(&progress.half_offset);
        progress
    }

    /// Writes the snapshot once the CommitLog is durable past what it depends on, then takes
    /// a new one if the progress moved.
    fn persist_transaction_progress(&mut self) {
        let durable = self.store.durable_offset();
        if let Some((progress, end)) = self.transactions.snapshot {
            if end > durable {
                return;
            }
            if progress != self.transactions.persisted {
                let Ok(json) = serde_json::to_vec(&progress) else {
                    return;
                };
                if self
                    .store
                    .storage_mut()
                    .replace(TRANSACTION_OFFSET_PATH, &json)
                    .is_err()
                {
                    // The next period tries again.
                    return;
                }
                self.transactions.persisted = progress;
            }
            self.transactions.snapshot = None;
        }
        let progress = self.current_progress();
        if progress != self.transactions.persisted {
            let written = self.store.written_offset();
            self.transactions.snapshot = Some((progress, written));
            if written <= durable {
                self.persist_transaction_progress();
            }
        }
    }

    /// A sync completed: writes the snapshot waiting for it.
    pub(super) fn transactions_synced(&mut self) {
        if self.transactions.snapshot.is_some() {
            self.persist_transaction_progress();
        }
    }

    /// Shutdown: snapshots the progress; it is written once the final sync is done.
    pub(super) fn persist_transaction_progress_at_shutdown(&mut self) {
        let progress = self.current_progress();
        if progress != self.transactions.persisted {
            self.transactions.snapshot = Some((progress, self.store.written_offset()));
        }
        self.persist_transaction_progress();
    }

    /// The next instant the transaction service needs `handle_timeout`.
    pub(super) fn transaction_deadline_ms(&self) -> Option<u64> {
        let tx = &self.transactions;
        let persist = (tx.snapshot.is_some() || self.progress_now() != tx.persisted)
            .then_some(tx.next_persist_ms);
        match (tx.next_check_ms, persist) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many transactions are unresolved.
    pub(super) fn pending_transaction_count(&self) -> u64 {
        self.transactions.pending.len() as u64
    }

    /// Unresolved transactions: (prepared offset, checks sent), in offset order.
    pub fn pending_transactions(&self) -> Vec<(u64, u32)> {
        self.transactions
            .pending
            .iter()
            .map(|(k, p)| (*k, p.check_times))
            .collect()
    }
}
