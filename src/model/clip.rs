//! The CLIP model: both towers, their projections into the shared embedding space, and the logit scale.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::config::ClipConfig;
use super::text::{TextTransformer, TokenBatch};
use super::vision::VisionTransformer;

/// OpenAI CLIP, field names matching the Hugging Face `CLIPModel` weights.
#[derive(Module, Debug)]
pub struct Clip {
    pub vision_model: VisionTransformer,
    pub text_model: TextTransformer,
    pub visual_projection: Linear,
    pub text_projection: Linear,
    /// Log of the softmax temperature's inverse; frozen here, so kept off the parameter list.
    #[module(skip)]
    pub logit_scale: f32,
    #[module(skip)]
    config: ClipConfig,
    /// Hash of the weight file the model was loaded from (0 for fresh weights); tells checkpoints and patches apart.
    #[module(skip)]
    pub fingerprint: u64,
}

impl Clip {
    /// A model with freshly initialised weights (Burn initialises lazily, so loading right after is cheap).
    pub fn new(config: &ClipConfig, device: &Device) -> Self {
        let projection = |width: usize| LinearConfig::new(width, config.projection_dim).with_bias(false).init(device);
        Self {
            vision_model: VisionTransformer::new(&config.vision, config.activation, device),
            text_model: TextTransformer::new(&config.text, config.activation, device),
            visual_projection: projection(config.vision.hidden_size),
            text_projection: projection(config.text.hidden_size),
            logit_scale: 2.6592,
            config: config.clone(),
            fingerprint: 0,
        }
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// A short name for this exact model: its architecture and weight fingerprint, e.g. "ViT-B/32 224px 1a2b3c4d5e6f7a8b".
    pub fn id(&self) -> String {
        let v = &self.config.vision;
        let arch = super::config::Preset::ALL
            .iter()
            .find(|p| p.config() == self.config)
            .map(|p| p.name().to_string())
            .unwrap_or_else(|| format!("ViT-{}w{}l/{}", v.hidden_size, v.num_layers, v.patch_size));
        format!("{arch} {}px {:016x}", v.image_size, self.fingerprint)
    }

    /// Projected image features, not normalised: [batch, projection_dim].
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.visual_projection.forward(self.vision_model.forward(pixels))
    }

    /// Projected text features, not normalised: [batch, projection_dim].
    pub fn text_features(&self, tokens: &TokenBatch) -> Tensor<2> {
        self.text_projection.forward(self.text_model.forward(tokens))
    }

    /// L2-normalised image embeddings of CLIP-normalised pixels [batch, 3, size, size].
    pub fn encode_image(&self, pixels: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.image_features(pixels))
    }

    /// L2-normalised text embeddings.
    pub fn encode_text(&self, tokens: &TokenBatch) -> Tensor<2> {
        l2_normalize(self.text_features(tokens))
    }

    /// `exp(logit_scale) * cosine`, [images, texts], from normalised embeddings.
    pub fn logits(&self, image_embeds: Tensor<2>, text_embeds: Tensor<2>) -> Tensor<2> {
        image_embeds.matmul(text_embeds.transpose()).mul_scalar(self.logit_scale.exp())
    }
}

/// Divides each row by its L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}
