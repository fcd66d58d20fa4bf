//! The bench's own minimal remoting connection: requests pipelined on one TCP connection and
//! matched to their responses by `opaque`, plus the few admin calls the bench needs (route
//! lookup, topic creation, queue offsets).
//!
//! It exists so the bench measures the broker with nothing in between but framing: no route
//! cache, retries or fault avoidance. The full client (`vostok::client`) does all of that and
//! sends for `bench produce` by default; this connection serves `--via direct` (the framing-only
//! comparison), the bench's pulls and admin calls, and [`crate::Standalone::start`]'s wait for
//! the broker's registration.
//!
//! ```text
//!  callers ──encode──▶ bounded channel ──▶ writer task (coalesces frames into one write)
//!                                                       │ TCP
//!  callers ◀──oneshot── pending[opaque] ◀── reader task ◀┘ (FrameDecoder)
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::{encode, FrameDecoder, RemotingCommand, SerializeType};

use crate::RunError;

/// Frames waiting for the writer; a full queue makes senders wait (oneway back-pressure).
const WRITE_QUEUE_FRAMES: usize = 4096;
/// The writer coalesces queued frames into writes of about this size.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>>;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connection closed")]
    Closed,
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// One multiplexed connection. Cheap to share behind an `Arc`; closed when dropped.
pub struct Conn {
    out: mpsc::Sender<Bytes>,
    pending: Pending,
    next_opaque: AtomicI32,
    serialize_type: SerializeType,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<i32, oneshot::Sender<RemotingCommand>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// Connects to `addr` (`host:port`); requests go out with the given header encoding.
    pub async fn connect(addr: &str, serialize_type: SerializeType) -> Result<Self, RunError> {
        let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
            .await
            .map_err(|_| RunError::Task(format!("connecting to {addr} timed out")))?
            .map_err(|e| RunError::Task(format!("cannot connect to {addr}: {e}")))?;
        stream.set_nodelay(true)?;
        let (mut rd, mut wr) = stream.into_split();
        let (out, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE_FRAMES);
        tokio::spawn(async move {
            let mut batch = BytesMut::with_capacity(WRITE_BATCH_BYTES);
            while let Some(frame) = queue.recv().await {
                batch.extend_from_slice(&frame);
                while batch.len() < WRITE_BATCH_BYTES {
                    match queue.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if wr.write_all(&batch).await.is_err() {
                    return;
                }
                batch.clear();
            }
            let _ = wr.shutdown().await;
        });
        let pending: Pending = Arc::default();
        let reader_pending = pending.clone();
        let reader = tokio::spawn(async move {
            let mut decoder = FrameDecoder::default();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            'read: loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(cmd)) => {
                            if !cmd.is_response() {
                                // Broker-initiated requests (consumer-ids-changed): not ours.
                                continue;
                            }
                            if let Some(tx) = lock(&reader_pending).remove(&cmd.opaque) {
                                let _ = tx.send(cmd);
                            }
                        }
                        Ok(None) => break,
                        Err(_) => break 'read,
                    }
                }
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
            }
            // Waking every caller with an error beats letting them run into their timeouts.
            lock(&reader_pending).clear();
        });
        Ok(Self {
            out,
            pending,
            next_opaque: AtomicI32::new(1),
            serialize_type,
            reader,
        })
    }

    fn frame(&self, cmd: &mut RemotingCommand) -> Bytes {
        cmd.serialize_type = self.serialize_type;
        let mut buf = BytesMut::with_capacity(cmd.body.len() + 256);
        encode(cmd, &mut buf);
        buf.freeze()
    }

    /// Sends a request and waits for its response.
    pub async fn call(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, CallError> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.opaque = opaque;
        let frame = self.frame(&mut cmd);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(opaque, tx);
        if self.out.send(frame).await.is_err() {
            lock(&self.pending).remove(&opaque);
            return Err(CallError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(CallError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&opaque);
                Err(CallError::Timeout(timeout))
            }
        }
    }

    /// Sends a request marked oneway: nothing comes back. Resolves once the frame is queued.
    pub async fn oneway(&self, mut cmd: RemotingCommand) -> Result<(), CallError> {
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.mark_oneway();
        let frame = self.frame(&mut cmd);
        self.out.send(frame).await.map_err(|_| CallError::Closed)
    }
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

async fn admin_call(conn: &Conn, cmd: RemotingCommand) -> Result<RemotingCommand, RunError> {
    let code = cmd.code;
    conn.call(cmd, ADMIN_TIMEOUT)
        .await
        .map_err(|e| RunError::Task(format!("request {code}: {e}")))
}

/// The part of a topic's route the bench uses.
#[derive(Clone, Debug)]
pub struct Route {
    /// The master broker's address (`brokerAddrs["0"]` of the first broker).
    pub broker_addr: String,
    pub broker_name: String,
    pub write_queues: i32,
    pub read_queues: i32,
}

/// GET_ROUTEINFO_BY_TOPIC; `None` when the NameServer knows no such topic.
pub async fn route(namesrv: &Conn, topic: &str) -> Result<Option<Route>, RunError> {
    let reply = admin_call(
        namesrv,
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic),
    )
    .await?;
    if reply.code == response::TOPIC_NOT_EXIST {
        return Ok(None);
    }
    if reply.code != response::SUCCESS {
        return Err(RunError::Task(format!(
            "route of {topic}: code {} {}",
            reply.code,
            reply.remark.unwrap_or_default()
        )));
    }
    let json: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| RunError::Task(format!("route of {topic}: bad JSON: {e}")))?;
    let broker = json["brokerDatas"]
        .as_array()
        .and_then(|b| b.first())
        .ok_or_else(|| RunError::Task(format!("route of {topic}: no broker")))?;
    let broker_name = broker["brokerName"].as_str().unwrap_or_default().to_owned();
    let broker_addr = broker["brokerAddrs"]["0"]
        .as_str()
        .ok_or_else(|| RunError::Task(format!("route of {topic}: no master address")))?
        .to_owned();
    let queue = json["queueDatas"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["brokerName"] == broker["brokerName"]))
        .ok_or_else(|| RunError::Task(format!("route of {topic}: no queues")))?;
    let num = |key: &str| queue[key].as_i64().unwrap_or(0) as i32;
    Ok(Some(Route {
        broker_addr,
        broker_name,
        write_queues: num("writeQueueNums"),
        read_queues: num("readQueueNums"),
    }))
}

/// Makes sure `topic` exists with `queues` read and write queues: creates or updates it with
/// UPDATE_AND_CREATE_TOPIC on the broker serving the default topic, then waits until the
/// NameServer's route shows it.
pub async fn ensure_topic(
    namesrv: &Conn,
    topic: &str,
    queues: i32,
    serialize_type: SerializeType,
) -> Result<Route, RunError> {
    if let Some(r) = route(namesrv, topic).await? {
        if r.write_queues == queues && r.read_queues == queues {
            return Ok(r);
        }
    }
    // A broker that just started registers asynchronously: wait for the default topic too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let template = loop {
        if let Some(r) = route(namesrv, "TBW102").await? {
            break r;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RunError::Task(
                "the NameServer knows no broker (no route for TBW102)".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let broker = Conn::connect(&template.broker_addr, serialize_type).await?;
    let reply = admin_call(
        &broker,
        RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
            .with_ext("topic", topic)
            .with_ext("defaultTopic", "TBW102")
            .with_ext("readQueueNums", queues)
            .with_ext("writeQueueNums", queues)
            .with_ext("perm", 6)
            .with_ext("topicFilterType", "SINGLE_TAG")
            .with_ext("topicSysFlag", 0)
            .with_ext("order", false),
    )
    .await?;
    if reply.code != response::SUCCESS {
        return Err(RunError::Task(format!(
            "creating topic {topic}: code {} {}",
            reply.code,
            reply.remark.unwrap_or_default()
        )));
    }
    loop {
        if let Some(r) = route(namesrv, topic).await? {
            if r.write_queues == queues {
                return Ok(r);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RunError::Task(format!(
                "topic {topic} was created but its route did not appear"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// UPDATE_CONSUMER_OFFSET: `group`'s position in one queue.
pub async fn commit_offset(
    broker: &Conn,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Result<(), RunError> {
    let reply = admin_call(
        broker,
        RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
            .with_ext("consumerGroup", group)
            .with_ext("topic", topic)
            .with_ext("queueId", queue_id)
            .with_ext("commitOffset", offset),
    )
    .await?;
    if reply.code != response::SUCCESS {
        return Err(RunError::Task(format!(
            "committing {group}'s offset of {topic}:{queue_id}: code {}",
            reply.code
        )));
    }
    Ok(())
}

/// GET_MAX_OFFSET (`max = true`) or GET_MIN_OFFSET of one queue.
pub async fn queue_offset(
    broker: &Conn,
    topic: &str,
    queue_id: i32,
    max: bool,
) -> Result<i64, RunError> {
    let code = if max {
        request::GET_MAX_OFFSET
    } else {
        request::GET_MIN_OFFSET
    };
    let reply = admin_call(
        broker,
        RemotingCommand::request(code)
            .with_ext("topic", topic)
            .with_ext("queueId", queue_id),
    )
    .await?;
    if reply.code != response::SUCCESS {
        return Err(RunError::Task(format!(
            "offset of {topic}:{queue_id}: code {}",
            reply.code
        )));
    }
    reply
        .ext_num("offset")
        .map_err(|e| RunError::Task(format!("offset of {topic}:{queue_id}: {e}")))
}
