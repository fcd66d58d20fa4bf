//! Route bodies the NameServer answers with: `TopicRouteData` (GET_ROUTEINFO_BY_TOPIC),
//! `ClusterInfo` (GET_BROKER_CLUSTER_INFO) and `TopicList` (206, 224).
//!
//! Route data is written by hand because the Java NameServer speaks two dialects (REMOTING.md
//! §5.1): standard JSON, and fastjson's default with unquoted numeric keys in `brokerAddrs`:
//!
//! ```text
//! standard: {"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911"},"brokerName":"b",…}],…}
//! fastjson: {"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911"},"brokerName":"b",…}],…}
//! ```
//!
//! Keys are written in alphabetical order, as fastjson sorts bean properties; `null` members
//! (`orderTopicConf`, `zoneName`, `topicQueueMappingByBroker`) are omitted. No whitespace, ever:
//! the Go client does not trim spaces around broker addresses.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::json::{quote_numeric_keys, write_string};

/// Which JSON flavour a route body is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonDialect {
    /// fastjson's default: numeric map keys unquoted, non-ASCII written raw.
    Fastjson,
    /// Standard JSON: quoted keys, non-ASCII escaped as `\uXXXX`.
    Standard,
}

/// One broker name's queues of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    #[serde(default)]
    pub topic_sys_flag: u32,
}

/// One broker name (a master and its slaves) and where its members listen.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    /// brokerId → `ip:port`; id 0 is the master.
    pub broker_addrs: BTreeMap<u64, String>,
    #[serde(default)]
    pub enable_acting_master: bool,
    #[serde(default)]
    pub zone_name: Option<String>,
}

/// The route of one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default)]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
}

/// Every broker and cluster the NameServer knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// brokerName → BrokerData.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// clusterName → brokerNames.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// `{"topicList":[…]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    pub topic_list: Vec<String>,
}

impl QueueData {
    fn write_json(&self, out: &mut String, ascii_only: bool) {
        out.push_str("{\"brokerName\":");
        write_string(out, &self.broker_name, ascii_only);
        out.push_str(&format!(
            ",\"perm\":{},\"readQueueNums\":{},\"topicSysFlag\":{},\"writeQueueNums\":{}}}",
            self.perm, self.read_queue_nums, self.topic_sys_flag, self.write_queue_nums
        ));
    }
}

impl BrokerData {
    fn write_json(&self, out: &mut String, dialect: JsonDialect) {
        let ascii_only = dialect == JsonDialect::Standard;
        out.push_str("{\"brokerAddrs\":{");
        for (index, (id, addr)) in self.broker_addrs.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            match dialect {
                JsonDialect::Fastjson => out.push_str(&format!("{id}:")),
                JsonDialect::Standard => out.push_str(&format!("\"{id}\":")),
            }
            write_string(out, addr, ascii_only);
        }
        out.push_str("},\"brokerName\":");
        write_string(out, &self.broker_name, ascii_only);
        out.push_str(",\"cluster\":");
        write_string(out, &self.cluster, ascii_only);
        out.push_str(&format!(
            ",\"enableActingMaster\":{}",
            self.enable_acting_master
        ));
        if let Some(zone_name) = &self.zone_name {
            out.push_str(",\"zoneName\":");
            write_string(out, zone_name, ascii_only);
        }
        out.push('}');
    }
}

impl TopicRouteData {
    /// The body of a GET_ROUTEINFO_BY_TOPIC response.
    pub fn to_json(&self, dialect: JsonDialect) -> String {
        let ascii_only = dialect == JsonDialect::Standard;
        let mut out = String::with_capacity(256);
        out.push_str("{\"brokerDatas\":[");
        for (index, broker) in self.broker_datas.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            broker.write_json(&mut out, dialect);
        }
        out.push_str("],\"filterServerTable\":{}");
        if let Some(conf) = &self.order_topic_conf {
            out.push_str(",\"orderTopicConf\":");
            write_string(&mut out, conf, ascii_only);
        }
        out.push_str(",\"queueDatas\":[");
        for (index, queue) in self.queue_datas.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            queue.write_json(&mut out, ascii_only);
        }
        out.push_str("]}");
        out
    }

    /// Parses a route body in either dialect (unknown keys are ignored).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        parse_either_dialect(body, "TopicRouteData")
    }
}

impl ClusterInfo {
    /// The body of a GET_BROKER_CLUSTER_INFO response.
    pub fn to_json(&self, dialect: JsonDialect) -> String {
        let ascii_only = dialect == JsonDialect::Standard;
        let mut out = String::with_capacity(256);
        out.push_str("{\"brokerAddrTable\":{");
        for (index, (name, broker)) in self.broker_addr_table.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_string(&mut out, name, ascii_only);
            out.push(':');
            broker.write_json(&mut out, dialect);
        }
        out.push_str("},\"clusterAddrTable\":{");
        for (index, (cluster, names)) in self.cluster_addr_table.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_string(&mut out, cluster, ascii_only);
            out.push_str(":[");
            for (name_index, name) in names.iter().enumerate() {
                if name_index > 0 {
                    out.push(',');
                }
                write_string(&mut out, name, ascii_only);
            }
            out.push(']');
        }
        out.push_str("}}");
        out
    }

    /// Parses a cluster-info body in either dialect (unknown keys are ignored).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        parse_either_dialect(body, "ClusterInfo")
    }
}

impl TopicList {
    /// The body of a 206 / 224 response.
    pub fn to_json(&self) -> String {
        // A struct of one Vec<String>: serde_json's output is fixed and matches fastjson's.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn parse_either_dialect<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("{what} is not UTF-8: {e}"))?;
    serde_json::from_str(&quote_numeric_keys(text)).map_err(|e| format!("malformed {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TopicRouteData {
        TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                cluster: "DefaultCluster".into(),
                broker_name: "broker-a".into(),
                broker_addrs: BTreeMap::from([
                    (0, "192.168.1.10:10911".to_owned()),
                    (1, "192.168.1.11:10911".to_owned()),
                ]),
                enable_acting_master: false,
                zone_name: None,
            }],
        }
    }

    /// Goal: the route body is byte-for-byte what a Java NameServer writes, in both dialects,
    /// and parses back. Method: the REMOTING.md §5.1 example, extended with a slave address.
    #[test]
    fn route_json_in_both_dialects() {
        let route = sample();
        let standard = route.to_json(JsonDialect::Standard);
        assert_eq!(
            standard,
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"192.168.1.10:10911","1":"192.168.1.11:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
        );
        let fastjson = route.to_json(JsonDialect::Fastjson);
        assert_eq!(
            fastjson,
            r#"{"brokerDatas":[{"brokerAddrs":{0:"192.168.1.10:10911",1:"192.168.1.11:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
        );
        assert_eq!(
            TopicRouteData::parse(standard.as_bytes()),
            Ok(route.clone())
        );
        assert_eq!(TopicRouteData::parse(fastjson.as_bytes()), Ok(route));
    }

    #[test]
    fn optional_members_appear_in_key_order() {
        let mut route = sample();
        route.order_topic_conf = Some("broker-a:4".into());
        route.broker_datas[0].zone_name = Some("zone-ä".into());
        let standard = route.to_json(JsonDialect::Standard);
        assert!(standard.contains(r#""enableActingMaster":false,"zoneName":"zone-\u00e4"}"#));
        assert!(standard
            .contains(r#""filterServerTable":{},"orderTopicConf":"broker-a:4","queueDatas""#));
        assert!(route
            .to_json(JsonDialect::Fastjson)
            .contains(r#""zoneName":"zone-ä""#));
        assert_eq!(TopicRouteData::parse(standard.as_bytes()), Ok(route));
    }

    #[test]
    fn cluster_info_json() {
        let route = sample();
        let info = ClusterInfo {
            broker_addr_table: BTreeMap::from([(
                "broker-a".to_owned(),
                route.broker_datas[0].clone(),
            )]),
            cluster_addr_table: BTreeMap::from([(
                "DefaultCluster".to_owned(),
                BTreeSet::from(["broker-a".to_owned()]),
            )]),
        };
        let text = info.to_json(JsonDialect::Fastjson);
        assert_eq!(
            text,
            r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"192.168.1.10:10911",1:"192.168.1.11:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
        );
        assert_eq!(ClusterInfo::parse(text.as_bytes()), Ok(info));
    }

    #[test]
    fn malformed_route_is_an_error() {
        assert!(TopicRouteData::parse(b"{\"queueDatas\":").is_err());
        assert!(TopicRouteData::parse(&[0xff, 0xfe]).is_err());
    }
}
