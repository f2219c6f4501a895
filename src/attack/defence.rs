//! Input transformations a defender might apply, to measure how a patch survives them: JPEG, downscaling, blur, crop.

use image::{ImageFormat, RgbImage, imageops};

use crate::error::{Error, Result};
use crate::rng::SeededRng;

#[derive(Clone, Debug, PartialEq)]
pub enum Defence {
    /// JPEG re-encoding at this quality (1-100).
    Jpeg(u8),
    /// Downscale by this factor (0-1), then back up (bilinear).
    Resize(f32),
    /// Gaussian blur with this sigma in pixels.
    Blur(f32),
    /// Keep a random square crop of this fraction of the side, resized back.
    Crop(f32),
}

impl Defence {
    /// Parses `jpeg:75`, `resize:0.5`, `blur:1.5`, `crop:0.9`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "defence \"{spec}\": use jpeg:QUALITY (1-100), resize:FACTOR (0-1), blur:SIGMA (>0) or crop:FRACTION (0-1)"
            ))
        };
        let (kind, value) = spec.split_once(':').ok_or_else(bad)?;
        let v: f32 = value.trim().parse().map_err(|_| bad())?;
        match kind.trim() {
            "jpeg" if (1.0..=100.0).contains(&v) => Ok(Defence::Jpeg(v as u8)),
            "resize" if v > 0.0 && v <= 1.0 => Ok(Defence::Resize(v)),
            "blur" if v > 0.0 && v <= 50.0 => Ok(Defence::Blur(v)),
            "crop" if v > 0.0 && v <= 1.0 => Ok(Defence::Crop(v)),
            _ => Err(bad()),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Defence::Jpeg(q) => format!("jpeg:{q}"),
            Defence::Resize(f) => format!("resize:{f}"),
            Defence::Blur(s) => format!("blur:{s}"),
            Defence::Crop(f) => format!("crop:{f}"),
        }
    }

    /// Applies the defence; `key` seeds the random crop so clean and patched copies of one image get the same crop.
    pub fn apply(&self, img: &RgbImage, key: u64) -> Result<RgbImage> {
        let (w, h) = img.dimensions();
        Ok(match *self {
            Defence::Jpeg(quality) => {
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
                    .encode_image(img)
                    .map_err(|e| Error::invalid(format!("jpeg defence: {e}")))?;
                image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg)
                    .map_err(|e| Error::invalid(format!("jpeg defence: {e}")))?
                    .to_rgb8()
            }
            Defence::Resize(f) => {
                let small = imageops::resize(
                    img,
                    ((w as f32 * f).round() as u32).max(1),
                    ((h as f32 * f).round() as u32).max(1),
                    imageops::FilterType::Triangle,
                );
                imageops::resize(&small, w, h, imageops::FilterType::Triangle)
            }
            Defence::Blur(sigma) => imageops::blur(img, sigma),
            Defence::Crop(f) => {
                let (cw, ch) = (((w as f32 * f).round() as u32).max(1), ((h as f32 * f).round() as u32).max(1));
                let mut rng = SeededRng::new(key, "crop defence");
                let (x, y) = (rng.below((w - cw + 1) as usize) as u32, rng.below((h - ch + 1) as usize) as u32);
                let crop = imageops::crop_imm(img, x, y, cw, ch).to_image();
                imageops::resize(&crop, w, h, imageops::FilterType::Triangle)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_errors() {
        assert_eq!(Defence::parse("jpeg:75").unwrap(), Defence::Jpeg(75));
        assert_eq!(Defence::parse("resize:0.5").unwrap(), Defence::Resize(0.5));
        for bad in ["jpeg", "jpeg:0", "resize:2", "blur:-1", "sharpen:1", "crop:x"] {
            assert!(Defence::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defences_keep_the_size_and_change_pixels() {
        let img = RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, ((x ^ y) * 8) as u8]));
        for spec in ["jpeg:30", "resize:0.25", "blur:2", "crop:0.5"] {
            let out = Defence::parse(spec).unwrap().apply(&img, 1).unwrap();
            assert_eq!(out.dimensions(), (32, 32), "{spec}");
            assert_ne!(out, img, "{spec} changed nothing");
        }
    }
}
