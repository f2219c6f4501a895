//! `advclip convert`: a CLIP checkpoint copied with its float tensors stored as f16.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// A Hugging Face CLIP folder or a lone .safetensors file
    #[arg(long, value_name = "DIR|FILE")]
    weights: PathBuf,
    /// Output folder (config.json + model.safetensors)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Weight files above this are refused before reading (ViT-L/14 in f32 is 1.7 GB).
const MAX_WEIGHTS_FILE: u64 = 8 << 30;

pub fn run(args: ConvertArgs) -> Result<()> {
    let (weights, out) = (&args.weights, &args.out);
    let (file, config) = if weights.is_dir() {
        (weights.join("model.safetensors"), Some(weights.join("config.json")))
    } else {
        (weights.to_path_buf(), None)
    };
    let bytes = advclip::read_regular_file(&file, MAX_WEIGHTS_FILE)?;
    let name = file.display().to_string();
    let header = advclip::model::inspect_weights(&bytes, &name)?;
    let config_json = match config.filter(|c| c.exists()) {
        Some(c) => String::from_utf8(advclip::read_regular_file(&c, 1 << 20)?)
            .with_context(|| format!("{}: not UTF-8 text", c.display()))?,
        None => advclip::model::load::config_for(&header, None, &name)?.to_hf_json(),
    };
    let converted = advclip::model::convert_to_f16(&bytes, &name)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    advclip::write_atomically(&out.join("config.json"), config_json.as_bytes())?;
    advclip::write_atomically(&out.join("model.safetensors"), &converted)?;
    eprintln!("wrote {} ({} -> {} bytes)", out.display(), bytes.len(), converted.len());
    Ok(())
}
