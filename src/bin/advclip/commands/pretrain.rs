//! `advclip pretrain`: the mini CLIP trained on the shapes world.

use std::path::PathBuf;

use anyhow::Result;

use super::{device, progress_bar};
use crate::args::DeviceFlag;

#[derive(clap::Args)]
pub struct PretrainArgs {
    /// Output folder: config.json + model.safetensors (f16), pretrain.ckpt while training
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceFlag,
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Steps over which scenes ramp from easy (large, filled, plain) to the full world; 0 for none
    #[arg(long, default_value_t = 0)]
    curriculum: usize,
    /// Stop after this step and write the model there (the learning-rate schedule still spans --steps)
    #[arg(long)]
    stop_at: Option<usize>,
    /// Continue from OUT/pretrain.ckpt
    #[arg(long)]
    resume: bool,
    /// Fine-tune this mini CLIP (a folder written by pretrain) instead of starting from random weights
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    /// Share of training scenes drawn with random shape distortions (corners cut, stretch, shear, jitter)
    #[arg(long, default_value_t = 0.0, value_parser = share_in_unit_interval)]
    augment: f32,
}

/// `--augment`: a share of scenes, 0 to 1.
fn share_in_unit_interval(text: &str) -> std::result::Result<f32, String> {
    match text.parse::<f32>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("expected a share between 0 and 1, got {text:?}")),
    }
}

pub fn run(args: PretrainArgs) -> Result<()> {
    let device = device(args.device)?.autodiff();
    let config = advclip::pretrain::PretrainConfig {
        batch_size: args.batch,
        learning_rate: args.lr,
        steps: args.steps,
        curriculum_steps: args.curriculum,
        augmented_share: args.augment,
        ..Default::default()
    };
    let out = args.out.clone();
    let options = advclip::pretrain::PretrainOptions {
        out: args.out,
        config,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        stop_at: args.stop_at,
        init: args.init,
    };
    let bar = progress_bar(args.steps, "steps");
    let started = std::time::Instant::now();
    let mut recent = Vec::new();
    let clip = advclip::pretrain::pretrain_on_synth(&device, &options, args.resume, |step, loss, scale| {
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4}"));
        recent.push(loss);
        // A log line now and then, so a run in the background (no terminal) shows its progress too.
        if step % 50 == 0 {
            let mean = recent.iter().sum::<f32>() / recent.len() as f32;
            bar.suspend(|| {
                eprintln!(
                    "step {step}: mean loss {mean:.4} over the last {} steps, logit scale {scale:.3}",
                    recent.len()
                )
            });
            recent.clear();
        }
    });
    bar.finish_and_clear();
    let clip = clip?;
    eprintln!(
        "wrote {} after {} steps in {:.0} s (logit scale {:.3})",
        out.display(),
        args.stop_at.unwrap_or(args.steps).min(args.steps),
        started.elapsed().as_secs_f64(),
        clip.logit_scale
    );
    Ok(())
}
