//! The training loop the CLI drives: batches from a dataset, either trainer, progress after each step, atomic
//! checkpoints, and an exact resume after a kill.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::advclip::{AdvClipConfig, AdvClipTrainer};
use super::metrics::fooling_rate;
use super::patch_file::{PatchSidecar, save_patch};
use super::placement::PatchPlacement;
use super::rng::SeededRng;
use super::targeted::{TargetedConfig, TargetedPatchTrainer, TargetedPlacement, initial_patch, patch_tensor};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::host::{read_f32 as read, read_i64, read_scalar as scalar};
use crate::model::{Clip, l2_normalize};
use crate::tokenizer::Tokenizer;
use crate::zeroshot::ZeroShotClassifier;

/// Which patch to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttackMode {
    /// AdvCLIP's universal, untargeted patch from a generator.
    AdvClip,
    /// Patch pixels optimised toward the label with this index, for any spot or for its own.
    Targeted {
        target: usize,
        #[serde(default)]
        placement: TargetedPlacement,
    },
}

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub mode: AttackMode,
    /// Zero-shot labels (monitoring, label prompts when there are no captions, the target).
    pub labels: Vec<String>,
    pub template: String,
    pub steps: usize,
    pub batch_size: usize,
    pub area_fraction: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// End the run at this step (checkpoint, patch and sidecar written there) while the learning-rate schedule
    /// still spans `steps`; `--resume` continues it.
    pub stop_at: Option<usize>,
    /// The patch PNG to write (its sidecar and checkpoint go beside it).
    pub out: PathBuf,
}

/// Reported after every step.
#[derive(Clone, Debug)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    pub losses: Vec<(&'static str, f32)>,
    /// Share of this batch's predictions the patch changed (AdvCLIP) or sent to the target (targeted).
    pub batch_rate: Option<f64>,
    pub skipped_images: usize,
}

/// Where the run stands; this is what a checkpoint records besides the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunState {
    mode: AttackMode,
    model: String,
    seed: u64,
    batch_size: usize,
    area_fraction: f64,
    labels: Vec<String>,
    step: usize,
    /// Position in the endless, per-epoch shuffled stream of dataset items.
    cursor: usize,
    skipped_images: usize,
}

pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.with_extension("ckpt")
}

/// Deterministic batches: epoch e visits the items in the permutation drawn from (seed, e).
struct BatchStream<'a> {
    dataset: &'a Dataset,
    seed: u64,
    order: (usize, Vec<usize>),
}

impl<'a> BatchStream<'a> {
    fn item_at(&mut self, cursor: usize) -> usize {
        let n = self.dataset.len();
        let epoch = cursor / n;
        if self.order.0 != epoch || self.order.1.is_empty() {
            self.order = (epoch, SeededRng::new(self.seed, &format!("epoch {epoch}")).permutation(n));
        }
        self.order.1[cursor % n]
    }

    /// The next `batch` readable images as [0, 1] CHW buffers at `size`, with their indices; unreadable images are
    /// skipped (counted and reported once each), never fatal unless nothing is readable.
    fn next(
        &mut self,
        state: &mut RunState,
        batch: usize,
        size: u32,
        warn: &mut dyn FnMut(String),
    ) -> Result<Vec<(usize, Vec<f32>)>> {
        let mut out = Vec::with_capacity(batch);
        let mut failures_in_a_row = 0;
        while out.len() < batch {
            let index = self.item_at(state.cursor);
            state.cursor += 1;
            let item = &self.dataset.items[index];
            match item.load().and_then(|img| unit_pixels(&img, size)) {
                Ok(pixels) => {
                    failures_in_a_row = 0;
                    out.push((index, pixels));
                }
                Err(e) => {
                    state.skipped_images += 1;
                    failures_in_a_row += 1;
                    if state.cursor <= self.dataset.len() {
                        warn(format!("skipping {e}"));
                    }
                    if failures_in_a_row >= self.dataset.len() {
                        return Err(Error::invalid("no image of the dataset could be read"));
                    }
                }
            }
        }
        Ok(out)
    }
}

pub use crate::preprocess::unit_pixels;

enum Trainer {
    AdvClip(Box<AdvClipTrainer>),
    Targeted(TargetedPatchTrainer, usize),
}

/// Trains a patch against `model` (loaded on an autodiff `device`, frozen) and writes the PNG + sidecar.
/// With `resume`, continues from the checkpoint beside `options.out` exactly where it stopped.
pub fn train_patch(
    model: &Clip,
    model_id: &str,
    dataset: &Dataset,
    options: &TrainOptions,
    resume: bool,
    device: &Device,
    mut on_step: impl FnMut(&Progress),
    mut warn: impl FnMut(String),
) -> Result<PatchSidecar> {
    let size = model.config().vision.image_size;
    let tokenizer = Tokenizer::new();
    let head = if options.labels.is_empty() {
        None
    } else {
        Some(ZeroShotClassifier::new(model, &tokenizer, &options.labels, &[options.template.clone()])?)
    };
    if let AttackMode::Targeted { target, .. } = options.mode {
        if head.is_none() || target >= options.labels.len() {
            return Err(Error::invalid("targeted mode needs --labels and a --target among them"));
        }
    }
    let placement = PatchPlacement::advclip(size, options.area_fraction)?;
    let mut state = RunState {
        mode: options.mode.clone(),
        model: model_id.to_string(),
        seed: options.seed,
        batch_size: options.batch_size,
        area_fraction: options.area_fraction,
        labels: options.labels.clone(),
        step: 0,
        cursor: 0,
        skipped_images: 0,
    };
    let mut trainer = match options.mode {
        AttackMode::AdvClip => {
            let config =
                AdvClipConfig { batch_size: options.batch_size, seed: options.seed, ..AdvClipConfig::default() };
            Trainer::AdvClip(Box::new(AdvClipTrainer::new(placement, config, device)?))
        }
        AttackMode::Targeted { target, placement: where_to } => {
            let head = head.as_ref().expect("checked above");
            let t = TargetedPatchTrainer::new(
                initial_patch(options.seed, placement.size, device),
                head.label_embeddings(),
                model.logit_scale,
                TargetedConfig { placement: where_to, ..TargetedConfig::new(target) },
            );
            Trainer::Targeted(t, target)
        }
    };
    let ckpt = checkpoint_path(&options.out);
    if resume && ckpt.exists() {
        let (saved, blobs) = read_checkpoint(&ckpt)?;
        let expected =
            RunState { step: saved.step, cursor: saved.cursor, skipped_images: saved.skipped_images, ..state.clone() };
        if saved.model != state.model {
            return Err(Error::invalid(format!(
                "{}: the checkpoint was made with model {}, not {}",
                ckpt.display(),
                saved.model,
                state.model
            )));
        }
        if saved != expected {
            return Err(Error::invalid(format!(
                "{}: the checkpoint is from a run with other settings (mode, seed, batch, area or labels); delete it or use the same settings",
                ckpt.display()
            )));
        }
        let blob = |name: &str| {
            blobs
                .get(name)
                .cloned()
                .ok_or_else(|| Error::invalid(format!("{}: checkpoint lacks {name}", ckpt.display())))
        };
        match &mut trainer {
            Trainer::AdvClip(t) => t.restore(blob)?,
            Trainer::Targeted(t, _) => {
                let pixels: Vec<f32> =
                    blob("patch")?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                t.restore(patch_tensor(pixels, placement.size, device), blob("optimizer")?)?;
            }
        }
        state = saved;
    }

    let mut stream = BatchStream { dataset, seed: options.seed, order: (0, vec![]) };
    let mut recent_rates: Vec<f64> = Vec::new();
    let mut last_losses = Vec::new();
    let last = options.stop_at.unwrap_or(options.steps).min(options.steps);
    while state.step < last {
        let batch = stream.next(&mut state, options.batch_size, size as u32, &mut warn)?;
        let indices: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let pixels: Vec<f32> = batch.into_iter().flat_map(|(_, p)| p).collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [indices.len(), 3, size, size]), device);
        let (losses, rate) = match &mut trainer {
            Trainer::AdvClip(t) => {
                let text = text_features(model, &tokenizer, dataset, &indices, options)?;
                let out = t.step(model, images, text)?;
                let rate = match &head {
                    Some(head) => {
                        // Clean vs patched predictions of this batch, from the features the step already computed.
                        let clean = read(head.logits(l2_normalize(out.clean_features.clone())))?;
                        let adv = read(head.logits(l2_normalize(out.patched_features.clone())))?;
                        Some(fooling_rate(&clean, &adv, options.labels.len()))
                    }
                    None => None,
                };
                let losses = vec![
                    ("D", scalar(out.discriminator)?),
                    ("G", scalar(out.generator)?),
                    ("adv", scalar(out.embedding)?),
                    ("topo", scalar(out.topology)?),
                    ("gan", scalar(out.gan)?),
                    ("rec", scalar(out.reconstruction)?),
                ];
                (losses, rate)
            }
            Trainer::Targeted(t, target) => {
                let out = t.training_step(model, images, &placement, options.seed, state.step, options.steps);
                let predictions = read_i64(out.predictions)?;
                let hits = predictions.iter().filter(|&&p| p as usize == *target).count();
                (vec![("loss", scalar(out.loss)?)], Some(hits as f64 / predictions.len() as f64))
            }
        };
        state.step += 1;
        recent_rates.extend(rate);
        last_losses = losses.clone();
        on_step(&Progress {
            step: state.step,
            steps: options.steps,
            losses,
            batch_rate: rate,
            skipped_images: state.skipped_images,
        });
        if state.step % options.checkpoint_every.max(1) == 0 || state.step == last {
            write_checkpoint(&ckpt, &state, &trainer)?;
        }
    }

    let patch = match &trainer {
        Trainer::AdvClip(t) => t.patch(),
        Trainer::Targeted(t, _) => t.patch(),
    };
    let window = &recent_rates[recent_rates.len().saturating_sub(10)..];
    let mut metrics = serde_json::Map::new();
    for (name, value) in &last_losses {
        metrics.insert(format!("loss_{name}"), serde_json::json!(value));
    }
    if !window.is_empty() {
        let key = if matches!(options.mode, AttackMode::AdvClip) {
            "train_fooling_rate"
        } else {
            "train_targeted_success_rate"
        };
        metrics.insert(key.into(), serde_json::json!(window.iter().sum::<f64>() / window.len() as f64));
    }
    metrics.insert("skipped_images".into(), serde_json::json!(state.skipped_images));
    if let Trainer::Targeted(t, _) = &trainer {
        metrics.insert("trained_placement".into(), serde_json::json!(t.placement()));
    }
    let sidecar = PatchSidecar {
        mode: match options.mode {
            AttackMode::AdvClip => "advclip".into(),
            AttackMode::Targeted { .. } => "targeted".into(),
        },
        model: model_id.to_string(),
        image_size: size,
        area_fraction: placement.area_fraction(),
        placement,
        target: match options.mode {
            AttackMode::Targeted { target, .. } => Some(options.labels[target].clone()),
            AttackMode::AdvClip => None,
        },
        seed: options.seed,
        steps: state.step,
        metrics: serde_json::Value::Object(metrics),
    };
    save_patch(&options.out, &read(patch)?, &sidecar)?;
    Ok(sidecar)
}

/// Projected text features for the batch: its captions, else prompts of its labels, else none.
fn text_features(
    model: &Clip,
    tokenizer: &Tokenizer,
    dataset: &Dataset,
    indices: &[usize],
    options: &TrainOptions,
) -> Result<Option<Tensor<2>>> {
    let items: Vec<_> = indices.iter().map(|&i| &dataset.items[i]).collect();
    let texts: Option<Vec<String>> = if items.iter().all(|i| i.caption.is_some()) {
        Some(items.iter().map(|i| i.caption.clone().unwrap_or_default()).collect())
    } else if items.iter().all(|i| i.label.is_some()) && !dataset.class_names.is_empty() {
        Some(items.iter().map(|i| options.template.replace("{}", &dataset.class_names[i.label.unwrap_or(0)])).collect())
    } else {
        None
    };
    texts.map(|t| Ok(model.text_features(&crate::embed::tokenize_texts(model, tokenizer, &t)?))).transpose()
}

fn write_checkpoint(path: &Path, state: &RunState, trainer: &Trainer) -> Result<()> {
    let blobs: Vec<(String, Vec<u8>)> = match trainer {
        Trainer::AdvClip(t) => t.state_blobs()?,
        Trainer::Targeted(t, _) => {
            let patch: Vec<u8> = read(t.patch())?.iter().flat_map(|v| v.to_le_bytes()).collect();
            vec![("patch".into(), patch), ("optimizer".into(), t.optimizer_bytes()?)]
        }
    };
    super::checkpoint::write(path, &serde_json::to_string(state).expect("state serialises"), blobs)
}

fn read_checkpoint(path: &Path) -> Result<(RunState, HashMap<String, Vec<u8>>)> {
    let (state, blobs) = super::checkpoint::read(path)?;
    let state = serde_json::from_str(&state)
        .map_err(|e| Error::invalid(format!("{}: not a patch-training checkpoint ({e})", path.display())))?;
    Ok((state, blobs))
}
