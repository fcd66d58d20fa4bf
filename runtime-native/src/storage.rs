//! [`MmapStorage`]: the production [`SegmentStorage`], segment files written with `pwrite` and
//! read through a shared mapping (memmap2).
//!
//! ```text
//!  owner task (broker)                               flusher thread
//!  MmapStorage ──write_at: pwrite──▶ [ page cache of commitlog/000…000 ] ◀──msync── SyncHandle
//!        └──────read_at: memcpy◀──── [ its mapping ]
//!        └──── segments: Arc<Mutex<BTreeMap<path, Arc<Segment>>>> ─────────────────────┘
//! ```
//!
//! * A segment is created at its full length with its blocks reserved (`fallocate`, or zeros
//!   written where the file system cannot), then mapped shared. Reads are memcpys out of the
//!   map; writes are `pwrite`s into the same page cache, which the map shows at once.
//! * Why writes do not go through the map: a store through a mapping dirties the whole folio it
//!   lands in, and the kernel now caches files in large folios (64 KiB to 2 MiB on ext4 since
//!   Linux 6.x). A SYNC_FLUSH group commit of a few KiB then wrote back whole folios: measured
//!   on ext4 here, one producer after a 16-producer burst wrote 69 KiB to 1 MiB to the disk per
//!   1 KiB message (`/proc/<pid>/io`), against 8 KiB fresh, and each writeback also cleaned the
//!   mapping's page-table entries with a TLB shootdown to every core. A `pwrite` dirties only
//!   the blocks it touches, so a commit writes what it added, fresh or not.
//! * Durability is separate: [`SegmentStorage::sync`] msyncs a range on the calling thread (the
//!   range's dirty pages, then the device cache), and a [`SyncHandle`] (cloneable, `Send`) does
//!   the same from a flusher thread so the broker never blocks on the disk.
//! * Small whole files (`replace`) are written aside, fsynced, renamed over the old one, and the
//!   directory is fsynced.
//!
//! Paths are the core's `/`-separated relative paths; absolute paths and `..` are refused.
//!
//! Full disks: a write into a page of a sparse file on a full disk fails (through a mapping it
//! would raise SIGBUS, which no error value can report; RocketMQ's sparse mapped files have that
//! exposure). Reserving every block when the segment is created moves the failure to `create`,
//! as `ENOSPC` → [`StorageError::NoSpace`], before anything is written into the file; a partly
//! created file is removed again so the next attempt starts clean. The price is that a segment
//! takes its full size on disk from its creation (1 GiB for a default CommitLog segment).
//!
//! [`disk_usage`] measures the file system (statvfs) for the broker's disk-usage feed.

#[cfg(not(madsim))]
pub use mmap::*;

use vostok_core::store::retention::DiskUsage;
use vostok_core::store::{SegmentStorage, StorageError, SyncRequest};

/// What the broker's driver needs of a storage beyond the core's seam: a handle its flusher makes
/// ranges durable with while the owner keeps writing, and the disk's usage. [`MmapStorage`] in
/// production; the simulator's SimDisk under `--cfg madsim`.
pub trait DriverStorage: SegmentStorage + Send + 'static {
    type Sync: DriverSync;

    /// A handle for the flusher.
    fn sync_handle(&self) -> Self::Sync;
    /// Size and free space of the disk holding the store.
    fn disk_usage(&self) -> Result<DiskUsage, StorageError>;

    /// Where an HA transfer of `[pos, pos + len)` of `path` reads from: by default the bytes
    /// themselves; a storage with files hands over the file so the kernel sends it.
    fn transfer_source(
        &self,
        path: &str,
        pos: u64,
        len: u64,
    ) -> Result<crate::ha::TransferSource, StorageError> {
        let mut bytes = vec![0u8; len as usize];
        self.read_at(path, pos, &mut bytes)?;
        Ok(crate::ha::TransferSource::Bytes(bytes))
    }
}

/// Makes ranges of a [`DriverStorage`] durable from the flusher.
pub trait DriverSync: Clone + Send + 'static {
    /// Makes `[start, end)` of `path` durable.
    fn sync(&self, path: &str, start: u64, end: u64) -> Result<(), StorageError>;

    /// Makes every range of `request` durable.
    fn sync_request(&self, request: &SyncRequest) -> Result<(), StorageError> {
        for range in &request.ranges {
            self.sync(&range.path, range.start, range.end)?;
        }
        Ok(())
    }

    /// Makes every file durable in full (the last step of a shutdown).
    fn sync_all(&self) -> Result<(), StorageError>;

    /// Replaces the small whole file `path` with `data`, atomically and durably (as
    /// [`SegmentStorage::replace`]); the checkpoint thread writes the checkpoint file with it.
    fn replace(&self, path: &str, data: &[u8]) -> Result<(), StorageError>;
}

#[cfg(not(madsim))]
mod mmap {
    use std::collections::BTreeMap;
    use std::fs::{File, OpenOptions};
    use std::io::{self, Write};
    use std::os::unix::fs::FileExt;
    use std::path::{Component, Path, PathBuf};
    use std::sync::{Arc, Mutex, MutexGuard};

    use memmap2::{MmapOptions, MmapRaw};
    use vostok_core::store::{SegmentStorage, StorageError, SyncRequest};

    use super::{DriverStorage, DriverSync};

    /// The store's lock file, directly under the root (RocketMQ's name).
    const LOCK_FILE: &str = "lock";

    /// Suffix of the file `replace` writes before renaming it into place; never listed.
    const TMP_SUFFIX: &str = ".vostok-tmp";

    /// One mapped segment file.
    struct Segment {
        /// `None` for an empty file (a zero-length mapping is not allowed).
        map: Option<MmapRaw>,
        len: u64,
        /// Kept open for `fdatasync` of metadata after truncation.
        file: File,
    }

    type SegmentTable = Arc<Mutex<BTreeMap<String, Arc<Segment>>>>;

    /// Segment files under one root directory, mapped into memory.
    ///
    /// Deliberately not `Clone`: it is the only writer of its files, so its reads (unsafe memcpys
    /// out of the maps in [`SegmentStorage::read_at`]) never race with a write.
    pub struct MmapStorage {
        root: PathBuf,
        segments: SegmentTable,
        /// `<root>/lock`, held with an exclusive `flock` for as long as this storage lives: two
        /// processes mapping the same segments would corrupt them.
        _lock: File,
    }

    /// Makes ranges of an [`MmapStorage`]'s files durable from another thread.
    #[derive(Clone)]
    pub struct SyncHandle {
        root: PathBuf,
        segments: SegmentTable,
    }

    fn lock(table: &SegmentTable) -> MutexGuard<'_, BTreeMap<String, Arc<Segment>>> {
        // A panic while holding the lock leaves the table itself consistent (every mutation is a
        // single insert or remove), so a poisoned lock is still usable.
        table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Maps an I/O error: ENOSPC (and EDQUOT) to `NoSpace`, a missing file to `NotFound`, the rest
    /// to `Io` with the path for context.
    fn map_err(path: &str, err: io::Error) -> StorageError {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        match (err.kind(), err.raw_os_error()) {
            (io::ErrorKind::StorageFull, _) => StorageError::NoSpace,
            (_, Some(ENOSPC)) | (_, Some(EDQUOT)) => StorageError::NoSpace,
            (io::ErrorKind::NotFound, _) => StorageError::NotFound(path.to_owned()),
            (io::ErrorKind::AlreadyExists, _) => StorageError::AlreadyExists(path.to_owned()),
            _ => StorageError::Io(format!("{path}: {err}")),
        }
    }

    fn to_usize(path: &str, v: u64) -> Result<usize, StorageError> {
        usize::try_from(v).map_err(|_| StorageError::Io(format!("{path}: offset {v} too large")))
    }

    impl Segment {
        fn open(path: &str, full: &Path) -> Result<Self, StorageError> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(full)
                .map_err(|e| map_err(path, e))?;
            Self::map(path, file)
        }

        fn map(path: &str, file: File) -> Result<Self, StorageError> {
            let len = file.metadata().map_err(|e| map_err(path, e))?.len();
            let map = if len == 0 {
                None
            } else {
                let map_len = to_usize(path, len)?;
                Some(
                    MmapOptions::new()
                        .len(map_len)
                        .map_raw(&file)
                        .map_err(|e| map_err(path, e))?,
                )
            };
            Ok(Self { map, len, file })
        }

        fn check(&self, path: &str, pos: u64, n: usize) -> Result<(usize, usize), StorageError> {
            let end = pos.checked_add(n as u64);
            match end {
                Some(end) if end <= self.len => Ok((to_usize(path, pos)?, n)),
                _ => Err(StorageError::OutOfBounds {
                    path: path.to_owned(),
                    pos,
                    end: end.unwrap_or(u64::MAX),
                    len: self.len,
                }),
            }
        }

        fn flush(&self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
            let end = end.min(self.len);
            if start >= end {
                return Ok(());
            }
            match &self.map {
                Some(map) => {
                    let off = to_usize(path, start)?;
                    let n = to_usize(path, end - start)?;
                    map.flush_range(off, n).map_err(|e| map_err(path, e))
                }
                None => Ok(()),
            }
        }
    }

    /// Checks that `path` is relative and stays under the root, and joins it.
    fn resolve(root: &Path, path: &str) -> Result<PathBuf, StorageError> {
        let rel = Path::new(path);
        let ok = !path.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !ok {
            return Err(StorageError::Io(format!(
                "{path}: not a relative store path"
            )));
        }
        Ok(root.join(rel))
    }

    /// Gives a new, empty `file` the length `len` with every block allocated, so writes through a
    /// mapping never need space the disk may not have. `fallocate` where the file system supports
    /// it, otherwise zeros written (which allocate as well).
    fn reserve(file: &File, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
        const CHUNK_BYTES: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK_BYTES as usize];
        let mut writer = io::BufWriter::new(file);
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK_BYTES) as usize;
            writer.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        writer.flush()
    }

    /// Size and free space of the file system holding `path` (statvfs), counted as RocketMQ's
    /// `UtilAll.getDiskPartitionSpaceUsedPercent` counts them, and `df` too: available is what
    /// an unprivileged writer may use (Java's `getUsableSpace`), and the total is what is used
    /// plus that, leaving out the blocks reserved for root. Measured against all blocks, a file
    /// system with a large reserve would look fuller than RocketMQ's broker sees it, and reach
    /// `diskMaxUsedSpaceRatio` first.
    pub fn disk_usage(
        path: &Path,
    ) -> Result<vostok_core::store::retention::DiskUsage, StorageError> {
        let shown = path.display().to_string();
        let st = rustix::fs::statvfs(path).map_err(|e| map_err(&shown, e.into()))?;
        let used_blocks = st.f_blocks.saturating_sub(st.f_bfree);
        Ok(vostok_core::store::retention::DiskUsage {
            total_bytes: used_blocks
                .saturating_add(st.f_bavail)
                .saturating_mul(st.f_frsize),
            available_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        })
    }

    fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    impl MmapStorage {
        /// Opens (creating it if needed) a store rooted at `root` and locks it (`<root>/lock`), so a
        /// second broker on the same directory fails to start instead of corrupting it. Files are
        /// mapped lazily on first access.
        pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
            let root = root.into();
            let shown = root.display().to_string();
            std::fs::create_dir_all(&root).map_err(|e| map_err(&shown, e))?;
            let lock_path = root.join(LOCK_FILE);
            let lock = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .map_err(|e| map_err(&lock_path.display().to_string(), e))?;
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| {
                    StorageError::Io(format!(
                        "{shown}: the store is in use by another broker ({e})"
                    ))
                })?;
            Ok(Self {
                root,
                segments: Arc::default(),
                _lock: lock,
            })
        }

        pub fn root(&self) -> &Path {
            &self.root
        }

        /// A handle a flusher thread uses to make ranges durable while this storage keeps writing.
        pub fn sync_handle(&self) -> SyncHandle {
            SyncHandle {
                root: self.root.clone(),
                segments: Arc::clone(&self.segments),
            }
        }

        /// The mapped segment for `path`, mapping it on first use.
        fn segment(&self, path: &str) -> Result<Arc<Segment>, StorageError> {
            let mut table = lock(&self.segments);
            if let Some(seg) = table.get(path) {
                return Ok(Arc::clone(seg));
            }
            let full = resolve(&self.root, path)?;
            let seg = Arc::new(Segment::open(path, &full)?);
            table.insert(path.to_owned(), Arc::clone(&seg));
            Ok(seg)
        }

        fn list_entries(&self, dir: &str, want_dirs: bool) -> Result<Vec<String>, StorageError> {
            let full = if dir.is_empty() {
                self.root.clone()
            } else {
                resolve(&self.root, dir)?
            };
            let entries = match std::fs::read_dir(&full) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(map_err(dir, e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| map_err(dir, e))?;
                let is_dir = entry.file_type().map_err(|e| map_err(dir, e))?.is_dir();
                let Ok(name) = entry.file_name().into_string() else {
                    continue; // Not a name the store wrote.
                };
                if is_dir == want_dirs && !name.ends_with(TMP_SUFFIX) {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        }
    }

    impl SegmentStorage for MmapStorage {
        fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
            self.list_entries(dir, false)
        }

        fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError> {
            self.list_entries(dir, true)
        }

        fn create(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
            let full = resolve(&self.root, path)?;
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|e| map_err(path, e))?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&full)
                .map_err(|e| map_err(path, e))?;
            if let Err(e) = reserve(&file, len) {
                drop(file);
                let _ = std::fs::remove_file(&full);
                return Err(map_err(path, e));
            }
            let seg = match Segment::map(path, file) {
                Ok(seg) => seg,
                Err(e) => {
                    let _ = std::fs::remove_file(&full);
                    return Err(e);
                }
            };
            lock(&self.segments).insert(path.to_owned(), Arc::new(seg));
            // The new directory entry must survive a crash for the data synced into it to be found.
            if let Some(parent) = full.parent() {
                sync_dir(parent).map_err(|e| map_err(path, e))?;
            }
            Ok(())
        }

        fn len(&self, path: &str) -> Result<u64, StorageError> {
            Ok(self.segment(path)?.len)
        }

        fn write_at(&mut self, path: &str, pos: u64, data: &[u8]) -> Result<(), StorageError> {
            let seg = self.segment(path)?;
            seg.check(path, pos, data.len())?;
            if data.is_empty() {
                return Ok(());
            }
            // Into the page cache the mapping shows (see the module docs for why not through it).
            seg.file
                .write_all_at(data, pos)
                .map_err(|e| map_err(path, e))
        }

        fn read_at(&self, path: &str, pos: u64, buf: &mut [u8]) -> Result<(), StorageError> {
            let seg = self.segment(path)?;
            let (off, n) = seg.check(path, pos, buf.len())?;
            if n == 0 {
                return Ok(());
            }
            let Some(map) = &seg.map else {
                unreachable!("a non-empty in-bounds range implies a mapping");
            };
            // SAFETY: the source range is inside the live mapping (checked above). Writes are
            // `pwrite`s through `&mut self` on this same storage, so none runs during this read, and
            // no Rust reference ever points into a mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(map.as_ptr().add(off), buf.as_mut_ptr(), n);
            }
            Ok(())
        }

        fn truncate(&mut self, path: &str, len: u64) -> Result<(), StorageError> {
            let full = resolve(&self.root, path)?;
            // Unmap first (a flusher may still hold the old Arc; it only msyncs it), resize, remap.
            let old = lock(&self.segments).remove(path);
            drop(old);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&full)
                .map_err(|e| map_err(path, e))?;
            file.set_len(len).map_err(|e| map_err(path, e))?;
            file.sync_all().map_err(|e| map_err(path, e))?;
            let seg = Segment::map(path, file)?;
            lock(&self.segments).insert(path.to_owned(), Arc::new(seg));
            Ok(())
        }

        fn delete(&mut self, path: &str) -> Result<(), StorageError> {
            let full = resolve(&self.root, path)?;
            lock(&self.segments).remove(path);
            std::fs::remove_file(&full).map_err(|e| map_err(path, e))?;
            if let Some(parent) = full.parent() {
                sync_dir(parent).map_err(|e| map_err(path, e))?;
            }
            Ok(())
        }

        fn sync(&mut self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
            self.sync_handle().sync(path, start, end)
        }

        fn replace(&mut self, path: &str, data: &[u8]) -> Result<(), StorageError> {
            replace_file(&self.root, &self.segments, path, data)
        }

        fn read_all(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
            let full = resolve(&self.root, path)?;
            match std::fs::read(&full) {
                Ok(data) => Ok(Some(data)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(map_err(path, e)),
            }
        }
    }

    /// Writes `data` aside, fsyncs it, renames it over `path` and fsyncs the directory.
    fn replace_file(
        root: &Path,
        segments: &SegmentTable,
        path: &str,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let full = resolve(root, path)?;
        let parent = full
            .parent()
            .ok_or_else(|| StorageError::Io(format!("{path}: no parent directory")))?
            .to_owned();
        std::fs::create_dir_all(&parent).map_err(|e| map_err(path, e))?;
        let mut tmp_name = full.clone().into_os_string();
        tmp_name.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp_name);
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &full)?;
            sync_dir(&parent)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(map_err(path, e));
        }
        // A mapped copy of the old file would now show stale bytes.
        lock(segments).remove(path);
        Ok(())
    }

    impl SyncHandle {
        /// Makes `[start, end)` of `path` durable: msync of the mapped range, or fdatasync of a file
        /// that is not mapped.
        pub fn sync(&self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
            let seg = lock(&self.segments).get(path).cloned();
            match seg {
                Some(seg) => seg.flush(path, start, end),
                None => {
                    let full = resolve(&self.root, path)?;
                    match File::open(&full) {
                        Ok(file) => file.sync_data().map_err(|e| map_err(path, e)),
                        // Deleted since the request (retention, a deleted topic's queues):
                        // nothing of it is left to make durable.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(map_err(path, e)),
                    }
                }
            }
        }

        /// Makes every range of `request` durable.
        pub fn sync_request(&self, request: &SyncRequest) -> Result<(), StorageError> {
            for range in &request.ranges {
                self.sync(&range.path, range.start, range.end)?;
            }
            Ok(())
        }

        /// Makes every mapped file durable in full (the last step of a shutdown).
        pub fn sync_all(&self) -> Result<(), StorageError> {
            let all: Vec<(String, Arc<Segment>)> = lock(&self.segments)
                .iter()
                .map(|(p, s)| (p.clone(), Arc::clone(s)))
                .collect();
            for (path, seg) in all {
                seg.flush(&path, 0, seg.len)?;
                seg.file.sync_data().map_err(|e| map_err(&path, e))?;
            }
            Ok(())
        }
    }

    impl DriverStorage for MmapStorage {
        type Sync = SyncHandle;

        fn sync_handle(&self) -> SyncHandle {
            MmapStorage::sync_handle(self)
        }

        fn disk_usage(&self) -> Result<vostok_core::store::retention::DiskUsage, StorageError> {
            disk_usage(&self.root)
        }

        /// The segment's file (a duplicated descriptor), for `sendfile`.
        fn transfer_source(
            &self,
            path: &str,
            pos: u64,
            len: u64,
        ) -> Result<crate::ha::TransferSource, StorageError> {
            let seg = self.segment(path)?;
            seg.check(path, pos, len as usize)?;
            let file = seg.file.try_clone().map_err(|e| map_err(path, e))?;
            Ok(crate::ha::TransferSource::File(file))
        }
    }

    impl DriverSync for SyncHandle {
        fn sync(&self, path: &str, start: u64, end: u64) -> Result<(), StorageError> {
            SyncHandle::sync(self, path, start, end)
        }

        fn sync_request(&self, request: &SyncRequest) -> Result<(), StorageError> {
            SyncHandle::sync_request(self, request)
        }

        fn sync_all(&self) -> Result<(), StorageError> {
            SyncHandle::sync_all(self)
        }

        fn replace(&self, path: &str, data: &[u8]) -> Result<(), StorageError> {
            replace_file(&self.root, &self.segments, path, data)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use vostok_core::store::CommitLogOffset;
        use vostok_core::store::FileRange;

        fn store() -> (tempfile::TempDir, MmapStorage) {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = MmapStorage::open(dir.path()).expect("open");
            (dir, s)
        }

        #[test]
        fn create_write_read() {
            let (dir, mut s) = store();
            s.create("commitlog/00000000000000000000", 4096).unwrap();
            assert_eq!(s.len("commitlog/00000000000000000000").unwrap(), 4096);
            let on_disk =
                std::fs::metadata(dir.path().join("commitlog/00000000000000000000")).unwrap();
            assert_eq!(on_disk.len(), 4096);
            s.write_at("commitlog/00000000000000000000", 10, b"hello")
                .unwrap();
            let mut buf = [0u8; 7];
            s.read_at("commitlog/00000000000000000000", 9, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"\0hello\0");
            assert_eq!(
                s.create("commitlog/00000000000000000000", 1),
                Err(StorageError::AlreadyExists(
                    "commitlog/00000000000000000000".into()
                ))
            );
        }

        #[test]
        fn bounds_and_missing() {
            let (_dir, mut s) = store();
            s.create("a/f", 8).unwrap();
            assert!(matches!(
                s.write_at("a/f", 5, b"abcd"),
                Err(StorageError::OutOfBounds {
                    pos: 5,
                    end: 9,
                    len: 8,
                    ..
                })
            ));
            let mut buf = [0u8; 2];
            assert!(matches!(
                s.read_at("a/f", u64::MAX, &mut buf),
                Err(StorageError::OutOfBounds { .. })
            ));
            assert_eq!(s.len("a/g"), Err(StorageError::NotFound("a/g".into())));
            assert!(s.read_at("nope", 0, &mut buf).is_err());
            assert!(s.create("../escape", 1).is_err());
            assert!(s.create("/abs", 1).is_err());
            assert_eq!(s.read_all("config/none.json"), Ok(None));
        }

        #[test]
        fn list_and_list_dirs() {
            let (_dir, mut s) = store();
            assert!(s.list("consumequeue").unwrap().is_empty());
            s.create("consumequeue/TopicB/0/00000000000000000000", 20)
                .unwrap();
            s.create("consumequeue/TopicA/1/00000000000000000000", 20)
                .unwrap();
            s.create("consumequeue/TopicA/0/00000000000000006000", 20)
                .unwrap();
            s.create("consumequeue/TopicA/0/00000000000000000000", 20)
                .unwrap();
            assert_eq!(
                s.list_dirs("consumequeue").unwrap(),
                vec!["TopicA", "TopicB"]
            );
            assert_eq!(s.list_dirs("consumequeue/TopicA").unwrap(), vec!["0", "1"]);
            assert_eq!(
                s.list("consumequeue/TopicA/0").unwrap(),
                vec!["00000000000000000000", "00000000000000006000"]
            );
            assert!(s.list("consumequeue").unwrap().is_empty());
            s.delete("consumequeue/TopicA/0/00000000000000000000")
                .unwrap();
            assert_eq!(
                s.list("consumequeue/TopicA/0").unwrap(),
                vec!["00000000000000006000"]
            );
            assert!(s
                .delete("consumequeue/TopicA/0/00000000000000000000")
                .is_err());
        }

        #[test]
        fn truncate_shrinks_and_keeps_prefix() {
            let (_dir, mut s) = store();
            s.create("c/f", 100).unwrap();
            s.write_at("c/f", 0, b"0123456789").unwrap();
            s.truncate("c/f", 4).unwrap();
            assert_eq!(s.len("c/f").unwrap(), 4);
            let mut buf = [0u8; 4];
            s.read_at("c/f", 0, &mut buf).unwrap();
            assert_eq!(&buf, b"0123");
            assert!(s.read_at("c/f", 2, &mut buf).is_err());
            s.truncate("c/f", 0).unwrap();
            assert_eq!(s.len("c/f").unwrap(), 0);
            s.read_at("c/f", 0, &mut []).unwrap();
        }

        #[test]
        fn replace_and_read_all() {
            let (dir, mut s) = store();
            s.replace("config/topics.json", b"{\"a\":1}").unwrap();
            s.replace("config/topics.json", b"{}").unwrap();
            assert_eq!(
                s.read_all("config/topics.json").unwrap(),
                Some(b"{}".to_vec())
            );
            assert_eq!(s.list("config").unwrap(), vec!["topics.json"]);
            let names: Vec<_> = std::fs::read_dir(dir.path().join("config"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
        }

        #[test]
        fn reopen_sees_synced_data() {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut s = MmapStorage::open(dir.path()).unwrap();
                s.create("commitlog/00000000000000000000", 1 << 20).unwrap();
                s.write_at("commitlog/00000000000000000000", 1000, b"durable")
                    .unwrap();
                let handle = s.sync_handle();
                let t = std::thread::spawn(move || {
                    handle.sync_request(&SyncRequest {
                        ranges: vec![FileRange {
                            path: "commitlog/00000000000000000000".into(),
                            start: 0,
                            end: 1007,
                        }],
                        up_to: CommitLogOffset(1007),
                    })
                });
                t.join().unwrap().unwrap();
                s.sync("commitlog/00000000000000000000", 0, 1 << 20)
                    .unwrap();
                s.sync_handle().sync_all().unwrap();
            }
            let s = MmapStorage::open(dir.path()).unwrap();
            assert_eq!(s.list("commitlog").unwrap(), vec!["00000000000000000000"]);
            assert_eq!(s.len("commitlog/00000000000000000000").unwrap(), 1 << 20);
            let mut buf = [0u8; 7];
            s.read_at("commitlog/00000000000000000000", 1000, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"durable");
        }

        #[test]
        fn a_store_is_opened_once() {
            let dir = tempfile::tempdir().unwrap();
            let first = MmapStorage::open(dir.path()).unwrap();
            assert!(matches!(
                MmapStorage::open(dir.path()),
                Err(StorageError::Io(t)) if t.contains("in use")
            ));
            drop(first);
            MmapStorage::open(dir.path()).expect("lock released on drop");
        }

        fn record(topic: &str, queue_id: i32, body: &str) -> vostok_core::message::MessageRecord {
            let host: std::net::SocketAddr = "127.0.0.1:10911".parse().unwrap();
            vostok_core::message::MessageRecord {
                queue_id,
                flag: 0,
                queue_offset: 0,
                physical_offset: 0,
                sys_flag: 0,
                born_timestamp_ms: 1_700_000_000_000,
                born_host: host,
                store_timestamp_ms: 1_700_000_000_001,
                store_host: host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: bytes::Bytes::copy_from_slice(body.as_bytes()),
                topic: topic.to_owned(),
                properties: Default::default(),
            }
        }

        /// The real store over mmap files: records spanning several CommitLog segments survive a
        /// sync from another thread and a reopen.
        #[test]
        fn message_store_round_trip_over_mmap() {
            use vostok_core::store::{GetStatus, MessageStore, QueueOffset, StoreConfig};
            let dir = tempfile::tempdir().unwrap();
            let config = StoreConfig {
                commitlog_segment_bytes: 4096,
                consume_queue_units_per_segment: 8,
                ..StoreConfig::default()
            };
            {
                let storage = MmapStorage::open(dir.path()).unwrap();
                let handle = storage.sync_handle();
                let mut store = MessageStore::open(storage, config.clone()).unwrap();
                for i in 0..60 {
                    store
                        .put(record("TopicA", i % 2, &format!("body-{i:03}")))
                        .unwrap();
                }
                let request = store.sync_request().expect("something to sync");
                let synced = std::thread::spawn(move || {
                    handle.sync_request(&request).map(|_| request.up_to)
                });
                let up_to = synced.join().unwrap().unwrap();
                store.handle_synced(up_to);
                assert_eq!(store.durable_offset(), store.written_offset());
            }
            assert!(
                MmapStorage::open(dir.path())
                    .unwrap()
                    .list("commitlog")
                    .unwrap()
                    .len()
                    > 1,
                "the CommitLog rolled over"
            );
            let storage = MmapStorage::open(dir.path()).unwrap();
            let store = MessageStore::open(storage, config).unwrap();
            assert_eq!(store.max_offset("TopicA", 0), QueueOffset(30));
            assert_eq!(store.max_offset("TopicA", 1), QueueOffset(30));
            let got = store
                .get("TopicA", 1, QueueOffset(0), 64, &|_| true)
                .unwrap();
            assert_eq!(got.status, GetStatus::Found);
            assert_eq!(got.records.len(), 30);
            let last = got.records.last().unwrap();
            let decoded = vostok_core::message::MessageRecord::decode(last, true).unwrap();
            assert_eq!(&decoded.body[..], b"body-059");
        }

        #[test]
        fn created_segments_are_allocated_not_sparse() {
            use std::os::unix::fs::MetadataExt;
            let (dir, mut s) = store();
            s.create("commitlog/00000000000000000000", 1 << 20).unwrap();
            let meta =
                std::fs::metadata(dir.path().join("commitlog/00000000000000000000")).unwrap();
            assert_eq!(meta.len(), 1 << 20);
            assert!(meta.blocks() * 512 >= 1 << 20, "{} blocks", meta.blocks());
            let usage = disk_usage(dir.path()).unwrap();
            assert!(usage.total_bytes > 0 && usage.available_bytes <= usage.total_bytes);
        }

        #[test]
        fn no_space_is_mapped() {
            let e = io::Error::from_raw_os_error(28);
            assert_eq!(map_err("x", e), StorageError::NoSpace);
            let e = io::Error::new(io::ErrorKind::PermissionDenied, "nope");
            assert!(matches!(map_err("x", e), StorageError::Io(t) if t.contains("x")));
        }
    }
}
