//! Typed keys on X11: XInput2 raw key events from the root window, decoded through the core
//! keyboard mapping. Raw events carry no modifier state, so Shift, Caps Lock, Ctrl, Alt and
//! AltGr are tracked from the key events themselves.

use std::collections::HashSet;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xinput::{self, ConnectionExt as _, XIEventMask};
use x11rb::protocol::xproto::{ConnectionExt as _, Mapping};
use x11rb::protocol::Event;
use xkeysym::{key, Keysym};

use super::x11::X11;
use super::{send, Key, SensorConfig, SensorError, SensorEvent, SensorHandle, Stop};

/// `XIAllMasterDevices`: one event per key, whichever keyboard (or XTEST) produced it.
const ALL_MASTER_DEVICES: u16 = 1;

pub(crate) fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    let x = X11::connect(config.display.as_deref(), "keys")?;
    let x11_err = |e: &dyn std::fmt::Display| SensorError::X11 {
        sensor: "keys",
        reason: e.to_string(),
    };
    let present = x
        .conn
        .extension_information(xinput::X11_EXTENSION_NAME)
        .map_err(|e| x11_err(&e))?
        .is_some();
    let version = if present {
        x.conn
            .xinput_xi_query_version(2, 2)
            .map_err(|e| x11_err(&e))?
            .reply()
            .ok()
    } else {
        None
    };
    if version.is_none_or(|v| v.major_version < 2) {
        return Err(SensorError::MissingExtension {
            sensor: "keys",
            extension: "XInputExtension 2",
        });
    }
    x.conn
        .xinput_xi_select_events(
            x.root,
            &[xinput::EventMask {
                deviceid: ALL_MASTER_DEVICES,
                mask: vec![XIEventMask::RAW_KEY_PRESS | XIEventMask::RAW_KEY_RELEASE],
            }],
        )
        .map_err(|e| x11_err(&e))?
        .check()
        .map_err(|e| x11_err(&e))?;
    let keymap = Keymap::load(&x).map_err(|e| x11_err(&e))?;
    let stop = Stop::default();
    x.wake_on(&stop);
    let thread_stop = stop.clone();
    SensorHandle::spawn("keys", stop, move || {
        run(x, keymap, tx, &thread_stop);
    })
}

fn run(x: X11, mut keymap: Keymap, tx: tokio::sync::mpsc::Sender<SensorEvent>, stop: &Stop) {
    tracing::debug!("key sensor running");
    let mut modifiers = Modifiers::default();
    loop {
        let event = match x.conn.wait_for_event() {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "key sensor lost the X connection; restart the agent in the pupil's session");
                return;
            }
        };
        if stop.is_requested() {
            return;
        }
        match event {
            Event::XinputRawKeyPress(e) => {
                let Some(key) = modifiers.press(&keymap, e.detail) else {
                    continue;
                };
                // The window manager may not have named the active window yet (just
                // after a sign-in, or on a loaded machine): the input focus says where
                // the key went.
                let window_id = x
                    .active_window()
                    .1
                    .or_else(|| x.focused_window())
                    .map(u64::from)
                    .unwrap_or(0);
                if !send(&tx, SensorEvent::Key { window_id, key }) {
                    return;
                }
            }
            Event::XinputRawKeyRelease(e) => modifiers.release(&keymap, e.detail),
            // xdotool types characters missing from the map through a spare keycode it
            // remaps just before pressing it.
            Event::MappingNotify(e) if e.request != Mapping::POINTER => match Keymap::load(&x) {
                Ok(fresh) => keymap = fresh,
                Err(error) => tracing::warn!(%error, "key sensor could not reload the keymap"),
            },
            _ => {}
        }
    }
}

/// The core keyboard mapping: keysyms per keycode.
pub(crate) struct Keymap {
    min_keycode: u8,
    per_keycode: u8,
    keysyms: Vec<u32>,
}

impl Keymap {
    fn load(x: &X11) -> Result<Self, Box<dyn std::error::Error>> {
        let setup = x.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let reply = x.conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
        Ok(Self {
            min_keycode: min,
            per_keycode: reply.keysyms_per_keycode,
            keysyms: reply.keysyms,
        })
    }

    /// The keysym in `column` (0 plain, 1 Shift, 4/5 AltGr); a missing Shift keysym is the
    /// upper case of the plain one, as in Xlib.
    fn keysym(&self, keycode: u32, column: u8) -> Option<Keysym> {
        let code = u8::try_from(keycode).ok()?;
        let per = usize::from(self.per_keycode);
        let start = usize::from(code.checked_sub(self.min_keycode)?) * per;
        let row = self.keysyms.get(start..start + per)?;
        let get = |i: usize| row.get(i).copied().filter(|&k| k != 0).map(Keysym::new);
        match column {
            1 => get(1).or_else(|| {
                let plain = get(0)?;
                let c = plain.key_char()?;
                let upper = c.to_uppercase().next()?;
                Some(if upper == c {
                    plain
                } else {
                    Keysym::from_char(upper)
                })
            }),
            n => get(usize::from(n)),
        }
    }
}

/// Modifier keys held down, tracked from raw events.
#[derive(Default)]
struct Modifiers {
    shift: HashSet<u32>,
    control: HashSet<u32>,
    alt: HashSet<u32>,
    altgr: HashSet<u32>,
    caps_lock: bool,
}

impl Modifiers {
    /// Records a key press; returns the typed key, if it is one.
    fn press(&mut self, keymap: &Keymap, keycode: u32) -> Option<Key> {
        let base = keymap.keysym(keycode, 0)?;
        match base.raw() {
            key::Shift_L | key::Shift_R => {
                self.shift.insert(keycode);
                return None;
            }
            key::Control_L | key::Control_R => {
                self.control.insert(keycode);
                return None;
            }
            key::Alt_L | key::Alt_R | key::Meta_L | key::Meta_R | key::Super_L | key::Super_R => {
                self.alt.insert(keycode);
                return None;
            }
            key::ISO_Level3_Shift | key::Mode_switch => {
                self.altgr.insert(keycode);
                return None;
            }
            key::Caps_Lock => {
                self.caps_lock = !self.caps_lock;
                return None;
            }
            _ => {}
        }
        let shift = !self.shift.is_empty();
        let column = match (self.altgr.is_empty(), shift) {
            (true, false) => 0,
            (true, true) => 1,
            (false, false) => 4,
            (false, true) => 5,
        };
        let keysym = keymap
            .keysym(keycode, column)
            .or_else(|| keymap.keysym(keycode, u8::from(shift)))?;
        let key = match keysym.raw() {
            key::BackSpace => Key::Backspace,
            key::Return | key::KP_Enter => Key::Enter,
            key::Tab | key::ISO_Left_Tab => Key::Tab,
            key::Escape => Key::Escape,
            _ => {
                let mut c = keysym.key_char().filter(|c| !c.is_control())?;
                if self.caps_lock && c.is_alphabetic() {
                    c = flip_case(c);
                }
                Key::Char(c)
            }
        };
        // Ctrl/Alt combinations are shortcuts, not text; editing keys still count.
        if !self.control.is_empty() || !self.alt.is_empty() {
            return match key {
                Key::Char(_) => None,
                other => Some(other),
            };
        }
        Some(key)
    }

    fn release(&mut self, _keymap: &Keymap, keycode: u32) {
        self.shift.remove(&keycode);
        self.control.remove(&keycode);
        self.alt.remove(&keycode);
        self.altgr.remove(&keycode);
    }
}

fn flip_case(c: char) -> char {
    if c.is_lowercase() {
        c.to_uppercase().next().unwrap_or(c)
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keycodes 10..=15: a/A, 1/!, Shift_L, BackSpace, Return, Control_L.
    fn keymap() -> Keymap {
        Keymap {
            min_keycode: 10,
            per_keycode: 2,
            keysyms: vec![
                key::a,
                key::A,
                key::_1,
                key::exclam,
                key::Shift_L,
                0,
                key::BackSpace,
                0,
                key::Return,
                0,
                key::Control_L,
                0,
            ],
        }
    }

    #[test]
    fn shift_caps_and_control_change_what_is_typed() {
        let map = keymap();
        let mut m = Modifiers::default();
        assert_eq!(m.press(&map, 10), Some(Key::Char('a')));
        assert_eq!(m.press(&map, 12), None);
        assert_eq!(m.press(&map, 10), Some(Key::Char('A')));
        assert_eq!(m.press(&map, 11), Some(Key::Char('!')));
        m.release(&map, 12);
        assert_eq!(m.press(&map, 11), Some(Key::Char('1')));
        assert_eq!(m.press(&map, 13), Some(Key::Backspace));
        assert_eq!(m.press(&map, 14), Some(Key::Enter));
        assert_eq!(m.press(&map, 15), None);
        assert_eq!(m.press(&map, 10), None, "Ctrl+A is a shortcut");
        assert_eq!(m.press(&map, 13), Some(Key::Backspace));
        m.release(&map, 15);
        m.caps_lock = true;
        assert_eq!(m.press(&map, 10), Some(Key::Char('A')));
        assert_eq!(m.press(&map, 99), None, "unknown keycode");
        assert_eq!(m.press(&map, 3), None, "keycode below the map");
    }
}
