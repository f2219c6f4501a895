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
        Self {
            clip: Clip::new(config, device),
            logit_scale: Param::from_tensor(Tensor::from_floats([2.6592f32], device)),
        }
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
        let scale: Vec<f32> = self
            .logit_scale
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| crate::Error::invalid(format!("{e:?}")))?;
        let mut clip = self.clip;
        clip.logit_scale = scale[0].min(MAX_LOGIT_SCALE as f32);
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
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self { batch_size: 64, learning_rate: 1e-3, warmup_steps: 100, steps: 3000, weight_decay: 0.05 }
    }
}

impl PretrainConfig {
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

    pub fn optimizer_bytes(&self) -> Result<Vec<u8>> {
        self.optimizer
            .into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| crate::Error::invalid(format!("saving optimizer state: {e:?}")))
    }

    pub fn restore_optimizer(&mut self, bytes: Vec<u8>) -> Result<()> {
        let optimizer = std::mem::replace(&mut self.optimizer, AdamWConfig::new().init());
        self.optimizer = optimizer
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| crate::Error::invalid(format!("checkpoint optimizer state is unreadable: {e:?}")))?;
        Ok(())
    }
}
