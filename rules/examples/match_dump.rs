//! Print every match, weighing and typed-matcher report for every line of corpus files, so
//! that a change meant only to make matching faster can be checked to change nothing:
//!
//! ```sh
//! cargo run --release -p tutela-rules --example match_dump -- packs/en-GB.toml corpus/*.tsv > before.txt
//! # ... change the matcher ...
//! cargo run --release -p tutela-rules --example match_dump -- packs/en-GB.toml corpus/*.tsv > after.txt
//! diff before.txt after.txt
//! ```
//!
//! For each line: the matches `find` returns (rule, span, snippet), the weighed matches and
//! category scores `explain` gives, and, for typed lines, what the typed matcher reports when
//! the text is fed one character at a time.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use tutela_rules::eval::load_corpus;
use tutela_rules::{CompileOptions, Matcher, Pack, Scope};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((pack, corpora)) = args.split_first() else {
        anyhow::bail!("usage: match_dump <pack.toml> <corpus.tsv>...");
    };
    let pack = Pack::load(Path::new(pack))?;
    let matcher = Arc::new(Matcher::compile(&pack, &CompileOptions::default())?);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for corpus in corpora {
        for ex in load_corpus(Path::new(corpus))? {
            let mut line = format!("{corpus}:{}:", ex.line);
            if ex.scope == Scope::Url {
                for m in matcher.find_url(&ex.text) {
                    write!(line, " [{} {:?}]", m.rule_id, m.span)?;
                }
                writeln!(out, "{line}")?;
                continue;
            }
            for m in matcher.find(ex.scope, &ex.text) {
                write!(
                    line,
                    " [{} {:?} {:?} {:?}]",
                    m.rule_id, m.span, m.context, m.context_span
                )?;
            }
            let e = matcher.explain(ex.scope, &ex.text);
            for w in &e.weighed {
                write!(
                    line,
                    " w({} {:?} {} {:.4}",
                    w.matched.rule_id, w.matched.span, w.weight, w.score
                )?;
                for c in &w.cues {
                    write!(line, " {}:{:?}:{}", c.name, c.span, c.weight)?;
                }
                line.push(')');
            }
            for c in &e.categories {
                write!(
                    line,
                    " c({} {:.4} {} {}",
                    c.category, c.score, c.threshold, c.alerted
                )?;
                for a in &c.anywhere {
                    write!(line, " {}:{:?}", a.name, a.span)?;
                }
                line.push(')');
            }
            write!(line, " x{} m{}", e.cancelled.len(), e.missing_context.len())?;
            if ex.scope == Scope::Typed {
                let mut typed = matcher.typed();
                let mut reported = Vec::new();
                for ch in ex.text.chars() {
                    reported.extend(typed.push(ch));
                }
                reported.extend(typed.flush());
                for m in reported {
                    write!(line, " t[{} {:?}]", m.rule_id, m.span)?;
                }
            }
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}
