//! The collector's SQLite database read and written straight, for the
//! console tests: alerts stored as ingest would, counts and the audit log.

use std::time::Duration;

use crate::Collector;

/// The collector's live database, waiting up to five seconds for its locks.
pub fn open_db(collector: &Collector) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(collector.dir.join("tutela.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db
}

/// Stores an alert as ingest would (the signature is not checked here);
/// returns its id.
pub fn insert_alert(
    db: &rusqlite::Connection,
    event: &str,
    user: &str,
    rule: &str,
    severity: i64,
    state: &str,
) -> i64 {
    let (category, _) = rule.split_once('/').unwrap();
    db.execute(
        "INSERT INTO alerts (event_id, agent_id, seq, time_ms, received_ms, user, station, source,
            context, app, app_path, window_title, url, search_query, category, severity, rule_id,
            term, matches, rules_version, state, repeat_of, body, signature, body_hash)
         VALUES (?1, 'ag-hardening', (SELECT COUNT(*) + 1 FROM alerts), 1767000000000, 1767000000000,
            ?2, 'LAB1-PC07', 'typed', 'context', 'app', '', 'Homework', '', '', ?3, ?4, ?5, 'term',
            '[]', 1, ?6, '', x'00', x'00', x'00')",
        rusqlite::params![event, user, category, severity, rule, state],
    )
    .unwrap();
    db.last_insert_rowid()
}

/// The single number `sql` selects.
pub fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// (actor, action, detail) of every audit entry, oldest first.
pub fn audit_details(db: &rusqlite::Connection) -> Vec<(String, String, String)> {
    db.prepare("SELECT actor, action, detail FROM console_audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The console audit log, oldest first: (actor, action, target).
pub fn audit_log(db: &rusqlite::Connection) -> Vec<(String, String, String)> {
    db.prepare("SELECT actor, action, target FROM console_audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Whether `audit` holds an entry by `actor` of `action` on `target`.
pub fn logged(audit: &[(String, String, String)], actor: &str, action: &str, target: &str) -> bool {
    audit
        .iter()
        .any(|(a, b, c)| a == actor && b == action && c == target)
}

/// Stores `jpeg` (64x48) as alert `alert`'s capture the way ingest does:
/// sealed with AES-256-GCM under the collector's capture key, `nonce`
/// first, the event id `event` as associated data.
pub fn store_capture(
    collector: &Collector,
    db: &rusqlite::Connection,
    alert: i64,
    event: &str,
    jpeg: &[u8],
    nonce: [u8; 12],
) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = std::fs::read(collector.dir.join("capture.key")).unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
    let mut sealed = jpeg.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(event.as_bytes()),
        &mut sealed,
    )
    .unwrap();
    let mut stored = nonce.to_vec();
    stored.extend_from_slice(&sealed);
    let sha = ring::digest::digest(&ring::digest::SHA256, jpeg);
    db.execute(
        "INSERT INTO captures (alert_id, sha256, size, width, height, sealed) VALUES (?1, ?2, ?3, 64, 48, ?4)",
        rusqlite::params![alert, sha.as_ref(), jpeg.len() as i64, stored],
    )
    .unwrap();
    db.execute("UPDATE alerts SET has_capture = 1 WHERE id = ?1", [alert])
        .unwrap();
}
