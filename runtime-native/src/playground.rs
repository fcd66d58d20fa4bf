//! `vostok playground`: serves the in-browser playground from files embedded in the binary.
//!
//! The files come from `playground/web/` (the page) and `playground/pkg/` (the core compiled to
//! WebAssembly plus its wasm-bindgen glue), embedded by `build.rs`. When the WebAssembly build was
//! missing at compile time, `/` explains how to produce it (`scripts/build-playground.sh`).
//!
//! The server is deliberately minimal: loopback only, HTTP/1.1 `GET` and `HEAD` of static files,
//! one request per connection (`Connection: close`). Anything else gets a short error response.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::RunError;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/playground_assets.rs"));
}

/// Whether the WebAssembly build (`playground/pkg/`) is embedded in this binary.
pub const PLAYGROUND_BUILT: bool = assets::PLAYGROUND_BUILT;

/// The default port of `vostok playground`.
pub const DEFAULT_PLAYGROUND_PORT: u16 = 8870;

/// Largest request head read; a static file server needs nothing near it.
const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;

/// A client that sends no complete request head within this long is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded file for a URL path (query and fragment already removed): its Content-Type and
/// bytes. `/` is `/index.html`.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/" { "/index.html" } else { path };
    assets::ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, bytes)| (*ct, *bytes))
}

/// Binds the playground's listener on 127.0.0.1 (`port` 0 picks a free port).
pub async fn bind(port: u16) -> Result<TcpListener, RunError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// Serves the playground on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) -> Result<(), RunError> {
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = handle(stream).await {
                debug!(%peer, "playground connection: {e}");
            }
        });
    }
}

/// `vostok playground`: binds, prints `http://127.0.0.1:PORT/` on stdout, then serves.
pub async fn run_playground(port: u16) -> Result<(), RunError> {
    let listener = bind(port).await?;
    let addr = listener.local_addr()?;
    if !PLAYGROUND_BUILT {
        tracing::warn!("the WebAssembly build is not embedded; run scripts/build-playground.sh and rebuild vostok");
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "http://{addr}/")?;
        out.flush()?;
    }
    serve(listener).await
}

async fn handle(mut stream: TcpStream) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return respond(&mut stream, 400, "text/plain", b"bad request\n", true).await
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let mut parts = head.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return respond(&mut stream, 400, "text/plain", b"bad request\n", true).await;
    };
    if !version.starts_with("HTTP/1.") {
        return respond(&mut stream, 400, "text/plain", b"bad request\n", true).await;
    }
    let with_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return respond(
                &mut stream,
                405,
                "text/plain",
                b"method not allowed\n",
                true,
            )
            .await
        }
    };
    let path = target.split(['?', '#']).next().unwrap_or("/");
    match asset(path) {
        Some((ct, body)) => respond(&mut stream, 200, ct, body, with_body).await,
        None => respond(&mut stream, 404, "text/plain", b"not found\n", with_body).await,
    }
}

/// Reads up to the end of the request head and returns its first line; `None` when the head is
/// malformed, too long, or the peer closed early.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            let line_end = head
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(head.len());
            return Ok(std::str::from_utf8(&head[..line_end])
                .ok()
                .map(str::to_owned));
        }
        if buf.len() > MAX_REQUEST_HEAD_BYTES {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}
