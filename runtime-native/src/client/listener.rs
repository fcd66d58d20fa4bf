//! The push consumer's listener and the tasks that run it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::warn;
use vostok_core::client::{ConsumeStatus, MessageExt, MessageQueue};

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
