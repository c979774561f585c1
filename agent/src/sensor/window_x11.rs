//! Active window on X11, event-driven.
//!
//! With a window manager: `PropertyNotify` for `_NET_ACTIVE_WINDOW` on the root and for the
//! title atoms on the active window. Without one (or after it died): focus, crossing and
//! structure events on the top-level windows, resolved by input focus or pointer.

use std::collections::HashMap;

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _, EventMask, Window};
use x11rb::protocol::Event;

use super::x11::{Mode, X11};
use super::{send, SensorConfig, SensorError, SensorEvent, SensorHandle, Stop};
use crate::observation::App;

/// Events asked for on every top-level and application window.
fn window_mask() -> EventMask {
    EventMask::PROPERTY_CHANGE | EventMask::ENTER_WINDOW | EventMask::FOCUS_CHANGE
}

pub(crate) fn start(
    config: &SensorConfig,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
) -> Result<SensorHandle, SensorError> {
    let x = X11::connect(config.display.as_deref(), "window")?;
    x.select(
        x.root,
        EventMask::PROPERTY_CHANGE | EventMask::SUBSTRUCTURE_NOTIFY,
    );
    if let Ok(tree) = x.conn.query_tree(x.root).map(|c| c.reply()) {
        for child in tree.map(|t| t.children).unwrap_or_default() {
            x.select(child, window_mask());
        }
    }
    x.conn.flush().map_err(|e| SensorError::X11 {
        sensor: "window",
        reason: e.to_string(),
    })?;
    let stop = Stop::default();
    x.wake_on(&stop);
    let thread_stop = stop.clone();
    SensorHandle::spawn("window", stop, move || {
        WindowSensor::new(x, tx).run(&thread_stop)
    })
}

struct WindowSensor {
    x: X11,
    tx: tokio::sync::mpsc::Sender<SensorEvent>,
    mode: Mode,
    /// The window whose title changes we report.
    current: Option<Window>,
    /// Last (window, title) sent, to drop repeats.
    last: Option<(Window, String)>,
    apps: HashMap<Window, App>,
}

impl WindowSensor {
    fn new(x: X11, tx: tokio::sync::mpsc::Sender<SensorEvent>) -> Self {
        Self {
            x,
            tx,
            mode: Mode::Fallback,
            current: None,
            last: None,
            apps: HashMap::new(),
        }
    }

    fn run(mut self, stop: &Stop) {
        tracing::debug!("window sensor running");
        if !self.evaluate() {
            return;
        }
        loop {
            let _ = self.x.conn.flush();
            let event = match self.x.conn.wait_for_event() {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(%error, "window sensor lost the X connection; restart the agent in the pupil's session");
                    return;
                }
            };
            let mut dirty = self.relevant(&event);
            // Coalesce a burst (openbox writes _NET_ACTIVE_WINDOW twice per switch).
            while let Ok(Some(event)) = self.x.conn.poll_for_event() {
                dirty |= self.relevant(&event);
            }
            if stop.is_requested() {
                return;
            }
            if dirty && !self.evaluate() {
                return;
            }
        }
    }

    /// Whether `event` may have changed the active window or its title.
    fn relevant(&mut self, event: &Event) -> bool {
        let atoms = &self.x.atoms;
        match event {
            Event::PropertyNotify(e) if e.window == self.x.root => {
                e.atom == atoms._NET_ACTIVE_WINDOW || e.atom == atoms._NET_SUPPORTING_WM_CHECK
            }
            Event::PropertyNotify(e) => {
                Some(e.window) == self.current
                    && (e.atom == atoms._NET_WM_NAME || e.atom == u32::from(AtomEnum::WM_NAME))
            }
            Event::CreateNotify(e) => {
                if e.parent == self.x.root {
                    self.x.select(e.window, window_mask());
                }
                false
            }
            Event::DestroyNotify(e) => {
                self.apps.remove(&e.window);
                true
            }
            Event::MapNotify(_)
            | Event::UnmapNotify(_)
            | Event::ReparentNotify(_)
            | Event::ConfigureNotify(_)
            | Event::EnterNotify(_)
            | Event::FocusIn(_)
            | Event::FocusOut(_) => self.mode == Mode::Fallback,
            // Errors for windows that vanished between an event and our request.
            _ => false,
        }
    }

    /// Looks up the active window and sends an event if (window, title) changed. `false` when
    /// the receiver is gone.
    fn evaluate(&mut self) -> bool {
        let (mode, active) = self.x.active_window();
        if mode != self.mode {
            tracing::info!(?mode, "window sensor: active window source changed");
            self.mode = mode;
        }
        let Some(window) = active else {
            return true;
        };
        if self.current != Some(window) {
            // Select before reading the title so no rename falls between the two.
            self.x.select(window, window_mask());
            self.current = Some(window);
        }
        let title = self.x.title(window);
        if self
            .last
            .as_ref()
            .is_some_and(|(w, t)| *w == window && *t == title)
        {
            return true;
        }
        if self.apps.len() > 512 {
            self.apps.clear();
        }
        let app = self
            .apps
            .entry(window)
            .or_insert_with(|| self.x.app(window))
            .clone();
        self.last = Some((window, title.clone()));
        send(
            &self.tx,
            SensorEvent::Window {
                window_id: u64::from(window),
                title,
                app,
            },
        )
    }
}
