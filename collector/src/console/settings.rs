//! School settings kept in the console's database, changed by the DSL on the
//! Settings page (every change audited), and the secret behind neutral rule
//! ids.
//!
//! Technicians see no alert by default: the school may give them a
//! category-only queue (severity, category, time, state and a neutral rule
//! id), never pupils, stations or words. A rule id names the words it
//! matches (`suicide/kill myself`), so anyone who may not see the words sees
//! a neutral id instead: a keyed hash of the rule id (`r-3f9a2c1b`), stable
//! within one collector, that cannot be reversed by hashing a rule pack.

use axum::response::Response;
use maud::html;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{params, Connection, OptionalExtension};

use super::auth::{Role, Viewer};
use super::html::{csrf, page};
use super::{audit, deny, html_response, redirect, session, write_tx, App, Fail, Req};
use crate::store::now_ms;

const TECHNICIAN_QUEUE: &str = "technician_queue";
const RULE_ID_KEY: &str = "rule_id_key";

/// What technicians see of the alert queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TechnicianQueue {
    /// No alert at all (the default).
    None,
    /// Severity, category, time, state and a neutral rule id.
    CategoryOnly,
}

impl TechnicianQueue {
    pub fn as_str(self) -> &'static str {
        match self {
            TechnicianQueue::None => "none",
            TechnicianQueue::CategoryOnly => "category-only",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [TechnicianQueue::None, TechnicianQueue::CategoryOnly]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM console_settings WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
}

fn set(conn: &Connection, key: &str, value: &str, by: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO console_settings (key, value, updated_ms, updated_by) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(key) DO UPDATE SET value = ?2, updated_ms = ?3, updated_by = ?4",
        params![key, value, now_ms(), by],
    )?;
    Ok(())
}

/// The school's choice for technicians; anything unreadable counts as none.
pub fn technician_queue(conn: &Connection) -> rusqlite::Result<TechnicianQueue> {
    Ok(get(conn, TECHNICIAN_QUEUE)?
        .as_deref()
        .and_then(TechnicianQueue::parse)
        .unwrap_or(TechnicianQueue::None))
}

/// Sets the technicians' queue and audits the change, in one transaction.
pub fn set_technician_queue(
    conn: &Connection,
    actor: &str,
    to: TechnicianQueue,
) -> rusqlite::Result<bool> {
    let tx = write_tx(conn)?;
    let from = technician_queue(&tx)?;
    if from == to {
        return Ok(false);
    }
    set(&tx, TECHNICIAN_QUEUE, to.as_str(), actor)?;
    audit::append(
        &tx,
        actor,
        "setting_changed",
        "setting:technician_queue",
        &format!("{} -> {}", from.as_str(), to.as_str()),
    )?;
    tx.commit()?;
    Ok(true)
}

/// The collector's key for neutral rule ids, made on first use.
pub fn rule_id_key(conn: &Connection) -> anyhow::Result<Vec<u8>> {
    if let Some(hex_key) = get(conn, RULE_ID_KEY)? {
        if let Ok(key) = hex::decode(hex_key) {
            if key.len() == 32 {
                return Ok(key);
            }
        }
        anyhow::bail!("the console's rule-id key in the database is damaged; restore the database from a backup");
    }
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("no system randomness for the rule-id key"))?;
    conn.execute(
        "INSERT OR IGNORE INTO console_settings (key, value, updated_ms, updated_by) VALUES (?1, ?2, ?3, 'collector')",
        params![RULE_ID_KEY, hex::encode(key), now_ms()],
    )?;
    // Another process may have made it first: read back the one kept.
    let kept = get(conn, RULE_ID_KEY)?.unwrap_or_default();
    Ok(hex::decode(kept)?)
}

/// The neutral id shown for `rule_id` to those who may not see its words.
pub fn neutral_rule_id(key: &[u8], rule_id: &str) -> String {
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        rule_id.as_bytes(),
    );
    format!("r-{}", hex::encode(&tag.as_ref()[..4]))
}

/// Only the DSL changes school settings.
fn may_change(role: Role) -> bool {
    role == Role::Dsl
}

pub fn page_handler(_app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !may_change(viewer.role) {
        return Err(deny(conn, &viewer, "settings"));
    }
    Ok(html_response(render(conn, &viewer)?))
}

fn render(conn: &Connection, viewer: &Viewer) -> rusqlite::Result<String> {
    let current = technician_queue(conn)?;
    let option = |value: TechnicianQueue, label: &str| {
        html! {
            label {
                input type="radio" name="technician_queue" value=(value.as_str()) checked[value == current];
                " " (label)
            }
            br;
        }
    };
    let body = html! {
        h1 { "Settings" }
        form method="post" action="/settings" id="settings-form" class="panel" {
            (csrf(viewer)) "\n"
            h2 { "What technicians see of alerts" } "\n"
            (option(
                TechnicianQueue::None,
                "No alerts (recommended): Fleet, Rules, Tokens and Exemptions only",
            ))
            (option(
                TechnicianQueue::CategoryOnly,
                "A category-only queue: severity, category, time, state and a neutral rule id",
            ))
            "\n"
            p.muted {
                "Either way technicians never see pupils' names, stations, the words matched, context or captures, and cannot open an alert. The change is recorded in the audit log."
            }
            "\n"
            button type="submit" { "Save" }
        }
    };
    Ok(page("Settings", Some(viewer), body))
}

pub fn submit(_app: &App, conn: &Connection, req: &Req) -> Result<Response, Fail> {
    let viewer = session(conn, req)?;
    if !may_change(viewer.role) {
        return Err(deny(conn, &viewer, "settings"));
    }
    let to = TechnicianQueue::parse(req.f("technician_queue")).ok_or_else(|| {
        Fail::BadRequest("Choose what technicians see: no alerts, or a category-only queue.".into())
    })?;
    set_technician_queue(conn, &viewer.name, to)?;
    Ok(redirect("/settings"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_ids_are_stable_per_key_and_do_not_spell_the_rule() {
        let a = neutral_rule_id(&[1; 32], "suicide/kill myself");
        assert_eq!(a, neutral_rule_id(&[1; 32], "suicide/kill myself"));
        assert_ne!(a, neutral_rule_id(&[2; 32], "suicide/kill myself"));
        assert_ne!(a, neutral_rule_id(&[1; 32], "suicide/end it all"));
        assert!(a.starts_with("r-") && a.len() == 10, "{a}");
        assert!(!a.contains("suicide") && !a.contains("kill"));
    }

    #[test]
    fn the_key_is_made_once_and_the_choice_defaults_to_none() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        super::super::schema::create(&conn).unwrap();
        let key = rule_id_key(&conn).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(rule_id_key(&conn).unwrap(), key);
        assert_eq!(technician_queue(&conn).unwrap(), TechnicianQueue::None);
        assert!(set_technician_queue(&conn, "dsl", TechnicianQueue::CategoryOnly).unwrap());
        assert!(!set_technician_queue(&conn, "dsl", TechnicianQueue::CategoryOnly).unwrap());
        assert_eq!(
            technician_queue(&conn).unwrap(),
            TechnicianQueue::CategoryOnly
        );
        let audited: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM console_audit WHERE action = 'setting_changed' AND detail = 'none -> category-only'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(audited, 1);
    }
}
