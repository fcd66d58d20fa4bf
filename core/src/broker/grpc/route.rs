//! QueryRoute: the topic's queues on this broker, reachable at the endpoints the client dialled.
//!
//! RocketMQ's proxy answers from the NameServer's route and puts its own address in place of
//! every broker's. Vostok's broker answers for itself: the queues of its own topic table, on one
//! `Broker{name = brokerName, id = 0}` whose endpoints are the request's (the access point the
//! client was configured with, so every call comes back to this port). A topic served by several
//! broker groups is therefore reached through each group's own gRPC port.
//!
//! Queue ids are the broker's real queue ids (the proxy renumbers them, read-only queues first;
//! its numbers only matter to itself): queue `i` is readable when `i < readQueueNums`, writable
//! when `i < writeQueueNums`, both within the topic's and the broker's permission. Node's client
//! publishes and receives only on queue id 0, which is READ_WRITE on every ordinary topic.
//!
//! `accept_message_types` is the topic's `message.type` attribute (NORMAL, FIFO, DELAY,
//! TRANSACTION, or MIXED for all four). A topic without the attribute (every topic made by 4.x
//! tools) accepts all four, as MIXED: the broker checks a send's type only against a declared
//! attribute.

use super::message::wrap_namespace;
use super::status::{ok, status};
use super::v2::{self, Code};
use super::{CallId, CallMeta, GrpcReply};
use crate::broker::Broker;
use crate::store::SegmentStorage;
use crate::topic::{perm, validate_topic_name, TopicConfig};

/// The topic attribute that declares what a topic accepts (RocketMQ 5's `message.type`).
pub const MESSAGE_TYPE_ATTRIBUTE: &str = "message.type";

/// The message types a topic accepts, from its `message.type` attribute (stored by
/// `updateTopic -a +message.type=FIFO` as `+message.type` or `message.type`). `None` when the
/// attribute names no type Vostok knows.
pub fn accepted_message_types(config: &TopicConfig) -> Option<Vec<v2::MessageType>> {
    let declared = config
        .attributes
        .get(MESSAGE_TYPE_ATTRIBUTE)
        .or_else(|| config.attributes.get(&format!("+{MESSAGE_TYPE_ATTRIBUTE}")));
    let all = vec![
        v2::MessageType::Normal,
        v2::MessageType::Fifo,
        v2::MessageType::Delay,
        v2::MessageType::Transaction,
    ];
    let Some(declared) = declared else {
        return Some(all);
    };
    match declared.trim().to_ascii_uppercase().as_str() {
        "NORMAL" => Some(vec![v2::MessageType::Normal]),
        "FIFO" => Some(vec![v2::MessageType::Fifo]),
        "DELAY" => Some(vec![v2::MessageType::Delay]),
        "TRANSACTION" => Some(vec![v2::MessageType::Transaction]),
        "MIXED" | "" => Some(all),
        _ => None,
    }
}

/// The permission of queue `id` of a topic.
fn queue_permission(config: &TopicConfig, broker_perm: u32, id: u32) -> v2::Permission {
    let perm = config.perm & broker_perm;
    let readable = id < config.read_queue_nums && perm & perm::READ != 0;
    let writable = id < config.write_queue_nums && perm & perm::WRITE != 0;
    match (readable, writable) {
        (true, true) => v2::Permission::ReadWrite,
        (true, false) => v2::Permission::Read,
        (false, true) => v2::Permission::Write,
        (false, false) => v2::Permission::None,
    }
}

/// The queues of `config` as the route lists them, on a broker reachable at `endpoints`.
pub fn route_queues(
    config: &TopicConfig,
    resource: &v2::Resource,
    broker_name: &str,
    broker_perm: u32,
    endpoints: &v2::Endpoints,
) -> Vec<v2::MessageQueue> {
    let types: Vec<i32> = accepted_message_types(config)
        .unwrap_or_default()
        .into_iter()
        .map(|t| t as i32)
        .collect();
    let broker = v2::Broker {
        name: broker_name.to_owned(),
        id: 0,
        endpoints: Some(endpoints.clone()),
    };
    let count = config.read_queue_nums.max(config.write_queue_nums);
    (0..count)
        .map(|id| v2::MessageQueue {
            topic: Some(resource.clone()),
            id: id as i32,
            permission: queue_permission(config, broker_perm, id) as i32,
            broker: Some(broker.clone()),
            accept_message_types: types.clone(),
        })
        .filter(|q| q.permission != v2::Permission::None as i32)
        .collect()
}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_query_route(
        &mut self,
        _now_ms: u64,
        call: CallId,
        meta: &CallMeta,
        request: v2::QueryRouteRequest,
    ) {
        let reply = |status, message_queues| {
            GrpcReply::QueryRoute(v2::QueryRouteResponse {
                status: Some(status),
                message_queues,
            })
        };
        let Some(resource) = request.topic.as_ref() else {
            let r = reply(
                status(Code::IllegalTopic, "the request names no topic"),
                vec![],
            );
            return self.gateway.reply(call, r);
        };
        let topic = wrap_namespace(resource, &meta.namespace);
        if let Err(e) = validate_topic_name(&topic) {
            return self
                .gateway
                .reply(call, reply(status(Code::IllegalTopic, e), vec![]));
        }
        // Every client sends the access point it dialled; the route points back to it.
        let Some(endpoints) = request.endpoints.filter(|e| !e.addresses.is_empty()) else {
            let r = reply(
                status(
                    Code::IllegalAccessPoint,
                    "the request names no endpoints (the access point the client dialled)",
                ),
                vec![],
            );
            return self.gateway.reply(call, r);
        };
        let Some(config) = self.topics.topics.get(&topic) else {
            let r = reply(
                status(
                    Code::TopicNotFound,
                    format!(
                        "topic {topic} does not exist on broker {}",
                        self.config.broker_name
                    ),
                ),
                vec![],
            );
            return self.gateway.reply(call, r);
        };
        if accepted_message_types(config).is_none() {
            let r = reply(
                status(
                    Code::InternalServerError,
                    format!(
                        "topic {topic} declares an unknown message.type {:?}",
                        config.attributes.get(MESSAGE_TYPE_ATTRIBUTE)
                    ),
                ),
                vec![],
            );
            return self.gateway.reply(call, r);
        }
        let queues = route_queues(
            config,
            resource,
            &self.config.broker_name,
            self.config.broker_permission,
            &endpoints,
        );
        self.gateway.reply(call, reply(ok(), queues));
    }
}
