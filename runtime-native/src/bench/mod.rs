//! `vostok bench`: load generators modelled on RocketMQ's benchmark tools, and the machine's own
//! ceilings measured in the same run.
//!
//! * `produce` — N producers send messages of `--size` bytes (sync, async or oneway) for
//!   `--duration` seconds or `--count` messages; TPS and send latency p50/p99/p999/max.
//! * `consume` — the drain rate of a backlog (filled first with `--fill`).
//! * `e2e` — produce while consuming; latency from the send time stamped in each body to its
//!   consumption.
//! * `loopback` — raw TCP round trips and streaming on 127.0.0.1 with the same framing and
//!   message size ([`loopback`]); `--with-loopback` runs it first in `produce`/`e2e` and states
//!   the results as multiples of it.
//! * `timers` — a million pending timer messages in an in-process broker on disk: memory and
//!   restart time ([`timers`]).
//! * `suite` — the standard table of all of the above in one run ([`suite`]).
//! * `replication` — ASYNC_MASTER and SYNC_MASTER groups with one slave each: send rate,
//!   latency and the slave's lag in bytes and ms ([`replication`]).
//!
//! Every produce, consume and e2e report gives the broker's CPU time per message when its
//! process (or, in-process, its threads) is known ([`cpu`]).
//!
//! `produce --grpc` and `consume --grpc` run the same load again through the broker's gRPC port
//! (RocketMQ 5's protocol, [`grpc`]) and state each rate as a share of the remoting one.
//!
//! Against `--namesrv` (an already running broker), or `--standalone` (a NameServer and Broker
//! in this process on a temporary data directory) or `--standalone-child` (the same as a child
//! `vostok standalone` process, so its own memory can be read). A progress line goes to stderr
//! every second; the summary to stdout as text, or as one JSON object with `--json`.
//!
//! Producers send through the Rust client ([`crate::client::Producer`], `--via client`, the
//! default) or the bench's own pipelined connection ([`direct`], `--via direct`), which adds
//! nothing but framing. Pulls (consume, e2e) and the `--fill` of a backlog use the direct
//! connection.

pub mod consume;
pub mod cpu;
pub mod direct;
pub mod grpc;
pub mod loopback;
pub mod pop;
pub mod produce;
pub mod replication;
pub mod report;
pub mod stats;
pub mod store;
pub mod suite;
pub mod timers;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use vostok_core::broker::FlushDiskType;
use vostok_core::remoting::SerializeType;

use crate::{BrokerOptions, RunError, Standalone, StandaloneOptions};
use direct::Conn;
use produce::{QueueTarget, SendPlan};
use stats::{Progress, Recorder, RssProbe, Series};

/// The benchmarks `vostok bench` runs.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Storage engine: append throughput against the disk's raw sequential write speed, and
    /// recovery time of a CommitLog.
    Store(store::StoreArgs),
    /// Send messages: TPS and send latency (RocketMQ's benchmark Producer).
    Produce(ProduceArgs),
    /// Drain a backlog: messages pulled and decoded per second (RocketMQ's benchmark Consumer).
    Consume(ConsumeArgs),
    /// Produce while consuming: end-to-end latency from send to consumption.
    E2e(E2eArgs),
    /// This machine's ceiling: TCP round trips and streaming on 127.0.0.1 with the same framing.
    Loopback(loopback::LoopbackArgs),
    /// Pending timer messages (a million by default) in a broker on disk: memory and restart.
    Timers(timers::TimersArgs),
    /// The standard table: loopback ceiling; sync sends with 1, 4 and 16 producers under
    /// ASYNC_FLUSH and SYNC_FLUSH, fresh and after a burst; async send; drain. Each row with the
    /// broker's CPU µs/msg and RSS.
    Suite(suite::SuiteArgs),
    /// Replicated groups (a master and one slave, in this process): ASYNC_MASTER and
    /// SYNC_MASTER at 1 and 16 producers, msg/s, send latency and the slave's lag.
    Replication(replication::ReplicationArgs),
}

/// Runs one benchmark to completion.
pub async fn run(command: BenchCommand) -> Result<(), RunError> {
    match command {
        BenchCommand::Store(args) => store::run(args).await,
        BenchCommand::Produce(args) => run_produce(args).await,
        BenchCommand::Consume(args) => run_consume(args).await,
        BenchCommand::E2e(args) => run_e2e(args).await,
        BenchCommand::Loopback(args) => loopback::run(args).await,
        BenchCommand::Timers(args) => timers::run(args).await,
        BenchCommand::Suite(args) => suite::run(args).await,
        BenchCommand::Replication(args) => replication::run(args).await,
    }
}

/// Header encoding of the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SerializeArg {
    Json,
    /// The binary header, as RocketMQ's benchmark tools send.
    Rocketmq,
}

impl From<SerializeArg> for SerializeType {
    fn from(s: SerializeArg) -> Self {
        match s {
            SerializeArg::Json => SerializeType::Json,
            SerializeArg::Rocketmq => SerializeType::RocketMq,
        }
    }
}

/// How producers send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Wait for each answer before the next send.
    Sync,
    /// Keep up to `--inflight` sends outstanding; latency is send to answer.
    Async,
    /// Expect no answer; only the rate is meaningful.
    Oneway,
}

/// What the producers send through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ViaArg {
    /// The Rust client, `vostok::client::Producer` (route cache, queue choice, retries).
    Client,
    /// The bench's own pipelined connection: framing only.
    Direct,
}

/// Flush type of a broker the bench starts itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlushArg {
    AsyncFlush,
    SyncFlush,
}

impl FlushArg {
    fn name(self) -> &'static str {
        match self {
            FlushArg::AsyncFlush => "ASYNC_FLUSH",
            FlushArg::SyncFlush => "SYNC_FLUSH",
        }
    }
}

/// A duration option's value is usable: finite and above zero.
pub(crate) fn positive_secs(secs: f64) -> bool {
    secs.is_finite() && secs > 0.0
}

/// Which broker is measured, and how the results are printed.
#[derive(Clone, Debug, clap::Args)]
pub struct BrokerArgs {
    /// NameServer of the broker under test.
    #[arg(
        short = 'n',
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9876"
    )]
    pub namesrv: String,
    /// Start a NameServer and Broker in this process (temporary data directory) and measure it.
    #[arg(long)]
    pub standalone: bool,
    /// Start `vostok standalone` as a child process (temporary data directory); its memory is
    /// then the broker's alone.
    #[arg(long, conflicts_with = "standalone")]
    pub standalone_child: bool,
    /// Flush type of the broker started by --standalone / --standalone-child.
    #[arg(long, value_enum, default_value_t = FlushArg::AsyncFlush)]
    pub flush: FlushArg,
    /// Pid of an external broker, to report its resident memory.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Header encoding of the requests.
    #[arg(long, value_enum, default_value_t = SerializeArg::Rocketmq)]
    pub serialize: SerializeArg,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
    /// Print one JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// The external broker's gRPC port, for --grpc (a broker the bench starts reports its own).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    pub grpc_addr: String,
}

/// The topics written and read.
#[derive(Clone, Debug, clap::Args)]
pub struct TopicArgs {
    /// Topic name; with --topics N > 1, NAME-0 … NAME-(N-1).
    #[arg(short = 't', long, default_value = "BenchmarkTest")]
    pub topic: String,
    /// Number of topics.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Read and write queues per topic (created or updated with UPDATE_AND_CREATE_TOPIC).
    #[arg(long, default_value_t = 8)]
    pub queues: i32,
}

impl TopicArgs {
    fn names(&self) -> Vec<String> {
        if self.topics <= 1 {
            vec![self.topic.clone()]
        } else {
            (0..self.topics)
                .map(|i| format!("{}-{i}", self.topic))
                .collect()
        }
    }
}

/// How messages are sent.
#[derive(Clone, Debug, clap::Args)]
pub struct SendArgs {
    /// Message body size in bytes.
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// Concurrent producers.
    #[arg(short = 'w', long, visible_alias = "concurrency", default_value_t = 1)]
    pub producers: usize,
    /// Send mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Sync)]
    pub mode: ModeArg,
    /// Async mode: sends outstanding at once, across producers.
    #[arg(long, default_value_t = 1024)]
    pub inflight: usize,
    /// Send through the Rust client or the bench's own connection.
    #[arg(long, value_enum, default_value_t = ViaArg::Client)]
    pub via: ViaArg,
    /// --via direct: TCP connections the producers share (the client keeps one per broker).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Run this many seconds [default: 10 when --count is not given].
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,
    /// Send this many messages (the first of --duration and --count ends the run).
    #[arg(short = 'q', long)]
    pub count: Option<u64>,
    /// Measure the loopback ceiling first and state the results as multiples of it.
    #[arg(long)]
    pub with_loopback: bool,
    /// Seconds the loopback measure takes (three phases).
    #[arg(long, default_value_t = 3.0)]
    pub loopback_duration: f64,
}

/// Options of `vostok bench produce`.
#[derive(Clone, Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub send: SendArgs,
    /// After the remoting run, send the same load through the gRPC port (RocketMQ 5's
    /// SendMessage, one message per call, sync) and compare the rates.
    #[arg(long)]
    pub grpc: bool,
}

/// Options of `vostok bench consume`.
#[derive(Clone, Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Consumer connections (the queues are spread over them; one pull loop per queue).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub consumers: usize,
    /// Consumer group of the pulls.
    #[arg(short = 'g', long, default_value = "benchmark_consumer")]
    pub group: String,
    /// Messages per pull (maxMsgNums).
    #[arg(long, default_value_t = 32)]
    pub batch: i32,
    /// First send this many messages of --size bytes (async, not measured) [default: 100000
    /// with --standalone/--standalone-child, else 0].
    #[arg(long)]
    pub fill: Option<u64>,
    /// Body size of the --fill messages.
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// Stop after this many messages pulled.
    #[arg(short = 'q', long)]
    pub count: Option<u64>,
    /// Stop after this many seconds of draining.
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,
    /// After the pull drain, drain the same backlog by POP (a new group per run, any queue,
    /// every answer batch-acked) with each of --pop-consumers, and compare the rates.
    #[arg(long)]
    pub pop: bool,
    /// Consumers (connections, one POP loop each) of the POP drains.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8])]
    pub pop_consumers: Vec<usize>,
    /// After the pull drain, drain the same backlog through the gRPC port (RocketMQ 5's
    /// ReceiveMessage and AckMessage, a new group per run) with each of --grpc-consumers.
    #[arg(long)]
    pub grpc: bool,
    /// Consumers (connections, one receive loop each) of the gRPC drains.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8])]
    pub grpc_consumers: Vec<usize>,
}

/// Options of `vostok bench e2e`.
#[derive(Clone, Debug, clap::Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    #[command(flatten)]
    pub send: SendArgs,
    /// Consumer connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub consumers: usize,
    /// Consumer group of the pulls.
    #[arg(short = 'g', long, default_value = "benchmark_consumer")]
    pub group: String,
    /// Messages per pull (maxMsgNums).
    #[arg(long, default_value_t = 32)]
    pub batch: i32,
    /// Consume by POP (one loop per consumer connection, long polling, batch acks) instead
    /// of pulls.
    #[arg(long)]
    pub pop: bool,
}

/// The broker being measured: external, in this process, or a child process.
struct BrokerUnderTest {
    namesrv: String,
    /// The broker's gRPC port, when it has one.
    grpc: Option<String>,
    kind: &'static str,
    flush: Option<FlushArg>,
    in_process: Option<InProcessBroker>,
    child: Option<tokio::process::Child>,
    data_dir: Option<PathBuf>,
    pid: Option<u32>,
}

/// A NameServer and a broker on free loopback ports, storing in `data_dir` with `flush`.
fn in_process_options(data_dir: &std::path::Path, flush: FlushArg) -> StandaloneOptions {
    StandaloneOptions {
        namesrv_port: Some(0),
        broker: BrokerOptions {
            data_dir: Some(data_dir.to_path_buf()),
            broker_port: Some(0),
            flush_disk_type: Some(match flush {
                FlushArg::AsyncFlush => FlushDiskType::AsyncFlush,
                FlushArg::SyncFlush => FlushDiskType::SyncFlush,
            }),
            ..Default::default()
        },
    }
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("vostok-bench-{}-{nanos}", std::process::id()))
}

impl BrokerUnderTest {
    async fn start(args: &BrokerArgs) -> Result<Self, RunError> {
        if args.standalone {
            let data_dir = scratch_dir();
            let standalone =
                InProcessBroker::start(in_process_options(&data_dir, args.flush)).await?;
            return Ok(Self {
                namesrv: standalone.namesrv.clone(),
                grpc: standalone.grpc.clone(),
                kind: "standalone-in-process",
                flush: Some(args.flush),
                in_process: Some(standalone),
                child: None,
                data_dir: Some(data_dir),
                pid: None,
            });
        }
        if args.standalone_child {
            let data_dir = scratch_dir();
            std::fs::create_dir_all(&data_dir)?;
            let exe = std::env::current_exe()?;
            let mut child = tokio::process::Command::new(exe)
                .args(["standalone", "--namesrv-port", "0", "--broker-port", "0"])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--flush-disk-type", args.flush.name()])
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| RunError::Task("child has no stdout".into()))?;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .map_err(|_| RunError::Task("vostok standalone did not get ready".into()))??
                .ok_or_else(|| RunError::Task("vostok standalone exited".into()))?;
            eprintln!("bench: {line}");
            let namesrv = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("namesrv="))
                .ok_or_else(|| RunError::Task(format!("unexpected ready line: {line}")))?
                .to_owned();
            let grpc = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("grpc="))
                .map(str::to_owned);
            let pid = child.id();
            return Ok(Self {
                namesrv,
                grpc,
                kind: "standalone-child",
                flush: Some(args.flush),
                in_process: None,
                child: Some(child),
                data_dir: Some(data_dir),
                pid,
            });
        }
        Ok(Self {
            namesrv: args.namesrv.clone(),
            grpc: Some(args.grpc_addr.clone()),
            kind: "external",
            flush: None,
            in_process: None,
            child: None,
            data_dir: None,
            pid: args.broker_pid,
        })
    }

    /// A memory probe for the broker, when its process is known.
    fn probe(&self) -> Option<RssProbe> {
        match self.kind {
            "standalone-in-process" => Some(RssProbe::new(None, true)),
            _ => self.pid.map(|pid| RssProbe::new(Some(pid), false)),
        }
    }

    /// Whose CPU time is the broker's, when its process or threads are known.
    fn cpu(&self) -> Option<cpu::BrokerCpu> {
        match self.kind {
            "standalone-in-process" => Some(cpu::BrokerCpu::InProcess),
            _ => self.pid.map(cpu::BrokerCpu::Process),
        }
    }

    /// Starts measuring the broker's CPU time (nothing when it is not known).
    fn cpu_meter(&self) -> Option<cpu::CpuMeter> {
        self.cpu().map(cpu::CpuMeter::start)
    }

    fn json(&self) -> Value {
        json!({
            "kind": self.kind,
            "namesrv": self.namesrv,
            "flush": self.flush.map(FlushArg::name),
        })
    }

    async fn stop(self) {
        if let Some(s) = self.in_process {
            s.stop().await;
        }
        if let Some(mut child) = self.child {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        if let Some(dir) = self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A standalone NameServer and Broker in the bench's process, on a runtime of their own whose
/// threads are named [`cpu::BROKER_THREAD`]: the load generators never run on the broker's
/// threads, and the broker's CPU time can be read apart from theirs.
struct InProcessBroker {
    namesrv: String,
    /// The (master) broker's address.
    broker: String,
    /// The (master) broker's gRPC port.
    grpc: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessBroker {
    async fn start(opts: StandaloneOptions) -> Result<Self, RunError> {
        Self::start_group(opts, crate::SlaveOptions::default()).await
    }

    /// [`Self::start`] with slaves of the broker ([`Standalone::start_with_slaves`]).
    async fn start_group(
        opts: StandaloneOptions,
        slaves: crate::SlaveOptions,
    ) -> Result<Self, RunError> {
        let (ready_tx, ready_rx) =
            tokio::sync::oneshot::channel::<Result<(String, String, Option<String>), RunError>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(cpu::BROKER_THREAD.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name(cpu::BROKER_THREAD)
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let standalone = match Standalone::start_with_slaves(&opts, &slaves).await {
                        Ok(standalone) => standalone,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    eprintln!("bench: {}", standalone.ready_line());
                    let _ = ready_tx.send(Ok((
                        standalone.namesrv_addr().to_string(),
                        standalone.broker_addr().to_string(),
                        standalone.grpc_addr().map(|a| a.to_string()),
                    )));
                    // Dropped sender or a stop: either way the bench is done with the broker.
                    let _ = stop_rx.await;
                    if let Err(e) = standalone.shutdown().await {
                        eprintln!("bench: broker shutdown: {e}");
                    }
                });
            })?;
        let (namesrv, broker, grpc) = ready_rx.await.map_err(|_| {
            RunError::Task("the broker's thread ended before it was ready".into())
        })??;
        Ok(Self {
            namesrv,
            broker,
            grpc,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                eprintln!("bench: the broker's thread ended abnormally");
            }
        }
    }
}

/// Connections and queues of the topics, created as needed.
struct Setup {
    broker_addr: String,
    queues: Vec<QueueTarget>,
}

async fn setup_topics(
    namesrv: &str,
    topics: &TopicArgs,
    serialize: SerializeType,
) -> Result<Setup, RunError> {
    if topics.queues < 1 {
        return Err(RunError::Usage("--queues must be at least 1".into()));
    }
    let ns = Conn::connect(namesrv, serialize).await?;
    let mut broker_addr = None;
    let mut queues = Vec::new();
    for name in topics.names() {
        let route = direct::ensure_topic(&ns, &name, topics.queues, serialize).await?;
        // One broker serves every topic here; the first route names it.
        broker_addr.get_or_insert(route.broker_addr.clone());
        for q in 0..route.write_queues {
            queues.push(QueueTarget {
                topic: name.clone(),
                queue_id: q,
            });
        }
    }
    Ok(Setup {
        broker_addr: broker_addr.unwrap_or_default(),
        queues,
    })
}

async fn connections(
    addr: &str,
    n: usize,
    serialize: SerializeType,
) -> Result<Vec<Arc<Conn>>, RunError> {
    let mut conns = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        conns.push(Arc::new(Conn::connect(addr, serialize).await?));
    }
    Ok(conns)
}

/// The producers' client (`--via client`) or connections (`--via direct`).
async fn sender(
    send: &SendArgs,
    broker: &BrokerArgs,
    namesrv: &str,
    broker_addr: &str,
) -> Result<produce::Sender, RunError> {
    match send.via {
        ViaArg::Direct => Ok(produce::Sender::Direct(
            connections(broker_addr, send.connections, broker.serialize.into()).await?,
        )),
        ViaArg::Client => {
            let producer = crate::client::Producer::builder()
                .namesrv_addr(namesrv)
                .group(produce::PRODUCER_GROUP)
                .send_timeout(Duration::from_millis(broker.timeout_ms))
                .build()
                .map_err(|e| RunError::Task(format!("producer: {e}")))?
                .start()
                .await
                .map_err(|e| RunError::Task(format!("producer: {e}")))?;
            Ok(produce::Sender::Client(producer))
        }
    }
}

async fn close(sender: produce::Sender) {
    if let produce::Sender::Client(producer) = sender {
        producer.shutdown().await;
    }
}

/// How long producers run: `--duration`, else 10 s unless `--count` bounds the run.
fn send_duration(send: &SendArgs) -> Result<Option<Duration>, RunError> {
    Ok(match (send.duration, send.count) {
        (Some(d), _) if !positive_secs(d) => {
            return Err(RunError::Usage("--duration must be positive".into()))
        }
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    })
}

fn send_plan(
    send: &SendArgs,
    broker: &BrokerArgs,
    sender: produce::Sender,
    queues: Vec<QueueTarget>,
) -> Result<SendPlan, RunError> {
    if send.producers == 0 {
        return Err(RunError::Usage("--producers must be at least 1".into()));
    }
    let duration = send_duration(send)?;
    Ok(SendPlan {
        sender,
        queues,
        size: send.size,
        mode: send.mode,
        producers: send.producers,
        inflight: send.inflight,
        timeout: Duration::from_millis(broker.timeout_ms),
        duration,
        count: send.count,
    })
}

async fn maybe_loopback(
    send: &SendArgs,
    serialize: SerializeType,
) -> Result<Option<loopback::Ceiling>, RunError> {
    if !send.with_loopback {
        return Ok(None);
    }
    if !positive_secs(send.loopback_duration) {
        return Err(RunError::Usage(
            "--loopback-duration must be positive".into(),
        ));
    }
    eprintln!("bench: measuring the loopback ceiling first");
    let c = loopback::measure(
        produce::sample_frame(send.size, serialize),
        send.producers,
        Duration::from_secs_f64(send.loopback_duration),
    )
    .await?;
    for line in c.lines() {
        eprintln!("bench: {line}");
    }
    Ok(Some(c))
}

fn print(json_out: bool, json: &Value, text: &[String]) {
    if json_out {
        println!("{json}");
    } else {
        for line in text {
            println!("{line}");
        }
    }
}

async fn run_produce(args: ProduceArgs) -> Result<(), RunError> {
    let serialize: SerializeType = args.broker.serialize.into();
    let ceiling = maybe_loopback(&args.send, serialize).await?;
    let broker = BrokerUnderTest::start(&args.broker).await?;
    let result = produce_on(&args, &broker, ceiling).await;
    broker.stop().await;
    let (json, text) = result?;
    print(args.broker.json, &json, &text);
    Ok(())
}

async fn produce_on(
    args: &ProduceArgs,
    broker: &BrokerUnderTest,
    ceiling: Option<loopback::Ceiling>,
) -> Result<(Value, Vec<String>), RunError> {
    let serialize: SerializeType = args.broker.serialize.into();
    let setup = setup_topics(&broker.namesrv, &args.topic, serialize).await?;
    let sender = sender(
        &args.send,
        &args.broker,
        &broker.namesrv,
        &setup.broker_addr,
    )
    .await?;
    let plan = send_plan(&args.send, &args.broker, sender.clone(), setup.queues)?;
    let sends = Recorder::new();
    let progress = Progress::start(
        "produce",
        vec![Series {
            label: "send",
            recorder: sends.clone(),
        }],
        broker.probe(),
    );
    let meter = broker.cpu_meter();
    let elapsed = produce::run(plan, sends.clone()).await;
    let probe = progress.finish().await;
    close(sender).await;
    let elapsed = elapsed?;
    let cpu_use = meter.and_then(|m| m.finish(elapsed));
    let totals = sends.totals();
    let mut text = vec![
        format!(
            "produce: {} producer(s), {:?} via {:?}, {} bytes, {} queue(s), broker {} {}",
            args.send.producers,
            args.send.mode,
            args.send.via,
            args.send.size,
            args.topic.queues * args.topic.topics.max(1) as i32,
            broker.kind,
            broker.flush.map_or("", FlushArg::name)
        ),
        report::totals_line("Send", &totals, elapsed),
    ];
    let mut json = json!({
        "command": "produce",
        "broker": broker.json(),
        "topic": args.topic.topic,
        "topics": args.topic.topics,
        "queues": args.topic.queues,
        "size_bytes": args.send.size,
        "mode": format!("{:?}", args.send.mode).to_lowercase(),
        "producers": args.send.producers,
        "via": format!("{:?}", args.send.via).to_lowercase(),
        "connections": args.send.connections,
        "send": report::totals_json(&totals, elapsed),
        "loopback": Value::Null,
        "vs_loopback": Value::Null,
        "rss": probe.as_ref().map_or(Value::Null, RssProbe::to_json),
    });
    append_ceiling_and_rss(
        &mut json,
        &mut text,
        ceiling.as_ref(),
        (&totals, elapsed, args.send.producers),
        probe.as_ref(),
    );
    append_cpu(&mut json, &mut text, cpu_use, totals.messages);
    if args.grpc {
        let remoting_tps = totals.messages as f64 / elapsed.as_secs_f64().max(1e-9);
        grpc_produce(args, broker, remoting_tps, &mut json, &mut text).await?;
    }
    Ok((json, text))
}

/// The gRPC half of `produce --grpc`: the same producers, size and length of run through the
/// gRPC port, the rate set against the remoting run's (`grpc_vs_remoting`).
async fn grpc_produce(
    args: &ProduceArgs,
    broker: &BrokerUnderTest,
    remoting_tps: f64,
    json: &mut Value,
    text: &mut Vec<String>,
) -> Result<(), RunError> {
    let addr = broker
        .grpc
        .clone()
        .ok_or_else(|| RunError::Usage("--grpc: the broker has no gRPC port".into()))?;
    let plan = grpc::GrpcSendPlan {
        addr,
        topics: args.topic.names(),
        size: args.send.size,
        producers: args.send.producers,
        connections: args.send.connections,
        timeout: Duration::from_millis(args.broker.timeout_ms),
        duration: send_duration(&args.send)?,
        count: args.send.count,
    };
    let sends = Recorder::new();
    let progress = Progress::start(
        "produce --grpc",
        vec![Series {
            label: "send",
            recorder: sends.clone(),
        }],
        broker.probe(),
    );
    let meter = broker.cpu_meter();
    let elapsed = grpc::produce(plan, sends.clone()).await;
    progress.finish().await;
    let elapsed = elapsed?;
    let cpu_use = meter.and_then(|m| m.finish(elapsed));
    let totals = sends.totals();
    let tps = totals.messages as f64 / elapsed.as_secs_f64().max(1e-9);
    let ratio = if remoting_tps > 0.0 {
        tps / remoting_tps
    } else {
        0.0
    };
    text.push(format!(
        "gRPC {}; = {:.0}% of the remoting send rate",
        report::totals_line("Send", &totals, elapsed),
        ratio * 100.0
    ));
    let mut grpc_json = json!({
        "send": report::totals_json(&totals, elapsed),
        "grpc_vs_remoting": (ratio * 1000.0).round() / 1000.0,
    });
    let mut cpu_lines = Vec::new();
    append_cpu(&mut grpc_json, &mut cpu_lines, cpu_use, totals.messages);
    text.extend(cpu_lines.into_iter().map(|l| format!("gRPC {l}")));
    json["grpc"] = grpc_json;
    Ok(())
}

async fn run_consume(args: ConsumeArgs) -> Result<(), RunError> {
    let broker = BrokerUnderTest::start(&args.broker).await?;
    let result = consume_on(&args, &broker).await;
    broker.stop().await;
    let (json, text) = result?;
    print(args.broker.json, &json, &text);
    Ok(())
}

async fn consume_on(
    args: &ConsumeArgs,
    broker: &BrokerUnderTest,
) -> Result<(Value, Vec<String>), RunError> {
    let serialize: SerializeType = args.broker.serialize.into();
    if args.batch < 1 {
        return Err(RunError::Usage("--batch must be at least 1".into()));
    }
    if args.duration.is_some_and(|d| !positive_secs(d)) {
        return Err(RunError::Usage("--duration must be positive".into()));
    }
    let setup = setup_topics(&broker.namesrv, &args.topic, serialize).await?;
    let timeout = Duration::from_millis(args.broker.timeout_ms);
    let fill = args.fill.unwrap_or(if broker.kind == "external" {
        0
    } else {
        100_000
    });
    let mut filled = stats::Totals::default();
    if fill > 0 {
        eprintln!(
            "bench: filling a backlog of {fill} messages of {} bytes",
            args.size
        );
        let conns = connections(&setup.broker_addr, 1, serialize).await?;
        let fills = Recorder::new();
        let progress = Progress::start(
            "fill",
            vec![Series {
                label: "send",
                recorder: fills.clone(),
            }],
            None,
        );
        let r = produce::run(
            SendPlan {
                sender: produce::Sender::Direct(conns),
                queues: setup.queues.clone(),
                size: args.size,
                mode: ModeArg::Async,
                producers: 4,
                inflight: 1024,
                timeout,
                duration: None,
                count: Some(fill),
            },
            fills.clone(),
        )
        .await;
        progress.finish().await;
        r?;
        filled = fills.totals();
    }
    // The backlog: from each queue's min offset to its max offset now.
    let admin = Conn::connect(&setup.broker_addr, serialize).await?;
    let mut targets = Vec::new();
    let mut backlog = 0i64;
    for q in &setup.queues {
        let from = direct::queue_offset(&admin, &q.topic, q.queue_id, false).await?;
        let until = direct::queue_offset(&admin, &q.topic, q.queue_id, true).await?;
        backlog += (until - from).max(0);
        targets.push(consume::PullTarget {
            topic: q.topic.clone(),
            queue_id: q.queue_id,
            from,
            until: Some(until),
        });
    }
    drop(admin);
    let conns = connections(&setup.broker_addr, args.consumers, serialize).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let plan = consume::PullPlan {
        group: args.group.clone(),
        batch: args.batch,
        timeout,
        count: args.count,
        stop: stop.clone(),
    };
    let pulls = Recorder::new();
    let progress = Progress::start(
        "consume",
        vec![Series {
            label: "pull",
            recorder: pulls.clone(),
        }],
        broker.probe(),
    );
    let meter = broker.cpu_meter();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, t) in targets.into_iter().enumerate() {
        tasks.push(tokio::spawn(consume::pull_queue(
            conns[i % conns.len()].clone(),
            plan.clone(),
            t,
            pulls.clone(),
            None,
        )));
    }
    let stopper = args.duration.map(|d| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(d)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    });
    for t in tasks {
        t.await.map_err(|e| RunError::Task(e.to_string()))?;
    }
    let elapsed = started.elapsed();
    let cpu_use = meter.and_then(|m| m.finish(elapsed));
    if let Some(s) = stopper {
        s.abort();
    }
    let probe = progress.finish().await;
    let totals = pulls.totals();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut text = vec![
        format!(
            "consume: backlog {backlog} message(s) in {} queue(s), {} connection(s), batch {}, broker {} {}",
            setup.queues.len(),
            args.consumers,
            args.batch,
            broker.kind,
            broker.flush.map_or("", FlushArg::name)
        ),
        format!(
            "Consume TPS: {:.0} ({} messages in {:.2}s, {:.1} MB/s) Pull Failed: {} Response Failed: {}",
            totals.messages as f64 / secs,
            totals.messages,
            secs,
            totals.bytes as f64 / secs / 1e6,
            totals.send_failed,
            totals.response_failed
        ),
        format!("  pull round trip {}", totals.latency.line()),
    ];
    if let Some(line) = probe.as_ref().and_then(RssProbe::line) {
        text.push(line);
    }
    let mut json = json!({
        "command": "consume",
        "broker": broker.json(),
        "topic": args.topic.topic,
        "topics": args.topic.topics,
        "queues": args.topic.queues,
        "size_bytes": args.size,
        "consumers": args.consumers,
        "batch": args.batch,
        "filled": filled.messages,
        "fill_failed": filled.send_failed + filled.response_failed,
        "backlog": backlog,
        "consume": report::totals_json(&totals, elapsed),
        "rss": probe.as_ref().map_or(Value::Null, RssProbe::to_json),
    });
    append_cpu(&mut json, &mut text, cpu_use, totals.messages);
    let pull_tps = totals.messages as f64 / secs;
    if args.pop {
        pop_drains(
            args, &setup, broker, backlog, pull_tps, &mut json, &mut text,
        )
        .await?;
    }
    if args.grpc {
        grpc_drains(
            args, &setup, broker, backlog, pull_tps, &mut json, &mut text,
        )
        .await?;
    }
    Ok((json, text))
}

/// The gRPC half of `consume --grpc`: the same backlog drained through the gRPC port with each
/// consumer count, each rate set against the pull drain's (`grpc_vs_pull`).
async fn grpc_drains(
    args: &ConsumeArgs,
    setup: &Setup,
    broker: &BrokerUnderTest,
    backlog: i64,
    pull_tps: f64,
    json: &mut Value,
    text: &mut Vec<String>,
) -> Result<(), RunError> {
    let addr = broker
        .grpc
        .clone()
        .ok_or_else(|| RunError::Usage("--grpc: the broker has no gRPC port".into()))?;
    let mut topics: Vec<String> = setup.queues.iter().map(|q| q.topic.clone()).collect();
    topics.dedup();
    let mut runs = Vec::new();
    for &consumers in &args.grpc_consumers {
        if consumers == 0 {
            return Err(RunError::Usage(
                "--grpc-consumers must be at least 1".into(),
            ));
        }
        let plan = grpc::GrpcDrainPlan {
            addr: addr.clone(),
            group: format!("{}_grpc{consumers}", args.group),
            topics: topics.clone(),
            batch: args.batch,
            timeout: Duration::from_millis(args.broker.timeout_ms),
            count: args.count,
        };
        let receives = Recorder::new();
        let progress = Progress::start(
            "consume --grpc",
            vec![Series {
                label: "receive",
                recorder: receives.clone(),
            }],
            broker.probe(),
        );
        let elapsed = grpc::drain(plan, consumers, receives.clone()).await;
        progress.finish().await;
        let elapsed = elapsed?;
        let drain = DrainRun {
            what: "gRPC",
            round_trip: "receive+ack",
            totals_key: "receive",
            ratio_key: "grpc_vs_pull",
        };
        let (line, run) = drain.report(consumers, &receives.totals(), elapsed, backlog, pull_tps);
        text.push(line);
        runs.push(run);
    }
    json["grpc"] = Value::Array(runs);
    Ok(())
}

/// One drain of `consume --pop` or `--grpc` with a consumer count, reported against the pull
/// drain of the same run.
struct DrainRun {
    /// "POP" or "gRPC".
    what: &'static str,
    /// What one measured round trip is.
    round_trip: &'static str,
    /// The JSON keys of its totals and of its share of the pull drain.
    totals_key: &'static str,
    ratio_key: &'static str,
}

impl DrainRun {
    /// The text line and the JSON object of one run.
    fn report(
        &self,
        consumers: usize,
        totals: &stats::Totals,
        elapsed: Duration,
        backlog: i64,
        pull_tps: f64,
    ) -> (String, Value) {
        let tps = totals.messages as f64 / elapsed.as_secs_f64().max(1e-9);
        let ratio = if pull_tps > 0.0 { tps / pull_tps } else { 0.0 };
        let line = format!(
            "{} drain, {consumers} consumer(s): {tps:.0} msg/s ({} of {backlog} messages in {:.2}s) = {:.0}% of the pull drain; {} round trip {}; Failed: {} Response Failed: {}",
            self.what,
            totals.messages,
            elapsed.as_secs_f64(),
            ratio * 100.0,
            self.round_trip,
            totals.latency.line(),
            totals.send_failed,
            totals.response_failed
        );
        let mut run = json!({ "consumers": consumers });
        run[self.totals_key] = report::totals_json(totals, elapsed);
        run[self.ratio_key] = json!((ratio * 1000.0).round() / 1000.0);
        (line, run)
    }
}

/// The POP half of `consume --pop`: the same backlog drained by POP with each consumer count,
/// each rate set against the pull drain's (`pop_vs_pull`).
async fn pop_drains(
    args: &ConsumeArgs,
    setup: &Setup,
    broker: &BrokerUnderTest,
    backlog: i64,
    pull_tps: f64,
    json: &mut Value,
    text: &mut Vec<String>,
) -> Result<(), RunError> {
    let serialize: SerializeType = args.broker.serialize.into();
    let timeout = Duration::from_millis(args.broker.timeout_ms);
    let mut topics: Vec<String> = setup.queues.iter().map(|q| q.topic.clone()).collect();
    topics.dedup();
    let mut runs = Vec::new();
    for &consumers in &args.pop_consumers {
        if consumers == 0 {
            return Err(RunError::Usage("--pop-consumers must be at least 1".into()));
        }
        let conns = connections(&setup.broker_addr, consumers, serialize).await?;
        let plan = pop::PopPlan {
            group: format!("{}_pop{consumers}", args.group),
            topics: topics.clone(),
            batch: args.batch,
            timeout,
            follow: false,
            count: args.count,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let pops = Recorder::new();
        let progress = Progress::start(
            "consume --pop",
            vec![Series {
                label: "pop",
                recorder: pops.clone(),
            }],
            broker.probe(),
        );
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|conn| tokio::spawn(pop::pop_loop(conn, plan.clone(), pops.clone(), None)))
            .collect();
        for t in tasks {
            t.await.map_err(|e| RunError::Task(e.to_string()))?;
        }
        let elapsed = started.elapsed();
        progress.finish().await;
        let drain = DrainRun {
            what: "POP",
            round_trip: "POP+ack",
            totals_key: "pop",
            ratio_key: "pop_vs_pull",
        };
        let (line, run) = drain.report(consumers, &pops.totals(), elapsed, backlog, pull_tps);
        text.push(line);
        runs.push(run);
    }
    json["pop"] = Value::Array(runs);
    Ok(())
}

async fn run_e2e(args: E2eArgs) -> Result<(), RunError> {
    let serialize: SerializeType = args.broker.serialize.into();
    let ceiling = maybe_loopback(&args.send, serialize).await?;
    let broker = BrokerUnderTest::start(&args.broker).await?;
    let result = e2e_on(&args, &broker, ceiling).await;
    broker.stop().await;
    let (json, text) = result?;
    print(args.broker.json, &json, &text);
    Ok(())
}

/// How long consumers may lag behind the last send before the run ends anyway.
const E2E_GRACE: Duration = Duration::from_secs(10);

async fn e2e_on(
    args: &E2eArgs,
    broker: &BrokerUnderTest,
    ceiling: Option<loopback::Ceiling>,
) -> Result<(Value, Vec<String>), RunError> {
    let serialize: SerializeType = args.broker.serialize.into();
    if args.batch < 1 {
        return Err(RunError::Usage("--batch must be at least 1".into()));
    }
    let setup = setup_topics(&broker.namesrv, &args.topic, serialize).await?;
    let timeout = Duration::from_millis(args.broker.timeout_ms);
    // Consumers follow from what is there now: only this run's messages are timed.
    let pull_conns = connections(&setup.broker_addr, args.consumers, serialize).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let plan = consume::PullPlan {
        group: args.group.clone(),
        batch: args.batch,
        timeout,
        count: None,
        stop: stop.clone(),
    };
    let pulls = Recorder::new();
    let e2e = Recorder::new();
    let mut pullers = Vec::new();
    if args.pop {
        // Only this run's messages are timed: the POP group starts at the queues' ends.
        let mut topics: Vec<String> = setup.queues.iter().map(|q| q.topic.clone()).collect();
        topics.dedup();
        let group = format!("{}_pop_e2e", args.group);
        for q in &setup.queues {
            let end = direct::queue_offset(&pull_conns[0], &q.topic, q.queue_id, true).await?;
            direct::commit_offset(&pull_conns[0], &group, &q.topic, q.queue_id, end).await?;
        }
        let plan = pop::PopPlan {
            group,
            topics,
            batch: args.batch,
            timeout,
            follow: true,
            count: None,
            stop: stop.clone(),
        };
        for conn in &pull_conns {
            pullers.push(tokio::spawn(pop::pop_loop(
                conn.clone(),
                plan.clone(),
                pulls.clone(),
                Some(e2e.clone()),
            )));
        }
    }
    for (i, q) in setup.queues.iter().enumerate().filter(|_| !args.pop) {
        let conn = pull_conns[i % pull_conns.len()].clone();
        let from = direct::queue_offset(&conn, &q.topic, q.queue_id, true).await?;
        pullers.push(tokio::spawn(consume::pull_queue(
            conn,
            plan.clone(),
            consume::PullTarget {
                topic: q.topic.clone(),
                queue_id: q.queue_id,
                from,
                until: None,
            },
            pulls.clone(),
            Some(e2e.clone()),
        )));
    }
    let sender = sender(
        &args.send,
        &args.broker,
        &broker.namesrv,
        &setup.broker_addr,
    )
    .await?;
    let send_plan = send_plan(
        &args.send,
        &args.broker,
        sender.clone(),
        setup.queues.clone(),
    )?;
    let sends = Recorder::new();
    let progress = Progress::start(
        "e2e",
        vec![
            Series {
                label: "send",
                recorder: sends.clone(),
            },
            Series {
                label: "e2e",
                recorder: e2e.clone(),
            },
        ],
        broker.probe(),
    );
    let meter = broker.cpu_meter();
    let started = Instant::now();
    let sent = produce::run(send_plan, sends.clone()).await;
    close(sender).await;
    let send_elapsed = sent.as_ref().copied().unwrap_or_default();
    // Oneway sends are not confirmed: expect what was written.
    let expected = sends.messages();
    let grace_end = Instant::now() + E2E_GRACE;
    while e2e.messages() < expected && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let cpu_use = meter.and_then(|m| m.finish(elapsed));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pullers {
        // Each follower returns within one long-poll suspension.
        let _ = tokio::time::timeout(timeout + Duration::from_secs(2), p).await;
    }
    let probe = progress.finish().await;
    sent?;
    let send_totals = sends.totals();
    let e2e_totals = e2e.totals();
    let pull_totals = pulls.totals();
    let mut text = vec![
        format!(
            "e2e: {} producer(s) {:?}, {} consumer connection(s), {} bytes, {} queue(s), broker {} {}",
            args.send.producers,
            args.send.mode,
            args.consumers,
            args.send.size,
            setup.queues.len(),
            broker.kind,
            broker.flush.map_or("", FlushArg::name)
        ),
        report::totals_line("Send", &send_totals, send_elapsed),
        format!(
            "Consumed: {} of {} sent ({} missing); end-to-end latency {}",
            e2e_totals.messages,
            expected,
            expected.saturating_sub(e2e_totals.messages),
            e2e_totals.latency.line()
        ),
    ];
    let mut json = json!({
        "command": "e2e",
        "broker": broker.json(),
        "topic": args.topic.topic,
        "topics": args.topic.topics,
        "queues": args.topic.queues,
        "size_bytes": args.send.size,
        "mode": format!("{:?}", args.send.mode).to_lowercase(),
        "producers": args.send.producers,
        "via": format!("{:?}", args.send.via).to_lowercase(),
        "consumers": args.consumers,
        "send": report::totals_json(&send_totals, send_elapsed),
        "consumed": e2e_totals.messages,
        "missing": expected.saturating_sub(e2e_totals.messages),
        "e2e": report::totals_json(&e2e_totals, elapsed),
        "via_pop": args.pop,
        "pull": report::totals_json(&pull_totals, elapsed),
        "loopback": Value::Null,
        "vs_loopback": Value::Null,
        "rss": probe.as_ref().map_or(Value::Null, RssProbe::to_json),
    });
    append_ceiling_and_rss(
        &mut json,
        &mut text,
        ceiling.as_ref(),
        (&send_totals, send_elapsed, args.send.producers),
        probe.as_ref(),
    );
    append_cpu(&mut json, &mut text, cpu_use, e2e_totals.messages);
    Ok((json, text))
}

/// Adds the broker's CPU time per message (`broker_cpu`, null when its process is not known).
fn append_cpu(json: &mut Value, text: &mut Vec<String>, cpu: Option<cpu::CpuUse>, messages: u64) {
    json["broker_cpu"] = cpu.map_or(Value::Null, |c| c.to_json(messages));
    if let Some(c) = cpu {
        text.push(c.line(messages));
    }
}

/// Adds the loopback ceiling (with the sends as multiples of it) and the broker's memory line to
/// a produce or e2e report; `sends` is the send totals, their duration and the producers.
fn append_ceiling_and_rss(
    json: &mut Value,
    text: &mut Vec<String>,
    ceiling: Option<&loopback::Ceiling>,
    sends: (&stats::Totals, Duration, usize),
    probe: Option<&RssProbe>,
) {
    let (totals, elapsed, producers) = sends;
    if let Some(c) = ceiling {
        let (v, line) = report::versus_loopback(totals, elapsed, c, producers);
        json["loopback"] = c.to_json();
        json["vs_loopback"] = v;
        text.extend(c.lines());
        text.push(line);
    }
    if let Some(line) = probe.and_then(RssProbe::line) {
        text.push(line);
    }
}
