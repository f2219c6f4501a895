//! A patch on disk: always a real PNG image, with a typed, versioned JSON sidecar (same name, `.json`) saying what
//! it is, where it goes and how it was trained; sidecars are validated on read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::placement::PatchPlacement;
use super::targeted::TrainedSpot;
use crate::error::{Error, Result};

/// The sidecar format written now. Version 1 (no `version` key, an untyped `metrics` object) is still read.
pub const SIDECAR_VERSION: u32 = 2;

/// The largest model input a sidecar may name (CLIP's largest is 336 px).
const MAX_IMAGE_SIZE: usize = 4096;

/// Which attack made a patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchMode {
    /// AdvCLIP's universal, untargeted patch from a generator.
    Advclip,
    /// Patch pixels optimised toward one label.
    Targeted,
}

impl std::fmt::Display for PatchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PatchMode::Advclip => "advclip",
            PatchMode::Targeted => "targeted",
        })
    }
}

impl PatchMode {
    /// What the training rate of this mode measures.
    pub fn rate_name(self) -> &'static str {
        match self {
            PatchMode::Advclip => "fooled",
            PatchMode::Targeted => "on target",
        }
    }
}

/// A loss as the sidecar stores it: a number, or `null` for a step whose loss was not finite.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "Option<f32>", into = "Option<f32>")]
pub struct Loss(pub f32);

impl From<Option<f32>> for Loss {
    fn from(v: Option<f32>) -> Self {
        Loss(v.unwrap_or(f32::NAN))
    }
}

impl From<Loss> for Option<f32> {
    fn from(l: Loss) -> Self {
        l.0.is_finite().then_some(l.0)
    }
}

/// The losses of one training step, by mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum StepLosses {
    /// AdvCLIP: the discriminator's loss, the generator's total and its four terms.
    AdvClip { discriminator: Loss, generator: Loss, embedding: Loss, topology: Loss, gan: Loss, reconstruction: Loss },
    /// Targeted: the cross-entropy toward the target, and with a printability term the patch's non-printability
    /// score (its pixels' mean distance to the nearest palette colour, unweighted).
    Targeted {
        cross_entropy: Loss,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        palette_distance: Option<Loss>,
    },
}

impl StepLosses {
    /// The loss a progress line or plot shows: the generator's total, or the cross-entropy.
    pub fn headline(&self) -> f32 {
        match self {
            StepLosses::AdvClip { generator, .. } => generator.0,
            StepLosses::Targeted { cross_entropy, .. } => cross_entropy.0,
        }
    }

    /// Name and value of each loss, for progress lines.
    pub fn named(&self) -> Vec<(&'static str, f32)> {
        match self {
            StepLosses::AdvClip { discriminator, generator, embedding, topology, gan, reconstruction } => vec![
                ("D", discriminator.0),
                ("G", generator.0),
                ("adv", embedding.0),
                ("topo", topology.0),
                ("gan", gan.0),
                ("rec", reconstruction.0),
            ],
            StepLosses::Targeted { cross_entropy, palette_distance } => {
                let mut named = vec![("loss", cross_entropy.0)];
                named.extend(palette_distance.map(|d| ("palette", d.0)));
                named
            }
        }
    }
}

/// What training measured when the patch was saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingMetrics {
    /// The last step's losses.
    pub losses: Option<StepLosses>,
    /// Mean over the last `RATE_WINDOW` steps of the share of the batch fooled (AdvCLIP) or sent to the target
    /// (targeted); `None` when no labels were given to measure it.
    pub rate: Option<f64>,
    /// Dataset images that could not be read, each counted once.
    pub skipped_images: usize,
}

/// Everything a patch's PNG needs beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSidecar {
    pub version: u32,
    pub mode: PatchMode,
    /// Which CLIP the patch was trained against (see `Clip::id`).
    pub model: String,
    pub image_size: usize,
    pub area_fraction: f64,
    /// Where the patch is pasted.
    pub placement: PatchPlacement,
    /// The label a targeted patch sends images to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Where a targeted patch was trained to work (an AdvCLIP patch is always trained at its placement: `fixed`).
    pub trained_spot: TrainedSpot,
    pub seed: u64,
    pub steps: usize,
    /// AdvCLIP generator terms the run left out (an ablation); absent for the attack as published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<crate::attack::losses::LossTerm>,
    /// The non-printability term a targeted patch was trained with (its weight and palette), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printability: Option<crate::attack::printability::Printability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingMetrics>,
}

impl PatchSidecar {
    /// Parses and validates a sidecar; `name` names it in errors. Version 1 sidecars are read too.
    pub fn from_json(json: &str, name: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid(format!("{name}: not a usable patch sidecar: {why}"));
        let mut value: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if value.get("version").is_none() {
            value = from_version_1(value).map_err(bad)?;
        }
        let sidecar: PatchSidecar = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        sidecar.validate().map_err(bad)?;
        Ok(sidecar)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a sidecar always serialises")
    }

    /// The sidecar's fields agree with each other and with what a patch can be.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.version != SIDECAR_VERSION {
            return Err(format!("version {} (this advclip reads 1 and {SIDECAR_VERSION})", self.version));
        }
        let p = &self.placement;
        if self.image_size == 0 || self.image_size > MAX_IMAGE_SIZE {
            return Err(format!("image_size {} is not between 1 and {MAX_IMAGE_SIZE}", self.image_size));
        }
        if p.image_size != self.image_size {
            return Err(format!("its placement is for {} px images, not {}", p.image_size, self.image_size));
        }
        PatchPlacement::at(p.image_size, p.size, p.top, p.left)
            .map_err(|e| format!("the placement does not fit the image: {e}"))?;
        if (self.area_fraction - p.area_fraction()).abs() > 1e-6 {
            return Err(format!(
                "area_fraction {} disagrees with its {} px patch on a {} px image ({})",
                self.area_fraction,
                p.size,
                p.image_size,
                p.area_fraction()
            ));
        }
        match (self.mode, &self.target) {
            (PatchMode::Targeted, None) => return Err("a targeted patch without a target".into()),
            (PatchMode::Targeted, Some(t)) if t.trim().is_empty() => return Err("an empty target".into()),
            (PatchMode::Advclip, Some(_)) => return Err("an AdvCLIP patch with a target".into()),
            (PatchMode::Advclip, None) if self.trained_spot != TrainedSpot::Fixed => {
                return Err("an AdvCLIP patch is trained at its placement (trained_spot \"fixed\")".into());
            }
            _ => {}
        }
        if let Some(printability) = &self.printability {
            printability.validate().map_err(|e| format!("printability: {e}"))?;
        }
        if let Some(rate) = self.training.as_ref().and_then(|t| t.rate)
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(format!("a training rate of {rate}, outside [0, 1]"));
        }
        Ok(())
    }
}

/// Rewrites a version 1 sidecar (mode as a string, an untyped `metrics` object) as version 2.
fn from_version_1(mut v: serde_json::Value) -> std::result::Result<serde_json::Value, String> {
    use serde_json::{Value, json};
    let object = v.as_object_mut().ok_or("expected a JSON object")?;
    let metrics = object.remove("metrics").unwrap_or(Value::Null);
    let number = |key: &str| metrics.get(key).and_then(Value::as_f64);
    let advclip = object.get("mode").and_then(Value::as_str) == Some("advclip");
    let losses = if advclip {
        let keys = ["D", "G", "adv", "topo", "gan", "rec"].map(|k| number(&format!("loss_{k}")));
        keys.iter().all(Option::is_some).then(|| {
            let [d, g, adv, topo, gan, rec] = keys;
            json!({ "discriminator": d, "generator": g, "embedding": adv, "topology": topo, "gan": gan,
                    "reconstruction": rec })
        })
    } else {
        number("loss_loss").or(number("loss")).map(|l| json!({ "cross_entropy": l }))
    };
    let rate = number(if advclip { "train_fooling_rate" } else { "train_targeted_success_rate" });
    let spot =
        if advclip { json!("fixed") } else { metrics.get("trained_placement").cloned().unwrap_or(json!("random")) };
    object.insert("version".into(), json!(SIDECAR_VERSION));
    object.insert("trained_spot".into(), spot);
    if losses.is_some() || rate.is_some() {
        let skipped = metrics.get("skipped_images").and_then(Value::as_u64).unwrap_or(0);
        object.insert("training".into(), json!({ "losses": losses, "rate": rate, "skipped_images": skipped }));
    }
    Ok(v)
}

pub fn sidecar_path(png: &Path) -> PathBuf {
    png.with_extension("json")
}

/// Writes `PATCH.png` and `PATCH.json` atomically.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_patch(png: &Path, pixels: &[f32], sidecar: &PatchSidecar) -> Result<()> {
    let bytes = encode_patch_png(pixels, sidecar.placement.size, &png.display().to_string())?;
    crate::write_atomically(png, &bytes)?;
    crate::write_atomically(&sidecar_path(png), sidecar.to_json().as_bytes())
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
    crate::preprocess::encode_png(&crate::preprocess::unit_chw_to_image(pixels, size as u32, size as u32), name)
}

/// Parses a patch from its PNG bytes and sidecar JSON (named `name` in errors), checking they agree; returns CHW
/// pixels in [0, 1].
pub fn decode_patch(png: &[u8], json: &str, name: &str) -> Result<(Vec<f32>, PatchSidecar)> {
    let sidecar = PatchSidecar::from_json(json, name)?;
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
    Ok((crate::preprocess::to_unit_chw(&image), sidecar))
}

/// Reads a patch PNG and its sidecar, checking they agree; returns CHW pixels in [0, 1].
#[cfg(not(target_arch = "wasm32"))]
pub fn load_patch(png: &Path) -> Result<(Vec<f32>, PatchSidecar)> {
    const MAX_PATCH_FILE: u64 = 64 << 20;
    let json_path = sidecar_path(png);
    let json = crate::read_regular_file(&json_path, MAX_PATCH_FILE)?;
    let json =
        String::from_utf8(json).map_err(|_| Error::invalid(format!("{}: not UTF-8 text", json_path.display())))?;
    let bytes = crate::read_regular_file(png, MAX_PATCH_FILE)?;
    decode_patch(&bytes, &json, &png.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_TARGETED: &str = r#"{"mode":"targeted","model":"m","image_size":64,"area_fraction":0.140625,
        "placement":{"image_size":64,"size":24,"top":36,"left":36},"target":"green star","seed":0,"steps":600,
        "metrics":{"loss_loss":0.0144,"train_targeted_success_rate":1.0,"skipped_images":0,"trained_placement":"fixed"}}"#;

    #[test]
    fn a_version_1_sidecar_reads_as_version_2_with_its_numbers() {
        let s = PatchSidecar::from_json(V1_TARGETED, "old.json").unwrap();
        assert_eq!(s.version, SIDECAR_VERSION);
        assert_eq!(s.mode, PatchMode::Targeted);
        assert_eq!(s.trained_spot, TrainedSpot::Fixed);
        let t = s.training.as_ref().unwrap();
        assert_eq!(t.rate, Some(1.0));
        assert_eq!(t.losses, Some(StepLosses::Targeted { cross_entropy: Loss(0.0144), palette_distance: None }));
        // And it round-trips through the new format unchanged.
        assert_eq!(PatchSidecar::from_json(&s.to_json(), "new.json").unwrap(), s);
    }

    #[test]
    fn inconsistent_sidecars_are_refused_with_the_reason() {
        let cases = [
            (r#""top":36"#, r#""top":18446744073709551615"#, "does not fit"),
            (r#""area_fraction":0.140625"#, r#""area_fraction":0.9"#, "disagrees"),
            (r#""target":"green star","#, "", "without a target"),
            (r#""train_targeted_success_rate":1.0"#, r#""train_targeted_success_rate":3.0"#, "outside [0, 1]"),
            (r#""image_size":64,"area"#, r#""image_size":0,"area"#, "between 1 and"),
        ];
        for (from, to, why) in cases {
            let json = V1_TARGETED.replace(from, to);
            assert_ne!(json, V1_TARGETED, "{from}");
            let e = PatchSidecar::from_json(&json, "bad.json").unwrap_err().to_string();
            assert!(e.starts_with("bad.json: not a usable patch sidecar") && e.contains(why), "{from}: {e}");
        }
        // A version 2 sidecar's printability term: a usable one round-trips, a bad palette is refused.
        let mut printable = PatchSidecar::from_json(V1_TARGETED, "old.json").unwrap();
        printable.printability = Some(crate::attack::Printability::new(1.5));
        assert_eq!(PatchSidecar::from_json(&printable.to_json(), "p.json").unwrap(), printable);
        printable.printability.as_mut().unwrap().palette = vec![[0.5, 1.5, 0.0]];
        let e = PatchSidecar::from_json(&printable.to_json(), "p.json").unwrap_err().to_string();
        assert!(e.contains("printability: palette colour"), "{e}");
        let e = PatchSidecar::from_json(r#"{"version":9}"#, "v.json").unwrap_err().to_string();
        assert!(e.contains("v.json"), "{e}");
    }

    #[test]
    fn a_non_finite_loss_is_stored_as_null_and_read_back_as_nan() {
        let losses = StepLosses::Targeted { cross_entropy: Loss(f32::NAN), palette_distance: None };
        let json = serde_json::to_string(&losses).unwrap();
        assert_eq!(json, r#"{"cross_entropy":null}"#);
        let back: StepLosses = serde_json::from_str(&json).unwrap();
        assert!(back.headline().is_nan());
    }
}
