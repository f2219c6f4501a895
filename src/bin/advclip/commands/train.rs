//! `advclip train`: a patch-training run from a dataset on disk, through the library's one training engine.

use std::path::PathBuf;

use advclip::attack::printability::{Printability, default_palette, parse_palette};
use advclip::attack::run::{AttackMode, DEFAULT_BATCH, RunFiles, RunSettings, train_to_files};
use advclip::attack::{LossTerm, TrainedSpot};
use advclip::dataset::Dataset;
use advclip::zeroshot::{self, DEFAULT_TEMPLATE};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use clap::ValueEnum;

use super::{device, load_model_on, progress_bar, resolve_labels};
use crate::args::ModelArgs;

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum ModeFlag {
    /// AdvCLIP's universal untargeted patch (generator + discriminator, embedding and topology losses)
    Advclip,
    /// A patch optimised directly toward --target
    Targeted,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum SpotFlag {
    Random,
    Fixed,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Dataset: a folder of class folders or of images, a .jsonl/.csv of path,caption, or CIFAR-10 .bin files
    #[arg(long, value_name = "DIR|FILE")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "advclip")]
    mode: ModeFlag,
    /// The label to push images toward (targeted mode)
    #[arg(long)]
    target: Option<String>,
    /// Targeted mode: train for any spot (random: scaled, rotated, moved) or only for the patch's own
    /// bottom-right place (fixed: a digital patch, much stronger there)
    #[arg(long, visible_alias = "placement", value_enum, default_value = "random")]
    spot: SpotFlag,
    /// Zero-shot labels, comma-separated (default: the dataset's class folder names)
    #[arg(long)]
    labels: Option<String>,
    #[arg(long, default_value = DEFAULT_TEMPLATE)]
    template: String,
    /// Training steps (default: one epoch's worth of batches)
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Epochs over the dataset
    #[arg(long)]
    epochs: Option<usize>,
    /// Share of the image the patch covers
    #[arg(long, default_value_t = advclip::attack::DEFAULT_AREA_FRACTION)]
    area: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write a checkpoint (PATCH.ckpt) every N steps
    #[arg(long, default_value_t = 50)]
    checkpoint_every: usize,
    /// End the run at step N (checkpoint and patch written) while the schedule still spans --steps
    #[arg(long, value_name = "N")]
    stop_at: Option<usize>,
    /// The patch PNG to write (its .json sidecar and .ckpt checkpoint go beside it)
    #[arg(long, value_name = "PATCH.png")]
    out: PathBuf,
    /// Continue from PATCH.ckpt exactly where the last run stopped
    #[arg(long)]
    resume: bool,
    /// AdvCLIP ablation: leave these generator terms out (comma-separated: embedding, topology, gan)
    #[arg(long, value_enum, value_delimiter = ',', value_name = "TERM,...")]
    without: Vec<TermFlag>,
    /// Targeted mode, a patch to print: weight of the non-printability term (each pixel's distance to the nearest
    /// --palette colour, averaged) beside the cross-entropy
    #[arg(long, value_name = "WEIGHT")]
    printability: Option<f64>,
    /// The printable colours for --printability, comma-separated hex (#e02020,#f0f0f0,...): ideally read back from a
    /// photograph of a chart your printer printed (default: a 3x3x3 grid of 0.1/0.5/0.9 levels, a stand-in)
    #[arg(long, value_name = "HEX,...", requires = "printability")]
    palette: Option<String>,
}

/// A generator term `--without` can leave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TermFlag {
    Embedding,
    Topology,
    Gan,
}

impl From<TermFlag> for LossTerm {
    fn from(flag: TermFlag) -> Self {
        match flag {
            TermFlag::Embedding => LossTerm::Embedding,
            TermFlag::Topology => LossTerm::Topology,
            TermFlag::Gan => LossTerm::Gan,
        }
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    zeroshot::check_template(&args.template)?;
    let dataset = Dataset::open(&args.data)?;
    let labels = resolve_labels(args.labels.as_deref(), &dataset)?;
    let mode = match (args.mode, &args.target) {
        (ModeFlag::Advclip, _) if args.spot == SpotFlag::Fixed => {
            bail!("--spot (--placement) is for --mode targeted (an AdvCLIP patch is always trained at its place)")
        }
        (ModeFlag::Advclip, None) => AttackMode::AdvClip,
        (ModeFlag::Advclip, Some(_)) => bail!("--target is for --mode targeted"),
        (ModeFlag::Targeted, None) => bail!("--mode targeted needs --target LABEL"),
        (ModeFlag::Targeted, Some(t)) => {
            let target = labels
                .iter()
                .position(|l| l == t)
                .with_context(|| format!("--target \"{t}\" is not one of the labels: {}", labels.join(", ")))?;
            let spot = match args.spot {
                SpotFlag::Random => TrainedSpot::Random,
                SpotFlag::Fixed => TrainedSpot::Fixed,
            };
            AttackMode::Targeted { target, spot }
        }
    };
    let batch_size = args.model.batch.unwrap_or(DEFAULT_BATCH);
    let per_epoch = (dataset.len() / batch_size.max(1)).max(1);
    let steps = match (args.steps, args.epochs) {
        (Some(steps), _) => steps,
        (None, epochs) => per_epoch.checked_mul(epochs.unwrap_or(1)).context("--epochs: too many steps")?,
    };
    let settings = RunSettings {
        template: args.template,
        steps,
        batch_size,
        area_fraction: args.area,
        seed: args.seed,
        without: {
            let mut terms: Vec<LossTerm> = args.without.iter().map(|&t| t.into()).collect();
            terms.sort();
            terms.dedup();
            terms
        },
        printability: match args.printability {
            None => None,
            Some(weight) => {
                let palette = args.palette.as_deref().map(parse_palette).transpose().context("--palette")?;
                Some(Printability { weight, palette: palette.unwrap_or_else(default_palette) })
            }
        },
        ..RunSettings::new(mode, labels, steps)
    };
    let files =
        RunFiles { out: args.out, checkpoint_every: args.checkpoint_every, stop_at: args.stop_at, resume: args.resume };
    let device = device(args.model.device)?.autodiff();
    // CLIP is frozen: no gradient is ever kept for its parameters.
    let model = load_model_on(&args.model.weights, &device)?.no_grad();
    let bar = progress_bar(steps, "steps");
    let rate_name = settings.patch_mode().rate_name();
    let sidecar = train_to_files(
        &model,
        &dataset,
        settings,
        &files,
        &device,
        |report| {
            bar.set_position(report.step as u64);
            let losses: Vec<String> = report.losses.named().iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
            let rate = report.rate.map(|r| format!("  {rate_name} {:.0}%", r * 100.0)).unwrap_or_default();
            bar.set_message(format!("{}{rate}", losses.join("  ")));
        },
        |warning| bar.suspend(|| eprintln!("warning: {warning}")),
    );
    bar.finish_and_clear();
    let sidecar = sidecar?;
    let rate = sidecar.training.as_ref().and_then(|t| t.rate);
    let rate = rate.map(|r| format!(", {} {:.1} % over the last steps", sidecar.mode.rate_name(), 100.0 * r));
    eprintln!(
        "wrote {} and its sidecar after {} steps{}",
        files.out.display(),
        sidecar.steps,
        rate.unwrap_or_default()
    );
    Ok(())
}
