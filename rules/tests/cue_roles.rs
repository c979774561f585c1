//! Cues that lower only some roles of a category's terms (`role` on a term group,
//! `lowers` on a cue group): news of the fight against a group lowers the words that name
//! the subject, not a supporter's own words beside them. Through the public matcher, batch,
//! typed and explained, and through `tutela-rules check` for malformed keys.

use std::sync::Arc;
use tutela_rules::{Matcher, Scope};

mod common;
use common::{alerts, alerts_typed, check, compiled};

const PACK: &str = r#"[pack]
id = "r"
name = "R"
version = 1
language = "en-GB"

[categories.extremism]
severity = 4

[categories.violence]
severity = 3

[[terms]]
category = "extremism"
kind = "pattern"
terms = ["(join|long live|lions of) ~2 (isis|the caliphate)"]

[[terms]]
category = "extremism"
kind = "pattern"
weight = 0.6
role = "topic"
terms = ["(isis|caliphate)"]

[[terms]]
category = "extremism"
kind = "pattern"
weight = 0.4
role = "topic"
terms = ["(isis|caliphate) ~~6 (raqqa|attack|fighters)"]

[[terms]]
category = "violence"
terms = ["stab him"]

[[cues]]
name = "the fight told"
categories = ["extremism"]
phrases = ["airstrikes", "liberated"]
weight = -0.5
anywhere = true
lowers = ["topic"]

[[cues]]
name = "a crime told"
categories = ["extremism"]
phrases = ["burned"]
weight = -1.0
before = 4
after = 4
lowers = ["topic"]

[[cues]]
name = "condemned"
categories = ["extremism"]
phrases = ["cowards"]
weight = -0.5
anywhere = true
"#;

fn matcher(text: &str) -> Arc<Matcher> {
    compiled(text, "r.toml")
}

#[test]
fn a_supporter_beside_a_word_of_the_fight_alerts() {
    let m = matcher(PACK);
    for text in [
        "long live isis, the airstrikes will not stop us",
        "i want to join isis, they liberated nothing",
        "lions of the caliphate, the airstrikes mean nothing",
    ] {
        assert!(alerts(&m, text), "{text}");
        assert!(alerts_typed(&m, &format!("{text}\n")), "typed: {text}");
    }
    // The same pack without `lowers`: the cue lowers the supporter too (what v8 did).
    let old = matcher(&PACK.replace("lowers = [\"topic\"]\n", ""));
    assert!(!alerts(
        &old,
        "long live isis, the airstrikes will not stop us"
    ));
}

#[test]
fn news_of_the_fight_stays_lowered() {
    let m = matcher(PACK);
    // Topic words alone reach the threshold (0.6 + 0.4) ...
    assert!(alerts(&m, "isis fighters in raqqa"));
    // ... and news of the fight lowers them under it.
    assert!(!alerts(&m, "airstrikes hit isis fighters in raqqa"));
    assert!(!alerts_typed(&m, "airstrikes hit isis fighters in raqqa\n"));
    assert!(!alerts(&m, "the town was liberated from isis fighters"));
    // A cue that names no role still lowers everything: condemnation lowers support words.
    assert!(!alerts(&m, "cowards who join isis"));
}

#[test]
fn a_role_cue_takes_only_what_the_topic_words_add() {
    let m = matcher(PACK);
    let e = m.explain(
        Scope::Typed,
        "long live isis, the airstrikes will not stop us",
    );
    let cat = e
        .categories
        .iter()
        .find(|c| c.category == "extremism")
        .unwrap();
    assert!(cat.alerted);
    // 'isis' (topic, 0.6) is inside the supporter's match and adds nothing; nothing of the
    // topic is left to lower, so the cue takes nothing and is not listed.
    assert!(cat.anywhere.is_empty(), "{:?}", cat.anywhere);
    assert!((cat.score - 1.0).abs() < 1e-4, "{}", cat.score);
    // Beside topic words of 0.4 (a second name near 'raqqa'), it takes those, no more.
    let e = m.explain(
        Scope::Typed,
        "long live isis and its fighters in raqqa, whatever the airstrikes",
    );
    let cat = &e.categories[0];
    assert!(cat.alerted);
    assert_eq!(cat.anywhere.len(), 1);
    assert!(
        (cat.anywhere[0].weight + 0.4).abs() < 1e-4,
        "{:?}",
        cat.anywhere
    );
    assert!((cat.score - 1.0).abs() < 1e-4, "{}", cat.score);
}

#[test]
fn a_local_role_cue_lowers_only_topic_matches() {
    let m = matcher(PACK);
    let e = m.explain(Scope::Typed, "isis burned the town, join isis now");
    for w in &e.weighed {
        let lowered = w.cues.iter().any(|c| c.name == "a crime told");
        let topic = !w.matched.rule_id.contains("long live");
        assert_eq!(lowered, topic, "{}: {:?}", w.matched.rule_id, w.cues);
    }
    assert!(alerts(&m, "isis burned the town, join isis now"));
    assert!(!alerts(&m, "isis fighters burned the town"));
}

#[test]
fn check_refuses_unknown_roles_naming_file_line_and_problem() {
    let (ok, text) = check("good.toml", PACK);
    assert!(ok, "{text}");
    let line_of = |s: &str| PACK.lines().position(|l| l.contains(s)).unwrap() + 1;
    let anywhere_lowers = line_of("lowers = [\"topic\"]");
    let broken: [(&str, String, usize, &str); 5] = [
        (
            "a role no term has",
            PACK.replacen("lowers = [\"topic\"]", "lowers = [\"topix\"]", 1),
            anywhere_lowers,
            "lowers role `topix`, but no term group of extremism has `role = \"topix\"`",
        ),
        (
            "a role name that is not a name",
            PACK.replacen("role = \"topic\"", "role = \"Topic words\"", 1),
            line_of("role = \"topic\""),
            "term role `Topic words` is not a name",
        ),
        (
            "lowers on a raising cue",
            PACK.replacen("weight = -1.0", "weight = 1.0", 1),
            line_of("after = 4") + 1,
            "raises (weight above 0) but has `lowers`",
        ),
        (
            "an empty lowers",
            PACK.replacen("lowers = [\"topic\"]", "lowers = []", 1),
            anywhere_lowers,
            "has an empty `lowers`",
        ),
        (
            "a role of another category",
            PACK.replacen(
                "categories = [\"extremism\"]",
                "categories = [\"violence\"]",
                1,
            ),
            anywhere_lowers,
            "no term group of violence has `role = \"topic\"`",
        ),
    ];
    for (what, pack, line, words) in broken {
        let name = format!("{}.toml", what.replace(' ', "-"));
        let (ok, text) = check(&name, &pack);
        assert!(!ok, "{what}: check passed\n{text}");
        assert!(
            text.contains(&format!("{name}:{line}:")),
            "{what}: no file and line {line}\n{text}"
        );
        assert!(text.contains(words), "{what}: problem not named\n{text}");
    }
}
