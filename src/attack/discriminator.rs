//! AdvCLIP's discriminator: real (clean) versus fake (patched) images, kept Lipschitz by weight clipping.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::{leaky_relu, sigmoid};
use burn::tensor::{Device, Tensor};

use super::dcgan_conv::conv2d_forward;
use super::generator::dcgan_init;
use crate::error::{Error, Result};

/// The authors clip every discriminator parameter to this magnitude after each step.
pub const WEIGHT_CLIP: f64 = 0.01;

#[derive(Module, Debug)]
pub struct DownBlock {
    pub conv: Conv2d,
    pub norm: Option<BatchNorm>,
}

/// The authors' `Discriminator224`, the final kernel sized for any image size divisible by 16.
#[derive(Module, Debug)]
pub struct PatchDiscriminator {
    pub blocks: Vec<DownBlock>,
    pub head: Conv2d,
}

impl PatchDiscriminator {
    pub fn new(image_size: usize, device: &Device) -> Result<Self> {
        if image_size < 16 || !image_size.is_multiple_of(16) {
            return Err(Error::invalid(format!(
                "the discriminator needs an image size divisible by 16 (got {image_size})"
            )));
        }
        let channels = [3, 128, 256, 512, 1024];
        let blocks = channels
            .windows(2)
            .enumerate()
            .map(|(i, c)| DownBlock {
                conv: Conv2dConfig::new([c[0], c[1]], [4, 4])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .with_bias(false)
                    .with_initializer(dcgan_init())
                    .init(device),
                norm: (i > 0).then(|| BatchNormConfig::new(c[1]).init(device)),
            })
            .collect();
        let k = image_size / 16;
        let head = Conv2dConfig::new([1024, 1], [k, k])
            .with_stride([2, 2])
            .with_bias(false)
            .with_initializer(dcgan_init())
            .init(device);
        Ok(Self { blocks, head })
    }

    /// Probability that each image is clean, [B, 1]; `images` in [0, 1].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for block in &self.blocks {
            x = conv2d_forward(&block.conv, x);
            if let Some(norm) = &block.norm {
                x = norm.forward(x);
            }
            x = leaky_relu(x, 0.2);
        }
        let batch = x.dims()[0];
        sigmoid(conv2d_forward(&self.head, x).reshape([batch, 1]))
    }

    /// Clips every parameter to [-WEIGHT_CLIP, WEIGHT_CLIP] (WGAN-style), keeping parameter ids for the optimizer.
    pub fn clip_weights(self) -> Self {
        self.map(&mut ClampParams(WEIGHT_CLIP))
    }
}

struct ClampParams(f64);

impl ModuleMapper for ClampParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let c = self.0;
        param.map(|t| {
            let grad = t.is_require_grad();
            let t = t.without_autodiff().clamp(-c, c).autodiff();
            if grad { t.require_grad() } else { t }
        })
    }
}
