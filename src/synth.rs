//! A procedural world of coloured shapes (36 "<colour> <shape>" classes) and captions to pretrain and test a CLIP.
//!
//! Every scene is one shape on a background, drawn from a keyed random stream so that it depends only on
//! `(size, seed, index, renderer)`. Geometry is kept in units of the image side, so the same scene at 64 px and
//! at 224 px shows the same layout. Edges are anti-aliased by analytic coverage from an exact signed distance
//! (one evaluation per pixel instead of 16 supersamples), which keeps a 64 px scene well under a millisecond.
//!
//! `Renderer::Alternate` is a held-out drawing style for robustness tests: other polygon code (pointier stars,
//! hearts from circular arcs, rounded squares, taller triangles, thinner crosses), thinner outlines, other shades
//! within each colour name and a hand-drawn wobble. For a given `(seed, index)` both renderers draw the same class,
//! size, position, rotation, background and caption, so the two test sets are paired scene by scene.
//! `Renderer::Augmented` is for pretraining only: the Standard shapes under random generic distortions
//! (`distort`), drawn from the same layout too.

use std::f32::consts::{PI, TAU};
use std::path::{Path, PathBuf};

use crate::attack::rng::SeededRng;
use crate::error::{Error, Result};

pub const SHAPES: [&str; 6] = ["circle", "square", "triangle", "star", "heart", "cross"];
pub const COLOURS: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "orange"];

/// The 36 zero-shot labels, colour-major: class `c * 6 + s` is `"{COLOURS[c]} {SHAPES[s]}"`.
pub fn class_names() -> Vec<String> {
    COLOURS.iter().flat_map(|c| SHAPES.iter().map(move |s| format!("{c} {s}"))).collect()
}

/// Which drawing code renders a scene: `Standard` for training and tests, `Augmented` for training only (the
/// Standard shapes under random generic distortions), `Alternate` for a style no training ever draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renderer {
    Standard,
    Alternate,
    Augmented,
}

/// One rendered image with its class index (into `class_names()`), its label and a varied caption.
#[derive(Clone, Debug)]
pub struct Scene {
    pub class: usize,
    pub label: String,
    pub caption: String,
    pub image: image::RgbImage,
}

/// Renders scene `index` of the world `seed`, `size` x `size` pixels. Deterministic in its arguments and
/// independent of every other index, so datasets of any length share their first scenes.
pub fn render_scene(size: u32, seed: u64, index: u64, renderer: Renderer) -> Scene {
    render_detailed(size, seed, index, renderer, 1.0).0
}

/// `render_scene` on an easier world for a pretraining curriculum. `difficulty` 1 is the full world (the same
/// image as `render_scene`); toward 0 shapes get larger (at least half the side at 0), are always filled, lie
/// on plain backgrounds more often, and are never blurred or JPEG-compressed. The random draws are the same at
/// every difficulty; only the ranges they are mapped into shrink.
pub fn render_scene_at(size: u32, seed: u64, index: u64, renderer: Renderer, difficulty: f32) -> Scene {
    render_detailed(size, seed, index, renderer, difficulty.clamp(0.0, 1.0)).0
}

/// Writes `count` scenes as an ImageFolder tree, `out/<label with '_'>/<index:06>.png`, and `out/captions.jsonl`
/// with one `{"path", "caption", "label"}` per image. All 36 class folders are created even when `count` is small,
/// because ImageFolder readers number classes by the sorted folder names and must see the same 36 every time.
/// `progress` is called with the number of images written so far.
pub fn write_dataset(
    out: &Path,
    count: usize,
    seed: u64,
    size: u32,
    renderer: Renderer,
    mut progress: impl FnMut(usize),
) -> Result<()> {
    if size == 0 {
        return Err(Error::invalid(format!("{}: cannot write a dataset of 0-pixel images", out.display())));
    }
    if out.is_file() {
        return Err(Error::io(
            out.display(),
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is a file, not a folder"),
        ));
    }
    let folders: Vec<String> = class_names().iter().map(|l| l.replace(' ', "_")).collect();
    for folder in &folders {
        let dir = out.join(folder);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    }
    let mut captions = String::new();
    for i in 0..count {
        let scene = render_scene(size, seed, i as u64, renderer);
        let relative = format!("{}/{i:06}.png", folders[scene.class]);
        let path = out.join(&relative);
        let mut png = Vec::new();
        scene
            .image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| Error::image(path.display(), e))?;
        write_atomically(&path, &png)?;
        let line = serde_json::json!({ "path": relative, "caption": scene.caption, "label": scene.label });
        captions.push_str(&line.to_string());
        captions.push('\n');
        progress(i + 1);
    }
    write_atomically(&out.join("captions.jsonl"), captions.as_bytes())
}

/// A temporary file beside `path`, then a rename, so an interrupted run never leaves a half-written image.
/// Not `crate::write_atomically`: that one fsyncs every file (slow for tens of thousands of small PNGs) and is
/// not compiled for wasm, while this module is.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path.display(), e)
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Colours

type Rgb = [f32; 3];

fn hsv(hue_deg: f32, s: f32, v: f32) -> Rgb {
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
fn rgb_to_hsv(c: Rgb) -> (f32, f32, f32) {
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
struct ShadeRange {
    hue: (f32, f32),
    sat: (f32, f32),
    val: (f32, f32),
}

fn shade_range(colour: usize, renderer: Renderer) -> ShadeRange {
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

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// A curriculum setting between its easy value (difficulty 0) and its full-world value (difficulty 1, returned
/// exactly so the full world is bit-identical to `render_scene`).
fn ease(easy: f32, full: f32, difficulty: f32) -> f32 {
    if difficulty >= 1.0 { full } else { lerp(easy, full, difficulty) }
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [lerp(a[0], b[0], t), lerp(a[1], b[1], t), lerp(a[2], b[2], t)]
}

fn distance(a: Rgb, b: Rgb) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn uniform(rng: &mut SeededRng) -> f32 {
    rng.uniform() as f32
}

fn between(rng: &mut SeededRng, lo: f32, hi: f32) -> f32 {
    lerp(lo, hi, uniform(rng))
}

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

// ---------------------------------------------------------------------------------------------------------------
// Backgrounds

#[derive(Clone, Debug)]
enum Background {
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
fn plan_background(rng: &mut SeededRng, fills: [Rgb; 2], solid_share: f32) -> (Background, String) {
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

fn paint_background(background: &Background, side: usize, pixels: &mut [Rgb], grain: &mut SeededRng) {
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

// ---------------------------------------------------------------------------------------------------------------
// Geometry, in a unit frame (y up, centred on the bounding box, farthest point at radius 1)

type Point = [f32; 2];

fn normalise(points: Vec<Point>) -> Vec<Point> {
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for p in &points {
        for k in 0..2 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let centre = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let moved: Vec<Point> = points.iter().map(|p| [p[0] - centre[0], p[1] - centre[1]]).collect();
    let radius = moved.iter().map(|p| p[0].hypot(p[1])).fold(0.0f32, f32::max).max(1e-6);
    moved.iter().map(|p| [p[0] / radius, p[1] / radius]).collect()
}

fn regular(corners: usize, start: f32) -> Vec<Point> {
    (0..corners)
        .map(|i| {
            let a = start + TAU * i as f32 / corners as f32;
            [a.cos(), a.sin()]
        })
        .collect()
}

/// A five-pointed star, one point up; `inner` is the radius of the notches relative to the points.
fn star(inner: f32) -> Vec<Point> {
    (0..10)
        .map(|i| {
            let a = PI / 2.0 + PI * i as f32 / 5.0;
            let r = if i % 2 == 0 { 1.0 } else { inner };
            [r * a.cos(), r * a.sin()]
        })
        .collect()
}

/// A plus sign with arms of length 1 from the centre and half-width `half_width`.
fn plus(half_width: f32) -> Vec<Point> {
    let (w, l) = (half_width, 1.0);
    vec![[w, w], [w, l], [-w, l], [-w, w], [-l, w], [-l, -w], [-w, -w], [-w, -l], [w, -l], [w, -w], [l, -w], [l, w]]
}

/// The classic parametric heart x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t.
fn parametric_heart(samples: usize) -> Vec<Point> {
    (0..samples)
        .map(|i| {
            let t = TAU * i as f32 / samples as f32;
            let x = 16.0 * t.sin().powi(3);
            let y = 13.0 * t.cos() - 5.0 * (2.0 * t).cos() - 2.0 * (3.0 * t).cos() - (4.0 * t).cos();
            [x, y]
        })
        .collect()
}

/// A geometric heart, the other construction: two overlapping circles for the lobes and the two lines tangent
/// to them from the bottom point (a sharper notch and straighter sides than the parametric one).
fn arc_heart(lobe_gap: f32, depth: f32) -> Vec<Point> {
    let (cx, cy, r) = (lobe_gap, 0.3, 0.5);
    let bottom = [0.0, -depth];
    let (dx, dy) = (bottom[0] - cx, bottom[1] - cy);
    let to_bottom = dy.atan2(dx);
    let tangent = to_bottom + (r / dx.hypot(dy)).clamp(-1.0, 1.0).acos();
    let notch = (((r * r - cx * cx).max(0.0)).sqrt()).atan2(-cx); // where the two circles cross, on x = 0
    let mut end = notch;
    while end < tangent {
        end += TAU;
    }
    let steps = 24;
    let right: Vec<Point> = (0..=steps)
        .map(|i| {
            let a = lerp(tangent, end, i as f32 / steps as f32);
            [cx + r * a.cos(), cy + r * a.sin()]
        })
        .collect();
    let mut points = vec![bottom];
    points.extend(&right);
    points.extend(right.iter().rev().skip(1).map(|p| [-p[0], p[1]]));
    points
}

fn rounded_square(corner: f32, per_corner: usize) -> Vec<Point> {
    let inset = 1.0 - corner;
    let mut points = Vec::with_capacity(4 * (per_corner + 1));
    for (k, (sx, sy)) in [(1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)].into_iter().enumerate() {
        let start = PI / 2.0 * k as f32;
        for i in 0..=per_corner {
            let a = start + PI / 2.0 * i as f32 / per_corner as f32;
            points.push([sx * inset + corner * a.cos(), sy * inset + corner * a.sin()]);
        }
    }
    points
}

/// The closed outline through `points` with a point at least every 0.07 (in units of its radius), keeping every
/// corner, so that a smooth distortion of the points bends the edges too.
fn resample(points: &[Point]) -> Vec<Point> {
    let spacing = 0.07;
    let mut dense = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let q = points[(i + 1) % points.len()];
        let steps = ((q[0] - p[0]).hypot(q[1] - p[1]) / spacing).ceil().max(1.0) as usize;
        for s in 0..steps {
            let t = s as f32 / steps as f32;
            dense.push([lerp(p[0], q[0], t), lerp(p[1], q[1], t)]);
        }
    }
    dense
}

/// Hand-drawn wobble: the outline is resampled densely (keeping every corner) and each point is moved radially by
/// a sum of a few low-frequency sines of its angle (amplitude about 2-5 % of the radius). A radial scaling by
/// 1 + (small periodic term) is one-to-one on the plane, so the outline never crosses itself.
fn wobble(points: &[Point], rng: &mut SeededRng) -> Vec<Point> {
    let harmonics: Vec<(f32, f32, f32)> = [(3.0, 0.022), (5.0, 0.014), (8.0, 0.009), (13.0, 0.005)]
        .iter()
        .map(|&(k, amplitude)| (k, amplitude * between(rng, 0.5, 1.0), between(rng, 0.0, TAU)))
        .collect();
    let moved = resample(points)
        .iter()
        .map(|p| {
            let a = p[1].atan2(p[0]);
            let scale = 1.0 + harmonics.iter().map(|&(k, amp, phase)| amp * (k * a + phase).sin()).sum::<f32>();
            [p[0] * scale, p[1] * scale]
        })
        .collect();
    normalise(moved)
}

/// Half-width of each shape's narrowest part in the unit frame (after `normalise`), for the thinner of the two
/// renderers: a circle's radius, a square's half side, a triangle's inradius, a star's arm at its base, a heart's
/// lobe, a cross's arm. Approximate; it only bounds outline widths.
const NARROWEST: [f32; 6] = [1.0, 0.7, 0.4, 0.18, 0.35, 0.17];
/// The same for the Standard geometry alone (equilateral triangle, fatter stars and crosses).
const NARROWEST_STANDARD: [f32; 6] = [1.0, 0.7, 0.44, 0.23, 0.4, 0.27];

/// The outline of `shape` in the unit frame, or `None` for the Standard circle (drawn exactly).
fn outline(shape: usize, renderer: Renderer, rng: &mut SeededRng) -> Option<Vec<Point>> {
    match renderer {
        Renderer::Standard => match shape {
            0 => None,
            1 => Some(normalise(regular(4, PI / 4.0))),
            2 => Some(normalise(regular(3, PI / 2.0))),
            3 => Some(normalise(star(between(rng, 0.42, 0.5)))),
            4 => Some(normalise(parametric_heart(64))),
            _ => Some(normalise(plus(between(rng, 0.28, 0.34)))),
        },
        Renderer::Alternate => {
            let base = match shape {
                0 => regular(48, 0.0),
                1 => rounded_square(between(rng, 0.18, 0.32), 6),
                2 => {
                    // Isosceles, taller than equilateral (height/base 1.05-1.35), apex slightly off-centre.
                    let height = between(rng, 1.05, 1.35);
                    vec![[-0.5, 0.0], [0.5, 0.0], [between(rng, -0.12, 0.12), height]]
                }
                3 => star(between(rng, 0.32, 0.38)),
                4 => arc_heart(between(rng, 0.38, 0.46), between(rng, 0.85, 1.0)),
                _ => plus(between(rng, 0.17, 0.23)),
            };
            Some(wobble(&normalise(base), rng))
        }
        Renderer::Augmented => {
            // Standard's constructions with wider proportions, then distortions any shape may suffer.
            let base = match shape {
                0 => regular(64, 0.0),
                1 => regular(4, PI / 4.0),
                2 => regular(3, PI / 2.0),
                3 => star(between(rng, 0.36, 0.55)),
                4 => parametric_heart(64),
                _ => plus(between(rng, 0.2, 0.36)),
            };
            Some(distort(normalise(base), rng))
        }
    }
}

/// Training-time shape augmentation (`Renderer::Augmented`): with even odds the corners are cut (one round of
/// Chaikin's scheme, 5-20 % of each edge from each end), then a random stretch of 0.8-1.25x along a random axis and
/// a shear of up to 0.15, then a smooth radial jitter (random offsets of up to 0-4 % at 5-11 angles,
/// cosine-interpolated). Each step maps a simple outline to a simple outline, so the signed distance stays valid.
fn distort(mut points: Vec<Point>, rng: &mut SeededRng) -> Vec<Point> {
    if uniform(rng) < 0.5 {
        let cut = between(rng, 0.05, 0.2);
        points = (0..points.len())
            .flat_map(|i| {
                let (p, q) = (points[i], points[(i + 1) % points.len()]);
                [
                    [lerp(p[0], q[0], cut), lerp(p[1], q[1], cut)],
                    [lerp(p[0], q[0], 1.0 - cut), lerp(p[1], q[1], 1.0 - cut)],
                ]
            })
            .collect();
    }
    let (axis, stretch, shear) = (between(rng, 0.0, PI), between(rng, 0.8, 1.25), between(rng, -0.15, 0.15));
    let (sin, cos) = axis.sin_cos();
    let affine = |p: Point| {
        // Into the axis frame, stretch and shear there, and back.
        let (u, v) = (p[0] * cos + p[1] * sin, -p[0] * sin + p[1] * cos);
        let (u, v) = (u * stretch + shear * v, v);
        [u * cos - v * sin, u * sin + v * cos]
    };
    let amplitude = between(rng, 0.0, 0.04);
    let anchors: Vec<f32> = (0..5 + rng.below(7)).map(|_| between(rng, -amplitude, amplitude)).collect();
    let phase = between(rng, 0.0, TAU);
    let jitter = |angle: f32| {
        let t = ((angle + phase).rem_euclid(TAU) / TAU) * anchors.len() as f32;
        let (i, f) = (t.floor() as usize % anchors.len(), t.fract());
        let w = (1.0 - (PI * f).cos()) / 2.0;
        lerp(anchors[i], anchors[(i + 1) % anchors.len()], w)
    };
    let moved = resample(&points)
        .iter()
        .map(|&p| {
            let point = affine(p);
            let scale = 1.0 + jitter(point[1].atan2(point[0]));
            [point[0] * scale, point[1] * scale]
        })
        .collect();
    normalise(moved)
}

/// A shape placed in pixel coordinates, with an exact signed distance (negative inside).
enum Outline {
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
    },
    /// Edges as (start, edge vector, 1/|edge|^2, y of the edge's other end), precomputed for the distance loop.
    Polygon(Vec<([f32; 2], [f32; 2], f32, f32)>),
}

impl Outline {
    fn polygon(points: &[Point]) -> Self {
        let n = points.len();
        let edges = (0..n)
            .map(|i| {
                let (a, b) = (points[i], points[(i + n - 1) % n]);
                let e = [b[0] - a[0], b[1] - a[1]];
                let len2 = e[0] * e[0] + e[1] * e[1];
                (a, e, if len2 > 0.0 { 1.0 / len2 } else { 0.0 }, b[1])
            })
            .collect();
        Outline::Polygon(edges)
    }

    /// Exact signed distance to a polygon (Inigo Quilez's formulation: nearest edge plus a crossing count).
    fn distance(&self, x: f32, y: f32) -> f32 {
        match self {
            Outline::Circle { cx, cy, r } => (x - cx).hypot(y - cy) - r,
            Outline::Polygon(edges) => {
                let mut nearest = f32::MAX;
                let mut inside = false;
                for &(a, e, inv, by) in edges {
                    let (wx, wy) = (x - a[0], y - a[1]);
                    let t = ((wx * e[0] + wy * e[1]) * inv).clamp(0.0, 1.0);
                    let (bx, bym) = (wx - e[0] * t, wy - e[1] * t);
                    nearest = nearest.min(bx * bx + bym * bym);
                    let (c1, c2, c3) = (y >= a[1], y < by, e[0] * wy > e[1] * wx);
                    if (c1 && c2 && c3) || (!c1 && !c2 && !c3) {
                        inside = !inside;
                    }
                }
                if inside { -nearest.sqrt() } else { nearest.sqrt() }
            }
        }
    }
}

/// Fraction of each pixel covered by the shape (filled, or an inner stroke `stroke` pixels wide), from the signed
/// distance at the pixel centre: a one-pixel box filter across the edge, analytic anti-aliasing.
fn coverage(outline: &Outline, stroke: Option<f32>, side: usize, bounds: [f32; 4], cover: &mut [f32]) {
    let clampi = |v: f32| (v.max(0.0) as usize).min(side);
    let (x_lo, x_hi) = (clampi(bounds[0] - 1.0), clampi(bounds[1] + 2.0));
    let (y_lo, y_hi) = (clampi(bounds[2] - 1.0), clampi(bounds[3] + 2.0));
    let mut filler = Filler { outline, stroke, side, cover };
    const TILE: usize = 16;
    for y in (y_lo..y_hi).step_by(TILE) {
        for x in (x_lo..x_hi).step_by(TILE) {
            filler.block(x, y, (x + TILE).min(x_hi), (y + TILE).min(y_hi));
        }
    }
}

struct Filler<'a> {
    outline: &'a Outline,
    stroke: Option<f32>,
    side: usize,
    cover: &'a mut [f32],
}

impl Filler<'_> {
    fn sdf(&self, x: f32, y: f32) -> f32 {
        let d = self.outline.distance(x, y);
        match self.stroke {
            Some(w) => d.max(-d - w),
            None => d,
        }
    }

    /// Quadtree over pixel blocks: the distance is 1-Lipschitz, so a block whose centre is farther from the edge
    /// than its half-diagonal (plus the half-pixel filter) is entirely in or out and needs no per-pixel work. Only
    /// the thin band along the edge is evaluated per pixel, which matters for the dense wobbly polygons.
    fn block(&mut self, x0: usize, y0: usize, x1: usize, y1: usize) {
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let (hw, hh) = ((x1 - x0) as f32 / 2.0, (y1 - y0) as f32 / 2.0);
        let centre = self.sdf(x0 as f32 + hw, y0 as f32 + hh);
        let reach = hw.hypot(hh) + 0.5;
        if centre > reach {
            return;
        }
        if centre < -reach {
            for y in y0..y1 {
                self.cover[y * self.side + x0..y * self.side + x1].fill(1.0);
            }
            return;
        }
        if (x1 - x0) * (y1 - y0) <= 4 {
            for y in y0..y1 {
                for x in x0..x1 {
                    self.cover[y * self.side + x] = (0.5 - self.sdf(x as f32 + 0.5, y as f32 + 0.5)).clamp(0.0, 1.0);
                }
            }
            return;
        }
        let (xm, ym) = ((x0 + x1).div_ceil(2), (y0 + y1).div_ceil(2));
        self.block(x0, y0, xm, ym);
        self.block(xm, y0, x1, ym);
        self.block(x0, ym, xm, y1);
        self.block(xm, ym, x1, y1);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Post-processing

fn gaussian_blur(pixels: &mut [Rgb], side: usize, sigma: f32) {
    if side == 0 || sigma <= 0.0 {
        return;
    }
    let radius = (2.5 * sigma).ceil() as usize;
    let kernel: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let o = i as f32 - radius as f32;
            (-o * o / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    // Separable, edges clamped, written as whole-row multiply-adds over flat channels so the compiler vectorises.
    let width = side * 3;
    let mut padded = vec![0.0f32; width + 6 * radius];
    let mut rows = vec![0.0f32; side * width];
    for y in 0..side {
        let row = &pixels[y * side..(y + 1) * side];
        for (x, slot) in padded.chunks_exact_mut(3).enumerate() {
            slot.copy_from_slice(&row[x.saturating_sub(radius).min(side - 1)]);
        }
        let out = &mut rows[y * width..(y + 1) * width];
        for (k, &w) in kernel.iter().enumerate() {
            for (o, p) in out.iter_mut().zip(&padded[3 * k..3 * k + width]) {
                *o += w * p;
            }
        }
    }
    let mut out = vec![0.0f32; width];
    for y in 0..side {
        out.fill(0.0);
        for (k, &w) in kernel.iter().enumerate() {
            let sy = (y + k).saturating_sub(radius).min(side - 1);
            for (o, p) in out.iter_mut().zip(&rows[sy * width..(sy + 1) * width]) {
                *o += w * p;
            }
        }
        for (x, px) in pixels[y * side..(y + 1) * side].iter_mut().enumerate() {
            *px = [out[3 * x], out[3 * x + 1], out[3 * x + 2]];
        }
    }
}

/// JPEG at `quality` and back, for realistic block and ringing artefacts; leaves the image as it was on failure.
fn jpeg_roundtrip(image: &image::RgbImage, quality: u8) -> Option<image::RgbImage> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(image).ok()?;
    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).ok()?.to_rgb8();
    (decoded.dimensions() == image::GenericImageView::dimensions(image)).then_some(decoded)
}

// ---------------------------------------------------------------------------------------------------------------
// Captions

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

struct Words<'a> {
    colour: &'a str,
    shape: &'a str,
    size: &'a str,
    style: &'a str,
    place: &'a str,
    place_phrase: &'a str,
    background: &'a str,
}

const CAPTION_PATTERNS: usize = 16;

/// Caption pattern `pattern`: every one names the colour and the shape (nearly always adjacent, as in the label,
/// which is what zero-shot prompts look like), and some add
/// size, position, background or style, so the text tower learns the label words amid varied wording.
fn caption(pattern: usize, w: &Words) -> String {
    let Words { colour: c, shape: s, size, style, place, place_phrase, background: bg } = *w;
    let (ac, asz, ast) = (article(c), article(size), article(style));
    match pattern {
        0 => format!("{ac} {c} {s}"),
        1 => format!("a photo of {asz} {size} {c} {s} on {bg}"),
        2 => format!("{c} {s}, {place}"),
        3 => format!("{ast} {style} {c} {s} on {bg}"),
        4 => format!("a photo of {ac} {c} {s}"),
        5 => format!("{asz} {size} {c} {s}"),
        6 => format!("{ac} {c} {s} {place_phrase}"),
        7 => format!("a drawing of {ast} {style} {c} {s}"),
        8 => format!("{c} {s}"),
        9 => format!("a picture of {ac} {c} {s} on {bg}"),
        10 => format!("{asz} {size} {style} {c} {s} {place_phrase}"),
        11 => format!("there is {ac} {c} {s} in the image"),
        12 => format!("{ac} {c} {s} on {bg}"),
        13 => format!("an image of {asz} {size} {c} {s}"),
        14 => format!("a {s} that is {c}"),
        _ => format!("{c} {s}, {size}, {style}, on {bg}"),
    }
}

/// Short and phrased names of where the shape's centre is, in a 3x3 grid with a wide middle band.
fn placement_words(fx: f32, fy: f32) -> (&'static str, &'static str) {
    let column = if fx < 0.38 {
        0
    } else if fx > 0.62 {
        2
    } else {
        1
    };
    let row = if fy < 0.38 {
        0
    } else if fy > 0.62 {
        2
    } else {
        1
    };
    match (row, column) {
        (0, 0) => ("top left", "in the top left corner"),
        (0, 1) => ("top", "at the top"),
        (0, _) => ("top right", "in the top right corner"),
        (1, 0) => ("left", "on the left"),
        (1, 1) => ("center", "in the center"),
        (1, _) => ("right", "on the right"),
        (_, 0) => ("bottom left", "in the bottom left corner"),
        (_, 1) => ("bottom", "at the bottom"),
        _ => ("bottom right", "in the bottom right corner"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The scene

/// What the tests need to know beyond the image: the background, the shape's colour and coverage, and whether the
/// image was blurred or JPEG-compressed.
#[cfg_attr(not(test), allow(dead_code))]
struct Details {
    background: Background,
    fill: Rgb,
    filled: bool,
    cover: Vec<f32>,
    blurred: bool,
    jpeg: bool,
    pattern: usize,
}

fn render_detailed(size: u32, seed: u64, index: u64, renderer: Renderer, difficulty: f32) -> (Scene, Details) {
    // All layout draws come from one stream in a fixed order whatever the renderer, so both renderers show the
    // same scene; the renderer-specific geometry and the per-pixel grain use their own streams.
    let mut rng = SeededRng::new(seed, &format!("scene {index}"));
    let mut geometry_rng = SeededRng::new(seed, &format!("scene {index} geometry"));
    let mut grain = SeededRng::new(seed, &format!("scene {index} grain"));

    let class = rng.below(COLOURS.len() * SHAPES.len());
    let (colour, shape) = (class / SHAPES.len(), class % SHAPES.len());
    let (hue_t, sat_t, val_t) = (uniform(&mut rng), uniform(&mut rng), uniform(&mut rng));
    let shade = |renderer| {
        let range = shade_range(colour, renderer);
        hsv(
            lerp(range.hue.0, range.hue.1, hue_t),
            lerp(range.sat.0, range.sat.1, sat_t),
            lerp(range.val.0, range.val.1, val_t),
        )
    };
    let fill = shade(renderer);
    let fills = [shade(Renderer::Standard), shade(Renderer::Alternate)];
    let d = difficulty;
    let size_frac = between(&mut rng, ease(0.5, 0.2, d), 0.7); // diameter of the circumscribed circle, over the side
    let rotation = between(&mut rng, 0.0, TAU);
    let (place_x, place_y) = (uniform(&mut rng), uniform(&mut rng));
    // Outlines only where the shape's narrowest part is wide enough (at 64 px) to show a hollow inside a stroke;
    // thinner shapes are filled and captioned as filled, so captions never claim an outline one cannot see.
    let filled = uniform(&mut rng) < ease(1.0, 0.6, d) || NARROWEST[shape] * size_frac < 0.075;
    let stroke_t = uniform(&mut rng);
    let (background, background_phrase) = plan_background(&mut rng, fills, ease(1.0, 0.4, d));
    let blur = (uniform(&mut rng) < ease(0.0, 0.2, d)).then(|| between(&mut rng, 0.4, 0.9));
    let jpeg = (uniform(&mut rng) < ease(0.0, 0.25, d)).then(|| 60 + rng.below(31) as u8);
    let pattern = rng.below(CAPTION_PATTERNS);
    let synonym = uniform(&mut rng) < 0.5;

    let side = size as usize;
    let n = side as f32;
    let radius_px = size_frac * n / 2.0;
    let (sin, cos) = rotation.sin_cos();
    let points = outline(shape, renderer, &mut geometry_rng);
    // Rotated, scaled offsets from the centre in pixels (image y points down).
    let offsets: Vec<Point> = points
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|p| [radius_px * (p[0] * cos - p[1] * sin), -radius_px * (p[0] * sin + p[1] * cos)])
        .collect();
    let extent = if offsets.is_empty() {
        [-radius_px, radius_px, -radius_px, radius_px]
    } else {
        offsets.iter().fold([f32::MAX, f32::MIN, f32::MAX, f32::MIN], |b, p| {
            [b[0].min(p[0]), b[1].max(p[0]), b[2].min(p[1]), b[3].max(p[1])]
        })
    };
    // Anywhere the whole shape fits, one pixel clear of the border so anti-aliasing never touches the edge.
    let place = |t: f32, lo: f32, hi: f32| {
        let (min, max) = (1.0 - lo, n - 1.0 - hi);
        if max > min { lerp(min, max, t) } else { n / 2.0 }
    };
    let cx = place(place_x, extent[0], extent[1]);
    let cy = place(place_y, extent[2], extent[3]);
    let outline = if offsets.is_empty() {
        Outline::Circle { cx, cy, r: radius_px }
    } else {
        let placed: Vec<Point> = offsets.iter().map(|p| [cx + p[0], cy + p[1]]).collect();
        Outline::polygon(&placed)
    };
    let bounds = [cx + extent[0], cx + extent[1], cy + extent[2], cy + extent[3]];

    // Outline widths: Standard 4.5-7.5 % of the side, Alternate thinner, 2.5-4 %; never over 60 % of the
    // half-width of the shape's narrowest part (so the hollow stays visible) nor under 1.2 px (so thin strokes
    // survive at 64 px).
    let stroke = (!filled).then(|| {
        let (fraction, narrowest) = match renderer {
            Renderer::Standard => (lerp(0.045, 0.075, stroke_t), NARROWEST_STANDARD[shape]),
            Renderer::Alternate => (lerp(0.025, 0.04, stroke_t), NARROWEST[shape]),
            Renderer::Augmented => (lerp(0.025, 0.075, stroke_t), NARROWEST[shape]),
        };
        (fraction * n).min(0.6 * narrowest * radius_px).max(1.2)
    });

    let mut pixels = vec![[0.0f32; 3]; side * side];
    paint_background(&background, side, &mut pixels, &mut grain);
    let mut cover = vec![0.0f32; side * side];
    coverage(&outline, stroke, side, bounds, &mut cover);
    for (p, &c) in pixels.iter_mut().zip(&cover) {
        if c > 0.0 {
            *p = mix(*p, fill, c);
        }
    }
    if let Some(sigma) = blur {
        gaussian_blur(&mut pixels, side, sigma * n / 64.0);
    }
    let raw: Vec<u8> = pixels.iter().flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)).collect();
    let mut image = image::RgbImage::from_raw(size, size, raw).unwrap_or_else(|| image::RgbImage::new(size, size));
    let mut jpeg_applied = false;
    if let Some(decoded) = jpeg.and_then(|quality| jpeg_roundtrip(&image, quality)) {
        image = decoded;
        jpeg_applied = true;
    }

    let size_word = match (size_frac < 0.35, size_frac > 0.55, synonym) {
        (true, _, false) => "small",
        (true, _, true) => "little",
        (_, true, false) => "large",
        (_, true, true) => "big",
        _ => "medium-sized",
    };
    let style = match (filled, synonym) {
        (true, false) => "filled",
        (true, true) => "solid",
        (false, false) => "outlined",
        (false, true) => "hollow",
    };
    let (place_word, place_phrase) = placement_words(cx / n.max(1.0), cy / n.max(1.0));
    let words = Words {
        colour: COLOURS[colour],
        shape: SHAPES[shape],
        size: size_word,
        style,
        place: place_word,
        place_phrase,
        background: &background_phrase,
    };
    let scene = Scene {
        class,
        label: format!("{} {}", COLOURS[colour], SHAPES[shape]),
        caption: caption(pattern, &words),
        image,
    };
    let details = Details { background, fill, filled, cover, blurred: blur.is_some(), jpeg: jpeg_applied, pattern };
    (scene, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(details: &Details) -> Option<Rgb> {
        match details.background {
            Background::Solid(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn same_arguments_give_identical_scenes() {
        for renderer in [Renderer::Standard, Renderer::Alternate] {
            for index in 0..40 {
                let a = render_scene(64, 7, index, renderer);
                let b = render_scene(64, 7, index, renderer);
                assert_eq!(a.image.as_raw(), b.image.as_raw(), "scene {index} {renderer:?}");
                assert_eq!((a.class, &a.label, &a.caption), (b.class, &b.label, &b.caption));
            }
        }
        let a = render_scene(224, 1, 3, Renderer::Standard);
        assert_eq!(a.image.as_raw(), render_scene(224, 1, 3, Renderer::Standard).image.as_raw());
        assert_ne!(render_scene(64, 1, 0, Renderer::Standard).image, render_scene(64, 2, 0, Renderer::Standard).image);
    }

    #[test]
    fn renderers_and_sizes_share_the_scene_layout() {
        for index in 0..20 {
            let standard = render_scene(64, 3, index, Renderer::Standard);
            let alternate = render_scene(64, 3, index, Renderer::Alternate);
            let large = render_scene(224, 3, index, Renderer::Standard);
            let augmented = render_scene(64, 3, index, Renderer::Augmented);
            assert_eq!((standard.class, &standard.caption), (alternate.class, &alternate.caption));
            assert_eq!((standard.class, &standard.caption), (augmented.class, &augmented.caption));
            assert_ne!(standard.image, augmented.image, "scene {index}: the augmentation changed nothing");
            assert_eq!((standard.class, &standard.caption), (large.class, &large.caption));
            assert_eq!(large.image.dimensions(), (224, 224));
        }
    }

    #[test]
    fn class_names_are_the_36_labels_colour_major() {
        let names = class_names();
        assert_eq!(names.len(), 36);
        assert_eq!(names.iter().collect::<std::collections::HashSet<_>>().len(), 36);
        assert_eq!(names[0], "red circle");
        assert_eq!(names[1], "red square");
        assert_eq!(names[6], "green circle");
        assert_eq!(names[35], "orange cross");
        for (c, colour) in COLOURS.iter().enumerate() {
            for (s, shape) in SHAPES.iter().enumerate() {
                assert_eq!(names[c * 6 + s], format!("{colour} {shape}"));
            }
        }
    }

    #[test]
    fn every_class_appears_and_captions_name_the_label() {
        let names = class_names();
        for renderer in [Renderer::Standard, Renderer::Alternate, Renderer::Augmented] {
            let mut seen = [0usize; 36];
            let mut patterns = std::collections::HashSet::new();
            for index in 0..360 {
                let (scene, details) = render_detailed(32, 11, index, renderer, 1.0);
                seen[scene.class] += 1;
                patterns.insert(details.pattern);
                assert_eq!(scene.label, names[scene.class]);
                let (colour, shape) = scene.label.split_once(' ').unwrap();
                assert!(scene.caption.contains(colour) && scene.caption.contains(shape), "{}", scene.caption);
                let says = |words: [&str; 2]| scene.caption.split([' ', ',']).any(|w| words.contains(&w));
                assert!(!(says(["outlined", "hollow"]) && details.filled), "{}", scene.caption);
                assert!(!says(["filled", "solid"]) || details.filled, "{}", scene.caption);
                // No other colour or shape word may appear, or the caption would teach the wrong class.
                for other in COLOURS.iter().chain(&SHAPES).filter(|w| **w != colour && **w != shape) {
                    assert!(!scene.caption.split([' ', ',']).any(|w| w == *other), "{}", scene.caption);
                }
            }
            assert!(seen.iter().all(|&n| n > 0), "{renderer:?}: class counts {seen:?}");
            assert!(patterns.len() >= 10, "{renderer:?}: only {} caption patterns", patterns.len());
        }
    }

    #[test]
    fn the_shape_is_inside_and_covers_a_plausible_area() {
        let mut checked = 0;
        for renderer in [Renderer::Standard, Renderer::Alternate, Renderer::Augmented] {
            for index in 0..400 {
                let (scene, details) = render_detailed(64, 5, index, renderer, 1.0);
                let side = 64usize;
                // Coverage never reaches the border, whatever the background.
                for i in 0..side {
                    for (x, y) in [(i, 0), (i, side - 1), (0, i), (side - 1, i)] {
                        assert_eq!(details.cover[y * side + x], 0.0, "scene {index} {renderer:?} touches the border");
                    }
                }
                let Some(bg) = solid(&details) else { continue };
                if details.blurred || details.jpeg {
                    continue;
                }
                let bg = bg.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8);
                let differs = |p: &image::Rgb<u8>| p.0.iter().zip(bg).any(|(a, b)| a.abs_diff(b) > 20);
                let changed = scene.image.pixels().filter(|p| differs(p)).count();
                let fraction = changed as f32 / (side * side) as f32;
                // A small outlined star is the least (about 0.6 %), a large filled circle the most (38 %).
                assert!(fraction > 0.004 && fraction < 0.42, "scene {index} {renderer:?} {}: {fraction}", scene.label);
                // Exactly the pixels the shape covers differ: all fully covered ones, none uncovered.
                let full = details.cover.iter().filter(|&&c| c >= 0.99).count();
                let touched = details.cover.iter().filter(|&&c| c > 0.0).count();
                assert!(full <= changed && changed <= touched, "scene {index}: {full} <= {changed} <= {touched}");
                let border = (0..side).flat_map(|i| [(i, 0), (i, side - 1), (0, i), (side - 1, i)]);
                for (x, y) in border {
                    assert!(!differs(scene.image.get_pixel(x as u32, y as u32)), "scene {index}: border pixel changed");
                }
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} plain scenes checked");
    }

    /// The hue family a person would name, by hue band (red wraps around 0).
    fn hue_family(c: Rgb) -> Option<usize> {
        let (h, s, _) = rgb_to_hsv(c);
        if s < 0.3 {
            return None;
        }
        match h {
            h if !(15.0..345.0).contains(&h) => Some(0),
            h if (85.0..165.0).contains(&h) => Some(1),
            h if (195.0..250.0).contains(&h) => Some(2),
            h if (45.0..68.0).contains(&h) => Some(3),
            h if (262.0..312.0).contains(&h) => Some(4),
            h if (18.0..40.0).contains(&h) => Some(5),
            _ => None,
        }
    }

    #[test]
    fn shape_pixels_have_the_named_hue() {
        for renderer in [Renderer::Standard, Renderer::Alternate, Renderer::Augmented] {
            let mut checked = [0usize; 6];
            for index in 0..600 {
                let (scene, details) = render_detailed(64, 9, index, renderer, 1.0);
                if solid(&details).is_none() {
                    continue;
                }
                let colour = scene.class / 6;
                assert_eq!(hue_family(details.fill), Some(colour), "{renderer:?} shade {:?}", details.fill);
                let mut sum = [0.0f32; 3];
                let mut count = 0;
                for (i, p) in scene.image.pixels().enumerate() {
                    if details.cover[i] >= 0.999 {
                        for (s, v) in sum.iter_mut().zip(p.0) {
                            *s += v as f32 / 255.0;
                        }
                        count += 1;
                    }
                }
                if count < 8 {
                    continue;
                }
                let mean = sum.map(|v| v / count as f32);
                assert_eq!(hue_family(mean), Some(colour), "scene {index} {renderer:?} {}: mean {mean:?}", scene.label);
                checked[colour] += 1;
            }
            assert!(checked.iter().all(|&n| n >= 5), "{renderer:?}: {checked:?}");
        }
    }

    #[test]
    fn backgrounds_stay_clear_of_the_shape_colour() {
        for index in 0..500 {
            let (_, details) = render_detailed(32, 13, index, Renderer::Standard, 1.0);
            let colours: Vec<Rgb> = match &details.background {
                Background::Solid(c) => vec![*c],
                Background::Gradient { from, to, .. } => vec![*from, *to],
                Background::Noise { low, high, .. } => vec![*low, *high],
                Background::Stripes { a, b, .. } | Background::Checks { a, b, .. } => vec![*a, *b],
            };
            for c in colours {
                assert!(distance(c, details.fill) >= 0.35, "scene {index}");
                if let Some(family) = hue_family(c) {
                    let (bh, _, _) = rgb_to_hsv(c);
                    let (fh, _, _) = rgb_to_hsv(details.fill);
                    let gap = (bh - fh).rem_euclid(360.0).min((fh - bh).rem_euclid(360.0));
                    assert!(gap >= 100.0 || family != hue_family(details.fill).unwrap(), "scene {index}");
                }
            }
        }
    }

    #[test]
    fn write_dataset_writes_an_image_folder_and_captions() {
        let out = std::env::temp_dir().join(format!("advclip-synth-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut calls = Vec::new();
        write_dataset(&out, 12, 4, 32, Renderer::Standard, |n| calls.push(n)).unwrap();
        assert_eq!(calls, (1..=12).collect::<Vec<_>>());
        let folders = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
        assert_eq!(folders, 36);
        let text = std::fs::read_to_string(out.join("captions.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 12);
        for (i, line) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let scene = render_scene(32, 4, i as u64, Renderer::Standard);
            let path = format!("{}/{i:06}.png", scene.label.replace(' ', "_"));
            assert_eq!(v["path"], path.as_str());
            assert_eq!(v["caption"], scene.caption.as_str());
            assert_eq!(v["label"], scene.label.as_str());
            let decoded = image::open(out.join(&path)).unwrap().to_rgb8();
            assert_eq!(decoded, scene.image);
        }
        let stray = walk(&out).into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp")).count();
        assert_eq!(stray, 0);
        std::fs::remove_dir_all(&out).unwrap();

        // A file where the folder should be is a clear I/O error naming it.
        let blocker = std::env::temp_dir().join(format!("advclip-synth-blocker-{}", std::process::id()));
        std::fs::write(&blocker, b"x").unwrap();
        let err = write_dataset(&blocker, 2, 0, 32, Renderer::Standard, |_| {}).unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("advclip-synth-blocker"), "{err}");
        let err = write_dataset(&blocker.join("sub"), 2, 0, 32, Renderer::Standard, |_| {}).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        std::fs::remove_file(&blocker).unwrap();
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
        }
        files
    }

    #[test]
    fn blur_keeps_flat_images_flat_and_spreads_a_point() {
        let side = 9;
        let mut flat = vec![[0.25f32, 0.5, 0.75]; side * side];
        gaussian_blur(&mut flat, side, 1.5);
        assert!(flat.iter().all(|p| (p[0] - 0.25).abs() < 1e-5 && (p[2] - 0.75).abs() < 1e-5));
        let mut point = vec![[0.0f32; 3]; side * side];
        point[4 * side + 4] = [1.0; 3];
        gaussian_blur(&mut point, side, 0.8);
        let total: f32 = point.iter().map(|p| p[1]).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(point[4 * side + 4][1] < 0.5 && point[4 * side + 5][1] > 0.05 && point[5 * side + 4][1] > 0.05);
        assert_eq!(point[4 * side + 3], point[4 * side + 5]);
    }

    #[test]
    fn tiny_and_empty_sizes_do_not_panic() {
        for size in [0, 1, 2, 5, 9] {
            let scene = render_scene(size, 0, 1, Renderer::Alternate);
            assert_eq!(scene.image.dimensions(), (size, size));
        }
    }

    /// Writes 6x6 grids of scenes of each renderer, 3x upscaled, to the temp folder for a person to look at:
    /// `cargo test --release synth::tests::sample_grids -- --ignored` (SYNTH_GRID_SIZE, SYNTH_GRID_SEED to vary).
    #[test]
    #[ignore]
    fn sample_grids() {
        for (renderer, name) in
            [(Renderer::Standard, "standard"), (Renderer::Alternate, "alternate"), (Renderer::Augmented, "augmented")]
        {
            let tile: u32 = std::env::var("SYNTH_GRID_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
            let scale = (192 / tile).max(1);
            let mut grid =
                image::RgbImage::from_pixel(6 * (tile + 2) * scale, 6 * (tile + 2) * scale, image::Rgb([255; 3]));
            for i in 0..36u32 {
                let seed = std::env::var("SYNTH_GRID_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(2024);
                let scene = render_scene(tile, seed, i as u64, renderer);
                let (ox, oy) = ((i % 6) * (tile + 2) * scale, (i / 6) * (tile + 2) * scale);
                for (x, y, p) in scene.image.enumerate_pixels() {
                    for d in 0..scale * scale {
                        grid.put_pixel(ox + x * scale + d % scale, oy + y * scale + d / scale, *p);
                    }
                }
                println!("{name} {i:2}: {:14} | {}", scene.label, scene.caption);
            }
            let suffix = if tile == 64 { String::new() } else { format!("_{tile}") };
            grid.save(std::env::temp_dir().join(format!("synth_samples_{name}{suffix}.png"))).unwrap();
        }
    }

    /// Time per scene: `cargo test --release synth::tests::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        for size in [64, 224] {
            for renderer in [Renderer::Standard, Renderer::Alternate, Renderer::Augmented] {
                let count = if size == 64 { 4000 } else { 500 };
                let start = std::time::Instant::now();
                let mut checksum = 0u64;
                for i in 0..count {
                    checksum += render_scene(size, 1, i, renderer).image.as_raw()[0] as u64;
                }
                let per = start.elapsed().as_secs_f64() / count as f64;
                println!("{size} px {renderer:?}: {:.3} ms per scene ({checksum})", per * 1e3);
            }
        }
    }
}
