//! Active window on Windows: the foreground window, read every 250 ms.
//!
//! Polling keeps this free of a message loop; an event hook (`SetWinEventHook` on
//! `EVENT_SYSTEM_FOREGROUND` / `EVENT_OBJECT_NAMECHANGE`) is the event-driven successor.
#![allow(unsafe_code)] // Win32 calls; each block states why it is sound.

use std::time::Duration;

use windows_sys::Win32::Foundation::CloseHandle;
use windows_sys::Win32::System::Threading::{
    OpenProcess, QueryFullProcessImageNameW, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    GetForegroundWindow, GetWindowTextLengthW, GetWindowTextW, GetWindowThreadProcessId,
};

use super::{send, SensorConfig, SensorError, SensorEvent, SensorHandle, Stop, Wake};
use crate::observation::App;

const POLL: Duration = Duration::from_millis(250);

pub(crate) fn start(
    _config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    let stop = Stop::default();
    let thread_stop = stop.clone();
    SensorHandle::spawn("window", stop, move || {
        let mut last: Option<(u64, String)> = None;
        loop {
            if let Some((window_id, title, pid)) = foreground() {
                if last.as_ref() != Some(&(window_id, title.clone())) {
                    last = Some((window_id, title.clone()));
                    let app = app_of_pid(pid);
                    if !send(
                        &tx,
                        SensorEvent::Window {
                            window_id,
                            title,
                            app,
                        },
                    ) {
                        return;
                    }
                }
            }
            if thread_stop.wait(POLL) == Wake::Stop {
                return;
            }
        }
    })
}

/// The foreground window's handle, title and process id.
fn foreground() -> Option<(u64, String, u32)> {
    // SAFETY: GetForegroundWindow takes no arguments and may return null, checked below.
    let hwnd = unsafe { GetForegroundWindow() };
    if hwnd.is_null() {
        return None;
    }
    // SAFETY: hwnd is a window handle (possibly stale, which these calls tolerate); the buffer
    // is sized from GetWindowTextLengthW plus the terminator and its length is passed along.
    let title = unsafe {
        let len = GetWindowTextLengthW(hwnd).max(0) as usize;
        let mut buf = vec![0u16; len + 1];
        let copied = GetWindowTextW(hwnd, buf.as_mut_ptr(), buf.len() as i32).max(0) as usize;
        String::from_utf16_lossy(&buf[..copied.min(len)])
    };
    let mut pid = 0u32;
    // SAFETY: pid is a valid out pointer for the duration of the call.
    unsafe { GetWindowThreadProcessId(hwnd, &mut pid) };
    Some((hwnd as usize as u64, title, pid))
}

fn app_of_pid(pid: u32) -> App {
    let path = image_path(pid).unwrap_or_default();
    let name = std::path::Path::new(&path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    App {
        name,
        path,
        pid: (pid != 0).then_some(pid),
    }
}

fn image_path(pid: u32) -> Option<String> {
    // SAFETY: OpenProcess returns null on failure (checked); the handle is closed below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return None;
    }
    let mut buf = vec![0u16; 32768];
    let mut size = buf.len() as u32;
    // SAFETY: buf holds `size` u16s; the call writes at most that many and updates size.
    let ok = unsafe {
        QueryFullProcessImageNameW(process, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut size)
    };
    // SAFETY: process is a handle we opened and have not closed.
    unsafe { CloseHandle(process) };
    (ok != 0).then(|| String::from_utf16_lossy(&buf[..size as usize]))
}
