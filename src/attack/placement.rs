//! Where a patch goes and how it is pasted: in [0, 1] pixel space, before CLIP normalisation, differentiably.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// AdvCLIP's patch area: 3 % of the image.
pub const DEFAULT_AREA_FRACTION: f64 = 0.03;

/// A square patch at a fixed place in a square image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchPlacement {
    pub image_size: usize,
    pub size: usize,
    pub top: usize,
    pub left: usize,
}

impl PatchPlacement {
    /// AdvCLIP's placement: side `floor(sqrt(area * S^2))`, bottom-right with a 14 px margin at 224 (scaled to S).
    /// At 224 and 0.03 that is 38 px over rows and columns [172, 210).
    pub fn advclip(image_size: usize, area_fraction: f64) -> Result<Self> {
        if !(area_fraction > 0.0 && area_fraction < 0.5) {
            return Err(Error::invalid(format!("patch area fraction {area_fraction} must be in (0, 0.5)")));
        }
        let size = (area_fraction * (image_size * image_size) as f64).sqrt().floor() as usize;
        let margin = (14.0 * image_size as f64 / 224.0).round() as usize;
        if size == 0 || size + margin > image_size {
            return Err(Error::invalid(format!("a {area_fraction} patch does not fit a {image_size} px image")));
        }
        let corner = image_size - margin - size;
        Ok(Self { image_size, size, top: corner, left: corner })
    }

    /// A placement at an explicit position (checked to fit).
    pub fn at(image_size: usize, size: usize, top: usize, left: usize) -> Result<Self> {
        let fits = |start: usize| start.checked_add(size).is_some_and(|end| end <= image_size);
        if size == 0 || !fits(top) || !fits(left) {
            return Err(Error::invalid(format!(
                "a {size} px patch at ({top}, {left}) does not fit a {image_size} px image"
            )));
        }
        Ok(Self { image_size, size, top, left })
    }

    /// The share of the image the patch covers.
    pub fn area_fraction(&self) -> f64 {
        (self.size * self.size) as f64 / (self.image_size * self.image_size) as f64
    }
}

/// Replaces the placement's pixels of every image by the patch: `x_adv = mask * P + (1 - mask) * x`.
/// `images`: [B, 3, S, S] in [0, 1]; `patch`: [3, p, p] in [0, 1]. Gradients flow to the patch.
pub fn paste_patch(images: Tensor<4>, patch: Tensor<3>, placement: &PatchPlacement) -> Tensor<4> {
    Paste::Fixed(*placement).apply(images, patch)
}

/// One draw of the targeted mode's expectation over transformations: the patch's centre, side, rotation and
/// perspective in the pixels of a `image_size` square input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatchTransform {
    pub image_size: usize,
    pub center: (f64, f64),
    pub side: f64,
    /// Radians, counter-clockwise.
    pub angle: f64,
    /// Perspective (a sheet tilted toward the camera): patch point `q` (in [-1, 1]^2, after the rotation) shows at
    /// `q / (1 - tilt . q)`, so the edge the tilt points to comes nearer and grows. (0, 0) is a flat paste.
    pub tilt: (f64, f64),
}

/// The ranges the transformations are drawn from (Brown et al.'s physical-patch recipe).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformRanges {
    /// Patch side as a fraction of the image side.
    pub min_side: f64,
    pub max_side: f64,
    /// Largest rotation either way, in degrees.
    pub max_degrees: f64,
    /// Largest perspective tilt (`PatchTransform::tilt`, each axis); 0 draws none.
    #[serde(default)]
    pub max_tilt: f64,
}

impl TransformRanges {
    /// Sides from 0.8x to 1.2x the side of a patch covering `area_fraction`, rotations within 22.5 degrees.
    /// Centred on the size the patch is shown at: sizes far below it cannot carry the target and only dilute
    /// the gradient (a 10-40 % side range trained a 37 % patch to 22 % success on the step-4500 mini CLIP, these 42 %).
    pub fn around_area(area_fraction: f64) -> Self {
        let side = area_fraction.clamp(0.0, 1.0).sqrt();
        Self { min_side: 0.8 * side, max_side: (1.2 * side).min(0.95), max_degrees: 22.5, max_tilt: 0.0 }
    }

    /// These ranges with a slight perspective too: a printed sheet held up to a camera at up to about 10 degrees.
    pub fn with_tilt(self, max_tilt: f64) -> Self {
        Self { max_tilt, ..self }
    }
}

impl PatchTransform {
    /// Draws a transform whose rotated patch stays inside the image.
    pub fn sample(image_size: usize, ranges: &TransformRanges, rng: &mut crate::rng::SeededRng) -> Self {
        let s = image_size as f64;
        let side = s * (ranges.min_side + (ranges.max_side - ranges.min_side) * rng.uniform());
        let angle = (2.0 * rng.uniform() - 1.0) * ranges.max_degrees.to_radians();
        // Drawn only when asked for, so that flat draws (evaluation's) stay what they were.
        let tilt = if ranges.max_tilt > 0.0 {
            let mut draw = || (2.0 * rng.uniform() - 1.0) * ranges.max_tilt;
            (draw(), draw())
        } else {
            (0.0, 0.0)
        };
        // Half the rotated square's bounding box, grown by the most the perspective can enlarge a corner.
        let reach = side / 2.0 * (angle.cos().abs() + angle.sin().abs()) / (1.0 - tilt.0.abs() - tilt.1.abs());
        let room = (s - 2.0 * reach).max(0.0);
        let center = (reach + room * rng.uniform(), reach + room * rng.uniform());
        Self { image_size, center, side, angle, tilt }
    }

    /// For each output pixel, where it falls in the patch, in grid_sample's [-1, 1] coordinates: [1, S, S, 2].
    fn sampling_grid(&self) -> Vec<f32> {
        let (sin, cos) = self.angle.sin_cos();
        let half = self.side / 2.0;
        let s = self.image_size;
        let mut grid = Vec::with_capacity(s * s * 2);
        for row in 0..s {
            for col in 0..s {
                let (u, v) = (col as f64 + 0.5 - self.center.0, row as f64 + 0.5 - self.center.1);
                // Undo the rotation: image offset -> patch offset, in half-sides.
                let (pu, pv) = ((cos * u + sin * v) / half, (-sin * u + cos * v) / half);
                // Undo the perspective: shown point r = q / (1 - t.q) comes from q = r / (1 + t.r).
                let w = 1.0 + self.tilt.0 * pu + self.tilt.1 * pv;
                grid.push((pu / w) as f32);
                grid.push((pv / w) as f32);
            }
        }
        grid
    }
}

/// Pastes a scaled, rotated copy of `patch` ([3, p, p] in [0, 1]) into every image, bilinearly, with a soft edge;
/// gradients flow to the patch.
pub fn paste_patch_transformed(images: Tensor<4>, patch: Tensor<3>, transform: &PatchTransform) -> Tensor<4> {
    paste_patches_transformed(images, patch.unsqueeze(), std::slice::from_ref(transform))
}

/// Pastes `patches` ([1 or B, 3, p, p] in [0, 1]: one patch for all images, or each image's own print of it) into
/// `images` ([B, 3, S, S]), moved by `transforms` (one for all images, or one per image), bilinearly, with a soft
/// edge, in one batched sampling; gradients flow to the patches.
pub fn paste_patches_transformed(images: Tensor<4>, patches: Tensor<4>, transforms: &[PatchTransform]) -> Tensor<4> {
    let device = images.device();
    let [batch, channels, s, _] = images.dims();
    let [n, _, p, _] = patches.dims();
    let draws = transforms.len();
    assert!(n == 1 || n == batch, "{n} patches for {batch} images");
    assert!(draws == 1 || draws == batch, "{draws} transforms for {batch} images");
    let grid: Vec<f32> = transforms.iter().flat_map(PatchTransform::sampling_grid).collect();
    let grid = Tensor::<4>::from_data(burn::tensor::TensorData::new(grid, [draws, s, s, 2]), &device);
    // grid_sample pairs each input with its own grid: bring both to the same count (as real copies, not broadcast
    // views, which not every backend's grid_sample reads; they are small).
    let m = n.max(draws);
    let grid = if draws < m { grid.repeat_dim(0, m) } else { grid };
    let patches = if n < m { patches.repeat_dim(0, m) } else { patches };
    let options = || burn::tensor::ops::GridSampleOptions::default();
    let warped = patches.grid_sample_2d(grid.clone(), options());
    let mask = Tensor::<4>::ones([m, 1, p, p], &device).grid_sample_2d(grid, options());
    let mask = mask.expand([batch, channels, s, s]);
    let warped = warped.expand([batch, channels, s, s]);
    mask.clone() * warped + (mask.neg().add_scalar(1.0)) * images
}

/// How a patch is put on the images of one step.
#[derive(Clone, Debug, PartialEq)]
pub enum Paste {
    /// At a fixed place, pixel for pixel (AdvCLIP, evaluation).
    Fixed(PatchPlacement),
    /// Scaled, rotated and moved (targeted training with expectation over transformations, evaluation anywhere):
    /// one transform for the whole batch, or one per image.
    Transformed(Vec<PatchTransform>),
}

impl Paste {
    pub fn apply(&self, images: Tensor<4>, patch: Tensor<3>) -> Tensor<4> {
        self.apply_each(images, patch.unsqueeze())
    }

    /// Pastes `patches`: [1, 3, p, p] for the same patch on every image, or [B, 3, p, p] for each image's own copy.
    pub fn apply_each(&self, images: Tensor<4>, patches: Tensor<4>) -> Tensor<4> {
        match self {
            Paste::Fixed(placement) => {
                let [batch, channels, _, _] = images.dims();
                let (p, top, left) = (placement.size, placement.top, placement.left);
                let patches = patches.expand([batch, channels, p, p]);
                images.slice_assign([0..batch, 0..channels, top..top + p, left..left + p], patches)
            }
            Paste::Transformed(each) => paste_patches_transformed(images, patches, each),
        }
    }

    /// The paste of the images `rows` of the batch (a slice of a split batch).
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        match self {
            Paste::Transformed(each) if each.len() > 1 => Paste::Transformed(each[rows].to_vec()),
            same => same.clone(),
        }
    }
}

/// Applies CLIP's mean/std to [B, 3, S, S] pixels in [0, 1] (the model's input).
pub fn normalize_pixels(images: Tensor<4>) -> Tensor<4> {
    let device = images.device();
    let mean = Tensor::<1>::from_floats(crate::preprocess::CLIP_MEAN, &device).reshape([1, 3, 1, 1]);
    let std = Tensor::<1>::from_floats(crate::preprocess::CLIP_STD, &device).reshape([1, 3, 1, 1]);
    (images - mean) / std
}

/// Pastes a patch onto a full-size image where the model will see it: the placement is in the coordinates of the
/// model's input (the short side resized to S, then centre-cropped), mapped back to the image's own pixels.
pub fn paste_on_image(img: &image::RgbImage, patch: &[f32], placement: &PatchPlacement) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h) as f64;
    let scale = short / placement.image_size as f64;
    let (x0, y0) = (((w as f64 - short) / 2.0).round(), ((h as f64 - short) / 2.0).round());
    let side = ((placement.size as f64 * scale).round() as u32).max(1);
    let left = (x0 + placement.left as f64 * scale).round() as u32;
    let top = (y0 + placement.top as f64 * scale).round() as u32;
    let p = placement.size;
    let patch_img = crate::preprocess::unit_chw_to_image(patch, p as u32, p as u32);
    let resized =
        if side as usize == p { patch_img } else { crate::preprocess::resize_bicubic(&patch_img, side, side) };
    let mut out = img.clone();
    image::imageops::replace(&mut out, &resized, left as i64, top as i64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advclip_placement_matches_the_paper() {
        let p = PatchPlacement::advclip(224, 0.03).unwrap();
        assert_eq!((p.size, p.top, p.left), (38, 172, 172));
        let p = PatchPlacement::advclip(32, 0.03).unwrap();
        assert_eq!((p.size, p.top), (5, 25));
        assert!(PatchPlacement::advclip(224, 0.0).is_err());
        assert!(PatchPlacement::at(32, 8, 30, 0).is_err());
    }

    #[test]
    fn an_unrotated_full_scale_transform_is_the_fixed_paste() {
        let device = burn::tensor::Device::flex();
        let images = Tensor::<4>::zeros([1, 3, 8, 8], &device);
        let patch = Tensor::<3>::ones([3, 4, 4], &device);
        let t = PatchTransform { image_size: 8, center: (4.0, 4.0), side: 4.0, angle: 0.0, tilt: (0.0, 0.0) };
        let out: Vec<f32> = paste_patch_transformed(images, patch, &t).into_data().try_into_vec().unwrap();
        let expected: Vec<f32> = (0..3 * 64)
            .map(|i| if (2..6).contains(&(i % 64 / 8)) && (2..6).contains(&(i % 8)) { 1.0 } else { 0.0 })
            .collect();
        let worst = out.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        // Bilinear sampling with zero padding softens the patch's outer half-pixel ring only.
        assert!(out.iter().zip(&expected).filter(|(a, b)| (*a - *b).abs() > 1e-6).count() <= 3 * 12 * 4, "{worst}");
    }

    #[test]
    fn sampled_transforms_stay_near_the_patch_size_and_inside_the_image() {
        let ranges = TransformRanges::around_area(0.14);
        let nominal = 0.14f64.sqrt() * 64.0;
        let mut rng = crate::rng::SeededRng::new(3, "t");
        for _ in 0..200 {
            let t = PatchTransform::sample(64, &ranges, &mut rng);
            assert!(t.side >= 0.8 * nominal - 1e-9 && t.side <= 1.2 * nominal + 1e-9, "side {}", t.side);
            assert!(t.angle.abs() <= 22.5f64.to_radians() + 1e-9);
            let reach = t.side / 2.0 * (t.angle.cos().abs() + t.angle.sin().abs());
            for c in [t.center.0, t.center.1] {
                assert!(c - reach >= -1e-9 && c + reach <= 64.0 + 1e-9, "centre {c} reach {reach}");
            }
        }
    }

    /// Tilted toward +x, a 20 px patch's right edge shows nearer (taller, further right) and its left edge further
    /// (shorter, nearer the centre), by the projective factor; sampled tilted draws stay inside the image.
    #[test]
    fn a_tilted_patch_shows_in_perspective() {
        let t = PatchTransform { image_size: 64, center: (32.0, 32.0), side: 20.0, angle: 0.0, tilt: (0.2, 0.0) };
        let grid = t.sampling_grid();
        let inside = |row: usize, col: usize| {
            let (x, y) = (grid[2 * (row * 64 + col)], grid[2 * (row * 64 + col) + 1]);
            x.abs() <= 1.0 && y.abs() <= 1.0
        };
        // Flat, the patch spans columns 22..=41 and every column 20 rows. Tilted, the right edge q.x = 1 shows
        // 10 / (1 - 0.2) = 12.5 px right of the centre and the left edge 10 / 1.2 = 8.3 px left; a column at
        // offset u shows rows within 10 * (1 + 0.2 u / 10) px of the centre row.
        assert!(inside(32, 43) && !inside(32, 45), "the right edge reaches 12.5 px");
        assert!(inside(32, 24) && !inside(32, 23), "the left edge only 8.3 px");
        assert_eq!((0..64).filter(|&r| inside(r, 43)).count(), 24, "column 43 (u = 11.5) shows |v| <= 12.3");
        assert_eq!((0..64).filter(|&r| inside(r, 25)).count(), 18, "column 25 (u = -6.5) shows |v| <= 8.7");
        let ranges = TransformRanges::around_area(0.1).with_tilt(0.1);
        let mut rng = crate::rng::SeededRng::new(5, "t");
        for _ in 0..200 {
            let t = PatchTransform::sample(64, &ranges, &mut rng);
            assert!(t.tilt.0.abs() <= 0.1 && t.tilt.1.abs() <= 0.1);
            // Each corner q of the patch shows at centre + rotate(q / (1 - t.q)) half-sides: inside the image.
            let (sin, cos) = t.angle.sin_cos();
            for q in [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)] {
                let w = 1.0 - t.tilt.0 * q.0 - t.tilt.1 * q.1;
                let (rx, ry) = (q.0 / w * t.side / 2.0, q.1 / w * t.side / 2.0);
                let (x, y) = (t.center.0 + cos * rx - sin * ry, t.center.1 + sin * rx + cos * ry);
                assert!((0.0..=64.0).contains(&x) && (0.0..=64.0).contains(&y), "corner {q:?} shows at ({x}, {y})");
            }
        }
    }

    /// One batched paste with a transform and a patch per image equals each image pasted alone.
    #[test]
    fn a_transform_per_image_pastes_each_image_as_alone() {
        let device = burn::tensor::Device::flex();
        let ranges = TransformRanges::around_area(0.1).with_tilt(0.1);
        let mut rng = crate::rng::SeededRng::new(7, "t");
        let transforms: Vec<_> = (0..3).map(|_| PatchTransform::sample(16, &ranges, &mut rng)).collect();
        let images = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(rng.normals(3 * 3 * 16 * 16), [3, 3, 16, 16]),
            &device,
        );
        let patches =
            Tensor::<4>::from_data(burn::tensor::TensorData::new(rng.normals(3 * 3 * 5 * 5), [3, 3, 5, 5]), &device);
        let together =
            crate::host::read_f32(Paste::Transformed(transforms.clone()).apply_each(images.clone(), patches.clone()))
                .unwrap();
        for (i, t) in transforms.iter().enumerate() {
            let patch = patches.clone().narrow(0, i, 1).squeeze_dim(0);
            let alone =
                crate::host::read_f32(paste_patch_transformed(images.clone().narrow(0, i, 1), patch, t)).unwrap();
            let worst = alone.iter().zip(&together[i * alone.len()..]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-6, "image {i}: {worst}");
        }
    }

    #[test]
    fn transformed_paste_passes_gradients_to_the_patch() {
        let device = burn::tensor::Device::flex().autodiff();
        let images = Tensor::<4>::zeros([2, 3, 16, 16], &device);
        let patch = Tensor::<3>::ones([3, 5, 5], &device).require_grad();
        let t = PatchTransform::sample(16, &TransformRanges::around_area(0.1), &mut crate::rng::SeededRng::new(1, "t"));
        let out = paste_patch_transformed(images, patch.clone(), &t);
        let grad: Vec<f32> = patch.grad(&out.sum().backward()).unwrap().into_data().try_into_vec().unwrap();
        assert!(grad.iter().any(|g| *g > 0.0), "no gradient reached the patch");
    }
}
