//! `vostok bench timers`: a million pending timer messages in a broker on disk, and what they
//! cost in memory.
//!
//! ```text
//!  1. send     --count SEND_MESSAGE_V2 requests with TIMER_DELAY_SEC spread over three days,
//!              fed straight into a Broker over MmapStorage (no network), syncs answered inline
//!  2. restart  graceful shutdown, then Broker::new on the same directory: the wheel is rebuilt
//!              from the timer log
//! ```
//!
//! Memory is read from `/proc/self/status`: RssAnon (heap and stacks) is what the broker keeps
//! in memory; the timer log, wheel and CommitLog are mapped files (RssFile, page cache).

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use vostok_core::broker::timer::{TIMER_DELAY_SEC, TIMER_TOPIC};
use vostok_core::broker::{Broker, BrokerConfig, BrokerOutput};
use vostok_core::message::Properties;
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::headers::SendMessageRequestHeader;
use vostok_core::remoting::RemotingCommand;
use vostok_core::ConnId;

use super::stats::Rss;
use crate::storage::MmapStorage;
use crate::RunError;

/// Options of `vostok bench timers`.
#[derive(Debug, clap::Args)]
pub struct TimersArgs {
    /// Directory to run in (created; must be empty). [default: a fresh directory under the
    /// temporary directory]. Removed afterwards unless --keep.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Pending timers to create.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub count: u64,
    /// Keep the files written.
    #[arg(long)]
    pub keep: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn anon_kib() -> u64 {
    Rss::read(None).map_or(0, |r| r.anon_kib)
}

/// Does what the driver does with the broker's outputs: syncs inline, drops the rest.
fn drain(broker: &mut Broker<MmapStorage>) -> Result<(), RunError> {
    while let Some(output) = broker.poll_output() {
        match output {
            BrokerOutput::Sync(sync) => broker.sync_inline(now_ms(), &sync),
            BrokerOutput::Checkpoint(request) => broker.write_checkpoint_inline(now_ms(), &request),
            _ => {}
        }
    }
    Ok(())
}

fn timer_send(seq: u64) -> RemotingCommand {
    let mut properties = Properties::new();
    // Spread over three days minus a minute, so none is due during the run.
    let delay_sec = 60 + (seq * 7_919) % (3 * 86_400 - 120);
    properties.insert(TIMER_DELAY_SEC, delay_sec.to_string());
    properties.insert("TAGS", "bench");
    let header = SendMessageRequestHeader {
        producer_group: "bench_timers".into(),
        topic: "BenchTimers".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: (seq % 4) as i32,
        sys_flag: 0,
        born_timestamp_ms: now_ms() as i64,
        flag: 0,
        properties: Some(properties.encode()),
        reconsume_times: Some(0),
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
        broker_name: None,
    };
    let mut cmd = RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_body(Bytes::from(format!("timer-{seq:010}-{}", "x".repeat(80))));
    header.write_to(&mut cmd, true);
    cmd.opaque = seq as i32;
    cmd
}

/// Runs the benchmark and prints its summary.
pub async fn run(args: TimersArgs) -> Result<(), RunError> {
    tokio::task::spawn_blocking(move || run_blocking(args))
        .await
        .map_err(|e| RunError::Task(format!("bench timers: {e}")))?
}

fn run_blocking(args: TimersArgs) -> Result<(), RunError> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("vostok-bench-timers-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| RunError::Task(format!("{}: {e}", dir.display())))?;
    let result = measure(&args, &dir);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn open(dir: &std::path::Path) -> Result<Broker<MmapStorage>, RunError> {
    let storage =
        MmapStorage::open(dir).map_err(|e| RunError::Task(format!("{}: {e}", dir.display())))?;
    Broker::new(BrokerConfig::default(), storage, now_ms())
        .map_err(|e| RunError::Task(format!("broker: {e}")))
}

fn measure(args: &TimersArgs, dir: &std::path::Path) -> Result<(), RunError> {
    let anon_before = anon_kib();
    let mut broker = open(dir)?;
    let anon_open = anon_kib();
    let started = Instant::now();
    for seq in 0..args.count {
        broker.handle_request(now_ms(), ConnId(1), timer_send(seq));
        while let Some(output) = broker.poll_output() {
            match output {
                BrokerOutput::Send { command, .. } if command.code != response::SUCCESS => {
                    return Err(RunError::Task(format!(
                        "send {seq} refused: {} {:?}",
                        command.code, command.remark
                    )));
                }
                BrokerOutput::Sync(sync) => broker.sync_inline(now_ms(), &sync),
                BrokerOutput::Checkpoint(request) => {
                    broker.write_checkpoint_inline(now_ms(), &request)
                }
                _ => {}
            }
        }
        if seq % 10_000 == 0 {
            broker.handle_timeout(now_ms());
            drain(&mut broker)?;
        }
    }
    broker.handle_timeout(now_ms());
    drain(&mut broker)?;
    let send_secs = started.elapsed().as_secs_f64();
    let anon_sent = anon_kib();
    let stats = broker.timer_stats();
    let queued = broker.store().max_offset(TIMER_TOPIC, 0).0;

    broker.shutdown(now_ms());
    drain(&mut broker)?;
    drop(broker);
    let anon_closed = anon_kib();
    let reopened = Instant::now();
    let broker = open(dir)?;
    let reopen_secs = reopened.elapsed().as_secs_f64();
    let anon_reopened = anon_kib();
    let after = broker.timer_stats();
    let wheel_bytes = std::fs::metadata(dir.join("timerwheel")).map_or(0, |m| m.len());

    println!(
        "timers sent:        {} ({queued} in {TIMER_TOPIC})",
        args.count
    );
    println!(
        "send:               {send_secs:.1} s ({:.0} timers/s)",
        args.count as f64 / send_secs.max(1e-9)
    );
    println!(
        "pending in wheel:   {} (after restart {}), timer log {:.1} MiB in {} segments, wheel \
         file {:.1} MiB",
        stats.pending,
        after.pending,
        stats.log_end as f64 / 1048576.0,
        stats.log_segments,
        wheel_bytes as f64 / 1048576.0
    );
    println!(
        "in-memory timer state: {} entries (one per timer log segment)",
        stats.memory_entries
    );
    println!(
        "RssAnon: {:.1} MiB before, {:.1} MiB open, {:.1} MiB with all timers pending \
         (+{:.1} MiB), {:.1} MiB closed, {:.1} MiB after reopening",
        mib(anon_before),
        mib(anon_open),
        mib(anon_sent),
        mib(anon_sent.saturating_sub(anon_open)),
        mib(anon_closed),
        mib(anon_reopened)
    );
    println!("restart (recovery + wheel rebuild): {reopen_secs:.2} s");
    Ok(())
}
