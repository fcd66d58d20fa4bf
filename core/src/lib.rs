//! Vostok's sans-IO core.
//!
//! Everything that decides anything lives here: the RocketMQ remoting protocol, the message
//! format, the storage engine, and the NameServer and Broker state machines. Nothing here does
//! I/O, reads a clock or draws ambient randomness:
//!
//! * time enters as an argument, `now_ms` (wall-clock epoch milliseconds, as RocketMQ stores in
//!   messages), and never goes backwards between calls (the drivers read it through
//!   [`clock::SlewedClock`], which also keeps it from standing still when the wall clock is
//!   stepped back);
//! * randomness comes from one seed in a configuration ([`rng::SeededRng`]);
//! * bytes to send, ranges to make durable and connections to close leave through `poll_output()`,
//!   and the next instant a state machine must be woken through `poll_timeout()`.
//!
//! Storage is the one narrow seam: the store writes through the [`store::SegmentStorage`] trait
//! (a memcpy into an mmap in production, memory in tests and the playground), and asks the driver
//! to make ranges durable instead of syncing itself.
//!
//! The crate builds for `wasm32-unknown-unknown`.
#![forbid(unsafe_code)]

pub mod acl;
pub mod broker;
pub mod check;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod defects;
pub mod filter;
pub mod ha;
pub mod message;
pub mod namesrv;
pub mod remoting;
pub mod rng;
pub mod store;
pub mod topic;

/// Identifies one connection of a driver. Chosen by the driver, opaque to the core; a closed
/// connection's id is never reused by the same driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}
