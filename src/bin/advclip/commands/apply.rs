//! `advclip apply`: a patch pasted onto images where its sidecar says.

use std::path::PathBuf;

use advclip::attack::patch_file::load_patch;
use anyhow::{Context, Result};

use super::save_png;

#[derive(clap::Args)]
pub struct ApplyArgs {
    #[arg(long, value_name = "PATCH.png")]
    patch: PathBuf,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: ApplyArgs) -> Result<()> {
    let (patch, sidecar) = load_patch(&args.patch)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    for path in &args.images {
        let img = advclip::preprocess::read_image_file(path)?;
        let patched = advclip::attack::placement::paste_on_image(&img, &patch, &sidecar.placement);
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        let dest = args.out.join(format!("{name}.png"));
        save_png(&patched, &dest)?;
        println!("{}", dest.display());
    }
    Ok(())
}
