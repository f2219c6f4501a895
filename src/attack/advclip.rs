//! The AdvCLIP training step: one discriminator step, then one generator step on the embedding, topology, GAN and
//! reconstruction losses, CLIP frozen throughout.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::discriminator::PatchDiscriminator;
use super::generator::{NOISE_DIM, PatchGenerator};
use super::losses::{LossWeights, binary_cross_entropy, embedding_deviation_loss, mse, topology_deviation_loss};
use super::placement::{PatchPlacement, normalize_pixels, paste_patch};
use crate::error::{Error, Result};
use crate::model::Clip;
use crate::rng::SeededRng;

/// Settings of an AdvCLIP run (the authors' values by default).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AdvClipConfig {
    pub batch_size: usize,
    pub learning_rate: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub weights: LossWeights,
    pub seed: u64,
}

impl Default for AdvClipConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            learning_rate: 2e-4,
            beta_1: 0.5,
            beta_2: 0.999,
            weights: LossWeights::default(),
            seed: 0,
        }
    }
}

/// The losses of one step, left on the device for the caller to read.
pub struct AdvClipStep {
    pub discriminator: Tensor<1>,
    pub generator: Tensor<1>,
    pub embedding: Tensor<1>,
    pub topology: Tensor<1>,
    pub gan: Tensor<1>,
    pub reconstruction: Tensor<1>,
    /// Projected image features of the clean batch and of the batch wearing the patch before this update, so a
    /// caller can monitor the fooling rate without running CLIP again.
    pub clean_features: Tensor<2>,
    pub patched_features: Tensor<2>,
}

pub struct AdvClipTrainer {
    generator: PatchGenerator,
    discriminator: PatchDiscriminator,
    generator_optim: ModuleOptimizer,
    discriminator_optim: ModuleOptimizer,
    /// z, drawn once from the seed and fixed for the whole run.
    noise: Tensor<4>,
    placement: PatchPlacement,
    config: AdvClipConfig,
}

impl AdvClipTrainer {
    /// `device` must be an autodiff device (the one the frozen CLIP lives on).
    pub fn new(placement: PatchPlacement, config: AdvClipConfig, device: &Device) -> Result<Self> {
        // Seeded so that the initial generator and discriminator are the same for the same seed.
        device.seed(config.seed);
        let generator = PatchGenerator::new(placement.image_size, config.batch_size, device)?;
        let discriminator = PatchDiscriminator::new(placement.image_size, device)?;
        let adam = || AdamConfig::new().with_beta_1(config.beta_1).with_beta_2(config.beta_2).init();
        // Host-side noise: the same z on every device for the same seed.
        let z = SeededRng::new(config.seed, "advclip.noise").normals(config.batch_size * NOISE_DIM);
        let noise = Tensor::from_data(TensorData::new(z, [config.batch_size, NOISE_DIM, 1, 1]), device);
        Ok(Self {
            generator,
            discriminator,
            generator_optim: adam(),
            discriminator_optim: adam(),
            noise,
            placement,
            config,
        })
    }

    pub fn placement(&self) -> &PatchPlacement {
        &self.placement
    }

    pub fn config(&self) -> &AdvClipConfig {
        &self.config
    }

    fn patch_with_grad(&self) -> Tensor<3> {
        let p = &self.placement;
        self.generator.forward(self.noise.clone()).slice([0..3, p.top..p.top + p.size, p.left..p.left + p.size])
    }

    /// The current universal patch, [3, p, p] in [0, 1].
    pub fn patch(&self) -> Tensor<3> {
        self.patch_with_grad().detach()
    }

    /// One iteration on a batch of exactly `batch_size` clean images in [0, 1], with the projected text features of
    /// their captions (or of label prompts), or `None` to use image terms only.
    pub fn step(&mut self, model: &Clip, images: Tensor<4>, text_features: Option<Tensor<2>>) -> Result<AdvClipStep> {
        let clean = model.image_features(normalize_pixels(images.clone())).detach();
        self.step_with_clean_features(model, images, clean, text_features)
    }

    /// `step` with the batch's clean projected image features already computed (a caller that needed them first,
    /// to pick the text term, saves a CLIP pass).
    pub fn step_with_clean_features(
        &mut self,
        model: &Clip,
        images: Tensor<4>,
        clean: Tensor<2>,
        text_features: Option<Tensor<2>>,
    ) -> Result<AdvClipStep> {
        let batch = images.dims()[0];
        if batch != self.config.batch_size {
            return Err(Error::invalid(format!(
                "AdvCLIP's generator fuses exactly {} images; got a batch of {batch}",
                self.config.batch_size
            )));
        }
        let w = self.config.weights;
        let lr = self.config.learning_rate;
        let adversarial = paste_patch(images.clone(), self.patch_with_grad(), &self.placement);

        // Discriminator: clean is real, patched is fake. An ablation without the GAN term leaves it untrained.
        let with_gan = w.gan != 0.0;
        let zero = || Tensor::<1>::zeros([1], &images.device());
        let d_loss = if with_gan {
            let d_loss = binary_cross_entropy(self.discriminator.forward(images.clone()), 1.0)
                + binary_cross_entropy(self.discriminator.forward(adversarial.clone().detach()), 0.0);
            let grads = GradientsParams::from_grads(d_loss.backward(), &self.discriminator);
            let discriminator = take(&mut self.discriminator);
            self.discriminator = self.discriminator_optim.step(lr, discriminator, grads).clip_weights();
            d_loss
        } else {
            zero()
        };

        // Generator: fool the discriminator, and push the patched embeddings away from clean images and captions.
        let clean = clean.detach();
        let patched = model.image_features(normalize_pixels(adversarial.clone()));
        let text = text_features.map(|t| t.detach());
        // The discriminator's own gradients are not wanted here (its step is done): a copy without them leaves
        // autodiff only the path back to the patch, a third less work through the discriminator. That copy's
        // BatchNorm running averages are its own, so this pass no longer updates the discriminator's; they matter
        // only in eval mode, which training never enters (batch statistics throughout).
        let gan = if with_gan {
            binary_cross_entropy(self.discriminator.clone().no_grad().forward(adversarial.clone()), 1.0)
        } else {
            zero()
        };
        let embedding = embedding_deviation_loss(clean.clone(), patched.clone(), text.clone(), w.beta);
        let topology = topology_deviation_loss(clean.clone(), patched.clone(), text, w.gamma);
        let reconstruction = mse(adversarial, images);
        let g_loss = gan.clone().mul_scalar(w.gan)
            + embedding.clone().mul_scalar(w.alpha)
            + reconstruction.clone()
            + topology.clone().mul_scalar(w.delta);
        let grads = GradientsParams::from_grads(g_loss.backward(), &self.generator);
        let generator = take(&mut self.generator);
        self.generator = self.generator_optim.step(lr, generator, grads);

        Ok(AdvClipStep {
            discriminator: d_loss.detach(),
            generator: g_loss.detach(),
            embedding: embedding.detach(),
            topology: topology.detach(),
            gan: gan.detach(),
            reconstruction: reconstruction.detach(),
            clean_features: clean,
            patched_features: patched.detach(),
        })
    }

    /// Generator, discriminator and both optimizer states as named blobs (for checkpoints).
    pub fn state_blobs(&self) -> Result<Vec<(String, Vec<u8>)>> {
        use crate::checkpoint::{module_bytes, optimizer_bytes};
        Ok(vec![
            ("generator".into(), module_bytes(&self.generator, "generator")?),
            ("discriminator".into(), module_bytes(&self.discriminator, "discriminator")?),
            ("generator_optim".into(), optimizer_bytes(&self.generator_optim)?),
            ("discriminator_optim".into(), optimizer_bytes(&self.discriminator_optim)?),
        ])
    }

    /// Restores what `state_blobs` saved.
    pub fn restore(&mut self, blobs: &mut crate::checkpoint::Blobs) -> Result<()> {
        use crate::checkpoint::{load_module, restore_optimizer};
        load_module(&mut self.generator, blobs.take("generator")?, "generator")?;
        load_module(&mut self.discriminator, blobs.take("discriminator")?, "discriminator")?;
        restore_optimizer(&mut self.generator_optim, blobs.take("generator_optim")?, "generator_optim")?;
        restore_optimizer(&mut self.discriminator_optim, blobs.take("discriminator_optim")?, "discriminator_optim")
    }
}

/// A module to hand to an optimizer step, which consumes it; cloning is cheap (tensors are shared handles) and the
/// step's result replaces the original.
pub(crate) fn take<M: Module>(slot: &mut M) -> M {
    slot.clone()
}
