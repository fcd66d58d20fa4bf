//! SET_MESSAGE_REQUEST_MODE (401) and QUERY_ASSIGNMENT (400) (RocketMQ's
//! `QueryAssignmentProcessor`): a group is switched to POP per topic, and a client that lets
//! the broker balance asks which queues to read and how.
//!
//! Modes are kept in `config/messageRequestMode.json`, RocketMQ's shape:
//! `{"messageRequestModeMap":{"<topic>":{"<group>":{"consumerGroup":…,"mode":"POP",
//! "popShareQueueNum":0,"topic":…}}}}`.
//!
//! The queues assigned are those of every broker of the topic, as RocketMQ's broker assigns
//! them: the broker asks its NameServer for the topic's route (GET_ROUTEINFO_BY_TOPIC) and
//! answers once the route is in. Without a NameServer, or when it does not answer within
//! [`ROUTE_WAIT_MS`], the answer holds this broker's queues alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::{Broker, BrokerError};
use crate::client::allocate::{allocate_averagely, allocate_averagely_by_circle};
use crate::client::MessageQueue;
use crate::remoting::codes::response;
use crate::remoting::pop::{
    AssignedQueue, MessageQueueAssignment, MessageRequestMode, QueryAssignmentRequestBody,
    QueryAssignmentResponseBody, SetMessageRequestModeBody,
};
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::topic::RETRY_GROUP_TOPIC_PREFIX;

pub(in crate::broker) const REQUEST_MODE_PATH: &str = "config/messageRequestMode.json";

/// How long QUERY_ASSIGNMENT waits for the topic's route from the NameServer.
pub const ROUTE_WAIT_MS: u64 = 3_000;

/// A QUERY_ASSIGNMENT waiting for its topic's route.
#[derive(Clone, Debug)]
pub struct PendingAssignment {
    pub conn: crate::ConnId,
    pub request: RemotingCommand,
    pub deadline_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModeFile {
    #[serde(default)]
    message_request_mode_map: BTreeMap<String, BTreeMap<String, SetMessageRequestModeBody>>,
}

/// Each (topic, group)'s request mode.
#[derive(Debug, Default)]
pub struct RequestModes {
    file: ModeFile,
}

impl RequestModes {
    pub fn load<S: SegmentStorage>(storage: &S) -> Result<Self, BrokerError> {
        let file: Option<ModeFile> = super::super::load_json_config(storage, REQUEST_MODE_PATH)?;
        Ok(Self {
            file: file.unwrap_or_default(),
        })
    }

    pub fn get(&self, topic: &str, group: &str) -> Option<&SetMessageRequestModeBody> {
        self.file.message_request_mode_map.get(topic)?.get(group)
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// SET_MESSAGE_REQUEST_MODE (401).
    pub(in crate::broker) fn handle_set_message_request_mode(
        &mut self,
        req: &RemotingCommand,
    ) -> RemotingCommand {
        let answer =
            |code: i32, remark: String| RemotingCommand::response_to(req, code, Some(remark));
        let body: SetMessageRequestModeBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => {
                return answer(
                    response::SYSTEM_ERROR,
                    format!("the request mode body does not parse: {e}"),
                )
            }
        };
        if body.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            return answer(
                response::NO_PERMISSION,
                "retry topic is not allowed to set mode".to_owned(),
            );
        }
        if !self.topics.topics.contains_key(&body.topic) {
            return answer(
                response::TOPIC_NOT_EXIST,
                format!("topic[{}] not exist", body.topic),
            );
        }
        if !self
            .subscription_groups()
            .contains_key(&body.consumer_group)
        {
            return answer(
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group[{}] not exist", body.consumer_group),
            );
        }
        let (topic, group) = (body.topic.clone(), body.consumer_group.clone());
        let map = &mut self.pop.modes.file.message_request_mode_map;
        let previous = map
            .entry(topic.clone())
            .or_default()
            .insert(group.clone(), body);
        let json = serde_json::to_vec(&self.pop.modes.file).unwrap_or_default();
        if let Err(e) = self.store.storage_mut().replace(REQUEST_MODE_PATH, &json) {
            // Undone, so what was answered is what a restart finds.
            let groups = self
                .pop
                .modes
                .file
                .message_request_mode_map
                .entry(topic.clone())
                .or_default();
            match previous {
                Some(p) => {
                    groups.insert(group, p);
                }
                None => {
                    groups.remove(&group);
                }
            }
            return answer(
                response::SYSTEM_ERROR,
                format!("writing {REQUEST_MODE_PATH} failed: {e}"),
            );
        }
        RemotingCommand::response_to(req, response::SUCCESS, None)
    }

    /// QUERY_ASSIGNMENT (400): asks the NameServer for the topic's route first (`None`:
    /// answered when it arrives); see [`Self::answer_query_assignment`].
    pub(in crate::broker) fn handle_query_assignment(
        &mut self,
        now_ms: u64,
        conn: crate::ConnId,
        req: &RemotingCommand,
    ) -> Option<RemotingCommand> {
        let Some(addr) = self.config.namesrv_addrs.first().cloned() else {
            return Some(self.answer_query_assignment(req, None));
        };
        let Ok(body) = serde_json::from_slice::<QueryAssignmentRequestBody>(&req.body) else {
            return Some(self.answer_query_assignment(req, None));
        };
        let mut ask =
            RemotingCommand::request(crate::remoting::codes::request::GET_ROUTEINFO_BY_TOPIC)
                .with_ext("topic", &body.topic);
        ask.opaque = self.next_opaque();
        self.pop.pending_assignments.insert(
            ask.opaque,
            PendingAssignment {
                conn,
                request: req.clone(),
                deadline_ms: now_ms + ROUTE_WAIT_MS,
            },
        );
        self.outputs
            .push_back(super::super::BrokerOutput::SendToNamesrv { addr, command: ask });
        None
    }

    /// A NameServer's answer: the route a held QUERY_ASSIGNMENT waited for. `false`: it was
    /// not one.
    pub(in crate::broker) fn handle_assignment_route(&mut self, answer: &RemotingCommand) -> bool {
        let Some(pending) = self.pop.pending_assignments.remove(&answer.opaque) else {
            return false;
        };
        let route = (answer.code == response::SUCCESS)
            .then(|| crate::namesrv::route::TopicRouteData::parse(&answer.body).ok())
            .flatten();
        let reply = self.answer_query_assignment(&pending.request, route.as_ref());
        self.reply(pending.conn, &pending.request, reply);
        true
    }

    /// Answers QUERY_ASSIGNMENTs whose route did not come in time (`all`: every one, at
    /// shutdown), from this broker's queues.
    pub(in crate::broker) fn expire_pending_assignments(&mut self, now_ms: u64, all: bool) {
        let due: Vec<i32> = self
            .pop
            .pending_assignments
            .iter()
            .filter(|(_, p)| all || p.deadline_ms <= now_ms)
            .map(|(opaque, _)| *opaque)
            .collect();
        for opaque in due {
            if let Some(p) = self.pop.pending_assignments.remove(&opaque) {
                let reply = self.answer_query_assignment(&p.request, None);
                self.reply(p.conn, &p.request, reply);
            }
        }
    }

    /// QUERY_ASSIGNMENT's answer: the queues a client should read, and in which mode, over
    /// the readable queues of `route` (this broker's alone without one). POP with
    /// `popShareQueueNum` ≤ 0 (or at least the other clients): every client gets "any
    /// queue" (−1) of every broker, and the brokers spread them; otherwise the client's share
    /// plus that of the next `popShareQueueNum` clients. PULL: the named strategy (AVG,
    /// AVG_BY_CIRCLE).
    fn answer_query_assignment(
        &self,
        req: &RemotingCommand,
        route: Option<&crate::namesrv::route::TopicRouteData>,
    ) -> RemotingCommand {
        let body: QueryAssignmentRequestBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => {
                return RemotingCommand::response_to(
                    req,
                    response::SYSTEM_ERROR,
                    Some(format!("the assignment request body does not parse: {e}")),
                )
            }
        };
        let (mode, share) = match self.pop.modes.get(&body.topic, &body.consumer_group) {
            Some(m) => (m.mode, m.pop_share_queue_num),
            None if body.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) => {
                (MessageRequestMode::Pull, 0)
            }
            None => (
                self.config.pop.default_message_request_mode,
                self.config.pop.default_pop_share_queue_num,
            ),
        };
        let queues = self.assign(&body, mode, share, route);
        let out = QueryAssignmentResponseBody {
            message_queue_assignments: queues.map(|qs| {
                qs.into_iter()
                    .map(|q| MessageQueueAssignment {
                        message_queue: AssignedQueue {
                            broker_name: q.broker_name,
                            queue_id: q.queue_id,
                            topic: q.topic,
                        },
                        mode,
                    })
                    .collect()
            }),
        };
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_body(serde_json::to_vec(&out).unwrap_or_default())
    }

    /// `doLoadBalance` over the readable queues of the route (or of this broker); `None` when
    /// nothing can be said (unknown topic, or a client the broker has not seen a heartbeat
    /// from).
    fn assign(
        &self,
        body: &QueryAssignmentRequestBody,
        mode: MessageRequestMode,
        share: i32,
        route: Option<&crate::namesrv::route::TopicRouteData>,
    ) -> Option<Vec<MessageQueue>> {
        let mut all: Vec<MessageQueue> = match route {
            Some(route) => route
                .queue_datas
                .iter()
                .filter(|q| q.perm & crate::topic::perm::READ != 0)
                .flat_map(|q| {
                    (0..q.read_queue_nums as i32)
                        .map(|id| MessageQueue::new(body.topic.clone(), q.broker_name.clone(), id))
                })
                .collect(),
            None => {
                let config = self.topics.topics.get(&body.topic)?;
                (0..config.read_queue_nums as i32)
                    .map(|q| {
                        MessageQueue::new(body.topic.clone(), self.config.broker_name.clone(), q)
                    })
                    .collect()
            }
        };
        all.sort();
        all.dedup();
        if all.is_empty() {
            return None;
        }
        if body
            .message_model
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("BROADCASTING"))
        {
            return Some(all);
        }
        let clients: Vec<String> = self
            .clients
            .consumers
            .get(&body.consumer_group)
            .map(|g| g.client_ids().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        if !clients.contains(&body.client_id) {
            return None;
        }
        match mode {
            MessageRequestMode::Pop => {
                if share <= 0 || share as usize >= clients.len().saturating_sub(1) {
                    let mut brokers: Vec<&String> = all.iter().map(|q| &q.broker_name).collect();
                    brokers.dedup();
                    return Some(
                        brokers
                            .into_iter()
                            .map(|b| MessageQueue::new(body.topic.clone(), b.clone(), -1))
                            .collect(),
                    );
                }
                if clients.len() > all.len() {
                    let index = clients.iter().position(|c| *c == body.client_id)?;
                    return Some(vec![all[index % all.len()].clone()]);
                }
                let index = clients.iter().position(|c| *c == body.client_id)?;
                let mut out: Vec<MessageQueue> = Vec::new();
                for i in 0..=share as usize {
                    let cid = &clients[(index + i) % clients.len()];
                    for q in allocate_averagely(cid, &all, &clients) {
                        if !out.contains(&q) {
                            out.push(q);
                        }
                    }
                }
                Some(out)
            }
            MessageRequestMode::Pull => match body.strategy_name.as_deref() {
                Some("AVG_BY_CIRCLE") => Some(allocate_averagely_by_circle(
                    &body.client_id,
                    &all,
                    &clients,
                )),
                Some("AVG") | None => Some(allocate_averagely(&body.client_id, &all, &clients)),
                Some(_) => None,
            },
        }
    }
}
