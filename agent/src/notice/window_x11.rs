//! The notice window on X11, drawn with core X11 requests (no toolkit, so
//! the agent stays small): the text wrapped to a fixed-width font, the
//! 'Report a concern' address, and an 'I understand' button. The window
//! stays above others and ignores the window manager's close: only the
//! button (or Return, Enter or space) closes it. Long notices scroll with
//! the arrow and page keys or the mouse wheel.

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, Char2b, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Gcontext,
    InputFocus, PropMode, Rectangle, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::CURRENT_TIME;

use super::{DisplayError, Shown};

x11rb::atom_manager! {
    Atoms: AtomsCookie {
        WM_PROTOCOLS,
        WM_DELETE_WINDOW,
        _NET_WM_NAME,
        UTF8_STRING,
        _NET_WM_STATE,
        _NET_WM_STATE_ABOVE,
        _NET_WM_WINDOW_TYPE,
        _NET_WM_WINDOW_TYPE_DIALOG,
    }
}

/// The window's title (tests find the window by it).
pub const TITLE: &str = "Tutela: monitoring notice";
const BUTTON_LABEL: &str = "I understand";
/// Text width in characters.
const COLUMNS: usize = 80;
const MARGIN: i16 = 16;
const BUTTON_W: u16 = 160;
const BUTTON_H: u16 = 36;

const KEY_RETURN: u32 = 0xff0d;
const KEY_KP_ENTER: u32 = 0xff8d;
const KEY_SPACE: u32 = 0x20;
const KEY_UP: u32 = 0xff52;
const KEY_DOWN: u32 = 0xff54;
const KEY_PAGE_UP: u32 = 0xff55;
const KEY_PAGE_DOWN: u32 = 0xff56;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Heading,
    Body,
    Link,
}

/// The notice as lines of at most `columns` characters.
fn layout(shown: &Shown, columns: usize) -> Vec<(String, Style)> {
    let mut lines = vec![
        ("Monitoring notice".to_owned(), Style::Heading),
        (String::new(), Style::Body),
    ];
    for paragraph in shown.text.replace('\t', "    ").lines() {
        for line in wrap(paragraph, columns) {
            lines.push((line, Style::Body));
        }
    }
    if !shown.concern_url.is_empty() {
        lines.push((String::new(), Style::Body));
        lines.push((
            "Worried about something? Report a concern:".to_owned(),
            Style::Body,
        ));
        for line in wrap(&shown.concern_url, columns) {
            lines.push((line, Style::Link));
        }
    }
    lines
}

/// Wraps at spaces; a word longer than a line is cut.
fn wrap(paragraph: &str, columns: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in paragraph.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        let used = line.chars().count();
        if used > 0 && used + 1 + word.len() > columns {
            out.push(std::mem::take(&mut line));
        }
        while word.len() > columns {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            out.push(word.drain(..columns).collect());
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend(word);
    }
    out.push(line);
    out
}

fn failed(e: impl std::fmt::Display) -> DisplayError {
    DisplayError::Failed(e.to_string())
}

/// Typographic punctuation a Latin-1 font lacks, as the nearest ASCII.
fn plain(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{2032}' => '\'',
        '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{2033}' => '"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{2022}' | '\u{2023}' | '\u{2043}' => '*',
        '\u{2026}' => '.',
        '\u{00a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' => ' ',
        other => other,
    }
}

/// Characters as the font's 16-bit code points (outside its range: `?`).
fn chars16(text: &str, unicode: bool) -> Vec<Char2b> {
    text.chars()
        .map(|c| if unicode { c } else { plain(c) })
        .map(|c| {
            let limit = if unicode { 0xffff } else { 0xff };
            let code = if (c as u32) <= limit {
                c as u32
            } else {
                '?' as u32
            };
            Char2b {
                byte1: (code >> 8) as u8,
                byte2: (code & 0xff) as u8,
            }
        })
        .collect()
}

struct Window_ {
    conn: RustConnection,
    window: Window,
    text: Gcontext,
    link: Gcontext,
    heading: Gcontext,
    button: Gcontext,
    /// The button's label: black on the button's grey.
    label: Gcontext,
    unicode: bool,
    char_w: i16,
    ascent: i16,
    line_h: i16,
    width: u16,
    height: u16,
    lines: Vec<(String, Style)>,
    top: usize,
}

impl Window_ {
    fn visible(&self) -> usize {
        let room = i32::from(self.height) - 3 * i32::from(MARGIN) - i32::from(BUTTON_H);
        (room / i32::from(self.line_h)).max(1) as usize
    }

    fn button_rect(&self) -> Rectangle {
        Rectangle {
            x: ((self.width.saturating_sub(BUTTON_W)) / 2) as i16,
            y: self.height as i16 - MARGIN - BUTTON_H as i16,
            width: BUTTON_W,
            height: BUTTON_H,
        }
    }

    fn scroll(&mut self, by: isize) {
        let max = self.lines.len().saturating_sub(self.visible());
        self.top = self.top.saturating_add_signed(by).min(max);
    }

    fn draw(&self) -> Result<(), DisplayError> {
        let c = &self.conn;
        c.clear_area(false, self.window, 0, 0, 0, 0)
            .map_err(failed)?;
        for (i, (line, style)) in self
            .lines
            .iter()
            .skip(self.top)
            .take(self.visible())
            .enumerate()
        {
            let y = MARGIN + self.ascent + i as i16 * self.line_h;
            let gc = match style {
                Style::Heading => self.heading,
                Style::Body => self.text,
                Style::Link => self.link,
            };
            let chars = chars16(line, self.unicode);
            if !chars.is_empty() {
                c.image_text16(self.window, gc, MARGIN, y, &chars)
                    .map_err(failed)?;
            }
            if *style == Style::Link {
                let w = self.char_w * line.chars().count() as i16;
                c.poly_line(
                    x11rb::protocol::xproto::CoordMode::ORIGIN,
                    self.window,
                    gc,
                    &[
                        x11rb::protocol::xproto::Point {
                            x: MARGIN,
                            y: y + 2,
                        },
                        x11rb::protocol::xproto::Point {
                            x: MARGIN + w,
                            y: y + 2,
                        },
                    ],
                )
                .map_err(failed)?;
            }
        }
        if self.lines.len() > self.visible() {
            let more = format!(
                "(lines {}-{} of {}: scroll with the arrow keys or the mouse wheel)",
                self.top + 1,
                (self.top + self.visible()).min(self.lines.len()),
                self.lines.len()
            );
            let y = self.height as i16 - MARGIN - BUTTON_H as i16 - 6;
            c.image_text16(self.window, self.text, MARGIN, y, &chars16(&more, false))
                .map_err(failed)?;
        }
        let b = self.button_rect();
        c.poly_fill_rectangle(self.window, self.button, &[b])
            .map_err(failed)?;
        c.poly_rectangle(self.window, self.text, &[b])
            .map_err(failed)?;
        let label_w = self.char_w * BUTTON_LABEL.len() as i16;
        c.image_text16(
            self.window,
            self.label,
            b.x + (b.width as i16 - label_w) / 2,
            b.y + (b.height as i16 + self.ascent) / 2 - 1,
            &chars16(BUTTON_LABEL, false),
        )
        .map_err(failed)?;
        c.flush().map_err(failed)
    }
}

/// Opens a fixed-width font: Unicode if the server has one, else `fixed`.
fn open_font(conn: &RustConnection) -> Result<(u32, bool), DisplayError> {
    let font = conn.generate_id().map_err(failed)?;
    for (name, unicode) in [
        (
            "-misc-fixed-medium-r-normal--15-140-75-75-c-90-iso10646-1",
            true,
        ),
        (
            "-misc-fixed-medium-r-normal--13-120-75-75-c-70-iso10646-1",
            true,
        ),
        (
            "-misc-fixed-medium-r-semicondensed--13-120-75-75-c-60-iso10646-1",
            true,
        ),
        ("-*-fixed-medium-r-*--*-120-*-*-c-*-iso10646-1", true),
        ("fixed", false),
    ] {
        let opened = conn
            .open_font(font, name.as_bytes())
            .map_err(failed)?
            .check();
        if opened.is_ok() {
            return Ok((font, unicode));
        }
    }
    Err(DisplayError::Failed(
        "the X server has no fixed-width font (not even `fixed`)".into(),
    ))
}

/// Shows `shown` and returns once the pupil acknowledges it.
pub fn show(shown: &Shown) -> Result<(), DisplayError> {
    let (conn, screen_num) =
        x11rb::connect(None).map_err(|e| DisplayError::NoDisplay(e.to_string()))?;
    let screen = conn.setup().roots[screen_num].clone();
    let atoms = Atoms::new(&conn).map_err(failed)?.reply().map_err(failed)?;
    let (font, unicode) = open_font(&conn)?;
    let metrics = conn
        .query_font(font)
        .map_err(failed)?
        .reply()
        .map_err(failed)?;
    let char_w = metrics.max_bounds.character_width.max(1);
    let ascent = metrics.font_ascent;
    let line_h = metrics.font_ascent + metrics.font_descent + 2;
    let lines = layout(shown, COLUMNS);
    let width = (COLUMNS as i16 * char_w + 2 * MARGIN) as u16;
    let most = (screen.height_in_pixels as i16 - 160).max(200);
    let wanted = 3 * MARGIN + BUTTON_H as i16 + lines.len() as i16 * line_h + line_h;
    let height = wanted.min(most) as u16;
    let window = conn.generate_id().map_err(failed)?;
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        window,
        screen.root,
        ((screen.width_in_pixels.saturating_sub(width)) / 2) as i16,
        ((screen.height_in_pixels.saturating_sub(height)) / 2) as i16,
        width,
        height,
        1,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .background_pixel(screen.white_pixel)
            .border_pixel(screen.black_pixel)
            .event_mask(
                EventMask::EXPOSURE
                    | EventMask::KEY_PRESS
                    | EventMask::BUTTON_PRESS
                    | EventMask::STRUCTURE_NOTIFY,
            ),
    )
    .map_err(failed)?;
    conn.change_property8(
        PropMode::REPLACE,
        window,
        AtomEnum::WM_NAME,
        AtomEnum::STRING,
        TITLE.as_bytes(),
    )
    .map_err(failed)?;
    conn.change_property8(
        PropMode::REPLACE,
        window,
        atoms._NET_WM_NAME,
        atoms.UTF8_STRING,
        TITLE.as_bytes(),
    )
    .map_err(failed)?;
    conn.change_property32(
        PropMode::REPLACE,
        window,
        atoms.WM_PROTOCOLS,
        AtomEnum::ATOM,
        &[atoms.WM_DELETE_WINDOW],
    )
    .map_err(failed)?;
    conn.change_property32(
        PropMode::REPLACE,
        window,
        atoms._NET_WM_STATE,
        AtomEnum::ATOM,
        &[atoms._NET_WM_STATE_ABOVE],
    )
    .map_err(failed)?;
    conn.change_property32(
        PropMode::REPLACE,
        window,
        atoms._NET_WM_WINDOW_TYPE,
        AtomEnum::ATOM,
        &[atoms._NET_WM_WINDOW_TYPE_DIALOG],
    )
    .map_err(failed)?;
    let colour = |r: u16, g: u16, b: u16, fallback: u32| -> u32 {
        conn.alloc_color(screen.default_colormap, r, g, b)
            .ok()
            .and_then(|c| c.reply().ok())
            .map_or(fallback, |c| c.pixel)
    };
    let blue = colour(0x0b00, 0x4f00, 0xa000, screen.black_pixel);
    let grey = colour(0xdd00, 0xe300, 0xea00, screen.white_pixel);
    let gc = |fg: u32, bg: u32| -> Result<Gcontext, DisplayError> {
        let id = conn.generate_id().map_err(failed)?;
        conn.create_gc(
            id,
            window,
            &CreateGCAux::new().foreground(fg).background(bg).font(font),
        )
        .map_err(failed)?;
        Ok(id)
    };
    let text = gc(screen.black_pixel, screen.white_pixel)?;
    let link = gc(blue, screen.white_pixel)?;
    let button = gc(grey, screen.white_pixel)?;
    let label = gc(screen.black_pixel, grey)?;
    let keys = accept_keys(&conn)?;
    conn.map_window(window).map_err(failed)?;
    conn.flush().map_err(failed)?;
    let mut w = Window_ {
        conn,
        window,
        text,
        link,
        heading: text,
        button,
        label,
        unicode,
        char_w,
        ascent,
        line_h,
        width,
        height,
        lines,
        top: 0,
    };
    loop {
        let event = w.conn.wait_for_event().map_err(failed)?;
        match event {
            Event::Expose(e) if e.count == 0 => w.draw()?,
            Event::MapNotify(_) => {
                // A notice the pupil must answer takes the keyboard.
                let _ = w
                    .conn
                    .set_input_focus(InputFocus::PARENT, w.window, CURRENT_TIME);
                let _ = w.conn.flush();
            }
            Event::ConfigureNotify(e)
                if e.window == w.window && (e.width, e.height) != (w.width, w.height) =>
            {
                w.width = e.width;
                w.height = e.height;
                w.scroll(0);
            }
            Event::KeyPress(e) => match keys.get(&e.detail) {
                Some(&(KEY_RETURN | KEY_KP_ENTER | KEY_SPACE)) => break,
                Some(&KEY_UP) => redraw_after(&mut w, -1)?,
                Some(&KEY_DOWN) => redraw_after(&mut w, 1)?,
                Some(&KEY_PAGE_UP) => {
                    let page = w.visible() as isize;
                    redraw_after(&mut w, -page)?
                }
                Some(&KEY_PAGE_DOWN) => {
                    let page = w.visible() as isize;
                    redraw_after(&mut w, page)?
                }
                _ => {}
            },
            Event::ButtonPress(e) => match e.detail {
                1 => {
                    let b = w.button_rect();
                    let inside = e.event_x >= b.x
                        && e.event_x < b.x + b.width as i16
                        && e.event_y >= b.y
                        && e.event_y < b.y + b.height as i16;
                    if inside {
                        break;
                    }
                }
                4 => redraw_after(&mut w, -3)?,
                5 => redraw_after(&mut w, 3)?,
                _ => {}
            },
            Event::ClientMessage(e) if e.type_ == atoms.WM_PROTOCOLS => {
                tracing::info!("the notice window stays open until the pupil acknowledges it");
            }
            _ => {}
        }
    }
    let _ = w.conn.destroy_window(w.window);
    let _ = w.conn.flush();
    Ok(())
}

fn redraw_after(w: &mut Window_, by: isize) -> Result<(), DisplayError> {
    let before = w.top;
    w.scroll(by);
    if w.top != before {
        w.draw()?;
    }
    Ok(())
}

/// Keycodes of the keys the window answers, with their keysyms (the first
/// keysym of each keycode, as typed without modifiers).
fn accept_keys(conn: &RustConnection) -> Result<std::collections::HashMap<u8, u32>, DisplayError> {
    let setup = conn.setup();
    let (min, max) = (setup.min_keycode, setup.max_keycode);
    let map = conn
        .get_keyboard_mapping(min, max - min + 1)
        .map_err(failed)?
        .reply()
        .map_err(failed)?;
    let per = usize::from(map.keysyms_per_keycode.max(1));
    let wanted = [
        KEY_RETURN,
        KEY_KP_ENTER,
        KEY_SPACE,
        KEY_UP,
        KEY_DOWN,
        KEY_PAGE_UP,
        KEY_PAGE_DOWN,
    ];
    Ok(map
        .keysyms
        .chunks(per)
        .enumerate()
        .filter_map(|(i, syms)| {
            let sym = *syms.first()?;
            wanted.contains(&sym).then(|| (min + i as u8, sym))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_words_and_cuts_long_words() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
        let shown = Shown {
            text: "Line one\n\nLine two".into(),
            concern_url: "https://school.test/concern".into(),
            version: 1,
        };
        let lines = layout(&shown, 80);
        assert_eq!(lines[2].0, "Line one");
        assert_eq!(lines[3].0, "");
        assert_eq!(
            lines.last().unwrap(),
            &("https://school.test/concern".to_owned(), Style::Link)
        );
        // Without a Unicode font, quotes and dashes fall back to ASCII; Latin-1 stays.
        let latin1: String = chars16("\u{2018}Caf\u{e9}\u{2019} \u{2013} \u{263a}", false)
            .iter()
            .map(|c| char::from(c.byte2))
            .collect();
        assert_eq!(latin1, "'Caf\u{e9}' - ?");
    }
}
