//! Vostok's native runtime: tokio sockets and mmap segment files around the sans-IO core.
//!
//! * [`config`] — broker.conf (RocketMQ's properties file) → [`BrokerConfig`].
//! * [`storage`] — [`storage::MmapStorage`], the memmap2 [`SegmentStorage`] with an off-thread
//!   [`storage::SyncHandle`].
//! * [`server`] — the tokio driver: one owner task per state machine, connection tasks, the
//!   flusher and the broker's NameServer clients.
//!
//! The `vostok` binary is a thin CLI over [`run_standalone`], [`run_namesrv`] and [`run_broker`];
//! tests can start the same servers in-process with [`Standalone::start`].
//!
//! [`SegmentStorage`]: vostok_core::store::SegmentStorage

// The admin commands, the benchmarks, the playground server, the standalone launcher and the
// CLI entry points need OS threads, signals and real files: not part of the simulated build
// (`--cfg madsim`, see runtime-sim).
pub mod acl_files;
#[cfg(not(madsim))]
pub mod admin;
#[cfg(not(madsim))]
pub mod bench;
pub mod client;
pub mod config;
mod durability;
#[cfg(not(madsim))]
pub mod grpc;
pub mod ha;
pub mod metrics;
#[cfg(not(madsim))]
pub mod playground;
pub mod server;
pub mod storage;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
#[cfg(not(madsim))]
use std::{io::Write, path::Path};

#[cfg(not(madsim))]
use tokio::net::TcpListener;
#[cfg(not(madsim))]
use tracing::info;
use tracing::warn;
use vostok_core::broker::{BrokerConfig, BrokerError, FlushDiskType};
#[cfg(not(madsim))]
use vostok_core::namesrv::NamesrvConfig;
use vostok_core::store::StorageError;

pub use server::{BrokerServer, NamesrvServer};

/// How long [`Standalone::start`] waits for the broker's first registration.
#[cfg(not(madsim))]
const REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks `addr` the request `code` every 10 ms until `done` accepts the answer, for at most
/// `timeout`; `what` names the wait in the error. Over TLS when `tls` says so (our own servers
/// with `tls.server.mode=enforcing`).
#[cfg(not(madsim))]
async fn ask_until(
    addr: SocketAddr,
    code: i32,
    timeout: std::time::Duration,
    tls: &tls::NamesrvTls,
    done: impl Fn(&vostok_core::remoting::RemotingCommand) -> bool,
    what: &str,
) -> Result<(), RunError> {
    use bytes::BytesMut;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use vostok_core::remoting::{encode, FrameDecoder, RemotingCommand};

    async fn ask_on<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        addr: SocketAddr,
        code: i32,
        done: &dyn Fn(&RemotingCommand) -> bool,
    ) -> Result<(), RunError> {
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let fail =
            |e: &dyn std::fmt::Display| RunError::Task(format!("request {code} to {addr}: {e}"));
        for opaque in 1.. {
            let mut ask = RemotingCommand::request(code);
            ask.opaque = opaque;
            let mut out = BytesMut::new();
            encode(&ask, &mut out);
            stream.write_all(&out).await.map_err(|e| fail(&e))?;
            let answer = loop {
                if let Some(frame) = decoder.decode(&mut buf).map_err(|e| fail(&e))? {
                    break frame;
                }
                if stream.read_buf(&mut buf).await.map_err(|e| fail(&e))? == 0 {
                    return Err(fail(&"connection closed"));
                }
            };
            if answer.code == 0 && done(&answer) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    let probe = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        if let Some(connector) = &tls.connector {
            let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = connector.connect(name, stream).await?;
            return ask_on(stream, addr, code, &done).await;
        }
        ask_on(stream, addr, code, &done).await
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(RunError::Task(format!(
            "{what} within {} s",
            timeout.as_secs()
        ))),
    }
}

/// Asks the NameServer at `ns_addr` for its cluster info until it names every one of `names`
/// (broker names or broker addresses).
#[cfg(not(madsim))]
async fn wait_until_registered(
    ns_addr: SocketAddr,
    names: &[String],
    timeout: std::time::Duration,
    tls: &tls::NamesrvTls,
) -> Result<(), RunError> {
    // A broker name or address inside the body is always a quoted JSON string.
    let needles: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    ask_until(
        ns_addr,
        vostok_core::remoting::codes::request::GET_BROKER_CLUSTER_INFO,
        timeout,
        tls,
        |answer| {
            needles.iter().all(|needle| {
                answer
                    .body
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            })
        },
        &format!(
            "the NameServer at {ns_addr} did not list {} (not registered)",
            names.join(", ")
        ),
    )
    .await
}

/// The machine's RAM (`MemTotal` of /proc/meminfo), which bounds what counts as "in memory"
/// for a new group's first offset; `None` where the OS does not say.
fn total_physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Where RocketMQ users expect a NameServer.
pub const DEFAULT_NAMESRV_PORT: u16 = 9876;
/// Where RocketMQ users expect a broker (`listenPort`).
pub const DEFAULT_BROKER_PORT: u16 = 10911;
/// The data directory of `vostok standalone` and `vostok broker`, under the working directory.
pub const DEFAULT_DATA_DIR: &str = "./vostok-data";

/// Why a server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    #[error("{0}")]
    Task(String),
    #[error("invalid option: {0}")]
    Usage(String),
}

impl RunError {
    /// The process exit code: 2 for configuration mistakes, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) | RunError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Broker settings common to `standalone` and `broker`, from flags; `None` means "not given"
/// (the config file, then the built-in default, decide).
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen_ip: Option<IpAddr>,
    pub broker_port: Option<u16>,
    pub broker_ip1: Option<IpAddr>,
    pub flush_disk_type: Option<FlushDiskType>,
    /// NameServers (`-n`); ignored by `standalone`, which registers with its own.
    pub namesrv_addrs: Option<Vec<String>>,
    /// The gRPC port (`--grpc-port`), over broker.conf's `grpcServerPort`.
    pub grpc_port: Option<u16>,
}

/// `vostok standalone`: a NameServer and a Broker in one process.
#[derive(Clone, Debug, Default)]
pub struct StandaloneOptions {
    pub namesrv_port: Option<u16>,
    pub broker: BrokerOptions,
}

/// `vostok namesrv`.
#[derive(Clone, Debug)]
pub struct NamesrvOptions {
    pub listen_ip: IpAddr,
    pub port: u16,
}

impl Default for NamesrvOptions {
    fn default() -> Self {
        Self {
            listen_ip: Ipv4Addr::LOCALHOST.into(),
            port: DEFAULT_NAMESRV_PORT,
        }
    }
}

/// A broker's effective configuration: defaults, then broker.conf, then flags.
#[derive(Clone, Debug)]
pub struct ResolvedBroker {
    pub config: BrokerConfig,
    pub data_dir: PathBuf,
    pub listen_addr: SocketAddr,
    /// The default ACL file: broker.conf `aclPlainFile`, else `conf/plain_acl.yml` under
    /// `ROCKETMQ_HOME` (as RocketMQ) or, without it, under the current directory.
    pub acl_file: PathBuf,
    /// The `tls.*` keys of the broker.conf (the `tls.config.file` is read at start).
    pub tls: tls::TlsConfig,
    /// The `metrics*` keys of the broker.conf.
    pub metrics: config::MetricsConfig,
    /// Where the gRPC port listens; `None` when `enableGrpcServer=false`.
    pub grpc_addr: Option<SocketAddr>,
}

impl ResolvedBroker {
    /// What the driver needs besides the core's config: the ACL file and the TLS listener (a
    /// test-mode certificate is made for the advertised address too).
    #[cfg(not(madsim))]
    pub fn driver_options(&self) -> Result<server::BrokerDriverOptions, RunError> {
        let config = self
            .tls
            .clone()
            .with_config_file()
            .map_err(|e| RunError::Usage(format!("TLS: {e}")))?;
        let names = tls::certificate_names(self.config.broker_ip1);
        let tls = config
            .listener(&names)
            .map_err(|e| RunError::Usage(format!("TLS: {e}")))?;
        let grpc_tls = config
            .grpc_listener(&names)
            .map_err(|e| RunError::Usage(format!("TLS: {e}")))?;
        let namesrv_tls = tls::NamesrvTls {
            #[cfg(not(madsim))]
            connector: config
                .client()
                .map_err(|e| RunError::Usage(format!("TLS: {e}")))?,
        };
        Ok(server::BrokerDriverOptions {
            acl_file: Some(absolute(&self.acl_file)),
            tls,
            namesrv_tls,
            metrics_listener: None,
            ha_listener: None,
            vip_listener: None,
            grpc_listener: None,
            grpc_tls,
        })
    }

    /// Binds the gRPC port (RocketMQ 5's MessagingService, [`grpc`]) when it is enabled.
    #[cfg(not(madsim))]
    pub async fn bind_grpc(&self) -> Result<Option<TcpListener>, RunError> {
        match self.grpc_addr {
            Some(addr) => bind(addr).await.map(Some),
            None => Ok(None),
        }
    }

    /// Binds the VIP port (RocketMQ's fast server, [`vostok_core::broker::listener`]) on the
    /// listen address, after the main port was bound on `bound_port`.
    ///
    /// A configured `listenPort` gives exactly `listenPort − 2` (any free port below 3, as
    /// RocketMQ), and failing to bind it fails the start as the main port's would. With
    /// `listenPort=0` the OS chose the main port; RocketMQ would then put the fast server on any
    /// free port, where no client finds it (clients derive the VIP address as the broker's
    /// port − 2), so Vostok tries the chosen port − 2 and, when that is taken, falls back to a
    /// free port with a warning rather than failing a start that asked for any port.
    #[cfg(not(madsim))]
    pub async fn bind_vip(&self, bound_port: u16) -> Result<TcpListener, RunError> {
        use vostok_core::broker::listener::vip_port;
        let ip = self.listen_addr.ip();
        if self.config.listen_port != 0 {
            return bind(SocketAddr::new(ip, vip_port(self.config.listen_port))).await;
        }
        let wanted = vip_port(bound_port);
        if wanted != 0 {
            match bind(SocketAddr::new(ip, wanted)).await {
                Ok(listener) => return Ok(listener),
                Err(e) => warn!("{e}; the VIP port goes to a free port instead"),
            }
        }
        bind(SocketAddr::new(ip, 0)).await
    }

    /// Binds a master's HA port on the listen address: `haListenPort`, else the broker's
    /// bound port + 1 (RocketMQ's default). A slave has none.
    #[cfg(not(madsim))]
    pub async fn bind_ha(&self, broker_port: u16) -> Result<Option<TcpListener>, RunError> {
        let replication = &self.config.replication;
        if !replication.role.is_master() {
            return Ok(None);
        }
        let port = match replication.ha_listen_port {
            0 => broker_port.wrapping_add(1),
            port => port,
        };
        bind(SocketAddr::new(self.listen_addr.ip(), port))
            .await
            .map(Some)
    }

    /// [`Self::bind_ha`] for a master whose slaves are told its HA address: with
    /// `listenPort=0` and no `haListenPort` it tries the bound port + 1 and falls back to a
    /// free port (the caller registers the port really bound), so a start that asked for any
    /// port does not fail on a taken neighbour.
    #[cfg(not(madsim))]
    pub async fn bind_ha_any(&self, broker_port: u16) -> Result<TcpListener, RunError> {
        let replication = &self.config.replication;
        let ip = self.listen_addr.ip();
        if replication.ha_listen_port != 0 || self.config.listen_port != 0 {
            let port = match replication.ha_listen_port {
                0 => broker_port.wrapping_add(1),
                port => port,
            };
            return bind(SocketAddr::new(ip, port)).await;
        }
        match bind(SocketAddr::new(ip, broker_port.wrapping_add(1))).await {
            Ok(listener) => Ok(listener),
            Err(e) => {
                warn!("{e}; the HA port goes to a free port instead");
                bind(SocketAddr::new(ip, 0)).await
            }
        }
    }

    /// Slave `id` of this master in a standalone: the same cluster, name, store and flush
    /// settings (a slave copies the master's CommitLog files byte for byte, so segment sizes
    /// must match), brokerId `id`, role SLAVE, following `ha_master_addr`, data under
    /// `<data>/slave-<id>`, listening on the master's port + 10·id (a free port when the master's
    /// is 0), without the master's metrics port.
    pub fn slave(&self, id: u32, ha_master_addr: Option<String>) -> ResolvedBroker {
        let mut slave = self.clone();
        slave.config.broker_id = u64::from(id);
        slave.config.replication.role = vostok_core::broker::BrokerRole::Slave;
        slave.config.replication.ha_master_address = ha_master_addr;
        slave.config.replication.ha_listen_port = 0;
        slave.config.listen_port = match self.config.listen_port {
            0 => 0,
            port => port.wrapping_add(STANDALONE_SLAVE_PORT_STEP.wrapping_mul(id as u16)),
        };
        slave.listen_addr.set_port(slave.config.listen_port);
        slave.data_dir = self.data_dir.join(format!("slave-{id}"));
        slave.metrics.exporter = config::MetricsExporterType::Disable;
        slave
    }

    /// Binds the Prometheus exporter's port when `metricsExporterType=PROM`: on
    /// `metricsPromExporterHost`, else on the broker's listen address.
    #[cfg(not(madsim))]
    pub async fn bind_metrics(&self) -> Result<Option<TcpListener>, RunError> {
        if self.metrics.exporter != config::MetricsExporterType::Prom {
            return Ok(None);
        }
        let ip = self.metrics.prom_host.unwrap_or(self.listen_addr.ip());
        bind(SocketAddr::new(ip, self.metrics.prom_port))
            .await
            .map(Some)
    }
}

/// Applies defaults, the config file and flags, in that order of increasing precedence.
pub fn resolve_broker(opts: &BrokerOptions) -> Result<ResolvedBroker, RunError> {
    let file = match &opts.config_file {
        Some(path) => config::load_broker_conf(path)?,
        None => config::BrokerFileConfig::default(),
    };
    for warning in &file.warnings {
        warn!("{warning}");
    }
    let mut config = file.broker;
    if opts.config_file.is_none() {
        // RocketMQ's built-in listenPort; also what BrokerConfig::default says, made explicit.
        config.listen_port = DEFAULT_BROKER_PORT;
    }
    let data_dir = opts
        .data_dir
        .clone()
        .or(file.store_path_root_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if let Some(commit_log) = &file.store_path_commit_log {
        if *commit_log != data_dir.join("commitlog") {
            warn!(
                "storePathCommitLog={} is not supported; the CommitLog stays in {}",
                commit_log.display(),
                data_dir.join("commitlog").display()
            );
        }
    }
    if let Some(port) = opts.broker_port {
        config.listen_port = port;
    }
    if let Some(ip) = opts.broker_ip1 {
        config.broker_ip1 = ip;
    }
    if let Some(flush) = opts.flush_disk_type {
        config.flush_disk_type = flush;
    }
    if let Some(addrs) = &opts.namesrv_addrs {
        config.namesrv_addrs = addrs.clone();
    }
    if let Some(bytes) = total_physical_memory_bytes() {
        config.total_physical_memory_bytes = bytes;
    }
    // Random choices of a production broker need not repeat across runs.
    config.seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let listen_ip = opts.listen_ip.unwrap_or(Ipv4Addr::LOCALHOST.into());
    // A broker on a free port (tests, benches) takes a free gRPC port too unless one is named.
    let grpc_port = opts
        .grpc_port
        .or(file.grpc.port)
        .unwrap_or(if config.listen_port == 0 {
            0
        } else {
            config::DEFAULT_GRPC_SERVER_PORT
        });
    // Only a master serves gRPC: POP, and so every 5.x consumer, runs on masters.
    let grpc_addr =
        (file.grpc.enable && config.broker_id == 0).then(|| SocketAddr::new(listen_ip, grpc_port));
    let acl_file = file.acl_plain_file.unwrap_or_else(|| {
        std::env::var_os("ROCKETMQ_HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join("conf/plain_acl.yml")
    });
    Ok(ResolvedBroker {
        acl_file,
        tls: file.tls,
        metrics: file.metrics,
        grpc_addr,
        listen_addr: SocketAddr::new(listen_ip, config.listen_port),
        config,
        data_dir,
    })
}

#[cfg(not(madsim))]
async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

#[cfg(not(madsim))]
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// The most slaves `vostok standalone --slaves` runs (RocketMQ sets no limit; beyond a few,
/// one process on one machine measures nothing a real group would show).
pub const MAX_STANDALONE_SLAVES: u32 = 8;

/// How far apart the ports of a standalone's brokers are: slave `i` listens on the master's
/// port + `i` × this (10921, 10931, … for 10911, as RocketMQ's sample slave configs), so each
/// broker's VIP (−2) and HA (+1) ports stay clear of the others'.
pub const STANDALONE_SLAVE_PORT_STEP: u16 = 10;

/// `vostok standalone --slaves N`: slaves of the standalone's broker, in the same process.
#[derive(Clone, Debug, Default)]
pub struct SlaveOptions {
    /// Slaves to run (brokerId 1..=count); 0 runs none.
    pub count: u32,
    /// The master's `brokerRole` (`--broker-role`); else broker.conf's `brokerRole`, else
    /// SYNC_MASTER when there are slaves (a send is answered once a slave has it).
    pub master_role: Option<vostok_core::broker::BrokerRole>,
}

#[cfg(not(madsim))]
/// A NameServer and a Broker running in this process, with the Broker's slaves if asked.
pub struct Standalone {
    namesrv: NamesrvServer,
    broker: BrokerServer,
    /// Slave `i + 1` at index `i`.
    slaves: Vec<BrokerServer>,
    /// `brokerIP1` of every broker here: what the NameServer lists them under.
    advertised_ip: IpAddr,
    data_dir: PathBuf,
}

/// Whether a broker.conf sets `key` at all (so a flag-less default must not override it).
#[cfg(not(madsim))]
fn conf_sets(config_file: Option<&Path>, key: &str) -> Result<bool, RunError> {
    let Some(path) = config_file else {
        return Ok(false);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(config::parse_properties(&text)
        .iter()
        .any(|(k, _)| k == key))
}

#[cfg(not(madsim))]
impl Standalone {
    /// Binds both listeners, then starts the NameServer, then the Broker, which registers with
    /// the NameServer over loopback TCP like any broker.
    pub async fn start(opts: &StandaloneOptions) -> Result<Self, RunError> {
        Self::start_with_slaves(opts, &SlaveOptions::default()).await
    }

    /// [`Standalone::start`] with `slaves.count` slaves of the broker: each its own Broker
    /// (brokerId `i`, the master's cluster, name and store settings, data under
    /// `<data>/slave-<i>`, listening on the master's port + 10·i, or a free port when the
    /// master's is 0) following the master's HA port (`haMasterAddress`). Returns once the
    /// NameServer lists every broker and the master counts every slave in sync.
    pub async fn start_with_slaves(
        opts: &StandaloneOptions,
        slaves: &SlaveOptions,
    ) -> Result<Self, RunError> {
        use vostok_core::broker::BrokerRole;
        if slaves.count > MAX_STANDALONE_SLAVES {
            return Err(RunError::Usage(format!(
                "--slaves {} is more than {MAX_STANDALONE_SLAVES}",
                slaves.count
            )));
        }
        let mut resolved = resolve_broker(&opts.broker)?;
        let last_port = u32::from(resolved.config.listen_port)
            + u32::from(STANDALONE_SLAVE_PORT_STEP) * slaves.count;
        if resolved.config.listen_port != 0 && last_port > u32::from(u16::MAX) {
            return Err(RunError::Usage(format!(
                "--slaves {}: slave ports would pass 65535 (listenPort {} + {} per slave)",
                slaves.count, resolved.config.listen_port, STANDALONE_SLAVE_PORT_STEP
            )));
        }
        if slaves.count > 0 {
            let role = match slaves.master_role {
                Some(role) => role,
                None if conf_sets(opts.broker.config_file.as_deref(), "brokerRole")? => {
                    resolved.config.replication.role
                }
                None => BrokerRole::SyncMaster,
            };
            if !role.is_master() {
                return Err(RunError::Usage(
                    "with --slaves the standalone's broker is their master: brokerRole must be \
                     ASYNC_MASTER or SYNC_MASTER"
                        .to_owned(),
                ));
            }
            resolved.config.replication.role = role;
            // The master's id, as RocketMQ forces for a master role.
            resolved.config.broker_id = 0;
        }
        let listen_ip = resolved.listen_addr.ip();
        let ns_listener = bind(SocketAddr::new(
            listen_ip,
            opts.namesrv_port.unwrap_or(DEFAULT_NAMESRV_PORT),
        ))
        .await?;
        let mut options = resolved.driver_options()?;
        options.metrics_listener = resolved.bind_metrics().await?;
        // One TLS setting for the pair, as one RocketMQ home gives both.
        let namesrv = NamesrvServer::start_with_tls(
            ns_listener,
            NamesrvConfig::default(),
            options.tls.clone(),
        )?;
        let ns_addr = server::dialable(namesrv.local_addr()).to_string();
        if !resolved.config.namesrv_addrs.is_empty() {
            warn!(
                ignored = ?resolved.config.namesrv_addrs,
                "standalone registers with its own namesrv only"
            );
        }
        resolved.config.namesrv_addrs = vec![ns_addr];
        let probe_tls = options.namesrv_tls.clone();
        let started = Self::start_brokers(namesrv, resolved, options, slaves.count).await?;
        // Clients that start right after us must find the broker's routes: answer only once the
        // NameServer lists the broker (its first registration goes out at start), and every
        // slave with it.
        if let Err(e) = started.wait_until_ready(&probe_tls).await {
            let _ = started.shutdown().await;
            return Err(e);
        }
        Ok(started)
    }

    /// Binds and starts the master (and its slaves); on failure stops what started.
    async fn start_brokers(
        namesrv: NamesrvServer,
        mut resolved: ResolvedBroker,
        mut options: server::BrokerDriverOptions,
        slave_count: u32,
    ) -> Result<Self, RunError> {
        let mut started = Vec::new();
        let advertised_ip = resolved.config.broker_ip1;
        let result = async {
            let broker_listener = bind(resolved.listen_addr).await?;
            let bound_port = broker_listener.local_addr()?.port();
            options.vip_listener = Some(resolved.bind_vip(bound_port).await?);
            options.grpc_listener = resolved.bind_grpc().await?;
            let ha_addr = if slave_count > 0 {
                let ha = resolved.bind_ha_any(bound_port).await?;
                let addr = ha.local_addr()?;
                // Registered as haServerAddr: the port really bound.
                resolved.config.replication.ha_listen_port = addr.port();
                options.ha_listener = Some(ha);
                Some(server::dialable(addr))
            } else {
                None
            };
            std::fs::create_dir_all(&resolved.data_dir)?;
            let data_dir = absolute(&resolved.data_dir);
            let master = resolved.clone();
            started.push(BrokerServer::start(
                broker_listener,
                resolved.config.clone(),
                &data_dir,
                options,
            )?);
            for id in 1..=slave_count {
                let slave = master.slave(id, ha_addr.map(|a| a.to_string()));
                let listener = bind(slave.listen_addr).await?;
                let bound_port = listener.local_addr()?.port();
                let mut options = slave.driver_options()?;
                options.vip_listener = Some(slave.bind_vip(bound_port).await?);
                std::fs::create_dir_all(&slave.data_dir)?;
                let dir = absolute(&slave.data_dir);
                started.push(BrokerServer::start(listener, slave.config, &dir, options)?);
            }
            Ok::<_, RunError>(data_dir)
        }
        .await;
        match result {
            Ok(data_dir) => {
                let mut brokers = started.into_iter();
                let broker = brokers.next().expect("the master started first");
                Ok(Self {
                    namesrv,
                    broker,
                    slaves: brokers.collect(),
                    advertised_ip,
                    data_dir,
                })
            }
            Err(e) => {
                for broker in started.into_iter().rev() {
                    let _ = broker.shutdown().await;
                }
                namesrv.shutdown().await;
                Err(e)
            }
        }
    }

    /// Waits until the NameServer lists the master and every slave, then until the master
    /// counts every slave in sync (its HA link up and its ack within haSlaveFallbehindMax).
    async fn wait_until_ready(&self, probe_tls: &tls::NamesrvTls) -> Result<(), RunError> {
        let ns_addr = self.namesrv_addr();
        // Listed under their advertised addresses (brokerIP1), not the ones dialled here.
        let names: Vec<String> = std::iter::once(&self.broker)
            .chain(&self.slaves)
            .map(|b| SocketAddr::new(self.advertised_ip, b.local_addr().port()).to_string())
            .collect();
        wait_until_registered(ns_addr, &names, REGISTRATION_WAIT, probe_tls).await?;
        if self.slaves.is_empty() {
            return Ok(());
        }
        let wanted = self.slaves.len() as u64;
        ask_until(
            self.broker_addr(),
            vostok_core::remoting::codes::request::GET_BROKER_HA_STATUS,
            REGISTRATION_WAIT,
            probe_tls,
            |answer| {
                serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["inSyncSlaveNums"].as_u64())
                    .is_some_and(|n| n >= wanted)
            },
            &format!(
                "the master at {} did not count its {wanted} slave(s) in sync",
                self.broker_addr()
            ),
        )
        .await
    }

    /// The NameServer's address, dialable from this host.
    pub fn namesrv_addr(&self) -> SocketAddr {
        server::dialable(self.namesrv.local_addr())
    }

    /// The Broker's address, dialable from this host.
    pub fn broker_addr(&self) -> SocketAddr {
        server::dialable(self.broker.local_addr())
    }

    /// The Broker's VIP port (`listenPort − 2`), dialable from this host.
    pub fn vip_addr(&self) -> Option<SocketAddr> {
        self.broker.vip_addr().map(server::dialable)
    }

    /// The gRPC port's address (RocketMQ 5 clients' endpoint), dialable from this host; `None`
    /// when `enableGrpcServer=false`.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.broker.grpc_addr().map(server::dialable)
    }

    /// The slaves' addresses (brokerId 1, 2, …), dialable from this host.
    pub fn slave_addrs(&self) -> Vec<SocketAddr> {
        self.slaves
            .iter()
            .map(|s| server::dialable(s.local_addr()))
            .collect()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The line `vostok standalone` prints once everything listens:
    /// `vostok ready namesrv=A broker=B data=PATH`, with `slaves=S1,S2` when there are slaves
    /// and `grpc=G` when the gRPC port is on, both before `data=` (the path stays last: it may
    /// hold spaces).
    pub fn ready_line(&self) -> String {
        let slaves = if self.slaves.is_empty() {
            String::new()
        } else {
            let addrs: Vec<String> = self.slave_addrs().iter().map(ToString::to_string).collect();
            format!(" slaves={}", addrs.join(","))
        };
        let grpc = self
            .grpc_addr()
            .map(|a| format!(" grpc={a}"))
            .unwrap_or_default();
        format!(
            "vostok ready namesrv={} broker={}{slaves}{grpc} data={}",
            self.namesrv_addr(),
            self.broker_addr(),
            self.data_dir.display()
        )
    }

    /// Resolves only if the NameServer, the Broker or a slave dies on its own. Cancel-safe.
    pub async fn stopped(&mut self) -> RunError {
        let slaves = any_stopped(&mut self.slaves);
        tokio::select! {
            e = self.namesrv.stopped() => e,
            e = self.broker.stopped() => e,
            e = slaves => e,
        }
    }

    /// Stops the slaves, then the Broker (so its unregister reaches the NameServer), then the
    /// NameServer.
    pub async fn shutdown(self) -> Result<(), RunError> {
        let mut result = Ok(());
        for slave in self.slaves.into_iter().rev() {
            if let Err(e) = slave.shutdown().await {
                result = result.and(Err(e));
            }
        }
        let master = self.broker.shutdown().await;
        self.namesrv.shutdown().await;
        master.and(result)
    }
}

/// Resolves when any of `servers` dies on its own (never when there are none). Cancel-safe, as
/// [`BrokerServer::stopped`] is.
#[cfg(not(madsim))]
async fn any_stopped(servers: &mut [BrokerServer]) -> RunError {
    use std::future::Future;
    std::future::poll_fn(|cx| {
        for server in servers.iter_mut() {
            let stopped = std::pin::pin!(server.stopped());
            if let std::task::Poll::Ready(e) = stopped.poll(cx) {
                return std::task::Poll::Ready(e);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(not(madsim))]
/// Prints the ready line on stdout and flushes it (tests and scripts wait for it).
fn announce(line: &str) -> Result<(), RunError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    info!("{line}");
    Ok(())
}

#[cfg(not(madsim))]
/// Resolves on SIGINT or SIGTERM. Installed before the ready line so no signal is missed.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(not(madsim))]
impl Signals {
    fn install() -> Result<Self, RunError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => info!("SIGINT received"),
            _ = self.terminate.recv() => info!("SIGTERM received"),
        }
    }
}

#[cfg(not(madsim))]
/// `vostok standalone`: start, announce, run until SIGINT/SIGTERM, shut down gracefully.
pub async fn run_standalone(opts: StandaloneOptions, slaves: SlaveOptions) -> Result<(), RunError> {
    let mut signals = Signals::install()?;
    let standalone = Standalone::start_with_slaves(&opts, &slaves).await?;
    let mut standalone = standalone;
    announce(&standalone.ready_line())?;
    let died = tokio::select! {
        _ = signals.wait() => None,
        e = standalone.stopped() => Some(e),
    };
    match died {
        None => standalone.shutdown().await,
        Some(e) => {
            // Stop what still runs (syncing what was written), then report the failure.
            let _ = standalone.shutdown().await;
            Err(e)
        }
    }
}

#[cfg(not(madsim))]
/// `vostok namesrv`.
pub async fn run_namesrv(opts: NamesrvOptions) -> Result<(), RunError> {
    let mut signals = Signals::install()?;
    let listener = bind(SocketAddr::new(opts.listen_ip, opts.port)).await?;
    // RocketMQ's NameServer takes its TLS keys from tls.properties (and its default mode).
    let tls = tls::TlsConfig::default()
        .with_config_file()
        .and_then(|t| t.listener(&tls::certificate_names(opts.listen_ip)))
        .map_err(|e| RunError::Usage(format!("TLS: {e}")))?;
    let mut namesrv = NamesrvServer::start_with_tls(listener, NamesrvConfig::default(), tls)?;
    announce(&format!(
        "vostok ready namesrv={}",
        server::dialable(namesrv.local_addr())
    ))?;
    let died = tokio::select! {
        _ = signals.wait() => None,
        e = namesrv.stopped() => Some(e),
    };
    namesrv.shutdown().await;
    died.map_or(Ok(()), Err)
}

#[cfg(not(madsim))]
/// `vostok broker`.
pub async fn run_broker(opts: BrokerOptions) -> Result<(), RunError> {
    let mut signals = Signals::install()?;
    let mut opts = opts;
    if opts.namesrv_addrs.is_none() {
        // RocketMQ's fallback when neither -n nor namesrvAddr is given.
        if let Ok(env) = std::env::var("NAMESRV_ADDR") {
            let addrs = config::parse_namesrv_addrs(&env)
                .map_err(|e| RunError::Usage(format!("NAMESRV_ADDR: {e}")))?;
            let from_file = opts
                .config_file
                .as_deref()
                .map(config::load_broker_conf)
                .transpose()?
                .is_some_and(|f| !f.broker.namesrv_addrs.is_empty());
            if !from_file {
                opts.namesrv_addrs = Some(addrs);
            }
        }
    }
    let resolved = resolve_broker(&opts)?;
    if resolved.config.namesrv_addrs.is_empty() {
        warn!("no namesrv configured (-n, namesrvAddr or NAMESRV_ADDR): clients cannot find this broker");
    }
    let listener = bind(resolved.listen_addr).await?;
    std::fs::create_dir_all(&resolved.data_dir)?;
    let data_dir = absolute(&resolved.data_dir);
    let mut options = resolved.driver_options()?;
    options.metrics_listener = resolved.bind_metrics().await?;
    let bound_port = listener.local_addr()?.port();
    options.ha_listener = resolved.bind_ha(bound_port).await?;
    options.vip_listener = Some(resolved.bind_vip(bound_port).await?);
    options.grpc_listener = resolved.bind_grpc().await?;
    let mut broker = BrokerServer::start(listener, resolved.config, &data_dir, options)?;
    let grpc = broker
        .grpc_addr()
        .map(|a| format!(" grpc={}", server::dialable(a)))
        .unwrap_or_default();
    announce(&format!(
        "vostok ready broker={}{grpc} data={}",
        server::dialable(broker.local_addr()),
        data_dir.display()
    ))?;
    let died = tokio::select! {
        _ = signals.wait() => None,
        e = broker.stopped() => Some(e),
    };
    match died {
        None => broker.shutdown().await,
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use vostok_core::remoting::codes::{request, response};
    use vostok_core::remoting::{encode, FrameDecoder, RemotingCommand};

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("broker.conf");
        std::fs::write(
            &conf,
            "listenPort=10999\nbrokerIP1=10.1.1.1\nstorePathRootDir=/tmp/from-file\nflushDiskType=SYNC_FLUSH\nnamesrvAddr=1.2.3.4:9876\n",
        )
        .unwrap();
        let from_file = resolve_broker(&BrokerOptions {
            config_file: Some(conf.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_file.config.listen_port, 10999);
        assert_eq!(from_file.listen_addr, "127.0.0.1:10999".parse().unwrap());
        assert_eq!(from_file.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(from_file.config.namesrv_addrs, vec!["1.2.3.4:9876"]);
        let flagged = resolve_broker(&BrokerOptions {
            config_file: Some(conf),
            data_dir: Some(dir.path().join("d")),
            broker_port: Some(0),
            broker_ip1: Some("127.0.0.2".parse().unwrap()),
            flush_disk_type: Some(FlushDiskType::AsyncFlush),
            namesrv_addrs: Some(vec!["127.0.0.1:1".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(flagged.config.listen_port, 0);
        assert_eq!(
            flagged.config.broker_ip1,
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(flagged.config.flush_disk_type, FlushDiskType::AsyncFlush);
        assert_eq!(flagged.data_dir, dir.path().join("d"));
        assert_eq!(flagged.config.namesrv_addrs, vec!["127.0.0.1:1"]);
    }

    #[test]
    fn defaults_are_local() {
        let r = resolve_broker(&BrokerOptions::default()).unwrap();
        assert_eq!(r.listen_addr, "127.0.0.1:10911".parse().unwrap());
        assert_eq!(r.config.broker_ip1, IpAddr::from(Ipv4Addr::LOCALHOST));
        assert_eq!(r.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    async fn call(
        stream: &mut tokio::net::TcpStream,
        command: &RemotingCommand,
    ) -> RemotingCommand {
        let mut out = BytesMut::new();
        encode(command, &mut out);
        stream.write_all(&out).await.unwrap();
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        loop {
            if let Some(reply) = decoder.decode(&mut buf).expect("well-formed reply") {
                return reply;
            }
            let n = stream.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "server closed the connection");
        }
    }

    /// Needs the core's NameServer.
    #[tokio::test]
    async fn undecodable_frame_closes_only_that_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let namesrv = NamesrvServer::start(listener, NamesrvConfig::default()).unwrap();
        let mut bad = tokio::net::TcpStream::connect(namesrv.local_addr())
            .await
            .unwrap();
        // Frame length 2: too short to hold the header-length word.
        bad.write_all(&[0, 0, 0, 2, 0xde, 0xad]).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), bad.read(&mut buf))
            .await
            .expect("closed promptly")
            .unwrap_or(0);
        assert_eq!(n, 0, "no reply to an undecodable frame, just a close");
        // Another connection is still served.
        let mut good = tokio::net::TcpStream::connect(namesrv.local_addr())
            .await
            .unwrap();
        let mut req =
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "Nope");
        req.opaque = 7;
        let reply = call(&mut good, &req).await;
        assert!(reply.is_response());
        assert_eq!(reply.opaque, 7);
        assert_eq!(reply.code, response::TOPIC_NOT_EXIST);
        namesrv.shutdown().await;
    }

    /// SYNC_FLUSH: a send is answered only after the flusher reported it durable, and the
    /// message is in the store after a graceful shutdown. Needs the core's Broker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_flush_send_is_answered_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        // Small segments keep recovery at reopen quick; the disk ratios are set so that how
        // full the host's disk happens to be cannot refuse the send.
        let conf = dir.path().join("broker.conf");
        std::fs::write(
            &conf,
            "mappedFileSizeCommitLog=1048576\nflushDiskType=ASYNC_FLUSH\n\
             diskMaxUsedSpaceRatio=95\ndiskSpaceCleanForciblyRatio=100\n\
             diskSpaceWarningLevelRatio=100\n",
        )
        .unwrap();
        let opts = StandaloneOptions {
            namesrv_port: Some(0),
            broker: BrokerOptions {
                config_file: Some(conf),
                data_dir: Some(data_dir.clone()),
                broker_port: Some(0),
                // The flag overrides the file.
                flush_disk_type: Some(FlushDiskType::SyncFlush),
                ..Default::default()
            },
        };
        let standalone = Standalone::start(&opts).await.expect("starts");
        let mut stream = tokio::net::TcpStream::connect(standalone.broker_addr())
            .await
            .unwrap();
        // SEND_MESSAGE_V2 with its one-letter header keys (REMOTING.md §3.2).
        let mut req = RemotingCommand::request(request::SEND_MESSAGE_V2)
            .with_ext("a", "PG")
            .with_ext("b", "TopicSync")
            .with_ext("c", "TBW102")
            .with_ext("d", 4)
            .with_ext("e", 0)
            .with_ext("f", 0)
            .with_ext("g", 1_700_000_000_000i64)
            .with_ext("h", 0)
            .with_ext("i", "TAGS\u{1}t\u{2}WAIT\u{1}true\u{2}")
            .with_ext("j", 0)
            .with_ext("k", false)
            .with_body(bytes::Bytes::from_static(b"durable hello"));
        req.opaque = 42;
        let reply =
            tokio::time::timeout(std::time::Duration::from_secs(10), call(&mut stream, &req))
                .await
                .expect("a SYNC_FLUSH send is answered once synced");
        assert_eq!(reply.opaque, 42);
        assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
        let queue_id: i32 = reply.ext_num("queueId").expect("queueId");
        standalone.shutdown().await.expect("clean shutdown");
        // A clean shutdown writes the checkpoint and removes the abort marker.
        assert!(data_dir.join("checkpoint").exists());
        assert!(!data_dir.join("abort").exists());

        let storage = storage::MmapStorage::open(&data_dir).expect("lock released");
        let store_config = vostok_core::store::StoreConfig {
            commitlog_segment_bytes: 1 << 20,
            ..Default::default()
        };
        let store = vostok_core::store::MessageStore::open(storage, store_config).unwrap();
        assert_eq!(
            store.recovery_report().mode,
            vostok_core::store::RecoveryMode::Clean
        );
        let got = store
            .get(
                "TopicSync",
                queue_id,
                vostok_core::store::QueueOffset(0),
                8,
                &|_| true,
            )
            .unwrap();
        assert_eq!(got.records.len(), 1);
        let record = vostok_core::message::MessageRecord::decode(&got.records[0], true).unwrap();
        assert_eq!(&record.body[..], b"durable hello");
    }

    /// Needs the core's codec, NameServer and Broker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn standalone_serves_the_default_topic_route() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StandaloneOptions {
            namesrv_port: Some(0),
            broker: BrokerOptions {
                data_dir: Some(dir.path().join("data")),
                broker_port: Some(0),
                ..Default::default()
            },
        };
        let standalone = Standalone::start(&opts).await.expect("starts");
        let line = standalone.ready_line();
        assert!(
            line.starts_with("vostok ready namesrv=127.0.0.1:"),
            "{line}"
        );
        assert_ne!(standalone.broker_addr().port(), 0);
        let mut stream = tokio::net::TcpStream::connect(standalone.namesrv_addr())
            .await
            .unwrap();
        // The broker registers asynchronously: ask until the route appears.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut opaque = 0;
        let route = loop {
            opaque += 1;
            let mut req = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC)
                .with_ext("topic", "TBW102");
            req.opaque = opaque;
            let reply = call(&mut stream, &req).await;
            assert!(reply.is_response());
            assert_eq!(reply.opaque, opaque);
            if reply.code == response::SUCCESS {
                break reply;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no route for TBW102"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let json: serde_json::Value = serde_json::from_slice(&route.body).expect("route JSON");
        let advertised = format!("127.0.0.1:{}", standalone.broker_addr().port());
        let text = json.to_string();
        assert!(
            text.contains(&advertised),
            "route names the bound port: {text}"
        );
        assert!(json.get("queueDatas").is_some(), "{text}");
        standalone.shutdown().await.expect("clean shutdown");
    }
}
