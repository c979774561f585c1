//! The pack format: a good pack parses with its options resolved; problems are reported
//! with their lines.

use tutela_rules::{AgeBand, CaptureMode, Pack, PackError, Scope};

const GOOD: &str = r#"
[pack]
id = "t"
name = "Test"
version = 3
language = "en-GB"

[[changelog]]
version = 3
date = "2026-01-01"
notes = "x"

[categories.violence]
severity = 3
domains = ["Gore.Example.org"]

[[terms]]
category = "violence"
terms = ["kill", "stab"]

[[terms]]
category = "violence"
kind = "phrase"
terms = ["kill you"]
severity = 5
scope = ["typed", "process"]
age = "secondary"
context = ["tonight"]
capture = "burst"

[[exceptions]]
category = "violence"
phrases = ["kill a python process"]
"#;

#[test]
fn parses_a_good_pack() {
    let p = Pack::parse(GOOD, "t.toml").unwrap();
    assert_eq!(p.id, "t");
    assert_eq!(p.version, 3);
    assert_eq!(p.terms.len(), 3);
    assert_eq!(p.terms[0].severity, 3);
    assert_eq!(
        p.terms[0].scopes,
        vec![Scope::Typed, Scope::Title, Scope::Search, Scope::Url]
    );
    assert_eq!(p.terms[2].severity, 5);
    assert_eq!(p.terms[2].capture, CaptureMode::Burst);
    assert_eq!(p.terms[2].age, AgeBand::Secondary);
    assert_eq!(p.terms[2].line, 24);
    assert_eq!(p.categories[0].domains, vec!["gore.example.org"]);
    assert_eq!(p.exceptions[0].category.as_deref(), Some("violence"));
}

#[test]
fn reports_problems_with_lines() {
    let bad = GOOD
        .replace("severity = 5\n", "severity = 9\n")
        .replace(
            "category = \"violence\"\nterms = [\"kill\", \"stab\"]",
            "category = \"violense\"\nterms = [\"kill\"]",
        )
        .replace("\"process\"]", "\"screen\"]");
    let err = Pack::parse(&bad, "bad.toml").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bad.toml:18: unknown category `violense`"),
        "{text}"
    );
    assert!(text.contains("severity 9 is out of range"), "{text}");
    assert!(text.contains("unknown scope `screen`"), "{text}");
}

#[test]
fn syntax_errors_have_lines() {
    let err = Pack::parse("[pack]\nid = \"x\"\nversion = \"one\"\n", "s.toml").unwrap_err();
    assert!(matches!(err, PackError::Syntax { .. }), "{err}");
    assert!(err.to_string().starts_with("s.toml:"), "{err}");
    let err = Pack::parse("[pack\n", "s.toml").unwrap_err();
    assert!(err.to_string().starts_with("s.toml:1:"), "{err}");
}

#[test]
fn invalid_regex_is_reported() {
    let text = GOOD.replace(
        "kind = \"phrase\"\nterms = [\"kill you\"]",
        "kind = \"regex\"\nterms = [\"kil(\"]",
    );
    let err = Pack::parse(&text, "r.toml").unwrap_err();
    assert!(
        err.to_string().contains("r.toml:24: invalid regex"),
        "{err}"
    );
}
