//! Who a client is: Telemetry settings, Heartbeat and NotifyClientTermination.
//!
//! Every official client opens a Telemetry stream and writes its `Settings` first; most of them
//! wait for the server's reply before they finish starting (Java 6 s, Go and Node forever). The
//! reply is the client's settings merged with the broker's, as RocketMQ's proxy merges them:
//!
//! * producer: an exponential back-off of 3 attempts (10 ms doubling to 1 s), message-type
//!   validation on, the broker's largest body, metrics off. Node crashes on a reply without an
//!   exponential back-off, and every client refuses all sends with a zero `max_body_size`;
//! * consumer: batches of 32, long polls of 20 s, `fifo` from the group, the group's retry
//!   policy as `max_attempts = retryMaxTimes + 1` with RocketMQ's customized back-off of delay
//!   levels 3 and up (1 s … 2 h), metrics off.
//!
//! The stream stays open (closing it makes Java and Node reconnect in a loop); the reply always
//! carries status OK (Python ignores one without).
//!
//! Heartbeats and settings register the client with the broker as a remoting client would:
//! a HEART_BEAT on its virtual connection naming its consumer group (consume type CONSUME_POP)
//! and, as producer groups, the topics it publishes to (the proxy's rule for transactional
//! messages, whose producer group is their topic), so admin tools list it and the transaction
//! check finds it.

use super::message::{duration_of_ms, wrap_namespace};
use super::route::accepted_message_types;
use super::status::ok;
use super::v2;
use super::{CallId, ClientRef, GrpcOutput, GrpcReply, TransportError, GRPC_INVALID_ARGUMENT};
use crate::broker::Broker;
use crate::client::requests::{
    heartbeat, ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel,
    SubscriptionData,
};
use crate::store::SegmentStorage;

/// The producer's retry policy in the reply: 3 attempts, 10 ms doubling up to 1 s.
const PRODUCER_MAX_ATTEMPTS: i32 = 3;
const PRODUCER_BACKOFF_INITIAL_MS: u64 = 10;
const PRODUCER_BACKOFF_MAX_MS: u64 = 1_000;
const PRODUCER_BACKOFF_MULTIPLIER: f32 = 2.0;

/// A consumer's batch size and long poll in the reply (RocketMQ's proxy defaults).
pub const CONSUMER_RECEIVE_BATCH_SIZE: i32 = 32;
pub const CONSUMER_LONG_POLLING_TIMEOUT_MS: u64 = 20_000;

/// The delays of RocketMQ's retry levels 3–18 (`messageDelayLevel` without its first two):
/// what a push consumer waits before the n-th redelivery of a message it failed.
pub const CUSTOMIZED_BACKOFF_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// RocketMQ's default `retryMaxTimes` of a subscription group.
const DEFAULT_RETRY_MAX_TIMES: i32 = 16;

/// The remoting `LanguageCode`s; a client's `x-mq-language` outside them shows as OTHER.
const REMOTING_LANGUAGES: &[&str] = &[
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST",
];

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_telemetry_command(
        &mut self,
        now_ms: u64,
        stream: CallId,
        key: &str,
        command: v2::TelemetryCommand,
    ) {
        match command.command {
            Some(v2::telemetry_command::Command::Settings(settings)) => {
                self.grpc_settings(now_ms, stream, key, settings)
            }
            // Answers to relayed admin requests ([`super::relay`]).
            Some(v2::telemetry_command::Command::ThreadStackTrace(trace)) => {
                self.grpc_thread_stack_trace(now_ms, command.status, trace)
            }
            Some(v2::telemetry_command::Command::VerifyMessageResult(result)) => {
                self.grpc_verify_message_result(now_ms, command.status, result)
            }
            // Commands only a server sends need nothing.
            _ => {}
        }
    }

    fn grpc_settings(&mut self, now_ms: u64, stream: CallId, key: &str, settings: v2::Settings) {
        let Some(client) = self.gateway.clients.get(key) else {
            return;
        };
        let namespace = client.meta.namespace.clone();
        let reply = match &settings.pub_sub {
            Some(v2::settings::PubSub::Publishing(publishing)) => {
                let mut publishing = publishing.clone();
                publishing.validate_message_type = true;
                publishing.max_body_size =
                    i32::try_from(self.store.config().max_message_size_bytes).unwrap_or(i32::MAX);
                v2::Settings {
                    backoff_policy: Some(producer_backoff()),
                    pub_sub: Some(v2::settings::PubSub::Publishing(publishing)),
                    metric: Some(metrics_off()),
                    ..settings.clone()
                }
            }
            Some(v2::settings::PubSub::Subscription(subscription)) => {
                let group = subscription
                    .group
                    .as_ref()
                    .map(|g| wrap_namespace(g, &namespace))
                    .unwrap_or_default();
                let (fifo, retry_max_times) =
                    self.grpc_group_policy(&group, subscription, &namespace);
                let mut subscription = subscription.clone();
                subscription.fifo = Some(fifo);
                subscription.receive_batch_size = Some(CONSUMER_RECEIVE_BATCH_SIZE);
                subscription.long_polling_timeout =
                    Some(duration_of_ms(CONSUMER_LONG_POLLING_TIMEOUT_MS));
                v2::Settings {
                    backoff_policy: Some(consumer_backoff(retry_max_times)),
                    pub_sub: Some(v2::settings::PubSub::Subscription(subscription)),
                    metric: Some(metrics_off()),
                    ..settings.clone()
                }
            }
            None => {
                // As the proxy: settings without publishing or subscription are refused.
                self.gateway.outputs.push_back(GrpcOutput::EndStream {
                    stream,
                    error: TransportError {
                        code: GRPC_INVALID_ARGUMENT,
                        message: "settings name neither publishing nor subscription".to_owned(),
                    },
                });
                return;
            }
        };
        if let Some(client) = self.gateway.clients.get_mut(key) {
            client.client_type = settings
                .client_type
                .and_then(|t| v2::ClientType::try_from(t).ok());
            match &settings.pub_sub {
                Some(v2::settings::PubSub::Publishing(p)) => {
                    for topic in &p.topics {
                        client
                            .producer_topics
                            .insert(wrap_namespace(topic, &namespace));
                    }
                }
                Some(v2::settings::PubSub::Subscription(s)) => {
                    client.group = s.group.as_ref().map(|g| wrap_namespace(g, &namespace));
                }
                None => {}
            }
            client.settings = Some(settings);
        }
        self.gateway.outputs.push_back(GrpcOutput::Telemetry {
            stream,
            command: Box::new(v2::TelemetryCommand {
                status: Some(ok()),
                command: Some(v2::telemetry_command::Command::Settings(reply)),
            }),
        });
        self.grpc_register(now_ms, key);
    }

    /// A consumer group's FIFO flag and retry limit: the group's `consumeMessageOrderly` (or
    /// every subscribed topic declaring `message.type=FIFO`) and its `retryMaxTimes`.
    pub(crate) fn grpc_group_policy(
        &self,
        group: &str,
        subscription: &v2::Subscription,
        namespace: &str,
    ) -> (bool, i32) {
        let config = self.subscription_groups().get(group);
        let orderly_group = config.is_some_and(|c| c.consume_message_orderly);
        let fifo_topics = !subscription.subscriptions.is_empty()
            && subscription.subscriptions.iter().all(|entry| {
                entry
                    .topic
                    .as_ref()
                    .and_then(|t| self.topics.topics.get(&wrap_namespace(t, namespace)))
                    .and_then(accepted_message_types)
                    .is_some_and(|types| types == [v2::MessageType::Fifo])
            });
        let retry_max_times = config.map_or(DEFAULT_RETRY_MAX_TIMES, |c| c.retry_max_times);
        (orderly_group || fifo_topics, retry_max_times)
    }

    pub(super) fn grpc_heartbeat(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::HeartbeatRequest,
    ) {
        if let Some(c) = self.gateway.clients.get_mut(&client.key) {
            if let Some(group) = &request.group {
                c.group = Some(wrap_namespace(group, &client.meta.namespace));
            }
            if let Ok(t) = v2::ClientType::try_from(request.client_type) {
                if t != v2::ClientType::Unspecified {
                    c.client_type = Some(t);
                }
            }
        }
        self.grpc_register(now_ms, &client.key);
        self.gateway.reply(
            call,
            GrpcReply::Heartbeat(v2::HeartbeatResponse { status: Some(ok()) }),
        );
    }

    pub(super) fn grpc_notify_termination(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        _request: v2::NotifyClientTerminationRequest,
    ) {
        // Closing its virtual connection unregisters it everywhere, as a closed remoting
        // channel does; its Telemetry streams end on their own.
        self.grpc_drop_client(now_ms, &client.key);
        self.gateway.reply(
            call,
            GrpcReply::NotifyClientTermination(v2::NotifyClientTerminationResponse {
                status: Some(ok()),
            }),
        );
    }

    /// Writes a HEART_BEAT for the client on its virtual connection: its producer topics as
    /// producer groups, its consumer group with its subscriptions.
    pub(crate) fn grpc_register(&mut self, now_ms: u64, key: &str) {
        let Some(client) = self.gateway.clients.get(key) else {
            return;
        };
        let namespace = &client.meta.namespace;
        let mut data = HeartbeatData {
            client_id: key.to_owned(),
            producer_groups: client.producer_topics.iter().cloned().collect(),
            consumers: Vec::new(),
        };
        if let Some(group) = client.group.clone() {
            let subscriptions = match client.settings.as_ref().and_then(|s| s.pub_sub.as_ref()) {
                Some(v2::settings::PubSub::Subscription(s)) => s
                    .subscriptions
                    .iter()
                    .filter_map(|entry| {
                        let topic = wrap_namespace(entry.topic.as_ref()?, namespace);
                        let expression = entry.expression.clone().unwrap_or_default();
                        if expression.r#type == v2::FilterType::Sql as i32 {
                            SubscriptionData::sql92(&topic, &expression.expression, 0).ok()
                        } else {
                            Some(SubscriptionData::tag(&topic, &expression.expression, 0))
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            data.consumers.push(ConsumerData {
                consume_from_where: ConsumeFromWhere::LastOffset,
                consume_type: ConsumeType::Pop,
                group_name: group,
                message_model: MessageModel::Clustering,
                subscription_data_set: subscriptions,
                unit_mode: false,
            });
        }
        if data.producer_groups.is_empty() && data.consumers.is_empty() {
            return;
        }
        let language = client.meta.language.to_ascii_uppercase();
        let mut command = heartbeat(&data);
        command.language = if REMOTING_LANGUAGES.contains(&language.as_str()) {
            language
        } else {
            "OTHER".to_owned()
        };
        let conn = client.conn;
        self.grpc_submit(
            now_ms,
            conn,
            command,
            super::Pending {
                call: None,
                what: super::PendingKind::Ignored,
            },
        );
    }
}

fn producer_backoff() -> v2::RetryPolicy {
    v2::RetryPolicy {
        max_attempts: PRODUCER_MAX_ATTEMPTS,
        strategy: Some(v2::retry_policy::Strategy::ExponentialBackoff(
            v2::ExponentialBackoff {
                initial: Some(duration_of_ms(PRODUCER_BACKOFF_INITIAL_MS)),
                max: Some(duration_of_ms(PRODUCER_BACKOFF_MAX_MS)),
                multiplier: PRODUCER_BACKOFF_MULTIPLIER,
            },
        )),
    }
}

fn consumer_backoff(retry_max_times: i32) -> v2::RetryPolicy {
    v2::RetryPolicy {
        max_attempts: retry_max_times.saturating_add(1).max(1),
        strategy: Some(v2::retry_policy::Strategy::CustomizedBackoff(
            v2::CustomizedBackoff {
                next: CUSTOMIZED_BACKOFF_MS
                    .iter()
                    .map(|&ms| duration_of_ms(ms))
                    .collect(),
            },
        )),
    }
}

fn metrics_off() -> v2::Metric {
    v2::Metric {
        on: false,
        endpoints: None,
    }
}
