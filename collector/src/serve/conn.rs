//! HTTP/2 (and HTTP/1.1, for gRPC-Web) on agents' TLS connections, served
//! by the collector itself rather than by the gRPC server's own loop.
//!
//! Two things differ from tonic's loop, both for what a connected agent
//! costs the collector while it waits:
//! - the HPACK header table an agent's requests may fill is 0 bytes
//!   ([`HEADER_TABLE`]): an agent's headers are gRPC's own, a few hundred
//!   bytes a call, a few calls a minute, so indexing them saves nothing
//!   worth holding. Each indexed header kept alive the whole buffer it was
//!   decoded from, for as long as the connection lasted;
//! - the services are shared by every connection (an `Arc`), not copied
//!   into each: a connection holds its peer's address and a pointer.
//!
//! Connections that negotiated `h2` by ALPN (every agent) are served as
//! HTTP/2 directly; others are sniffed (HTTP/2 with prior knowledge, or
//! HTTP/1.1 for gRPC-Web). A stop sends every connection a GOAWAY and waits
//! for their open calls to end.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::ServiceExt;

use crate::memory::Counted;

/// The HPACK dynamic table agents may fill (HTTP/2's default is 4 KiB).
pub const HEADER_TABLE: u32 = 0;

/// HTTP/2 settings of agents' connections.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_streams: u32,
    pub max_frame: u32,
    pub max_header_list: u32,
    pub header_table: u32,
}

/// What every connection's requests are handed to: the gRPC routes behind
/// their layers (CORS, gRPC-Web).
pub trait Routes:
    tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = <Self as Routes>::Call,
    > + Clone
    + Send
    + Sync
    + 'static
{
    type Call: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static;
}

impl<S> Routes for S
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Call = S::Future;
}

/// One connection's view of the shared routes: the peer's address, given
/// to handlers as tonic's own server gives it.
struct PerConnection<S> {
    routes: Arc<S>,
    peer: TcpConnectInfo,
}

impl<S: Routes> hyper::service::Service<Request<Incoming>> for PerConnection<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = tower::util::Oneshot<S, Request<Body>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        (*self.routes).clone().oneshot(request.map(Body::new))
    }
}

/// Serves every connection `incoming` yields until `shutdown` resolves,
/// then stops taking connections and waits for the open ones to end.
pub async fn serve<S: Routes>(
    incoming: impl tokio_stream::Stream<Item = std::io::Result<TlsStream<Counted>>>,
    routes: S,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    let routes = Arc::new(routes);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .initial_stream_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_concurrent_streams(settings.max_streams)
        .max_frame_size(settings.max_frame)
        .max_header_list_size(settings.max_header_list)
        .header_table_size(settings.header_table);
    let mut sniffing = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    sniffing.http1().timer(TokioTimer::new());
    sniffing
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_concurrent_streams(settings.max_streams)
        .max_frame_size(settings.max_frame)
        .max_header_list_size(settings.max_header_list);
    let sniffing = Arc::new(sniffing);
    let graceful = GracefulShutdown::new();
    let mut incoming = Box::pin(incoming);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tls = tokio::select! {
            () = &mut shutdown => break,
            next = incoming.next() => match next {
                Some(Ok(tls)) => tls,
                Some(Err(error)) => {
                    tracing::debug!(%error, "an agent's connection could not be taken");
                    continue;
                }
                None => break,
            },
        };
        let (tcp, session) = tls.get_ref();
        let negotiated_h2 = session.alpn_protocol() == Some(b"h2".as_slice());
        let service = PerConnection {
            routes: routes.clone(),
            peer: tcp.connect_info(),
        };
        let io = TokioIo::new(tls);
        if negotiated_h2 {
            let served = graceful.watch(h2.serve_connection(io, service));
            tokio::spawn(async move {
                if let Err(error) = served.await {
                    tracing::debug!(%error, "agent connection ended with an error");
                }
            });
        } else {
            let sniffing = sniffing.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let served = watcher.watch(sniffing.serve_connection_with_upgrades(io, service));
                if let Err(error) = served.await {
                    tracing::debug!(%error, "connection ended with an error");
                }
            });
        }
    }
    drop(incoming);
    graceful.shutdown().await;
}
