//! Typed keys on Windows: a low-level keyboard hook (`WH_KEYBOARD_LL`) on the sensor's own
//! thread, which runs a message loop so that Windows can call the hook. Each key press is
//! translated with `ToUnicodeEx` in the keyboard layout of the foreground window's thread,
//! with the "do not change keyboard state" flag so that the pupil's dead keys still work.
//!
//! The hook returns at once: keys go to the channel with `try_send` (a full channel drops the
//! key and counts it) and every event is passed on with `CallNextHookEx`.
#![allow(unsafe_code)] // Win32 calls; each block states why it is sound.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::{LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::System::Threading::GetCurrentThreadId;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{
    GetAsyncKeyState, GetKeyState, GetKeyboardLayout, ToUnicodeEx, VK_BACK, VK_CAPITAL, VK_CONTROL,
    VK_ESCAPE, VK_LWIN, VK_MENU, VK_RETURN, VK_RWIN, VK_SHIFT, VK_TAB,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CallNextHookEx, DispatchMessageW, GetForegroundWindow, GetMessageW, GetWindowThreadProcessId,
    PeekMessageW, PostQuitMessage, PostThreadMessageW, SetWindowsHookExW, TranslateMessage,
    UnhookWindowsHookEx, HC_ACTION, KBDLLHOOKSTRUCT, MSG, PM_NOREMOVE, WH_KEYBOARD_LL, WM_KEYDOWN,
    WM_QUIT, WM_SYSKEYDOWN,
};

use super::{Key, SensorConfig, SensorError, SensorEvent, SensorHandle, Stop};

/// `ToUnicodeEx` flag (Windows 10 1607 and later): leave the keyboard state, including a
/// pending dead key, as it was.
const TO_UNICODE_KEEP_STATE: u32 = 0x4;

/// What the hook needs; it lives on the sensor thread, where Windows calls the hook.
struct HookState {
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
    dropped: u64,
    closed: bool,
}

thread_local! {
    static HOOK: RefCell<Option<HookState>> = const { RefCell::new(None) };
}

pub(crate) fn start(
    _config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    let build = windows_build();
    if build != 0 && build < FIRST_BUILD_KEEPING_DEAD_KEYS {
        return Err(SensorError::TooOld {
            sensor: "keys",
            reason: format!(
                "Windows build {build} cannot translate keys without disturbing dead keys (accents) the pupil types; typed-text monitoring needs Windows 10 version 1607 (build 14393) or later"
            ),
        });
    }
    let stop = Stop::default();
    // The loop's thread id, so that a stop request can post WM_QUIT to it (0: not running).
    // The waker posts while holding the lock and the thread clears the id under the lock on
    // every way out, so a post never reaches a thread id Windows has since given to another.
    let thread_id = Arc::new(Mutex::new(0u32));
    let waker_id = thread_id.clone();
    stop.set_waker(move || {
        let id = waker_id.lock().unwrap_or_else(|p| p.into_inner());
        if *id != 0 {
            // SAFETY: PostThreadMessageW takes plain values; the id is that of the running
            // hook thread, which cannot exit while the lock is held (see `Running`).
            unsafe { PostThreadMessageW(*id, WM_QUIT, 0, 0) };
        }
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread_stop = stop.clone();
    let handle = SensorHandle::spawn("keys", stop, move || {
        run(tx, &thread_stop, &thread_id, ready_tx);
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(reason)) => Err(SensorError::Hook {
            sensor: "keys",
            reason,
        }),
        Err(_) => Err(SensorError::Hook {
            sensor: "keys",
            reason: "the hook thread ended while starting".into(),
        }),
    }
}

fn run(
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
    stop: &Stop,
    thread_id: &Mutex<u32>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut msg: MSG = unsafe_zeroed_msg();
    // SAFETY: msg is a valid MSG to write into; PM_NOREMOVE only makes sure this thread has a
    // message queue before anyone posts WM_QUIT to it.
    unsafe { PeekMessageW(&mut msg, std::ptr::null_mut(), 0, 0, PM_NOREMOVE) };
    // SAFETY: no arguments.
    *thread_id.lock().unwrap_or_else(|p| p.into_inner()) = unsafe { GetCurrentThreadId() };
    let _running = Running(thread_id);
    HOOK.with(|h| {
        *h.borrow_mut() = Some(HookState {
            tx,
            dropped: 0,
            closed: false,
        })
    });
    // SAFETY: a null module name asks for this executable's handle; hook_proc is a
    // `extern "system"` function with the HOOKPROC signature that lives for the whole program;
    // thread id 0 with WH_KEYBOARD_LL is the documented global low-level hook.
    let hook = unsafe {
        SetWindowsHookExW(
            WH_KEYBOARD_LL,
            Some(hook_proc),
            GetModuleHandleW(std::ptr::null()),
            0,
        )
    };
    if hook.is_null() {
        let _ = ready.send(Err(format!(
            "SetWindowsHookExW failed: {}",
            std::io::Error::last_os_error()
        )));
        return;
    }
    let _ = ready.send(Ok(()));
    tracing::debug!("key sensor running");
    // A stop requested before the thread id was published found no thread to wake.
    if !stop.is_requested() {
        loop {
            // SAFETY: msg is a valid MSG; a null window takes every message of this thread.
            let got = unsafe { GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) };
            if got <= 0 || stop.is_requested() {
                break;
            }
            // SAFETY: msg was filled in by GetMessageW just above.
            unsafe {
                TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
            if HOOK.with(|h| h.borrow().as_ref().is_some_and(|s| s.closed)) {
                break;
            }
        }
    }
    // SAFETY: hook is the handle SetWindowsHookExW returned on this thread, unhooked once.
    unsafe { UnhookWindowsHookEx(hook) };
    let dropped = HOOK.with(|h| h.borrow_mut().take().map(|s| s.dropped).unwrap_or(0));
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "key sensor dropped keys while the matcher was behind"
        );
    }
}

/// Windows 10 1607: the first build where ToUnicodeEx honours the flag that
/// leaves the keyboard's dead-key state alone.
const FIRST_BUILD_KEEPING_DEAD_KEYS: u32 = 14393;

/// The Windows build number (0 if it cannot be read).
fn windows_build() -> u32 {
    use windows_sys::Win32::System::SystemInformation::OSVERSIONINFOW;
    // SAFETY: OSVERSIONINFOW is a plain C struct for which all-zero is valid.
    let mut info: OSVERSIONINFOW = unsafe { std::mem::zeroed() };
    info.dwOSVersionInfoSize = std::mem::size_of::<OSVERSIONINFOW>() as u32;
    // SAFETY: info is a valid, sized OSVERSIONINFOW for RtlGetVersion to fill in; unlike
    // GetVersionExW it reports the real version whatever the executable's manifest says.
    let status = unsafe { windows_sys::Wdk::System::SystemServices::RtlGetVersion(&mut info) };
    if status == 0 {
        info.dwBuildNumber
    } else {
        0
    }
}

/// Clears the published thread id when the hook thread leaves `run`, by any path.
struct Running<'a>(&'a Mutex<u32>);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = 0;
    }
}

fn unsafe_zeroed_msg() -> MSG {
    // SAFETY: MSG is a plain C struct of integers and pointers, for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// The low-level keyboard hook: called on the sensor thread for every key anywhere.
unsafe extern "system" fn hook_proc(code: i32, wparam: WPARAM, lparam: LPARAM) -> LRESULT {
    if code == HC_ACTION as i32
        && (wparam == WM_KEYDOWN as WPARAM || wparam == WM_SYSKEYDOWN as WPARAM)
        && lparam != 0
    {
        // SAFETY: for WH_KEYBOARD_LL with HC_ACTION, lparam points to a KBDLLHOOKSTRUCT that
        // is valid for the duration of this call; it is copied out at once.
        let info: KBDLLHOOKSTRUCT = unsafe { *(lparam as *const KBDLLHOOKSTRUCT) };
        let keys = translate(info.vkCode, info.scanCode);
        if !keys.is_empty() {
            // SAFETY: no arguments; may return null (no foreground window), recorded as 0.
            let window_id = unsafe { GetForegroundWindow() } as usize as u64;
            HOOK.with(|h| {
                if let Some(state) = h.borrow_mut().as_mut() {
                    for key in keys {
                        match state.tx.try_send(SensorEvent::Key { window_id, key }) {
                            Ok(()) => {}
                            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                                state.dropped += 1
                            }
                            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                                // Nobody listens any more: end the message loop.
                                if !state.closed {
                                    state.closed = true;
                                    // SAFETY: posts WM_QUIT to this (the hook's) thread.
                                    unsafe { PostQuitMessage(0) };
                                }
                            }
                        }
                    }
                }
            });
        }
    }
    // SAFETY: passes the event on unchanged, as every hook must; the hook handle argument is
    // ignored by current Windows versions.
    unsafe { CallNextHookEx(std::ptr::null_mut(), code, wparam, lparam) }
}

fn pressed(vk: u16) -> bool {
    // SAFETY: GetAsyncKeyState takes a virtual-key code and reads global state.
    let state = unsafe { GetAsyncKeyState(i32::from(vk)) };
    state < 0
}

/// The keys a press of `vk` typed, in the foreground window's keyboard layout: usually one,
/// two after a dead key that does not combine, none for keys that type nothing (arrows,
/// function keys, a dead key itself) and for shortcuts with Ctrl, Alt or Windows.
fn translate(vk: u32, scan: u32) -> Vec<Key> {
    let Ok(vk16) = u16::try_from(vk) else {
        return Vec::new();
    };
    let ctrl = pressed(VK_CONTROL);
    let alt = pressed(VK_MENU);
    let win = pressed(VK_LWIN) || pressed(VK_RWIN);
    // Ctrl+Alt together is AltGr, which types characters; either alone is a shortcut.
    if win || (ctrl != alt) {
        return Vec::new();
    }
    match vk16 {
        VK_BACK => return vec![Key::Backspace],
        VK_RETURN => return vec![Key::Enter],
        VK_TAB => return vec![Key::Tab],
        VK_ESCAPE => return vec![Key::Escape],
        _ => {}
    }
    // The hook thread's own keyboard state does not follow the pupil's input: build the
    // modifier state from the global key state.
    let mut state = [0u8; 256];
    for modifier in [VK_SHIFT, VK_CONTROL, VK_MENU] {
        if pressed(modifier) {
            state[usize::from(modifier)] = 0x80;
        }
    }
    // SAFETY: GetKeyState takes a virtual-key code; bit 0 is the Caps Lock toggle.
    let caps = unsafe { GetKeyState(i32::from(VK_CAPITAL)) };
    if caps & 1 != 0 {
        state[usize::from(VK_CAPITAL)] = 0x01;
    }
    // SAFETY: GetForegroundWindow may return null, which GetWindowThreadProcessId tolerates
    // (returning 0, i.e. this thread's layout); a null pid pointer is allowed.
    let layout = unsafe {
        let thread = GetWindowThreadProcessId(GetForegroundWindow(), std::ptr::null_mut());
        GetKeyboardLayout(thread)
    };
    let mut buf = [0u16; 8];
    // SAFETY: state is a 256-byte key state array; buf holds buf.len() u16s, which is passed.
    let n = unsafe {
        ToUnicodeEx(
            vk,
            scan,
            state.as_ptr(),
            buf.as_mut_ptr(),
            buf.len() as i32,
            TO_UNICODE_KEEP_STATE,
            layout,
        )
    };
    // Negative: a dead key (the character comes with the next key); 0: nothing typed.
    if n <= 0 {
        return Vec::new();
    }
    String::from_utf16_lossy(&buf[..(n as usize).min(buf.len())])
        .chars()
        .filter(|c| !c.is_control())
        .map(Key::Char)
        .collect()
}
