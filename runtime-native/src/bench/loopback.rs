//! `vostok bench loopback`: this machine's ceiling, measured with the framing and message size
//! the broker benchmarks use, by a minimal tokio server on 127.0.0.1 that does nothing but frame.
//!
//! * Round trips: a client sends one SEND_MESSAGE_V2 frame carrying a body of the message size
//!   and waits until the server has echoed the whole frame back; at 1 connection and at N
//!   connections in parallel (one outstanding frame each). A broker's send costs at least this.
//! * Streaming: one connection writes the same frames back to back; the server reads and
//!   splits them by their length word (MB/s and frames/s as received).
//!
//! Each of the three phases runs for a third of `--duration`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::stats::{round3, Latency, Recorder};
use super::SerializeArg;
use crate::RunError;

/// Options of `vostok bench loopback`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoopbackArgs {
    /// Message body size in bytes; the frame adds the send header.
    #[arg(short = 's', long, default_value_t = 1024)]
    pub size: usize,
    /// Connections of the parallel round-trip phase.
    #[arg(short = 'c', long, default_value_t = 16)]
    pub connections: usize,
    /// Seconds in all, split evenly over the three phases.
    #[arg(short = 'd', long, default_value_t = 3.0)]
    pub duration: f64,
    /// Header encoding of the frames.
    #[arg(long, value_enum, default_value_t = SerializeArg::Rocketmq)]
    pub serialize: SerializeArg,
    /// Print one JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// Round trips at one level of concurrency.
#[derive(Clone, Copy, Debug)]
pub struct RoundTrips {
    pub connections: usize,
    pub per_s: f64,
    pub latency: Latency,
}

/// What `bench loopback` measured.
#[derive(Clone, Debug)]
pub struct Ceiling {
    pub frame_bytes: usize,
    pub single: RoundTrips,
    pub parallel: RoundTrips,
    pub stream_frames_per_s: f64,
    pub stream_mb_per_s: f64,
}

impl Ceiling {
    /// Round trips measured with `connections` parallel clients: the phase closest to it.
    pub fn round_trips_for(&self, connections: usize) -> RoundTrips {
        if connections <= 1 {
            self.single
        } else {
            self.parallel
        }
    }

    pub fn to_json(&self) -> Value {
        let rt = |r: RoundTrips| {
            json!({
                "connections": r.connections,
                "round_trips_per_s": r.per_s.round(),
                "rtt_ms": r.latency.to_json(),
            })
        };
        json!({
            "frame_bytes": self.frame_bytes,
            "round_trips_1": rt(self.single),
            "round_trips_n": rt(self.parallel),
            "stream_frames_per_s": self.stream_frames_per_s.round(),
            "stream_mb_per_s": round3(self.stream_mb_per_s),
        })
    }

    pub fn lines(&self) -> Vec<String> {
        let rt = |r: RoundTrips| {
            format!(
                "loopback round trips, {} connection(s): {:.0}/s, RTT {}",
                r.connections,
                r.per_s,
                r.latency.line()
            )
        };
        vec![
            format!("loopback frame: {} bytes", self.frame_bytes),
            rt(self.single),
            rt(self.parallel),
            format!(
                "loopback streaming: {:.0} frames/s, {:.1} MB/s",
                self.stream_frames_per_s, self.stream_mb_per_s
            ),
        ]
    }
}

/// Splits whole frames (4-byte big-endian length word + that many bytes) off `buf`: returns
/// how many and the bytes they span.
fn whole_frames(buf: &BytesMut) -> (usize, usize) {
    let mut pos = 0;
    let mut n = 0;
    while buf.len() - pos >= 4 {
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if buf.len() - pos - 4 < len {
            break;
        }
        pos += 4 + len;
        n += 1;
    }
    (n, pos)
}

/// Echo server: every whole frame read goes back unchanged.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (_, end) = whole_frames(&buf);
        if end > 0 {
            let frames = buf.split_to(end);
            if stream.write_all(&frames).await.is_err() {
                return;
            }
        }
    }
}

/// Sink server: counts whole frames until the client closes; returns (frames, bytes, seconds
/// from the first byte to the end).
async fn sink(mut stream: TcpStream) -> (u64, u64, f64) {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        first.get_or_insert_with(Instant::now);
        let (n, end) = whole_frames(&buf);
        frames += n as u64;
        bytes += end as u64;
        buf.advance(end);
        if buf.capacity() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    (frames, bytes, secs)
}

async fn round_trips(
    addr: std::net::SocketAddr,
    frame: Bytes,
    connections: usize,
    phase: Duration,
) -> Result<RoundTrips, RunError> {
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let frame = frame.clone();
        let recorder = recorder.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut back = vec![0u8; frame.len()];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                stream.write_all(&frame).await?;
                stream.read_exact(&mut back).await?;
                recorder.record_ok(t.elapsed(), 1, frame.len() as u64);
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await
            .map_err(|e| RunError::Task(e.to_string()))?
            .map_err(RunError::Io)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let totals = recorder.totals();
    Ok(RoundTrips {
        connections,
        per_s: totals.ok as f64 / elapsed,
        latency: totals.latency,
    })
}

async fn streaming(frame: Bytes, phase: Duration) -> Result<(f64, f64), RunError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        Ok::<_, std::io::Error>(sink(stream).await)
    });
    let mut stream = TcpStream::connect(addr).await?;
    // Frames back to back in writes of about 256 KiB, as a busy producer connection sends.
    let per_write = (256 * 1024 / frame.len()).max(1);
    let mut batch = BytesMut::with_capacity(per_write * frame.len());
    for _ in 0..per_write {
        batch.extend_from_slice(&frame);
    }
    let started = Instant::now();
    while started.elapsed() < phase {
        stream.write_all(&batch).await?;
    }
    stream.shutdown().await?;
    drop(stream);
    let (frames, bytes, secs) = server.await.map_err(|e| RunError::Task(e.to_string()))??;
    let secs = secs.max(1e-9);
    Ok((frames as f64 / secs, bytes as f64 / secs / 1e6))
}

/// Measures the ceiling for frames of `frame` (encoded request bytes).
pub async fn measure(
    frame: Bytes,
    connections: usize,
    duration: Duration,
) -> Result<Ceiling, RunError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(echo(stream));
        }
    });
    let phase = duration / 3;
    let single = round_trips(addr, frame.clone(), 1, phase).await;
    let parallel = round_trips(addr, frame.clone(), connections.max(1), phase).await;
    server.abort();
    let (stream_frames_per_s, stream_mb_per_s) = streaming(frame.clone(), phase).await?;
    Ok(Ceiling {
        frame_bytes: frame.len(),
        single: single?,
        parallel: parallel?,
        stream_frames_per_s,
        stream_mb_per_s,
    })
}

/// `vostok bench loopback`.
pub async fn run(args: LoopbackArgs) -> Result<(), RunError> {
    if !super::positive_secs(args.duration) {
        return Err(RunError::Usage("--duration must be positive".into()));
    }
    let frame = super::produce::sample_frame(args.size, args.serialize.into());
    eprintln!(
        "loopback: {} byte frames ({} byte body), 1 and {} connections, {:.1}s",
        frame.len(),
        args.size,
        args.connections,
        args.duration
    );
    let ceiling = measure(
        frame,
        args.connections,
        Duration::from_secs_f64(args.duration),
    )
    .await?;
    if args.json {
        let mut v = ceiling.to_json();
        v["command"] = json!("loopback");
        v["size_bytes"] = json!(args.size);
        println!("{v}");
    } else {
        for line in ceiling.lines() {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_whole_frames_only() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 2, 9, 9, 0, 0, 0, 3, 1]);
        assert_eq!(whole_frames(&buf), (1, 6));
        buf.extend_from_slice(&[2, 3]);
        assert_eq!(whole_frames(&buf), (2, 13));
    }
}
