//! Shared harness for the black-box tests of the `vostok` binary.
//!
//! Two pieces live here:
//!
//! * [`Standalone`] starts `vostok standalone` on free loopback ports with a fresh data directory,
//!   waits for its single ready line, stops it with SIGTERM (or kills it on drop) and can restart it
//!   on the same data directory.
//! * [`RawConn`] is a deliberately tiny, hand-written RocketMQ remoting client (blocking std
//!   sockets) used to send exact frames and to read broker state (max offsets, committed offsets,
//!   stored records) independently of any client library.
//!
//! Frame layout (REMOTING.md §1.2):
//!
//! ```text
//! +---------------+--------------------+----------------------+-----------+
//! | totalLength   | headerLengthWord   | header (JSON, UTF-8) | body      |
//! | i32 BE        | i32 BE: type<<24 | | headerLength bytes   | remaining |
//! | = 4+hdr+body  |         hdrLength  |                      |           |
//! +---------------+--------------------+----------------------+-----------+
//! ```
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long the binary may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown (SIGTERM) may take before the test fails.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Start-up options for [`Standalone`].
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// Contents of a broker.conf passed with `-c` (RocketMQ `key=value` lines).
    pub broker_conf: Option<String>,
    /// Pass `--flush-disk-type SYNC_FLUSH`.
    pub sync_flush: bool,
}

/// A running (or stopped) `vostok standalone` process with its own scratch directory.
pub struct Standalone {
    child: Option<Child>,
    /// `127.0.0.1:PORT` of the NameServer, from the ready line.
    pub namesrv_addr: String,
    /// `127.0.0.1:PORT` of the broker, from the ready line.
    pub broker_addr: String,
    /// The gRPC port (RocketMQ 5 clients' endpoint), `host:port`.
    pub grpc_addr: String,
    /// Data directory passed with `--data-dir` (kept across restarts).
    pub data_dir: PathBuf,
    work_dir: tempfile::TempDir,
    options: BrokerOptions,
    generation: u32,
}

impl Standalone {
    /// Starts a broker with default options.
    pub fn start() -> Self {
        Self::start_with(BrokerOptions::default())
    }

    /// Starts a broker with the given options on free ports and a fresh data directory.
    pub fn start_with(options: BrokerOptions) -> Self {
        let work_dir = tempfile::Builder::new()
            .prefix("vostok-test-")
            .tempdir()
            .expect("create scratch directory");
        let data_dir = work_dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data directory");
        let mut this = Standalone {
            child: None,
            namesrv_addr: String::new(),
            broker_addr: String::new(),
            grpc_addr: String::new(),
            data_dir,
            work_dir,
            options,
            generation: 0,
        };
        this.spawn();
        this
    }

    fn stderr_path(&self, generation: u32) -> PathBuf {
        self.work_dir
            .path()
            .join(format!("stderr.{generation}.log"))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.generation += 1;
        let stderr_file =
            std::fs::File::create(self.stderr_path(self.generation)).expect("create stderr log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vostok"));
        cmd.arg("standalone")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--namesrv-port", "0", "--broker-port", "0"]);
        if self.options.sync_flush {
            cmd.args(["--flush-disk-type", "SYNC_FLUSH"]);
        }
        // The suite must not depend on how full the host's disk happens to be: these keys come
        // first, so a test's own broker.conf (tests/disk.rs, on a tmpfs of known size) overrides
        // them.
        let conf = format!(
            "{HOST_DISK_NEUTRAL_CONF}{}",
            self.options.broker_conf.as_deref().unwrap_or("")
        );
        let conf_path = self.work_dir.path().join("broker.conf");
        std::fs::write(&conf_path, conf).expect("write broker.conf");
        cmd.arg("-c").arg(conf_path);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file));
        let mut child = cmd.spawn().expect("spawn vostok binary");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Keep draining stdout for the life of the process so it can never block on a
            // full pipe; only the lines matter to the test.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Receiver gone: keep draining silently.
                }
            }
        });
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some((namesrv, broker, data)) = parse_ready_line(&line) {
                        self.namesrv_addr = namesrv;
                        self.broker_addr = broker;
                        self.grpc_addr = parse_ready_grpc(&line).unwrap_or_default();
                        assert_eq!(
                            Path::new(&data)
                                .canonicalize()
                                .unwrap_or_else(|_| PathBuf::from(&data)),
                            self.data_dir
                                .canonicalize()
                                .unwrap_or_else(|_| self.data_dir.clone()),
                            "ready line reports a different data directory: {line:?}"
                        );
                        return;
                    }
                    panic!(
                        "unexpected stdout line before the ready line: {line:?}\nstderr:\n{}",
                        self.stderr_tail()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed; the process probably exited. Fall through to the exit check.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "vostok exited with {status} before printing its ready line\nstderr:\n{}",
                    self.stderr_tail()
                );
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "vostok did not print its ready line within {READY_TIMEOUT:?}\nstderr:\n{}",
                    self.stderr_tail()
                );
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Stops the broker gracefully with SIGTERM and waits for it to exit.
    ///
    /// Panics if it does not exit within [`SHUTDOWN_TIMEOUT`] (it is then killed).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is not running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for vostok") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "vostok did not exit within {SHUTDOWN_TIMEOUT:?} after SIGTERM\nstderr:\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker gracefully and starts it again on the same data directory (new ports).
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "vostok exited with {status} after SIGTERM\nstderr:\n{}",
            self.stderr_tail()
        );
        self.spawn();
    }

    /// Kills the process (SIGKILL) without a graceful shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of the current process's stderr log, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.stderr_path(self.generation)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(60);
        lines[start..].join("\n")
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- vostok stderr (generation {}) ----\n{}\n---- end ----",
                self.generation,
                self.stderr_tail()
            );
        }
    }
}

/// Parses `vostok ready namesrv=127.0.0.1:PORT broker=127.0.0.1:PORT [grpc=127.0.0.1:PORT]
/// data=PATH` (the gRPC address: [`parse_ready_grpc`]).
pub fn parse_ready_line(line: &str) -> Option<(String, String, String)> {
    let rest = line.trim_end().strip_prefix("vostok ready ")?;
    let rest = rest.strip_prefix("namesrv=")?;
    let (namesrv, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("broker=")?;
    let (broker, rest) = rest.split_once(' ')?;
    let rest = match rest.strip_prefix("grpc=") {
        Some(grpc) => grpc.split_once(' ')?.1,
        None => rest,
    };
    let data = rest.strip_prefix("data=")?;
    if !namesrv.starts_with("127.0.0.1:") || !broker.starts_with("127.0.0.1:") {
        return None;
    }
    Some((namesrv.to_string(), broker.to_string(), data.to_string()))
}

/// The gRPC address of a ready line, when the gRPC port is on.
pub fn parse_ready_grpc(line: &str) -> Option<String> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix("grpc="))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Raw remoting frames
// ---------------------------------------------------------------------------------------------

/// Request codes used by the tests (REMOTING.md §2.1).
pub mod code {
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const SEND_MESSAGE_V2: i32 = 310;
}

/// Response codes used by the tests (REMOTING.md §2.2).
pub mod resp {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const QUERY_NOT_FOUND: i32 = 22;
}

/// Java's frame limit: `totalLength + 4 <= 16 MiB`.
pub const FRAME_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Encodes one frame from a raw header (already serialized) and a body. `serialize_type` goes in
/// the high byte of the header-length word (0 = JSON).
pub fn encode_frame_raw(serialize_type: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let total_len = 4 + header.len() + body.len();
    let mut out = Vec::with_capacity(4 + total_len);
    out.extend_from_slice(&(total_len as u32).to_be_bytes());
    let word = ((serialize_type as u32) << 24) | (header.len() as u32 & 0x00FF_FFFF);
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// Builds a JSON request header the way the Java client does (ext values are strings).
pub fn request_header(code: i32, opaque: i32, ext: &[(&str, String)], oneway: bool) -> Vec<u8> {
    let mut ext_map = serde_json::Map::new();
    for (k, v) in ext {
        ext_map.insert((*k).to_string(), Value::String(v.clone()));
    }
    let header = json!({
        "code": code,
        "extFields": ext_map,
        "flag": if oneway { 2 } else { 0 },
        "language": "JAVA",
        "opaque": opaque,
        "serializeTypeCurrentRPC": "JSON",
        "version": 479,
    });
    serde_json::to_vec(&header).expect("serialize header")
}

/// Encodes a complete JSON request frame.
pub fn encode_request(code: i32, opaque: i32, ext: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    encode_frame_raw(0, &request_header(code, opaque, ext, false), body)
}

/// A decoded frame: the JSON header and the body.
#[derive(Clone, Debug)]
pub struct Frame {
    pub header: Value,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn code(&self) -> i64 {
        self.header["code"]
            .as_i64()
            .expect("frame header has a numeric code")
    }
    pub fn opaque(&self) -> i64 {
        self.header["opaque"]
            .as_i64()
            .expect("frame header has a numeric opaque")
    }
    pub fn flag(&self) -> i64 {
        self.header["flag"].as_i64().unwrap_or(0)
    }
    pub fn is_response(&self) -> bool {
        self.flag() & 1 == 1
    }
    pub fn remark(&self) -> String {
        self.header["remark"].as_str().unwrap_or("").to_string()
    }
    /// An ext field as text (numbers and booleans are converted, as servers must accept).
    pub fn ext(&self, key: &str) -> Option<String> {
        match self.header.get("extFields")?.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
    pub fn ext_i64(&self, key: &str) -> Option<i64> {
        self.ext(key)?.parse().ok()
    }
}

/// Outcome of reading from a connection.
#[derive(Debug)]
pub enum ReadOutcome {
    Frame(Frame),
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived before the read timeout.
    TimedOut,
}

/// A blocking connection speaking raw remoting frames.
pub struct RawConn {
    pub stream: TcpStream,
    next_opaque: i32,
    pub addr: String,
}

impl RawConn {
    /// Connects with a 10 s read timeout.
    pub fn connect(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).ok();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("set write timeout");
        RawConn {
            stream,
            next_opaque: 1000,
            addr: addr.to_string(),
        }
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
    }

    pub fn next_opaque(&mut self) -> i32 {
        self.next_opaque += 1;
        self.next_opaque
    }

    /// Writes raw bytes; returns the I/O error instead of panicking (the peer may have closed).
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends a request and waits for the response with the same opaque, skipping any
    /// broker-to-client requests in between.
    pub fn request(&mut self, code: i32, ext: &[(&str, String)], body: &[u8]) -> Frame {
        let opaque = self.next_opaque();
        let frame = encode_request(code, opaque, ext, body);
        self.write_raw(&frame)
            .unwrap_or_else(|e| panic!("write request code {code} to {}: {e}", self.addr));
        loop {
            match self.read_frame() {
                ReadOutcome::Frame(f) if f.is_response() && f.opaque() == opaque as i64 => {
                    return f
                }
                ReadOutcome::Frame(_) => continue,
                ReadOutcome::Closed => {
                    panic!(
                        "{} closed the connection instead of answering code {code}",
                        self.addr
                    )
                }
                ReadOutcome::TimedOut => {
                    panic!("{} did not answer code {code} in time", self.addr)
                }
            }
        }
    }

    /// Reads one frame. A malformed frame from the server fails the test.
    pub fn read_frame(&mut self) -> ReadOutcome {
        let mut len_buf = [0u8; 4];
        match read_exact_or(&mut self.stream, &mut len_buf) {
            Ok(true) => {}
            Ok(false) => return ReadOutcome::Closed,
            Err(e) if is_timeout(&e) => return ReadOutcome::TimedOut,
            Err(_) => return ReadOutcome::Closed,
        }
        let total_len = u32::from_be_bytes(len_buf) as usize;
        assert!(
            (4..FRAME_MAX_BYTES).contains(&total_len),
            "server sent a frame with invalid length {total_len}"
        );
        let mut rest = vec![0u8; total_len];
        match read_exact_or(&mut self.stream, &mut rest) {
            Ok(true) => {}
            Ok(false) => return ReadOutcome::Closed,
            Err(e) if is_timeout(&e) => panic!("server sent a truncated frame (timed out)"),
            Err(_) => return ReadOutcome::Closed,
        }
        let word = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let serialize_type = (word >> 24) as u8;
        let header_len = (word & 0x00FF_FFFF) as usize;
        assert!(
            header_len <= total_len - 4,
            "server frame header length out of range"
        );
        assert_eq!(
            serialize_type, 0,
            "server answered a JSON request with a non-JSON header"
        );
        let header: Value = serde_json::from_slice(&rest[4..4 + header_len])
            .expect("server frame header is valid JSON");
        let body = rest[4 + header_len..].to_vec();
        ReadOutcome::Frame(Frame { header, body })
    }

    /// Waits until the peer closes the connection, failing if it sends anything or stays open
    /// past `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration, what: &str) {
        self.set_read_timeout(timeout);
        match self.read_frame() {
            ReadOutcome::Closed => {}
            ReadOutcome::TimedOut => panic!("{what}: connection still open after {timeout:?}"),
            ReadOutcome::Frame(f) => {
                panic!(
                    "{what}: expected the connection to be closed, got a frame {:?}",
                    f.header
                )
            }
        }
    }

    /// Half-closes our side (FIN) so the server sees EOF.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// `read_exact` that reports a clean EOF at the first byte as `Ok(false)`.
fn read_exact_or(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Typed helpers over raw frames
// ---------------------------------------------------------------------------------------------

/// Encodes a property string: `name U+0001 value U+0002` per pair (REMOTING.md §4.1).
pub fn encode_properties(props: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in props {
        s.push_str(k);
        s.push('\u{1}');
        s.push_str(v);
        s.push('\u{2}');
    }
    s
}

/// Decodes a property string into pairs (lenient: skips malformed items).
pub fn decode_properties(s: &str) -> Vec<(String, String)> {
    s.split('\u{2}')
        .filter_map(|item| {
            let (k, v) = item.split_once('\u{1}')?;
            if k.is_empty() {
                None
            } else {
                Some((k.to_string(), v.to_string()))
            }
        })
        .collect()
}

/// Sends one message with SEND_MESSAGE_V2 (310) to a given queue, creating the topic from TBW102
/// if needed. Returns the response frame (the caller asserts the code).
pub fn send_v2(conn: &mut RawConn, topic: &str, queue_id: i32, body: &[u8], tags: &str) -> Frame {
    let born_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let props = encode_properties(&[("TAGS", tags), ("WAIT", "true")]);
    let ext = [
        ("a", "raw-test-producer".to_string()),
        ("b", topic.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", queue_id.to_string()),
        ("f", "0".to_string()),
        ("g", born_ms.to_string()),
        ("h", "0".to_string()),
        ("i", props),
        ("j", "0".to_string()),
        ("k", "false".to_string()),
        ("m", "false".to_string()),
    ];
    conn.request(code::SEND_MESSAGE_V2, &ext, body)
}

/// GET_MAX_OFFSET (30): the next offset to be written in a queue.
pub fn max_offset(conn: &mut RawConn, topic: &str, queue_id: i32) -> i64 {
    let f = conn.request(
        code::GET_MAX_OFFSET,
        &[
            ("topic", topic.to_string()),
            ("queueId", queue_id.to_string()),
        ],
        &[],
    );
    assert_eq!(f.code(), 0, "GET_MAX_OFFSET failed: {:?}", f.header);
    f.ext_i64("offset")
        .expect("GET_MAX_OFFSET response carries an offset")
}

/// QUERY_CONSUMER_OFFSET (14): the committed offset, or `None` when the broker has none (22).
pub fn committed_offset(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Option<i64> {
    let f = conn.request(
        code::QUERY_CONSUMER_OFFSET,
        &[
            ("consumerGroup", group.to_string()),
            ("topic", topic.to_string()),
            ("queueId", queue_id.to_string()),
            ("setZeroIfNotFound", "false".to_string()),
        ],
        &[],
    );
    match f.code() as i32 {
        resp::SUCCESS => Some(
            f.ext_i64("offset")
                .expect("QUERY_CONSUMER_OFFSET response carries an offset"),
        ),
        resp::QUERY_NOT_FOUND => None,
        other => panic!("QUERY_CONSUMER_OFFSET answered {other}: {:?}", f.header),
    }
}

/// One record decoded from a pull body (REMOTING.md §4.2), the fields tests look at.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub queue_id: i32,
    pub queue_offset: i64,
    pub sys_flag: i32,
    pub body: Vec<u8>,
    pub topic: String,
    pub properties: Vec<(String, String)>,
}

/// Decodes the concatenated stored records of a pull body. Panics on malformed data.
pub fn decode_records(mut buf: &[u8]) -> Vec<StoredRecord> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> &'a [u8] {
        assert!(buf.len() >= n, "pull body truncated");
        let (head, tail) = buf.split_at(n);
        *buf = tail;
        head
    }
    fn i32_of(b: &[u8]) -> i32 {
        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    fn i64_of(b: &[u8]) -> i64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        i64::from_be_bytes(a)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let total = i32_of(buf) as usize;
        assert!(total >= 4 && total <= buf.len(), "bad record size {total}");
        let mut rec = take(&mut buf, total);
        take(&mut rec, 4); // total size
        let magic = i32_of(take(&mut rec, 4)) as u32;
        take(&mut rec, 4); // body crc
        let queue_id = i32_of(take(&mut rec, 4));
        take(&mut rec, 4); // flag
        let queue_offset = i64_of(take(&mut rec, 8));
        take(&mut rec, 8); // physical offset
        let sys_flag = i32_of(take(&mut rec, 4));
        take(&mut rec, 8); // born timestamp
        let born_len = if sys_flag & 0x10 != 0 { 20 } else { 8 };
        take(&mut rec, born_len);
        take(&mut rec, 8); // store timestamp
        let store_len = if sys_flag & 0x20 != 0 { 20 } else { 8 };
        take(&mut rec, store_len);
        take(&mut rec, 4); // reconsume times
        take(&mut rec, 8); // prepared transaction offset
        let body_len = i32_of(take(&mut rec, 4)) as usize;
        let body = take(&mut rec, body_len).to_vec();
        let topic_len = if magic == 0xDAA3_20AB {
            let b = take(&mut rec, 2);
            u16::from_be_bytes([b[0], b[1]]) as usize
        } else {
            take(&mut rec, 1)[0] as usize
        };
        let topic = String::from_utf8(take(&mut rec, topic_len).to_vec()).expect("utf-8 topic");
        let b = take(&mut rec, 2);
        let prop_len = u16::from_be_bytes([b[0], b[1]]) as usize;
        let props = String::from_utf8(take(&mut rec, prop_len).to_vec()).expect("utf-8 properties");
        out.push(StoredRecord {
            queue_id,
            queue_offset,
            sys_flag,
            body,
            topic,
            properties: decode_properties(&props),
        });
    }
    out
}

/// Ext fields of a PULL_MESSAGE for up to 32 messages from `offset` with an inline `*`
/// subscription: no commit, no suspend.
pub fn pull_ext(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> [(&'static str, String); 11] {
    [
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", queue_id.to_string()),
        ("queueOffset", offset.to_string()),
        ("maxMsgNums", "32".to_string()),
        // bit 2: subscription present; no commit, no suspend.
        ("sysFlag", "4".to_string()),
        ("commitOffset", "0".to_string()),
        ("suspendTimeoutMillis", "0".to_string()),
        ("subscription", "*".to_string()),
        ("subVersion", "0".to_string()),
        ("expressionType", "TAG".to_string()),
    ]
}

/// Pulls (no long polling) up to 32 records of one queue starting at `offset`, with an inline
/// `*` subscription. Returns the response frame and the decoded records (empty unless code 0).
pub fn pull(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> (Frame, Vec<StoredRecord>) {
    let ext = pull_ext(group, topic, queue_id, offset);
    let f = conn.request(code::PULL_MESSAGE, &ext, &[]);
    let records = if f.code() == 0 {
        decode_records(&f.body)
    } else {
        Vec::new()
    };
    (f, records)
}

/// Pulls every record of a queue from offset 0 up to `max` (exclusive).
pub fn pull_all(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    queue_id: i32,
    max: i64,
) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut offset = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while offset < max {
        assert!(Instant::now() < deadline, "pull_all did not finish in time");
        let (f, records) = pull(conn, group, topic, queue_id, offset);
        assert_eq!(
            f.code(),
            0,
            "pull {topic}/{queue_id}@{offset} failed: {:?}",
            f.header
        );
        assert!(!records.is_empty(), "pull returned code 0 with no records");
        offset = f
            .ext_i64("nextBeginOffset")
            .expect("pull response carries nextBeginOffset");
        out.extend(records);
    }
    out
}

/// UPDATE_AND_CREATE_TOPIC (17) on the broker, then waits (up to 30 s) until the NameServer
/// publishes a route for `topic` with `queues` write queues.
pub fn create_topic(broker_addr: &str, namesrv_addr: &str, topic: &str, queues: u32) {
    /// UPDATE_AND_CREATE_TOPIC's request code (REMOTING.md §3.17).
    const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    let mut broker = RawConn::connect(broker_addr);
    let f = broker.request(
        UPDATE_AND_CREATE_TOPIC,
        &[
            ("topic", topic.to_string()),
            ("defaultTopic", "TBW102".to_string()),
            ("readQueueNums", queues.to_string()),
            ("writeQueueNums", queues.to_string()),
            ("perm", "6".to_string()),
            ("topicFilterType", "SINGLE_TAG".to_string()),
            ("topicSysFlag", "0".to_string()),
            ("order", "false".to_string()),
        ],
        &[],
    );
    assert_eq!(
        f.code(),
        0,
        "UPDATE_AND_CREATE_TOPIC failed: {:?}",
        f.header
    );
    let mut namesrv = RawConn::connect(namesrv_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let f = namesrv.request(
            code::GET_ROUTEINFO_BY_TOPIC,
            &[("topic", topic.to_string())],
            &[],
        );
        if f.code() == 0 {
            let route: Value = serde_json::from_slice(&f.body).expect("route JSON");
            let published = route["queueDatas"]
                .as_array()
                .map(|qs| {
                    qs.iter()
                        .filter_map(|q| q["writeQueueNums"].as_u64())
                        .sum::<u64>()
                })
                .unwrap_or(0);
            if published == u64::from(queues) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "route of {topic} with {queues} queues never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends a request and waits for its response like [`RawConn::request`], but reports a closed
/// connection, a failed write or a timeout as `None` instead of failing the test: for load that
/// runs while the broker is killed.
pub fn try_request(
    conn: &mut RawConn,
    code: i32,
    ext: &[(&str, String)],
    body: &[u8],
) -> Option<Frame> {
    let opaque = conn.next_opaque();
    let frame = encode_request(code, opaque, ext, body);
    conn.write_raw(&frame).ok()?;
    loop {
        match conn.read_frame() {
            ReadOutcome::Frame(f) if f.is_response() && f.opaque() == opaque as i64 => {
                return Some(f)
            }
            ReadOutcome::Frame(_) => continue,
            ReadOutcome::Closed | ReadOutcome::TimedOut => return None,
        }
    }
}

/// Ext fields of a SEND_MESSAGE_V2 (310) to one queue with the given properties (already
/// encoded with [`encode_properties`]), creating the topic from TBW102 with 4 queues if needed.
pub fn send_v2_ext(topic: &str, queue_id: i32, properties: String) -> Vec<(&'static str, String)> {
    let born_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    vec![
        ("a", "raw-test-producer".to_string()),
        ("b", topic.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", queue_id.to_string()),
        ("f", "0".to_string()),
        ("g", born_ms.to_string()),
        ("h", "0".to_string()),
        ("i", properties),
        ("j", "0".to_string()),
        ("k", "false".to_string()),
        ("m", "false".to_string()),
    ]
}

/// One record of a pull body with the fields that locate it in the CommitLog: its physical
/// offset and the store host it was written by (together its offset message id).
#[derive(Clone, Debug)]
pub struct LocatedRecord {
    pub record: StoredRecord,
    pub physical_offset: i64,
    /// The record's offset message id: store host (IPv4 + port) and physical offset, in
    /// uppercase hex, as the send response's `msgId` names it.
    pub offset_msg_id: String,
}

/// Decodes a pull body like [`decode_records`], adding each record's physical offset and offset
/// message id (IPv4 store hosts only). Panics on malformed data.
pub fn decode_located_records(buf: &[u8]) -> Vec<LocatedRecord> {
    let records = decode_records(buf);
    let mut out = Vec::with_capacity(records.len());
    let mut pos = 0usize;
    for record in records {
        let rec = &buf[pos..];
        let total = i32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&rec[at..at + 8]);
            i64::from_be_bytes(a)
        };
        // Fixed prefix: size 4, magic 4, crc 4, queue id 4, flag 4, queue offset 8 → 28.
        let physical_offset = i64_at(28);
        let sys_flag = i32::from_be_bytes([rec[36], rec[37], rec[38], rec[39]]);
        assert_eq!(sys_flag & 0x30, 0, "IPv4 hosts expected");
        // sys flag 4, born timestamp 8, born host 8, store timestamp 8 → store host at 64.
        let store_host = &rec[64..72];
        let mut id = String::new();
        for b in store_host.iter().chain(&physical_offset.to_be_bytes()) {
            id.push_str(&format!("{b:02X}"));
        }
        out.push(LocatedRecord {
            record,
            physical_offset,
            offset_msg_id: id,
        });
        pos += total;
    }
    out
}

impl Standalone {
    /// Starts the broker again on the same data directory after [`Standalone::kill`] (new
    /// ports), as an operator would after a crash.
    pub fn spawn_again(&mut self) {
        assert!(self.child.is_none(), "broker still running: kill it first");
        self.spawn();
    }

    /// The whole stderr log of the current process (its log lines).
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.stderr_path(self.generation)).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Plumbing for the published RocketMQ Rust client (`rocketmq-client-rust` 1.0.0)
// ---------------------------------------------------------------------------------------------

/// One runtime owner per test binary: the client's runtimes are components of it, so every test
/// in the binary shares its threads instead of starting its own.
static CLIENT_RUNTIME_OWNER: std::sync::LazyLock<rocketmq_runtime::RuntimeOwner> =
    std::sync::LazyLock::new(|| {
        rocketmq_runtime::RuntimeOwner::plan(rocketmq_runtime::RuntimeConfig {
            thread_name: "vostok-rocketmq-client-test".to_string(),
            ..Default::default()
        })
        .expect("client runtime configuration is valid")
        .build()
        .expect("client runtime owner starts")
    });

/// A RocketMQ client runtime named `scope` (for its logs), with default configuration and no
/// telemetry.
pub fn client_runtime(scope: &'static str) -> std::sync::Arc<rocketmq_client_rust::ClientRuntime> {
    rocketmq_client_rust::ClientRuntime::try_new(
        CLIENT_RUNTIME_OWNER.root_context().component(scope),
        rocketmq_client_rust::ClientRuntimeConfig::default(),
        rocketmq_client_rust::TelemetryHandle::noop(),
    )
    .expect("client runtime is valid")
}

static NAME_COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A name unique within this process, `<kind>_<n>` (topics and groups are also isolated by the
/// per-test broker).
pub fn unique(kind: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{kind}_{n}")
}

/// Starts a RocketMQ `DefaultMQProducer` of `group` against the NameServer at `namesrv`, with a
/// 10 s send timeout (generous for a loaded 2-core CI machine).
pub async fn start_producer_in(
    namesrv: &str,
    group: &str,
) -> rocketmq_client_rust::DefaultMQProducer {
    let mut producer = rocketmq_client_rust::DefaultMQProducer::builder(client_runtime("producer"))
        .producer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .send_msg_timeout(10_000)
        .build();
    producer.start().await.expect("producer starts");
    producer
}

/// A RocketMQ `DefaultMQPushConsumer` builder for `group` against the NameServer at `namesrv`:
/// clustering, starting from the first offset. Callers add what their test needs and build.
pub fn push_consumer_builder(
    namesrv: &str,
    group: &str,
) -> rocketmq_client_rust::DefaultMQPushConsumerBuilder {
    use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
    use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
    rocketmq_client_rust::DefaultMQPushConsumer::builder(client_runtime("consumer"))
        .consumer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .message_model(MessageModel::Clustering)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
}

/// Polls the producer's view of `topic`'s route every 200 ms until it lists `queues` publish
/// queues; panics naming the topic after 30 s.
pub async fn wait_for_publish_route(
    producer: &mut rocketmq_client_rust::DefaultMQProducer,
    topic: &str,
    queues: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match producer.fetch_publish_message_queues(topic).await {
            Ok(found) if found.len() == queues => return,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "route of {topic} with {queues} queues never appeared: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `check` every 100 ms until it returns true; panics with `what` after `limit`.
pub async fn wait_until<F: FnMut() -> bool>(what: &str, limit: Duration, mut check: F) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Test messages: every byte value in the body, tags, two keys, non-ASCII user properties
// ---------------------------------------------------------------------------------------------

/// The body of message `seq`: every byte value, length varying with `seq`, below the 4 KiB
/// client compression threshold so the broker sees the bytes as sent.
pub fn body_for(seq: usize) -> Vec<u8> {
    let mut body = format!("vostok-{seq}|").into_bytes();
    body.extend(
        (0u8..=255)
            .cycle()
            .skip(seq % 256)
            .take(100 + (seq * 37) % 900),
    );
    body
}

/// The tag of message `seq`, one of three.
pub fn tag_for(seq: usize) -> String {
    ["TagA", "TagB", "TagC"][seq % 3].to_string()
}

/// The two keys of message `seq`.
pub fn keys_for(seq: usize) -> Vec<String> {
    vec![format!("key-{seq}"), format!("order-{}", seq * 7)]
}

/// User properties of message `seq`, including non-ASCII text and punctuation; `seq` carries
/// the sequence number itself.
pub fn props_for(seq: usize) -> Vec<(String, String)> {
    vec![
        ("seq".to_string(), seq.to_string()),
        ("färg".to_string(), format!("grön ✓ {seq}")),
        (
            "json".to_string(),
            format!("{{\"n\":{seq},\"s\":\"a b=c;d\"}}"),
        ),
    ]
}

/// broker.conf lines every spawned broker starts with: disk-space reactions (refusing sends at
/// the warning level, deleting files early) only when the disk is really full, whatever else
/// the host keeps on it.
pub const HOST_DISK_NEUTRAL_CONF: &str = "diskMaxUsedSpaceRatio=95\n\
                                      diskSpaceCleanForciblyRatio=100\n\
                                      diskSpaceWarningLevelRatio=100\n";

/// The messages now in `topic`'s first `queues` queues, read with raw pulls: (body, properties),
/// sorted by body.
pub fn stored_messages(
    broker_addr: &str,
    topic: &str,
    queues: i32,
) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let mut conn = RawConn::connect(broker_addr);
    let mut out = Vec::new();
    for queue in 0..queues {
        let max = max_offset(&mut conn, topic, queue);
        for record in pull_all(&mut conn, "arrival_checker", topic, queue, max) {
            out.push((
                String::from_utf8_lossy(&record.body).into_owned(),
                record.properties.into_iter().collect(),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Waits until `body` is in `topic` (its first `queues` queues), asserting it is not there before
/// `not_before` and arrives by `not_before + tolerance`: a delayed or timer message is never early
/// and at most `tolerance` late.
pub async fn expect_arrival(
    broker: &Standalone,
    topic: &str,
    queues: i32,
    body: &str,
    not_before: tokio::time::Instant,
    tolerance: Duration,
) {
    loop {
        let now = tokio::time::Instant::now();
        let present =
            tokio::task::block_in_place(|| stored_messages(&broker.broker_addr, topic, queues))
                .iter()
                .any(|(b, _)| b == body);
        if present {
            assert!(
                now >= not_before,
                "{body} arrived {:?} early",
                not_before - now
            );
            return;
        }
        assert!(
            now <= not_before + tolerance,
            "{body} not delivered {:?} after it was due",
            now - not_before
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// RocketMQ 5's Node.js client (tests/grpc-node)
// ---------------------------------------------------------------------------------------------

/// Runs `node tests/grpc-node/<script> <args>` (RocketMQ 5's official Node.js client, installed
/// by the README's test command) and returns its output once it exits, killing it after
/// `limit`. Its stdout is the script's report; stderr its logs.
pub fn run_node(script: &str, args: &[&str], limit: Duration) -> std::process::Output {
    run_node_with_env(script, args, &[], limit)
}

/// [`run_node`] with extra environment variables.
pub fn run_node_with_env(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> std::process::Output {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/grpc-node");
    assert!(
        dir.join("node_modules/rocketmq-client-nodejs").is_dir(),
        "tests/grpc-node/node_modules is missing: run `npm ci` there (scripts/test.sh does)"
    );
    let child = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (Node.js 20+ is needed)");
    let pid = child.id();
    // Both pipes are drained while it runs, so a chatty script never blocks on a full pipe.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("node output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let out = rx
                .recv()
                .expect("node ends once killed")
                .expect("node output");
            panic!(
                "node {script} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
