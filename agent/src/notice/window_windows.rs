//! The notice on Windows: a system-modal message box in the pupil's session
//! (the session process runs on the pupil's desktop), with an OK button the
//! pupil must press before it closes.

#![allow(unsafe_code)] // One Win32 call; its block states why it is sound.

use windows_sys::Win32::UI::WindowsAndMessaging::{
    MessageBoxW, IDOK, MB_ICONINFORMATION, MB_OK, MB_SETFOREGROUND, MB_SYSTEMMODAL, MB_TOPMOST,
};

use super::{DisplayError, Shown};

/// The message box's title.
pub const TITLE: &str = "Tutela: monitoring notice";

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Shows `shown` and returns once the pupil presses OK.
pub fn show(shown: &Shown) -> Result<(), DisplayError> {
    let mut text = shown.text.replace('\n', "\r\n");
    if !shown.concern_url.is_empty() {
        text.push_str("\r\n\r\nWorried about something? Report a concern:\r\n");
        text.push_str(&shown.concern_url);
    }
    text.push_str("\r\n\r\nPress OK to confirm you understand.");
    let (text, title) = (wide(&text), wide(TITLE));
    loop {
        // SAFETY: both strings are NUL-terminated UTF-16 buffers that live
        // across the call; a null owner window is allowed.
        let answer = unsafe {
            MessageBoxW(
                std::ptr::null_mut(),
                text.as_ptr(),
                title.as_ptr(),
                MB_OK | MB_ICONINFORMATION | MB_SYSTEMMODAL | MB_SETFOREGROUND | MB_TOPMOST,
            )
        };
        match answer {
            IDOK => return Ok(()),
            0 => {
                return Err(DisplayError::Failed(format!(
                    "MessageBoxW failed ({})",
                    std::io::Error::last_os_error()
                )))
            }
            // Closed another way (Escape): shown again until acknowledged.
            _ => continue,
        }
    }
}
