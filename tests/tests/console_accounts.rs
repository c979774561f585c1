//! Console accounts over real HTTP against the real collector: failed
//! sign-ins lock an account, `user unlock` lifts the lock, `user passwd`
//! replaces the password and ends sessions, `user disable` stops sign-in; and
//! the console in TLS mode (`[console] tls = true`) serves HTTPS with the
//! collector's certificate, marks its cookies `Secure` and refuses plain HTTP;
//! and the queue's keyset pages, followed by their Next and Previous links.
//!
//! The client is a small HTTP/1.1 client over a TCP stream (rustls for HTTPS,
//! trusting only the collector's certificate file).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tutela_tests::{free_port, run_failing, run_ok, wait_for, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a different long passphrase";

/// A parsed HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The full `Set-Cookie` value for cookie `name`.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value set for cookie `name`.
    fn cookie_value(&self, name: &str) -> Option<String> {
        let full = self.set_cookie(name)?;
        let pair = full.split(';').next()?;
        Some(pair[name.len() + 1..].to_owned())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where requests go: plain HTTP, or HTTPS trusting one certificate.
#[derive(Clone)]
enum Endpoint {
    Http(u16),
    Https(u16, Arc<rustls::ClientConfig>),
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
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
    fn send(
        &self,
        method: &str,
        path: &str,
        cookies: &[(&str, &str)],
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
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{cookie_header}{form_headers}\r\n{body}"
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

    fn get(&self, path: &str, cookies: &[(&str, &str)]) -> Response {
        self.send("GET", path, cookies, None)
    }

    /// Signs in through the login form (with its CSRF cookie) and returns the response.
    fn login(&self, name: &str, password: &str) -> Response {
        let form = self.get("/login", &[]);
        assert_eq!(form.status, 200, "{form:?}");
        let token = form
            .cookie_value("tutela_login")
            .expect("the login form sets its CSRF cookie");
        assert!(
            form.body.contains(&format!("value=\"{token}\"")),
            "the form carries the cookie's token"
        );
        self.send(
            "POST",
            "/login",
            &[("tutela_login", &token)],
            Some(&form_encode(&[
                ("csrf", &token),
                ("name", name),
                ("password", password),
            ])),
        )
    }
}

fn connect_tls(
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
fn trusting(cert_file: &Path) -> Arc<rustls::ClientConfig> {
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

fn wait_for_port(port: u16) {
    wait_for(
        &format!("the console on port {port}"),
        Duration::from_secs(30),
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
    .unwrap();
}

/// `user passwd NAME` with the password on standard input.
fn passwd(collector: &Collector, name: &str, password: &str) -> std::process::Output {
    let mut child = collector
        .cmd()
        .args(["user", "passwd", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn audit_actions(db: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT actor, action, target FROM console_audit ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn user_list(collector: &Collector) -> String {
    run_ok(collector.cmd().args(["user", "list"])).unwrap()
}

#[test]
fn a_locked_account_is_unlocked_by_the_cli_and_signs_in_again() {
    let scratch = Scratch::new("console-accounts");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    let http = Endpoint::Http(port);

    // Five wrong passwords in a row lock the account.
    for attempt in 1..=4 {
        let r = http.login("dsl1", "not the password at all");
        assert_eq!(r.status, 401, "attempt {attempt}: {r:?}");
    }
    let locked = http.login("dsl1", "not the password at all");
    assert_eq!(locked.status, 429, "{locked:?}");
    assert!(locked.body.contains("locked"), "{}", locked.body);
    // Locked: even the right password is refused, and no session is made.
    let still = http.login("dsl1", PASSWORD);
    assert_eq!(still.status, 429, "{still:?}");
    assert!(still.set_cookie("tutela_session").is_none());
    let list = user_list(&collector);
    assert!(
        list.lines().any(|l| l.starts_with("dsl1\tdsl\tlocked")),
        "{list}"
    );

    // The CLI lifts the lock; the right password then opens a session.
    let out = run_ok(collector.cmd().args(["user", "unlock", "dsl1"])).unwrap();
    assert!(out.contains("dsl1 unlocked"), "{out}");
    assert!(
        user_list(&collector).contains("dsl1\tdsl\tactive"),
        "{}",
        user_list(&collector)
    );
    let ok = http.login("dsl1", PASSWORD);
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.header("location"), Some("/queue"));
    let session = ok
        .cookie_value("tutela_session")
        .expect("a session cookie after sign-in");
    let queue = http.get("/queue", &[("tutela_session", &session)]);
    assert_eq!(queue.status, 200, "{queue:?}");
    assert!(queue.body.contains("Review queue"));

    // A new password: the old session ends, the old password stops working.
    let out = passwd(&collector, "dsl1", NEW_PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = http.get("/queue", &[("tutela_session", &session)]);
    assert_eq!(ended.status, 303, "the old session ended: {ended:?}");
    assert_eq!(ended.header("location"), Some("/login"));
    assert_eq!(http.login("dsl1", PASSWORD).status, 401);
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 303);
    // A short password is refused and changes nothing.
    let short = passwd(&collector, "dsl1", "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least"));
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 303);

    // Disabled: the right password no longer signs in; enabled again, it does.
    run_ok(collector.cmd().args(["user", "disable", "dsl1"])).unwrap();
    assert!(user_list(&collector).contains("dsl1\tdsl\tdisabled"));
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 401);
    run_ok(collector.cmd().args(["user", "enable", "dsl1"])).unwrap();
    assert_eq!(http.login("dsl1", NEW_PASSWORD).status, 303);

    // Unknown accounts are named in the error.
    let unknown = run_failing(collector.cmd().args(["user", "unlock", "nobody"]));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no console account named \"nobody\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // Every account change by the CLI is in the audit log.
    let log = audit_actions(&collector.dir.join("tutela.db"));
    for action in [
        "account_unlocked",
        "password_reset",
        "account_disabled",
        "account_enabled",
    ] {
        assert!(
            log.iter()
                .any(|(actor, a, target)| actor == "cli" && a == action && target == "user:dsl1"),
            "{action} missing from the audit log: {log:?}"
        );
    }
    assert!(log
        .iter()
        .any(|(actor, a, _)| actor == "dsl1" && a == "login_failed"));
}

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

/// The ids of the queue rows on a page, in order.
fn row_ids(page: &Response) -> Vec<i64> {
    page.body
        .split("<tr data-id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

/// The target of the pager link with `id` on a page, unescaped.
fn pager_link(page: &Response, id: &str) -> Option<String> {
    let at = page.body.find(&format!("id=\"{id}\""))?;
    let start = page.body[..at].rfind("href=\"")? + 6;
    let end = start + page.body[start..].find('"')?;
    Some(page.body[start..end].replace("&amp;", "&"))
}

#[test]
fn queue_pages_follow_next_and_previous_links_over_http() {
    let scratch = Scratch::new("console-pages");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    // 130 stored alerts, with ties in severity and time so that the id orders some of them;
    // every seventh is closed and not in the open queue.
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    for i in 0..130_i64 {
        db.execute(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                term, matches, rules_version, state, repeat_of, body, signature, body_hash)
             VALUES (?1, 'ag-pages', ?2, ?3, ?3, 'pupil.one', 'LAB1-PC07', 'typed', 'context', 'app', '',
                'Homework', '', '', 'bullying', ?4, 'bullying/seed', 'term', '[]', 1, ?5, '', x'00', x'00', x'00')",
            rusqlite::params![
                format!("{i:032x}"),
                i + 1,
                1_767_000_000_000_i64 + (i / 3) * 60_000,
                1 + i % 4,
                if i % 7 == 0 { "closed" } else { "new" },
            ],
        )
        .unwrap();
    }
    let expected: Vec<i64> = db
        .prepare(
            "SELECT id FROM alerts WHERE state = 'new' ORDER BY severity DESC, time_ms DESC, id DESC",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(expected.len(), 111);

    let http = Endpoint::Http(port);
    let ok = http.login("dsl1", PASSWORD);
    assert_eq!(ok.status, 303, "{ok:?}");
    let session = ok.cookie_value("tutela_session").unwrap();
    let cookies = [("tutela_session", session.as_str())];
    let first = http.get("/queue?category=bullying", &cookies);
    assert_eq!(first.status, 200);
    assert!(pager_link(&first, "page-previous").is_none());
    let mut pages = vec![row_ids(&first)];
    let mut page = first;
    while let Some(next) = pager_link(&page, "page-next") {
        assert!(
            next.contains("category=bullying"),
            "filters are kept: {next}"
        );
        assert!(next.contains("after="), "{next}");
        page = http.get(&next, &cookies);
        assert_eq!(page.status, 200, "{next}");
        pages.push(row_ids(&page));
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![50, 50, 11]
    );
    assert_eq!(
        pages.concat(),
        expected,
        "every open alert once, in queue order"
    );
    // The counts per state stay whole on a deep page.
    assert!(page.body.contains("Open <b>111</b>"), "{}", page.body);
    // And back: Previous from the last page gives the middle page, then the first.
    let previous = pager_link(&page, "page-previous").expect("a Previous link on page 3");
    let middle = http.get(&previous, &cookies);
    assert_eq!(row_ids(&middle), pages[1]);
    let previous = pager_link(&middle, "page-previous").expect("a Previous link on page 2");
    let top = http.get(&previous, &cookies);
    assert_eq!(row_ids(&top), pages[0]);
    assert!(pager_link(&top, "page-previous").is_none());
    // A cursor that is not one shows the first page.
    let odd = http.get("/queue?after=not-a-cursor", &cookies);
    assert_eq!(odd.status, 200);
    assert_eq!(row_ids(&odd), pages[0]);

    // The last page grows while it is open: the poll brings a Next link.
    let last = pager_link(&middle, "page-next").expect("a Next link on page 2");
    let poll_url = format!("{last}&fragment=1");
    let polled = http.get(&poll_url, &cookies);
    let fragment: serde_json::Value = serde_json::from_str(&polled.body).unwrap();
    assert!(!fragment["pager"].as_str().unwrap().contains("page-next"));
    for i in 0..45_i64 {
        db.execute(
            "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
                context, app, app_path, window_title, url, search_query, category, severity, rule_id,
                term, matches, rules_version, state, repeat_of, body, signature, body_hash)
             VALUES (?1, 'ag-pages', ?2, 1000, 1000, 'pupil.one', 'LAB1-PC07', 'typed', 'context', 'app', '',
                'Homework', '', '', 'bullying', 1, 'bullying/seed', 'term', '[]', 1, 'new', '', x'00', x'00', x'00')",
            rusqlite::params![format!("late{i:028x}"), 1000 + i],
        )
        .unwrap();
    }
    let polled = http.get(&poll_url, &cookies);
    let fragment: serde_json::Value = serde_json::from_str(&polled.body).unwrap();
    let pager = fragment["pager"].as_str().unwrap();
    assert!(
        pager.contains("page-next") && pager.contains("page-previous"),
        "{pager}"
    );
}
