//! Bad input on raw sockets never hurts anyone else.
//!
//! Each test starts `vostok standalone`, stores a few messages with well-formed frames, throws one
//! kind of bad input at the broker (and, where it applies, at the NameServer), asserts how that
//! connection is treated (an error response or a closed connection), and then checks that
//!
//! * a well-behaved client that was connected all along is still served,
//! * a new well-behaved client is served,
//! * every message stored before the bad input is still there, byte for byte,
//! * nothing from the bad input was stored.
//!
//! Every socket read has a timeout, so no test can hang.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TOPIC: &str = "BadInputTopic";
const GROUP: &str = "bad-input-verifier";
const SEEDED: usize = 5;
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which listener receives the bad input.
#[derive(Clone, Copy, Debug)]
enum Target {
    Broker,
    Namesrv,
}

struct Fixture {
    broker: Standalone,
    /// A well-behaved broker connection opened before the bad input and kept open.
    witness: RawConn,
    /// A well-behaved NameServer connection opened before the bad input and kept open.
    ns_witness: RawConn,
    bodies: Vec<Vec<u8>>,
}

impl Fixture {
    fn new() -> Fixture {
        let broker = Standalone::start();
        let mut witness = RawConn::connect(&broker.broker_addr);
        let mut bodies = Vec::new();
        for i in 0..SEEDED {
            // Bodies with every byte value so byte-exactness is meaningful.
            let mut body = format!("seeded-{i}-").into_bytes();
            body.extend((0u8..=255).cycle().skip(i).take(300));
            let f = send_v2(&mut witness, TOPIC, 0, &body, "Seed");
            assert_eq!(f.code(), 0, "seeding send {i} failed: {:?}", f.header);
            assert_eq!(
                f.ext_i64("queueOffset"),
                Some(i as i64),
                "seeded message {i} got an unexpected queue offset: {:?}",
                f.header
            );
            bodies.push(body);
        }
        let mut ns_witness = RawConn::connect(&broker.namesrv_addr);
        wait_for_route(&mut ns_witness, TOPIC);
        Fixture {
            broker,
            witness,
            ns_witness,
            bodies,
        }
    }

    fn target_addr(&self, target: Target) -> String {
        match target {
            Target::Broker => self.broker.broker_addr.clone(),
            Target::Namesrv => self.broker.namesrv_addr.clone(),
        }
    }

    /// Everything that must still hold after the bad input.
    fn assert_healthy(&mut self, what: &str) {
        assert!(
            self.broker.is_running(),
            "{what}: the vostok process died\nstderr:\n{}",
            self.broker.stderr_tail()
        );
        // Nothing from the bad input was stored; all seeded messages are intact.
        let max = max_offset(&mut self.witness, TOPIC, 0);
        assert_eq!(max, SEEDED as i64, "{what}: max offset changed");
        let records = pull_all(&mut self.witness, GROUP, TOPIC, 0, max);
        let bodies: Vec<Vec<u8>> = records.iter().map(|r| r.body.clone()).collect();
        assert_eq!(bodies, self.bodies, "{what}: stored bodies changed");
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.queue_offset, i as i64, "{what}: record offsets not dense");
            assert_eq!(r.topic, TOPIC);
        }

        // The connection that was open all along is still served, for writes too.
        let body = format!("after-{what}").into_bytes();
        let f = send_v2(&mut self.witness, TOPIC, 0, &body, "After");
        assert_eq!(f.code(), 0, "{what}: witness send failed: {:?}", f.header);
        assert_eq!(f.ext_i64("queueOffset"), Some(SEEDED as i64));
        self.bodies.push(body);

        // A brand-new connection is served.
        let mut fresh = RawConn::connect(&self.broker.broker_addr);
        assert_eq!(max_offset(&mut fresh, TOPIC, 0), SEEDED as i64 + 1);

        // The NameServer still answers, on the old and on a new connection.
        assert_route_ok(&mut self.ns_witness, TOPIC, what);
        let mut fresh_ns = RawConn::connect(&self.broker.namesrv_addr);
        assert_route_ok(&mut fresh_ns, TOPIC, what);
    }
}

fn route_request(conn: &mut RawConn, topic: &str) -> Frame {
    conn.request(
        code::GET_ROUTEINFO_BY_TOPIC,
        &[("topic", topic.to_string())],
        &[],
    )
}

fn wait_for_route(conn: &mut RawConn, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let f = route_request(conn, topic);
        if f.code() == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "route of {topic} never appeared on the NameServer: {:?}",
            f.header
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_route_ok(conn: &mut RawConn, topic: &str, what: &str) {
    let f = route_request(conn, topic);
    assert_eq!(f.code(), 0, "{what}: route query failed: {:?}", f.header);
    let route: serde_json::Value = serde_json::from_slice(&f.body).expect("route body is JSON");
    assert!(
        route["queueDatas"]
            .as_array()
            .is_some_and(|q| !q.is_empty()),
        "{what}: route has no queue data: {route}"
    );
}

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn run_random_bytes(target: Target) {
    let mut fx = Fixture::new();
    let mut bad = RawConn::connect(&fx.target_addr(target));
    let mut junk = pseudo_random_bytes(0x5EED_0001, 64 * 1024);
    // Make sure the first length word is garbage beyond the frame limit, whatever the seed gives.
    junk[0] |= 0x80;
    // The peer may close while we are still writing; that is an acceptable reaction.
    let _ = bad.write_raw(&junk);
    bad.expect_closed(CLOSE_TIMEOUT, "random bytes");
    fx.assert_healthy("random bytes");
}

#[test]
fn random_bytes_close_the_broker_connection_only() {
    run_random_bytes(Target::Broker);
}

#[test]
fn random_bytes_close_the_namesrv_connection_only() {
    run_random_bytes(Target::Namesrv);
}

fn run_oversized_frame(target: Target) {
    let mut fx = Fixture::new();
    let mut bad = RawConn::connect(&fx.target_addr(target));
    // totalLength + 4 = 16 MiB + 1: one byte over Java's limit. Announce it, send a plausible
    // header and a little body, and keep the connection open: the server must not wait for
    // (or buffer) the remaining 16 MiB, it must close.
    let total_len = (FRAME_MAX_BYTES - 3) as u32;
    let header = request_header(code::GET_MAX_OFFSET, 7, &[], false);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&total_len.to_be_bytes());
    bytes.extend_from_slice(&(header.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&[0u8; 1024]);
    let _ = bad.write_raw(&bytes);
    bad.expect_closed(CLOSE_TIMEOUT, "oversized frame");
    fx.assert_healthy("oversized frame");
}

#[test]
fn frame_over_16_mib_closes_the_broker_connection() {
    run_oversized_frame(Target::Broker);
}

#[test]
fn frame_over_16_mib_closes_the_namesrv_connection() {
    run_oversized_frame(Target::Namesrv);
}

fn run_non_json_header(target: Target) {
    let mut fx = Fixture::new();
    let mut bad = RawConn::connect(&fx.target_addr(target));
    // Well framed, serialize type 0 (JSON), but the header is not JSON. No opaque can be read
    // from it, so no response can be matched: the server closes the connection.
    let frame = encode_frame_raw(0, b"{\"code\":310,\"opaque\":5, this is not json", b"body");
    let _ = bad.write_raw(&frame);
    bad.expect_closed(CLOSE_TIMEOUT, "non-JSON header");
    fx.assert_healthy("non-JSON header");
}

#[test]
fn non_json_header_closes_the_broker_connection() {
    run_non_json_header(Target::Broker);
}

#[test]
fn non_json_header_closes_the_namesrv_connection() {
    run_non_json_header(Target::Namesrv);
}

fn run_unknown_code(target: Target) {
    let mut fx = Fixture::new();
    let mut conn = RawConn::connect(&fx.target_addr(target));
    let opaque = 424_242;
    let frame = encode_request(9_999, opaque, &[("foo", "bar".to_string())], b"ignored");
    conn.write_raw(&frame).expect("write unknown-code request");
    match conn.read_frame() {
        ReadOutcome::Frame(f) => {
            assert!(
                f.is_response(),
                "answer is not flagged as a response: {:?}",
                f.header
            );
            assert_eq!(f.opaque(), opaque as i64, "answer carries another opaque");
            assert_eq!(
                f.code(),
                resp::REQUEST_CODE_NOT_SUPPORTED as i64,
                "unknown code must be answered with REQUEST_CODE_NOT_SUPPORTED: {:?}",
                f.header
            );
        }
        other => panic!("unknown request code: expected a response with code 3, got {other:?}"),
    }
    // An unknown code is not a framing error: the same connection keeps working.
    match target {
        Target::Broker => assert_eq!(max_offset(&mut conn, TOPIC, 0), SEEDED as i64),
        Target::Namesrv => assert_route_ok(&mut conn, TOPIC, "unknown code, same connection"),
    }
    fx.assert_healthy("unknown code");
}

#[test]
fn unknown_request_code_gets_code_3_from_the_broker() {
    run_unknown_code(Target::Broker);
}

#[test]
fn unknown_request_code_gets_code_3_from_the_namesrv() {
    run_unknown_code(Target::Namesrv);
}

/// A complete, valid SEND_MESSAGE_V2 frame for TOPIC queue 0.
fn valid_send_frame(body: &[u8]) -> Vec<u8> {
    let props = encode_properties(&[("TAGS", "Partial"), ("WAIT", "true")]);
    let ext = [
        ("a", "raw-test-producer".to_string()),
        ("b", TOPIC.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", "0".to_string()),
        ("f", "0".to_string()),
        ("g", "1700000000000".to_string()),
        ("h", "0".to_string()),
        ("i", props),
        ("j", "0".to_string()),
        ("k", "false".to_string()),
        ("m", "false".to_string()),
    ];
    encode_request(code::SEND_MESSAGE_V2, 77, &ext, body)
}

#[test]
fn truncated_frame_then_half_close_stores_nothing() {
    let mut fx = Fixture::new();
    let mut bad = RawConn::connect(&fx.broker.broker_addr);
    let frame = valid_send_frame(&[b'x'; 2000]);
    // Length word and header arrive, the body stops halfway, then we send FIN.
    bad.write_raw(&frame[..frame.len() / 2])
        .expect("write partial frame");
    std::thread::sleep(Duration::from_millis(200));
    bad.shutdown_write();
    // No response can be produced for an incomplete frame: the server closes its side.
    bad.expect_closed(CLOSE_TIMEOUT, "truncated frame then FIN");
    fx.assert_healthy("truncated frame");
}

#[test]
fn connection_dropped_mid_frame_stores_nothing() {
    let mut fx = Fixture::new();
    for cut in [3usize, 6, 40, 1500] {
        let mut bad = RawConn::connect(&fx.broker.broker_addr);
        let frame = valid_send_frame(&[b'y'; 2000]);
        bad.write_raw(&frame[..cut]).expect("write partial frame");
        std::thread::sleep(Duration::from_millis(50));
        drop(bad);
    }
    // Give the server a moment to notice the drops before checking it is unharmed.
    std::thread::sleep(Duration::from_millis(300));
    fx.assert_healthy("dropped mid-frame");
}

#[test]
fn well_formed_frames_keep_working_between_bad_connections() {
    // Interleave: bad input on one connection while the witness keeps sending on another.
    let mut fx = Fixture::new();
    let mut bad = RawConn::connect(&fx.broker.broker_addr);
    let _ = bad.write_raw(&pseudo_random_bytes(7, 3));
    let body = b"interleaved".to_vec();
    let f = send_v2(&mut fx.witness, TOPIC, 0, &body, "Interleaved");
    assert_eq!(
        f.code(),
        0,
        "send while a bad frame is pending failed: {:?}",
        f.header
    );
    fx.bodies.push(body);
    drop(bad);
    let max = max_offset(&mut fx.witness, TOPIC, 0);
    assert_eq!(max, SEEDED as i64 + 1);
    let records = pull_all(&mut fx.witness, GROUP, TOPIC, 0, max);
    let bodies: Vec<Vec<u8>> = records.into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, fx.bodies);
}

/// A client that pipelines requests and never reads the answers is disconnected once its
/// unread answers pass the per-connection limit, instead of growing the broker's memory; the
/// others keep being served.
#[test]
fn a_client_that_never_reads_is_disconnected_not_buffered_forever() {
    const HOG_TOPIC: &str = "HogTopic";
    const PULLS: usize = 400;
    let mut fx = Fixture::new();
    // 32 messages of 8 KiB: every pull of this queue answers about 256 KiB.
    let body = vec![b'h'; 8 * 1024];
    for _ in 0..32 {
        let f = send_v2(&mut fx.witness, HOG_TOPIC, 0, &body, "Hog");
        assert_eq!(f.code(), 0, "seeding the hog topic failed: {:?}", f.header);
    }

    let mut hog = RawConn::connect(&fx.broker.broker_addr);
    let ext = pull_ext("hog", HOG_TOPIC, 0, 0);
    let mut pipelined = Vec::new();
    for _ in 0..PULLS {
        let opaque = hog.next_opaque();
        pipelined.extend(encode_request(code::PULL_MESSAGE, opaque, &ext, &[]));
    }
    hog.write_raw(&pipelined)
        .expect("write the pipelined pulls");
    // Give the broker time to answer into the unread socket until the limit trips.
    std::thread::sleep(Duration::from_secs(2));

    // About 100 MiB of answers were asked for; well before all of them arrive the broker
    // closes the connection.
    hog.set_read_timeout(CLOSE_TIMEOUT);
    let mut answers = 0;
    loop {
        match hog.read_frame() {
            ReadOutcome::Frame(f) => {
                assert_eq!(f.code(), 0, "hog pull failed: {:?}", f.header);
                answers += 1;
            }
            ReadOutcome::Closed => break,
            ReadOutcome::TimedOut => {
                panic!("the hog connection stayed open after {answers} answers")
            }
        }
    }
    assert!(
        answers < PULLS,
        "every one of the {PULLS} answers was buffered for a client that did not read"
    );
    fx.assert_healthy("a client that never reads");
}
