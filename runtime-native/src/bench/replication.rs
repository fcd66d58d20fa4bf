//! `vostok bench replication`: what replication costs a send, and how far a slave trails.
//!
//! ```text
//!  loopback ceiling, append+fdatasync probe            this machine's own limits
//!  for ASYNC_MASTER, then SYNC_MASTER, a fresh group of its own (in this process, loopback,
//!  temporary stores, --flush as the other benches: ASYNC_FLUSH by default):
//!    master (brokerId 0) + one slave (brokerId 1)       `Standalone::start_with_slaves`
//!    --warmup s of 16 producers, not measured           the stores' files get created
//!    sync sends with 1, then 16 producers               msg/s, send latency p50/p99
//!    meanwhile, every --sample-ms: GET_BROKER_HA_STATUS (907) on the master
//!      → lag in bytes  = the master's CommitLog end − the slave's acked offset
//!      → lag in ms     = for each end the master reached, how long until the ack reached it
//! ```
//!
//! The ms lag is read from the samples: each time a sample shows the master's end past its
//! previous value, that end and the sample's time are kept; when a later sample shows the
//! slave's ack at or past a kept end, the time between the two samples is one lag value. Its
//! resolution is therefore the sampling period (plus one 907 round trip), which the report
//! states. After the sends stop, sampling goes on until the ack reaches the last end (at most
//! [`TAIL_WAIT`]) so the tail of the run is measured too.
//!
//! Every row is bounded by `--duration` and, if given, `--count`; the whole run stops by itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use vostok_core::broker::BrokerRole;
use vostok_core::remoting::codes::request;
use vostok_core::remoting::{RemotingCommand, SerializeType};

use super::direct::Conn;
use super::stats::round3;
use super::{
    loopback, produce, produce_on, BrokerArgs, BrokerUnderTest, FlushArg, InProcessBroker, ModeArg,
    ProduceArgs, SendArgs, SerializeArg, TopicArgs, ViaArg,
};
use crate::{RunError, SlaveOptions};

/// Producer counts of the rows.
const PRODUCERS: [usize; 2] = [1, 16];
/// The roles measured, in order.
const ROLES: [BrokerRole; 2] = [BrokerRole::AsyncMaster, BrokerRole::SyncMaster];
/// How long sampling continues after the sends for the ack to reach the master's last end.
const TAIL_WAIT: Duration = Duration::from_secs(2);
/// Appends of the fdatasync probe.
const FSYNC_PROBES: u32 = 300;
/// Bytes per append of the fdatasync probe (a page: what one small send adds to a segment).
const FSYNC_PROBE_BYTES: usize = 4096;
/// A 907 answer later than this is a failed sample.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Options of `vostok bench replication`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplicationArgs {
    /// Seconds each row sends.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    pub duration: f64,
    /// Also stop a row after this many messages.
    #[arg(short = 'q', long)]
    pub count: Option<u64>,
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// How often the slave's lag is sampled, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pub sample_ms: u64,
    /// Flush type of both brokers of each group.
    #[arg(long, value_enum, default_value_t = FlushArg::AsyncFlush)]
    pub flush: FlushArg,
    /// Seconds of unmeasured sends (16 producers) on each fresh group before its rows: the first
    /// appends of a fresh store create its files (CommitLog segment, index, ConsumeQueues),
    /// which stalls the slave once; 0 measures that too.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds the loopback ceiling takes (0 skips it and the fdatasync probe).
    #[arg(long, default_value_t = 3.0)]
    pub ceiling_duration: f64,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The slave's lag over one row.
struct Lag {
    bytes: Histogram<u64>,
    /// Microseconds.
    time_us: Histogram<u64>,
    samples: u64,
    failed_samples: u64,
    /// Ends the ack had not reached when sampling stopped.
    unreached: usize,
}

impl Lag {
    fn new() -> Self {
        // Bounds are constants HdrHistogram accepts.
        Lag {
            bytes: Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid bounds"),
            time_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            samples: 0,
            failed_samples: 0,
            unreached: 0,
        }
    }

    fn bytes_at(&self, q: f64) -> u64 {
        if self.bytes.is_empty() {
            0
        } else {
            self.bytes.value_at_quantile(q)
        }
    }

    fn ms_at(&self, q: f64) -> f64 {
        if self.time_us.is_empty() {
            0.0
        } else {
            self.time_us.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

/// The master's CommitLog end and its slave's acked offset, from GET_BROKER_HA_STATUS.
fn ends_of(answer: &RemotingCommand) -> Option<(u64, u64)> {
    let v: Value = serde_json::from_slice(&answer.body).ok()?;
    let master_end = v["masterCommitLogMaxOffset"].as_u64()?;
    let acked = v["haConnectionInfo"]
        .as_array()?
        .iter()
        .filter_map(|l| l["slaveAckOffset"].as_u64())
        .max()?;
    Some((master_end, acked))
}

/// Samples the master every `period` until `stop` is set and the ack has reached the last end
/// seen (or [`TAIL_WAIT`] passed after the stop).
async fn sample_lag(conn: Conn, period: Duration, stop: Arc<AtomicBool>) -> Lag {
    let mut lag = Lag::new();
    // Ends the master reached, with the instant a sample first showed each; increasing.
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut last_end = 0u64;
    let mut stopped_at: Option<Instant> = None;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Read before the sample, so the sample after the stop sees the sends' last end.
        if stopped_at.is_none() && stop.load(Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
        }
        let asked = RemotingCommand::request(request::GET_BROKER_HA_STATUS);
        let Some((end, acked)) = conn
            .call(asked, SAMPLE_TIMEOUT)
            .await
            .ok()
            .and_then(|a| ends_of(&a))
        else {
            lag.failed_samples += 1;
            if stopped_at.is_some_and(|t| t.elapsed() > TAIL_WAIT) {
                break;
            }
            continue;
        };
        let now = Instant::now();
        lag.samples += 1;
        let _ = lag.bytes.record(end.saturating_sub(acked));
        if end > last_end {
            pending.push_back((end, now));
            last_end = end;
        }
        while let Some(&(reached, since)) = pending.front() {
            if acked < reached {
                break;
            }
            pending.pop_front();
            let _ = lag
                .time_us
                .record(now.duration_since(since).as_micros() as u64);
        }
        if stopped_at.is_some_and(|t| pending.is_empty() || t.elapsed() > TAIL_WAIT) {
            break;
        }
    }
    lag.unreached = pending.len();
    lag
}

/// One row of the table.
struct Row {
    role: BrokerRole,
    producers: usize,
    /// Messages whose send succeeded.
    messages: u64,
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    lag: Lag,
}

impl Row {
    fn to_json(&self) -> Value {
        json!({
            "role": self.role.name(),
            "producers": self.producers,
            "messages": self.messages,
            "msgs_per_s": round3(self.msgs_per_s),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "failed": self.failed,
            "lag_p50_bytes": self.lag.bytes_at(0.5),
            "lag_p99_bytes": self.lag.bytes_at(0.99),
            "lag_max_bytes": self.lag.bytes.max(),
            "lag_p50_ms": round3(self.lag.ms_at(0.5)),
            "lag_p99_ms": round3(self.lag.ms_at(0.99)),
            "lag_max_ms": round3(self.lag.time_us.max() as f64 / 1000.0),
            "lag_samples": self.lag.samples,
            "lag_failed_samples": self.lag.failed_samples,
            "lag_unreached_ends": self.lag.unreached,
        })
    }

    fn line(&self) -> String {
        format!(
            "| {:<12} | {:>9} | {:>9.0} | {:>8.3} | {:>8.3} | {:>6} | {:>11} | {:>11} | {:>10.3} | {:>10.3} |",
            self.role.name(),
            self.producers,
            self.msgs_per_s,
            self.p50_ms,
            self.p99_ms,
            self.failed,
            self.lag.bytes_at(0.5),
            self.lag.bytes_at(0.99),
            self.lag.ms_at(0.5),
            self.lag.ms_at(0.99),
        )
    }
}

fn table_header() -> [String; 2] {
    let header = format!(
        "| {:<12} | {:>9} | {:>9} | {:>8} | {:>8} | {:>6} | {:>11} | {:>11} | {:>10} | {:>10} |",
        "role",
        "producers",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "lag p50 B",
        "lag p99 B",
        "lag p50 ms",
        "lag p99 ms"
    );
    let widths = [14, 11, 11, 10, 10, 8, 13, 13, 12, 12];
    let rule = widths
        .iter()
        .map(|w| "-".repeat(*w))
        .collect::<Vec<_>>()
        .join("|");
    [header, format!("|{rule}|")]
}

fn broker_args(args: &ReplicationArgs) -> BrokerArgs {
    BrokerArgs {
        namesrv: String::new(),
        standalone: true,
        standalone_child: false,
        flush: args.flush,
        broker_pid: None,
        serialize: SerializeArg::Rocketmq,
        timeout_ms: 3000,
        json: false,
        grpc_addr: String::new(),
    }
}

/// Sync sends through the client by `producers`, bounded by the row's duration and count.
fn produce_args(args: &ReplicationArgs, producers: usize) -> ProduceArgs {
    ProduceArgs {
        broker: broker_args(args),
        topic: TopicArgs {
            topic: "BenchmarkReplication".to_owned(),
            topics: 1,
            queues: 8,
        },
        send: SendArgs {
            size: args.size,
            producers,
            mode: ModeArg::Sync,
            inflight: 1024,
            via: ViaArg::Client,
            connections: 1,
            duration: Some(args.duration),
            count: args.count,
            with_loopback: false,
            loopback_duration: 3.0,
        },
        grpc: false,
    }
}

/// The rows of one role, on a fresh group of their own.
async fn role_rows(args: &ReplicationArgs, role: BrokerRole) -> Result<Vec<Row>, RunError> {
    let data_dir = super::scratch_dir();
    let group = InProcessBroker::start_group(
        super::in_process_options(&data_dir, args.flush),
        SlaveOptions {
            count: 1,
            master_role: Some(role),
        },
    )
    .await?;
    let master = group.broker.clone();
    let broker = BrokerUnderTest {
        namesrv: group.namesrv.clone(),
        grpc: group.grpc.clone(),
        kind: "standalone-in-process",
        flush: Some(args.flush),
        in_process: Some(group),
        child: None,
        data_dir: Some(data_dir),
        pid: None,
    };
    let rows = rows_on(args, role, &broker, &master).await;
    broker.stop().await;
    rows
}

async fn rows_on(
    args: &ReplicationArgs,
    role: BrokerRole,
    broker: &BrokerUnderTest,
    master: &str,
) -> Result<Vec<Row>, RunError> {
    let mut rows = Vec::new();
    if args.warmup > 0.0 {
        eprintln!("bench replication: {}, warm-up", role.name());
        let mut warmup = produce_args(args, PRODUCERS[PRODUCERS.len() - 1]);
        warmup.send.duration = Some(args.warmup);
        warmup.send.count = None;
        produce_on(&warmup, broker, None).await?;
    }
    for producers in PRODUCERS {
        eprintln!(
            "bench replication: {}, {producers} producer(s)",
            role.name()
        );
        let produce = produce_args(args, producers);
        let stop = Arc::new(AtomicBool::new(false));
        let sampler_conn = Conn::connect(master, SerializeType::RocketMq).await?;
        let sampler = tokio::spawn(sample_lag(
            sampler_conn,
            Duration::from_millis(args.sample_ms),
            stop.clone(),
        ));
        let report = produce_on(&produce, broker, None).await;
        stop.store(true, Ordering::Relaxed);
        let lag = sampler
            .await
            .map_err(|e| RunError::Task(format!("lag sampler: {e}")))?;
        let (report, _) = report?;
        let send = &report["send"];
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        rows.push(Row {
            role,
            producers,
            messages: send["messages"].as_u64().unwrap_or(0),
            msgs_per_s: f(&send["tps"]),
            p50_ms: f(&send["latency_ms"]["p50"]),
            p99_ms: f(&send["latency_ms"]["p99"]),
            failed: send["send_failed"].as_u64().unwrap_or(0)
                + send["response_failed"].as_u64().unwrap_or(0),
            lag,
        });
    }
    Ok(rows)
}

/// `FSYNC_PROBES` appends of a page, each followed by fdatasync, in the temporary directory
/// the stores use: (p50, p99) in ms.
fn fdatasync_probe() -> Result<(f64, f64), RunError> {
    use std::io::Write;
    let dir = super::scratch_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fdatasync-probe");
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let page = vec![0x5Au8; FSYNC_PROBE_BYTES];
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        for _ in 0..FSYNC_PROBES {
            let started = Instant::now();
            file.write_all(&page)?;
            file.sync_data()?;
            let _ = h.record((started.elapsed().as_micros() as u64).max(1));
        }
        Ok::<_, std::io::Error>((
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        ))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result?)
}

/// Runs every row and prints the table.
pub async fn run(args: ReplicationArgs) -> Result<(), RunError> {
    if !super::positive_secs(args.duration) {
        return Err(RunError::Usage("--duration must be positive".into()));
    }
    if args.count == Some(0) {
        return Err(RunError::Usage("--count must be at least 1".into()));
    }
    if args.sample_ms == 0 {
        return Err(RunError::Usage("--sample-ms must be at least 1".into()));
    }
    if !(args.warmup.is_finite() && args.warmup >= 0.0) {
        return Err(RunError::Usage("--warmup must be 0 or positive".into()));
    }
    if !(args.ceiling_duration.is_finite() && args.ceiling_duration >= 0.0) {
        return Err(RunError::Usage(
            "--ceiling-duration must be 0 or positive".into(),
        ));
    }
    let ceiling = if args.ceiling_duration > 0.0 {
        eprintln!("bench replication: the loopback ceiling and the fdatasync probe");
        let loopback = loopback::measure(
            produce::sample_frame(args.size, SerializeArg::Rocketmq.into()),
            PRODUCERS[PRODUCERS.len() - 1],
            Duration::from_secs_f64(args.ceiling_duration),
        )
        .await?;
        let fsync = tokio::task::spawn_blocking(fdatasync_probe)
            .await
            .map_err(|e| RunError::Task(format!("fdatasync probe: {e}")))??;
        Some((loopback, fsync))
    } else {
        None
    };
    let mut rows = Vec::new();
    for role in ROLES {
        rows.extend(role_rows(&args, role).await?);
    }
    // SYNC_MASTER's rate at the most producers as a share of ASYNC_MASTER's.
    let most = PRODUCERS[PRODUCERS.len() - 1];
    let rate = |role: BrokerRole| {
        rows.iter()
            .find(|r| r.role == role && r.producers == most)
            .map_or(0.0, |r| r.msgs_per_s)
    };
    let sync_share = match rate(BrokerRole::AsyncMaster) {
        a if a > 0.0 => rate(BrokerRole::SyncMaster) / a,
        _ => 0.0,
    };
    if args.json {
        let json = json!({
            "command": "replication",
            "size_bytes": args.size,
            "row_duration_s": args.duration,
            "row_count": args.count,
            "flush": args.flush.name(),
            "sample_ms": args.sample_ms,
            "warmup_s": args.warmup,
            "loopback": ceiling.as_ref().map_or(Value::Null, |(l, _)| l.to_json()),
            "fdatasync_probe": ceiling.as_ref().map_or(Value::Null, |(_, (p50, p99))| json!({
                "append_bytes": FSYNC_PROBE_BYTES,
                "appends": FSYNC_PROBES,
                "p50_ms": round3(*p50),
                "p99_ms": round3(*p99),
            })),
            "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "sync_over_async_msgs_share": round3(sync_share),
        });
        println!("{json}");
        return Ok(());
    }
    println!(
        "vostok bench replication: 1 master + 1 slave per role, in-process on loopback, {}, {} \
         byte bodies, {} s warm-up, {} s per row{}, lag sampled every {} ms",
        args.flush.name(),
        args.size,
        args.warmup,
        args.duration,
        args.count
            .map_or(String::new(), |c| format!(" or {c} messages")),
        args.sample_ms
    );
    if let Some((loopback, (p50, p99))) = &ceiling {
        for line in loopback.lines() {
            println!("{line}");
        }
        println!(
            "disk: {FSYNC_PROBE_BYTES} B append + fdatasync ({FSYNC_PROBES}): p50 {p50:.3} p99 \
             {p99:.3} ms"
        );
    }
    println!();
    for line in table_header() {
        println!("{line}");
    }
    for row in &rows {
        println!("{}", row.line());
    }
    println!();
    println!(
        "SYNC_MASTER msg/s at {most} producers: {:.0} % of ASYNC_MASTER's",
        sync_share * 100.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_come_from_the_masters_ha_status() {
        let body = json!({
            "master": true,
            "masterCommitLogMaxOffset": 5000,
            "haConnectionInfo": [{"addr": "127.0.0.1:1", "slaveAckOffset": 4000}],
        });
        let answer = RemotingCommand::request(0).with_body(serde_json::to_vec(&body).unwrap());
        assert_eq!(ends_of(&answer), Some((5000, 4000)));
        let no_slave = json!({"masterCommitLogMaxOffset": 5000, "haConnectionInfo": []});
        let answer = RemotingCommand::request(0).with_body(serde_json::to_vec(&no_slave).unwrap());
        assert_eq!(ends_of(&answer), None);
    }
}
