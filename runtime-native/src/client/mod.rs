//! The Rust client: async producers and consumers over the core's client state machines, speaking
//! the RocketMQ remoting protocol.

mod clock;
mod driver;
mod net;

pub use clock::{Clock, SystemClock};
