//! Reading a stored capture back: decrypted only on request, and checked
//! against the SHA-256 the agent signed, so what is shown is what was sent.

use ring::digest::{digest, SHA256};

use crate::secrets::{CaptureVault, SecretsError};
use crate::store::console::Console;
use crate::store::review::Scope;

/// A decrypted capture of one alert.
#[derive(Clone, PartialEq, Eq)]
pub struct Capture {
    pub alert_id: i64,
    pub event_id: String,
    pub width: u32,
    pub height: u32,
    pub jpeg: Vec<u8>,
}

// Never print the image bytes.
impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("alert_id", &self.alert_id)
            .field("event_id", &self.event_id)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("jpeg_bytes", &self.jpeg.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("the capture of alert {0} does not match the SHA-256 its agent signed")]
    Tampered(i64),
    #[error(transparent)]
    Blob(#[from] crate::store::blob::BlobError),
}

/// The capture of alert `alert_id`, decrypted; `None` when the alert has no
/// capture. Reads go through the store (SQLite or PostgreSQL) and the
/// capture's blob store; the command line sees every viewer scope.
pub fn open_capture(
    db: &Console<'_>,
    vault: &CaptureVault,
    blobs: &crate::store::blob::Blobs,
    alert_id: i64,
) -> Result<Option<Capture>, EvidenceError> {
    let everyone = [false, true].map(|staff| Scope {
        staff,
        pattern: String::new(),
        school: crate::store::schools::Scope::Trust,
    });
    let mut alert = None;
    for scope in &everyone {
        alert = db.alert(scope, alert_id)?;
        if alert.is_some() {
            break;
        }
    }
    let Some(alert) = alert else {
        return Ok(None);
    };
    let (Some(facts), Some(stored)) = (db.capture_facts(alert_id)?, db.stored_capture(alert_id)?)
    else {
        return Ok(None);
    };
    let sealed = blobs.get_blocking(stored)?;
    let jpeg = vault.open(&alert.event_id, &sealed)?;
    if digest(&SHA256, &jpeg).as_ref() != facts.sha256.as_slice() {
        return Err(EvidenceError::Tampered(alert_id));
    }
    Ok(Some(Capture {
        alert_id,
        event_id: alert.event_id,
        width: facts.width,
        height: facts.height,
        jpeg,
    }))
}
