//! The CLIP model: both towers, their projections into the shared embedding space, and the logit scale.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::batch_split;
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
        let forward = |pixels: Tensor<4>| self.visual_projection.forward(self.vision_model.forward(pixels));
        match batch_split::slices(&pixels.device(), pixels.dims()[0]) {
            1 => forward(pixels),
            n => Tensor::cat(batch_split::map(pixels.chunk(n, 0), forward), 0),
        }
    }

    /// Projected text features, not normalised: [batch, projection_dim].
    pub fn text_features(&self, tokens: &TokenBatch) -> Tensor<2> {
        let forward = |tokens: &TokenBatch| self.text_projection.forward(self.text_model.forward(tokens));
        match batch_split::slices(&self.text_projection.weight.device(), tokens.batch) {
            1 => forward(tokens),
            n => Tensor::cat(batch_split::map(tokens.split(n), |part| forward(&part)), 0),
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::config::{Activation, TextConfig, VisionConfig};
    use burn::tensor::{Distribution, Tolerance};

    /// A CLIP small enough for unit tests: 32 px images, two layers per tower, 64 wide.
    pub(crate) fn small_config() -> ClipConfig {
        ClipConfig {
            vision: VisionConfig {
                image_size: 32,
                patch_size: 8,
                hidden_size: 64,
                intermediate_size: 256,
                num_layers: 2,
                num_heads: 4,
                layer_norm_eps: 1e-5,
            },
            text: TextConfig {
                vocab_size: 1000,
                context_length: 16,
                hidden_size: 64,
                intermediate_size: 256,
                num_layers: 2,
                num_heads: 4,
                layer_norm_eps: 1e-5,
            },
            projection_dim: 32,
            activation: Activation::QuickGelu,
        }
    }

    /// A batch encoded in slices on a pool of three threads equals its rows encoded one by one (batches of one are
    /// never split), for images and for texts of different lengths.
    #[test]
    fn a_batch_split_across_threads_encodes_like_its_rows_one_by_one() {
        let device = Device::flex();
        let model = Clip::new(&small_config(), &device);
        let pixels = Tensor::<4>::random([5, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let sequences: Vec<Vec<u32>> = (0..5)
            .map(|i| (0..3 + 2 * i).map(|t| 1 + (7 * i + t) as u32 % 900).chain([49407 % 1000]).collect())
            .collect();
        let tokens = TokenBatch::new(&sequences, 16, 1000).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let (images, texts) = pool.install(|| {
            assert_eq!(batch_split::slices(&device, 5), 3);
            (model.image_features(pixels.clone()), model.text_features(&tokens))
        });
        let one_by_one_images =
            Tensor::cat((0..5).map(|i| model.image_features(pixels.clone().narrow(0, i, 1))).collect(), 0);
        let one_by_one_texts = Tensor::cat(
            (0..5).map(|i| model.text_features(&TokenBatch::new(&sequences[i..i + 1], 16, 1000).unwrap())).collect(),
            0,
        );
        images.into_data().assert_approx_eq::<f32>(&one_by_one_images.into_data(), Tolerance::absolute(1e-5));
        texts.into_data().assert_approx_eq::<f32>(&one_by_one_texts.into_data(), Tolerance::absolute(1e-5));
    }

    /// The towers' pooled path, which runs the last block for the pooled rows alone, gives the whole pass's
    /// outputs, and for images its gradient (the patch attack's), with texts pooling at different positions.
    #[test]
    fn the_last_block_on_the_pooled_rows_alone_matches_the_whole_pass() {
        let device = Device::flex().autodiff();
        let model = Clip::new(&small_config(), &device);
        let pixels = Tensor::<4>::random([3, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weights = Tensor::<2>::random([3, 64], Distribution::Normal(0.0, 1.0), &device);
        let pooled = model.vision_model.forward(pixels.clone());
        let (whole, _) = model.vision_model.forward_with_hidden_states(pixels.clone());
        let gradient = |out: Tensor<2>| pixels.grad(&(out * weights.clone()).sum().backward()).unwrap();
        pooled.clone().into_data().assert_approx_eq::<f32>(&whole.clone().into_data(), Tolerance::absolute(1e-5));
        gradient(pooled).into_data().assert_approx_eq::<f32>(&gradient(whole).into_data(), Tolerance::absolute(1e-5));

        // Sequences of 3, 6 and 9 tokens pool at their last: the shorter ones' queries must not see the padding.
        let sequences: Vec<Vec<u32>> =
            (0..3).map(|i| (0..3 + 3 * i).map(|t| 1 + (11 * i + t) as u32).collect()).collect();
        let tokens = TokenBatch::new(&sequences, 16, 1000).unwrap();
        let pooled = model.text_model.forward(&tokens);
        let (whole, _) = model.text_model.forward_with_hidden_states(&tokens);
        pooled.into_data().assert_approx_eq::<f32>(&whole.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn token_batches_split_into_consecutive_rows() {
        let sequences: Vec<Vec<u32>> = (0..5).map(|i| vec![1, 2 + i as u32, 7]).collect();
        let tokens = TokenBatch::new(&sequences, 6, 10).unwrap();
        let parts = tokens.split(2);
        assert_eq!(parts.iter().map(|p| p.batch).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(parts.iter().flat_map(|p| p.ids.clone()).collect::<Vec<_>>(), tokens.ids);
        assert_eq!(parts[1].eot_positions, tokens.eot_positions[3..]);
        assert_eq!(tokens.split(9).len(), 5);
    }
}
