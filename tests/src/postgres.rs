//! A throwaway PostgreSQL cluster for the store tests: `initdb` in a scratch
//! directory, listening on loopback only, password authentication, no
//! fsync. Run as `postgres` when the tests run as root (PostgreSQL refuses
//! root). Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{free_port, is_root, run_ok, Scratch};

/// A running cluster.
#[derive(Debug)]
pub struct PgCluster {
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    // Last: removed once the server has stopped.
    scratch: Scratch,
}

/// Where Debian keeps the server's programs (not on PATH).
fn server_bin() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists());
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed; run tests/setup-debian.sh (package postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no initdb under /usr/lib/postgresql; run tests/setup-debian.sh")
}

impl PgCluster {
    /// Makes and starts a cluster; its superuser is `tutela`.
    pub fn start() -> Result<Self> {
        let bin = server_bin()?;
        let scratch = Scratch::new("postgres");
        let home = scratch.path("pg");
        std::fs::create_dir_all(&home)?;
        let password = format!("pw-{}", crate::free_port());
        std::fs::write(home.join("pwfile"), &password)?;
        let as_postgres = is_root();
        if as_postgres {
            run_ok(Command::new("chown").arg("-R").arg("postgres:").arg(&home))?;
        }
        let cluster = Self {
            data: home.join("data"),
            bin,
            port: free_port(),
            password,
            as_postgres,
            scratch,
        };
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                cluster.data.as_os_str(),
                "-U".as_ref(),
                "tutela".as_ref(),
                format!("--pwfile={}", home.join("pwfile").display()).as_ref(),
                "-A".as_ref(),
                "scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Starts the server (again, after [`PgCluster::stop`]) on the same port.
    pub fn start_server(&self) -> Result<()> {
        let home = self.scratch.path("pg");
        // fsync off (the operating system still has every write when the
        // server stops abruptly); synchronous_commit stays on, or a commit
        // acknowledged just before `stop` would be lost.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=60",
            self.port,
            home.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data.as_os_str(),
                "-l".as_ref(),
                home.join("log").as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        )?;
        Ok(())
    }

    /// Stops the server at once (clients' connections are cut), as a
    /// database that goes away would.
    pub fn stop(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        Ok(())
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args).current_dir(self.scratch.path("pg"));
        run_ok(&mut cmd)
    }

    /// The URL of database `postgres` with the right password.
    pub fn url(&self) -> String {
        self.url_with_password(&self.password)
    }

    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://tutela:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Makes database `name` and returns its URL.
    pub fn database(&self, name: &str) -> Result<String> {
        self.query(&format!("CREATE DATABASE {name}"))?;
        Ok(format!(
            "postgres://tutela:{}@127.0.0.1:{}/{name}",
            self.password, self.port
        ))
    }

    /// Turns TLS on with `cert_pem` and `key_pem` (a server certificate and
    /// its key) and refuses connections without it (`hostssl`), then
    /// restarts the server.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = self.data.join(name);
            std::fs::write(&path, text)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            if self.as_postgres {
                run_ok(Command::new("chown").arg("postgres:").arg(&path))?;
            }
        }
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text)?;
        let hba = self.data.join("pg_hba.conf");
        let rules: String = std::fs::read_to_string(&hba)?
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, rules)?;
        self.stop()?;
        self.start_server()
    }

    /// Runs `sql` with psql; returns its rows, one a line, columns split by `|`.
    pub fn query(&self, sql: &str) -> Result<String> {
        self.query_in("postgres", sql)
    }

    /// Runs `sql` with psql in database `db`.
    pub fn query_in(&self, db: &str, sql: &str) -> Result<String> {
        let psql = self.bin.join("psql");
        let psql = if psql.exists() {
            psql
        } else {
            Path::new("psql").to_owned()
        };
        let out = Command::new(psql)
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "tutela", "-d", db])
            .args(["-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The server's process id (its backends are its children), while it runs.
    pub fn server_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// One number from `sql`.
    pub fn count(&self, sql: &str) -> i64 {
        let text = self.query(sql).unwrap();
        text.parse()
            .unwrap_or_else(|_| panic!("{sql} gave {text:?}, not a number"))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A test certificate authority and a server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA, and a server certificate for `names` (host names or IP addresses).
    pub fn new(names: &[&str]) -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Tutela test database CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)?.signed_by(&key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
