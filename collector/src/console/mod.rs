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
mod dispatch;
pub mod exemptions;
pub mod export;
pub mod grants;
pub mod html;
pub mod login;
pub mod notice;
pub mod publish;
pub mod queue;
pub mod review;
pub mod schema;
pub mod school_settings;
mod server;
pub mod settings;
pub mod sso;
pub mod staff;
pub mod tokens;
pub mod tz;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use rusqlite::Connection;

use crate::config::Console as ConsoleConfig;
use crate::secrets::CaptureVault;
use crate::store::console::{Console, ConsoleStore};
use crate::store::StoreError;
use auth::{Throttle, Viewer};
use tz::Zone;

use dispatch::request_ip;
use dispatch::{call, call_limited, Handler};
pub use dispatch::{harden, FormLimit};
pub use server::{bind, start, Handle};

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
    /// The zones of the schools that have one of their own, read for each
    /// request: an alert's or an audit entry's time is shown in its
    /// school's zone ([`App::zone_of`]).
    pub school_zones: Arc<std::collections::HashMap<String, Zone>>,
    /// The trust's `[retention] closed_alert_months` (a school's own
    /// replaces it for that school).
    pub retention_months: u32,
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
    /// The zone a time of `school` is shown in: the school's own, else the
    /// account's ([`App::zone`]: its school's, or the trust's).
    pub fn zone_of(&self, school: &str) -> &Zone {
        self.school_zones.get(school).unwrap_or(&self.zone)
    }

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
            school_zones: Arc::default(),
            retention_months: crate::config::CollectorConfig::load(&dir.join("collector.toml"))
                .map(|c| c.retention.closed_alert_months)
                .unwrap_or(crate::config::Retention::default().closed_alert_months),
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
    /// The signed-in account (named) has no grant yet.
    NoGrant(String),
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
            Fail::NoGrant(name) => (
                StatusCode::FORBIDDEN,
                format!(
                    "You are signed in as {name}, but this account has no school in this console yet. \
                     Ask the trust's administrator to grant it one \
                     (`tutela-collector users grant {name} --role <role> --school <school>`), then sign in again."
                ),
            ),
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

/// Checks the session and, for a POST, its CSRF token (refusals are
/// audited), and that the account has a grant: one with no school yet is
/// shown who to ask (fail closed).
pub fn session(db: &(impl AsConsole + ?Sized), req: &Req) -> Result<Viewer, Fail> {
    let viewer = session_without_grant(db, req)?;
    if viewer.school.is_none() {
        return Err(Fail::NoGrant(viewer.name));
    }
    Ok(viewer)
}

/// [`session`] for what an account without a grant may do (sign out).
pub fn session_without_grant(db: &(impl AsConsole + ?Sized), req: &Req) -> Result<Viewer, Fail> {
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
        .route(
            "/grants",
            get(page!(grants::page_handler)).post(page!(grants::switch)),
        )
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
        .route("/settings/school", post(page!(school_settings::submit)))
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
        .route("/fleet/move-school", post(page!(coverage::move_school)))
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
    Ok(html_response(audit::render(app, db, &viewer, actor)?))
}
