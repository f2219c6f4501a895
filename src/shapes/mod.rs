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

mod background;
mod caption;
mod colour;
#[cfg(not(target_arch = "wasm32"))]
mod dataset;
mod outline;
mod raster;

use std::f32::consts::TAU;

use crate::rng::SeededRng;
use background::{Background, paint_background, plan_background};
use caption::{CAPTION_PATTERNS, Words, caption, placement_words};
use colour::{Rgb, hsv, mix, shade_range};
use outline::{NARROWEST, NARROWEST_STANDARD, Outline, Point, outline};
use raster::{coverage, gaussian_blur, jpeg_roundtrip};

#[cfg(not(target_arch = "wasm32"))]
pub use dataset::{MAX_SCENE_SIZE, write_dataset};

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

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared by the files of this folder

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// A curriculum setting between its easy value (difficulty 0) and its full-world value (difficulty 1, returned
/// exactly so the full world is bit-identical to `render_scene`).
fn ease(easy: f32, full: f32, difficulty: f32) -> f32 {
    if difficulty >= 1.0 { full } else { lerp(easy, full, difficulty) }
}

fn uniform(rng: &mut SeededRng) -> f32 {
    rng.uniform() as f32
}

fn between(rng: &mut SeededRng, lo: f32, hi: f32) -> f32 {
    lerp(lo, hi, uniform(rng))
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
    use super::colour::{distance, rgb_to_hsv};
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
    fn tiny_and_empty_sizes_do_not_panic() {
        for size in [0, 1, 2, 5, 9] {
            let scene = render_scene(size, 0, 1, Renderer::Alternate);
            assert_eq!(scene.image.dimensions(), (size, size));
        }
    }

    /// Writes 6x6 grids of scenes of each renderer, 3x upscaled, to the temp folder for a person to look at:
    /// `cargo test --release shapes::tests::sample_grids -- --ignored` (SYNTH_GRID_SIZE, SYNTH_GRID_SEED to vary).
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

    /// Time per scene: `cargo test --release shapes::tests::timing -- --ignored --nocapture`.
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
