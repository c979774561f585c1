//! One OpenID Connect provider: its discovery document and signing keys
//! (fetched when first needed, cached), the authorisation URL, the code
//! exchange and the checks on the ID token it returns.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::OidcProvider;
use crate::console::auth::Role;

/// How long the discovery document and keys are trusted before a refetch.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// An unknown key id makes the keys be refetched, at most this often.
const REFETCH_AFTER: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document, key set or token response read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Clock difference allowed on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 60;

/// Why a sign-in with a provider did not work. The first three are the
/// provider's or the configuration's fault; `Token` is a token refused.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the provider's configuration does not fit: {0}")]
    Misconfigured(String),
    #[error("the provider refused the code exchange: {0}")]
    ExchangeRefused(String),
    #[error("the ID token was refused: {0}")]
    Token(String),
}

/// The parts of the discovery document used.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

#[derive(Debug, Default)]
struct Cache {
    discovery: Option<(Discovery, Instant)>,
    keys: Option<(JwkSet, Instant)>,
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub groups: Vec<String>,
}

/// A provider ready for sign-ins.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub label: String,
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    redirect_url: String,
    scopes: Vec<String>,
    email_claim: String,
    groups_claim: String,
    pub require_verified_email: bool,
    /// The school new accounts are granted (`school`), if one is named.
    pub school: Option<String>,
    prompt: String,
    roles: Vec<(Role, Vec<String>, Vec<String>)>,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cache>,
}

/// Text from the provider, made fit for the log and the audit log: no
/// control characters, at most 120 characters.
fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(120).collect()
}

/// Whether `url` is `https`, or `http` to this machine (for tests and a
/// provider on the same host).
fn acceptable_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host_str().is_some(),
        "http" => parsed.host_str().is_some_and(|h| {
            h == "localhost"
                || h == "[::1]"
                || h.parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

impl Provider {
    /// Checks one `[[console.oidc]]` entry and reads its client secret.
    pub fn from_config(config: &OidcProvider) -> Result<Self, String> {
        let name = config.name.trim();
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "the name {name:?} must be 1-32 lower-case letters, digits or '-'"
            ));
        }
        let school = config.school.trim();
        if !school.is_empty() && !crate::store::schools::valid_id(school) {
            return Err(format!(
                "school {school:?} is not a school id (1-32 lower-case letters, digits or '-'); `tutela-collector schools list` shows them"
            ));
        }
        if !acceptable_url(&config.issuer) {
            return Err(format!(
                "issuer {:?} must be an https URL (http only on this machine)",
                config.issuer
            ));
        }
        let callback = format!("/login/oidc/{name}/callback");
        let redirect_ok = reqwest::Url::parse(&config.redirect_url)
            .is_ok_and(|u| u.path() == callback && u.query().is_none())
            && (config.redirect_url.starts_with("https://")
                || config.redirect_url.starts_with("http://"));
        if !redirect_ok {
            return Err(format!(
                "redirect_url {:?} must be the console's address as browsers reach it followed by {callback}",
                config.redirect_url
            ));
        }
        if config.client_id.trim().is_empty() {
            return Err("client_id is empty; copy it from the provider's app registration".into());
        }
        let client_secret = read_secret(config)?;
        let prompt = config.prompt.trim();
        if !prompt
            .split(' ')
            .all(|p| matches!(p, "" | "login" | "consent" | "select_account"))
        {
            return Err(format!(
                "prompt {prompt:?} must be empty, login, consent or select_account"
            ));
        }
        let mut roles = Vec::new();
        for entry in &config.roles {
            let role = Role::parse(&entry.role).ok_or_else(|| {
                format!(
                    "role {:?} is not one of dsl, deputy-dsl, head, technician, auditor",
                    entry.role
                )
            })?;
            if entry.emails.is_empty() && entry.groups.is_empty() {
                return Err(format!(
                    "the {} role entry lists no emails and no groups",
                    entry.role
                ));
            }
            roles.push((
                role,
                entry
                    .emails
                    .iter()
                    .map(|e| e.trim().to_lowercase())
                    .collect(),
                entry.groups.iter().map(|g| g.trim().to_owned()).collect(),
            ));
        }
        if roles.is_empty() {
            return Err(
                "no roles are mapped, so nobody could sign in; add [[console.oidc.roles]] entries"
                    .into(),
            );
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let local = config.issuer.starts_with("http://");
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT)
            .https_only(!local)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("tutela-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let mut scopes = vec!["openid".to_owned()];
        for s in &config.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        Ok(Self {
            name: name.to_owned(),
            label: if config.label.trim().is_empty() {
                name.to_owned()
            } else {
                config.label.trim().to_owned()
            },
            issuer: config.issuer.clone(),
            client_id: config.client_id.trim().to_owned(),
            client_secret,
            redirect_url: config.redirect_url.clone(),
            scopes,
            email_claim: config.email_claim.clone(),
            groups_claim: config.groups_claim.clone(),
            require_verified_email: config.require_verified_email,
            school: (!school.is_empty()).then(|| school.to_owned()),
            prompt: prompt.to_owned(),
            roles,
            http,
            cache: tokio::sync::Mutex::new(Cache::default()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The role the first matching entry gives, if any.
    pub fn role_for(&self, identity: &Identity) -> Option<Role> {
        let email = identity.email.as_deref().map(str::to_lowercase);
        self.roles.iter().find_map(|(role, emails, groups)| {
            let by_email = email.as_ref().is_some_and(|e| emails.contains(e));
            let by_group = identity.groups.iter().any(|g| groups.contains(g));
            (by_email || by_group).then_some(*role)
        })
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Result<T, String>), SsoError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| SsoError::Unreachable(format!("{what}: {e}")))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SsoError::Unreachable(format!("{what}: {e}")))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BYTES {
                return Err(SsoError::Misconfigured(format!("{what} is too large")));
            }
        }
        Ok((
            status,
            serde_json::from_slice(&body)
                .map_err(|e| format!("{what} is not the JSON expected: {e}")),
        ))
    }

    async fn discovery(&self) -> Result<Discovery, SsoError> {
        if let Some((d, at)) = &self.cache.lock().await.discovery {
            if at.elapsed() < CACHE_FOR {
                return Ok(d.clone());
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let (status, doc) = self
            .fetch_json::<Discovery>(self.http.get(&url), "the discovery document")
            .await?;
        if !status.is_success() {
            return Err(SsoError::Misconfigured(format!(
                "{url} answered {status}; check the issuer"
            )));
        }
        let doc = doc.map_err(SsoError::Misconfigured)?;
        if doc.issuer != self.issuer {
            return Err(SsoError::Misconfigured(format!(
                "the discovery document names issuer {:?}, not the configured {:?}",
                short(&doc.issuer),
                self.issuer
            )));
        }
        let local = self.issuer.starts_with("http://");
        for endpoint in [
            &doc.authorization_endpoint,
            &doc.token_endpoint,
            &doc.jwks_uri,
        ] {
            if !acceptable_url(endpoint) || (!local && !endpoint.starts_with("https://")) {
                return Err(SsoError::Misconfigured(format!(
                    "the discovery document's endpoint {:?} is not https",
                    short(endpoint)
                )));
            }
        }
        self.cache.lock().await.discovery = Some((doc.clone(), Instant::now()));
        Ok(doc)
    }

    async fn keys(&self, refresh: bool) -> Result<JwkSet, SsoError> {
        {
            let cache = self.cache.lock().await;
            if let Some((keys, at)) = &cache.keys {
                let fresh = at.elapsed() < CACHE_FOR;
                if fresh && (!refresh || at.elapsed() < REFETCH_AFTER) {
                    return Ok(keys.clone());
                }
            }
        }
        let jwks_uri = self.discovery().await?.jwks_uri;
        let (status, keys) = self
            .fetch_json::<JwkSet>(self.http.get(&jwks_uri), "the provider's key set")
            .await?;
        if !status.is_success() {
            return Err(SsoError::Misconfigured(format!(
                "{jwks_uri} answered {status}"
            )));
        }
        let keys = keys.map_err(SsoError::Misconfigured)?;
        self.cache.lock().await.keys = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    /// The provider's authorisation URL for one sign-in.
    pub async fn authorisation_url(
        &self,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Result<String, SsoError> {
        let d = self.discovery().await?;
        let scope = self.scopes.join(" ");
        let mut url = reqwest::Url::parse_with_params(
            &d.authorization_endpoint,
            [
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", self.redirect_url.as_str()),
                ("scope", scope.as_str()),
                ("state", state),
                ("nonce", nonce),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| SsoError::Misconfigured(format!("authorization_endpoint: {e}")))?;
        if !self.prompt.is_empty() {
            url.query_pairs_mut().append_pair("prompt", &self.prompt);
        }
        Ok(url.into())
    }

    /// Exchanges the code for tokens and checks the ID token; returns who
    /// signed in.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Identity, SsoError> {
        let d = self.discovery().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(&d.token_endpoint);
        match &self.client_secret {
            Some(secret)
                if !d.token_endpoint_auth_methods_supported.is_empty()
                    && !d
                        .token_endpoint_auth_methods_supported
                        .iter()
                        .any(|m| m == "client_secret_basic")
                    && d.token_endpoint_auth_methods_supported
                        .iter()
                        .any(|m| m == "client_secret_post") =>
            {
                form.push(("client_id", self.client_id.as_str()));
                form.push(("client_secret", secret.as_str()));
            }
            Some(secret) => {
                // RFC 6749 2.3.1: both parts form-encoded before Basic.
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                request = request.basic_auth(enc(&self.client_id), Some(enc(secret)));
            }
            None => form.push(("client_id", self.client_id.as_str())),
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
            error: Option<String>,
        }
        let (status, tokens) = self
            .fetch_json::<TokenResponse>(
                request.form(&form).header("accept", "application/json"),
                "the token response",
            )
            .await?;
        let tokens = tokens.map_err(SsoError::ExchangeRefused)?;
        if !status.is_success() {
            let error = short(&tokens.error.unwrap_or_default());
            let hint = if error == "invalid_client" {
                "; check client_id and the client secret"
            } else {
                ""
            };
            return Err(SsoError::ExchangeRefused(format!("{status} {error}{hint}")));
        }
        let id_token = tokens
            .id_token
            .ok_or_else(|| SsoError::ExchangeRefused("no ID token in the answer".into()))?;
        let kid = jsonwebtoken::decode_header(&id_token)
            .map_err(|e| SsoError::Token(format!("unreadable header: {e}")))?
            .kid;
        let mut keys = self.keys(false).await?;
        if kid.as_ref().is_some_and(|k| keys.find(k).is_none()) {
            // The provider may have rotated its keys.
            keys = self.keys(true).await?;
        }
        let claims = verify_id_token(&id_token, &keys, &self.issuer, &self.client_id, nonce)
            .map_err(SsoError::Token)?;
        self.identity(&claims)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, SsoError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| SsoError::Token("no usable sub claim".into()))?
            .to_owned();
        let email = claims
            .get(&self.email_claim)
            .and_then(Value::as_str)
            .map(|e| e.trim().to_lowercase());
        let email_verified = claims.get("email_verified").and_then(|v| match v {
            Value::Bool(b) => Some(*b),
            // Some providers send it as a string.
            Value::String(s) => Some(s == "true"),
            _ => None,
        });
        let groups = match claims.get(&self.groups_claim) {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            subject,
            email,
            email_verified,
            groups,
        })
    }
}

fn read_secret(config: &OidcProvider) -> Result<Option<String>, String> {
    let secret = crate::secrets::configured(
        "",
        &config.client_secret_file,
        &config.client_secret_env,
        "client secret",
    )?;
    let configured =
        !config.client_secret_file.trim().is_empty() || !config.client_secret_env.trim().is_empty();
    if configured && secret.is_none() {
        return Err("the client secret is empty".into());
    }
    Ok(secret)
}

/// Signature algorithms accepted on ID tokens: public-key ones only (an
/// HMAC token would be signed with the client secret, and `none` not at all).
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Checks an ID token's signature against the provider's keys, its issuer,
/// audience, expiry and nonce; returns its claims or why it was refused.
pub fn verify_id_token(
    token: &str,
    keys: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<Map<String, Value>, String> {
    use jsonwebtoken::errors::ErrorKind;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("unreadable: {e}"))?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(format!(
            "signed with {:?}, which is not accepted",
            header.alg
        ));
    }
    let jwk = match &header.kid {
        Some(kid) => keys
            .find(kid)
            .ok_or_else(|| "signed with a key the provider does not publish".to_owned())?,
        None if keys.keys.len() == 1 => &keys.keys[0],
        None => return Err("no key id, and the provider publishes several keys".into()),
    };
    if let Some(alg) = jwk.common.key_algorithm {
        if format!("{alg:?}") != format!("{:?}", header.alg) {
            return Err("the key's algorithm differs from the token's".into());
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(
        |e| match e.kind() {
            ErrorKind::InvalidAudience => "wrong audience: it was issued to another client".into(),
            ErrorKind::ExpiredSignature => "expired".into(),
            ErrorKind::ImmatureSignature => "not valid yet".into(),
            ErrorKind::InvalidIssuer => "wrong issuer".into(),
            ErrorKind::InvalidSignature => "bad signature".into(),
            ErrorKind::MissingRequiredClaim(c) => format!("no {c} claim"),
            _ => format!("invalid: {e}"),
        },
    )?;
    let claims = data.claims;
    let now = jsonwebtoken::get_current_timestamp();
    if claims
        .get("iat")
        .and_then(Value::as_u64)
        .is_some_and(|iat| iat > now + LEEWAY_SECS)
    {
        return Err("issued in the future".into());
    }
    let token_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !crate::console::auth::same_secret(token_nonce, nonce) || nonce.is_empty() {
        return Err("wrong nonce: it was not issued for this sign-in".into());
    }
    if let Some(azp) = claims.get("azp").and_then(Value::as_str) {
        if azp != client_id {
            return Err("issued to another client (azp)".into());
        }
    }
    Ok(claims)
}
