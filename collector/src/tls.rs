//! TLS for agents' gRPC connections, terminated in the collector's own
//! accept loop rather than inside the gRPC server.
//!
//! Terminating it here lets the collector bound what a connection may make
//! it hold before it is an agent's: a handshake must finish within
//! [`HANDSHAKE_TIMEOUT`] and at most [`HANDSHAKES_AT_ONCE`] run at a time
//! (further connections wait in the kernel's listen queue, which costs the
//! collector nothing), so a client that opens TCP and never finishes TLS
//! (a slow-loris handshake) holds its memory for seconds, not for ever.
//! Once a connection is established, what rustls may queue to send is
//! capped at [`BUFFER_LIMIT`].
//!
//! Everything else is as the gRPC server's own TLS was: the collector's
//! certificate and key, no client certificates (agents prove who they are
//! by signing), ALPN `h2`, rustls's safe default versions (TLS 1.2 and 1.3)
//! and ring's cipher suites, and the peer's address given to handlers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;

use crate::memory::{Connections, Counted};
use crate::secrets::TlsIdentity;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait to be accepted.
/// A handshake costs about a millisecond of one core, so this lets a
/// whole school's morning arrive without a queue while bounding what
/// stalled clients can hold (a few KiB each).
pub const HANDSHAKES_AT_ONCE: usize = 256;
/// Bytes rustls may queue to send on one connection (plaintext waiting to
/// be encrypted, and records waiting for the socket); past it, writes wait
/// for the socket. Two full TLS records.
pub const BUFFER_LIMIT: usize = 32 * 1024;
/// The only application protocol agents speak over TLS.
const ALPN_H2: &[u8] = b"h2";

/// What the accept loop enforces; [`Limits::default`] is what `serve` uses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub handshakes_at_once: usize,
    pub buffer_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            handshakes_at_once: HANDSHAKES_AT_ONCE,
            buffer_limit: BUFFER_LIMIT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the collector's TLS certificate or key cannot be read ({0}); run `tutela-collector init` again or restore cert.pem and cert.key")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("the collector's TLS certificate and key cannot be used ({0}); run `tutela-collector init` again or restore cert.pem and cert.key")]
    Config(#[from] rustls::Error),
}

/// The rustls configuration agents' connections are served with.
pub fn server_config(identity: &TlsIdentity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs =
        CertificateDer::pem_slice_iter(&identity.cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&identity.key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Agents' connections, TLS established, for the gRPC server to serve.
/// Dropping it stops accepting and ends the handshakes in progress.
pub struct Incoming {
    rx: mpsc::Receiver<TlsStream<Counted>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Stream for Incoming {
    type Item = io::Result<TlsStream<Counted>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|next| next.map(Ok))
    }
}

/// Accepts agents' connections on `listener`, counts each in `connections`
/// while it is open, and hands on those whose handshake completes.
pub fn accept(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    connections: Connections,
    limits: Limits,
) -> Incoming {
    let (tx, rx) = mpsc::channel(64);
    let accepting = tokio::spawn(accept_loop(listener, config, connections, limits, tx));
    Incoming { rx, accepting }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    connections: Connections,
    limits: Limits,
    tx: mpsc::Sender<TlsStream<Counted>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(limits.handshakes_at_once.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        // Wait for a free handshake slot before taking the next connection.
        let permit = tokio::select! {
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Most often out of file descriptors: wait for some to close.
                    tracing::warn!(%error, "cannot accept an agent's connection; if this repeats, raise the collector's open-file limit (LimitNOFILE)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = tx.closed() => return,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let counted = connections.track(stream);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            let handshake =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(counted));
            let result = handshake.await;
            drop(permit);
            match result {
                Ok(Ok(mut tls)) => {
                    tls.get_mut().1.set_buffer_limit(Some(limits.buffer_limit));
                    let _ = tx.send(tls).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(
                    %peer,
                    timeout_secs = limits.handshake_timeout.as_secs_f64(),
                    "TLS handshake not finished in time; connection closed"
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests;
