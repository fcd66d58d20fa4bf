//! REGISTER_BROKER (103) / UNREGISTER_BROKER (104): the requests a broker sends its NameServers,
//! and their bodies (`RegisterBrokerBody`, `TopicConfigSerializeWrapper`).
//!
//! Built here, next to the code that parses them, so both sides agree byte for byte.
//!
//! ```text
//! REGISTER_BROKER ext: brokerName, brokerAddr, clusterName, haServerAddr, brokerId,
//!                      compressed="false", bodyCrc32 = crc32(body) & 0x7FFFFFFF
//! body (uncompressed JSON, REMOTING.md §5.8):
//! {"filterServerList":[],
//!  "topicConfigSerializeWrapper":{"dataVersion":{…},"topicConfigTable":{"<topic>":{TopicConfig},…},
//!                                 "topicQueueMappingInfoMap":{},"topicQueueMappingDetailMap":{},
//!                                 "mappingDataVersion":{…}}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::json::quote_numeric_keys;
use crate::remoting::codes::request;
use crate::remoting::lenient;
use crate::remoting::{HeaderError, RemotingCommand};
use crate::topic::{DataVersion, TopicConfig};

/// Who is registering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerIdentity {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: u64,
    /// `brokerIP1:listenPort`, the address clients use.
    pub broker_addr: String,
    /// `brokerIP2:haPort`.
    pub ha_server_addr: String,
}

/// The REGISTER_BROKER body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    /// Legacy filter-server addresses; always empty from Vostok.
    #[serde(default, deserialize_with = "lenient::list")]
    pub filter_server_list: Vec<String>,
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

/// A broker's topic table and its version (also the GET_ALL_TOPIC_CONFIG body).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(default)]
    pub data_version: DataVersion,
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// 5.x static-topic mappings: carried so a Java NameServer sees the shape it expects, and
    /// otherwise ignored (Vostok has no static topics).
    #[serde(default)]
    pub topic_queue_mapping_info_map: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub topic_queue_mapping_detail_map: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub mapping_data_version: DataVersion,
}

impl RegisterBrokerBody {
    /// The JSON text a broker sends. Deterministic: every map is a `BTreeMap`.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses an uncompressed body. An empty body (Java sends none when it has nothing) is an
    /// empty registration; unknown keys are ignored; fastjson's unquoted numeric keys (inside
    /// a Java broker's static-topic mappings) are accepted, and every field is read as
    /// fastjson reads it (`remoting::lenient`).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.is_empty() {
            return Ok(Self::default());
        }
        let text = std::str::from_utf8(body)
            .map_err(|e| format!("the RegisterBrokerBody is not UTF-8: {e}"))?;
        lenient::from_body(quote_numeric_keys(text).as_bytes(), "RegisterBrokerBody")
    }
}

/// Java's `UtilAll.crc32`: CRC-32 (IEEE) masked to 31 bits so it fits a positive `int`.
pub fn body_crc32(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// A REGISTER_BROKER request carrying every topic of the broker (uncompressed JSON body).
pub fn register_broker_request(
    identity: &BrokerIdentity,
    topics: &BTreeMap<String, TopicConfig>,
    data_version: &DataVersion,
) -> RemotingCommand {
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            data_version: data_version.clone(),
            topic_config_table: topics.clone(),
            topic_queue_mapping_info_map: BTreeMap::new(),
            topic_queue_mapping_detail_map: BTreeMap::new(),
            mapping_data_version: DataVersion::default(),
        },
    }
    .to_json()
    .into_bytes();
    RemotingCommand::request(request::REGISTER_BROKER)
        .with_ext("brokerName", &identity.broker_name)
        .with_ext("brokerAddr", &identity.broker_addr)
        .with_ext("clusterName", &identity.cluster_name)
        .with_ext("haServerAddr", &identity.ha_server_addr)
        .with_ext("brokerId", identity.broker_id)
        .with_ext("compressed", false)
        .with_ext("bodyCrc32", body_crc32(&body))
        .with_body(body)
}

/// An UNREGISTER_BROKER request.
pub fn unregister_broker_request(identity: &BrokerIdentity) -> RemotingCommand {
    RemotingCommand::request(request::UNREGISTER_BROKER)
        .with_ext("brokerName", &identity.broker_name)
        .with_ext("brokerAddr", &identity.broker_addr)
        .with_ext("clusterName", &identity.cluster_name)
        .with_ext("brokerId", identity.broker_id)
}

/// The REGISTER_BROKER header as the NameServer reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegisterBrokerHeader {
    pub identity: BrokerIdentity,
    pub compressed: bool,
    /// 0 means "not checked".
    pub body_crc32: i32,
    /// Custom expiry (Java's acting-master mode); the NameServer default otherwise.
    pub heartbeat_timeout_ms: Option<u64>,
    pub enable_acting_master: bool,
    pub zone_name: Option<String>,
}

impl RegisterBrokerHeader {
    pub fn parse(command: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            identity: BrokerIdentity {
                cluster_name: command.ext_str("clusterName")?.to_owned(),
                broker_name: command.ext_str("brokerName")?.to_owned(),
                broker_id: command.ext_num("brokerId")?,
                broker_addr: command.ext_str("brokerAddr")?.to_owned(),
                ha_server_addr: command.ext_str("haServerAddr")?.to_owned(),
            },
            compressed: command.ext_bool("compressed").unwrap_or(false),
            body_crc32: command.ext_num_opt("bodyCrc32")?.unwrap_or(0),
            heartbeat_timeout_ms: command.ext_num_opt("heartbeatTimeoutMillis")?,
            enable_acting_master: command.ext_bool("enableActingMaster").unwrap_or(false),
            zone_name: command.ext("__ZONE_NAME").map(str::to_owned),
        })
    }
}

/// The UNREGISTER_BROKER header as the NameServer reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnregisterBrokerHeader {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_addr: String,
    pub broker_id: u64,
}

impl UnregisterBrokerHeader {
    pub fn parse(command: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            cluster_name: command.ext_str("clusterName")?.to_owned(),
            broker_name: command.ext_str("brokerName")?.to_owned(),
            broker_addr: command.ext_str("brokerAddr")?.to_owned(),
            broker_id: command.ext_num("brokerId")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> BrokerIdentity {
        BrokerIdentity {
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            broker_addr: "10.0.0.1:10911".into(),
            ha_server_addr: "10.0.0.1:10912".into(),
        }
    }

    /// Goal: the request carries Java's header fields and a body whose checksum matches.
    #[test]
    fn register_request_header_and_body() {
        let topics = BTreeMap::from([("TopicA".to_owned(), TopicConfig::new("TopicA", 4))]);
        let version = DataVersion {
            state_version: 0,
            timestamp: 1_718_000_000_000,
            counter: 12,
        };
        let request = register_broker_request(&identity(), &topics, &version);
        assert_eq!(request.code, request::REGISTER_BROKER);
        assert_eq!(request.ext("brokerName"), Some("broker-a"));
        assert_eq!(request.ext("brokerAddr"), Some("10.0.0.1:10911"));
        assert_eq!(request.ext("clusterName"), Some("DefaultCluster"));
        assert_eq!(request.ext("haServerAddr"), Some("10.0.0.1:10912"));
        assert_eq!(request.ext("brokerId"), Some("0"));
        assert_eq!(request.ext("compressed"), Some("false"));
        let crc: i32 = request.ext_num("bodyCrc32").expect("crc");
        assert_eq!(crc, body_crc32(&request.body));
        assert!(crc >= 0);
        assert_eq!(
            std::str::from_utf8(&request.body).expect("utf8"),
            r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"stateVersion":0,"timestamp":1718000000000,"counter":12},"topicConfigTable":{"TopicA":{"topicName":"TopicA","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,"order":false,"attributes":{}}},"topicQueueMappingInfoMap":{},"topicQueueMappingDetailMap":{},"mappingDataVersion":{"stateVersion":0,"timestamp":0,"counter":0}}}"#
        );
        let parsed = RegisterBrokerBody::parse(&request.body).expect("parse");
        assert_eq!(
            parsed.topic_config_serialize_wrapper.topic_config_table,
            topics
        );
        assert_eq!(parsed.topic_config_serialize_wrapper.data_version, version);

        let header = RegisterBrokerHeader::parse(&request).expect("header");
        assert_eq!(header.identity, identity());
        assert!(!header.compressed);
        assert_eq!(header.body_crc32, crc);
    }

    /// Goal: a Java 5.x body with extra keys and fastjson numeric keys in its mapping section
    /// parses. Method: the §5.8 example plus a static-topic mapping and unknown keys.
    #[test]
    fn java_body_with_extra_keys_parses() {
        let body = br#"{"filterServerList":[],"unknown":1,"topicConfigSerializeWrapper":{"dataVersion":{"counter":12,"stateVersion":0,"timestamp":1718000000000},"topicConfigTable":{"TBW102":{"attributes":{},"order":false,"perm":7,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"TBW102","topicSysFlag":0,"writeQueueNums":8,"topicMessageType":"NORMAL"}},"topicQueueMappingInfoMap":{"S":{"currIdMap":{0:1},"epoch":0}},"topicQueueMappingDetailMap":{},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1718000000000}}}"#;
        let parsed = RegisterBrokerBody::parse(body).expect("parse");
        let table = &parsed.topic_config_serialize_wrapper.topic_config_table;
        assert_eq!(table.len(), 1);
        assert_eq!(table["TBW102"].perm, 7);
        assert_eq!(
            parsed.topic_config_serialize_wrapper.data_version.counter,
            12
        );
    }

    /// Goal: what fastjson coerces, the NameServer takes too: numbers in strings, booleans as
    /// text, an enum ordinal, nulls, a topic that leaves out what has a Java default.
    #[test]
    fn a_body_with_fastjson_coercions_parses() {
        let body = br#"{"filterServerList":null,"topicConfigSerializeWrapper":{"dataVersion":{"counter":"12","stateVersion":null,"timestamp":"1718000000000"},"topicConfigTable":{"T":{"order":"true","perm":"6","readQueueNums":4,"topicFilterType":1,"topicName":"T","topicSysFlag":null,"writeQueueNums":"4","attributes":{"+message.type":"FIFO"}},"U":{"topicName":"U"}}}}"#;
        let parsed = RegisterBrokerBody::parse(body).expect("parse");
        let wrapper = &parsed.topic_config_serialize_wrapper;
        assert_eq!(wrapper.data_version.counter, 12);
        assert_eq!(wrapper.data_version.timestamp, 1_718_000_000_000);
        let t = &wrapper.topic_config_table["T"];
        assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (4, 4, 6));
        assert!(t.order);
        assert_eq!(t.topic_filter_type, "MULTI_TAG");
        // Java's TopicConfig defaults: 16 queues each way, read and write.
        let u = &wrapper.topic_config_table["U"];
        assert_eq!((u.read_queue_nums, u.write_queue_nums, u.perm), (16, 16, 6));
        assert_eq!(u.topic_filter_type, "SINGLE_TAG");
    }

    #[test]
    fn a_body_fastjson_cannot_bind_is_a_clear_error() {
        let err = RegisterBrokerBody::parse(
            br#"{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"topicName":"T","readQueueNums":-1}}}}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("RegisterBrokerBody") && err.contains("out of range"),
            "{err}"
        );
        let err = RegisterBrokerBody::parse(
            br#"{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"topicName":"T","topicFilterType":5}}}}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("parse enum TopicFilterType error, value : 5"),
            "{err}"
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(RegisterBrokerBody::parse(b"{").is_err());
        assert!(RegisterBrokerBody::parse(b"[1,2]").is_err());
        assert!(RegisterBrokerBody::parse(&[0xc3, 0x28]).is_err());
        assert_eq!(
            RegisterBrokerBody::parse(b""),
            Ok(RegisterBrokerBody::default())
        );
    }

    #[test]
    fn unregister_request_header() {
        let request = unregister_broker_request(&identity());
        assert_eq!(request.code, request::UNREGISTER_BROKER);
        let header = UnregisterBrokerHeader::parse(&request).expect("header");
        assert_eq!(header.broker_name, "broker-a");
        assert_eq!(header.broker_addr, "10.0.0.1:10911");
        assert_eq!(header.cluster_name, "DefaultCluster");
        assert_eq!(header.broker_id, 0);
        assert!(request.body.is_empty());
    }
}
