//! The Prometheus exporter: with `metricsExporterType=PROM` the broker answers `GET /metrics`
//! on `metricsPromExporterPort` (5557) with its metrics in the Prometheus text format 0.0.4,
//! rendered by `prometheus-client` from [`Broker::metrics_snapshot`](vostok_core::broker::Broker).
//!
//! Names and labels are RocketMQ 5's as its users see them on the wire. RocketMQ registers its
//! instruments with OpenTelemetry (`BrokerMetricsConstant`, `RemotingMetricsConstant`,
//! `DefaultStoreMetricsConstant`) and serves them through OpenTelemetry Java 1.29's Prometheus
//! exporter, which appends the instrument's unit to the name unless the name already ends with
//! it (`rocketmq_rpc_latency` in milliseconds → `rocketmq_rpc_latency_milliseconds`,
//! `rocketmq_storage_size` in bytes → `rocketmq_storage_size_bytes`) and `_total` to counters
//! (already in RocketMQ's counter names, so not doubled). Every sample carries `cluster`,
//! `node_type="broker"` and `node_id` (the broker name). `request_code` and `response_code` are
//! the code's constant name in lower case (`send_message_v2`, `success`), or its number when it
//! has none, as RocketMQ's `RemotingHelper.getRequestCodeDesc` prints them.
//!
//! The HTTP side is deliberately small: one request per connection, a request head of at most
//! [`REQUEST_HEAD_MAX_BYTES`] read within [`REQUEST_TIMEOUT`], `GET` (or `HEAD`) of `/metrics`
//! answered 200, any other path 404, any other method 405, anything unparsable 400; the
//! connection is closed after every answer.

use std::borrow::Cow;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};
use vostok_core::broker::metrics::{
    Histogram, MetricsSnapshot, MESSAGE_SIZE_BOUNDS_BYTES, RPC_LATENCY_BOUNDS_MS,
};
use vostok_core::remoting::codes::{request, response};
use vostok_core::remoting::version::version_name;

use crate::server::MetricsSource;

/// The longest request head (request line and headers) accepted.
pub const REQUEST_HEAD_MAX_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves scrapes until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    source: MetricsSource,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics: Prometheus exporter on http://{addr}/metrics");
    }
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let source = source.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &source).await {
                            debug!(%peer, error = %e, "metrics: connection ended");
                        }
                    });
                }
                Err(e) => {
                    debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, source: &MetricsSource) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        loop {
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if head.len() > REQUEST_HEAD_MAX_BYTES {
                return Ok(false);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let complete = match read {
        Ok(Ok(complete)) => complete,
        Ok(Err(e)) => return Err(e),
        Err(_) => false,
    };
    let reply = if complete {
        route(&head, source).await
    } else {
        Reply::status(400, "Bad Request")
    };
    reply.write(&mut stream).await
}

struct Reply {
    status: u16,
    reason: &'static str,
    body: String,
    /// `HEAD`: the headers of a GET, without the body.
    head_only: bool,
}

impl Reply {
    fn status(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            body: format!("{status} {reason}\n"),
            head_only: false,
        }
    }

    async fn write(self, stream: &mut TcpStream) -> std::io::Result<()> {
        let content_type = if self.status == 200 {
            CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        };
        let header = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.status,
            self.reason,
            self.body.len()
        );
        stream.write_all(header.as_bytes()).await?;
        if !self.head_only {
            stream.write_all(self.body.as_bytes()).await?;
        }
        stream.shutdown().await
    }
}

async fn route(head: &[u8], source: &MetricsSource) -> Reply {
    let Ok(text) = std::str::from_utf8(head) else {
        return Reply::status(400, "Bad Request");
    };
    let request_line = text.split("\r\n").next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Reply::status(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Reply::status(400, "Bad Request");
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return Reply::status(404, "Not Found");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Reply::status(405, "Method Not Allowed"),
    };
    match source.snapshot().await {
        Some(snapshot) => Reply {
            status: 200,
            reason: "OK",
            body: render(snapshot),
            head_only,
        },
        None => Reply::status(503, "Service Unavailable"),
    }
}

/// The snapshot in the Prometheus text format 0.0.4.
pub fn render(snapshot: MetricsSnapshot) -> String {
    let common = [
        ("cluster", snapshot.cluster.clone()),
        ("node_type", "broker".to_owned()),
        ("node_id", snapshot.node_id.clone()),
    ];
    let mut registry = Registry::with_labels(
        common
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v))),
    );
    registry.register_collector(Box::new(Snapshot(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// One scrape's values as a `prometheus-client` collector.
#[derive(Debug)]
struct Snapshot(MetricsSnapshot);

type Labels = Vec<(&'static str, String)>;

fn bool_label(v: bool) -> String {
    v.to_string()
}

/// One counter family. `name` without `_total`: the encoder appends it.
fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

fn histograms<'a, const B: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds: &[u64; B],
    samples: impl IntoIterator<Item = (Labels, &'a Histogram<B>)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in samples {
        let mut buckets: Vec<(f64, u64)> = bounds
            .iter()
            .zip(h.counts)
            .map(|(b, c)| (*b as f64, c))
            .collect();
        buckets.push((f64::INFINITY, h.overflow));
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum as f64, h.count(), &buckets, None)?;
    }
    Ok(())
}

fn gauge_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let e = &mut e;
        gauges(
            e,
            "rocketmq_broker_permission",
            "Broker permission",
            [(Labels::new(), i64::from(s.broker_permission))],
        )?;
        gauges(
            e,
            "rocketmq_topic_number",
            "Active topic number",
            [(Labels::new(), gauge_i64(s.topic_number))],
        )?;
        gauges(
            e,
            "rocketmq_consumer_group_number",
            "Active subscription group number",
            [(Labels::new(), gauge_i64(s.consumer_group_number))],
        )?;

        let in_labels = |i: &vostok_core::broker::metrics::InSample| -> Labels {
            vec![
                ("topic", i.topic.clone()),
                ("message_type", i.message_type.as_str().to_owned()),
                ("is_system", bool_label(i.is_system)),
            ]
        };
        counters(
            e,
            "rocketmq_messages_in",
            "Total number of incoming messages",
            s.messages_in
                .iter()
                .map(|i| (in_labels(i), i.counters.messages)),
        )?;
        counters(
            e,
            "rocketmq_throughput_in",
            "Total traffic of incoming messages",
            s.messages_in
                .iter()
                .map(|i| (in_labels(i), i.counters.bytes)),
        )?;
        histograms(
            e,
            "rocketmq_message_size",
            "Incoming messages size",
            &MESSAGE_SIZE_BOUNDS_BYTES,
            s.messages_in
                .iter()
                .map(|i| (in_labels(i), &i.counters.size)),
        )?;

        let out_labels = |o: &vostok_core::broker::metrics::OutSample| -> Labels {
            vec![
                ("topic", o.topic.clone()),
                ("consumer_group", o.consumer_group.clone()),
                ("is_system", bool_label(o.is_system)),
            ]
        };
        counters(
            e,
            "rocketmq_messages_out",
            "Total number of outgoing messages",
            s.messages_out
                .iter()
                .map(|o| (out_labels(o), o.counters.messages)),
        )?;
        counters(
            e,
            "rocketmq_throughput_out",
            "Total traffic of outgoing messages",
            s.messages_out
                .iter()
                .map(|o| (out_labels(o), o.counters.bytes)),
        )?;

        let producers = s.producer_connections.iter().map(|p| {
            let labels = vec![
                ("language", p.language.clone()),
                ("version", version_name(i64::from(p.version))),
                ("protocol_type", "remoting".to_owned()),
            ];
            (labels, gauge_i64(p.count))
        });
        gauges(
            e,
            "rocketmq_producer_connections",
            "Producer connections",
            producers,
        )?;
        let consumers = s.consumer_connections.iter().map(|c| {
            let labels = vec![
                ("consumer_group", c.consumer_group.clone()),
                ("language", c.language.clone()),
                ("version", version_name(i64::from(c.version))),
                ("consume_mode", c.consume_mode.clone()),
                ("protocol_type", "remoting".to_owned()),
                ("is_system", bool_label(c.is_system)),
            ];
            (labels, gauge_i64(c.count))
        });
        gauges(
            e,
            "rocketmq_consumer_connections",
            "Consumer connections",
            consumers,
        )?;

        let group_labels = |c: &vostok_core::broker::metrics::ConsumerSample| -> Labels {
            vec![
                ("consumer_group", c.consumer_group.clone()),
                ("topic", c.topic.clone()),
                ("is_retry", bool_label(c.is_retry)),
                ("is_system", bool_label(c.is_system)),
            ]
        };
        type Field = fn(&vostok_core::broker::metrics::ConsumerSample) -> u64;
        let consumer_gauges: [(&str, &str, Field); 5] = [
            (
                "rocketmq_consumer_lag_messages",
                "Consumer lag messages",
                |c| c.lag_messages,
            ),
            (
                "rocketmq_consumer_lag_latency_milliseconds",
                "Consumer lag time",
                |c| c.lag_latency_ms,
            ),
            (
                "rocketmq_consumer_inflight_messages",
                "Consumer inflight messages",
                |c| c.inflight_messages,
            ),
            (
                "rocketmq_consumer_queueing_latency_milliseconds",
                "Consumer queueing time",
                |c| c.queueing_latency_ms,
            ),
            (
                "rocketmq_consumer_ready_messages",
                "Consumer ready messages",
                |c| c.ready_messages,
            ),
        ];
        for (name, help, field) in consumer_gauges {
            gauges(
                e,
                name,
                help,
                s.consumers
                    .iter()
                    .map(|c| (group_labels(c), gauge_i64(field(c)))),
            )?;
        }
        counters(
            e,
            "rocketmq_send_to_dlq_messages",
            "Consumer send to DLQ messages",
            s.send_to_dlq.iter().map(|d| {
                let labels = vec![
                    ("consumer_group", d.consumer_group.clone()),
                    ("topic", d.topic.clone()),
                    ("is_system", bool_label(d.is_system)),
                ];
                (labels, d.messages)
            }),
        )?;

        let by_topic = |list: &[(String, u64)]| -> Vec<(Labels, u64)> {
            list.iter()
                .map(|(topic, n)| (vec![("topic", topic.clone())], *n))
                .collect()
        };
        counters(
            e,
            "rocketmq_commit_messages",
            "Total number of commit messages",
            by_topic(&s.commit_messages),
        )?;
        counters(
            e,
            "rocketmq_rollback_messages",
            "Total number of rollback messages",
            by_topic(&s.rollback_messages),
        )?;
        gauges(
            e,
            "rocketmq_half_messages",
            "Half messages of all topics",
            [(Labels::new(), gauge_i64(s.half_messages))],
        )?;

        histograms(
            e,
            "rocketmq_rpc_latency_milliseconds",
            "Rpc latency",
            &RPC_LATENCY_BOUNDS_MS,
            s.rpc_latency.iter().map(|r| {
                let labels = vec![
                    ("protocol_type", "remoting".to_owned()),
                    ("request_code", request_code_desc(r.request_code)),
                    ("response_code", response_code_desc(r.response_code)),
                ];
                (labels, &r.latency_ms)
            }),
        )?;

        let one = |v: u64| [(Labels::new(), gauge_i64(v))];
        gauges(
            e,
            "rocketmq_storage_size_bytes",
            "Broker storage size",
            one(s.storage_size_bytes),
        )?;
        gauges(
            e,
            "rocketmq_storage_flush_behind_bytes",
            "Broker flush behind bytes",
            one(s.storage_flush_behind_bytes),
        )?;
        gauges(
            e,
            "rocketmq_storage_dispatch_behind_bytes",
            "Broker dispatch behind bytes",
            one(s.storage_dispatch_behind_bytes),
        )?;
        gauges(
            e,
            "rocketmq_storage_message_reserve_time_milliseconds",
            "Broker message reserve time",
            s.storage_message_reserve_time_ms
                .map(|v| (Labels::new(), gauge_i64(v))),
        )?;
        counters(
            e,
            "rocketmq_timer_enqueue",
            "Total number of timer enqueue",
            one(s.timer_enqueue_total).map(|(l, v)| (l, v as u64)),
        )?;
        counters(
            e,
            "rocketmq_timer_dequeue",
            "Total number of timer dequeue",
            one(s.timer_dequeue_total).map(|(l, v)| (l, v as u64)),
        )?;
        gauges(
            e,
            "rocketmq_timing_messages",
            "Current message number in timing",
            one(s.timing_messages),
        )?;
        Ok(())
    }
}

/// Pairs of code and RocketMQ constant name.
macro_rules! code_names {
    ($module:ident: $($name:ident),* $(,)?) => {
        |code: i32| -> Option<&'static str> {
            $(if code == $module::$name { return Some(stringify!($name)); })*
            None
        }
    };
}

/// `RemotingHelper.getRequestCodeDesc`: the `RequestCode` constant's name in lower case, or the
/// number.
pub fn request_code_desc(code: i32) -> String {
    let name = code_names!(request:
        SEND_MESSAGE, PULL_MESSAGE, QUERY_MESSAGE, QUERY_BROKER_OFFSET, QUERY_CONSUMER_OFFSET,
        UPDATE_CONSUMER_OFFSET, UPDATE_AND_CREATE_TOPIC, GET_ALL_TOPIC_CONFIG,
        UPDATE_BROKER_CONFIG, GET_BROKER_CONFIG, GET_BROKER_RUNTIME_INFO,
        SEARCH_OFFSET_BY_TIMESTAMP, GET_MAX_OFFSET, GET_MIN_OFFSET, GET_EARLIEST_MSG_STORETIME,
        VIEW_MESSAGE_BY_ID, HEART_BEAT, UNREGISTER_CLIENT, CONSUMER_SEND_MSG_BACK,
        END_TRANSACTION, GET_CONSUMER_LIST_BY_GROUP, CHECK_TRANSACTION_STATE,
        NOTIFY_CONSUMER_IDS_CHANGED, LOCK_BATCH_MQ, UNLOCK_BATCH_MQ, GET_ALL_CONSUMER_OFFSET,
        GET_ALL_DELAY_OFFSET, CHECK_CLIENT_CONFIG, UPDATE_AND_CREATE_ACL_CONFIG,
        DELETE_ACL_CONFIG, GET_BROKER_CLUSTER_ACL_INFO, UPDATE_GLOBAL_WHITE_ADDRS_CONFIG,
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
        GET_TOPIC_STATS_INFO, GET_CONSUMER_CONNECTION_LIST, GET_PRODUCER_CONNECTION_LIST,
        DELETE_SUBSCRIPTIONGROUP, GET_CONSUME_STATS, INVOKE_BROKER_TO_RESET_OFFSET,
        DELETE_TOPIC_IN_BROKER, QUERY_TOPIC_CONSUME_BY_WHO, QUERY_CONSUME_TIME_SPAN,
        GET_SYSTEM_TOPIC_LIST_FROM_BROKER, CLEAN_EXPIRED_CONSUMEQUEUE, GET_CONSUMER_RUNNING_INFO,
        CONSUME_MESSAGE_DIRECTLY, SEND_MESSAGE_V2, VIEW_BROKER_STATS_DATA, SEND_BATCH_MESSAGE,
        SEND_REPLY_MESSAGE, SEND_REPLY_MESSAGE_V2, PUSH_REPLY_MESSAGE_TO_CLIENT,
        GET_ALL_PRODUCER_INFO, LITE_PULL_MESSAGE, POP_MESSAGE, ACK_MESSAGE, PEEK_MESSAGE,
        CHANGE_MESSAGE_INVISIBLETIME, NOTIFICATION, POLLING_INFO,
    )(code);
    name.map_or_else(|| code.to_string(), str::to_ascii_lowercase)
}

/// `RemotingHelper.getResponseCodeDesc`: the `ResponseCode` constant's name in lower case, or
/// the number.
pub fn response_code_desc(code: i32) -> String {
    let name = code_names!(response:
        SUCCESS, SYSTEM_ERROR, SYSTEM_BUSY, REQUEST_CODE_NOT_SUPPORTED, TRANSACTION_FAILED,
        FLUSH_DISK_TIMEOUT, SLAVE_NOT_AVAILABLE, FLUSH_SLAVE_TIMEOUT, MESSAGE_ILLEGAL,
        SERVICE_NOT_AVAILABLE, VERSION_NOT_SUPPORTED, NO_PERMISSION, TOPIC_NOT_EXIST,
        TOPIC_EXIST_ALREADY, PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY, PULL_OFFSET_MOVED,
        QUERY_NOT_FOUND, SUBSCRIPTION_PARSE_FAILED, SUBSCRIPTION_NOT_EXIST,
        SUBSCRIPTION_NOT_LATEST, SUBSCRIPTION_GROUP_NOT_EXIST, FILTER_DATA_NOT_EXIST,
        FILTER_DATA_NOT_LATEST, INVALID_PARAMETER, TRANSACTION_SHOULD_COMMIT,
        TRANSACTION_SHOULD_ROLLBACK, TRANSACTION_STATE_UNKNOW, TRANSACTION_STATE_GROUP_WRONG,
        NO_BUYER_ID, NOT_IN_CURRENT_UNIT, CONSUMER_NOT_ONLINE, CONSUME_MSG_TIMEOUT, NO_MESSAGE,
        POLLING_FULL, POLLING_TIMEOUT, FLOW_CONTROL, ILLEGAL_OPERATION,
    )(code);
    name.map_or_else(|| code.to_string(), str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_as_rocketmq_names_them() {
        assert_eq!(request_code_desc(310), "send_message_v2");
        assert_eq!(request_code_desc(11), "pull_message");
        assert_eq!(request_code_desc(99_999), "99999");
        assert_eq!(response_code_desc(0), "success");
        assert_eq!(response_code_desc(19), "pull_not_found");
    }
}
