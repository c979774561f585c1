//! Compiling a pack into a [`Matcher`]: the phrase automaton over literal terms, pattern
//! anchors, exceptions, cues and required lists' entries, the regex terms, the word
//! patterns (built lazily) and their required tokens, thresholds, and the words a match
//! can end with.

use crate::cue::{category_bit, CueSet, RoleBits};
use crate::matcher::{CategoryInfo, CompileError, CompileOptions, Exception, Matcher, Rule};
use crate::normalise::normalise_term;
use crate::pack::{Pack, TermKind};
use crate::pattern::ListEntries;
use crate::phrases::PhrasesBuilder;
use crate::word_keys::WordKeys;
use crate::wordlist::entries;
use crate::{disguised, pattern, Scope, CATEGORIES};
use regex::{Regex, RegexSet};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{meta, util::syntax};
use std::collections::{BTreeMap, HashMap, HashSet};

impl Matcher {
    /// Compile a pack. Terms for other age bands than `opts.age` are left out.
    pub fn compile(pack: &Pack, opts: &CompileOptions) -> Result<Matcher, CompileError> {
        let mut rules = Vec::new();
        let mut phrases = PhrasesBuilder::default();
        let mut regex_sources = Vec::new();
        let mut regex_rules = Vec::new();
        let mut scopes_present = 0u8;
        let mut longest_term = 0;
        let mut longest_pattern = 0;
        let mut last_words: HashSet<String> = HashSet::new();
        let mut last_prefixes: Vec<String> = Vec::new();
        let mut scan_every_word = false;
        let mut disguised_forms: Vec<(String, u32, TermKind)> = Vec::new();
        let mut misspelt_terms: Vec<(String, u32)> = Vec::new();
        let last_word = |s: &str| s.rsplit(' ').next().unwrap_or(s).to_string();
        let lists = entries(&pack.lists);
        let mut word_patterns: Vec<(u32, LazyPattern)> = Vec::new();
        let mut finders = Finders::default();
        let mut required_lists = RequiredLists::default();
        let mut thresholds = [1.0f32; 12];
        for cat in &pack.categories {
            if let Some(i) = CATEGORIES.iter().position(|c| *c == cat.id) {
                thresholds[i] = cat.threshold;
            }
        }
        let mut weighing = !pack.cues.is_empty();
        let roles = RoleBits::new(pack.terms.iter().filter_map(|t| t.role.as_deref()));
        for term in &pack.terms {
            if !opts.age.includes(term.age) {
                continue;
            }
            let rule_idx = rules.len() as u32;
            let scopes = term.scopes.iter().fold(0u8, |acc, s| acc | s.bit());
            scopes_present |= scopes;
            rules.push(Rule {
                rule_id: term.rule_id().into(),
                category: term.category.as_str().into(),
                term: term.text.as_str().into(),
                kind: term.kind,
                severity: term.severity,
                scopes,
                capture: term.capture,
                context: term.context.iter().map(|c| normalise_term(c)).collect(),
                weight: term.weight,
                category_bit: category_bit(&term.category),
                role_bit: term.role.as_deref().map_or(0, |r| roles.bit(r)),
            });
            if let Some(i) = CATEGORIES.iter().position(|c| *c == term.category) {
                weighing |= term.weight < thresholds[i];
            }
            if term.kind == TermKind::Pattern {
                let compiled = pattern::compile(&term.text, &lists).map_err(|message| {
                    CompileError::Pattern {
                        pack: pack.id.clone(),
                        message: format!("line {}: {message}", term.line),
                    }
                })?;
                // Required words and word lists are checked before the regex runs (ordered
                // below, once every phrase is known).
                let required: Vec<Required> = compiled
                    .required
                    .iter()
                    .filter_map(|r| match r {
                        pattern::Required::Words(words) => Some(Required::Words(
                            words
                                .iter()
                                .map(|(w, prefix)| RequiredWord {
                                    finder: finders.index(w),
                                    phrase: NO_PHRASE,
                                    key: crate::word_keys::required_bit(w, *prefix),
                                })
                                .collect(),
                            None,
                        )),
                        pattern::Required::List(name) => {
                            required_lists.bit(name, &lists).map(Required::List)
                        }
                    })
                    .collect();
                let re = LazyPattern::new(
                    compiled.regex.clone(),
                    required,
                    [compiled.words_before, compiled.words_after]
                        .map(|w| u16::try_from(w).unwrap_or(u16::MAX)),
                    scopes,
                )
                .map_err(|e| CompileError::Pattern {
                    pack: pack.id.clone(),
                    message: format!("line {}: {e}", term.line),
                })?;
                let index = word_patterns.len() as u32;
                word_patterns.push((rule_idx, re));
                longest_pattern = longest_pattern.max(compiled.max_len);
                for (w, prefix) in &compiled.last_words {
                    if *prefix {
                        last_prefixes.push(w.clone());
                    } else {
                        last_words.insert(w.clone());
                    }
                }
                for (anchor, prefix) in &compiled.anchors {
                    phrases.anchor(anchor, index, *prefix);
                }
                continue;
            }
            for c in &term.context {
                last_words.insert(last_word(&normalise_term(c)));
            }
            if term.kind == TermKind::Regex {
                scan_every_word = true;
                let re = Regex::new(&term.text).map_err(|e| CompileError::Regex {
                    pack: pack.id.clone(),
                    message: format!("line {}: {e}", term.line),
                })?;
                regex_sources.push(term.text.clone());
                regex_rules.push((rule_idx, re));
                continue;
            }
            let normalised = normalise_term(&term.text);
            longest_term = longest_term.max(normalised.len());
            if term.kind == TermKind::Prefix {
                last_prefixes.push(last_word(&normalised));
            } else {
                last_words.insert(last_word(&normalised));
            }
            if let Some(f) = disguised::fused(&normalised) {
                disguised_forms.push((f, rule_idx, term.kind));
            }
            if term.kind != TermKind::Prefix {
                if let Some(cuts) = disguised::split(&normalised) {
                    disguised_forms.extend(cuts.map(|c| (c, rule_idx, term.kind)));
                }
                misspelt_terms.push((normalised.clone(), rule_idx));
            }
            phrases.rule(&normalised, rule_idx);
        }
        required_lists.add_entries(&lists, &mut phrases);
        let cues =
            CueSet::compile(&pack.cues, &lists, &roles, &mut phrases).map_err(|message| {
                CompileError::Pattern {
                    pack: pack.id.clone(),
                    message,
                }
            })?;
        for cue in pack.cues.iter().filter(|c| c.weight > 0.0) {
            let phrases = crate::wordlist::expand(&cue.phrases, &lists).map_err(|message| {
                CompileError::Pattern {
                    pack: pack.id.clone(),
                    message,
                }
            })?;
            last_words.extend(phrases.iter().map(|p| last_word(p)));
        }
        let regexes = if regex_sources.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(&regex_sources).map_err(|e| CompileError::Regex {
                    pack: pack.id.clone(),
                    message: e.to_string(),
                })?,
            )
        };

        let exceptions: Vec<Exception> = pack
            .exceptions
            .iter()
            .map(|e| Exception {
                phrase: e.phrase.clone(),
                normalised: normalise_term(&e.phrase),
                category: e.category.clone(),
                line: e.line,
            })
            .collect();
        for (i, e) in exceptions.iter().enumerate() {
            phrases.exception(&e.normalised, i as u32);
        }
        // Run-together forms and words cut in two (see `disguised`), once every phrase as
        // written is in: a form that is some term's own text, or an exception's, keeps that
        // meaning alone.
        let exception_texts: HashSet<&str> =
            exceptions.iter().map(|e| e.normalised.as_str()).collect();
        let words = disguised::Vocabulary::of(pack, &phrases);
        let glue = words.glue();
        let mut heard: Vec<String> = Vec::new();
        for (form, rule_idx, kind) in disguised_forms {
            if phrases.has_rules(&form) || exception_texts.contains(form.as_str()) {
                continue;
            }
            if form.contains(' ') && !words.may_cut(&form) {
                continue;
            }
            if kind == TermKind::Prefix {
                last_prefixes.push(last_word(&form));
            } else {
                last_words.insert(last_word(&form));
            }
            phrases.disguised_rule(&form, rule_idx);
            if !form.contains(' ') {
                heard.push(form);
            }
        }
        // Misspelt forms (see `misspelt`): none that is a word the pack knows.
        for (term, rule_idx) in misspelt_terms {
            for (form, word) in crate::misspelt::misspelt(&term) {
                if words.knows(&word)
                    || phrases.has_rules(&form)
                    || exception_texts.contains(form.as_str())
                {
                    continue;
                }
                last_words.insert(last_word(&form));
                phrases.disguised_rule(&form, rule_idx);
            }
        }
        last_prefixes.sort();
        last_prefixes.dedup();
        // An exception run together is heard only where it holds a term's run-together
        // form ('killthelights' cancels 'kill the lights'): one that holds none would only
        // cancel ordinary words ('christ church' as 'christchurch').
        let mut fused_exceptions = Vec::new();
        for (i, e) in exceptions.iter().enumerate() {
            let Some(f) = disguised::fused(&e.normalised) else {
                continue;
            };
            let holds_a_form = heard.iter().any(|form| f.contains(form.as_str()));
            if holds_a_form && !phrases.has_plain_rules(&f) && !exception_texts.contains(f.as_str())
            {
                phrases.exception(&f, i as u32);
                fused_exceptions.push(f);
            }
        }
        // A required word that is also a phrase of the automaton is looked up among the
        // phrases found from word starts instead of searched for. (Making every required
        // word a phrase costs more in the longer walk than the searches it saves.)
        for (_, lazy) in &mut word_patterns {
            for r in lazy.required.iter_mut() {
                if let Required::Words(words, keys) = r {
                    *keys = WordKeys::union(words.iter().map(|w| w.key), 3).map(Box::new);
                    for w in words.iter_mut() {
                        let word = &finders.words[w.finder as usize];
                        if starts_ascii(word) {
                            w.phrase = phrases.id(word).unwrap_or(NO_PHRASE);
                        }
                    }
                    words.sort_by_key(|w| w.phrase == NO_PHRASE);
                }
            }
            // Cheapest checks first (the result is the same in any order): words looked up
            // among the phrases found, then lists (from the same walk), then words searched
            // for as substrings.
            lazy.required.sort_by_key(|r| match r {
                Required::Words(words, _) if words.iter().all(|w| w.phrase != NO_PHRASE) => 0,
                Required::List(_) => 1,
                Required::Words(..) => 2,
            });
        }
        let phrases = phrases.build().map_err(|message| CompileError::Automaton {
            pack: pack.id.clone(),
            message,
        })?;
        let mut exception_prefixes: Vec<String> =
            exceptions.iter().map(|e| e.normalised.clone()).collect();
        exception_prefixes.extend(fused_exceptions);
        exception_prefixes.sort();
        exception_prefixes.dedup();
        let longest_exception = exception_prefixes
            .iter()
            .map(|e| e.len())
            .max()
            .unwrap_or(0);

        let mut categories = Vec::new();
        let mut domains: HashMap<String, Vec<usize>> = HashMap::new();
        for cat in &pack.categories {
            for d in &cat.domains {
                domains.entry(d.clone()).or_default().push(categories.len());
            }
            categories.push(CategoryInfo {
                id: cat.id.clone(),
                severity: cat.severity,
                capture: cat.capture,
            });
        }
        if !domains.is_empty() {
            scopes_present |= Scope::Url.bit();
        }

        Ok(Matcher {
            pack_id: pack.id.clone(),
            version: pack.version,
            rules,
            phrases,
            regexes,
            regex_rules,
            patterns: word_patterns,
            finders: finders.build(),
            cues,
            thresholds,
            weighing,
            exceptions,
            exception_prefixes,
            longest_exception,
            longest_term,
            longest_pattern,
            last_words,
            last_prefixes,
            glue,
            scan_every_word,
            scopes_present,
            categories,
            domains,
        })
    }
}

/// A word pattern's regex, checked when the pack is compiled but built again only when
/// its anchor first occurs: most of a pack's patterns never fire on a given desktop, and
/// their automata would cost the agent memory for nothing.
#[derive(Debug)]
pub(crate) struct LazyPattern {
    source: String,
    regex: std::sync::OnceLock<meta::Regex>,
    /// The same regex reporting its gaps, built the first time a cue is inside a match.
    gapped: std::sync::OnceLock<regex::bytes::Regex>,
    /// The pattern's required tokens other than its anchor.
    pub(crate) required: Box<[Required]>,
    /// Most words a match has before and after its anchor (see
    /// `pattern::CompiledPattern::words_before`).
    pub(crate) reach: [u16; 2],
    /// The rule's scopes (as `Rule::scopes`), read here to keep the rule out of cache.
    pub(crate) scopes: u8,
}

/// A required token of a word pattern, checked before its regex runs.
#[derive(Debug)]
pub(crate) enum Required {
    /// One of these normalised words or phrases is in the text; with three or more words
    /// that all have a key, the union of their keys (see `word_keys`): a text holding none
    /// of them rules the token out at once.
    Words(Box<[RequiredWord]>, Option<Box<WordKeys>>),
    /// An entry of this word list (its bit in [`crate::phrases::Phrases::lists_present`]'s mask) starts
    /// where a pattern's token can start.
    List(u64),
}

/// One word of a required token: 8 bytes, so checking a pattern's words reads little.
#[derive(Debug)]
pub(crate) struct RequiredWord {
    /// Its searcher in [`crate::matcher::Matcher::finders`] (built once, when the pack is
    /// compiled, and shared by every pattern that requires the word).
    pub(crate) finder: u32,
    /// Its id when it is also a phrase of the phrase automaton (and starts with an ASCII
    /// letter or digit): in ASCII text it can then only be where the walk finds it.
    /// [`NO_PHRASE`] otherwise.
    pub(crate) phrase: u32,
    /// Its bit in a text's [`crate::word_keys::WordKeys`] (or `NO_KEY`): a word whose bit
    /// is not set is not in an ASCII text, and is not looked up.
    pub(crate) key: u16,
}

/// [`RequiredWord::phrase`] of a word that is not a phrase.
pub(crate) const NO_PHRASE: u32 = u32::MAX;

/// The distinct required words, each with one substring searcher.
#[derive(Debug, Default)]
struct Finders {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

impl Finders {
    fn index(&mut self, word: &str) -> u32 {
        if let Some(&i) = self.index.get(word) {
            return i;
        }
        let i = self.words.len() as u32;
        self.words.push(word.to_string());
        self.index.insert(word.to_string(), i);
        i
    }

    fn build(self) -> Box<[memchr::memmem::Finder<'static>]> {
        self.words
            .iter()
            .map(|w| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
            .collect()
    }
}

/// Whether a normalised word starts with an ASCII letter or digit: then wherever a
/// pattern's regex can match it, it starts at a word start or after a byte that is not
/// an ASCII word character.
fn starts_ascii(word: &str) -> bool {
    word.as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
}

/// The word lists that word patterns require besides their anchor, numbered as they are
/// first required (at most 64; others are left to the regex).
#[derive(Debug, Default)]
struct RequiredLists {
    names: Vec<String>,
}

impl RequiredLists {
    /// The bit of list `name`, or `None` when it is not checked before the regex: past
    /// the 64th list, or when an entry does not start with an ASCII letter or digit (such
    /// an entry can follow a letter at a regex word boundary, where the walk does not
    /// look).
    fn bit(&mut self, name: &str, lists: &BTreeMap<String, ListEntries>) -> Option<u64> {
        let list = lists.get(name)?;
        if !list
            .entries
            .iter()
            .all(|e| e.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric))
        {
            return None;
        }
        let i = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None if self.names.len() < 64 => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
            None => return None,
        };
        Some(1 << i)
    }

    /// Put the required lists' entries in the phrase automaton with their lists' bits.
    fn add_entries(&self, lists: &BTreeMap<String, ListEntries>, phrases: &mut PhrasesBuilder) {
        for (i, name) in self.names.iter().enumerate() {
            for e in lists.get(name).map(|l| l.entries.as_slice()).unwrap_or(&[]) {
                phrases.list_entry(e, 1 << i);
            }
        }
    }
}

impl LazyPattern {
    /// Checked as `regex::bytes` with `unicode(false)` would build it (its errors).
    fn new(
        source: String,
        required: Vec<Required>,
        reach: [u16; 2],
        scopes: u8,
    ) -> Result<LazyPattern, regex::Error> {
        drop(
            regex::bytes::RegexBuilder::new(&source)
                .unicode(false)
                .build()?,
        );
        Ok(LazyPattern {
            source,
            regex: std::sync::OnceLock::new(),
            gapped: std::sync::OnceLock::new(),
            required: required.into_boxed_slice(),
            reach,
            scopes,
        })
    }

    /// Byte-level and ASCII-only, as `regex::bytes` with `unicode(false)`: a pattern's
    /// words are ASCII after normalising, and a gap's `[^ ]` is one byte class, which
    /// keeps the automaton small. Matches start and end at spaces or ASCII word edges, so
    /// on char boundaries. Without a literal prefilter and capture groups but the whole match: on a title or
    /// a typed tail the lazy DFA alone is cheaper than finding the first words first.
    fn build(source: &str) -> Result<meta::Regex, Box<meta::BuildError>> {
        let config = meta::Config::new()
            .match_kind(regex_automata::MatchKind::LeftmostFirst)
            .utf8_empty(false)
            .nfa_size_limit(Some(10 * (1 << 20)))
            .hybrid_cache_capacity(2 * (1 << 20))
            .auto_prefilter(false)
            .which_captures(WhichCaptures::Implicit);
        meta::Builder::new()
            .configure(config)
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(source)
            .map_err(Box::new)
    }

    pub(crate) fn get(&self) -> &meta::Regex {
        self.regex
            .get_or_init(|| Self::build(&self.source).expect("checked when the pack was compiled"))
    }

    /// The spans of `text` its gaps skipped in its match `span` (see `pattern::gap_spans`).
    pub(crate) fn gaps(
        &self,
        text: &str,
        span: &std::ops::Range<usize>,
    ) -> Vec<std::ops::Range<usize>> {
        let gapped = self
            .gapped
            .get_or_init(|| pattern::gapped_regex(&self.source));
        pattern::gap_spans(gapped, text, span)
    }
}
