//! Client state machine tests: golden request frames, allocation strategies, the producer and
//! consumers against scripted peers, and the whole client against the core's Broker and
//! NameServer in-process.

mod allocate;
mod consumer;
mod fence;
mod golden;
mod inproc;
mod orderly;
mod producer;

use bytes::BytesMut;

use super::ClientOutput;
use crate::namesrv::route::{BrokerData, JsonDialect, QueueData, TopicRouteData};
use crate::remoting::codec::{encode, FrameDecoder, MAX_FRAME_LEN};
use crate::remoting::RemotingCommand;

/// 2024-06-10T06:13:20Z.
pub(super) const T0: u64 = 1_718_000_000_000;
pub(super) const NAMESRV: &str = "127.0.0.1:9876";

/// Passes a command through the codec both ways, as a driver would.
pub(super) fn through_wire(command: &RemotingCommand) -> RemotingCommand {
    let mut buf = BytesMut::new();
    encode(command, &mut buf);
    FrameDecoder::new(MAX_FRAME_LEN)
        .decode(&mut buf)
        .expect("decodes")
        .expect("one whole frame")
}

/// A route with `queues` read/write queues on each `(broker name, address)`.
pub(super) fn route(brokers: &[(&str, &str)], queues: u32) -> TopicRouteData {
    TopicRouteData {
        order_topic_conf: None,
        queue_datas: brokers
            .iter()
            .map(|(name, _)| QueueData {
                broker_name: (*name).to_owned(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_sys_flag: 0,
            })
            .collect(),
        broker_datas: brokers
            .iter()
            .map(|(name, addr)| BrokerData {
                cluster: "DefaultCluster".to_owned(),
                broker_name: (*name).to_owned(),
                broker_addrs: [(0u64, (*addr).to_owned())].into_iter().collect(),
                enable_acting_master: false,
                zone_name: None,
            })
            .collect(),
    }
}

/// The NameServer's answer to `request` with `route` (fastjson dialect, as Java 4.x sends).
pub(super) fn route_response(request: &RemotingCommand, route: &TopicRouteData) -> RemotingCommand {
    RemotingCommand::response_to(request, 0, None)
        .with_body(route.to_json(JsonDialect::Fastjson).into_bytes())
}

/// Every `Send` output, as (address, command).
pub(super) fn sends(outputs: &[ClientOutput]) -> Vec<(String, RemotingCommand)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ClientOutput::Send { addr, command } => Some((addr.clone(), command.clone())),
            _ => None,
        })
        .collect()
}
