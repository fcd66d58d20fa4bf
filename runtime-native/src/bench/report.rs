//! Final summaries: RocketMQ's benchmark summary line in text, one JSON object with `--json`.

use std::time::Duration;

use serde_json::{json, Value};

use super::loopback::Ceiling;
use super::stats::{round3, Totals};

/// A recorder's totals over `elapsed` as JSON: counts, rates and latency percentiles.
pub fn totals_json(t: &Totals, elapsed: Duration) -> Value {
    let secs = elapsed.as_secs_f64().max(1e-9);
    json!({
        "elapsed_s": round3(secs),
        "messages": t.messages,
        "requests": t.ok,
        "send_failed": t.send_failed,
        "response_failed": t.response_failed,
        "tps": (t.messages as f64 / secs).round(),
        "mb_per_s": round3(t.bytes as f64 / secs / 1e6),
        "latency_ms": t.latency.to_json(),
    })
}

/// `Send TPS: 12345 Max RT(ms): 4.500 Average RT(ms): 0.081 Send Failed: 0 Response Failed: 0`
/// followed by the percentiles, as RocketMQ's benchmark producer prints it.
pub fn totals_line(what: &str, t: &Totals, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "{what} TPS: {:.0} Max RT(ms): {:.3} Average RT(ms): {:.3} {what} Failed: {} Response Failed: {}\n  \
         {} messages in {:.2}s, {:.1} MB/s; latency {}",
        t.messages as f64 / secs,
        t.latency.max_ms,
        t.latency.mean_ms,
        t.send_failed,
        t.response_failed,
        t.messages,
        secs,
        t.bytes as f64 / secs / 1e6,
        t.latency.line(),
    )
}

/// The send results as multiples of the loopback ceiling measured in the same run.
pub fn versus_loopback(
    t: &Totals,
    elapsed: Duration,
    ceiling: &Ceiling,
    concurrency: usize,
) -> (Value, String) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rt = ceiling.round_trips_for(concurrency);
    let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
    let p50_x = ratio(t.latency.p50_ms, rt.latency.p50_ms);
    let p99_x = ratio(t.latency.p99_ms, rt.latency.p99_ms);
    let tps_share = ratio(t.messages as f64 / secs, rt.per_s);
    let mb_share = ratio(t.bytes as f64 / secs / 1e6, ceiling.stream_mb_per_s);
    let json = json!({
        "loopback_connections": rt.connections,
        "p50_x_loopback_rtt": p50_x,
        "p99_x_loopback_rtt": p99_x,
        "tps_share_of_loopback_round_trips": tps_share,
        "mb_per_s_share_of_loopback_stream": mb_share,
    });
    let line = format!(
        "vs loopback ({} connection(s)): p50 = {p50_x:.2}× RTT, p99 = {p99_x:.2}× RTT, TPS = {:.1}% of round trips/s, {:.1}% of streaming MB/s",
        rt.connections,
        tps_share * 100.0,
        mb_share * 100.0
    );
    (json, line)
}
