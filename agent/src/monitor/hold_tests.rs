//! Typed matches held for the words after them, with the shipped pack fed key by key.

use std::sync::{Mutex, OnceLock};

use tokio::sync::Notify;

use super::*;
use crate::identity::Identity;
use crate::spool::Spool;

fn shipped() -> Arc<Matcher> {
    static PACK: OnceLock<Arc<Matcher>> = OnceLock::new();
    PACK.get_or_init(|| {
        let text = include_str!("../../../rules/packs/en-GB.toml");
        let pack = tutela_rules::Pack::parse(text, "en-GB.toml").unwrap();
        Arc::new(Matcher::compile(&pack, &tutela_rules::CompileOptions::default()).unwrap())
    })
    .clone()
}

fn monitor(dir: &std::path::Path, hold: HoldSettings) -> Monitor {
    let spool = Spool::open(
        &dir.join("spool.db"),
        "ag-test",
        crate::spool::SpoolConfig::default(),
    )
    .unwrap();
    let settings = MonitorSettings {
        user: "pupil".into(),
        station: "PC".into(),
        cooldown: Duration::from_secs(60),
        burst_shots: 1,
        burst_interval: Duration::from_millis(10),
        capture: false,
        hold,
    };
    let sink = EventSink {
        identity: Arc::new(Identity::generate()),
        spool: Arc::new(Mutex::new(spool)),
        appended: Arc::new(Notify::new()),
    };
    let mut m = Monitor::new(Arc::new(RwLock::new(shipped())), settings, sink);
    m.observe(SensorEvent::Window {
        window_id: 7,
        title: "Chat - Discord".into(),
        app: App::default(),
    });
    m
}

fn key(m: &mut Monitor, key: Key) -> Vec<Pending> {
    m.observe(SensorEvent::Key { window_id: 7, key })
}

/// Types `text` key by key (no Enter): what it raised.
fn keys(m: &mut Monitor, text: &str) -> Vec<Pending> {
    text.chars().flat_map(|c| key(m, Key::Char(c))).collect()
}

fn rules(raised: &[Pending]) -> Vec<String> {
    raised
        .iter()
        .flat_map(|p| p.draft.matches.iter().map(|m| m.rule_id.clone()))
        .collect()
}

fn categories(raised: &[Pending]) -> Vec<String> {
    let mut c: Vec<String> = raised
        .iter()
        .flat_map(|p| p.draft.matches.iter().map(|m| m.category.clone()))
        .collect();
    c.sort();
    c.dedup();
    c
}

#[test]
fn a_threat_then_a_game_cue_raises_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    // The typed matcher reports the threat once 'in' rules out its exceptions.
    let raised = keys(&mut m, "i will hurt you in ");
    assert!(raised.is_empty(), "held, not raised: {:?}", rules(&raised));
    assert_eq!(m.held_count(), 1, "the threat waits for what follows");
    let mut raised = keys(&mut m, "in fortnite lol");
    raised.extend(key(&mut m, Key::Enter));
    assert!(raised.is_empty(), "a game: {:?}", rules(&raised));
    assert_eq!(m.held_count(), 0, "Enter decides the hold");
}

#[test]
fn a_threat_then_ordinary_words_raises_one_alert_when_enough_words_follow() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    // Reported by the typed matcher as 'and' ends, then nine words after it: held.
    assert!(keys(
        &mut m,
        "im going to kill you and i mean it see you at lunch on "
    )
    .is_empty());
    assert_eq!(m.held_count(), 1);
    // The tenth ends the wait: the threat still alerts, once, with the words after it.
    let raised = keys(&mut m, "monday ");
    assert_eq!(raised.len(), 1, "one alert: {:?}", rules(&raised));
    assert_eq!(categories(&raised), ["bullying", "violence"]);
    let context = &raised[0].draft.observation.context;
    assert!(
        context.contains("im going to kill you and i mean it"),
        "the context shows what followed: {context}"
    );
    assert_eq!(m.held_count(), 0);
    assert!(key(&mut m, Key::Enter).is_empty(), "raised once");
}

#[test]
fn banter_and_hyperbole_typed_after_the_match_are_quiet() {
    for text in [
        "omg im going to kill my brother he ate my pizza",
        "i wanna kill myself of embarrassment haha",
        "i will hurt you in fortnite lol",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path(), HoldSettings::default());
        let mut raised = keys(&mut m, text);
        raised.extend(key(&mut m, Key::Enter));
        assert!(raised.is_empty(), "{text:?}: {:?}", rules(&raised));
        // Without the hold the same keys alert as the threat's last word ends.
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path(), HoldSettings::off());
        assert!(!keys(&mut m, text).is_empty(), "{text:?} alerts unheld");
    }
}

#[test]
fn a_suicidal_statement_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    let mut raised = keys(&mut m, "i want to die and ");
    assert!(raised.is_empty());
    assert_eq!(m.held_count(), 1);
    raised.extend(keys(&mut m, "and nobody knows"));
    raised.extend(key(&mut m, Key::Enter));
    assert_eq!(raised.len(), 1, "{:?}", rules(&raised));
    assert_eq!(categories(&raised), ["suicide"]);
    assert_eq!(raised[0].draft.matches[0].severity, 5);
}

#[test]
fn an_urgent_match_waits_less_and_the_wait_ends_on_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let hold = HoldSettings {
        words: 10,
        time: Duration::from_secs(60),
        urgent_time: Duration::from_millis(50),
    };
    let mut m = monitor(dir.path(), hold);
    assert!(keys(&mut m, "im going to kill you and ").is_empty());
    let typed_at = now_ms();
    assert!(keys(&mut m, "i want to die and ").is_empty());
    assert_eq!(m.held_count(), 2);
    std::thread::sleep(Duration::from_millis(80));
    let raised = m.on_tick();
    assert_eq!(
        categories(&raised),
        ["suicide"],
        "only the urgent one is due"
    );
    assert!(
        raised[0].draft.time_ms <= typed_at + 50,
        "the alert keeps the time it was typed"
    );
    assert_eq!(m.held_count(), 1, "the threat still waits");
}

#[test]
fn leaving_the_window_or_erasing_the_match_decides_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    assert!(keys(&mut m, "im going to kill you and ").is_empty());
    assert_eq!(m.held_count(), 1);
    let raised = m.observe(SensorEvent::Window {
        window_id: 8,
        title: "Year 9 History - The Blitz".into(),
        app: App::default(),
    });
    assert_eq!(raised.len(), 1, "decided as the pupil leaves");
    assert_eq!(raised[0].window_id, 7);
    assert_eq!(
        raised[0].draft.observation.window_title, "Chat - Discord",
        "the window it was typed in"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    assert!(keys(&mut m, "i want to die and ").is_empty());
    for _ in " and ".chars() {
        assert!(key(&mut m, Key::Backspace).is_empty(), "after the match");
    }
    assert_eq!(m.held_count(), 1);
    let raised = key(&mut m, Key::Backspace);
    assert_eq!(categories(&raised), ["suicide"], "erased, but it was typed");
}

#[test]
fn held_matches_are_decided_when_the_agent_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    assert!(keys(&mut m, "omg im going to kill my brother in gta").is_empty());
    assert_eq!(m.held_count(), 1);
    // The game cue typed before the agent stopped counts: nothing raised.
    assert!(m.decide_all().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    assert!(keys(&mut m, "im going to kill you and i mean it").is_empty());
    let raised = m.decide_all();
    assert_eq!(categories(&raised), ["bullying", "violence"]);
    assert_eq!(m.held_count(), 0);
}

#[tokio::test]
async fn a_monitor_that_stops_spools_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let m = monitor(dir.path(), HoldSettings::default());
    let spool = m.sink.spool.clone();
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(m.run(rx));
    // One match held by the monitor, one the typed matcher holds ('die' could
    // still become an exception such as 'die of embarrassment').
    for c in "im going to kill you and i want to die ".chars() {
        tx.send(SensorEvent::Key {
            window_id: 7,
            key: Key::Char(c),
        })
        .await
        .unwrap();
    }
    drop(tx);
    task.await.unwrap();
    let drafts = spool.lock().unwrap().drafts_from(0).unwrap();
    let mut categories: Vec<&str> = drafts
        .iter()
        .flat_map(|d| d.matches.iter().map(|m| m.category.as_str()))
        .collect();
    categories.sort();
    categories.dedup();
    assert_eq!(drafts.len(), 2, "both spooled on stopping");
    assert_eq!(categories, ["bullying", "suicide", "violence"]);
}

#[test]
fn a_pack_that_does_not_weigh_raises_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    let text = "[pack]\nid = \"t\"\nname = \"T\"\nversion = 2\nlanguage = \"en-GB\"\ndescription = \"t\"\n\n\
         [categories.weapons]\nseverity = 4\ndescription = \"W\"\n\n\
         [[terms]]\ncategory = \"weapons\"\nkind = \"phrase\"\nterms = [\"pipe bomb\"]\n";
    let pack = tutela_rules::Pack::parse(text, "test").unwrap();
    *m.rules.write().unwrap() =
        Arc::new(Matcher::compile(&pack, &tutela_rules::CompileOptions::default()).unwrap());
    assert_eq!(keys(&mut m, "a pipe bomb ").len(), 1);
    assert_eq!(m.held_count(), 0);
}

#[test]
fn a_match_no_cue_after_it_can_lower_is_raised_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path(), HoldSettings::default());
    // No cue of the shipped pack lowers child-exploitation from after a match.
    let raised = keys(&mut m, "dont tell your parents we talk ok ");
    assert_eq!(
        categories(&raised),
        ["child-exploitation"],
        "raised as typed"
    );
    assert_eq!(m.held_count(), 0, "nothing waits");
    assert!(key(&mut m, Key::Enter).is_empty(), "raised once");
}

/// The typed lines of a corpus typed key by key, then Enter: (unsafe lines that alerted
/// in an expected category, unsafe lines, benign lines that alerted, benign lines).
fn corpus_typed(corpus: &str, hold: HoldSettings) -> (usize, usize, usize, usize) {
    let (mut caught, mut risky, mut false_alerts, mut benign) = (0, 0, 0, 0);
    for line in corpus
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut fields = line.split('\t');
        let (Some(scope), Some(text), Some(expected)) =
            (fields.next(), fields.next(), fields.next())
        else {
            panic!("not a corpus line: {line}");
        };
        if scope != "typed" {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path(), hold);
        let mut raised = keys(&mut m, text);
        raised.extend(key(&mut m, Key::Enter));
        let found = categories(&raised);
        if expected == "-" {
            benign += 1;
            false_alerts += usize::from(!found.is_empty());
        } else {
            risky += 1;
            caught += usize::from(expected.split('|').any(|c| found.iter().any(|f| f == c)));
        }
    }
    (caught, risky, false_alerts, benign)
}

#[test]
fn the_banter_corpus_typed_key_by_key_is_quiet_when_held() {
    let corpus = include_str!("../../../rules/corpus/en-GB-hard-banter.tsv");
    let unheld = corpus_typed(corpus, HoldSettings::off());
    let held = corpus_typed(corpus, HoldSettings::default());
    println!("banter typed key by key (caught/risky, false alerts/benign): unheld {unheld:?}, held {held:?}");
    assert_eq!(held.0, held.1, "every unsafe twin still alerts: {held:?}");
    assert!(held.2 < unheld.2, "held {held:?} against unheld {unheld:?}");
    assert_eq!(held.2, 0, "as quiet as the lines matched whole: {held:?}");
}
