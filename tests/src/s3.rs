//! moto's S3-compatible server on loopback, for the tests and benchmarks of
//! captures in object storage; installed by tests/setup-debian.sh into
//! tests/s3/venv unless Python already has it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{find_program, run_ok, wait_for};

/// The bucket the tests use.
pub const BUCKET: &str = "tutela-captures";

/// Bucket operations through boto3 (installed with moto): create, list
/// (one key a line) and get (bytes in decimal).
const S3_PY: &str = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="moto",
                  aws_secret_access_key="moto", region_name="us-east-1")
op, bucket = sys.argv[2], sys.argv[3]
if op == "create":
    s3.create_bucket(Bucket=bucket)
elif op == "list":
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        print(o["Key"])
elif op == "get":
    print(" ".join(str(b) for b in s3.get_object(Bucket=bucket, Key=sys.argv[4])["Body"].read()))
"#;

/// `program` in the tests' own Python environment, if setup made one.
fn venv(program: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("s3/venv/bin")
        .join(program);
    path.exists().then_some(path)
}

/// moto's S3 server on a loopback port; in memory, so a restart empties it.
pub struct Moto {
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Moto {
    pub fn start(port: u16, log: PathBuf) -> Self {
        let mut moto = Self {
            port,
            log,
            child: None,
        };
        moto.restart();
        moto
    }

    pub fn restart(&mut self) {
        let program = venv("moto_server")
            .or_else(|| find_program("moto_server"))
            .expect("moto_server is installed (run tests/setup-debian.sh)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_for("moto listening", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .unwrap();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn s3(&self, args: &[&str]) -> String {
        run_ok(
            Command::new(venv("python").unwrap_or_else(|| "python3".into()))
                .args(["-c", S3_PY, &self.endpoint()])
                .args(args),
        )
        .unwrap()
    }

    pub fn create_bucket(&self) {
        self.s3(&["create", BUCKET]);
    }

    pub fn keys(&self) -> Vec<String> {
        self.s3(&["list", BUCKET])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn object(&self, key: &str) -> Vec<u8> {
        self.s3(&["get", BUCKET, key])
            .split_whitespace()
            .map(|b| b.parse().unwrap())
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
