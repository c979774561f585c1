//! Console accounts, sessions, single sign-on links, the audit log and
//! school settings on PostgreSQL. Every change is one transaction with its
//! audit entry; audit appends from every collector take one advisory lock,
//! so the hash chain stays one chain.

use tokio_postgres::{Client, Error};

use super::console::Pg;
use crate::store::audit::{alert_of, entry_hash, ChainCheck, Entry, GENESIS};
use crate::store::now_ms;
use crate::store::schools::Scope;
use crate::store::users::{
    AccountChange, AuditEntry, Audited, LoginRow, NewSession, SessionRow, SsoAccount,
};
use crate::store::StoreError;

/// The advisory lock key held while appending to the audit log ("audit").
pub(super) const AUDIT_LOCK: i64 = 0x61_7564_6974;

/// Appends one entry inside the caller's transaction.
pub(super) async fn audit(c: &Client, a: &Audited<'_>) -> Result<(), Error> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
        .await?;
    let last = c
        .query_opt(
            "SELECT id, hash FROM console_audit ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    let (id, prev) = match last {
        Some(r) => (r.get::<_, i64>(0) + 1, r.get::<_, String>(1)),
        None => (1, GENESIS.to_owned()),
    };
    let entry = Entry {
        id,
        time_ms: now_ms(),
        actor: a.actor.to_owned(),
        action: a.action.to_owned(),
        target: a.target.to_owned(),
        detail: a.detail.to_owned(),
        school: entry_school(c, a.actor, a.target).await?,
    };
    let hash = entry_hash(&prev, &entry);
    c.execute(
        "INSERT INTO console_audit (id, time_ms, actor, action, target, detail, prev_hash, hash, school)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &id,
            &entry.time_ms,
            &a.actor,
            &a.action,
            &a.target,
            &a.detail,
            &prev,
            &hash,
            &entry.school,
        ],
    )
    .await?;
    Ok(())
}

/// The school an entry by `actor` about `target` belongs to: an alert's
/// (or its capture's) school when the actor's grants cover it (or it has
/// none: a pupil's report, the retention purge), else the school of
/// `actor`'s grant ('' for the trust and for actors without an account:
/// the command line, the collector). An account refused another school's
/// alert is recorded in its own school's log, never in the other's.
async fn entry_school(c: &Client, actor: &str, target: &str) -> Result<String, Error> {
    if let Some(id) = alert_of(target) {
        if let Some(r) = c
            .query_opt(
                "SELECT a.school FROM alerts a WHERE a.id = $1 AND (
                     NOT EXISTS (SELECT 1 FROM console_grants WHERE \"user\" = $2)
                     OR EXISTS (SELECT 1 FROM console_grants g WHERE g.\"user\" = $2
                         AND (g.school = '' OR strpos(',' || g.school || ',', ',' || a.school || ',') > 0)))",
                &[&id, &actor],
            )
            .await?
        {
            return Ok(r.get(0));
        }
    }
    // An account over several schools acts for the trust.
    Ok(c.query_opt(
        "SELECT CASE WHEN COUNT(DISTINCT school) = 1 AND MAX(strpos(school, ',')) = 0
             THEN MAX(school) ELSE '' END
         FROM console_grants WHERE \"user\" = $1",
        &[&actor],
    )
    .await?
    .map(|r| r.get(0))
    .unwrap_or_default())
}

async fn insert_session(c: &Client, s: &NewSession<'_>) -> Result<(), Error> {
    // A new session acts under the account's first grant.
    let role = super::grants::first_role(c, s.user).await?;
    c.execute(
        "INSERT INTO console_sessions (token_hash, \"user\", csrf, created_ms, last_ms, role) VALUES ($1, $2, $3, $4, $4, $5)",
        &[&s.token_hash, &s.user, &s.csrf, &s.now_ms, &role],
    )
    .await?;
    c.execute(
        "DELETE FROM console_sessions WHERE last_ms < $1 OR created_ms < $2",
        &[&s.idle_before_ms, &s.created_before_ms],
    )
    .await?;
    Ok(())
}

pub(super) async fn account_exists(c: &Client, name: &str) -> Result<bool, Error> {
    Ok(
        c.query_opt("SELECT 1 FROM console_users WHERE name = $1", &[&name])
            .await?
            .is_some(),
    )
}

impl Pg<'_> {
    pub fn login_row(&self, name: &str) -> Result<Option<LoginRow>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_opt(
                "SELECT password_hash, failed, locked_until_ms, disabled FROM console_users WHERE name = $1",
                &[&name],
            )
            .await?
            .map(|r| LoginRow {
                password_hash: r.get(0),
                failed: r.get(1),
                locked_until_ms: r.get(2),
                disabled: r.get(3),
            }))
        })
    }

    pub fn record_login_failure(
        &self,
        name: &str,
        failed: i64,
        locked_until_ms: i64,
        entry: &Audited<'_>,
    ) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
                "UPDATE console_users SET failed = $2, locked_until_ms = $3 WHERE name = $1",
                &[&name, &failed, &locked_until_ms],
            )
            .await?;
            audit(c, entry).await
        })
    }

    pub fn sign_in(&self, session: &NewSession<'_>, entry: &Audited<'_>) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
                "UPDATE console_users SET failed = 0, locked_until_ms = 0 WHERE name = $1",
                &[&session.user],
            )
            .await?;
            insert_session(c, session).await?;
            audit(c, entry).await
        })
    }

    pub fn sso_sign_in<R>(
        &self,
        provider: &str,
        subject: &str,
        role: &str,
        new_school: &str,
        session: &NewSession<'_>,
        decide: impl FnOnce(&SsoAccount) -> Result<AuditEntry, (R, AuditEntry)>,
    ) -> Result<Result<(), R>, StoreError> {
        let c = self.client()?;
        let name = session.user;
        self.unit(async move {
            // The account's row is locked so that two collectors signing the
            // same person in decide one after the other.
            let account = c
                .query_opt(
                    "SELECT password_hash, disabled FROM console_users WHERE name = $1 FOR UPDATE",
                    &[&name],
                )
                .await?
                .map(|r| (r.get(0), r.get(1)));
            let linked_subject = c
                .query_opt(
                    "SELECT subject FROM console_oidc_accounts WHERE provider = $1 AND name = $2",
                    &[&provider, &name],
                )
                .await?
                .map(|r| r.get(0));
            let found = SsoAccount {
                account,
                linked_subject,
            };
            let entry = match decide(&found) {
                Ok(entry) => entry,
                Err((refusal, entry)) => {
                    audit(c, &entry.borrow()).await?;
                    return Ok(Err(refusal));
                }
            };
            c.execute(
                "INSERT INTO console_users (name, password_hash, role, created_ms) VALUES ($1, '', $2, $3)
                 ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role",
                &[&name, &role, &session.now_ms],
            )
            .await?;
            super::grants::keep_role(c, name, role, new_school).await?;
            c.execute(
                "INSERT INTO console_oidc_accounts (provider, subject, name, first_ms, last_ms) VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (provider, subject) DO UPDATE SET name = EXCLUDED.name, last_ms = EXCLUDED.last_ms",
                &[&provider, &subject, &name, &session.now_ms],
            )
            .await?;
            insert_session(c, session).await?;
            audit(c, &entry.borrow()).await?;
            Ok(Ok(()))
        })
    }

    pub fn session(&self, token_hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(c.query_opt(
                "SELECT s.\"user\", s.csrf, s.created_ms, s.last_ms, g.role, g.school,
                        (SELECT COUNT(*) FROM console_grants n WHERE n.\"user\" = u.name)
                 FROM console_sessions s
                 JOIN console_users u ON u.name = s.\"user\" AND NOT u.disabled
                 JOIN console_grants g ON g.\"user\" = u.name AND g.role = s.role
                 WHERE s.token_hash = $1",
                &[&token_hash],
            )
            .await?
            .map(|r| SessionRow {
                user: r.get(0),
                csrf: r.get(1),
                created_ms: r.get(2),
                last_ms: r.get(3),
                role: r.get(4),
                school: r.get(5),
                grants: r.get(6),
            }))
        })
    }

    pub fn end_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        let c = self.client()?;
        self.run(async move {
            c.execute(
                "DELETE FROM console_sessions WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?;
            Ok(())
        })
    }

    pub fn touch_session(&self, token_hash: &[u8], now_ms: i64) -> Result<(), StoreError> {
        let c = self.client()?;
        self.run(async move {
            c.execute(
                "UPDATE console_sessions SET last_ms = $2 WHERE token_hash = $1",
                &[&token_hash, &now_ms],
            )
            .await?;
            Ok(())
        })
    }

    pub fn sign_out(&self, token_hash: &[u8], entry: &Audited<'_>) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute(
                "DELETE FROM console_sessions WHERE token_hash = $1",
                &[&token_hash],
            )
            .await?;
            audit(c, entry).await
        })
    }

    pub fn accounts_with_roles(
        &self,
        roles: &[&str],
        school: &str,
    ) -> Result<Vec<String>, StoreError> {
        let c = self.client()?;
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        self.run(async move {
            Ok(c.query(
                "SELECT DISTINCT u.name FROM console_users u JOIN console_grants g ON g.\"user\" = u.name
                 WHERE NOT u.disabled AND g.role = ANY($1)
                 AND (g.school = '' OR $2 = ANY(string_to_array(g.school, ',')))
                 ORDER BY u.name",
                &[&roles, &school],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    pub fn put_account(
        &self,
        name: &str,
        password_hash: &str,
        role: &str,
        new_school: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            let existed = account_exists(c, name).await?;
            c.execute(
                "INSERT INTO console_users (name, password_hash, role, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                     role = EXCLUDED.role, failed = 0, locked_until_ms = 0",
                &[&name, &password_hash, &role, &now_ms],
            )
            .await?;
            super::grants::keep_role(c, name, role, new_school).await?;
            c.execute("DELETE FROM console_sessions WHERE \"user\" = $1", &[&name])
                .await?;
            audit(
                c,
                &Audited {
                    actor: "cli",
                    action: if existed {
                        "account_updated"
                    } else {
                        "account_created"
                    },
                    target: &format!("user:{name}"),
                    detail: &format!("role={role}"),
                },
            )
            .await?;
            Ok(existed)
        })
    }

    pub fn change_account(
        &self,
        name: &str,
        change: AccountChange<'_>,
    ) -> Result<bool, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            if !account_exists(c, name).await? {
                return Ok(false);
            }
            let (action, ends_sessions) = match change {
                AccountChange::Password(hash) => {
                    c.execute(
                        "UPDATE console_users SET password_hash = $2, failed = 0, locked_until_ms = 0 WHERE name = $1",
                        &[&name, &hash],
                    )
                    .await?;
                    ("password_reset", true)
                }
                AccountChange::Unlock => {
                    c.execute(
                        "UPDATE console_users SET failed = 0, locked_until_ms = 0 WHERE name = $1",
                        &[&name],
                    )
                    .await?;
                    ("account_unlocked", false)
                }
                AccountChange::Disable => {
                    c.execute(
                        "UPDATE console_users SET disabled = TRUE WHERE name = $1",
                        &[&name],
                    )
                    .await?;
                    ("account_disabled", true)
                }
                AccountChange::Enable => {
                    c.execute(
                        "UPDATE console_users SET disabled = FALSE, failed = 0, locked_until_ms = 0 WHERE name = $1",
                        &[&name],
                    )
                    .await?;
                    ("account_enabled", false)
                }
            };
            if ends_sessions {
                c.execute("DELETE FROM console_sessions WHERE \"user\" = $1", &[&name])
                    .await?;
            }
            audit(
                c,
                &Audited {
                    actor: "cli",
                    action,
                    target: &format!("user:{name}"),
                    detail: "",
                },
            )
            .await?;
            Ok(true)
        })
    }

    // The audit log.

    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            audit(
                c,
                &Audited {
                    actor,
                    action,
                    target,
                    detail,
                },
            )
            .await
        })
    }

    pub fn audit_chain(&self) -> Result<Result<usize, i64>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            let rows = c
                .query(
                    "SELECT id, time_ms, actor, action, target, detail, prev_hash, hash, school FROM console_audit ORDER BY id",
                    &[],
                )
                .await?;
            let mut check = ChainCheck::default();
            for r in &rows {
                let entry = Entry {
                    id: r.get(0),
                    time_ms: r.get(1),
                    actor: r.get(2),
                    action: r.get(3),
                    target: r.get(4),
                    detail: r.get(5),
                    school: r.get(8),
                };
                if !check.next(&entry, r.get(6), r.get(7)) {
                    break;
                }
            }
            Ok(check.result())
        })
    }

    pub fn audit_recent(
        &self,
        scope: &Scope,
        limit: i64,
        actor: Option<&str>,
    ) -> Result<Vec<Entry>, StoreError> {
        let c = self.client()?;
        let school = scope.list();
        self.run(async move {
            Ok(c.query(
                "SELECT id, time_ms, actor, action, target, detail, school FROM console_audit
                 WHERE ($2::TEXT IS NULL OR actor = $2) AND ($3::TEXT[] IS NULL OR school = ANY($3))
                 ORDER BY id DESC LIMIT $1",
                &[&limit, &actor, &school],
            )
            .await?
            .iter()
            .map(|r| Entry {
                id: r.get(0),
                time_ms: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                detail: r.get(5),
                school: r.get(6),
            })
            .collect())
        })
    }

    // Settings and the staff list.

    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let c = self.client()?;
        self.run(async move {
            Ok(
                c.query_opt("SELECT value FROM console_settings WHERE key = $1", &[&key])
                    .await?
                    .map(|r| r.get(0)),
            )
        })
    }

    pub fn change_setting(
        &self,
        key: &str,
        value: &str,
        actor: &str,
        now_ms: i64,
        detail: impl FnOnce(Option<&str>) -> String,
    ) -> Result<bool, StoreError> {
        let c = self.client()?;
        self.unit(async move {
            let previous: Option<String> = c
                .query_opt(
                    "SELECT value FROM console_settings WHERE key = $1 FOR UPDATE",
                    &[&key],
                )
                .await?
                .map(|r| r.get(0));
            if previous.as_deref() == Some(value) {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO console_settings (key, value, updated_ms, updated_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_ms = EXCLUDED.updated_ms,
                     updated_by = EXCLUDED.updated_by",
                &[&key, &value, &now_ms, &actor],
            )
            .await?;
            audit(
                c,
                &Audited {
                    actor,
                    action: "setting_changed",
                    target: &format!("setting:{key}"),
                    detail: &detail(previous.as_deref()),
                },
            )
            .await?;
            Ok(true)
        })
    }

    pub fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<String, StoreError> {
        let c = self.client()?;
        self.run(async move {
            c.execute(
                "INSERT INTO console_settings (key, value, updated_ms, updated_by) VALUES ($1, $2, $3, 'collector')
                 ON CONFLICT (key) DO NOTHING",
                &[&key, &value, &now_ms],
            )
            .await?;
            Ok(c.query_one("SELECT value FROM console_settings WHERE key = $1", &[&key])
                .await?
                .get(0))
        })
    }

    pub fn replace_staff(
        &self,
        staff: &[(String, String)],
        now_ms: i64,
        entry: &Audited<'_>,
    ) -> Result<(), StoreError> {
        let c = self.client()?;
        self.unit(async move {
            c.execute("DELETE FROM console_staff", &[]).await?;
            for (user, groups) in staff {
                c.execute(
                    "INSERT INTO console_staff (username, groups, imported_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (username) DO UPDATE SET groups = EXCLUDED.groups",
                    &[user, groups, &now_ms],
                )
                .await?;
            }
            audit(c, entry).await
        })
    }
}
