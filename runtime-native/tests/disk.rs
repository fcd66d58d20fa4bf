//! Full disks and retention against the real `vostok` binary.
//!
//! The full-disk tests put the data directory on a small tmpfs (`mount -t tmpfs`, which needs
//! root, as this suite has in CI) and fill the rest of it with a filler file. They check that
//! sends fail with SERVICE_NOT_AVAILABLE (14) and RocketMQ's "disk is full" remark, that the
//! broker stays up and serves what it stored, and that sends resume once the filler is deleted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const GET_MIN_OFFSET: i32 = 31;
const SERVICE_NOT_AVAILABLE: i64 = 14;
const PULL_OFFSET_MOVED: i64 = 21;

/// A tmpfs mounted on a fresh directory, unmounted (and the directory removed) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
    mount_point: PathBuf,
}

impl Tmpfs {
    fn mount(size_mib: u32) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("vostok-disk-")
            .tempdir()
            .expect("scratch directory");
        let mount_point = dir.path().join("data");
        std::fs::create_dir_all(&mount_point).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&mount_point)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "these tests need to mount a small tmpfs as the broker's data directory \
             (`mount -t tmpfs`, i.e. root or CAP_SYS_ADMIN); mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir, mount_point }
    }

    /// Writes zeros into `name` until the file system is full.
    fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.mount_point.join(name);
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Byte-sized leftovers too.
        while let Ok(n) = f.write(&chunk[..512]) {
            if n == 0 {
                break;
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
        let _ = &self.dir;
    }
}

/// `vostok standalone` on a given data directory (the shared harness makes its own).
struct Broker {
    child: Child,
    broker_addr: String,
    stderr_path: PathBuf,
}

impl Broker {
    fn start(data_dir: &Path, conf: &str, work: &Path) -> Broker {
        use std::io::BufRead;
        let conf_path = work.join("broker.conf");
        std::fs::write(&conf_path, conf).expect("broker.conf");
        let stderr_path = work.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vostok"))
            .arg("standalone")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--namesrv-port", "0", "--broker-port", "0", "-c"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn vostok");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(READY_TIMEOUT)
            .unwrap_or_else(|_| panic!("no ready line; stderr:\n{}", read(&stderr_path)));
        let (_, broker_addr, _) =
            parse_ready_line(&line).unwrap_or_else(|| panic!("not a ready line: {line:?}"));
        Broker {
            child,
            broker_addr,
            stderr_path,
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- vostok stderr ----\n{}", read(&self.stderr_path));
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn body(i: usize, size: usize) -> Vec<u8> {
    let mut b = format!("msg-{i:05}-").into_bytes();
    b.resize(size, b'x');
    b
}

/// Every body of queue 0 from `from` to its max offset.
fn bodies(conn: &mut RawConn, topic: &str, from: i64) -> Vec<Vec<u8>> {
    let max = max_offset(conn, topic, 0);
    let mut out = Vec::new();
    let mut offset = from;
    while offset < max {
        let (f, records) = pull(conn, "CG", topic, 0, offset);
        assert_eq!(f.code(), 0, "pull at {offset}: {:?}", f.header);
        out.extend(records.into_iter().map(|r| r.body));
        offset = f.ext_i64("nextBeginOffset").expect("nextBeginOffset");
    }
    out
}

/// Sends until the broker refuses with 14 (every answer before must be a success); returns the
/// bodies stored and the refusal.
fn send_until_refused(
    conn: &mut RawConn,
    topic: &str,
    size: usize,
    limit: Duration,
) -> (Vec<Vec<u8>>, Frame) {
    let deadline = Instant::now() + limit;
    let mut stored = Vec::new();
    for i in 0.. {
        assert!(Instant::now() < deadline, "sends were never refused");
        let b = body(i, size);
        let f = send_v2(conn, topic, 0, &b, "t");
        match f.code() {
            0 => stored.push(b),
            SERVICE_NOT_AVAILABLE => return (stored, f),
            other => panic!("send answered {other}: {:?}", f.header),
        }
    }
    unreachable!()
}

fn assert_disk_full_remark(f: &Frame) {
    let remark = f.remark();
    assert!(
        remark.starts_with(
            "service not available now. It may be caused by one of the following reasons: \
             the broker's disk is full [CL: "
        ),
        "{remark}"
    );
}

/// Sends resume within a few seconds (the broker measures the disk every second).
fn send_after_space_returns(conn: &mut RawConn, topic: &str, b: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = send_v2(conn, topic, 0, b, "t");
        if f.code() == 0 {
            return;
        }
        assert_eq!(f.code(), SERVICE_NOT_AVAILABLE, "{:?}", f.header);
        assert!(Instant::now() < deadline, "sends did not resume");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_disk_above_the_warning_ratio_refuses_sends_until_space_is_freed() {
    let fs = Tmpfs::mount(16);
    let conf = "mappedFileSizeCommitLog=1048576\nmappedFileSizeConsumeQueue=2000\n";
    let mut broker = Broker::start(&fs.mount_point, conf, fs.dir.path());
    let mut conn = RawConn::connect(&broker.broker_addr);
    let mut stored: Vec<Vec<u8>> = (0..20).map(|i| body(i, 1000)).collect();
    for b in &stored {
        assert_eq!(send_v2(&mut conn, "TopicDisk", 0, b, "t").code(), 0);
    }

    let filler = fs.fill("filler");
    // The current segment's space is reserved, so sends go on until the next disk report.
    let (more, refusal) = send_until_refused(&mut conn, "TopicDisk", 1000, Duration::from_secs(10));
    assert_disk_full_remark(&refusal);
    stored.extend(more);
    assert!(broker.is_running());
    assert_eq!(bodies(&mut conn, "TopicDisk", 0), stored);

    std::fs::remove_file(filler).expect("free space");
    let b = body(99_999, 1000);
    send_after_space_returns(&mut conn, "TopicDisk", &b);
    stored.push(b);
    assert_eq!(bodies(&mut conn, "TopicDisk", 0), stored);
}

#[test]
fn no_space_for_a_new_segment_fails_sends_without_harm() {
    let fs = Tmpfs::mount(16);
    // The ratio never refuses (100 %): only the failed creation of the next segment does.
    // ConsumeQueue files of 300 units, so the CommitLog segment is the file that cannot be made.
    let conf = "mappedFileSizeCommitLog=1048576\nmappedFileSizeConsumeQueue=6000\n\
                diskSpaceWarningLevelRatio=100\n";
    let mut broker = Broker::start(&fs.mount_point, conf, fs.dir.path());
    let mut conn = RawConn::connect(&broker.broker_addr);
    assert_eq!(
        send_v2(&mut conn, "TopicDisk", 0, &body(0, 10), "t").code(),
        0
    );
    let filler = fs.fill("filler");

    // 8 KiB messages: the reserved 1 MiB segment takes ~127 more, then the next one cannot be
    // created.
    let (mut stored, refusal) =
        send_until_refused(&mut conn, "TopicDisk", 8192, Duration::from_secs(20));
    assert_disk_full_remark(&refusal);
    assert!(stored.len() > 100, "{} stored", stored.len());
    stored.insert(0, body(0, 10));
    // Refused again, not crashed.
    let again = send_v2(&mut conn, "TopicDisk", 0, &body(1, 8192), "t");
    assert_eq!(again.code(), SERVICE_NOT_AVAILABLE);
    assert!(broker.is_running());
    assert_eq!(bodies(&mut conn, "TopicDisk", 0), stored);

    std::fs::remove_file(filler).expect("free space");
    let b = body(99_999, 8192);
    send_after_space_returns(&mut conn, "TopicDisk", &b);
    stored.push(b);
    assert_eq!(bodies(&mut conn, "TopicDisk", 0), stored);
}

fn min_offset(conn: &mut RawConn, topic: &str) -> i64 {
    let f = conn.request(
        GET_MIN_OFFSET,
        &[("topic", topic.to_string()), ("queueId", "0".to_string())],
        &[],
    );
    assert_eq!(f.code(), 0, "{:?}", f.header);
    f.ext_i64("offset").expect("offset")
}

#[test]
fn expired_segments_are_deleted_and_consumers_are_moved_on() {
    // 64 KiB segments, ~1 s retention (fractional hours), a cleaning run every 200 ms at any hour.
    let hours: Vec<String> = (0..24).map(|h| format!("{h:02}")).collect();
    let conf = format!(
        "mappedFileSizeCommitLog=65536\nmappedFileSizeConsumeQueue=400\n\
         fileReservedTime=0.0003\ndeleteWhen={}\ncleanResourceInterval=200\n\
         flushIntervalCommitLog=100\n",
        hours.join(";")
    );
    let mut broker = Standalone::start_with(BrokerOptions {
        broker_conf: Some(conf),
        ..BrokerOptions::default()
    });
    let mut conn = RawConn::connect(&broker.broker_addr);
    for i in 0..200 {
        assert_eq!(
            send_v2(&mut conn, "TopicOld", 0, &body(i, 1000), "t").code(),
            0
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let min = loop {
        let min = min_offset(&mut conn, "TopicOld");
        if min > 0 {
            break min;
        }
        assert!(Instant::now() < deadline, "nothing was deleted");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every closed segment goes; the last one (being written) stays.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::read_dir(broker.data_dir.join("commitlog"))
        .unwrap()
        .count()
        > 1
    {
        assert!(Instant::now() < deadline, "closed segments were kept");
        std::thread::sleep(Duration::from_millis(100));
    }
    let min = min.max(min_offset(&mut conn, "TopicOld"));
    assert!(min < 200, "{min}");

    let (f, _) = pull(&mut conn, "CG", "TopicOld", 0, 0);
    assert_eq!(f.code(), PULL_OFFSET_MOVED, "{:?}", f.header);
    assert_eq!(f.ext_i64("nextBeginOffset"), Some(min));
    let rest = bodies(&mut conn, "TopicOld", min);
    let expected: Vec<Vec<u8>> = (min as usize..200).map(|i| body(i, 1000)).collect();
    assert_eq!(rest, expected);

    // Survives a restart: recovery starts from the first remaining segment.
    broker.restart();
    let mut conn = RawConn::connect(&broker.broker_addr);
    assert_eq!(min_offset(&mut conn, "TopicOld"), min);
    assert_eq!(max_offset(&mut conn, "TopicOld", 0), 200);
    assert_eq!(bodies(&mut conn, "TopicOld", min), expected);
}
