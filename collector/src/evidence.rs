//! Reading a stored capture back: decrypted only on request, and checked
//! against the SHA-256 the agent signed, so what is shown is what was sent.

use ring::digest::{digest, SHA256};
use rusqlite::{params, Connection, OptionalExtension};

use crate::secrets::{CaptureVault, SecretsError};

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
    Database(#[from] rusqlite::Error),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("the capture of alert {0} does not match the SHA-256 its agent signed")]
    Tampered(i64),
}

/// The capture of alert `alert_id`, decrypted; `None` when the alert has no capture.
pub fn open_capture(
    conn: &Connection,
    vault: &CaptureVault,
    alert_id: i64,
) -> Result<Option<Capture>, EvidenceError> {
    let row: Option<(String, Vec<u8>, u32, u32, Vec<u8>)> = conn
        .query_row(
            "SELECT a.event_id, c.sha256, c.width, c.height, c.sealed
             FROM captures c JOIN alerts a ON a.id = c.alert_id WHERE c.alert_id = ?1",
            params![alert_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((event_id, sha256, width, height, sealed)) = row else {
        return Ok(None);
    };
    let jpeg = vault.open(&event_id, &sealed)?;
    if digest(&SHA256, &jpeg).as_ref() != sha256.as_slice() {
        return Err(EvidenceError::Tampered(alert_id));
    }
    Ok(Some(Capture {
        alert_id,
        event_id,
        width,
        height,
        jpeg,
    }))
}
