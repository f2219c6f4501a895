//! What printing and a camera do to a patch, drawn afresh each step of a patch trained for any spot: colour, contrast
//! and brightness shifts of the print, then the camera's blur and sensor noise over the whole picture. All of it is
//! differentiable, so the patch learns to survive it (expectation over transformations, Athalye et al. 2018).

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};

use crate::rng::SeededRng;

/// The ranges the effects are drawn from: mild, as an office printer and a laptop webcam give.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CameraRanges {
    /// Largest brightness shift either way, in [0, 1] pixel units.
    pub max_brightness: f64,
    /// Contrast factor range around mid-grey.
    pub contrast: (f64, f64),
    /// Largest per-channel gain change either way (white balance, ink).
    pub max_gain: f64,
    /// Largest Gaussian blur, in input pixels (sigma).
    pub max_blur: f64,
    /// Standard deviation of the sensor noise.
    pub noise: f64,
}

impl Default for CameraRanges {
    fn default() -> Self {
        Self { max_brightness: 0.08, contrast: (0.85, 1.15), max_gain: 0.08, max_blur: 0.9, noise: 0.02 }
    }
}

/// One draw of the print-and-camera effects.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraEffects {
    pub brightness: f64,
    pub contrast: f64,
    pub gains: [f64; 3],
    pub blur: f64,
    pub noise: f64,
    noise_seed: u64,
}

impl CameraEffects {
    pub fn sample(ranges: &CameraRanges, rng: &mut SeededRng) -> Self {
        let mut between = |lo: f64, hi: f64| lo + (hi - lo) * rng.uniform();
        let brightness = between(-ranges.max_brightness, ranges.max_brightness);
        let contrast = between(ranges.contrast.0, ranges.contrast.1);
        let gains = [(); 3].map(|_| between(1.0 - ranges.max_gain, 1.0 + ranges.max_gain));
        let blur = between(0.0, ranges.max_blur);
        Self { brightness, contrast, gains, blur, noise: ranges.noise, noise_seed: rng.next_u64() }
    }

    /// The blur's 5 taps along one axis (radius 2 covers 2.2 sigma at the largest blur), summing to one; a
    /// negligible blur is the identity.
    fn blur_taps(&self) -> [f64; 5] {
        if self.blur <= 0.05 {
            return [0.0, 0.0, 1.0, 0.0, 0.0];
        }
        let taps = [-2, -1, 0, 1, 2].map(|x: i32| (-(x * x) as f64 / (2.0 * self.blur * self.blur)).exp());
        let sum: f64 = taps.iter().sum();
        taps.map(|t| t / sum)
    }
}

/// Print-and-camera draws for a batch, one per image: each image of a training step sees its own print and camera,
/// as it sees its own place (a finer estimate of the expectation per step than one draw for the whole batch).
#[derive(Clone, Debug, PartialEq)]
pub struct CameraDraws(pub Vec<CameraEffects>);

impl CameraDraws {
    /// `count` independent draws.
    pub fn sample(count: usize, ranges: &CameraRanges, rng: &mut SeededRng) -> Self {
        Self((0..count).map(|_| CameraEffects::sample(ranges, rng)).collect())
    }

    /// The draws of the images `rows` of the batch (a slice of a split batch).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        Self(self.0[rows].to_vec())
    }

    /// The printed patch ([3, p, p] in [0, 1]) as each draw prints it: contrast around mid-grey, brightness, then each
    /// channel's gain; [draws, 3, p, p].
    pub fn on_patch(&self, patch: Tensor<3>) -> Tensor<4> {
        let device = patch.device();
        let n = self.0.len();
        let per_draw = |f: &dyn Fn(&CameraEffects) -> f64| {
            Tensor::<1>::from_floats(self.0.iter().map(|e| f(e) as f32).collect::<Vec<_>>().as_slice(), &device)
                .reshape([n, 1, 1, 1])
        };
        let contrast = per_draw(&|e| e.contrast);
        let offset = per_draw(&|e| 0.5 + e.brightness);
        let gains: Vec<f32> = self.0.iter().flat_map(|e| e.gains.map(|g| g as f32)).collect();
        let gains = Tensor::<4>::from_data(TensorData::new(gains, [n, 3, 1, 1]), &device);
        (patch.unsqueeze::<4>().sub_scalar(0.5) * contrast + offset).mul(gains).clamp(0.0, 1.0)
    }

    /// The camera's view of the whole pictures ([B, 3, S, S] in [0, 1], image i seen by draw i): Gaussian blur, then
    /// sensor noise.
    pub fn on_images(&self, images: Tensor<4>) -> Tensor<4> {
        let device = images.device();
        let [batch, channels, height, width] = images.dims();
        assert_eq!(self.0.len(), batch, "one camera draw per image");
        let blurred = if self.0.iter().all(|e| e.blur <= 0.05) {
            images
        } else {
            // One 5x5 kernel per image and channel, applied as a grouped convolution over the batch folded into
            // the channels; the border is replicated so the picture's edge does not darken.
            let kernel: Vec<f32> = self
                .0
                .iter()
                .flat_map(|e| {
                    let taps = e.blur_taps();
                    (0..channels).flat_map(move |_| {
                        taps.into_iter().flat_map(move |a| taps.into_iter().map(move |b| (a * b) as f32))
                    })
                })
                .collect();
            let groups = batch * channels;
            let weight = Tensor::<4>::from_data(TensorData::new(kernel, [groups, 1, 5, 5]), &device);
            let padded = replicate_pad(images.reshape([1, groups, height, width]), 2);
            let options = ConvOptions::new([1, 1], [0, 0], [1, 1], groups);
            burn::tensor::module::conv2d(padded, weight, None, options).reshape([batch, channels, height, width])
        };
        let noise: Vec<f32> = self
            .0
            .iter()
            .flat_map(|e| {
                let normals = SeededRng::new(e.noise_seed, "camera noise").normals(channels * height * width);
                normals.into_iter().map(move |v| v * e.noise as f32)
            })
            .collect();
        let noise = Tensor::<4>::from_data(TensorData::new(noise, [batch, channels, height, width]), &device);
        (blurred + noise).clamp(0.0, 1.0)
    }
}

/// Pads the two spatial dimensions of `x` by `r` pixels, repeating the edge pixels.
fn replicate_pad(x: Tensor<4>, r: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let top = x.clone().narrow(2, 0, 1).repeat_dim(2, r);
    let bottom = x.clone().narrow(2, h - 1, 1).repeat_dim(2, r);
    let x = Tensor::cat(vec![top, x, bottom], 2);
    let left = x.clone().narrow(3, 0, 1).repeat_dim(3, r);
    let right = x.clone().narrow(3, w - 1, 1).repeat_dim(3, r);
    Tensor::cat(vec![left, x, right], 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> burn::tensor::Device {
        burn::tensor::Device::flex()
    }

    /// The blur keeps a flat picture flat (the kernel sums to one and the edge is replicated), and the patch's colour
    /// change is exactly the affine map it says, on hand-computed values.
    #[test]
    fn effects_do_what_they_say_on_known_pixels() {
        let effects = CameraEffects {
            brightness: 0.1,
            contrast: 1.2,
            gains: [1.0, 0.5, 1.1],
            blur: 0.8,
            noise: 0.0,
            noise_seed: 0,
        };
        let flat = Tensor::<4>::full([1, 3, 8, 8], 0.3, &device());
        let effects = CameraDraws(vec![effects]);
        let seen = crate::host::read_f32(effects.on_images(flat)).unwrap();
        assert!(seen.iter().all(|v| (v - 0.3).abs() < 1e-5), "{seen:?}");

        let patch = Tensor::<3>::from_data(TensorData::new(vec![0.25f32, 0.5, 1.0], [3, 1, 1]), &device());
        let printed = crate::host::read_f32(effects.on_patch(patch)).unwrap();
        // (0.25-0.5)*1.2+0.6 = 0.3; (0.5-0.5)*1.2+0.6 = 0.6, *0.5 = 0.3; (1-0.5)*1.2+0.6 = 1.2, *1.1 -> clamped 1.
        for (got, want) in printed.iter().zip([0.3f32, 0.3, 1.0]) {
            assert!((got - want).abs() < 1e-6, "{printed:?}");
        }
    }

    /// Draws per image act on each image as that draw alone would: the patch printed by each, and each picture
    /// blurred with its own kernel and given its own noise.
    #[test]
    fn a_draw_per_image_acts_on_each_image_as_alone() {
        let mut rng = SeededRng::new(4, "draws");
        let ranges = CameraRanges { max_blur: 1.5, ..CameraRanges::default() };
        let draws = CameraDraws::sample(3, &ranges, &mut rng);
        let mut uniforms = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform() as f32).collect() };
        let images = Tensor::<4>::from_data(TensorData::new(uniforms(3 * 3 * 8 * 8), [3, 3, 8, 8]), &device());
        let patch = Tensor::<3>::from_data(TensorData::new(uniforms(3 * 4 * 4), [3, 4, 4]), &device());
        let seen = crate::host::read_f32(draws.on_images(images.clone())).unwrap();
        let printed = crate::host::read_f32(draws.on_patch(patch.clone())).unwrap();
        for (i, draw) in draws.0.iter().enumerate() {
            let draw = CameraDraws(vec![draw.clone()]);
            let alone = crate::host::read_f32(draw.on_images(images.clone().narrow(0, i, 1))).unwrap();
            let worst = alone.iter().zip(&seen[i * alone.len()..]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-5, "image {i}: {worst}");
            let print = crate::host::read_f32(draw.on_patch(patch.clone())).unwrap();
            assert_eq!(print, printed[i * print.len()..(i + 1) * print.len()], "print {i}");
        }
        assert!(draws.0.windows(2).all(|w| w[0].blur != w[1].blur), "the draws differ");
    }

    /// A blurred step edge is a smooth ramp: the two pixels beside the edge move toward each other, far pixels stay.
    #[test]
    fn blur_softens_an_edge() {
        let effects =
            CameraEffects { brightness: 0.0, contrast: 1.0, gains: [1.0; 3], blur: 0.8, noise: 0.0, noise_seed: 0 };
        let row: Vec<f32> = (0..8).map(|x| if x < 4 { 0.0 } else { 1.0 }).collect();
        let pixels: Vec<f32> = (0..3 * 8).flat_map(|_| row.clone()).collect();
        let image = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, 8, 8]), &device());
        let seen = crate::host::read_f32(CameraDraws(vec![effects]).on_images(image)).unwrap();
        let line = &seen[3 * 8..4 * 8];
        assert!(line[0] < 1e-4 && line[7] > 1.0 - 1e-4, "{line:?}");
        assert!(line[3] > 0.05 && line[3] < 0.5 && line[4] > 0.5 && line[4] < 0.95, "{line:?}");
        assert!((line[3] + line[4] - 1.0).abs() < 1e-5, "a symmetric kernel: {line:?}");
    }
}
