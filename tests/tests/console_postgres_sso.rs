//! Staff single sign-on on a collector whose store is PostgreSQL: a real
//! OpenID provider on loopback (npm `oidc-provider`,
//! tests/console/oidc-provider.mjs), the real collector and real Chromium
//! (tests/console/sso-postgres.mjs). A DSL mapped by group signs in; the
//! account, its link to the provider's subject and the audited sign-in are
//! in PostgreSQL. An address that is a local account's is refused, with the
//! refusal audited.

use std::process::Command;
use std::time::Duration;

use tutela_tests::postgres::PgCluster;
use tutela_tests::script::Script;
use tutela_tests::{console_scripts, free_port, Collector, Scratch};

const PASSWORD: &str = "correct horse battery staple";

/// A collector in `scratch/name` on the PostgreSQL at `url`, with its
/// console on; returns it and the console's port.
fn node(scratch: &Scratch, name: &str, url: &str) -> (Collector, u16) {
    let collector = Collector::init(scratch.path(name)).unwrap();
    collector
        .set_section("storage", &format!("url = \"{url}\""))
        .unwrap();
    let port = free_port();
    collector.set_console_port(port).unwrap();
    (collector, port)
}

/// The OpenID provider's Node process, stopped on drop.
struct IdentityProvider(std::process::Child);

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn on_postgresql_staff_sign_in_with_openid_connect() {
    use std::io::BufRead;
    use std::process::Stdio;
    const SECRET: &str = "client-secret-7Hq2vX9pLmW4";
    let pg = PgCluster::start().unwrap();
    let scratch = Scratch::new("console-postgres-sso");
    let (mut c, port) = node(&scratch, "c", &pg.url());
    // The head's address is a local (password) account already.
    c.add_console_user("head@school.test", "head", PASSWORD)
        .unwrap();
    let idp_port = free_port();
    let mut child = Command::new("node")
        .arg("oidc-provider.mjs")
        .current_dir(console_scripts())
        .env("PORT", idp_port.to_string())
        .env(
            "REDIRECT_URIS",
            format!("http://127.0.0.1:{port}/login/oidc/school/callback"),
        )
        .env("CLIENT_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(scratch.path("provider.log")).unwrap())
        .spawn()
        .expect("node runs");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let _idp = IdentityProvider(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("READY "),
        "the provider did not start: {line:?}"
    );
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let secret = scratch.path("client-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = c.dir.join("collector.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[console.oidc]]\nname = \"school\"\nlabel = \"School account\"\n\
         issuer = \"http://127.0.0.1:{idp_port}\"\nclient_id = \"tutela-console\"\n\
         client_secret_file = \"{}\"\n\
         redirect_url = \"http://127.0.0.1:{port}/login/oidc/school/callback\"\n\
         scopes = [\"email\", \"groups\"]\n\
         [[console.oidc.roles]]\nrole = \"dsl\"\ngroups = [\"Safeguarding\"]\n\
         [[console.oidc.roles]]\nrole = \"head\"\nemails = [\"Head@School.test\"]\n",
        secret.display()
    ));
    std::fs::write(&config, text).unwrap();
    c.start().unwrap();
    tutela_tests::wait_for("the console", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap();

    let (browser, lines) = Script::spawn(
        Command::new("node")
            .arg("sso-postgres.mjs")
            .current_dir(console_scripts())
            .env("CONSOLE_URL", format!("http://127.0.0.1:{port}")),
        Duration::from_secs(120),
    );
    let mut result = None;
    for line in lines {
        if let Some(json) = line.unwrap().strip_prefix("RESULT ") {
            result = Some(json.to_owned());
        }
    }
    let status = browser.finish();
    assert!(
        status.success() && result.is_some(),
        "the browser scenario failed ({status}); collector log:\n{}\nprovider log:\n{}",
        c.log_text(),
        std::fs::read_to_string(scratch.path("provider.log")).unwrap_or_default()
    );
    // The account, its link to the provider's subject and both outcomes
    // are in PostgreSQL.
    assert_eq!(
        pg.query(
            "SELECT role || '|' || (password_hash = '')::TEXT FROM console_users WHERE name = 'dsl@school.test'"
        )
        .unwrap(),
        "dsl|true"
    );
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_oidc_accounts WHERE provider = 'school' AND name = 'dsl@school.test'"
        ),
        1
    );
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'dsl@school.test' AND action = 'login'
             AND detail LIKE 'single sign-on with school as dsl%'"
        ),
        1
    );
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM console_audit WHERE actor = 'head@school.test' AND action = 'sso_refused'
             AND detail LIKE 'a local account has this name%'"
        ),
        1
    );
    assert_eq!(
        pg.count("SELECT COUNT(*) FROM console_oidc_accounts WHERE name = 'head@school.test'"),
        0
    );
    c.kill9();
}
