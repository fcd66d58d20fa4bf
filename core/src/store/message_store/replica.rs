//! A slave's store: CommitLog bytes appended exactly where its master wrote them, then
//! dispatched into this store's own ConsumeQueues and key index.
//!
//! RocketMQ's HA stream (REPLICATION.md §1.3) carries raw CommitLog bytes cut at 32 KiB with
//! no regard for record boundaries, so a chunk may end inside a record. The bytes are written
//! at once (what a slave reports as its offset is what it has written, as RocketMQ's
//! `getMaxPhyOffset`); dispatch follows record by record and stops before a partial one:
//!
//! ```text
//!   CommitLog  |rec|rec|rec|re…          written (reported to the master)
//!                         ^ replica_dispatched: ConsumeQueues and index cover the bytes before it
//! ```
//!
//! A BLANK filler moves dispatch to the next segment. Every record is verified (CRCs, its own
//! physical offset) and must continue its queue where this store's ends: a replica that does
//! not is refused, never patched. A checkpoint never claims past `replica_dispatched`, so a
//! crash leaves the partial record as a torn tail for recovery to drop and the master to send
//! again.

use bytes::Bytes;

use super::{tags_code, CommitLogOffset, MessageStore, StoreError, ABORT_MARKER_PATH};
use crate::message::record::{MAGIC_BLANK, MAGIC_V1, MAGIC_V2};
use crate::store::commitlog::{check_record, segment_path, BLANK_FILLER_BYTES, MIN_RECORD_BYTES};
use crate::store::consume_queue::{ConsumeQueue, CqUnit};
use crate::store::segment::SegmentStorage;

/// What one [`MessageStore::append_replicated`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAppend {
    /// The CommitLog's end after the append: what the slave reports to its master.
    pub written: CommitLogOffset,
    /// ConsumeQueues and index cover everything before this.
    pub dispatched: CommitLogOffset,
    /// Records dispatched by this append.
    pub records: usize,
}

impl<S: SegmentStorage> MessageStore<S> {
    /// Appends `bytes` of the master's CommitLog starting at its offset `offset` (this store's
    /// end, or anywhere when this store holds nothing yet), then dispatches every record they
    /// complete. On an error the log is cut back to the last good record and the caller must
    /// drop the link: the replica and its master disagree.
    pub fn append_replicated(
        &mut self,
        offset: u64,
        bytes: &[u8],
    ) -> Result<ReplicaAppend, StoreError> {
        if bytes.is_empty() {
            // A heartbeat's offset is checked by the caller; nothing to store.
            return Ok(ReplicaAppend {
                written: self.commitlog.written_offset(),
                dispatched: CommitLogOffset(self.replica_dispatched),
                records: 0,
            });
        }
        if self.closed {
            self.storage.replace(ABORT_MARKER_PATH, b"")?;
            self.closed = false;
        }
        let empty_before = self.commitlog.segments().next().is_none();
        let written_before = self.commitlog.written_offset().0;
        let appended = self.commitlog.append_raw(&mut self.storage, offset, bytes);
        if empty_before {
            // A new replica starts where its master's stream does (nothing written when the
            // bytes were refused outright).
            self.replica_dispatched = self.commitlog.written_offset().0.min(offset);
        }
        let records = match appended.and_then(|()| self.dispatch_replicated()) {
            Ok(records) => records,
            Err(e) => {
                // Bytes refused outright changed nothing. Otherwise keep only what was
                // dispatched: the replica reports that offset again, and nothing it cannot
                // serve stays in its log.
                if self.commitlog.written_offset().0 != written_before {
                    self.commitlog
                        .rollback(&mut self.storage, self.replica_dispatched);
                }
                return Err(e);
            }
        };
        Ok(ReplicaAppend {
            written: self.commitlog.written_offset(),
            dispatched: CommitLogOffset(self.replica_dispatched),
            records,
        })
    }

    /// Everything before this offset is in the ConsumeQueues and the index.
    pub fn dispatched_offset(&self) -> CommitLogOffset {
        CommitLogOffset(self.replica_dispatched)
    }

    /// Dispatches the complete records between `replica_dispatched` and the written end.
    fn dispatch_replicated(&mut self) -> Result<usize, StoreError> {
        let written = self.commitlog.written_offset().0;
        let mut dispatched = 0;
        while self.replica_dispatched + BLANK_FILLER_BYTES <= written {
            let pos = self.replica_dispatched;
            let (start, len) = self
                .commitlog
                .segment_of(pos)
                .ok_or_else(|| StoreError::Corrupt(format!("no CommitLog segment holds {pos}")))?;
            let mut header = [0u8; 8];
            self.storage
                .read_at(&segment_path(start), pos - start, &mut header)?;
            let total = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let magic = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            if magic == MAGIC_BLANK {
                if total < 0 || pos + total as u64 != start + len {
                    return Err(StoreError::Corrupt(format!(
                        "replicated BLANK filler at {pos} claims {total} bytes; its segment ends \
                         at {}",
                        start + len
                    )));
                }
                if written < start + len {
                    break; // The filler's zeros are still on their way.
                }
                self.replica_dispatched = start + len;
                continue;
            }
            if (magic != MAGIC_V1 && magic != MAGIC_V2) || total < MIN_RECORD_BYTES as i32 {
                return Err(StoreError::Corrupt(format!(
                    "replicated bytes at CommitLog offset {pos} are not a record (size {total}, \
                     magic {magic:#x})"
                )));
            }
            let end = pos + total as u64;
            if end > start + len {
                return Err(StoreError::Corrupt(format!(
                    "replicated record at {pos} ({total} bytes) crosses its segment's end {}",
                    start + len
                )));
            }
            if end > written {
                break; // The rest of the record is still on its way.
            }
            let bytes = Bytes::from(self.commitlog.read(&self.storage, pos, total as u64)?);
            let record = check_record(bytes)?;
            if record.physical_offset != pos as i64 {
                return Err(StoreError::Corrupt(format!(
                    "replicated record at {pos} names CommitLog offset {}",
                    record.physical_offset
                )));
            }
            let unit = CqUnit {
                commitlog_offset: pos as i64,
                size_bytes: total,
                tags_code: tags_code(&record, &self.config.message_delay_level_ms),
            };
            let units_per_segment = self.config.consume_queue_units_per_segment;
            let queue = self
                .queues
                .entry(record.topic.clone())
                .or_default()
                .entry(record.queue_id)
                .or_insert_with(|| {
                    ConsumeQueue::new(&record.topic, record.queue_id, units_per_segment)
                });
            let queue_offset = record.queue_offset as u64;
            if !queue.append_at(&mut self.storage, queue_offset, &unit)? {
                return Err(StoreError::ReplicaQueueMismatch {
                    offset: pos,
                    topic: record.topic.clone(),
                    queue_id: record.queue_id,
                    queue_offset,
                    expected: queue.max_offset().0,
                });
            }
            self.index
                .put_record(&mut self.storage, &record, pos, total as u32);
            self.mark_cq_dirty(&record.topic, record.queue_id, queue_offset);
            self.last_store_timestamp_ms =
                self.last_store_timestamp_ms.max(record.store_timestamp_ms);
            self.replica_dispatched = end;
            dispatched += 1;
        }
        Ok(dispatched)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::message::{keys, MessageRecord, Properties};
    use crate::store::commitlog::segment_path;
    use crate::store::{
        GetStatus, MemStorage, MessageStore, SegmentStorage, StoreConfig, StoreError,
    };

    fn config() -> StoreConfig {
        StoreConfig {
            commitlog_segment_bytes: 4096,
            consume_queue_units_per_segment: 8,
            max_message_size_bytes: 1024,
            index: crate::store::index::IndexConfig {
                enabled: true,
                hash_slot_count: 64,
                max_index_count: 256,
            },
            ..StoreConfig::default()
        }
    }

    fn record(topic: &str, queue_id: i32, seq: usize) -> MessageRecord {
        let mut properties = Properties::new();
        properties.insert(
            keys::TAGS,
            if seq.is_multiple_of(2) { "even" } else { "odd" },
        );
        properties.insert(keys::KEYS, format!("key-{seq}"));
        properties.insert(keys::UNIQ_KEY, format!("UNIQ{seq:08}"));
        MessageRecord {
            queue_id,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp_ms: 1_000 + seq as i64,
            born_host: "10.0.0.1:50000".parse().unwrap(),
            store_timestamp_ms: 2_000 + seq as i64,
            store_host: "10.0.0.2:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from(vec![b'a' + (seq % 26) as u8; 50 + seq * 7 % 300]),
            topic: topic.to_owned(),
            properties,
        }
    }

    /// A master with `n` records over three queues of two topics, rolling several segments.
    fn master(n: usize) -> MessageStore<MemStorage> {
        let mut store = MessageStore::open(MemStorage::new(), config()).unwrap();
        for seq in 0..n {
            let topic = if seq.is_multiple_of(3) {
                "TopicB"
            } else {
                "TopicA"
            };
            store.put(record(topic, (seq % 2) as i32, seq)).unwrap();
        }
        store
    }

    /// The master's CommitLog bytes `[from, to)`, read segment by segment as its HA stream
    /// reads them.
    fn log_bytes(store: &MessageStore<MemStorage>, from: u64, to: u64) -> Vec<u8> {
        let segment = config().commitlog_segment_bytes;
        let mut out = Vec::new();
        let mut pos = from;
        while pos < to {
            let start = pos - pos % segment;
            let end = (start + segment).min(to);
            let mut buf = vec![0u8; (end - pos) as usize];
            store
                .storage()
                .read_at(&segment_path(start), pos - start, &mut buf)
                .unwrap();
            out.extend(buf);
            pos = end;
        }
        out
    }

    /// Every record of every queue, as pulls see them.
    fn queues(store: &MessageStore<MemStorage>) -> Vec<(String, i32, u64, u64, Vec<Bytes>)> {
        let mut out = Vec::new();
        let topics: Vec<String> = store.topics().map(str::to_owned).collect();
        for topic in topics {
            for queue_id in store.queue_ids(&topic) {
                let (min, max) = (
                    store.min_offset(&topic, queue_id).0,
                    store.max_offset(&topic, queue_id).0,
                );
                let mut records = Vec::new();
                let mut offset = store.min_offset(&topic, queue_id);
                loop {
                    let got = store.get(&topic, queue_id, offset, 32, &|_| true).unwrap();
                    if got.status != GetStatus::Found {
                        break;
                    }
                    records.extend(got.records);
                    offset = got.next_begin_offset;
                }
                out.push((topic.clone(), queue_id, min, max, records));
            }
        }
        out
    }

    /// Feeds `bytes` (the log from `start`) in chunks of the given sizes, cycling.
    fn replicate(slave: &mut MessageStore<MemStorage>, start: u64, bytes: &[u8], chunks: &[usize]) {
        let mut pos = 0;
        let mut i = 0;
        while pos < bytes.len() {
            let take = chunks[i % chunks.len()].min(bytes.len() - pos);
            let done = slave
                .append_replicated(start + pos as u64, &bytes[pos..pos + take])
                .unwrap();
            pos += take;
            i += 1;
            assert_eq!(done.written.0, start + pos as u64);
            assert!(done.dispatched <= done.written);
        }
    }

    #[test]
    fn a_replica_fed_in_any_chunks_is_byte_identical_and_serves_the_same_queues() {
        let master = master(60);
        let end = master.written_offset().0;
        assert!(
            end > 3 * config().commitlog_segment_bytes,
            "several segments and fillers"
        );
        let bytes = log_bytes(&master, 0, end);
        for chunks in [
            vec![1usize],
            vec![7, 300, 13],
            vec![32 * 1024],
            vec![91, 4096, 5],
        ] {
            let mut slave = MessageStore::open(MemStorage::new(), config()).unwrap();
            replicate(&mut slave, 0, &bytes, &chunks);
            assert_eq!(slave.written_offset().0, end);
            assert_eq!(slave.dispatched_offset().0, end, "everything dispatched");
            assert_eq!(log_bytes(&slave, 0, end), bytes, "chunks {chunks:?}");
            assert_eq!(queues(&slave), queues(&master), "chunks {chunks:?}");
            let found = slave
                .query_message("TopicA", "key-7", 10, 0, i64::MAX)
                .unwrap();
            assert_eq!(found.records.len(), 1, "the replica's own index finds keys");
        }
    }

    #[test]
    fn a_partial_record_is_not_dispatched_and_a_crash_drops_it_for_the_master_to_resend() {
        let master = master(12);
        let end = master.written_offset().0;
        let bytes = log_bytes(&master, 0, end);
        let mut slave = MessageStore::open(MemStorage::new(), config()).unwrap();
        let cut = bytes.len() - 40; // inside the last record
        let done = slave.append_replicated(0, &bytes[..cut]).unwrap();
        assert_eq!(done.written.0, cut as u64);
        let last = master.max_offset("TopicA", 1).0;
        assert!(done.dispatched.0 < cut as u64);
        // The checkpoint never claims the partial record.
        assert!(
            slave
                .checkpoint_request()
                .checkpoint
                .commitlog_durable_offset
                <= done.dispatched.0
        );
        slave.checkpoint_inline().unwrap();

        // A crash: the partial record is a torn tail; the replica resumes from its own end.
        let mut slave = MessageStore::open(slave.into_storage(), config()).unwrap();
        let resume = slave.written_offset().0;
        assert_eq!(
            resume, done.dispatched.0,
            "recovery ends the log at the last whole record"
        );
        replicate(&mut slave, resume, &bytes[resume as usize..], &[17]);
        assert_eq!(log_bytes(&slave, 0, end), bytes);
        assert_eq!(queues(&slave), queues(&master));
        assert_eq!(slave.max_offset("TopicA", 1).0, last);
    }

    #[test]
    fn a_new_replica_may_start_at_the_masters_last_segment() {
        let master = master(60);
        let end = master.written_offset().0;
        let segment = config().commitlog_segment_bytes;
        let start = end - end % segment;
        let mut slave = MessageStore::open(MemStorage::new(), config()).unwrap();
        replicate(&mut slave, start, &log_bytes(&master, start, end), &[100]);
        assert_eq!(slave.min_commitlog_offset().0, start);
        assert_eq!(slave.written_offset().0, end);
        // A queue with records in that segment starts at the first of them and ends where the
        // master's ends, holding the master's newest records.
        let replica_queues = queues(&slave);
        assert!(!replica_queues.is_empty());
        for (topic, queue_id, min, max, held) in replica_queues {
            let (_, _, _, master_max, records) = queues(&master)
                .into_iter()
                .find(|q| q.0 == topic && q.1 == queue_id)
                .unwrap();
            assert_eq!(max, master_max, "{topic}/{queue_id}");
            assert_eq!(max - min, held.len() as u64);
            assert!(!held.is_empty() && held.len() < records.len());
            assert_eq!(held[..], records[records.len() - held.len()..]);
        }
    }

    #[test]
    fn bytes_that_do_not_continue_the_replica_are_refused_and_change_nothing() {
        let master = master(10);
        let end = master.written_offset().0;
        let bytes = log_bytes(&master, 0, end);
        let mut slave = MessageStore::open(MemStorage::new(), config()).unwrap();
        slave.append_replicated(0, &bytes[..200]).unwrap();
        let before = queues(&slave);
        match slave.append_replicated(300, &bytes[300..400]) {
            Err(StoreError::ReplicaOffsetMismatch {
                offset: 300,
                written: 200,
            }) => {}
            other => panic!("a gap is refused: {other:?}"),
        }
        match slave.append_replicated(100, &bytes[100..200]) {
            Err(StoreError::ReplicaOffsetMismatch {
                offset: 100,
                written: 200,
            }) => {}
            other => panic!("a repeat is refused: {other:?}"),
        }
        assert_eq!(slave.written_offset().0, 200);
        assert_eq!(queues(&slave), before);

        // A replica with a record of its own has diverged: the master's first record does
        // not continue its queue.
        let mut diverged = MessageStore::open(MemStorage::new(), config()).unwrap();
        diverged.put(record("TopicB", 0, 99)).unwrap();
        let own_end = diverged.written_offset().0;
        let other = master.written_offset().0;
        assert!(other > own_end);
        let garbage = vec![0x5Au8; 64];
        match diverged.append_replicated(own_end, &garbage) {
            Err(StoreError::Corrupt(reason)) => {
                assert!(reason.contains("not a record"), "{reason}")
            }
            other => panic!("garbage is refused: {other:?}"),
        }
        assert_eq!(
            diverged.written_offset().0,
            own_end,
            "the garbage is cut off again"
        );
    }
}
