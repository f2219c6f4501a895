//! Backgrounds: a colour that stands apart from the shape, a pattern with the caption phrase naming it, and painting.

use std::f32::consts::TAU;

use super::colour::{Rgb, distance, hsv, mix, rgb_to_hsv};
use super::{between, lerp, uniform};
use crate::rng::SeededRng;

/// A background colour that can never be mistaken for the shape's colour: a near-grey (white, black and greys
/// included) or a muted colour at least 110 deg of hue away from the shape, and far enough in RGB to stand apart.
/// Returns the colour and, for greys, the word a caption may use for it.
/// `fills` holds the shape's shade under both renderers: checking against both makes the draws, and so the
/// background, identical for the two renderers.
fn background_colour(rng: &mut SeededRng, fills: [Rgb; 2]) -> (Rgb, Option<&'static str>) {
    let (fill_hue, _, fill_val) = rgb_to_hsv(fills[0]);
    for _ in 0..16 {
        let grey = uniform(rng) < 0.5;
        let (colour, word) = if grey {
            let v = uniform(rng);
            let tint = hsv(between(rng, 0.0, 360.0), between(rng, 0.0, 0.06), v);
            (
                tint,
                Some(if v < 0.2 {
                    "black"
                } else if v > 0.85 {
                    "white"
                } else {
                    "grey"
                }),
            )
        } else {
            // 122-238 deg from the Standard hue: the Alternate shade drawn from the same uniforms is within 11 deg
            // of it, so the background is at least 110 deg from the shape under either renderer.
            let hue = fill_hue + between(rng, 122.0, 238.0);
            (hsv(hue, between(rng, 0.12, 0.5), between(rng, 0.25, 0.95)), None)
        };
        if fills.iter().all(|&fill| distance(colour, fill) >= 0.4) {
            return (colour, word);
        }
    }
    // Every try was too close (rare, e.g. a pale shade against light greys): a grey of opposite lightness.
    if fill_val > 0.6 { ([0.12; 3], Some("black")) } else { ([0.92; 3], Some("white")) }
}

#[derive(Clone, Debug)]
pub(super) enum Background {
    Solid(Rgb),
    /// Linear ramp from `from` to `to` along `angle`.
    Gradient {
        from: Rgb,
        to: Rgb,
        angle: f32,
    },
    /// Smooth value noise on a `cells` x `cells` grid between two colours, plus fine per-pixel grain.
    Noise {
        low: Rgb,
        high: Rgb,
        cells: usize,
        grid: Vec<f32>,
    },
    /// Stripes of period `period` (fraction of the side) at `angle`, offset by `phase` periods.
    Stripes {
        a: Rgb,
        b: Rgb,
        period: f32,
        angle: f32,
        phase: f32,
    },
    Checks {
        a: Rgb,
        b: Rgb,
        period: f32,
        angle: f32,
        phase: f32,
    },
}

/// Draws the background and the caption phrase that names it (after "on").
/// `solid_share` is the probability of a solid background (0.4 in the full world); the other kinds keep their
/// relative shares.
pub(super) fn plan_background(rng: &mut SeededRng, fills: [Rgb; 2], solid_share: f32) -> (Background, String) {
    let draw = uniform(rng);
    let kind = if solid_share <= 0.4 {
        draw
    } else if draw < solid_share {
        0.0
    } else {
        0.4 + 0.6 * (draw - solid_share) / (1.0 - solid_share).max(1e-6)
    };
    let (a, a_word) = background_colour(rng, fills);
    if kind < 0.4 {
        let phrase = match a_word {
            Some(w) => format!("a {w} background"),
            None => "a plain background".to_string(),
        };
        return (Background::Solid(a), phrase);
    }
    let (b, _) = background_colour(rng, fills);
    let word = uniform(rng) < 0.5;
    let angle = between(rng, 0.0, TAU);
    let phase = uniform(rng);
    if kind < 0.55 {
        let phrase = if word { "a gradient" } else { "a gradient background" };
        (Background::Gradient { from: a, to: b, angle }, phrase.to_string())
    } else if kind < 0.7 {
        let cells = 2 + rng.below(7);
        let grid = (0..(cells + 1) * (cells + 1)).map(|_| uniform(rng)).collect();
        let phrase = if word { "noise" } else { "a noisy background" };
        (Background::Noise { low: a, high: b, cells, grid }, phrase.to_string())
    } else if kind < 0.85 {
        let period = between(rng, 0.08, 0.25);
        let phrase = if word { "stripes" } else { "a striped background" };
        (Background::Stripes { a, b, period, angle, phase }, phrase.to_string())
    } else {
        let period = between(rng, 0.12, 0.32);
        let phrase = if word { "checks" } else { "a checkered background" };
        (Background::Checks { a, b, period, angle, phase }, phrase.to_string())
    }
}

/// Anti-aliased square wave: 0 on one half-period, 1 on the other, with a one-pixel ramp at each edge.
fn square_wave(position_px: f32, period_px: f32) -> f32 {
    let u = position_px / period_px;
    let tri = 0.25 - ((u - u.floor()) - 0.5).abs(); // signed distance to the nearest edge, in periods
    (tri * period_px + 0.5).clamp(0.0, 1.0)
}

fn smoothstep(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

fn paint_with(pixels: &mut [Rgb], side: usize, mut colour_at: impl FnMut(f32, f32) -> Rgb) {
    for y in 0..side {
        for x in 0..side {
            pixels[y * side + x] = colour_at(x as f32 + 0.5, y as f32 + 0.5);
        }
    }
}

pub(super) fn paint_background(background: &Background, side: usize, pixels: &mut [Rgb], grain: &mut SeededRng) {
    let n = side as f32;
    let half = n / 2.0;
    match background {
        Background::Solid(c) => paint_with(pixels, side, |_, _| *c),
        Background::Gradient { from, to, angle } => {
            let (s, c) = angle.sin_cos();
            let reach = (s.abs() + c.abs()) * half;
            paint_with(pixels, side, move |px, py| {
                let t = ((px - half) * c + (py - half) * s) / (2.0 * reach) + 0.5;
                mix(*from, *to, t.clamp(0.0, 1.0))
            })
        }
        Background::Noise { low, high, cells, grid } => {
            let cells = *cells;
            paint_with(pixels, side, move |px, py| {
                let gx = px / n * cells as f32;
                let gy = py / n * cells as f32;
                let (ix, iy) = ((gx as usize).min(cells - 1), (gy as usize).min(cells - 1));
                let (fx, fy) = (smoothstep(gx - ix as f32), smoothstep(gy - iy as f32));
                let at = |i: usize, j: usize| grid[j * (cells + 1) + i];
                let top = lerp(at(ix, iy), at(ix + 1, iy), fx);
                let bottom = lerp(at(ix, iy + 1), at(ix + 1, iy + 1), fx);
                let c = mix(*low, *high, lerp(top, bottom, fy));
                // Fine grain: three 21-bit uniforms from one draw, +-0.05 per channel.
                let r = grain.next_u64();
                let g = |k: u32| ((r >> (21 * k)) & 0x1f_ffff) as f32 / 0x1f_ffff as f32 * 0.1 - 0.05;
                [c[0] + g(0), c[1] + g(1), c[2] + g(2)]
            })
        }
        Background::Stripes { a, b, period, angle, phase } => {
            let (s, c) = angle.sin_cos();
            let period_px = period * n;
            paint_with(pixels, side, move |px, py| {
                let along = (px - half) * c + (py - half) * s + phase * period_px;
                mix(*a, *b, square_wave(along, period_px))
            })
        }
        Background::Checks { a, b, period, angle, phase } => {
            let (s, c) = angle.sin_cos();
            let period_px = period * n;
            paint_with(pixels, side, move |px, py| {
                let u = (px - half) * c + (py - half) * s + phase * period_px;
                let v = -(px - half) * s + (py - half) * c + phase * period_px;
                let f = (2.0 * square_wave(u, period_px) - 1.0) * (2.0 * square_wave(v, period_px) - 1.0);
                mix(*a, *b, (f + 1.0) / 2.0)
            })
        }
    }
}
