//! ID token checks against a real key pair: the good token passes, and each
//! attack on it (another audience, expired, another nonce or issuer, a key
//! the provider does not publish, an HMAC or unsigned token, a changed
//! payload) is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::provider::verify_id_token;

const ISSUER: &str = "https://idp.school.test";
const CLIENT: &str = "tutela-console";
const NONCE: &str = "n-0S6_WzA2Mj";

struct Signer {
    key: EncodingKey,
    keys: JwkSet,
}

fn signer(kid: &str) -> Signer {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let keys: JwkSet = serde_json::from_value(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]}))
    .unwrap();
    Signer {
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        keys,
    }
}

fn claims() -> Value {
    let now = get_current_timestamp();
    json!({
        "iss": ISSUER, "aud": CLIENT, "sub": "248289761001", "nonce": NONCE,
        "iat": now, "exp": now + 300, "email": "dsl@school.test", "groups": ["Safeguarding"],
    })
}

fn sign(s: &Signer, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, claims, &s.key).unwrap()
}

fn check(s: &Signer, token: &str) -> Result<serde_json::Map<String, Value>, String> {
    verify_id_token(token, &s.keys, ISSUER, CLIENT, NONCE)
}

#[test]
fn a_good_token_passes() {
    let s = signer("k1");
    let out = check(&s, &sign(&s, "k1", &claims())).unwrap();
    assert_eq!(out["email"], "dsl@school.test");
}

#[test]
fn each_attack_on_the_claims_is_refused() {
    let s = signer("k1");
    let now = get_current_timestamp();
    for (change, key, value, why) in [
        (
            "another audience",
            "aud",
            json!("another-client"),
            "wrong audience",
        ),
        ("expired", "exp", json!(now - 3600), "expired"),
        ("another nonce", "nonce", json!("replayed"), "wrong nonce"),
        ("no nonce", "nonce", Value::Null, "wrong nonce"),
        (
            "another issuer",
            "iss",
            json!("https://evil.test"),
            "wrong issuer",
        ),
        ("issued later", "iat", json!(now + 3600), "future"),
        ("another party", "azp", json!("another-client"), "azp"),
    ] {
        let mut c = claims();
        c[key] = value;
        let err = check(&s, &sign(&s, "k1", &c)).unwrap_err();
        assert!(err.contains(why), "{change}: {err}");
    }
    // Several audiences with ours among them: azp must then name us.
    let mut c = claims();
    c["aud"] = json!([CLIENT, "other"]);
    c["azp"] = json!(CLIENT);
    check(&s, &sign(&s, "k1", &c)).unwrap();
}

#[test]
fn keys_and_algorithms_the_provider_does_not_publish_are_refused() {
    let s = signer("k1");
    let other = signer("k1");
    // Same key id, another key: the signature does not verify.
    let err = check(&s, &sign(&other, "k1", &claims())).unwrap_err();
    assert!(err.contains("bad signature"), "{err}");
    let err = check(&s, &sign(&s, "k2", &claims())).unwrap_err();
    assert!(err.contains("does not publish"), "{err}");
    // HMAC with a guessable secret, and no signature at all.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs = encode(&header, &claims(), &EncodingKey::from_secret(b"secret")).unwrap();
    assert!(check(&s, &hs).unwrap_err().contains("not accepted"));
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    let none = format!(
        "{}.{body}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#)
    );
    assert!(check(&s, &none).is_err());
    // A payload changed after signing.
    let good = sign(&s, "k1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["email"] = json!("head@school.test");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert!(check(&s, &forged).unwrap_err().contains("bad signature"));
}

fn config(text: &str) -> crate::config::OidcProvider {
    toml::from_str(text).unwrap()
}

const GOOD: &str = r#"
name = "school"
issuer = "https://idp.school.test"
client_id = "tutela-console"
redirect_url = "https://console.school.test/login/oidc/school/callback"
[[roles]]
role = "head"
emails = ["Head@School.test"]
[[roles]]
role = "dsl"
groups = ["Safeguarding"]
"#;

#[test]
fn configuration_is_checked_and_roles_map_first_match() {
    use super::provider::{Identity, Provider};
    use crate::console::auth::Role;
    let p = Provider::from_config(&config(GOOD)).unwrap();
    let who = |email: &str, groups: &[&str]| Identity {
        subject: "s".into(),
        email: Some(email.into()),
        email_verified: Some(true),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    assert_eq!(
        p.role_for(&who("head@school.test", &["Safeguarding"])),
        Some(Role::Head)
    );
    assert_eq!(
        p.role_for(&who("a@school.test", &["Safeguarding"])),
        Some(Role::Dsl)
    );
    // Group names are compared exactly; nothing else grants a role.
    assert_eq!(p.role_for(&who("a@school.test", &["safeguarding"])), None);
    assert_eq!(p.role_for(&who("a@school.test", &[])), None);
    for (from, to, why) in [
        ("name = \"school\"", "name = \"School!\"", "lower-case"),
        ("https://idp.school.test", "http://idp.school.test", "https"),
        ("/login/oidc/school/callback", "/callback", "redirect_url"),
        ("role = \"dsl\"", "role = \"admin\"", "is not one of"),
        ("groups = [\"Safeguarding\"]", "", "no emails and no groups"),
        (
            "client_id = \"tutela-console\"",
            "client_id = \"\"",
            "client_id",
        ),
        (
            "client_id = \"tutela-console\"",
            "client_id = \"tutela-console\"\nprompt = \"always\"",
            "prompt",
        ),
    ] {
        let err = Provider::from_config(&config(&GOOD.replace(from, to))).unwrap_err();
        assert!(err.contains(why), "{to}: {err}");
    }
    // http is for a provider on this machine only.
    let local = GOOD.replace("https://idp.school.test", "http://127.0.0.1:9000");
    Provider::from_config(&config(&local)).unwrap();
    let no_roles = &GOOD[..GOOD.find("[[roles]]").unwrap()];
    assert!(Provider::from_config(&config(no_roles))
        .unwrap_err()
        .contains("no roles are mapped"));
    // A school for new accounts must be a school id.
    let with_school =
        |id: &str| GOOD.replace("client_id =", &format!("school = \"{id}\"\nclient_id ="));
    let north = Provider::from_config(&config(&with_school("north"))).unwrap();
    assert_eq!(north.school.as_deref(), Some("north"));
    assert!(Provider::from_config(&config(&with_school("North School")))
        .unwrap_err()
        .contains("is not a school id"));
    assert_eq!(Provider::from_config(&config(GOOD)).unwrap().school, None);
}

#[test]
fn accounts_are_tied_to_their_subject_and_never_take_over_local_ones() {
    use super::accounts::{sign_in, Refusal, SignIn};
    use crate::console::auth::{add_user, Role};
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::open(dir.path()).unwrap();
    crate::console::schema::create(&conn).unwrap();
    let db = crate::store::console::Console::Sqlite(&conn);
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let who = |subject, email, role| SignIn {
        provider: "school",
        subject,
        email,
        role,
        school: None,
        ip,
    };
    let first = sign_in(&db, &who("s1", "a@school.test", Role::Dsl)).unwrap();
    assert!(first.is_ok());
    // The mapping changed: the next sign-in brings the new role.
    sign_in(&db, &who("s1", "a@school.test", Role::Head))
        .unwrap()
        .unwrap();
    let role: String = conn
        .query_row(
            "SELECT role FROM console_users WHERE name = 'a@school.test'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(role, "head");
    // Another person given the same address at the provider.
    assert_eq!(
        sign_in(&db, &who("s2", "a@school.test", Role::Dsl)).unwrap(),
        Err(Refusal::SubjectChanged)
    );
    // A local account's name, and a disabled account.
    add_user(&db, "local@school.test", Role::Dsl, "a long test password").unwrap();
    assert_eq!(
        sign_in(&db, &who("s3", "local@school.test", Role::Dsl)).unwrap(),
        Err(Refusal::LocalAccount)
    );
    conn.execute(
        "UPDATE console_users SET disabled = 1 WHERE name = 'a@school.test'",
        [],
    )
    .unwrap();
    assert_eq!(
        sign_in(&db, &who("s1", "a@school.test", Role::Dsl)).unwrap(),
        Err(Refusal::Disabled)
    );
    // An address no account name can be.
    assert_eq!(
        sign_in(&db, &who("s4", "o'brien+x@school.test", Role::Dsl)).unwrap(),
        Err(Refusal::NoUsableEmail)
    );
    // A password cannot open a single sign-on account.
    let login = crate::console::auth::login(&db, "a@school.test", "", ip).unwrap();
    assert!(matches!(login, crate::console::auth::Login::Refused));
    let refusals: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE action = 'sso_refused'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refusals, 4);
}

#[test]
fn on_a_collector_of_several_schools_a_new_account_has_no_grant_until_given_one() {
    use super::accounts::{sign_in, SignIn};
    use crate::console::auth::{check_session, Role};
    use crate::store::schools::{GrantChange, Scope};
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::open(dir.path()).unwrap();
    crate::console::schema::create(&conn).unwrap();
    let db = crate::store::console::Console::Sqlite(&conn);
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let who = SignIn {
        provider: "school",
        subject: "s1",
        email: "new@school.test",
        role: Role::Dsl,
        school: None,
        ip,
    };
    let school_of = |name: &str| -> String {
        conn.query_row(
            "SELECT school FROM console_grants WHERE user = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap()
    };
    // One school: a new account is trust-wide, as before schools.
    sign_in(&db, &who).unwrap().unwrap();
    assert_eq!(school_of("new@school.test"), "");
    // Several schools: a new account signs in to no school at all.
    crate::store::sqlite::schools::put(&conn, "north", "North", 1).unwrap();
    let token = sign_in(
        &db,
        &SignIn {
            subject: "s2",
            email: "second@school.test",
            ..who
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(school_of("second@school.test"), "-");
    let viewer = check_session(&db, Some(token.as_str()), false).unwrap();
    assert!(viewer.school.is_none() && !viewer.trust_wide());
    // The page it is shown names the account and who to ask.
    let page = crate::console::Fail::NoGrant(viewer.name).response(false);
    assert_eq!(page.status(), 403);
    // The earlier account keeps its grant.
    sign_in(&db, &who).unwrap().unwrap();
    assert_eq!(school_of("new@school.test"), "");
    // `users grant` gives one, and a later sign-in keeps it.
    let north = Scope::School("north".into());
    assert!(db
        .grant("second@school.test", "dsl", GrantChange::Add(&north))
        .unwrap()
        .is_some());
    let token = sign_in(
        &db,
        &SignIn {
            subject: "s2",
            email: "second@school.test",
            ..who
        },
    )
    .unwrap()
    .unwrap();
    let viewer = check_session(&db, Some(token.as_str()), false).unwrap();
    assert_eq!(viewer.school, Scope::School("north".into()));
    // A provider configured with a school grants it to the accounts it
    // makes; one naming a school that does not exist grants none.
    for (email, school, granted) in [
        ("third@school.test", "north", "north"),
        ("fourth@school.test", "west", "-"),
    ] {
        sign_in(
            &db,
            &SignIn {
                subject: email,
                email,
                school: Some(school),
                ..who
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(school_of(email), granted, "{email}");
    }
}
