//! The push consumer's listeners (concurrent and orderly) and the tasks that run them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::warn;
use vostok_core::client::{ConsumeOrderlyStatus, ConsumeStatus, MessageExt, MessageQueue};

/// A boxed listener future.
pub type ConsumeFuture = Pin<Box<dyn Future<Output = ConsumeStatus> + Send + 'static>>;

/// What a [`PushConsumer`](super::PushConsumer) hands messages to (RocketMQ's
/// `MessageListenerConcurrently`). Called with up to `consume_batch_size` messages of one queue;
/// several calls run at once (up to `consume_concurrency`).
///
/// Any `Fn(Vec<MessageExt>) -> impl Future<Output = ConsumeStatus>` is a listener:
///
/// ```
/// use vostok::client::{ConsumeStatus, MessageExt, MessageListener};
///
/// fn assert_listener(_: impl MessageListener) {}
/// assert_listener(|messages: Vec<MessageExt>| async move {
///     for m in &messages {
///         println!("{} {:?}", m.msg_id(), m.body());
///     }
///     ConsumeStatus::ConsumeSuccess
/// });
/// ```
///
/// A listener that panics is treated as having answered `ReconsumeLater`.
pub trait MessageListener: Send + Sync + 'static {
    /// Consumes `messages`, all from `queue`.
    fn consume(&self, queue: &MessageQueue, messages: Vec<MessageExt>) -> ConsumeFuture;
}

impl<F, Fut> MessageListener for F
where
    F: Fn(Vec<MessageExt>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ConsumeStatus> + Send + 'static,
{
    fn consume(&self, _queue: &MessageQueue, messages: Vec<MessageExt>) -> ConsumeFuture {
        Box::pin(self(messages))
    }
}

/// Runs listener calls on tasks, at most `concurrency` at once, and reports each status.
pub(crate) struct Dispatcher {
    listener: Arc<dyn MessageListener>,
    permits: Arc<Semaphore>,
}

impl Dispatcher {
    pub(crate) fn new(listener: Arc<dyn MessageListener>, concurrency: usize) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Spawns one listener call; `report` gets its status (`ReconsumeLater` if it panicked).
    pub(crate) fn dispatch(
        &self,
        queue: MessageQueue,
        messages: Vec<MessageExt>,
        report: impl FnOnce(ConsumeStatus) + Send + 'static,
    ) {
        let listener = self.listener.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            // The semaphore is never closed, so acquiring fails only if it were.
            let _permit = permits.acquire_owned().await;
            let call = listener.consume(&queue, messages);
            let status = match tokio::spawn(call).await {
                Ok(status) => status,
                Err(e) => {
                    warn!(%queue, "message listener failed: {e}; the messages will be redelivered");
                    ConsumeStatus::ReconsumeLater
                }
            };
            report(status);
        });
    }
}

/// What an orderly [`PushConsumer`](super::PushConsumer) tells its listener besides the
/// messages (RocketMQ's `ConsumeOrderlyContext`).
#[derive(Clone, Debug)]
pub struct ConsumeOrderlyContext {
    queue: MessageQueue,
    suspend_current_queue_time: Option<Duration>,
}

impl ConsumeOrderlyContext {
    pub(crate) fn new(queue: MessageQueue) -> Self {
        Self {
            queue,
            suspend_current_queue_time: None,
        }
    }

    /// The queue the messages come from.
    pub fn message_queue(&self) -> &MessageQueue {
        &self.queue
    }

    /// How long the queue waits if this call answers
    /// [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`] (default: the consumer's
    /// `suspend_current_queue_time`).
    pub fn set_suspend_current_queue_time(&mut self, time: Duration) {
        self.suspend_current_queue_time = Some(time);
    }

    /// The suspend time set by [`ConsumeOrderlyContext::set_suspend_current_queue_time`].
    pub fn suspend_current_queue_time(&self) -> Option<Duration> {
        self.suspend_current_queue_time
    }
}

/// What an orderly [`PushConsumer`](super::PushConsumer) hands messages to (RocketMQ's
/// `MessageListenerOrderly`). Called with up to `consume_batch_size` messages of one queue in
/// queue order, never with two batches of one queue at once; calls for different queues run
/// on blocking threads in parallel (up to `consume_concurrency`).
///
/// Any `Fn(Vec<MessageExt>, &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus` is an orderly
/// listener:
///
/// ```
/// use vostok::client::{ConsumeOrderlyContext, ConsumeOrderlyStatus, MessageExt, MessageListenerOrderly};
///
/// fn assert_listener(_: impl MessageListenerOrderly) {}
/// assert_listener(|messages: Vec<MessageExt>, ctx: &mut ConsumeOrderlyContext| {
///     for m in &messages {
///         println!("{} {} {:?}", ctx.message_queue(), m.queue_offset(), m.body());
///     }
///     ConsumeOrderlyStatus::Success
/// });
/// ```
///
/// A listener that panics is treated as having answered `SuspendCurrentQueueAMoment`.
pub trait MessageListenerOrderly: Send + Sync + 'static {
    /// Consumes `messages`, all from `context.message_queue()`, in order.
    fn consume(
        &self,
        messages: Vec<MessageExt>,
        context: &mut ConsumeOrderlyContext,
    ) -> ConsumeOrderlyStatus;
}

impl<F> MessageListenerOrderly for F
where
    F: Fn(Vec<MessageExt>, &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus
        + Send
        + Sync
        + 'static,
{
    fn consume(
        &self,
        messages: Vec<MessageExt>,
        context: &mut ConsumeOrderlyContext,
    ) -> ConsumeOrderlyStatus {
        self(messages, context)
    }
}

/// Runs orderly listener calls on blocking threads, at most `concurrency` at once, and
/// reports each status with the suspend time the listener set, if any.
pub(crate) struct OrderlyDispatcher {
    listener: Arc<dyn MessageListenerOrderly>,
    permits: Arc<Semaphore>,
}

impl OrderlyDispatcher {
    pub(crate) fn new(listener: Arc<dyn MessageListenerOrderly>, concurrency: usize) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Spawns one listener call; `report` gets its status (a suspend if it panicked).
    pub(crate) fn dispatch(
        &self,
        queue: MessageQueue,
        messages: Vec<MessageExt>,
        report: impl FnOnce(ConsumeOrderlyStatus, Option<Duration>) + Send + 'static,
    ) {
        let listener = self.listener.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let call = super::spawn_application_code(move || {
                let mut context = ConsumeOrderlyContext::new(queue);
                let status = listener.consume(messages, &mut context);
                (status, context)
            });
            match call.await {
                Ok((status, context)) => report(status, context.suspend_current_queue_time),
                Err(e) => {
                    warn!("orderly message listener failed: {e}; the queue is suspended a moment");
                    report(ConsumeOrderlyStatus::SuspendCurrentQueueAMoment, None)
                }
            }
        });
    }
}
