//! HA links on the wire: the master's `haListenPort` and a slave's connection to it, carrying
//! the core's replication (`vostok_core::ha`, `vostok_core::broker::replication`).
//!
//! ```text
//!  accept / connect ──▶ reader task ──HaEvent::Bytes──▶ owner (bounded input queue)
//!                       writer task ◀──HaOutbound─────── owner: Transfer(header, file range),
//!                            │                                   Report(8 bytes), Close
//!                            └──HaEvent::Written──▶ owner (flow control)
//! ```
//!
//! A master's transfer goes from the CommitLog segment file to the socket with `sendfile(2)`:
//! the bytes never pass through user space. Bytes below the CommitLog's written end never
//! change, so the file range can be read while the owner goes on appending.
//!
//! Under the simulator (`--cfg madsim`) the same tasks run over madsim's TCP; the transfer's
//! bytes come from the storage (`DriverStorage::transfer_source`, the simulated disk) instead.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::watch;
use tracing::{debug, warn};
use vostok_core::ConnId;

/// Bytes read from an HA socket per event.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How long a slave waits for its master's HA port to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A link's write half: the socket's own (for `sendfile`), or, in the simulator, whose stream
/// has no `into_split`, tokio's generic half.
#[cfg(not(madsim))]
type LinkWriteHalf = tokio::net::tcp::OwnedWriteHalf;
#[cfg(madsim)]
type LinkWriteHalf = tokio::io::WriteHalf<TcpStream>;
#[cfg(not(madsim))]
type LinkReadHalf = tokio::net::tcp::OwnedReadHalf;
#[cfg(madsim)]
type LinkReadHalf = tokio::io::ReadHalf<TcpStream>;

/// Where a transfer's bytes come from.
pub enum TransferSource {
    /// The segment file, read by the kernel (`sendfile`).
    File(std::fs::File),
    /// Bytes read already (storages without files: the simulator's).
    Bytes(Vec<u8>),
}

/// What the owner asks an HA link's writer to do.
pub enum HaOutbound {
    /// The 12-byte frame header, then `len` bytes of `source` from `pos`.
    Transfer {
        header: [u8; 12],
        source: TransferSource,
        pos: u64,
        len: u64,
    },
    Report([u8; 8]),
    Close,
}

/// What HA link tasks hand the owner.
pub enum HaEvent {
    /// A slave connected to the master's HA port.
    Accepted {
        link: ConnId,
        peer: SocketAddr,
        writer: mpsc::UnboundedSender<HaOutbound>,
    },
    /// The slave's connection to its master is up.
    Connected {
        link: ConnId,
        writer: mpsc::UnboundedSender<HaOutbound>,
    },
    ConnectFailed {
        addr: String,
        error: String,
    },
    Bytes {
        link: ConnId,
        bytes: Vec<u8>,
    },
    /// A transfer of this many bytes (header included) was written.
    Written {
        link: ConnId,
        bytes: u64,
    },
    Closed {
        link: ConnId,
    },
}

/// Accepts slaves on the master's HA port until shutdown.
pub async fn accept_loop<T: From<HaEvent> + Send + 'static>(
    listener: TcpListener,
    events: mpsc::Sender<T>,
    mut shutdown: watch::Receiver<bool>,
    next_id: fn() -> ConnId,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let link = next_id();
                    let (writer, reader) = spawn_link(link, stream, events.clone());
                    if events.send(T::from(HaEvent::Accepted { link, peer, writer })).await.is_err() {
                        break;
                    }
                    reader.start();
                }
                Err(e) => {
                    warn!("HA accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    debug!("HA port stopped accepting");
}

/// Connects a slave to its master's HA port; the outcome arrives as an event.
pub fn connect<T: From<HaEvent> + Send + 'static>(
    addr: String,
    events: mpsc::Sender<T>,
    next_id: fn() -> ConnId,
) {
    tokio::spawn(async move {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await;
        let mut reader = None;
        let event = match attempt {
            Ok(Ok(stream)) => {
                let link = next_id();
                let (writer, link_reader) = spawn_link(link, stream, events.clone());
                reader = Some(link_reader);
                HaEvent::Connected { link, writer }
            }
            Ok(Err(e)) => HaEvent::ConnectFailed {
                addr,
                error: e.to_string(),
            },
            Err(_) => HaEvent::ConnectFailed {
                addr,
                error: format!("no answer within {CONNECT_TIMEOUT:?}"),
            },
        };
        if events.send(T::from(event)).await.is_ok() {
            if let Some(reader) = reader {
                reader.start();
            }
        }
    });
}

/// Starts the writer of one link; returns its queue and the link's reader, to be started once
/// the link's `Accepted` or `Connected` event is queued: the owner drops bytes of a link it
/// does not know yet, and a peer's first report comes right after it connects.
fn spawn_link<T: From<HaEvent> + Send + 'static>(
    link: ConnId,
    stream: TcpStream,
    events: mpsc::Sender<T>,
) -> (mpsc::UnboundedSender<HaOutbound>, LinkReader<T>) {
    let _ = stream.set_nodelay(true);
    #[cfg(not(madsim))]
    let (read_half, write_half) = stream.into_split();
    #[cfg(madsim)]
    let (read_half, write_half) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    // The writer ends on Close (or a failed write); its end ends the reader too, so a link
    // closed for bad input is closed whole, whatever the peer does.
    let (writer_done, writer_ended) = tokio::sync::oneshot::channel::<()>();
    let reader = LinkReader {
        link,
        half: read_half,
        events: events.clone(),
        writer_ended,
    };
    tokio::spawn(async move {
        write_link(link, write_half, rx, events).await;
        drop(writer_done);
    });
    (tx, reader)
}

/// The read side of a link, not yet reading.
struct LinkReader<T> {
    link: ConnId,
    half: LinkReadHalf,
    events: mpsc::Sender<T>,
    writer_ended: tokio::sync::oneshot::Receiver<()>,
}

impl<T: From<HaEvent> + Send + 'static> LinkReader<T> {
    /// Reads the link until it closes, sending what arrives as events.
    fn start(self) {
        let LinkReader {
            link,
            mut half,
            events,
            mut writer_ended,
        } = self;
        tokio::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK_BYTES];
            loop {
                let read = tokio::select! {
                    read = half.read(&mut buf) => read,
                    _ = &mut writer_ended => break,
                };
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let event = HaEvent::Bytes {
                            link,
                            bytes: buf[..n].to_vec(),
                        };
                        if events.send(T::from(event)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = events.send(T::from(HaEvent::Closed { link })).await;
        });
    }
}

async fn write_link<T: From<HaEvent> + Send + 'static>(
    link: ConnId,
    mut half: LinkWriteHalf,
    mut outbound: mpsc::UnboundedReceiver<HaOutbound>,
    events: mpsc::Sender<T>,
) {
    while let Some(next) = outbound.recv().await {
        let result = match next {
            // A flush is a no-op on a kernel socket; madsim's stream only sends on flush.
            HaOutbound::Report(report) => match half.write_all(&report).await {
                Ok(()) => half.flush().await,
                Err(e) => Err(e),
            },
            HaOutbound::Close => break,
            HaOutbound::Transfer {
                header,
                source,
                pos,
                len,
            } => {
                let written = async {
                    half.write_all(&header).await?;
                    match source {
                        TransferSource::Bytes(bytes) => {
                            half.write_all(&bytes).await?;
                            half.flush().await
                        }
                        #[cfg(not(madsim))]
                        TransferSource::File(file) => send_file(&half, &file, pos, len).await,
                        // The simulator's storage hands bytes (`DriverStorage::transfer_source`).
                        #[cfg(madsim)]
                        TransferSource::File(_) => {
                            let _ = pos;
                            Err(std::io::Error::other(
                                "the simulator has no segment files to send",
                            ))
                        }
                    }
                }
                .await;
                if written.is_ok() {
                    let event = HaEvent::Written {
                        link,
                        bytes: header.len() as u64 + len,
                    };
                    if events.send(T::from(event)).await.is_err() {
                        break;
                    }
                }
                written
            }
        };
        if let Err(e) = result {
            debug!(%link, "HA write failed: {e}");
            break;
        }
    }
    let _ = half.shutdown().await;
}

/// `len` bytes of `file` from `pos` to the socket, by the kernel.
#[cfg(not(madsim))]
async fn send_file(
    half: &tokio::net::tcp::OwnedWriteHalf,
    file: &std::fs::File,
    mut pos: u64,
    len: u64,
) -> std::io::Result<()> {
    let stream: &TcpStream = half.as_ref();
    let end = pos + len;
    while pos < end {
        stream.writable().await?;
        let remaining = (end - pos) as usize;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, file, Some(&mut pos), remaining).map_err(Into::into)
        }) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the segment file ended before the transfer",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
