//! The image tower: patch embedding, class token, positions, pre-LN, encoder, post-LN on the class token.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm};
use burn::tensor::{Device, Distribution, Tensor};

use super::config::{Activation, VisionConfig};
use super::transformer::{Encoder, EncoderShape, layer_norm};

#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    pub class_embedding: Param<Tensor<1>>,
    pub patch_embedding: Conv2d,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub embeddings: VisionEmbeddings,
    /// Loaded from the upstream key `pre_layrnorm` (sic).
    pub pre_layernorm: LayerNorm,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
}

impl VisionTransformer {
    pub fn new(config: &VisionConfig, activation: Activation, device: &Device) -> Self {
        let width = config.hidden_size;
        let p = config.patch_size;
        Self {
            embeddings: VisionEmbeddings {
                // OpenAI's initialisation (std width^-0.5); it matters only when training from scratch.
                class_embedding: Param::from_tensor(Tensor::random(
                    [width],
                    Distribution::Normal(0.0, (width as f64).powf(-0.5)),
                    device,
                )),
                patch_embedding: Conv2dConfig::new([3, width], [p, p])
                    .with_stride([p, p])
                    .with_bias(false)
                    .init(device),
                position_embedding: EmbeddingConfig::new(config.num_positions(), width)
                    .with_initializer(Initializer::Normal { mean: 0.0, std: (width as f64).powf(-0.5) })
                    .init(device),
            },
            pre_layernorm: layer_norm(width, config.layer_norm_eps, device),
            encoder: Encoder::new(
                &EncoderShape {
                    width,
                    intermediate: config.intermediate_size,
                    num_layers: config.num_layers,
                    num_heads: config.num_heads,
                    layer_norm_eps: config.layer_norm_eps,
                    activation,
                },
                device,
            ),
            post_layernorm: layer_norm(width, config.layer_norm_eps, device),
        }
    }

    /// The token sequence fed to the encoder: class token then patches, plus positions, pre-LN applied.
    fn embed(&self, pixels: Tensor<4>) -> Tensor<3> {
        let batch = pixels.dims()[0];
        let patches = self.embeddings.patch_embedding.forward(pixels); // [b, width, gh, gw]
        let [_, width, gh, gw] = patches.dims();
        let patches = patches.reshape([batch, width, gh * gw]).swap_dims(1, 2);
        let class = self.embeddings.class_embedding.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let tokens = Tensor::cat(vec![class, patches], 1);
        let positions = self.embeddings.position_embedding.weight.val().unsqueeze::<3>();
        self.pre_layernorm.forward(tokens + positions)
    }

    /// Pooled output (post-LN class token), [batch, hidden]; `pixels` are CLIP-normalised [batch, 3, H, W]. The last
    /// block runs for the class token alone (`Encoder::forward_pooled`).
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let batch = pixels.dims()[0];
        self.post_layernorm.forward(self.encoder.forward_pooled(self.embed(pixels), &vec![0; batch], false))
    }

    /// Like `forward`, also returning the encoder input and every block's output.
    pub fn forward_with_hidden_states(&self, pixels: Tensor<4>) -> (Tensor<2>, Vec<Tensor<3>>) {
        let mut states = Vec::new();
        let out = self.encoder.forward(self.embed(pixels), false, Some(&mut states));
        (self.pool(out), states)
    }

    fn pool(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, width] = hidden.dims();
        let class = hidden.slice([0..batch, 0..1, 0..width]).reshape([batch, width]);
        self.post_layernorm.forward(class)
    }
}
