//! `advclip synth`: an ImageFolder of the shapes world.

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;

use super::progress_bar;

#[derive(Clone, Copy, ValueEnum)]
pub enum RendererFlag {
    Standard,
    Alternate,
}

#[derive(clap::Args)]
pub struct SynthArgs {
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value_t = 360)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// standard (what the bundled model trained on) or alternate (a renderer it never saw)
    #[arg(long, value_enum, default_value = "standard")]
    renderer: RendererFlag,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let renderer = match args.renderer {
        RendererFlag::Standard => advclip::shapes::Renderer::Standard,
        RendererFlag::Alternate => advclip::shapes::Renderer::Alternate,
    };
    let bar = progress_bar(args.count, "scenes");
    let written = advclip::shapes::write_dataset(&args.out, args.count, args.seed, args.size, renderer, |n| {
        bar.set_position(n as u64)
    });
    bar.finish_and_clear();
    written?;
    eprintln!("wrote {} scenes to {}", args.count, args.out.display());
    Ok(())
}
