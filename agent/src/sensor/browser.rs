//! Browser history sensor (in progress).

use super::{SensorConfig, SensorError, SensorEvent, SensorHandle};

/// Starts the browser history sensor.
pub fn start(
    _config: &SensorConfig,
    _tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    Err(SensorError::Unsupported { sensor: "browser", platform: std::env::consts::OS })
}
