//! The summary's chart: alerts per day, stacked by category, as a PNG drawn
//! with plotters. Axis labels use a system font (DejaVu Sans, from Debian's
//! fonts-dejavu-core) loaded at run time; without one the chart is drawn
//! without text and the email's HTML carries the legend and the numbers.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Category colours, in the order categories are listed; the HTML legend uses the same.
pub const PALETTE: [(u8, u8, u8); 8] = [
    (0x1f, 0x77, 0xb4),
    (0xd6, 0x27, 0x28),
    (0x2c, 0xa0, 0x2c),
    (0xff, 0x7f, 0x0e),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
];

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 260;

/// Where a sans-serif font is looked for; `TUTELA_CHART_FONT` names another.
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a system font with plotters once; false when none was found.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let from_env = std::env::var("TUTELA_CHART_FONT").ok();
        for path in from_env.iter().map(String::as_str).chain(FONT_PATHS) {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!("no system font found for the summary chart (install fonts-dejavu-core); drawing it without labels");
        false
    })
}

pub fn colour(i: usize) -> (u8, u8, u8) {
    PALETTE[i % PALETTE.len()]
}

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the summary chart: {0}")]
pub struct ChartError(String);

/// Draws `days` (label, counts per category) as stacked bars; returns PNG bytes.
pub fn draw(days: &[(String, Vec<i64>)]) -> Result<Vec<u8>, ChartError> {
    let err = |e: &dyn std::fmt::Display| ChartError(e.to_string());
    let mut buf = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let text = font_ready();
        let (left, right, top, bottom) = (44i32, 12i32, 12i32, 34i32);
        let plot_w = WIDTH as i32 - left - right;
        let plot_h = HEIGHT as i32 - top - bottom;
        let max = days
            .iter()
            .map(|(_, c)| c.iter().sum::<i64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let step = nice_step(max);
        let top_value = (max + step - 1) / step * step;
        let y_of = |v: i64| top + plot_h - (v * i64::from(plot_h) / top_value) as i32;
        let grey = RGBColor(0xdd, 0xdd, 0xdd);
        let label_style = ("sans-serif", 12)
            .into_font()
            .color(&RGBColor(0x33, 0x33, 0x33));
        let mut v = 0;
        while v <= top_value {
            let y = y_of(v);
            root.draw(&PathElement::new(
                vec![(left, y), (left + plot_w, y)],
                grey.stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
            if text {
                root.draw(&Text::new(
                    v.to_string(),
                    (left - 6, y),
                    label_style.pos(Pos::new(HPos::Right, VPos::Center)),
                ))
                .map_err(|e| err(&e))?;
            }
            v += step;
        }
        let n = days.len().max(1) as i32;
        let slot = plot_w / n;
        let bar = (slot * 3 / 5).max(2);
        for (i, (label, counts)) in days.iter().enumerate() {
            let x0 = left + i as i32 * slot + (slot - bar) / 2;
            let mut base = 0;
            for (c, &count) in counts.iter().enumerate() {
                if count <= 0 {
                    continue;
                }
                let (r, g, b) = colour(c);
                root.draw(&Rectangle::new(
                    [(x0, y_of(base + count)), (x0 + bar, y_of(base))],
                    RGBColor(r, g, b).filled(),
                ))
                .map_err(|e| err(&e))?;
                base += count;
            }
            if text {
                root.draw(&Text::new(
                    label.clone(),
                    (left + i as i32 * slot + slot / 2, top + plot_h + 8),
                    label_style.pos(Pos::new(HPos::Center, VPos::Top)),
                ))
                .map_err(|e| err(&e))?;
            }
        }
        root.draw(&PathElement::new(
            vec![(left, top + plot_h), (left + plot_w, top + plot_h)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &buf,
        WIDTH,
        HEIGHT,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| err(&e))?;
    Ok(png)
}

/// A tick step giving about four gridlines: 1, 2 or 5 times a power of ten.
fn nice_step(max: i64) -> i64 {
    let rough = (max as f64 / 4.0).max(1.0);
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    (step as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_of_the_right_size() {
        let days: Vec<(String, Vec<i64>)> = (0..7)
            .map(|d| (format!("Mon {d}"), vec![d, 2, 0]))
            .collect();
        let png = draw(&days).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        assert_eq!(nice_step(7), 2);
        assert_eq!(nice_step(1), 1);
        assert_eq!(nice_step(230), 100);
    }
}
