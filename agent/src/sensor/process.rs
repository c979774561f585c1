//! Process sensor: processes started after the sensor started, from the process table.
//!
//! The table is read every `process_poll`; a process that starts and ends between two reads
//! is not seen.
//!
//! On Linux a read is a listing of `/proc`: only processes not in the previous listing are
//! looked at (`comm`, `exe`, `stat`), which keeps an idle agent's cost near zero. Kernel
//! threads are not reported. A pid reused between two reads (the kernel hands pids out in
//! order up to `pid_max`, so this needs the whole range to wrap within one poll) is not seen
//! as a new process. Elsewhere the table comes from `sysinfo`.

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
    let mut seen = procfs::pids().map_err(|e| SensorError::ProcessTable(e.to_string()))?;
    let poll = config
        .process_poll
        .max(std::time::Duration::from_millis(100));
    let stop = Stop::default();
    let thread_stop = stop.clone();
    SensorHandle::spawn("process", stop, move || loop {
        if thread_stop.wait(poll) == Wake::Stop {
            return;
        }
        let now = match procfs::pids() {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(%error, "process sensor cannot list /proc; retrying");
                continue;
            }
        };
        // Both lists are sorted: walk them together.
        let mut old = seen.iter().peekable();
        for &pid in &now {
            while old.next_if(|&&o| o < pid).is_some() {}
            if old.next_if(|&&o| o == pid).is_some() || procfs::is_kernel_thread(pid) {
                continue;
            }
            let app = super::app_of_pid(pid);
            if app.name.is_empty() {
                continue; // Ended already.
            }
            let event = SensorEvent::ProcessStarted {
                name: app.name,
                path: app.path,
                pid,
            };
            if !send(&tx, event) {
                return;
            }
        }
        seen = now;
    })
}

#[cfg(target_os = "linux")]
mod procfs {
    /// The pids in `/proc`, sorted.
    pub(super) fn pids() -> std::io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Whether `pid` is a kernel thread (`PF_KTHREAD` in the flags of `/proc/<pid>/stat`).
    pub(super) fn is_kernel_thread(pid: u32) -> bool {
        const PF_KTHREAD: u64 = 0x0020_0000;
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // Fields after the parenthesised command name: state is field 3, flags field 9.
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(6)?.parse::<u64>().ok())
            .is_some_and(|flags| flags & PF_KTHREAD != 0)
    }
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

    #[test]
    fn this_process_is_listed_and_not_a_kernel_thread() {
        let me = std::process::id();
        let pids = procfs::pids().unwrap();
        assert!(pids.binary_search(&me).is_ok());
        assert!(!procfs::is_kernel_thread(me));
        // kthreadd is pid 2 where the kernel's threads are visible (not in a pid namespace).
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(procfs::is_kernel_thread(2));
        }
    }
}
