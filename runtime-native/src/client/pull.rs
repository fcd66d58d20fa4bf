//! The async lite pull consumer: the core's [`PullConsumer`](vostok_core::client::PullConsumer)
//! state machine on an owner task; `poll` waits for what its background pulls buffered.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::debug;
use vostok_core::client::requests::{get_route_info, ConsumeFromWhere, MessageModel};
use vostok_core::client::{
    AllocateStrategy, ClientError, ClientOutput, MessageExt, MessageQueue,
    PullConsumer as CorePullConsumer, PullConsumerConfig,
};
use vostok_core::namesrv::route::TopicRouteData;
use vostok_core::remoting::codes::response;
use vostok_core::remoting::{encode, FrameDecoder};

use super::driver::{Driven, Owner};
use super::net::{NetEvent, Pool};
use super::options::{common_builder_methods, CommonOptions};

/// The READ bit of a queue's permission (REMOTING.md §6.1).
const PERM_READ: u32 = 0x4;

/// Configures a [`PullConsumer`]. Defaults are RocketMQ's `DefaultLitePullConsumer` defaults.
#[derive(Clone, Default)]
pub struct PullConsumerBuilder {
    common: CommonOptions,
    config: PullConsumerConfig,
    group_set: bool,
    /// Topic, expression, and whether the expression is SQL92 (else TAG).
    subscriptions: Vec<(String, String, bool)>,
}

impl PullConsumerBuilder {
    common_builder_methods!();

    /// The consumer group (required).
    pub fn group(mut self, group: &str) -> Self {
        self.config.consumer_group = group.to_owned();
        self.group_set = true;
        self
    }

    /// Subscribes `topic` (`*` or `tagA || tagB`); its queues are rebalanced within the group.
    /// Not combinable with [`PullConsumer::assign`].
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

    /// Clustering (the default) or broadcasting.
    pub fn message_model(mut self, model: MessageModel) -> Self {
        self.config.message_model = model;
        self
    }

    /// Where a queue with no committed offset starts (default: the last offset).
    pub fn consume_from(mut self, from: ConsumeFromWhere) -> Self {
        self.config.consume_from_where = from;
        self
    }

    /// The instant [`ConsumeFromWhere::Timestamp`] starts from (epoch ms).
    pub fn consume_timestamp_ms(mut self, timestamp_ms: u64) -> Self {
        self.config.consume_timestamp_ms = Some(timestamp_ms);
        self
    }

    /// How subscribed queues are split among the group (default: averagely).
    pub fn allocate(mut self, strategy: AllocateStrategy) -> Self {
        self.config.allocate_strategy = strategy;
        self
    }

    /// Messages asked per pull, and most messages one `poll` returns (default 10).
    pub fn pull_batch_size(mut self, size: i32) -> Self {
        self.config.pull_batch_size = size.max(1);
        self
    }

    /// Buffered messages per queue before its pulling pauses (default 1000).
    pub fn pull_threshold_for_queue(mut self, messages: usize) -> Self {
        self.config.pull_threshold_for_queue = messages;
        self
    }

    /// Commit polled offsets automatically every `auto_commit_interval` (default on).
    pub fn auto_commit(mut self, enable: bool) -> Self {
        self.config.auto_commit = enable;
        self
    }

    /// Period of the automatic commit (default 5 s).
    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.config.auto_commit_interval_ms = interval.as_millis() as u64;
        self
    }

    /// Rebalance period of subscribed topics (default 20 s).
    pub fn rebalance_interval(mut self, interval: Duration) -> Self {
        self.config.rebalance_interval_ms = interval.as_millis() as u64;
        self
    }

    /// How long the broker may hold a pull open (default 20 s).
    pub fn broker_suspend_max_time(mut self, time: Duration) -> Self {
        self.config.broker_suspend_max_time_ms = time.as_millis() as u64;
        self
    }

    /// Checks the settings. The consumer does nothing until [`PullConsumer::start`].
    pub fn build(mut self) -> Result<PullConsumer, ClientError> {
        self.config.client = self.common.client_config()?;
        if !self.group_set || self.config.consumer_group.is_empty() {
            return Err(ClientError::InvalidMessage(
                "a pull consumer needs a group".to_owned(),
            ));
        }
        Ok(PullConsumer {
            state: State::Built(Box::new(self)),
        })
    }
}

enum State {
    Built(Box<PullConsumerBuilder>),
    Running {
        owner: Owner<Call>,
        namesrv_addrs: Vec<String>,
        connect_timeout: Duration,
        request_timeout: Duration,
    },
}

/// A RocketMQ lite pull consumer: the application asks for messages with [`PullConsumer::poll`]
/// while the consumer pulls its queues in the background.
///
/// Polled messages count as consumed; [`PullConsumer::commit`] (or auto-commit) stores the
/// consumed offsets on the broker, where a later consumer of the group resumes.
///
/// ```
/// use std::time::Duration;
/// use vostok::client::{ConsumeFromWhere, Message, Producer, PullConsumer};
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
/// producer.send(Message::new("Orders", "order #1")).await?;
///
/// let consumer = PullConsumer::builder()
///     .namesrv_addr(&namesrv)
///     .group("OrderExporters")
///     .consume_from(ConsumeFromWhere::FirstOffset)
///     .auto_commit(false)
///     .build()?
///     .start()
///     .await?;
/// consumer.assign(consumer.queues("Orders").await?).await?;
/// let mut messages = Vec::new();
/// while messages.is_empty() {
///     messages = consumer.poll(Duration::from_secs(1)).await?;
/// }
/// assert_eq!(&messages[0].body()[..], b"order #1");
/// consumer.commit().await?; // the group resumes after this message
/// consumer.shutdown().await;
/// producer.shutdown().await;
/// # broker.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct PullConsumer {
    state: State,
}

impl PullConsumer {
    pub fn builder() -> PullConsumerBuilder {
        PullConsumerBuilder::default()
    }

    /// Subscribes, then starts the owner task. Fails if a subscription is invalid.
    pub async fn start(self) -> Result<PullConsumer, ClientError> {
        let builder = match self.state {
            State::Built(builder) => *builder,
            running @ State::Running { .. } => return Ok(PullConsumer { state: running }),
        };
        let clock = builder.common.clock.clone();
        let now_ms = clock.now_ms();
        let namesrv_addrs = builder.config.client.namesrv_addrs.clone();
        let request_timeout = Duration::from_millis(builder.config.client.request_timeout_ms);
        let max_poll = builder.config.pull_batch_size.max(1) as usize;
        let mut core = CorePullConsumer::new(builder.config, now_ms);
        for (topic, expression, sql) in &builder.subscriptions {
            if *sql {
                core.subscribe_sql(now_ms, topic, expression)?;
            } else {
                core.subscribe(now_ms, topic, expression)?;
            }
        }
        core.start(now_ms);
        let connect_timeout = builder.common.connect_timeout;
        let owner = Owner::spawn(clock, connect_timeout, request_timeout, move |_| {
            PullDriver {
                core,
                max_poll,
                carry: VecDeque::new(),
                waiters: Vec::new(),
            }
        });
        Ok(PullConsumer {
            state: State::Running {
                owner,
                namesrv_addrs,
                connect_timeout,
                request_timeout,
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

    /// Subscribes `topic` while running (rebalanced within the group).
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

    /// Pulls exactly `queues`, without rebalancing; replaces an earlier assignment.
    pub async fn assign(&self, queues: Vec<MessageQueue>) -> Result<(), ClientError> {
        self.ask(|reply| Call::Assign { queues, reply }).await
    }

    /// Moves `queue`'s position to `offset`; what was buffered for it is dropped.
    pub async fn seek(&self, queue: &MessageQueue, offset: i64) -> Result<(), ClientError> {
        let queue = queue.clone();
        self.ask(|reply| Call::Seek {
            queue,
            offset,
            reply,
        })
        .await
    }

    /// Stops pulling `queues` until resumed (what is buffered can still be polled).
    pub async fn pause(&self, queues: &[MessageQueue]) -> Result<(), ClientError> {
        let queues = queues.to_vec();
        self.ask(|reply| Call::Pause {
            queues,
            paused: true,
            reply,
        })
        .await
    }

    pub async fn resume(&self, queues: &[MessageQueue]) -> Result<(), ClientError> {
        let queues = queues.to_vec();
        self.ask(|reply| Call::Pause {
            queues,
            paused: false,
            reply,
        })
        .await
    }

    /// Up to `pull_batch_size` messages, waiting at most `timeout` for the first one; empty if
    /// none came. Returned messages count as consumed (their queue's position moves past them).
    ///
    /// Cancel-safe: messages taken for a `poll` that was dropped are returned by the next one.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>, ClientError> {
        let (reply, rx) = oneshot::channel();
        if !self.owner()?.call(Call::Poll { reply }) {
            return Err(ClientError::ShutDown);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(messages)) => Ok(messages),
            Ok(Err(_)) => Err(ClientError::ShutDown),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Sends every consumed offset that changed since the last commit to the brokers.
    pub async fn commit(&self) -> Result<(), ClientError> {
        self.ask(|reply| Call::Commit { reply }).await
    }

    /// The consumed position of `queue` (the next offset `poll` returns).
    pub async fn committed_offset(&self, queue: &MessageQueue) -> Result<Option<i64>, ClientError> {
        let queue = queue.clone();
        self.ask(|reply| Call::Committed { queue, reply }).await
    }

    /// The queues being pulled now, sorted.
    pub async fn assigned_queues(&self) -> Result<Vec<MessageQueue>, ClientError> {
        self.ask(|reply| Call::Assigned { reply }).await
    }

    /// The readable queues of `topic`, sorted, from a NameServer (RocketMQ's
    /// `fetchMessageQueues`), for [`PullConsumer::assign`].
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        let State::Running {
            namesrv_addrs,
            connect_timeout,
            request_timeout,
            ..
        } = &self.state
        else {
            return Err(ClientError::ShutDown);
        };
        let mut last_error = ClientError::NoRoute {
            topic: topic.to_owned(),
        };
        for addr in namesrv_addrs {
            match fetch_route(addr, topic, *connect_timeout, *request_timeout).await {
                Ok(route) => return Ok(readable_queues(topic, &route)),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Commits offsets, unregisters from the brokers (waiting at most 3 s for their answers)
    /// and stops.
    pub async fn shutdown(&self) {
        if let State::Running { owner, .. } = &self.state {
            owner.shutdown().await;
        }
    }
}

/// The readable queues of `route` for `topic`, sorted as RocketMQ sorts them.
fn readable_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|qd| qd.perm & PERM_READ != 0)
        .flat_map(|qd| {
            (0..qd.read_queue_nums as i32)
                .map(move |id| MessageQueue::new(topic, qd.broker_name.clone(), id))
        })
        .collect();
    queues.sort();
    queues
}

/// GET_ROUTEINFO_BY_TOPIC on a connection of its own: the state machine assigns the opaques of
/// its connections, so a request of the driver's must not travel on them.
async fn fetch_route(
    addr: &str,
    topic: &str,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<TopicRouteData, ClientError> {
    let closed = |_: std::io::Error| ClientError::ConnectionClosed {
        addr: addr.to_owned(),
    };
    let mut stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout {
            timeout_ms: connect_timeout.as_millis() as u64,
        })?
        .map_err(closed)?;
    let mut request = get_route_info(topic);
    request.opaque = 1;
    let mut out = BytesMut::new();
    encode(&request, &mut out);
    let exchange = async {
        stream.write_all(&out).await.map_err(closed)?;
        // madsim's simulated stream sends only on flush (a no-op on a kernel socket).
        stream.flush().await.map_err(closed)?;
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        loop {
            if let Some(reply) = decoder
                .decode(&mut buf)
                .map_err(|e| ClientError::MalformedResponse(e.to_string()))?
            {
                if reply.is_response() && reply.opaque == request.opaque {
                    return Ok(reply);
                }
                continue;
            }
            if stream.read_buf(&mut buf).await.map_err(closed)? == 0 {
                return Err(ClientError::ConnectionClosed {
                    addr: addr.to_owned(),
                });
            }
        }
    };
    let reply = tokio::time::timeout(request_timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout {
            timeout_ms: request_timeout.as_millis() as u64,
        })??;
    match reply.code {
        response::SUCCESS => {
            TopicRouteData::parse(&reply.body).map_err(ClientError::MalformedResponse)
        }
        response::TOPIC_NOT_EXIST => Err(ClientError::NoRoute {
            topic: topic.to_owned(),
        }),
        code => Err(ClientError::Broker {
            code,
            remark: reply.remark.unwrap_or_default(),
        }),
    }
}

pub(crate) enum Call {
    Subscribe {
        topic: String,
        expression: String,
        /// SQL92 (else TAG).
        sql: bool,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Assign {
        queues: Vec<MessageQueue>,
        reply: oneshot::Sender<()>,
    },
    Seek {
        queue: MessageQueue,
        offset: i64,
        reply: oneshot::Sender<()>,
    },
    Pause {
        queues: Vec<MessageQueue>,
        paused: bool,
        reply: oneshot::Sender<()>,
    },
    Poll {
        reply: oneshot::Sender<Vec<MessageExt>>,
    },
    Commit {
        reply: oneshot::Sender<()>,
    },
    Committed {
        queue: MessageQueue,
        reply: oneshot::Sender<Option<i64>>,
    },
    Assigned {
        reply: oneshot::Sender<Vec<MessageQueue>>,
    },
}

struct PullDriver {
    core: CorePullConsumer,
    max_poll: usize,
    /// Messages taken from the core for a `poll` that was gone by the time they were ready:
    /// handed to the next one first.
    carry: VecDeque<MessageExt>,
    /// `poll` calls waiting for messages, oldest first.
    waiters: Vec<oneshot::Sender<Vec<MessageExt>>>,
}

impl PullDriver {
    fn take(&mut self, now_ms: u64) -> Vec<MessageExt> {
        let from_carry = self.carry.len().min(self.max_poll);
        let mut messages: Vec<MessageExt> = self.carry.drain(..from_carry).collect();
        if messages.len() < self.max_poll {
            messages.extend(self.core.poll(now_ms, self.max_poll - messages.len()));
        }
        messages
    }

    /// Serves waiting polls while messages are buffered.
    fn serve(&mut self, now_ms: u64) {
        self.waiters.retain(|w| !w.is_closed());
        while !self.waiters.is_empty() {
            let messages = self.take(now_ms);
            if messages.is_empty() {
                return;
            }
            let waiter = self.waiters.remove(0);
            if let Err(messages) = waiter.send(messages) {
                // The poll timed out in the meantime: keep its messages, in order.
                for m in messages.into_iter().rev() {
                    self.carry.push_front(m);
                }
            }
        }
    }
}

impl PullDriver {
    fn drain(&mut self, pool: &mut Pool) {
        while let Some(output) = self.core.poll_output() {
            match output {
                ClientOutput::Send { addr, command } => pool.send(&addr, command),
                // Waiting polls are served after every batch of inputs anyway.
                ClientOutput::MessagesAvailable => {}
                other => debug!(?other, "pull consumer output ignored"),
            }
        }
    }
}

impl Driven for PullDriver {
    type Call = Call;

    fn handle_call(&mut self, now_ms: u64, call: Call) {
        match call {
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
            Call::Assign { queues, reply } => {
                self.core.assign(now_ms, queues);
                let _ = reply.send(());
            }
            Call::Seek {
                queue,
                offset,
                reply,
            } => {
                self.carry.retain(|m| m.queue != queue);
                self.core.seek(now_ms, &queue, offset);
                let _ = reply.send(());
            }
            Call::Pause {
                queues,
                paused,
                reply,
            } => {
                if paused {
                    self.core.pause(&queues);
                } else {
                    self.core.resume(now_ms, &queues);
                }
                let _ = reply.send(());
            }
            Call::Poll { reply } => self.waiters.push(reply),
            Call::Commit { reply } => {
                self.core.commit(now_ms);
                let _ = reply.send(());
            }
            Call::Committed { queue, reply } => {
                let _ = reply.send(self.core.committed_offset(&queue));
            }
            Call::Assigned { reply } => {
                let _ = reply.send(self.core.assigned_queues());
            }
        }
    }

    fn handle_net(&mut self, now_ms: u64, event: NetEvent) {
        event.feed(&mut self.core, now_ms, "pull consumer")
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.core.poll_timeout()
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        self.core.handle_timeout(now_ms)
    }

    fn flush(&mut self, now_ms: u64, pool: &mut Pool) {
        self.drain(pool);
        if !self.waiters.is_empty() {
            self.serve(now_ms);
            // Taking messages may have made the core pull again (a queue below its threshold).
            self.drain(pool);
        }
    }

    fn begin_shutdown(&mut self, now_ms: u64) {
        self.core.shutdown(now_ms)
    }

    fn finish(&mut self, _now_ms: u64) {
        self.waiters.clear();
    }
}
