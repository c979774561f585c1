//! Typed-text sensor: keys typed into the focused window, passed on through the channel only.

use super::{SensorConfig, SensorError, SensorEvent, SensorHandle};

/// Starts the typed-text sensor.
pub fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    #[cfg(target_os = "linux")]
    {
        super::keys_x11::start(config, tx)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (config, tx);
        Err(SensorError::Unsupported {
            sensor: "keys",
            platform: std::env::consts::OS,
        })
    }
}
