//! The accept loop on real sockets on loopback, with rustls on both sides.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

use super::{accept, server_config, Incoming, Limits};
use crate::memory::Connections;
use crate::secrets::{self, TlsIdentity};

/// Longest any step may take before the test gives up (a hang guard, not a
/// measurement).
const GIVE_UP: Duration = Duration::from_secs(30);

fn identity(dir: &tempfile::TempDir) -> TlsIdentity {
    secrets::create_missing(dir.path(), &[]).unwrap();
    secrets::load_tls(dir.path()).unwrap()
}

async fn start(
    limits: Limits,
) -> (
    std::net::SocketAddr,
    Incoming,
    Connections,
    TlsIdentity,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let identity = identity(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Connections::default();
    let incoming = accept(
        listener,
        server_config(&identity).unwrap(),
        connections.clone(),
        limits,
    );
    (addr, incoming, connections, identity, dir)
}

fn client(identity: &TlsIdentity) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&identity.cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    identity: &TlsIdentity,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("tutela-collector").unwrap();
    client(identity).connect(name, tcp).await
}

/// Reads until the server closes the connection; Err if it never does.
async fn closed_by_server(stream: &mut TcpStream) -> Result<(), tokio::time::error::Elapsed> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(GIVE_UP, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_agent_is_served_over_tls_with_h2_and_counted_while_open() {
    let (addr, mut incoming, connections, identity, _dir) = start(Limits::default()).await;
    let mut client = tls_connect(addr, &identity).await.unwrap();
    assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut served = tokio::time::timeout(GIVE_UP, incoming.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(served.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(connections.open(), 1);
    // The peer's address reaches the handlers, as it did before.
    let info = tonic::transport::server::Connected::connect_info(&served);
    assert_eq!(
        info.get_ref().remote_addr(),
        Some(client.get_ref().0.local_addr().unwrap())
    );
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut got = [0u8; 4];
    served.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    drop(served);
    drop(client);
    assert_eq!(connections.open(), 0);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped_after_the_timeout() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _incoming, connections, identity, _dir) = start(limits).await;
    // Opens TCP and sends nothing (a slow-loris handshake).
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Sends half a ClientHello and stops.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    closed_by_server(&mut silent)
        .await
        .expect("a silent client is disconnected once the handshake timeout passes");
    closed_by_server(&mut partial)
        .await
        .expect("a client stalled mid-handshake is disconnected once the timeout passes");
    // Its memory is released: the collector no longer counts it.
    tokio::time::timeout(GIVE_UP, async {
        while connections.open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("stalled connections are closed");
    // Agents still get in afterwards.
    tls_connect(addr, &identity).await.unwrap();
}

#[tokio::test]
async fn handshakes_in_flight_are_capped_and_a_freed_slot_is_used() {
    let limits = Limits {
        handshake_timeout: Duration::from_secs(120),
        handshakes_at_once: 1,
        ..Limits::default()
    };
    let (addr, mut incoming, _connections, identity, _dir) = start(limits).await;
    let stalled = TcpStream::connect(addr).await.unwrap();
    // Let the accept loop take the stalled connection into the only slot.
    tokio::time::timeout(GIVE_UP, async {
        while _connections.open() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let agent = tokio::spawn({
        let identity = identity.clone();
        async move { tls_connect(addr, &identity).await }
    });
    // While the slot is held, the agent's connection waits in the listen
    // queue and its handshake does not start.
    let mut agent = agent;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut agent)
            .await
            .is_err(),
        "a handshake started beyond the cap"
    );
    drop(stalled);
    let _client = tokio::time::timeout(GIVE_UP, agent)
        .await
        .expect("the freed slot is used")
        .unwrap()
        .unwrap();
    tokio::time::timeout(GIVE_UP, incoming.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
