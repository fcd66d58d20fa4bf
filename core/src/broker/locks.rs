//! Queue locks of orderly consumers: LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42).
//!
//! A lock belongs to a client id within a group and lapses after [`LOCK_EXPIRY_MS`] without
//! being refreshed; a lock of a client that left the group is released at once. A queue has at
//! most one live lock per group. While a group holds a live lock, sends to its retry topic go
//! straight to its DLQ (send.rs): that is how orderly consumers dead-letter a message.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Broker;
use crate::remoting::codes::response;
use crate::remoting::lenient;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;

/// A lock not refreshed for this long may be taken by another client (`rebalance.lockMaxLiveTime`).
pub(super) const LOCK_EXPIRY_MS: u64 = 60_000;

/// RocketMQ's `MessageQueue` JSON; fields in alphabetical order, as Java writes them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    #[serde(default, deserialize_with = "lenient::string")]
    pub broker_name: String,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub queue_id: i32,
    #[serde(default, deserialize_with = "lenient::string")]
    pub topic: String,
}

/// LOCK_BATCH_MQ / UNLOCK_BATCH_MQ bodies, read as fastjson reads them (`remoting::lenient`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LockBatchRequestBody {
    #[serde(deserialize_with = "lenient::opt_string")]
    client_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    consumer_group: Option<String>,
    #[serde(deserialize_with = "lenient::opt_list")]
    mq_set: Option<Vec<MessageQueue>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    lock_ok_mq_set: Vec<MessageQueue>,
}

#[derive(Clone, Debug)]
struct LockEntry {
    client_id: String,
    last_update_ms: u64,
}

#[derive(Debug, Default)]
pub(super) struct LockTable {
    groups: BTreeMap<String, BTreeMap<MessageQueue, LockEntry>>,
}

impl LockTable {
    /// Locks what can be locked for `client_id`; returns the queues it now holds.
    fn lock(
        &mut self,
        now_ms: u64,
        group: &str,
        client_id: &str,
        mqs: &[MessageQueue],
    ) -> Vec<MessageQueue> {
        let table = self.groups.entry(group.to_owned()).or_default();
        let mut ok = BTreeSet::new();
        for mq in mqs {
            let free = match table.get(mq) {
                None => true,
                Some(e) => {
                    e.client_id == client_id
                        || now_ms.saturating_sub(e.last_update_ms) > LOCK_EXPIRY_MS
                }
            };
            if free {
                table.insert(
                    mq.clone(),
                    LockEntry {
                        client_id: client_id.to_owned(),
                        last_update_ms: now_ms,
                    },
                );
                ok.insert(mq.clone());
            }
        }
        ok.into_iter().collect()
    }

    fn unlock(&mut self, group: &str, client_id: &str, mqs: &[MessageQueue]) {
        if let Some(table) = self.groups.get_mut(group) {
            for mq in mqs {
                if table.get(mq).is_some_and(|e| e.client_id == client_id) {
                    table.remove(mq);
                }
            }
            if table.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    /// Frees every lock `client_id` holds in `group` (it left the group).
    pub fn release_client(&mut self, group: &str, client_id: &str) {
        if let Some(table) = self.groups.get_mut(group) {
            table.retain(|_, e| e.client_id != client_id);
            if table.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    /// Drops lapsed locks (bookkeeping only: a lapsed lock is free either way).
    pub fn expire(&mut self, now_ms: u64) {
        self.groups.retain(|_, table| {
            table.retain(|_, e| now_ms.saturating_sub(e.last_update_ms) <= LOCK_EXPIRY_MS);
            !table.is_empty()
        });
    }

    /// Whether some queue lock of `group` is still live (Java's `!isLockAllExpired`): the
    /// group consumes orderly, so its retry sends go straight to the DLQ.
    pub fn group_has_live_lock(&self, now_ms: u64, group: &str) -> bool {
        self.groups.get(group).is_some_and(|table| {
            table
                .values()
                .any(|e| now_ms.saturating_sub(e.last_update_ms) <= LOCK_EXPIRY_MS)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

fn parse_body(req: &RemotingCommand) -> Result<(String, String, Vec<MessageQueue>), String> {
    let body: LockBatchRequestBody = lenient::from_body(&req.body, "LockBatchRequestBody")?;
    let client_id = body
        .client_id
        .ok_or_else(|| "the lock request has no clientId".to_owned())?;
    let group = body
        .consumer_group
        .ok_or_else(|| "the lock request has no consumerGroup".to_owned())?;
    Ok((group, client_id, body.mq_set.unwrap_or_default()))
}

impl<S: SegmentStorage> Broker<S> {
    /// LOCK_BATCH_MQ (41).
    pub(super) fn handle_lock_batch(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> RemotingCommand {
        let (group, client_id, mqs) = match parse_body(req) {
            Ok(parsed) => parsed,
            Err(reason) => {
                return RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(reason))
            }
        };
        let locked = self.locks.lock(now_ms, &group, &client_id, &mqs);
        let body = serde_json::to_vec(&LockBatchResponseBody {
            lock_ok_mq_set: locked,
        })
        .unwrap_or_default();
        RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body)
    }

    /// UNLOCK_BATCH_MQ (42).
    pub(super) fn handle_unlock_batch(&mut self, req: &RemotingCommand) -> RemotingCommand {
        match parse_body(req) {
            Ok((group, client_id, mqs)) => {
                self.locks.unlock(&group, &client_id, &mqs);
                RemotingCommand::response_to(req, response::SUCCESS, None)
            }
            Err(reason) => RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(reason)),
        }
    }
}
