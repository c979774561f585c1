//! Evidence capture: a screenshot of the monitor showing a window, downscaled and JPEG-encoded.
//!
//! Linux/X11 reads the root window with `GetImage` (no system library); Windows and macOS use
//! xcap. The image is held in memory only; encryption at rest is the spool's job.

use image::imageops;
use image::{ImageEncoder, RgbImage};

/// A JPEG screenshot.
#[derive(Clone, PartialEq, Eq)]
pub struct Capture {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

// Never print the image bytes.
impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("jpeg_bytes", &self.jpeg.len())
            .finish()
    }
}

/// How to capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// X11 display (Linux); `None` means the `DISPLAY` environment variable.
    pub display: Option<String>,
    /// Images wider than this are scaled down, keeping the aspect ratio.
    pub max_width: u32,
    /// JPEG quality, 1-100.
    pub quality: u8,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            display: None,
            max_width: 1280,
            quality: 75,
        }
    }
}

/// Why a screenshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "cannot connect to the X display {display:?}: {reason}; run the agent inside the \
         pupil's X session or set DISPLAY and XAUTHORITY to that session's values"
    )]
    NoDisplay { display: String, reason: String },
    #[error("the screen could not be read: {0}")]
    Screen(String),
    #[error(
        "the screen uses {bits_per_pixel} bits per pixel at depth {depth}; only 24/32-bit \
         true colour is supported"
    )]
    PixelFormat { depth: u8, bits_per_pixel: u8 },
    #[error("the screenshot could not be encoded as JPEG: {0}")]
    Encode(#[from] image::ImageError),
    #[error("screen capture is not supported on this platform ({0})")]
    Unsupported(&'static str),
}

/// Screenshot of the monitor showing the given window (or the primary monitor), downscaled to
/// at most 1280 px wide, JPEG quality 75.
pub fn capture_screen(window_id: Option<u64>) -> Result<Capture, CaptureError> {
    capture_screen_with(&CaptureOptions::default(), window_id)
}

/// [`capture_screen`] with explicit options.
pub fn capture_screen_with(
    options: &CaptureOptions,
    window_id: Option<u64>,
) -> Result<Capture, CaptureError> {
    let started = std::time::Instant::now();
    let rgb = platform::grab(options, window_id)?;
    let capture = encode(&rgb, options)?;
    tracing::debug!(
        width = capture.width,
        height = capture.height,
        bytes = capture.jpeg.len(),
        ms = started.elapsed().as_millis() as u64,
        "screen captured"
    );
    Ok(capture)
}

/// Downscales to `max_width` (aspect kept) and encodes as JPEG.
pub fn encode(rgb: &RgbImage, options: &CaptureOptions) -> Result<Capture, CaptureError> {
    let (w, h) = rgb.dimensions();
    let scaled;
    let image = if w > options.max_width && options.max_width > 0 {
        let new_h = ((u64::from(h) * u64::from(options.max_width) + u64::from(w) / 2)
            / u64::from(w))
        .max(1) as u32;
        // thumbnail: a fast area-averaging filter, sharp enough for text at this scale.
        scaled = imageops::thumbnail(rgb, options.max_width, new_h);
        &scaled
    } else {
        rgb
    };
    let mut jpeg = Vec::with_capacity(64 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, options.quality.clamp(1, 100))
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )?;
    Ok(Capture {
        jpeg,
        width: image.width(),
        height: image.height(),
    })
}

#[cfg(target_os = "linux")]
mod platform {
    use image::RgbImage;
    use x11rb::connection::Connection;
    use x11rb::protocol::randr::ConnectionExt as _;
    use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder};
    use x11rb::rust_connection::RustConnection;

    use super::{CaptureError, CaptureOptions};

    /// A screen rectangle in root coordinates.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Rect {
        x: i16,
        y: i16,
        width: u16,
        height: u16,
    }

    pub(super) fn grab(
        options: &CaptureOptions,
        window_id: Option<u64>,
    ) -> Result<RgbImage, CaptureError> {
        let (conn, screen_num) =
            x11rb::connect(options.display.as_deref()).map_err(|e| CaptureError::NoDisplay {
                display: options
                    .display
                    .clone()
                    .or_else(|| std::env::var("DISPLAY").ok())
                    .unwrap_or_default(),
                reason: e.to_string(),
            })?;
        let screen = &conn.setup().roots[screen_num];
        let root = screen.root;
        let whole = Rect {
            x: 0,
            y: 0,
            width: screen.width_in_pixels,
            height: screen.height_in_pixels,
        };
        let monitors = monitors(&conn, root);
        let centre = window_id.and_then(|w| window_centre(&conn, root, w));
        let rect = pick_monitor(&monitors, centre).unwrap_or(whole);
        let rect = clip(rect, whole);
        let err = |e: &dyn std::fmt::Display| CaptureError::Screen(e.to_string());
        let reply = conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                root,
                rect.x,
                rect.y,
                rect.width,
                rect.height,
                !0,
            )
            .map_err(|e| err(&e))?
            .reply()
            .map_err(|e| err(&e))?;
        let bits_per_pixel = conn
            .setup()
            .pixmap_formats
            .iter()
            .find(|f| f.depth == reply.depth)
            .map(|f| f.bits_per_pixel)
            .unwrap_or(0);
        if bits_per_pixel != 32 || reply.depth < 24 {
            return Err(CaptureError::PixelFormat {
                depth: reply.depth,
                bits_per_pixel,
            });
        }
        let lsb = conn.setup().image_byte_order == ImageOrder::LSB_FIRST;
        let (w, h) = (u32::from(rect.width), u32::from(rect.height));
        let pixels = (w * h) as usize;
        if reply.data.len() < pixels * 4 {
            return Err(CaptureError::Screen(format!(
                "the X server returned {} bytes for a {w}x{h} image",
                reply.data.len()
            )));
        }
        let mut rgb = Vec::with_capacity(pixels * 3);
        for px in reply.data[..pixels * 4].chunks_exact(4) {
            // LSB first: B, G, R, X; MSB first: X, R, G, B.
            if lsb {
                rgb.extend_from_slice(&[px[2], px[1], px[0]]);
            } else {
                rgb.extend_from_slice(&[px[1], px[2], px[3]]);
            }
        }
        RgbImage::from_raw(w, h, rgb)
            .ok_or_else(|| CaptureError::Screen("image buffer size mismatch".into()))
    }

    /// Monitors from RandR 1.5, if the server has it.
    fn monitors(conn: &RustConnection, root: u32) -> Vec<(Rect, bool)> {
        let Some(reply) = conn
            .randr_get_monitors(root, true)
            .ok()
            .and_then(|c| c.reply().ok())
        else {
            return Vec::new();
        };
        reply
            .monitors
            .iter()
            .map(|m| {
                (
                    Rect {
                        x: m.x,
                        y: m.y,
                        width: m.width,
                        height: m.height,
                    },
                    m.primary,
                )
            })
            .collect()
    }

    fn window_centre(conn: &RustConnection, root: u32, window: u64) -> Option<(i32, i32)> {
        let window = u32::try_from(window).ok()?;
        let geometry = conn.get_geometry(window).ok()?;
        let origin = conn.translate_coordinates(window, root, 0, 0).ok()?;
        let (geometry, origin) = (geometry.reply().ok()?, origin.reply().ok()?);
        Some((
            i32::from(origin.dst_x) + i32::from(geometry.width) / 2,
            i32::from(origin.dst_y) + i32::from(geometry.height) / 2,
        ))
    }

    /// The monitor containing `point`, else the primary, else the first.
    fn pick_monitor(monitors: &[(Rect, bool)], point: Option<(i32, i32)>) -> Option<Rect> {
        let contains = |r: &Rect, (x, y): (i32, i32)| {
            x >= i32::from(r.x)
                && y >= i32::from(r.y)
                && x < i32::from(r.x) + i32::from(r.width)
                && y < i32::from(r.y) + i32::from(r.height)
        };
        point
            .and_then(|p| monitors.iter().find(|(r, _)| contains(r, p)))
            .or_else(|| monitors.iter().find(|(_, primary)| *primary))
            .or_else(|| monitors.first())
            .map(|(r, _)| *r)
    }

    fn clip(r: Rect, whole: Rect) -> Rect {
        let x0 = i32::from(r.x).clamp(0, i32::from(whole.width));
        let y0 = i32::from(r.y).clamp(0, i32::from(whole.height));
        let x1 = (i32::from(r.x) + i32::from(r.width)).clamp(x0, i32::from(whole.width));
        let y1 = (i32::from(r.y) + i32::from(r.height)).clamp(y0, i32::from(whole.height));
        if x1 - x0 == 0 || y1 - y0 == 0 {
            return whole;
        }
        Rect {
            x: x0 as i16,
            y: y0 as i16,
            width: (x1 - x0) as u16,
            height: (y1 - y0) as u16,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_monitor_under_the_window_wins_then_the_primary() {
            let left = Rect {
                x: 0,
                y: 0,
                width: 1920,
                height: 1080,
            };
            let right = Rect {
                x: 1920,
                y: 0,
                width: 1280,
                height: 1024,
            };
            let monitors = [(left, false), (right, true)];
            assert_eq!(pick_monitor(&monitors, Some((2000, 500))), Some(right));
            assert_eq!(pick_monitor(&monitors, Some((100, 100))), Some(left));
            assert_eq!(pick_monitor(&monitors, None), Some(right));
            assert_eq!(pick_monitor(&[], Some((1, 1))), None);
            let whole = Rect {
                x: 0,
                y: 0,
                width: 3200,
                height: 1080,
            };
            assert_eq!(clip(right, whole).height, 1024);
            assert_eq!(
                clip(
                    Rect {
                        x: 3000,
                        y: 0,
                        width: 500,
                        height: 100
                    },
                    whole
                )
                .width,
                200
            );
        }
    }
}

#[cfg(any(windows, target_os = "macos"))]
mod platform {
    use image::RgbImage;

    use super::{CaptureError, CaptureOptions};

    pub(super) fn grab(
        _options: &CaptureOptions,
        window_id: Option<u64>,
    ) -> Result<RgbImage, CaptureError> {
        let err = |e: xcap::XCapError| CaptureError::Screen(e.to_string());
        let from_window = window_id.and_then(|id| {
            let windows = xcap::Window::all().ok()?;
            let window = windows
                .into_iter()
                .find(|w| w.id().ok().map(u64::from) == Some(id))?;
            window.current_monitor().ok()
        });
        let monitor = match from_window {
            Some(monitor) => monitor,
            None => {
                let monitors = xcap::Monitor::all().map_err(err)?;
                let primary = monitors
                    .iter()
                    .position(|m| m.is_primary().unwrap_or(false))
                    .unwrap_or(0);
                monitors
                    .into_iter()
                    .nth(primary)
                    .ok_or_else(|| CaptureError::Screen("no monitor found".into()))?
            }
        };
        let rgba = monitor.capture_image().map_err(err)?;
        Ok(image::DynamicImage::ImageRgba8(rgba).into_rgb8())
    }
}

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
mod platform {
    use image::RgbImage;

    use super::{CaptureError, CaptureOptions};

    pub(super) fn grab(
        _options: &CaptureOptions,
        _window_id: Option<u64>,
    ) -> Result<RgbImage, CaptureError> {
        Err(CaptureError::Unsupported(std::env::consts::OS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_images_are_scaled_to_max_width_keeping_aspect() {
        let img = RgbImage::from_fn(1920, 1080, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 0])
        });
        let c = encode(&img, &CaptureOptions::default()).unwrap();
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(&c.jpeg[..2], &[0xFF, 0xD8], "JPEG magic");
        let small = RgbImage::new(640, 480);
        let c = encode(&small, &CaptureOptions::default()).unwrap();
        assert_eq!((c.width, c.height), (640, 480));
    }
}
