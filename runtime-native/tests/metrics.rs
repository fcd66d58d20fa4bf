//! The Prometheus exporter scraped by a real Prometheus server (Debian's `prometheus` package):
//! the values it stores follow from the load the test sent.
//!
//! Goal: with `metricsExporterType=PROM`, `/metrics` is a valid scrape target whose RocketMQ 5
//! metrics (names, labels, values) are what the traffic implies. Method: a real producer
//! (`rocketmq-client-rust`) sends N messages of a known body size to a one-queue topic; a raw
//! PULL reads all of them for a probe group (its body length is the stored bytes of the N
//! messages, which RocketMQ counts as throughput); another group pulls K and commits K; a real
//! push consumer of a third group consumes everything. Then `/usr/bin/prometheus` scrapes the
//! broker every second and its HTTP API is asked for the stored values.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt as RealMessageExt;
use rocketmq_model::common::message::message_single::Message as RealMessage;
use serde_json::Value;
use tokio::task::block_in_place;

use common::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Messages sent.
const N: usize = 20;
/// Messages the pulling group reads and commits.
const K: usize = 8;
const BODY_BYTES: usize = 100;

/// Kills the Prometheus server when the test ends, however it ends.
struct PrometheusServer {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl PrometheusServer {
    /// Starts Prometheus on a loopback port, scraping `target` every second.
    fn start(target: &str) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: this test needs a real Prometheus server; install Debian's \
             `prometheus` package (apt-get install -y --no-install-recommends prometheus; \
             scripts/test.sh does it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("vostok-prometheus-")
            .tempdir()
            .expect("scratch directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: vostok\n    static_configs:\n\
                 \x20     - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The values of an instant query, `None` when Prometheus cannot answer yet.
    fn query(&self, promql: &str) -> Option<Vec<f64>> {
        let body = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )?;
        let json: Value = serde_json::from_str(&body).ok()?;
        if json["status"] != "success" {
            return None;
        }
        let results = json["data"]["result"].as_array()?;
        Some(
            results
                .iter()
                .filter_map(|r| r["value"][1].as_str()?.parse().ok())
                .collect(),
        )
    }

    /// Waits until `promql` has exactly one value and it is `expected`.
    fn expect(&self, promql: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.query(promql);
            if last.as_deref() == Some(&[expected]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{promql}: expected [{expected}], Prometheus has {last:?}\nprometheus log tail:\n{}",
            tail(&self.log())
        );
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.1 GET; the body when the answer is 200.
fn http_get(addr: &str, target: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(dechunk(body));
    }
    Some(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[derive(Clone, Default)]
struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl MessageListenerConcurrently for Count {
    fn consume_message(
        &self,
        msgs: &[&RealMessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        self.0
            .fetch_add(msgs.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_the_load_implies() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the metrics scenario finishes within 240 s");
}

async fn scenario() {
    let topic = "MetricsTopic";
    let pull_group = "MetricsPullGroup";
    let probe_group = "MetricsProbeGroup";
    let push_group = "MetricsPushGroup";
    let metrics_port = free_port();
    let broker = block_in_place(|| {
        let broker = Standalone::start_with(BrokerOptions {
            broker_conf: Some(format!(
                "metricsExporterType=PROM\nmetricsPromExporterPort={metrics_port}\n"
            )),
            ..BrokerOptions::default()
        });
        create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 1);
        broker
    });
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let scrape = block_in_place(|| http_get(&metrics_addr, "/metrics")).expect("/metrics is 200");
    assert!(scrape.contains("rocketmq_broker_permission{"), "{scrape}");
    assert!(block_in_place(|| http_get(&metrics_addr, "/other")).is_none());

    let mut producer = start_producer_in(&broker.namesrv_addr, "MetricsProducer").await;
    wait_for_publish_route(&mut producer, topic, 1).await;
    for i in 0..N {
        let message = RealMessage::builder()
            .topic(topic)
            .tags("T")
            .body(vec![b'a' + (i % 26) as u8; BODY_BYTES])
            .build()
            .expect("message builds");
        producer.send(message).await.expect("send succeeds");
    }

    let stored_bytes = block_in_place(|| {
        let mut conn = RawConn::connect(&broker.broker_addr);
        // The probe group reads all N: the pull body is the N stored records.
        let (frame, records) = pull(&mut conn, probe_group, topic, 0, 0);
        assert_eq!(frame.code(), 0);
        assert_eq!(records.len(), N);
        let stored = frame.body.len();
        // The pulling group reads K and commits K.
        let mut ext = pull_ext(pull_group, topic, 0, 0);
        for (key, value) in ext.iter_mut() {
            if *key == "maxMsgNums" {
                *value = K.to_string();
            }
        }
        let frame = conn.request(code::PULL_MESSAGE, &ext, &[]);
        assert_eq!(frame.code(), 0);
        assert_eq!(decode_records(&frame.body).len(), K);
        let commit = conn.request(
            15, // UPDATE_CONSUMER_OFFSET
            &[
                ("consumerGroup", pull_group.to_string()),
                ("topic", topic.to_string()),
                ("queueId", "0".to_string()),
                ("commitOffset", K.to_string()),
            ],
            &[],
        );
        assert_eq!(commit.code(), 0);
        stored
    });

    let count = Count::default();
    let mut consumer = push_consumer_builder(&broker.namesrv_addr, push_group).build();
    consumer.subscribe(topic, "*").await.expect("subscribes");
    consumer.register_message_listener_concurrently(count.clone());
    consumer.start().await.expect("consumer starts");
    let seen = count.clone();
    wait_until(
        "every message consumed",
        Duration::from_secs(30),
        move || seen.0.load(std::sync::atomic::Ordering::SeqCst) >= N,
    )
    .await;

    block_in_place(|| {
        let prometheus = PrometheusServer::start(&metrics_addr);
        let me = "cluster=\"DefaultCluster\",node_type=\"broker\",node_id=\"broker-a\"";
        prometheus.expect("up{job=\"vostok\"}", 1.0);
        prometheus.expect(
            &format!(
                "rocketmq_messages_in_total{{{me},topic=\"{topic}\",message_type=\"normal\",\
                 is_system=\"false\"}}"
            ),
            N as f64,
        );
        // RocketMQ counts the stored record bytes (AppendMessageResult.wroteBytes).
        prometheus.expect(
            &format!("rocketmq_throughput_in_total{{topic=\"{topic}\"}}"),
            stored_bytes as f64,
        );
        prometheus.expect(
            &format!("rocketmq_message_size_count{{topic=\"{topic}\"}}"),
            N as f64,
        );
        prometheus.expect(
            &format!("rocketmq_message_size_bucket{{topic=\"{topic}\",le=\"1024\"}}"),
            N as f64,
        );
        prometheus.expect(
            &format!("rocketmq_message_size_sum{{topic=\"{topic}\"}}"),
            stored_bytes as f64,
        );
        prometheus.expect(
            &format!(
                "rocketmq_throughput_out_total{{topic=\"{topic}\",consumer_group=\"{probe_group}\"}}"
            ),
            stored_bytes as f64,
        );
        prometheus.expect(
            &format!(
                "rocketmq_messages_out_total{{topic=\"{topic}\",consumer_group=\"{pull_group}\"}}"
            ),
            K as f64,
        );
        prometheus.expect(
            &format!(
                "rocketmq_messages_out_total{{topic=\"{topic}\",consumer_group=\"{push_group}\"}}"
            ),
            N as f64,
        );
        prometheus.expect(
            &format!(
                "rocketmq_consumer_lag_messages{{topic=\"{topic}\",consumer_group=\"{pull_group}\",\
                 is_retry=\"false\"}}"
            ),
            (N - K) as f64,
        );
        prometheus.expect(
            &format!(
                "rocketmq_consumer_ready_messages{{topic=\"{topic}\",consumer_group=\"{pull_group}\"}}"
            ),
            (N - K) as f64,
        );
        prometheus.expect(
            &format!(
                "rocketmq_consumer_inflight_messages{{topic=\"{topic}\",\
                 consumer_group=\"{pull_group}\"}}"
            ),
            0.0,
        );
        prometheus.expect(
            &format!(
                "sum(rocketmq_consumer_connections{{consumer_group=\"{push_group}\",\
                 protocol_type=\"remoting\"}})"
            ),
            1.0,
        );
        prometheus.expect(
            "sum(rocketmq_producer_connections{protocol_type=\"remoting\"}) > bool 0",
            1.0,
        );
        // Every send was answered: N samples of the send codes, all SUCCESS; pulls measured too.
        prometheus.expect(
            "sum(rocketmq_rpc_latency_milliseconds_count{protocol_type=\"remoting\",\
             request_code=~\"send_message|send_message_v2\",response_code=\"success\"})",
            N as f64,
        );
        prometheus.expect(
            "sum(rocketmq_rpc_latency_milliseconds_count{request_code=\"pull_message\"}) \
             >= bool 2",
            1.0,
        );
        prometheus.expect("rocketmq_broker_permission", 6.0);
        prometheus.expect("rocketmq_storage_dispatch_behind_bytes", 0.0);
        prometheus.expect("rocketmq_storage_size_bytes > bool 0", 1.0);
    });
    consumer.shutdown().await;
    producer.shutdown().await;
}
