//! Staff single sign-on end to end: a real OpenID provider on loopback (npm
//! `oidc-provider`, tests/console/oidc-provider.mjs), the real collector,
//! and real Chromium (tests/console/sso.mjs). Mapped accounts sign in with
//! the right role; a replayed state, a callback in another browser, an
//! unmapped account, a wrong audience and an expired ID token are refused;
//! unreachable, wrong-issuer and wrong-secret providers get a clear page
//! and a logged reason; the local break-glass account keeps working. The
//! audit log holds every sign-in and refusal, and neither it nor the log
//! holds a token, a code or the client secret.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tutela_tests::script::Script;

use tutela_tests::web::http;
use tutela_tests::{console_scripts, free_port, run_ok, wait_for, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";
const CLIENT_SECRET: &str = "client-secret-7Hq2vX9pLmW4";

/// The provider's Node process, stopped on drop.
struct IdentityProvider(Child);

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_provider(port: u16, redirect_uris: &[String], log: &std::path::Path) -> IdentityProvider {
    let mut child = Command::new("node")
        .arg("oidc-provider.mjs")
        .current_dir(console_scripts())
        .env("PORT", port.to_string())
        .env("REDIRECT_URIS", redirect_uris.join(" "))
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("node runs");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("READY "),
        "the provider did not start: {line:?}"
    );
    // Keep reading: the provider prints notices later, and a closed pipe would stop it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    IdentityProvider(child)
}

fn provider_entry(
    name: &str,
    label: &str,
    issuer: &str,
    secret_file: &str,
    console: u16,
    roles: &str,
) -> String {
    format!(
        "\n[[console.oidc]]\nname = \"{name}\"\nlabel = \"{label}\"\nissuer = \"{issuer}\"\n\
         client_id = \"tutela-console\"\nclient_secret_file = \"{secret_file}\"\n\
         redirect_url = \"http://127.0.0.1:{console}/login/oidc/{name}/callback\"\n\
         scopes = [\"email\", \"groups\"]\n{roles}"
    )
}

#[test]
fn staff_sign_in_with_openid_connect_and_every_refusal_audited() {
    let scratch = Scratch::new("console-sso");
    let (mut collector, port) = Collector::with_console(
        scratch.path("collector"),
        &[("breakglass", "dsl")],
        PASSWORD,
    )
    .unwrap();
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let callbacks: Vec<String> = ["school", "badsecret"]
        .iter()
        .map(|n| format!("http://127.0.0.1:{port}/login/oidc/{n}/callback"))
        .collect();
    let idp_log = scratch.path("provider.log");
    let _idp = start_provider(idp_port, &callbacks, &idp_log);

    let secret = scratch.path("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let wrong_secret = scratch.path("wrong-secret");
    std::fs::write(&wrong_secret, "not-the-secret\n").unwrap();
    for file in [&secret, &wrong_secret] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (secret, wrong_secret) = (
        secret.display().to_string(),
        wrong_secret.display().to_string(),
    );
    let roles = "[[console.oidc.roles]]\nrole = \"dsl\"\ngroups = [\"Safeguarding\"]\n\
                 [[console.oidc.roles]]\nrole = \"head\"\nemails = [\"Head@School.test\"]\n";
    let closed_port = free_port();
    let mut toml = String::new();
    // The staffroom setting: the provider asks for the password every time.
    toml.push_str(&provider_entry(
        "school",
        "School account",
        &issuer,
        &secret,
        port,
        &format!("prompt = \"login\"\n{roles}"),
    ));
    toml.push_str(&provider_entry(
        "down",
        "Down",
        &format!("http://127.0.0.1:{closed_port}"),
        &secret,
        port,
        roles,
    ));
    toml.push_str(&provider_entry(
        "wrongissuer",
        "Wrong issuer",
        &format!("http://localhost:{idp_port}"),
        &secret,
        port,
        roles,
    ));
    toml.push_str(&provider_entry(
        "badsecret",
        "Bad secret",
        &issuer,
        &wrong_secret,
        port,
        roles,
    ));
    // No role mapping: refused at start, noted on the sign-in page.
    toml.push_str(&provider_entry(
        "broken", "Broken", &issuer, &secret, port, "",
    ));
    let config = collector.dir.join("collector.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&toml);
    std::fs::write(&config, text).unwrap();

    collector.start().unwrap();
    wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();

    let (node, lines) = Script::spawn(
        Command::new("node")
            .arg("sso.mjs")
            .current_dir(console_scripts())
            .env("CONSOLE_URL", format!("http://127.0.0.1:{port}"))
            .env("PASSWORD", PASSWORD),
        Duration::from_secs(240),
    );
    let mut result = None;
    for line in lines {
        if let Some(json) = line.unwrap().strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<serde_json::Value>(json).unwrap());
        }
    }
    let status = node.finish();
    let result = result.expect("the scenario reported a result");
    let log = collector.log_text();
    assert!(
        status.success() && result.get("error").is_none(),
        "browser scenario failed: {result:#}\ncollector log:\n{log}\nprovider log:\n{}",
        std::fs::read_to_string(&idp_log).unwrap_or_default()
    );

    // The audit log: each sign-in and each refusal with its true reason.
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let audit: Vec<(String, String, String)> = db
        .prepare("SELECT actor, action, detail FROM console_audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let has = |actor: &str, action: &str, detail: &str| {
        audit
            .iter()
            .any(|(a, b, c)| a == actor && b == action && c.contains(detail))
    };
    for (actor, action, detail) in [
        (
            "dsl@school.test",
            "login",
            "single sign-on with school as dsl",
        ),
        (
            "head@school.test",
            "login",
            "single sign-on with school as head",
        ),
        (
            "sso",
            "sso_refused",
            "sign-in state unknown, already used or expired",
        ),
        ("sso", "sso_refused", "finished in a different browser"),
        (
            "visitor@school.test",
            "sso_refused",
            "no role is mapped to this account",
        ),
        ("sso", "sso_refused", "ID token refused: wrong audience"),
        ("sso", "sso_refused", "ID token refused: expired"),
        ("sso", "sso_refused", "the provider could not be reached"),
        ("sso", "sso_refused", "does not fit"),
        ("sso", "sso_refused", "invalid_client"),
        ("breakglass", "login", "from 127.0.0.1"),
    ] {
        assert!(
            has(actor, action, detail),
            "no audit entry {actor} {action} '{detail}' in {audit:#?}"
        );
    }
    // The unmapped account got no console account.
    let accounts: Vec<(String, String)> = db
        .prepare("SELECT name, role FROM console_users ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let names: Vec<&str> = accounts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["breakglass", "dsl@school.test", "head@school.test"],
        "{accounts:?}"
    );
    let list = run_ok(collector.cmd().args(["user", "list"])).unwrap();
    assert!(
        list.contains("dsl@school.test\tdsl\tactive\tsingle sign-on")
            && list.contains("breakglass\tdsl\tactive\n"),
        "{list}"
    );
    // The log says why each misconfigured provider failed.
    for reason in [
        "could not be reached",
        "names issuer",
        "invalid_client",
        "no roles are mapped",
    ] {
        assert!(
            log.contains(reason),
            "the log does not say {reason:?}:\n{log}"
        );
    }
    // Forged callbacks from one address are throttled, and stop reaching
    // the audit log (as wrong passwords do).
    let forged: Vec<u16> = (0..25)
        .map(|i| {
            http(
                port,
                "GET",
                &format!("/login/oidc/school/callback?state=forged{i}&code=x"),
                "",
                &[],
            )
            .status
        })
        .collect();
    assert_eq!(forged[0], 403, "{forged:?}");
    assert_eq!(*forged.last().unwrap(), 429, "{forged:?}");
    let unknown_state: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM console_audit WHERE detail LIKE 'sign-in state unknown%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(unknown_state <= 20, "{unknown_state} refusals audited");
    // No token, code or secret in the audit log or the collector's log.
    let audit_text = format!("{audit:?}");
    for text in [&audit_text, &log] {
        assert!(!text.contains("eyJ"), "a JWT was recorded");
        assert!(
            !text.contains(CLIENT_SECRET),
            "the client secret was recorded"
        );
        assert!(
            !text.contains("code="),
            "an authorisation code was recorded"
        );
    }
}
