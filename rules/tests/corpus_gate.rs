//! The CI gate: every shipped corpus must pass against its pack, and every shipped pack
//! must lint without errors.

use std::path::{Path, PathBuf};
use tutela_rules::eval::{load_corpus, pack_for_corpus, Report};
use tutela_rules::lint::{lint, Level};
use tutela_rules::{CompileOptions, Matcher, Pack};

const MIN_RECALL: f64 = 0.95;
const MAX_FALSE_ALERT_RATE: f64 = 0.02;
/// Corpora that must exist, each measured against the pack of the same name.
const REQUIRED: [&str; 2] = ["en-GB", "cy"];

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    out.sort();
    out
}

#[test]
fn every_corpus_passes_the_gate() {
    let corpora = files(&dir("corpus"), "tsv");
    for required in REQUIRED {
        assert!(
            corpora.iter().any(|c| pack_for_corpus(c, &dir("packs")).is_some_and(|p| p.file_stem().unwrap() == required)),
            "missing corpus for pack {required}: add corpus/{required}.tsv and packs/{required}.toml"
        );
    }
    let mut failures = Vec::new();
    for corpus in &corpora {
        let pack_path = pack_for_corpus(corpus, &dir("packs")).unwrap_or_else(|| {
            panic!(
                "no pack for corpus {}: name it after a pack in packs/",
                corpus.display()
            )
        });
        let pack = Pack::load(&pack_path).unwrap_or_else(|e| panic!("{e}"));
        let matcher = Matcher::compile(&pack, &CompileOptions::default()).unwrap();
        let examples = load_corpus(corpus).unwrap_or_else(|e| panic!("{e}"));
        assert!(!examples.is_empty(), "{} is empty", corpus.display());
        let mut report = Report::default();
        report.add(&matcher, &corpus.display().to_string(), &examples);
        let name = corpus.file_name().unwrap().to_string_lossy();
        println!("{name} against {}:\n{}", pack.id, report.render());
        if report.recall() < MIN_RECALL || report.false_alert_rate() > MAX_FALSE_ALERT_RATE {
            for m in report.misses.iter().chain(&report.false_alerts).take(40) {
                println!(
                    "  {}:{} {:?} expected {:?} got {:?}",
                    name, m.line, m.text, m.expected, m.alerted
                );
            }
            failures.push(format!(
                "{name}: recall={:.4} (min {MIN_RECALL}) false_alert_rate={:.4} (max {MAX_FALSE_ALERT_RATE})",
                report.recall(),
                report.false_alert_rate()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus gate failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_pack_lints_clean() {
    let packs = files(&dir("packs"), "toml");
    assert!(!packs.is_empty(), "no packs in packs/");
    let mut errors = Vec::new();
    for path in &packs {
        match Pack::load(path) {
            Err(e) => errors.push(e.to_string()),
            Ok(pack) => errors.extend(
                lint(&pack)
                    .into_iter()
                    .filter(|f| f.level == Level::Error)
                    .map(|f| format!("{}:{f}", pack.origin)),
            ),
        }
    }
    assert!(
        errors.is_empty(),
        "pack errors (run `tutela-rules check`):\n{}",
        errors.join("\n")
    );
}
