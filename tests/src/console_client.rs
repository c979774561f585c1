//! A small HTTP/1.1 client for the review console over a TCP stream (rustls
//! for HTTPS, trusting only the collector's certificate file): cookies,
//! sign-in through the login form with its CSRF cookie, extra headers.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{wait_for, Collector, Scratch};

/// The password `Endpoint::session` and `started` give every account.
pub const PASSWORD: &str = "correct horse battery staple";

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The full `Set-Cookie` value for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value set for cookie `name`.
    pub fn cookie_value(&self, name: &str) -> Option<String> {
        let full = self.set_cookie(name)?;
        let pair = full.split(';').next()?;
        Some(pair[name.len() + 1..].to_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where requests go: plain HTTP, or HTTPS trusting one certificate.
#[derive(Clone)]
pub enum Endpoint {
    Http(u16),
    Https(u16, Arc<rustls::ClientConfig>),
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1."),
        "not an HTTP response: {status_line:?}"
    );
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Reads until the server closes; a TLS peer that closes without
/// close_notify ends the response just the same.
fn read_all(stream: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !out.is_empty() => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    out
}

impl Endpoint {
    pub fn send(
        &self,
        method: &str,
        path: &str,
        cookies: &[(&str, &str)],
        form: Option<&str>,
    ) -> Response {
        self.send_with(method, path, cookies, "", form)
    }

    /// `send` with `extra_headers` (each line ending in CRLF).
    pub fn send_with(
        &self,
        method: &str,
        path: &str,
        cookies: &[(&str, &str)],
        extra_headers: &str,
        form: Option<&str>,
    ) -> Response {
        let cookie_header = if cookies.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("Cookie: {}\r\n", pairs.join("; "))
        };
        let body = form.unwrap_or("");
        let form_headers = if form.is_some() {
            format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            )
        } else {
            String::new()
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{cookie_header}{extra_headers}{form_headers}\r\n{body}"
        );
        let raw = match self {
            Endpoint::Http(port) => {
                let mut tcp = TcpStream::connect(("127.0.0.1", *port)).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                tcp.write_all(request.as_bytes()).unwrap();
                read_all(&mut tcp)
            }
            Endpoint::Https(port, config) => {
                let mut tls = connect_tls(*port, config).unwrap();
                tls.write_all(request.as_bytes()).unwrap();
                tls.flush().unwrap();
                read_all(&mut tls)
            }
        };
        parse(&raw)
    }

    pub fn get(&self, path: &str, cookies: &[(&str, &str)]) -> Response {
        self.send("GET", path, cookies, None)
    }

    /// A background poll as the queue page's script makes it.
    pub fn poll(&self, path: &str, cookies: &[(&str, &str)]) -> Response {
        self.send_with("GET", path, cookies, "Accept: application/json\r\n", None)
    }

    pub fn post(&self, path: &str, cookies: &[(&str, &str)], form: &[(&str, &str)]) -> Response {
        self.send("POST", path, cookies, Some(&form_encode(form)))
    }

    /// Signs in with `PASSWORD`; returns the session token and the
    /// session's CSRF token (from `page`, which must carry a form).
    pub fn session(&self, name: &str, page: &str) -> (String, String) {
        let ok = self.login(name, PASSWORD);
        assert_eq!(ok.status, 303, "sign-in of {name}: {ok:?}");
        let session = ok.cookie_value("tutela_session").unwrap();
        let r = self.get(page, &[("tutela_session", &session)]);
        assert_eq!(r.status, 200, "{page}: {r:?}");
        let csrf = csrf_field(&r.body);
        (session, csrf)
    }

    /// Signs in through the login form (with its CSRF cookie) and returns the response.
    pub fn login(&self, name: &str, password: &str) -> Response {
        self.login_with(name, password, "")
    }

    /// `login` with `extra_headers` on both requests (each line ending in CRLF).
    pub fn login_with(&self, name: &str, password: &str, extra_headers: &str) -> Response {
        let form = self.send_with("GET", "/login", &[], extra_headers, None);
        assert_eq!(form.status, 200, "{form:?}");
        let token = form
            .cookie_value("tutela_login")
            .expect("the login form sets its CSRF cookie");
        assert!(
            form.body.contains(&format!("value=\"{token}\"")),
            "the form carries the cookie's token"
        );
        self.send_with(
            "POST",
            "/login",
            &[("tutela_login", &token)],
            extra_headers,
            Some(&form_encode(&[
                ("csrf", &token),
                ("name", name),
                ("password", password),
            ])),
        )
    }
}

/// A TLS connection to the console on `port`, handshake done.
pub fn connect_tls(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// A client configuration that trusts only the certificate in `cert_file`.
pub fn trusting(cert_file: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// Waits up to 30 seconds for the console to accept connections on `port`.
pub fn wait_for_port(port: u16) {
    wait_for(
        &format!("the console on port {port}"),
        Duration::from_secs(30),
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
    .unwrap();
}

/// The value of the first hidden CSRF field on a page.
pub fn csrf_field(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = body.find(marker).expect("a CSRF field on the page") + marker.len();
    body[at..at + body[at..].find('"').unwrap()].to_owned()
}

/// A collector with console accounts `users` (name, role), all with
/// `PASSWORD`, started; with a plain HTTP endpoint to its console.
pub fn started(name: &str, users: &[(&str, &str)]) -> (Scratch, Collector, Endpoint) {
    let scratch = Scratch::new(name);
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), users, PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    (scratch, collector, Endpoint::Http(port))
}
