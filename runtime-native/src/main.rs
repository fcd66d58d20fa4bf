//! `vostok`: the RocketMQ-compatible broker's command line. The work is in the library.
// Under `--cfg madsim` (the simulator's build) only the library is meant to be used.
#![cfg_attr(madsim, allow(dead_code, unused_imports))]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vostok::{BrokerOptions, NamesrvOptions, RunError, SlaveOptions, StandaloneOptions};
use vostok_core::broker::{BrokerRole, FlushDiskType};

/// Vostok: a RocketMQ-compatible message broker.
///
/// Ready line: once every listener is up (for `standalone`, once the NameServer also lists the
/// broker), exactly one line
/// `vostok ready namesrv=IP:PORT broker=IP:PORT data=PATH` is printed on stdout (only the parts
/// the command runs; `standalone --slaves N` adds `slaves=IP:PORT,…` and the gRPC port
/// `grpc=IP:PORT`, when on, comes last before `data=`). Logs go to stderr; set RUST_LOG
/// (default: info).
#[derive(Debug, Parser)]
#[command(name = "vostok", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a NameServer and a Broker in one process (the broker registers with it over
    /// loopback TCP, like any broker).
    Standalone {
        /// NameServer port; 0 picks a free port.
        #[arg(long, value_name = "PORT", default_value_t = vostok::DEFAULT_NAMESRV_PORT)]
        namesrv_port: u16,
        /// Also run N slaves of the broker (brokerId 1..N, data under DATA/slave-I, ports
        /// broker port + 10·I, or free ports with --broker-port 0); the ready line then waits
        /// until every slave is registered and in sync, and lists them as `slaves=A,B`.
        #[arg(long, value_name = "N", default_value_t = 0)]
        slaves: u32,
        /// The broker's role with --slaves [default: broker.conf's brokerRole, else
        /// SYNC_MASTER].
        #[arg(long, value_enum, value_name = "ROLE", requires = "slaves")]
        broker_role: Option<RoleArg>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Run a NameServer.
    Namesrv {
        /// Address to listen on.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        listen_ip: IpAddr,
        /// Port; 0 picks a free port.
        #[arg(short = 'p', long, value_name = "PORT", default_value_t = vostok::DEFAULT_NAMESRV_PORT)]
        port: u16,
    },
    /// Run a Broker that registers with NameServers.
    Broker {
        /// NameServer addresses, `host:port;host:port` (overrides namesrvAddr; falls back to
        /// the NAMESRV_ADDR environment variable).
        #[arg(short = 'n', long = "namesrv-addr", value_name = "ADDRS")]
        namesrv_addr: Option<String>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Administer a running cluster with mqadmin's commands, names and flags (for example
    /// `vostok admin topicStatus -n 127.0.0.1:9876 -t TOPIC`); a failure exits non-zero.
    #[cfg(not(madsim))]
    Admin {
        #[command(subcommand)]
        command: vostok::admin::AdminCommand,
    },
    /// Run a benchmark against a broker, or measure this machine's own ceilings.
    #[cfg(not(madsim))]
    Bench {
        #[command(subcommand)]
        command: vostok::bench::BenchCommand,
    },
    /// Serve the in-browser playground (the core compiled to WebAssembly) on 127.0.0.1 and print
    /// its `http://127.0.0.1:PORT/` address.
    #[cfg(not(madsim))]
    Playground {
        /// Port; 0 picks a free port.
        #[arg(short = 'p', long, value_name = "PORT", default_value_t = vostok::playground::DEFAULT_PLAYGROUND_PORT)]
        port: u16,
    },
}

/// Flags shared by `standalone` and `broker`. Each overrides the same key of broker.conf.
#[derive(Debug, clap::Args)]
struct BrokerArgs {
    /// A RocketMQ broker.conf (properties: key=value).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Store root directory (storePathRootDir) [default: ./vostok-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Broker port (listenPort); 0 picks a free port, which is then advertised [default: 10911].
    #[arg(long, value_name = "PORT")]
    broker_port: Option<u16>,
    /// gRPC port for RocketMQ 5 clients (grpcServerPort); 0 picks a free port [default: 8081,
    /// or a free port when the broker port is 0]. Off with enableGrpcServer=false.
    #[arg(long, value_name = "PORT")]
    grpc_port: Option<u16>,
    /// Address the listeners bind [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    listen_ip: Option<IpAddr>,
    /// Address advertised to clients (brokerIP1) [default: 127.0.0.1; never guessed].
    #[arg(long = "broker-ip1", value_name = "IP")]
    broker_ip1: Option<IpAddr>,
    /// When a send is answered: after the write (ASYNC_FLUSH) or once durable (SYNC_FLUSH)
    /// [default: ASYNC_FLUSH].
    #[arg(long, value_enum, value_name = "TYPE")]
    flush_disk_type: Option<FlushArg>,
}

/// A master's `brokerRole`.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
enum RoleArg {
    AsyncMaster,
    SyncMaster,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
enum FlushArg {
    AsyncFlush,
    SyncFlush,
}

impl BrokerArgs {
    fn into_options(self, namesrv_addrs: Option<Vec<String>>) -> BrokerOptions {
        BrokerOptions {
            config_file: self.config,
            data_dir: self.data_dir,
            listen_ip: self.listen_ip,
            broker_port: self.broker_port,
            grpc_port: self.grpc_port,
            broker_ip1: self.broker_ip1,
            flush_disk_type: self.flush_disk_type.map(|f| match f {
                FlushArg::AsyncFlush => FlushDiskType::AsyncFlush,
                FlushArg::SyncFlush => FlushDiskType::SyncFlush,
            }),
            namesrv_addrs,
        }
    }
}

#[cfg(not(madsim))]
async fn run(cli: Cli) -> Result<(), RunError> {
    match cli.command {
        Command::Standalone {
            namesrv_port,
            slaves,
            broker_role,
            broker,
        } => {
            vostok::run_standalone(
                StandaloneOptions {
                    namesrv_port: Some(namesrv_port),
                    broker: broker.into_options(None),
                },
                SlaveOptions {
                    count: slaves,
                    master_role: broker_role.map(|r| match r {
                        RoleArg::AsyncMaster => BrokerRole::AsyncMaster,
                        RoleArg::SyncMaster => BrokerRole::SyncMaster,
                    }),
                },
            )
            .await
        }
        Command::Namesrv { listen_ip, port } => {
            vostok::run_namesrv(NamesrvOptions { listen_ip, port }).await
        }
        Command::Broker {
            namesrv_addr,
            broker,
        } => {
            let addrs = namesrv_addr
                .map(|a| vostok::config::parse_namesrv_addrs(&a))
                .transpose()
                .map_err(|e| RunError::Usage(format!("-n: {e}")))?;
            vostok::run_broker(broker.into_options(addrs)).await
        }
        Command::Bench { command } => vostok::bench::run(command).await,
        Command::Admin { command } => vostok::admin::run(command).await,
        Command::Playground { port } => vostok::playground::run_playground(port).await,
    }
}

#[cfg(not(madsim))]
fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vostok")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vostok: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vostok: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!(
        "vostok: built with --cfg madsim (simulation only); build without it to run a broker"
    );
    ExitCode::from(2)
}
