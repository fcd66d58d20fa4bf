//! Counters and latency histograms shared by the load generators, the one-second progress line
//! and the resident-memory probe.
//!
//! Latencies are recorded in microseconds into HdrHistograms (3 significant digits, 1 µs to
//! 60 s) and reported in milliseconds. Each [`Recorder`] keeps two histograms: one for the whole
//! run and one that the progress line empties every second, so the line shows the last second
//! and the summary the whole run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// The largest latency a histogram holds: longer ones are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;

fn new_histogram() -> Histogram<u64> {
    // Bounds are constants within what HdrHistogram accepts, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

struct Histograms {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

/// Outcomes and latencies of one kind of operation (sends, pulls, end-to-end deliveries).
///
/// Failures follow RocketMQ's benchmark producer: "send failed" is a request that got no answer
/// (connection lost, timeout), "response failed" an answer with an error code.
pub struct Recorder {
    histograms: Mutex<Histograms>,
    ok: AtomicU64,
    /// Messages moved by the successful operations (a pull moves many).
    messages: AtomicU64,
    bytes: AtomicU64,
    send_failed: AtomicU64,
    response_failed: AtomicU64,
    interval_messages_seen: AtomicU64,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }

    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50": round3(self.p50_ms),
            "p99": round3(self.p99_ms),
            "p999": round3(self.p999_ms),
            "max": round3(self.max_ms),
            "mean": round3(self.mean_ms),
        })
    }

    /// `p50 0.081 p99 0.310 p999 1.200 max 4.500 ms`.
    pub fn line(self) -> String {
        format!(
            "p50 {:.3} p99 {:.3} p999 {:.3} max {:.3} ms",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

/// Rounds to three decimals, for JSON that people read.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What a [`Recorder`] holds at the end of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub ok: u64,
    pub messages: u64,
    pub bytes: u64,
    pub send_failed: u64,
    pub response_failed: u64,
    pub latency: Latency,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            histograms: Mutex::new(Histograms {
                total: new_histogram(),
                interval: new_histogram(),
            }),
            ok: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            response_failed: AtomicU64::new(0),
            interval_messages_seen: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Histograms> {
        // A panic while holding the lock leaves valid histograms behind: keep using them.
        self.histograms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One successful operation that moved `messages` messages of `bytes` bytes in all.
    pub fn record_ok(&self, latency: Duration, messages: u64, bytes: u64) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        {
            let mut h = self.lock();
            // In bounds after the clamp, so recording cannot fail.
            let _ = h.total.record(us);
            let _ = h.interval.record(us);
        }
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts messages without a latency (oneway sends: nothing comes back to time).
    pub fn record_unanswered(&self, messages: u64, bytes: u64) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn record_send_failed(&self) {
        self.send_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_response_failed(&self) {
        self.response_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.send_failed.load(Ordering::Relaxed) + self.response_failed.load(Ordering::Relaxed)
    }

    /// Messages since the previous call and the latencies of that interval; empties the
    /// interval histogram.
    pub fn take_interval(&self) -> (u64, Latency) {
        let latency = {
            let mut h = self.lock();
            let l = Latency::of(&h.interval);
            h.interval.reset();
            l
        };
        let now = self.messages();
        let before = self.interval_messages_seen.swap(now, Ordering::Relaxed);
        (now.saturating_sub(before), latency)
    }

    pub fn totals(&self) -> Totals {
        Totals {
            ok: self.ok.load(Ordering::Relaxed),
            messages: self.messages(),
            bytes: self.bytes.load(Ordering::Relaxed),
            send_failed: self.send_failed.load(Ordering::Relaxed),
            response_failed: self.response_failed.load(Ordering::Relaxed),
            latency: Latency::of(&self.lock().total),
        }
    }
}

/// Resident memory of one process, from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    /// VmRSS: everything resident now.
    pub rss_kib: u64,
    /// VmHWM: the peak of VmRSS over the process's life.
    pub hwm_kib: u64,
    /// RssAnon: heap and stacks, without file-backed pages (the mmap'ed store is page cache).
    pub anon_kib: u64,
    /// RssFile: resident file-backed pages (mostly the mapped CommitLog and queues).
    pub file_kib: u64,
}

impl Rss {
    /// Reads `/proc/<pid>/status` (`None`: this process). `None` when unreadable (not Linux,
    /// the process is gone).
    pub fn read(pid: Option<u32>) -> Option<Self> {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/status"),
            None => "/proc/self/status".to_owned(),
        };
        let text = std::fs::read_to_string(path).ok()?;
        let mut rss = Rss::default();
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let kib = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
            match key {
                "VmRSS" => rss.rss_kib = kib,
                "VmHWM" => rss.hwm_kib = kib,
                "RssAnon" => rss.anon_kib = kib,
                "RssFile" => rss.file_kib = kib,
                _ => {}
            }
        }
        Some(rss)
    }
}

fn mib(kib: u64) -> f64 {
    round3(kib as f64 / 1024.0)
}

/// Samples a broker's memory once a second: idle before the load, the peaks during it.
#[derive(Clone, Debug)]
pub struct RssProbe {
    /// Which process is the broker (`None`: this one, with the bench in it).
    pub pid: Option<u32>,
    /// Whether the broker shares this process with the load generators.
    pub in_process: bool,
    idle: Option<Rss>,
    peak_anon_kib: u64,
    peak_rss_kib: u64,
    last: Option<Rss>,
}

impl RssProbe {
    pub fn new(pid: Option<u32>, in_process: bool) -> Self {
        let idle = Rss::read(pid);
        let mut probe = Self {
            pid,
            in_process,
            idle,
            peak_anon_kib: 0,
            peak_rss_kib: 0,
            last: None,
        };
        probe.sample();
        probe
    }

    pub fn sample(&mut self) {
        if let Some(r) = Rss::read(self.pid) {
            self.peak_anon_kib = self.peak_anon_kib.max(r.anon_kib);
            self.peak_rss_kib = self.peak_rss_kib.max(r.rss_kib);
            self.last = Some(r);
        }
    }

    pub fn to_json(&self) -> Value {
        let Some(last) = self.last else {
            return Value::Null;
        };
        json!({
            "pid": self.pid.unwrap_or_else(std::process::id),
            "in_process_with_bench": self.in_process,
            "idle_rss_mib": self.idle.map(|r| mib(r.rss_kib)),
            "idle_anon_mib": self.idle.map(|r| mib(r.anon_kib)),
            "peak_rss_mib": mib(self.peak_rss_kib.max(last.hwm_kib)),
            "peak_anon_mib": mib(self.peak_anon_kib),
            "end_rss_mib": mib(last.rss_kib),
            "end_file_mib": mib(last.file_kib),
        })
    }

    pub fn line(&self) -> Option<String> {
        let last = self.last?;
        let whose = if self.in_process {
            "bench process (broker in-process)"
        } else {
            "broker"
        };
        Some(format!(
            "{whose} RSS: idle {:.1} MiB, peak {:.1} MiB (VmHWM), peak anonymous {:.1} MiB, file-backed at end {:.1} MiB",
            self.idle.map_or(0.0, |r| mib(r.rss_kib)),
            mib(self.peak_rss_kib.max(last.hwm_kib)),
            mib(self.peak_anon_kib),
            mib(last.file_kib),
        ))
    }
}

/// One named recorder on the progress line.
pub struct Series {
    pub label: &'static str,
    pub recorder: Arc<Recorder>,
}

/// Prints one progress line a second on stderr until dropped or stopped; samples the RSS probe.
pub struct Progress {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Option<RssProbe>>,
}

impl Progress {
    pub fn start(name: &'static str, series: Vec<Series>, probe: Option<RssProbe>) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut probe = probe;
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Some(p) = probe.as_mut() {
                    p.sample();
                }
                let mut line = format!("[{name} {:>4.0}s]", started.elapsed().as_secs_f64());
                for s in &series {
                    let (n, l) = s.recorder.take_interval();
                    line.push_str(&format!(
                        " {} TPS {:>8} {} failed {}",
                        s.label,
                        n,
                        l.line(),
                        s.recorder.failures()
                    ));
                }
                eprintln!("{line}");
            }
            if let Some(p) = probe.as_mut() {
                p.sample();
            }
            probe
        });
        Self { stop, task }
    }

    /// Stops the line; returns the probe with its last sample.
    pub async fn finish(self) -> Option<RssProbe> {
        let _ = self.stop.send(true);
        self.task.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_milliseconds() {
        let r = Recorder::new();
        for us in 1..=1000u64 {
            r.record_ok(Duration::from_micros(us), 1, 10);
        }
        r.record_send_failed();
        let t = r.totals();
        assert_eq!(t.ok, 1000);
        assert_eq!(t.messages, 1000);
        assert_eq!(t.bytes, 10_000);
        assert_eq!(t.send_failed, 1);
        assert!((t.latency.p50_ms - 0.5).abs() < 0.01, "{:?}", t.latency);
        assert!((t.latency.max_ms - 1.0).abs() < 0.01, "{:?}", t.latency);
        let (n, l) = r.take_interval();
        assert_eq!(n, 1000);
        assert_eq!(l.count, 1000);
        let (n, l) = r.take_interval();
        assert_eq!((n, l.count), (0, 0));
    }

    #[test]
    fn own_status_is_readable() {
        let rss = Rss::read(None).expect("Linux /proc");
        assert!(rss.rss_kib > 0 && rss.hwm_kib >= rss.rss_kib, "{rss:?}");
    }
}
