//! The client's connections: one per remote address (NameServer or broker), opened on demand.
//!
//! ```text
//!  owner task ──Pool::send(addr, cmd)──▶ writer task ──write_all──▶ socket
//!      ▲                                                             │
//!      └──────── NetEvent (Response / Request / Closed) ◀── reader task (FrameDecoder)
//! ```
//!
//! The [`Pool`] lives in the owner task and is only touched there. A connection is a writer task
//! (which first connects, with a timeout, so commands queue while it does) and a reader task that
//! decodes frames and hands them to the owner on one unbounded channel, in order. The pool
//! remembers which requests wait for an answer on each connection, so when the connection ends
//! the owner learns exactly which ones never will (`NetEvent::Closed`) without waiting for their
//! timeouts. The next request for that address opens a new connection.
//!
//! A connection can also die without either end noticing (a reset that reached only the peer, a
//! path that silently drops everything): the socket stays open and nothing ever arrives. Like
//! RocketMQ's client (`clientCloseSocketIfTimeout`), the pool closes a connection when one of its
//! requests outlives its timeout with nothing at all received on the connection since that
//! request was sent ([`Pool::expire`]); the owner then sees `Closed` and the next request
//! reconnects. A connection that answers other requests meanwhile is alive and stays open.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, trace, warn};
use vostok_core::client::ClientStateMachine;
use vostok_core::remoting::{encode, FrameDecoder, RemotingCommand};

use crate::server::{split, write_flushed, ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};

/// Read buffer growth step of a connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Connection ids are unique in the process, so a late event of a closed connection is never
/// taken for its successor's.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// What the network tells the owner.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// The answer to a request sent to `addr`.
    Response {
        addr: String,
        command: RemotingCommand,
    },
    /// A request a peer sent us (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE, ...).
    Request {
        addr: String,
        command: RemotingCommand,
    },
    /// The connection to `addr` ended or never opened. `unanswered` holds the opaques of the
    /// requests sent on it that will never be answered, in sending order.
    Closed {
        addr: String,
        unanswered: Vec<i32>,
        reason: String,
    },
}

impl NetEvent {
    /// Hands the event to a client state machine; `client` names it in the log.
    pub(crate) fn feed<M: ClientStateMachine>(self, core: &mut M, now_ms: u64, client: &str) {
        match self {
            NetEvent::Response { addr, command } => core.handle_response(now_ms, &addr, command),
            NetEvent::Request { addr, command } => core.handle_request(now_ms, &addr, command),
            NetEvent::Closed {
                addr,
                reason,
                unanswered,
            } => {
                debug!(%addr, %reason, unanswered = unanswered.len(), "{client} connection closed");
                core.handle_connection_closed(now_ms, &addr)
            }
        }
    }
}

/// What a connection's tasks hand the owner; turned into a [`NetEvent`] by [`Pool::observe`].
#[derive(Debug)]
pub(crate) struct RawEvent {
    conn_id: u64,
    addr: String,
    kind: RawKind,
}

#[derive(Debug)]
enum RawKind {
    Frame(RemotingCommand),
    Closed(String),
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<RemotingCommand>,
    /// Requests sent on this connection and not answered yet, by opaque.
    pending: BTreeMap<i32, Pending>,
    /// When the last frame arrived on this connection (its opening, before any).
    last_frame_at: Instant,
}

struct Pending {
    /// The pool's sequence number of the send (so `Closed` can list them in sending order).
    seq: u64,
    sent_at: Instant,
    /// Past this instant without an answer, the request has timed out.
    deadline: Instant,
}

/// Header field of a long-polling pull: how long the broker may hold it before answering.
const SUSPEND_TIMEOUT_KEY: &str = "suspendTimeoutMillis";
/// The same for a long-polling POP_MESSAGE.
const POLL_TIME_KEY: &str = "pollTime";

/// The owner's connections, by address.
pub(crate) struct Pool {
    conns: BTreeMap<String, Conn>,
    events_tx: mpsc::UnboundedSender<RawEvent>,
    connect_timeout: Duration,
    /// How long a request may wait for its answer (a long-polling pull: plus its suspend time).
    request_timeout: Duration,
    /// Sequence number of the next request sent.
    next_seq: u64,
}

impl Pool {
    /// A pool whose connections report on the returned receiver; the owner feeds what it
    /// receives through [`Pool::observe`]. `request_timeout` is how long a request may go
    /// unanswered before [`Pool::expire`] suspects its connection.
    pub(crate) fn new(
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> (Self, mpsc::UnboundedReceiver<RawEvent>) {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let pool = Self {
            conns: BTreeMap::new(),
            events_tx,
            connect_timeout,
            request_timeout,
            next_seq: 0,
        };
        (pool, events_rx)
    }

    /// Queues `command` for `addr`, opening a connection if none is open. Never waits: a
    /// connection that cannot be opened reports `Closed` with this request among the unanswered.
    pub(crate) fn send(&mut self, addr: &str, command: RemotingCommand) {
        let expects_answer = !command.is_response() && !command.is_oneway();
        let opaque = command.opaque;
        trace!(%addr, code = command.code, opaque, response = command.is_response(), "send");
        if self.conns.get(addr).is_none_or(|c| c.tx.is_closed()) {
            let conn = self.open(addr);
            self.conns.insert(addr.to_owned(), conn);
        }
        let Some(conn) = self.conns.get_mut(addr) else {
            return;
        };
        if expects_answer {
            let hold_key = if command.code == vostok_core::remoting::codes::request::POP_MESSAGE {
                POLL_TIME_KEY
            } else {
                SUSPEND_TIMEOUT_KEY
            };
            let suspend_ms = command
                .ext_num_opt::<u64>(hold_key)
                .ok()
                .flatten()
                .unwrap_or(0);
            let sent_at = Instant::now();
            let deadline = sent_at + self.request_timeout + Duration::from_millis(suspend_ms);
            let pending = Pending {
                seq: self.next_seq,
                sent_at,
                deadline,
            };
            conn.pending.insert(opaque, pending);
            self.next_seq += 1;
        }
        if conn.tx.send(command).is_err() {
            // The writer ended between the check and the send: its Closed event (which carries
            // this request's opaque, registered above) is on its way.
            debug!(%addr, opaque, "request queued on a connection that just closed");
        }
    }

    fn open(&self, addr: &str) -> Conn {
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_connection(
            id,
            addr.to_owned(),
            self.connect_timeout,
            rx,
            self.events_tx.clone(),
        ));
        Conn {
            id,
            tx,
            pending: BTreeMap::new(),
            last_frame_at: Instant::now(),
        }
    }

    /// The earliest instant a pending request times out: when [`Pool::expire`] is next due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .flat_map(|c| c.pending.values().map(|p| p.deadline))
            .min()
    }

    /// Closes every connection on which a request has timed out with nothing received since
    /// it was sent, and reports each as `Closed` (its writer then shuts the socket, and its
    /// own late report is ignored). On a connection that is otherwise answering, a timed-out
    /// request is only forgotten: the state machine has failed it on its own timeout, and a
    /// late answer is dropped as unsolicited.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<NetEvent> {
        let mut dead = Vec::new();
        for (addr, conn) in &mut self.conns {
            let last_frame_at = conn.last_frame_at;
            let silent = conn
                .pending
                .values()
                .any(|p| p.deadline <= now && p.sent_at >= last_frame_at);
            if silent {
                dead.push(addr.clone());
            } else {
                conn.pending.retain(|_, p| p.deadline > now);
            }
        }
        let mut closed = Vec::new();
        for addr in dead {
            let Some(conn) = self.conns.remove(&addr) else {
                continue;
            };
            warn!(%addr, conn_id = conn.id, "no answer within the request timeout: closing the connection");
            closed.push(Self::closed_event(
                addr,
                conn,
                "no answer within the request timeout".to_owned(),
            ));
        }
        closed
    }

    fn closed_event(addr: String, conn: Conn, reason: String) -> NetEvent {
        let mut unanswered: Vec<(u64, i32)> =
            conn.pending.into_iter().map(|(o, p)| (p.seq, o)).collect();
        unanswered.sort_unstable();
        NetEvent::Closed {
            addr,
            unanswered: unanswered.into_iter().map(|(_, o)| o).collect(),
            reason,
        }
    }

    /// Turns a connection's report into what the owner acts on: responses are matched against
    /// the pending requests (a response nobody waits for is dropped), a close forgets the
    /// connection and lists its unanswered requests. Reports of an already replaced connection
    /// yield `None`, except their responses, which are still delivered.
    pub(crate) fn observe(&mut self, event: RawEvent) -> Option<NetEvent> {
        let RawEvent {
            conn_id,
            addr,
            kind,
        } = event;
        if let RawKind::Frame(command) = &kind {
            trace!(%addr, code = command.code, opaque = command.opaque, remark = ?command.remark, "received");
        }
        let mut current = self.conns.get_mut(&addr).filter(|c| c.id == conn_id);
        if let (RawKind::Frame(_), Some(conn)) = (&kind, current.as_mut()) {
            conn.last_frame_at = Instant::now();
        }
        match kind {
            RawKind::Frame(command) if command.is_response() => {
                if let Some(conn) = current {
                    if conn.pending.remove(&command.opaque).is_none() {
                        debug!(%addr, opaque = command.opaque, "unsolicited response dropped");
                        return None;
                    }
                }
                Some(NetEvent::Response { addr, command })
            }
            RawKind::Frame(command) => Some(NetEvent::Request { addr, command }),
            RawKind::Closed(reason) => {
                current?;
                let conn = self.conns.remove(&addr)?;
                Some(Self::closed_event(addr, conn, reason))
            }
        }
    }

    /// The sequence number the next request will get: a mark for [`Pool::answered_since`].
    pub(crate) fn mark(&self) -> u64 {
        self.next_seq
    }

    /// Whether every request sent since `mark` has been answered (or its connection closed).
    pub(crate) fn answered_since(&self, mark: u64) -> bool {
        self.conns
            .values()
            .all(|c| c.pending.values().all(|p| p.seq < mark))
    }

    /// Addresses with an open (or opening) connection.
    #[cfg(test)]
    pub(crate) fn addrs(&self) -> impl Iterator<Item = &str> {
        self.conns.keys().map(String::as_str)
    }

    /// Closes every connection: writers flush what is queued, then shut their sockets.
    pub(crate) fn close_all(&mut self) {
        self.conns.clear();
    }
}

async fn run_connection(
    conn_id: u64,
    addr: String,
    connect_timeout: Duration,
    mut outbound: mpsc::UnboundedReceiver<RemotingCommand>,
    events: mpsc::UnboundedSender<RawEvent>,
) {
    let closed = |reason: String| RawEvent {
        conn_id,
        addr: addr.clone(),
        kind: RawKind::Closed(reason),
    };
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            warn!(%addr, "cannot connect: {e}");
            let _ = events.send(closed(format!("cannot connect to {addr}: {e}")));
            return;
        }
        Err(_) => {
            warn!(%addr, "connecting timed out after {connect_timeout:?}");
            let _ = events.send(closed(format!(
                "connecting to {addr} timed out after {connect_timeout:?}"
            )));
            return;
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%addr, "set_nodelay: {e}");
    }
    debug!(%addr, conn_id, "connected");
    let (read_half, write_half) = split(stream);
    let (writer_done_tx, writer_done_rx) = oneshot::channel::<String>();
    tokio::spawn(async move {
        let reason = write_loop(write_half, &mut outbound).await;
        let _ = writer_done_tx.send(reason);
    });
    let reason = read_loop(conn_id, &addr, read_half, writer_done_rx, &events).await;
    debug!(%addr, conn_id, %reason, "disconnected");
    let _ = events.send(closed(reason));
}

/// Writes everything queued in one buffer per wake-up. Returns why it stopped.
async fn write_loop(
    mut write_half: OwnedWriteHalf,
    outbound: &mut mpsc::UnboundedReceiver<RemotingCommand>,
) -> String {
    let mut buf = BytesMut::new();
    while let Some(first) = outbound.recv().await {
        encode(&first, &mut buf);
        while let Ok(more) = outbound.try_recv() {
            encode(&more, &mut buf);
        }
        if let Err(e) = write_flushed(&mut write_half, &buf).await {
            return format!("write failed: {e}");
        }
        buf.clear();
    }
    // The pool dropped the connection (client shutdown): everything queued was written.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut write_half).await;
    "closed by the client".to_owned()
}

/// Decodes frames until the peer closes, the stream breaks, or the writer stops. Returns why.
async fn read_loop(
    conn_id: u64,
    addr: &str,
    mut read_half: OwnedReadHalf,
    mut writer_done: oneshot::Receiver<String>,
    events: &mpsc::UnboundedSender<RawEvent>,
) -> String {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let read = tokio::select! {
            biased;
            reason = &mut writer_done => {
                return reason.unwrap_or_else(|_| "writer ended".to_owned());
            }
            read = read_half.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => return "closed by the peer".to_owned(),
            Err(e) => return format!("read failed: {e}"),
            Ok(_) => {}
        }
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(command)) => {
                    let event = RawEvent {
                        conn_id,
                        addr: addr.to_owned(),
                        kind: RawKind::Frame(command),
                    };
                    if events.send(event).is_err() {
                        return "client gone".to_owned();
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("undecodable frame: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use vostok_core::remoting::codes::request;

    async fn next(pool: &mut Pool, rx: &mut mpsc::UnboundedReceiver<RawEvent>) -> Option<NetEvent> {
        let raw = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event in time")
            .expect("pool alive");
        pool.observe(raw)
    }

    /// Goal: a response reaches the owner matched to its request; a peer that closes makes the
    /// unanswered requests known at once; the next send reconnects. Method: a one-shot echo
    /// server that answers the first request, ignores the second and closes.
    #[tokio::test]
    async fn responses_closes_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut decoder = FrameDecoder::default();
                let mut buf = BytesMut::new();
                let mut seen = 0;
                while seen < 2 {
                    stream.read_buf(&mut buf).await.unwrap();
                    while let Some(req) = decoder.decode(&mut buf).unwrap() {
                        seen += 1;
                        if seen == 1 {
                            let mut out = BytesMut::new();
                            encode(&RemotingCommand::response_to(&req, 0, None), &mut out);
                            stream.write_all(&out).await.unwrap();
                        }
                    }
                }
                drop(stream);
            }
        });
        let (mut pool, mut rx) = Pool::new(Duration::from_secs(3), Duration::from_secs(3));
        for round in 0..2 {
            for opaque in [1, 2] {
                let mut req = RemotingCommand::request(request::HEART_BEAT);
                req.opaque = opaque + round * 10;
                pool.send(&addr, req);
            }
            match next(&mut pool, &mut rx).await {
                Some(NetEvent::Response { command, .. }) => {
                    assert_eq!(command.opaque, 1 + round * 10)
                }
                other => panic!("{other:?}"),
            }
            match next(&mut pool, &mut rx).await {
                Some(NetEvent::Closed { unanswered, .. }) => {
                    assert_eq!(unanswered, vec![2 + round * 10])
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(pool.addrs().count(), 0);
        }
    }

    /// Goal: nothing listening means a prompt `Closed` naming the request.
    #[tokio::test]
    async fn refused_connection_reports_the_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let (mut pool, mut rx) = Pool::new(Duration::from_secs(3), Duration::from_secs(3));
        let mut req = RemotingCommand::request(request::HEART_BEAT);
        req.opaque = 7;
        pool.send(&addr, req);
        match next(&mut pool, &mut rx).await {
            Some(NetEvent::Closed { unanswered, .. }) => assert_eq!(unanswered, vec![7]),
            other => panic!("{other:?}"),
        }
    }

    /// Goal: a connection that takes requests but never answers (half-open: the peer has
    /// forgotten it) is closed once a request outlives its timeout, its requests are reported
    /// unanswered, and the next send opens a fresh connection. Method: a server that accepts and
    /// reads but never writes; the pool's deadline is driven by hand.
    #[tokio::test]
    async fn silent_connection_is_closed_after_the_request_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (accepted_tx, mut accepted_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let _ = accepted_tx.send(());
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    while stream.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {}
                });
            }
        });
        let (mut pool, _rx) = Pool::new(Duration::from_secs(3), Duration::from_millis(200));
        let mut req = RemotingCommand::request(request::HEART_BEAT);
        req.opaque = 5;
        pool.send(&addr, req);
        accepted_rx.recv().await.expect("first connection");
        let deadline = pool.next_deadline().expect("a request waits");
        assert!(pool.expire(deadline - Duration::from_millis(1)).is_empty());
        assert_eq!(pool.addrs().count(), 1);
        match pool.expire(deadline).as_slice() {
            [NetEvent::Closed { unanswered, .. }] => assert_eq!(unanswered, &vec![5]),
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.addrs().count(), 0);
        assert!(pool.next_deadline().is_none());
        let mut req = RemotingCommand::request(request::HEART_BEAT);
        req.opaque = 6;
        pool.send(&addr, req);
        tokio::time::timeout(Duration::from_secs(5), accepted_rx.recv())
            .await
            .expect("a second connection in time")
            .expect("second connection");
    }

    /// Goal: a long-polling pull waits its suspend time on top of the request timeout before
    /// the connection is suspected.
    #[tokio::test]
    async fn pull_deadline_includes_the_suspend_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (mut pool, _rx) = Pool::new(Duration::from_secs(3), Duration::from_millis(200));
        let before = Instant::now();
        let mut req = RemotingCommand::request(request::PULL_MESSAGE);
        req.opaque = 1;
        req.ext_fields
            .insert(SUSPEND_TIMEOUT_KEY.to_owned(), "15000".to_owned());
        pool.send(&addr, req);
        let deadline = pool.next_deadline().expect("a request waits");
        assert!(deadline >= before + Duration::from_millis(15_200));
        drop(listener);
    }

    /// Goal: a long-polling POP waits its poll time on top of the request timeout too.
    #[tokio::test]
    async fn pop_deadline_includes_the_poll_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (mut pool, _rx) = Pool::new(Duration::from_secs(3), Duration::from_millis(200));
        let before = Instant::now();
        let mut req = RemotingCommand::request(request::POP_MESSAGE);
        req.opaque = 1;
        req.ext_fields
            .insert(POLL_TIME_KEY.to_owned(), "15000".to_owned());
        pool.send(&addr, req);
        let deadline = pool.next_deadline().expect("a request waits");
        assert!(deadline >= before + Duration::from_millis(15_200));
        drop(listener);
    }
}
