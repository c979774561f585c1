//! Small rule packs written as TOML, for tests that publish, sign or load a
//! pack and want it quick to compile.

/// Who a small pack is: its id, name, description and the start of each
/// release's changelog notes ("Test release" gives "Test release 2.").
pub struct About<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub notes: &'a str,
}

impl<'a> About<'a> {
    /// A test pack whose releases are noted "Test release N.".
    pub fn new(id: &'a str, name: &'a str, description: &'a str) -> Self {
        About {
            id,
            name,
            description,
            notes: "Test release",
        }
    }
}

/// One category of a small pack and its phrase terms.
pub struct Category<'a> {
    pub name: &'a str,
    pub severity: u8,
    pub description: &'a str,
    pub terms: &'a [&'a str],
}

/// The weapons category (severity 4) with `terms` as phrases.
pub fn weapons<'a>(terms: &'a [&'a str]) -> Category<'a> {
    Category {
        name: "weapons",
        severity: 4,
        description: "Weapons.",
        terms,
    }
}

/// The drugs category (severity 3) with `terms` as phrases.
pub fn drugs<'a>(terms: &'a [&'a str]) -> Category<'a> {
    Category {
        name: "drugs",
        severity: 3,
        description: "Drugs.",
        terms,
    }
}

/// The TOML of pack `about` at `version`, with one changelog entry and
/// `categories` in order: all category headers first, then their terms.
pub fn small_pack(about: &About, version: u32, categories: &[Category]) -> String {
    let About {
        id,
        name,
        description,
        notes,
    } = about;
    let mut out = format!(
        r#"[pack]
id = "{id}"
name = "{name}"
version = {version}
language = "en-GB"
description = "{description}"

[[changelog]]
version = {version}
date = "2026-11-22"
notes = "{notes} {version}."
"#
    );
    for c in categories {
        out.push_str(&format!(
            "\n[categories.{}]\nseverity = {}\ndescription = \"{}\"\n",
            c.name, c.severity, c.description
        ));
    }
    for c in categories {
        let terms = c
            .terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "\n[[terms]]\ncategory = \"{}\"\nkind = \"phrase\"\nterms = [{terms}]\n",
            c.name
        ));
    }
    out
}
