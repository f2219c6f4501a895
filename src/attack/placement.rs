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
            return Err(Error::invalid(format!(
                "patch area fraction {area_fraction} must be in (0, 0.5)"
            )));
        }
        let size = (area_fraction * (image_size * image_size) as f64)
            .sqrt()
            .floor() as usize;
        let margin = (14.0 * image_size as f64 / 224.0).round() as usize;
        if size == 0 || size + margin > image_size {
            return Err(Error::invalid(format!(
                "a {area_fraction} patch does not fit a {image_size} px image"
            )));
        }
        let corner = image_size - margin - size;
        Ok(Self {
            image_size,
            size,
            top: corner,
            left: corner,
        })
    }

    /// A placement at an explicit position (checked to fit).
    pub fn at(image_size: usize, size: usize, top: usize, left: usize) -> Result<Self> {
        if size == 0 || top + size > image_size || left + size > image_size {
            return Err(Error::invalid(format!(
                "a {size} px patch at ({top}, {left}) does not fit a {image_size} px image"
            )));
        }
        Ok(Self {
            image_size,
            size,
            top,
            left,
        })
    }

    /// The share of the image the patch covers.
    pub fn area_fraction(&self) -> f64 {
        (self.size * self.size) as f64 / (self.image_size * self.image_size) as f64
    }
}

/// Replaces the placement's pixels of every image by the patch: `x_adv = mask * P + (1 - mask) * x`.
/// `images`: [B, 3, S, S] in [0, 1]; `patch`: [3, p, p] in [0, 1]. Gradients flow to the patch.
pub fn paste_patch(images: Tensor<4>, patch: Tensor<3>, placement: &PatchPlacement) -> Tensor<4> {
    let [batch, channels, _, _] = images.dims();
    let p = placement.size;
    let patch = patch.unsqueeze::<4>().expand([batch, channels, p, p]);
    images.slice_assign(
        [
            0..batch,
            0..channels,
            placement.top..placement.top + p,
            placement.left..placement.left + p,
        ],
        patch,
    )
}

/// Applies CLIP's mean/std to [B, 3, S, S] pixels in [0, 1] (the model's input).
pub fn normalize_pixels(images: Tensor<4>) -> Tensor<4> {
    let device = images.device();
    let mean =
        Tensor::<1>::from_floats(crate::preprocess::CLIP_MEAN, &device).reshape([1, 3, 1, 1]);
    let std = Tensor::<1>::from_floats(crate::preprocess::CLIP_STD, &device).reshape([1, 3, 1, 1]);
    (images - mean) / std
}

/// Pastes a patch onto a full-size image where the model will see it: the placement is in the coordinates of the
/// model's input (the short side resized to S, then centre-cropped), mapped back to the image's own pixels.
pub fn paste_on_image(
    img: &image::RgbImage,
    patch: &[f32],
    placement: &PatchPlacement,
) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let short = w.min(h) as f64;
    let scale = short / placement.image_size as f64;
    let (x0, y0) = (
        ((w as f64 - short) / 2.0).round(),
        ((h as f64 - short) / 2.0).round(),
    );
    let side = ((placement.size as f64 * scale).round() as u32).max(1);
    let left = (x0 + placement.left as f64 * scale).round() as u32;
    let top = (y0 + placement.top as f64 * scale).round() as u32;
    let p = placement.size;
    let patch_img = crate::preprocess::unit_chw_to_image(patch, p as u32, p as u32);
    let resized = if side as usize == p {
        patch_img
    } else {
        crate::preprocess::resize_bicubic(&patch_img, side, side)
    };
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
}
