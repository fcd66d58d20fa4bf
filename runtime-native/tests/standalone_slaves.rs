//! `vostok standalone --slaves N`: a NameServer, a SYNC_MASTER and its slaves in one process,
//! started as the real binary and checked from outside: sends answered SEND_OK, `vostok admin
//! haStatus` showing the slave caught up, and the slave's CommitLog byte-identical to the
//! master's.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{HOST_DISK_NEUTRAL_CONF, READY_TIMEOUT};
use vostok::client::{Message, Producer, SendStatus};

/// Small CommitLog segments keep the files compared small (a slave needs the master's size).
const SEGMENT_BYTES: u64 = 1 << 20;
const MESSAGES: usize = 200;
/// How long the slave may take to catch up once the sends are answered.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The parts of `vostok ready namesrv=A broker=B slaves=S1,S2 [grpc=G] data=PATH`.
struct Ready {
    namesrv: String,
    broker: String,
    slaves: Vec<String>,
    data: PathBuf,
}

fn parse_ready(line: &str) -> Option<Ready> {
    let rest = line.trim_end().strip_prefix("vostok ready ")?;
    let (namesrv, rest) = rest.strip_prefix("namesrv=")?.split_once(' ')?;
    let (broker, rest) = rest.strip_prefix("broker=")?.split_once(' ')?;
    let (slaves, rest) = rest.strip_prefix("slaves=")?.split_once(' ')?;
    // The gRPC port, when on, comes before the data directory.
    let rest = match rest.strip_prefix("grpc=") {
        Some(grpc) => grpc.split_once(' ')?.1,
        None => rest,
    };
    let data = rest.strip_prefix("data=")?;
    Some(Ready {
        namesrv: namesrv.to_owned(),
        broker: broker.to_owned(),
        slaves: slaves.split(',').map(str::to_owned).collect(),
        data: PathBuf::from(data),
    })
}

/// The process, killed on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn admin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vostok"))
        .arg("admin")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("vostok admin runs")
}

/// The master's slave rows of `vostok admin haStatus`: (slave address, acked offset, diff).
fn ha_rows(namesrv: &str) -> (Option<u64>, Vec<(String, u64, u64)>) {
    let out = admin(&["haStatus", "-n", namesrv, "-c", "DefaultCluster"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "haStatus failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut master_max = None;
    let mut rows = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["#MasterCommitLogMaxOffset", max] => master_max = max.parse().ok(),
            [addr, ack, diff, ..] if !addr.starts_with('#') => {
                if let (Ok(ack), Ok(diff)) = (ack.parse(), diff.parse()) {
                    rows.push(((*addr).to_owned(), ack, diff));
                }
            }
            _ => {}
        }
    }
    (master_max, rows)
}

/// The CommitLog's first segment of a store directory.
fn first_segment(data: &Path) -> Vec<u8> {
    std::fs::read(data.join("commitlog").join("00000000000000000000")).expect("segment file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_with_a_slave_replicates_every_send() {
    // Goal: `--slaves 1` runs a replicated group a client can use at once.
    // Method: start it on free ports; the ready line lists the slave; send with Vostok's
    // producer (each answer SEND_OK: SYNC_MASTER by default); then haStatus shows the slave
    // acked up to the master's end, and the two first CommitLog segments are equal.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!("{HOST_DISK_NEUTRAL_CONF}mappedFileSizeCommitLog={SEGMENT_BYTES}\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vostok"))
        .args(["standalone", "--slaves", "1"])
        .args(["--namesrv-port", "0", "--broker-port", "0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .expect("spawn vostok");
    let stdout = child.stdout.take().unwrap();
    let group = Group(child);
    let stderr = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    let line = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next());
    let line = tokio::time::timeout(READY_TIMEOUT, line)
        .await
        .expect("ready in time")
        .unwrap()
        .unwrap_or_else(|| panic!("no ready line\n{}", stderr()))
        .unwrap();
    let ready = parse_ready(&line).unwrap_or_else(|| panic!("ready line: {line}"));
    assert_eq!(ready.slaves.len(), 1, "{line}");
    assert_ne!(ready.slaves[0], ready.broker);

    let producer = Producer::builder()
        .namesrv_addr(&ready.namesrv)
        .group("standalone_slaves_pg")
        .send_timeout(Duration::from_secs(10))
        .build()
        .expect("producer builds")
        .start()
        .await
        .expect("producer starts");
    for seq in 0..MESSAGES {
        let message = Message::new("ReplicatedTopic", format!("message {seq}").into_bytes());
        let result = producer
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("send {seq}: {e}\n{}", stderr()));
        assert_eq!(result.status, SendStatus::SendOk, "send {seq}");
    }
    producer.shutdown().await;

    let deadline = Instant::now() + CATCH_UP;
    let (max, acked) = loop {
        let namesrv = ready.namesrv.clone();
        let (max, rows) = tokio::task::spawn_blocking(move || ha_rows(&namesrv))
            .await
            .unwrap();
        if let (Some(max), [(_, acked, 0)]) = (max, rows.as_slice()) {
            break (max, *acked);
        }
        assert!(
            Instant::now() < deadline,
            "the slave did not catch up: {max:?} {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(max > 0);
    assert_eq!(acked, max, "the slave acked the master's end");

    let master = first_segment(&ready.data);
    let slave = first_segment(&ready.data.join("slave-1"));
    assert_eq!(master.len(), slave.len());
    let written = usize::try_from(max).unwrap();
    assert!(
        master[..written] == slave[..written],
        "the slave's CommitLog differs from the master's"
    );
    assert!(master[written..].iter().all(|b| *b == 0));
    assert!(slave[written..].iter().all(|b| *b == 0));
    drop(group);
}
