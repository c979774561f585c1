//! Process sensor: processes started after the sensor started, from the process table.
//!
//! The table is read every `process_poll`; a process that starts and ends between two reads
//! is not seen.

use std::collections::HashSet;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

use super::{send, SensorConfig, SensorError, SensorEvent, SensorHandle, Stop, Wake};

/// A process identity that survives pid reuse.
type Seen = HashSet<(Pid, u64)>;

/// Starts the process sensor.
pub fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    let mut system = System::new().map_err(|e| SensorError::ProcessTable(e.to_string()))?;
    let mut seen = Seen::new();
    refresh(&mut system);
    for (pid, process) in system.processes() {
        seen.insert((*pid, process.start_time()));
    }
    let poll = config
        .process_poll
        .max(std::time::Duration::from_millis(100));
    let stop = Stop::default();
    let thread_stop = stop.clone();
    SensorHandle::spawn("process", stop, move || loop {
        if thread_stop.wait(poll) == Wake::Stop {
            return;
        }
        refresh(&mut system);
        let mut now = Seen::with_capacity(seen.len());
        for (pid, process) in system.processes() {
            let id = (*pid, process.start_time());
            now.insert(id);
            if seen.contains(&id) {
                continue;
            }
            let event = SensorEvent::ProcessStarted {
                name: process.name().to_string_lossy().into_owned(),
                path: process
                    .exe()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                pid: pid.as_u32(),
            };
            if !send(&tx, event) {
                return;
            }
        }
        seen = now;
    })
}

fn refresh(system: &mut System) {
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_exe(UpdateKind::OnlyIfNotSet),
    );
}
