//! The async producer: a handle onto an owner task driving the core's
//! [`Producer`](vostok_core::client::Producer) state machine.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;
use vostok_core::client::{
    ClientError, ClientOutput, LocalTransactionState, Message, MessageQueue,
    Producer as CoreProducer, ProducerConfig, QueueSelector, SendId, SendMode, SendResult,
    TransactionCheck,
};

use super::driver::{Control, Driven, Owner};
use super::net::{NetEvent, Pool};
use super::options::{common_builder_methods, CommonOptions};
use super::transaction::TransactionChecker;

/// How often [`Producer::queues`] looks again while a route is being fetched.
const ROUTE_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Configures a [`Producer`]. Defaults are RocketMQ's `DefaultMQProducer` defaults.
#[derive(Clone, Default)]
pub struct ProducerBuilder {
    common: CommonOptions,
    group: Option<String>,
    send_timeout: Option<Duration>,
    retries: Option<u32>,
    fault_avoidance: Option<bool>,
    max_message_size_bytes: Option<usize>,
    default_topic_queue_nums: Option<i32>,
}

impl ProducerBuilder {
    common_builder_methods!();

    /// The producer group (`producerGroup`). Default `DEFAULT_PRODUCER`.
    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.to_owned());
        self
    }

    /// The budget of one send call, retries included (`sendMsgTimeout`, default 3 s).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// Extra attempts of a failed send on another broker (`retryTimesWhenSendFailed` and
    /// `retryTimesWhenSendAsyncFailed`, default 2).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Skip brokers that were recently slow or failing (`sendLatencyFaultEnable`, default off).
    pub fn fault_avoidance(mut self, enable: bool) -> Self {
        self.fault_avoidance = Some(enable);
        self
    }

    /// Largest body accepted (`maxMessageSize`, default 4 MiB).
    pub fn max_message_size_bytes(mut self, size_bytes: usize) -> Self {
        self.max_message_size_bytes = Some(size_bytes);
        self
    }

    /// Queue count of topics auto-created by a send (`defaultTopicQueueNums`, default 4).
    pub fn default_topic_queue_nums(mut self, queues: i32) -> Self {
        self.default_topic_queue_nums = Some(queues);
        self
    }

    /// Checks the settings. The producer does nothing until [`Producer::start`].
    pub fn build(self) -> Result<Producer, ClientError> {
        let mut config = ProducerConfig {
            client: self.common.client_config()?,
            ..ProducerConfig::default()
        };
        if let Some(group) = self.group {
            if group.is_empty() {
                return Err(ClientError::InvalidMessage(
                    "the producer group is empty".to_owned(),
                ));
            }
            config.producer_group = group;
        }
        if let Some(t) = self.send_timeout {
            config.send_msg_timeout_ms = t.as_millis() as u64;
        }
        if let Some(r) = self.retries {
            config.retry_times_when_send_failed = r;
            config.retry_times_when_send_async_failed = r;
        }
        if let Some(f) = self.fault_avoidance {
            config.send_latency_fault_enable = f;
        }
        if let Some(m) = self.max_message_size_bytes {
            config.max_message_size_bytes = m;
        }
        if let Some(q) = self.default_topic_queue_nums {
            config.default_topic_queue_nums = q;
        }
        Ok(Producer {
            state: State::Built {
                config: Box::new(config),
                common: self.common,
                checker: None,
            },
        })
    }
}

#[derive(Clone)]
enum State {
    Built {
        config: Box<ProducerConfig>,
        common: CommonOptions,
        /// Answers the brokers' transaction checks (a transactional producer's).
        checker: Option<TransactionChecker>,
    },
    Running {
        owner: Owner<Call>,
        request_timeout: Duration,
    },
}

/// A RocketMQ producer.
///
/// Cloning gives another handle onto the same producer. Every send picks its queue from the
/// topic's route (fetched from a NameServer on first use and refreshed periodically; a topic the
/// NameServer does not know is auto-created through the default topic `TBW102`, if the broker
/// allows it), and retries on another broker when the attempt fails.
///
/// ```
/// use vostok::client::{Message, Producer};
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
/// let producer = Producer::builder()
///     .namesrv_addr(&namesrv)
///     .group("OrderProducers")
///     .build()?
///     .start()
///     .await?;
/// // "Orders" does not exist yet: the broker creates it from TBW102 on the first send.
/// let result = producer
///     .send(Message::new("Orders", "order #1").with_tags("created").with_keys("order-1"))
///     .await?;
/// println!("stored as {} in {} at {}", result.msg_id, result.queue, result.queue_offset);
///
/// // Ordered: the messages of one key land on one queue, in sending order.
/// let paid = producer.send_orderly(Message::new("Orders", "order #1 paid"), "order-1").await?;
/// let shipped = producer.send_orderly(Message::new("Orders", "order #1 shipped"), "order-1").await?;
/// assert_eq!(paid.queue, shipped.queue);
/// assert!(paid.queue_offset < shipped.queue_offset);
///
/// // Many sends in flight from one task: each is submitted when `send_async` is called.
/// let pending: Vec<_> = (0..10)
///     .map(|i| producer.send_async(Message::new("Orders", format!("bulk {i}"))))
///     .collect();
/// for send in pending {
///     send.await?;
/// }
/// producer.shutdown().await;
/// # broker.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    state: State,
}

impl Producer {
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// Starts the producer's owner task (inside the current tokio runtime). Connections open on
    /// first use. Starting a started producer does nothing.
    pub async fn start(self) -> Result<Producer, ClientError> {
        let (config, common, checker) = match self.state {
            State::Built {
                config,
                common,
                checker,
            } => (config, common, checker),
            running @ State::Running { .. } => return Ok(Producer { state: running }),
        };
        let request_timeout = Duration::from_millis(config.client.request_timeout_ms);
        let clock = common.clock.clone();
        let now_ms = clock.now_ms();
        // A send may wait for its answer up to the send timeout, longer than other requests.
        let answer_timeout = request_timeout.max(Duration::from_millis(config.send_msg_timeout_ms));
        let owner = Owner::spawn(
            clock,
            common.connect_timeout,
            answer_timeout,
            move |calls| ProducerDriver {
                core: CoreProducer::new(*config, now_ms),
                waiting: BTreeMap::new(),
                checker,
                calls,
            },
        );
        Ok(Producer {
            state: State::Running {
                owner,
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

    fn submit(&self, request: SendRequest, mode: SendMode) -> SendFuture {
        let (reply, rx) = oneshot::channel();
        if let Ok(owner) = self.owner() {
            owner.call(Call::Send {
                request,
                mode,
                reply,
            });
        }
        // Without an owner `reply` is dropped here, and the future yields ShutDown.
        SendFuture { rx }
    }

    /// Sends `message` and waits for the broker's answer (RocketMQ's synchronous send: up to
    /// `1 + retries` attempts within the send timeout).
    pub async fn send(&self, message: Message) -> Result<SendResult, ClientError> {
        self.submit(SendRequest::One(message), SendMode::Sync).await
    }

    /// Sends `message` with the asynchronous retry budget. The message is handed to the
    /// producer at once, before the returned future is first polled, so many sends can be in
    /// flight from one task; await the futures (in any order) for the results.
    pub fn send_async(&self, message: Message) -> SendFuture {
        self.submit(SendRequest::One(message), SendMode::Async)
    }

    /// [`Producer::send_async`] with a callback run on a spawned task when the send completes
    /// (RocketMQ's `send(msg, SendCallback)`).
    pub fn send_with_callback<F>(&self, message: Message, callback: F)
    where
        F: FnOnce(Result<SendResult, ClientError>) + Send + 'static,
    {
        let future = self.send_async(message);
        tokio::spawn(async move { callback(future.await) });
    }

    /// Fire and forget: the request carries the oneway flag and gets no answer. Resolves once
    /// the request is queued on its connection; an error means it could not be (no route,
    /// invalid message, shut down).
    pub async fn send_oneway(&self, message: Message) -> Result<(), ClientError> {
        self.submit(SendRequest::One(message), SendMode::Oneway)
            .await
            .map(|_| ())
    }

    /// Sends `messages` (one topic) as one SEND_BATCH_MESSAGE to one queue: they are stored
    /// consecutively, in order. The result's `msg_id` and `offset_msg_id` are comma-joined.
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<SendResult, ClientError> {
        self.submit(SendRequest::Batch(messages), SendMode::Sync)
            .await
    }

    /// Sends `message` to exactly `queue`, never another one.
    pub async fn send_to_queue(
        &self,
        message: Message,
        queue: MessageQueue,
    ) -> Result<SendResult, ClientError> {
        self.submit(SendRequest::ToQueue(message, queue), SendMode::Sync)
            .await
    }

    /// Ordered send: `select` picks the queue among the topic's writable queues (sorted by
    /// broker name, then queue id); its result is taken modulo their count. Messages sent with
    /// the same choice land on one queue in sending order. Not retried on another queue.
    ///
    /// The selector's argument (RocketMQ's `arg`) is whatever the closure captures.
    pub async fn send_with_selector<F>(
        &self,
        message: Message,
        select: F,
    ) -> Result<SendResult, ClientError>
    where
        F: Fn(&[MessageQueue]) -> usize + Send + 'static,
    {
        let selector = QueueSelector::Custom(Box::new(select));
        self.submit(SendRequest::Selector(message, selector), SendMode::Sync)
            .await
    }

    /// Ordered send by key: RocketMQ's `SelectMessageQueueByHash` with `key` as the argument
    /// (Java's `String.hashCode`), so it picks the queue a Java producer would.
    pub async fn send_orderly(
        &self,
        message: Message,
        key: &str,
    ) -> Result<SendResult, ClientError> {
        let hash = vostok_core::client::producer::java_string_hash(key);
        self.submit(
            SendRequest::Selector(message, QueueSelector::ByHash(hash)),
            SendMode::Sync,
        )
        .await
    }

    /// The writable queues of `topic`, fetching its route (again every 50 ms) until it is
    /// known. Fails with `NoRoute` if no route appears within the request timeout.
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        let timeout = match &self.state {
            State::Running {
                request_timeout, ..
            } => *request_timeout,
            State::Built { .. } => return Err(ClientError::ShutDown),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (reply, rx) = oneshot::channel();
            self.owner()?.call(Call::Queues {
                topic: topic.to_owned(),
                reply,
            });
            let queues = rx.await.map_err(|_| ClientError::ShutDown)?;
            if !queues.is_empty() {
                return Ok(queues);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::NoRoute {
                    topic: topic.to_owned(),
                });
            }
            tokio::time::sleep(ROUTE_POLL_INTERVAL).await;
        }
    }

    /// Gives a built producer the checker of its group's transactions.
    pub(crate) fn with_checker(mut self, new_checker: TransactionChecker) -> Self {
        if let State::Built { checker, .. } = &mut self.state {
            *checker = Some(new_checker);
        }
        self
    }

    /// Sends a transactional half message (see [`super::TransactionProducer`]).
    pub(crate) async fn send_half(&self, message: Message) -> Result<SendResult, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.owner()?.call(Call::SendHalf { message, reply });
        SendFuture { rx }.await
    }

    /// END_TRANSACTION (oneway) for a half message sent with [`Producer::send_half`].
    pub(crate) async fn end_transaction(
        &self,
        sent: SendResult,
        state: LocalTransactionState,
        remark: Option<String>,
    ) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.owner()?.call(Call::EndTransaction {
            sent,
            state,
            remark,
            reply,
        });
        rx.await.unwrap_or(Err(ClientError::ShutDown))
    }

    /// Unregisters from the brokers (waiting at most 3 s for their answers) and stops. Sends in
    /// progress fail with `ShutDown`. Every handle of this producer is then shut down.
    pub async fn shutdown(&self) {
        if let State::Running { owner, .. } = &self.state {
            owner.shutdown().await;
        }
    }
}

/// The result of [`Producer::send_async`].
#[must_use = "the send happens anyway; the future only reports its result"]
pub struct SendFuture {
    rx: oneshot::Receiver<Result<SendResult, ClientError>>,
}

impl Future for SendFuture {
    type Output = Result<SendResult, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::ShutDown)))
    }
}

/// What a send call targets.
pub(crate) enum SendRequest {
    One(Message),
    ToQueue(Message, MessageQueue),
    Selector(Message, QueueSelector),
    Batch(Vec<Message>),
}

pub(crate) enum Call {
    Send {
        request: SendRequest,
        mode: SendMode,
        reply: oneshot::Sender<Result<SendResult, ClientError>>,
    },
    Queues {
        topic: String,
        reply: oneshot::Sender<Vec<MessageQueue>>,
    },
    SendHalf {
        message: Message,
        reply: oneshot::Sender<Result<SendResult, ClientError>>,
    },
    EndTransaction {
        sent: SendResult,
        state: LocalTransactionState,
        remark: Option<String>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// The checker's verdict on a broker's check.
    AnswerCheck {
        check: Box<TransactionCheck>,
        state: LocalTransactionState,
    },
}

struct ProducerDriver {
    core: CoreProducer,
    waiting: BTreeMap<SendId, oneshot::Sender<Result<SendResult, ClientError>>>,
    checker: Option<TransactionChecker>,
    /// The owner's own calls, for checks answered on a blocking thread.
    calls: tokio::sync::mpsc::WeakUnboundedSender<Control<Call>>,
}

impl ProducerDriver {
    /// Runs the checker off the owner task (it may block) and feeds its verdict back.
    fn run_check(&self, check: TransactionCheck) {
        let Some(checker) = self.checker.clone() else {
            debug!(msg_id = %check.message.msg_id(), "transaction check without a checker ignored");
            return;
        };
        let calls = self.calls.clone();
        super::spawn_application_code(move || {
            let state = super::transaction::call_guarded(|| checker(&check.message));
            if let Some(calls) = calls.upgrade() {
                let _ = calls.send(Control::Call(Call::AnswerCheck {
                    check: Box::new(check),
                    state,
                }));
            }
        });
    }
}

impl Driven for ProducerDriver {
    type Call = Call;

    fn handle_call(&mut self, now_ms: u64, call: Call) {
        match call {
            Call::Send {
                request,
                mode,
                reply,
            } => {
                let id = match request {
                    SendRequest::One(m) => self.core.send(now_ms, m, mode),
                    SendRequest::ToQueue(m, q) => self.core.send_to_queue(now_ms, m, q, mode),
                    SendRequest::Selector(m, s) => self.core.send_with_selector(now_ms, m, s, mode),
                    SendRequest::Batch(ms) => self.core.send_batch(now_ms, ms, mode),
                };
                self.waiting.insert(id, reply);
            }
            Call::Queues { topic, reply } => {
                let queues = self.core.topic_queues(&topic);
                if queues.is_empty() {
                    self.core.refresh_route(now_ms, &topic);
                }
                let _ = reply.send(queues);
            }
            Call::SendHalf { message, reply } => {
                let id = self.core.send_in_transaction(now_ms, message);
                self.waiting.insert(id, reply);
            }
            Call::EndTransaction {
                sent,
                state,
                remark,
                reply,
            } => {
                let _ = reply.send(self.core.end_transaction(now_ms, &sent, state, remark));
            }
            Call::AnswerCheck { check, state } => self.core.answer_check(now_ms, &check, state),
        }
    }

    fn handle_net(&mut self, now_ms: u64, event: NetEvent) {
        event.feed(&mut self.core, now_ms, "producer")
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
                ClientOutput::SendDone { id, result } => match self.waiting.remove(&id) {
                    // A caller that stopped waiting (dropped future) is no error.
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => debug!(?id, "send result nobody waits for"),
                },
                ClientOutput::TransactionCheck { check } => self.run_check(check),
                other => debug!(?other, "producer output ignored"),
            }
        }
    }

    fn begin_shutdown(&mut self, now_ms: u64) {
        self.core.shutdown(now_ms)
    }

    fn finish(&mut self, _now_ms: u64) {
        for (_, reply) in std::mem::take(&mut self.waiting) {
            let _ = reply.send(Err(ClientError::ShutDown));
        }
    }
}
