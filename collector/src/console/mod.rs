//! The review console: server-rendered pages for the DSL, deputy DSLs, the
//! head teacher (alerts about staff), technicians (no captures, no typed
//! context) and auditors (the audit log), served by `serve` on its own
//! listener.
//!
//! Every request runs on a blocking thread with the console's handle on the
//! store ([`crate::store::console::Console`]); pages are functions from rows
//! to maud templates, which escape every value. Pages that change what
//! agents hold (rule publication, exemptions, notices) go through the
//! collector's [`crate::store::Store`], on either backend ([`App::shared`]).

pub mod access;
pub mod alert;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod concern;
pub mod coverage;
pub mod exemptions;
pub mod export;
pub mod html;
pub mod login;
pub mod notice;
pub mod publish;
pub mod queue;
pub mod schema;
pub mod settings;
pub mod sso;
pub mod staff;
pub mod tokens;
pub mod tz;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use rusqlite::Connection;

use crate::config::Console as ConsoleConfig;
use crate::secrets::{CaptureVault, TlsIdentity};
use crate::store::console::{Console, ConsoleStore};
use crate::store::StoreError;
use auth::{Throttle, Viewer};
use tz::Zone;

/// Shared state of the console.
#[derive(Clone)]
pub struct App {
    pub store: ConsoleStore,
    /// The collector's store, for what agents hold (rule publication,
    /// exemptions, notices), pupils' reports and fleet figures.
    pub shared: crate::store::Store,
    pub vault: Arc<CaptureVault>,
    /// Where the sealed captures are (the database, or a bucket).
    pub blobs: crate::store::blob::Blobs,
    pub zone: Zone,
    pub staff_pattern: String,
    pub secure_cookies: bool,
    /// A reverse proxy whose `X-Forwarded-For` names the client.
    pub trusted_proxy: Option<IpAddr>,
    pub throttle: Arc<Throttle>,
    /// `[fleet]` from collector.toml (silent-station rules for the fleet page).
    pub fleet: crate::config::Fleet,
    /// The collector's data directory (the rule-signing key, for publishing from the console).
    pub data_dir: std::path::PathBuf,
    /// The key behind neutral rule ids (`settings::neutral_rule_id`).
    pub rule_key: Arc<Vec<u8>>,
    /// Form tokens and the rate limit of the pupils' report page.
    pub concern: Arc<concern::Guard>,
    /// Staff single sign-on (OpenID Connect) providers and sign-ins in progress.
    pub sso: Arc<sso::Sso>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("console::App")
    }
}

impl App {
    /// Opens the SQLite store in `dir` and creates the console's tables.
    pub fn open(dir: &Path, config: &ConsoleConfig) -> anyhow::Result<Self> {
        let store = ConsoleStore::open_sqlite(dir)?;
        let rule_key = store.with(settings::rule_id_key).0?;
        let shared = crate::store::Store::Sqlite(crate::store::sqlite::Shared::open(dir)?);
        Self::assemble(dir, config, store, shared, rule_key)
    }

    /// Opens the store at `location` (SQLite in `dir`, or PostgreSQL) and
    /// creates or upgrades the console's tables.
    pub async fn open_at(
        dir: &Path,
        config: &ConsoleConfig,
        location: &crate::store::Location,
    ) -> anyhow::Result<Self> {
        let store = ConsoleStore::open(location).await?;
        let rule_key = store.run(settings::rule_id_key).await?;
        let shared = crate::store::Store::open(location).await?;
        Self::assemble(dir, config, store, shared, rule_key)
    }

    fn assemble(
        dir: &Path,
        config: &ConsoleConfig,
        store: ConsoleStore,
        shared: crate::store::Store,
        rule_key: Vec<u8>,
    ) -> anyhow::Result<Self> {
        if store.embedded() {
            // Tables SQLite makes when first used, read by the pages below.
            store
                .with(|db| -> rusqlite::Result<()> {
                    if let Some(c) = db.legacy() {
                        crate::publish::ensure_schema(c)?;
                        crate::notice::ensure_schema(c)?;
                    }
                    Ok(())
                })
                .0?;
        }
        let rule_key = Arc::new(rule_key);
        let zone = Zone::parse(&config.time_zone).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unknown console time_zone; showing UTC");
            Zone::utc()
        });
        Ok(Self {
            store,
            shared,
            vault: Arc::new(CaptureVault::load(dir)?),
            blobs: match crate::config::CollectorConfig::load(&dir.join("collector.toml")) {
                Ok(c) => crate::store::blob::Blobs::connect(&c.storage.captures)?,
                Err(_) => crate::store::blob::Blobs::Database,
            },
            zone,
            staff_pattern: config.staff_pattern.trim().to_lowercase(),
            // Behind a proxy, the browser's side of it is HTTPS.
            secure_cookies: config.tls || config.trusted_proxy.is_some(),
            trusted_proxy: config.trusted_proxy,
            throttle: Arc::new(Throttle::default()),
            fleet: crate::config::CollectorConfig::load(&dir.join("collector.toml"))
                .map(|c| c.fleet)
                .unwrap_or_default(),
            data_dir: dir.to_owned(),
            rule_key,
            concern: Arc::new(concern::Guard::default()),
            sso: Arc::new(sso::Sso::from_config(&config.oidc)),
        })
    }
}

/// A request, read fully, for the blocking page functions.
#[derive(Debug, Default)]
pub struct Req {
    pub post: bool,
    pub cookies: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    pub ip: Option<IpAddr>,
    pub id: Option<i64>,
    pub wants_json: bool,
    /// The browser says the request came from another site (`Sec-Fetch-Site: cross-site`).
    pub cross_site: bool,
}

impl Req {
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn q(&self, name: &str) -> &str {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn f(&self, name: &str) -> &str {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn f_all(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn ip(&self) -> IpAddr {
        self.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    pub fn id(&self) -> i64 {
        self.id.unwrap_or(0)
    }
}

/// Why a request was not served.
#[derive(Debug)]
pub enum Fail {
    /// No valid session: to the login page.
    Login,
    Forbidden,
    NotFound,
    BadRequest(String),
    /// The CSRF token was missing or wrong.
    Csrf,
    /// Someone else changed the alert first.
    Conflict(String),
    Store(StoreError),
    /// A database error from a SQLite-only call.
    Db(rusqlite::Error),
    /// A page left its transaction open; it was rolled back.
    Unsaved,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Db(e)
    }
}

impl Fail {
    fn response(self, json: bool) -> Response {
        let (status, text) = match self {
            Fail::Login if json => (StatusCode::UNAUTHORIZED, "Sign in again.".to_owned()),
            Fail::Login => return redirect("/login"),
            Fail::Forbidden => (
                StatusCode::FORBIDDEN,
                "Your role does not allow this.".to_owned(),
            ),
            Fail::NotFound => (StatusCode::NOT_FOUND, "No such page or alert.".to_owned()),
            Fail::BadRequest(why) => (StatusCode::BAD_REQUEST, why),
            Fail::Csrf => (
                StatusCode::FORBIDDEN,
                "The form was refused: its security token is missing or stale. Reload the page and try again."
                    .to_owned(),
            ),
            Fail::Unsaved => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The change was not saved because of a database problem; reload the page and try again."
                    .to_owned(),
            ),
            Fail::Conflict(why) => (StatusCode::CONFLICT, why),
            Fail::Db(e) => return Fail::Store(e.into()).response(json),
            Fail::Store(e) => {
                tracing::error!(error = %e, "console database error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The console could not read its database; try again.".to_owned(),
                )
            }
        };
        let body = html::page(
            status.canonical_reason().unwrap_or("Error"),
            None,
            maud::html! {
                h1 { (status.as_u16()) }
                p.error { (text) }
                p { a href="/queue" { "Back to the queue" } }
            },
        );
        with_status(status, html_response(body))
    }
}

pub fn html_response(body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

pub fn typed_response(content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn with_status(status: StatusCode, mut r: Response) -> Response {
    *r.status_mut() = status;
    r
}

pub fn redirect(to: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The console's store, or the SQLite connection of a page not yet moved
/// behind it: what [`session`] and [`deny`] take.
pub trait AsConsole {
    fn console(&self) -> Console<'_>;
}

impl AsConsole for Connection {
    fn console(&self) -> Console<'_> {
        Console::Sqlite(self)
    }
}

impl AsConsole for Console<'_> {
    fn console(&self) -> Console<'_> {
        *self
    }
}

/// Runs `work` (a call on [`App::shared`]) to its end from a page, which
/// runs on a blocking thread of the runtime.
pub fn wait<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Handle::current().block_on(work)
}

/// Whether a request is the queue page's background poll. A poll does not
/// count as activity: it must not keep an unattended session alive.
pub fn is_poll(req: &Req) -> bool {
    req.q("fragment") == "1"
}

/// Checks the session and, for a POST, its CSRF token (refusals are audited).
pub fn session(db: &(impl AsConsole + ?Sized), req: &Req) -> Result<Viewer, Fail> {
    let db = db.console();
    let viewer = auth::check_session(&db, req.cookie(auth::SESSION_COOKIE), !is_poll(req))?;
    if req.post && !auth::same_secret(req.f("csrf"), &viewer.csrf) {
        db.audit(
            &viewer.name,
            "csrf_refused",
            "console",
            "a form arrived without this session's token",
        )?;
        return Err(Fail::Csrf);
    }
    Ok(viewer)
}

/// Refuses, and audits the refusal.
pub fn deny(db: &(impl AsConsole + ?Sized), viewer: &Viewer, target: &str) -> Fail {
    let _ = db.console().audit(
        &viewer.name,
        "denied",
        target,
        &format!("role {}", viewer.role.as_str()),
    );
    Fail::Forbidden
}

/// A page: it reads and writes through the console's store.
type Page = fn(&App, &Console<'_>, &Req) -> Result<Response, Fail>;

/// What a route runs.
#[derive(Clone, Copy)]
enum Handler {
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
fn request_ip(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    trusted_proxy: Option<IpAddr>,
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    client_address(peer, headers, trusted_proxy)
}

async fn call(app: App, page: Handler, id: Option<i64>, request: Request) -> Response {
    call_limited(app, page, id, request, DEFAULT_FORM_LIMIT).await
}

async fn call_limited(
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
        let (result, settled) = app.store.with(|db| page.run(&app, db, &req));
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

macro_rules! page {
    ($f:path) => {
        |State(app): State<App>, request: Request| call(app, Handler::Store($f), None, request)
    };
}

/// A page whose form may be larger than the default limit.
macro_rules! large_form_page {
    ($f:path, $limit:expr) => {
        |State(app): State<App>, request: Request| {
            call_limited(app, Handler::Store($f), None, request, $limit)
        }
    };
}

macro_rules! alert_page {
    ($f:path) => {
        |State(app): State<App>, UrlPath(id): UrlPath<i64>, request: Request| {
            call(app, Handler::Store($f), Some(id), request)
        }
    };
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = typed_response(content_type, body);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

/// The console's routes, the same on every backend.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { redirect("/queue") }))
        .route(
            "/login",
            get(page!(login::login_page)).post(page!(login::login_submit)),
        )
        .route("/logout", post(page!(login::logout)))
        .route("/login/oidc/{name}", get(sso::start))
        .route("/login/oidc/{name}/callback", get(sso::callback))
        .route("/queue", get(page!(queue::page)))
        .route("/queue.csv", get(page!(export::csv)))
        .route("/queue/bulk", post(page!(alert::bulk_false_positive)))
        .route("/rules", get(page!(alert::rules_page)))
        .route("/audit", get(page!(audit_page)))
        .route(
            "/settings",
            get(page!(settings::page_handler)).post(page!(settings::submit)),
        )
        .route("/tokens", get(page!(tokens::list_page)))
        .route("/tokens/create", post(page!(tokens::create)))
        .route("/tokens/revoke", post(page!(tokens::revoke)))
        .route("/alerts/{id}", get(alert_page!(alert::page)))
        .route("/alerts/{id}/capture.jpg", get(alert_page!(alert::capture)))
        .route("/alerts/{id}/preview.jpg", get(alert_page!(alert::preview)))
        .route("/alerts/{id}/reveal", post(alert_page!(alert::reveal)))
        .route("/alerts/{id}/state", post(alert_page!(alert::change_state)))
        .route("/alerts/{id}/assign", post(alert_page!(alert::assign)))
        .route("/alerts/{id}/note", post(alert_page!(alert::add_note)))
        .route("/alerts/{id}/record", get(alert_page!(export::record_page)))
        .route(
            "/alerts/{id}/record.json",
            get(alert_page!(export::record_json)),
        )
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", html::CSS) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", html::JS) }),
        )
        .route(
            "/concern",
            get(page!(concern::page)).post(|State(app): State<App>, request: Request| {
                call_limited(
                    app,
                    Handler::Store(concern::submit),
                    None,
                    request,
                    concern::FORM_LIMIT,
                )
            }),
        )
        .route("/concern/sent", get(page!(concern::sent)))
        .route(
            "/subject-access",
            get(page!(access::page_handler)).post(page!(access::submit)),
        )
        .route(
            "/notices",
            get(page!(notice::page_handler))
                .post(large_form_page!(notice::submit, notice::FORM_LIMIT)),
        )
        .route("/fleet", get(page!(coverage::page_handler)))
        .route("/fleet/clear-flag", post(page!(coverage::clear_flag)))
        .route("/fleet/revoke", post(page!(coverage::revoke)))
        .route("/exemptions", get(page!(exemptions::list_page)))
        .route(
            "/rules/publish",
            get(page!(publish::page_handler))
                .post(large_form_page!(publish::submit, publish::FORM_LIMIT)),
        )
        .route("/exemptions/add", post(page!(exemptions::add)))
        .route(
            "/exemptions/{id}/revoke",
            post(alert_page!(exemptions::revoke)),
        )
        .with_state(app)
}

fn audit_page(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    if !viewer.role.audits() {
        return Err(deny(db, &viewer, "audit log"));
    }
    let actor = Some(req.q("actor")).filter(|a| !a.is_empty());
    db.audit(&viewer.name, "view_audit", "audit log", actor.unwrap_or(""))?;
    Ok(html_response(audit::render(db, &viewer, &app.zone, actor)?))
}

/// Aborts the console when dropped (when `serve` stops).
#[derive(Debug)]
pub struct Handle(tokio::task::JoinHandle<()>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds and starts the console. A console that cannot start is logged and
/// left out: agents' evidence keeps flowing into the store regardless.
pub async fn start(
    dir: &Path,
    config: &ConsoleConfig,
    tls: &TlsIdentity,
    location: &crate::store::Location,
) -> Option<Handle> {
    if !config.enabled {
        return None;
    }
    match bind(dir, config, tls, location).await {
        Ok((addr, serving)) => {
            let scheme = if config.tls { "https" } else { "http" };
            tracing::info!(url = %format!("{scheme}://{addr}/"), "review console listening");
            Some(Handle(tokio::spawn(serving)))
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the review console did not start; ingest continues");
            None
        }
    }
}

/// Binds the console's address; returns it and the future that serves it.
pub async fn bind(
    dir: &Path,
    config: &ConsoleConfig,
    tls: &TlsIdentity,
    location: &crate::store::Location,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    use anyhow::Context;
    let app = App::open_at(dir, config, location).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the console", config.listen))?;
    let addr = listener.local_addr()?;
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let acceptor = if config.tls {
        Some(tls_acceptor(tls)?)
    } else {
        None
    };
    let serving = async move {
        let result = match acceptor {
            None => axum::serve(listener, service).await,
            Some(acceptor) => match tls_listener::TlsListener::new(listener, acceptor) {
                Ok(tls) => {
                    use axum::serve::ListenerExt;
                    axum::serve(tls.tap_io(|_| {}), service).await
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the review console stopped");
        }
    };
    Ok((addr, serving))
}

fn tls_acceptor(tls: &TlsIdentity) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

mod tls_listener {
    //! HTTPS for the console. Handshakes run in their own tasks, with a
    //! timeout, so a stalled client cannot hold up the others.

    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::server::TlsStream;
    use tokio_rustls::TlsAcceptor;

    pub struct TlsListener {
        rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
        _accepting: super::Handle,
    }

    impl TlsListener {
        pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
            let local = listener.local_addr()?;
            let (tx, rx) = mpsc::channel(64);
            let accepting = tokio::spawn(async move {
                loop {
                    let Ok((stream, addr)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let handshake = acceptor.accept(stream);
                        if let Ok(Ok(tls)) =
                            tokio::time::timeout(Duration::from_secs(10), handshake).await
                        {
                            let _ = tx.send((tls, addr)).await;
                        }
                    });
                }
            });
            Ok(Self {
                rx,
                local,
                _accepting: super::Handle(accepting),
            })
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.rx.recv().await {
                Some(conn) => conn,
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            Ok(self.local)
        }
    }
}
