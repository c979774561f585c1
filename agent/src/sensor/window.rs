//! Active window sensor: title and application of the window the pupil is using.
//!
//! Linux/X11 is event-driven (see `window_x11`); Windows polls the foreground window.

use super::{SensorConfig, SensorError, SensorEvent, SensorHandle};

/// Starts the active-window sensor.
pub fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    #[cfg(target_os = "linux")]
    {
        super::window_x11::start(config, tx)
    }
    #[cfg(windows)]
    {
        super::window_windows::start(config, tx)
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = (config, tx);
        Err(SensorError::Unsupported {
            sensor: "window",
            platform: std::env::consts::OS,
        })
    }
}
