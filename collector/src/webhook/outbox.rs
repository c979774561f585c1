//! The webhook outbox: every message is written there, in the same
//! transaction that moves the target's cursor past its alerts, before any
//! attempt to post it; a sender claims a due row for a while and marks it
//! sent only when the receiver accepted it. Like the mail outbox, delivery
//! is at least once; each row's id goes with every attempt as the delivery
//! id, so a receiver can drop a repeat. The rows and SQL are in
//! `store::webhook` and the backends.

pub use crate::store::sqlite::webhook::{ensure_schema, init_cursor};
pub use crate::store::webhook::{AlertFacts, Row};

/// How long a sender owns a claimed row before another may try it.
pub const LEASE_MS: i64 = 2 * 60_000;

/// How long sent and refused messages stay in the outbox.
pub const KEEP_SENT_MS: i64 = 90 * 86_400_000;
