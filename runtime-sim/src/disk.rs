//! SimDisk: every node's disk, a madsim plugin that outlives the node's processes.
//!
//! ```text
//!  broker node (owner + flusher tasks)        supervisor (nemesis, read-back)
//!      SimStorage ──lock──▶ NodeDisk { MemStorage: live bytes + durable prefix per file }
//!                                  ▲
//!  Handle::kill ──reset_node──────┘  process crash: page cache kept
//!                                    power cut (armed first): un-synced sectors dropped, kept
//!                                    or torn (core's MemStorage::power_loss), optional bit flip
//!                                    in the body of the last surviving un-synced record
//! ```
//!
//! A broker's store is a [`SimStorage`] handle onto its node's [`NodeDisk`]; the same disk is
//! handed to the broker again when the node restarts, so recovery sees exactly what survived.
//! Media faults come from the core's `MemStorage` too: a capacity limit (ENOSPC), sticky EIO on
//! writes or syncs, and bytes that read back flipped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use madsim::plugin::Simulator;
use madsim::rand::GlobalRng;
use madsim::task::NodeId;
use madsim::time::TimeHandle;
use madsim::Config;
use vostok::storage::{DriverStorage, DriverSync};
use vostok_core::message::peek_header;
use vostok_core::rng::SeededRng;
use vostok_core::store::commitlog::{check_record, store_timestamp_pos};
use vostok_core::store::retention::DiskUsage;
use vostok_core::store::segment::FaultOp;
use vostok_core::store::{MemStorage, PowerLoss, SegmentStorage, StorageError};

/// What the next kill of a node does to its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// kill -9: every written byte survives in the page cache.
    Process,
    /// Power cut: un-synced writes meet the policy; `flip` also damages one byte in the body of
    /// the last un-synced record that survived (a torn sector's garbage), which recovery must
    /// notice by its body CRC.
    Power { policy: PowerLoss, flip: bool },
}

/// One node's disk.
#[derive(Debug)]
pub struct NodeDisk {
    pub mem: MemStorage,
    /// Applied by the next `reset_node` (a kill), then back to `Process`.
    pub next_crash: CrashMode,
    /// Reported total size for the broker's disk-usage feed.
    pub total_bytes: u64,
    rng: SeededRng,
    /// Bytes that currently read back flipped, to clear them when faults heal.
    read_flips: Vec<(String, u64)>,
    /// Why the broker on this node last refused to start, until the healed phase restarts it.
    pub refused_start: Option<String>,
    /// The broker's recovery fence file as each start left it, with when it started: the
    /// read-back records the fences for the checkers.
    pub fence_log: Vec<(madsim::time::Instant, Vec<u8>)>,
}

impl NodeDisk {
    fn new(seed: u64) -> Self {
        NodeDisk {
            mem: MemStorage::new(),
            next_crash: CrashMode::Process,
            total_bytes: 1 << 30,
            rng: SeededRng::new(seed),
            read_flips: Vec::new(),
            refused_start: None,
            fence_log: Vec::new(),
        }
    }

    /// The next `reads` reads of the byte at `pos` of `path` come back XORed with `mask` (until
    /// then, or until cleared).
    pub fn flip_on_reads(&mut self, path: &str, pos: u64, mask: u8, reads: u32) {
        self.mem.flip_on_reads(path, pos, mask, reads);
        self.read_flips.push((path.to_owned(), pos));
    }

    /// Reads return the stored bytes again.
    pub fn clear_read_flips(&mut self) {
        for (path, pos) in std::mem::take(&mut self.read_flips) {
            self.mem.flip_on_reads(&path, pos, 0, 0);
        }
    }

    /// What the armed crash mode does, now (the node's processes are gone).
    fn crash(&mut self) {
        let mode = std::mem::replace(&mut self.next_crash, CrashMode::Process);
        if let CrashMode::Power { policy, flip } = mode {
            // Which bytes are un-synced, before the loss makes everything durable.
            let unsynced: Vec<(String, u64, u64)> = self
                .mem
                .paths()
                .into_iter()
                .filter_map(|p| {
                    let synced = self.mem.synced_len(&p)?;
                    let len = self.mem.contents(&p)?.len() as u64;
                    (len > synced).then_some((p, synced, len))
                })
                .collect();
            self.mem.power_loss(policy, &mut self.rng);
            if flip && policy != PowerLoss::DropUnsynced {
                self.damage_unsynced_record(&unsynced);
            }
        }
    }

    /// A torn write's garbage: one byte flipped in the body of the last un-synced CommitLog
    /// record that survived the power cut whole (the write in flight when the power went). The
    /// damage is steered into a body because that is the one part of a record only its body CRC
    /// protects: a flip in a header, topic or property string already fails the record's other
    /// checks. The un-synced tail is exactly what recovery verifies record by record (everything
    /// after the checkpoint), so a recovery that skips the CRC serves the damaged body. Without
    /// a whole un-synced record with a body, one byte of the un-synced written tail is flipped.
    fn damage_unsynced_record(&mut self, unsynced: &[(String, u64, u64)]) {
        let tails: Vec<&(String, u64, u64)> = unsynced
            .iter()
            .filter(|(p, _, _)| p.starts_with("commitlog/"))
            .collect();
        if tails.is_empty() {
            return;
        }
        let (path, from, to) = tails[self.rng.below(tails.len() as u64) as usize];
        let Some(contents) = self.mem.contents(path) else {
            return;
        };
        let to = (*to as usize).min(contents.len());
        // Walk the records from the sync point (syncs end at record boundaries).
        let mut pos = *from as usize;
        let mut last_body: Option<(usize, usize)> = None;
        while pos + 8 <= to {
            let Ok((total, _)) = peek_header(&contents[pos..pos + 8]) else {
                break;
            };
            let end = pos + total as usize;
            if total < 8 || end > to {
                break;
            }
            let Ok(record) = check_record(Bytes::copy_from_slice(&contents[pos..end])) else {
                break;
            };
            let store_host_bytes = if record.store_host.is_ipv6() { 20 } else { 8 };
            // STORETIMESTAMP, STOREHOST, RECONSUMETIMES, PREPAREDTRANSACTIONOFFSET, BODY length.
            let body_start = pos + store_timestamp_pos(record.sys_flag) + 8 + store_host_bytes + 16;
            if !record.body.is_empty() {
                last_body = Some((body_start, record.body.len()));
            }
            pos = end;
        }
        let target = match last_body {
            Some((start, len)) => Some(start as u64 + self.rng.below(len as u64)),
            None => contents[*from as usize..to]
                .iter()
                .rposition(|b| *b != 0)
                // Flip inside the written part only (zeros after it are "never written").
                .map(|last| from + self.rng.below(last as u64 + 1)),
        };
        if let Some(at) = target {
            let bit = self.rng.below(8) as u8;
            let _ = self.mem.flip_bit(path, at, bit);
        }
    }
}

/// The plugin: one [`NodeDisk`] per node, created on first use.
pub struct SimDisk {
    disks: Mutex<BTreeMap<NodeId, Arc<Mutex<NodeDisk>>>>,
    seed: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Simulator for SimDisk {
    fn new(rand: &GlobalRng, _time: &TimeHandle, _config: &Config) -> Self {
        let mut rand = rand.clone();
        SimDisk {
            disks: Mutex::new(BTreeMap::new()),
            seed: madsim::rand::RngCore::next_u64(&mut rand),
        }
    }

    fn reset_node(&self, id: NodeId) {
        let disk = lock(&self.disks).get(&id).cloned();
        if let Some(disk) = disk {
            lock(&disk).crash();
        }
    }
}

impl SimDisk {
    /// The disk of `node` (created empty on first use).
    pub fn disk(&self, node: NodeId) -> Arc<Mutex<NodeDisk>> {
        let mut disks = lock(&self.disks);
        let seed = self.seed ^ (disks.len() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        disks
            .entry(node)
            .or_insert_with(|| Arc::new(Mutex::new(NodeDisk::new(seed))))
            .clone()
    }

    /// Arms the next kill of `node` as `mode`.
    pub fn arm(&self, node: NodeId, mode: CrashMode) {
        lock(&self.disk(node)).next_crash = mode;
    }

    /// A storage handle for the broker running on `node`.
    pub fn storage(&self, node: NodeId) -> SimStorage {
        SimStorage {
            disk: self.disk(node),
        }
    }

    /// Runs `f` on the disk of `node`.
    pub fn with<R>(&self, node: NodeId, f: impl FnOnce(&mut NodeDisk) -> R) -> R {
        f(&mut lock(&self.disk(node)))
    }

    /// Clears every media fault of `node` (the healed phase).
    pub fn heal(&self, node: NodeId) {
        self.with(node, |d| {
            d.mem.set_capacity_bytes(None);
            for op in [
                FaultOp::Create,
                FaultOp::Write,
                FaultOp::Sync,
                FaultOp::Delete,
                FaultOp::Replace,
            ] {
                d.mem.set_fault(op, None);
            }
        });
    }
}

/// A broker's view of its node's disk.
#[derive(Clone)]
pub struct SimStorage {
    disk: Arc<Mutex<NodeDisk>>,
}

impl SimStorage {
    fn mem(&self) -> MutexGuard<'_, NodeDisk> {
        lock(&self.disk)
    }
}

impl SegmentStorage for SimStorage {
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        self.mem().mem.list(dir)
    }
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        self.mem().mem.list_dirs(dir)
    }
    fn create(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
        self.mem().mem.create(path, len)
    }
    fn len(&self, path: &str) -> Result<u64, StorageError> {
        self.mem().mem.len(path)
    }
    fn write_at(&mut self, path: &str, pos: u64, data: &[u8]) -> Result<(), StorageError> {
        self.mem().mem.write_at(path, pos, data)
    }
    fn read_at(&self, path: &str, pos: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.mem().mem.read_at(path, pos, buf)
    }
    fn truncate(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
        self.mem().mem.truncate(path, len)
    }
    fn delete(&mut self, path: &str) -> Result<(), StorageError> {
        self.mem().mem.delete(path)
    }
    fn sync(&mut self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
        self.mem().mem.sync(path, start, end)
    }
    fn replace(&mut self, path: &str, data: &[u8]) -> Result<(), StorageError> {
        self.mem().mem.replace(path, data)
    }
    fn read_all(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.mem().mem.read_all(path)
    }
}

impl DriverStorage for SimStorage {
    type Sync = SimStorage;

    fn sync_handle(&self) -> SimStorage {
        self.clone()
    }

    fn disk_usage(&self) -> Result<DiskUsage, StorageError> {
        let d = self.mem();
        let total_bytes = d.mem.capacity_bytes().unwrap_or(d.total_bytes);
        Ok(DiskUsage {
            total_bytes,
            available_bytes: total_bytes.saturating_sub(d.mem.used_bytes()),
        })
    }
}

impl DriverSync for SimStorage {
    fn sync(&self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
        let mut d = self.mem();
        match d.mem.sync(path, start, end) {
            // A file deleted (retention) or replaced since the request: nothing left to sync.
            Err(StorageError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    fn sync_all(&self) -> Result<(), StorageError> {
        let mut d = self.mem();
        for path in d.mem.paths() {
            let len = d.mem.len(&path)?;
            d.mem.sync(&path, 0, len)?;
        }
        Ok(())
    }
    fn replace(&self, path: &str, data: &[u8]) -> Result<(), StorageError> {
        self.mem().mem.replace(path, data)
    }
}
