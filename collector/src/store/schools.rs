//! Schools as tenants. Every agent, enrolment token and alert belongs to a
//! school (alerts take their agent's at ingest); every console account has
//! grants, each of a role over the trust (every school) or schools, and
//! acts under one of them at a time (its session's). A
//! store that never had schools has one, [`DEFAULT_SCHOOL`], holding
//! everything, and its accounts hold trust grants: nothing changes for it.

use super::{Store, StoreError};

/// The school every row of a single-school store belongs to.
pub const DEFAULT_SCHOOL: &str = "default";
/// Its display name until someone names it.
pub const DEFAULT_NAME: &str = "Default school";
/// What the grant of an account that has no school yet stores: an account
/// made by single sign-on on a collector of several schools, until `users
/// grant` gives it one. It is not a school id, so it matches no row.
pub const NO_SCHOOL: &str = "-";
/// The longest school id.
pub const MAX_ID_BYTES: usize = 32;

/// How much of the trust a request may see: worked out once per request
/// from the account's grant, and given to every store call that reads or
/// writes pupil data. A grant stores it as text: '' for the trust, else the
/// school ids joined by ',' (ids never hold one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every school.
    Trust,
    /// One school (its id).
    School(String),
    /// Several schools (their ids, sorted, at least two).
    Several(Vec<String>),
}

impl Scope {
    /// The scope a grant's stored schools name ('' is the trust).
    pub fn from_grant(school: &str) -> Self {
        if school.is_empty() {
            return Scope::Trust;
        }
        let mut ids: Vec<String> = school
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Self::of(ids)
    }

    /// The scope of the schools `ids` (none is the scope of no school).
    fn of(mut ids: Vec<String>) -> Self {
        match ids.len() {
            0 => Scope::School(NO_SCHOOL.to_owned()),
            1 => Scope::School(ids.remove(0)),
            _ => Scope::Several(ids),
        }
    }

    /// What a grant stores for this scope ('' for the trust).
    pub fn as_grant(&self) -> String {
        match self {
            Scope::Trust => String::new(),
            Scope::School(id) => id.clone(),
            Scope::Several(ids) => ids.join(","),
        }
    }

    /// The schools this scope is limited to, or `None` for every school.
    pub fn schools(&self) -> Option<&[String]> {
        match self {
            Scope::Trust => None,
            Scope::School(id) => Some(std::slice::from_ref(id)),
            Scope::Several(ids) => Some(ids),
        }
    }

    /// The schools as a JSON array, bound in SQLite's filters
    /// (`school IN (SELECT value FROM json_each(?))`); `None` for every
    /// school.
    pub fn json(&self) -> Option<String> {
        self.schools()
            .map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned()))
    }

    /// The schools as a list, bound in PostgreSQL's filters
    /// (`school = ANY($n)`); `None` for every school.
    pub fn list(&self) -> Option<Vec<String>> {
        self.schools().map(<[String]>::to_vec)
    }

    /// The one school this scope is limited to, if it is limited to one.
    pub fn only_school(&self) -> Option<&str> {
        match self {
            Scope::School(id) => Some(id),
            _ => None,
        }
    }

    /// Whether a row of `school` is in scope.
    pub fn allows(&self, school: &str) -> bool {
        match self.schools() {
            None => true,
            Some(ids) => ids.iter().any(|id| id == school),
        }
    }

    /// Whether this is the scope of an account with no grant yet
    /// ([`NO_SCHOOL`]): it sees nothing.
    pub fn is_none(&self) -> bool {
        matches!(self, Scope::School(id) if id == NO_SCHOOL)
    }

    /// The school new rows made in this scope belong to: the scope's own
    /// (the first of several), or the default school for the trust.
    pub fn home(&self) -> &str {
        self.schools()
            .and_then(|ids| ids.first())
            .map_or(DEFAULT_SCHOOL, String::as_str)
    }

    /// This scope with `added` granted too: the trust covers every school;
    /// schools are joined; from none, just `added`.
    pub fn with(&self, added: &Scope) -> Scope {
        match (self.schools(), added.schools()) {
            (None, _) | (_, None) => Scope::Trust,
            _ if self.is_none() => added.clone(),
            (Some(mine), Some(more)) => {
                let mut ids: Vec<String> = mine.iter().chain(more).cloned().collect();
                ids.sort_unstable();
                ids.dedup();
                ids.retain(|id| id != NO_SCHOOL);
                Self::of(ids)
            }
        }
    }

    /// This scope without `removed`: the trust without the trust is none;
    /// the trust without a school stays the trust (a school's grant is not
    /// part of it), schools without the trust stay those schools.
    pub fn without(&self, removed: &Scope) -> Scope {
        match (self.schools(), removed.schools()) {
            (None, None) => Self::of(Vec::new()),
            (Some(_), None) => self.clone(),
            (None, Some(_)) => Scope::Trust,
            (Some(mine), Some(gone)) => Self::of(
                mine.iter()
                    .filter(|id| !gone.contains(id))
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// How the console and the command line name it.
    pub fn label(&self) -> String {
        match self {
            Scope::Trust => "trust".to_owned(),
            Scope::School(id) => format!("school {id}"),
            Scope::Several(ids) => format!("schools {}", ids.join(", ")),
        }
    }
}

/// A change to an account's grants: each a role over a set of schools (or
/// the trust); an account holds at most one grant per role.
#[derive(Debug, Clone, Copy)]
pub enum GrantChange<'a> {
    /// The role over exactly this scope.
    Set(&'a Scope),
    /// The role over this scope too: a grant of another role is added
    /// beside the account's others; one of the same role takes the scope
    /// in (a trust grant already covers every school, so a school narrows
    /// it).
    Add(&'a Scope),
    /// The scope no longer granted to the role (to every role when the
    /// role named is ''); a grant left with no school goes.
    Remove(&'a Scope),
}

/// The order an account's grants are listed in, the first being the one a
/// sign-in acts under: the reviewing roles first.
pub fn role_rank(role: &str) -> usize {
    ["dsl", "deputy-dsl", "head", "technician", "auditor"]
        .iter()
        .position(|r| *r == role)
        .unwrap_or(usize::MAX)
}

impl GrantChange<'_> {
    /// The grants (role, scope), in [`role_rank`] order, an account holding
    /// `current` ((role, stored schools) rows) has after this change;
    /// `role` is the role named with it ('' for `Remove` from every role).
    /// An account left with no grant keeps one of no school
    /// ([`NO_SCHOOL`]): it sees nothing until it is given one.
    pub fn apply(&self, current: &[(String, String)], role: &str) -> Vec<(String, Scope)> {
        let mut grants: Vec<(String, Scope)> = current
            .iter()
            .map(|(r, school)| (r.clone(), Scope::from_grant(school)))
            .filter(|(_, scope)| !scope.is_none())
            .collect();
        match self {
            GrantChange::Set(scope) | GrantChange::Add(scope) => {
                let held = grants.iter().position(|(r, _)| r == role);
                let scope = match (self, held) {
                    (GrantChange::Add(_), Some(i)) if grants[i].1 != Scope::Trust => {
                        grants[i].1.with(scope)
                    }
                    _ => (*scope).clone(),
                };
                match held {
                    Some(i) => grants[i].1 = scope,
                    None => grants.push((role.to_owned(), scope)),
                }
            }
            GrantChange::Remove(scope) => {
                for (r, held) in &mut grants {
                    if role.is_empty() || r == role {
                        *held = held.without(scope);
                    }
                }
                grants.retain(|(_, held)| !held.is_none());
            }
        }
        if grants.is_empty() {
            let kept = current.first().map_or(role, |(r, _)| r.as_str());
            grants.push((kept.to_owned(), Scope::School(NO_SCHOOL.to_owned())));
        }
        grants.sort_by_key(|(r, _)| role_rank(r));
        grants
    }
}

/// How the console and the command line name an account's grants:
/// "dsl: north; technician: south" ("trust" for the whole trust).
pub fn grants_label(grants: &[(String, Scope)]) -> String {
    grants
        .iter()
        .map(|(role, scope)| {
            let schools = match scope.schools() {
                None => "trust".to_owned(),
                Some(ids) => ids.join(", "),
            };
            format!("{role}: {schools}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One school.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct School {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    /// Its own time zone (the weekly summary's week, the console's times);
    /// '' for the trust's (`[console] time_zone`).
    pub time_zone: String,
    /// Its own retention of closed alerts, in calendar months; 0 for the
    /// trust's (`[retention] closed_alert_months`).
    pub retention_months: u32,
}

/// The most calendar months a school may keep closed alerts (ten years).
pub const MAX_RETENTION_MONTHS: u32 = 120;

/// A change to a school's own settings: `None` leaves one as it is;
/// `Some("")` / `Some(0)` gives it back to the trust's.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsChange<'a> {
    pub time_zone: Option<&'a str>,
    pub retention_months: Option<u32>,
}

impl SettingsChange<'_> {
    /// What the audit entry says of the change.
    pub fn detail(&self, school: &str) -> String {
        let mut parts = vec![format!("school={school}")];
        if let Some(tz) = self.time_zone {
            parts.push(format!(
                "time_zone={}",
                if tz.is_empty() { "trust" } else { tz }
            ));
        }
        if let Some(m) = self.retention_months {
            parts.push(if m == 0 {
                "retention=trust".to_owned()
            } else {
                format!("retention_months={m}")
            });
        }
        parts.join("; ")
    }
}

/// Whether `id` has the form of a school id: 1-32 lower-case ASCII letters,
/// digits or '-', starting with a letter or digit.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// What happened to a school being added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Created,
    /// It existed: its name was changed.
    Renamed,
}

impl Store {
    /// Adds school `id` named `name`, or renames it.
    pub async fn put_school(&self, id: &str, name: &str) -> Result<Added, StoreError> {
        let now = super::now_ms();
        backend!(self, s => s.run(|c| super::sqlite::schools::put(c, id, name, now)), s.put_school(id, name, now).await)
    }

    /// Every school, by id.
    pub async fn schools(&self) -> Result<Vec<School>, StoreError> {
        backend!(self, s => s.run(super::sqlite::schools::list), s.schools().await)
    }

    /// Whether school `id` exists.
    pub async fn school_exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.schools().await?.iter().any(|s| s.id == id))
    }
}

impl super::Jobs {
    /// Every school, by id (for background work: webhooks name a target's
    /// school).
    pub async fn schools(&self) -> Result<Vec<School>, StoreError> {
        super::jobs::jobs!(self, c => super::sqlite::schools::list(c), p => p.schools().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("north-primary"));
        assert!(valid_id("a1"));
        assert!(!valid_id(""));
        assert!(!valid_id("-a"));
        assert!(!valid_id("North"));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"a".repeat(33)));
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::from_grant(""), Scope::Trust);
        let a = Scope::from_grant("a");
        assert!(a.allows("a") && !a.allows("b"));
        assert!(Scope::Trust.allows("b"));
        assert_eq!(a.as_grant(), "a");
        assert_eq!(Scope::Trust.home(), DEFAULT_SCHOOL);
        let none = Scope::from_grant(NO_SCHOOL);
        assert!(none.is_none() && !none.allows(DEFAULT_SCHOOL) && !valid_id(NO_SCHOOL));
        assert!(!Scope::Trust.is_none() && !a.is_none());
    }

    #[test]
    fn several_schools() {
        let b = Scope::from_grant("b");
        let ab = Scope::from_grant("a").with(&b);
        assert_eq!(ab, Scope::Several(vec!["a".into(), "b".into()]));
        assert_eq!(ab.as_grant(), "a,b");
        assert_eq!(Scope::from_grant("b,a,b"), ab);
        assert!(ab.allows("a") && ab.allows("b") && !ab.allows("c"));
        assert_eq!(ab.json().as_deref(), Some(r#"["a","b"]"#));
        assert_eq!(ab.only_school(), None);
        assert_eq!(ab.label(), "schools a, b");
        assert_eq!(ab.without(&b), Scope::from_grant("a"));
        assert!(Scope::from_grant("a")
            .without(&Scope::from_grant("a"))
            .is_none());
        assert!(Scope::Trust.without(&Scope::Trust).is_none());
        assert_eq!(ab.without(&Scope::Trust), ab);
        assert_eq!(Scope::Trust.with(&b), Scope::Trust);
        assert_eq!(ab.with(&Scope::Trust), Scope::Trust);
        assert_eq!(Scope::from_grant(NO_SCHOOL).with(&b), b);
        assert_eq!(Scope::Trust.json(), None);
    }

    #[test]
    fn grant_changes() {
        let (a, b) = (Scope::from_grant("a"), Scope::from_grant("b"));
        let rows = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(r, s)| ((*r).to_owned(), (*s).to_owned()))
                .collect()
        };
        let held = rows(&[("dsl", "a")]);
        let label = |grants: Vec<(String, Scope)>| grants_label(&grants);
        assert_eq!(label(GrantChange::Add(&b).apply(&held, "dsl")), "dsl: a, b");
        // Another role is a grant of its own, listed in role order.
        let two = GrantChange::Add(&b).apply(&rows(&[("technician", "b")]), "dsl");
        assert_eq!(label(two), "dsl: b; technician: b");
        let two = GrantChange::Add(&b).apply(&held, "technician");
        assert_eq!(label(two.clone()), "dsl: a; technician: b");
        // A school narrows the trust; a grant of no school gives way.
        let narrowed = GrantChange::Add(&b).apply(&rows(&[("dsl", "")]), "dsl");
        assert_eq!(label(narrowed), "dsl: b");
        let first = GrantChange::Add(&b).apply(&rows(&[("head", NO_SCHOOL)]), "dsl");
        assert_eq!(label(first), "dsl: b");
        // Removing from one role, or from every role.
        let both = rows(&[("dsl", "a,b"), ("technician", "b")]);
        let out = GrantChange::Remove(&b).apply(&both, "dsl");
        assert_eq!(label(out), "dsl: a; technician: b");
        let out = GrantChange::Remove(&b).apply(&both, "");
        assert_eq!(label(out), "dsl: a");
        let out = GrantChange::Remove(&a).apply(&held, "dsl");
        assert_eq!(out.len(), 1);
        assert!(out[0].0 == "dsl" && out[0].1.is_none());
        let out = GrantChange::Remove(&a).apply(&held, "technician");
        assert_eq!(label(out), "dsl: a");
        let out = GrantChange::Set(&a).apply(&rows(&[("dsl", "a,b")]), "dsl");
        assert_eq!(label(out), "dsl: a");
        let auditor = GrantChange::Add(&Scope::Trust).apply(&held, "auditor");
        assert_eq!(label(auditor), "dsl: a; auditor: trust");
    }
}
