//! Term roles as cues see them: a term group's `role = "topic"` and a lowering cue group's
//! `lowers = ["topic"]` (see `cue`): checking the names and giving each role a bit.

use crate::cue::{RawCue, MAX_ROLES};
use std::collections::BTreeSet;
use toml::Spanned;

/// Why a term role name is refused, if it is.
pub(crate) fn role_problem(role: &str) -> Option<String> {
    let ok = !role.is_empty()
        && role.len() <= 32
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!ok).then(|| {
        format!("term role `{role}` is not a name: use lower-case letters, digits and '-', starting with a letter (such as \"topic\")")
    })
}

/// The (category, role) pairs the pack's term groups declare with valid names: what a cue
/// group's `lowers` may name.
pub(crate) fn declared_roles(
    groups: &[Spanned<crate::pack_toml::RawTermGroup>],
) -> BTreeSet<(String, String)> {
    groups
        .iter()
        .filter_map(|g| {
            let g = g.get_ref();
            let role = g.role.as_ref()?.get_ref();
            role_problem(role)
                .is_none()
                .then(|| (g.category.get_ref().clone(), role.clone()))
        })
        .collect()
}

/// A cue group's `lowers`: term roles that its categories' term groups declare; only a
/// cue of negative weight with named categories may have it.
pub(crate) fn parse_lowers(
    g: &RawCue,
    categories: &[String],
    roles: &BTreeSet<(String, String)>,
    line: &dyn Fn(usize) -> usize,
    problem: &mut dyn FnMut(usize, String),
) -> Vec<String> {
    let Some(lowers) = &g.lowers else {
        return Vec::new();
    };
    let at = line(lowers.span().start);
    let name = &g.name;
    if lowers.get_ref().is_empty() {
        problem(
            at,
            format!("cue `{name}` has an empty `lowers`: name a term role (such as \"topic\") or leave `lowers` out"),
        );
    }
    if *g.weight.get_ref() > 0.0 {
        problem(at, format!("cue `{name}` raises (weight above 0) but has `lowers`: only a cue of negative weight can lower some roles; remove `lowers`"));
    }
    if g.categories.is_empty() {
        problem(at, format!("cue `{name}` has `lowers` but no `categories`: list the categories whose term roles it lowers"));
    }
    let mut out = Vec::new();
    for r in lowers.get_ref() {
        let role = r.get_ref();
        if let Some(message) = role_problem(role) {
            problem(line(r.span().start), message);
            continue;
        }
        let missing: Vec<&str> = categories
            .iter()
            .filter(|c| !roles.contains(&(c.to_string(), role.clone())))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            problem(
                line(r.span().start),
                format!(
                    "cue `{name}` lowers role `{role}`, but no term group of {} has `role = \"{role}\"`: give the terms it should lower that role, or remove it from `lowers`",
                    missing.join(", ")
                ),
            );
            continue;
        }
        if !out.contains(role) {
            out.push(role.clone());
        }
    }
    out
}

/// The bits of a pack's term roles, in the order of their names (at most
/// [`MAX_ROLES`]: `check` refuses more).
#[derive(Debug, Default)]
pub(crate) struct RoleBits {
    names: Vec<String>,
}

impl RoleBits {
    pub(crate) fn new<'a>(roles: impl Iterator<Item = &'a str>) -> RoleBits {
        let names: BTreeSet<&str> = roles.collect();
        RoleBits {
            names: names
                .into_iter()
                .take(MAX_ROLES)
                .map(String::from)
                .collect(),
        }
    }

    /// The bit of a role (0 for none or an unknown one).
    pub(crate) fn bit(&self, role: &str) -> u16 {
        self.names
            .iter()
            .position(|r| r == role)
            .map_or(0, |i| 1u16 << i)
    }
}
