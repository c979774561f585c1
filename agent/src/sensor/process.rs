//! Process sensor: processes started after the sensor started, from the process table.
//!
//! The table is read every `process_poll`; a process that starts and ends between two reads
//! is not seen.
//!
//! On Linux a read looks only at the pids handed out since the previous read (see
//! `process_table`), which keeps an idle agent's cost near zero. Kernel threads and threads
//! are not reported. Elsewhere the table comes from `sysinfo`.

#[cfg(not(target_os = "linux"))]
use std::collections::HashSet;

#[cfg(not(target_os = "linux"))]
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

use super::{send, SensorConfig, SensorError, SensorEvent, SensorHandle, Stop, Wake};

/// Starts the process sensor.
#[cfg(target_os = "linux")]
pub fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    let mut table = super::process_table::ProcessTable::read()
        .map_err(|e| SensorError::ProcessTable(e.to_string()))?;
    let poll = config
        .process_poll
        .max(std::time::Duration::from_millis(100));
    let stop = Stop::default();
    let thread_stop = stop.clone();
    SensorHandle::spawn("process", stop, move || loop {
        if thread_stop.wait(poll) == Wake::Stop {
            return;
        }
        let started = match table.started() {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(%error, "process sensor cannot list /proc; retrying");
                continue;
            }
        };
        for process in started {
            let event = SensorEvent::ProcessStarted {
                name: process.name,
                path: process.path,
                pid: process.pid,
            };
            if !send(&tx, event) {
                return;
            }
        }
    })
}

/// A process identity that survives pid reuse.
#[cfg(not(target_os = "linux"))]
type Seen = HashSet<(Pid, u64)>;

/// Starts the process sensor.
#[cfg(not(target_os = "linux"))]
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

#[cfg(not(target_os = "linux"))]
fn refresh(system: &mut System) {
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_exe(UpdateKind::OnlyIfNotSet),
    );
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_process_started_after_the_sensor_is_reported_once_with_its_name_and_path() {
        let config = SensorConfig {
            process_poll: Duration::from_millis(100),
            ..SensorConfig::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let handle = start(&config, tx).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            while let Ok(event) = rx.try_recv() {
                if let SensorEvent::ProcessStarted { name, path, pid: p } = event {
                    if p == pid {
                        seen.push((name, path));
                    }
                }
            }
            if !seen.is_empty() {
                // Another poll or two must not report it again.
                std::thread::sleep(Duration::from_millis(350));
                while let Ok(event) = rx.try_recv() {
                    if let SensorEvent::ProcessStarted { pid: p, .. } = event {
                        assert_ne!(p, pid, "reported twice");
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        handle.stop();
        assert_eq!(seen.len(), 1, "sleep (pid {pid}) was not reported");
        assert_eq!(seen[0].0, "sleep");
        assert!(seen[0].1.ends_with("sleep"), "{:?}", seen[0].1);
    }
}
