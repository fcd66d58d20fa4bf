//! QueryAssignment: where a push consumer receives from.
//!
//! Followed: RocketMQ 5.3.3's proxy, `RouteActivity.queryAssignment`. Every consumer of a group
//! gets the same assignments (POP needs no rebalancing): for a normal group one queue with id −1
//! ("any queue of this broker"); for a FIFO group one per readable queue, so each queue has its
//! own receive loop and an orderly POP keeps it with one batch at a time. The broker is the one
//! of the route ([`super::route`]): this broker, master id 0, at the request's endpoints. No
//! readable queue: FORBIDDEN. The FIFO decision is the one the client's Settings reply gave
//! (the group's `consumeMessageOrderly`, or every subscribed topic being a FIFO topic), so the
//! assignments and the client's consumption mode agree.

use super::message::wrap_namespace;
use super::route::accepted_message_types;
use super::status::{ok, status};
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply};
use crate::broker::Broker;
use crate::store::SegmentStorage;
use crate::topic::{perm, validate_topic_name};

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_query_assignment(
        &mut self,
        _now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::QueryAssignmentRequest,
    ) {
        let reply = match self.grpc_assignments(client, &request) {
            Ok(assignments) => v2::QueryAssignmentResponse {
                status: Some(ok()),
                assignments,
            },
            Err(s) => v2::QueryAssignmentResponse {
                status: Some(s),
                assignments: Vec::new(),
            },
        };
        self.gateway.reply(call, GrpcReply::QueryAssignment(reply));
    }

    fn grpc_assignments(
        &self,
        client: &ClientRef,
        request: &v2::QueryAssignmentRequest,
    ) -> Result<Vec<v2::Assignment>, v2::Status> {
        let namespace = client.meta.namespace.as_str();
        let Some(resource) = request.topic.as_ref().filter(|t| !t.name.is_empty()) else {
            return Err(status(Code::IllegalTopic, "the request names no topic"));
        };
        let topic = wrap_namespace(resource, namespace);
        validate_topic_name(&topic).map_err(|e| status(Code::IllegalTopic, e))?;
        let Some(group) = request.group.as_ref().filter(|g| !g.name.is_empty()) else {
            return Err(status(
                Code::IllegalConsumerGroup,
                "the request names no consumer group",
            ));
        };
        let group = wrap_namespace(group, namespace);
        let Some(endpoints) = request
            .endpoints
            .clone()
            .filter(|e| !e.addresses.is_empty())
        else {
            return Err(status(
                Code::IllegalAccessPoint,
                "the request names no endpoints (the access point the client dialled)",
            ));
        };
        let Some(config) = self.topics.topics.get(&topic) else {
            return Err(status(
                Code::TopicNotFound,
                format!(
                    "topic {topic} does not exist on broker {}",
                    self.config.broker_name
                ),
            ));
        };
        let topic_perm = config.perm & self.config.broker_permission;
        if topic_perm & perm::READ == 0 || config.read_queue_nums == 0 {
            return Err(status(Code::Forbidden, "no readable queue"));
        }
        let subscribed = self
            .gateway
            .clients
            .get(&client.key)
            .and_then(|c| c.settings.as_ref())
            .and_then(|s| match &s.pub_sub {
                Some(v2::settings::PubSub::Subscription(sub)) => Some(sub.clone()),
                _ => None,
            })
            .filter(|s| !s.subscriptions.is_empty())
            .unwrap_or_else(|| v2::Subscription {
                subscriptions: vec![v2::SubscriptionEntry {
                    topic: Some(resource.clone()),
                    expression: None,
                }],
                ..Default::default()
            });
        let (fifo, _) = self.grpc_group_policy(&group, &subscribed, namespace);
        let permission = if topic_perm & perm::WRITE != 0 {
            v2::Permission::ReadWrite
        } else {
            v2::Permission::Read
        };
        let types: Vec<i32> = accepted_message_types(config)
            .unwrap_or_default()
            .into_iter()
            .map(|t| t as i32)
            .collect();
        let queue = |id: i32| v2::Assignment {
            message_queue: Some(v2::MessageQueue {
                topic: Some(resource.clone()),
                id,
                permission: permission as i32,
                broker: Some(v2::Broker {
                    name: self.config.broker_name.clone(),
                    id: 0,
                    endpoints: Some(endpoints.clone()),
                }),
                accept_message_types: types.clone(),
            }),
        };
        Ok(if fifo {
            (0..config.read_queue_nums as i32).map(queue).collect()
        } else {
            vec![queue(-1)]
        })
    }
}
