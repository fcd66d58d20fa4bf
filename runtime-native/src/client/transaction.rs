//! The transactional producer (RocketMQ's `TransactionMQProducer`).
//!
//! ```text
//!  send_message_in_transaction(msg, arg)
//!    1. half message (TRAN_MSG=true, PGROUP) ──▶ broker: stored, invisible
//!    2. executor(msg, result, arg)  — the local transaction
//!    3. END_TRANSACTION (oneway) ──▶ broker: commit → delivered / rollback → dropped /
//!                                            unknow → the broker asks later
//!  broker ──CHECK_TRANSACTION_STATE──▶ checker(half message) ──END_TRANSACTION──▶ broker
//! ```

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tracing::warn;
use vostok_core::client::{ClientError, Message, MessageExt, SendResult, SendStatus};

pub use vostok_core::client::LocalTransactionState;

use super::producer::{Producer, ProducerBuilder};

/// Decides what became of a half message the broker asks about (RocketMQ's
/// `checkLocalTransaction`). Runs on a blocking thread.
pub type TransactionChecker = Arc<dyn Fn(&MessageExt) -> LocalTransactionState + Send + Sync>;

/// Runs the local transaction of a half message just stored (RocketMQ's
/// `executeLocalTransaction`): the message, where it was stored, and the caller's argument.
pub type LocalTransactionExecutor = Arc<
    dyn Fn(&Message, &SendResult, Option<&(dyn Any + Send + Sync)>) -> LocalTransactionState
        + Send
        + Sync,
>;

/// A panicking executor or checker counts as undecided, as in RocketMQ.
pub(crate) fn call_guarded(f: impl FnOnce() -> LocalTransactionState) -> LocalTransactionState {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        warn!("a local transaction executor or checker panicked; the state is unknown");
        LocalTransactionState::Unknow
    })
}

/// The outcome of [`TransactionProducer::send_message_in_transaction`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// Where the half message was stored.
    pub send_result: SendResult,
    /// What the executor decided (and END_TRANSACTION told the broker).
    pub local_state: LocalTransactionState,
}

impl ProducerBuilder {
    /// Builds a transactional producer of this builder's group: `executor` runs each local
    /// transaction, `checker` answers the brokers' checks of transactions left undecided (or
    /// whose producer went away: any member of the group may be asked).
    pub fn build_transactional<E, C>(
        self,
        executor: E,
        checker: C,
    ) -> Result<TransactionProducer, ClientError>
    where
        E: Fn(&Message, &SendResult, Option<&(dyn Any + Send + Sync)>) -> LocalTransactionState
            + Send
            + Sync
            + 'static,
        C: Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
    {
        let checker: TransactionChecker = Arc::new(checker);
        Ok(TransactionProducer {
            producer: self.build()?.with_checker(checker),
            executor: Arc::new(executor),
        })
    }
}

/// A producer that sends transactional messages.
///
/// ```
/// use vostok::client::{LocalTransactionState, Message, Producer};
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
/// let producer = Producer::builder()
///     .namesrv_addr(&namesrv)
///     .group("PaymentProducers")
///     .build_transactional(
///         // The local transaction: here, whether the argument says the payment succeeded.
///         |_message, _stored, arg| match arg.and_then(|a| a.downcast_ref::<bool>()) {
///             Some(true) => LocalTransactionState::CommitMessage,
///             Some(false) => LocalTransactionState::RollbackMessage,
///             None => LocalTransactionState::Unknow,
///         },
///         // Asked by the broker about transactions left undecided.
///         |_half| LocalTransactionState::RollbackMessage,
///     )?
///     .start()
///     .await?;
/// let result = producer
///     .send_message_in_transaction(Message::new("Payments", "order #1 paid"), Some(Box::new(true)))
///     .await?;
/// assert_eq!(result.local_state, LocalTransactionState::CommitMessage);
/// producer.shutdown().await;
/// # broker.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TransactionProducer {
    producer: Producer,
    executor: LocalTransactionExecutor,
}

impl TransactionProducer {
    /// Starts the producer (see [`Producer::start`]).
    pub async fn start(self) -> Result<TransactionProducer, ClientError> {
        Ok(TransactionProducer {
            producer: self.producer.start().await?,
            executor: self.executor,
        })
    }

    /// Sends `message` as a half message, runs the local transaction with `arg`, and tells the
    /// broker its outcome (END_TRANSACTION, oneway). A delay level is dropped: transactional
    /// messages are not delayed. A half message the store could not make durable in time is
    /// rolled back without running the executor, as RocketMQ does.
    pub async fn send_message_in_transaction(
        &self,
        message: Message,
        arg: Option<Box<dyn Any + Send + Sync>>,
    ) -> Result<TransactionSendResult, ClientError> {
        let send_result = self.producer.send_half(message.clone()).await?;
        let local_state = if send_result.status == SendStatus::SendOk {
            let executor = self.executor.clone();
            call_guarded(|| executor(&message, &send_result, arg.as_deref()))
        } else {
            LocalTransactionState::RollbackMessage
        };
        if let Err(e) = self
            .producer
            .end_transaction(send_result.clone(), local_state, None)
            .await
        {
            // The broker's check settles it.
            warn!(msg_id = %send_result.msg_id, "END_TRANSACTION could not be sent: {e}");
        }
        Ok(TransactionSendResult {
            send_result,
            local_state,
        })
    }

    /// The underlying producer, for ordinary sends in the same group.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Unregisters and stops (see [`Producer::shutdown`]). Undecided transactions are then
    /// checked with another producer of the group.
    pub async fn shutdown(&self) {
        self.producer.shutdown().await
    }
}
