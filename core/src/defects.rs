//! Deliberate defects for proving the simulator's checkers bite.
//!
//! [`Defects`] rides in [`crate::store::StoreConfig`] (and so in the broker's config). Without
//! the cargo feature `defects` it has no way to be switched on: its fields are private, the
//! only constructor is the all-off default, and every query is a constant `false`, so a
//! production build cannot enable a defect by accident and pays nothing for the seam. With the
//! feature, the `with_*` builders turn single defects on, each a small real bug in the real
//! code:
//!
//! * `ack_before_sync`: a SYNC_FLUSH send is answered as soon as it is written, before the sync
//!   that makes it durable completes (a power loss then loses an acknowledged write);
//! * `skip_recovery_crc`: recovery accepts CommitLog records whose body CRC does not match (a
//!   flipped bit is then served to consumers);
//! * `drop_consume_queue_entry_every`: dispatch skips writing every n-th ConsumeQueue entry
//!   (the queue gets a hole, its message is never delivered);
//! * `count_recovery_reads`: recovery judges a record damaged after `READ_ATTEMPTS` failed
//!   reads, whatever they returned, and checks the checkpoint's last queue units with one read
//!   (the recovery before simulator seed 7004259: read faults that wear off one after another
//!   cut acknowledged records off);
//! * `checkpoint_skips_queue_sync`: a running broker's checkpoint is written without making its
//!   ConsumeQueue ranges durable first (what a checkpoint stream of its own could get wrong: a
//!   power loss then leaves the checkpoint vouching for queue units that never reached the
//!   disk, and recovery trusts them unread);
//! * `ack_before_slave_report`: a SYNC_MASTER answers a send as soon as it is stored on the
//!   master, without waiting for a slave's report that the slave has it (a power loss on the
//!   master then loses an acknowledged write the slave never got);
//! * `slave_hands_nothing_back`: a slave never hands back to its master the offsets consumers
//!   committed on it while the master was away (what RocketMQ's slaves do, #1094: the master
//!   keeps its older offsets, and consumers that start from them again get everything since
//!   redelivered);
//! * `revive_ignores_acks`: the POP revive brings back every message of a due checkpoint, the
//!   acknowledged ones too (a consumer that acked some of a batch gets them again);
//! * `orderly_pop_ignores_lock`: an orderly POP reads a queue whose last batch is still in
//!   flight (two consumers of a group then hold batches of one queue at once).

/// Which deliberate defects are on; all off by default and always off without the feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Defects {
    ack_before_sync: bool,
    skip_recovery_crc: bool,
    drop_consume_queue_entry_every: u64,
    count_recovery_reads: bool,
    checkpoint_skips_queue_sync: bool,
    ack_before_slave_report: bool,
    slave_hands_nothing_back: bool,
    revive_ignores_acks: bool,
    orderly_pop_ignores_lock: bool,
}

impl Defects {
    /// No defect: the only value a build without the `defects` feature can hold.
    pub const NONE: Defects = Defects {
        ack_before_sync: false,
        skip_recovery_crc: false,
        drop_consume_queue_entry_every: 0,
        count_recovery_reads: false,
        checkpoint_skips_queue_sync: false,
        ack_before_slave_report: false,
        slave_hands_nothing_back: false,
        revive_ignores_acks: false,
        orderly_pop_ignores_lock: false,
    };

    /// Answer SYNC_FLUSH sends before their sync completes.
    #[cfg(feature = "defects")]
    pub fn with_ack_before_sync(mut self, on: bool) -> Self {
        self.ack_before_sync = on;
        self
    }

    /// Let recovery accept records with a bad body CRC.
    #[cfg(feature = "defects")]
    pub fn with_skip_recovery_crc(mut self, on: bool) -> Self {
        self.skip_recovery_crc = on;
        self
    }

    /// Skip writing every `n`-th ConsumeQueue entry during dispatch (`0`: never).
    #[cfg(feature = "defects")]
    pub fn with_drop_consume_queue_entry_every(mut self, n: u64) -> Self {
        self.drop_consume_queue_entry_every = n;
        self
    }

    /// Let recovery count failed reads instead of comparing them.
    #[cfg(feature = "defects")]
    pub fn with_count_recovery_reads(mut self, on: bool) -> Self {
        self.count_recovery_reads = on;
        self
    }

    /// Let a running broker's checkpoint skip syncing its ConsumeQueue ranges.
    #[cfg(feature = "defects")]
    pub fn with_checkpoint_skips_queue_sync(mut self, on: bool) -> Self {
        self.checkpoint_skips_queue_sync = on;
        self
    }

    /// Let a SYNC_MASTER answer sends without waiting for a slave's report.
    #[cfg(feature = "defects")]
    pub fn with_ack_before_slave_report(mut self, on: bool) -> Self {
        self.ack_before_slave_report = on;
        self
    }

    /// Let a slave keep the commits made on it instead of handing them back to its master.
    #[cfg(feature = "defects")]
    pub fn with_slave_hands_nothing_back(mut self, on: bool) -> Self {
        self.slave_hands_nothing_back = on;
        self
    }

    /// Let the POP revive bring back the acked messages of a due checkpoint too.
    #[cfg(feature = "defects")]
    pub fn with_revive_ignores_acks(mut self, on: bool) -> Self {
        self.revive_ignores_acks = on;
        self
    }

    /// Let an orderly POP read a queue whose last batch is in flight.
    #[cfg(feature = "defects")]
    pub fn with_orderly_pop_ignores_lock(mut self, on: bool) -> Self {
        self.orderly_pop_ignores_lock = on;
        self
    }

    /// Whether SYNC_FLUSH sends are answered before their sync.
    #[inline]
    pub fn ack_before_sync(&self) -> bool {
        cfg!(feature = "defects") && self.ack_before_sync
    }

    /// Whether recovery skips the body CRC check.
    #[inline]
    pub fn skip_recovery_crc(&self) -> bool {
        cfg!(feature = "defects") && self.skip_recovery_crc
    }

    /// Whether dispatch drops the ConsumeQueue entry of the `n`-th dispatched message (counted
    /// from 1 per store instance).
    #[inline]
    pub fn drop_consume_queue_entry(&self, n: u64) -> bool {
        cfg!(feature = "defects")
            && self.drop_consume_queue_entry_every != 0
            && n.is_multiple_of(self.drop_consume_queue_entry_every)
    }

    /// Whether recovery counts failed reads instead of comparing them.
    #[inline]
    pub fn count_recovery_reads(&self) -> bool {
        cfg!(feature = "defects") && self.count_recovery_reads
    }

    /// Whether a running broker's checkpoint skips syncing its ConsumeQueue ranges.
    #[inline]
    pub fn checkpoint_skips_queue_sync(&self) -> bool {
        cfg!(feature = "defects") && self.checkpoint_skips_queue_sync
    }

    /// Whether a SYNC_MASTER answers sends without waiting for a slave's report.
    #[inline]
    pub fn ack_before_slave_report(&self) -> bool {
        cfg!(feature = "defects") && self.ack_before_slave_report
    }

    /// Whether a slave hands nothing back to its master.
    #[inline]
    pub fn slave_hands_nothing_back(&self) -> bool {
        cfg!(feature = "defects") && self.slave_hands_nothing_back
    }

    /// Whether the POP revive ignores acks.
    #[inline]
    pub fn revive_ignores_acks(&self) -> bool {
        cfg!(feature = "defects") && self.revive_ignores_acks
    }

    /// Whether an orderly POP ignores the queue's batch in flight.
    #[inline]
    pub fn orderly_pop_ignores_lock(&self) -> bool {
        cfg!(feature = "defects") && self.orderly_pop_ignores_lock
    }

    /// Whether any defect is on.
    pub fn any(&self) -> bool {
        self.ack_before_sync()
            || self.skip_recovery_crc()
            || self.count_recovery_reads()
            || self.checkpoint_skips_queue_sync()
            || self.ack_before_slave_report()
            || self.slave_hands_nothing_back()
            || self.revive_ignores_acks()
            || self.orderly_pop_ignores_lock()
            || (cfg!(feature = "defects") && self.drop_consume_queue_entry_every != 0)
    }
}
