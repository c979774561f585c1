//! The browser extension's cost while a pupil types (issue 19): 60 s of
//! homework typed at 10 keys/s into a text area in headless Chromium, once
//! without the extension (the baseline, same run) and once with it, enrolled
//! with a real collector on loopback and running its rules. Reports the CPU
//! time of all the browser's processes over each run, their difference (the
//! extension's cost: its service worker and its content script in the page)
//! and the extension process's own time; and the extension's packed size
//! (what a school's devices download: the files Chrome loads, zipped).
//!
//! Run: `cargo build --bins -p tutela-collector`, `sh extension/build.sh`,
//! then `cargo bench -p tutela-tests --bench extension`. Needs root (the
//! managed policy file) and Node with tests/console's playwright-core.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tutela_tests::extension::{spki_pin, Policy, TEST_PACK};
use tutela_tests::{run_ok, Collector, Scratch};

/// Target: the extension costs at most 1% of a core while typing.
const TYPING_CPU_TARGET: f64 = 1.0;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The files Chrome loads from extension/, zipped (deflate), in bytes.
fn packed_size(dir: &Path) -> u64 {
    let out = std::env::temp_dir().join(format!("tutela-extension-{}.zip", std::process::id()));
    let _ = std::fs::remove_file(&out);
    // Every file at the top of extension/ but its build script: what the
    // unpacked extension is (extension/wasm is the engine's source).
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "build.sh")
        .collect();
    files.sort();
    let zipped = Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&out)
        .args(&files)
        .current_dir(dir)
        .status()
        .expect("python3 runs");
    assert!(zipped.success(), "zipping the extension failed");
    let size = std::fs::metadata(&out).unwrap().len();
    let _ = std::fs::remove_file(&out);
    size
}

fn main() {
    let extension = workspace().join("extension");
    assert!(
        extension.join("tutela.wasm").exists(),
        "run `sh extension/build.sh` first"
    );
    let wasm = std::fs::metadata(extension.join("tutela.wasm"))
        .unwrap()
        .len();
    let packed = packed_size(&extension);
    println!(
        "extension packed: {:.0} KB zipped ({:.0} KB of it unzipped is the WebAssembly engine)",
        packed as f64 / 1000.0,
        wasm as f64 / 1000.0
    );

    let scratch = Scratch::new("extension-bench");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    let pack = scratch.path("pack.toml");
    std::fs::write(&pack, TEST_PACK).unwrap();
    run_ok(collector.cmd().args(["rules", "push"]).arg(&pack)).unwrap();
    collector.start().unwrap();
    let _policy = Policy::write(serde_json::json!({
        "enrolment_token": collector.token(&[]).unwrap(),
        "station": "bench-chromebook",
    }));
    let cert = std::fs::read_to_string(collector.dir.join("collector.crt")).unwrap();
    let out = Command::new("node")
        .arg("extension-typing.mjs")
        .current_dir(workspace().join("tests/console"))
        .env("EXTENSION_DIR", &extension)
        .env("PROFILE_DIR", scratch.path("profile"))
        .env("SPKI", spki_pin(&cert))
        .output()
        .expect("node runs");
    std::io::stderr().write_all(&out.stderr).unwrap();
    assert!(out.status.success(), "the typing run failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CPU "))
        .expect("the typing run reports its CPU time");
    let cpu: serde_json::Value = serde_json::from_str(json).unwrap();
    let seconds = |run: &str, what: &str| cpu[run][what].as_f64().unwrap();
    let wall = seconds("with", "wall_s");
    let cost = seconds("with", "cpu_s") - seconds("without", "cpu_s");
    let percent = 100.0 * cost / wall;
    println!(
        "typing 10 keys/s for {wall:.0} s: browser without the extension {:.2} s CPU, with it {:.2} s \
         (extension process {:.2} s): the extension costs {cost:.2} s, {percent:.2}% of a core \
         (target <= {TYPING_CPU_TARGET}%), ratio to the baseline {:.2}",
        seconds("without", "cpu_s"),
        seconds("with", "cpu_s"),
        seconds("with", "extension_process_cpu_s"),
        seconds("with", "cpu_s") / seconds("without", "cpu_s"),
    );
    collector.kill9();
}
