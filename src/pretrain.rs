//! Contrastive pretraining of a small CLIP from scratch (symmetric InfoNCE, learnable temperature), step at a time.

use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::Result;
use crate::model::{Activation, Clip, ClipConfig, TextConfig, TokenBatch, VisionConfig, l2_normalize};

/// The bundled mini CLIP: 64 px input, 8 px patches, a 4-layer 128-wide image tower, a 3-layer 64-wide text tower
/// over the real OpenAI vocabulary with a 32-token context. About 4 M parameters, 8 MB in f16.
pub fn mini_clip_config() -> ClipConfig {
    ClipConfig {
        vision: VisionConfig {
            image_size: 64,
            patch_size: 8,
            hidden_size: 128,
            intermediate_size: 512,
            num_layers: 4,
            num_heads: 4,
            layer_norm_eps: 1e-5,
        },
        text: TextConfig {
            vocab_size: 49408,
            context_length: 32,
            hidden_size: 64,
            intermediate_size: 256,
            num_layers: 3,
            num_heads: 2,
            layer_norm_eps: 1e-5,
        },
        projection_dim: 64,
        activation: Activation::QuickGelu,
    }
}

/// CLIP plus its temperature as a trainable parameter (inference keeps it as a plain number).
#[derive(Module, Debug)]
pub struct ContrastiveModel {
    pub clip: Clip,
    pub logit_scale: Param<Tensor<1>>,
}

/// CLIP's clamp on the temperature: exp(logit_scale) <= 100.
const MAX_LOGIT_SCALE: f64 = 4.605_170_2;

impl ContrastiveModel {
    pub fn new(config: &ClipConfig, device: &Device) -> Self {
        Self::from_clip(Clip::new(config, device), device)
    }

    /// Continues training a CLIP (for fine-tuning), its stored logit scale becoming the trainable temperature.
    pub fn from_clip(clip: Clip, device: &Device) -> Self {
        let logit_scale = Param::from_tensor(Tensor::from_floats([clip.logit_scale], device));
        Self { clip, logit_scale }
    }

    /// The symmetric cross-entropy of CLIP: each image against every caption of the batch and vice versa. [1].
    pub fn loss(&self, pixels: Tensor<4>, tokens: &TokenBatch) -> Tensor<1> {
        let image = l2_normalize(self.clip.image_features(pixels));
        let text = l2_normalize(self.clip.text_features(tokens));
        let batch = image.dims()[0];
        let scale = self.logit_scale.val().clamp_max(MAX_LOGIT_SCALE).exp().reshape([1, 1]);
        let logits = image.matmul(text.transpose()) * scale;
        let eye: Vec<f32> = (0..batch * batch).map(|i| if i % batch == i / batch { 1.0 } else { 0.0 }).collect();
        let eye = Tensor::<2>::from_data(TensorData::new(eye, [batch, batch]), &logits.device());
        let per_image = (log_softmax(logits.clone(), 1) * eye.clone()).sum();
        let per_text = (log_softmax(logits, 0) * eye).sum();
        (per_image + per_text).neg().div_scalar(2.0 * batch as f64)
    }

    /// The trained CLIP with its learned temperature, ready to save or use.
    pub fn into_clip(self) -> Result<Clip> {
        let scale = crate::host::read_scalar(self.logit_scale.val())?;
        let mut clip = self.clip;
        clip.logit_scale = scale.min(MAX_LOGIT_SCALE as f32);
        Ok(clip)
    }
}

/// Optimiser settings of a pretraining run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PretrainConfig {
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub steps: usize,
    pub weight_decay: f32,
    /// Steps over which the world's difficulty ramps from easy to full (0: the full world from the start).
    pub curriculum_steps: usize,
    /// Share of scenes drawn by `Renderer::Augmented` (random shape distortions) instead of `Standard`.
    #[serde(default)]
    pub augmented_share: f32,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            learning_rate: 1e-3,
            warmup_steps: 100,
            steps: 3000,
            weight_decay: 0.05,
            curriculum_steps: 0,
            augmented_share: 0.0,
        }
    }
}

impl PretrainConfig {
    /// The hardest scene difficulty (see `shapes::render_scene_at`) drawn at `step`: a linear ramp from 0 to 1 over
    /// the curriculum. A from-scratch ViT on the full world learns colour at once but stays near chance on shape
    /// for thousands of steps; easy scenes (large, filled, plain) give shape a head start (README: how much).
    pub fn difficulty_cap(&self, step: usize) -> f32 {
        if self.curriculum_steps == 0 { 1.0 } else { (step as f32 / self.curriculum_steps as f32).min(1.0) }
    }

    /// Linear warm-up, then cosine decay to a tenth.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let t = (step - self.warmup_steps) as f64 / (self.steps.saturating_sub(self.warmup_steps)).max(1) as f64;
        self.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
    }
}

/// Holds the model being trained and its optimiser; the caller supplies batches and reads the returned loss.
pub struct Pretrainer {
    pub model: ContrastiveModel,
    optimizer: ModuleOptimizer,
    pub config: PretrainConfig,
    pub step: usize,
}

impl Pretrainer {
    pub fn new(model: ContrastiveModel, config: PretrainConfig) -> Self {
        let optimizer =
            AdamWConfig::new().with_beta_2(0.98).with_epsilon(1e-6).with_weight_decay(config.weight_decay).init();
        Self { model, optimizer, config, step: 0 }
    }

    /// One optimiser step on CLIP-normalised pixels and their captions; returns the loss before the update.
    pub fn step(&mut self, pixels: Tensor<4>, tokens: &TokenBatch) -> Tensor<1> {
        let loss = self.model.loss(pixels, tokens);
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let lr = self.config.learning_rate_at(self.step);
        self.model = self.optimizer.step(lr, self.model.clone(), grads);
        self.step += 1;
        loss.detach()
    }
}

/// Where and how long `pretrain_on_synth` trains.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    /// Output folder: `config.json` + `model.safetensors` (f16), and `pretrain.ckpt` while training.
    pub out: std::path::PathBuf,
    pub config: PretrainConfig,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Stop after this step (checkpoint and write the model there) while the schedule still runs to `steps`.
    pub stop_at: Option<usize>,
    /// Start from this mini CLIP (a Hugging Face folder) instead of random weights: fine-tuning.
    pub init: Option<std::path::PathBuf>,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct PretrainState {
    step: usize,
    seed: u64,
    batch_size: usize,
    steps: usize,
    curriculum_steps: usize,
    #[serde(default)]
    augmented_share: f32,
    #[serde(default)]
    init: Option<std::path::PathBuf>,
}

/// One batch of the shapes world: CLIP-normalised pixels and token sequences. Half the texts are the scene's free
/// caption, half the zero-shot prompt "a photo of a <label>.", so both kinds of text land near the image.
/// Half the scenes are drawn at `difficulty_cap`, half at a uniform difficulty below it, so easy scenes stay in
/// the mix once the curriculum reaches the full world. A share `augmented_share` of the scenes is drawn by
/// `Renderer::Augmented`.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
pub fn synth_batch(
    model_config: &ClipConfig,
    tokenizer: &crate::tokenizer::Tokenizer,
    seed: u64,
    first_index: u64,
    batch: usize,
    difficulty_cap: f32,
    augmented_share: f32,
    device: &Device,
) -> Result<(Tensor<4>, TokenBatch)> {
    let size = model_config.vision.image_size;
    let mut pixels = Vec::with_capacity(batch);
    let mut texts = Vec::with_capacity(batch);
    for i in 0..batch as u64 {
        let mut rng = crate::rng::SeededRng::new(seed, &format!("text {}", first_index + i));
        let free_caption = rng.uniform() < 0.5;
        let difficulty = if rng.uniform() < 0.5 { difficulty_cap } else { difficulty_cap * rng.uniform() as f32 };
        let renderer = if (rng.uniform() as f32) < augmented_share {
            crate::shapes::Renderer::Augmented
        } else {
            crate::shapes::Renderer::Standard
        };
        let scene = crate::shapes::render_scene_at(size as u32, seed, first_index + i, renderer, difficulty);
        pixels.push(crate::preprocess::preprocess(&scene.image, size as u32));
        texts.push(if free_caption {
            scene.caption
        } else {
            crate::zeroshot::DEFAULT_TEMPLATE.replace("{}", &scene.label)
        });
    }
    let ids: Vec<Vec<u32>> =
        texts.iter().map(|t| tokenizer.encode_for_context(t, model_config.text.context_length)).collect();
    let tokens = TokenBatch::new(&ids, model_config.text.context_length, model_config.text.vocab_size)?;
    Ok((crate::embed::pixel_batch(&pixels, size, device)?, tokens))
}

/// Pretrains the mini CLIP on the shapes world (on an autodiff `device`), checkpointing atomically and resuming
/// exactly; writes the model in the Hugging Face layout (f16) and returns it.
#[cfg(not(target_arch = "wasm32"))]
pub fn pretrain_on_synth(
    device: &Device,
    options: &PretrainOptions,
    resume: bool,
    mut on_step: impl FnMut(usize, f32, f32),
) -> Result<Clip> {
    let config = mini_clip_config();
    device.seed(options.seed);
    let model = match &options.init {
        None => ContrastiveModel::new(&config, device),
        Some(path) => {
            let clip = crate::model::load_clip(path, device)?;
            if clip.config() != &config {
                return Err(crate::Error::invalid(format!(
                    "{}: --init needs a mini CLIP of the bundled shape (64 px, 4+3 layers); this one differs",
                    path.display()
                )));
            }
            ContrastiveModel::from_clip(clip, device)
        }
    };
    let mut trainer = Pretrainer::new(model, options.config.clone());
    let tokenizer = crate::tokenizer::Tokenizer::new();
    std::fs::create_dir_all(&options.out).map_err(|e| crate::Error::io(options.out.display(), e))?;
    let ckpt = options.out.join("pretrain.ckpt");
    let state = |step| PretrainState {
        step,
        seed: options.seed,
        batch_size: options.config.batch_size,
        steps: options.config.steps,
        curriculum_steps: options.config.curriculum_steps,
        augmented_share: options.config.augmented_share,
        init: options.init.clone(),
    };
    if resume && ckpt.exists() {
        let (saved, mut blobs) = crate::checkpoint::read::<PretrainState>(&ckpt)?;
        if saved != state(saved.step) {
            return Err(crate::Error::invalid(format!(
                "{}: the checkpoint is from a run with other settings (seed, batch, steps, curriculum, augment or init)",
                ckpt.display()
            )));
        }
        crate::checkpoint::load_module(&mut trainer.model, blobs.take("model")?, "model")?;
        crate::checkpoint::restore_optimizer(&mut trainer.optimizer, blobs.take("optimizer")?, "optimizer")?;
        trainer.step = saved.step;
    }
    let batch = options.config.batch_size;
    let last = options.stop_at.unwrap_or(options.config.steps).min(options.config.steps);
    while trainer.step < last {
        let cap = options.config.difficulty_cap(trainer.step);
        let first = (trainer.step * batch) as u64;
        let share = options.config.augmented_share;
        let (pixels, tokens) = synth_batch(&config, &tokenizer, options.seed, first, batch, cap, share, device)?;
        let loss = trainer.step(pixels, &tokens);
        let scale = crate::host::read_scalar(trainer.model.logit_scale.val())?;
        on_step(trainer.step, crate::host::read_scalar(loss)?, scale);
        if trainer.step.is_multiple_of(options.checkpoint_every.max(1)) || trainer.step == last {
            let blobs = vec![
                ("model".into(), crate::checkpoint::module_bytes(&trainer.model, "model")?),
                ("optimizer".into(), crate::checkpoint::optimizer_bytes(&trainer.optimizer)?),
            ];
            crate::checkpoint::write(&ckpt, &state(trainer.step), blobs)?;
        }
    }
    let clip = trainer.model.into_clip()?.valid();
    crate::write_atomically(&options.out.join("config.json"), clip.config().to_hf_json().as_bytes())?;
    crate::write_atomically(
        &options.out.join("model.safetensors"),
        &crate::model::save_clip_safetensors(&clip, true)?,
    )?;
    Ok(clip)
}
