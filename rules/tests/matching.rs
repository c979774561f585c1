//! Matching behaviour through the public API.

use std::sync::Arc;
use tutela_rules::{AgeBand, CaptureMode, CompileOptions, Matcher, Pack, Scope};

const PACK: &str = r#"
[pack]
id = "test"
name = "Test pack"
version = 7
language = "en-GB"

[categories.suicide]
severity = 5
capture = "burst"

[categories.violence]
severity = 3
domains = ["gore.example"]

[categories.discrimination]
severity = 3

[categories.weapons]
severity = 3

[categories.illegal]
severity = 2

[[terms]]
category = "suicide"
kind = "phrase"
terms = ["kill myself", "end my life"]

[[terms]]
category = "suicide"
terms = ["suicide"]

[[terms]]
category = "suicide"
kind = "prefix"
terms = ["suicid"]
severity = 4

[[terms]]
category = "violence"
terms = ["kill", "shoot", "assassin"]

[[terms]]
category = "violence"
terms = ["stab"]
context = ["tomorrow", "school"]

[[terms]]
category = "discrimination"
terms = ["cunt"]

[[terms]]
category = "weapons"
kind = "regex"
terms = ['\bgun ?s(?:hop|tore)\b']

[[terms]]
category = "illegal"
terms = ["tor", "psiphon"]
scope = ["process"]

[[terms]]
category = "violence"
terms = ["fight"]
age = "primary"

[[exceptions]]
category = "violence"
phrases = ["assassin's creed", "shoot the basketball", "kill a python process", "kill the process"]
"#;

fn matcher() -> Matcher {
    Matcher::compile(
        &Pack::parse(PACK, "test.toml").unwrap(),
        &CompileOptions::default(),
    )
    .unwrap()
}

fn rules(m: &Matcher, scope: Scope, text: &str) -> Vec<String> {
    m.find(scope, text)
        .into_iter()
        .map(|m| m.rule_id.into())
        .collect()
}

#[test]
fn matches_disguised_terms_with_spans_in_the_original() {
    let m = matcher();
    let text = "I want to K.I.L.L   mys3lf tonight";
    let found = m.find(Scope::Typed, text);
    let ids: Vec<_> = found.iter().map(|m| m.rule_id.as_str()).collect();
    assert_eq!(ids, ["violence/kill", "suicide/kill myself"]);
    assert_eq!(&text[found[1].span.clone()], "K.I.L.L   mys3lf");
    assert_eq!(&text[found[0].span.clone()], "K.I.L.L");
    assert_eq!(found[1].severity, 5);
    assert_eq!(found[1].capture, CaptureMode::Burst);
    assert_eq!(found[1].context, text);
    assert_eq!(
        &found[1].context[found[1].context_span.clone()],
        "K.I.L.L   mys3lf"
    );

    for text in [
        "suiiicide",
        "s u i c i d e",
        "$u1c1de",
        "ѕuісіdе",
        "su\u{200B}icide",
        "SUICIDE!!!",
    ] {
        assert!(
            rules(&m, Scope::Title, text).contains(&"suicide/suicide".to_string()),
            "{text}"
        );
    }
    assert_eq!(
        rules(&m, Scope::Search, "suicidal thoughts"),
        ["suicide/suicid"]
    );
}

#[test]
fn scunthorpe_problem() {
    let m = matcher();
    assert!(rules(&m, Scope::Title, "Scunthorpe United 2-1 Hull").is_empty());
    assert!(rules(&m, Scope::Title, "Assassin's Creed Valhalla").is_empty());
    assert!(rules(&m, Scope::Typed, "how do I kill a python process").is_empty());
    assert!(rules(&m, Scope::Typed, "shoot the basketball from the line").is_empty());
    assert!(rules(&m, Scope::Typed, "skills and killjoy").is_empty());
    assert_eq!(
        rules(&m, Scope::Typed, "I will shoot him"),
        ["violence/shoot"]
    );
    assert_eq!(
        rules(&m, Scope::Typed, "the assassin is here"),
        ["violence/assassin"]
    );
    // An exception cancels only its own category.
    assert_eq!(
        rules(&m, Scope::Typed, "kill myself like I kill a python process"),
        ["violence/kill", "suicide/kill myself"]
    );
}

#[test]
fn explain_reports_exceptions_and_context() {
    let m = matcher();
    let e = m.explain(Scope::Typed, "kill a python process then stab it");
    assert!(e.matches.is_empty());
    assert_eq!(e.cancelled.len(), 1);
    assert_eq!(e.cancelled[0].exception, "kill a python process");
    assert_eq!(e.missing_context.len(), 1);
    assert_eq!(e.missing_context[0].rule_id, "violence/stab");
    assert_eq!(e.normalised, "kil a python proces then stab it");
    assert_eq!(
        rules(&m, Scope::Typed, "gonna stab him at school"),
        ["violence/stab"]
    );
}

#[test]
fn scopes_regexes_and_age() {
    let m = matcher();
    assert!(rules(&m, Scope::Title, "tor").is_empty());
    assert_eq!(rules(&m, Scope::Process, "tor.exe"), ["illegal/tor"]);
    assert_eq!(
        rules(&m, Scope::Search, "gunshop near me"),
        ["weapons/\\bgun ?s(?:hop|tore)\\b"]
    );
    assert_eq!(rules(&m, Scope::Typed, "a fight"), ["violence/fight"]);
    let pack = Pack::parse(PACK, "test.toml").unwrap();
    let secondary = Matcher::compile(
        &pack,
        &CompileOptions {
            age: AgeBand::Secondary,
        },
    )
    .unwrap();
    assert!(rules(&secondary, Scope::Typed, "a fight").is_empty());
    assert_eq!(secondary.term_count(), m.term_count() - 1);
    assert_eq!((m.pack_id(), m.version()), ("test", 7));
}

#[test]
fn urls() {
    let m = matcher();
    let found = m.find_url("https://www.google.co.uk/search?q=how+to+kill+myself&hl=en");
    let ids: Vec<_> = found.iter().map(|m| m.rule_id.as_str()).collect();
    assert!(ids.contains(&"suicide/kill myself"), "{ids:?}");
    for f in &found {
        assert!(f.span.end <= "https://www.google.co.uk/search?q=how+to+kill+myself&hl=en".len());
    }
    let search: Vec<_> = found
        .iter()
        .filter(|m| m.scope == Scope::Search && m.rule_id == "suicide/kill myself")
        .collect();
    assert!(!search.is_empty());
    assert_eq!(
        &search[0].context[search[0].context_span.clone()],
        "kill myself"
    );

    let found = m.find_url("http://videos.gore.example/latest");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rule_id, "violence/domain:gore.example");
    assert_eq!(found[0].span, 7..26);
    assert!(m.find_url("http://notgore.example/").is_empty());
}

#[test]
fn typed_incremental() {
    let m = Arc::new(matcher());
    let mut t = m.typed();
    let mut all = Vec::new();
    for c in "hello I want to kill myself now".chars() {
        all.extend(
            t.push(c)
                .into_iter()
                .map(|m| (m.rule_id.to_string(), m.span)),
        );
    }
    assert_eq!(
        all,
        [
            ("violence/kill".to_string(), 16..20),
            ("suicide/kill myself".to_string(), 16..27)
        ]
    );
    assert_eq!(t.text(), "hello I want to kill myself now");

    // Held while the exception could still be typed, cancelled when it is.
    t.reset();
    let mut all = Vec::new();
    for c in "Assassin's Creed is fun ".chars() {
        all.extend(t.push(c));
    }
    assert!(all.is_empty(), "{all:?}");
    t.reset();
    let mut all = Vec::new();
    for c in "the assassin is here ".chars() {
        all.extend(t.push(c).into_iter().map(|m| m.rule_id));
    }
    assert_eq!(all, ["violence/assassin"]);

    // Backspace: as if never typed.
    t.reset();
    for c in "I will stab".chars() {
        assert!(t.push(c).is_empty());
    }
    assert!(t.push(' ').is_empty(), "stab needs a context word");
    for c in "at school".chars() {
        t.push(c);
    }
    assert_eq!(t.push(' ').len(), 1);
    t.backspace();
    assert_eq!(t.push('.').len(), 1, "reported again after backspace");
    for _ in 0.."school.".len() {
        t.backspace();
    }
    for c in "schools ".chars() {
        assert!(t.push(c).is_empty());
    }
    assert_eq!(t.text(), "I will stab at schools ");

    // "shoot " is held: "shoot the basketball" may follow.
    t.reset();
    for c in "shoot ".chars() {
        assert!(t.push(c).is_empty());
    }
    let later: Vec<_> = "him ".chars().flat_map(|c| t.push(c)).collect();
    assert_eq!(later.len(), 1);
    assert_eq!(&t.text()[later[0].span.clone()], "shoot");

    // Flush reports a word still being typed.
    t.reset();
    for c in "end my life".chars() {
        t.push(c);
    }
    assert_eq!(t.flush().len(), 1);
}

#[test]
fn typed_buffer_is_bounded() {
    let m = Arc::new(matcher());
    let mut t = m.typed();
    let mut count = 0;
    for i in 0..5000 {
        for c in format!("word{i} ").chars() {
            t.push(c);
        }
        if i % 100 == 0 {
            count += "stab school "
                .chars()
                .map(|c| t.push(c).len())
                .sum::<usize>();
        }
        assert!(t.text().chars().count() <= 512);
    }
    assert_eq!(count, 50);
}

#[test]
fn shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Matcher>();
    send::<tutela_rules::TypedMatcher>();
    let m = Arc::new(matcher());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.find(Scope::Typed, "end my life").len())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1);
    }
}
