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

use super::auth::{Role, Viewer};
use super::html::{csrf, page};
use super::{deny, html_response, redirect, session, App, Fail, Req};
use crate::store::console::Console;
use crate::store::{now_ms, StoreError};
use axum::response::Response;
use maud::html;
use ring::rand::{SecureRandom, SystemRandom};

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

pub fn technician_queue(db: &Console<'_>) -> Result<TechnicianQueue, StoreError> {
    Ok(db
        .setting(TECHNICIAN_QUEUE)?
        .as_deref()
        .and_then(TechnicianQueue::parse)
        .unwrap_or(TechnicianQueue::None))
}

/// Changes what technicians see, audited; whether it changed.
pub fn set_technician_queue(
    db: &Console<'_>,
    actor: &str,
    to: TechnicianQueue,
) -> Result<bool, StoreError> {
    if technician_queue(db)? == to {
        return Ok(false);
    }
    db.change_setting(TECHNICIAN_QUEUE, to.as_str(), actor, now_ms(), |from| {
        let from = from
            .and_then(TechnicianQueue::parse)
            .unwrap_or(TechnicianQueue::None);
        format!("{} -> {}", from.as_str(), to.as_str())
    })
}

/// The key behind neutral rule ids, made the first time.
pub fn rule_id_key(db: &Console<'_>) -> anyhow::Result<Vec<u8>> {
    if let Some(hex_key) = db.setting(RULE_ID_KEY)? {
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
    let kept = db.setting_or_insert(RULE_ID_KEY, &hex::encode(key), now_ms())?;
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

pub fn page_handler(app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    // A school's DSL sees its schools' own settings only; what holds for
    // every school is the trust-wide DSL's.
    if !super::school_settings::may_change(&viewer) {
        return Err(deny(db, &viewer, "settings"));
    }
    Ok(html_response(render(app, db, &viewer)?))
}

fn render(app: &App, db: &Console<'_>, viewer: &Viewer) -> Result<String, StoreError> {
    let current = technician_queue(db)?;
    let option = |value: TechnicianQueue, label: &str| {
        html! {
            label {
                input type="radio" name="technician_queue" value=(value.as_str()) checked[value == current];
                " " (label)
            }
            br;
        }
    };
    let schools = super::school_settings::schools_of(db, viewer)?;
    let body = html! {
        h1 { "Settings" }
        @if viewer.trust_wide() {
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
        }
        (super::school_settings::section(app, &schools, viewer))
    };
    Ok(page("Settings", Some(viewer), body))
}

pub fn submit(_app: &App, db: &Console<'_>, req: &Req) -> Result<Response, Fail> {
    let viewer = session(db, req)?;
    // Settings hold for every school: a school's account may not change them.
    if !may_change(viewer.role) || !viewer.trust_wide() {
        return Err(deny(db, &viewer, "settings"));
    }
    let to = TechnicianQueue::parse(req.f("technician_queue")).ok_or_else(|| {
        Fail::BadRequest("Choose what technicians see: no alerts, or a category-only queue.".into())
    })?;
    set_technician_queue(db, &viewer.name, to)?;
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
        let db = Console::Sqlite(&conn);
        let key = rule_id_key(&db).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(rule_id_key(&db).unwrap(), key);
        assert_eq!(technician_queue(&db).unwrap(), TechnicianQueue::None);
        assert!(set_technician_queue(&db, "dsl", TechnicianQueue::CategoryOnly).unwrap());
        assert!(!set_technician_queue(&db, "dsl", TechnicianQueue::CategoryOnly).unwrap());
        assert_eq!(
            technician_queue(&db).unwrap(),
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
