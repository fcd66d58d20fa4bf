//! `vostok bench suite`: the standard table, in one run, so every change can show its effect.
//!
//! ```text
//!  loopback ceiling        raw TCP round trips (1 and 16 connections) and streaming
//!  for ASYNC_FLUSH, then SYNC_FLUSH, on a fresh broker of its own:
//!    sync send  1 / 4 / 16 producers      fresh
//!    burst      16 producers              (its own row)
//!    sync send  1 / 4 / 16 producers      after the burst
//!  on the ASYNC_FLUSH broker:
//!    async send 4 producers, 1024 in flight
//!    drain      a backlog of --drain messages, 8 queues, batch 32
//! ```
//!
//! Every row gives msg/s, latency p50/p99 (ms), the broker's CPU µs per message and cores busy
//! ([`super::cpu`]) and its peak RSS. The broker is a child `vostok standalone` process by default
//! (its CPU and memory are its own); `--in-process` runs it on its own threads in this process.
//! Text (a table) on stdout, or one JSON object with `--json`; progress goes to stderr.

use std::time::Duration;

use serde_json::{json, Value};

use super::{
    consume_on, loopback, produce, produce_on, BrokerArgs, BrokerUnderTest, ConsumeArgs, FlushArg,
    ModeArg, ProduceArgs, SendArgs, SerializeArg, TopicArgs, ViaArg,
};
use crate::RunError;

/// Options of `vostok bench suite`.
#[derive(Clone, Debug, clap::Args)]
pub struct SuiteArgs {
    /// Seconds each send row runs (the burst included).
    #[arg(short = 'd', long, default_value_t = 5.0)]
    pub duration: f64,
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// Messages in the backlog the drain row reads.
    #[arg(long, default_value_t = 200_000)]
    pub drain: u64,
    /// Run the brokers in this process (on threads of their own) instead of child processes.
    #[arg(long)]
    pub in_process: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The producer counts of the sync send rows.
const PRODUCERS: [usize; 3] = [1, 4, 16];
/// Producers of the burst, and of the async row.
const BURST_PRODUCERS: usize = 16;
const ASYNC_PRODUCERS: usize = 4;

/// One row of the table, from a produce or consume report.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    name: String,
    flush: &'static str,
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    cpu_us_per_msg: Option<f64>,
    cores: Option<f64>,
    peak_rss_mib: Option<f64>,
}

impl Row {
    /// Reads a row from a report's JSON: `totals_key` names its totals (`send`, `consume`).
    fn from_report(name: String, flush: &'static str, report: &Value, totals_key: &str) -> Row {
        let totals = &report[totals_key];
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        Row {
            name,
            flush,
            msgs_per_s: f(&totals["tps"]),
            p50_ms: f(&totals["latency_ms"]["p50"]),
            p99_ms: f(&totals["latency_ms"]["p99"]),
            failed: totals["send_failed"].as_u64().unwrap_or(0)
                + totals["response_failed"].as_u64().unwrap_or(0),
            cpu_us_per_msg: report["broker_cpu"]["total_us_per_msg"].as_f64(),
            cores: report["broker_cpu"]["cores"].as_f64(),
            peak_rss_mib: report["rss"]["peak_rss_mib"].as_f64(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "flush": self.flush,
            "msgs_per_s": self.msgs_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "failed": self.failed,
            "broker_cpu_us_per_msg": self.cpu_us_per_msg,
            "broker_cores": self.cores,
            "broker_peak_rss_mib": self.peak_rss_mib,
        })
    }

    fn line(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
        };
        format!(
            "| {:<28} | {:<11} | {:>9.0} | {:>8.3} | {:>8.3} | {:>6} | {:>10} | {:>5} | {:>8} |",
            self.name,
            self.flush,
            self.msgs_per_s,
            self.p50_ms,
            self.p99_ms,
            self.failed,
            opt(self.cpu_us_per_msg, 1),
            opt(self.cores, 2),
            opt(self.peak_rss_mib, 0),
        )
    }
}

/// The table's header and rule, in the widths of [`Row::line`].
fn table_header() -> [String; 2] {
    let header = format!(
        "| {:<28} | {:<11} | {:>9} | {:>8} | {:>8} | {:>6} | {:>10} | {:>5} | {:>8} |",
        "row", "flush", "msg/s", "p50 ms", "p99 ms", "failed", "CPU µs/msg", "cores", "RSS MiB"
    );
    let rule = format!(
        "|{}|{}|{}|{}|{}|{}|{}|{}|{}|",
        "-".repeat(30),
        "-".repeat(13),
        "-".repeat(11),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(8),
        "-".repeat(12),
        "-".repeat(7),
        "-".repeat(10)
    );
    [header, rule]
}

fn broker_args(args: &SuiteArgs, flush: FlushArg) -> BrokerArgs {
    BrokerArgs {
        namesrv: String::new(),
        standalone: args.in_process,
        standalone_child: !args.in_process,
        flush,
        broker_pid: None,
        serialize: SerializeArg::Rocketmq,
        timeout_ms: 3000,
        json: false,
        grpc_addr: String::new(),
    }
}

fn topic_args() -> TopicArgs {
    TopicArgs {
        topic: "BenchmarkTest".to_owned(),
        topics: 1,
        queues: 8,
    }
}

fn send_args(args: &SuiteArgs, mode: ModeArg, producers: usize) -> SendArgs {
    SendArgs {
        size: args.size,
        producers,
        mode,
        inflight: 1024,
        via: ViaArg::Client,
        connections: 1,
        duration: Some(args.duration),
        count: None,
        with_loopback: false,
        loopback_duration: 3.0,
    }
}

/// Runs one send row against `broker`.
async fn send_row(
    args: &SuiteArgs,
    broker: &BrokerUnderTest,
    flush: FlushArg,
    name: String,
    mode: ModeArg,
    producers: usize,
) -> Result<Row, RunError> {
    eprintln!("bench suite: {name}, {}", flush.name());
    let produce = ProduceArgs {
        broker: broker_args(args, flush),
        topic: topic_args(),
        send: send_args(args, mode, producers),
        grpc: false,
    };
    let (report, _) = produce_on(&produce, broker, None).await?;
    Ok(Row::from_report(name, flush.name(), &report, "send"))
}

/// The rows of one flush type, on a broker of their own.
async fn flush_rows(args: &SuiteArgs, flush: FlushArg) -> Result<Vec<Row>, RunError> {
    let broker = BrokerUnderTest::start(&broker_args(args, flush)).await?;
    let rows = flush_rows_on(args, &broker, flush).await;
    broker.stop().await;
    rows
}

async fn flush_rows_on(
    args: &SuiteArgs,
    broker: &BrokerUnderTest,
    flush: FlushArg,
) -> Result<Vec<Row>, RunError> {
    let mut rows = Vec::new();
    for state in ["fresh", "after burst"] {
        if state == "after burst" {
            let name = format!("burst, {BURST_PRODUCERS} producers");
            rows.push(send_row(args, broker, flush, name, ModeArg::Sync, BURST_PRODUCERS).await?);
        }
        for producers in PRODUCERS {
            let name = format!("sync send {producers:>2}, {state}");
            rows.push(send_row(args, broker, flush, name, ModeArg::Sync, producers).await?);
        }
    }
    if flush == FlushArg::AsyncFlush {
        let name = format!("async send {ASYNC_PRODUCERS}, 1024 in flight");
        rows.push(send_row(args, broker, flush, name, ModeArg::Async, ASYNC_PRODUCERS).await?);
        eprintln!("bench suite: drain of {} messages", args.drain);
        let consume = ConsumeArgs {
            broker: broker_args(args, flush),
            topic: TopicArgs {
                topic: "BenchmarkDrain".to_owned(),
                ..topic_args()
            },
            consumers: 1,
            group: "benchmark_suite_drain".to_owned(),
            batch: 32,
            fill: Some(args.drain),
            size: args.size,
            count: None,
            duration: None,
            pop: false,
            pop_consumers: Vec::new(),
            grpc: false,
            grpc_consumers: Vec::new(),
        };
        let (report, _) = consume_on(&consume, broker).await?;
        let name = format!("drain {} messages", args.drain);
        rows.push(Row::from_report(name, flush.name(), &report, "consume"));
    }
    Ok(rows)
}

/// Runs the whole suite and prints it.
pub async fn run(args: SuiteArgs) -> Result<(), RunError> {
    if !super::positive_secs(args.duration) {
        return Err(RunError::Usage("--duration must be positive".into()));
    }
    if args.drain == 0 {
        return Err(RunError::Usage("--drain must be at least 1".into()));
    }
    eprintln!("bench suite: the loopback ceiling");
    let ceiling = loopback::measure(
        produce::sample_frame(args.size, SerializeArg::Rocketmq.into()),
        BURST_PRODUCERS,
        Duration::from_secs(3),
    )
    .await?;
    let mut rows = flush_rows(&args, FlushArg::AsyncFlush).await?;
    rows.extend(flush_rows(&args, FlushArg::SyncFlush).await?);
    let machine = machine();
    if args.json {
        let json = json!({
            "command": "suite",
            "machine": machine,
            "size_bytes": args.size,
            "row_duration_s": args.duration,
            "broker": if args.in_process { "in-process" } else { "child process" },
            "loopback": ceiling.to_json(),
            "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        });
        println!("{json}");
    } else {
        println!(
            "vostok bench suite: {} cores, {}; {} byte bodies, {} s per row, broker {}",
            machine["cores"],
            machine["cpu"].as_str().unwrap_or("?"),
            args.size,
            args.duration,
            if args.in_process {
                "in-process"
            } else {
                "child process"
            }
        );
        for line in ceiling.lines() {
            println!("{line}");
        }
        println!();
        for line in table_header() {
            println!("{line}");
        }
        for row in &rows {
            println!("{}", row.line());
        }
    }
    Ok(())
}

/// The machine the table was measured on: cores and CPU model.
fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    json!({ "cores": cores, "cpu": cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_its_report() {
        let report = json!({
            "send": {"tps": 2800.0, "send_failed": 1, "response_failed": 2,
                     "latency_ms": {"p50": 0.34, "p99": 1.2}},
            "broker_cpu": {"total_us_per_msg": 41.5, "cores": 0.12},
            "rss": {"peak_rss_mib": 97.0},
        });
        let row = Row::from_report("sync send  1, fresh".into(), "SYNC_FLUSH", &report, "send");
        assert_eq!(row.msgs_per_s, 2800.0);
        assert_eq!(row.failed, 3);
        assert_eq!(row.cpu_us_per_msg, Some(41.5));
        let line = row.line();
        assert!(line.contains("sync send  1, fresh"), "{line}");
        assert!(line.contains("41.5"), "{line}");
        let [header, rule] = table_header();
        assert_eq!(
            line.chars().count(),
            header.chars().count(),
            "{line}\n{header}"
        );
        assert_eq!(
            rule.chars().count(),
            header.chars().count(),
            "{rule}\n{header}"
        );
        // A report without the broker's CPU (an external broker without --broker-pid).
        let bare = Row::from_report("x".into(), "ASYNC_FLUSH", &json!({"send": {}}), "send");
        assert_eq!(bare.cpu_us_per_msg, None);
        assert!(bare.line().contains(" - "));
    }
}
