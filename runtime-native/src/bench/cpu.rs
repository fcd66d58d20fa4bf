//! The broker's CPU time per message, from `/proc`, so a change's cost shows whatever the load
//! generator costs.
//!
//! A broker in its own process (`--standalone-child`, `--broker-pid`) is read from
//! `/proc/<pid>/stat`: user and system time of every thread it ever ran. A broker in the bench's
//! process (`--standalone`) runs on threads of its own, named [`BROKER_THREAD`] (its runtime) and
//! `vostok-flusher` (its group commit); their `/proc/self/task/<tid>/stat` are summed. A thread
//! that ended during the run takes its time with it, so the in-process figure can only be low:
//! the broker's runtime keeps its threads for the whole run.
//!
//! Times are in clock ticks (`sysconf(_SC_CLK_TCK)`, 100 per second on Linux): over a run of
//! seconds the resolution is far below the figures reported.

use std::time::Duration;

use serde_json::{json, Value};

use super::stats::round3;

/// The name of the in-process broker's runtime threads.
pub const BROKER_THREAD: &str = "vostok-broker";

/// Thread names that belong to an in-process broker (a name is at most 15 bytes in `/proc`).
const BROKER_THREAD_PREFIXES: [&str; 2] = [BROKER_THREAD, "vostok-flusher"];

/// Whose CPU time is the broker's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerCpu {
    /// A process of its own.
    Process(u32),
    /// The named broker threads of this process.
    InProcess,
}

/// User and system CPU time, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

impl BrokerCpu {
    /// The broker's CPU time so far; `None` when `/proc` cannot be read (not Linux, the process
    /// is gone).
    pub fn read(self) -> Option<CpuTicks> {
        match self {
            BrokerCpu::Process(pid) => {
                let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                parse_stat(&text).map(|(_, ticks)| ticks)
            }
            BrokerCpu::InProcess => {
                let mut sum = CpuTicks::default();
                for entry in std::fs::read_dir("/proc/self/task").ok()? {
                    let Ok(entry) = entry else { continue };
                    let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
                        continue; // The thread ended meanwhile.
                    };
                    if let Some((comm, ticks)) = parse_stat(&text) {
                        if BROKER_THREAD_PREFIXES.iter().any(|p| comm.starts_with(p)) {
                            sum.user += ticks.user;
                            sum.system += ticks.system;
                        }
                    }
                }
                Some(sum)
            }
        }
    }
}

/// The command name and the utime/stime fields (14 and 15) of a `/proc/.../stat` line. The
/// name is in parentheses and may itself hold spaces or parentheses: the fields start after the
/// last `)`.
fn parse_stat(text: &str) -> Option<(&str, CpuTicks)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    // After ") ": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) 12.
    let mut fields = text.get(close + 1..)?.split_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some((comm, CpuTicks { user, system }))
}

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// The broker's CPU over one measured phase: read at its start, and at its end by [`finish`].
///
/// [`finish`]: CpuMeter::finish
pub struct CpuMeter {
    source: BrokerCpu,
    start: Option<CpuTicks>,
}

/// What a [`CpuMeter`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuUse {
    pub source: BrokerCpu,
    pub user_s: f64,
    pub system_s: f64,
    pub elapsed: Duration,
}

impl CpuMeter {
    pub fn start(source: BrokerCpu) -> Self {
        Self {
            source,
            start: source.read(),
        }
    }

    pub fn finish(self, elapsed: Duration) -> Option<CpuUse> {
        let start = self.start?;
        let end = self.source.read()?;
        let tps = ticks_per_second();
        Some(CpuUse {
            source: self.source,
            user_s: end.user.saturating_sub(start.user) as f64 / tps,
            system_s: end.system.saturating_sub(start.system) as f64 / tps,
            elapsed,
        })
    }
}

impl CpuUse {
    fn per_message_us(seconds: f64, messages: u64) -> Option<f64> {
        (messages > 0).then(|| round3(seconds * 1e6 / messages as f64))
    }

    /// CPU cores the broker kept busy on average.
    pub fn cores(&self) -> f64 {
        round3((self.user_s + self.system_s) / self.elapsed.as_secs_f64().max(1e-9))
    }

    fn scope(&self) -> &'static str {
        match self.source {
            BrokerCpu::Process(_) => "broker process",
            BrokerCpu::InProcess => "broker threads in the bench process",
        }
    }

    /// The JSON object of a report, per message of `messages`.
    pub fn to_json(&self, messages: u64) -> Value {
        json!({
            "scope": self.scope(),
            "user_s": round3(self.user_s),
            "system_s": round3(self.system_s),
            "cores": self.cores(),
            "user_us_per_msg": Self::per_message_us(self.user_s, messages),
            "system_us_per_msg": Self::per_message_us(self.system_s, messages),
            "total_us_per_msg": Self::per_message_us(self.user_s + self.system_s, messages),
        })
    }

    /// The text line of a report, per message of `messages`.
    pub fn line(&self, messages: u64) -> String {
        let total = Self::per_message_us(self.user_s + self.system_s, messages);
        match total {
            Some(total) => format!(
                "broker CPU: {total:.1} µs/msg (user {:.1}, system {:.1}), {:.2} cores busy ({})",
                self.user_s * 1e6 / messages as f64,
                self.system_s * 1e6 / messages as f64,
                self.cores(),
                self.scope()
            ),
            None => format!(
                "broker CPU: {:.2} cores busy, no messages ({})",
                self.cores(),
                self.scope()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parentheses() {
        let line = "4242 (vostok (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 95 0 0 20 0 \
                    3 0 12345 1000 200 18446744073709551615";
        let (comm, ticks) = parse_stat(line).unwrap();
        assert_eq!(comm, "vostok (x) y");
        assert_eq!(
            ticks,
            CpuTicks {
                user: 731,
                system: 95
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_and_named_threads_are_readable() {
        let pid = std::process::id();
        let own = BrokerCpu::Process(pid).read().expect("own stat");
        // Burn some CPU on a thread named like the broker's, then find it counted.
        let before = BrokerCpu::InProcess.read().expect("own tasks");
        std::thread::Builder::new()
            .name(BROKER_THREAD.to_owned())
            .spawn(move || {
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(100) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                // Measured before the thread ends, which takes its time with it.
                let during = BrokerCpu::InProcess.read().expect("own tasks");
                assert!(during.user + during.system > before.user + before.system);
            })
            .unwrap()
            .join()
            .unwrap();
        let later = BrokerCpu::Process(pid).read().unwrap();
        assert!(later.user + later.system >= own.user + own.system);
    }

    #[test]
    fn per_message_figures() {
        let used = CpuUse {
            source: BrokerCpu::InProcess,
            user_s: 1.5,
            system_s: 0.5,
            elapsed: Duration::from_secs(4),
        };
        let json = used.to_json(100_000);
        assert_eq!(json["total_us_per_msg"], 20.0);
        assert_eq!(json["user_us_per_msg"], 15.0);
        assert_eq!(json["cores"], 0.5);
        assert!(used.line(100_000).starts_with("broker CPU: 20.0 µs/msg"));
        assert_eq!(used.to_json(0)["total_us_per_msg"], Value::Null);
    }
}
