//! The async simple consumer: the core's
//! [`SimpleConsumer`](vostok_core::client::SimpleConsumer) state machine on an owner task;
//! `receive`, `ack` and `change_invisible_duration` each wait for their broker's answer.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;
use vostok_core::client::{
    ClientError, ClientOutput, ConsumeInitMode, ReceiptHandle, ReceivedMessage, SimpleCallId,
    SimpleConsumer as CoreSimpleConsumer, SimpleConsumerConfig, SimpleResult,
};

use super::driver::{Driven, Owner};
use super::net::{NetEvent, Pool};
use super::options::{common_builder_methods, CommonOptions};

/// Configures a [`SimpleConsumer`]. Defaults are RocketMQ 5's: a 15 s await duration, new
/// groups starting at a queue's last message ([`ConsumeInitMode::Max`]).
#[derive(Clone, Default)]
pub struct SimpleConsumerBuilder {
    common: CommonOptions,
    config: SimpleConsumerConfig,
    group_set: bool,
    /// Topic, expression, and whether the expression is SQL92 (else TAG).
    subscriptions: Vec<(String, String, bool)>,
}

impl SimpleConsumerBuilder {
    common_builder_methods!();

    /// The consumer group (required).
    pub fn group(mut self, group: &str) -> Self {
        self.config.consumer_group = group.to_owned();
        self.group_set = true;
        self
    }

    /// Subscribes `topic` with a TAG expression: `*` for every message, or `tagA || tagB`.
    /// May be called for several topics; receives take them in turn.
    pub fn subscribe(mut self, topic: &str, expression: &str) -> Self {
        self.subscriptions
            .push((topic.to_owned(), expression.to_owned(), false));
        self
    }

    /// Subscribes `topic` with an SQL92 property selector, which brokers with
    /// `enablePropertyFilter=true` evaluate. An expression that does not compile makes `start`
    /// fail with [`ClientError::InvalidSubscription`].
    pub fn subscribe_sql(mut self, topic: &str, expression: &str) -> Self {
        self.subscriptions
            .push((topic.to_owned(), expression.to_owned(), true));
        self
    }

    /// How long a receive waits on the broker when no message is there (`awaitDuration`,
    /// default 15 s; zero answers at once). A receive's request times out this plus the
    /// request timeout after it is sent.
    pub fn await_duration(mut self, duration: Duration) -> Self {
        self.config.await_duration_ms = duration.as_millis() as u64;
        self
    }

    /// Where the group starts in a queue it never read (default: the last message).
    pub fn init_mode(mut self, mode: ConsumeInitMode) -> Self {
        self.config.init_mode = mode;
        self
    }

    /// Receives in order (FIFO; RocketMQ's orderly POP, default off): a queue hands out its
    /// next batch only once the last one is acknowledged or its invisible time is over, and
    /// a message not acknowledged comes back in its place, before the ones after it.
    pub fn orderly(mut self, orderly: bool) -> Self {
        self.config.orderly = orderly;
        self
    }

    /// Checks the settings. The consumer does nothing until [`SimpleConsumer::start`].
    pub fn build(mut self) -> Result<SimpleConsumer, ClientError> {
        self.config.client = self.common.client_config()?;
        if !self.group_set || self.config.consumer_group.is_empty() {
            return Err(ClientError::InvalidMessage(
                "a simple consumer needs a group".to_owned(),
            ));
        }
        Ok(SimpleConsumer {
            state: State::Built(Box::new(self)),
        })
    }
}

enum State {
    Built(Box<SimpleConsumerBuilder>),
    Running { owner: Owner<Call>, group: String },
}

/// A RocketMQ 5 simple consumer (POP): the application receives messages when it wants them,
/// then acknowledges each one, or hides it longer. The broker balances the group itself, so any
/// number of simple consumers share a topic's queues; a message not acknowledged within its
/// invisible duration is handed out again (to any member of the group, with
/// `reconsume_times` + 1).
///
/// The brokers must serve POP (RocketMQ 5, or Vostok). Receipt handles are RocketMQ's, so a
/// message may be acknowledged by another client of the group than the one that received it.
///
/// ```
/// use std::time::Duration;
/// use vostok::client::{ConsumeInitMode, Message, Producer, SimpleConsumer};
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
/// producer.send(Message::new("Invoices", "invoice #1")).await?;
///
/// let consumer = SimpleConsumer::builder()
///     .namesrv_addr(&namesrv)
///     .group("InvoicePrinters")
///     .subscribe("Invoices", "*")
///     .init_mode(ConsumeInitMode::Min)
///     .await_duration(Duration::from_secs(2))
///     .build()?
///     .start()
///     .await?;
/// let mut messages = Vec::new();
/// while messages.is_empty() {
///     messages = consumer.receive(16, Duration::from_secs(30)).await?;
/// }
/// assert_eq!(&messages[0].body()[..], b"invoice #1");
/// consumer.ack(&messages[0]).await?; // never handed out again
/// consumer.shutdown().await;
/// producer.shutdown().await;
/// # broker.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct SimpleConsumer {
    state: State,
}

impl SimpleConsumer {
    pub fn builder() -> SimpleConsumerBuilder {
        SimpleConsumerBuilder::default()
    }

    /// Subscribes, then starts the owner task (routes, heartbeats). Fails if a subscription
    /// is invalid.
    pub async fn start(self) -> Result<SimpleConsumer, ClientError> {
        let builder = match self.state {
            State::Built(builder) => *builder,
            running @ State::Running { .. } => return Ok(SimpleConsumer { state: running }),
        };
        let clock = builder.common.clock.clone();
        let now_ms = clock.now_ms();
        let request_timeout = Duration::from_millis(builder.config.client.request_timeout_ms);
        let group = builder.config.consumer_group.clone();
        let mut core = CoreSimpleConsumer::new(builder.config, now_ms);
        for (topic, expression, sql) in &builder.subscriptions {
            if *sql {
                core.subscribe_sql(now_ms, topic, expression)?;
            } else {
                core.subscribe(now_ms, topic, expression)?;
            }
        }
        core.start(now_ms);
        let owner = Owner::spawn(
            clock,
            builder.common.connect_timeout,
            request_timeout,
            move |_| SimpleDriver {
                core,
                waiting: BTreeMap::new(),
            },
        );
        Ok(SimpleConsumer {
            state: State::Running { owner, group },
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

    /// The consumer group.
    pub fn group(&self) -> &str {
        match &self.state {
            State::Built(builder) => &builder.config.consumer_group,
            State::Running { group, .. } => group,
        }
    }

    /// Subscribes `topic` while running (replacing an earlier expression of the topic).
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

    /// Subscribes `topic` with an SQL92 property selector while running; fails with
    /// [`ClientError::InvalidSubscription`] when it does not compile.
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

    /// Stops receiving from `topic`.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), ClientError> {
        let topic = topic.to_owned();
        self.ask(|reply| Call::Unsubscribe { topic, reply }).await
    }

    /// Up to `max_messages` (1 to 32) messages of one subscribed topic (the topics in turn),
    /// each hidden from the group for `invisible_duration` unless acknowledged first. Waits up
    /// to the await duration on the broker for the first message; empty if none came.
    ///
    /// Dropping the future does not lose messages: those it would have returned are handed
    /// out again once their invisible duration is over.
    pub async fn receive(
        &self,
        max_messages: usize,
        invisible_duration: Duration,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let invisible_ms = invisible_duration.as_millis() as u64;
        self.ask(|reply| Call::Receive {
            max_messages,
            invisible_ms,
            reply,
        })
        .await?
    }

    /// Acknowledges `message`: it is never handed out again. Fails with the broker's code
    /// ([`ClientError::Broker`]) if it refuses (e.g. 208 when the message's queue no longer
    /// holds it).
    pub async fn ack(&self, message: &ReceivedMessage) -> Result<(), ClientError> {
        let message = Box::new(message.clone());
        self.ask(|reply| Call::Ack { message, reply }).await?
    }

    /// Hides `message` for `invisible_duration` from now on (e.g. to get more time for it, or
    /// to have it back sooner), and gives it its new receipt handle: the old one no longer
    /// acknowledges it.
    pub async fn change_invisible_duration(
        &self,
        message: &mut ReceivedMessage,
        invisible_duration: Duration,
    ) -> Result<(), ClientError> {
        let invisible_ms = invisible_duration.as_millis() as u64;
        let request = Box::new(message.clone());
        let handle = self
            .ask(|reply| Call::ChangeInvisible {
                message: request,
                invisible_ms,
                reply,
            })
            .await??;
        message.set_receipt_handle(handle);
        Ok(())
    }

    /// Unregisters from the brokers (waiting at most 3 s for their answers) and stops. Calls
    /// still waiting fail with [`ClientError::ShutDown`].
    pub async fn shutdown(&self) {
        if let State::Running { owner, .. } = &self.state {
            owner.shutdown().await;
        }
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
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<()>,
    },
    Receive {
        max_messages: usize,
        invisible_ms: u64,
        reply: oneshot::Sender<Result<Vec<ReceivedMessage>, ClientError>>,
    },
    Ack {
        message: Box<ReceivedMessage>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    ChangeInvisible {
        message: Box<ReceivedMessage>,
        invisible_ms: u64,
        reply: oneshot::Sender<Result<ReceiptHandle, ClientError>>,
    },
}

/// A caller waiting for the result of one core call.
enum Waiter {
    Receive(oneshot::Sender<Result<Vec<ReceivedMessage>, ClientError>>),
    Ack(oneshot::Sender<Result<(), ClientError>>),
    Change(oneshot::Sender<Result<ReceiptHandle, ClientError>>),
}

impl Waiter {
    fn fail(self, error: ClientError) {
        match self {
            Waiter::Receive(reply) => drop(reply.send(Err(error))),
            Waiter::Ack(reply) => drop(reply.send(Err(error))),
            Waiter::Change(reply) => drop(reply.send(Err(error))),
        }
    }
}

struct SimpleDriver {
    core: CoreSimpleConsumer,
    waiting: BTreeMap<SimpleCallId, Waiter>,
}

impl SimpleDriver {
    fn complete(&mut self, id: SimpleCallId, result: SimpleResult) {
        let Some(waiter) = self.waiting.remove(&id) else {
            debug!(?id, "simple consumer result nobody waits for");
            return;
        };
        // A caller that stopped waiting (dropped future) is no error.
        match (waiter, result) {
            (Waiter::Receive(reply), SimpleResult::Received(result)) => {
                let _ = reply.send(result);
            }
            (Waiter::Ack(reply), SimpleResult::Acked(result)) => {
                let _ = reply.send(result);
            }
            (Waiter::Change(reply), SimpleResult::InvisibleChanged(result)) => {
                let _ = reply.send(result);
            }
            (waiter, result) => {
                debug!(?id, ?result, "simple consumer result of another kind");
                waiter.fail(ClientError::MalformedResponse(
                    "result of another kind of call".to_owned(),
                ));
            }
        }
    }
}

impl Driven for SimpleDriver {
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
            Call::Unsubscribe { topic, reply } => {
                self.core.unsubscribe(now_ms, &topic);
                let _ = reply.send(());
            }
            Call::Receive {
                max_messages,
                invisible_ms,
                reply,
            } => {
                let id = self.core.receive(now_ms, max_messages, invisible_ms);
                self.waiting.insert(id, Waiter::Receive(reply));
            }
            Call::Ack { message, reply } => {
                let id = self.core.ack(now_ms, &message);
                self.waiting.insert(id, Waiter::Ack(reply));
            }
            Call::ChangeInvisible {
                message,
                invisible_ms,
                reply,
            } => {
                let id = self
                    .core
                    .change_invisible_duration(now_ms, &message, invisible_ms);
                self.waiting.insert(id, Waiter::Change(reply));
            }
        }
    }

    fn handle_net(&mut self, now_ms: u64, event: NetEvent) {
        event.feed(&mut self.core, now_ms, "simple consumer")
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
                ClientOutput::SimpleDone { id, result } => self.complete(id, result),
                other => debug!(?other, "simple consumer output ignored"),
            }
        }
    }

    fn begin_shutdown(&mut self, now_ms: u64) {
        self.core.shutdown(now_ms)
    }

    fn finish(&mut self, _now_ms: u64) {
        for (_, waiter) in std::mem::take(&mut self.waiting) {
            waiter.fail(ClientError::ShutDown);
        }
    }
}
