//! `vostok bench store` runs to completion on a small CommitLog and reports sane figures.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vostok"))
        .args(["bench", "store", "--json"])
        .args(args)
        .output()
        .expect("run vostok bench store");
    assert!(
        out.status.success(),
        "vostok bench store failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what} = {x}");
    x
}

fn check_report(report: &Value, size: u64, flush: &str) {
    assert_eq!(report["size_bytes"], size);
    assert_eq!(report["message_size_bytes"], 1024);
    assert_eq!(report["flush"], flush);
    for disk in ["disk_sequential", "disk_store_cadence"] {
        assert_eq!(report[disk]["bytes"], size, "{disk}");
        positive(&report[disk]["mib_per_s"], disk);
        assert!(report[disk]["syncs"].as_u64().unwrap() >= 1, "{disk}");
    }
    let append = &report["append"];
    let messages = append["messages"].as_u64().expect("append.messages");
    let bytes = append["bytes"].as_u64().expect("append.bytes");
    let record_bytes = append["record_bytes"]
        .as_u64()
        .expect("append.record_bytes");
    assert!(record_bytes > 1024, "a record holds its body and more");
    assert!(bytes >= size && bytes < size + record_bytes, "{bytes}");
    assert_eq!(
        messages * record_bytes,
        bytes,
        "every record has the same size"
    );
    assert!(append["syncs"].as_u64().unwrap() >= 1);
    positive(&append["msgs_per_s"], "append.msgs_per_s");
    positive(&append["mib_per_s"], "append.mib_per_s");
    positive(&append["of_disk_sequential"], "append.of_disk_sequential");
    // The cadence run writes one record's size at a time and syncs after as many bytes as the
    // append run did on average.
    let cadence = &report["disk_store_cadence"];
    assert_eq!(cadence["write_bytes"], record_bytes);
    let syncs = append["syncs"].as_u64().unwrap();
    assert_eq!(cadence["sync_every_bytes"], (bytes / syncs).max(1));

    let recovery = report["recovery"].as_array().expect("recovery runs");
    let kinds: Vec<(String, String, String, bool)> = recovery
        .iter()
        .map(|r| {
            (
                r["shutdown"].as_str().unwrap().to_string(),
                r["mode"].as_str().unwrap().to_string(),
                r["page_cache"].as_str().unwrap().to_string(),
                r["key_index"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, bool)> = [
        ("crash", "warm", true),
        ("crash", "dropped", true),
        ("crash", "warm", false),
        ("full", "warm", true),
        ("full", "dropped", true),
        ("full", "warm", false),
        ("clean", "warm", true),
        ("clean", "dropped", true),
        ("clean", "warm", false),
    ]
    .iter()
    .map(|(shutdown, cache, index)| {
        // The recovery report's mode is the shutdown case's.
        (
            shutdown.to_string(),
            shutdown.to_string(),
            cache.to_string(),
            *index,
        )
    })
    .collect();
    assert_eq!(kinds, expected);
    for r in recovery {
        positive(&r["ms"], "recovery ms");
        let start = r["scan_start"].as_u64().unwrap();
        let verified = r["bytes"].as_u64().unwrap();
        let records = r["records"].as_u64().unwrap();
        assert_eq!(
            start + verified,
            bytes,
            "the log ends where the append run did: {r}"
        );
        assert_eq!(records * record_bytes, verified, "{r}");
        match r["shutdown"].as_str().unwrap() {
            // From the last periodic checkpoint, which is at least half way.
            "crash" => assert!(start >= size / 2 && start <= bytes, "{r}"),
            "full" => {
                assert_eq!(start, 0, "{r}");
                assert_eq!(records, messages, "{r}");
                positive(&r["mib_per_s"], "recovery MiB/s");
            }
            // One 1 GiB segment: the clean open re-verifies the segment holding the checkpoint.
            _ => assert_eq!(records, messages, "{r}"),
        }
        if r["key_index"] == true && r["shutdown"] != "full" {
            // The checkpoints synced the index: only its tail after the checkpoint is checked.
            assert_eq!(r["index_from_checkpoint"], true, "{r}");
        }
        if r["shutdown"] == "clean" {
            assert_eq!(r["index_entries_dropped"], 0, "{r}");
            assert_eq!(r["index_records_reindexed"], 0, "{r}");
        }
    }
    assert!(report["page_cache_drop_error"].is_null(), "{report}");
}

#[test]
fn bench_store_reports_disk_append_and_recovery() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let dir = scratch.path().join("bench");
    let report = bench(&["--size", "8M", "--dir", dir.to_str().unwrap()]);
    check_report(&report, 8 << 20, "ASYNC_FLUSH");
    assert!(
        !dir.exists(),
        "the benchmark directory is removed afterwards"
    );
}

#[test]
fn bench_store_sync_flush_keeps_files_on_request() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let dir = scratch.path().join("bench");
    let dir_arg = dir.to_str().unwrap();
    let report = bench(&[
        "--size",
        "2M",
        "--flush",
        "sync",
        "--inflight",
        "16",
        "--dir",
        dir_arg,
        "--keep",
    ]);
    check_report(&report, 2 << 20, "SYNC_FLUSH");
    assert_eq!(report["inflight"], 16);
    // 16 producers waiting at most: a group commit covers at most 16 records.
    let append = &report["append"];
    let messages = append["messages"].as_u64().unwrap();
    assert!(append["syncs"].as_u64().unwrap() >= messages / 16);
    assert!(dir.join("store/commitlog/00000000000000000000").exists());
    assert!(!dir.join("raw-write-test").exists());
}

#[test]
fn bench_store_refuses_a_directory_with_data() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    std::fs::write(scratch.path().join("precious"), b"x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vostok"))
        .args(["bench", "store", "--size", "1M", "--dir"])
        .arg(scratch.path())
        .output()
        .expect("run vostok bench store");
    assert!(!out.status.success());
    assert!(scratch.path().join("precious").exists());
}
