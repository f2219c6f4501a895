//! The non-printability score (Sharif et al. 2016): how far a patch's pixels lie from the colours a printer makes.
//!
//! A printer reproduces only part of the sRGB cube, and a camera sees the print through its own curves, so a patch
//! meant to be printed is held near a palette of colours known to survive that trip: each pixel's distance to the
//! nearest palette colour, averaged over the patch, is added to the training loss with a weight. The palette that
//! matters is the one measured from the user's own printer and camera (print a chart, photograph it, read the
//! colours back: `advclip train --palette`); the default is a stand-in, a 3 x 3 x 3 grid 10 % inside the cube's faces,
//! away from the saturated corners that printers and cameras clip.

use burn::tensor::{Tensor, TensorData};

use crate::{Error, Result};

/// The most colours a palette may have (Sharif et al. measured 30).
pub const MAX_PALETTE_COLOURS: usize = 256;
/// The largest weight the score may have beside the target's cross-entropy: far past it the patch only tracks the
/// palette.
pub const MAX_PRINTABILITY_WEIGHT: f64 = 100.0;
/// Inside the square root, so that a pixel exactly on a palette colour still has a finite gradient (as in Thys et
/// al.'s implementation).
const DISTANCE_EPS: f32 = 1e-6;

/// The printability term of a targeted run: its weight and the printable colours (RGB in [0, 1]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Printability {
    pub weight: f64,
    pub palette: Vec<[f32; 3]>,
}

impl Printability {
    /// The term at `weight` with the default palette.
    pub fn new(weight: f64) -> Self {
        Self { weight, palette: default_palette() }
    }

    /// A weight in [0, `MAX_PRINTABILITY_WEIGHT`] and 1-`MAX_PALETTE_COLOURS` colours in [0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(self.weight.is_finite() && (0.0..=MAX_PRINTABILITY_WEIGHT).contains(&self.weight)) {
            return Err(Error::invalid(format!(
                "the printability weight must be between 0 and {MAX_PRINTABILITY_WEIGHT}, not {}",
                self.weight
            )));
        }
        check_palette(&self.palette)
    }
}

/// 1-`MAX_PALETTE_COLOURS` colours, every component in [0, 1].
fn check_palette(palette: &[[f32; 3]]) -> Result<()> {
    if !(1..=MAX_PALETTE_COLOURS).contains(&palette.len()) {
        return Err(Error::invalid(format!(
            "a printable palette needs 1 to {MAX_PALETTE_COLOURS} colours, not {}",
            palette.len()
        )));
    }
    if let Some(bad) = palette.iter().find(|c| c.iter().any(|v| !(0.0..=1.0).contains(v))) {
        return Err(Error::invalid(format!("palette colour {bad:?}: components must lie in [0, 1]")));
    }
    Ok(())
}

/// The stand-in palette: every combination of 0.1, 0.5 and 0.9 in red, green and blue (27 colours).
pub fn default_palette() -> Vec<[f32; 3]> {
    const LEVELS: [f32; 3] = [0.1, 0.5, 0.9];
    LEVELS.iter().flat_map(|&r| LEVELS.iter().flat_map(move |&g| LEVELS.iter().map(move |&b| [r, g, b]))).collect()
}

/// Reads a palette written as comma-separated hex colours (`#e02020,#f0f0f0`, the `#` optional).
pub fn parse_palette(text: &str) -> Result<Vec<[f32; 3]>> {
    let colour = |item: &str| -> Result<[f32; 3]> {
        let hex = item.trim().trim_start_matches('#');
        let bad =
            || Error::invalid(format!("palette colour \"{}\": write it as six hex digits, like #e02020", item.trim()));
        if hex.len() != 6 || !hex.is_ascii() {
            return Err(bad());
        }
        let channel =
            |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map(|v| f32::from(v) / 255.0).map_err(|_| bad());
        Ok([channel(0)?, channel(2)?, channel(4)?])
    };
    let palette = text.split(',').filter(|s| !s.trim().is_empty()).map(colour).collect::<Result<Vec<_>>>()?;
    check_palette(&palette)?;
    Ok(palette)
}

/// The mean over the patch's pixels of the distance (Euclidean, in RGB) to the nearest palette colour, [1];
/// `patch` is [3, p, p] in [0, 1]. Differentiable: each pixel's gradient points away from its nearest colour.
pub fn non_printability_score(patch: Tensor<3>, palette: &[[f32; 3]]) -> Tensor<1> {
    let [channels, height, width] = patch.dims();
    let pixels = patch.reshape([channels, height * width]).transpose().unsqueeze_dim::<3>(1); // [n, 1, 3]
    let colours = TensorData::new(palette.iter().flatten().copied().collect::<Vec<f32>>(), [1, palette.len(), 3]);
    let colours = Tensor::<3>::from_data(colours, &pixels.device()); // [1, c, 3]
    let distances = (pixels - colours).powi_scalar(2).sum_dim(2).add_scalar(DISTANCE_EPS).sqrt(); // [n, c, 1]
    distances.min_dim(1).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// The score, computed by hand on the host pixel by pixel, for a random patch and palette.
    fn by_hand(pixels: &[f32], size: usize, palette: &[[f32; 3]]) -> f64 {
        let n = size * size;
        let total: f64 = (0..n)
            .map(|i| {
                palette
                    .iter()
                    .map(|c| {
                        let sq: f64 = (0..3).map(|ch| (f64::from(pixels[ch * n + i]) - f64::from(c[ch])).powi(2)).sum();
                        (sq + f64::from(DISTANCE_EPS)).sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .sum();
        total / n as f64
    }

    #[test]
    fn the_score_is_the_mean_distance_to_the_nearest_colour() {
        let device = Device::flex();
        let patch = Tensor::<3>::random([3, 5, 5], Distribution::Uniform(0.0, 1.0), &device);
        let pixels: Vec<f32> = patch.to_data().try_to_vec::<f32>().unwrap();
        for palette in [default_palette(), vec![[0.2, 0.7, 0.1]], vec![[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]] {
            let got = non_printability_score(patch.clone(), &palette).into_scalar::<f32>();
            let want = by_hand(&pixels, 5, &palette);
            assert!((f64::from(got) - want).abs() < 1e-5, "{got} against {want}");
        }
        // A patch made of palette colours scores only the guard's sqrt(1e-6).
        let on_palette =
            Tensor::<3>::from_data(TensorData::new(vec![0.5f32, 0.9, 0.1, 0.1, 0.5, 0.9], [3, 1, 2]), &device);
        let score = non_printability_score(on_palette, &default_palette()).into_scalar::<f32>();
        assert!((score - 1e-3).abs() < 1e-6, "{score}");
    }

    /// The gradient matches finite differences of the hand computation: each pixel moves toward its nearest colour.
    #[test]
    fn the_gradient_pulls_each_pixel_toward_its_nearest_colour() {
        let device = Device::flex().autodiff();
        // Fixed pixels, none within the finite difference's step of a tie between two palette colours.
        let pixels: Vec<f32> = (0..27).map(|i| (i as f32 * 0.377 + 0.05) % 1.0).collect();
        let patch = Tensor::<3>::from_data(TensorData::new(pixels.clone(), [3, 3, 3]), &device).require_grad();
        let palette = default_palette();
        let score = non_printability_score(patch.clone(), &palette);
        let gradient: Vec<f32> = patch.grad(&score.backward()).unwrap().to_data().try_to_vec::<f32>().unwrap();
        for i in [0, 4, 13, 26] {
            let h = 1e-3;
            let mut up = pixels.clone();
            up[i] += h;
            let mut down = pixels.clone();
            down[i] -= h;
            let numeric = (by_hand(&up, 3, &palette) - by_hand(&down, 3, &palette)) / (2.0 * f64::from(h));
            assert!((f64::from(gradient[i]) - numeric).abs() < 1e-3, "pixel {i}: {} against {numeric}", gradient[i]);
        }
    }

    #[test]
    fn palettes_parse_from_hex_and_bad_ones_say_why() {
        assert_eq!(parse_palette("#ff0000, 00ff80").unwrap(), vec![[1.0, 0.0, 0.0], [0.0, 1.0, 128.0 / 255.0]]);
        assert_eq!(default_palette().len(), 27);
        for (text, why) in [("", "1 to 256 colours"), ("#ff00", "six hex digits"), ("#gg0000", "six hex digits")] {
            let err = parse_palette(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let too_many = vec!["#808080"; MAX_PALETTE_COLOURS + 1].join(",");
        assert!(parse_palette(&too_many).is_err());
        for weight in [-1.0, f64::NAN, MAX_PRINTABILITY_WEIGHT * 2.0] {
            assert!(Printability::new(weight).validate().is_err(), "{weight}");
        }
        assert!(Printability::new(1.0).validate().is_ok());
    }
}
