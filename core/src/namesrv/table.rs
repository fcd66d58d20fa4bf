//! The NameServer's tables (REMOTING.md §7.8) and the rules that change them (§3.16).
//!
//! ```text
//! cluster_addr_table  clusterName → {brokerName}
//! broker_addr_table   brokerName  → BrokerData {cluster, brokerAddrs: brokerId → addr}
//! topic_queue_table   topic       → brokerName → QueueData
//! broker_live_table   (clusterName, brokerAddr) → {last update, timeout, DataVersion, conns, haServerAddr}
//! ```
//!
//! Invariants kept by every removal: a brokerName with no address left has no BrokerData, no
//! QueueData and is in no cluster's set; a topic with no QueueData is absent; no cluster has an
//! empty set.

use std::collections::{BTreeMap, BTreeSet};

use super::register::{RegisterBrokerHeader, TopicConfigSerializeWrapper};
use super::route::{BrokerData, ClusterInfo, QueueData, TopicRouteData};
use crate::topic::DataVersion;
use crate::ConnId;

/// brokerId of a master.
const MASTER_ID: u64 = 0;

/// Key of the live table: Java's `BrokerAddrInfo`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BrokerAddrInfo {
    pub cluster_name: String,
    pub broker_addr: String,
}

/// What the NameServer knows about one live broker process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BrokerLiveInfo {
    pub last_update_ms: u64,
    pub timeout_ms: u64,
    pub data_version: DataVersion,
    /// The open connections the broker registered over. Closing the last one forgets the
    /// broker. Not only the latest: a restarted broker registers over a new connection while
    /// a registration its previous process sent may still arrive over the old one, whose
    /// close must not forget the new process.
    pub conns: BTreeSet<ConnId>,
    pub ha_server_addr: String,
}

/// What a slave learns about its master from a registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegisterOutcome {
    pub ha_server_addr: Option<String>,
    pub master_addr: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RouteTables {
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_addr_table: BTreeMap<String, BrokerData>,
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    broker_live_table: BTreeMap<BrokerAddrInfo, BrokerLiveInfo>,
}

impl RouteTables {
    /// Applies a REGISTER_BROKER.
    pub fn register(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        header: &RegisterBrokerHeader,
        wrapper: &TopicConfigSerializeWrapper,
        default_timeout_ms: u64,
    ) -> RegisterOutcome {
        let identity = &header.identity;
        let live_key = BrokerAddrInfo {
            cluster_name: identity.cluster_name.clone(),
            broker_addr: identity.broker_addr.clone(),
        };
        self.cluster_addr_table
            .entry(identity.cluster_name.clone())
            .or_default()
            .insert(identity.broker_name.clone());

        let mut register_first = false;
        let broker_data = self
            .broker_addr_table
            .entry(identity.broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData {
                    cluster: identity.cluster_name.clone(),
                    broker_name: identity.broker_name.clone(),
                    broker_addrs: BTreeMap::new(),
                    enable_acting_master: false,
                    zone_name: None,
                }
            });
        broker_data.enable_acting_master = header.enable_acting_master;
        if header.zone_name.is_some() {
            broker_data.zone_name = header.zone_name.clone();
        }
        // One address has one id: a slave promoted to master re-registers its address as id 0.
        broker_data
            .broker_addrs
            .retain(|id, addr| *id == identity.broker_id || *addr != identity.broker_addr);

        // Another process took over this id: refuse a registration carrying an older state.
        if let Some(old_addr) = broker_data.broker_addrs.get(&identity.broker_id) {
            if *old_addr != identity.broker_addr {
                let old_key = BrokerAddrInfo {
                    cluster_name: identity.cluster_name.clone(),
                    broker_addr: old_addr.clone(),
                };
                if let Some(old_live) = self.broker_live_table.get(&old_key) {
                    if old_live.data_version.state_version > wrapper.data_version.state_version {
                        self.broker_live_table.remove(&live_key);
                        return RegisterOutcome::default();
                    }
                }
            }
        }
        let previous = broker_data
            .broker_addrs
            .insert(identity.broker_id, identity.broker_addr.clone());
        register_first |= previous.is_none();

        if identity.broker_id == MASTER_ID {
            // Java rewrites every topic only when the broker's table version moved; otherwise it
            // only adds the topics it does not know for this broker name yet.
            let version_changed = self
                .broker_live_table
                .get(&live_key)
                .is_none_or(|live| live.data_version != wrapper.data_version);
            for config in wrapper.topic_config_table.values() {
                let known = self
                    .topic_queue_table
                    .get(&config.topic_name)
                    .is_some_and(|queues| queues.contains_key(&identity.broker_name));
                if register_first || version_changed || !known {
                    self.topic_queue_table
                        .entry(config.topic_name.clone())
                        .or_default()
                        .insert(
                            identity.broker_name.clone(),
                            QueueData {
                                broker_name: identity.broker_name.clone(),
                                read_queue_nums: config.read_queue_nums,
                                write_queue_nums: config.write_queue_nums,
                                perm: config.perm,
                                topic_sys_flag: config.topic_sys_flag,
                            },
                        );
                }
            }
        }

        let mut conns = self
            .broker_live_table
            .get(&live_key)
            .map(|live| live.conns.clone())
            .unwrap_or_default();
        conns.insert(conn);
        self.broker_live_table.insert(
            live_key,
            BrokerLiveInfo {
                last_update_ms: now_ms,
                timeout_ms: header.heartbeat_timeout_ms.unwrap_or(default_timeout_ms),
                data_version: wrapper.data_version.clone(),
                conns,
                ha_server_addr: identity.ha_server_addr.clone(),
            },
        );

        let mut outcome = RegisterOutcome::default();
        if identity.broker_id != MASTER_ID {
            let master_addr = self
                .broker_addr_table
                .get(&identity.broker_name)
                .and_then(|data| data.broker_addrs.get(&MASTER_ID));
            if let Some(master_addr) = master_addr {
                let master_key = BrokerAddrInfo {
                    cluster_name: identity.cluster_name.clone(),
                    broker_addr: master_addr.clone(),
                };
                if let Some(master_live) = self.broker_live_table.get(&master_key) {
                    outcome.ha_server_addr = Some(master_live.ha_server_addr.clone());
                    outcome.master_addr = Some(master_addr.clone());
                }
            }
        }
        outcome
    }

    /// Applies an UNREGISTER_BROKER: forgets the address `broker_addr` of `broker_name`.
    pub fn unregister(&mut self, cluster_name: &str, broker_name: &str, broker_addr: &str) {
        self.broker_live_table.remove(&BrokerAddrInfo {
            cluster_name: cluster_name.to_owned(),
            broker_addr: broker_addr.to_owned(),
        });
        self.remove_address(cluster_name, broker_name, broker_addr);
    }

    /// Removes an address from a broker name and, when it was the last one, the broker name
    /// itself with all its queues.
    fn remove_address(&mut self, cluster_name: &str, broker_name: &str, broker_addr: &str) {
        let Some(broker_data) = self.broker_addr_table.get_mut(broker_name) else {
            return;
        };
        broker_data
            .broker_addrs
            .retain(|_, addr| addr != broker_addr);
        if !broker_data.broker_addrs.is_empty() {
            return;
        }
        self.broker_addr_table.remove(broker_name);
        if let Some(names) = self.cluster_addr_table.get_mut(cluster_name) {
            names.remove(broker_name);
            if names.is_empty() {
                self.cluster_addr_table.remove(cluster_name);
            }
        }
        self.topic_queue_table.retain(|_, queues| {
            queues.remove(broker_name);
            !queues.is_empty()
        });
    }

    /// Forgets a live broker whose connection closed or which expired: Java finds its broker
    /// name(s) by address within the cluster and unregisters it.
    fn remove_live(&mut self, key: &BrokerAddrInfo) {
        self.broker_live_table.remove(key);
        let names: Vec<String> = self
            .broker_addr_table
            .values()
            .filter(|data| {
                data.cluster == key.cluster_name
                    && data
                        .broker_addrs
                        .values()
                        .any(|addr| *addr == key.broker_addr)
            })
            .map(|data| data.broker_name.clone())
            .collect();
        for name in names {
            self.remove_address(&key.cluster_name, &name, &key.broker_addr);
        }
    }

    /// `conn` closed: a broker registered over it is forgotten once none of its connections is
    /// left open.
    pub fn remove_connection(&mut self, conn: ConnId) {
        let mut gone: Vec<BrokerAddrInfo> = Vec::new();
        for (key, live) in &mut self.broker_live_table {
            if live.conns.remove(&conn) && live.conns.is_empty() {
                gone.push(key.clone());
            }
        }
        for key in gone {
            self.remove_live(&key);
        }
    }

    /// Forgets every broker not refreshed within its timeout; returns the connections they
    /// used, which Java closes.
    pub fn expire(&mut self, now_ms: u64) -> BTreeSet<ConnId> {
        let expired: Vec<(BrokerAddrInfo, BTreeSet<ConnId>)> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| live.last_update_ms.saturating_add(live.timeout_ms) < now_ms)
            .map(|(key, live)| (key.clone(), live.conns.clone()))
            .collect();
        let mut conns = BTreeSet::new();
        for (key, its_conns) in expired {
            self.remove_live(&key);
            conns.extend(its_conns);
        }
        conns
    }

    /// Refreshes a live broker without changing its registration (QUERY_DATA_VERSION,
    /// BROKER_HEARTBEAT).
    pub fn touch(&mut self, now_ms: u64, cluster_name: &str, broker_addr: &str) {
        let key = BrokerAddrInfo {
            cluster_name: cluster_name.to_owned(),
            broker_addr: broker_addr.to_owned(),
        };
        if let Some(live) = self.broker_live_table.get_mut(&key) {
            live.last_update_ms = now_ms;
        }
    }

    /// The DataVersion a live broker last registered with.
    pub fn data_version(&self, cluster_name: &str, broker_addr: &str) -> Option<&DataVersion> {
        let key = BrokerAddrInfo {
            cluster_name: cluster_name.to_owned(),
            broker_addr: broker_addr.to_owned(),
        };
        self.broker_live_table
            .get(&key)
            .map(|live| &live.data_version)
    }

    /// The route of `topic`, if it has queues on a broker name that still has addresses.
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queue_table.get(topic)?;
        let broker_datas: Vec<BrokerData> = queues
            .keys()
            .filter_map(|name| self.broker_addr_table.get(name).cloned())
            .collect();
        if queues.is_empty() || broker_datas.is_empty() {
            return None;
        }
        Some(TopicRouteData {
            order_topic_conf: None,
            queue_datas: queues.values().cloned().collect(),
            broker_datas,
        })
    }

    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self.cluster_addr_table.clone(),
        }
    }

    /// Every topic with queues, sorted.
    pub fn all_topics(&self) -> Vec<String> {
        self.topic_queue_table.keys().cloned().collect()
    }

    /// WIPE_WRITE_PERM_OF_BROKER (`add` false) and ADD_WRITE_PERM_OF_BROKER (`add` true), as
    /// RocketMQ's `operateWritePermOfBroker`: every topic with queues on `broker_name` loses the
    /// write permission, or gets read and write back. Returns how many topics it touched. The
    /// change lasts until the broker's topic table version moves (its next registration with a
    /// new version rewrites its queues), as in RocketMQ.
    pub fn operate_write_perm(&mut self, broker_name: &str, add: bool) -> usize {
        let mut touched = 0;
        for queues in self.topic_queue_table.values_mut() {
            if let Some(queue) = queues.get_mut(broker_name) {
                queue.perm = if add {
                    crate::topic::perm::READ_WRITE
                } else {
                    queue.perm & !crate::topic::perm::WRITE
                };
                touched += 1;
            }
        }
        touched
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: every cluster and broker name (RocketMQ lists them as
    /// system topics), and one broker address to ask for the broker's own list.
    pub fn system_topics(&self) -> (Vec<String>, Option<String>) {
        let mut names: std::collections::BTreeSet<String> =
            self.cluster_addr_table.keys().cloned().collect();
        names.extend(self.broker_addr_table.keys().cloned());
        let addr = self
            .broker_addr_table
            .values()
            .find_map(|b| b.broker_addrs.values().next().cloned());
        (names.into_iter().collect(), addr)
    }

    /// Topics with queues on a broker name of `cluster_name`, sorted.
    pub fn topics_of_cluster(&self, cluster_name: &str) -> Vec<String> {
        let Some(names) = self.cluster_addr_table.get(cluster_name) else {
            return Vec::new();
        };
        self.topic_queue_table
            .iter()
            .filter(|(_, queues)| queues.keys().any(|name| names.contains(name)))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// DELETE_TOPIC_IN_NAMESRV: removes the topic's queues on the brokers of `cluster_name`, or
    /// everywhere when no cluster is named.
    pub fn delete_topic(&mut self, topic: &str, cluster_name: Option<&str>) {
        match cluster_name.and_then(|cluster| self.cluster_addr_table.get(cluster)) {
            Some(names) => {
                if let Some(queues) = self.topic_queue_table.get_mut(topic) {
                    queues.retain(|name, _| !names.contains(name));
                    if queues.is_empty() {
                        self.topic_queue_table.remove(topic);
                    }
                }
            }
            None if cluster_name.is_none() => {
                self.topic_queue_table.remove(topic);
            }
            None => {}
        }
    }

    /// Number of live broker processes.
    pub fn live_broker_count(&self) -> usize {
        self.broker_live_table.len()
    }
}
