//! The PostgreSQL schema, versioned: migration N brings a database from
//! version N-1 to N. Collectors starting together apply them once (under an
//! advisory lock); a database newer than the binary is refused.

use tokio_postgres::Client;

use crate::store::StoreError;

/// The advisory lock key held while migrating ("tutela" in ASCII).
const MIGRATION_LOCK: i64 = 0x7475_7465_6c61;

/// Each migration, in order; the schema's version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: agents, enrolment tokens, events (alerts), captures, hosts, gaps.
    r#"
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    public_key BYTEA NOT NULL UNIQUE,
    station TEXT NOT NULL,
    grp TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    enrolled_ms BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    last_seen_ms BIGINT,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_hash BYTEA,
    rules_version BIGINT NOT NULL DEFAULT 0,
    spool_backlog BIGINT NOT NULL DEFAULT 0,
    spool_dropped BIGINT NOT NULL DEFAULT 0,
    flag TEXT,
    rekeyed_from TEXT NOT NULL DEFAULT '',
    last_heartbeat_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agents_rekeyed_from ON agents (rekeyed_from) WHERE rekeyed_from <> '';
CREATE TABLE tokens (
    secret_hash BYTEA PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    grp TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL DEFAULT 0,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
-- An identity column: an id is never reused, as with SQLite's AUTOINCREMENT.
CREATE TABLE alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    clock_skew BOOLEAN NOT NULL DEFAULT FALSE,
    chain_ok BOOLEAN NOT NULL DEFAULT TRUE,
    "user" TEXT NOT NULL,
    station TEXT NOT NULL,
    source TEXT NOT NULL,
    context TEXT NOT NULL,
    app TEXT NOT NULL,
    app_path TEXT NOT NULL,
    window_title TEXT NOT NULL,
    url TEXT NOT NULL,
    search_query TEXT NOT NULL,
    category TEXT NOT NULL,
    severity BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    term TEXT NOT NULL,
    matches TEXT NOT NULL,
    rules_version BIGINT NOT NULL,
    repeat_count BIGINT NOT NULL DEFAULT 1,
    has_capture BOOLEAN NOT NULL DEFAULT FALSE,
    state TEXT NOT NULL DEFAULT 'new',
    repeat_of TEXT NOT NULL DEFAULT '',
    body BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    body_hash BYTEA NOT NULL,
    signed_as BIGINT NOT NULL DEFAULT 1,
    UNIQUE (agent_id, seq)
);
CREATE INDEX alerts_queue ON alerts (state, severity DESC, time_ms DESC);
CREATE INDEX alerts_event_id ON alerts (event_id);
CREATE TABLE captures (
    alert_id BIGINT PRIMARY KEY REFERENCES alerts(id) ON DELETE CASCADE,
    sha256 BYTEA NOT NULL,
    size BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    sealed BYTEA NOT NULL
);
CREATE TABLE agent_hosts (
    agent_id TEXT PRIMARY KEY,
    machine_id TEXT NOT NULL,
    station TEXT NOT NULL,
    first_ms BIGINT NOT NULL
);
CREATE INDEX agent_hosts_machine ON agent_hosts (machine_id);
CREATE TABLE gaps (
    agent_id TEXT NOT NULL,
    from_seq BIGINT NOT NULL,
    to_seq BIGINT NOT NULL,
    detected_ms BIGINT NOT NULL
);
"#,
    // 2: what an agent reports is wrong with its set-up (heartbeats).
    r#"
ALTER TABLE agents ADD COLUMN problems TEXT NOT NULL DEFAULT '';
"#,
    // 3: the review console: accounts, sessions, single sign-on links,
    // settings, the staff list, review state, history, notes, reveals and
    // the hash-chained audit log. Notes, history, reveals and the audit log
    // are append-only.
    r#"
CREATE TABLE console_users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    failed BIGINT NOT NULL DEFAULT 0,
    locked_until_ms BIGINT NOT NULL DEFAULT 0,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE console_sessions (
    token_hash BYTEA PRIMARY KEY,
    "user" TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL
);
CREATE TABLE console_oidc_accounts (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (provider, subject),
    UNIQUE (provider, name)
);
CREATE TABLE console_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE console_staff (
    username TEXT PRIMARY KEY,
    groups TEXT NOT NULL DEFAULT '',
    imported_ms BIGINT NOT NULL
);
CREATE TABLE console_review (
    alert_id BIGINT PRIMARY KEY,
    assignee TEXT NOT NULL DEFAULT '',
    fp_reason TEXT NOT NULL DEFAULT '',
    updated_ms BIGINT NOT NULL
);
CREATE TABLE console_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_history_alert ON console_history (alert_id, id);
CREATE TABLE console_notes (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX console_notes_alert ON console_notes (alert_id, id);
CREATE TABLE console_reveals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash BYTEA NOT NULL,
    alert_id BIGINT NOT NULL,
    "user" TEXT NOT NULL,
    reason TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE INDEX console_reveals_session ON console_reveals (session_hash, alert_id);
CREATE TABLE console_audit (
    id BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE FUNCTION console_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER console_audit_append_only BEFORE UPDATE OR DELETE ON console_audit
    FOR EACH ROW EXECUTE FUNCTION console_append_only();
CREATE TRIGGER console_notes_append_only BEFORE UPDATE OR DELETE ON console_notes
    FOR EACH ROW EXECUTE FUNCTION console_append_only();
CREATE TRIGGER console_history_append_only BEFORE UPDATE OR DELETE ON console_history
    FOR EACH ROW EXECUTE FUNCTION console_append_only();
CREATE TRIGGER console_reveals_append_only BEFORE UPDATE OR DELETE ON console_reveals
    FOR EACH ROW EXECUTE FUNCTION console_append_only();
CREATE INDEX console_alerts_risk ON alerts (severity DESC, time_ms DESC);
CREATE INDEX console_alerts_user ON alerts ("user", time_ms DESC);
CREATE INDEX console_alerts_rule ON alerts (rule_id, state);
"#,
    // 4: the mail outbox, urgent notifications, weekly summary runs (one
    // per school and week), webhooks' outbox, and the leases of singleton
    // work. (The staff list, migration 3, decides who urgent emails and
    // summaries go to.)
    r#"
CREATE TABLE mail_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    message BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    sent_ms BIGINT,
    last_error TEXT NOT NULL DEFAULT '',
    failed_ms BIGINT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_ms) WHERE sent_ms IS NULL AND failed_ms IS NULL;
CREATE TABLE mail_cursor (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE urgent_notified (
    alert_id BIGINT PRIMARY KEY,
    audience TEXT NOT NULL,
    notified_ms BIGINT NOT NULL
);
CREATE TABLE summary_runs (
    school TEXT NOT NULL DEFAULT '',
    week_start TEXT NOT NULL,
    queued_ms BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    emails BIGINT NOT NULL,
    PRIMARY KEY (school, week_start)
);
CREATE INDEX summary_alerts_time ON alerts (time_ms);
CREATE TABLE webhook_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target TEXT NOT NULL,
    body BYTEA NOT NULL,
    alerts BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    sent_ms BIGINT,
    failed_ms BIGINT,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_ms) WHERE sent_ms IS NULL AND failed_ms IS NULL;
CREATE TABLE webhook_cursor (
    target TEXT PRIMARY KEY,
    alert_id BIGINT NOT NULL
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#,
    // 5: rule publication (bundles, shadow candidates and their counts),
    // curriculum exemptions, monitoring notices and their acknowledgements,
    // and when a technician moved an agent to another group. Their changes
    // are audited in console_audit (3).
    r#"
CREATE TABLE rule_bundles (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pack_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    shadow BOOLEAN NOT NULL,
    bundle BYTEA NOT NULL,
    pack_toml TEXT NOT NULL,
    published_ms BIGINT NOT NULL,
    UNIQUE (shadow, version)
);
CREATE TABLE shadow_rule_ids (
    version BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    PRIMARY KEY (version, rule_id)
);
CREATE TABLE shadow_run_counts (
    agent_id TEXT NOT NULL,
    shadow_version BIGINT NOT NULL,
    run TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    count BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (agent_id, shadow_version, run, rule_id)
);
CREATE TABLE exemptions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grp TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    term TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    starts_ms BIGINT NOT NULL,
    ends_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE TABLE notices (
    grp TEXT NOT NULL,
    version BIGINT NOT NULL,
    text TEXT NOT NULL,
    mode TEXT NOT NULL,
    concern_url TEXT NOT NULL,
    body BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (grp, version)
);
CREATE TABLE notice_acks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id TEXT NOT NULL,
    ack_id TEXT NOT NULL,
    "user" TEXT NOT NULL,
    station TEXT NOT NULL,
    grp TEXT NOT NULL,
    version BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    body BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    UNIQUE (agent_id, ack_id)
);
CREATE INDEX notice_acks_group ON notice_acks (grp, "user", version);
-- When a technician last moved the agent to another group (0: never):
-- such agents are sent a signed group assignment on their rules stream.
ALTER TABLE agents ADD COLUMN group_moved_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX agents_moved ON agents (agent_id) WHERE group_moved_ms > 0;
"#,
    // 6: captures in object storage: the row names its object, and a
    // deleted row queues its object for deletion.
    r#"
ALTER TABLE captures ADD COLUMN object_key TEXT;
CREATE UNIQUE INDEX captures_object_key ON captures (object_key) WHERE object_key IS NOT NULL;
CREATE TABLE capture_objects_gone (object_key TEXT PRIMARY KEY);
CREATE FUNCTION capture_object_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO capture_objects_gone (object_key) VALUES (OLD.object_key) ON CONFLICT DO NOTHING;
    RETURN OLD;
END
$$;
CREATE TRIGGER captures_object_gone AFTER DELETE ON captures
    FOR EACH ROW WHEN (OLD.object_key IS NOT NULL) EXECUTE FUNCTION capture_object_gone();
"#,
    // 7: schools as tenants. Everything stored before belongs to the
    // default school; every account gets a trust-wide grant of its role,
    // so a single-school store behaves as before.
    r#"
CREATE TABLE schools (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
INSERT INTO schools (id, name, created_ms) VALUES ('default', 'Default school', 0);
ALTER TABLE agents ADD COLUMN school TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tokens ADD COLUMN school TEXT NOT NULL DEFAULT 'default';
ALTER TABLE alerts ADD COLUMN school TEXT NOT NULL DEFAULT 'default';
ALTER TABLE console_audit ADD COLUMN school TEXT NOT NULL DEFAULT '';
CREATE INDEX alerts_school ON alerts (school, severity DESC, time_ms DESC);
CREATE INDEX agents_school ON agents (school);
CREATE INDEX console_audit_school ON console_audit (school, id);
-- One grant per account: its role over the trust ('') or one school.
CREATE TABLE console_grants (
    "user" TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    school TEXT NOT NULL DEFAULT ''
);
INSERT INTO console_grants ("user", role, school) SELECT name, role, '' FROM console_users;
"#,
    // 8: exemptions and notices per school ('' holds for every school,
    // as everything stored before does).
    r#"
ALTER TABLE exemptions ADD COLUMN school TEXT NOT NULL DEFAULT '';
ALTER TABLE notices ADD COLUMN school TEXT NOT NULL DEFAULT '';
"#,
    // 9: several grants per account, one per role; each session acts
    // under one of them (a session open across the upgrade under its
    // account's one grant).
    r#"
ALTER TABLE console_grants DROP CONSTRAINT console_grants_pkey;
ALTER TABLE console_grants ADD PRIMARY KEY ("user", role);
ALTER TABLE console_sessions ADD COLUMN role TEXT NOT NULL DEFAULT '';
UPDATE console_sessions s SET role = g.role FROM console_grants g WHERE g."user" = s."user";
"#,
    // 10: a school's own time zone and retention ('' and 0: the trust's).
    r#"
ALTER TABLE schools ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';
ALTER TABLE schools ADD COLUMN retention_months BIGINT NOT NULL DEFAULT 0;
"#,
    // 11: notices numbered by issue (each row's first issue is its
    // version, the order agents knew), and the bodies a notice signed
    // again replaced, which acknowledgements may still name.
    r#"
ALTER TABLE notices ADD COLUMN issue BIGINT NOT NULL DEFAULT 0;
UPDATE notices SET issue = version;
CREATE TABLE notice_reissued (
    grp TEXT NOT NULL,
    version BIGINT NOT NULL,
    issue BIGINT NOT NULL,
    body BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    replaced_ms BIGINT NOT NULL,
    PRIMARY KEY (grp, issue)
);
"#,
];

/// The schema version this collector writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The migrations that bring an empty database to version `n`: an older
/// collector's schema, to check the upgrade from it.
pub fn migrations_to(n: usize) -> &'static [&'static str] {
    &MIGRATIONS[..n.min(MIGRATIONS.len())]
}

/// Brings the database's schema up to [`VERSION`], or refuses one newer.
pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tutela_schema (version BIGINT NOT NULL)")
        .await?;
    let found: i64 = tx
        .query_opt("SELECT version FROM tutela_schema", &[])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: VERSION,
        });
    }
    for (n, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(version = n + 1, "upgrading the PostgreSQL schema");
        tx.batch_execute(migration).await?;
    }
    if found < VERSION {
        tx.execute("DELETE FROM tutela_schema", &[]).await?;
        tx.execute(
            "INSERT INTO tutela_schema (version) VALUES ($1)",
            &[&VERSION],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
