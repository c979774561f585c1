//! The console's audit log, as every backend stores it: each entry hashes
//! the one before, so an edited, inserted or removed entry breaks the chain
//! from that point on.

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub time_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    /// The school the entry belongs to: an entry about an alert, its
    /// capture or a pupil's report is the alert's school's, whoever acted;
    /// any other is the school of the actor's grant ('' for the trust, the
    /// command line and the collector itself). A school's auditor sees its
    /// entries only.
    pub school: String,
}

/// The alert an entry with this target is about (`alert:<id>`, or
/// `capture:<id>`, a capture being shown by its alert's id), if any.
pub fn alert_of(target: &str) -> Option<i64> {
    let (kind, id) = target.split_once(':')?;
    if kind == "alert" || kind == "capture" {
        id.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
#[test]
fn targets_about_an_alert() {
    assert_eq!(alert_of("alert:42"), Some(42));
    assert_eq!(alert_of("capture:7"), Some(7));
    assert_eq!(alert_of("token:42"), None);
    assert_eq!(alert_of("alert:x"), None);
    assert_eq!(alert_of("console"), None);
}

/// The hash of an entry whose predecessor's hash is `prev`.
pub fn entry_hash(prev: &str, e: &Entry) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for field in [
        prev,
        &e.id.to_string(),
        &e.time_ms.to_string(),
        &e.actor,
        &e.action,
        &e.target,
        &e.detail,
    ] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    // Trust-wide entries hash as they did before schools, so chains made
    // then still check.
    if !e.school.is_empty() {
        ctx.update(&(e.school.len() as u64).to_be_bytes());
        ctx.update(e.school.as_bytes());
    }
    hex::encode(ctx.finish())
}

/// Walks stored entries in id order, (entry, stored prev_hash, stored hash):
/// the number of entries, or the id of the first that does not follow from
/// the one before.
#[derive(Debug)]
pub struct ChainCheck {
    prev: String,
    expected_id: i64,
    count: usize,
    broken: Option<i64>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self {
            prev: GENESIS.to_owned(),
            expected_id: 1,
            count: 0,
            broken: None,
        }
    }
}

impl ChainCheck {
    /// Takes the next stored entry; `false` once the chain is broken.
    pub fn next(&mut self, entry: &Entry, stored_prev: &str, stored_hash: &str) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let computed = entry_hash(&self.prev, entry);
        if entry.id != self.expected_id || stored_prev != self.prev || computed != stored_hash {
            self.broken = Some(entry.id);
            return false;
        }
        self.prev = computed;
        self.expected_id += 1;
        self.count += 1;
        true
    }

    pub fn result(self) -> Result<usize, i64> {
        match self.broken {
            Some(id) => Err(id),
            None => Ok(self.count),
        }
    }
}
