//! Typed-text sensor: keys typed into the focused window, passed on through the channel only.
//!
//! Linux/X11 reads XInput2 raw key events (see `keys_x11`); Windows uses a low-level keyboard
//! hook (see `keys_windows`).

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
    #[cfg(windows)]
    {
        super::keys_windows::start(config, tx)
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = (config, tx);
        Err(SensorError::Unsupported {
            sensor: "keys",
            platform: std::env::consts::OS,
        })
    }
}
