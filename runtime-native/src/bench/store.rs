//! `vostok bench store`: the storage engine against the disk it runs on, in one run.
//!
//! ```text
//!  1. disk ceiling A   write(2) of 1 MiB buffers, one fdatasync at the end      ──┐ same byte
//!  2. store append     MessageStore::put over MmapStorage + a flusher thread     │ count, same
//!                      (msync through SyncHandle, one sync in flight at a time)  │ directory
//!  3. disk ceiling B   write(2) of one record's size, fdatasync as often as      │
//!                      step 2 synced (same bytes per sync)                      ──┘
//!  4. recovery         MessageStore::open of the store step 2 wrote, with the page cache warm
//!                      and with the store's files dropped from it (posix_fadvise DONTNEED after
//!                      fdatasync), in each recovery mode:
//!                        crash  abort marker left, checkpoint = the last periodic one: the scan
//!                               starts there (what a SIGKILL or power loss leaves)
//!                        full   no checkpoint (missing or torn): every segment is verified
//!                        clean  the broker's graceful stop (final checkpoint, sync, close):
//!                               only the segment holding the checkpoint is re-verified
//!                      and once more with the page cache warm and the key index disabled, which
//!                      gives the index's share of each open
//! ```
//!
//! Step 2 runs the code path of the broker: `MessageStore::put` encodes and appends each record
//! and writes its ConsumeQueue unit; durability is asked for with `sync_request` and done by a
//! flusher thread on a [`SyncHandle`](crate::storage::SyncHandle) while puts continue, then
//! reported with `handle_synced`.
//! Under `--flush sync` at most `--inflight` messages wait for durability at once, as that many
//! producers each waiting for their SYNC_FLUSH send would; under `--flush async` a sync is asked
//! for every `flushIntervalCommitLog` (500 ms). A checkpoint is taken every
//! `flushIntervalConsumeQueue` (1 s) as the broker does, and once at half the size if none was
//! yet, so the crash case always has one some way back. The time includes the final sync, so
//! everything counted is durable.
//!
//! Page cache: both disk ceilings end with an fdatasync, so they measure the device, not memory.
//! Recovery with a warm cache reads memory; with a cold cache it reads the device (when the
//! advice is honoured: it is a hint, and tmpfs keeps everything in memory anyway).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use vostok_core::broker::BrokerConfig;
use vostok_core::message::{keys, MessageRecord, Properties, UniqKeyGenerator};
use vostok_core::store::{
    CheckpointRequest, CommitLogOffset, MessageStore, RecoveryMode, StorageError, StoreConfig,
    SyncRequest,
};

use crate::storage::MmapStorage;
use crate::RunError;

const MIB: f64 = 1024.0 * 1024.0;
/// Buffer size of the large-write disk ceiling.
const LARGE_WRITE_BYTES: usize = 1 << 20;
/// Queues of the benchmark topic, written round-robin (a topic's default count).
const BENCH_QUEUES: i32 = 8;
const BENCH_TOPIC: &str = "BenchmarkTest";

/// When the store syncs during the append run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flush {
    /// ASYNC_FLUSH: a sync every flushIntervalCommitLog (500 ms); puts never wait.
    Async,
    /// SYNC_FLUSH: group commit; at most --inflight messages wait for durability at once.
    Sync,
}

impl Flush {
    fn name(self) -> &'static str {
        match self {
            Flush::Async => "ASYNC_FLUSH",
            Flush::Sync => "SYNC_FLUSH",
        }
    }
}

/// Options of `vostok bench store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Directory to run in; created if absent, must be empty. [default: a fresh directory
    /// ./vostok-bench-PID, or under the temporary directory when the working directory is not
    /// writable]. Its contents are removed afterwards unless --keep.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Bytes of CommitLog to write (suffixes K, M, G, T: powers of 1024).
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    pub size: u64,
    /// Body bytes of each message (suffixes as for --size).
    #[arg(long, value_name = "BYTES", default_value = "1024", value_parser = parse_size)]
    pub message_size: u64,
    /// Flush policy of the append run.
    #[arg(long, value_enum, default_value_t = Flush::Async)]
    pub flush: Flush,
    /// With --flush sync: messages waiting for durability at once (concurrent producers).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub inflight: usize,
    /// Keep the files written.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses a byte count: digits with an optional K, M, G or T suffix (powers of 1024; `KiB`,
/// `KB` and `k` are read the same way). Zero is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number of bytes like 1024, 256M or 1G"))?;
    let suffix = suffix.trim().to_ascii_uppercase();
    let suffix = suffix
        .strip_suffix("IB")
        .or_else(|| suffix.strip_suffix('B'))
        .unwrap_or(&suffix);
    let shift = match suffix {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        other => return Err(format!("{text:?}: unknown size suffix {other:?}")),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?}: too large"))?;
    if bytes == 0 {
        return Err(format!("{text:?}: must be at least 1 byte"));
    }
    Ok(bytes)
}

/// Runs the storage benchmark and prints its report.
pub async fn run(args: StoreArgs) -> Result<(), RunError> {
    let json = args.json;
    let report = tokio::task::spawn_blocking(move || measure(&args))
        .await
        .map_err(|e| RunError::Task(format!("bench store ended abnormally: {e}")))??;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.to_table())?;
    }
    out.flush()?;
    Ok(())
}

/// A disk ceiling: `bytes` written with `write_bytes`-sized writes and `syncs` fdatasyncs.
#[derive(Clone, Debug)]
pub struct DiskRun {
    pub write_bytes: u64,
    pub sync_every_bytes: u64,
    pub syncs: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// The append run through the real store.
#[derive(Clone, Debug)]
pub struct AppendRun {
    pub messages: u64,
    pub record_bytes: u64,
    pub bytes: u64,
    pub syncs: u64,
    pub elapsed: Duration,
}

/// One timed reopen of the store.
#[derive(Clone, Debug)]
pub struct RecoveryRun {
    /// How the previous run ended: `crash` (abort marker, last periodic checkpoint), `full`
    /// (no checkpoint) or `clean`.
    pub shutdown: &'static str,
    /// The mode the recovery report names (`crash`, `full` or `clean`).
    pub mode: &'static str,
    /// Whether the store's files were dropped from the page cache first.
    pub cold_cache: bool,
    /// Whether the key index was enabled (disabled: the open without the index's share).
    pub key_index: bool,
    pub elapsed: Duration,
    /// Where verification started and how many CommitLog bytes it verified.
    pub scan_start: u64,
    pub bytes: u64,
    /// Records verified.
    pub records: u64,
    /// Key index entries cut and records indexed again.
    pub index_entries_dropped: u64,
    pub index_records_reindexed: u64,
    /// Whether the index checked only the entries after the checkpoint.
    pub index_from_checkpoint: bool,
}

fn mode_name(mode: RecoveryMode) -> &'static str {
    match mode {
        RecoveryMode::Clean => "clean",
        RecoveryMode::Crash => "crash",
        RecoveryMode::Full => "full",
    }
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct StoreReport {
    pub dir: PathBuf,
    pub filesystem: String,
    pub size_bytes: u64,
    pub message_size_bytes: u64,
    pub flush: Flush,
    pub inflight: usize,
    pub disk_large: DiskRun,
    pub disk_cadence: DiskRun,
    pub append: AppendRun,
    pub recovery: Vec<RecoveryRun>,
    /// `None` when posix_fadvise worked on every file; the error otherwise.
    pub cache_drop_error: Option<String>,
    pub notes: Vec<String>,
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB / elapsed.as_secs_f64().max(1e-9)
}

fn per_s(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Rounds for JSON so the object stays readable.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl StoreReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let disk = |d: &DiskRun| {
            json!({
                "write_bytes": d.write_bytes,
                "sync_every_bytes": d.sync_every_bytes,
                "syncs": d.syncs,
                "bytes": d.bytes,
                "seconds": round3(d.elapsed.as_secs_f64()),
                "mib_per_s": round2(mib_per_s(d.bytes, d.elapsed)),
            })
        };
        let a = &self.append;
        let append_mib = mib_per_s(a.bytes, a.elapsed);
        let large_mib = mib_per_s(self.disk_large.bytes, self.disk_large.elapsed);
        let cadence_mib = mib_per_s(self.disk_cadence.bytes, self.disk_cadence.elapsed);
        // Only SYNC_FLUSH has producers waiting on a group commit.
        let inflight = match self.flush {
            Flush::Sync => Value::from(self.inflight),
            Flush::Async => Value::Null,
        };
        let recovery: Vec<Value> = self
            .recovery
            .iter()
            .map(|r| {
                json!({
                    "shutdown": r.shutdown,
                    "mode": r.mode,
                    "page_cache": if r.cold_cache { "dropped" } else { "warm" },
                    "key_index": r.key_index,
                    "ms": round2(r.elapsed.as_secs_f64() * 1000.0),
                    "scan_start": r.scan_start,
                    "bytes": r.bytes,
                    "mib_per_s": round2(mib_per_s(r.bytes, r.elapsed)),
                    "records": r.records,
                    "index_entries_dropped": r.index_entries_dropped,
                    "index_records_reindexed": r.index_records_reindexed,
                    "index_from_checkpoint": r.index_from_checkpoint,
                })
            })
            .collect();
        json!({
            "dir": self.dir.display().to_string(),
            "filesystem": self.filesystem,
            "size_bytes": self.size_bytes,
            "message_size_bytes": self.message_size_bytes,
            "flush": self.flush.name(),
            "inflight": inflight,
            "disk_sequential": disk(&self.disk_large),
            "disk_store_cadence": disk(&self.disk_cadence),
            "append": {
                "messages": a.messages,
                "record_bytes": a.record_bytes,
                "bytes": a.bytes,
                "syncs": a.syncs,
                "seconds": round3(a.elapsed.as_secs_f64()),
                "msgs_per_s": per_s(a.messages, a.elapsed).round(),
                "mib_per_s": round2(mib_per_s(a.bytes, a.elapsed)),
                // Unrounded: a slow debug build is a small but non-zero fraction.
                "of_disk_sequential": append_mib / large_mib.max(1e-9),
                "of_disk_store_cadence": append_mib / cadence_mib.max(1e-9),
            },
            "recovery": recovery,
            "page_cache_drop_error": self.cache_drop_error,
            "notes": self.notes,
        })
    }

    /// The report as a text table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let a = &self.append;
        s.push_str(&format!(
            "vostok bench store: {:.1} MiB of CommitLog, {}-byte bodies ({}-byte records), {}{}\n\
             directory: {} ({})\n\n",
            self.size_bytes as f64 / MIB,
            self.message_size_bytes,
            a.record_bytes,
            self.flush.name(),
            if self.flush == Flush::Sync {
                format!(", {} in flight", self.inflight)
            } else {
                String::new()
            },
            self.dir.display(),
            self.filesystem,
        ));
        s.push_str(&format!(
            "{:<52} {:>10} {:>12} {:>10}\n",
            "", "MiB/s", "msg/s", "time"
        ));
        let disk_line = |label: String, d: &DiskRun| {
            format!(
                "{:<52} {:>10.1} {:>12} {:>9.2}s\n",
                label,
                mib_per_s(d.bytes, d.elapsed),
                "",
                d.elapsed.as_secs_f64()
            )
        };
        s.push_str(&disk_line(
            format!(
                "disk: {} KiB writes, one fdatasync",
                self.disk_large.write_bytes / 1024
            ),
            &self.disk_large,
        ));
        s.push_str(&disk_line(
            format!(
                "disk: {} B writes, fdatasync every {:.0} KiB",
                self.disk_cadence.write_bytes,
                self.disk_cadence.sync_every_bytes as f64 / 1024.0
            ),
            &self.disk_cadence,
        ));
        s.push_str(&format!(
            "{:<52} {:>10.1} {:>12.0} {:>9.2}s\n",
            format!("store: append, {} messages, {} syncs", a.messages, a.syncs),
            mib_per_s(a.bytes, a.elapsed),
            per_s(a.messages, a.elapsed),
            a.elapsed.as_secs_f64()
        ));
        s.push_str(&format!(
            "{:<52} {:>9.0}% {:>12} {:>10}\n",
            "  append / disk (1 MiB writes)",
            100.0 * mib_per_s(a.bytes, a.elapsed)
                / mib_per_s(self.disk_large.bytes, self.disk_large.elapsed).max(1e-9),
            "",
            ""
        ));
        s.push_str(&format!(
            "{:<52} {:>9.0}% {:>12} {:>10}\n\n",
            "  append / disk (store's write size and syncs)",
            100.0 * mib_per_s(a.bytes, a.elapsed)
                / mib_per_s(self.disk_cadence.bytes, self.disk_cadence.elapsed).max(1e-9),
            "",
            ""
        ));
        s.push_str(&format!(
            "{:<52} {:>10} {:>12} {:>10}\n",
            "recovery (MessageStore::open), verified from", "MiB/s", "records", "time"
        ));
        for r in &self.recovery {
            let after = match r.shutdown {
                "crash" => "crash",
                "full" => "no checkpoint",
                _ => "clean stop",
            };
            s.push_str(&format!(
                "{:<52} {:>10.1} {:>12} {:>8.1}ms\n",
                format!(
                    "  {after}: mode {}, {:.1} MiB, {}{}",
                    r.mode,
                    r.bytes as f64 / MIB,
                    if r.cold_cache { "cold" } else { "warm" },
                    if r.key_index { "" } else { ", no index" }
                ),
                mib_per_s(r.bytes, r.elapsed),
                r.records,
                r.elapsed.as_secs_f64() * 1000.0
            ));
        }
        // The key index's share: the same warm open with and without it.
        for shutdown in ["crash", "full", "clean"] {
            let find = |index: bool| {
                self.recovery
                    .iter()
                    .find(|r| r.shutdown == shutdown && !r.cold_cache && r.key_index == index)
            };
            if let (Some(with), Some(without)) = (find(true), find(false)) {
                let index_ms =
                    (with.elapsed.as_secs_f64() - without.elapsed.as_secs_f64()).max(0.0) * 1000.0;
                s.push_str(&format!(
                    "  key index share of the {shutdown} open (warm): {index_ms:.1} ms of {:.1} \
                     ms ({}; {} entries cut, {} records indexed again)\n",
                    with.elapsed.as_secs_f64() * 1000.0,
                    if with.index_from_checkpoint {
                        "tail after the checkpoint checked"
                    } else {
                        "newest file checked whole"
                    },
                    with.index_entries_dropped,
                    with.index_records_reindexed,
                ));
            }
        }
        if let Some(e) = &self.cache_drop_error {
            s.push_str(&format!(
                "\npage cache could not be dropped ({e}): cold figures are warm\n"
            ));
        }
        for note in &self.notes {
            s.push_str(&format!("\nnote: {note}"));
        }
        s.push('\n');
        s
    }
}

/// The benchmark directory: created fresh (or checked empty), cleaned up on drop unless kept.
struct BenchDir {
    path: PathBuf,
    created: bool,
    keep: bool,
}

impl BenchDir {
    fn new(dir: Option<&Path>, keep: bool) -> Result<Self, RunError> {
        if let Some(dir) = dir {
            let created = !dir.exists();
            std::fs::create_dir_all(dir)?;
            if std::fs::read_dir(dir)?.next().is_some() {
                return Err(RunError::Usage(format!(
                    "--dir {}: not empty; the benchmark writes only into an empty directory",
                    dir.display()
                )));
            }
            return Ok(Self {
                path: dir.to_owned(),
                created,
                keep,
            });
        }
        let name = format!("vostok-bench-{}", std::process::id());
        let mut last_err = None;
        for base in [PathBuf::from("."), std::env::temp_dir()] {
            let path = base.join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Self {
                        path,
                        created: true,
                        keep,
                    })
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(RunError::Io(last_err.unwrap_or_else(|| {
            std::io::Error::other("no directory to run the benchmark in")
        })))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if self.created {
            let _ = std::fs::remove_dir_all(&self.path);
        } else if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> RunError {
    RunError::Task(format!("store: {e}"))
}

/// Measures everything [`StoreArgs`] asks for and returns the report (prints nothing).
pub fn measure(args: &StoreArgs) -> Result<StoreReport, RunError> {
    if args.inflight == 0 {
        return Err(RunError::Usage("--inflight must be at least 1".into()));
    }
    let store_config = StoreConfig {
        max_message_size_bytes: StoreConfig::default()
            .max_message_size_bytes
            .max(u32::try_from(args.message_size).unwrap_or(u32::MAX)),
        ..StoreConfig::default()
    };
    if args.message_size + 1024 > store_config.commitlog_segment_bytes {
        return Err(RunError::Usage(
            "--message-size must leave room in a 1 GiB CommitLog segment".into(),
        ));
    }
    let dir = BenchDir::new(args.dir.as_deref(), args.keep)?;
    let dir_path = dir.path.canonicalize().unwrap_or_else(|_| dir.path.clone());
    let filesystem = filesystem_name(&dir.path);
    let mut notes = Vec::new();
    if filesystem == "tmpfs" || filesystem == "ramfs" {
        notes.push(format!(
            "{} is in memory ({filesystem}): every figure is a memory figure",
            dir_path.display()
        ));
    }

    let raw_path = dir.path.join("raw-write-test");
    let disk_large = disk_write(
        &raw_path,
        args.size,
        LARGE_WRITE_BYTES as u64,
        args.size.max(1),
    )?;

    let store_path = dir.path.join("store");
    let append = append_run(&store_path, store_config.clone(), args)?;

    let sync_every_bytes = (append.bytes / append.syncs.max(1)).max(1);
    let disk_cadence = disk_write(&raw_path, args.size, append.record_bytes, sync_every_bytes)?;

    let mut recovery = Vec::new();
    let mut cache_drop_error = None;
    // The append run left the store as a crash does: the abort marker and the last periodic
    // checkpoint. Each crash open leaves it so again (it changes nothing the next one reads).
    let checkpoint = store_path.join("checkpoint");
    let saved_checkpoint = store_path.join("checkpoint.bench-saved");
    for (shutdown, cold_cache, key_index) in [
        ("crash", false, true),
        ("crash", true, true),
        ("crash", false, false),
        ("full", false, true),
        ("full", true, true),
        ("full", false, false),
        ("clean", false, true),
        ("clean", true, true),
        ("clean", false, false),
    ] {
        if shutdown == "full" && checkpoint.exists() {
            std::fs::rename(&checkpoint, &saved_checkpoint)?;
        }
        if shutdown == "clean" {
            // The broker's graceful stop, so the timed open follows a clean shutdown.
            let store = open_store(&store_path, store_config.clone())?;
            close_cleanly(store)?;
        }
        if cold_cache {
            if let Err(e) = drop_from_page_cache(&store_path) {
                cache_drop_error.get_or_insert(e);
            }
        }
        let mut config = store_config.clone();
        config.index.enabled = key_index;
        let started = Instant::now();
        let store = open_store(&store_path, config)?;
        let elapsed = started.elapsed();
        let report = store.recovery_report().clone();
        let index = store.index().recovery().clone();
        recovery.push(RecoveryRun {
            shutdown,
            mode: mode_name(report.mode),
            cold_cache,
            key_index,
            elapsed,
            scan_start: report.scan_start.0,
            bytes: report.end.0 - report.scan_start.0,
            records: report.records_scanned,
            index_entries_dropped: index.entries_dropped,
            index_records_reindexed: index.records_reindexed,
            index_from_checkpoint: index.checked_from_checkpoint,
        });
        // Drop without a shutdown step: a crash again.
        drop(store);
        if shutdown == "full" && saved_checkpoint.exists() && !key_index {
            std::fs::rename(&saved_checkpoint, &checkpoint)?;
        }
    }

    Ok(StoreReport {
        dir: dir_path,
        filesystem,
        size_bytes: args.size,
        message_size_bytes: args.message_size,
        flush: args.flush,
        inflight: args.inflight,
        disk_large,
        disk_cadence,
        append,
        recovery,
        cache_drop_error,
        notes,
    })
}

fn open_store(path: &Path, config: StoreConfig) -> Result<MessageStore<MmapStorage>, RunError> {
    let storage = MmapStorage::open(path)?;
    MessageStore::open(storage, config).map_err(store_err)
}

/// What the broker does on a graceful stop: a final checkpoint (the CommitLog tail, the
/// ConsumeQueues and the key index synced, then the checkpoint file), then a clean close, which
/// removes the abort marker.
fn close_cleanly(mut store: MessageStore<MmapStorage>) -> Result<(), RunError> {
    let sync = store.storage().sync_handle();
    let request = store.checkpoint_request();
    sync.sync_request(&request.sync)?;
    store
        .handle_checkpoint_synced(&request)
        .map_err(store_err)?;
    store.close().map_err(store_err)?;
    drop(store);
    Ok(())
}

/// Writes `bytes` to a new file at `path` in `write_bytes` pieces with an fdatasync after every
/// `sync_every_bytes` and at the end, then deletes it.
fn disk_write(
    path: &Path,
    bytes: u64,
    write_bytes: u64,
    sync_every_bytes: u64,
) -> Result<DiskRun, RunError> {
    let chunk = vec![0xA5u8; usize::try_from(write_bytes.max(1)).unwrap_or(LARGE_WRITE_BYTES)];
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    let started = Instant::now();
    let (mut written, mut since_sync, mut syncs) = (0u64, 0u64, 0u64);
    while written < bytes {
        let n = (bytes - written).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        written += n as u64;
        since_sync += n as u64;
        if since_sync >= sync_every_bytes {
            file.sync_data()?;
            syncs += 1;
            since_sync = 0;
        }
    }
    if since_sync > 0 {
        file.sync_data()?;
        syncs += 1;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(DiskRun {
        write_bytes: chunk.len() as u64,
        sync_every_bytes,
        syncs,
        bytes: written,
        elapsed,
    })
}

/// The record the append run writes as message `i`: what a producer's send stores.
fn bench_record(
    i: u64,
    body: &Bytes,
    uniq: &mut UniqKeyGenerator,
    host: SocketAddr,
    now_ms: u64,
) -> MessageRecord {
    let mut properties = Properties::new();
    properties.insert(keys::TAGS, "TagA");
    properties.insert(keys::UNIQ_KEY, uniq.next(now_ms));
    MessageRecord {
        queue_id: (i % BENCH_QUEUES as u64) as i32,
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
        body: body.clone(),
        topic: BENCH_TOPIC.to_string(),
        properties,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Appends records until the CommitLog holds `args.size` bytes, syncing and taking checkpoints as
/// the broker does, and leaves the store as a crash would (dropped, no shutdown step; everything
/// synced, the last checkpoint some way back).
fn append_run(path: &Path, config: StoreConfig, args: &StoreArgs) -> Result<AppendRun, RunError> {
    let storage = MmapStorage::open(path)?;
    let sync = storage.sync_handle();
    let mut store = MessageStore::open(storage, config).map_err(store_err)?;

    // The flusher: one thread making requests durable while puts continue, like the broker's.
    let (request_tx, request_rx) = mpsc::channel::<SyncRequest>();
    let (done_tx, done_rx) = mpsc::channel::<Result<CommitLogOffset, StorageError>>();
    let flusher = std::thread::Builder::new()
        .name("vostok-bench-flusher".to_owned())
        .spawn(move || {
            while let Ok(request) = request_rx.recv() {
                let result = sync.sync_request(&request).map(|()| request.up_to);
                if done_tx.send(result).is_err() {
                    break;
                }
            }
        })?;

    let host = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), crate::DEFAULT_BROKER_PORT);
    let mut uniq = UniqKeyGenerator::new(host.ip(), std::process::id() as u16, 0x5EED);
    let body = Bytes::from(vec![b'v'; args.message_size as usize]);
    let broker_defaults = BrokerConfig::default();
    let flush_interval = Duration::from_millis(broker_defaults.flush_interval_commitlog_ms.max(1));
    let checkpoint_interval = Duration::from_millis(broker_defaults.checkpoint_interval_ms.max(1));

    // End offsets of messages not yet durable (SYNC_FLUSH: their producers are waiting).
    let mut waiting: VecDeque<u64> = VecDeque::new();
    let mut in_flight = false;
    let (mut messages, mut syncs, mut record_bytes) = (0u64, 0u64, 0u64);
    let start_offset = store.written_offset().0;
    let started = Instant::now();
    let mut next_flush = started + flush_interval;
    let mut next_checkpoint = started + checkpoint_interval;
    let mut checkpoints = 0u64;
    // The checkpoint whose sync is in flight: its completion writes the checkpoint file.
    let mut checkpoint_in_flight: Option<CheckpointRequest> = None;

    // Asks for the next sync unless one is in flight: a checkpoint when one is wanted (a sync
    // that also covers the ConsumeQueues and the key index), else the CommitLog tail. Returns
    // whether a checkpoint was asked for.
    let request = move |store: &MessageStore<MmapStorage>,
                        in_flight: &mut bool,
                        want_checkpoint: bool,
                        pending: &mut Option<CheckpointRequest>| {
        if *in_flight {
            return Ok(false);
        }
        let stopped = |_| RunError::Task("the bench flusher stopped".into());
        if want_checkpoint && store.checkpoint_due() {
            let req = store.checkpoint_request();
            request_tx.send(req.sync.clone()).map_err(stopped)?;
            *pending = Some(req);
            *in_flight = true;
            return Ok(true);
        }
        if let Some(req) = store.sync_request() {
            request_tx.send(req).map_err(stopped)?;
            *in_flight = true;
        }
        Ok::<bool, RunError>(false)
    };
    let complete = |store: &mut MessageStore<MmapStorage>,
                    result: Result<CommitLogOffset, StorageError>,
                    waiting: &mut VecDeque<u64>,
                    pending: &mut Option<CheckpointRequest>|
     -> Result<(), RunError> {
        let up_to = result?;
        store.handle_synced(up_to);
        if let Some(checkpoint) = pending.take() {
            store
                .handle_checkpoint_synced(&checkpoint)
                .map_err(store_err)?;
        }
        while waiting.front().is_some_and(|end| *end <= up_to.0) {
            waiting.pop_front();
        }
        Ok(())
    };

    while store.written_offset().0 - start_offset < args.size {
        let now = now_ms();
        let put = store
            .put(bench_record(messages, &body, &mut uniq, host, now))
            .map_err(store_err)?;
        messages += 1;
        record_bytes = u64::from(put.size_bytes);
        if args.flush == Flush::Sync {
            waiting.push_back(put.physical_offset.0 + u64::from(put.size_bytes));
        }
        while let Ok(result) = done_rx.try_recv() {
            in_flight = false;
            syncs += 1;
            complete(&mut store, result, &mut waiting, &mut checkpoint_in_flight)?;
        }
        // Periodic checkpoints, and one at half the size if the run is shorter than a period;
        // each is taken at the first moment no sync is in flight.
        let written = store.written_offset().0 - start_offset;
        let want =
            Instant::now() >= next_checkpoint || (checkpoints == 0 && written >= args.size / 2);
        let mut ask = |store: &MessageStore<MmapStorage>,
                       in_flight: &mut bool,
                       pending: &mut Option<CheckpointRequest>|
         -> Result<(), RunError> {
            if request(store, in_flight, want, pending)? {
                checkpoints += 1;
                next_checkpoint = Instant::now() + checkpoint_interval;
            }
            Ok(())
        };
        if want {
            ask(&store, &mut in_flight, &mut checkpoint_in_flight)?;
        }
        match args.flush {
            Flush::Sync => {
                ask(&store, &mut in_flight, &mut checkpoint_in_flight)?;
                while waiting.len() >= args.inflight {
                    let result = done_rx
                        .recv()
                        .map_err(|_| RunError::Task("the bench flusher stopped".into()))?;
                    in_flight = false;
                    syncs += 1;
                    complete(&mut store, result, &mut waiting, &mut checkpoint_in_flight)?;
                    ask(&store, &mut in_flight, &mut checkpoint_in_flight)?;
                }
            }
            Flush::Async => {
                if Instant::now() >= next_flush {
                    ask(&store, &mut in_flight, &mut checkpoint_in_flight)?;
                    next_flush = Instant::now() + flush_interval;
                }
            }
        }
    }
    // Everything written is durable before the clock stops.
    while store.durable_offset() < store.written_offset() || in_flight {
        if !in_flight {
            // The crash case needs a checkpoint some way back: take one now if none was.
            if request(
                &store,
                &mut in_flight,
                checkpoints == 0,
                &mut checkpoint_in_flight,
            )? {
                checkpoints += 1;
            }
        }
        let result = done_rx
            .recv()
            .map_err(|_| RunError::Task("the bench flusher stopped".into()))?;
        in_flight = false;
        syncs += 1;
        complete(&mut store, result, &mut waiting, &mut checkpoint_in_flight)?;
    }
    let elapsed = started.elapsed();
    let bytes = store.written_offset().0 - start_offset;
    drop(request);
    let _ = flusher.join();
    drop(store);
    Ok(AppendRun {
        messages,
        record_bytes,
        bytes,
        syncs,
        elapsed,
    })
}

/// Makes every file under `dir` durable and advises the kernel to drop it from the page cache,
/// so the next read comes from the device. Returns the first error (the advice is a hint).
fn drop_from_page_cache(dir: &Path) -> Result<(), String> {
    let mut first_err = None;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let result = File::open(&p).and_then(|f| {
                f.sync_data()?;
                rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)
                    .map_err(std::io::Error::from)
            });
            if let Err(e) = result {
                first_err.get_or_insert(format!("{}: {e}", p.display()));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The file system type of `dir` (for the report): a name for the common ones, hex otherwise.
fn filesystem_name(dir: &Path) -> String {
    let Ok(st) = rustix::fs::statfs(dir) else {
        return "unknown".to_string();
    };
    #[allow(clippy::unnecessary_cast)] // f_type's integer type differs between targets.
    let magic = st.f_type as u64;
    match magic {
        0xEF53 => "ext4".to_string(),
        0x5846_5342 => "xfs".to_string(),
        0x9123_683E => "btrfs".to_string(),
        0x0102_1994 => "tmpfs".to_string(),
        0x8584_58F6 => "ramfs".to_string(),
        0x794C_7630 => "overlayfs".to_string(),
        0x2FC1_2FC1 => "zfs".to_string(),
        0x6969 => "nfs".to_string(),
        0x6573_5546 => "fuse".to_string(),
        other => format!("fs type {other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64KB"), Ok(64 << 10));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("1.5G").is_err());
    }
}
