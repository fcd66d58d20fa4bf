//! The segment-file seam: every byte the store keeps goes through [`SegmentStorage`].
//!
//! Paths are `/`-separated and relative to the store root (`commitlog/00000000000000000000`,
//! `consumequeue/TopicA/0/00000000000000000000`, `config/consumerOffsets.json`).
//! Writes are synchronous (a memcpy into an mmap in production); durability is the explicit
//! [`SegmentStorage::sync`] step, which the store never calls itself: it asks the driver.
//!
//! # The power-loss model of [`MemStorage`]
//!
//! [`MemStorage`] remembers, per file, the prefix a sync has made durable. A process crash keeps
//! every written byte (the page cache survives it): drop the store and reopen the same storage.
//! A power loss ([`MemStorage::power_loss`]) decides the fate of every un-synced byte per 512-byte
//! sector (the unit a disk writes atomically), deterministically from a [`SeededRng`]:
//!
//! ```text
//!  file:   | durable prefix (synced)   |s0      |s1      |s2      |s3   ...   (512 B sectors)
//!          |<------ always kept ------>|
//!  Drop:                               |00000000|00000000|00000000|0000 ...   all zeros again
//!  Keep:                               |written |written |written |writ ...   as written
//!  Tear:                               |written |00000000|written |0000 ...   each sector either
//! ```
//!
//! "Zeros" stands for the old content: files are created as zeros and the store writes each
//! CommitLog byte once. The first sector may be shared with the durable prefix; only its
//! un-synced part is dropped. After the loss every surviving byte is on the disk, so the durable
//! prefix becomes the whole file. Small files written by [`SegmentStorage::replace`] are durable
//! the moment it returns, and creations and deletions are durable too.
//!
//! Media faults are separate: [`MemStorage::flip_bit`] damages stored bytes and
//! [`MemStorage::flip_on_read`] makes reads of one byte come back damaged while the stored byte
//! stays intact, on every read or ([`MemStorage::flip_on_reads`]) on the next few only.

use crate::rng::SeededRng;

/// The sector size of the power-loss model: a disk writes a sector entirely or not at all.
pub const SECTOR_BYTES: u64 = 512;

/// What a power loss does to the bytes written since the last sync of each file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerLoss {
    /// Nothing un-synced reached the disk.
    DropUnsynced,
    /// Everything written reached the disk (the page cache was written back just in time).
    KeepUnsynced,
    /// Each un-synced sector independently reached the disk or not, in any order.
    TearUnsynced,
}

/// An I/O failure reported by a storage implementation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("{0}: no such file")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{path}: access [{pos}, {end}) is out of bounds (len {len})")]
    OutOfBounds {
        path: String,
        pos: u64,
        end: u64,
        len: u64,
    },
    #[error("no space left on device")]
    NoSpace,
    #[error("I/O error: {0}")]
    Io(String),
}

pub trait SegmentStorage {
    /// File names (not paths) directly under `dir`, sorted; empty when `dir` does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError>;
    /// Sub-directory names directly under `dir`, sorted; empty when `dir` does not exist.
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError>;
    /// Creates `path` (and its parent directories) as `len` zero bytes.
    fn create(&mut self, path: &str, len: u64) -> Result<(), StorageError>;
    fn len(&self, path: &str) -> Result<u64, StorageError>;
    fn write_at(&mut self, path: &str, pos: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Fills `buf` from `pos`; the whole range must lie inside the file.
    fn read_at(&self, path: &str, pos: u64, buf: &mut [u8]) -> Result<(), StorageError>;
    fn truncate(&mut self, path: &str, len: u64) -> Result<(), StorageError>;
    fn delete(&mut self, path: &str) -> Result<(), StorageError>;
    /// Makes `[start, end)` of `path` durable.
    fn sync(&mut self, path: &str, start: u64, end: u64) -> Result<(), StorageError>;
    /// Replaces a small whole file atomically and durably (write aside, sync, rename): config and
    /// offset tables.
    fn replace(&mut self, path: &str, data: &[u8]) -> Result<(), StorageError>;
    /// A small whole file, `None` when absent.
    fn read_all(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError>;
}

/// Segment files in memory: tests, the playground and fuzzing.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    files: std::collections::BTreeMap<String, MemFile>,
    /// Injected disk-full and I/O failures (see [`MemFaults`]).
    faults: MemFaults,
    /// Read faults: (path, byte position) → XOR mask applied to that byte on reads.
    read_flips: std::collections::BTreeMap<(String, u64), ReadFlip>,
}

/// One read fault: the mask, and how many more reads it damages (`u32::MAX`: every read). The
/// count is atomic because reads take `&self`.
#[derive(Debug)]
struct ReadFlip {
    mask: u8,
    reads_left: std::sync::atomic::AtomicU32,
}

impl Clone for ReadFlip {
    fn clone(&self) -> Self {
        ReadFlip {
            mask: self.mask,
            reads_left: std::sync::atomic::AtomicU32::new(
                self.reads_left.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }
}

/// The operations a [`MemStorage`] fault can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultOp {
    Create,
    Write,
    Sync,
    Delete,
    Replace,
}

/// Fault injection for [`MemStorage`]: a capacity limit and sticky per-operation errors.
///
/// The capacity models a disk that reserves a file's space when the file is created (as the
/// native storage does with `fallocate`): creating or growing a file past the capacity fails
/// with [`StorageError::NoSpace`], while writes inside an existing file never do. An injected
/// error stays until cleared, so "the disk is full" lasts until a test frees space.
#[derive(Clone, Debug, Default)]
struct MemFaults {
    capacity_bytes: Option<u64>,
    errors: std::collections::BTreeMap<FaultOp, StorageError>,
}

/// One in-memory file: its bytes and how many leading bytes a sync has made durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct MemFile {
    data: Vec<u8>,
    /// Length of the durable prefix. Kept so a power-loss model can later drop everything past
    /// it; a sync that leaves a gap after this prefix does not extend it.
    synced_len_bytes: u64,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every file path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// The durable prefix of `path` (`None` when the file does not exist).
    pub fn synced_len(&self, path: &str) -> Option<u64> {
        self.files.get(path).map(|f| f.synced_len_bytes)
    }

    /// Limits the total size of all files (`None`: unlimited). Creating or growing a file past it
    /// fails with [`StorageError::NoSpace`]; files already there are kept.
    pub fn set_capacity_bytes(&mut self, capacity_bytes: Option<u64>) {
        self.faults.capacity_bytes = capacity_bytes;
    }

    /// The capacity set with [`MemStorage::set_capacity_bytes`].
    pub fn capacity_bytes(&self) -> Option<u64> {
        self.faults.capacity_bytes
    }

    /// Total size of all files.
    pub fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }

    /// Makes every later `op` fail with `error` (`None` clears it), without changing anything.
    pub fn set_fault(&mut self, op: FaultOp, error: Option<StorageError>) {
        match error {
            Some(e) => self.faults.errors.insert(op, e),
            None => self.faults.errors.remove(&op),
        };
    }

    fn check_fault(&self, op: FaultOp) -> Result<(), StorageError> {
        match self.faults.errors.get(&op) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Fails with `NoSpace` when replacing `old_len` bytes by `new_len` would pass the capacity.
    fn check_space(&self, old_len: u64, new_len: u64) -> Result<(), StorageError> {
        match self.faults.capacity_bytes {
            Some(cap) if new_len > old_len && self.used_bytes() - old_len + new_len > cap => {
                Err(StorageError::NoSpace)
            }
            _ => Ok(()),
        }
    }

    /// The whole content of `path`, for tests and inspection.
    pub fn contents(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|f| f.data.as_slice())
    }

    /// Simulates a power loss: every file keeps its durable prefix, and its un-synced bytes are
    /// dropped, kept or torn at [`SECTOR_BYTES`] granularity as `mode` says (see the module
    /// doc). Afterwards everything left is durable.
    pub fn power_loss(&mut self, mode: PowerLoss, rng: &mut SeededRng) {
        for file in self.files.values_mut() {
            let len = file.data.len() as u64;
            let mut pos = file.synced_len_bytes.min(len);
            while pos < len {
                let sector_end = ((pos / SECTOR_BYTES + 1) * SECTOR_BYTES).min(len);
                let keep = match mode {
                    PowerLoss::DropUnsynced => false,
                    PowerLoss::KeepUnsynced => true,
                    PowerLoss::TearUnsynced => rng.below(2) == 0,
                };
                if !keep {
                    file.data[pos as usize..sector_end as usize].fill(0);
                }
                pos = sector_end;
            }
            file.synced_len_bytes = len;
        }
        self.read_flips.clear();
    }

    /// Flips bit `bit` (0-7) of the stored byte at `pos` of `path`: media corruption.
    pub fn flip_bit(&mut self, path: &str, pos: u64, bit: u8) -> Result<(), StorageError> {
        let file = self.file_mut(path)?;
        let len = file.data.len() as u64;
        let (start, _) = check_bounds(path, pos, 1, len)?;
        file.data[start as usize] ^= 1 << (bit & 7);
        Ok(())
    }

    /// From now on every read of the byte at `pos` of `path` returns it XORed with `mask`, while
    /// the stored byte stays intact (a flaky cable or controller). Cleared by a power loss.
    pub fn flip_on_read(&mut self, path: &str, pos: u64, mask: u8) {
        self.flip_on_reads(path, pos, mask, u32::MAX);
    }

    /// Only the next `reads` reads covering the byte at `pos` of `path` return it XORed with
    /// `mask` (a transient fault: reading again gives the stored byte).
    pub fn flip_on_reads(&mut self, path: &str, pos: u64, mask: u8, reads: u32) {
        let key = (path.to_string(), pos);
        if mask == 0 || reads == 0 {
            self.read_flips.remove(&key);
            return;
        }
        self.read_flips.insert(
            key,
            ReadFlip {
                mask,
                reads_left: std::sync::atomic::AtomicU32::new(reads),
            },
        );
    }

    fn file(&self, path: &str) -> Result<&MemFile, StorageError> {
        self.files
            .get(path)
            .ok_or_else(|| StorageError::NotFound(path.to_string()))
    }

    fn file_mut(&mut self, path: &str) -> Result<&mut MemFile, StorageError> {
        self.files
            .get_mut(path)
            .ok_or_else(|| StorageError::NotFound(path.to_string()))
    }

    /// The entries directly under `dir`: `(name, is_dir)`, sorted, directories deduplicated.
    fn entries(&self, dir: &str) -> std::collections::BTreeSet<(String, bool)> {
        let dir = dir.trim_end_matches('/');
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out = std::collections::BTreeSet::new();
        for path in self.files.range(prefix.clone()..).map(|(p, _)| p) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((sub, _)) => out.insert((sub.to_string(), true)),
                None => out.insert((rest.to_string(), false)),
            };
        }
        out
    }
}

/// Checks that `[pos, pos + n)` lies inside a file of `len` bytes.
fn check_bounds(path: &str, pos: u64, n: usize, len: u64) -> Result<(u64, u64), StorageError> {
    let end = pos.checked_add(n as u64);
    match end {
        Some(end) if end <= len => Ok((pos, end)),
        _ => Err(StorageError::OutOfBounds {
            path: path.to_string(),
            pos,
            end: end.unwrap_or(u64::MAX),
            len,
        }),
    }
}

impl SegmentStorage for MemStorage {
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .entries(dir)
            .into_iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(name, _)| name)
            .collect())
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .entries(dir)
            .into_iter()
            .filter(|(_, is_dir)| *is_dir)
            .map(|(name, _)| name)
            .collect())
    }

    fn create(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
        self.check_fault(FaultOp::Create)?;
        if self.files.contains_key(path) {
            return Err(StorageError::AlreadyExists(path.to_string()));
        }
        self.check_space(0, len)?;
        let len = usize::try_from(len).map_err(|_| StorageError::NoSpace)?;
        self.files.insert(
            path.to_string(),
            MemFile {
                data: vec![0; len],
                synced_len_bytes: 0,
            },
        );
        Ok(())
    }

    fn len(&self, path: &str) -> Result<u64, StorageError> {
        Ok(self.file(path)?.data.len() as u64)
    }

    fn write_at(&mut self, path: &str, pos: u64, data: &[u8]) -> Result<(), StorageError> {
        self.check_fault(FaultOp::Write)?;
        let file = self.file_mut(path)?;
        let (start, end) = check_bounds(path, pos, data.len(), file.data.len() as u64)?;
        file.data[start as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    fn read_at(&self, path: &str, pos: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let file = self.file(path)?;
        let (start, end) = check_bounds(path, pos, buf.len(), file.data.len() as u64)?;
        buf.copy_from_slice(&file.data[start as usize..end as usize]);
        if !self.read_flips.is_empty() {
            let range = (path.to_string(), start)..(path.to_string(), end);
            for ((_, at), flip) in self.read_flips.range(range) {
                let left = flip.reads_left.load(std::sync::atomic::Ordering::Relaxed);
                if left == 0 {
                    continue;
                }
                if left != u32::MAX {
                    flip.reads_left
                        .store(left - 1, std::sync::atomic::Ordering::Relaxed);
                }
                buf[(at - start) as usize] ^= flip.mask;
            }
        }
        Ok(())
    }

    fn truncate(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
        let old_len = self.file(path)?.data.len() as u64;
        self.check_space(old_len, len)?;
        let file = self.file_mut(path)?;
        let len_usize = usize::try_from(len).map_err(|_| StorageError::NoSpace)?;
        file.data.resize(len_usize, 0);
        file.synced_len_bytes = file.synced_len_bytes.min(len);
        Ok(())
    }

    fn delete(&mut self, path: &str) -> Result<(), StorageError> {
        self.check_fault(FaultOp::Delete)?;
        self.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| StorageError::NotFound(path.to_string()))
    }

    fn sync(&mut self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
        self.check_fault(FaultOp::Sync)?;
        let file = self.file_mut(path)?;
        let len = file.data.len() as u64;
        if start > end || end > len {
            return Err(StorageError::OutOfBounds {
                path: path.to_string(),
                pos: start,
                end,
                len,
            });
        }
        if start <= file.synced_len_bytes {
            file.synced_len_bytes = file.synced_len_bytes.max(end);
        }
        Ok(())
    }

    fn replace(&mut self, path: &str, data: &[u8]) -> Result<(), StorageError> {
        self.check_fault(FaultOp::Replace)?;
        let old_len = self.files.get(path).map_or(0, |f| f.data.len() as u64);
        self.check_space(old_len, data.len() as u64)?;
        self.files.insert(
            path.to_string(),
            MemFile {
                data: data.to_vec(),
                synced_len_bytes: data.len() as u64,
            },
        );
        Ok(())
    }

    fn read_all(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.files.get(path).map(|f| f.data.clone()))
    }
}
