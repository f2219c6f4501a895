//! A patch on disk: always a real PNG image, with a JSON sidecar (same name, `.json`) saying how to use it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::placement::PatchPlacement;
use crate::error::{Error, Result};

/// What the sidecar records; `metrics` are the numbers measured when the patch was saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchSidecar {
    /// "advclip" or "targeted".
    pub mode: String,
    /// Which CLIP the patch was trained against (see `model_id`).
    pub model: String,
    pub image_size: usize,
    pub area_fraction: f64,
    pub placement: PatchPlacement,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub seed: u64,
    pub steps: usize,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

pub fn sidecar_path(png: &Path) -> PathBuf {
    png.with_extension("json")
}

/// Writes `PATCH.png` and `PATCH.json` atomically.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_patch(png: &Path, pixels: &[f32], sidecar: &PatchSidecar) -> Result<()> {
    let size = sidecar.placement.size;
    if pixels.len() != 3 * size * size {
        return Err(Error::invalid(format!(
            "a {size} px patch needs {} values, got {}",
            3 * size * size,
            pixels.len()
        )));
    }
    let bytes = encode_patch_png(pixels, size, &png.display().to_string())?;
    crate::write_atomically(png, &bytes)?;
    let json = serde_json::to_vec_pretty(sidecar).expect("the sidecar always serialises");
    crate::write_atomically(&sidecar_path(png), &json)
}

/// The PNG bytes of a `size` x `size` patch given as CHW pixels in [0, 1].
pub fn encode_patch_png(pixels: &[f32], size: usize, name: &str) -> Result<Vec<u8>> {
    if pixels.len() != 3 * size * size {
        return Err(Error::invalid(format!(
            "{name}: a {size} px patch needs {} values, got {}",
            3 * size * size,
            pixels.len()
        )));
    }
    let mut bytes = Vec::new();
    crate::preprocess::unit_chw_to_image(pixels, size as u32, size as u32)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::image(name, format!("encoding PNG: {e}")))?;
    Ok(bytes)
}

/// Parses a patch from its PNG bytes and sidecar JSON (named `name` in errors), checking they agree; returns CHW
/// pixels in [0, 1].
pub fn decode_patch(png: &[u8], json: &str, name: &str) -> Result<(Vec<f32>, PatchSidecar)> {
    let sidecar: PatchSidecar =
        serde_json::from_str(json).map_err(|e| Error::invalid(format!("{name}: not a patch sidecar: {e}")))?;
    let image = crate::preprocess::decode_image(png, name)?;
    let size = sidecar.placement.size;
    if image.width() as usize != size || image.height() as usize != size {
        return Err(Error::image(
            name,
            format!(
                "is {}x{} but its sidecar says a {size}x{size} patch; the PNG and the JSON do not belong together",
                image.width(),
                image.height()
            ),
        ));
    }
    if sidecar.placement.top + size > sidecar.image_size || sidecar.placement.left + size > sidecar.image_size {
        return Err(Error::invalid(format!(
            "{name}: the sidecar places the patch outside its {} px image",
            sidecar.image_size
        )));
    }
    Ok((crate::preprocess::to_unit_chw(&image), sidecar))
}

/// Reads a patch PNG and its sidecar, checking they agree; returns CHW pixels in [0, 1].
#[cfg(not(target_arch = "wasm32"))]
pub fn load_patch(png: &Path) -> Result<(Vec<f32>, PatchSidecar)> {
    let json_path = sidecar_path(png);
    let json = std::fs::read_to_string(&json_path).map_err(|e| Error::io(json_path.display(), e))?;
    let bytes = std::fs::read(png).map_err(|e| Error::io(png.display(), e))?;
    decode_patch(&bytes, &json, &png.display().to_string())
}
