//! The console in TLS mode (`[console] tls = true`) serves HTTPS with the
//! collector's certificate, marks its cookies `Secure` and refuses plain
//! HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use tutela_tests::console_client::{connect_tls, trusting, wait_for_port, Endpoint, PASSWORD};
use tutela_tests::{free_port, Collector, Scratch};

#[test]
fn the_console_in_tls_mode_serves_https_with_secure_cookies_and_refuses_plain_http() {
    let scratch = Scratch::new("console-tls");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    let port = free_port();
    collector.set_console_port(port).unwrap();
    let config = collector.dir.join("collector.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut out = String::new();
    let mut in_console = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_console = line.trim() == "[console]";
        }
        if in_console && line.trim_start().starts_with("tls") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[console]" {
            out.push_str("tls = true\n");
        }
    }
    assert!(out.contains("[console]\ntls = true\n"), "{out}");
    std::fs::write(&config, out).unwrap();
    collector.add_console_user("dsl1", "dsl", PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    let cert_file = collector.dir.join("collector.crt");
    let https = Endpoint::Https(port, trusting(&cert_file));

    // The server presents exactly the collector's certificate.
    let tls = connect_tls(port, &trusting(&cert_file)).unwrap();
    let presented = tls.conn.peer_certificates().unwrap()[0].to_vec();
    let on_disk = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(&cert_file)
            .unwrap()
            .to_vec()
    };
    assert_eq!(
        presented, on_disk,
        "the console serves the collector's certificate"
    );
    drop(tls);

    // Sign-in over HTTPS: both cookies carry Secure (and HttpOnly).
    let form = https.get("/login", &[]);
    assert_eq!(form.status, 200);
    let login_cookie = form.set_cookie("tutela_login").unwrap();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");
    let ok = https.login("dsl1", PASSWORD);
    assert_eq!(ok.status, 303, "{ok:?}");
    let session_cookie = ok.set_cookie("tutela_session").unwrap().to_owned();
    assert!(session_cookie.contains("; Secure"), "{session_cookie}");
    assert!(session_cookie.contains("; HttpOnly"), "{session_cookie}");
    assert!(
        session_cookie.contains("SameSite=Strict"),
        "{session_cookie}"
    );
    let session = ok.cookie_value("tutela_session").unwrap();
    let queue = https.get("/queue", &[("tutela_session", &session)]);
    assert_eq!(queue.status, 200, "{queue:?}");
    assert!(queue.body.contains("Review queue"));

    // Plain HTTP on the same port gets no HTTP answer.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // A client that does not trust the collector's certificate cannot connect.
    let stranger = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    );
    assert!(connect_tls(port, &stranger).is_err());

    // The console still serves after the refused connections.
    assert_eq!(https.get("/login", &[]).status, 200);
}
