//! The tokio driver: sockets, timers and the flusher around the core's state machines.
//!
//! ```text
//!  accept loop ──spawn──▶ connection task (read, FrameDecoder) ──Vec<RemotingCommand>──┐
//!                          │ writer task ◀──unbounded Outbound── owner task ◀───────────┘ (bounded mpsc)
//!                                                     │  ▲
//!                         SendToNamesrv ──▶ namesrv client task ──response──┤ (unbounded "internal")
//!                         Sync ──▶ flusher thread (msync via SyncHandle) ──Synced──┤
//!                   Checkpoint ──▶ checkpoint thread (msync, file) ──CheckpointWritten──┘
//! ```
//!
//! Flushing: the broker decides when (RocketMQ's ASYNC_FLUSH policy and group commit, see
//! `vostok_core::broker::flush`) and emits `Sync` outputs for the CommitLog and `Checkpoint`
//! outputs for the ConsumeQueues, the index and the checkpoint file; two threads make them
//! durable side by side and report back (`crate::durability`). At shutdown the owner stops both,
//! takes a final checkpoint itself, syncs it, writes the checkpoint file and closes the store,
//! which removes the abort marker.
//!
//! One owner task per state machine. Each wake-up it takes *every* queued input without waiting,
//! feeds them with one `now_ms`, fires the timeout if due, and drains `poll_output` once. A
//! connection's writer encodes everything queued for it into one buffer and writes it with one
//! `write_all`, so many responses leave in one syscall.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use vostok_core::broker::grpc::{
    CallId, CallMeta, GrpcOutput, GrpcReply, GrpcRequest, TransportError,
};
use vostok_core::broker::{Broker, BrokerConfig, BrokerOutput, Listener};
use vostok_core::clock::SlewedClock;
use vostok_core::namesrv::{NameServer, NamesrvConfig, NamesrvOutput};
use vostok_core::remoting::{encode, FrameDecoder, RemotingCommand};
use vostok_core::store::{CheckpointRequest, SyncRequest};
use vostok_core::ConnId;

use crate::acl_files::{AclFiles, ACL_WATCH_INTERVAL};
use crate::durability::{
    flush_batch, spawn_checkpointer, spawn_flusher, write_checkpoint, Done, Worker,
};
#[cfg(not(madsim))]
use crate::storage::MmapStorage;
use crate::storage::{DriverStorage, DriverSync};
#[cfg(not(madsim))]
use crate::tls::TlsMode;
use crate::tls::{NamesrvTls, TlsListener};
use crate::RunError;

/// Batches of decoded inputs queued per owner before connection tasks wait (backpressure).
const INPUT_QUEUE_BATCHES: usize = 1024;
/// Read buffer growth step of a connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Connect timeout towards a NameServer (RocketMQ's client default, 3 s).
const NAMESRV_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnect backoff towards a NameServer: doubles from the first value up to the second. A
/// new request from the broker ends a backoff at once (as RocketMQ's broker connects on every
/// registration): after a NameServer restart or a partition the next registration is tried
/// when it is due, not up to a backoff later; attempts stay bounded by the broker's period.
const NAMESRV_BACKOFF_MIN: Duration = Duration::from_millis(100);
const NAMESRV_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Requests kept for a NameServer that cannot be reached; older ones are dropped (the broker
/// re-registers periodically, so only the newest matter).
const NAMESRV_QUEUE_MAX: usize = 16;
/// A NameServer that answers none of the requests sent on a connection for this long is taken
/// for gone (a half-open connection): the connection is re-opened and the requests sent again.
const NAMESRV_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the broker's disk is measured (statvfs) for retention and the disk-full check.
const DISK_CHECK_INTERVAL_MS: u64 = 1_000;
/// How long a shutting-down broker waits for its NameServers to acknowledge the unregister.
const UNREGISTER_WAIT: Duration = Duration::from_secs(3);

/// Wall-clock epoch milliseconds that never go backwards and never stand still, as the core
/// requires ([`SlewedClock`]: after the wall clock is stepped back, time runs on the monotonic
/// clock, slowed, until the wall clock catches up).
#[derive(Debug)]
pub struct Clock {
    slewed: SlewedClock,
    origin: tokio::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            slewed: SlewedClock::default(),
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock {
    pub fn now_ms(&mut self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        #[cfg(madsim)]
        let wall = sim_clock::adjust(wall);
        let mono_us = self.origin.elapsed().as_micros() as u64;
        self.slewed.now_ms(wall, mono_us)
    }
}

/// Per-node clocks under simulation: madsim has one global clock, so the simulator installs a
/// hook that turns it into the calling node's (offset, drift). One simulation runs per OS
/// thread, hence a thread-local.
#[cfg(madsim)]
pub mod sim_clock {
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Maps the simulated wall clock (epoch ms) to the current node's clock.
    pub type Hook = Rc<dyn Fn(u64) -> u64>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Installs (or with `None` removes) this thread's clock hook.
    pub fn set_hook(hook: Option<Hook>) {
        HOOK.with(|h| *h.borrow_mut() = hook);
    }

    pub(crate) fn adjust(wall_ms: u64) -> u64 {
        let hook = HOOK.with(|h| h.borrow().clone());
        match hook {
            Some(hook) => hook(wall_ms),
            None => wall_ms,
        }
    }
}

/// A connection's read and write halves: a socket's own halves, or a TLS stream's. madsim's
/// simulated stream has no `into_split` (and no TLS), so under simulation tokio's generic
/// `io::split` does the same.
#[cfg(not(madsim))]
pub(crate) use halves::{ReadHalf, WriteHalf};
#[cfg(madsim)]
pub(crate) type ReadHalf = tokio::io::ReadHalf<TcpStream>;
#[cfg(madsim)]
pub(crate) type WriteHalf = tokio::io::WriteHalf<TcpStream>;

pub(crate) fn split(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    #[cfg(not(madsim))]
    {
        let (r, w) = stream.into_split();
        (ReadHalf::Plain(r), WriteHalf::Plain(w))
    }
    #[cfg(madsim)]
    return tokio::io::split(stream);
}

#[cfg(not(madsim))]
mod halves {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::TcpStream;

    pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;
    pub type ClientTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

    pub enum ReadHalf {
        Plain(OwnedReadHalf),
        Tls(tokio::io::ReadHalf<TlsStream>),
        ClientTls(tokio::io::ReadHalf<ClientTlsStream>),
    }

    pub enum WriteHalf {
        Plain(OwnedWriteHalf),
        Tls(tokio::io::WriteHalf<TlsStream>),
        ClientTls(tokio::io::WriteHalf<ClientTlsStream>),
    }

    impl AsyncRead for ReadHalf {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.get_mut() {
                ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
                ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
                ReadHalf::ClientTls(r) => Pin::new(r).poll_read(cx, buf),
            }
        }
    }

    impl AsyncWrite for WriteHalf {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            match self.get_mut() {
                WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
                WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
                WriteHalf::ClientTls(w) => Pin::new(w).poll_write(cx, buf),
            }
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            match self.get_mut() {
                WriteHalf::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
                WriteHalf::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
                WriteHalf::ClientTls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            }
        }

        fn is_write_vectored(&self) -> bool {
            match self {
                WriteHalf::Plain(w) => w.is_write_vectored(),
                WriteHalf::Tls(w) => w.is_write_vectored(),
                WriteHalf::ClientTls(w) => w.is_write_vectored(),
            }
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.get_mut() {
                WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
                WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
                WriteHalf::ClientTls(w) => Pin::new(w).poll_flush(cx),
            }
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.get_mut() {
                WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
                WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
                WriteHalf::ClientTls(w) => Pin::new(w).poll_shutdown(cx),
            }
        }
    }
}

/// How long a TLS client may take over its handshake.
#[cfg(not(madsim))]
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The halves of an accepted connection, after the TLS decision on its first byte
/// ([`crate::tls`]); `None` when the connection is to be closed.
async fn open_accepted(
    role: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    tls: &TlsListener,
) -> Option<(ReadHalf, WriteHalf)> {
    #[cfg(madsim)]
    {
        let _ = (role, peer, tls);
        Some(split(stream))
    }
    #[cfg(not(madsim))]
    {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let wants_tls = first[0] == crate::tls::TLS_HANDSHAKE_RECORD;
        match (wants_tls, tls.mode, &tls.acceptor) {
            (true, TlsMode::Disabled, _) | (true, _, None) => {
                warn!(role, %peer, "closing a TLS connection: TLS is disabled on this port (tls.server.mode=disabled)");
                None
            }
            (true, _, Some(acceptor)) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let (r, w) = tokio::io::split(tls_stream);
                        Some((ReadHalf::Tls(r), WriteHalf::Tls(w)))
                    }
                    Ok(Err(e)) => {
                        warn!(role, %peer, "TLS handshake failed: {e}");
                        None
                    }
                    Err(_) => {
                        warn!(role, %peer, "TLS handshake timed out");
                        None
                    }
                }
            }
            (false, TlsMode::Enforcing, _) => {
                warn!(role, %peer, "closing a plaintext connection: this port accepts TLS only (tls.server.mode=enforcing)");
                None
            }
            (false, _, _) => Some(split(stream)),
        }
    }
}

/// Writes `buf` and flushes: a no-op for a kernel socket, but madsim's stream only sends on
/// flush.
pub(crate) async fn write_flushed(write_half: &mut WriteHalf, buf: &[u8]) -> io::Result<()> {
    write_half.write_all(buf).await?;
    write_half.flush().await
}

/// Connection ids are unique in the process, so no driver ever reuses one.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

fn next_conn_id() -> ConnId {
    ConnId(NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed))
}

/// What an owner asks a connection's writer to do.
enum Outbound {
    Command(RemotingCommand),
    /// Write what is queued, then close.
    Close,
}

/// What connection tasks hand an owner.
pub(crate) enum Input {
    Connected {
        conn: ConnId,
        peer: SocketAddr,
        /// The port it came in on (a broker's main or VIP port).
        listener: Listener,
        writer: ConnWriter,
    },
    Requests {
        conn: ConnId,
        commands: Vec<RemotingCommand>,
    },
    Disconnected {
        conn: ConnId,
    },
    /// Something happened on an HA link ([`crate::ha`]).
    Ha(crate::ha::HaEvent),
    /// A gRPC call or Telemetry stream event ([`crate::grpc`]).
    Grpc(Box<GrpcInput>),
}

/// What the gRPC port hands the broker's owner.
pub(crate) enum GrpcInput {
    /// A unary or ReceiveMessage call; its answer goes to `reply`.
    Call {
        call: CallId,
        meta: CallMeta,
        /// The call's `grpc-timeout`, made a deadline on the owner's clock.
        timeout_ms: Option<u64>,
        request: GrpcRequest,
        reply: oneshot::Sender<GrpcReply>,
    },
    /// A Telemetry stream opened; the owner writes server commands to `commands`.
    StreamOpened {
        stream: CallId,
        meta: CallMeta,
        commands: mpsc::Sender<GrpcStreamItem>,
    },
    /// The client wrote a command on a Telemetry stream.
    Telemetry {
        stream: CallId,
        command: vostok_core::broker::grpc::v2::TelemetryCommand,
    },
    /// The client ended a Telemetry stream (or went away).
    StreamClosed { stream: CallId },
}

/// What the owner writes on a Telemetry stream.
pub(crate) enum GrpcStreamItem {
    Command(Box<vostok_core::broker::grpc::v2::TelemetryCommand>),
    /// End the stream with this transport error.
    End(TransportError),
}

impl From<crate::ha::HaEvent> for Input {
    fn from(event: crate::ha::HaEvent) -> Self {
        Input::Ha(event)
    }
}

/// What the broker's helpers (flusher, NameServer clients) hand its owner; unbounded so a helper
/// never waits on the owner.
enum Internal {
    /// A durability worker finished something.
    Durability(Done),
    NamesrvResponse {
        addr: String,
        command: RemotingCommand,
    },
    /// A metrics scrape asks for the broker's metric values ([`MetricsSource`]).
    Metrics(oneshot::Sender<vostok_core::broker::metrics::MetricsSnapshot>),
}

/// Asks the broker's owner task for its metric values: a message on the owner's internal
/// channel and a one-shot answer, so a scrape never blocks the owner and the owner never waits
/// for a scrape.
#[derive(Clone)]
pub struct MetricsSource {
    tx: mpsc::UnboundedSender<Internal>,
}

impl MetricsSource {
    /// The values now; `None` once the broker has stopped.
    pub async fn snapshot(&self) -> Option<vostok_core::broker::metrics::MetricsSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Internal::Metrics(tx)).ok()?;
        rx.await.ok()
    }
}

/// The loopback form of a bound address: what a local client should dial.
pub fn dialable(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

async fn sleep_until_ms(deadline_ms: Option<u64>, now_ms: u64) {
    match deadline_ms {
        Some(deadline) => {
            tokio::time::sleep(Duration::from_millis(deadline.saturating_sub(now_ms))).await
        }
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

async fn accept_loop(
    role: &'static str,
    kind: Listener,
    listener: TcpListener,
    inputs: mpsc::Sender<Input>,
    mut shutdown: watch::Receiver<bool>,
    tls: TlsListener,
) {
    let tls = Arc::new(tls);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(role, kind, stream, peer, inputs.clone(), tls.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(role, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    debug!(role, "stopped accepting");
}

async fn serve_connection(
    role: &'static str,
    kind: Listener,
    stream: TcpStream,
    peer: SocketAddr,
    inputs: mpsc::Sender<Input>,
    tls: Arc<TlsListener>,
) {
    let conn = next_conn_id();
    if let Err(e) = stream.set_nodelay(true) {
        debug!(role, %peer, "set_nodelay: {e}");
    }
    let Some((mut read_half, write_half)) = open_accepted(role, stream, peer, &tls).await else {
        return;
    };
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    tokio::spawn(write_connection(
        write_half,
        out_rx,
        queued_bytes.clone(),
        closed_tx,
    ));
    debug!(role, %peer, %conn, "connected");
    let connected = Input::Connected {
        conn,
        peer,
        listener: kind,
        writer: ConnWriter {
            tx: out_tx,
            queued_bytes,
        },
    };
    if inputs.send(connected).await.is_err() {
        return;
    }
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let read = tokio::select! {
            biased;
            // The writer finished: the owner closed the connection, or the peer stopped reading.
            _ = &mut closed_rx => break,
            read = read_half.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => break,
            Err(e) => {
                debug!(role, %peer, %conn, "read: {e}");
                break;
            }
            Ok(_) => {}
        }
        let mut commands = Vec::new();
        let mut broken = false;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => break,
                Err(e) => {
                    warn!(role, %peer, %conn, "closing connection: undecodable frame: {e}");
                    broken = true;
                    break;
                }
            }
        }
        if !commands.is_empty()
            && inputs
                .send(Input::Requests { conn, commands })
                .await
                .is_err()
        {
            return;
        }
        if broken {
            break;
        }
    }
    debug!(role, %peer, %conn, "disconnected");
    let _ = inputs.send(Input::Disconnected { conn }).await;
}

async fn write_connection(
    mut write_half: WriteHalf,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    queued_bytes: Arc<AtomicUsize>,
    closed: oneshot::Sender<()>,
) {
    let mut buf = BytesMut::new();
    while let Some(first) = outbound.recv().await {
        let mut close = false;
        let mut next = Some(first);
        let mut taken_bytes = 0;
        while let Some(msg) = next {
            match msg {
                Outbound::Command(command) => {
                    taken_bytes += queued_size_bytes(&command);
                    encode(&command, &mut buf)
                }
                Outbound::Close => {
                    close = true;
                    break;
                }
            }
            next = outbound.try_recv().ok();
        }
        if !buf.is_empty() {
            if let Err(e) = write_flushed(&mut write_half, &buf).await {
                debug!("write: {e}");
                break;
            }
            buf.clear();
        }
        queued_bytes.fetch_sub(taken_bytes, Ordering::Relaxed);
        if close {
            let _ = write_half.shutdown().await;
            break;
        }
    }
    // Dropping `closed` wakes the reader so the owner hears of the disconnect.
    drop(closed);
}

/// Most bytes of output that may wait for one connection's writer. A peer that keeps asking
/// without reading its answers is disconnected at this point instead of growing the broker's
/// memory without bound.
const MAX_QUEUED_BYTES_PER_CONN: usize = 64 * 1024 * 1024;

/// What the owner keeps of a connection's writer: its queue, and how many bytes wait in it.
pub(crate) struct ConnWriter {
    tx: mpsc::UnboundedSender<Outbound>,
    queued_bytes: Arc<AtomicUsize>,
}

/// Roughly what a command weighs in a writer's queue: its body plus a header allowance.
fn queued_size_bytes(command: &RemotingCommand) -> usize {
    const HEADER_ALLOWANCE_BYTES: usize = 256;
    let ext_bytes: usize = command
        .ext_fields
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    command.body.len() + ext_bytes + HEADER_ALLOWANCE_BYTES
}

/// Open connections of one owner, by id.
#[derive(Default)]
struct Connections {
    writers: BTreeMap<ConnId, ConnWriter>,
}

impl Connections {
    fn send(&self, conn: ConnId, msg: Outbound) {
        let Some(w) = self.writers.get(&conn) else {
            debug!(%conn, "output for a closed connection dropped");
            return;
        };
        let msg = match msg {
            Outbound::Command(command) => {
                let size = queued_size_bytes(&command);
                let queued = w.queued_bytes.fetch_add(size, Ordering::Relaxed) + size;
                if queued > MAX_QUEUED_BYTES_PER_CONN {
                    w.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    warn!(%conn, queued, "closing connection: its peer does not read its responses");
                    Outbound::Close
                } else {
                    Outbound::Command(command)
                }
            }
            Outbound::Close => Outbound::Close,
        };
        // A send error means the writer already ended; its disconnect is on the way.
        let _ = w.tx.send(msg);
    }
}

// ---------------------------------------------------------------------------------------------
// NameServer

/// What a broker's driver needs beyond the core's config.
pub struct BrokerDriverOptions {
    /// The default ACL file ([`crate::acl_files`]), read when `aclEnable`.
    pub acl_file: Option<std::path::PathBuf>,
    /// TLS on the broker's port ([`crate::tls`]).
    pub tls: TlsListener,
    /// How the broker dials its NameServers.
    pub namesrv_tls: NamesrvTls,
    /// Where the Prometheus exporter listens (`metricsExporterType=PROM`, [`crate::metrics`]).
    pub metrics_listener: Option<TcpListener>,
    /// The master's HA port (`haListenPort`), bound by the caller for a master role.
    pub ha_listener: Option<TcpListener>,
    /// The VIP port (`listenPort − 2`, [`vostok_core::broker::listener`]), bound by the caller:
    /// the same broker without long polling. `None`: no VIP port (the simulator's brokers).
    pub vip_listener: Option<TcpListener>,
    /// The gRPC port (`grpcServerPort`, [`crate::grpc`]), bound by the caller. `None`: no gRPC
    /// port (`enableGrpcServer=false`, slaves, the simulator's brokers).
    pub grpc_listener: Option<TcpListener>,
    /// TLS on the gRPC port: the broker's TLS keys, with ALPN `h2`.
    pub grpc_tls: TlsListener,
}

impl Default for BrokerDriverOptions {
    fn default() -> Self {
        Self {
            acl_file: None,
            tls: TlsListener::plaintext(),
            namesrv_tls: NamesrvTls::default(),
            metrics_listener: None,
            ha_listener: None,
            vip_listener: None,
            grpc_listener: None,
            grpc_tls: TlsListener::plaintext(),
        }
    }
}

/// A running NameServer: its listener, owner task and accept loop.
pub struct NamesrvServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    /// `None` once [`NamesrvServer::stopped`] saw it end.
    owner: Option<JoinHandle<()>>,
}

impl NamesrvServer {
    /// Serves a NameServer on an already bound listener.
    pub fn start(listener: TcpListener, config: NamesrvConfig) -> io::Result<Self> {
        Self::start_with_tls(listener, config, TlsListener::plaintext())
    }

    /// [`NamesrvServer::start`] with TLS on its port ([`crate::tls`]).
    pub fn start_with_tls(
        listener: TcpListener,
        config: NamesrvConfig,
        tls: TlsListener,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(INPUT_QUEUE_BATCHES);
        tokio::spawn(accept_loop(
            "namesrv",
            Listener::Main,
            listener,
            tx,
            shutdown_rx.clone(),
            tls,
        ));
        let owner = tokio::spawn(run_namesrv_owner(NameServer::new(config), rx, shutdown_rx));
        info!(%local_addr, "namesrv listening");
        Ok(Self {
            local_addr,
            shutdown,
            owner: Some(owner),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Resolves only if the server dies on its own (a panic in its state machine): the caller
    /// should then exit rather than keep a port open that nobody serves. Cancel-safe.
    pub async fn stopped(&mut self) -> RunError {
        let Some(owner) = self.owner.as_mut() else {
            return std::future::pending().await;
        };
        let joined = owner.await;
        self.owner = None;
        match joined {
            Ok(()) => RunError::Task("namesrv stopped unexpectedly".to_owned()),
            Err(e) => RunError::Task(format!("namesrv owner ended abnormally: {e}")),
        }
    }

    /// Stops accepting and ends the owner.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Some(owner) = self.owner {
            if let Err(e) = owner.await {
                error!("namesrv owner ended abnormally: {e}");
            }
        }
    }
}

async fn run_namesrv_owner(
    mut ns: NameServer,
    mut inputs: mpsc::Receiver<Input>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut clock = Clock::default();
    let mut conns = Connections::default();
    let mut batch = Vec::new();
    loop {
        let now = clock.now_ms();
        let deadline = ns.poll_timeout();
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            input = inputs.recv() => match input {
                Some(input) => batch.push(input),
                None => break,
            },
            _ = sleep_until_ms(deadline, now) => {}
        }
        while let Ok(input) = inputs.try_recv() {
            batch.push(input);
        }
        let now = clock.now_ms();
        for input in batch.drain(..) {
            match input {
                Input::Connected { conn, writer, .. } => {
                    conns.writers.insert(conn, writer);
                }
                Input::Requests { conn, commands } => {
                    for command in commands {
                        ns.handle_request(now, conn, command);
                    }
                }
                Input::Disconnected { conn } => {
                    conns.writers.remove(&conn);
                    ns.handle_disconnected(now, conn);
                }
                // A NameServer has no HA or gRPC port.
                Input::Ha(_) | Input::Grpc(_) => {}
            }
        }
        if ns.poll_timeout().is_some_and(|t| t <= now) {
            ns.handle_timeout(now);
        }
        while let Some(output) = ns.poll_output() {
            match output {
                NamesrvOutput::Send { conn, command } => {
                    conns.send(conn, Outbound::Command(command))
                }
                NamesrvOutput::Close { conn } => conns.send(conn, Outbound::Close),
            }
        }
    }
    info!("namesrv stopped");
}

// ---------------------------------------------------------------------------------------------
// Broker

/// A running Broker: its listener, owner task, flusher and NameServer clients.
pub struct BrokerServer {
    local_addr: SocketAddr,
    /// The VIP port's bound address, when it has one.
    vip_addr: Option<SocketAddr>,
    /// The gRPC port's bound address, when it has one.
    grpc_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// `None` once [`BrokerServer::stopped`] saw it end.
    owner: Option<JoinHandle<Result<(), RunError>>>,
}

impl BrokerServer {
    /// Opens the store under `data_dir` (recovering it) and serves a Broker on an already bound
    /// listener. `config.listen_port` is set to the listener's real port before the broker is
    /// built, so port 0 advertises the port actually bound.
    #[cfg(not(madsim))]
    pub fn start(
        listener: TcpListener,
        config: BrokerConfig,
        data_dir: &std::path::Path,
        options: BrokerDriverOptions,
    ) -> Result<Self, RunError> {
        let storage = MmapStorage::open(data_dir)?;
        info!(data_dir = %data_dir.display(), "store directory");
        Self::start_with_storage(listener, config, storage, options)
    }

    /// [`BrokerServer::start`] on any [`DriverStorage`] (the simulator's SimDisk).
    /// With `aclEnable`, an ACL file that cannot be used refuses the start.
    pub fn start_with_storage<S: DriverStorage>(
        listener: TcpListener,
        mut config: BrokerConfig,
        storage: S,
        options: BrokerDriverOptions,
    ) -> Result<Self, RunError> {
        let acl_file = options.acl_file;
        let local_addr = listener.local_addr()?;
        config.listen_port = local_addr.port();
        let sync = storage.sync_handle();
        let mut clock = Clock::default();
        let now = clock.now_ms();
        info!(
            cluster = %config.broker_cluster_name,
            broker = %config.broker_name,
            advertised = %SocketAddr::new(config.broker_ip1, config.listen_port),
            namesrv = ?config.namesrv_addrs,
            flush = ?config.flush_disk_type,
            "opening broker store"
        );
        let acl_enable = config.acl_enable;
        let mut broker = Broker::new(config, storage, now)?;
        log_recovery(broker.store().recovery_report());
        let acl_files = match (acl_enable, acl_file) {
            (false, _) => None,
            (true, None) => {
                return Err(RunError::Usage(
                    "aclEnable=true needs an ACL file (aclPlainFile)".to_owned(),
                ))
            }
            (true, Some(path)) => {
                let mut files = AclFiles::new(path.clone());
                let read = files.read()?;
                broker
                    .handle_acl_files(read)
                    .map_err(|e| RunError::Usage(format!("ACL: {e}")))?;
                info!(file = %path.display(), "ACL on");
                Some(files)
            }
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(INPUT_QUEUE_BATCHES);
        let vip_addr = match options.vip_listener {
            Some(vip) => {
                let addr = vip.local_addr()?;
                info!(%addr, "VIP port listening");
                // The same TLS policy on both ports: RocketMQ clones the main server's config.
                tokio::spawn(accept_loop(
                    "broker-vip",
                    Listener::Vip,
                    vip,
                    tx.clone(),
                    shutdown_rx.clone(),
                    options.tls.clone(),
                ));
                Some(addr)
            }
            None => None,
        };
        tokio::spawn(accept_loop(
            "broker",
            Listener::Main,
            listener,
            tx.clone(),
            shutdown_rx.clone(),
            options.tls,
        ));
        if let Some(listener) = options.ha_listener {
            info!(addr = ?listener.local_addr().ok(), "HA port listening");
            tokio::spawn(crate::ha::accept_loop(
                listener,
                tx.clone(),
                shutdown_rx.clone(),
                next_conn_id,
            ));
        }
        let grpc_addr = match options.grpc_listener {
            #[cfg(not(madsim))]
            Some(listener) => {
                let addr = listener.local_addr()?;
                crate::grpc::announce(addr);
                tokio::spawn(crate::grpc::serve(
                    listener,
                    options.grpc_tls,
                    tx.clone(),
                    shutdown_rx.clone(),
                ));
                Some(addr)
            }
            #[cfg(madsim)]
            Some(_) => None,
            None => None,
        };
        let mut owner = BrokerOwner::new(broker, sync, clock);
        owner.inputs_tx = Some(tx.clone());
        owner.acl_files = acl_files;
        owner.namesrv_tls = options.namesrv_tls;
        if let Some(listener) = options.metrics_listener {
            let source = MetricsSource {
                tx: owner.internal_tx.clone(),
            };
            tokio::spawn(crate::metrics::serve(listener, source, shutdown_rx.clone()));
        }
        let owner = tokio::spawn(owner.run(rx, shutdown_rx));
        info!(%local_addr, "broker listening");
        Ok(Self {
            local_addr,
            vip_addr,
            grpc_addr,
            shutdown,
            owner: Some(owner),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The VIP port's bound address, when one was given.
    pub fn vip_addr(&self) -> Option<SocketAddr> {
        self.vip_addr
    }

    /// The gRPC port's bound address, when it has one.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr
    }

    /// Graceful stop: stop accepting, shut the broker down (unregister, persist), make everything
    /// written durable.
    pub async fn shutdown(self) -> Result<(), RunError> {
        let _ = self.shutdown.send(true);
        match self.owner {
            Some(owner) => match owner.await {
                Ok(result) => result,
                Err(e) => Err(RunError::Task(format!(
                    "broker owner ended abnormally: {e}"
                ))),
            },
            None => Ok(()),
        }
    }

    /// Resolves only if the broker dies on its own (a panic in its state machine). Cancel-safe.
    pub async fn stopped(&mut self) -> RunError {
        let Some(owner) = self.owner.as_mut() else {
            return std::future::pending().await;
        };
        let joined = owner.await;
        self.owner = None;
        match joined {
            Ok(Ok(())) => RunError::Task("broker stopped unexpectedly".to_owned()),
            Ok(Err(e)) => e,
            Err(e) => RunError::Task(format!("broker owner ended abnormally: {e}")),
        }
    }
}

struct BrokerOwner<S: DriverStorage> {
    broker: Broker<S>,
    sync: S::Sync,
    clock: Clock,
    conns: Connections,
    namesrv_clients: BTreeMap<String, mpsc::UnboundedSender<RemotingCommand>>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    flusher: Worker<SyncRequest>,
    checkpointer: Worker<CheckpointRequest>,
    /// When the disk is measured next (0: at once).
    next_disk_check_ms: u64,
    /// How NameServers are dialled (`tls.enable`).
    namesrv_tls: NamesrvTls,
    /// The ACL files, when `aclEnable`, and when they are looked at next.
    acl_files: Option<AclFiles>,
    next_acl_check_ms: u64,
    /// The writers of open HA links.
    ha_links: BTreeMap<ConnId, mpsc::UnboundedSender<crate::ha::HaOutbound>>,
    /// Where HA connections this owner starts report (its own input queue).
    inputs_tx: Option<mpsc::Sender<Input>>,
    /// gRPC calls waiting for their answer.
    grpc_calls: BTreeMap<CallId, oneshot::Sender<GrpcReply>>,
    /// Open Telemetry streams.
    grpc_streams: BTreeMap<CallId, mpsc::Sender<GrpcStreamItem>>,
}

impl From<Done> for Internal {
    fn from(done: Done) -> Self {
        Internal::Durability(done)
    }
}

impl<S: DriverStorage> BrokerOwner<S> {
    fn new(broker: Broker<S>, sync: S::Sync, clock: Clock) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let flusher = spawn_flusher(sync.clone(), internal_tx.clone());
        let checkpointer = spawn_checkpointer(sync.clone(), internal_tx.clone());
        Self {
            broker,
            sync,
            clock,
            conns: Connections::default(),
            namesrv_clients: BTreeMap::new(),
            internal_tx,
            internal_rx,
            flusher,
            checkpointer,
            next_disk_check_ms: 0,
            namesrv_tls: NamesrvTls::default(),
            acl_files: None,
            next_acl_check_ms: 0,
            ha_links: BTreeMap::new(),
            inputs_tx: None,
            grpc_calls: BTreeMap::new(),
            grpc_streams: BTreeMap::new(),
        }
    }

    /// Feeds the broker the disk usage and the local UTC offset when due; logs disk-full
    /// transitions. A failed measurement keeps the previous one.
    fn check_disk(&mut self, now: u64) {
        if now < self.next_disk_check_ms {
            return;
        }
        self.next_disk_check_ms = now + DISK_CHECK_INTERVAL_MS;
        // The simulated world runs in UTC (the host's zone file is not part of it).
        #[cfg(not(madsim))]
        let offset_ms = i64::from(chrono::Local::now().offset().local_minus_utc()) * 1000;
        #[cfg(madsim)]
        let offset_ms = 0;
        self.broker.set_local_utc_offset_ms(offset_ms);
        match self.broker.store().storage().disk_usage() {
            Ok(usage) => {
                let was_full = self.broker.is_disk_full();
                self.broker.handle_disk_usage(now, usage);
                let ratio = usage.used_ratio();
                match (was_full, self.broker.is_disk_full()) {
                    (false, true) => warn!(ratio, "disk is full: sends are refused"),
                    (true, false) => info!(ratio, "disk space is back: sends are accepted"),
                    _ => {}
                }
            }
            Err(e) => debug!(error = %e, "cannot measure the disk"),
        }
    }

    /// Reads the ACL files again when they changed (every [`ACL_WATCH_INTERVAL`]).
    fn check_acl_files(&mut self, now: u64) {
        if self.acl_files.is_none() || now < self.next_acl_check_ms {
            return;
        }
        self.next_acl_check_ms = now + ACL_WATCH_INTERVAL.as_millis() as u64;
        if self.acl_files.as_ref().is_some_and(AclFiles::changed) {
            self.reload_acl_files();
        }
    }

    fn reload_acl_files(&mut self) {
        let Some(files) = self.acl_files.as_mut() else {
            return;
        };
        match files.read() {
            Ok(read) => match self.broker.handle_acl_files(read) {
                Ok(()) => info!("ACL files read again"),
                Err(e) => {
                    warn!("ACL files changed but cannot be used (the ACL stays as it was): {e}")
                }
            },
            Err(e) => warn!("ACL files changed but cannot be read (the ACL stays as it was): {e}"),
        }
    }

    /// Fires the broker's timeout, logging the CommitLog segments retention deleted.
    fn fire_timeout(&mut self, now: u64) {
        let min_before = self.broker.store().min_commitlog_offset();
        self.broker.handle_timeout(now);
        let min_after = self.broker.store().min_commitlog_offset();
        if min_after != min_before {
            info!(
                from = min_before.0,
                to = min_after.0,
                "retention deleted CommitLog segments"
            );
        }
        if let Some(Err(e)) = self.broker.take_last_clean() {
            warn!(error = %e, "retention run failed");
        }
    }

    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), RunError> {
        // Startup outputs (the first REGISTER_BROKER, a recovery sync) leave before any input.
        self.drain_outputs();
        let mut batch = Vec::new();
        let mut internal = Vec::new();
        loop {
            let now = self.clock.now_ms();
            let deadline = Some(
                self.broker
                    .poll_timeout()
                    .map_or(self.next_disk_check_ms, |t| t.min(self.next_disk_check_ms)),
            );
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(event) = self.internal_rx.recv() => internal.push(event),
                input = inputs.recv() => match input {
                    Some(input) => batch.push(input),
                    None => break,
                },
                _ = sleep_until_ms(deadline, now) => {}
            }
            while let Ok(event) = self.internal_rx.try_recv() {
                internal.push(event);
            }
            while let Ok(input) = inputs.try_recv() {
                batch.push(input);
            }
            let now = self.clock.now_ms();
            for event in internal.drain(..) {
                self.feed_internal(now, event);
            }
            for input in batch.drain(..) {
                self.feed(now, input);
            }
            self.check_disk(now);
            self.check_acl_files(now);
            if self.broker.poll_timeout().is_some_and(|t| t <= now) {
                self.fire_timeout(now);
            }
            self.drain_outputs();
        }
        drop(inputs);
        self.shut_down().await
    }

    fn feed(&mut self, now: u64, input: Input) {
        match input {
            Input::Connected {
                conn,
                peer,
                listener,
                writer,
            } => {
                self.conns.writers.insert(conn, writer);
                self.broker.handle_connected_on(now, conn, peer, listener);
            }
            Input::Requests { conn, commands } => {
                for command in commands {
                    self.broker.handle_request(now, conn, command);
                }
            }
            Input::Disconnected { conn } => {
                self.conns.writers.remove(&conn);
                self.broker.handle_disconnected(now, conn);
            }
            Input::Ha(event) => self.feed_ha(now, event),
            Input::Grpc(input) => self.feed_grpc(now, *input),
        }
    }

    fn feed_grpc(&mut self, now: u64, input: GrpcInput) {
        match input {
            GrpcInput::Call {
                call,
                mut meta,
                timeout_ms,
                request,
                reply,
            } => {
                meta.deadline_ms = timeout_ms.map(|t| now.saturating_add(t));
                self.grpc_calls.insert(call, reply);
                self.broker.handle_grpc_call(now, call, meta, request);
            }
            GrpcInput::StreamOpened {
                stream,
                meta,
                commands,
            } => {
                self.grpc_streams.insert(stream, commands);
                self.broker.handle_grpc_stream_opened(now, stream, meta);
            }
            GrpcInput::Telemetry { stream, command } => {
                self.broker.handle_grpc_telemetry(now, stream, command);
            }
            GrpcInput::StreamClosed { stream } => {
                self.grpc_streams.remove(&stream);
                self.broker.handle_grpc_stream_closed(now, stream);
            }
        }
    }

    fn grpc_output(&mut self, output: GrpcOutput) {
        match output {
            GrpcOutput::Reply { call, reply } => {
                // A dropped receiver: the client gave up on the call (its deadline passed).
                if let Some(tx) = self.grpc_calls.remove(&call) {
                    let _ = tx.send(reply);
                }
            }
            GrpcOutput::Telemetry { stream, command } => {
                if let Some(tx) = self.grpc_streams.get(&stream) {
                    // Never wait on a client that does not read: the command is dropped (the
                    // only periodic ones, transaction checks, come again).
                    if tx.try_send(GrpcStreamItem::Command(command)).is_err() {
                        warn!(
                            stream = stream.0,
                            "telemetry command dropped: the stream is full or closed"
                        );
                    }
                }
            }
            GrpcOutput::EndStream { stream, error } => {
                if let Some(tx) = self.grpc_streams.remove(&stream) {
                    let _ = tx.try_send(GrpcStreamItem::End(error));
                }
            }
        }
    }

    fn feed_ha(&mut self, now: u64, event: crate::ha::HaEvent) {
        use crate::ha::HaEvent;
        match event {
            HaEvent::Accepted { link, peer, writer } => {
                info!(%peer, %link, "slave connected to the HA port");
                self.ha_links.insert(link, writer);
                self.broker.handle_ha_accepted(now, link, peer);
            }
            HaEvent::Connected { link, writer } => {
                info!(%link, "connected to the master's HA port");
                self.ha_links.insert(link, writer);
                self.broker.handle_ha_connected(now, link);
            }
            HaEvent::ConnectFailed { addr, error } => {
                warn!(%addr, "cannot reach the master's HA port: {error}");
                self.broker.handle_ha_connect_failed(now);
            }
            HaEvent::Bytes { link, bytes } => {
                if self.ha_links.contains_key(&link) {
                    self.broker.handle_ha_bytes(now, link, &bytes);
                }
            }
            HaEvent::Written { link, bytes } => self.broker.handle_ha_written(now, link, bytes),
            HaEvent::Closed { link } => {
                if self.ha_links.remove(&link).is_some() {
                    info!(%link, "HA link closed");
                    self.broker.handle_ha_closed(now, link);
                }
            }
        }
    }

    /// Carries out what replication asked for.
    fn ha_output(&mut self, output: vostok_core::broker::HaOutput) {
        use crate::ha::HaOutbound;
        use vostok_core::broker::HaOutput;
        match output {
            HaOutput::Transfer {
                link,
                header,
                path,
                file_offset,
                len,
            } => {
                let Some(writer) = self.ha_links.get(&link) else {
                    return;
                };
                // A heartbeat carries no bytes: an empty master may have no segment file yet.
                let source = if len == 0 {
                    Ok(crate::ha::TransferSource::Bytes(Vec::new()))
                } else {
                    self.broker
                        .store()
                        .storage()
                        .transfer_source(&path, file_offset, len)
                };
                match source {
                    Ok(source) => {
                        let _ = writer.send(HaOutbound::Transfer {
                            header,
                            source,
                            pos: file_offset,
                            len,
                        });
                    }
                    Err(e) => {
                        warn!(%link, %path, "cannot read CommitLog bytes for a slave: {e}");
                        let _ = writer.send(HaOutbound::Close);
                    }
                }
            }
            HaOutput::Report { link, report } => {
                if let Some(writer) = self.ha_links.get(&link) {
                    let _ = writer.send(HaOutbound::Report(report));
                }
            }
            HaOutput::Connect { addr } => {
                if let Some(tx) = &self.inputs_tx {
                    info!(%addr, "connecting to the master's HA port");
                    crate::ha::connect(addr, tx.clone(), next_conn_id);
                }
            }
            HaOutput::Close { link, reason } => {
                warn!(%link, "HA link closed: {reason}");
                if let Some(writer) = self.ha_links.remove(&link) {
                    let _ = writer.send(HaOutbound::Close);
                }
            }
        }
    }

    /// Returns whether the event was a NameServer response.
    fn feed_internal(&mut self, now: u64, event: Internal) -> bool {
        match event {
            Internal::Durability(done) => {
                match done {
                    Done::Synced(up_to) => self.broker.handle_synced(now, up_to),
                    Done::SyncFailed(reason) => self.broker.handle_sync_failed(now, &reason),
                    Done::CheckpointWritten(request) => {
                        self.broker.handle_checkpoint_written(now, &request)
                    }
                    Done::CheckpointFailed(failure) => {
                        self.broker.handle_checkpoint_failed(now, failure)
                    }
                }
                false
            }
            Internal::NamesrvResponse { addr, command } => {
                self.broker.handle_namesrv_response(now, &addr, command);
                true
            }
            Internal::Metrics(reply) => {
                // The scrape may have given up waiting; nothing to do then.
                let _ = reply.send(self.broker.metrics_snapshot(now));
                false
            }
        }
    }

    /// Does what the broker asked; returns how many NameServer requests were sent.
    fn drain_outputs(&mut self) -> usize {
        let mut namesrv_requests = 0;
        while let Some(output) = self.broker.poll_output() {
            match output {
                BrokerOutput::Send { conn, command } => {
                    self.conns.send(conn, Outbound::Command(command))
                }
                BrokerOutput::Close { conn } => self.conns.send(conn, Outbound::Close),
                BrokerOutput::Ha(output) => self.ha_output(output),
                BrokerOutput::Grpc(output) => self.grpc_output(output),
                BrokerOutput::WriteAclFile {
                    path,
                    contents,
                    answer,
                } => {
                    // A few hundred bytes, on an admin request: written here, in order.
                    let written = AclFiles::write(std::path::Path::new(&path), &contents);
                    if let Err(e) = &written {
                        error!(%path, "cannot write the ACL file: {e}");
                        self.reload_acl_files();
                    } else {
                        info!(%path, "ACL file written");
                    }
                    if let Some(answer) = answer {
                        let mut reply = if written.is_ok() {
                            answer.success
                        } else {
                            answer.failure
                        };
                        if let (Err(e), Some(remark)) = (&written, reply.remark.as_mut()) {
                            remark.push_str(&format!(" ({e})"));
                        }
                        self.conns.send(answer.conn, Outbound::Command(reply));
                    }
                }
                BrokerOutput::SendToNamesrv { addr, command } => {
                    namesrv_requests += 1;
                    let client = self.namesrv_clients.entry(addr.clone()).or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        tokio::spawn(namesrv_client(
                            addr.clone(),
                            rx,
                            self.internal_tx.clone(),
                            self.namesrv_tls.clone(),
                        ));
                        tx
                    });
                    if client.send(command).is_err() {
                        warn!(%addr, "namesrv client ended; request dropped");
                    }
                }
                BrokerOutput::Sync(request) => {
                    if let Err(request) = self.flusher.send(request) {
                        // The flusher is gone (shutting down): sync here.
                        let done = flush_batch(&self.sync, vec![request]);
                        let _ = self.internal_tx.send(Internal::Durability(done));
                    }
                }
                BrokerOutput::Checkpoint(request) => {
                    if let Err(request) = self.checkpointer.send(request) {
                        let done = write_checkpoint(&self.sync, request);
                        let _ = self.internal_tx.send(Internal::Durability(done));
                    }
                }
            }
        }
        namesrv_requests
    }

    async fn shut_down(mut self) -> Result<(), RunError> {
        info!("broker shutting down");
        let now = self.clock.now_ms();
        self.broker.shutdown(now);
        let mut awaiting = self.drain_outputs();
        // Give the NameServers a bounded time to acknowledge the unregister; keep feeding syncs.
        let deadline = tokio::time::Instant::now() + UNREGISTER_WAIT;
        while awaiting > 0 {
            let event = tokio::select! {
                biased;
                event = self.internal_rx.recv() => event,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some(event) = event else {
                warn!(
                    awaiting,
                    "namesrv did not acknowledge the unregister in time"
                );
                break;
            };
            let now = self.clock.now_ms();
            if self.feed_internal(now, event) {
                awaiting -= 1;
            }
            awaiting += self.drain_outputs();
        }
        // Stop the workers (they finish what is queued: the final checkpoint file is written
        // after any in flight), then sync everything written.
        if !self.flusher.stop().await {
            error!("flusher thread ended abnormally");
        }
        if !self.checkpointer.stop().await {
            error!("checkpoint thread ended abnormally");
        }
        while let Ok(event) = self.internal_rx.try_recv() {
            let now = self.clock.now_ms();
            self.feed_internal(now, event);
        }
        // The final checkpoint: the CommitLog tail and every ConsumeQueue range, then the
        // checkpoint file; only then is the abort marker removed (a clean close).
        let final_request = self.broker.store().checkpoint_request();
        let sync = self.sync.clone();
        let to_sync = final_request.sync.clone();
        let final_sync = move || -> Result<(), RunError> {
            sync.sync_request(&to_sync)?;
            sync.sync_all()?;
            Ok(())
        };
        // Off the runtime's threads in production; simulated disks do not block.
        #[cfg(not(madsim))]
        let synced = tokio::task::spawn_blocking(final_sync)
            .await
            .map_err(|e| RunError::Task(format!("final sync: {e}")))?;
        #[cfg(madsim)]
        let synced = final_sync();
        if let Err(e) = synced {
            error!("FINAL SYNC FAILED, data may not be durable: {e}");
            return Err(e);
        }
        let now = self.clock.now_ms();
        self.broker.handle_synced(now, final_request.sync.up_to);
        self.drain_outputs();
        let store = self.broker.store_mut();
        let closed = store
            .handle_checkpoint_synced(&final_request)
            .and_then(|()| store.close());
        match closed {
            Ok(()) => info!(
                offset = final_request.checkpoint.commitlog_durable_offset,
                "broker stopped; store synced, checkpoint written, closed cleanly"
            ),
            Err(e) => {
                // The abort marker stays: the next start verifies everything after the last
                // checkpoint, which is safe, only slower.
                warn!("store not closed cleanly: {e}; the next start runs crash recovery");
            }
        }
        Ok(())
    }
}

/// Logs what recovery found, each entry at its level: an operator must see corruption.
fn log_recovery(report: &vostok_core::store::RecoveryReport) {
    use vostok_core::store::RecoveryLevel;
    for entry in &report.entries {
        match entry.level {
            RecoveryLevel::Info => info!(offset = ?entry.offset, "{}", entry.message),
            RecoveryLevel::Warn => warn!(offset = ?entry.offset, "{}", entry.message),
            RecoveryLevel::Error => error!(offset = ?entry.offset, "{}", entry.message),
        }
    }
}

/// One NameServer as seen by the broker: a lazily opened connection, kept open, re-opened with
/// backoff. Responses are matched to requests by opaque and fed back to the owner. A request
/// not answered when its connection is lost (or goes [`NAMESRV_RESPONSE_TIMEOUT`] without an
/// answer) is sent again on the next one: registrations are idempotent, and a broker that
/// restarted must not stay unregistered until its next periodic registration.
async fn namesrv_client(
    addr: String,
    mut requests: mpsc::UnboundedReceiver<RemotingCommand>,
    events: mpsc::UnboundedSender<Internal>,
    tls: NamesrvTls,
) {
    let mut queue: VecDeque<RemotingCommand> = VecDeque::new();
    // Sent on the current connection and not answered yet, by opaque.
    let mut pending: std::collections::BTreeMap<i32, RemotingCommand> = Default::default();
    let mut backoff = NAMESRV_BACKOFF_MIN;
    'connect: loop {
        // Unanswered requests of the last connection go first, oldest first.
        for (_, command) in std::mem::take(&mut pending).into_iter().rev() {
            queue.push_front(command);
        }
        while queue.len() > NAMESRV_QUEUE_MAX {
            queue.pop_front();
        }
        if queue.is_empty() {
            match requests.recv().await {
                Some(command) => queue.push_back(command),
                None => return,
            }
        }
        let stream = match tokio::time::timeout(NAMESRV_CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                warn!(%addr, "cannot connect to a NameServer or master: {e}; retrying in {backoff:?}");
                match wait_backoff(backoff, &mut requests, &mut queue).await {
                    Some(next) => backoff = next,
                    None => return,
                }
                continue;
            }
            Err(_) => {
                warn!(%addr, "connecting to namesrv timed out; retrying in {backoff:?}");
                match wait_backoff(backoff, &mut requests, &mut queue).await {
                    Some(next) => backoff = next,
                    None => return,
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut read_half, mut write_half) = match dial_halves(stream, &addr, &tls).await {
            Ok(halves) => halves,
            Err(e) => {
                warn!(%addr, "TLS handshake with namesrv failed: {e}; retrying in {backoff:?}");
                match wait_backoff(backoff, &mut requests, &mut queue).await {
                    Some(next) => backoff = next,
                    None => return,
                }
                continue;
            }
        };
        debug!(%addr, "connected to namesrv");
        backoff = NAMESRV_BACKOFF_MIN;
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let mut out = BytesMut::new();
        let mut answer_deadline: Option<tokio::time::Instant> = None;
        loop {
            if !queue.is_empty() {
                for command in queue.drain(..) {
                    encode(&command, &mut out);
                    if !command.is_oneway() {
                        pending.insert(command.opaque, command);
                    }
                }
                if !pending.is_empty() && answer_deadline.is_none() {
                    answer_deadline = Some(tokio::time::Instant::now() + NAMESRV_RESPONSE_TIMEOUT);
                }
                if let Err(e) = write_flushed(&mut write_half, &out).await {
                    warn!(%addr, "namesrv connection lost while writing: {e}");
                    out.clear();
                    continue 'connect;
                }
                out.clear();
            }
            if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
                buf.reserve(READ_CHUNK_BYTES);
            }
            let deadline = answer_deadline;
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    Some(command) => queue.push_back(command),
                    None => return,
                },
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                    warn!(%addr, "namesrv answered nothing for {NAMESRV_RESPONSE_TIMEOUT:?}; reconnecting");
                    continue 'connect;
                }
                read = read_half.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => {
                            warn!(%addr, "a NameServer or master closed the connection");
                            continue 'connect;
                        }
                        Err(e) => {
                            warn!(%addr, "namesrv connection lost: {e}");
                            continue 'connect;
                        }
                        Ok(_) => {}
                    }
                    loop {
                        match decoder.decode(&mut buf) {
                            Ok(Some(command)) if command.is_response() => {
                                if pending.remove(&command.opaque).is_some() {
                                    answer_deadline = (!pending.is_empty()).then(|| {
                                        tokio::time::Instant::now() + NAMESRV_RESPONSE_TIMEOUT
                                    });
                                    let event = Internal::NamesrvResponse { addr: addr.clone(), command };
                                    if events.send(event).is_err() {
                                        return;
                                    }
                                } else {
                                    debug!(%addr, opaque = command.opaque, "unmatched namesrv response dropped");
                                }
                            }
                            Ok(Some(command)) => {
                                debug!(%addr, code = command.code, "request from namesrv ignored");
                            }
                            Ok(None) => break,
                            Err(e) => {
                                warn!(%addr, "undecodable frame from namesrv: {e}; reconnecting");
                                continue 'connect;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The halves of a connection the broker opened, over TLS when `tls` says so.
async fn dial_halves(
    stream: TcpStream,
    addr: &str,
    tls: &NamesrvTls,
) -> io::Result<(ReadHalf, WriteHalf)> {
    #[cfg(not(madsim))]
    if let Some(connector) = &tls.connector {
        use tokio_rustls::rustls::pki_types::ServerName;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = tokio::time::timeout(NAMESRV_CONNECT_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let (r, w) = tokio::io::split(stream);
        return Ok((ReadHalf::ClientTls(r), WriteHalf::ClientTls(w)));
    }
    let _ = (addr, tls);
    Ok(split(stream))
}

/// Sleeps `backoff`, or until the broker sends a new request (queued, boundedly, and tried at
/// once: see [`NAMESRV_BACKOFF_MIN`]); returns the next backoff, or `None` once the broker is
/// gone (nothing more will be asked of this client).
async fn wait_backoff(
    backoff: Duration,
    requests: &mut mpsc::UnboundedReceiver<RemotingCommand>,
    queue: &mut VecDeque<RemotingCommand>,
) -> Option<Duration> {
    tokio::select! {
        biased;
        _ = tokio::time::sleep(backoff) => {}
        request = requests.recv() => match request {
            Some(command) => {
                queue.push_back(command);
                while queue.len() > NAMESRV_QUEUE_MAX {
                    queue.pop_front();
                }
            }
            None => return None,
        },
    }
    Some((backoff * 2).min(NAMESRV_BACKOFF_MAX))
}
