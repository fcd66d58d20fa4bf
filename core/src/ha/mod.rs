//! Master–slave replication on RocketMQ's HA v1 protocol (REPLICATION.md §1), as pure state
//! machines: the wire format ([`codec`]), a master's links to its slaves ([`master`]) and a
//! slave's link to its master ([`slave`]). A slave's store appends what it receives with
//! [`crate::store::MessageStore::append_replicated`].
//!
//! ```text
//!   master broker                                   slave broker
//!   CommitLog ──ranges (≤ 32 KiB, one segment)──▶  append at the same offsets ──▶ own
//!      ▲         HaMaster                HaSlave    ConsumeQueues, index, flushes
//!      └──────── acks: the slave's CommitLog max ◀─┘
//! ```

pub mod codec;
pub mod master;
pub mod slave;

pub use codec::{FrameDecoder, HaCodecError, HaFrame, ReportDecoder};
pub use master::{HaMaster, HaMasterConfig, MasterAction};
pub use slave::{HaSlave, HaSlaveConfig, SlaveAction};
