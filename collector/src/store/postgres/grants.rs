//! Console accounts' grants on PostgreSQL: one role per account over the
//! trust ('') or a set of schools (their ids joined by ',').

use tokio_postgres::{Client, Error};

use super::console::Pg;
use super::users::{account_exists, audit};
use crate::store::schools::{GrantChange, School, Scope};
use crate::store::users::Audited;
use crate::store::StoreError;

/// Keeps an account's grant in step with its role; a new account is given
/// `new_school` ('' for the trust, as every account had before schools;
/// `NO_SCHOOL` for none yet).
pub(super) async fn keep_role(
    c: &Client,
    name: &str,
    role: &str,
    new_school: &str,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO console_grants (\"user\", role, school) VALUES ($1, $2, $3)
         ON CONFLICT (\"user\") DO UPDATE SET role = EXCLUDED.role",
        &[&name, &role, &new_school],
    )
    .await?;
    Ok(())
}

impl Pg<'_> {
    /// Every school, by id.
    pub fn schools(&self) -> Result<Vec<School>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(
                c.query("SELECT id, name, created_ms FROM schools ORDER BY id", &[])
                    .await?
                    .iter()
                    .map(|r| School {
                        id: r.get(0),
                        name: r.get(1),
                        created_ms: r.get(2),
                    })
                    .collect(),
            )
        })
    }

    /// Changes account `name`'s grant (its role over a set of schools),
    /// ending its sessions, audited; the (role, scope) it then holds, or
    /// `None` when there is no such account.
    pub fn grant(
        &self,
        name: &str,
        role: &str,
        change: GrantChange<'_>,
        entry: &Audited<'_>,
    ) -> Result<Option<(String, Scope)>, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            if !account_exists(c, name).await? {
                return Ok(None);
            }
            let current: Option<(String, String)> = c
                .query_opt(
                    "SELECT role, school FROM console_grants WHERE \"user\" = $1 FOR UPDATE",
                    &[&name],
                )
                .await?
                .map(|r| (r.get(0), r.get(1)));
            let (role, scope) = change.apply(
                current.as_ref().map(|(r, s)| (r.as_str(), s.as_str())),
                role,
            );
            c.execute(
                "UPDATE console_users SET role = $2 WHERE name = $1",
                &[&name, &role],
            )
            .await?;
            c.execute(
                "INSERT INTO console_grants (\"user\", role, school) VALUES ($1, $2, $3)
                 ON CONFLICT (\"user\") DO UPDATE SET role = EXCLUDED.role, school = EXCLUDED.school",
                &[&name, &role, &scope.as_grant()],
            )
            .await?;
            c.execute("DELETE FROM console_sessions WHERE \"user\" = $1", &[&name])
                .await?;
            audit(c, entry).await?;
            Ok(Some((role, scope)))
        })
    }
}
