//! The async push consumer: the core's [`PushConsumer`](vostok_core::client::PushConsumer)
//! state machine on an owner task, with the application's listener (concurrent or orderly) on
//! tasks of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::debug;
use vostok_core::client::requests::{ConsumeFromWhere, MessageModel};
use vostok_core::client::{
    AllocateStrategy, ClientError, ClientOutput, ConsumeOrderlyStatus, ConsumeStatus, ConsumeToken,
    MessageQueue, OrderlyConfig, PushConsumer as CorePushConsumer, PushConsumerConfig,
};

use super::driver::{Control, Driven, Owner};
use super::listener::{Dispatcher, MessageListener, MessageListenerOrderly, OrderlyDispatcher};
use super::net::{NetEvent, Pool};
use super::options::{common_builder_methods, CommonOptions};

/// Listener calls running at once by default (RocketMQ's `consumeThreadMin`).
const DEFAULT_CONSUME_CONCURRENCY: usize = 20;

/// Configures a [`PushConsumer`]. Defaults are RocketMQ's `DefaultMQPushConsumer` defaults.
#[derive(Clone, Default)]
pub struct PushConsumerBuilder {
    common: CommonOptions,
    config: PushConsumerConfig,
    group_set: bool,
    /// Topic, expression, and whether the expression is SQL92 (else TAG).
    subscriptions: Vec<(String, String, bool)>,
    listener: Option<Arc<dyn MessageListener>>,
    orderly_listener: Option<Arc<dyn MessageListenerOrderly>>,
    /// Orderly settings, used with an orderly listener.
    orderly: OrderlyConfig,
    /// `max_reconsume_times` was called (else orderly consumers retry locally forever).
    max_reconsume_times_set: bool,
    consume_concurrency: Option<usize>,
    local_offsets: BTreeMap<MessageQueue, i64>,
}

impl PushConsumerBuilder {
    common_builder_methods!();

    /// The consumer group (required).
    pub fn group(mut self, group: &str) -> Self {
        self.config.consumer_group = group.to_owned();
        self.group_set = true;
        self
    }

    /// Subscribes `topic` with a TAG expression: `*` for every message, or `tagA || tagB`.
    /// May be called for several topics.
    pub fn subscribe(mut self, topic: &str, expression: &str) -> Self {
        self.subscriptions
            .push((topic.to_owned(), expression.to_owned(), false));
        self
    }

    /// Subscribes `topic` with an SQL92 property selector, e.g. `a BETWEEN 3 AND 5 AND
    /// color = 'red'`, which brokers with `enablePropertyFilter=true` evaluate. An expression
    /// that does not compile makes `start` fail with [`ClientError::InvalidSubscription`].
    pub fn subscribe_sql(mut self, topic: &str, expression: &str) -> Self {
        self.subscriptions
            .push((topic.to_owned(), expression.to_owned(), true));
        self
    }

    /// Clustering (each message to one consumer of the group, the default) or broadcasting
    /// (each message to every consumer; offsets kept locally).
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.config.message_model = model;
        self
    }

    /// Where a group with no committed offset starts (default: the last offset).
    pub fn consume_from(mut self, from: ConsumeFromWhere) -> Self {
        self.config.consume_from_where = from;
        self
    }

    /// The instant [`ConsumeFromWhere::Timestamp`] starts from (epoch ms; default: 30 minutes
    /// before start).
    pub fn consume_timestamp_ms(mut self, timestamp_ms: u64) -> Self {
        self.config.consume_timestamp_ms = Some(timestamp_ms);
        self
    }

    /// How the group's queues are split among its consumers (default: averagely).
    pub fn allocate(mut self, strategy: AllocateStrategy) -> Self {
        self.config.allocate_strategy = strategy;
        self
    }

    /// Most messages per listener call (`consumeMessageBatchMaxSize`, default 1).
    pub fn consume_batch_size(mut self, size: usize) -> Self {
        self.config.consume_message_batch_max_size = size.max(1);
        self
    }

    /// Listener calls running at once (default 20).
    pub fn consume_concurrency(mut self, tasks: usize) -> Self {
        self.consume_concurrency = Some(tasks);
        self
    }

    /// Messages asked per pull (`pullBatchSize`, default 32).
    pub fn pull_batch_size(mut self, size: i32) -> Self {
        self.config.pull_batch_size = size;
        self
    }

    /// Unconsumed messages per queue before pulling pauses (`pullThresholdForQueue`, 1000).
    pub fn pull_threshold_for_queue(mut self, messages: usize) -> Self {
        self.config.pull_threshold_for_queue = messages;
        self
    }

    /// Rebalance period (default 20 s; a group change notified by the broker rebalances at once).
    pub fn rebalance_interval(mut self, interval: Duration) -> Self {
        self.config.rebalance_interval_ms = interval.as_millis() as u64;
        self
    }

    /// Offset commit period (`persistConsumerOffsetInterval`, default 5 s).
    pub fn persist_offset_interval(mut self, interval: Duration) -> Self {
        self.config.persist_offset_interval_ms = interval.as_millis() as u64;
        self
    }

    /// How long the broker may hold a pull open (`brokerSuspendMaxTimeMillis`, 15 s).
    pub fn broker_suspend_max_time(mut self, time: Duration) -> Self {
        self.config.broker_suspend_max_time_ms = time.as_millis() as u64;
        self
    }

    /// Redeliveries before a message goes to the group's DLQ (`maxReconsumeTimes`: 16 for a
    /// concurrent listener; for an orderly one, local redeliveries, unbounded by default).
    pub fn max_reconsume_times(mut self, times: i32) -> Self {
        self.config.max_reconsume_times = times;
        self.orderly.max_reconsume_times = times;
        self.max_reconsume_times_set = true;
        self
    }

    /// Orderly: how long a queue whose batch answered
    /// [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`] waits before the same messages are
    /// offered again (`suspendCurrentQueueTimeMillis`, default 1 s).
    pub fn suspend_current_queue_time(mut self, time: Duration) -> Self {
        self.orderly.suspend_current_queue_time_ms = time.as_millis() as u64;
        self
    }

    /// Orderly: how often the locks of owned queues are refreshed
    /// (`rocketmq.client.rebalance.lockInterval`, default 20 s).
    pub fn lock_interval(mut self, interval: Duration) -> Self {
        self.orderly.lock_interval_ms = interval.as_millis() as u64;
        self
    }

    /// Orderly: a lock not refreshed for this long is not trusted for consumption
    /// (`rocketmq.client.rebalance.lockMaxLiveTime`, default 30 s).
    pub fn lock_max_live_time(mut self, time: Duration) -> Self {
        self.orderly.lock_max_live_time_ms = time.as_millis() as u64;
        self
    }

    /// Orderly: a queue given up by rebalance while messages of it were still cached is
    /// unlocked this much later (`rocketmq.client.unlockDelayTimeMills`, default 20 s).
    pub fn unlock_delay(mut self, delay: Duration) -> Self {
        self.orderly.unlock_delay_ms = delay.as_millis() as u64;
        self
    }

    /// Broadcasting: the offsets [`PushConsumer::local_offsets`] returned in an earlier run.
    pub fn local_offsets(mut self, offsets: BTreeMap<MessageQueue, i64>) -> Self {
        self.local_offsets = offsets;
        self
    }

    /// The listener the messages go to (this or [`PushConsumerBuilder::listener_orderly`] is
    /// required; the last one given counts).
    pub fn listener(mut self, listener: impl MessageListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self.orderly_listener = None;
        self
    }

    /// Makes the consumer orderly (RocketMQ's `MessageListenerOrderly`): each queue's messages
    /// go to `listener` in queue order, one batch at a time, and only while this consumer holds
    /// the queue's lock on the broker (LOCK_BATCH_MQ; refreshed every `lock_interval`), so two
    /// consumers of the group never consume one queue at once. A batch answered
    /// [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`] is offered again after
    /// `suspend_current_queue_time` with `reconsume_times` + 1, the queue's later messages
    /// waiting; past `max_reconsume_times` (if set) it goes to `%DLQ%<group>` and the queue
    /// moves on.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use vostok::client::{
    ///     ConsumeFromWhere, ConsumeOrderlyContext, ConsumeOrderlyStatus, Message, MessageExt,
    ///     MessageQueue, Producer, PushConsumer,
    /// };
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let broker = vostok::Standalone::start(&vostok::StandaloneOptions {
    /// #     namesrv_port: Some(0),
    /// #     broker: vostok::BrokerOptions {
    /// #         data_dir: Some(dir.path().to_owned()),
    /// #         broker_port: Some(0),
    /// #         ..Default::default()
    /// #     },
    /// # })
    /// # .await?;
    /// let namesrv = broker.namesrv_addr().to_string();
    /// let producer = Producer::builder().namesrv_addr(&namesrv).build()?.start().await?;
    /// // The steps of order 7 go to one queue (a selector by order id), in order.
    /// let order_id = 7;
    /// for step in ["created", "paid", "shipped"] {
    ///     let message = Message::new("Orders", step).with_keys("order-7");
    ///     producer
    ///         .send_with_selector(message, move |queues: &[MessageQueue]| order_id % queues.len())
    ///         .await?;
    /// }
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let consumer = PushConsumer::builder()
    ///     .namesrv_addr(&namesrv)
    ///     .group("OrderFulfilment")
    ///     .subscribe("Orders", "*")
    ///     .consume_from(ConsumeFromWhere::FirstOffset)
    ///     .listener_orderly(move |messages: Vec<MessageExt>, _ctx: &mut ConsumeOrderlyContext| {
    ///         for m in messages {
    ///             sink.lock().unwrap().push(String::from_utf8_lossy(m.body()).into_owned());
    ///         }
    ///         ConsumeOrderlyStatus::Success
    ///     })
    ///     .build()?
    ///     .start()
    ///     .await?;
    /// for _ in 0..100 {
    ///     if seen.lock().unwrap().len() == 3 {
    ///         break;
    ///     }
    ///     tokio::time::sleep(Duration::from_millis(100)).await;
    /// }
    /// assert_eq!(*seen.lock().unwrap(), ["created", "paid", "shipped"]);
    /// consumer.shutdown().await;
    /// producer.shutdown().await;
    /// # broker.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn listener_orderly(mut self, listener: impl MessageListenerOrderly) -> Self {
        self.orderly_listener = Some(Arc::new(listener));
        self.listener = None;
        self
    }

    /// Checks the settings. The consumer does nothing until [`PushConsumer::start`].
    pub fn build(mut self) -> Result<PushConsumer, ClientError> {
        self.config.client = self.common.client_config()?;
        if !self.group_set || self.config.consumer_group.is_empty() {
            return Err(ClientError::InvalidMessage(
                "a push consumer needs a group".to_owned(),
            ));
        }
        if self.listener.is_none() && self.orderly_listener.is_none() {
            return Err(ClientError::InvalidMessage(
                "a push consumer needs a listener".to_owned(),
            ));
        }
        if self.orderly_listener.is_some() {
            if !self.max_reconsume_times_set {
                // Java's -1: unbounded for orderly consumers.
                self.orderly.max_reconsume_times = i32::MAX;
            }
            self.config.orderly = Some(self.orderly.clone());
        } else {
            self.config.orderly = None;
        }
        Ok(PushConsumer {
            state: State::Built(Box::new(self)),
        })
    }
}

enum State {
    Built(Box<PushConsumerBuilder>),
    Running {
        owner: Owner<Call>,
        local_offsets: LocalOffsets,
    },
}

/// Broadcasting offsets as last persisted, shared by the owner and the handle so they can be
/// read after shutdown too.
type LocalOffsets = Arc<Mutex<BTreeMap<MessageQueue, i64>>>;

/// A RocketMQ push consumer, with a concurrent listener or (see
/// [`PushConsumerBuilder::listener_orderly`]) an orderly one.
///
/// It heartbeats to the brokers of its topics, rebalances the group's queues among the group's
/// consumers, long-polls its queues, hands the messages to the listener and commits the offsets
/// of what the listener finished. A batch answered `ReconsumeLater` is sent back to the broker
/// for redelivery later (CONSUMER_SEND_MSG_BACK; if the broker refuses, re-sent to the group's
/// retry topic `%RETRY%<group>`).
///
/// ```
/// use std::time::Duration;
/// use tokio::sync::mpsc;
/// use vostok::client::{ConsumeFromWhere, ConsumeStatus, Message, MessageExt, Producer, PushConsumer};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let broker = vostok::Standalone::start(&vostok::StandaloneOptions {
/// #     namesrv_port: Some(0),
/// #     broker: vostok::BrokerOptions {
/// #         data_dir: Some(dir.path().to_owned()),
/// #         broker_port: Some(0),
/// #         ..Default::default()
/// #     },
/// # })
/// # .await?;
/// // A broker runs at `namesrv` (here one started in-process by `vostok::Standalone`).
/// let namesrv = broker.namesrv_addr().to_string();
/// let producer = Producer::builder().namesrv_addr(&namesrv).build()?.start().await?;
/// producer.send(Message::new("Orders", "order #1").with_tags("created")).await?;
/// producer.send(Message::new("Orders", "order #1 audited").with_tags("audit")).await?;
///
/// let (seen, mut bodies) = mpsc::unbounded_channel();
/// let consumer = PushConsumer::builder()
///     .namesrv_addr(&namesrv)
///     .group("OrderAuditors")
///     .subscribe("Orders", "created || paid")
///     .consume_from(ConsumeFromWhere::FirstOffset)
///     .listener(move |messages: Vec<MessageExt>| {
///         let seen = seen.clone();
///         async move {
///             for m in messages {
///                 let _ = seen.send(m.body().clone());
///             }
///             ConsumeStatus::ConsumeSuccess
///         }
///     })
///     .build()?
///     .start()
///     .await?;
/// let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv()).await?;
/// assert_eq!(body.as_deref(), Some(&b"order #1"[..])); // "audit" is filtered out
/// consumer.shutdown().await;
/// producer.shutdown().await;
/// # broker.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct PushConsumer {
    state: State,
}

impl PushConsumer {
    pub fn builder() -> PushConsumerBuilder {
        PushConsumerBuilder::default()
    }

    /// Subscribes, then starts the owner task: route queries, a heartbeat and a rebalance go out
    /// at once. Fails if a subscription is invalid.
    pub async fn start(self) -> Result<PushConsumer, ClientError> {
        let builder = match self.state {
            State::Built(builder) => *builder,
            running @ State::Running { .. } => return Ok(PushConsumer { state: running }),
        };
        let clock = builder.common.clock.clone();
        let now_ms = clock.now_ms();
        let request_timeout = Duration::from_millis(builder.config.client.request_timeout_ms);
        let mut core = CorePushConsumer::new(builder.config, now_ms);
        for (topic, expression, sql) in &builder.subscriptions {
            if *sql {
                core.subscribe_sql(now_ms, topic, expression)?;
            } else {
                core.subscribe(now_ms, topic, expression)?;
            }
        }
        if !builder.local_offsets.is_empty() {
            core.load_local_offsets(builder.local_offsets);
        }
        core.start(now_ms);
        let concurrency = builder
            .consume_concurrency
            .unwrap_or(DEFAULT_CONSUME_CONCURRENCY);
        let dispatcher = match (builder.listener, builder.orderly_listener) {
            (_, Some(orderly)) => Listeners::Orderly(OrderlyDispatcher::new(orderly, concurrency)),
            (Some(listener), None) => Listeners::Concurrent(Dispatcher::new(listener, concurrency)),
            (None, None) => return Err(ClientError::ShutDown),
        };
        let local_offsets = LocalOffsets::default();
        let shared = local_offsets.clone();
        let owner = Owner::spawn(
            clock,
            builder.common.connect_timeout,
            request_timeout,
            move |calls| PushDriver {
                core,
                dispatcher,
                calls,
                local_offsets: shared,
            },
        );
        Ok(PushConsumer {
            state: State::Running {
                owner,
                local_offsets,
            },
        })
    }

    fn owner(&self) -> Result<&Owner<Call>, ClientError> {
        match &self.state {
            State::Running { owner, .. } if !owner.is_closed() => Ok(owner),
            _ => Err(ClientError::ShutDown),
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Call,
    ) -> Result<T, ClientError> {
        let (reply, rx) = oneshot::channel();
        if !self.owner()?.call(make(reply)) {
            return Err(ClientError::ShutDown);
        }
        rx.await.map_err(|_| ClientError::ShutDown)
    }

    /// Subscribes another topic (or replaces a topic's expression) while running.
    pub async fn subscribe(&self, topic: &str, expression: &str) -> Result<(), ClientError> {
        let (topic, expression) = (topic.to_owned(), expression.to_owned());
        self.ask(|reply| Call::Subscribe {
            topic,
            expression,
            sql: false,
            reply,
        })
        .await?
    }

    /// Subscribes `topic` with an SQL92 property selector while running (replacing an earlier
    /// expression of the topic); fails with [`ClientError::InvalidSubscription`] when it does
    /// not compile.
    pub async fn subscribe_sql(&self, topic: &str, expression: &str) -> Result<(), ClientError> {
        let (topic, expression) = (topic.to_owned(), expression.to_owned());
        self.ask(|reply| Call::Subscribe {
            topic,
            expression,
            sql: true,
            reply,
        })
        .await?
    }

    /// Drops the subscription of `topic`; its queues are released at the next rebalance.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), ClientError> {
        let topic = topic.to_owned();
        self.ask(|reply| Call::Unsubscribe { topic, reply }).await
    }

    /// The queues this consumer owns now, sorted.
    pub async fn assigned_queues(&self) -> Result<Vec<MessageQueue>, ClientError> {
        self.ask(|reply| Call::Assigned { reply }).await
    }

    /// Orderly consumers: the owned queues whose broker lock this consumer holds now, sorted
    /// (empty for a concurrent consumer).
    pub async fn locked_queues(&self) -> Result<Vec<MessageQueue>, ClientError> {
        self.ask(|reply| Call::Locked { reply }).await
    }

    /// The consumer's own view of `queue`'s committed offset (the next offset to consume).
    pub async fn committed_offset(&self, queue: &MessageQueue) -> Result<Option<i64>, ClientError> {
        let queue = queue.clone();
        self.ask(|reply| Call::Committed { queue, reply }).await
    }

    /// Broadcasting: the offsets last persisted locally (every `persist_offset_interval` and
    /// at shutdown, so also after [`PushConsumer::shutdown`]); give them to
    /// [`PushConsumerBuilder::local_offsets`] to resume there. Empty in clustering mode, whose
    /// offsets live on the broker.
    pub fn local_offsets(&self) -> BTreeMap<MessageQueue, i64> {
        match &self.state {
            State::Running { local_offsets, .. } => local_offsets
                .lock()
                .map(|offsets| offsets.clone())
                .unwrap_or_default(),
            State::Built(builder) => builder.local_offsets.clone(),
        }
    }

    /// Commits offsets, unregisters from the brokers (waiting at most 3 s for their answers) and
    /// stops. Listener calls still running finish, but their results are not committed: those
    /// messages are delivered again to the group.
    pub async fn shutdown(&self) {
        if let State::Running { owner, .. } = &self.state {
            owner.shutdown().await;
        }
    }
}

pub(crate) enum Call {
    Consumed {
        token: ConsumeToken,
        status: ConsumeStatus,
    },
    ConsumedOrderly {
        token: ConsumeToken,
        status: ConsumeOrderlyStatus,
        suspend: Option<Duration>,
    },
    Locked {
        reply: oneshot::Sender<Vec<MessageQueue>>,
    },
    Subscribe {
        topic: String,
        expression: String,
        /// SQL92 (else TAG).
        sql: bool,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<()>,
    },
    Assigned {
        reply: oneshot::Sender<Vec<MessageQueue>>,
    },
    Committed {
        queue: MessageQueue,
        reply: oneshot::Sender<Option<i64>>,
    },
}

/// The application's listener, on its tasks.
enum Listeners {
    Concurrent(Dispatcher),
    Orderly(OrderlyDispatcher),
}

struct PushDriver {
    core: CorePushConsumer,
    dispatcher: Listeners,
    /// For listener tasks to report their status.
    calls: mpsc::WeakUnboundedSender<Control<Call>>,
    local_offsets: LocalOffsets,
}

impl Driven for PushDriver {
    type Call = Call;

    fn handle_call(&mut self, now_ms: u64, call: Call) {
        match call {
            Call::Consumed { token, status } => {
                self.core.handle_consume_result(now_ms, token, status)
            }
            Call::ConsumedOrderly {
                token,
                status,
                suspend,
            } => self.core.handle_consume_orderly_result(
                now_ms,
                token,
                status,
                suspend.map(|d| d.as_millis() as u64),
            ),
            Call::Locked { reply } => {
                let _ = reply.send(self.core.locked_queues());
            }
            Call::Subscribe {
                topic,
                expression,
                sql,
                reply,
            } => {
                let result = if sql {
                    self.core.subscribe_sql(now_ms, &topic, &expression)
                } else {
                    self.core.subscribe(now_ms, &topic, &expression)
                };
                let _ = reply.send(result);
            }
            Call::Unsubscribe { topic, reply } => {
                self.core.unsubscribe(now_ms, &topic);
                let _ = reply.send(());
            }
            Call::Assigned { reply } => {
                let _ = reply.send(self.core.assigned_queues());
            }
            Call::Committed { queue, reply } => {
                let _ = reply.send(self.core.committed_offset(&queue));
            }
        }
    }

    fn handle_net(&mut self, now_ms: u64, event: NetEvent) {
        event.feed(&mut self.core, now_ms, "push consumer")
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.core.poll_timeout()
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        self.core.handle_timeout(now_ms)
    }

    fn flush(&mut self, _now_ms: u64, pool: &mut Pool) {
        while let Some(output) = self.core.poll_output() {
            match output {
                ClientOutput::Send { addr, command } => pool.send(&addr, command),
                ClientOutput::Consume {
                    token,
                    queue,
                    messages,
                } => {
                    let calls = self.calls.clone();
                    match &self.dispatcher {
                        Listeners::Concurrent(dispatcher) => {
                            dispatcher.dispatch(queue, messages, move |status| {
                                // After shutdown nobody takes the result: the batch is
                                // redelivered.
                                if let Some(calls) = calls.upgrade() {
                                    let _ =
                                        calls.send(Control::Call(Call::Consumed { token, status }));
                                }
                            })
                        }
                        Listeners::Orderly(dispatcher) => {
                            dispatcher.dispatch(queue, messages, move |status, suspend| {
                                if let Some(calls) = calls.upgrade() {
                                    let _ = calls.send(Control::Call(Call::ConsumedOrderly {
                                        token,
                                        status,
                                        suspend,
                                    }));
                                }
                            })
                        }
                    }
                }
                ClientOutput::PersistLocalOffsets { offsets } => {
                    if let Ok(mut persisted) = self.local_offsets.lock() {
                        *persisted = offsets;
                    }
                }
                other => debug!(?other, "push consumer output ignored"),
            }
        }
    }

    fn begin_shutdown(&mut self, now_ms: u64) {
        self.core.shutdown(now_ms)
    }

    fn finish(&mut self, _now_ms: u64) {}
}
