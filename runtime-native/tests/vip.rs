//! The VIP port (`listenPort − 2`, RocketMQ's "fast" remoting server) of the real `vostok`
//! binary: the same broker as the main port, except that long polling is not served there.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    code, committed_offset, max_offset, parse_ready_line, pull, resp, send_v2, RawConn,
    HOST_DISK_NEUTRAL_CONF, READY_TIMEOUT,
};

/// UPDATE_CONSUMER_OFFSET (REMOTING.md §2.1).
const UPDATE_CONSUMER_OFFSET: i32 = 15;

/// A port P whose P − 2 (VIP) and P + 1 are free now, so a broker can be started on it.
fn free_broker_port() -> u16 {
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if port < 1026 || port == u16::MAX {
            continue;
        }
        let neighbours_free = [port - 2, port + 1]
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if neighbours_free {
            return port;
        }
    }
}

/// `vostok standalone` on broker port `port` in `dir`, killed on drop.
struct Broker {
    child: Child,
    stderr_path: std::path::PathBuf,
}

impl Broker {
    fn spawn(
        dir: &std::path::Path,
        port: u16,
    ) -> (Self, std::io::Lines<BufReader<std::process::ChildStdout>>) {
        let conf = dir.join("broker.conf");
        std::fs::write(&conf, HOST_DISK_NEUTRAL_CONF).unwrap();
        let stderr_path = dir.join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vostok"))
            .arg("standalone")
            .args(["--namesrv-port", "0", "--broker-port", &port.to_string()])
            // A free gRPC port: parallel tests would all want 8081.
            .args(["--grpc-port", "0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn vostok");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (Self { child, stderr_path }, lines)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_vip_port_serves_sends_and_offsets_but_not_pulls() {
    // Goal: a vipChannelEnabled client (which dials the broker's port − 2) can send and manage
    // offsets there, and a pull there is refused as RocketMQ's fast server refuses it.
    // Method: start the binary on a chosen port P; over raw frames on P − 2 send, read the max
    // offset, commit and read back a consumer offset, pull (refused with 3); pull on P (served).
    let dir = tempfile::tempdir().unwrap();
    let port = free_broker_port();
    let (broker, mut lines) = Broker::spawn(dir.path(), port);
    let line = lines
        .next()
        .unwrap_or_else(|| panic!("no ready line\n{}", broker.stderr()))
        .unwrap();
    let (_, broker_addr, _) = parse_ready_line(&line).expect("ready line");
    assert_eq!(broker_addr, format!("127.0.0.1:{port}"));

    let vip_addr = format!("127.0.0.1:{}", port - 2);
    let mut vip = RawConn::connect(&vip_addr);
    let sent = send_v2(&mut vip, "VipTopic", 0, b"over the vip port", "t");
    assert_eq!(sent.code(), i64::from(resp::SUCCESS), "{:?}", sent.header);
    assert_eq!(max_offset(&mut vip, "VipTopic", 0), 1);

    let committed = vip.request(
        UPDATE_CONSUMER_OFFSET,
        &[
            ("consumerGroup", "VipGroup".to_string()),
            ("topic", "VipTopic".to_string()),
            ("queueId", "0".to_string()),
            ("commitOffset", "1".to_string()),
        ],
        &[],
    );
    assert_eq!(committed.code(), i64::from(resp::SUCCESS));
    assert_eq!(
        committed_offset(&mut vip, "VipGroup", "VipTopic", 0),
        Some(1)
    );

    let (refused, records) = pull(&mut vip, "VipGroup", "VipTopic", 0, 0);
    assert_eq!(refused.code(), i64::from(resp::REQUEST_CODE_NOT_SUPPORTED));
    assert_eq!(
        refused.remark(),
        format!(" request type {} not supported", code::PULL_MESSAGE)
    );
    assert!(records.is_empty());

    // The same broker behind both ports: the main port pulls what the VIP port stored.
    let mut main = RawConn::connect(&broker_addr);
    assert_eq!(
        committed_offset(&mut main, "VipGroup", "VipTopic", 0),
        Some(1)
    );
    let (pulled, records) = pull(&mut main, "VipGroup", "VipTopic", 0, 0);
    assert_eq!(pulled.code(), i64::from(resp::SUCCESS));
    let bodies: Vec<&[u8]> = records.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"over the vip port"[..]]);
}

#[test]
fn a_taken_vip_port_fails_the_start_with_the_address() {
    // Goal: a broker that cannot bind listenPort − 2 says so and exits, as for its main port.
    let dir = tempfile::tempdir().unwrap();
    let port = free_broker_port();
    let _squatter = TcpListener::bind(("127.0.0.1", port - 2)).expect("hold the VIP port");
    let (mut broker, mut lines) = Broker::spawn(dir.path(), port);
    let deadline = Instant::now() + READY_TIMEOUT;
    let status = loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "vostok kept running\n{}",
            broker.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    assert!(lines.next().is_none(), "no ready line on a failed start");
    let stderr = broker.stderr();
    assert!(
        stderr.contains(&format!("cannot bind 127.0.0.1:{}", port - 2)),
        "{stderr}"
    );
}
