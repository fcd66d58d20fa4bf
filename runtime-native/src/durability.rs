//! The broker driver's two durability workers, off the owner task:
//!
//! ```text
//!  owner ──Sync (CommitLog tail)──────────▶ flusher      ──msync──▶ Synced(up_to) ──▶ owner
//!        ──Checkpoint (ConsumeQueue, index)▶ checkpointer ──msync, write file──▶
//!                                                           CheckpointWritten ──▶ owner
//! ```
//!
//! * The **flusher** is the group commit: it merges every `Sync` queued since its last pass
//!   (per file, the union of their ranges), syncs, and reports the highest `up_to`; SYNC_FLUSH
//!   sends are answered from that report.
//! * The **checkpointer** makes a checkpoint's ConsumeQueue and key-index ranges durable, then
//!   replaces the checkpoint file. A checkpoint claims only CommitLog bytes a `Sync` had already
//!   made durable (see `vostok_core::broker::flush`), so it runs beside the flusher: its syncs
//!   (the newest index file is tens of MiB of mapping) never sit in front of a group commit.
//!   Both sync different files, so neither waits for the other's disk writes in the kernel
//!   either, only for the device.
//!
//! Each is an OS thread in production (a sync blocks) and a task on the broker's node under
//! simulation (madsim allows no OS threads), where a kill stops it with everything else and its
//! syncs take [`SIM_SYNC_LATENCY`] while the owner writes on.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tracing::error;
use vostok_core::broker::CheckpointFailure;
use vostok_core::store::{CheckpointRequest, CommitLogOffset, SyncRequest};

use crate::storage::DriverSync;

/// What a worker reports to the owner.
pub(crate) enum Done {
    Synced(CommitLogOffset),
    /// The flusher could not make a request durable.
    SyncFailed(String),
    CheckpointWritten(Box<CheckpointRequest>),
    CheckpointFailed(CheckpointFailure),
}

/// A worker's queue: a std channel to its OS thread in production, a tokio channel to its task
/// under simulation.
#[cfg(not(madsim))]
pub(crate) type WorkerTx<T> = std::sync::mpsc::Sender<T>;
#[cfg(not(madsim))]
pub(crate) type WorkerJoin = std::thread::JoinHandle<()>;
#[cfg(madsim)]
pub(crate) type WorkerTx<T> = mpsc::UnboundedSender<T>;
#[cfg(madsim)]
pub(crate) type WorkerJoin = tokio::task::JoinHandle<()>;

/// A running worker: its queue (dropped to stop it) and its handle.
pub(crate) struct Worker<T> {
    pub tx: Option<WorkerTx<T>>,
    pub join: Option<WorkerJoin>,
}

impl<T> Worker<T> {
    /// Queues `item`; gives it back when the worker is gone (shutting down, or it never started),
    /// for the owner to do the work inline.
    pub fn send(&self, item: T) -> Result<(), T> {
        match &self.tx {
            Some(tx) => tx.send(item).map_err(|e| e.0),
            None => Err(item),
        }
    }

    /// Closes the queue and waits for the worker to finish what is queued; `false` if it ended
    /// abnormally.
    pub async fn stop(&mut self) -> bool {
        self.tx = None;
        let Some(join) = self.join.take() else {
            return true;
        };
        #[cfg(not(madsim))]
        return matches!(
            tokio::task::spawn_blocking(move || join.join()).await,
            Ok(Ok(()))
        );
        #[cfg(madsim)]
        return join.await.is_ok();
    }
}

/// Starts the group-commit flusher.
pub(crate) fn spawn_flusher<Y: DriverSync, E: From<Done> + Send + 'static>(
    sync: Y,
    events: mpsc::UnboundedSender<E>,
) -> Worker<SyncRequest> {
    spawn_worker("vostok-flusher", events, move |batch| {
        flush_batch(&sync, batch)
    })
}

/// Starts the checkpointer.
pub(crate) fn spawn_checkpointer<Y: DriverSync, E: From<Done> + Send + 'static>(
    sync: Y,
    events: mpsc::UnboundedSender<E>,
) -> Worker<CheckpointRequest> {
    spawn_worker("vostok-checkpoint", events, move |batch| {
        // One checkpoint is in flight at a time; should more queue up, the last one written is
        // the newest.
        let mut last = None;
        for request in batch {
            last = Some(write_checkpoint(&sync, request));
        }
        last.expect("a batch is never empty")
    })
}

/// One group commit: merges `requests` (per file, the union of their ranges), syncs, and says
/// what to report: the highest `up_to`, or the first failure.
pub(crate) fn flush_batch<Y: DriverSync>(sync: &Y, requests: Vec<SyncRequest>) -> Done {
    let mut up_to = CommitLogOffset(0);
    let mut ranges: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for request in requests {
        up_to = up_to.max(request.up_to);
        for r in request.ranges {
            let e = ranges.entry(r.path).or_insert((r.start, r.end));
            e.0 = e.0.min(r.start);
            e.1 = e.1.max(r.end);
        }
    }
    let mut failure = None;
    for (path, (start, end)) in &ranges {
        if let Err(e) = sync.sync(path, *start, *end) {
            error!(%path, start, end, "SYNC FAILED, data not durable: {e}");
            failure.get_or_insert_with(|| format!("{path}: {e}"));
        }
    }
    match failure {
        None => Done::Synced(up_to),
        Some(reason) => Done::SyncFailed(reason),
    }
}

/// One checkpoint: its ranges made durable, then its file replaced (atomically and durably).
pub(crate) fn write_checkpoint<Y: DriverSync>(sync: &Y, request: CheckpointRequest) -> Done {
    for r in &request.sync.ranges {
        if let Err(e) = sync.sync(&r.path, r.start, r.end) {
            error!(path = %r.path, r.start, r.end, "CHECKPOINT SYNC FAILED, data not durable: {e}");
            return Done::CheckpointFailed(CheckpointFailure::Sync(format!("{}: {e}", r.path)));
        }
    }
    let path = request.file_path();
    match sync.replace(path, &request.file_contents()) {
        Ok(()) => Done::CheckpointWritten(Box::new(request)),
        Err(e) => {
            // The old checkpoint stays valid; the next period writes a new one.
            error!(%path, "cannot write the checkpoint: {e}");
            Done::CheckpointFailed(CheckpointFailure::WriteFile(format!("{path}: {e}")))
        }
    }
}

/// A worker draining its queue in batches: every item queued since its last pass is handed to
/// `work` at once.
#[cfg(not(madsim))]
fn spawn_worker<T, E, F>(name: &str, events: mpsc::UnboundedSender<E>, mut work: F) -> Worker<T>
where
    T: Send + 'static,
    E: From<Done> + Send + 'static,
    F: FnMut(Vec<T>) -> Done + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel::<T>();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                if events.send(E::from(work(batch))).is_err() {
                    break;
                }
            }
        });
    match spawned {
        Ok(handle) => Worker {
            tx: Some(tx),
            join: Some(handle),
        },
        Err(e) => {
            // Without the thread the owner does the work inline (`send` gives items back).
            error!("cannot start the {name} thread: {e}; working inline");
            Worker {
                tx: None,
                join: None,
            }
        }
    }
}

/// How long a simulated sync takes (an SSD's fsync is milliseconds).
#[cfg(madsim)]
pub(crate) const SIM_SYNC_LATENCY: std::time::Duration = std::time::Duration::from_millis(5);

#[cfg(madsim)]
fn spawn_worker<T, E, F>(_name: &str, events: mpsc::UnboundedSender<E>, mut work: F) -> Worker<T>
where
    T: Send + 'static,
    E: From<Done> + Send + 'static,
    F: FnMut(Vec<T>) -> Done + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    let handle = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // A disk sync takes time: let the owner run (and write more) meanwhile.
            tokio::time::sleep(SIM_SYNC_LATENCY).await;
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            if events.send(E::from(work(batch))).is_err() {
                break;
            }
        }
    });
    Worker {
        tx: Some(tx),
        join: Some(handle),
    }
}
