//! `advclip eval`: a patch measured on a dataset (zero-shot, retrieval, MLP probe), also after defences.

use std::path::PathBuf;

use advclip::attack::defence::Defence;
use advclip::attack::evaluate::{EvalOptions, EvalReport, EvalSpot, Evaluation, evaluate_patch};
use advclip::attack::patch_file::load_patch;
use advclip::dataset::Dataset;
use advclip::zeroshot::{self, DEFAULT_TEMPLATE};
use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{load_model, progress_bar, resolve_labels};
use crate::args::ModelArgs;

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_name = "DIR|FILE")]
    data: PathBuf,
    /// Zero-shot labels, comma-separated (default: the dataset's class folder names)
    #[arg(long)]
    labels: Option<String>,
    #[arg(long, default_value = DEFAULT_TEMPLATE)]
    template: String,
    /// The patch to measure; without one, only the clean zero-shot accuracy is reported
    #[arg(long, value_name = "PATCH.png")]
    patch: Option<PathBuf>,
    /// jpeg:QUALITY, resize:FACTOR, blur:SIGMA or crop:FRACTION; repeat for several
    #[arg(long = "defence", value_name = "SPEC")]
    defences: Vec<String>,
    /// Evaluate only the first N images
    #[arg(long)]
    limit: Option<usize>,
    /// Also run the authors' MLP-probe protocol (a probe on frozen clean features, tested on patched images)
    #[arg(long)]
    probe: bool,
    /// Where the patch goes: "fixed" (its sidecar's placement) or "random" (per image a seeded position, side
    /// 0.8-1.2x and rotation up to 22.5 degrees, the patch whole inside the image; reported beside the fixed spot)
    #[arg(long, value_enum, default_value = "fixed", alias = "spot")]
    placement: EvalPlacement,
    /// Seed of the random placements
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write one JSON line per image read (undefended): its label, the top label clean, with the patch and,
    /// with --placement random, anywhere with the draw that placed it
    #[arg(long, value_name = "FILE.jsonl")]
    per_image: Option<PathBuf>,
    /// Print one JSON object (or, with defences, one per condition under "defences"); with --placement random the
    /// random spots' numbers are under "anywhere"
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EvalPlacement {
    Fixed,
    Random,
}

pub fn run(args: EvalArgs) -> Result<()> {
    zeroshot::check_template(&args.template)?;
    let defences: Vec<Defence> = args.defences.iter().map(|d| Defence::parse(d)).collect::<advclip::Result<_>>()?;
    let dataset = Dataset::open(&args.data)?;
    let labels = &resolve_labels(args.labels.as_deref(), &dataset)?;
    let (template, patch_path, limit, probe, json) =
        (&args.template, args.patch.as_deref(), args.limit, args.probe, args.json);
    if labels.is_empty() {
        bail!("no labels: pass --labels, or use a dataset with class folders");
    }
    if let Some(path) = &args.per_image {
        // Checked before the pass over the data, so that a bad path costs no evaluation.
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if path.is_dir() || !parent.is_dir() {
            bail!("{}: --per-image needs a file path in an existing folder", path.display());
        }
    }
    let loaded = patch_path.map(load_patch).transpose()?;
    let target = match loaded.as_ref().and_then(|(_, s)| s.target.as_ref()) {
        Some(t) => Some(
            labels
                .iter()
                .position(|l| l == t)
                .with_context(|| format!("the patch targets \"{t}\", which is not among the labels"))?,
        ),
        None => None,
    };
    let (model, device) = load_model(&args.model)?;
    if let Some((_, sidecar)) = &loaded
        && sidecar.model != model.id()
    {
        eprintln!("note: the patch was trained on {}, evaluating on {}", sidecar.model, model.id());
    }
    let n = limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    let bar = progress_bar(n, "images");
    let random = args.placement == EvalPlacement::Random;
    if random && loaded.is_none() {
        bail!("--placement random needs a --patch to place");
    }
    let spots =
        if random { vec![EvalSpot::Fixed, EvalSpot::Random { seed: args.seed }] } else { vec![EvalSpot::Fixed] };
    let options = EvalOptions {
        spots: &spots,
        labels,
        template,
        target,
        defences: &defences,
        batch_size: args.model.forward_batch(),
        limit,
        probe,
    };
    let patch = loaded.as_ref().map(|(pixels, sidecar)| (pixels.as_slice(), &sidecar.placement));
    let result = evaluate_patch(&model, &dataset, patch, &options, &device, |k| bar.inc(k as u64));
    bar.finish_and_clear();
    let Evaluation { reports: mut per_spot, skipped, images } = result?;
    if let Some(path) = &args.per_image {
        let lines = images.iter().map(|image| {
            let name = |i: usize| json!(labels[i]);
            let mut line = json!({
                "image": image.name,
                "label": image.truth.map(name),
                "clean": name(image.clean),
            });
            if loaded.is_some() {
                line["patched"] = name(image.patched[0].0);
                if let Some((top, Some(draw))) = image.patched.get(1) {
                    line["anywhere"] = name(*top);
                    line["draw"] = json!({
                        "center_px": [draw.center.0, draw.center.1],
                        "side_px": draw.side,
                        "angle_degrees": draw.angle.to_degrees(),
                    });
                }
            }
            line.to_string() + "\n"
        });
        advclip::write_atomically(path, lines.collect::<String>().as_bytes())?;
    }
    let anywhere = random.then(|| per_spot.pop().expect("the random spot's reports"));
    let reports = per_spot.pop().expect("the fixed spot's reports");
    if skipped > 0 {
        eprintln!("warning: skipped {skipped} unreadable images");
    }
    let mut context = json!({"model": model.id(), "images": reports[0].zero_shot.images, "skipped_images": skipped});
    if let (Some(path), Some((_, sidecar))) = (patch_path, &loaded) {
        context["patch"] = json!(path.display().to_string());
        context["mode"] = json!(sidecar.mode);
        context["area_fraction"] = json!(sidecar.placement.area_fraction());
        context["placement"] = json!(sidecar.placement);
    }
    if json {
        let mut out = conditions_json(&reports)?;
        let object = out.as_object_mut().expect("an object");
        if loaded.is_none() {
            // Without a patch only the clean numbers exist.
            object.retain(|k, _| {
                matches!(k.as_str(), "images" | "clean_accuracy" | "retrieval" | "mlp_probe" | "defences")
            });
        }
        out["context"] = context;
        if let Some(anywhere) = &anywhere {
            out["anywhere"] = conditions_json(anywhere)?;
            out["anywhere"]["seed"] = json!(args.seed);
        }
        println!("{out}");
        return Ok(());
    }
    match (&loaded, patch_path) {
        (Some((_, sidecar)), Some(path)) => {
            let p = &sidecar.placement;
            println!(
                "model {}  patch {} ({}, {:.2} % of the image at row {}, col {})",
                model.id(),
                path.display(),
                sidecar.mode,
                100.0 * p.area_fraction(),
                p.top,
                p.left
            );
        }
        _ => println!("model {}  no patch: clean zero-shot accuracy only", model.id()),
    }
    print_reports(&reports, loaded.is_some());
    if let Some(anywhere) = &anywhere {
        println!();
        println!(
            "anywhere: a random spot, side 0.8-1.2x and rotation up to 22.5 degrees per image (seed {})",
            args.seed
        );
        print_reports(anywhere, true);
    }
    Ok(())
}

/// The undefended report as an object, with the defended ones under "defences".
fn conditions_json(reports: &[EvalReport]) -> Result<serde_json::Value> {
    let mut out = serde_json::to_value(&reports[0])?;
    out.as_object_mut().expect("an object").remove("defence");
    if reports.len() > 1 {
        out["defences"] = serde_json::to_value(&reports[1..])?;
    }
    Ok(out)
}

fn print_reports(reports: &[EvalReport], patched: bool) {
    println!("{:12} {:>7} {:>7} {:>7} {:>7}", "condition", "clean", "patched", "fooled", "target");
    for r in reports {
        let z = &r.zero_shot;
        let t = z.targeted_success_rate.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        let condition = r.defence.clone().unwrap_or_else(|| "none".into());
        if patched {
            println!(
                "{condition:12} {:>7.3} {:>7.3} {:>7.3} {t:>7}",
                z.clean_accuracy, z.patched_accuracy, z.fooling_rate
            );
        } else {
            println!("{condition:12} {:>7.3} {:>7} {:>7} {:>7}", z.clean_accuracy, "-", "-", "-");
        }
        if let Some(ret) = &r.retrieval {
            println!(
                "{:12} image->text R@1 {:.3} -> {:.3}  text->image R@1 {:.3} -> {:.3}",
                "",
                ret.image_to_text_clean.recall_at_1,
                ret.image_to_text_patched.recall_at_1,
                ret.text_to_image_clean.recall_at_1,
                ret.text_to_image_patched.recall_at_1
            );
        }
        if let Some(p) = &r.mlp_probe {
            println!(
                "{:12} MLP probe ({} train / {} test): {:.3} -> {:.3}, fooled {:.3}",
                "", p.train_images, p.test_images, p.clean_accuracy, p.patched_accuracy, p.fooling_rate
            );
        }
    }
}
