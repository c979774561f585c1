//! Console accounts' grants on PostgreSQL: one row per (account, role), the
//! role over the trust ('') or a set of schools (their ids joined by ','),
//! and the grant each session acts under.

use tokio_postgres::{Client, Error};

use super::console::Pg;
use super::users::{account_exists, audit};
use crate::store::schools::{role_rank, GrantChange, School, Scope, SettingsChange};
use crate::store::users::{AccountRow, Audited, Rotated};
use crate::store::StoreError;

/// Keeps a new account's grant in step with its role: a new account is
/// given `role` over `new_school` ('' for the trust, as every account had
/// before schools; `NO_SCHOOL` for none yet); an account of one grant has
/// that grant's role changed; one of several keeps them as they are.
pub(super) async fn keep_role(
    c: &Client,
    name: &str,
    role: &str,
    new_school: &str,
) -> Result<(), Error> {
    c.execute(
        "UPDATE console_grants SET role = $2
         WHERE \"user\" = $1 AND (SELECT COUNT(*) FROM console_grants WHERE \"user\" = $1) = 1",
        &[&name, &role],
    )
    .await?;
    c.execute(
        "INSERT INTO console_grants (\"user\", role, school) SELECT $1, $2, $3
         WHERE NOT EXISTS (SELECT 1 FROM console_grants WHERE \"user\" = $1)
         ON CONFLICT DO NOTHING",
        &[&name, &role, &new_school],
    )
    .await?;
    Ok(())
}

/// Account `name`'s grants: (role, stored schools), in role order (locked
/// for the transaction's change when `lock`).
async fn grants_of(c: &Client, name: &str, lock: bool) -> Result<Vec<(String, String)>, Error> {
    let sql = if lock {
        "SELECT role, school FROM console_grants WHERE \"user\" = $1 FOR UPDATE"
    } else {
        "SELECT role, school FROM console_grants WHERE \"user\" = $1"
    };
    let mut rows: Vec<(String, String)> = c
        .query(sql, &[&name])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    rows.sort_by_key(|(role, _)| role_rank(role));
    Ok(rows)
}

/// The role of the grant a new session of `name` acts under: its first.
pub(super) async fn first_role(c: &Client, name: &str) -> Result<String, Error> {
    Ok(grants_of(c, name, false)
        .await?
        .into_iter()
        .next()
        .map(|(role, _)| role)
        .unwrap_or_default())
}

impl Pg<'_> {
    /// Every school, by id.
    pub fn schools(&self) -> Result<Vec<School>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query(
                "SELECT id, name, created_ms, time_zone, retention_months FROM schools ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| School {
                id: r.get(0),
                name: r.get(1),
                created_ms: r.get(2),
                time_zone: r.get(3),
                retention_months: u32::try_from(r.get::<_, i64>(4)).unwrap_or(0),
            })
            .collect())
        })
    }

    /// Changes school `id`'s own settings, audited; `false` (nothing
    /// changed) when there is no such school.
    pub fn set_school_settings(
        &self,
        id: &str,
        change: &SettingsChange<'_>,
        entry: &Audited<'_>,
    ) -> Result<bool, StoreError> {
        let c = self.client()?;
        let months = change.retention_months.map(i64::from);
        let tz = change.time_zone;
        self.unit(async move {
            let found = c
                .execute(
                    "UPDATE schools SET time_zone = COALESCE($2, time_zone),
                         retention_months = COALESCE($3, retention_months)
                     WHERE id = $1",
                    &[&id, &tz, &months],
                )
                .await?
                == 1;
            if found {
                audit(c, entry).await?;
            }
            Ok(found)
        })
    }

    /// Account `name`'s grants: (role, stored schools), in role order.
    pub fn grants_of(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.client()?;
        self.run(grants_of(c, name, false))
    }

    /// Every account with its grants, by name.
    pub fn accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let mut accounts: Vec<AccountRow> = c
                .query(
                    "SELECT name, role, failed, locked_until_ms, disabled, password_hash = ''
                     FROM console_users ORDER BY name",
                    &[],
                )
                .await?
                .iter()
                .map(|r| AccountRow {
                    name: r.get(0),
                    role: r.get(1),
                    failed: r.get(2),
                    locked_until_ms: r.get(3),
                    disabled: r.get(4),
                    single_sign_on: r.get(5),
                    grants: Vec::new(),
                })
                .collect();
            for a in &mut accounts {
                a.grants = grants_of(c, &a.name, false).await?;
            }
            Ok(accounts)
        })
    }

    /// Changes account `name`'s grants (see [`GrantChange`]), ending its
    /// sessions, audited; the grants it then holds, or `None` when there is
    /// no such account.
    pub fn grant(
        &self,
        name: &str,
        role: &str,
        change: GrantChange<'_>,
        entry: &Audited<'_>,
    ) -> Result<Option<Vec<(String, Scope)>>, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            if !account_exists(c, name).await? {
                return Ok(None);
            }
            // The account's row serialises concurrent changes to its grants.
            c.execute(
                "SELECT 1 FROM console_users WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?;
            let grants = change.apply(&grants_of(c, name, true).await?, role);
            c.execute("DELETE FROM console_grants WHERE \"user\" = $1", &[&name])
                .await?;
            for (role, scope) in &grants {
                c.execute(
                    "INSERT INTO console_grants (\"user\", role, school) VALUES ($1, $2, $3)",
                    &[&name, role, &scope.as_grant()],
                )
                .await?;
            }
            if let Some((role, _)) = grants.first() {
                c.execute(
                    "UPDATE console_users SET role = $2 WHERE name = $1",
                    &[&name, role],
                )
                .await?;
            }
            c.execute("DELETE FROM console_sessions WHERE \"user\" = $1", &[&name])
                .await?;
            audit(c, entry).await?;
            Ok(Some(grants))
        })
    }

    /// Makes the session with `token_hash` act under its account's grant
    /// of `role`, under the new token and CSRF token of `rotated` (the old
    /// ones stop working), audited; `false` (nothing changed) when the
    /// account holds no such grant.
    pub fn switch_grant(
        &self,
        token_hash: &[u8],
        role: &str,
        rotated: &Rotated<'_>,
        entry: &Audited<'_>,
    ) -> Result<bool, StoreError> {
        let c = self.client()?;
        let (new_hash, new_csrf) = (rotated.token_hash, rotated.csrf);
        self.unit(async move {
            let switched = c
                .execute(
                    "UPDATE console_sessions s SET role = $2, token_hash = $3, csrf = $4 WHERE s.token_hash = $1
                     AND EXISTS (SELECT 1 FROM console_grants g WHERE g.\"user\" = s.\"user\" AND g.role = $2)",
                    &[&token_hash, &role, &new_hash, &new_csrf],
                )
                .await?
                == 1;
            if switched {
                audit(c, entry).await?;
            }
            Ok(switched)
        })
    }
}
