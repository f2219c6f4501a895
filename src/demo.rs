//! The main job: unseen shape scenes classified by the bundled mini CLIP, then again wearing the bundled patch.

use burn::tensor::Device;
use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::Clip;
use crate::shapes::{Renderer, class_names, render_scene};
use crate::tokenizer::Tokenizer;
use crate::zeroshot::{DEFAULT_TEMPLATE, ZeroShotClassifier, predictions};

/// Seeds at and above this are never used for training, so demo scenes are unseen.
pub const UNSEEN_SEED: u64 = 1_000_000;

/// One scene's before/after.
#[derive(Clone, Debug, Serialize)]
pub struct DemoRow {
    pub truth: String,
    pub clean_top: String,
    pub clean_prob: f32,
    pub patched_top: String,
    pub patched_prob: f32,
}

pub struct DemoResult {
    pub rows: Vec<DemoRow>,
    pub clean: Vec<RgbImage>,
    pub patched: Vec<RgbImage>,
    pub clean_accuracy: f64,
    pub patched_accuracy: f64,
    pub fooling_rate: f64,
}

/// Renders `count` unseen scenes, pastes `patch` (CHW in [0, 1]) at `placement`, classifies both versions over the
/// 36 shape classes.
pub fn run_demo(
    model: &Clip,
    patch: &[f32],
    placement: &crate::attack::PatchPlacement,
    count: usize,
    seed: u64,
    device: &Device,
) -> Result<DemoResult> {
    let size = model.config().vision.image_size as u32;
    if count == 0 {
        return Err(Error::invalid("the demo needs at least one scene"));
    }
    let labels = class_names();
    let head = ZeroShotClassifier::new(model, &Tokenizer::new(), &labels, &[DEFAULT_TEMPLATE.to_string()])?;
    let scenes: Vec<_> =
        (0..count as u64).map(|i| render_scene(size, UNSEEN_SEED + seed, i, Renderer::Standard)).collect();
    let clean: Vec<RgbImage> = scenes.iter().map(|s| s.image.clone()).collect();
    let patched: Vec<RgbImage> =
        clean.iter().map(|img| crate::attack::placement::paste_on_image(img, patch, placement)).collect();
    let classify = |images: &[RgbImage]| -> Result<Vec<crate::zeroshot::Prediction>> {
        let probs = head.probabilities(crate::embed::embed_images(model, images, 32, device, |_| {})?);
        let probs = crate::host::read_f32(probs)?;
        Ok(predictions(&labels, &probs))
    };
    let before = classify(&clean)?;
    let after = classify(&patched)?;
    let rows: Vec<DemoRow> = scenes
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(s, (b, a))| DemoRow {
            truth: s.label.clone(),
            clean_top: b.top.clone(),
            clean_prob: b.probs[b.top_index].1,
            patched_top: a.top.clone(),
            patched_prob: a.probs[a.top_index].1,
        })
        .collect();
    let share = |f: &dyn Fn(&DemoRow) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / rows.len() as f64;
    Ok(DemoResult {
        clean_accuracy: share(&|r| r.clean_top == r.truth),
        patched_accuracy: share(&|r| r.patched_top == r.truth),
        fooling_rate: share(&|r| r.patched_top != r.clean_top),
        rows,
        clean,
        patched,
    })
}

/// The result as one picture for a projector: a grid of scenes, each the clean image beside the patched one, scaled
/// up to `image_px`, captioned with the truth, the clean top label with its probability and the patched top label
/// with its own (red when the patch changed it). `columns` scenes a row.
pub fn captioned_grid(result: &DemoResult, columns: usize, image_px: u32) -> RgbImage {
    const TEXT_SCALE: u32 = 3; // 8 px glyphs drawn 24 px tall
    const LINE: u32 = 8 * TEXT_SCALE + 8;
    let gap = 16;
    let longest =
        result.rows.iter().map(|r| 8 + r.truth.len().max(r.clean_top.len()).max(r.patched_top.len()) + 5).max();
    let text_w = longest.unwrap_or(0) as u32 * 8 * TEXT_SCALE;
    let cell_w = (2 * image_px + gap).max(text_w);
    let cell_h = image_px + 3 * LINE + gap;
    let columns = columns.clamp(1, result.rows.len().max(1)) as u32;
    let rows = (result.rows.len() as u32).div_ceil(columns).max(1);
    let white = image::Rgb([255, 255, 255]);
    let mut canvas = RgbImage::from_pixel(columns * (cell_w + 2 * gap) + gap, rows * (cell_h + gap) + gap, white);
    for (i, row) in result.rows.iter().enumerate() {
        let (x, y) = (gap + (i as u32 % columns) * (cell_w + 2 * gap), gap + (i as u32 / columns) * (cell_h + gap));
        for (k, img) in [&result.clean[i], &result.patched[i]].into_iter().enumerate() {
            let big = image::imageops::resize(img, image_px, image_px, image::imageops::FilterType::Nearest);
            image::imageops::replace(&mut canvas, &big, (x + k as u32 * (image_px + gap)) as i64, y as i64);
        }
        let black = image::Rgb([20, 20, 20]);
        let flipped = if row.patched_top != row.clean_top { image::Rgb([200, 0, 0]) } else { black };
        let lines = [
            (format!("truth   {}", row.truth), black),
            (format!("clean   {} {:.2}", row.clean_top, row.clean_prob), black),
            (format!("patched {} {:.2}", row.patched_top, row.patched_prob), flipped),
        ];
        for (n, (text, colour)) in lines.iter().enumerate() {
            draw_text(&mut canvas, text, x, y + image_px + 6 + n as u32 * LINE, TEXT_SCALE, *colour);
        }
    }
    canvas
}

/// Draws `text` with the 8x8 bitmap font at `scale`, clipped to the canvas; characters the font lacks become '?'.
fn draw_text(canvas: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, colour: image::Rgb<u8>) {
    use font8x8::UnicodeFonts;
    for (i, c) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(c).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
        let left = x + i as u32 * 8 * scale;
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (left + gx * scale + dx, y + gy as u32 * scale + dy);
                        if px < canvas.width() && py < canvas.height() {
                            canvas.put_pixel(px, py, colour);
                        }
                    }
                }
            }
        }
    }
}
