//! `advclip demo`: the main job, offline: unseen shape scenes classified clean and wearing a patch.

use std::path::PathBuf;

use advclip::attack::patch_file::load_patch;
use anyhow::{Context, Result};
use serde_json::json;

use super::{device, load_model_on, save_png};
use crate::args::DeviceFlag;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The model (default: the bundled mini CLIP)
    #[arg(long, value_name = "DIR|FILE", default_value = "assets/mini-clip")]
    weights: PathBuf,
    /// The patch (default: the bundled AdvCLIP patch)
    #[arg(long, value_name = "PATCH.png", default_value = "assets/patches/advclip.png")]
    patch: PathBuf,
    #[arg(long, default_value_t = 12)]
    count: usize,
    /// Which unseen scenes (offset from the seeds training never uses)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the clean and patched images and side_by_side.png
    #[arg(long, value_name = "DIR", default_value = "demo-out")]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceFlag,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let DemoArgs { weights, patch: patch_path, count, seed, out, device: flag, json } = args;
    let (patch_path, out) = (patch_path.as_path(), out.as_path());
    let (patch, sidecar) = load_patch(patch_path)?;
    let device = device(flag)?;
    let model = load_model_on(&weights, &device)?;
    let result = advclip::demo::run_demo(&model, &patch, &sidecar.placement, count, seed, &device)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let save = |img: &image::RgbImage, name: String| save_png(img, &out.join(name));
    for (i, (c, p)) in result.clean.iter().zip(&result.patched).enumerate() {
        save(c, format!("{i:02}_clean.png"))?;
        save(p, format!("{i:02}_patched.png"))?;
    }
    save(&advclip::demo::captioned_grid(&result, 3, 320), "side_by_side.png".into())?;
    if json {
        println!(
            "{}",
            json!({"model": model.id(), "patch": patch_path.display().to_string(), "rows": result.rows,
                "clean_accuracy": result.clean_accuracy, "patched_accuracy": result.patched_accuracy, "fooling_rate": result.fooling_rate})
        );
        return Ok(());
    }
    println!("{} unseen scenes, model {}, patch {} ({})", count, model.id(), patch_path.display(), sidecar.mode);
    println!("{:3} {:16} {:24} {:24}", "#", "truth", "clean", "patched");
    for (i, r) in result.rows.iter().enumerate() {
        let flip = if r.patched_top != r.clean_top { "  <- flipped" } else { "" };
        println!(
            "{i:3} {:16} {:24} {:24}{flip}",
            r.truth,
            format!("{} {:.2}", r.clean_top, r.clean_prob),
            format!("{} {:.2}", r.patched_top, r.patched_prob)
        );
    }
    println!(
        "clean accuracy {:.2}, patched accuracy {:.2}, fooling rate {:.2}; images in {} (side_by_side.png)",
        result.clean_accuracy,
        result.patched_accuracy,
        result.fooling_rate,
        out.display()
    );
    Ok(())
}
