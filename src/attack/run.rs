//! One patch-training run, the same for the CLI and the browser: the trainer of each mode, the seeded batch order,
//! AdvCLIP's text term, the running rate, checkpoints with an exact resume, and the typed sidecar.
//!
//! Front ends only supply images (`TrainingImages`) and show the `StepReport`s. Steps are `async` because the browser
//! must read tensors asynchronously; natively `train_to_files` drives them with a blocking executor.

use std::collections::BTreeSet;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::advclip::{AdvClipConfig, AdvClipTrainer};
use super::losses::{LossTerm, LossWeights};
use super::metrics::fooling_rate;
use super::patch_file::{Loss, PatchMode, PatchSidecar, SIDECAR_VERSION, StepLosses, TrainingMetrics};
use super::placement::{DEFAULT_AREA_FRACTION, PatchPlacement};
use super::printability::Printability;
use super::targeted::{TargetedConfig, TargetedPatchTrainer, TrainedSpot, initial_patch};
use crate::error::{Error, Result};
use crate::host::{read_f32_async, read_i64_async, read_scalar_async};
use crate::model::{Clip, l2_normalize};
use crate::rng::SeededRng;
use crate::tokenizer::Tokenizer;
use crate::zeroshot::{DEFAULT_TEMPLATE, ZeroShotClassifier, argmax};

/// Images per step unless told otherwise (the page's and `advclip train`'s default).
pub const DEFAULT_BATCH: usize = 8;
/// The sidecar's training rate is the mean over this many last steps.
pub const RATE_WINDOW: usize = 10;
/// Limits that keep a typo from allocating until the machine gives up (README: limits).
pub const MAX_STEPS: usize = 1_000_000;
pub const MAX_BATCH: usize = 256;

/// Which patch to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttackMode {
    /// AdvCLIP's universal, untargeted patch from a generator.
    AdvClip,
    /// Patch pixels optimised toward the label with this index, for any spot or for its own.
    Targeted { target: usize, spot: TrainedSpot },
}

/// Everything that decides what a run trains: the same settings give the same patch on every front end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub mode: AttackMode,
    /// Zero-shot labels: the running rate, the target, and AdvCLIP's text for images without caption or class.
    pub labels: Vec<String>,
    pub template: String,
    /// Steps of the whole run (the learning-rate schedule spans them).
    pub steps: usize,
    pub batch_size: usize,
    pub area_fraction: f64,
    pub seed: u64,
    /// AdvCLIP generator terms left out (ablation runs); empty for the attack as published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<LossTerm>,
    /// A targeted patch meant for print: the non-printability term's weight and palette; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printability: Option<Printability>,
}

impl RunSettings {
    /// The defaults: one template, `DEFAULT_BATCH` images a step, AdvCLIP's 3 % area, seed 0.
    pub fn new(mode: AttackMode, labels: Vec<String>, steps: usize) -> Self {
        Self {
            mode,
            labels,
            template: DEFAULT_TEMPLATE.to_string(),
            steps,
            batch_size: DEFAULT_BATCH,
            area_fraction: DEFAULT_AREA_FRACTION,
            seed: 0,
            without: Vec::new(),
            printability: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(Error::invalid(format!("steps must be between 1 and {MAX_STEPS}, not {}", self.steps)));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(Error::invalid(format!(
                "the batch must be between 1 and {MAX_BATCH} images, not {}",
                self.batch_size
            )));
        }
        crate::zeroshot::check_template(&self.template)?;
        if !self.without.is_empty() && self.mode != AttackMode::AdvClip {
            return Err(Error::invalid("leaving loss terms out is for AdvCLIP runs; a targeted patch has one loss"));
        }
        if self.without.len() == LossTerm::ALL.len() {
            return Err(Error::invalid("an AdvCLIP run needs at least one of the embedding, topology and GAN terms"));
        }
        if let Some(printability) = &self.printability {
            if self.mode == AttackMode::AdvClip {
                return Err(Error::invalid(
                    "the printability term is for targeted patches (pixels optimised directly)",
                ));
            }
            printability.validate()?;
        }
        if let AttackMode::Targeted { target, .. } = self.mode
            && target >= self.labels.len()
        {
            return Err(Error::invalid("targeted training needs labels and a target among them"));
        }
        Ok(())
    }

    /// The kind of patch these settings train.
    pub fn patch_mode(&self) -> PatchMode {
        match self.mode {
            AttackMode::AdvClip => PatchMode::Advclip,
            AttackMode::Targeted { .. } => PatchMode::Targeted,
        }
    }
}

/// The images a run trains on, read by index (lazily from disk for the CLI, from memory in the browser).
pub trait TrainingImages {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Image `index` resized and centre-cropped to `size`, as [0, 1] CHW pixels.
    fn pixels(&self, index: usize, size: u32) -> Result<Vec<f32>>;
    /// The text AdvCLIP pairs with image `index`: its caption, or a prompt (from `template`) of its class; `None`
    /// when it has neither (the run then uses the prompt of its clean zero-shot label).
    fn text(&self, index: usize, template: &str) -> Option<String>;
}

/// Images already decoded to the model's size (the browser's uploads).
pub struct DecodedImages {
    pixels: Vec<Vec<f32>>,
}

impl DecodedImages {
    /// Decodes encoded files (PNG, JPEG, WebP) for a model of input `size`; image i is named "training image i+1".
    pub fn decode(files: &[Vec<u8>], size: u32) -> Result<Self> {
        let pixels = files
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let name = format!("training image {}", i + 1);
                crate::preprocess::decode_image(bytes, &name).and_then(|img| crate::preprocess::unit_pixels(&img, size))
            })
            .collect::<Result<Vec<_>>>()?;
        if pixels.is_empty() {
            return Err(Error::invalid("add at least one image to train on"));
        }
        Ok(Self { pixels })
    }
}

impl TrainingImages for DecodedImages {
    fn len(&self) -> usize {
        self.pixels.len()
    }
    fn pixels(&self, index: usize, _size: u32) -> Result<Vec<f32>> {
        Ok(self.pixels[index].clone())
    }
    fn text(&self, _index: usize, _template: &str) -> Option<String> {
        None
    }
}

/// What one step did.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Steps done, this one included.
    pub step: usize,
    pub steps: usize,
    pub losses: StepLosses,
    /// Share of this batch the patch (before this step's update) fooled (AdvCLIP) or sent to the target
    /// (targeted); `None` without labels.
    pub rate: Option<f64>,
    pub skipped_images: usize,
}

/// Where a run stands besides its tensors: what a checkpoint records, and what a resume must match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunState {
    settings: RunSettings,
    model: String,
    step: usize,
    /// Position in the endless stream of images, each epoch a seeded permutation.
    cursor: usize,
    /// Indices of images that could not be read (each counted once, however often it comes round).
    skipped: BTreeSet<usize>,
    /// The batch rates of the last `RATE_WINDOW` steps.
    recent_rates: Vec<f64>,
    last_losses: Option<StepLosses>,
}

enum Trainer {
    AdvClip(Box<AdvClipTrainer>),
    Targeted(Box<TargetedPatchTrainer>),
}

/// A patch-training run in progress.
pub struct PatchRun {
    state: RunState,
    image_size: usize,
    placement: PatchPlacement,
    head: Option<ZeroShotClassifier>,
    tokenizer: Tokenizer,
    trainer: Trainer,
    /// The permutation of the current epoch: (epoch, order).
    order: Option<(usize, Vec<usize>)>,
    device: Device,
}

impl PatchRun {
    /// Prepares a run against `model`, frozen on the autodiff `device`.
    pub fn new(model: &Clip, settings: RunSettings, device: &Device) -> Result<Self> {
        settings.validate()?;
        let image_size = model.config().vision.image_size;
        let tokenizer = Tokenizer::new();
        let head = if settings.labels.is_empty() {
            None
        } else {
            Some(ZeroShotClassifier::new(
                model,
                &tokenizer,
                &settings.labels,
                std::slice::from_ref(&settings.template),
            )?)
        };
        let placement = PatchPlacement::advclip(image_size, settings.area_fraction)?;
        let trainer = match (&settings.mode, &head) {
            (AttackMode::AdvClip, _) => {
                let config = AdvClipConfig {
                    batch_size: settings.batch_size,
                    seed: settings.seed,
                    weights: LossWeights::default().without(&settings.without),
                    ..AdvClipConfig::default()
                };
                Trainer::AdvClip(Box::new(AdvClipTrainer::new(placement, config, device)?))
            }
            (AttackMode::Targeted { target, spot }, Some(head)) => {
                Trainer::Targeted(Box::new(TargetedPatchTrainer::new(
                    initial_patch(settings.seed, placement.size, device),
                    head.label_embeddings(),
                    model.logit_scale,
                    TargetedConfig {
                        spot: *spot,
                        printability: settings.printability.clone(),
                        ..TargetedConfig::new(*target)
                    },
                )))
            }
            (AttackMode::Targeted { .. }, None) => unreachable!("validate() requires labels for targeted training"),
        };
        let state = RunState {
            settings,
            model: model.id(),
            step: 0,
            cursor: 0,
            skipped: BTreeSet::new(),
            recent_rates: Vec::new(),
            last_losses: None,
        };
        Ok(Self { state, image_size, placement, head, tokenizer, trainer, order: None, device: device.clone() })
    }

    pub fn settings(&self) -> &RunSettings {
        &self.state.settings
    }

    /// Steps done so far.
    pub fn step_count(&self) -> usize {
        self.state.step
    }

    pub fn is_finished(&self) -> bool {
        self.state.step >= self.state.settings.steps
    }

    /// One training step on the next batch of `images`; unreadable images are skipped (and reported through `warn`
    /// the first time), an error only when none can be read.
    pub async fn step(
        &mut self,
        model: &Clip,
        images: &dyn TrainingImages,
        warn: &mut dyn FnMut(String),
    ) -> Result<StepReport> {
        if self.is_finished() {
            return Err(Error::invalid("this training run is finished; start another"));
        }
        if model.id() != self.state.model {
            return Err(Error::invalid("the model changed since this training run started; start another"));
        }
        let indices_and_pixels = self.next_batch(images, warn)?;
        let size = self.image_size;
        let indices: Vec<usize> = indices_and_pixels.iter().map(|(i, _)| *i).collect();
        let pixels: Vec<f32> = indices_and_pixels.into_iter().flat_map(|(_, p)| p).collect();
        let batch = Tensor::<4>::from_data(TensorData::new(pixels, [indices.len(), 3, size, size]), &self.device);
        let settings = &self.state.settings;
        let (losses, rate) = match &mut self.trainer {
            Trainer::AdvClip(trainer) => {
                let clean = model.image_features(crate::attack::normalize_pixels(batch.clone())).detach();
                let clean_logits = match &self.head {
                    Some(head) => Some(read_f32_async(head.logits(l2_normalize(clean.clone()))).await?),
                    None => None,
                };
                let texts = batch_texts(images, &indices, settings, self.head.as_ref(), clean_logits.as_deref());
                let text = match texts {
                    Some(texts) => {
                        let tokens = crate::embed::tokenize_texts(model, &self.tokenizer, &texts)?;
                        Some(model.text_features(&tokens))
                    }
                    None => None,
                };
                let out = trainer.step_with_clean_features(model, batch, clean, text)?;
                let rate = match (&self.head, clean_logits) {
                    (Some(head), Some(clean)) => {
                        let patched = read_f32_async(head.logits(l2_normalize(out.patched_features))).await?;
                        Some(fooling_rate(&clean, &patched, head.labels().len()))
                    }
                    _ => None,
                };
                // One read for the six losses: each read waits for the device (a round trip on WebGPU).
                let parts =
                    [out.discriminator, out.generator, out.embedding, out.topology, out.gan, out.reconstruction];
                let l = read_f32_async(Tensor::cat(parts.to_vec(), 0)).await?;
                if l.len() != parts.len() {
                    return Err(Error::internal(format!("read {} AdvCLIP losses, expected 6", l.len())));
                }
                let losses = StepLosses::AdvClip {
                    discriminator: Loss(l[0]),
                    generator: Loss(l[1]),
                    embedding: Loss(l[2]),
                    topology: Loss(l[3]),
                    gan: Loss(l[4]),
                    reconstruction: Loss(l[5]),
                };
                (losses, rate)
            }
            Trainer::Targeted(trainer) => {
                let AttackMode::Targeted { target, .. } = settings.mode else { unreachable!("a targeted trainer") };
                let (seed, step, steps) = (settings.seed, self.state.step, settings.steps);
                let out = trainer.training_step(model, batch, &self.placement, seed, step, steps);
                let predictions = read_i64_async(out.predictions).await?;
                let hits = predictions.iter().filter(|&&p| p as usize == target).count();
                let palette_distance = match out.palette_distance {
                    Some(score) => Some(Loss(read_scalar_async(score).await?)),
                    None => None,
                };
                let losses =
                    StepLosses::Targeted { cross_entropy: Loss(read_scalar_async(out.loss).await?), palette_distance };
                (losses, Some(hits as f64 / predictions.len().max(1) as f64))
            }
        };
        let state = &mut self.state;
        state.step += 1;
        if let Some(rate) = rate {
            state.recent_rates.push(rate);
            let excess = state.recent_rates.len().saturating_sub(RATE_WINDOW);
            state.recent_rates.drain(..excess);
        }
        state.last_losses = Some(losses.clone());
        Ok(StepReport {
            step: state.step,
            steps: state.settings.steps,
            losses,
            rate,
            skipped_images: state.skipped.len(),
        })
    }

    /// The next `batch_size` readable images, in the seeded order, with their indices.
    fn next_batch(
        &mut self,
        images: &dyn TrainingImages,
        warn: &mut dyn FnMut(String),
    ) -> Result<Vec<(usize, Vec<f32>)>> {
        let n = images.len();
        if n == 0 {
            return Err(Error::invalid("no images to train on"));
        }
        let batch = self.state.settings.batch_size;
        let mut out = Vec::with_capacity(batch);
        let mut failures_in_a_row = 0;
        while out.len() < batch {
            let cursor = self.state.cursor;
            let epoch = cursor / n;
            if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let order = SeededRng::new(self.state.settings.seed, &format!("epoch {epoch}")).permutation(n);
                self.order = Some((epoch, order));
            }
            let index = self.order.as_ref().expect("set above").1[cursor % n];
            self.state.cursor += 1;
            match images.pixels(index, self.image_size as u32) {
                Ok(pixels) => {
                    failures_in_a_row = 0;
                    out.push((index, pixels));
                }
                Err(e) => {
                    if self.state.skipped.insert(index) {
                        warn(format!("skipping {e}"));
                    }
                    failures_in_a_row += 1;
                    if failures_in_a_row >= n {
                        return Err(Error::invalid("no image of the dataset could be read"));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The current patch, [3, p, p] CHW pixels in [0, 1].
    pub async fn patch_pixels(&self) -> Result<Vec<f32>> {
        let patch = match &self.trainer {
            Trainer::AdvClip(t) => t.patch(),
            Trainer::Targeted(t) => t.patch(),
        };
        read_f32_async(patch).await
    }

    /// The sidecar of the patch as it stands.
    pub fn sidecar(&self) -> PatchSidecar {
        let state = &self.state;
        let settings = &state.settings;
        let (target, trained_spot) = match settings.mode {
            AttackMode::AdvClip => (None, TrainedSpot::Fixed),
            AttackMode::Targeted { target, spot } => (Some(settings.labels[target].clone()), spot),
        };
        let rate = (!state.recent_rates.is_empty())
            .then(|| state.recent_rates.iter().sum::<f64>() / state.recent_rates.len() as f64);
        PatchSidecar {
            version: SIDECAR_VERSION,
            mode: settings.patch_mode(),
            model: state.model.clone(),
            image_size: self.image_size,
            area_fraction: self.placement.area_fraction(),
            placement: self.placement,
            target,
            trained_spot,
            seed: settings.seed,
            steps: state.step,
            without: settings.without.clone(),
            printability: settings.printability.clone(),
            training: Some(TrainingMetrics {
                losses: state.last_losses.clone(),
                rate,
                skipped_images: state.skipped.len(),
            }),
        }
    }

    /// Writes the run's state to `path` atomically (reads tensors synchronously: native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_checkpoint(&self, path: &std::path::Path) -> Result<()> {
        let blobs = match &self.trainer {
            Trainer::AdvClip(t) => t.state_blobs()?,
            Trainer::Targeted(t) => t.state_blobs()?,
        };
        crate::checkpoint::write(path, &self.state, blobs)
    }

    /// Continues from a checkpoint of a run with the same settings and model, exactly where it stopped.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn resume(&mut self, path: &std::path::Path) -> Result<()> {
        let (saved, mut blobs) = crate::checkpoint::read::<RunState>(path)?;
        if saved.model != self.state.model {
            return Err(Error::invalid(format!(
                "{}: the checkpoint was made with model {}, not {}",
                path.display(),
                saved.model,
                self.state.model
            )));
        }
        if saved.settings != self.state.settings {
            return Err(Error::invalid(format!(
                "{}: the checkpoint is from a run with other settings (mode, labels, template, steps, batch, area or seed); delete it or use the same settings",
                path.display()
            )));
        }
        if saved.step > saved.settings.steps || saved.recent_rates.len() > RATE_WINDOW {
            return Err(Error::invalid(format!("{}: the checkpoint's progress is inconsistent", path.display())));
        }
        match &mut self.trainer {
            Trainer::AdvClip(t) => t.restore(&mut blobs)?,
            Trainer::Targeted(t) => t.restore(&mut blobs)?,
        }
        self.state = saved;
        self.order = None;
        Ok(())
    }
}

/// AdvCLIP's text for each image of the batch: its own text, else the prompt of its clean zero-shot label; `None`
/// (image terms only) when an image has neither.
fn batch_texts(
    images: &dyn TrainingImages,
    indices: &[usize],
    settings: &RunSettings,
    head: Option<&ZeroShotClassifier>,
    clean_logits: Option<&[f32]>,
) -> Option<Vec<String>> {
    indices
        .iter()
        .enumerate()
        .map(|(row, &index)| {
            images.text(index, &settings.template).or_else(|| {
                let (head, logits) = (head?, clean_logits?);
                let n = head.labels().len();
                let label = &head.labels()[argmax(&logits[row * n..(row + 1) * n])];
                Some(settings.template.replace("{}", label))
            })
        })
        .collect()
}

/// Where a CLI run writes, and how often it checkpoints.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Debug)]
pub struct RunFiles {
    /// The patch PNG (its sidecar `.json` and checkpoint `.ckpt` go beside it).
    pub out: std::path::PathBuf,
    pub checkpoint_every: usize,
    /// End at this step (checkpoint, patch and sidecar written there) while the schedule still spans all steps.
    pub stop_at: Option<usize>,
    /// Continue from the checkpoint beside `out` when there is one.
    pub resume: bool,
}

#[cfg(not(target_arch = "wasm32"))]
impl RunFiles {
    pub fn checkpoint(&self) -> std::path::PathBuf {
        self.out.with_extension("ckpt")
    }
}

/// Trains a patch to files: checkpoints every `checkpoint_every` steps and at the end, resumes exactly, and writes
/// the PNG and its sidecar atomically. `on_step` sees every step.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_to_files(
    model: &Clip,
    images: &dyn TrainingImages,
    settings: RunSettings,
    files: &RunFiles,
    device: &Device,
    mut on_step: impl FnMut(&StepReport),
    mut warn: impl FnMut(String),
) -> Result<PatchSidecar> {
    if !files.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(Error::invalid(format!(
            "{}: the patch is written as a PNG (its sidecar .json and checkpoint .ckpt beside it); name it *.png",
            files.out.display()
        )));
    }
    // The folder is made before the first step, so that a run never trains for nothing and then fails to save.
    if let Some(parent) = files.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
    }
    let mut run = PatchRun::new(model, settings, device)?;
    let ckpt = files.checkpoint();
    if files.resume && ckpt.exists() {
        run.resume(&ckpt)?;
    } else if files.resume {
        warn(format!("no checkpoint at {}: starting from step 0", ckpt.display()));
    }
    let last = files.stop_at.unwrap_or(usize::MAX).min(run.settings().steps);
    while run.step_count() < last {
        let report = futures_lite::future::block_on(run.step(model, images, &mut warn))?;
        on_step(&report);
        if report.step % files.checkpoint_every.max(1) == 0 || report.step == last {
            run.save_checkpoint(&ckpt)?;
        }
    }
    let sidecar = run.sidecar();
    let pixels = futures_lite::future::block_on(run.patch_pixels())?;
    super::patch_file::save_patch(&files.out, &pixels, &sidecar)?;
    Ok(sidecar)
}
