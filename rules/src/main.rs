//! `tutela-rules`: lint, try, evaluate and sign rule packs.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ring::signature::KeyPair;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tutela_rules::eval::{load_corpus, pack_for_corpus, Report};
use tutela_rules::floors::Floors;
use tutela_rules::lint::{lint, Level};
use tutela_rules::{bundle, CompileOptions, Matcher, Pack, Scope};

/// Tutela rule packs: lint them, try text against them, measure them on a labelled
/// corpus, and sign them into bundles for the collector to publish.
#[derive(Parser)]
#[command(name = "tutela-rules", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint packs: syntax, unknown categories, invalid regexes, duplicate terms, terms an
    /// exception always cancels. Exits non-zero when a pack has errors.
    Check {
        /// Pack files (TOML).
        #[arg(required = true)]
        packs: Vec<PathBuf>,
    },
    /// Match a text and explain every match and every exception that fired.
    Test {
        /// The text to match (for --scope url, a URL).
        text: String,
        /// Where the text was seen: typed, title, url, search or process.
        #[arg(long, default_value = "typed")]
        scope: Scope,
        /// Pack file (default: the shipped en-GB pack).
        #[arg(long)]
        pack: Option<PathBuf>,
    },
    /// Measure precision and recall on labelled corpus files (scope<TAB>text<TAB>expected).
    Eval {
        /// Corpus files (TSV).
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
        /// Pack file (default: the shipped pack named like each corpus file, else en-GB).
        #[arg(long)]
        pack: Option<PathBuf>,
        /// Fail (exit 1) when recall over risk lines is below this.
        #[arg(long)]
        min_recall: Option<f64>,
        /// Fail (exit 1) when the share of benign lines that alerted is above this.
        #[arg(long)]
        max_false_alert_rate: Option<f64>,
        /// List every miss and false alert (default: the first 20 of each).
        #[arg(long, short)]
        verbose: bool,
        /// Per-file floors (TOML, a table per corpus name): measure each file on its own,
        /// print a table and fail (exit 1) when a file falls below its floor or has none.
        #[arg(long)]
        floors: Option<PathBuf>,
    },
    /// Generate an Ed25519 signing key (PKCS#8) for bundles.
    Keygen {
        /// Where to write the key; keep it secret.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Validate a pack and sign it into a versioned bundle.
    Bundle {
        /// The PKCS#8 key from `keygen`.
        #[arg(long)]
        sign_key: PathBuf,
        /// The pack file to bundle.
        pack: PathBuf,
        /// Where to write the bundle.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Verify a bundle against a public key (hex, as printed by `keygen`).
    Verify {
        /// The bundle file.
        bundle: PathBuf,
        /// The signer's public key, 64 hex digits.
        #[arg(long)]
        public_key: String,
        /// Reject the bundle unless its version is newer than this.
        #[arg(long)]
        current_version: Option<u32>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn packs_dir() -> PathBuf {
    for candidate in ["rules/packs", "packs"] {
        let p = Path::new(candidate);
        if p.join("en-GB.toml").is_file() {
            return p.to_path_buf();
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packs")
}

fn default_pack() -> PathBuf {
    packs_dir().join("en-GB.toml")
}

fn load_matcher(path: &Path) -> Result<Matcher> {
    let pack = Pack::load(path)?;
    Matcher::compile(&pack, &CompileOptions::default())
        .with_context(|| format!("compiling {}", path.display()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { packs } => check(&packs),
        Command::Test { text, scope, pack } => {
            test(&text, scope, &pack.unwrap_or_else(default_pack))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            corpus,
            pack,
            min_recall,
            max_false_alert_rate,
            verbose,
            floors,
        } => match floors {
            Some(floors) => eval_floors(&corpus, pack.as_deref(), &floors),
            None => eval(
                &corpus,
                pack.as_deref(),
                min_recall,
                max_false_alert_rate,
                verbose,
            ),
        },
        Command::Keygen { out, force } => {
            if out.exists() && !force {
                bail!("{} already exists; pass --force to replace it (bundles signed with the old key will no longer verify with the new one)", out.display());
            }
            let pkcs8 = bundle::generate_pkcs8()?;
            write_private(&out, &pkcs8)?;
            let key = bundle::load_pkcs8(&pkcs8)?;
            let public = key.public_key().as_ref();
            println!("wrote {}", out.display());
            println!("public key: {}", hex(public));
            println!("key id: {}", bundle::key_id(public));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bundle {
            sign_key,
            pack,
            out,
        } => {
            let key_bytes = std::fs::read(&sign_key)
                .with_context(|| format!("reading signing key {}", sign_key.display()))?;
            let key = bundle::load_pkcs8(&key_bytes)?;
            let toml = std::fs::read_to_string(&pack)
                .with_context(|| format!("reading pack {}", pack.display()))?;
            // Parse with the file name first so problems point at file:line.
            Pack::parse(&toml, &pack.display().to_string())?;
            let bytes = bundle::sign(&toml, &key)?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            let b = bundle::verify(&bytes, key.public_key().as_ref(), None)?;
            println!(
                "wrote {}: pack {} version {} signed by key {}",
                out.display(),
                b.pack_id,
                b.version,
                b.key_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            bundle: path,
            public_key,
            current_version,
        } => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let key = unhex(&public_key)?;
            let b = bundle::verify(&bytes, &key, current_version)?;
            println!(
                "ok: pack {} version {} signed by key {} at {} ms",
                b.pack_id, b.version, b.key_id, b.signed_at_ms
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(packs: &[PathBuf]) -> Result<ExitCode> {
    let mut errors = 0;
    for path in packs {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                errors += 1;
                continue;
            }
        };
        let pack = match Pack::parse(&text, &name) {
            Ok(p) => p,
            Err(e) => {
                for p in e.problems() {
                    println!("{name}:{}: error: {}", p.line, p.message);
                    errors += 1;
                }
                continue;
            }
        };
        let findings = lint(&pack);
        for f in &findings {
            println!("{name}:{f}");
        }
        let pack_errors = findings.iter().filter(|f| f.level == Level::Error).count();
        errors += pack_errors;
        println!(
            "{name}: {} v{}, {} terms, {} exceptions: {}",
            pack.id,
            pack.version,
            pack.terms.len(),
            pack.exceptions.len(),
            if pack_errors == 0 { "ok" } else { "errors" }
        );
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{errors} error(s)");
        ExitCode::FAILURE
    })
}

fn test(text: &str, scope: Scope, pack: &Path) -> Result<()> {
    let matcher = load_matcher(pack)?;
    println!(
        "pack {} v{} ({} terms)",
        matcher.pack_id(),
        matcher.version(),
        matcher.term_count()
    );
    if scope == Scope::Url {
        if let Some(q) = tutela_rules::search_query(text) {
            println!("search query: {q:?}");
        }
        let found = matcher.find_url(text);
        for m in &found {
            print_match("match", m);
        }
        if let Some(q) = tutela_rules::search_query(text) {
            explain(&matcher, Scope::Search, &q, false);
        }
        explain(&matcher, Scope::Url, text, false);
        if found.is_empty() {
            println!("no match");
        }
        return Ok(());
    }
    explain(&matcher, scope, text, true);
    Ok(())
}

fn explain(matcher: &Matcher, scope: Scope, text: &str, show_matches: bool) {
    let e = matcher.explain(scope, text);
    println!("normalised ({scope}): {:?}", e.normalised);
    if show_matches {
        for m in &e.matches {
            print_match("match", m);
        }
    }
    for c in &e.cancelled {
        print_match("cancelled", &c.matched);
        println!(
            "    by exception {:?} (pack line {}) at {:?}",
            c.exception,
            c.exception_line,
            &text[c.exception_span.clone()]
        );
    }
    for m in &e.missing_context {
        print_match("no context word near", m);
    }
    for w in &e.weighed {
        print_match("weighed", &w.matched);
        let cues = describe_cues(&w.cues, &e.normalised);
        println!(
            "    weight {} {} = score {}",
            w.weight,
            if cues.is_empty() {
                "(no cue near)"
            } else {
                &cues
            },
            w.score
        );
    }
    for c in &e.categories {
        let cues = describe_cues(&c.anywhere, &e.normalised);
        println!(
            "category {}: score {:.2} against threshold {}{}: {}",
            c.category,
            c.score,
            c.threshold,
            if cues.is_empty() {
                String::new()
            } else {
                format!(" (text cues: {cues})")
            },
            if c.alerted { "alerts" } else { "no alert" }
        );
    }
    if show_matches && e.matches.is_empty() {
        println!("no match");
    }
}

/// Cues as `name +weight at "words"`, joined by commas.
fn describe_cues(cues: &[tutela_rules::CueHit], normalised: &str) -> String {
    cues.iter()
        .map(|c| {
            let words = normalised.get(c.span.clone()).unwrap_or("");
            format!("{} {:+} at {words:?}", c.name, c.weight)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_match(what: &str, m: &tutela_rules::Match) {
    let ctx = &m.context;
    let s = &m.context_span;
    println!(
        "{what}: {} severity {} scope {} bytes {}..{}: {}[{}]{}",
        m.rule_id,
        m.severity,
        m.scope,
        m.span.start,
        m.span.end,
        &ctx[..s.start],
        &ctx[s.clone()],
        &ctx[s.end..]
    );
}

/// A corpus file and the matcher it is measured with: `pack`, else the shipped pack
/// named like the file, else en-GB.
fn load_for_corpus(
    file: &Path,
    pack: Option<&Path>,
) -> Result<(Matcher, Vec<tutela_rules::eval::Example>)> {
    let pack_path = match pack {
        Some(p) => p.to_path_buf(),
        None => pack_for_corpus(file, &packs_dir()).unwrap_or_else(default_pack),
    };
    Ok((load_matcher(&pack_path)?, load_corpus(file)?))
}

/// Measure each corpus file on its own against its floor.
fn eval_floors(corpus: &[PathBuf], pack: Option<&Path>, floors: &Path) -> Result<ExitCode> {
    let floors = Floors::load(floors)?;
    let mut failures = Vec::new();
    println!(
        "{:<24} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "corpus", "rows", "recall", "floor", "false", "ceiling"
    );
    for file in corpus {
        let (matcher, examples) = load_for_corpus(file, pack)?;
        let mut report = Report::default();
        report.add(&matcher, &file.display().to_string(), &examples);
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let floor = floors.get(&stem);
        let show = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        let rate = |n: usize, v: f64| if n > 0 { format!("{v:.4}") } else { "-".into() };
        println!(
            "{:<24} {:>7} {:>8} {:>8} {:>8} {:>8}",
            stem,
            examples.len(),
            rate(report.risk_lines, report.recall()),
            show(floor.and_then(|f| f.min_recall)),
            rate(report.benign_lines, report.false_alert_rate()),
            show(floor.and_then(|f| f.max_false_alert_rate)),
        );
        match floor {
            None => failures.push(format!(
                "{stem}: no floor; add a [{stem}] table to the floors file"
            )),
            Some(f) => failures.extend(
                f.shortfalls(&report)
                    .into_iter()
                    .map(|m| format!("{stem}: {m}")),
            ),
        }
    }
    for f in &failures {
        eprintln!("{f}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn eval(
    corpus: &[PathBuf],
    pack: Option<&Path>,
    min_recall: Option<f64>,
    max_false_alert_rate: Option<f64>,
    verbose: bool,
) -> Result<ExitCode> {
    let mut report = Report::default();
    for file in corpus {
        let (matcher, examples) = load_for_corpus(file, pack)?;
        println!(
            "{}: {} examples against {} v{}",
            file.display(),
            examples.len(),
            matcher.pack_id(),
            matcher.version()
        );
        report.add(&matcher, &file.display().to_string(), &examples);
    }
    let limit = if verbose { usize::MAX } else { 20 };
    for (what, list) in [
        ("miss", &report.misses),
        ("false alert", &report.false_alerts),
    ] {
        for m in list.iter().take(limit) {
            println!(
                "{what}: {}:{} [{}] {:?} expected {} got {}",
                m.origin,
                m.line,
                m.scope,
                m.text,
                if m.expected.is_empty() {
                    "-".to_string()
                } else {
                    m.expected.join("|")
                },
                if m.alerted.is_empty() {
                    "-".to_string()
                } else {
                    format!("{} by {}", m.alerted.join("|"), m.rules.join(", "))
                }
            );
        }
        if list.len() > limit {
            println!(
                "... {} more {what}(es); pass --verbose to list all",
                list.len() - limit
            );
        }
    }
    print!("{}", report.render());
    let mut failed = false;
    if let Some(min) = min_recall {
        if report.recall() < min {
            eprintln!("recall {:.4} is below --min-recall {min}", report.recall());
            failed = true;
        }
    }
    if let Some(max) = max_false_alert_rate {
        if report.false_alert_rate() > max {
            eprintln!(
                "false alert rate {:.4} is above --max-false-alert-rate {max}",
                report.false_alert_rate()
            );
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("public key must be hex digits (as printed by `tutela-rules keygen`)");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("bad hex"))
        .collect()
}
