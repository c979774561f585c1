//! Console accounts over real HTTP against the real collector: failed
//! sign-ins lock an account, `user unlock` lifts the lock, `user passwd`
//! replaces the password and ends sessions, `user disable` stops sign-in; and
//! the console in TLS mode (`[console] tls = true`) serves HTTPS with the
//! collector's certificate, marks its cookies `Secure` and refuses plain HTTP;
//! and the queue's keyset pages, followed by their Next and Previous links.
//! Hardening: an action whose audit entry cannot be written is undone whole
//! and leaves the database unlocked; background polls do not keep an idle
//! session alive; every failed sign-in gets the same answer; over-long
//! account names and reasons are refused before the audit log; technicians
//! never see false-positive reasons; capture previews are audited; rule
//! rates count only the viewer's alerts.
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
        self.send_with(method, path, cookies, "", form)
    }

    /// `send` with `extra_headers` (each line ending in CRLF).
    fn send_with(
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

    fn get(&self, path: &str, cookies: &[(&str, &str)]) -> Response {
        self.send("GET", path, cookies, None)
    }

    /// A background poll as the queue page's script makes it.
    fn poll(&self, path: &str, cookies: &[(&str, &str)]) -> Response {
        self.send_with("GET", path, cookies, "Accept: application/json\r\n", None)
    }

    fn post(&self, path: &str, cookies: &[(&str, &str)], form: &[(&str, &str)]) -> Response {
        self.send("POST", path, cookies, Some(&form_encode(form)))
    }

    /// Signs in with `PASSWORD`; returns the session token and the
    /// session's CSRF token (from `page`, which must carry a form).
    fn session(&self, name: &str, page: &str) -> (String, String) {
        let ok = self.login(name, PASSWORD);
        assert_eq!(ok.status, 303, "sign-in of {name}: {ok:?}");
        let session = ok.cookie_value("tutela_session").unwrap();
        let r = self.get(page, &[("tutela_session", &session)]);
        assert_eq!(r.status, 200, "{page}: {r:?}");
        let csrf = csrf_field(&r.body);
        (session, csrf)
    }

    /// Signs in through the login form (with its CSRF cookie) and returns the response.
    fn login(&self, name: &str, password: &str) -> Response {
        self.login_with(name, password, "")
    }

    /// `login` with `extra_headers` on both requests (each line ending in CRLF).
    fn login_with(&self, name: &str, password: &str, extra_headers: &str) -> Response {
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
    assert_eq!(locked.status, 401, "{locked:?}");
    assert!(locked.body.contains("locked"), "{}", locked.body);
    // Locked: even the right password is refused, and no session is made.
    let still = http.login("dsl1", PASSWORD);
    assert_eq!(still.status, 401, "{still:?}");
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

/// The value of the first hidden CSRF field on a page.
fn csrf_field(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let at = body.find(marker).expect("a CSRF field on the page") + marker.len();
    body[at..at + body[at..].find('"').unwrap()].to_owned()
}

fn open_db(collector: &Collector) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db
}

/// Stores an alert as ingest would (the signature is not checked here);
/// returns its id.
fn insert_alert(
    db: &rusqlite::Connection,
    event: &str,
    user: &str,
    rule: &str,
    severity: i64,
    state: &str,
) -> i64 {
    let (category, _) = rule.split_once('/').unwrap();
    db.execute(
        "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
            context, app, app_path, window_title, url, search_query, category, severity, rule_id,
            term, matches, rules_version, state, repeat_of, body, signature, body_hash)
         VALUES (?1, 'ag-hardening', (SELECT COUNT(*) + 1 FROM alerts), 1767000000000, 1767000000000,
            ?2, 'LAB1-PC07', 'typed', 'context', 'app', '', 'Homework', '', '', ?3, ?4, ?5, 'term',
            '[]', 1, ?6, '', x'00', x'00', x'00')",
        rusqlite::params![event, user, category, severity, rule, state],
    )
    .unwrap();
    db.last_insert_rowid()
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// (actor, action, detail) of every audit entry, oldest first.
fn audit_details(db: &rusqlite::Connection) -> Vec<(String, String, String)> {
    db.prepare("SELECT actor, action, detail FROM console_audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn started(name: &str, users: &[(&str, &str)]) -> (Scratch, Collector, Endpoint) {
    let scratch = Scratch::new(name);
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), users, PASSWORD).unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    (scratch, collector, Endpoint::Http(port))
}

#[test]
fn an_action_whose_audit_entry_fails_is_undone_and_leaves_the_database_unlocked() {
    let (_scratch, collector, http) = started("console-tx", &[("dsl1", "dsl")]);
    let db = open_db(&collector);
    let a1 = insert_alert(&db, "ev-tx-1", "pupil.one", "bullying/seed", 5, "new");
    let a2 = insert_alert(&db, "ev-tx-2", "pupil.one", "bullying/seed", 3, "new");
    db.execute(
        "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms) VALUES ('ag-hardening', x'01', 'LAB1-PC07', 'lab-1', 0)",
        [],
    )
    .unwrap();
    let (session, csrf) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];

    // The audit log refuses these entries (as a full disk or a broken
    // database would): each action must then be undone as a whole.
    db.execute_batch(
        "CREATE TRIGGER test_audit_refused BEFORE INSERT ON console_audit
         WHEN NEW.action IN ('bulk_false_positive', 'reveal_capture', 'add_note', 'assign', 'agent-revoke')
         BEGIN SELECT RAISE(ABORT, 'audit entry refused by the test'); END;",
    )
    .unwrap();
    let (id1, id2) = (a1.to_string(), a2.to_string());
    let r = http.post(
        "/queue/bulk",
        &cookies,
        &[
            ("csrf", &csrf),
            ("id", &id1),
            ("id", &id2),
            ("reason", "pupils quoting a set text"),
        ],
    );
    assert_eq!(r.status, 500, "{r:?}");
    // The console's connection holds no write lock and no open transaction:
    // another writer (as ingest's) gets through at once.
    db.execute(
        "UPDATE alerts SET received_ms = received_ms + 1 WHERE id = ?1",
        [a1],
    )
    .expect("the database is not left locked by the failed request");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM alerts WHERE state = 'false_positive'"
        ),
        0,
        "the state changes were rolled back"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_history"), 0);

    let alert = format!("/alerts/{a1}");
    let r = http.post(
        &format!("{alert}/note"),
        &cookies,
        &[("csrf", &csrf), ("text", "spoke to the form tutor")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_notes"), 0);
    let r = http.post(
        &format!("{alert}/assign"),
        &cookies,
        &[("csrf", &csrf), ("assignee", "dsl1")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM console_review WHERE assignee <> ''"
        ),
        0
    );
    let r = http.post(
        &format!("{alert}/reveal"),
        &cookies,
        &[("csrf", &csrf), ("reason", "needed to judge the risk")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_reveals"), 0);
    let r = http.post(
        "/fleet/revoke",
        &cookies,
        &[
            ("csrf", &csrf),
            ("agent", "ag-hardening"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(
        count(
            &db,
            "SELECT revoked FROM agents WHERE agent_id = 'ag-hardening'"
        ),
        0
    );
    db.execute(
        "UPDATE alerts SET received_ms = received_ms + 1 WHERE id = ?1",
        [a2],
    )
    .expect("still unlocked");

    // With the audit log writable again, the same actions go through, each
    // with its entry, and later entries are committed (seen from here).
    db.execute_batch("DROP TRIGGER test_audit_refused").unwrap();
    let r = http.post(
        "/queue/bulk",
        &cookies,
        &[
            ("csrf", &csrf),
            ("id", &id1),
            ("id", &id2),
            ("reason", "pupils quoting a set text"),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let r = http.post(
        &format!("{alert}/note"),
        &cookies,
        &[("csrf", &csrf), ("text", "spoke to the form tutor")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM alerts WHERE state = 'false_positive'"
        ),
        2
    );
    let log = audit_details(&db);
    for action in ["bulk_false_positive", "add_note"] {
        assert_eq!(
            log.iter().filter(|(_, a, _)| a == action).count(),
            1,
            "{action}: {log:?}"
        );
    }
    assert_eq!(
        log.iter().filter(|(_, a, _)| a == "state_change").count(),
        2
    );
}

#[test]
fn background_polls_do_not_keep_an_idle_session_alive_but_page_views_do() {
    let (_scratch, collector, http) = started("console-idle", &[("dsl1", "dsl")]);
    let db = open_db(&collector);
    insert_alert(&db, "ev-idle-1", "pupil.one", "bullying/seed", 3, "new");
    const IDLE_MS: i64 = 30 * 60_000;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // A session whose last activity was 4 seconds short of the idle limit.
    let nearly_idle = |session: &str| -> i64 {
        let last = now() - IDLE_MS + 4_000;
        let hash = ring::digest::digest(&ring::digest::SHA256, session.as_bytes());
        let n = db
            .execute(
                "UPDATE console_sessions SET last_ms = ?2 WHERE token_hash = ?1",
                rusqlite::params![hash.as_ref(), last],
            )
            .unwrap();
        assert_eq!(n, 1);
        last
    };
    let last_ms = |session: &str| -> Option<i64> {
        let hash = ring::digest::digest(&ring::digest::SHA256, session.as_bytes());
        use rusqlite::OptionalExtension;
        db.query_row(
            "SELECT last_ms FROM console_sessions WHERE token_hash = ?1",
            [hash.as_ref()],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
    };

    // Polling alone: the polls are answered until the idle limit passes,
    // then refused with 401, and the session is gone.
    let (session, _) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];
    let set = nearly_idle(&session);
    let first = http.poll("/queue?fragment=1", &cookies);
    assert_eq!(first.status, 200, "{first:?}");
    assert!(first.body.contains("\"max_id\""), "{}", first.body);
    assert_eq!(last_ms(&session), Some(set), "a poll is not activity");
    let started = std::time::Instant::now();
    let mut refused = None;
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        let r = http.poll("/queue?fragment=1", &cookies);
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the polled session timed out");
    assert_eq!(refused.status, 401, "{refused:?}");
    let page = http.get("/queue", &cookies);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));
    assert_eq!(last_ms(&session), None);

    // A page view is activity: it restarts the idle clock, and polls after
    // it are answered past the old limit.
    let (session, _) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];
    let set = nearly_idle(&session);
    assert_eq!(http.get("/queue", &cookies).status, 200);
    assert!(last_ms(&session).unwrap() > set + IDLE_MS / 2);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(http.poll("/queue?fragment=1", &cookies).status, 200);

    // The page's script leaves for the sign-in page when a poll is refused.
    let script = http.get("/assets/console.js", &[]);
    assert!(script.body.contains("r.status===401"), "{}", script.body);
    assert!(
        script.body.contains("window.location.replace('/login')"),
        "{}",
        script.body
    );
}

#[test]
fn every_failed_sign_in_gets_the_same_answer_and_the_audit_log_the_true_reason() {
    let (_scratch, collector, http) = started(
        "console-login-oracle",
        &[("dsl1", "dsl"), ("dsl2", "dsl"), ("dsl3", "dsl")],
    );
    run_ok(collector.cmd().args(["user", "disable", "dsl3"])).unwrap();
    for _ in 0..5 {
        assert_eq!(http.login("dsl2", "not the password at all").status, 401);
    }
    assert!(user_list(&collector).contains("dsl2\tdsl\tlocked"));

    // The form's own CSRF token differs per answer; everything else must not.
    let answer = |name: &str, password: &str| -> (u16, String) {
        let r = http.login(name, password);
        assert!(r.set_cookie("tutela_session").is_none(), "{name}: {r:?}");
        let token = r
            .cookie_value("tutela_login")
            .expect("a fresh form after a failure");
        (r.status, r.body.replace(&token, "TOKEN"))
    };
    let cases = [
        ("unknown account", answer("nobody.here", PASSWORD)),
        ("wrong password", answer("dsl1", "not the password at all")),
        ("locked, right password", answer("dsl2", PASSWORD)),
        (
            "locked, wrong password",
            answer("dsl2", "still not the password"),
        ),
        ("disabled, right password", answer("dsl3", PASSWORD)),
        ("not an account name", answer("no such name!", PASSWORD)),
    ];
    let (status, body) = &cases[0].1;
    assert_eq!(*status, 401);
    assert!(body.contains("id=\"login-error\""), "{body}");
    assert!(body.contains("Sign-in failed"), "{body}");
    for (case, (s, b)) in &cases[1..] {
        assert_eq!(s, status, "{case}");
        assert_eq!(b, body, "{case}: the answer differs");
    }

    // The audit log keeps the true reason of each.
    let log = audit_details(&collector_db(&collector));
    let has = |actor: &str, action: &str, detail: &str| {
        log.iter()
            .any(|(a, b, c)| a == actor && b == action && c.contains(detail))
    };
    assert!(
        has("nobody.here", "login_failed", "unknown account"),
        "{log:?}"
    );
    assert!(has("dsl1", "login_failed", "wrong password"), "{log:?}");
    assert!(
        has("dsl2", "login_locked", "attempt while locked"),
        "{log:?}"
    );
    assert!(has("dsl3", "login_failed", "account disabled"), "{log:?}");
    assert!(!log.iter().any(|(a, _, _)| a == "no such name!"), "{log:?}");
}

fn collector_db(collector: &Collector) -> rusqlite::Connection {
    open_db(collector)
}

#[test]
fn over_long_names_and_reasons_are_refused_before_they_reach_the_audit_log() {
    let (_scratch, collector, http) = started("console-lengths", &[("dsl1", "dsl")]);
    let db = open_db(&collector);
    let a1 = insert_alert(&db, "ev-len-1", "pupil.one", "violence/seed", 5, "new");
    let a2 = insert_alert(&db, "ev-len-2", "pupil.one", "violence/seed", 3, "new");

    // Names that no account can have: the generic refusal, nothing logged.
    let refused = http.login("nobody.here", PASSWORD);
    assert_eq!(refused.status, 401);
    let generic = refused.body.split("id=\"login-error\">").nth(1).unwrap();
    let generic = &generic[..generic.find("</p>").unwrap()];
    for name in ["a".repeat(65), "x".repeat(200_000)] {
        let r = http.login(&name, PASSWORD);
        assert_eq!(r.status, 401, "{}", name.len());
        assert!(r.body.contains(generic), "{}", r.body);
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM console_audit WHERE length(actor) > 64"
        ),
        0
    );

    let (session, csrf) = http.session("dsl1", "/queue");
    let cookies = [("tutela_session", session.as_str())];
    let long = "r".repeat(1025);
    let (id1, id2) = (a1.to_string(), a2.to_string());
    let too_long = |r: Response| {
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.body.contains("reason is too long"), "{}", r.body);
        assert!(r.body.contains("at most 1024 bytes"), "{}", r.body);
    };
    too_long(http.post(
        &format!("/alerts/{a1}/reveal"),
        &cookies,
        &[("csrf", &csrf), ("reason", &long)],
    ));
    too_long(http.post(
        &format!("/alerts/{a2}/state"),
        &cookies,
        &[("csrf", &csrf), ("to", "false_positive"), ("reason", &long)],
    ));
    too_long(http.post(
        "/queue/bulk",
        &cookies,
        &[
            ("csrf", &csrf),
            ("id", &id1),
            ("id", &id2),
            ("reason", &long),
        ],
    ));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM console_reveals"), 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM alerts WHERE state <> 'new'"),
        0
    );
    // 1 KiB exactly is taken.
    let r = http.post(
        &format!("/alerts/{a2}/state"),
        &cookies,
        &[
            ("csrf", &csrf),
            ("to", "false_positive"),
            ("reason", &long[..1024]),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert!(
        count(&db, "SELECT MAX(length(detail)) FROM console_audit") < 1100,
        "no audit entry carries an over-long reason"
    );
}

/// Seals `jpeg` as the collector stores captures: AES-256-GCM under the
/// collector's capture key, nonce first, the event id as associated data.
fn store_capture(collector: &Collector, db: &rusqlite::Connection, alert: i64, event: &str) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 30, 30]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let key = std::fs::read(collector.dir.join("capture.key")).unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
    let nonce = [9u8; 12];
    let mut sealed = jpeg.clone();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(event.as_bytes()),
        &mut sealed,
    )
    .unwrap();
    let mut stored = nonce.to_vec();
    stored.extend_from_slice(&sealed);
    let sha = ring::digest::digest(&ring::digest::SHA256, &jpeg);
    db.execute(
        "INSERT INTO captures (alert_id, sha256, size, width, height, sealed) VALUES (?1, ?2, ?3, 64, 48, ?4)",
        rusqlite::params![alert, sha.as_ref(), jpeg.len() as i64, stored],
    )
    .unwrap();
    db.execute("UPDATE alerts SET has_capture = 1 WHERE id = ?1", [alert])
        .unwrap();
}

#[test]
fn technicians_never_see_false_positive_reasons_and_capture_previews_are_audited() {
    let (_scratch, collector, http) = started(
        "console-visibility",
        &[("dsl1", "dsl"), ("tech1", "technician")],
    );
    let db = open_db(&collector);
    let fp = insert_alert(&db, "ev-vis-1", "pupil.one", "violence/seed", 3, "new");
    let grave = insert_alert(&db, "ev-vis-2", "pupil.two", "violence/seed", 5, "new");
    store_capture(&collector, &db, grave, "ev-vis-2");

    let (dsl, csrf) = http.session("dsl1", "/queue");
    let dsl = [("tutela_session", dsl.as_str())];
    let reason = "quoting Of Mice and Men for English coursework";
    let r = http.post(
        &format!("/alerts/{fp}/state"),
        &dsl,
        &[
            ("csrf", &csrf),
            ("to", "false_positive"),
            ("reason", reason),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    let page = http.get(&format!("/alerts/{fp}"), &dsl);
    assert!(page.body.contains(reason), "{}", page.body);

    // Technicians open no alert at all (console_privacy covers the rest).
    let (tech, _) = http.session("tech1", "/fleet");
    let tech = [("tutela_session", tech.as_str())];
    let page = http.get(&format!("/alerts/{fp}"), &tech);
    assert_eq!(page.status, 403, "{page:?}");
    assert!(!page.body.contains(reason), "{}", page.body);
    assert!(
        !page.body.contains("False-positive reason"),
        "{}",
        page.body
    );

    // The blurred preview decrypts the capture: a view, and audited as one.
    let preview = http.get(&format!("/alerts/{grave}/preview.jpg"), &dsl);
    assert_eq!(preview.status, 200, "{preview:?}");
    assert_eq!(preview.header("content-type"), Some("image/jpeg"));
    let target = format!("alert:{grave}");
    let viewed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'dsl1' AND action = 'view_capture_preview' AND target = ?1",
            [&target],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(viewed, 1);
    // Technicians get no preview either.
    assert_eq!(
        http.get(&format!("/alerts/{grave}/preview.jpg"), &tech)
            .status,
        403
    );
}

#[test]
fn rule_rates_count_only_the_alerts_in_the_viewers_scope() {
    let (scratch, collector, http) =
        started("console-rule-scope", &[("dsl1", "dsl"), ("head1", "head")]);
    let staff = scratch.path("staff.csv");
    std::fs::write(&staff, "username,type\nmr.jones,staff\n").unwrap();
    run_ok(
        collector
            .cmd()
            .args(["users", "import", staff.to_str().unwrap()]),
    )
    .unwrap();
    let db = open_db(&collector);
    let pupil = insert_alert(&db, "ev-sc-1", "pupil.one", "drugs/seed", 3, "new");
    insert_alert(
        &db,
        "ev-sc-2",
        "pupil.two",
        "drugs/seed",
        3,
        "false_positive",
    );
    insert_alert(&db, "ev-sc-3", "pupil.three", "drugs/seed", 3, "new");
    let teacher = insert_alert(
        &db,
        "ev-sc-4",
        "mr.jones",
        "drugs/seed",
        3,
        "false_positive",
    );
    insert_alert(
        &db,
        "ev-sc-5",
        "mr.jones",
        "drugs/seed",
        3,
        "false_positive",
    );

    let (dsl, _) = http.session("dsl1", "/queue");
    let dsl = [("tutela_session", dsl.as_str())];
    let rules = http.get("/rules", &dsl);
    assert!(
        rules
            .body
            .contains("<td>drugs/seed</td><td>drugs</td><td>3</td><td>1</td><td>33%</td>"),
        "{}",
        rules.body
    );
    let page = http.get(&format!("/alerts/{pupil}"), &dsl);
    assert!(
        page.body
            .contains("1 of 3 alerts from this rule were false positives (33%)"),
        "{}",
        page.body
    );

    let (head, _) = http.session("head1", "/queue");
    let head = [("tutela_session", head.as_str())];
    let rules = http.get("/rules", &head);
    assert!(
        rules
            .body
            .contains("<td>drugs/seed</td><td>drugs</td><td>2</td><td>2</td><td>100%</td>"),
        "{}",
        rules.body
    );
    let page = http.get(&format!("/alerts/{teacher}"), &head);
    assert!(
        page.body
            .contains("2 of 2 alerts from this rule were false positives (100%)"),
        "{}",
        page.body
    );
}

/// Failed sign-ins from the browser at `address`, as a proxy in front would
/// forward them (`X-Forwarded-For`, after whatever the browser itself sent).
fn fail_from(http: &Endpoint, address: &str, times: usize) -> Vec<u16> {
    (0..times)
        .map(|_| {
            http.login_with(
                "dsl1",
                "not the password at all",
                &format!("X-Forwarded-For: {address}\r\n"),
            )
            .status
        })
        .collect()
}

#[test]
fn forwarded_addresses_count_only_from_the_trusted_proxy() {
    // No proxy trusted: a client cannot dodge the per-address throttle by
    // claiming other addresses; the log keeps its real one.
    let (_scratch, collector, http) = started("console-no-proxy", &[("dsl1", "dsl")]);
    let statuses: Vec<u16> = (0..20)
        .flat_map(|i| fail_from(&http, &format!("10.0.0.{i}"), 1))
        .collect();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        fail_from(&http, "10.0.0.99", 1),
        [429],
        "throttled by its real address"
    );
    let log = audit_details(&collector_db(&collector));
    assert!(
        log.iter()
            .filter(|(_, a, _)| a == "login_failed")
            .all(|(_, _, d)| d.contains("from 127.0.0.1")),
        "{log:?}"
    );
    drop(collector);

    // Behind a trusted proxy: each browser is throttled on its own, by the
    // address the proxy added last, and the log names it.
    let scratch = Scratch::new("console-proxy");
    let (mut collector, port) =
        Collector::with_console(scratch.path("collector"), &[("dsl1", "dsl")], PASSWORD).unwrap();
    let config = collector.dir.join("collector.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[console]\n"), "{text}");
    std::fs::write(
        &config,
        text.replacen(
            "[console]\n",
            "[console]\ntrusted_proxy = \"127.0.0.1\"\n",
            1,
        ),
    )
    .unwrap();
    collector.start().unwrap();
    wait_for_port(port);
    let http = Endpoint::Http(port);
    let form = http.get("/login", &[]);
    assert!(
        form.set_cookie("tutela_login").unwrap().contains("Secure"),
        "the browser's side of the proxy is HTTPS: {form:?}"
    );
    // The browser's own claim comes first; the proxy's entry is the last.
    let statuses = fail_from(&http, "198.51.100.9, 203.0.113.5", 20);
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(fail_from(&http, "203.0.113.5", 1), [429]);
    assert_eq!(
        fail_from(&http, "198.51.100.9", 1),
        [401],
        "another browser is not held up"
    );
    assert_eq!(fail_from(&http, "203.0.113.6", 1), [401]);
    let log = audit_details(&collector_db(&collector));
    assert!(
        log.iter()
            .any(|(_, a, d)| a == "login_failed" && d.contains("from 203.0.113.5")),
        "{log:?}"
    );
}
