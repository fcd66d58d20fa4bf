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

/// Asks the NameServer at `ns_addr` for its cluster info until it lists `broker_name`.
#[cfg(not(madsim))]
async fn wait_until_registered(
    ns_addr: SocketAddr,
    broker_name: &str,
    timeout: std::time::Duration,
    tls: &tls::NamesrvTls,
) -> Result<(), RunError> {
    use bytes::BytesMut;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use vostok_core::remoting::codes::request;
    use vostok_core::remoting::{encode, FrameDecoder, RemotingCommand};

    /// Asks GET_BROKER_CLUSTER_INFO on `stream` until the answer names the broker.
    async fn ask_until_listed<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        ns_addr: SocketAddr,
        broker_name: &str,
    ) -> Result<(), RunError> {
        // A broker name inside the body is always a quoted JSON string.
        let needle = format!("\"{broker_name}\"");
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let fail =
            |e: &dyn std::fmt::Display| RunError::Task(format!("cluster info from {ns_addr}: {e}"));
        for opaque in 1.. {
            let mut ask = RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO);
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
            if answer.code == 0
                && answer
                    .body
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    let probe = async {
        let stream = tokio::net::TcpStream::connect(ns_addr).await?;
        #[cfg(not(madsim))]
        if let Some(connector) = &tls.connector {
            // Our own NameServer with TLS only (tls.server.mode=enforcing): asked over TLS.
            let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(ns_addr.ip().into());
            let stream = connector.connect(name, stream).await?;
            return ask_until_listed(stream, ns_addr, broker_name).await;
        }
        let _ = tls;
        ask_until_listed(stream, ns_addr, broker_name).await
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(RunError::Task(format!(
            "the broker did not register with the NameServer at {ns_addr} within {} s",
            timeout.as_secs()
        ))),
    }
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
        let tls = config
            .listener(&tls::certificate_names(self.config.broker_ip1))
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
        })
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

#[cfg(not(madsim))]
/// A NameServer and a Broker running in this process.
pub struct Standalone {
    namesrv: NamesrvServer,
    broker: BrokerServer,
    data_dir: PathBuf,
}

#[cfg(not(madsim))]
impl Standalone {
    /// Binds both listeners, then starts the NameServer, then the Broker, which registers with
    /// the NameServer over loopback TCP like any broker.
    pub async fn start(opts: &StandaloneOptions) -> Result<Self, RunError> {
        let mut resolved = resolve_broker(&opts.broker)?;
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
        let broker_listener = bind(resolved.listen_addr).await?;
        std::fs::create_dir_all(&resolved.data_dir)?;
        let data_dir = absolute(&resolved.data_dir);
        let broker_name = resolved.config.broker_name.clone();
        let probe_tls = options.namesrv_tls.clone();
        let broker = match BrokerServer::start(broker_listener, resolved.config, &data_dir, options)
        {
            Ok(broker) => broker,
            Err(e) => {
                namesrv.shutdown().await;
                return Err(e);
            }
        };
        let standalone = Self {
            namesrv,
            broker,
            data_dir,
        };
        // Clients that start right after us must find the broker's routes: answer only once the
        // NameServer lists the broker (its first registration goes out at start).
        let ns_addr = standalone.namesrv_addr();
        if let Err(e) =
            wait_until_registered(ns_addr, &broker_name, REGISTRATION_WAIT, &probe_tls).await
        {
            let _ = standalone.shutdown().await;
            return Err(e);
        }
        Ok(standalone)
    }

    /// The NameServer's address, dialable from this host.
    pub fn namesrv_addr(&self) -> SocketAddr {
        server::dialable(self.namesrv.local_addr())
    }

    /// The Broker's address, dialable from this host.
    pub fn broker_addr(&self) -> SocketAddr {
        server::dialable(self.broker.local_addr())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The line `vostok standalone` prints once everything listens.
    pub fn ready_line(&self) -> String {
        format!(
            "vostok ready namesrv={} broker={} data={}",
            self.namesrv_addr(),
            self.broker_addr(),
            self.data_dir.display()
        )
    }

    /// Resolves only if the NameServer or the Broker dies on its own. Cancel-safe.
    pub async fn stopped(&mut self) -> RunError {
        tokio::select! {
            e = self.namesrv.stopped() => e,
            e = self.broker.stopped() => e,
        }
    }

    /// Stops the Broker first (so its unregister reaches the NameServer), then the NameServer.
    pub async fn shutdown(self) -> Result<(), RunError> {
        let result = self.broker.shutdown().await;
        self.namesrv.shutdown().await;
        result
    }
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
pub async fn run_standalone(opts: StandaloneOptions) -> Result<(), RunError> {
    let mut signals = Signals::install()?;
    let standalone = Standalone::start(&opts).await?;
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
    options.ha_listener = resolved.bind_ha(listener.local_addr()?.port()).await?;
    let mut broker = BrokerServer::start(listener, resolved.config, &data_dir, options)?;
    announce(&format!(
        "vostok ready broker={} data={}",
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
