//! Shared X11 plumbing for the window and key sensors: connection, atoms, and which window is
//! active.

use std::sync::Arc;

use x11rb::connection::Connection;
use x11rb::protocol::res::{self, ClientIdMask, ClientIdSpec};
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ClientMessageEvent, ConnectionExt as _, CreateWindowAux,
    EventMask, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;

use super::{SensorError, Stop};
use crate::observation::App;

x11rb::atom_manager! {
    pub(crate) Atoms: AtomsCookie {
        _NET_ACTIVE_WINDOW,
        _NET_SUPPORTING_WM_CHECK,
        _NET_WM_NAME,
        _NET_WM_PID,
        UTF8_STRING,
        WM_STATE,
        _TUTELA_SENSOR_WAKE,
    }
}

/// Which rule found the active window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A live window manager publishes `_NET_ACTIVE_WINDOW`.
    WindowManager,
    /// No (live) window manager: input focus, else the top-level window under the pointer.
    Fallback,
}

pub(crate) struct X11 {
    pub(crate) conn: Arc<RustConnection>,
    pub(crate) root: Window,
    pub(crate) atoms: Atoms,
    /// Unmapped window that receives the wake-up message sent on stop.
    wake_window: Window,
}

impl X11 {
    pub(crate) fn connect(
        display: Option<&str>,
        sensor: &'static str,
    ) -> Result<Self, SensorError> {
        let shown = display
            .map(str::to_owned)
            .or_else(|| std::env::var("DISPLAY").ok())
            .unwrap_or_default();
        let (conn, screen_num) = x11rb::connect(display).map_err(|e| SensorError::NoDisplay {
            display: shown,
            reason: e.to_string(),
        })?;
        let x11_err = |e: &dyn std::fmt::Display| SensorError::X11 {
            sensor,
            reason: e.to_string(),
        };
        let root = conn.setup().roots[screen_num].root;
        let atoms = Atoms::new(&conn)
            .map_err(|e| x11_err(&e))?
            .reply()
            .map_err(|e| x11_err(&e))?;
        let wake_window = conn.generate_id().map_err(|e| x11_err(&e))?;
        conn.create_window(
            0,
            wake_window,
            root,
            -1,
            -1,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new(),
        )
        .map_err(|e| x11_err(&e))?
        .check()
        .map_err(|e| x11_err(&e))?;
        Ok(Self {
            conn: Arc::new(conn),
            root,
            atoms,
            wake_window,
        })
    }

    /// Makes `stop` wake this connection's event loop with a private client message.
    pub(crate) fn wake_on(&self, stop: &Stop) {
        let conn = Arc::clone(&self.conn);
        let window = self.wake_window;
        let kind = self.atoms._TUTELA_SENSOR_WAKE;
        stop.set_waker(move || {
            let event = ClientMessageEvent::new(32, window, kind, [0u32; 5]);
            let _ = conn.send_event(false, window, EventMask::NO_EVENT, event);
            let _ = conn.flush();
        });
    }

    /// Asks for `mask` events on `window` (errors for vanished windows arrive as events and are
    /// ignored by the loops).
    pub(crate) fn select(&self, window: Window, mask: EventMask) {
        let _ = self
            .conn
            .change_window_attributes(window, &ChangeWindowAttributesAux::new().event_mask(mask));
    }

    fn window_property(&self, window: Window, atom: u32) -> Option<Window> {
        self.conn
            .get_property(false, window, atom, AtomEnum::WINDOW, 0, 1)
            .ok()?
            .reply()
            .ok()?
            .value32()?
            .next()
    }

    /// The window manager, if one is running: `_NET_SUPPORTING_WM_CHECK` on the root names a
    /// window that still exists and names itself (a dead WM leaves the root property stale).
    pub(crate) fn mode(&self) -> Mode {
        let check = self.atoms._NET_SUPPORTING_WM_CHECK;
        match self.window_property(self.root, check) {
            Some(child) if child != 0 && self.window_property(child, check) == Some(child) => {
                Mode::WindowManager
            }
            _ => Mode::Fallback,
        }
    }

    /// The application window the pupil is using, and how it was found.
    pub(crate) fn active_window(&self) -> (Mode, Option<Window>) {
        match self.mode() {
            Mode::WindowManager => {
                let active = self
                    .window_property(self.root, self.atoms._NET_ACTIVE_WINDOW)
                    .filter(|&w| w != 0);
                (Mode::WindowManager, active)
            }
            Mode::Fallback => (Mode::Fallback, self.focused_window()),
        }
    }

    /// The client window holding the input focus (or under the pointer when
    /// the focus follows it), whatever the window manager says.
    pub(crate) fn focused_window(&self) -> Option<Window> {
        let focus = self.conn.get_input_focus().ok()?.reply().ok()?.focus;
        // 0 is None and 1 is PointerRoot: keys then go to the window under the pointer.
        let top = if focus > 1 && focus != self.root {
            self.top_level(focus)?
        } else {
            let pointer = self.conn.query_pointer(self.root).ok()?.reply().ok()?;
            if pointer.child == 0 {
                return None;
            }
            pointer.child
        };
        Some(self.client_window(top))
    }

    /// The ancestor of `window` that is a child of the root.
    pub(crate) fn top_level(&self, mut window: Window) -> Option<Window> {
        for _ in 0..64 {
            let tree = self.conn.query_tree(window).ok()?.reply().ok()?;
            if tree.parent == self.root || tree.parent == 0 {
                return Some(window);
            }
            window = tree.parent;
        }
        None
    }

    /// The application's own window inside a top-level (which may be a stale frame).
    fn client_window(&self, top: Window) -> Window {
        if self.is_client(top) {
            return top;
        }
        let mut level = vec![top];
        for _ in 0..3 {
            let mut next = Vec::new();
            for w in level {
                let Some(tree) = self.conn.query_tree(w).ok().and_then(|c| c.reply().ok()) else {
                    continue;
                };
                for child in tree.children {
                    if self.is_client(child) {
                        return child;
                    }
                    next.push(child);
                }
            }
            level = next;
        }
        top
    }

    fn is_client(&self, window: Window) -> bool {
        let has = |atom: u32| {
            self.conn
                .get_property(false, window, atom, AtomEnum::ANY, 0, 0)
                .ok()
                .and_then(|c| c.reply().ok())
                .is_some_and(|r| r.type_ != 0)
        };
        has(self.atoms.WM_STATE) || has(AtomEnum::WM_NAME.into()) || has(self.atoms._NET_WM_NAME)
    }

    /// `_NET_WM_NAME` (UTF-8), else `WM_NAME`, else empty.
    pub(crate) fn title(&self, window: Window) -> String {
        // Any type: some tools (xdotool among them) store UTF-8 titles typed as STRING.
        let net = self.conn.get_property(
            false,
            window,
            self.atoms._NET_WM_NAME,
            AtomEnum::ANY,
            0,
            4096,
        );
        let legacy =
            self.conn
                .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::ANY, 0, 4096);
        if let Some(reply) = net.ok().and_then(|c| c.reply().ok()) {
            if !reply.value.is_empty() {
                return String::from_utf8_lossy(&reply.value).into_owned();
            }
        }
        match legacy.ok().and_then(|c| c.reply().ok()) {
            Some(reply) => decode_legacy(&reply.value, reply.type_ == u32::from(AtomEnum::STRING)),
            None => String::new(),
        }
    }

    /// Process id of the window's client: `_NET_WM_PID`, else the X-Resource extension.
    pub(crate) fn pid(&self, window: Window) -> Option<u32> {
        let from_property = self
            .conn
            .get_property(
                false,
                window,
                self.atoms._NET_WM_PID,
                AtomEnum::CARDINAL,
                0,
                1,
            )
            .ok()
            .and_then(|c| c.reply().ok())
            .and_then(|r| r.value32().and_then(|mut v| v.next()))
            .filter(|&pid| pid != 0);
        if from_property.is_some() {
            return from_property;
        }
        let spec = ClientIdSpec {
            client: window,
            mask: ClientIdMask::LOCAL_CLIENT_PID,
        };
        let reply = res::query_client_ids(&*self.conn, &[spec])
            .ok()?
            .reply()
            .ok()?;
        reply
            .ids
            .iter()
            .find(|id| id.spec.mask == ClientIdMask::LOCAL_CLIENT_PID)
            .and_then(|id| id.value.first().copied())
    }

    pub(crate) fn app(&self, window: Window) -> App {
        match self.pid(window) {
            Some(pid) => super::app_of_pid(pid),
            None => App::default(),
        }
    }
}

/// `WM_NAME` text: `STRING` is Latin-1 by the ICCCM, but many programs put UTF-8 there; valid
/// UTF-8 with non-ASCII bytes is almost never intended Latin-1, so it is read as UTF-8.
pub(crate) fn decode_legacy(bytes: &[u8], latin1: bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) if latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::decode_legacy;

    #[test]
    fn legacy_titles_decode_as_utf8_else_latin1() {
        assert_eq!(
            decode_legacy("Caf\u{e9} \u{2014}".as_bytes(), true),
            "Caf\u{e9} \u{2014}"
        );
        assert_eq!(decode_legacy(b"Caf\xe9", true), "Caf\u{e9}");
        assert_eq!(decode_legacy(b"plain", false), "plain");
        assert_eq!(decode_legacy(b"bad\xff", false), "bad\u{fffd}");
    }
}
