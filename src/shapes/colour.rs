//! Colours: RGB and HSV, the shades each colour name covers under each renderer, mixing and distance.

use super::{Renderer, lerp};

pub(super) type Rgb = [f32; 3];

pub(super) fn hsv(hue_deg: f32, s: f32, v: f32) -> Rgb {
    let h = hue_deg.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// Hue in degrees, saturation and value of an RGB colour in [0, 1].
pub(super) fn rgb_to_hsv(c: Rgb) -> (f32, f32, f32) {
    let max = c[0].max(c[1]).max(c[2]);
    let min = c[0].min(c[1]).min(c[2]);
    let d = max - min;
    let hue = if d <= 0.0 {
        0.0
    } else if max == c[0] {
        60.0 * ((c[1] - c[2]) / d).rem_euclid(6.0)
    } else if max == c[1] {
        60.0 * ((c[2] - c[0]) / d + 2.0)
    } else {
        60.0 * ((c[0] - c[1]) / d + 4.0)
    };
    (hue, if max > 0.0 { d / max } else { 0.0 }, max)
}

/// Hue (degrees, may be negative for red), saturation and value ranges that a person names with one colour word.
/// Kept clear of the neighbouring names: red stops at 6 deg and orange starts at 22, orange stays bright because
/// dark orange reads as brown, yellow stays bright because dark yellow reads as olive, purple stays within
/// 270-292 deg because violet-blue reads as blue and bright hues past 295 read as magenta or pink. The Alternate ranges are other shades inside the same names.
pub(super) struct ShadeRange {
    pub(super) hue: (f32, f32),
    pub(super) sat: (f32, f32),
    pub(super) val: (f32, f32),
}

pub(super) fn shade_range(colour: usize, renderer: Renderer) -> ShadeRange {
    let r = |hue, sat, val| ShadeRange { hue, sat, val };
    match (renderer, colour) {
        (Renderer::Standard | Renderer::Augmented, 0) => r((-6.0, 6.0), (0.8, 1.0), (0.7, 1.0)),
        (Renderer::Standard | Renderer::Augmented, 1) => r((105.0, 135.0), (0.65, 1.0), (0.5, 0.9)),
        (Renderer::Standard | Renderer::Augmented, 2) => r((215.0, 238.0), (0.7, 1.0), (0.6, 1.0)),
        (Renderer::Standard | Renderer::Augmented, 3) => r((50.0, 60.0), (0.8, 1.0), (0.88, 1.0)),
        (Renderer::Standard | Renderer::Augmented, 4) => r((276.0, 290.0), (0.6, 0.9), (0.5, 0.8)),
        (Renderer::Standard | Renderer::Augmented, _) => r((25.0, 33.0), (0.85, 1.0), (0.9, 1.0)),
        (Renderer::Alternate, 0) => r((-10.0, 2.0), (0.75, 0.92), (0.6, 0.9)),
        (Renderer::Alternate, 1) => r((100.0, 146.0), (0.5, 0.85), (0.45, 0.8)),
        (Renderer::Alternate, 2) => r((205.0, 232.0), (0.55, 0.9), (0.55, 0.95)),
        (Renderer::Alternate, 3) => r((53.0, 61.0), (0.62, 0.85), (0.9, 1.0)),
        (Renderer::Alternate, 4) => r((270.0, 292.0), (0.5, 0.8), (0.45, 0.75)),
        (Renderer::Alternate, _) => r((22.0, 31.0), (0.8, 0.95), (0.88, 1.0)),
    }
}

pub(super) fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [lerp(a[0], b[0], t), lerp(a[1], b[1], t), lerp(a[2], b[2], t)]
}

pub(super) fn distance(a: Rgb, b: Rgb) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}
