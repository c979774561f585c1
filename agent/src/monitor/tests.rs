use std::sync::Mutex;

use tokio::sync::Notify;

use super::*;
use crate::identity::Identity;
use crate::spool::Spool;

fn compile(version: u32, weapons: &str) -> Matcher {
    let text = format!(
        "[pack]\nid = \"t\"\nname = \"T\"\nversion = {version}\nlanguage = \"en-GB\"\ndescription = \"t\"\n\n\
         [categories.weapons]\nseverity = 4\ndescription = \"W\"\n\n\
         [categories.drugs]\nseverity = 3\ndescription = \"D\"\n\n\
         [[terms]]\ncategory = \"weapons\"\nkind = \"phrase\"\nterms = [{weapons}]\n\n\
         [[terms]]\ncategory = \"drugs\"\nkind = \"phrase\"\nterms = [\"cannabis\"]\n"
    );
    let pack = tutela_rules::Pack::parse(&text, "test").unwrap();
    Matcher::compile(&pack, &tutela_rules::CompileOptions::default()).unwrap()
}

fn monitor(dir: &std::path::Path) -> Monitor {
    let identity = Arc::new(Identity::generate());
    let spool = Spool::open(
        &dir.join("spool.db"),
        "ag-test",
        crate::spool::SpoolConfig::default(),
    )
    .unwrap();
    let live: LiveRules = Arc::new(RwLock::new(Arc::new(compile(1, "\"pipe bomb\""))));
    let settings = MonitorSettings {
        user: "pupil".into(),
        station: "PC".into(),
        cooldown: Duration::from_secs(60),
        burst_shots: 1,
        burst_interval: Duration::from_millis(10),
        capture: false,
        hold: HoldSettings::default(),
    };
    let sink = EventSink {
        identity,
        spool: Arc::new(Mutex::new(spool)),
        appended: Arc::new(Notify::new()),
    };
    Monitor::new(live, settings, sink)
}

fn typed(m: &mut Monitor, text: &str) -> Vec<Pending> {
    // The window sensor reports the window before keys are kept there.
    let mut out = m.observe(SensorEvent::Window {
        window_id: 7,
        title: "Untitled document - Writer".into(),
        app: App::default(),
    });
    for c in text.chars() {
        out.extend(m.observe(SensorEvent::Key {
            window_id: 7,
            key: Key::Char(c),
        }));
    }
    out.extend(m.observe(SensorEvent::Key {
        window_id: 7,
        key: Key::Enter,
    }));
    out
}

#[test]
fn shadow_rules_count_typed_matches_and_raise_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    m.shadow.set(compile(2, "\"pipe bomb\", \"zip gun\""));
    assert!(typed(&mut m, "a zip gun and a zip gun").is_empty());
    let raised = typed(&mut m, "pipe bomb");
    assert_eq!(raised.len(), 1, "the live rule still alerts");
    assert_eq!(raised[0].draft.matches[0].rule_id, "weapons/pipe bomb");
    let (version, counts) = m.shadow.snapshot();
    assert_eq!(version, 2);
    assert_eq!(counts.get("weapons/zip gun"), Some(&2));
    assert_eq!(counts.get("weapons/pipe bomb"), Some(&1));
}

#[test]
fn exempt_matches_raise_nothing_and_are_not_counted_in_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    m.shadow.set(compile(2, "\"pipe bomb\""));
    m.exempt = Arc::new(|x: &Match| x.category == "drugs");
    assert!(typed(&mut m, "cannabis").is_empty());
    assert_eq!(typed(&mut m, "pipe bomb").len(), 1);
    let (_, counts) = m.shadow.snapshot();
    assert_eq!(counts.get("drugs/cannabis"), None);
    assert_eq!(counts.get("weapons/pipe bomb"), Some(&1));
}

#[test]
fn evidence_is_shot_only_of_the_matched_window_with_no_sign_in_window_in_front() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    let window = |id: u64, title: &str| SensorEvent::Window {
        window_id: id,
        title: title.into(),
        app: App::default(),
    };
    m.observe(window(7, "Untitled document - Writer"));
    for c in "pipe bomb".chars() {
        m.observe(SensorEvent::Key {
            window_id: 7,
            key: Key::Char(c),
        });
    }
    assert!(m.front.may_capture(Some(7)));
    // The pupil turns to a sign-in prompt: the typed match is found as
    // they leave, and the screen now shows the prompt.
    let raised = m.observe(window(8, "Sign in - Google Accounts - Chromium"));
    assert_eq!(raised.len(), 1, "the match is raised on leaving");
    assert_eq!(raised[0].window_id, 7);
    assert!(!m.front.may_capture(Some(7)));
    assert!(!m.front.may_capture(Some(8)), "never a sign-in window");
    assert!(!m.front.may_capture(None), "nothing while one is in front");
    // An ordinary window in front: only its own matches are shot.
    m.observe(window(9, "Year 9 History - The Blitz"));
    assert!(!m.front.may_capture(Some(7)));
    assert!(m.front.may_capture(Some(9)));
    assert!(m.front.may_capture(None));
}

#[test]
fn keys_in_a_window_not_yet_reported_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    for c in "pipe bomb".chars() {
        assert!(m
            .observe(SensorEvent::Key {
                window_id: 9,
                key: Key::Char(c),
            })
            .is_empty());
    }
    let raised = m.observe(SensorEvent::Key {
        window_id: 9,
        key: Key::Enter,
    });
    assert!(raised.is_empty(), "nothing typed before the title is known");
    assert!(m.windows.get(&9).is_none_or(|w| w.typed.is_none()));
}

#[test]
fn an_event_that_cannot_be_spooled_is_counted_as_dropped_on_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    let draft = typed(&mut m, "pipe bomb").pop().unwrap().draft;
    let spool = m.sink.spool.clone();
    m.sink.append(draft.clone());
    spool.lock().unwrap().refuse_writes(true);
    m.sink.append(draft.clone());
    m.sink.append(draft.clone());
    spool.lock().unwrap().refuse_writes(false);
    assert_eq!(spool.lock().unwrap().stats().unwrap().dropped, 2);
    m.sink.append(draft);
    let events = spool.lock().unwrap().pending_after(0, 10).unwrap();
    let dropped: Vec<u64> = events
        .iter()
        .map(|e| {
            <tutela_proto::v1::EventBody as prost::Message>::decode(e.body.as_slice())
                .unwrap()
                .dropped_before
        })
        .collect();
    assert_eq!(
        dropped,
        vec![0, 2],
        "the lost events are reported with the next"
    );
    assert_eq!(spool.lock().unwrap().stats().unwrap().dropped, 2);
}

#[test]
fn repeats_matched_by_two_rules_fold_into_one_record_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    // Two rules match the same words: a phrase and the word inside it.
    *m.rules.write().unwrap() = Arc::new(compile(2, "\"pipe bomb\", \"bomb\""));
    let first = typed(&mut m, "a pipe bomb ");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].draft.matches.len(), 2);
    let event_id = first[0].draft.event_id.clone().unwrap();
    for _ in 0..2 {
        assert!(typed(&mut m, "a pipe bomb ").is_empty());
    }
    m.settings.cooldown = Duration::ZERO;
    m.on_tick();
    let spool = m.sink.spool.lock().unwrap();
    let folded: Vec<EventDraft> = spool
        .drafts_from(1)
        .unwrap()
        .into_iter()
        .filter(|d| d.repeat_of == event_id)
        .collect();
    assert_eq!(folded.len(), 1, "one folded record: {folded:?}");
    assert_eq!(folded[0].count, 2, "two repeats, not two per rule");
}

#[test]
fn repeated_process_starts_fold_per_name_not_per_pid() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    let text = "[pack]\nid = \"t\"\nname = \"T\"\nversion = 2\nlanguage = \"en-GB\"\ndescription = \"t\"\n\n\
         [categories.illegal]\nseverity = 3\ndescription = \"E\"\n\n\
         [[terms]]\ncategory = \"illegal\"\nkind = \"phrase\"\nscope = [\"process\"]\nterms = [\"torbrowser\", \"psiphon\"]\n";
    let pack = tutela_rules::Pack::parse(text, "test").unwrap();
    let matcher = Matcher::compile(&pack, &tutela_rules::CompileOptions::default()).unwrap();
    *m.rules.write().unwrap() = Arc::new(matcher);
    let start = |m: &mut Monitor, name: &str, pid: u32| {
        m.observe(SensorEvent::ProcessStarted {
            name: name.into(),
            path: format!("/opt/{name}"),
            pid,
        })
    };
    let first = start(&mut m, "torbrowser", 100);
    assert_eq!(first.len(), 1);
    assert!(first[0].window_id >> 63 == 1, "never a window");
    // Relaunched with a new pid (or one per tab): a repeat, not a new alert.
    assert!(start(&mut m, "torbrowser", 101).is_empty());
    assert!(start(&mut m, "torbrowser", 102).is_empty());
    let key = (
        first[0].draft.matches[0].rule_id.clone(),
        first[0].window_id,
    );
    assert_eq!(m.cooldowns[&key].repeats, 2);
    // Another program matching is its own alert.
    assert_eq!(start(&mut m, "psiphon", 100).len(), 1);
}

#[test]
fn sign_in_titles_are_private() {
    assert!(is_private_title("Sign in - Google Accounts - Chromium"));
    assert!(is_private_title("Enter your password"));
    assert!(!is_private_title("Year 9 History - The Blitz"));
    assert!(is_private_title("Windows Security"));
    assert!(is_private_title("Microsoft account"));
    assert!(is_private_window("", "CredentialUIBroker.exe"));
    assert!(is_private_window("Authentication", "pinentry"));
    assert!(!is_private_window("Untitled - Notepad", "notepad.exe"));
}

#[test]
fn the_tick_is_wanted_only_while_something_is_timed() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = monitor(dir.path());
    *m.rules.write().unwrap() = Arc::new(compile(2, "\"pipe bomb\""));
    assert!(!m.has_timed_work(), "a fresh monitor sleeps");
    m.observe(SensorEvent::Window {
        window_id: 7,
        title: "Untitled document - Writer".into(),
        app: App::default(),
    });
    assert!(!m.has_timed_work(), "a title alone times nothing");
    m.observe(SensorEvent::Key {
        window_id: 7,
        key: Key::Char('a'),
    });
    assert!(m.has_timed_work(), "a typing pause to notice");
    m.windows.get_mut(&7).unwrap().last_key = Some(Instant::now() - TYPING_PAUSE);
    m.on_tick();
    assert!(!m.has_timed_work(), "the pause was noticed");
    assert_eq!(typed(&mut m, "a pipe bomb ").len(), 1);
    m.windows.get_mut(&7).unwrap().last_key = Some(Instant::now() - TYPING_PAUSE);
    m.on_tick();
    assert!(m.has_timed_work(), "a cooldown to end");
    m.settings.cooldown = Duration::ZERO;
    m.on_tick();
    assert!(!m.has_timed_work(), "the cooldown ended");
}
