//! Giving memory back when agents leave.
//!
//! Every connected agent holds TLS, HTTP/2 and gRPC buffers, allocated from
//! the C allocator's per-thread arenas. glibc keeps what is freed inside
//! those arenas for reuse, so after thousands of agents disconnect (end of
//! the school day, a network cut) the collector's resident memory stays at
//! its peak. The agent connections are counted here, and when their number
//! falls well below its recent peak the freed memory is handed back to the
//! system (`malloc_trim`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How often the connection count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Memory is given back once this many connections (or a tenth of the
/// peak, if more) have closed since the peak.
const TRIM_AFTER_CLOSED: usize = 256;

/// Agent connections open now.
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<AtomicUsize>);

impl Connections {
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts `stream` while it stays open.
    pub fn track(&self, stream: TcpStream) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted {
            stream,
            open: self.0.clone(),
        }
    }

    /// Watches the count and gives freed memory back to the system after
    /// many connections have closed.
    pub fn spawn_trimmer(&self) -> tokio::task::JoinHandle<()> {
        let connections = self.clone();
        tokio::spawn(async move {
            let mut peak = 0usize;
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let open = connections.open();
                peak = peak.max(open);
                if peak - open < TRIM_AFTER_CLOSED.max(peak / 10) {
                    continue;
                }
                let started = std::time::Instant::now();
                let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
                tracing::info!(
                    connections = open,
                    peak,
                    released,
                    took_ms = started.elapsed().as_millis() as u64,
                    "agents left; freed memory given back to the system"
                );
                peak = open;
            }
        })
    }
}

/// An agent's TCP connection, counted while open.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Hands the allocator's free memory back to the system; true if any was.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and has no preconditions; it
    // only releases free pages of glibc's arenas.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators return memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}
