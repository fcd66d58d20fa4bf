//! Records the frames of a real-client session and checks that the core decodes every one.
//!
//! A recording TCP proxy on 127.0.0.1 sits between the unmodified RocketMQ Rust client
//! (`rocketmq-client-rust` 1.0.0) and `vostok standalone`: one proxy in front of the NameServer,
//! one in front of the broker. The NameServer proxy rewrites the broker address inside route
//! bodies to the broker proxy's, so every connection the client opens passes through a proxy.
//! Both directions are split into frames as they pass.
//!
//! ```text
//!   client ──► namesrv proxy ──► NameServer      (route bodies: broker addr → broker proxy)
//!   client ──► broker proxy  ──► broker
//! ```
//!
//! The session covers routes, sends, a batch send, heartbeats, pulls, offset queries and commits
//! and client unregistration. The test asserts that every recorded frame decodes with the core's
//! `FrameDecoder`, survives encode → decode unchanged, and that every frame Vostok itself wrote
//! re-encodes to exactly its bytes.
//!
//! With `VOSTOK_RECORD_CORPUS=<dir>` set it also writes the fuzz seed corpora under `<dir>`
//! (`<dir>/<fuzz target>/<hash>`): raw frames, JSON and binary headers, JSON bodies, batch
//! bodies, property strings and stored records from pull bodies. See fuzz/README.md.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout};
use vostok_core::message::{peek_header, MessageRecord};
use vostok_core::remoting::codes::request;
use vostok_core::remoting::{encode, FrameDecoder, RemotingCommand, SerializeType};

use common::*;

/// Bound for the whole session.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Queues of the session's topic.
const QUEUES: i32 = 4;
/// Messages sent one by one, and in the batch.
const SINGLE_SENDS: usize = 6;
const BATCH_SIZE: usize = 3;

// ---------------------------------------------------------------------------------------------
// Recording proxy
// ---------------------------------------------------------------------------------------------

/// One frame seen by a proxy.
#[derive(Clone, Debug)]
struct Recorded {
    /// "namesrv" or "broker".
    link: &'static str,
    /// Connection number within the link.
    conn: usize,
    /// Client → server.
    to_server: bool,
    /// The whole frame, length word included, as the sender wrote it.
    frame: Vec<u8>,
}

type Recording = Arc<Mutex<Vec<Recorded>>>;

/// A byte-for-byte replacement applied to bodies flowing server → client.
#[derive(Clone)]
struct Rewrite {
    from: Vec<u8>,
    to: Vec<u8>,
}

/// Starts a proxy on a free loopback port forwarding to `upstream`; returns its address.
fn start_proxy(
    link: &'static str,
    upstream: String,
    recording: Recording,
    rewrite: Option<Rewrite>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address").to_string();
    let conns = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let conn = conns.fetch_add(1, Ordering::Relaxed);
            client.set_nodelay(true).ok();
            server.set_nodelay(true).ok();
            let (c2, s2) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let rec = recording.clone();
            std::thread::spawn(move || pump(client, server, link, conn, true, rec, None));
            let rec = recording.clone();
            let rw = rewrite.clone();
            std::thread::spawn(move || pump(s2, c2, link, conn, false, rec, rw));
        }
    });
    addr
}

/// Copies frames from `from` to `to`, recording each; ends (and half-closes `to`) at EOF.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    link: &'static str,
    conn: usize,
    to_server: bool,
    recording: Recording,
    rewrite: Option<Rewrite>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 4 {
            let total = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 4 + total {
                break;
            }
            let frame: Vec<u8> = buf.drain(..4 + total).collect();
            recording.lock().expect("recording").push(Recorded {
                link,
                conn,
                to_server,
                frame: frame.clone(),
            });
            let out = match &rewrite {
                Some(rw) => rewrite_body(&frame, rw),
                None => frame,
            };
            if to.write_all(&out).is_err() {
                return;
            }
        }
    }
    // Anything left is a torn frame the peer never finished; pass it on as is.
    let _ = to.write_all(&buf);
    let _ = to.shutdown(Shutdown::Write);
}

/// The frame with `rw.from` replaced by `rw.to` in its body and the length word fixed.
fn rewrite_body(frame: &[u8], rw: &Rewrite) -> Vec<u8> {
    let header_len =
        (u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) & 0xFF_FFFF) as usize;
    let body = &frame[8 + header_len..];
    let mut new_body = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(&rw.from) {
            new_body.extend_from_slice(&rw.to);
            i += rw.from.len();
        } else {
            new_body.push(body[i]);
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(frame.len() + 16);
    out.extend_from_slice(&((4 + header_len + new_body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&frame[4..8 + header_len]);
    out.extend_from_slice(&new_body);
    out
}

// ---------------------------------------------------------------------------------------------
// Client session
// ---------------------------------------------------------------------------------------------

fn message(topic: &str, seq: usize) -> Message {
    let mut body = format!("corpus-{seq}|").into_bytes();
    body.extend((0u8..=255).cycle().skip(seq).take(40 + seq * 13));
    Message::builder()
        .topic(topic)
        .tags(["TagA", "TagB"][seq % 2])
        .keys(vec![format!("key-{seq}")])
        .body(body)
        .raw_property("seq", seq.to_string())
        .expect("user property is allowed")
        .raw_property("färg", format!("grön {seq}"))
        .expect("user property is allowed")
        .build_unchecked()
}

/// Counts the messages of the session a push consumer receives.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<BTreeSet<String>>>);

impl MessageListenerConcurrently for Seen {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        let mut seen = self.0.lock().expect("seen");
        for m in msgs {
            if let Some(seq) = m.message.property("seq") {
                seen.insert(seq.to_string());
            }
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Codes of the requests recorded so far.
fn request_codes(recording: &Recording) -> BTreeSet<i32> {
    recording
        .lock()
        .expect("recording")
        .iter()
        .filter(|r| r.to_server)
        .filter_map(|r| decode_frame(&r.frame).ok())
        .map(|c| c.code)
        .collect()
}

/// Runs the client session through the proxies and returns everything recorded.
async fn record_session() -> Vec<Recorded> {
    let broker = block_in_place(Standalone::start);
    let recording: Recording = Arc::default();
    let broker_proxy = start_proxy(
        "broker",
        broker.broker_addr.clone(),
        recording.clone(),
        None,
    );
    let namesrv_proxy = start_proxy(
        "namesrv",
        broker.namesrv_addr.clone(),
        recording.clone(),
        Some(Rewrite {
            from: broker.broker_addr.clone().into_bytes(),
            to: broker_proxy.clone().into_bytes(),
        }),
    );

    let topic = "CorpusTopic";
    let group = "corpus_cg";
    let mut producer = start_producer_in(&namesrv_proxy, "corpus_pg").await;
    producer
        .create_topic("TBW102", topic, QUEUES, Default::default())
        .await
        .expect("create topic through the proxies");
    wait_until("the topic's route", Duration::from_secs(30), || {
        let conn_addr = broker.namesrv_addr.clone();
        block_in_place(|| {
            let mut conn = RawConn::connect(&conn_addr);
            let f = conn.request(
                request::GET_ROUTEINFO_BY_TOPIC,
                &[("topic", topic.to_string())],
                &[],
            );
            f.code() == 0
        })
    })
    .await;

    for seq in 0..SINGLE_SENDS {
        let result = producer
            .send(message(topic, seq))
            .await
            .unwrap_or_else(|e| panic!("send {seq}: {e}"))
            .unwrap_or_else(|| panic!("send {seq} returned no result"));
        assert_eq!(result.send_status, SendStatus::SendOk);
    }
    let batch: Vec<Message> = (SINGLE_SENDS..SINGLE_SENDS + BATCH_SIZE)
        .map(|seq| message(topic, seq))
        .collect();
    let result = producer.send_batch(batch).await.expect("batch send");
    assert_eq!(result.send_status, SendStatus::SendOk);

    let seen = Seen::default();
    let mut consumer = push_consumer_builder(&namesrv_proxy, group).build();
    consumer.subscribe(topic, "*").await.expect("subscribe");
    consumer.register_message_listener_concurrently(seen.clone());
    consumer.start().await.expect("push consumer starts");

    let total = SINGLE_SENDS + BATCH_SIZE;
    wait_until("every message consumed", Duration::from_secs(40), || {
        seen.0.lock().expect("seen").len() == total
    })
    .await;
    // Offsets are committed on the client's persistence timer (5 s).
    wait_until("an offset commit", Duration::from_secs(20), || {
        request_codes(&recording).contains(&request::UPDATE_CONSUMER_OFFSET)
    })
    .await;

    consumer.shutdown().await;
    producer.shutdown().await;
    // Let the proxies pass on the last frames (unregistrations and their answers).
    sleep(Duration::from_millis(500)).await;
    let frames = recording.lock().expect("recording").clone();
    drop(broker);
    frames
}

// ---------------------------------------------------------------------------------------------
// Checks and corpus
// ---------------------------------------------------------------------------------------------

fn decode_frame(frame: &[u8]) -> Result<RemotingCommand, String> {
    let mut buf = BytesMut::from(frame);
    match FrameDecoder::default().decode(&mut buf) {
        Ok(Some(cmd)) if buf.is_empty() => Ok(cmd),
        Ok(Some(_)) => Err(format!("{} bytes left after the frame", buf.len())),
        Ok(None) => Err("frame reported incomplete".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn encode_frame(cmd: &RemotingCommand) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(cmd, &mut out);
    out.to_vec()
}

/// Files of the seed corpora: target name → files.
#[derive(Default)]
struct Corpus(BTreeMap<&'static str, BTreeSet<Vec<u8>>>);

impl Corpus {
    fn add(&mut self, target: &'static str, bytes: &[u8]) {
        self.0.entry(target).or_default().insert(bytes.to_vec());
    }

    fn write(&self, dir: &Path) {
        for (target, files) in &self.0 {
            let target_dir = dir.join(target);
            std::fs::create_dir_all(&target_dir).expect("create corpus directory");
            for bytes in files {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                let path = target_dir.join(format!("rec-{:016x}", hasher.finish()));
                std::fs::write(&path, bytes).expect("write corpus file");
            }
        }
    }
}

/// Selector bytes of the json_bodies fuzz target (its first input byte).
fn json_body_selector(code: i32, is_response: bool) -> Option<u8> {
    match (code, is_response) {
        (request::REGISTER_BROKER, false) => Some(0),
        (request::GET_ROUTEINFO_BY_TOPIC, true) => Some(1),
        (request::GET_BROKER_CLUSTER_INFO, true) => Some(2),
        (request::HEART_BEAT, false) => Some(3),
        (request::LOCK_BATCH_MQ, false) => Some(4),
        (request::UNLOCK_BATCH_MQ, false) => Some(5),
        (request::CHECK_CLIENT_CONFIG, false) => Some(6),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_client_frames_decode_and_round_trip() {
    let frames = match timeout(TEST_TIMEOUT, record_session()).await {
        Ok(frames) => frames,
        Err(_) => panic!("the recorded session did not finish within {TEST_TIMEOUT:?}"),
    };

    let mut corpus = Corpus::default();
    let mut codes = BTreeSet::new();
    // (link, conn, opaque) → request code, to name what a response answers.
    let mut requests: BTreeMap<(&str, usize, i32), i32> = BTreeMap::new();
    let mut streams: BTreeMap<(&str, usize, bool), Vec<u8>> = BTreeMap::new();
    for rec in &frames {
        let cmd = decode_frame(&rec.frame).unwrap_or_else(|e| {
            panic!(
                "{} conn {} frame does not decode: {e}: {:?}",
                rec.link, rec.conn, rec.frame
            )
        });
        // The one request the broker sends a client here: NOTIFY_CONSUMER_IDS_CHANGED, oneway,
        // to every member of a group that changed (the new one included).
        let broker_request = !rec.to_server && !cmd.is_response();
        if broker_request {
            assert_eq!(cmd.code, request::NOTIFY_CONSUMER_IDS_CHANGED, "{cmd:?}");
            assert!(cmd.is_oneway(), "{cmd:?}");
        } else {
            assert_eq!(
                cmd.is_response(),
                !rec.to_server,
                "{} frame direction: {cmd:?}",
                rec.link
            );
        }

        // Re-encoding keeps every field; what Vostok wrote re-encodes byte for byte.
        let reencoded = encode_frame(&cmd);
        let again = decode_frame(&reencoded).expect("a re-encoded frame decodes");
        let mut expected = cmd.clone();
        expected.serialize_type = again.serialize_type;
        assert_eq!(
            again, expected,
            "frame changed across decode/encode: {cmd:?}"
        );
        if !rec.to_server && cmd.serialize_type == SerializeType::Json {
            assert_eq!(
                reencoded, rec.frame,
                "a frame Vostok wrote re-encodes differently: {cmd:?}"
            );
        }

        let answered = if cmd.is_response() {
            requests.get(&(rec.link, rec.conn, cmd.opaque)).copied()
        } else if broker_request {
            // Its opaque is the broker's own; it answers nothing and is never answered.
            Some(cmd.code)
        } else {
            codes.insert(cmd.code);
            requests.insert((rec.link, rec.conn, cmd.opaque), cmd.code);
            Some(cmd.code)
        };

        // Seeds.
        corpus.add("frame_decoder", &rec.frame);
        streams
            .entry((rec.link, rec.conn, rec.to_server))
            .or_default()
            .extend_from_slice(&rec.frame);
        let header_len =
            (u32::from_be_bytes([rec.frame[4], rec.frame[5], rec.frame[6], rec.frame[7]])
                & 0xFF_FFFF) as usize;
        let header = &rec.frame[8..8 + header_len];
        match rec.frame[4] {
            0 => corpus.add("json_header", header),
            _ => corpus.add("binary_header", header),
        }
        // The client speaks JSON headers; the same commands in the binary encoding seed the
        // ROCKETMQ header target (and its frames the decoder).
        let mut binary = cmd.clone();
        binary.serialize_type = SerializeType::RocketMq;
        let binary_frame = encode_frame(&binary);
        if binary_frame[4] == 1 {
            let len = (u32::from_be_bytes([0, binary_frame[5], binary_frame[6], binary_frame[7]]))
                as usize;
            corpus.add("binary_header", &binary_frame[8..8 + len]);
            corpus.add("frame_decoder", &binary_frame);
        }
        if let Some(code) = answered {
            if let Some(selector) = json_body_selector(code, cmd.is_response()) {
                let mut seed = vec![selector];
                seed.extend_from_slice(&cmd.body);
                corpus.add("json_bodies", &seed);
            }
            if code == request::SEND_BATCH_MESSAGE && !cmd.is_response() {
                corpus.add("batch_body", &cmd.body);
            }
            if (code == request::PULL_MESSAGE || code == request::LITE_PULL_MESSAGE)
                && cmd.is_response()
                && cmd.code == 0
            {
                let mut rest = cmd.body.clone();
                while !rest.is_empty() {
                    let (size, _) = peek_header(&rest).expect("pull body holds whole records");
                    let record = MessageRecord::decode(&rest, true)
                        .unwrap_or_else(|e| panic!("a pulled record does not decode: {e}"));
                    corpus.add("stored_record", &rest[..size as usize]);
                    corpus.add("properties", record.properties.encode().as_bytes());
                    let _: Bytes = rest.split_to(size as usize);
                }
            }
        }
        for key in ["properties", "i"] {
            if let Some(props) = cmd.ext(key).filter(|_| !cmd.is_response()) {
                corpus.add("properties", props.as_bytes());
            }
        }
    }
    for stream in streams.values() {
        // Whole connections, several frames back to back, capped to keep seeds small.
        corpus.add("frame_decoder", &stream[..stream.len().min(16 * 1024)]);
    }

    for code in [
        request::GET_ROUTEINFO_BY_TOPIC,
        request::HEART_BEAT,
        request::SEND_BATCH_MESSAGE,
        request::PULL_MESSAGE,
        request::QUERY_CONSUMER_OFFSET,
        request::UPDATE_CONSUMER_OFFSET,
    ] {
        assert!(
            codes.contains(&code),
            "the session sent no request {code}: {codes:?}"
        );
    }
    assert!(
        codes.contains(&request::SEND_MESSAGE) || codes.contains(&request::SEND_MESSAGE_V2),
        "the session sent no single message: {codes:?}"
    );
    assert!(
        corpus.0.get("stored_record").is_some_and(|s| !s.is_empty()),
        "no pull returned records"
    );

    if let Some(dir) = std::env::var_os("VOSTOK_RECORD_CORPUS") {
        corpus.write(Path::new(&dir));
        eprintln!("wrote seed corpora under {}", Path::new(&dir).display());
    }
}
