//! Black-box tests of `vostok bench`: each command runs briefly against a broker it starts in its
//! own process (`--standalone`, loopback only) and its `--json` summary is checked for the fields
//! people and scripts read, with counts that add up and no failures.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A bench run that takes longer than this is a failure (they are meant to take seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `vostok bench ARGS`, expects success and one JSON object on stdout.
fn bench(args: &[&str]) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vostok"))
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vostok");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vostok bench {args:?} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(status.success(), "vostok bench {args:?}: {status}\n{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {out}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Percentiles are ordered and positive.
fn check_latency(l: &Value) {
    let (p50, p99, p999, max) = (f(&l["p50"]), f(&l["p99"]), f(&l["p999"]), f(&l["max"]));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max, "{l}");
}

/// A recorder summary: `messages` moved, no failures, a positive rate.
fn check_totals(t: &Value, messages: u64) {
    assert_eq!(t["messages"], messages, "{t}");
    assert_eq!(t["send_failed"], 0, "{t}");
    assert_eq!(t["response_failed"], 0, "{t}");
    assert!(f(&t["tps"]) > 0.0 && f(&t["elapsed_s"]) > 0.0, "{t}");
    check_latency(&t["latency_ms"]);
}

#[test]
fn loopback_reports_round_trips_and_streaming() {
    let v = bench(&["loopback", "--duration", "1", "--json"]);
    assert_eq!(v["command"], "loopback");
    assert_eq!(v["size_bytes"], 1024);
    assert!(f(&v["frame_bytes"]) > 1024.0, "{v}");
    for phase in ["round_trips_1", "round_trips_n"] {
        assert!(f(&v[phase]["round_trips_per_s"]) > 0.0, "{v}");
        check_latency(&v[phase]["rtt_ms"]);
    }
    assert_eq!(v["round_trips_1"]["connections"], 1);
    assert_eq!(v["round_trips_n"]["connections"], 16);
    assert!(f(&v["stream_frames_per_s"]) > 0.0, "{v}");
    assert!(f(&v["stream_mb_per_s"]) > 0.0, "{v}");
}

#[test]
fn produce_sync_sends_exactly_the_count() {
    let v = bench(&["produce", "--standalone", "--count", "2000", "--json"]);
    assert_eq!(v["command"], "produce");
    assert_eq!(v["mode"], "sync");
    assert_eq!(v["broker"]["kind"], "standalone-in-process");
    assert_eq!(v["broker"]["flush"], "ASYNC_FLUSH");
    check_totals(&v["send"], 2000);
    assert_eq!(v["send"]["requests"], 2000);
    let mb = f(&v["send"]["mb_per_s"]);
    let tps = f(&v["send"]["tps"]);
    assert!((mb * 1e6 / 1024.0 - tps).abs() / tps < 0.01, "{v}");
    assert!(f(&v["rss"]["peak_rss_mib"]) > 0.0, "{v}");
    assert!(v["loopback"].is_null());
    // The in-process broker's own threads did the work of 2000 sync sends.
    let cpu = &v["broker_cpu"];
    assert_eq!(cpu["scope"], "broker threads in the bench process", "{v}");
    assert!(f(&cpu["total_us_per_msg"]) > 0.0, "{v}");
    let sum = f(&cpu["user_us_per_msg"]) + f(&cpu["system_us_per_msg"]);
    assert!((sum - f(&cpu["total_us_per_msg"])).abs() < 0.01, "{v}");
}

#[test]
fn produce_async_under_sync_flush_with_loopback_ratios() {
    let v = bench(&[
        "produce",
        "--standalone",
        "--flush",
        "SYNC_FLUSH",
        "--mode",
        "async",
        "--producers",
        "2",
        "--count",
        "2000",
        "--with-loopback",
        "--loopback-duration",
        "0.6",
        "--json",
    ]);
    assert_eq!(v["mode"], "async");
    assert_eq!(v["broker"]["flush"], "SYNC_FLUSH");
    check_totals(&v["send"], 2000);
    assert_eq!(v["loopback"]["round_trips_n"]["connections"], 2);
    assert!(f(&v["vs_loopback"]["p50_x_loopback_rtt"]) > 0.0, "{v}");
    assert!(
        f(&v["vs_loopback"]["tps_share_of_loopback_round_trips"]) > 0.0,
        "{v}"
    );
}

#[test]
fn consume_drains_the_whole_backlog() {
    let v = bench(&[
        "consume",
        "--standalone",
        "--fill",
        "3000",
        "--queues",
        "4",
        "--json",
    ]);
    assert_eq!(v["command"], "consume");
    assert_eq!(v["filled"], 3000);
    assert_eq!(v["fill_failed"], 0);
    assert_eq!(v["backlog"], 3000);
    check_totals(&v["consume"], 3000);
    assert!(f(&v["consume"]["mb_per_s"]) > 0.0, "{v}");
    assert!(f(&v["broker_cpu"]["total_us_per_msg"]) >= 0.0, "{v}");
}

#[test]
fn consume_pop_drains_the_same_backlog_by_pop_with_each_consumer_count() {
    let v = bench(&[
        "consume",
        "--standalone",
        "--fill",
        "3000",
        "--queues",
        "4",
        "--pop",
        "--pop-consumers",
        "1,3",
        "--json",
    ]);
    check_totals(&v["consume"], 3000);
    let runs = v["pop"].as_array().expect("pop runs");
    assert_eq!(runs.len(), 2, "{v}");
    for (run, consumers) in runs.iter().zip([1, 3]) {
        assert_eq!(run["consumers"], consumers);
        check_totals(&run["pop"], 3000);
        assert!(f(&run["pop_vs_pull"]) > 0.0, "{v}");
    }
}

#[test]
fn consume_grpc_drains_the_same_backlog_through_the_grpc_port() {
    let v = bench(&[
        "consume",
        "--standalone",
        "--fill",
        "2000",
        "--queues",
        "4",
        "--grpc",
        "--grpc-consumers",
        "1,2",
        "--json",
    ]);
    check_totals(&v["consume"], 2000);
    let runs = v["grpc"].as_array().expect("gRPC runs");
    assert_eq!(runs.len(), 2, "{v}");
    for (run, consumers) in runs.iter().zip([1, 2]) {
        assert_eq!(run["consumers"], consumers);
        check_totals(&run["receive"], 2000);
        assert!(f(&run["grpc_vs_pull"]) > 0.0, "{v}");
    }
}

#[test]
fn produce_grpc_sends_the_same_load_through_the_grpc_port() {
    let v = bench(&[
        "produce",
        "--standalone",
        "--count",
        "2000",
        "--producers",
        "4",
        "--grpc",
        "--json",
    ]);
    check_totals(&v["send"], 2000);
    check_totals(&v["grpc"]["send"], 2000);
    assert!(f(&v["grpc"]["grpc_vs_remoting"]) > 0.0, "{v}");
}

#[test]
fn e2e_by_pop_consumes_every_message_sent() {
    let v = bench(&[
        "e2e",
        "--standalone",
        "--count",
        "500",
        "--queues",
        "2",
        "--pop",
        "-c",
        "2",
        "--json",
    ]);
    assert_eq!(v["via_pop"], true);
    assert_eq!(v["consumed"], 500);
    assert_eq!(v["missing"], 0);
    check_totals(&v["e2e"], 500);
}

#[test]
fn e2e_consumes_every_message_sent() {
    let v = bench(&[
        "e2e",
        "--standalone",
        "--count",
        "1000",
        "--producers",
        "2",
        "--topics",
        "2",
        "--queues",
        "2",
        "--json",
    ]);
    assert_eq!(v["command"], "e2e");
    check_totals(&v["send"], 1000);
    assert_eq!(v["consumed"], 1000);
    assert_eq!(v["missing"], 0);
    check_totals(&v["e2e"], 1000);
    assert_eq!(v["e2e"]["latency_ms"]["count"], 1000);
    assert!(f(&v["broker_cpu"]["total_us_per_msg"]) >= 0.0, "{v}");
}

#[test]
fn suite_runs_every_row_against_child_brokers() {
    let v = bench(&["suite", "--duration", "0.3", "--drain", "2000", "--json"]);
    assert_eq!(v["command"], "suite");
    assert_eq!(v["broker"], "child process");
    assert!(f(&v["machine"]["cores"]) >= 1.0, "{v}");
    assert!(
        f(&v["loopback"]["round_trips_1"]["round_trips_per_s"]) > 0.0,
        "{v}"
    );
    let rows = v["rows"].as_array().expect("rows");
    let names: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["flush"].as_str().unwrap()))
        .collect();
    // Seven send rows per flush type, then the async send and the drain under ASYNC_FLUSH.
    assert_eq!(rows.len(), 16, "{names:?}");
    for flush in ["ASYNC_FLUSH", "SYNC_FLUSH"] {
        for state in ["fresh", "after burst"] {
            for producers in [" 1", " 4", "16"] {
                let name = format!("sync send {producers}, {state}");
                assert!(
                    names.contains(&(name.as_str(), flush)),
                    "{name} {flush}: {names:?}"
                );
            }
        }
        assert!(names.contains(&("burst, 16 producers", flush)), "{names:?}");
    }
    assert!(
        names.contains(&("drain 2000 messages", "ASYNC_FLUSH")),
        "{names:?}"
    );
    for row in rows {
        assert_eq!(row["failed"], 0, "{row}");
        assert!(f(&row["msgs_per_s"]) > 0.0, "{row}");
        // A child broker: its CPU and memory are read from its own process.
        assert!(f(&row["broker_cpu_us_per_msg"]) >= 0.0, "{row}");
        assert!(f(&row["broker_peak_rss_mib"]) > 0.0, "{row}");
    }
}

#[test]
fn bad_options_are_usage_errors() {
    let status = Command::new(env!("CARGO_BIN_EXE_vostok"))
        .args(["bench", "produce", "--standalone", "--duration", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn produce_over_the_direct_connection_and_oneway() {
    let v = bench(&[
        "produce",
        "--standalone",
        "--via",
        "direct",
        "--mode",
        "async",
        "--producers",
        "4",
        "--count",
        "2000",
        "--json",
    ]);
    assert_eq!(v["via"], "direct");
    check_totals(&v["send"], 2000);
    // Oneway: nothing comes back, so only the count is known.
    let v = bench(&[
        "produce",
        "--standalone",
        "--mode",
        "oneway",
        "--count",
        "500",
        "--json",
    ]);
    assert_eq!(v["send"]["messages"], 500);
    assert_eq!(v["send"]["send_failed"], 0);
}

#[test]
fn replication_measures_both_roles_and_the_slaves_lag() {
    // A tiny count: the run must stop by itself, each group's rows send exactly that many
    // messages, and every end the master reached was acked by its slave before the row ended.
    let v = bench(&[
        "replication",
        "--count",
        "200",
        "--duration",
        "20",
        "--ceiling-duration",
        "0",
        "--json",
    ]);
    assert_eq!(v["command"], "replication");
    assert_eq!(v["flush"], "ASYNC_FLUSH");
    assert!(
        v["loopback"].is_null() && v["fdatasync_probe"].is_null(),
        "{v}"
    );
    let rows = v["rows"].as_array().expect("rows");
    let shape: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_owned(),
                r["producers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("ASYNC_MASTER".to_owned(), 1),
            ("ASYNC_MASTER".to_owned(), 16),
            ("SYNC_MASTER".to_owned(), 1),
            ("SYNC_MASTER".to_owned(), 16),
        ]
    );
    for r in rows {
        assert_eq!(r["messages"], 200, "{r}");
        assert_eq!(r["failed"], 0, "{r}");
        assert!(f(&r["msgs_per_s"]) > 0.0, "{r}");
        assert!(
            f(&r["p50_ms"]) > 0.0 && f(&r["p50_ms"]) <= f(&r["p99_ms"]),
            "{r}"
        );
        assert!(f(&r["lag_samples"]) > 0.0, "{r}");
        assert_eq!(r["lag_unreached_ends"], 0, "{r}");
        assert!(f(&r["lag_p50_ms"]) <= f(&r["lag_p99_ms"]), "{r}");
        assert!(f(&r["lag_p50_bytes"]) <= f(&r["lag_p99_bytes"]), "{r}");
    }
    assert!(f(&v["sync_over_async_msgs_share"]) > 0.0, "{v}");
}
