//! TLS on the gRPC port with RocketMQ 5's official Node.js client (`sslEnabled`): the broker's
//! `tls.*` keys apply to the gRPC port as to the remoting ports, with ALPN `h2`. A client that
//! trusts the configured certificate publishes over TLS; one that does not is refused by its own
//! certificate check; a plaintext client is closed by `tls.server.mode=enforcing` and served by
//! the default `permissive` mode.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const NODE_LIMIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "GrpcTlsTopic";

/// A certificate for 127.0.0.1 and localhost, its PEM files written under `dir`; returns the
/// certificate's path and the broker.conf lines that use it.
fn certificate(dir: &Path) -> (std::path::PathBuf, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let cert = dir.join("grpc.pem");
    let key = dir.join("grpc.key");
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let conf = format!(
        "tls.test.mode.enable=false\ntls.server.certPath={}\ntls.server.keyPath={}\n",
        cert.display(),
        key.display()
    );
    (cert, conf)
}

/// Runs the Node producer over TLS and returns its JSON report.
fn node_tls_producer(grpc_addr: &str, ca: Option<&Path>, body: Option<&str>) -> serde_json::Value {
    let mut args = vec![grpc_addr, TOPIC];
    if let Some(b) = body {
        args.push(b);
    }
    let out = match ca {
        Some(ca) => run_node_with_env(
            "tls-producer.mjs",
            &args,
            &[("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", ca.to_str().unwrap())],
            NODE_LIMIT,
        ),
        None => run_node("tls-producer.mjs", &args, NODE_LIMIT),
    };
    assert!(out.status.success(), "node failed: {out:?}");
    report_of(&out)
}

/// The last stdout line of a node run, as JSON.
fn report_of(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"))
}

#[test]
fn a_node_client_trusting_the_certificate_publishes_over_tls_and_plaintext_is_served_beside() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, conf) = certificate(dir.path());
    // The default mode, permissive: TLS and plaintext on one port.
    let broker = Standalone::start_with(BrokerOptions {
        broker_conf: Some(conf),
        ..BrokerOptions::default()
    });
    create_topic(&broker.broker_addr, &broker.namesrv_addr, TOPIC, 4);
    let report = node_tls_producer(&broker.grpc_addr, Some(&cert), Some("over tls"));
    assert_eq!(report["ok"], true, "{report}");
    assert!(!report["messageId"].as_str().unwrap_or_default().is_empty());
    let plain = run_node(
        "tls-producer.mjs",
        &["--plaintext", &broker.grpc_addr, TOPIC, "in the clear"],
        NODE_LIMIT,
    );
    let report = report_of(&plain);
    assert_eq!(
        report["ok"], true,
        "plaintext on a permissive port: {report}"
    );
    // Both messages are stored like any other.
    let mut conn = RawConn::connect(&broker.broker_addr);
    let stored: i64 = (0..4).map(|q| max_offset(&mut conn, TOPIC, q)).sum();
    assert_eq!(stored, 2);
}

#[test]
fn a_node_client_not_trusting_the_certificate_is_refused_by_its_own_check() {
    let dir = tempfile::tempdir().unwrap();
    let (_cert, conf) = certificate(dir.path());
    let broker = Standalone::start_with(BrokerOptions {
        broker_conf: Some(conf),
        ..BrokerOptions::default()
    });
    create_topic(&broker.broker_addr, &broker.namesrv_addr, TOPIC, 4);
    let report = node_tls_producer(&broker.grpc_addr, None, None);
    assert_eq!(
        report["ok"], false,
        "an untrusted certificate must fail: {report}"
    );
}

#[test]
fn enforcing_mode_serves_tls_and_closes_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, conf) = certificate(dir.path());
    // Enforcing applies to the remoting port too, so the topic is never created here: a TLS
    // client is answered (TOPIC_NOT_FOUND, from the broker), a plaintext one never is.
    let broker = Standalone::start_with(BrokerOptions {
        broker_conf: Some(format!("{conf}tls.server.mode=enforcing\n")),
        ..BrokerOptions::default()
    });
    // The first call is the send's route query (--lazy): its error tells who answered.
    let lazy = |plaintext: bool| {
        let mut args = vec!["--lazy", broker.grpc_addr.as_str(), TOPIC, "body"];
        if plaintext {
            args.insert(0, "--plaintext");
        }
        let env = [("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", cert.to_str().unwrap())];
        report_of(&run_node_with_env(
            "tls-producer.mjs",
            &args,
            &env,
            NODE_LIMIT,
        ))
    };
    let tls = lazy(false);
    assert_eq!(tls["ok"], false, "{tls}");
    let error = tls["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("40402"),
        "the broker answers over TLS: {error}"
    );
    let report = lazy(true);
    assert_eq!(
        report["ok"], false,
        "plaintext on an enforcing port: {report}"
    );
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        !error.contains("40402") && !error.to_lowercase().contains("not found"),
        "{error}"
    );
}
