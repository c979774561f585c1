//! TLS to PostgreSQL, chosen by the URL's `sslmode` as libpq does:
//! - absent or `disable`: no TLS (a database on the same host or a
//!   private network);
//! - `require`: encrypted; the server's certificate is checked against the
//!   CA only when one is given (`[storage] ca` or `sslrootcert=`);
//! - `verify-ca`: encrypted, the certificate signed by that CA;
//! - `verify-full`: also issued for the host named in the URL (the usual
//!   choice across a network).
//!
//! `prefer` and `allow` (TLS when the server offers it) are refused: a
//! collector either asks for TLS or does not. A failed handshake is
//! described with what to change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// How the collector talks TLS to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The URL without the TLS parameters tokio-postgres does not know, the
/// mode, and the CA file named by `sslrootcert`.
pub(super) fn split_url(url: &str) -> Result<(String, SslMode, Option<PathBuf>), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), SslMode::Disable, None));
    };
    let mut mode = SslMode::Disable;
    let mut ca = None;
    let mut kept = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "sslmode" => {
                mode = match value.as_ref() {
                    "disable" => SslMode::Disable,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(StoreError::BadUrl(format!(
                            "sslmode={other} in [storage] url is not supported: use sslmode=verify-full (TLS, the server's certificate checked against [storage] ca and the host name), verify-ca, require, or disable"
                        )))
                    }
                }
            }
            "sslrootcert" => ca = Some(PathBuf::from(value.as_ref())),
            _ => {
                kept.append_pair(&key, &value);
                any = true;
            }
        }
    }
    let rest = if any {
        format!("{base}?{}", kept.finish())
    } else {
        base.to_owned()
    };
    Ok((rest, mode, ca))
}

/// The connector for `mode`, trusting the CA certificates in `ca`.
pub(super) fn connector(
    mode: SslMode,
    ca: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, StoreError> {
    let roots = ca.map(read_roots).transpose()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(StoreError::BadUrl(
                "sslmode=verify-full and verify-ca need the CA that signed the PostgreSQL server's certificate: set [storage] ca = \"/path/to/ca.pem\" in collector.toml (or sslrootcert= in the URL)".into(),
            ))
        }
        (SslMode::Require, None) => Arc::new(EncryptOnly(provider())),
        (mode, Some(roots)) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| StoreError::BadUrl(format!("the CA in [storage] ca cannot be used: {e}")))?;
            Arc::new(Verify {
                webpki,
                names: mode == SslMode::VerifyFull,
            })
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::BadUrl(format!("TLS cannot be set up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_roots(path: &Path) -> Result<RootCertStore, StoreError> {
    let bad = |why: String| {
        StoreError::BadUrl(format!(
            "the database's CA certificate {} {why}; set [storage] ca to the PEM file of the CA that signed the PostgreSQL server's certificate",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("is not PEM ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("holds a certificate that cannot be trusted ({e})")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(roots)
}

/// The CA's checks, with or without the host name.
#[derive(Debug)]
struct Verify {
    webpki: Arc<WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `sslmode=require` without a CA: encrypted, the server's certificate not
/// checked (libpq's meaning); the handshake's signatures still are.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What to do about a failed TLS handshake, from the error's text.
pub(super) fn hint(detail: &str) -> &'static str {
    if detail.contains("UnknownIssuer") || detail.contains("BadSignature") {
        " (the server's certificate is not signed by the CA in [storage] ca: set ca to the CA that signed the PostgreSQL server's certificate)"
    } else if detail.contains("not valid for name") || detail.contains("NotValidForName") {
        " (the server's certificate was not issued for the host in [storage] url: connect by the name the certificate names, or have the server's certificate reissued for this name)"
    } else if detail.contains("Expired") {
        " (the server's certificate has expired: renew it on the PostgreSQL server)"
    } else if detail.contains("does not support TLS") {
        " (the server does not offer TLS: set ssl = on with a certificate in postgresql.conf, or drop sslmode from [storage] url)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, mode, ca) = split_url(
            "postgres://u:p@db.example:5432/school?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db.example:5432/school?connect_timeout=5"
        );
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(split_url("postgres://u@h/d").unwrap().1, SslMode::Disable);
        let refused = split_url("postgres://u@h/d?sslmode=prefer").unwrap_err();
        assert!(refused.to_string().contains("verify-full"), "{refused}");
        let Err(no_ca) = connector(SslMode::VerifyFull, None) else {
            panic!("verify-full without a CA is refused");
        };
        assert!(no_ca.to_string().contains("[storage] ca"), "{no_ca}");
        assert!(connector(SslMode::Require, None).unwrap().is_some());
    }
}
