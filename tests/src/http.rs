//! A small HTTP/1.1 client over plain TCP for the console's tests: one
//! request per connection, forms URL-encoded, cookies passed by hand so that
//! a test sees exactly what the server set.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value set for cookie `name`.
    pub fn cookie_value(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.set_cookies().into_iter().find_map(|c| {
            c.split(';')
                .next()?
                .strip_prefix(&prefix)
                .map(str::to_owned)
        })
    }

    /// The value of the first hidden field `name` in the body.
    pub fn field(&self, name: &str) -> Option<String> {
        let body = self.text();
        let marker = format!(r#"name="{name}" value=""#);
        let at = body.find(&marker)? + marker.len();
        Some(body[at..at + body[at..].find('"')?].to_owned())
    }
}

/// URL-encodes form pairs.
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
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// The console on a loopback port.
#[derive(Debug, Clone, Copy)]
pub struct Http(pub u16);

impl Http {
    /// Sends one request; `extra` header lines each end in CRLF.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        cookies: &[(&str, &str)],
        extra: &str,
        form: Option<&str>,
    ) -> Response {
        let cookie = if cookies.is_empty() {
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
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{cookie}{extra}{form_headers}\r\n{body}"
        );
        let mut tcp = TcpStream::connect(("127.0.0.1", self.0)).expect("the console listens");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // The server may close while the rest of a refused body is unsent.
                Err(e) if e.kind() == ErrorKind::ConnectionReset && !raw.is_empty() => break,
                Err(e) => panic!("reading the response to {method} {path}: {e}"),
            }
        }
        parse(&raw)
    }

    pub fn get(&self, path: &str, cookies: &[(&str, &str)]) -> Response {
        self.send("GET", path, cookies, "", None)
    }

    pub fn post(&self, path: &str, cookies: &[(&str, &str)], form: &[(&str, &str)]) -> Response {
        self.send("POST", path, cookies, "", Some(&form_encode(form)))
    }

    /// Signs `name` in through the login form; returns the session token.
    pub fn sign_in(&self, name: &str, password: &str) -> String {
        let form = self.get("/login", &[]);
        let token = form
            .cookie_value("tutela_login")
            .expect("the login form sets its CSRF cookie");
        let r = self.post(
            "/login",
            &[("tutela_login", &token)],
            &[("csrf", &token), ("name", name), ("password", password)],
        );
        assert_eq!(r.status, 303, "sign-in of {name}: {}", r.text());
        r.cookie_value("tutela_session").expect("a session cookie")
    }

    /// The session's CSRF token, read from `page` (every signed-in page
    /// carries one in its sign-out form).
    pub fn csrf(&self, session: &str, page: &str) -> String {
        let r = self.get(page, &[("tutela_session", session)]);
        assert_eq!(r.status, 200, "{page}: {}", r.text());
        r.field("csrf").expect("a CSRF field on the page")
    }
}
