//! TLS to the collector with its certificate pinned by fingerprint.
//!
//! The enrolment token carries the SHA-256 of the collector's certificate;
//! the agent accepts exactly that certificate and nothing else, so no CA or
//! host name is involved and a substituted collector is refused.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum PinningError {
    #[error(
        "the pinned certificate fingerprint is not 64 hex digits; enrol again with a fresh token"
    )]
    BadFingerprint,
    #[error("cannot reach the collector at {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if seen.as_ref() == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::error!(
                pinned = %hex::encode(self.fingerprint),
                presented = %hex::encode(seen.as_ref()),
                "collector certificate does not match the pinned fingerprint; refusing to send"
            );
            Err(rustls::Error::General(
                "collector certificate does not match the fingerprint pinned at enrolment".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config(fingerprint_hex: &str) -> Result<Arc<rustls::ClientConfig>, PinningError> {
    let bytes = hex::decode(fingerprint_hex).map_err(|_| PinningError::BadFingerprint)?;
    let fingerprint: [u8; 32] = bytes.try_into().map_err(|_| PinningError::BadFingerprint)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
            fingerprint,
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Opens a gRPC channel to `addr` (`host:port`) over TLS, accepting only the
/// certificate whose SHA-256 is `fingerprint_hex`.
pub async fn connect(addr: &str, fingerprint_hex: &str) -> Result<Channel, PinningError> {
    let tls = tokio_rustls::TlsConnector::from(client_config(fingerprint_hex)?);
    let target = addr.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let tls = tls.clone();
        let target = target.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&target).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("tutela-collector").expect("a valid name");
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Endpoint::from_static("http://tutela-collector")
        .connect_timeout(std::time::Duration::from_secs(10))
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
        .map_err(|e| PinningError::Connect {
            addr: addr.to_owned(),
            reason: error_chain(&e),
        })
}

/// The address that answered last, as an index into the list: every
/// connection of this process (events, rules, notices) starts there, so a
/// dead address is not tried first each time once another has answered.
static LAST_GOOD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Opens a channel to the first of `addrs` (the collector's addresses, in the
/// token's order) that answers with the pinned certificate, starting from the
/// one that answered last; the error is the last address's.
pub async fn connect_any(addrs: &[String], fingerprint_hex: &str) -> Result<Channel, PinningError> {
    use std::sync::atomic::Ordering;
    let Some(last) = addrs.len().checked_sub(1) else {
        return Err(PinningError::Connect {
            addr: String::new(),
            reason: "no collector address; enrol the device again".into(),
        });
    };
    let start = LAST_GOOD.load(Ordering::Relaxed).min(last);
    let mut failed = None;
    for i in (0..addrs.len()).map(|k| (start + k) % addrs.len()) {
        match connect(&addrs[i], fingerprint_hex).await {
            Ok(channel) => {
                if i != start {
                    tracing::info!(collector = %addrs[i], "connected to another of the collector's addresses");
                }
                LAST_GOOD.store(i, Ordering::Relaxed);
                return Ok(channel);
            }
            Err(e) => {
                if addrs.len() > 1 {
                    tracing::warn!(collector = %addrs[i], error = %e, "collector address unreachable; trying the next");
                }
                failed = Some(e);
            }
        }
    }
    Err(failed.expect("at least one address was tried"))
}

/// The whole `source()` chain of an error on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
