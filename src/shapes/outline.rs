//! Shape geometry: each shape's outline under each renderer, and an outline placed in pixels with its signed distance.

use std::f32::consts::{PI, TAU};

use super::{Renderer, between, lerp, uniform};
use crate::rng::SeededRng;

// ---------------------------------------------------------------------------------------------------------------
// Geometry, in a unit frame (y up, centred on the bounding box, farthest point at radius 1)

pub(super) type Point = [f32; 2];

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
pub(super) const NARROWEST: [f32; 6] = [1.0, 0.7, 0.4, 0.18, 0.35, 0.17];
/// The same for the Standard geometry alone (equilateral triangle, fatter stars and crosses).
pub(super) const NARROWEST_STANDARD: [f32; 6] = [1.0, 0.7, 0.44, 0.23, 0.4, 0.27];

/// The outline of `shape` in the unit frame, or `None` for the Standard circle (drawn exactly).
pub(super) fn outline(shape: usize, renderer: Renderer, rng: &mut SeededRng) -> Option<Vec<Point>> {
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
pub(super) enum Outline {
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
    },
    /// Edges as (start, edge vector, 1/|edge|^2, y of the edge's other end), precomputed for the distance loop.
    Polygon(Vec<([f32; 2], [f32; 2], f32, f32)>),
}

impl Outline {
    pub(super) fn polygon(points: &[Point]) -> Self {
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
    pub(super) fn distance(&self, x: f32, y: f32) -> f32 {
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
