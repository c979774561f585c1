//! Schools as tenants. Every agent, enrolment token and alert belongs to a
//! school (alerts take their agent's at ingest); every console account has a
//! grant of a role over the trust (every school) or over one school. A
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
/// writes pupil data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every school.
    Trust,
    /// One school (its id).
    School(String),
}

impl Scope {
    /// The scope a grant's stored school names ('' is the trust).
    pub fn from_grant(school: &str) -> Self {
        if school.is_empty() {
            Scope::Trust
        } else {
            Scope::School(school.to_owned())
        }
    }

    /// What a grant stores for this scope ('' for the trust).
    pub fn as_grant(&self) -> &str {
        match self {
            Scope::Trust => "",
            Scope::School(id) => id,
        }
    }

    /// The one school this scope is limited to, if any.
    pub fn school(&self) -> Option<&str> {
        match self {
            Scope::Trust => None,
            Scope::School(id) => Some(id),
        }
    }

    /// Whether a row of `school` is in scope.
    pub fn allows(&self, school: &str) -> bool {
        match self {
            Scope::Trust => true,
            Scope::School(id) => id == school,
        }
    }

    /// Whether this is the scope of an account with no grant yet
    /// ([`NO_SCHOOL`]): it sees nothing.
    pub fn is_none(&self) -> bool {
        matches!(self, Scope::School(id) if id == NO_SCHOOL)
    }

    /// The school new rows made in this scope belong to: the scope's own,
    /// or the default school for the trust.
    pub fn home(&self) -> &str {
        self.school().unwrap_or(DEFAULT_SCHOOL)
    }

    /// How the console and the command line name it.
    pub fn label(&self) -> String {
        match self {
            Scope::Trust => "trust".to_owned(),
            Scope::School(id) => format!("school {id}"),
        }
    }
}

/// One school.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct School {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
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
}
