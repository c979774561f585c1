//! A second, independent client (Python, `tests/interop/`, written from
//! `docs/PROTOCOL.md` with grpcio and cryptography): it rebuilds the test
//! vectors, then against the real collector enrols, verifies the live and
//! shadow bundles and the exemption set it is sent, sends events and checks
//! every refusal status, heartbeats, re-keys, and after `agents revoke` finds
//! every path refused; an open rule stream ends with UNAVAILABLE when the
//! collector stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tutela_proto::token::EnrolmentToken;
use tutela_tests::packs::{small_pack, weapons, About};
use tutela_tests::{run_ok, Collector, Scratch};

fn python() -> PathBuf {
    tutela_tests::python_with("grpc, cryptography, tomllib").expect(
        "a Python 3.11 or later with grpc and cryptography; run tests/setup-debian.sh (python3-grpcio, python3-cryptography)",
    )
}

fn client(python: &PathBuf, args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/tutela_client.py");
    let out = Command::new(python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(script)
        .args(args)
        .output()
        .expect("the Python client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn an_independent_python_client_speaks_the_documented_protocol() {
    let python = python();
    // The test vectors, rebuilt by the second implementation.
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol-vectors.json");
    let out = client(&python, &["vectors", vectors.to_str().unwrap()]);
    assert!(out.contains("all cases passed"), "{out}");
    let scratch = Scratch::new("interop-python");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    // Published before serving, so the first subscription holds them all.
    let about = About::new("interop", "Interop pack", "A pack for the second client.");
    let live = scratch.path("live.toml");
    std::fs::write(&live, small_pack(&about, 1, &[weapons(&["zip gun"])])).unwrap();
    run_ok(collector.cmd().args(["rules", "push"]).arg(&live)).unwrap();
    let shadow = scratch.path("shadow.toml");
    std::fs::write(
        &shadow,
        small_pack(&about, 2, &[weapons(&["zip gun", "pipe bomb"])]),
    )
    .unwrap();
    run_ok(
        collector
            .cmd()
            .args(["rules", "push", "--shadow"])
            .arg(&shadow),
    )
    .unwrap();
    run_ok(collector.cmd().args([
        "exemption",
        "add",
        "--group",
        "year-10",
        "--category",
        "drugs",
        "--until",
        "7d",
        "--reason",
        "PSHE: drugs education",
    ]))
    .unwrap();
    let notice = scratch.path("notice.txt");
    std::fs::write(&notice, "This computer is monitored to keep you safe.").unwrap();
    run_ok(
        collector
            .cmd()
            .args(["notice", "set", "--group", "year-10", "--file"])
            .arg(&notice),
    )
    .unwrap();
    let token = collector.token(&["--group", "year-10"]).unwrap();
    // A token the client waits out, and one revoked (by the first 12 hex
    // digits of its secret's SHA-256, as `token list` shows it).
    let expiring = collector.token(&["--expires", "1s"]).unwrap();
    let revoked = collector.token(&[]).unwrap();
    let secret = EnrolmentToken::decode(&revoked, 0).unwrap().secret;
    let id =
        hex::encode(&ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref()[..6]);
    run_ok(collector.cmd().args(["token", "revoke", &id])).unwrap();
    collector.start().unwrap();
    let state = scratch.path("client-state.json");
    let state = state.to_str().unwrap();

    let out = client(&python, &["run", &token, state, &expiring, &revoked]);
    assert!(out.contains("all cases passed"), "{out}");
    let cases = out.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(cases >= 45, "{cases} cases:\n{out}");

    // What the client sent is what the collector holds: events 1, 2, 5, 6
    // and 7 of the first identity (6 with its chain flagged) and event 1 of
    // the re-keyed one, and the gap 3-4.
    let state_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    let first = state_json["agent_id"].as_str().unwrap();
    // The problems its last heartbeat reported, as the collector keeps them: the first 8,
    // one line each, at most 256 bytes.
    let problems: String = rusqlite::Connection::open(collector.dir.join("tutela.db"))
        .unwrap()
        .query_row(
            "SELECT problems FROM agents WHERE agent_id = ?1",
            [first],
            |r| r.get(0),
        )
        .unwrap();
    let kept: Vec<&str> = problems.lines().collect();
    assert_eq!(kept.len(), 8, "{problems:?}");
    assert_eq!(kept[0], "captures failing");
    assert!(
        kept[1].contains("line one") && kept[1].contains("line two"),
        "{problems:?}"
    );
    assert!(kept.iter().all(|p| p.len() <= 256), "{problems:?}");
    assert_eq!(kept[7], "p8");
    let alerts = collector.alerts().unwrap();
    let seqs: Vec<(String, i64, bool)> = alerts
        .iter()
        .map(|a| {
            (
                a["agent_id"].as_str().unwrap().to_owned(),
                a["seq"].as_i64().unwrap(),
                a["chain_ok"].as_bool().unwrap(),
            )
        })
        .collect();
    let of_first: Vec<(i64, bool)> = seqs
        .iter()
        .filter(|(id, ..)| id == first)
        .map(|(_, s, ok)| (*s, *ok))
        .collect();
    assert_eq!(
        of_first,
        [
            (1, true),
            (2, true),
            (5, true),
            (6, false),
            (7, true),
            (8, true),
            (9, true)
        ],
        "{alerts:?}"
    );
    assert_eq!(seqs.len(), 8, "{seqs:?}");
    let gaps = run_ok(collector.cmd().args(["alerts", "gaps"])).unwrap();
    assert!(gaps.contains(&format!("{first} 3..=4")), "{gaps}");

    // While another connection holds the store's write lock, every write
    // the client tries is refused with UNAVAILABLE and nothing is kept.
    let unavailable_token = collector.token(&[]).unwrap();
    let spare_token = collector.token(&[]).unwrap();
    let mut child = Command::new(&python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/tutela_client.py"))
        .args(["unavailable", &unavailable_token, &spare_token, state])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "READY", "the spare identity enrolled");
    let agents_before = count_agents(&collector);
    let lock = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    writeln!(child.stdin.take().unwrap(), "locked").unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    lock.execute_batch("ROLLBACK").unwrap();
    print!("{out}");
    assert!(
        status.success() && out.contains("all cases passed"),
        "{out}"
    );
    assert_eq!(collector.alerts().unwrap().len(), 8, "no event kept");
    assert_eq!(
        count_agents(&collector),
        agents_before,
        "no agent enrolled or re-keyed"
    );

    run_ok(collector.cmd().args(["agents", "revoke", "--only", first])).unwrap();
    let fresh_token = collector.token(&["--group", "year-10"]).unwrap();
    let out = client(&python, &["revoked", &fresh_token, state]);
    assert!(out.contains("all cases passed"), "{out}");
    assert_eq!(
        collector.alerts().unwrap().len(),
        8,
        "nothing stored after the revocation"
    );

    // Stopping the collector ends an open rule stream with UNAVAILABLE (and
    // says why), so the agent subscribes again, to another address or later.
    let stopping_token = collector.token(&[]).unwrap();
    let mut child = Command::new(&python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/tutela_client.py"))
        .args(["stopping", &stopping_token])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "READY", "the client subscribed");
    let mut serving = collector.child.take().expect("the collector is serving");
    run_ok(Command::new("kill").args(["-s", "INT", &serving.id().to_string()])).unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    print!("{out}");
    assert!(
        status.success() && out.contains("all cases passed"),
        "{out}\n{}",
        collector.log_text()
    );
    assert!(
        serving.wait().unwrap().success(),
        "{}",
        collector.log_text()
    );
}

fn count_agents(collector: &Collector) -> i64 {
    rusqlite::Connection::open(collector.dir.join("tutela.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM agents", [], |r| r.get(0))
        .unwrap()
}
