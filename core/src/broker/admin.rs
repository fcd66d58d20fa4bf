//! The admin requests RocketMQ's tools send a broker (mqadmin, the dashboard, the exporter, the
//! clients' `DefaultMQAdminExt`), answered with RocketMQ's headers and bodies.
//!
//! Bodies are the JSON RocketMQ's broker writes with fastjson. Two of its habits matter to the
//! tools that parse them and are kept here:
//!
//! * a map keyed by a `MessageQueue` is written with the object itself as the key, which is not
//!   standard JSON but is what Java's and Rust's admin clients parse:
//!
//!   ```text
//!   {"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:{"maxOffset":3,…},…},"topicPutTps":0.0}
//!   ```
//!
//! * field names are camelCase. Where `rocketmq-client-rust` 1.0.0 expects RocketMQ 5's newer
//!   fields (`topicPutTps`, `pullOffset`) they are written, and where it reads snake_case
//!   (`QueueTimeSpan`, `ProducerInfo`) both spellings are written, so Java's tools and Rust's
//!   both read the same answer.
//!
//! Followed: RocketMQ 5.3's `AdminBrokerProcessor` (answers, error codes) and the body classes
//! of `remoting/protocol` (shapes).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::stats;
use super::Broker;
use crate::remoting::codes::response;
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::SegmentStorage;
use crate::topic::is_system_topic;

/// RocketMQ's `MessageQueue` as a fastjson map key.
fn queue_key(topic: &str, broker_name: &str, queue_id: i32) -> String {
    json!({"brokerName": broker_name, "queueId": queue_id, "topic": topic}).to_string()
}

/// A fastjson object: `{"<name>":{<key>:<value>,…},<rest>}` with object keys written as they are.
fn object_keyed(name: &str, entries: &[(String, Value)], rest: &[(&str, Value)]) -> Vec<u8> {
    let mut out = String::from("{\"");
    out.push_str(name);
    out.push_str("\":{");
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    for (key, value) in rest {
        out.push_str(&format!(",{}:{}", Value::from(*key), value));
    }
    out.push('}');
    out.into_bytes()
}

/// A JSON number for a double, always with a fraction (Java's doubles print one).
fn double(v: f64) -> Value {
    serde_json::Number::from_f64(if v.is_finite() { v } else { 0.0 })
        .map(Value::Number)
        .unwrap_or(Value::from(0))
}

/// `yyyy-MM-dd#HH:mm:ss:SSS` (UTC) as RocketMQ's `QueueTimeSpan` strings.
fn time_str(ms: i64) -> String {
    if ms < 0 {
        return String::new();
    }
    let ms = ms as u64;
    let days = ms / 86_400_000;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = ms % 86_400_000;
    format!(
        "{y:04}-{m:02}-{d:02}#{:02}:{:02}:{:02}:{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// broker.conf keys that cannot be changed by UPDATE_BROKER_CONFIG at all (RocketMQ's
/// `configBlackList` default and the keys it always refuses).
const CONFIG_BLACK_LIST: &[&str] = &["brokerConfigPath", "rocketmqHome", "configBlackList"];

impl<S: SegmentStorage> Broker<S> {
    /// Whether `topic` is a system topic of this broker (RocketMQ's list, or its cluster's or
    /// its own name).
    pub(super) fn is_system_topic(&self, topic: &str) -> bool {
        is_system_topic(topic)
            || topic == self.config.broker_cluster_name
            || topic == self.config.broker_name
    }

    /// The admin codes; `None` for any other code.
    pub(super) fn handle_admin(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Option<Result<RemotingCommand, HeaderError>> {
        use crate::remoting::codes::request;
        Some(match req.code {
            request::GET_BROKER_CONFIG => Ok(self.handle_get_broker_config(req)),
            request::UPDATE_BROKER_CONFIG => Ok(self.handle_update_broker_config(now_ms, req)),
            request::GET_BROKER_RUNTIME_INFO => Ok(self.handle_runtime_info(now_ms, req)),
            request::GET_TOPIC_STATS_INFO => self.handle_topic_stats(now_ms, req),
            request::GET_CONSUMER_CONNECTION_LIST => self.handle_consumer_connections(req),
            request::GET_PRODUCER_CONNECTION_LIST => self.handle_producer_connections(req),
            request::GET_ALL_PRODUCER_INFO => Ok(self.handle_all_producer_info(req)),
            request::DELETE_SUBSCRIPTIONGROUP => self.handle_delete_group(now_ms, req),
            request::DELETE_TOPIC_IN_BROKER => self.handle_delete_topic(now_ms, req),
            request::GET_CONSUME_STATS => self.handle_consume_stats(now_ms, req),
            request::QUERY_TOPIC_CONSUME_BY_WHO => self.handle_consumed_by_who(req),
            request::QUERY_CONSUME_TIME_SPAN => self.handle_consume_time_span(now_ms, req),
            request::GET_SYSTEM_TOPIC_LIST_FROM_BROKER => Ok(self.handle_system_topics(req)),
            // Vostok's retention removes expired ConsumeQueue units itself; there is nothing
            // left for an operator to trigger.
            request::CLEAN_EXPIRED_CONSUMEQUEUE => {
                Ok(RemotingCommand::response_to(req, response::SUCCESS, None))
            }
            request::VIEW_BROKER_STATS_DATA => self.handle_view_stats(now_ms, req),
            request::GET_BROKER_HA_STATUS => Ok(self.handle_ha_status(now_ms, req)),
            request::GET_ALL_CONSUMER_OFFSET => Ok(self.handle_get_all_consumer_offset(req)),
            request::GET_ALL_DELAY_OFFSET => Ok(self.handle_get_all_delay_offset(req)),
            request::GET_TIMER_CHECK_POINT => Ok(self.handle_get_timer_checkpoint(req)),
            _ => return None,
        })
    }

    /// The broker.conf keys and values this broker runs with (GET_BROKER_CONFIG's body, sorted
    /// by key as RocketMQ writes them).
    pub fn config_properties(&self) -> BTreeMap<String, String> {
        properties_of(&self.config)
    }

    /// GET_BROKER_CONFIG (26): `key=value` lines sorted by key, and the config's data version
    /// in the `version` response header.
    fn handle_get_broker_config(&self, req: &RemotingCommand) -> RemotingCommand {
        let mut body = String::new();
        for (k, v) in self.config_properties() {
            body.push_str(&k);
            body.push('=');
            body.push_str(&v);
            body.push('\n');
        }
        let version = json!({
            "counter": self.config_version,
            "stateVersion": 0,
            "timestamp": self.stats.boot_ms(),
        });
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_ext("version", version)
            .with_body(body.into_bytes())
    }

    /// UPDATE_BROKER_CONFIG (25): applies, at run time, the keys a running broker can change;
    /// refuses (changing nothing) a black-listed key (NO_PERMISSION, as RocketMQ) or a key this
    /// broker reads only at start (SYSTEM_ERROR naming it: put it in broker.conf and restart).
    /// Unknown keys are ignored, as RocketMQ ignores keys no config object has.
    fn handle_update_broker_config(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> RemotingCommand {
        let text = String::from_utf8_lossy(&req.body);
        let mut updates = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once(['=', ':']) else {
                continue;
            };
            updates.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        if updates
            .keys()
            .any(|k| CONFIG_BLACK_LIST.contains(&k.as_str()))
        {
            return RemotingCommand::response_to(
                req,
                response::NO_PERMISSION,
                Some("Can not update config in black list.".to_owned()),
            );
        }
        let known = self.config_properties();
        let mut fixed = Vec::new();
        let mut invalid = Vec::new();
        let mut next = self.config.clone();
        for (key, value) in &updates {
            if !known.contains_key(key) {
                continue;
            }
            let bool_value = || value.parse::<bool>().map_err(|_| ());
            let applied: Result<(), ()> = match key.as_str() {
                "brokerPermission" => value
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p & !crate::topic::perm::READ_WRITE == 0 && *p != 0)
                    .map(|p| next.broker_permission = p)
                    .ok_or(()),
                "autoCreateTopicEnable" => bool_value().map(|b| next.auto_create_topic_enable = b),
                "autoCreateSubscriptionGroup" => {
                    bool_value().map(|b| next.auto_create_subscription_group = b)
                }
                "longPollingEnable" => bool_value().map(|b| next.long_polling_enable = b),
                "enablePropertyFilter" => bool_value().map(|b| next.enable_property_filter = b),
                "useServerSideResetOffset" => {
                    bool_value().map(|b| next.use_server_side_reset_offset = b)
                }
                "storeReplyMessageEnable" => {
                    bool_value().map(|b| next.store_reply_message_enable = b)
                }
                "traceTopicEnable" => bool_value().map(|b| next.trace_topic_enable = b),
                "defaultTopicQueueNums" => value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(|n| next.default_topic_queue_nums = n)
                    .ok_or(()),
                "transactionTimeOut" => value
                    .parse::<u64>()
                    .map(|n| next.transaction.timeout_ms = n)
                    .map_err(|_| ()),
                "transactionCheckInterval" => value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(|n| next.transaction.check_interval_ms = n)
                    .ok_or(()),
                "transactionCheckMax" => value
                    .parse::<u32>()
                    .map(|n| next.transaction.check_max = n)
                    .map_err(|_| ()),
                _ if known.get(key) == Some(value) => Ok(()),
                _ => {
                    fixed.push(key.clone());
                    Ok(())
                }
            };
            if applied.is_err() {
                invalid.push(format!("{key}={value}"));
            }
        }
        if !invalid.is_empty() {
            return RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!(
                    "invalid values, nothing changed: {}",
                    invalid.join(", ")
                )),
            );
        }
        if !fixed.is_empty() {
            return RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!(
                    "read only at start, nothing changed: {} (set them in broker.conf and \
                     restart)",
                    fixed.join(", ")
                )),
            );
        }
        let permission_changed = next.broker_permission != self.config.broker_permission;
        if properties_of(&next) != known {
            self.config = next;
            self.config_version += 1;
        }
        if permission_changed {
            // RocketMQ re-registers at once: routes must show the new permission.
            self.topics.data_version.bump(now_ms);
            self.register_with_namesrvs();
        }
        RemotingCommand::response_to(req, response::SUCCESS, None)
    }

    /// GET_BROKER_RUNTIME_INFO (28): RocketMQ's keys, from this broker's counters.
    fn handle_runtime_info(&mut self, now_ms: u64, req: &RemotingCommand) -> RemotingCommand {
        let cluster = self.config.broker_cluster_name.clone();
        let mut table = self.stats.runtime_rates(now_ms, &cluster);
        let mut put = |k: &str, v: String| {
            table.insert(k.to_owned(), v);
        };
        put("brokerVersionDesc", "V5_3_3".to_owned());
        put(
            "brokerVersion",
            crate::remoting::command::VOSTOK_VERSION_ORDINAL.to_string(),
        );
        put("brokerActive", "true".to_owned());
        let min = self.store.min_commitlog_offset().0;
        let max = self.store.written_offset().0;
        put("commitLogMinOffset", min.to_string());
        put("commitLogMaxOffset", max.to_string());
        put(
            "dispatchBehindBytes",
            "0".to_owned(), // dispatch is synchronous with the put
        );
        put("pageCacheLockTimeMills", "0".to_owned());
        put(
            "earliestMessageTimeStamp",
            self.earliest_message_time_ms().to_string(),
        );
        put("startAcceptSendRequestTimeStamp", "0".to_owned());
        let ratio = self.disk_used_ratio();
        put("commitLogDiskRatio", stats::java_double(ratio));
        put("consumeQueueDiskRatio", stats::java_double(ratio));
        put(
            "remainHowManyDataToFlush",
            human_bytes(max.saturating_sub(self.store.durable_offset().0)),
        );
        put("remainTransientStoreBufferNumbs", i32::MAX.to_string());
        // One owner handles every request in order: no request waits in a thread pool queue.
        for pool in ["send", "pull", "litePull", "query", "ack"] {
            put(&format!("{pool}ThreadPoolQueueSize"), "0".to_owned());
            put(
                &format!("{pool}ThreadPoolQueueHeadWaitTimeMills"),
                "0".to_owned(),
            );
        }
        put("EndTransactionQueueSize", "0".to_owned());
        for (level, (delivered, max)) in self.schedule_offsets() {
            put(
                &format!("scheduleMessageOffset_{level}"),
                format!("{delivered},{max}"),
            );
        }
        put("timerReadBehind", "0".to_owned());
        put("timerOffsetBehind", "0".to_owned());
        put("timerCongestNum", "0".to_owned());
        put("timerEnqueueTps", "0.0".to_owned());
        put("timerDequeueTps", "0.0".to_owned());
        let body = json!({ "table": table }).to_string();
        RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body.into_bytes())
    }

    /// The store time of the oldest record still in the CommitLog; -1 when it is empty.
    pub(super) fn earliest_message_time_ms(&self) -> i64 {
        let mut earliest: Option<i64> = None;
        for topic in self.store.topics() {
            for queue_id in self.store.queue_ids(topic) {
                if let Some(t) = self.store.earliest_store_time_ms(topic, queue_id) {
                    earliest = Some(earliest.map_or(t, |e| e.min(t)));
                }
            }
        }
        earliest.unwrap_or(-1)
    }

    /// The disk's used share (0..1) as the driver last measured it, rounded up to a percent as
    /// RocketMQ reports it; 0 before any measurement.
    fn disk_used_ratio(&self) -> f64 {
        self.disk_usage().map_or(0.0, |u| u.used_ratio())
    }

    /// GET_TOPIC_STATS_INFO (202).
    fn handle_topic_stats(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let topic = req.ext_str("topic")?.to_owned();
        let Some(config) = self.topics.topics.get(&topic).cloned() else {
            return Ok(RemotingCommand::response_to(
                req,
                response::TOPIC_NOT_EXIST,
                Some(format!("topic[{topic}] not exist")),
            ));
        };
        let queues = config.write_queue_nums.max(config.read_queue_nums);
        let mut entries = Vec::new();
        for queue_id in 0..queues as i32 {
            let min = self.store.min_offset(&topic, queue_id).0;
            let max = self.store.max_offset(&topic, queue_id).0;
            let last = if max > 0 {
                self.store
                    .store_time_ms_at(&topic, queue_id, max - 1)
                    .unwrap_or(0)
            } else {
                0
            };
            entries.push((
                queue_key(&topic, &self.config.broker_name, queue_id),
                json!({"lastUpdateTimestamp": last, "maxOffset": max, "minOffset": min}),
            ));
        }
        let tps = self.stats.minute_tps(now_ms, stats::TOPIC_PUT_NUMS, &topic);
        let body = object_keyed("offsetTable", &entries, &[("topicPutTps", double(tps))]);
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body))
    }

    /// One connection as RocketMQ's `Connection` body shows it.
    fn connection_json(&self, conn: crate::ConnId, channel: &super::clients::Channel) -> Value {
        let addr = self
            .peers
            .get(&conn)
            .map_or_else(String::new, |a| a.to_string());
        json!({
            "clientAddr": addr,
            "clientId": channel.client_id,
            "language": channel.language,
            "version": channel.version,
        })
    }

    /// GET_CONSUMER_CONNECTION_LIST (203): CONSUMER_NOT_ONLINE when no member is connected.
    fn handle_consumer_connections(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let group_name = req.ext_str("consumerGroup")?;
        let Some(group) = self
            .clients
            .consumers
            .get(group_name)
            .filter(|g| !g.channels.is_empty())
        else {
            return Ok(RemotingCommand::response_to(
                req,
                response::CONSUMER_NOT_ONLINE,
                Some(format!("the consumer group[{group_name}] not online")),
            ));
        };
        let connections: Vec<Value> = group
            .channels
            .iter()
            .map(|(conn, ch)| self.connection_json(*conn, ch))
            .collect();
        let subscriptions: serde_json::Map<String, Value> = group
            .subscriptions
            .iter()
            .map(|(topic, sub)| {
                let tags: Vec<&str> = if sub.all || !sub.is_tag() {
                    Vec::new()
                } else {
                    sub.sub_string
                        .split("||")
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .collect()
                };
                (
                    topic.clone(),
                    json!({
                        "classFilterMode": false,
                        "codeSet": sub.codes.iter().collect::<Vec<_>>(),
                        "expressionType": sub.expression_type,
                        "subString": sub.sub_string,
                        "subVersion": sub.sub_version,
                        "tagsSet": tags,
                        "topic": topic,
                    }),
                )
            })
            .collect();
        let body = json!({
            "connectionSet": connections,
            "consumeFromWhere": group.consume_from_where,
            "consumeType": group.consume_type,
            "messageModel": group.message_model,
            "subscriptionTable": subscriptions,
        });
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes()))
    }

    /// GET_PRODUCER_CONNECTION_LIST (204): SYSTEM_ERROR for a group with no producer, as
    /// RocketMQ answers.
    fn handle_producer_connections(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let group = req.ext_str("producerGroup")?;
        let Some(channels) = self.clients.producers.get(group).filter(|c| !c.is_empty()) else {
            return Ok(RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!("the producer group[{group}] not exist")),
            ));
        };
        let connections: Vec<Value> = channels
            .iter()
            .map(|(conn, ch)| self.connection_json(*conn, ch))
            .collect();
        let body = json!({ "connectionSet": connections });
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes()))
    }

    /// GET_ALL_PRODUCER_INFO (328): every producer by group. `ProducerInfo` in both spellings
    /// (Java's camelCase, `rocketmq-client-rust`'s snake_case).
    fn handle_all_producer_info(&self, req: &RemotingCommand) -> RemotingCommand {
        let mut data = serde_json::Map::new();
        for (group, channels) in &self.clients.producers {
            let infos: Vec<Value> = channels
                .iter()
                .map(|(conn, ch)| {
                    let addr = self
                        .peers
                        .get(conn)
                        .map_or_else(String::new, |a| a.to_string());
                    json!({
                        "clientId": ch.client_id, "client_id": ch.client_id,
                        "remoteIP": addr, "remote_ip": addr,
                        "language": ch.language,
                        "version": ch.version,
                        "lastUpdateTimestamp": ch.last_update_ms,
                        "last_update_timestamp": ch.last_update_ms,
                    })
                })
                .collect();
            data.insert(group.clone(), Value::Array(infos));
        }
        let body = json!({ "data": data });
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes())
    }

    /// DELETE_SUBSCRIPTIONGROUP (207): the group's config, and with `cleanOffset` its offsets;
    /// its statistics go either way. Always SUCCESS, an unknown group too (RocketMQ).
    fn handle_delete_group(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let group = req.ext_str("groupName")?.to_owned();
        let clean_offset = req.ext("cleanOffset").is_some_and(|v| v == "true");
        self.delete_group(now_ms, &group);
        if clean_offset {
            self.offsets.remove_group(&group);
        }
        self.stats.forget_group(&group);
        self.metrics.forget_group(&group);
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None))
    }

    /// DELETE_TOPIC_IN_BROKER (215): the topic's config, its ConsumeQueues, the offsets every
    /// group committed on it and its statistics go, and the broker re-registers at once so its
    /// route goes too. A blank or system topic is refused (INVALID_PARAMETER, as RocketMQ).
    fn handle_delete_topic(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let topic = req.ext_str("topic")?.trim().to_owned();
        if topic.is_empty() {
            return Ok(RemotingCommand::response_to(
                req,
                response::INVALID_PARAMETER,
                Some("The specified topic is blank.".to_owned()),
            ));
        }
        if self.is_system_topic(&topic) {
            return Ok(RemotingCommand::response_to(
                req,
                response::INVALID_PARAMETER,
                Some(format!("The topic[{topic}] is conflict with system topic.")),
            ));
        }
        if self.topics.topics.remove(&topic).is_some() {
            self.topics.data_version.bump(now_ms);
            self.persist_topics();
        }
        if let Err(e) = self.store.delete_topic(&topic) {
            return Ok(RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!("deleting the queues of {topic} failed: {e}")),
            ));
        }
        self.offsets.remove_topic(&topic);
        self.stats.forget_topic(&topic);
        self.metrics.forget_topic(&topic);
        self.register_with_namesrvs();
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None))
    }

    /// GET_CONSUME_STATS (208): per queue the broker's max offset, the group's committed offset
    /// and the store time of its last consumed message, and the group's consume rate.
    fn handle_consume_stats(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let group = req.ext_str("consumerGroup")?.to_owned();
        let mut topics: BTreeSet<String> = BTreeSet::new();
        if let Some(list) = req.ext("topicList").filter(|l| !l.trim().is_empty()) {
            topics.extend(
                list.split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from),
            );
        } else if let Some(topic) = req.ext("topic").filter(|t| !t.trim().is_empty()) {
            topics.insert(topic.trim().to_owned());
        } else {
            topics.extend(
                self.offsets
                    .entries()
                    .filter(|(_, g, _, _)| *g == group)
                    .map(|(t, _, _, _)| t.to_owned()),
            );
            // Online members' subscriptions count too (RocketMQ adds them when listing by
            // subscription; a group that has committed nothing yet still shows its queues).
            if let Some(g) = self.clients.consumers.get(&group) {
                topics.extend(g.subscriptions.keys().cloned());
            }
        }
        // A group online with subscriptions is shown only the topics it subscribes to.
        if let Some(g) = self
            .clients
            .consumers
            .get(&group)
            .filter(|g| !g.subscriptions.is_empty())
        {
            topics.retain(|t| g.subscriptions.contains_key(t));
        }
        let mut entries = Vec::new();
        let mut tps = 0.0;
        for topic in &topics {
            let Some(config) = self.topics.topics.get(topic) else {
                continue;
            };
            for queue_id in 0..config.read_queue_nums as i32 {
                let broker_offset = self.store.max_offset(topic, queue_id).0;
                let committed = self
                    .offsets
                    .query(topic, &group, queue_id)
                    .unwrap_or(0)
                    .max(0) as u64;
                let last = if committed > 0 {
                    self.store
                        .store_time_ms_at(topic, queue_id, committed - 1)
                        .unwrap_or(0)
                } else {
                    0
                };
                entries.push((
                    queue_key(topic, &self.config.broker_name, queue_id),
                    json!({
                        "brokerOffset": broker_offset,
                        "consumerOffset": committed,
                        "lastTimestamp": last,
                        "pullOffset": committed,
                    }),
                ));
            }
            tps +=
                self.stats
                    .minute_tps(now_ms, stats::GROUP_GET_NUMS, &format!("{topic}@{group}"));
        }
        let body = object_keyed("offsetTable", &entries, &[("consumeTps", double(tps))]);
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body))
    }

    /// QUERY_TOPIC_CONSUME_BY_WHO (300): groups online with a subscription to the topic and
    /// groups with committed offsets on it.
    fn handle_consumed_by_who(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let topic = req.ext_str("topic")?;
        let mut groups: BTreeSet<&str> = self
            .clients
            .consumers
            .iter()
            .filter(|(_, g)| !g.channels.is_empty() && g.subscriptions.contains_key(topic))
            .map(|(name, _)| name.as_str())
            .collect();
        groups.extend(
            self.offsets
                .entries()
                .filter(|(t, _, _, _)| *t == topic)
                .map(|(_, g, _, _)| g),
        );
        let body = json!({ "groupList": groups });
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes()))
    }

    /// QUERY_CONSUME_TIME_SPAN (303): per queue the store times of its oldest and newest
    /// message and of the group's consume position. `QueueTimeSpan` in both spellings.
    fn handle_consume_time_span(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let topic = req.ext_str("topic")?.to_owned();
        let group = req.ext_str("group")?.to_owned();
        let Some(config) = self.topics.topics.get(&topic).cloned() else {
            return Ok(RemotingCommand::response_to(
                req,
                response::TOPIC_NOT_EXIST,
                Some(format!("topic[{topic}] not exist")),
            ));
        };
        let mut spans = Vec::new();
        for queue_id in 0..config.write_queue_nums as i32 {
            let min_time = self
                .store
                .earliest_store_time_ms(&topic, queue_id)
                .unwrap_or(-1);
            let max = self.store.max_offset(&topic, queue_id).0;
            let max_time = if max > 0 {
                self.store
                    .store_time_ms_at(&topic, queue_id, max - 1)
                    .unwrap_or(0)
            } else {
                0
            };
            let committed = self
                .offsets
                .query(&topic, &group, queue_id)
                .unwrap_or(0)
                .max(0) as u64;
            let consume_time = if committed > 0 {
                self.store
                    .store_time_ms_at(&topic, queue_id, committed - 1)
                    .unwrap_or(min_time)
            } else {
                min_time
            };
            let delay = if committed < max {
                self.store
                    .store_time_ms_at(&topic, queue_id, committed)
                    .map_or(0, |t| (now_ms as i64 - t).max(0))
            } else {
                0
            };
            let mq =
                json!({"brokerName": self.config.broker_name, "queueId": queue_id, "topic": topic});
            spans.push(json!({
                "messageQueue": mq, "message_queue": mq,
                "minTimeStamp": min_time, "min_time_stamp": min_time,
                "maxTimeStamp": max_time, "max_time_stamp": max_time,
                "consumeTimeStamp": consume_time, "consume_time_stamp": consume_time,
                "delayTime": delay, "delay_time": delay,
                "minTimeStampStr": time_str(min_time),
                "maxTimeStampStr": time_str(max_time),
                "consumeTimeStampStr": time_str(consume_time),
            }));
        }
        let body = json!({ "consumeTimeSpanSet": spans });
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes()))
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305).
    fn handle_system_topics(&self, req: &RemotingCommand) -> RemotingCommand {
        let mut topics: BTreeSet<String> = crate::topic::SYSTEM_TOPICS
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        topics.insert(self.config.broker_cluster_name.clone());
        topics.insert(self.config.broker_name.clone());
        topics.extend(
            self.topics
                .topics
                .keys()
                .filter(|t| is_system_topic(t))
                .cloned(),
        );
        let body = json!({ "topicList": topics });
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes())
    }

    /// VIEW_BROKER_STATS_DATA (315): one counter's minute, hour and day figures.
    fn handle_view_stats(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let name = req.ext_str("statsName")?.to_owned();
        let key = req.ext_str("statsKey")?.to_owned();
        let Some([minute, hour, day]) = self.stats.figures(now_ms, &name, &key) else {
            return Ok(RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!("The stats <{name}> <{key}> not exist")),
            ));
        };
        let item = |f: stats::StatsFigures| json!({"avgpt": double(f.avgpt), "sum": f.sum, "tps": double(f.tps)});
        let body =
            json!({"statsDay": item(day), "statsHour": item(hour), "statsMinute": item(minute)});
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes()))
    }
}

/// The broker.conf keys and values of `c`, by RocketMQ's names.
fn properties_of(c: &super::BrokerConfig) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    put("brokerClusterName", c.broker_cluster_name.clone());
    put("brokerName", c.broker_name.clone());
    put("brokerId", c.broker_id.to_string());
    put("brokerIP1", c.broker_ip1.to_string());
    put("listenPort", c.listen_port.to_string());
    put("namesrvAddr", c.namesrv_addrs.join(";"));
    put("brokerPermission", c.broker_permission.to_string());
    put(
        "flushDiskType",
        match c.flush_disk_type {
            super::FlushDiskType::SyncFlush => "SYNC_FLUSH",
            super::FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
        }
        .to_owned(),
    );
    put(
        "flushIntervalCommitLog",
        c.flush_interval_commitlog_ms.to_string(),
    );
    put(
        "flushCommitLogLeastPages",
        c.flush_commitlog_least_pages.to_string(),
    );
    put(
        "flushCommitLogThoroughInterval",
        c.flush_commitlog_thorough_interval_ms.to_string(),
    );
    put("flushCommitLogTimed", c.flush_commitlog_timed.to_string());
    put(
        "flushIntervalConsumeQueue",
        c.checkpoint_interval_ms.to_string(),
    );
    put(
        "autoCreateTopicEnable",
        c.auto_create_topic_enable.to_string(),
    );
    put(
        "autoCreateSubscriptionGroup",
        c.auto_create_subscription_group.to_string(),
    );
    put(
        "defaultTopicQueueNums",
        c.default_topic_queue_nums.to_string(),
    );
    put(
        "registerNameServerPeriod",
        c.register_broker_interval_ms.to_string(),
    );
    put("longPollingEnable", c.long_polling_enable.to_string());
    put("enablePropertyFilter", c.enable_property_filter.to_string());
    put(
        "accessMessageInMemoryMaxRatio",
        c.access_message_in_memory_max_ratio_percent.to_string(),
    );
    put(
        "useServerSideResetOffset",
        c.use_server_side_reset_offset.to_string(),
    );
    put(
        "storeReplyMessageEnable",
        c.store_reply_message_enable.to_string(),
    );
    put("traceTopicEnable", c.trace_topic_enable.to_string());
    put("msgTraceTopicName", c.msg_trace_topic_name.clone());
    put("aclEnable", c.acl_enable.to_string());
    put(
        "mappedFileSizeCommitLog",
        c.store.commitlog_segment_bytes.to_string(),
    );
    put(
        "mappedFileSizeConsumeQueue",
        (c.store.consume_queue_units_per_segment * crate::store::consume_queue::UNIT_BYTES)
            .to_string(),
    );
    put("messageIndexEnable", c.store.index.enabled.to_string());
    put("maxHashSlotNum", c.store.index.hash_slot_count.to_string());
    put("maxIndexNum", c.store.index.max_index_count.to_string());
    put("transactionTimeOut", c.transaction.timeout_ms.to_string());
    put(
        "transactionCheckInterval",
        c.transaction.check_interval_ms.to_string(),
    );
    put("transactionCheckMax", c.transaction.check_max.to_string());
    let pop = &c.pop;
    put("reviveQueueNum", pop.revive_queue_num.to_string());
    put("reviveInterval", pop.revive_interval_ms.to_string());
    put("enableRetryTopicV2", pop.enable_retry_topic_v2.to_string());
    put(
        "popFromRetryProbability",
        pop.pop_from_retry_probability_percent.to_string(),
    );
    put("popPollingSize", pop.pop_polling_size.to_string());
    put("maxPopPollingSize", pop.max_pop_polling_size.to_string());
    put(
        "defaultMessageRequestMode",
        match pop.default_message_request_mode {
            crate::remoting::pop::MessageRequestMode::Pull => "PULL",
            crate::remoting::pop::MessageRequestMode::Pop => "POP",
        }
        .to_owned(),
    );
    put(
        "defaultPopShareQueueNum",
        pop.default_pop_share_queue_num.to_string(),
    );
    p
}

/// RocketMQ's `humanReadableByteCount(bytes, false)`: `"<n> B"` below 1 KiB, else one decimal
/// and a binary unit.
fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let exp = ((bytes as f64).ln() / 1024f64.ln()) as i32;
    let unit = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"][(exp - 1).clamp(0, 5) as usize];
    format!("{:.1} {unit}", bytes as f64 / 1024f64.powi(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_are_written_as_fastjson_writes_them() {
        let body = object_keyed(
            "offsetTable",
            &[(queue_key("t", "b", 0), json!({"maxOffset": 3}))],
            &[("topicPutTps", double(0.0))],
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:{"maxOffset":3}},"topicPutTps":0.0}"#
        );
    }

    #[test]
    fn times_and_sizes_print_as_rocketmq_prints_them() {
        assert_eq!(time_str(0), "1970-01-01#00:00:00:000");
        assert_eq!(time_str(1_700_000_000_123), "2023-11-14#22:13:20:123");
        assert_eq!(time_str(-1), "");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
