//! Plain HTTP/1.1 to the review console on loopback, as a browser without
//! JavaScript would: forms, cookies and CSRF tokens.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP reply.
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
    /// The body as sent (a download such as a ZIP).
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request with `Connection: close`; `form` is sent url-encoded.
pub fn http(port: u16, method: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    stream.read_to_end(&mut head).unwrap();
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |at| at + 4);
    let bytes = head.split_off(end);
    let head = String::from_utf8_lossy(&head).trim_end().to_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    Reply {
        status,
        headers: head,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of cookie `name` set by a reply's headers.
pub fn cookie_value(headers: &str, name: &str) -> String {
    headers
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in:\n{headers}"))
        .to_owned()
}

/// The value of the first hidden field `name` in a page.
pub fn field(body: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let rest = &body[body.find(&marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The CSRF token of the first form in a page.
pub fn csrf(body: &str) -> String {
    let at = body.find(r#"name="csrf" value=""#).expect("a CSRF field");
    let rest = &body[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in; returns the session cookie header value and the session's CSRF
/// token (read from `page`, a page the account may see).
pub fn sign_in(port: u16, name: &str, password: &str, page: &str) -> (String, String) {
    let form = http(port, "GET", "/login", "", &[]);
    let login_cookie = format!(
        "tutela_login={}",
        cookie_value(&form.headers, "tutela_login")
    );
    let token = csrf(&form.body);
    let r = http(
        port,
        "POST",
        "/login",
        &login_cookie,
        &[("csrf", &token), ("name", name), ("password", password)],
    );
    assert_eq!(r.status, 303, "sign-in of {name}: {}", r.body);
    let session = format!(
        "tutela_session={}",
        cookie_value(&r.headers, "tutela_session")
    );
    let page = http(port, "GET", page, &session, &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    let token = csrf(&page.body);
    (session, token)
}

/// The test webhook receiver (`tests/webhook/receiver.py`) on a loopback
/// port, writing what it receives to a log; stopped on drop.
pub struct WebhookReceiver(std::process::Child);

impl WebhookReceiver {
    pub fn start(port: u16, log: &std::path::Path) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new("python3")
            .arg(crate::workspace().join("tests/webhook/receiver.py"))
            .arg(port.to_string())
            .arg(log)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY");
        Self(child)
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
