//! Patterns, weights and cues through the public matcher: batch, typed and explained.

use std::sync::Arc;
use tutela_rules::{Matcher, Scope};

mod common;

const PACK: &str = r#"[pack]
id = "w"
name = "W"
version = 1
language = "en-GB"

[categories.suicide]
severity = 5

[categories.discrimination]
severity = 3

[lists.want]
words = ["want", "wanna", "feel like"]

[lists.group]
identity = true
words = ["muslims", "trans people"]

[[terms]]
category = "suicide"
kind = "pattern"
terms = ["{want} to? die"]

[[terms]]
category = "suicide"
kind = "pattern"
weight = 0.5
terms = ["(hopeless|worthless)", "i hate myself"]

[[terms]]
category = "discrimination"
kind = "pattern"
terms = ["(hate|kill all) ~2 {group}", "{group} (are|r) not welcome"]

[[cues]]
name = "negation"
categories = ["discrimination"]
phrases = ["don't", "dont", "are not"]
weight = -1.0
before = 2

[[cues]]
name = "news"
phrases = ["according to"]
weight = -0.5
anywhere = true
"#;

fn matcher() -> Arc<Matcher> {
    common::compiled(PACK, "w.toml")
}

fn categories(m: &Matcher, text: &str) -> Vec<String> {
    let mut c: Vec<String> = m
        .find(Scope::Typed, text)
        .into_iter()
        .map(|m| m.category.into())
        .collect();
    c.dedup();
    c
}

#[test]
fn a_pattern_catches_the_paraphrase_and_names_itself() {
    let m = matcher();
    let found = m.find(Scope::Typed, "honestly i just wanna die lol");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rule_id, "suicide/{want} to? die");
    assert_eq!(
        &"honestly i just wanna die lol"[found[0].span.clone()],
        "wanna die"
    );
    assert_eq!(categories(&m, "I FEEL LIKE TO DIE"), ["suicide"]);
    assert!(categories(&m, "the plant will die without water").is_empty());
}

#[test]
fn light_terms_alert_only_together() {
    let m = matcher();
    assert!(categories(&m, "i feel hopeless").is_empty());
    assert!(
        categories(&m, "hopeless, hopeless, hopeless").is_empty(),
        "a word repeated is not more evidence"
    );
    assert_eq!(categories(&m, "i feel hopeless and worthless"), ["suicide"]);
    assert_eq!(categories(&m, "worthless. i hate myself"), ["suicide"]);
}

#[test]
fn cues_lower_and_cancel_and_identity_words_never_alert_alone() {
    let m = matcher();
    assert_eq!(categories(&m, "kill all muslims"), ["discrimination"]);
    assert!(categories(&m, "i don't hate trans people").is_empty());
    assert!(categories(&m, "muslims").is_empty());
    assert!(categories(&m, "according to the report, some hate muslims").is_empty());
    let e = m.explain(Scope::Typed, "i dont hate muslims");
    assert!(e.matches.is_empty());
    assert_eq!(e.weighed.len(), 1);
    assert_eq!(e.weighed[0].cues[0].name, "negation");
    assert_eq!(e.weighed[0].score, 0.0);
    assert!(!e.categories[0].alerted);
}

#[test]
fn a_text_wide_cue_counts_only_on_its_own_line() {
    let m = matcher();
    assert!(categories(&m, "according to the report, some hate muslims").is_empty());
    assert_eq!(
        categories(&m, "according to the report it rained\nkill all muslims"),
        ["discrimination"]
    );
    let found = common::typed_matches(&m, "according to the report it rained\nkill all muslims\n");
    assert!(
        found.iter().any(|m| m.category == "discrimination"),
        "{found:?}"
    );
}

#[test]
fn typed_text_is_weighed_as_it_is_typed() {
    let m = matcher();
    let mut typed = m.typed();
    let mut found = Vec::new();
    for c in "i feel hopeless. so worthless. ".chars() {
        found.extend(typed.push(c));
    }
    let rules: Vec<&str> = found.iter().map(|m| m.rule_id.as_str()).collect();
    assert!(rules.contains(&"suicide/(hopeless|worthless)"), "{rules:?}");
    let mut typed = m.typed();
    let mut found = Vec::new();
    for c in "i dont hate muslims ".chars() {
        found.extend(typed.push(c));
    }
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_pattern_written_with_a_negator_is_not_cancelled_by_its_own_words() {
    let m = matcher();
    assert_eq!(
        categories(&m, "muslims are not welcome here"),
        ["discrimination"]
    );
    assert!(
        categories(&m, "muslims dont are not welcome").is_empty(),
        "a negator before the match still counts"
    );
    let e = m.explain(Scope::Typed, "trans people are not welcome");
    assert_eq!(e.weighed.len(), 1);
    assert!(e.weighed[0].cues.is_empty(), "{:?}", e.weighed[0].cues);
}
