//! The segment-file seam: every byte the store keeps goes through [`SegmentStorage`].
//!
//! Paths are `/`-separated and relative to the store root (`commitlog/00000000000000000000`,
//! `consumequeue/TopicA/0/00000000000000000000`, `config/consumerOffsets.json`).
//! Writes are synchronous (a memcpy into an mmap in production); durability is the explicit
//! [`SegmentStorage::sync`] step, which the store never calls itself: it asks the driver.

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
    files: std::collections::BTreeMap<String, Vec<u8>>,
}
