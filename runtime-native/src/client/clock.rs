//! The client's clock: wall-clock epoch milliseconds that never go backwards nor stand still.
//!
//! The core's client state machines take `now_ms` as an argument; the driver reads it from a
//! [`Clock`] so that a simulator (or a test) can run the same driver on virtual time by passing its
//! own implementation to the builders (`clock(...)`).

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use vostok_core::clock::SlewedClock;

/// A source of `now_ms` for a client's driver. Implementations must never go backwards.
///
/// Timers (heartbeats, route refreshes, request timeouts) still sleep on tokio's clock; the
/// state machine reads the time only from here.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use vostok::client::{Clock, Producer};
///
/// /// Virtual time a test or simulator advances itself.
/// struct Virtual(AtomicU64);
///
/// impl Clock for Virtual {
///     fn now_ms(&self) -> u64 {
///         self.0.load(Ordering::Relaxed)
///     }
/// }
///
/// let clock = Arc::new(Virtual(AtomicU64::new(1_700_000_000_000)));
/// let producer = Producer::builder()
///     .namesrv_addr("127.0.0.1:9876")
///     .clock(clock.clone())
///     .build()?;
/// clock.0.fetch_add(1_000, Ordering::Relaxed);
/// # drop(producer);
/// # Ok::<(), vostok::client::ClientError>(())
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Epoch milliseconds.
    fn now_ms(&self) -> u64;
}

/// [`SystemTime`] in epoch milliseconds that never goes backwards and never stands still: after
/// the wall clock is stepped back (NTP), time runs on the monotonic clock, slowed, until the wall
/// clock catches up ([`SlewedClock`]).
#[derive(Debug)]
pub struct SystemClock {
    slewed: Mutex<SlewedClock>,
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            slewed: Mutex::new(SlewedClock::default()),
            origin: Instant::now(),
        }
    }
}

impl SystemClock {
    /// A shareable system clock, the builders' default.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock::default())
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut slewed = self.slewed.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the lock: readings reach the clock in the order they were taken.
        let mono_us = self.origin.elapsed().as_micros() as u64;
        slewed.now_ms(wall_ms, mono_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_epoch_ms_and_monotonic() {
        let clock = SystemClock::default();
        let first = clock.now_ms();
        // 2020-01-01 in epoch ms: the clock speaks milliseconds, not seconds or micros.
        assert!(first > 1_577_836_800_000, "{first}");
        assert!(first < 1_577_836_800_000 * 100, "{first}");
        // As if the wall clock had been stepped back a minute.
        clock.slewed.lock().unwrap().now_ms(first + 60_000, 0);
        assert!(clock.now_ms() >= first + 60_000, "never goes backwards");
    }
}
