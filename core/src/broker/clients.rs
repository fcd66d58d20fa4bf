//! Producer and consumer registrations: HEART_BEAT (34), UNREGISTER_CLIENT (35),
//! GET_CONSUMER_LIST_BY_GROUP (38), CHECK_CLIENT_CONFIG (46), NOTIFY_CONSUMER_IDS_CHANGED (40,
//! broker → client), and expiry of silent clients.
//!
//! A registration is per connection ("channel" in RocketMQ): one client id may hold several.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Broker, BrokerOutput};
use crate::message::tag_hash_code;
use crate::remoting::codes::{request, response};
use crate::remoting::headers::{ConsumerGroupHeader, UnregisterClientRequestHeader};
use crate::remoting::lenient;
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::SegmentStorage;
use crate::topic::RETRY_GROUP_TOPIC_PREFIX;
use crate::ConnId;

/// A channel without a heartbeat for this long is evicted (`channelExpiredTimeout`).
pub(super) const CLIENT_EXPIRY_MS: u64 = 120_000;
/// How often silent channels are looked for.
pub(super) const CLIENT_SCAN_INTERVAL_MS: u64 = 10_000;

// ---- HeartbeatData (REMOTING.md §5.4): only `clientID` is required, and every field is read
// as fastjson reads it (`remoting::lenient`): the C++ client sends the enums as ordinals and
// `subVersion` as a string. ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct HeartbeatData {
    #[serde(rename = "clientID", deserialize_with = "lenient::opt_string")]
    client_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_list")]
    producer_data_set: Option<Vec<ProducerData>>,
    #[serde(deserialize_with = "lenient::opt_list")]
    consumer_data_set: Option<Vec<ConsumerData>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ProducerData {
    #[serde(deserialize_with = "lenient::opt_string")]
    group_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ConsumerData {
    #[serde(deserialize_with = "lenient::opt_string")]
    group_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_enum::<_, lenient::ConsumeType>")]
    consume_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_enum::<_, lenient::MessageModel>")]
    message_model: Option<String>,
    #[serde(deserialize_with = "lenient::opt_enum::<_, lenient::ConsumeFromWhere>")]
    consume_from_where: Option<String>,
    #[serde(deserialize_with = "lenient::opt_list")]
    subscription_data_set: Option<Vec<SubscriptionData>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SubscriptionData {
    #[serde(deserialize_with = "lenient::opt_string")]
    topic: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    sub_string: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    sub_version: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    expression_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct CheckClientRequestBody {
    subscription_data: Option<SubscriptionData>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerListBody<'a> {
    consumer_id_list: Vec<&'a str>,
}

/// A subscription as the broker filters with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Subscription {
    pub sub_string: String,
    /// `TAG` or `SQL92` (upper-cased; empty means TAG).
    pub expression_type: String,
    /// Hash codes of the subscribed tags, compared as Java ints; empty with `all`.
    pub codes: BTreeSet<i32>,
    /// `*` or an empty expression: every message matches.
    pub all: bool,
    pub sub_version: i64,
    /// The compiled selector of a non-TAG subscription.
    pub selector: Option<super::filter::CompiledSelector>,
}

impl Subscription {
    /// Builds a subscription from an expression (`*`, `tagA || tagB`, or SQL92 text).
    pub fn parse(sub_string: &str, expression_type: Option<&str>, sub_version: i64) -> Self {
        let expression_type = match expression_type.map(str::trim) {
            None | Some("") => "TAG".to_owned(),
            Some(t) => t.to_ascii_uppercase(),
        };
        let trimmed = sub_string.trim();
        let all = trimmed.is_empty() || trimmed == "*";
        let codes = if all || expression_type != "TAG" {
            BTreeSet::new()
        } else {
            trimmed
                .split("||")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| tag_hash_code(t) as i32)
                .collect()
        };
        let selector = (expression_type != "TAG")
            .then(|| super::filter::CompiledSelector::compile(&expression_type, sub_string));
        Self {
            sub_string: sub_string.to_owned(),
            expression_type,
            codes,
            all,
            sub_version,
            selector,
        }
    }

    pub fn is_tag(&self) -> bool {
        self.expression_type == "TAG"
    }

    /// Whether a ConsumeQueue unit's tags code passes.
    pub fn matches(&self, tags_code: i64) -> bool {
        self.all || self.codes.contains(&(tags_code as i32))
    }
}

/// One connection's registration in a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Channel {
    pub client_id: String,
    pub last_update_ms: u64,
    /// The client's `language` and `version` from its heartbeat's header (admin answers show
    /// them).
    pub language: String,
    pub version: i32,
}

#[derive(Debug, Default)]
pub(super) struct ConsumerGroup {
    pub channels: BTreeMap<ConnId, Channel>,
    pub message_model: String,
    pub consume_type: String,
    pub consume_from_where: String,
    pub subscriptions: BTreeMap<String, Subscription>,
}

impl ConsumerGroup {
    pub fn is_broadcasting(&self) -> bool {
        self.message_model.eq_ignore_ascii_case("BROADCASTING")
    }

    /// Client ids, sorted and without duplicates.
    pub fn client_ids(&self) -> Vec<&str> {
        let ids: BTreeSet<&str> = self
            .channels
            .values()
            .map(|c| c.client_id.as_str())
            .collect();
        ids.into_iter().collect()
    }
}

/// Who is connected as what.
#[derive(Debug, Default)]
pub(super) struct Clients {
    pub consumers: BTreeMap<String, ConsumerGroup>,
    pub producers: BTreeMap<String, BTreeMap<ConnId, Channel>>,
}

impl Clients {
    pub fn subscription(&self, group: &str, topic: &str) -> Option<&Subscription> {
        self.consumers.get(group)?.subscriptions.get(topic)
    }

    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty() && self.producers.is_empty()
    }

    /// Whether `client_id` still has a channel in `group`.
    pub fn has_consumer_client(&self, group: &str, client_id: &str) -> bool {
        self.consumers
            .get(group)
            .is_some_and(|g| g.channels.values().any(|c| c.client_id == client_id))
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// HEART_BEAT (34).
    pub(super) fn handle_heartbeat(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> RemotingCommand {
        let data: HeartbeatData = match lenient::from_body(&req.body, "HeartbeatData") {
            Ok(d) => d,
            Err(e) => {
                return RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e));
            }
        };
        let Some(client_id) = data.client_id.filter(|c| !c.is_empty()) else {
            return RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some("the body is not valid HeartbeatData: it has no clientID".to_owned()),
            );
        };
        let channel = Channel {
            client_id: client_id.clone(),
            last_update_ms: now_ms,
            language: req.language.clone(),
            version: req.version,
        };
        for producer in data.producer_data_set.unwrap_or_default() {
            if let Some(group) = producer.group_name.filter(|g| !g.is_empty()) {
                self.clients
                    .producers
                    .entry(group)
                    .or_default()
                    .insert(conn, channel.clone());
            }
        }
        for consumer in data.consumer_data_set.unwrap_or_default() {
            let Some(group_name) = consumer.group_name.filter(|g| !g.is_empty()) else {
                continue;
            };
            // A group name becomes part of a topic name (`%RETRY%<group>`) and a file: skip
            // groups that could not be one rather than create a topic nobody can use.
            if super::topics::validate_topic(&format!("{RETRY_GROUP_TOPIC_PREFIX}{group_name}"))
                .is_err()
            {
                continue;
            }
            self.ensure_group_on_heartbeat(now_ms, &group_name);
            let subscriptions: BTreeMap<String, Subscription> = consumer
                .subscription_data_set
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| {
                    let topic = s.topic.filter(|t| !t.is_empty())?;
                    let sub = Subscription::parse(
                        s.sub_string.as_deref().unwrap_or("*"),
                        s.expression_type.as_deref(),
                        s.sub_version.unwrap_or(0),
                    );
                    Some((topic, sub))
                })
                .collect();
            let group = self
                .clients
                .consumers
                .entry(group_name.clone())
                .or_default();
            let previous = group.channels.insert(conn, channel.clone());
            let channel_changed = previous.is_none_or(|p| p.client_id != client_id);
            let subs_changed = group.subscriptions.len() != subscriptions.len()
                || group.subscriptions.iter().zip(subscriptions.iter()).any(
                    |((ta, a), (tb, b))| {
                        ta != tb
                            || a.sub_string != b.sub_string
                            || a.expression_type != b.expression_type
                    },
                );
            // RocketMQ's updateSubscription: a topic's subscription is replaced only by a newer
            // version, so two members of a group whose heartbeats interleave never push the
            // newer one back (its pulls would get SUBSCRIPTION_NOT_LATEST until its next
            // heartbeat); topics no member subscribes any more are dropped.
            let mut merged = subscriptions;
            for (topic, new_sub) in merged.iter_mut() {
                if let Some(old) = group.subscriptions.get(topic) {
                    if old.sub_version > new_sub.sub_version {
                        *new_sub = old.clone();
                    }
                }
            }
            group.subscriptions = merged;
            group.message_model = consumer.message_model.unwrap_or_default();
            group.consume_type = consumer.consume_type.unwrap_or_default();
            group.consume_from_where = consumer.consume_from_where.unwrap_or_default();
            if channel_changed || subs_changed {
                self.notify_consumer_ids_changed(&group_name);
            }
        }
        // Never advertise heartbeat V2: clients keep sending full subscriptions.
        RemotingCommand::response_to(req, response::SUCCESS, None)
            .with_ext("IS_SUPPORT_HEART_BEAT_V2", "false")
            .with_ext("IS_SUB_CHANGE", "true")
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every channel of `group`, unless the
    /// group's `notifyConsumerIdsChangedEnable` is off. As RocketMQ's
    /// `ConsumerManager.registerConsumer` and channel-close handling do, a member that just
    /// registered is notified too: its rebalance then runs at once with the retry topic's route
    /// and the group's members known, instead of at its next periodic rebalance (20 s).
    pub(super) fn notify_consumer_ids_changed(&mut self, group: &str) {
        let enabled = self
            .subscription_groups()
            .get(group)
            .is_none_or(|g| g.notify_consumer_ids_changed_enable);
        let Some(g) = self.clients.consumers.get(group).filter(|_| enabled) else {
            return;
        };
        let conns: Vec<ConnId> = g.channels.keys().copied().collect();
        for conn in conns {
            let mut command = RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED);
            ConsumerGroupHeader {
                consumer_group: group.to_owned(),
            }
            .write_to(&mut command);
            command.mark_oneway();
            command.opaque = self.next_opaque();
            self.outputs.push_back(BrokerOutput::Send { conn, command });
        }
    }

    /// Removes `conn` from a consumer group; notifies the rest and frees the client's queue
    /// locks when it has no other channel there. Drops the group when it becomes empty.
    fn remove_consumer_channel(&mut self, group: &str, conn: ConnId) {
        let Some(g) = self.clients.consumers.get_mut(group) else {
            return;
        };
        let Some(channel) = g.channels.remove(&conn) else {
            return;
        };
        let empty = g.channels.is_empty();
        if empty {
            self.clients.consumers.remove(group);
        } else {
            self.notify_consumer_ids_changed(group);
        }
        if !self.clients.has_consumer_client(group, &channel.client_id) {
            self.locks.release_client(group, &channel.client_id);
        }
    }

    /// Forgets every registration of a connection (closed or silent).
    pub(super) fn remove_connection_registrations(&mut self, conn: ConnId) {
        let groups: Vec<String> = self
            .clients
            .consumers
            .iter()
            .filter(|(_, g)| g.channels.contains_key(&conn))
            .map(|(name, _)| name.clone())
            .collect();
        for group in groups {
            self.remove_consumer_channel(&group, conn);
        }
        self.clients.producers.retain(|_, channels| {
            channels.remove(&conn);
            !channels.is_empty()
        });
    }

    /// Evicts channels silent for [`CLIENT_EXPIRY_MS`].
    pub(super) fn expire_clients(&mut self, now_ms: u64) {
        let expired = |c: &Channel| now_ms.saturating_sub(c.last_update_ms) > CLIENT_EXPIRY_MS;
        let stale: Vec<(String, ConnId)> = self
            .clients
            .consumers
            .iter()
            .flat_map(|(name, g)| {
                g.channels
                    .iter()
                    .filter(|(_, c)| expired(c))
                    .map(move |(conn, _)| (name.clone(), *conn))
            })
            .collect();
        for (group, conn) in stale {
            self.remove_consumer_channel(&group, conn);
        }
        self.clients.producers.retain(|_, channels| {
            channels.retain(|_, c| !expired(c));
            !channels.is_empty()
        });
    }

    /// UNREGISTER_CLIENT (35).
    pub(super) fn handle_unregister_client(
        &mut self,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = UnregisterClientRequestHeader::parse(req)?;
        if let Some(group) = h.producer_group.as_deref() {
            if let Some(channels) = self.clients.producers.get_mut(group) {
                channels.remove(&conn);
                if channels.is_empty() {
                    self.clients.producers.remove(group);
                }
            }
        }
        if let Some(group) = h.consumer_group.as_deref() {
            self.remove_consumer_channel(group, conn);
        }
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None))
    }

    /// GET_CONSUMER_LIST_BY_GROUP (38): sorted client ids; SYSTEM_ERROR when none, as Java.
    pub(super) fn handle_get_consumer_list(
        &mut self,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = ConsumerGroupHeader::parse(req)?;
        let ids = self
            .clients
            .consumers
            .get(&h.consumer_group)
            .map(ConsumerGroup::client_ids)
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!("no consumer for this group, {}", h.consumer_group)),
            ));
        }
        let body = serde_json::to_vec(&ConsumerListBody {
            consumer_id_list: ids,
        })
        .unwrap_or_default();
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body))
    }

    /// CHECK_CLIENT_CONFIG (46): TAG subscriptions are fine; others need `enablePropertyFilter`
    /// and an expression that compiles (SUBSCRIPTION_PARSE_FAILED with the compiler's message).
    pub(super) fn handle_check_client_config(&mut self, req: &RemotingCommand) -> RemotingCommand {
        let body: CheckClientRequestBody =
            match lenient::from_body(&req.body, "CheckClientRequestBody") {
                Ok(b) => b,
                Err(e) => {
                    return RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e));
                }
            };
        let data = body.subscription_data.unwrap_or_default();
        let expression_type = data.expression_type.unwrap_or_default();
        let expression_type = expression_type.trim().to_ascii_uppercase();
        if expression_type.is_empty() || expression_type == "TAG" {
            return RemotingCommand::response_to(req, response::SUCCESS, None);
        }
        if !self.config.enable_property_filter {
            return RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(super::filter::unsupported_remark(&expression_type)),
            );
        }
        let expression = data.sub_string.unwrap_or_default();
        match super::filter::CompiledSelector::compile(&expression_type, &expression).0 {
            Ok(_) => RemotingCommand::response_to(req, response::SUCCESS, None),
            Err(e) => RemotingCommand::response_to(
                req,
                response::SUBSCRIPTION_PARSE_FAILED,
                Some(e.to_string()),
            ),
        }
    }
}
