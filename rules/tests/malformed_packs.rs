//! A malformed pack is refused by `tutela-rules check` and by bundle verification (what
//! the agent runs), each naming the file, the line and the problem.

use tutela_rules::bundle::{self, BundleError};

mod common;
use common::check;

const GOOD: &str = r#"[pack]
id = "t"
name = "T"
version = 2
language = "en-GB"

[[changelog]]
version = 2
date = "2026-12-06"
notes = "x"

[categories.suicide]
severity = 5
threshold = 1.0

[lists.want]
words = ["want", "wanna"]

[lists.group]
identity = true
words = ["muslims", "trans people"]

[[terms]]
category = "suicide"
kind = "pattern"
weight = 1.0
terms = ["{want} to? die"]

[[cues]]
name = "hyperbole"
phrases = ["of embarrassment"]
weight = -0.6
after = 4
"#;

/// (what is broken, the text replaced, its replacement, words the message must hold)
const BROKEN: [(&str, &str, &str, &str); 7] = [
    (
        "bad pattern",
        "terms = [\"{want} to? die\"]",
        "terms = [\"{want to die\"]",
        "written `{name}`",
    ),
    (
        "unknown word list",
        "terms = [\"{want} to? die\"]",
        "terms = [\"{wish} to die\"]",
        "unknown word list `{wish}`",
    ),
    (
        "term weight out of range",
        "weight = 1.0",
        "weight = 40.0",
        "weight 40 is out of range",
    ),
    (
        "threshold out of range",
        "threshold = 1.0",
        "threshold = -1.0",
        "threshold -1 is out of range",
    ),
    (
        "cue weight out of range",
        "weight = -0.6",
        "weight = 0.0",
        "cue weight 0 is out of range",
    ),
    (
        "unknown cue scope",
        "after = 4",
        "within = \"paragraph\"",
        "cue `within` \"paragraph\" is not known",
    ),
    (
        "identity words alone",
        "terms = [\"{want} to? die\"]",
        "terms = [\"the {group}\"]",
        "identity words alone",
    ),
];

/// The 1-based line of `GOOD` that holds `text`.
fn line_of(text: &str) -> usize {
    GOOD.lines().position(|l| l.contains(text)).unwrap() + 1
}

#[test]
fn check_accepts_the_good_pack() {
    let (ok, text) = check("good.toml", GOOD);
    assert!(ok, "{text}");
}

#[test]
fn check_refuses_each_malformed_pack_naming_file_line_and_problem() {
    for (what, from, to, words) in BROKEN {
        let line = line_of(from);
        assert_eq!(GOOD.matches(from).count(), 1, "{what}: test set-up");
        let name = format!("{}.toml", what.replace(' ', "-"));
        let (ok, text) = check(&name, &GOOD.replacen(from, to, 1));
        assert!(!ok, "{what}: check passed\n{text}");
        assert!(
            text.contains(&format!("{name}:{line}:")),
            "{what}: no file and line\n{text}"
        );
        assert!(text.contains(words), "{what}: problem not named\n{text}");
    }
}

#[test]
fn a_signed_bundle_of_a_malformed_pack_is_refused_as_an_agent_would() {
    let key = bundle::load_pkcs8(&bundle::generate_pkcs8().unwrap()).unwrap();
    // The signer validates, so it refuses to sign a malformed pack at all.
    let broken = GOOD.replacen(
        "terms = [\"{want} to? die\"]",
        "terms = [\"{wish} to die\"]",
        1,
    );
    let err = bundle::sign(&broken, &key).unwrap_err();
    assert!(matches!(err, BundleError::InvalidPack(_)), "{err}");
    let at = format!(
        ":{}: pattern `{{wish}} to die`: unknown word list",
        line_of("{want} to? die")
    );
    assert!(err.to_string().contains(&at), "{err}");
    // A good bundle verifies with its lists, patterns and cues.
    let bytes = bundle::sign(GOOD, &key).unwrap();
    let public = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
    let verified = bundle::verify(&bytes, &public, Some(1)).unwrap();
    assert_eq!(verified.pack.lists.len(), 2);
    assert_eq!(verified.pack.cues.len(), 1);
}
