//! Console accounts' grants on PostgreSQL: one (role, school) per account,
//! '' for the trust.

use tokio_postgres::{Client, Error};

use super::console::Pg;
use super::users::{account_exists, audit};
use crate::store::schools::School;
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

    /// Gives account `name` `role` over `school` ('' for the trust), ending
    /// its sessions, audited; `false` when there is no such account.
    pub fn grant(
        &self,
        name: &str,
        role: &str,
        school: &str,
        entry: &Audited<'_>,
    ) -> Result<bool, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            if !account_exists(c, name).await? {
                return Ok(false);
            }
            c.execute(
                "UPDATE console_users SET role = $2 WHERE name = $1",
                &[&name, &role],
            )
            .await?;
            c.execute(
                "INSERT INTO console_grants (\"user\", role, school) VALUES ($1, $2, $3)
                 ON CONFLICT (\"user\") DO UPDATE SET role = EXCLUDED.role, school = EXCLUDED.school",
                &[&name, &role, &school],
            )
            .await?;
            c.execute("DELETE FROM console_sessions WHERE \"user\" = $1", &[&name])
                .await?;
            audit(c, entry).await?;
            Ok(true)
        })
    }
}
