//! How a request reaches a page: the form is read (within its limit, the
//! rest drained so the browser sees the error page), the client's address
//! worked out (through a trusted proxy only), and the page run on a blocking
//! thread with the console's store; every response gets the security headers.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;

use super::{html, html_response, with_status, App, Fail, Req};
use crate::store::console::Console;

/// A page: it reads and writes through the console's store.
pub(super) type Page = fn(&App, &Console<'_>, &Req) -> Result<Response, Fail>;

/// What a route runs.
#[derive(Clone, Copy)]
pub(super) enum Handler {
    Store(Page),
}

impl From<Page> for Handler {
    fn from(page: Page) -> Self {
        Handler::Store(page)
    }
}

impl Handler {
    fn run(self, app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
        match self {
            Handler::Store(page) => page(app, db, req),
        }
    }
}

const MAX_FORM_BYTES: usize = 256 * 1024;

/// The largest form a route accepts, and what to say above it.
#[derive(Debug, Clone, Copy)]
pub struct FormLimit {
    pub bytes: usize,
    /// What the user can do instead (shown on the 413 page).
    pub instead: &'static str,
    /// Where the 413 page's link leads back to.
    pub back: &'static str,
}

const DEFAULT_FORM_LIMIT: FormLimit = FormLimit {
    bytes: MAX_FORM_BYTES,
    instead: "Shorten what you entered and try again.",
    back: "/queue",
};

/// Most bytes of an over-large form read (and thrown away) so that the
/// browser gets the error page rather than a reset connection.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// Why a form body was not read.
#[derive(Debug, PartialEq, Eq)]
enum FormError {
    TooLarge,
    /// The upload broke off.
    Incomplete,
}

/// The body, if it is at most `limit` bytes. A larger one is read on (up to
/// `MAX_DRAIN_BYTES`) and dropped.
async fn read_form(body: Body, limit: usize) -> Result<Vec<u8>, FormError> {
    use tokio_stream::StreamExt;
    let mut stream = body.into_data_stream();
    let mut form = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| FormError::Incomplete)?;
        seen = seen.saturating_add(chunk.len());
        if seen > MAX_DRAIN_BYTES {
            return Err(FormError::TooLarge);
        }
        if seen <= limit {
            form.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        Err(FormError::TooLarge)
    } else {
        Ok(form)
    }
}

/// The client's address: the peer's, or, when the peer is the trusted
/// proxy, the last address in the `X-Forwarded-For` it sent (the one the
/// proxy added itself; earlier entries come from the client and prove
/// nothing). A trusted proxy that sends no usable header counts as the client.
fn client_address(
    peer: Option<IpAddr>,
    headers: &axum::http::HeaderMap,
    trusted_proxy: Option<IpAddr>,
) -> Option<IpAddr> {
    let peer = peer?;
    if Some(peer) != trusted_proxy {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    if forwarded.is_none() {
        tracing::warn!(%peer, "request from the trusted proxy without a usable X-Forwarded-For");
    }
    Some(forwarded.unwrap_or(peer))
}

/// The client's address for a request ([`client_address`] of its peer).
pub(super) fn request_ip(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    trusted_proxy: Option<IpAddr>,
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    client_address(peer, headers, trusted_proxy)
}

pub(super) async fn call(app: App, page: Handler, id: Option<i64>, request: Request) -> Response {
    call_limited(app, page, id, request, DEFAULT_FORM_LIMIT).await
}

pub(super) async fn call_limited(
    app: App,
    page: Handler,
    id: Option<i64>,
    request: Request,
    limit: FormLimit,
) -> Response {
    let (parts, body) = request.into_parts();
    let post = parts.method == Method::POST;
    let mut req = Req {
        post,
        id,
        ip: request_ip(&parts.extensions, &parts.headers, app.trusted_proxy),
        wants_json: parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        cross_site: parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site"),
        ..Req::default()
    };
    for value in parts.headers.get_all(header::COOKIE) {
        if let Ok(text) = value.to_str() {
            for pair in text.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    req.cookies.push((k.to_owned(), v.to_owned()));
                }
            }
        }
    }
    if let Some(q) = parts.uri.query() {
        req.query = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    }
    if post {
        match read_form(body, limit.bytes).await {
            Ok(bytes) => req.form = form_urlencoded::parse(&bytes).into_owned().collect(),
            Err(FormError::Incomplete) => {
                return Fail::BadRequest(
                    "The form did not arrive whole; try sending it again.".into(),
                )
                .response(req.wants_json)
            }
            Err(FormError::TooLarge) => {
                tracing::info!(
                    path = parts.uri.path(),
                    limit = limit.bytes,
                    "console form refused: too large"
                );
                let text = format!(
                    "The form was too large: this page accepts at most {} KiB. {}",
                    limit.bytes / 1024,
                    limit.instead
                );
                let body = html::page(
                    "Form too large",
                    None,
                    maud::html! {
                        h1 { "413" }
                        p.error #too-large { (text) }
                        p { a href=(limit.back) { "Go back" } }
                    },
                );
                return with_status(StatusCode::PAYLOAD_TOO_LARGE, html_response(body));
            }
        }
    }
    let json = req.wants_json;
    let path = parts.uri.path().to_owned();
    let result = tokio::task::spawn_blocking(move || {
        let (result, settled) = app.store.with(|db| {
            // Times in the zone of the session's school, when it has one,
            // and each school's alerts in that school's.
            match super::school_settings::zones_of_session(db, &req) {
                Some((zone, zones)) if zone.is_some() || !zones.is_empty() => {
                    let mut own = app.clone();
                    if let Some(zone) = zone {
                        own.zone = zone;
                    }
                    own.school_zones = std::sync::Arc::new(zones);
                    page.run(&own, db, &req)
                }
                _ => page.run(&app, db, &req),
            }
        });
        // Every page commits or rolls back what it began; one that did not
        // had its transaction rolled back.
        if !settled {
            tracing::error!(
                path = %path,
                "a console page left a transaction open; rolled back"
            );
            return Err(Fail::Unsaved);
        }
        result
    })
    .await;
    let response = match result {
        Ok(Ok(r)) => r,
        Ok(Err(fail)) => fail.response(json),
        Err(_) => with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            html_response("Internal error".into()),
        ),
    };
    harden(response)
}

/// Adds the console's security headers to a response.
pub fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
