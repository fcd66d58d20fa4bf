//! The time every state machine is given: wall-clock epoch milliseconds that never go back
//! and never stand still.
//!
//! State machines take `now_ms` both as a timestamp (a message's store time, a fence's build
//! time) and to run periods (registration with the NameServers, flushes, long-poll and
//! transaction-check timeouts). A wall clock can be stepped back (NTP, an operator). Holding
//! the highest reading keeps time from going back, but then it stands still until the wall
//! clock catches up, and every period with it: a broker whose clock went back 5 s stops
//! registering for 5 s, long enough for the NameServer to give its routes to nobody. RocketMQ
//! runs its periods on the monotonic clock, so it does not stall.
//!
//! So the drivers read both clocks into a [`SlewedClock`]: time follows the wall clock while
//! that goes forward, and after a step back it keeps running on the monotonic clock at
//! [`SLEW_RATE_PER_MILLE`] ‰ of its rate until the wall clock catches up (a 5 s step back is
//! absorbed in 50 s, during which every period runs 10 % slow). Never back, never stalled, and
//! back on the wall clock soon after.
//!
//! ```text
//!  ms ▲                                  now = wall again
//!     │                             ····╱
//!     │            now (0.9×)  ·····   ╱
//!     │             ╱·······          ╱
//!     │            ╱ │               ╱  wall
//!     │           ╱  │ step        ╱
//!     │          ╱   │ back      ╱
//!     │         ╱    │       ╱
//!     │              │   ╱
//!     └──────────────────────────────────────▶ monotonic
//! ```

/// How fast time runs while it is ahead of the wall clock, in thousandths of the monotonic
/// clock's rate.
pub const SLEW_RATE_PER_MILLE: u64 = 900;

/// Turns readings of the wall clock (epoch ms) and of a monotonic clock (µs since any origin)
/// into `now_ms`; pure, so the drivers, the clients and the simulator share it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlewedClock {
    /// The time last given, in µs since the epoch (µs so that frequent readings are not each
    /// rounded down).
    now_us: u64,
    /// The monotonic reading that went with it; `None` before the first reading.
    mono_us: Option<u64>,
}

impl SlewedClock {
    /// The time for a reading of both clocks. Monotonic readings must not go back (one that
    /// does is taken as no time passed).
    pub fn now_ms(&mut self, wall_ms: u64, mono_us: u64) -> u64 {
        let wall_us = wall_ms.saturating_mul(1_000);
        let ran_us = match self.mono_us {
            Some(last) => mono_us.saturating_sub(last),
            None => 0,
        };
        self.mono_us = Some(self.mono_us.map_or(mono_us, |last| last.max(mono_us)));
        let slewed = self
            .now_us
            .saturating_add(ran_us.saturating_mul(SLEW_RATE_PER_MILLE) / 1_000);
        self.now_us = slewed.max(wall_us);
        self.now_us / 1_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH_MS: u64 = 1_700_000_000_000;

    #[test]
    fn follows_the_wall_clock_while_it_goes_forward() {
        let mut clock = SlewedClock::default();
        assert_eq!(clock.now_ms(EPOCH_MS, 5_000_000), EPOCH_MS);
        assert_eq!(clock.now_ms(EPOCH_MS + 1_000, 6_000_000), EPOCH_MS + 1_000);
        // A wall clock running fast (or stepped forward) is followed at once.
        assert_eq!(clock.now_ms(EPOCH_MS + 9_000, 7_000_000), EPOCH_MS + 9_000);
    }

    #[test]
    fn after_a_step_back_runs_on_slowed_until_the_wall_clock_catches_up() {
        let mut clock = SlewedClock::default();
        clock.now_ms(EPOCH_MS, 0);
        // The wall clock goes back 5 s; one second later time has moved on 0.9 s, not 0.
        assert_eq!(clock.now_ms(EPOCH_MS - 4_000, 1_000_000), EPOCH_MS + 900);
        let mut now = EPOCH_MS + 900;
        let mut converged_at_s = None;
        for s in 2..=100u64 {
            let wall = EPOCH_MS - 5_000 + s * 1_000;
            let next = clock.now_ms(wall, s * 1_000_000);
            assert!(
                next > now,
                "never stands still: {next} after {now} at {s} s"
            );
            now = next;
            if next == wall && converged_at_s.is_none() {
                converged_at_s = Some(s);
            }
        }
        assert_eq!(converged_at_s, Some(50), "a 5 s step is absorbed in 50 s");
    }

    #[test]
    fn many_close_readings_are_not_rounded_away() {
        let mut clock = SlewedClock::default();
        clock.now_ms(EPOCH_MS, 0);
        let mut now = 0;
        // 10,000 readings 100 µs apart with the wall clock stuck 10 s behind: 0.9 s pass.
        for i in 1..=10_000u64 {
            now = clock.now_ms(EPOCH_MS - 10_000, i * 100);
        }
        assert_eq!(now, EPOCH_MS + 900);
    }

    #[test]
    fn a_monotonic_reading_that_goes_back_is_no_time_passed() {
        let mut clock = SlewedClock::default();
        clock.now_ms(EPOCH_MS, 10_000_000);
        assert_eq!(clock.now_ms(EPOCH_MS - 1_000, 9_000_000), EPOCH_MS);
        assert_eq!(clock.now_ms(EPOCH_MS - 1_000, 11_000_000), EPOCH_MS + 900);
    }
}
