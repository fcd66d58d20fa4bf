//! broker.conf: RocketMQ's `java.util.Properties` text, mapped onto [`BrokerConfig`].
//!
//! Accepted syntax (the subset of `java.util.Properties` that broker.conf files use):
//!
//! ```text
//! # a comment            ! also a comment
//! brokerClusterName = DefaultCluster
//! brokerName: broker-a
//! namesrvAddr=127.0.0.1:9876;127.0.0.2:9876
//! storePathRootDir=/var/lib/vostok \
//!     (a trailing backslash continues the value on the next line)
//! ```
//!
//! Keys and values are trimmed. The first `=` or `:` separates them; a line with neither is a key
//! with an empty value. Unknown keys produce one warning each and are otherwise ignored, so a
//! RocketMQ broker.conf can be used unchanged; a value that does not parse is an error naming the
//! key.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use vostok_core::broker::{BrokerConfig, FlushDiskType};
use vostok_core::store::CorruptionPolicy;

/// A broker.conf that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: invalid value {value:?} for {key}: {reason}")]
    BadValue {
        file: String,
        key: String,
        value: String,
        reason: String,
    },
}

/// Everything a broker.conf sets: the core's [`BrokerConfig`] plus what only the driver uses.
#[derive(Clone, Debug, Default)]
pub struct BrokerFileConfig {
    pub broker: BrokerConfig,
    /// `storePathRootDir`, when the file sets it.
    pub store_path_root_dir: Option<PathBuf>,
    /// `storePathCommitLog`, when the file sets it. Only `<storePathRootDir>/commitlog` is
    /// supported; the driver warns about any other value and keeps the CommitLog under the root.
    pub store_path_commit_log: Option<PathBuf>,
    /// `aclPlainFile` (Vostok's key for RocketMQ's `rocketmq.acl.plain.file` property): the
    /// default ACL file, relative paths against the broker.conf's directory.
    pub acl_plain_file: Option<PathBuf>,
    /// The `tls.*` keys (RocketMQ's TLS system properties, [`crate::tls`]).
    pub tls: crate::tls::TlsConfig,
    /// The `metrics*` keys ([`crate::metrics`]).
    pub metrics: MetricsConfig,
    /// The gRPC port's keys ([`crate::grpc`]).
    pub grpc: GrpcConfig,
    /// One line per unknown or unsupported key, each key once, in file order.
    pub warnings: Vec<String>,
}

/// RocketMQ's `metricsExporterType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsExporterType {
    /// No metrics served (RocketMQ's default).
    #[default]
    Disable,
    /// A Prometheus scrape endpoint on `metricsPromExporterHost:metricsPromExporterPort`.
    Prom,
}

/// The port RocketMQ's Prometheus exporter listens on by default (`metricsPromExporterPort`).
pub const DEFAULT_METRICS_PROM_EXPORTER_PORT: u16 = 5557;

/// The metrics keys of a broker.conf:
///
/// * `metricsExporterType`: `DISABLE` (default) or `PROM`; RocketMQ's other exporters
///   (`OTLP_GRPC`, `LOG`) are refused at start, so a broker never runs believing it exports;
/// * `metricsPromExporterPort` (5557): the HTTP port of `/metrics`;
/// * `metricsPromExporterHost`: the address it binds; empty (default) binds the broker's listen
///   address (127.0.0.1 unless `--listen-ip` says otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    pub exporter: MetricsExporterType,
    pub prom_port: u16,
    pub prom_host: Option<IpAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            exporter: MetricsExporterType::Disable,
            prom_port: DEFAULT_METRICS_PROM_EXPORTER_PORT,
            prom_host: None,
        }
    }
}

/// The port RocketMQ 5's proxy serves gRPC on by default (`grpcServerPort`).
pub const DEFAULT_GRPC_SERVER_PORT: u16 = 8081;

/// The gRPC port's keys of a broker.conf:
///
/// * `enableGrpcServer` (true): serve RocketMQ 5's gRPC protocol on a master;
/// * `grpcServerPort` (8081, RocketMQ 5 proxy's default): its port, on the broker's listen
///   address. Unset, a broker whose `listenPort` is 0 (a free port) takes a free port here too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcConfig {
    pub enable: bool,
    /// `None`: not configured.
    pub port: Option<u16>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            enable: true,
            port: None,
        }
    }
}

/// Keys RocketMQ's sample broker.conf files set that Vostok accepts without acting on them.
/// They get a quieter warning than a misspelt key.
const ACCEPTED_UNSUPPORTED_KEYS: &[&str] = &[
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    "storePathConsumeQueue",
    "storePathIndex",
    "storeCheckpoint",
    "abortFile",
    // Java pauses between deletions and waits for mapped-file readers before unmapping; here a
    // deleted file stays readable by whoever still maps it, so neither wait is needed.
    "deleteCommitLogFilesInterval",
    "deleteConsumeQueueFilesInterval",
    "destroyMapedFileIntervalForcibly",
];

/// Splits properties text into `(key, value)` pairs in file order (later duplicates win when
/// applied, as in Java).
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut line = first.trim().to_owned();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        // A trailing backslash continues the logical line; leading blanks of the continuation
        // are dropped, as java.util.Properties does.
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some(next) => line.push_str(next.trim_start()),
                None => break,
            }
        }
        let split = line.find(['=', ':']);
        let (key, value) = match split {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line.as_str(), ""),
        };
        pairs.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    pairs
}

/// Reads and applies a broker.conf file over the defaults.
pub fn load_broker_conf(path: &Path) -> Result<BrokerFileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_broker_conf(&path.display().to_string(), &text)
}

/// Applies broker.conf text over the defaults. `file` names the source in errors and warnings.
pub fn parse_broker_conf(file: &str, text: &str) -> Result<BrokerFileConfig, ConfigError> {
    let mut out = BrokerFileConfig::default();
    let conf_dir = Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut warned = BTreeSet::new();
    // The timer keys set, checked together at the end: the wheel's size depends on two.
    let mut timer_keys: Vec<(String, String)> = Vec::new();
    for (key, value) in parse_properties(text) {
        let bad = |reason: &str| ConfigError::BadValue {
            file: file.to_owned(),
            key: key.clone(),
            value: value.clone(),
            reason: reason.to_owned(),
        };
        if key.starts_with("tls.") && out.tls.set(&key, &value) {
            continue;
        }
        let b = &mut out.broker;
        match key.as_str() {
            "brokerClusterName" => {
                b.broker_cluster_name = non_empty(&value).ok_or_else(|| bad("must not be empty"))?
            }
            "brokerName" => {
                b.broker_name = non_empty(&value).ok_or_else(|| bad("must not be empty"))?
            }
            "brokerId" => {
                b.broker_id = value
                    .parse()
                    .map_err(|_| bad("expected a broker id ≥ 0 (0 is the master)"))?
            }
            "namesrvAddr" => b.namesrv_addrs = parse_namesrv_addrs(&value).map_err(|r| bad(&r))?,
            "listenPort" => {
                b.listen_port = value
                    .parse()
                    .map_err(|_| bad("expected a TCP port (0-65535)"))?
            }
            "brokerIP1" => {
                b.broker_ip1 = value
                    .parse::<IpAddr>()
                    .map_err(|_| bad("expected an IP address"))?
            }
            "storePathRootDir" => {
                out.store_path_root_dir = Some(PathBuf::from(
                    non_empty(&value).ok_or_else(|| bad("must not be empty"))?,
                ))
            }
            "storePathCommitLog" => {
                out.store_path_commit_log = Some(PathBuf::from(
                    non_empty(&value).ok_or_else(|| bad("must not be empty"))?,
                ))
            }
            "flushDiskType" => {
                b.flush_disk_type = parse_flush_disk_type(&value)
                    .ok_or_else(|| bad("expected ASYNC_FLUSH or SYNC_FLUSH"))?
            }
            "autoCreateTopicEnable" => {
                b.auto_create_topic_enable =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "autoCreateSubscriptionGroup" => {
                b.auto_create_subscription_group =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "enablePropertyFilter" => {
                b.enable_property_filter =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "longPollingEnable" => {
                b.long_polling_enable =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "defaultTopicQueueNums" => {
                b.default_topic_queue_nums =
                    positive(&value).ok_or_else(|| bad("expected a queue count ≥ 1"))?
            }
            "maxMessageSize" => {
                b.store.max_message_size_bytes =
                    positive(&value).ok_or_else(|| bad("expected a size in bytes ≥ 1"))?
            }
            // RocketMQ still reads the old spelling with one "p".
            "mappedFileSizeCommitLog" | "mapedFileSizeCommitLog" => {
                // The BLANK filler at a segment's end records the remaining size as an int32.
                let bytes: u64 = positive(&value)
                    .filter(|b| *b <= i32::MAX as u64)
                    .ok_or_else(|| bad("expected a size in bytes from 1 to 2147483647"))?;
                b.store.commitlog_segment_bytes = bytes;
            }
            "mappedFileSizeConsumeQueue" | "mapedFileSizeConsumeQueue" => {
                // The file size is given in bytes of 20-byte units, as in RocketMQ.
                let bytes: u64 =
                    positive(&value).ok_or_else(|| bad("expected a size in bytes ≥ 20"))?;
                if bytes < 20 {
                    return Err(bad("expected a size in bytes ≥ 20"));
                }
                b.store.consume_queue_units_per_segment = bytes / 20;
            }
            "flushIntervalCommitLog" => {
                b.flush_interval_commitlog_ms =
                    positive(&value).ok_or_else(|| bad("expected milliseconds ≥ 1"))?
            }
            "messageIndexEnable" => {
                b.store.index.enabled =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            // Stored as int32 in every index file.
            "maxHashSlotNum" => {
                b.store.index.hash_slot_count =
                    positive(&value)
                        .filter(|n| *n <= i32::MAX as u32)
                        .ok_or_else(|| bad("expected a slot count from 1 to 2147483647"))?
            }
            "maxIndexNum" => {
                b.store.index.max_index_count = positive(&value)
                    .filter(|n| *n >= 2 && *n <= i32::MAX as u32)
                    .ok_or_else(|| bad("expected an entry count from 2 to 2147483647"))?
            }
            "fileReservedTime"
            | "deleteWhen"
            | "diskMaxUsedSpaceRatio"
            | "diskSpaceCleanForciblyRatio"
            | "diskSpaceWarningLevelRatio"
            | "cleanFileForciblyEnable"
            | "cleanResourceInterval"
            | "deleteFileBatchMax" => {
                apply_retention_key(&mut b.retention, &key, &value).map_err(|r| bad(&r))?
            }
            "flushCommitLogLeastPages" => {
                // 0 is valid: every tick flushes whatever there is.
                b.flush_commitlog_least_pages = value
                    .parse()
                    .map_err(|_| bad("expected a number of 4 KiB pages ≥ 0"))?
            }
            "flushCommitLogThoroughInterval" => {
                b.flush_commitlog_thorough_interval_ms =
                    positive(&value).ok_or_else(|| bad("expected milliseconds ≥ 1"))?
            }
            "flushCommitLogTimed" => {
                b.flush_commitlog_timed =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "flushIntervalConsumeQueue" => {
                b.checkpoint_interval_ms =
                    positive(&value).ok_or_else(|| bad("expected milliseconds ≥ 1"))?
            }
            "recoverCorruptedCommitLog" => {
                b.store.corrupted_commitlog = parse_corruption_policy(&value)
                    .ok_or_else(|| bad("expected refuse or truncate"))?
            }
            // Whole-record CRC property `__CRC32#` on every stored record. RocketMQ's default
            // is false; Vostok's is true (see `StoreConfig::append_prop_crc`).
            "enabledAppendPropCRC" => {
                b.store.append_prop_crc =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "messageDelayLevel" => {
                b.store.message_delay_level_ms =
                    vostok_core::broker::schedule::parse_message_delay_level(&value)
                        .map_err(|r| bad(&r))?
            }
            "timerWheelEnable"
            | "timerPrecisionMs"
            | "timerMaxDelaySec"
            | "mappedFileSizeTimerLog"
            | "timerFlushIntervalMs" => {
                apply_timer_key(&mut b.timer, &key, &value).map_err(|r| bad(&r))?;
                timer_keys.push((key.clone(), value.clone()));
            }
            "transactionTimeOut" => {
                b.transaction.timeout_ms =
                    positive(&value).ok_or_else(|| bad("expected milliseconds ≥ 1"))?
            }
            "transactionCheckInterval" => {
                b.transaction.check_interval_ms =
                    positive(&value).ok_or_else(|| bad("expected milliseconds ≥ 1"))?
            }
            "transactionCheckMax" => {
                b.transaction.check_max =
                    positive(&value).ok_or_else(|| bad("expected a count ≥ 1"))?
            }
            "accessMessageInMemoryMaxRatio" => {
                b.access_message_in_memory_max_ratio_percent = value
                    .parse()
                    .ok()
                    .filter(|p: &u32| *p <= 100)
                    .ok_or_else(|| bad("expected a percentage from 0 to 100"))?
            }
            "useServerSideResetOffset" => {
                b.use_server_side_reset_offset =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "brokerPermission" => {
                b.broker_permission = value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p != 0 && *p & !vostok_core::topic::perm::READ_WRITE == 0)
                    .ok_or_else(|| bad("expected 2 (write), 4 (read) or 6 (read and write)"))?
            }
            "aclEnable" => {
                b.acl_enable = parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "metricsExporterType" => {
                out.metrics.exporter = match value.trim().to_ascii_uppercase().as_str() {
                    "DISABLE" => MetricsExporterType::Disable,
                    "PROM" => MetricsExporterType::Prom,
                    "OTLP_GRPC" | "LOG" => {
                        return Err(bad(
                            "not supported by Vostok: use PROM (a Prometheus scrape endpoint) \
                             or DISABLE",
                        ))
                    }
                    _ => return Err(bad("expected DISABLE or PROM")),
                }
            }
            "enableGrpcServer" => {
                out.grpc.enable = parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "grpcServerPort" => {
                out.grpc.port = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| bad("expected a TCP port (0-65535)"))?,
                )
            }
            "metricsPromExporterPort" => {
                out.metrics.prom_port = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("expected a TCP port (0-65535)"))?
            }
            "metricsPromExporterHost" => {
                out.metrics.prom_host = match value.trim() {
                    "" => None,
                    ip => Some(
                        ip.parse::<IpAddr>()
                            .map_err(|_| bad("expected an IP address"))?,
                    ),
                }
            }
            "aclPlainFile" => {
                let path = PathBuf::from(&value);
                out.acl_plain_file = Some(match path.is_relative() {
                    true => conf_dir.join(path),
                    false => path,
                });
            }
            "traceTopicEnable" => {
                b.trace_topic_enable =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "msgTraceTopicName" => {
                vostok_core::topic::validate_topic_name(&value).map_err(|e| bad(&e))?;
                b.msg_trace_topic_name = value.clone();
            }
            "storeReplyMessageEnable" => {
                b.store_reply_message_enable =
                    parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
            }
            "registerNameServerPeriod" => {
                b.register_broker_interval_ms =
                    positive(&value).ok_or_else(|| bad("expected milliseconds ≥ 1"))?
            }
            _ if REPLICATION_KEYS.contains(&key.as_str()) => {
                apply_replication_key(&mut b.replication, &key, &value).map_err(|r| bad(&r))?
            }
            _ if POP_KEYS.contains(&key.as_str()) => {
                apply_pop_key(&mut b.pop, &key, &value).map_err(|r| bad(&r))?
            }
            _ => {
                if warned.insert(key.clone()) {
                    if ACCEPTED_UNSUPPORTED_KEYS.contains(&key.as_str()) {
                        out.warnings
                            .push(format!("{file}: {key} is not supported yet; ignored"));
                    } else {
                        out.warnings
                            .push(format!("{file}: unknown key {key}; ignored"));
                    }
                }
            }
        }
    }
    // RocketMQ's BrokerStartup: a master is broker 0; a slave needs an id of its own.
    match out.broker.replication.role {
        vostok_core::broker::BrokerRole::Slave if out.broker.broker_id == 0 => {
            return Err(ConfigError::BadValue {
                file: file.to_owned(),
                key: "brokerId".to_owned(),
                value: "0".to_owned(),
                reason: "a SLAVE needs brokerId ≥ 1 (0 is its master)".to_owned(),
            })
        }
        vostok_core::broker::BrokerRole::Slave => {}
        _ if out.broker.broker_id != 0 => {
            out.warnings.push(format!(
                "{file}: brokerId={} on a master role; a master is broker 0, as RocketMQ sets it",
                out.broker.broker_id
            ));
            out.broker.broker_id = 0;
        }
        _ => {}
    }
    if let Err(reason) = out.broker.timer.validate() {
        let (key, value) = timer_keys.pop().unwrap_or_default();
        return Err(ConfigError::BadValue {
            file: file.to_owned(),
            key,
            value,
            reason,
        });
    }
    Ok(out)
}

/// The replication keys ([`vostok_core::broker::replication`]), RocketMQ's names and defaults.
const REPLICATION_KEYS: &[&str] = &[
    "brokerRole",
    "brokerIP2",
    "haListenPort",
    "haMasterAddress",
    "haSendHeartbeatInterval",
    "haHousekeepingInterval",
    "haTransferBatchSize",
    "haSlaveFallbehindMax",
    "slaveTimeout",
    "inSyncReplicas",
    "slaveReadEnable",
    "offsetCheckInSlave",
];

fn apply_replication_key(
    r: &mut vostok_core::broker::ReplicationConfig,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let value = value.trim();
    let ms = || positive(value).ok_or("expected milliseconds ≥ 1");
    match key {
        "brokerRole" => {
            r.role = vostok_core::broker::BrokerRole::parse(value)
                .ok_or("expected ASYNC_MASTER, SYNC_MASTER or SLAVE")?
        }
        "brokerIP2" => {
            r.broker_ip2 = match value {
                "" => None,
                ip => Some(ip.parse::<IpAddr>().map_err(|_| "expected an IP address")?),
            }
        }
        "haListenPort" => r.ha_listen_port = value.parse().map_err(|_| "expected a TCP port")?,
        "haMasterAddress" => {
            r.ha_master_address = match value {
                "" => None,
                addr if addr.parse::<std::net::SocketAddr>().is_ok() => Some(addr.to_owned()),
                _ => return Err("expected ip:port of the master's HA port".to_owned()),
            }
        }
        "haSendHeartbeatInterval" => r.ha_send_heartbeat_interval_ms = ms()?,
        "haHousekeepingInterval" => r.ha_housekeeping_interval_ms = ms()?,
        "haTransferBatchSize" => {
            r.ha_transfer_batch_bytes = positive(value)
                .filter(|n| *n <= vostok_core::ha::codec::MAX_FRAME_BODY_BYTES as u64)
                .ok_or("expected bytes from 1 to 4 MiB − 12 (what a slave reads at once)")?
        }
        "haSlaveFallbehindMax" => {
            r.ha_slave_fallbehind_max_bytes = positive(value).ok_or("expected bytes ≥ 1")?
        }
        "slaveTimeout" => r.slave_timeout_ms = ms()?,
        "inSyncReplicas" => {
            r.in_sync_replicas = Some(
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("expected replicas ≥ 1, the master included")?,
            )
        }
        "slaveReadEnable" => {
            r.slave_read_enable = parse_bool(value).ok_or("expected true or false")?
        }
        "offsetCheckInSlave" => {
            r.offset_check_in_slave = parse_bool(value).ok_or("expected true or false")?
        }
        _ => return Err(format!("{key} is not a replication key")),
    }
    Ok(())
}

/// POP consumption's keys ([`vostok_core::broker::pop`]), RocketMQ's names; the defaults are
/// RocketMQ 5's but for `enableRetryTopicV2` (true: redeliveries go to `%RETRY%<group>+<topic>`).
const POP_KEYS: &[&str] = &[
    "reviveQueueNum",
    "reviveInterval",
    "enableRetryTopicV2",
    "popFromRetryProbability",
    "popPollingSize",
    "maxPopPollingSize",
    "defaultMessageRequestMode",
    "defaultPopShareQueueNum",
];

fn apply_pop_key(
    p: &mut vostok_core::broker::pop::PopConfig,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let value = value.trim();
    match key {
        "reviveQueueNum" => {
            p.revive_queue_num = positive::<u32>(value)
                .filter(|n| *n <= 1_024)
                .ok_or("expected queues from 1 to 1024")?
        }
        "reviveInterval" => {
            p.revive_interval_ms = positive(value).ok_or("expected milliseconds ≥ 1")?
        }
        "enableRetryTopicV2" => {
            p.enable_retry_topic_v2 = parse_bool(value).ok_or("expected true or false")?
        }
        "popFromRetryProbability" => {
            p.pop_from_retry_probability_percent = value
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 100)
                .ok_or("expected a percentage from 0 to 100")?
        }
        "popPollingSize" => {
            p.pop_polling_size = positive::<usize>(value).ok_or("expected a count ≥ 1")?
        }
        "maxPopPollingSize" => {
            p.max_pop_polling_size = positive::<usize>(value).ok_or("expected a count ≥ 1")?
        }
        "defaultMessageRequestMode" => {
            p.default_message_request_mode = match value {
                "PULL" => vostok_core::remoting::pop::MessageRequestMode::Pull,
                "POP" => vostok_core::remoting::pop::MessageRequestMode::Pop,
                _ => return Err("expected PULL or POP".to_owned()),
            }
        }
        "defaultPopShareQueueNum" => {
            p.default_pop_share_queue_num = value.parse().map_err(|_| "expected an integer")?
        }
        _ => return Err(format!("{key} is not a POP key")),
    }
    Ok(())
}

/// The timer-message keys (see `vostok_core::broker::timer`), RocketMQ's names:
///
/// * `timerWheelEnable` (true): timer messages are accepted; when false they are refused with
///   SYSTEM_ERROR as RocketMQ does;
/// * `timerPrecisionMs` (1000): slot width; a timer is delivered at most this late, never early;
/// * `timerMaxDelaySec` (259200, 3 days): the furthest delivery time accepted; further is
///   refused with MESSAGE_ILLEGAL. At most 2147483 (the timer log keeps ms in an int32); the
///   wheel file holds 2 × timerMaxDelaySec / timerPrecisionMs slots of 32 bytes (16.6 MB by
///   default);
/// * `mappedFileSizeTimerLog` (100 MiB): bytes of a `timerlog/` segment, rounded down to whole
///   52-byte units;
/// * `timerFlushIntervalMs` (1000): how often `config/timercheck` is written when it changed.
fn apply_timer_key(
    t: &mut vostok_core::broker::timer::TimerConfig,
    key: &str,
    value: &str,
) -> Result<(), String> {
    match key {
        "timerWheelEnable" => t.enable = parse_bool(value).ok_or("expected true or false")?,
        "timerPrecisionMs" => {
            t.precision_ms = positive(value).ok_or("expected milliseconds ≥ 1")?
        }
        "timerMaxDelaySec" => t.max_delay_sec = positive(value).ok_or("expected seconds ≥ 1")?,
        "mappedFileSizeTimerLog" => {
            t.log_segment_bytes = positive(value).ok_or("expected a size in bytes ≥ 52")?
        }
        "timerFlushIntervalMs" => {
            t.flush_interval_ms = positive(value).ok_or("expected milliseconds ≥ 1")?
        }
        _ => return Err(format!("{key} is not a timer key")),
    }
    Ok(())
}

/// The retention and disk-space keys (see `vostok_core::store::retention`).
///
/// * `fileReservedTime` is in hours as in RocketMQ; fractions are accepted (`0.001` = 3.6 s),
///   which RocketMQ's integer key does not allow but short retention tests need.
/// * The ratios accept RocketMQ's percent (`75`) or a fraction (`0.75`): values above 1 are
///   percent. Like Java, `diskMaxUsedSpaceRatio` is kept within 10–95 %.
fn apply_retention_key(
    r: &mut vostok_core::store::retention::RetentionConfig,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let ratio = |value: &str| -> Result<f64, String> {
        let v: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0 && *v <= 100.0)
            .ok_or("expected a percentage (1-100) or a fraction (0-1]")?;
        Ok(if v > 1.0 { v / 100.0 } else { v })
    };
    match key {
        "fileReservedTime" => {
            let hours: f64 = value
                .parse()
                .ok()
                .filter(|h: &f64| h.is_finite() && *h > 0.0 && *h < 1e9)
                .ok_or("expected hours > 0 (fractions allowed)")?;
            r.file_reserved_time_ms = (hours * vostok_core::store::retention::HOUR_MS as f64)
                .round()
                .max(1.0) as u64;
        }
        "deleteWhen" => {
            r.delete_when_hours = vostok_core::store::retention::parse_delete_when(value)?
        }
        "diskMaxUsedSpaceRatio" => r.disk_max_used_space_ratio = ratio(value)?.clamp(0.10, 0.95),
        "diskSpaceCleanForciblyRatio" => r.disk_space_clean_forcibly_ratio = ratio(value)?,
        "diskSpaceWarningLevelRatio" => r.disk_space_warning_level_ratio = ratio(value)?,
        "cleanFileForciblyEnable" => {
            r.clean_file_forcibly_enable = parse_bool(value).ok_or("expected true or false")?
        }
        "cleanResourceInterval" => {
            r.clean_resource_interval_ms = positive(value).ok_or("expected milliseconds ≥ 1")?
        }
        "deleteFileBatchMax" => {
            r.delete_file_batch_max = positive(value).ok_or("expected a count ≥ 1")?
        }
        _ => return Err(format!("{key} is not a retention key")),
    }
    Ok(())
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn positive<T: std::str::FromStr + Default + PartialOrd>(value: &str) -> Option<T> {
    value.parse::<T>().ok().filter(|v| *v > T::default())
}

/// Strict booleans: a typo such as `ture` is an error, not a silent `false` as in Java.
fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `ASYNC_FLUSH` or `SYNC_FLUSH` (case-insensitive).
pub fn parse_flush_disk_type(value: &str) -> Option<FlushDiskType> {
    if value.eq_ignore_ascii_case("ASYNC_FLUSH") {
        Some(FlushDiskType::AsyncFlush)
    } else if value.eq_ignore_ascii_case("SYNC_FLUSH") {
        Some(FlushDiskType::SyncFlush)
    } else {
        None
    }
}

/// `refuse` (the default: a corrupt CommitLog record stops the broker) or `truncate` (drop the
/// log from the corrupt record on), case-insensitive.
pub fn parse_corruption_policy(value: &str) -> Option<CorruptionPolicy> {
    if value.eq_ignore_ascii_case("refuse") {
        Some(CorruptionPolicy::Refuse)
    } else if value.eq_ignore_ascii_case("truncate") {
        Some(CorruptionPolicy::Truncate)
    } else {
        None
    }
}

/// `host:port;host:port`, as RocketMQ checks it at startup: every entry must have a host and a
/// numeric port. Empty entries (a trailing `;`) are skipped.
pub fn parse_namesrv_addrs(value: &str) -> Result<Vec<String>, String> {
    let mut addrs = Vec::new();
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("{entry:?} is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("{entry:?} is not host:port"));
        }
        addrs.push(entry.to_owned());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_syntax() {
        let text = "# comment\n! also\n  a = 1 \nb:2\nc\nd=x=y\ne = long \\\n   value\n";
        let pairs = parse_properties(text);
        let expect = [
            ("a", "1"),
            ("b", "2"),
            ("c", ""),
            ("d", "x=y"),
            ("e", "long value"),
        ];
        assert_eq!(pairs.len(), expect.len());
        for ((k, v), (ek, ev)) in pairs.iter().zip(expect) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
    }

    #[test]
    fn transaction_keys() {
        let text = "transactionTimeOut=1500\ntransactionCheckInterval=700\ntransactionCheckMax=4\n";
        let c = parse_broker_conf("broker.conf", text).expect("parses");
        let t = &c.broker.transaction;
        assert_eq!(
            (t.timeout_ms, t.check_interval_ms, t.check_max),
            (1_500, 700, 4)
        );
        assert!(c.warnings.is_empty());
        let defaults = parse_broker_conf("broker.conf", "")
            .unwrap()
            .broker
            .transaction;
        assert_eq!(
            (
                defaults.timeout_ms,
                defaults.check_interval_ms,
                defaults.check_max
            ),
            (6_000, 30_000, 15)
        );
        for bad in ["transactionTimeOut=0", "transactionCheckMax=x"] {
            assert!(parse_broker_conf("broker.conf", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn good_file() {
        let text = "\
brokerClusterName = ClusterX
brokerName: broker-b
brokerId=0
namesrvAddr=127.0.0.1:9876;10.0.0.2:9877
listenPort=10921
brokerIP1=192.168.1.7
storePathRootDir=/tmp/store
storePathCommitLog=/tmp/store/commitlog
flushDiskType=SYNC_FLUSH
autoCreateTopicEnable=false
autoCreateSubscriptionGroup=FALSE
defaultTopicQueueNums=8
maxMessageSize=1048576
mapedFileSizeCommitLog=1048576
mappedFileSizeConsumeQueue=6000
flushIntervalCommitLog=200
registerNameServerPeriod=10000
longPollingEnable=false
messageIndexEnable=false
maxHashSlotNum=1000
maxIndexNum=4000
flushCommitLogLeastPages=0
flushCommitLogThoroughInterval=2000
flushCommitLogTimed=false
flushIntervalConsumeQueue=300
recoverCorruptedCommitLog=Truncate
enabledAppendPropCRC=false
messageDelayLevel=1s 2m 1h 1d
";
        let c = parse_broker_conf("broker.conf", text).expect("parses");
        let b = &c.broker;
        assert_eq!(b.broker_cluster_name, "ClusterX");
        assert_eq!(b.broker_name, "broker-b");
        assert_eq!(b.broker_id, 0);
        assert_eq!(b.namesrv_addrs, vec!["127.0.0.1:9876", "10.0.0.2:9877"]);
        assert_eq!(b.listen_port, 10921);
        assert_eq!(b.broker_ip1, "192.168.1.7".parse::<IpAddr>().unwrap());
        assert_eq!(c.store_path_root_dir, Some(PathBuf::from("/tmp/store")));
        assert_eq!(
            c.store_path_commit_log,
            Some(PathBuf::from("/tmp/store/commitlog"))
        );
        assert_eq!(b.flush_disk_type, FlushDiskType::SyncFlush);
        assert!(!b.auto_create_topic_enable);
        assert!(!b.auto_create_subscription_group);
        assert_eq!(b.default_topic_queue_nums, 8);
        assert_eq!(b.store.max_message_size_bytes, 1_048_576);
        assert_eq!(b.store.commitlog_segment_bytes, 1_048_576);
        assert_eq!(b.store.consume_queue_units_per_segment, 300);
        assert_eq!(b.flush_interval_commitlog_ms, 200);
        assert_eq!(b.register_broker_interval_ms, 10_000);
        assert!(!b.long_polling_enable);
        assert!(!b.store.index.enabled);
        assert_eq!(b.store.index.hash_slot_count, 1000);
        assert_eq!(b.store.index.max_index_count, 4000);
        assert_eq!(b.flush_commitlog_least_pages, 0);
        assert_eq!(b.flush_commitlog_thorough_interval_ms, 2_000);
        assert!(!b.flush_commitlog_timed);
        assert_eq!(b.checkpoint_interval_ms, 300);
        assert_eq!(b.store.corrupted_commitlog, CorruptionPolicy::Truncate);
        assert!(!b.store.append_prop_crc);
        assert_eq!(
            b.store.message_delay_level_ms,
            [1_000, 120_000, 3_600_000, 86_400_000]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn timer_keys() {
        let text = "timerWheelEnable=false\ntimerPrecisionMs=500\ntimerMaxDelaySec=3600\n\
                    mappedFileSizeTimerLog=5200\ntimerFlushIntervalMs=200\n";
        let c = parse_broker_conf("broker.conf", text).expect("parses");
        let t = &c.broker.timer;
        assert!(!t.enable);
        assert_eq!(
            (
                t.precision_ms,
                t.max_delay_sec,
                t.log_segment_bytes,
                t.flush_interval_ms
            ),
            (500, 3_600, 5_200, 200)
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Checked once all are read: a finer precision with a shorter maximum is fine.
        let c = parse_broker_conf("broker.conf", "timerPrecisionMs=1\ntimerMaxDelaySec=60\n")
            .expect("parses");
        assert_eq!(c.broker.timer.slot_count(), 120_002);
        let d = parse_broker_conf("broker.conf", "")
            .expect("parses")
            .broker
            .timer;
        assert_eq!(d, vostok_core::broker::timer::TimerConfig::default());
        for bad in [
            "timerMaxDelaySec=2147484",
            "timerPrecisionMs=0",
            "timerMaxDelaySec=259200\ntimerPrecisionMs=1",
            "timerPrecisionMs=1",
            "timerWheelEnable=maybe",
            "mappedFileSizeTimerLog=10",
        ] {
            assert!(
                parse_broker_conf("broker.conf", bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn defaults_when_empty() {
        let c = parse_broker_conf("broker.conf", "").expect("parses");
        let d = BrokerConfig::default();
        assert_eq!(c.broker.broker_name, d.broker_name);
        assert_eq!(c.broker.broker_ip1, d.broker_ip1);
        assert_eq!(c.store_path_root_dir, None);
        // Unlike RocketMQ, records carry the whole-record CRC unless told otherwise.
        assert!(c.broker.store.append_prop_crc);
    }

    #[test]
    fn unknown_keys_warn_once_and_continue() {
        let text = "brokerNmae=x\nbrokerNmae=y\nsendMessageThreadPoolNums=4\nbrokerName=broker-z\n";
        let c = parse_broker_conf("b.conf", text).expect("parses");
        assert_eq!(c.broker.broker_name, "broker-z");
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("unknown key brokerNmae"));
        assert!(c.warnings[1].contains("sendMessageThreadPoolNums is not supported yet"));
    }

    #[test]
    fn pop_keys() {
        use vostok_core::remoting::pop::MessageRequestMode;
        let text = "reviveQueueNum=4\nenableRetryTopicV2=false\npopFromRetryProbability=50\n\
                    defaultMessageRequestMode=POP\ndefaultPopShareQueueNum=2\nreviveInterval=500\n";
        let c = parse_broker_conf("b.conf", text).expect("parses");
        let p = &c.broker.pop;
        assert_eq!((p.revive_queue_num, p.revive_interval_ms), (4, 500));
        assert!(!p.enable_retry_topic_v2);
        assert_eq!(p.pop_from_retry_probability_percent, 50);
        assert_eq!(p.default_message_request_mode, MessageRequestMode::Pop);
        assert_eq!(p.default_pop_share_queue_num, 2);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        for (text, key) in [
            ("reviveQueueNum=0\n", "reviveQueueNum"),
            ("popFromRetryProbability=101\n", "popFromRetryProbability"),
            (
                "defaultMessageRequestMode=PUSH\n",
                "defaultMessageRequestMode",
            ),
        ] {
            let e = parse_broker_conf("b.conf", text).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn replication_keys() {
        use vostok_core::broker::BrokerRole;
        let text = "brokerRole=SLAVE\nbrokerId=2\nhaMasterAddress=10.0.0.1:10912\n\
                    haListenPort=20912\nbrokerIP2=10.0.0.9\nslaveTimeout=1500\n\
                    inSyncReplicas=3\nhaTransferBatchSize=65536\nslaveReadEnable=true\n";
        let c = parse_broker_conf("b.conf", text).expect("parses");
        let r = &c.broker.replication;
        assert_eq!(r.role, BrokerRole::Slave);
        assert_eq!(c.broker.broker_id, 2);
        assert_eq!(r.ha_master_address.as_deref(), Some("10.0.0.1:10912"));
        assert_eq!(r.ha_listen_port, 20912);
        assert_eq!(r.broker_ip2, Some("10.0.0.9".parse().unwrap()));
        assert_eq!((r.slave_timeout_ms, r.in_sync_replicas), (1500, Some(3)));
        assert_eq!(r.ha_transfer_batch_bytes, 65536);
        assert!(r.slave_read_enable);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // RocketMQ's BrokerStartup rules: a master is broker 0, a slave is not.
        let c = parse_broker_conf("b.conf", "brokerRole=SYNC_MASTER\nbrokerId=3\n").unwrap();
        assert_eq!(c.broker.broker_id, 0);
        assert!(c.warnings[0].contains("a master is broker 0"));
        for (text, key) in [
            ("brokerRole=SLAVE\n", "brokerId"),
            ("brokerRole=LEADER\n", "brokerRole"),
            ("haMasterAddress=somewhere\n", "haMasterAddress"),
            ("haTransferBatchSize=0\n", "haTransferBatchSize"),
            ("inSyncReplicas=0\n", "inSyncReplicas"),
        ] {
            match parse_broker_conf("b.conf", text) {
                Err(ConfigError::BadValue { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn retention_keys() {
        let text = "fileReservedTime=48\ndeleteWhen=04;16\ndiskMaxUsedSpaceRatio=80\n\
                    diskSpaceCleanForciblyRatio=0.8\ndiskSpaceWarningLevelRatio=92\n\
                    cleanFileForciblyEnable=false\ncleanResourceInterval=500\n\
                    deleteFileBatchMax=3\ndestroyMapedFileIntervalForcibly=1000\n";
        let c = parse_broker_conf("b.conf", text).expect("parses");
        let r = &c.broker.retention;
        assert_eq!(r.file_reserved_time_ms, 48 * 3_600_000);
        assert_eq!(r.delete_when_hours, vec![4, 16]);
        assert!((r.disk_max_used_space_ratio - 0.80).abs() < 1e-9);
        assert!((r.disk_space_clean_forcibly_ratio - 0.80).abs() < 1e-9);
        assert!((r.disk_space_warning_level_ratio - 0.92).abs() < 1e-9);
        assert!(!r.clean_file_forcibly_enable);
        assert_eq!(r.clean_resource_interval_ms, 500);
        assert_eq!(r.delete_file_batch_max, 3);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let c = parse_broker_conf("b.conf", "fileReservedTime=0.001").expect("parses");
        assert_eq!(c.broker.retention.file_reserved_time_ms, 3_600);
        for bad in [
            "fileReservedTime=-1",
            "deleteWhen=25",
            "diskMaxUsedSpaceRatio=x",
        ] {
            assert!(parse_broker_conf("b.conf", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("listenPort=99999", "listenPort"),
            ("brokerIP1=localhost", "brokerIP1"),
            ("flushDiskType=SOMETIMES", "flushDiskType"),
            ("autoCreateTopicEnable=ture", "autoCreateTopicEnable"),
            ("brokerId=-1", "brokerId"),
            ("defaultTopicQueueNums=0", "defaultTopicQueueNums"),
            ("namesrvAddr=127.0.0.1", "namesrvAddr"),
            ("maxMessageSize=4M", "maxMessageSize"),
            ("maxHashSlotNum=0", "maxHashSlotNum"),
            ("maxIndexNum=1", "maxIndexNum"),
            ("maxIndexNum=4294967296", "maxIndexNum"),
            ("messageIndexEnable=yes", "messageIndexEnable"),
            (
                "mappedFileSizeCommitLog=4294967296",
                "mappedFileSizeCommitLog",
            ),
            ("flushCommitLogLeastPages=-1", "flushCommitLogLeastPages"),
            (
                "flushCommitLogThoroughInterval=0",
                "flushCommitLogThoroughInterval",
            ),
            ("flushCommitLogTimed=yes", "flushCommitLogTimed"),
            ("messageDelayLevel=1s 5x", "messageDelayLevel"),
            ("messageDelayLevel=", "messageDelayLevel"),
            ("flushIntervalConsumeQueue=1s", "flushIntervalConsumeQueue"),
            (
                "recoverCorruptedCommitLog=ignore",
                "recoverCorruptedCommitLog",
            ),
        ] {
            let err = parse_broker_conf("b.conf", text).expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(key) && msg.contains("b.conf"), "{text}: {msg}");
        }
    }
}
