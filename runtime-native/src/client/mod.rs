//! The Rust client: async producers and consumers over the core's client state machines
//! ([`vostok_core::client`]), speaking the RocketMQ remoting protocol.
//!
//! * [`Producer`] — sync, async (eagerly submitted futures or callbacks), oneway, batch and
//!   ordered sends.
//! * [`PushConsumer`] — a group member that rebalances, long-polls and hands messages to a
//!   [`MessageListener`], or in queue order to a [`MessageListenerOrderly`] (queue locks).
//! * [`PullConsumer`] — the "lite pull" consumer: subscribe or assign, `poll`, commit, seek.
//! * [`SimpleConsumer`] — RocketMQ 5's POP consumer: `receive`, `ack`,
//!   `change_invisible_duration`; the brokers balance the group.
//! * [`TransactionProducer`] — transactional sends with a local-transaction executor and a
//!   checker answering the brokers' check-backs.
//!
//! Every client is one owner task driving its core state machine, plus one reader and one
//! writer task per connection:
//!
//! ```text
//!   handle (Producer, …) ──calls──▶ owner task ◀──frames── reader task ◀── socket
//!          ▲                         │  │ core state machine        ▲
//!          └──── results ────────────┘  └──commands──▶ writer task ─┘
//! ```
//!
//! The owner takes every queued input at once, feeds them with one `now_ms` from the client's
//! [`Clock`], fires the state machine's timer when due and drains its outputs: requests go to
//! the connection of their address (opened on demand with a timeout; a closed connection is
//! reported to the state machine, which fails or retries its requests, and the next request
//! opens a new one), results go back to the callers.
//!
//! The message types, results and errors are the core's, re-exported here.
//!
//! Not provided (yet): body compression and tracing (see [`vostok_core::client`]); SQL92
//! subscriptions are (`subscribe_sql`, served by brokers with `enablePropertyFilter=true`);
//! broadcasting offsets are kept in memory and handed out by [`PushConsumer::local_offsets`],
//! not written to disk.

mod clock;
mod driver;
mod listener;
mod net;
mod options;
mod producer;
mod pull;
mod push;
mod simple;
mod transaction;

pub use clock::{Clock, SystemClock};
pub use listener::{ConsumeFuture, ConsumeOrderlyContext, MessageListener, MessageListenerOrderly};
pub use producer::{Producer, ProducerBuilder, SendFuture};
pub use pull::{PullConsumer, PullConsumerBuilder};
pub use push::{PushConsumer, PushConsumerBuilder};
pub use simple::{SimpleConsumer, SimpleConsumerBuilder};
pub use transaction::{
    LocalTransactionExecutor, LocalTransactionState, TransactionChecker, TransactionProducer,
    TransactionSendResult,
};
pub use vostok_core::client::requests::{ConsumeFromWhere, MessageModel};
pub use vostok_core::client::{
    AllocateStrategy, ClientError, ConsumeInitMode, ConsumeOrderlyStatus, ConsumeStatus, Message,
    MessageExt, MessageQueue, ReceiptHandle, ReceivedMessage, SendResult, SendStatus,
};

/// Runs application code that may block (an orderly listener, a transaction checker) off the
/// client's owner task: on a blocking thread in production; on a plain task in the simulator
/// (`--cfg madsim`), which has no threads and whose listeners never block.
pub(crate) fn spawn_application_code<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(f)
    }
    #[cfg(madsim)]
    {
        tokio::spawn(async move { f() })
    }
}
