//! TLS on the remoting port (`tls.server.mode`): one port serving TLS and plaintext clients
//! (permissive), TLS only (enforcing) or plaintext only (disabled), against `vostok standalone`,
//! with a rustls client that checks the broker's certificate.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use vostok_core::remoting::FrameDecoder;

use common::*;

/// GET_ALL_TOPIC_CONFIG: answered by any broker, with nothing to set up.
const GET_ALL_TOPIC_CONFIG: i32 = 21;

/// A certificate for 127.0.0.1 and localhost, its PEM files written under `dir`.
fn certificate(dir: &Path, name: &str) -> (CertificateDer<'static>, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let conf = format!(
        "tls.test.mode.enable=false\ntls.server.certPath={}\ntls.server.keyPath={}\n",
        cert.display(),
        key.display()
    );
    (made.cert.der().clone(), conf)
}

fn start(conf: String) -> Standalone {
    Standalone::start_with(BrokerOptions {
        broker_conf: Some(conf),
        ..BrokerOptions::default()
    })
}

/// One request over TLS, trusting `trusted`; the answer's code, or the error on the way.
async fn tls_request(addr: &str, trusted: &CertificateDer<'static>) -> Result<i64, String> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).map_err(|e| e.to_string())?;
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(&encode_request(GET_ALL_TOPIC_CONFIG, 7, &[], b""))
        .await
        .map_err(|e| e.to_string())?;
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            return Ok(i64::from(frame.code));
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read_buf(&mut buf))
            .await
            .map_err(|_| "no answer".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before answering".to_owned());
        }
    }
}

#[tokio::test]
async fn permissive_serves_tls_and_plaintext_clients_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, conf) = certificate(dir.path(), "broker");
    let broker = start(conf);
    assert_eq!(tls_request(&broker.broker_addr, &cert).await, Ok(0));
    let mut plain = RawConn::connect(&broker.broker_addr);
    assert_eq!(plain.request(GET_ALL_TOPIC_CONFIG, &[], b"").code(), 0);
    // The NameServer of the pair too.
    let mut ns = RawConn::connect(&broker.namesrv_addr);
    assert_eq!(
        ns.request(206, &[], b"").code(),
        0,
        "GET_ALL_TOPIC_LIST_FROM_NAMESERVER"
    );
}

#[tokio::test]
async fn enforcing_closes_plaintext_clients_and_disabled_closes_tls_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, conf) = certificate(dir.path(), "broker");
    let broker = start(format!("{conf}tls.server.mode=enforcing\n"));
    assert_eq!(tls_request(&broker.broker_addr, &cert).await, Ok(0));
    let mut plain = RawConn::connect(&broker.broker_addr);
    plain
        .write_raw(&encode_request(GET_ALL_TOPIC_CONFIG, 1, &[], b""))
        .unwrap();
    plain.expect_closed(
        Duration::from_secs(10),
        "a plaintext client of an enforcing port",
    );
    assert!(broker.stderr_log().contains("this port accepts TLS only"));

    let broker = start(format!("{conf}tls.server.mode=disabled\n"));
    let refused = tls_request(&broker.broker_addr, &cert).await;
    assert!(refused.is_err(), "{refused:?}");
    let mut plain = RawConn::connect(&broker.broker_addr);
    assert_eq!(plain.request(GET_ALL_TOPIC_CONFIG, &[], b"").code(), 0);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_its_handshake_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (_, conf) = certificate(dir.path(), "broker");
    let (stranger, _) = certificate(dir.path(), "stranger");
    let broker = start(conf);
    let refused = tls_request(&broker.broker_addr, &stranger).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("handshake")),
        "{refused:?}"
    );
    // The broker goes on serving.
    let mut plain = RawConn::connect(&broker.broker_addr);
    assert_eq!(plain.request(GET_ALL_TOPIC_CONFIG, &[], b"").code(), 0);
}

#[tokio::test]
async fn test_mode_makes_its_own_certificate() {
    // No files: RocketMQ's default test mode, a self-signed certificate at start. A client that
    // checks certificates cannot know it; one trusting it is served (here: its TLS is up).
    let broker = start(String::new());
    let dir = tempfile::tempdir().unwrap();
    let (other, _) = certificate(dir.path(), "other");
    let refused = tls_request(&broker.broker_addr, &other).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("handshake")),
        "{refused:?}"
    );
}

#[test]
fn a_broker_with_an_unusable_certificate_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("bad.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let conf = dir.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "tls.test.mode.enable=false\ntls.server.certPath={0}\ntls.server.keyPath={0}\n",
            cert.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vostok"))
        .arg("standalone")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--namesrv-port", "0", "--broker-port", "0", "-c"])
        .arg(&conf)
        .output()
        .expect("vostok runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS:") && stderr.contains("bad.pem"),
        "{stderr}"
    );
}
