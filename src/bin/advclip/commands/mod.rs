//! One module per subcommand, and the few helpers they share (device, model loading, progress, image reading).

pub mod apply;
pub mod classify;
pub mod convert;
pub mod demo;
pub mod embed;
pub mod eval;
pub mod pretrain;
pub mod serve;
pub mod synth;
pub mod tokenize;
pub mod train;

use std::path::{Path, PathBuf};
use std::time::Duration;

use advclip::dataset::Dataset;
use advclip::model::{Clip, load_clip};
use advclip::{preprocess, zeroshot};
use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{DeviceFlag, ModelArgs};

pub fn device(flag: DeviceFlag) -> Result<Device> {
    match flag {
        #[cfg(feature = "flex")]
        DeviceFlag::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        DeviceFlag::Wgpu => Ok(Device::wgpu(Default::default())),
        #[cfg(feature = "cuda")]
        DeviceFlag::Cuda => Ok(Device::cuda(0)),
        #[allow(unreachable_patterns)]
        _ => bail!(
            "this advclip was built without that device; rebuild with `--features wgpu` or `--features cuda` (cpu needs `flex`)"
        ),
    }
}

pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {what} {{elapsed}} {{msg}}"))
            .expect("a valid template"),
    );
    bar
}

/// Loads the model on `device`, with a spinner while it loads.
pub fn load_model_on(weights: &Path, device: &Device) -> Result<Clip> {
    let bar = spinner(&format!("loading {}", weights.display()));
    let model = load_clip(weights, device);
    bar.finish_and_clear();
    Ok(model?)
}

pub fn load_model(args: &ModelArgs) -> Result<(Clip, Device)> {
    let device = device(args.device)?;
    Ok((load_model_on(&args.weights, &device)?, device))
}

/// Reads and decodes every image before any model work, so a bad file fails fast.
pub fn read_images(paths: &[PathBuf]) -> Result<Vec<image::RgbImage>> {
    Ok(paths.iter().map(|p| preprocess::read_image_file(p)).collect::<advclip::Result<_>>()?)
}

/// A [rows, cols] tensor as host rows.
pub fn to_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, cols] = t.dims();
    let data = advclip::host::read_f32(t)?;
    Ok(data.chunks(cols.max(1)).map(<[f32]>::to_vec).collect())
}

/// Normalised image embeddings with a progress bar.
pub fn embed_images(model: &Clip, images: &[image::RgbImage], batch: usize, device: &Device) -> Result<Tensor<2>> {
    let bar = progress_bar(images.len(), "images");
    let embeddings = advclip::embed::embed_images(model, images, batch, device, |n| bar.inc(n as u64));
    bar.finish_and_clear();
    Ok(embeddings?)
}

/// The labels given, or the dataset's class names; they must cover the dataset's classes when both exist.
pub fn resolve_labels(given: Option<&str>, dataset: &Dataset) -> Result<Vec<String>> {
    let labels = match given {
        Some(list) => zeroshot::parse_labels(list)?,
        None if !dataset.class_names.is_empty() => dataset.class_names.clone(),
        None => return Ok(vec![]),
    };
    if let Some(missing) = dataset.class_names.iter().find(|c| !labels.contains(c)) {
        bail!(
            "the dataset has a class folder \"{missing}\" that is not among the labels ({}); labels must name every class",
            labels.join(", ")
        );
    }
    Ok(labels)
}

/// Writes an image as PNG, atomically.
pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let bytes = preprocess::encode_png(img, &path.display().to_string())?;
    Ok(advclip::write_atomically(path, &bytes)?)
}
