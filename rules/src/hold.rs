//! What the agent asks before holding a typed-text match: whether words typed after it
//! could still take it back.

use crate::Matcher;

impl Matcher {
    /// Whether a typed match may yet be lowered or cancelled by what is typed after it:
    /// true when the pack weighs its matches (it has cues, or terms lighter than their
    /// threshold), since a cue typed next ('... in fortnite lol', '... of embarrassment')
    /// then changes the score. A pack that does not weigh decides a match the moment its
    /// last word ends (exceptions still being typed are held by the typed matcher itself).
    pub fn typed_match_may_be_lowered(&self) -> bool {
        self.needs_weighing()
    }

    /// Whether a typed match of `category` may yet be lowered by words typed after it:
    /// the pack has a lowering cue that reaches forward (an `after` window, or anywhere in
    /// the text) for that category. A match of a category no such cue names (a stated
    /// plan, exploitation) is decided at once.
    pub fn typed_category_may_be_lowered(&self, category: &str) -> bool {
        self.needs_weighing()
            && self
                .cues
                .may_lower_later(crate::cue::category_bit(category))
    }
}

#[cfg(test)]
mod tests {
    use crate::{CompileOptions, Matcher, Pack};

    fn compile(extra: &str) -> Matcher {
        let text = format!(
            "[pack]\nid = \"t\"\nname = \"T\"\nversion = 1\nlanguage = \"en-GB\"\ndescription = \"t\"\n\n\
             [categories.violence]\nseverity = 4\ndescription = \"V\"\n\n\
             [[terms]]\ncategory = \"violence\"\nkind = \"phrase\"\nterms = [\"kill you\"]\n{extra}"
        );
        let pack = Pack::parse(&text, "test").unwrap();
        Matcher::compile(&pack, &CompileOptions::default()).unwrap()
    }

    #[test]
    fn only_a_pack_that_weighs_can_lower_a_match_later() {
        assert!(!compile("").typed_match_may_be_lowered());
        let cue =
            "\n[[cues]]\nname = \"game\"\nphrases = [\"in fortnite\"]\nweight = -0.6\nafter = 6\n";
        assert!(compile(cue).typed_match_may_be_lowered());
        let shipped = Pack::parse(include_str!("../packs/en-GB.toml"), "en-GB.toml").unwrap();
        let shipped = Matcher::compile(&shipped, &CompileOptions::default()).unwrap();
        assert!(shipped.typed_match_may_be_lowered());
    }

    #[test]
    fn a_category_is_held_only_where_a_cue_after_it_can_lower_it() {
        let cue = |extra: &str| {
            format!(
                "\n[[cues]]\nname = \"game\"\nphrases = [\"in fortnite\"]\nweight = -0.6\n{extra}"
            )
        };
        assert!(!compile("").typed_category_may_be_lowered("violence"));
        assert!(compile(&cue("after = 6\n")).typed_category_may_be_lowered("violence"));
        assert!(compile(&cue("anywhere = true\n")).typed_category_may_be_lowered("violence"));
        // Only before the match: nothing typed later can change it.
        assert!(!compile(&cue("before = 6\n")).typed_category_may_be_lowered("violence"));
        // A cue for another category leaves this one alone.
        let other = cue("after = 6\ncategories = [\"drugs\"]\n");
        assert!(!compile(&other).typed_category_may_be_lowered("violence"));
        assert!(compile(&other).typed_category_may_be_lowered("drugs"));
        // A cue that raises is not a reason to wait.
        let raising =
            "\n[[cues]]\nname = \"plan\"\nphrases = [\"tonight\"]\nweight = 0.3\nafter = 6\n";
        assert!(!compile(raising).typed_category_may_be_lowered("violence"));
        let shipped = Pack::parse(include_str!("../packs/en-GB.toml"), "en-GB.toml").unwrap();
        let shipped = Matcher::compile(&shipped, &CompileOptions::default()).unwrap();
        assert!(shipped.typed_category_may_be_lowered("violence"));
        assert!(shipped.typed_category_may_be_lowered("bullying"));
    }
}
