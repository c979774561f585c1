//! `tutela-collector rules push` refuses a malformed pack (bad pattern, unknown word list,
//! weight out of range) naming the file, the line and the problem, and publishes nothing.

use tutela_tests::{run_failing, Collector, Scratch};

const PACK: &str = r#"[pack]
id = "refusal-test"
name = "Refusal test"
version = 7
language = "en-GB"

[[changelog]]
version = 7
date = "2026-12-06"
notes = "x"

[categories.suicide]
severity = 5

[lists.want]
words = ["want", "wanna"]

[[terms]]
category = "suicide"
kind = "pattern"
weight = 1.0
terms = ["{want} to? die"]
"#;

#[test]
fn rules_push_refuses_malformed_packs_with_file_line_and_problem() {
    let scratch = Scratch::new("pack-refusal");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let line = PACK.lines().position(|l| l.contains("terms = [")).unwrap() + 1;
    let weight_line = PACK.lines().position(|l| l.contains("weight = ")).unwrap() + 1;
    for (name, from, to, at, words) in [
        (
            "bad-pattern.toml",
            "{want} to? die",
            "{want to die",
            line,
            "written `{name}`",
        ),
        (
            "unknown-list.toml",
            "{want} to? die",
            "{wish} to die",
            line,
            "unknown word list `{wish}`",
        ),
        (
            "heavy.toml",
            "weight = 1.0",
            "weight = 11.0",
            weight_line,
            "weight 11 is out of range",
        ),
    ] {
        let file = scratch.path(name);
        std::fs::write(&file, PACK.replacen(from, to, 1)).unwrap();
        let out = run_failing(collector.cmd().args(["rules", "push"]).arg(&file));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{name}:{at}:")),
            "{name}: no file and line:\n{stderr}"
        );
        assert!(
            stderr.contains(words),
            "{name}: problem not named:\n{stderr}"
        );
    }
    let status = collector.cmd().args(["rules", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(!text.contains("refusal-test"), "nothing published: {text}");
}
