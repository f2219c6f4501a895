//! CLIP hyper-parameters: the OpenAI presets, Hugging Face `config.json` parsing, and inference from tensor shapes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Limits on a model config read from a file (see `ClipConfig::validate`).
pub const MAX_IMAGE_SIZE: usize = 4096;
const MAX_WIDTH: usize = 8192;
const MAX_LAYERS: usize = 128;
const MAX_CONTEXT: usize = 4096;
const MAX_VOCAB: usize = 1 << 20;
const MAX_POSITIONS: usize = 16_385;
/// Four times ViT-bigG's parameters; an f32 model this size would not fit a browser tab or most machines anyway.
pub const MAX_PARAMETERS: u64 = 8_000_000_000;

/// The MLP activation inside each transformer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, what every OpenAI CLIP was trained with.
    QuickGelu,
    /// Exact erf GELU (some later CLIP-like checkpoints).
    Gelu,
}

impl Activation {
    fn from_hf(name: &str) -> Result<Self> {
        match name {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            other => {
                Err(Error::Config(format!("unsupported hidden_act \"{other}\" (quick_gelu and gelu are supported)")))
            }
        }
    }
}

/// The image tower: a ViT over `patch_size` squares of an `image_size` square image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Patch tokens plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

/// The text tower: a causal transformer over BPE tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub context_length: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub layer_norm_eps: f64,
}

/// A whole CLIP model: both towers, the shared embedding width and the activation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub vision: VisionConfig,
    pub text: TextConfig,
    pub projection_dim: usize,
    pub activation: Activation,
}

/// The OpenAI presets; all use head width 64 and quick_gelu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    VitB32,
    VitB16,
    VitL14,
    VitL14_336,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::VitB32, Preset::VitB16, Preset::VitL14, Preset::VitL14_336];

    pub fn name(self) -> &'static str {
        match self {
            Preset::VitB32 => "ViT-B/32",
            Preset::VitB16 => "ViT-B/16",
            Preset::VitL14 => "ViT-L/14",
            Preset::VitL14_336 => "ViT-L/14@336px",
        }
    }

    pub fn config(self) -> ClipConfig {
        let (image_size, patch_size, vision_width, vision_layers, text_width, text_layers, projection_dim) = match self
        {
            Preset::VitB32 => (224, 32, 768, 12, 512, 12, 512),
            Preset::VitB16 => (224, 16, 768, 12, 512, 12, 512),
            Preset::VitL14 => (224, 14, 1024, 24, 768, 12, 768),
            Preset::VitL14_336 => (336, 14, 1024, 24, 768, 12, 768),
        };
        ClipConfig {
            vision: VisionConfig {
                image_size,
                patch_size,
                hidden_size: vision_width,
                intermediate_size: 4 * vision_width,
                num_layers: vision_layers,
                num_heads: vision_width / 64,
                layer_norm_eps: 1e-5,
            },
            text: TextConfig {
                vocab_size: 49408,
                context_length: 77,
                hidden_size: text_width,
                intermediate_size: 4 * text_width,
                num_layers: text_layers,
                num_heads: text_width / 64,
                layer_norm_eps: 1e-5,
            },
            projection_dim,
            activation: Activation::QuickGelu,
        }
    }
}

impl ClipConfig {
    /// Checks the invariants the model code relies on, so a bad config is an error and not a panic later.
    /// Parameters the config implies, roughly (the transformer blocks and embeddings), for the size limit.
    fn parameter_estimate(&self) -> u64 {
        // In u64: on wasm32 a usize would overflow for the largest configs the limits allow.
        let n = |x: usize| x as u64;
        let block = |width: usize, inner: usize| 4 * n(width) * n(width) + 2 * n(width) * n(inner);
        let (v, t) = (&self.vision, &self.text);
        n(v.num_layers) * block(v.hidden_size, v.intermediate_size)
            + n(t.num_layers) * block(t.hidden_size, t.intermediate_size)
            + n(t.vocab_size) * n(t.hidden_size)
            + 3 * n(v.patch_size) * n(v.patch_size) * n(v.hidden_size)
    }

    pub fn validate(&self) -> Result<()> {
        let v = &self.vision;
        let t = &self.text;
        let fail = |m: String| Err(Error::Config(m));
        let n = |x: usize| x as u64;
        if v.patch_size == 0 || v.image_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return fail(format!("image_size {} is not a multiple of patch_size {}", v.image_size, v.patch_size));
        }
        for (tower, width, heads, layers) in
            [("vision", v.hidden_size, v.num_heads, v.num_layers), ("text", t.hidden_size, t.num_heads, t.num_layers)]
        {
            if heads == 0 || width == 0 || width % heads != 0 {
                return fail(format!("{tower} hidden_size {width} is not divisible by num_attention_heads {heads}"));
            }
            if layers == 0 {
                return fail(format!("{tower} tower has no layers"));
            }
        }
        if t.context_length < 2 || t.vocab_size == 0 || self.projection_dim == 0 {
            return fail("context length, vocabulary and projection must be non-empty".into());
        }
        // Sizes from a file are bounded before anything is allocated from them (README: limits): far above every
        // CLIP (ViT-L/14@336px: 577 positions, 24 layers, width 1024), far below what would exhaust memory.
        let limits = [
            ("vision image_size", v.image_size, MAX_IMAGE_SIZE),
            ("vision hidden_size", v.hidden_size, MAX_WIDTH),
            ("vision intermediate_size", v.intermediate_size, 4 * MAX_WIDTH),
            ("vision num_hidden_layers", v.num_layers, MAX_LAYERS),
            ("text hidden_size", t.hidden_size, MAX_WIDTH),
            ("text intermediate_size", t.intermediate_size, 4 * MAX_WIDTH),
            ("text num_hidden_layers", t.num_layers, MAX_LAYERS),
            ("text max_position_embeddings", t.context_length, MAX_CONTEXT),
            ("text vocab_size", t.vocab_size, MAX_VOCAB),
            ("projection_dim", self.projection_dim, MAX_WIDTH),
        ];
        for (what, value, limit) in limits {
            if value > limit {
                return fail(format!("{what} {value} is over the limit of {limit}"));
            }
        }
        if v.intermediate_size == 0 || t.intermediate_size == 0 {
            return fail("intermediate_size must be positive".into());
        }
        let positions = n(v.image_size / v.patch_size).pow(2) + 1;
        if positions > MAX_POSITIONS as u64 {
            return fail(format!(
                "{} px images in {} px patches make {positions} positions, over the limit of {MAX_POSITIONS}",
                v.image_size, v.patch_size
            ));
        }
        for (tower, eps) in [("vision", v.layer_norm_eps), ("text", t.layer_norm_eps)] {
            if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
                return fail(format!("{tower} layer_norm_eps {eps} must be a small positive number"));
            }
        }
        let parameters = self.parameter_estimate();
        if parameters > MAX_PARAMETERS {
            return fail(format!("about {parameters} parameters, over the limit of {MAX_PARAMETERS}"));
        }
        Ok(())
    }

    /// Parses a Hugging Face `CLIPModel` `config.json`; absent fields take the transformers defaults.
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let hf: HfClipConfig = serde_json::from_str(json).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        let act = Activation::from_hf(&hf.vision_config.hidden_act)?;
        if Activation::from_hf(&hf.text_config.hidden_act)? != act {
            return Err(Error::Config("the two towers use different activations".into()));
        }
        let config = ClipConfig {
            vision: VisionConfig {
                image_size: hf.vision_config.image_size,
                patch_size: hf.vision_config.patch_size,
                hidden_size: hf.vision_config.hidden_size,
                intermediate_size: hf.vision_config.intermediate_size,
                num_layers: hf.vision_config.num_hidden_layers,
                num_heads: hf.vision_config.num_attention_heads,
                layer_norm_eps: hf.vision_config.layer_norm_eps,
            },
            text: TextConfig {
                vocab_size: hf.text_config.vocab_size,
                context_length: hf.text_config.max_position_embeddings,
                hidden_size: hf.text_config.hidden_size,
                intermediate_size: hf.text_config.intermediate_size,
                num_layers: hf.text_config.num_hidden_layers,
                num_heads: hf.text_config.num_attention_heads,
                layer_norm_eps: hf.text_config.layer_norm_eps,
            },
            projection_dim: hf.projection_dim,
            activation: act,
        };
        config.validate()?;
        Ok(config)
    }

    /// Writes the config as a Hugging Face `config.json`, so saved models load in transformers too.
    pub fn to_hf_json(&self) -> String {
        let act = match self.activation {
            Activation::QuickGelu => "quick_gelu",
            Activation::Gelu => "gelu",
        };
        let v = &self.vision;
        let t = &self.text;
        let value = serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": 2.6592,
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                "num_hidden_layers": v.num_layers, "num_attention_heads": v.num_heads,
                "image_size": v.image_size, "patch_size": v.patch_size, "num_channels": 3,
                "hidden_act": act, "layer_norm_eps": v.layer_norm_eps, "projection_dim": self.projection_dim,
            },
            "text_config": {
                "model_type": "clip_text_model",
                "vocab_size": t.vocab_size, "max_position_embeddings": t.context_length,
                "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
                "num_hidden_layers": t.num_layers, "num_attention_heads": t.num_heads,
                "hidden_act": act, "layer_norm_eps": t.layer_norm_eps, "projection_dim": self.projection_dim,
                "bos_token_id": crate::tokenizer::SOT, "eos_token_id": crate::tokenizer::EOT, "pad_token_id": 1,
            },
        });
        serde_json::to_string_pretty(&value).expect("a json! value always serialises")
    }

    /// Recovers the config of a lone `model.safetensors` from its tensor shapes.
    ///
    /// Head counts are not visible in shapes; every OpenAI model uses 64-wide heads, so that is assumed.
    pub fn from_tensor_shapes(
        shape_of: impl Fn(&str) -> Option<Vec<usize>>,
        num_layers_with_prefix: impl Fn(&str) -> usize,
    ) -> Result<Self> {
        let need = |name: &str, rank: usize| -> Result<Vec<usize>> {
            match shape_of(name) {
                Some(s) if s.len() == rank => Ok(s),
                Some(s) => Err(Error::Config(format!("tensor {name} has shape {s:?}, expected rank {rank}"))),
                None => {
                    Err(Error::Config(format!("tensor {name} is missing: this is not a Hugging Face CLIPModel file")))
                }
            }
        };
        let class = need("vision_model.embeddings.class_embedding", 1)?;
        let patch = need("vision_model.embeddings.patch_embedding.weight", 4)?;
        let vpos = need("vision_model.embeddings.position_embedding.weight", 2)?;
        let vfc1 = need("vision_model.encoder.layers.0.mlp.fc1.weight", 2)?;
        let tok = need("text_model.embeddings.token_embedding.weight", 2)?;
        let tpos = need("text_model.embeddings.position_embedding.weight", 2)?;
        let tfc1 = need("text_model.encoder.layers.0.mlp.fc1.weight", 2)?;
        let proj = need("visual_projection.weight", 2)?;
        let grid = ((vpos[0].saturating_sub(1)) as f64).sqrt().round() as usize;
        if grid * grid + 1 != vpos[0] {
            return Err(Error::Config(format!("{} vision positions is not a square grid plus a class token", vpos[0])));
        }
        let heads = |width: usize| (width / 64).max(1);
        let config = ClipConfig {
            vision: VisionConfig {
                image_size: grid * patch[2],
                patch_size: patch[2],
                hidden_size: class[0],
                intermediate_size: vfc1[0],
                num_layers: num_layers_with_prefix("vision_model.encoder.layers."),
                num_heads: heads(class[0]),
                layer_norm_eps: 1e-5,
            },
            text: TextConfig {
                vocab_size: tok[0],
                context_length: tpos[0],
                hidden_size: tok[1],
                intermediate_size: tfc1[0],
                num_layers: num_layers_with_prefix("text_model.encoder.layers."),
                num_heads: heads(tok[1]),
                layer_norm_eps: 1e-5,
            },
            projection_dim: proj[0],
            activation: Activation::QuickGelu,
        };
        config.validate()?;
        // Head counts and the activation are not in the weights: only the OpenAI presets' are known for sure.
        if !Preset::ALL.iter().any(|p| p.config() == config) {
            return Err(Error::Config(format!(
                "the tensor shapes ({} px, width {}, {} + {} layers) are not an OpenAI preset (ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px), so head counts cannot be inferred: give its config.json (beside the file, or with it)",
                config.vision.image_size, config.vision.hidden_size, config.vision.num_layers, config.text.num_layers
            )));
        }
        Ok(config)
    }
}

#[derive(Deserialize)]
struct HfClipConfig {
    #[serde(default = "d512")]
    projection_dim: usize,
    #[serde(default)]
    text_config: HfTextConfig,
    #[serde(default)]
    vision_config: HfVisionConfig,
}

#[derive(Deserialize)]
#[serde(default)]
struct HfTextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for HfTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct HfVisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
}

impl Default for HfVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

fn d512() -> usize {
    512
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_json_round_trips_and_defaults_to_b32() {
        let b32 = Preset::VitB32.config();
        assert_eq!(ClipConfig::from_hf_json("{}").unwrap(), b32);
        for preset in Preset::ALL {
            let c = preset.config();
            assert_eq!(ClipConfig::from_hf_json(&c.to_hf_json()).unwrap(), c, "{}", preset.name());
        }
    }

    #[test]
    fn inconsistent_configs_are_errors() {
        let err = ClipConfig::from_hf_json(r#"{"vision_config": {"image_size": 225}}"#).unwrap_err();
        assert!(err.to_string().contains("not a multiple of patch_size"), "{err}");
        let err = ClipConfig::from_hf_json(r#"{"text_config": {"hidden_act": "relu"}}"#).unwrap_err();
        assert!(err.to_string().contains("relu"), "{err}");
        assert!(ClipConfig::from_hf_json("not json").is_err());
    }
}
