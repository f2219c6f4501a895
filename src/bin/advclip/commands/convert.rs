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

pub fn run(args: ConvertArgs) -> Result<()> {
    let (weights, out) = (&args.weights, &args.out);
    let (file, config) = if weights.is_dir() {
        (weights.join("model.safetensors"), Some(weights.join("config.json")))
    } else {
        (weights.to_path_buf(), None)
    };
    let bytes = advclip::model::load::read_weights_file(&file)?;
    let name = file.display().to_string();
    let header = advclip::model::inspect_weights(&bytes, &name)?;
    let config_json = match config.filter(|c| c.exists()) {
        Some(c) => advclip::model::load::read_config(&c)?,
        None => advclip::model::load::config_for(&header.shapes, None, &name)?.to_hf_json(),
    };
    let converted = advclip::model::convert_to_f16(&bytes, &name)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    advclip::write_atomically(&out.join("config.json"), config_json.as_bytes())?;
    advclip::write_atomically(&out.join("model.safetensors"), &converted)?;
    eprintln!("wrote {} ({} -> {} bytes)", out.display(), bytes.len(), converted.len());
    Ok(())
}
