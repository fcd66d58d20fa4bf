//! REGISTER_BROKER (103) / UNREGISTER_BROKER (104): the requests a broker sends its NameServers,
//! and their bodies (`RegisterBrokerBody`, `TopicConfigSerializeWrapper`).
//!
//! Built here, next to the code that parses them, so both sides agree byte for byte.

use std::collections::BTreeMap;

use crate::remoting::RemotingCommand;
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

/// A REGISTER_BROKER request carrying every topic of the broker (uncompressed JSON body).
pub fn register_broker_request(
    identity: &BrokerIdentity,
    topics: &BTreeMap<String, TopicConfig>,
    data_version: &DataVersion,
) -> RemotingCommand {
    let _ = (identity, topics, data_version);
    todo!()
}

/// An UNREGISTER_BROKER request.
pub fn unregister_broker_request(identity: &BrokerIdentity) -> RemotingCommand {
    let _ = identity;
    todo!()
}
