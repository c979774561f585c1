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
    #[error(transparent)]
    Blob(#[from] crate::store::blob::BlobError),
}

/// The capture of alert `alert_id`, decrypted; `None` when the alert has no capture.
pub fn open_capture(
    conn: &Connection,
    vault: &CaptureVault,
    blobs: &crate::store::blob::Blobs,
    alert_id: i64,
) -> Result<Option<Capture>, EvidenceError> {
    let row = conn
        .query_row(
            "SELECT a.event_id, c.width, c.height, c.sha256
             FROM captures c JOIN alerts a ON a.id = c.alert_id WHERE c.alert_id = ?1",
            params![alert_id],
            |r| {
                let capture = Capture {
                    alert_id,
                    event_id: r.get(0)?,
                    width: r.get(1)?,
                    height: r.get(2)?,
                    jpeg: Vec::new(),
                };
                Ok((capture, r.get::<_, Vec<u8>>(3)?))
            },
        )
        .optional()?;
    let Some((mut capture, sha256)) = row else {
        return Ok(None);
    };
    let Some(stored) = crate::store::sqlite::blob::stored_capture(conn, alert_id)? else {
        return Ok(None);
    };
    let sealed = blobs.get_blocking(stored)?;
    capture.jpeg = vault.open(&capture.event_id, &sealed)?;
    if digest(&SHA256, &capture.jpeg).as_ref() != sha256.as_slice() {
        return Err(EvidenceError::Tampered(alert_id));
    }
    Ok(Some(capture))
}
