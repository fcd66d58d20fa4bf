//! SET_MESSAGE_REQUEST_MODE (401) and QUERY_ASSIGNMENT (400) (RocketMQ's
//! `QueryAssignmentProcessor`): a group is switched to POP per topic, and a client that lets
//! the broker balance asks which queues to read and how.
//!
//! Modes are kept in `config/messageRequestMode.json`, RocketMQ's shape:
//! `{"messageRequestModeMap":{"<topic>":{"<group>":{"consumerGroup":…,"mode":"POP",
//! "popShareQueueNum":0,"topic":…}}}}`.
//!
//! The queues assigned are this broker's. RocketMQ's broker asks its NameServer for the
//! topic's route and assigns the queues of every broker; a client of a topic spread over
//! several brokers asks each of them here, so it should ask every broker it reads from.

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

    /// QUERY_ASSIGNMENT (400): the queues of this broker a client should read, and in which
    /// mode. POP with `popShareQueueNum` ≤ 0 (or at least the other clients): every client
    /// gets "any queue" (−1) and the broker spreads them; otherwise the client's share plus
    /// that of the next `popShareQueueNum` clients. PULL: the named strategy (AVG,
    /// AVG_BY_CIRCLE).
    pub(in crate::broker) fn handle_query_assignment(
        &mut self,
        req: &RemotingCommand,
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
        let queues = self.assign(&body, mode, share);
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

    /// `doLoadBalance` over this broker's readable queues; `None` when nothing can be said
    /// (unknown topic, or a client the broker has not seen a heartbeat from).
    fn assign(
        &self,
        body: &QueryAssignmentRequestBody,
        mode: MessageRequestMode,
        share: i32,
    ) -> Option<Vec<MessageQueue>> {
        let config = self.topics.topics.get(&body.topic)?;
        let broker = self.config.broker_name.clone();
        let all: Vec<MessageQueue> = (0..config.read_queue_nums as i32)
            .map(|q| MessageQueue::new(body.topic.clone(), broker.clone(), q))
            .collect();
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
                    return Some(vec![MessageQueue::new(body.topic.clone(), broker, -1)]);
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
