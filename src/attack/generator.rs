//! AdvCLIP's patch generator: a DCGAN from fixed noise whose batch of outputs is fused by a conv into ONE universal image.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid, tanh};
use burn::tensor::{Device, Tensor};

use super::dcgan_conv::conv_transpose2d_forward;
use crate::error::{Error, Result};

/// Length of the noise vector z.
pub const NOISE_DIM: usize = 100;

/// DCGAN weights ~ N(0, 0.02), biases 0 (the authors' `weights_init`).
pub(crate) fn dcgan_init() -> Initializer {
    Initializer::Normal { mean: 0.0, std: 0.02 }
}

#[derive(Module, Debug)]
pub struct UpBlock {
    pub conv: ConvTranspose2d,
    pub norm: BatchNorm,
}

/// The authors' `Generator224`, with the last transposed conv sized for any even image size.
#[derive(Module, Debug)]
pub struct PatchGenerator {
    pub blocks: Vec<UpBlock>,
    pub to_rgb: ConvTranspose2d,
    /// Mixes the batch's B images into one: B input channels per colour plane, one output.
    pub fusion: Conv2d,
    batch_size: usize,
    image_size: usize,
}

impl PatchGenerator {
    /// `batch_size` is fixed by the fusion conv: the generator always takes exactly that many noise vectors.
    pub fn new(image_size: usize, batch_size: usize, device: &Device) -> Result<Self> {
        if image_size < 8 || !image_size.is_multiple_of(2) || batch_size == 0 {
            return Err(Error::invalid(format!(
                "the generator needs an even image size >= 8 and a batch >= 1 (got {image_size}, {batch_size})"
            )));
        }
        let channels = [NOISE_DIM, 1024, 512, 256, 128];
        let blocks = channels
            .windows(2)
            .enumerate()
            .map(|(i, c)| {
                let (stride, padding) = if i == 0 { (1, 0) } else { (2, 1) };
                UpBlock {
                    conv: ConvTranspose2dConfig::new([c[0], c[1]], [4, 4])
                        .with_stride([stride, stride])
                        .with_padding([padding, padding])
                        .with_bias(false)
                        .with_initializer(dcgan_init())
                        .init(device),
                    norm: BatchNormConfig::new(c[1]).init(device),
                }
            })
            .collect();
        // 32x32 -> S: output = 31 * stride - 2 * padding + 4. At 224 that is the authors' stride 8, padding 14.
        let stride = (1..=64)
            .find(|s| 31 * s + 4 >= image_size && (31 * s + 4 - image_size).is_multiple_of(2))
            .expect("an even size always has a stride");
        let padding = (31 * stride + 4 - image_size) / 2;
        Ok(Self {
            blocks,
            to_rgb: ConvTranspose2dConfig::new([128, 3], [4, 4])
                .with_stride([stride, stride])
                .with_padding([padding, padding])
                .with_bias(false)
                .with_initializer(dcgan_init())
                .init(device),
            fusion: Conv2dConfig::new([batch_size, 1], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(dcgan_init())
                .init(device),
            batch_size,
            image_size,
        })
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// From noise [B, 100, 1, 1] to one image [3, S, S] in [0, 1].
    pub fn forward(&self, noise: Tensor<4>) -> Tensor<3> {
        let mut x = noise;
        for block in &self.blocks {
            x = relu(block.norm.forward(conv_transpose2d_forward(&block.conv, x)));
        }
        let images = tanh(conv_transpose2d_forward(&self.to_rgb, x)); // [B, 3, S, S]
        let s = self.image_size;
        // Each colour plane becomes one sample whose B channels are the B images' planes.
        let planes = images.swap_dims(0, 1); // [3, B, S, S]
        let fused = self.fusion.forward(planes); // [3, 1, S, S]
        // The authors clamp to ImageNet statistics; a sigmoid keeps every patch a real, printable image.
        sigmoid(fused.reshape([3, s, s]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_one_image_in_pixel_range() {
        let device = Device::flex();
        for size in [32, 64] {
            let g = PatchGenerator::new(size, 4, &device).unwrap();
            let z = Tensor::<4>::random([4, NOISE_DIM, 1, 1], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
            let out = g.forward(z);
            assert_eq!(out.dims(), [3, size, size]);
            let v: Vec<f32> = out.into_data().try_into_vec().unwrap();
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        }
        assert!(PatchGenerator::new(33, 4, &device).is_err());
    }

    #[test]
    fn the_224_generator_is_the_authors_size() {
        let g = PatchGenerator::new(224, 16, &Device::flex()).unwrap();
        // 12.66 M parameters as in the authors' Generator224 (BatchNorm included).
        let n = g.num_params();
        assert!((12_600_000..12_700_000).contains(&n), "{n}");
    }
}
