//! `vostok playground`: the real binary on port 0 serves the embedded page and, when the
//! WebAssembly build was present at compile time, the module with `application/wasm`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vostok"))
        .args(["playground", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vostok playground");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the address line");
    let line = line.trim();
    let addr = line
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("address line is not http://IP:PORT/: {line:?}"))
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "listens on loopback only: {addr}"
    );
    Server { child, addr }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(addr: &str, raw: &str) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(raw.as_bytes()).expect("send request");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read response");
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8(bytes[..end].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

fn get(addr: &str, path: &str) -> Response {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn serves_the_page_and_the_wasm_module() {
    let server = start();

    let index = get(&server.addr, "/");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        index.header("content-length"),
        Some(index.body.len().to_string().as_str())
    );
    let html = String::from_utf8_lossy(&index.body);

    let wasm = get(&server.addr, "/pkg/vostok_playground_bg.wasm?v=1");
    if vostok::playground::PLAYGROUND_BUILT {
        assert!(html.contains("<script type=\"module\""), "the page: {html}");
        assert_eq!(wasm.status, 200);
        assert_eq!(wasm.header("content-type"), Some("application/wasm"));
        assert_eq!(&wasm.body[..4], b"\0asm", "WebAssembly magic");
        let glue = get(&server.addr, "/pkg/vostok_playground.js");
        assert_eq!(glue.status, 200);
        assert_eq!(
            glue.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        let app = get(&server.addr, "/app.js");
        assert_eq!(app.status, 200);
        // The POP groups panel (shown once a scenario has a POP group) and its renderer.
        assert!(html.contains("id=\"pop-panel\""), "the page: {html}");
        let view = get(&server.addr, "/view.js");
        assert_eq!(view.status, 200);
        assert!(String::from_utf8_lossy(&view.body).contains("renderPopGroups"));
    } else {
        // A fresh checkout without scripts/build-playground.sh: `/` says how to build it.
        assert!(
            html.contains("scripts/build-playground.sh"),
            "the page: {html}"
        );
        assert_eq!(wasm.status, 404);
    }
}

#[test]
fn bad_requests_get_error_responses() {
    let server = start();
    assert_eq!(get(&server.addr, "/no/such/file").status, 404);
    assert_eq!(get(&server.addr, "/../Cargo.toml").status, 404);
    let post = request(
        &server.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(request(&server.addr, "garbage\r\n\r\n").status, 400);
    let head = request(&server.addr, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // The server is still up after all of that.
    assert_eq!(get(&server.addr, "/").status, 200);
}
