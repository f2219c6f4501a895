//! The main job: unseen shape scenes classified by the bundled mini CLIP, then again wearing the bundled patch.

use burn::tensor::Device;
use image::RgbImage;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::Clip;
use crate::synth::{Renderer, class_names, render_scene};
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

/// A picture of the result: one row per scene, clean on the left and patched on the right, scaled up.
pub fn side_by_side(clean: &[RgbImage], patched: &[RgbImage], scale: u32) -> RgbImage {
    let (w, h) = clean.first().map_or((1, 1), |i| i.dimensions());
    let (cw, ch) = (w * scale, h * scale);
    let gap = 4;
    let mut canvas =
        RgbImage::from_pixel(2 * cw + 3 * gap, clean.len() as u32 * (ch + gap) + gap, image::Rgb([255, 255, 255]));
    for (row, (c, p)) in clean.iter().zip(patched).enumerate() {
        let y = gap + row as u32 * (ch + gap);
        for (col, img) in [c, p].into_iter().enumerate() {
            let big = image::imageops::resize(img, cw, ch, image::imageops::FilterType::Nearest);
            image::imageops::replace(&mut canvas, &big, (gap + col as u32 * (cw + gap)) as i64, y as i64);
        }
    }
    canvas
}
