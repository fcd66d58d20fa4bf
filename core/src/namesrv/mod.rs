//! The NameServer state machine: broker registrations and topic routes.
//!
//! Calling discipline: feed `handle_request` / `handle_disconnected` / `handle_timeout` with a
//! non-decreasing `now_ms`, drain [`NameServer::poll_output`], sleep until
//! [`NameServer::poll_timeout`].
//!
//! Requests served (REMOTING.md §3.16):
//!
//! | Code | Request | Answer |
//! |---:|---|---|
//! | 100/101/102/219 | KV config | in memory |
//! | 103 | REGISTER_BROKER | 0, or 1 on a bad header, checksum or body |
//! | 104 | UNREGISTER_BROKER | 0 |
//! | 105 | GET_ROUTEINFO_BY_TOPIC | 0 + TopicRouteData, or 17 |
//! | 106 | GET_BROKER_CLUSTER_INFO | 0 + ClusterInfo (fastjson dialect, as Java) |
//! | 206 / 224 | topic lists | 0 + TopicList |
//! | 216 | DELETE_TOPIC_IN_NAMESRV | 0 |
//! | 322 / 904 | QUERY_DATA_VERSION / BROKER_HEARTBEAT | 0, refreshes the broker |
//! | other | | 3 " request type N not supported" |
//!
//! Oneway requests are processed and never answered; responses arriving here are dropped.

pub(crate) mod json;
pub mod register;
pub mod route;
mod table;

use std::collections::{BTreeMap, VecDeque};

use crate::remoting::codes::{request, response};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::topic::DataVersion;
use crate::ConnId;

use register::{RegisterBrokerBody, RegisterBrokerHeader, UnregisterBrokerHeader};
use route::{JsonDialect, TopicList};
use table::RouteTables;

/// Request version from which Java answers route data in standard JSON (V4_9_4).
const STANDARD_JSON_MIN_VERSION: i32 = 401;

/// KV namespace whose table a REGISTER_BROKER response carries back to the broker.
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Java's advice appended to "no route" remarks.
const APPLY_TOPIC_SUGGESTION: &str =
    "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.";

/// NameServer settings (OPERATIONS.md; RocketMQ's `NamesrvConfig` defaults).
#[derive(Clone, Debug)]
pub struct NamesrvConfig {
    /// A broker not heard from for this long is forgotten (RocketMQ: 120 s).
    pub broker_channel_expired_ms: u64,
    /// How often to scan for expired brokers (RocketMQ: 5 s).
    pub scan_not_active_broker_interval_ms: u64,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            broker_channel_expired_ms: 120_000,
            scan_not_active_broker_interval_ms: 5_000,
        }
    }
}

/// What the NameServer asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum NamesrvOutput {
    /// Send `command` on `conn`.
    Send {
        conn: ConnId,
        command: RemotingCommand,
    },
    /// Close `conn` (a broker on it expired).
    Close { conn: ConnId },
}

/// The NameServer: routing tables rebuilt from broker registrations, plus a KV store.
pub struct NameServer {
    config: NamesrvConfig,
    tables: RouteTables,
    /// namespace → key → value.
    kv_config: BTreeMap<String, BTreeMap<String, String>>,
    outputs: VecDeque<NamesrvOutput>,
    /// The next expiry scan; armed by the first input seen.
    next_scan_ms: Option<u64>,
}

impl NameServer {
    /// An empty NameServer: no brokers, no KV config, no scan armed yet.
    pub fn new(config: NamesrvConfig) -> Self {
        Self {
            config,
            tables: RouteTables::default(),
            kv_config: BTreeMap::new(),
            outputs: VecDeque::new(),
            next_scan_ms: None,
        }
    }

    /// Processes one command received on `conn`; its response (unless oneway) is queued.
    pub fn handle_request(&mut self, now_ms: u64, conn: ConnId, command: RemotingCommand) {
        self.arm_scan(now_ms);
        if command.is_response() {
            // The NameServer sends no requests, so no response can be awaited.
            return;
        }
        let reply = self.process(now_ms, conn, &command);
        if !command.is_oneway() {
            self.outputs.push_back(NamesrvOutput::Send {
                conn,
                command: reply,
            });
        }
    }

    /// `conn` closed: every broker that registered over it is forgotten.
    pub fn handle_disconnected(&mut self, now_ms: u64, conn: ConnId) {
        self.arm_scan(now_ms);
        self.tables.remove_connection(conn);
    }

    /// Runs the expiry scan when it is due; expired brokers are forgotten and their
    /// connections closed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.arm_scan(now_ms);
        let Some(next_scan_ms) = self.next_scan_ms else {
            return;
        };
        if now_ms < next_scan_ms {
            return;
        }
        for conn in self.tables.expire(now_ms) {
            self.outputs.push_back(NamesrvOutput::Close { conn });
        }
        self.next_scan_ms =
            Some(now_ms.saturating_add(self.config.scan_not_active_broker_interval_ms));
    }

    /// The next thing to send or close, in the order produced.
    pub fn poll_output(&mut self) -> Option<NamesrvOutput> {
        self.outputs.pop_front()
    }

    /// The instant of the next expiry scan (`None` before the first input).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_scan_ms
    }

    /// The route of `topic` as GET_ROUTEINFO_BY_TOPIC would serve it.
    pub fn route(&self, topic: &str) -> Option<route::TopicRouteData> {
        self.tables.route(topic)
    }

    /// Every broker and cluster, as GET_BROKER_CLUSTER_INFO would serve it.
    pub fn cluster_info(&self) -> route::ClusterInfo {
        self.tables.cluster_info()
    }

    /// Number of live broker processes (for status lines and tests).
    pub fn live_broker_count(&self) -> usize {
        self.tables.live_broker_count()
    }

    fn arm_scan(&mut self, now_ms: u64) {
        if self.next_scan_ms.is_none() {
            self.next_scan_ms =
                Some(now_ms.saturating_add(self.config.scan_not_active_broker_interval_ms));
        }
    }

    fn process(&mut self, now_ms: u64, conn: ConnId, command: &RemotingCommand) -> RemotingCommand {
        self.dispatch(now_ms, conn, command)
            .unwrap_or_else(|failure| {
                RemotingCommand::response_to(command, failure.code, Some(failure.remark))
            })
    }

    fn dispatch(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        command: &RemotingCommand,
    ) -> Result<RemotingCommand, Failure> {
        match command.code {
            request::PUT_KV_CONFIG => self.put_kv_config(command),
            request::GET_KV_CONFIG => self.kv_config_value(command),
            request::DELETE_KV_CONFIG => self.delete_kv_config(command),
            request::GET_KVLIST_BY_NAMESPACE => self.kv_list(command),
            request::REGISTER_BROKER => self.register_broker(now_ms, conn, command),
            request::UNREGISTER_BROKER => self.unregister_broker(command),
            request::GET_ROUTEINFO_BY_TOPIC => self.route_by_topic(command),
            request::GET_BROKER_CLUSTER_INFO => Ok(success(command).with_body(
                self.tables
                    .cluster_info()
                    .to_json(JsonDialect::Fastjson)
                    .into_bytes(),
            )),
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                Ok(topic_list_response(command, self.tables.all_topics()))
            }
            request::GET_TOPICS_BY_CLUSTER => {
                let cluster = command.ext_str("cluster").map_err(header_error)?;
                let topics = self.tables.topics_of_cluster(cluster);
                Ok(topic_list_response(command, topics))
            }
            request::DELETE_TOPIC_IN_NAMESRV => {
                let topic = command.ext_str("topic").map_err(header_error)?;
                self.tables.delete_topic(topic, command.ext("clusterName"));
                Ok(success(command))
            }
            request::WIPE_WRITE_PERM_OF_BROKER | request::ADD_WRITE_PERM_OF_BROKER => {
                let broker_name = command.ext_str("brokerName").map_err(header_error)?;
                let add = command.code == request::ADD_WRITE_PERM_OF_BROKER;
                let count = self.tables.operate_write_perm(broker_name, add);
                let key = if add {
                    "addTopicCount"
                } else {
                    "wipeTopicCount"
                };
                Ok(success(command).with_ext(key, count))
            }
            request::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                let (topics, addr) = self.tables.system_topics();
                let mut body = serde_json::json!({ "topicList": topics });
                if let Some(addr) = addr {
                    body["brokerAddr"] = addr.into();
                }
                Ok(success(command).with_body(body.to_string().into_bytes()))
            }
            request::QUERY_DATA_VERSION => self.query_data_version(now_ms, command),
            request::BROKER_HEARTBEAT => {
                let cluster = command.ext_str("clusterName").map_err(header_error)?;
                let addr = command.ext_str("brokerAddr").map_err(header_error)?;
                self.tables.touch(now_ms, cluster, addr);
                Ok(success(command))
            }
            code => Err(Failure {
                code: response::REQUEST_CODE_NOT_SUPPORTED,
                remark: format!(" request type {code} not supported"),
            }),
        }
    }

    fn register_broker(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        command: &RemotingCommand,
    ) -> Result<RemotingCommand, Failure> {
        let header = RegisterBrokerHeader::parse(command).map_err(header_error)?;
        if header.body_crc32 != 0 && header.body_crc32 != register::body_crc32(&command.body) {
            return Err(Failure::system("crc32 not match"));
        }
        if header.compressed {
            return Err(Failure::system(
                "compressed REGISTER_BROKER bodies are not supported",
            ));
        }
        let body = RegisterBrokerBody::parse(&command.body).map_err(Failure::system)?;
        let outcome = self.tables.register(
            now_ms,
            conn,
            &header,
            &body.topic_config_serialize_wrapper,
            self.config.broker_channel_expired_ms,
        );
        let mut reply = success(command);
        if let Some(ha_server_addr) = outcome.ha_server_addr {
            reply = reply.with_ext("haServerAddr", ha_server_addr);
        }
        if let Some(master_addr) = outcome.master_addr {
            reply = reply.with_ext("masterAddr", master_addr);
        }
        // Java's returnOrderTopicConfigToBroker (default on): the order-topic KV table, if any.
        if let Some(table) = self.kv_config.get(NAMESPACE_ORDER_TOPIC_CONFIG) {
            reply = reply.with_body(kv_table_json(table).into_bytes());
        }
        Ok(reply)
    }

    fn unregister_broker(&mut self, command: &RemotingCommand) -> Result<RemotingCommand, Failure> {
        let header = UnregisterBrokerHeader::parse(command).map_err(header_error)?;
        self.tables.unregister(
            &header.cluster_name,
            &header.broker_name,
            &header.broker_addr,
        );
        Ok(success(command))
    }

    fn route_by_topic(&self, command: &RemotingCommand) -> Result<RemotingCommand, Failure> {
        let topic = command.ext_str("topic").map_err(header_error)?;
        let Some(route) = self.tables.route(topic) else {
            return Err(Failure {
                code: response::TOPIC_NOT_EXIST,
                remark: format!(
                    "No topic route info in name server for the topic: {topic}{APPLY_TOPIC_SUGGESTION}"
                ),
            });
        };
        let standard = command.version >= STANDARD_JSON_MIN_VERSION
            || command.ext_bool("acceptStandardJsonOnly") == Some(true);
        let dialect = if standard {
            JsonDialect::Standard
        } else {
            JsonDialect::Fastjson
        };
        Ok(success(command).with_body(route.to_json(dialect).into_bytes()))
    }

    fn query_data_version(
        &mut self,
        now_ms: u64,
        command: &RemotingCommand,
    ) -> Result<RemotingCommand, Failure> {
        let cluster = command.ext_str("clusterName").map_err(header_error)?;
        let addr = command.ext_str("brokerAddr").map_err(header_error)?;
        command.ext_str("brokerName").map_err(header_error)?;
        command.ext_num::<u64>("brokerId").map_err(header_error)?;
        let theirs: DataVersion = crate::remoting::lenient::from_body(&command.body, "DataVersion")
            .map_err(Failure::system)?;
        let changed = self.tables.data_version(cluster, addr) != Some(&theirs);
        self.tables.touch(now_ms, cluster, addr);
        let mut reply = success(command).with_ext("changed", changed);
        if let Some(ours) = self.tables.data_version(cluster, addr) {
            reply = reply.with_body(serde_json::to_vec(ours).unwrap_or_default());
        }
        Ok(reply)
    }

    fn put_kv_config(&mut self, command: &RemotingCommand) -> Result<RemotingCommand, Failure> {
        let namespace = command.ext_str("namespace").map_err(header_error)?;
        let key = command.ext_str("key").map_err(header_error)?;
        let value = command.ext_str("value").map_err(header_error)?;
        self.kv_config
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
        Ok(success(command))
    }

    fn kv_config_value(&self, command: &RemotingCommand) -> Result<RemotingCommand, Failure> {
        let namespace = command.ext_str("namespace").map_err(header_error)?;
        let key = command.ext_str("key").map_err(header_error)?;
        match self
            .kv_config
            .get(namespace)
            .and_then(|table| table.get(key))
        {
            Some(value) => Ok(success(command).with_ext("value", value)),
            None => Err(Failure {
                code: response::QUERY_NOT_FOUND,
                remark: format!("No config item, Namespace: {namespace} Key: {key}"),
            }),
        }
    }

    fn delete_kv_config(&mut self, command: &RemotingCommand) -> Result<RemotingCommand, Failure> {
        let namespace = command.ext_str("namespace").map_err(header_error)?;
        let key = command.ext_str("key").map_err(header_error)?;
        if let Some(table) = self.kv_config.get_mut(namespace) {
            table.remove(key);
            if table.is_empty() {
                self.kv_config.remove(namespace);
            }
        }
        Ok(success(command))
    }

    fn kv_list(&self, command: &RemotingCommand) -> Result<RemotingCommand, Failure> {
        let namespace = command.ext_str("namespace").map_err(header_error)?;
        match self.kv_config.get(namespace) {
            Some(table) => Ok(success(command).with_body(kv_table_json(table).into_bytes())),
            None => Err(Failure {
                code: response::QUERY_NOT_FOUND,
                remark: format!("No config item, Namespace: {namespace}"),
            }),
        }
    }
}

/// A request that ends in an error response.
struct Failure {
    code: i32,
    remark: String,
}

impl Failure {
    fn system(remark: impl Into<String>) -> Self {
        Self {
            code: response::SYSTEM_ERROR,
            remark: remark.into(),
        }
    }
}

/// A missing or malformed header field: Java fails header decoding with SYSTEM_ERROR.
fn header_error(error: HeaderError) -> Failure {
    Failure::system(error.to_string())
}

fn success(command: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(command, response::SUCCESS, None)
}

fn topic_list_response(command: &RemotingCommand, topics: Vec<String>) -> RemotingCommand {
    success(command).with_body(TopicList { topic_list: topics }.to_json().into_bytes())
}

/// `{"table":{"k":"v",…}}`, keys sorted.
fn kv_table_json(table: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{\"table\":{");
    for (index, (key, value)) in table.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        json::write_string(&mut out, key, false);
        out.push(':');
        json::write_string(&mut out, value, false);
    }
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests;
