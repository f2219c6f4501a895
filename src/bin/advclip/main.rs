//! The advclip command line: thin wrappers over the library, one subcommand each (see the README for the contract).

mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use advclip::attack::defence::Defence;
use advclip::attack::patch_file::load_patch;
use advclip::attack::train::{AttackMode, TrainOptions, checkpoint_path, train_patch};
use advclip::dataset::Dataset;
use advclip::model::{Clip, load_clip};
use advclip::tokenizer::{CONTEXT_LENGTH, Tokenizer};
use advclip::zeroshot::{self, DEFAULT_TEMPLATE, ENSEMBLE_TEMPLATES, ZeroShotClassifier};
use advclip::{embed, preprocess};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "advclip", version, about = "OpenAI CLIP in Burn, and the AdvCLIP adversarial patch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceFlag {
    /// Pure-Rust CPU backend (flex)
    Cpu,
    /// wgpu: Vulkan, Metal or DX12 (needs the `wgpu` feature)
    Wgpu,
    /// NVIDIA CUDA (needs the `cuda` feature)
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
enum RendererFlag {
    Standard,
    Alternate,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum PlacementFlag {
    Random,
    Fixed,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeFlag {
    /// AdvCLIP's universal untargeted patch (generator + discriminator, embedding and topology losses)
    Advclip,
    /// A patch optimised directly toward --target
    Targeted,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// A Hugging Face CLIP folder (config.json + model.safetensors) or a lone .safetensors file
    #[arg(long, value_name = "DIR|FILE")]
    weights: PathBuf,
    /// Where to run the model
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceFlag,
    /// Images per forward pass
    #[arg(long, default_value_t = 16)]
    batch: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Print projected, L2-normalised CLIP embeddings of images and texts
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        /// An image file (PNG, JPEG, WebP); repeat for several
        #[arg(long = "image", value_name = "PATH")]
        images: Vec<PathBuf>,
        /// A text; repeat for several
        #[arg(long = "text", value_name = "STR")]
        texts: Vec<String>,
        /// Print JSON: {"images":[{"path","embedding"}],"texts":[{"text","ids","embedding"}]}
        #[arg(long)]
        json: bool,
    },
    /// Zero-shot classify images against a comma-separated label list
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        /// Labels, comma-separated: "cat,dog,red square"
        #[arg(long)]
        labels: String,
        /// Prompt template with one {} for the label
        #[arg(long, default_value = DEFAULT_TEMPLATE)]
        template: String,
        /// Average the text embeddings of a built-in prompt ensemble instead of one template
        #[arg(long, conflicts_with = "template")]
        ensemble: bool,
        /// Image files
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        /// Print JSON: [{"path","top","probs":{label:prob}}]
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAI BPE token ids of texts (unpadded, SOT first, EOT last, truncated to 77)
    Tokenize {
        #[arg(required = true, value_name = "TEXT")]
        texts: Vec<String>,
        /// Print JSON: [[ids...], ...]
        #[arg(long)]
        json: bool,
    },
    /// Train an adversarial patch (AdvCLIP universal, or targeted) and write PATCH.png + PATCH.json
    Train {
        #[command(flatten)]
        model: ModelArgs,
        /// Dataset: a folder of class folders, a .jsonl/.csv of path,caption, or CIFAR-10 .bin files
        #[arg(long, value_name = "DIR|FILE")]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "advclip")]
        mode: ModeFlag,
        /// The label to push images toward (targeted mode)
        #[arg(long)]
        target: Option<String>,
        /// Targeted mode: train for any spot (random: scaled, rotated, moved) or only for the patch's own
        /// bottom-right place (fixed: a digital patch, much stronger there)
        #[arg(long, value_enum, default_value = "random")]
        placement: PlacementFlag,
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
    },
    /// Measure a patch on a dataset: clean/patched accuracy, fooling rate, targeted success, retrieval; after defences
    Eval {
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
        /// Print one JSON object (or, with defences, one per condition under "defences")
        #[arg(long)]
        json: bool,
    },
    /// Paste a patch onto images where its sidecar says, and write them to a folder
    Apply {
        #[arg(long, value_name = "PATCH.png")]
        patch: PathBuf,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The main job, offline: unseen shape scenes classified by the mini CLIP, then again wearing a patch
    Demo {
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
    },
    /// Write an ImageFolder of the shapes world (36 classes "<colour> <shape>", captions in captions.jsonl)
    Synth {
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
    },
    /// Train the mini CLIP from scratch on the shapes world (contrastive loss, learnable temperature)
    Pretrain {
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
    },
    /// Copy a CLIP checkpoint with its float tensors stored as f16 (half the size; loads as f32)
    Convert {
        /// A Hugging Face CLIP folder or a lone .safetensors file
        #[arg(long, value_name = "DIR|FILE")]
        weights: PathBuf,
        /// Output folder (config.json + model.safetensors)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Serve the browser app (www/, the wasm package in pkg/, assets/) on 127.0.0.1; build pkg/ with scripts/build-web
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The repository root holding www/, pkg/ and assets/
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Embed { model, images, texts, json } => embed_command(&model, &images, &texts, json),
        Command::Classify { model, labels, template, ensemble, images, json } => {
            let labels = zeroshot::parse_labels(&labels)?;
            let templates: Vec<String> =
                if ensemble { ENSEMBLE_TEMPLATES.iter().map(|t| t.to_string()).collect() } else { vec![template] };
            templates.iter().try_for_each(|t| zeroshot::check_template(t))?;
            classify_command(&model, &labels, &templates, &images, json)
        }
        Command::Tokenize { texts, json } => {
            let tokenizer = Tokenizer::new();
            let ids: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.encode_for_context(t, CONTEXT_LENGTH)).collect();
            if json {
                println!("{}", serde_json::to_string(&ids)?);
            } else {
                for row in ids {
                    println!("{}", row.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
                }
            }
            Ok(())
        }
        Command::Convert { weights, out } => convert_command(&weights, &out),
        Command::Serve { port, root } => serve::serve(&root, port),
        Command::Train {
            model,
            data,
            mode,
            target,
            placement,
            labels,
            template,
            steps,
            epochs,
            area,
            seed,
            checkpoint_every,
            stop_at,
            out,
            resume,
        } => {
            zeroshot::check_template(&template)?;
            let dataset = Dataset::open(&data)?;
            let labels = resolve_labels(labels.as_deref(), &dataset)?;
            let mode = match (mode, target) {
                (ModeFlag::Advclip, _) if placement == PlacementFlag::Fixed => {
                    bail!("--placement is for --mode targeted (an AdvCLIP patch is always trained at its place)")
                }
                (ModeFlag::Advclip, None) => AttackMode::AdvClip,
                (ModeFlag::Advclip, Some(_)) => bail!("--target is for --mode targeted"),
                (ModeFlag::Targeted, None) => bail!("--mode targeted needs --target LABEL"),
                (ModeFlag::Targeted, Some(t)) => {
                    let target = labels
                        .iter()
                        .position(|l| *l == t)
                        .with_context(|| format!("--target \"{t}\" is not one of the labels: {}", labels.join(", ")))?;
                    let placement = match placement {
                        PlacementFlag::Random => advclip::attack::TargetedPlacement::Random,
                        PlacementFlag::Fixed => advclip::attack::TargetedPlacement::Fixed,
                    };
                    AttackMode::Targeted { target, placement }
                }
            };
            let per_epoch = (dataset.len() / model.batch.max(1)).max(1);
            let steps = steps.unwrap_or(per_epoch * epochs.unwrap_or(1));
            let options = TrainOptions {
                mode,
                labels,
                template,
                steps,
                batch_size: model.batch,
                area_fraction: area,
                seed,
                checkpoint_every,
                stop_at,
                out,
            };
            train_command(&model, &dataset, &options, resume)
        }
        Command::Eval { model, data, labels, template, patch, defences, limit, probe, json } => {
            zeroshot::check_template(&template)?;
            let defences: Vec<Defence> = defences.iter().map(|d| Defence::parse(d)).collect::<advclip::Result<_>>()?;
            let dataset = Dataset::open(&data)?;
            let labels = resolve_labels(labels.as_deref(), &dataset)?;
            eval_command(&model, &dataset, &labels, &template, patch.as_deref(), &defences, limit, probe, json)
        }
        Command::Apply { patch, images, out } => apply_command(&patch, &images, &out),
        Command::Demo { weights, patch, count, seed, out, device: flag, json } => {
            demo_command(&weights, &patch, count, seed, &out, flag, json)
        }
        Command::Synth { out, count, seed, size, renderer } => {
            let renderer = match renderer {
                RendererFlag::Standard => advclip::synth::Renderer::Standard,
                RendererFlag::Alternate => advclip::synth::Renderer::Alternate,
            };
            let bar = progress_bar(count, "scenes");
            let written =
                advclip::synth::write_dataset(&out, count, seed, size, renderer, |n| bar.set_position(n as u64));
            bar.finish_and_clear();
            written?;
            eprintln!("wrote {count} scenes to {}", out.display());
            Ok(())
        }
        Command::Pretrain {
            out,
            steps,
            batch,
            lr,
            seed,
            device: flag,
            checkpoint_every,
            curriculum,
            stop_at,
            resume,
            init,
            augment,
        } => {
            let device = device(flag)?.autodiff();
            let config = advclip::pretrain::PretrainConfig {
                batch_size: batch,
                learning_rate: lr,
                steps,
                curriculum_steps: curriculum,
                augmented_share: augment,
                ..Default::default()
            };
            let options =
                advclip::pretrain::PretrainOptions { out: out.clone(), config, seed, checkpoint_every, stop_at, init };
            let bar = progress_bar(steps, "steps");
            let started = std::time::Instant::now();
            let mut recent = Vec::new();
            let clip = advclip::pretrain::pretrain_on_synth(&device, &options, resume, |step, loss, scale| {
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
                stop_at.unwrap_or(steps).min(steps),
                started.elapsed().as_secs_f64(),
                clip.logit_scale
            );
            Ok(())
        }
    }
}

/// `--augment`: a share of scenes, 0 to 1.
fn share_in_unit_interval(text: &str) -> std::result::Result<f32, String> {
    match text.parse::<f32>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("expected a share between 0 and 1, got {text:?}")),
    }
}

fn device(flag: DeviceFlag) -> Result<Device> {
    match flag {
        #[cfg(feature = "flex")]
        DeviceFlag::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        DeviceFlag::Wgpu => Ok(Device::wgpu(Default::default())),
        #[cfg(feature = "cuda")]
        DeviceFlag::Cuda => Ok(Device::cuda(0)),
        #[allow(unreachable_patterns)]
        _ => bail!(
            "this advclip was built without that device; rebuild with `--features wgpu` or `--features cuda` (cpu needs `flex`)"
        ),
    }
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {what} {{elapsed}}"))
            .expect("a valid template"),
    );
    bar
}

fn load_model(args: &ModelArgs) -> Result<(Clip, Device)> {
    let device = device(args.device)?;
    let bar = spinner(&format!("loading {}", args.weights.display()));
    let model = load_clip(&args.weights, &device);
    bar.finish_and_clear();
    Ok((model?, device))
}

/// Reads and decodes every image before any model work, so a bad file fails fast.
fn read_images(paths: &[PathBuf]) -> Result<Vec<image::RgbImage>> {
    paths.iter().map(|p| read_image(p)).collect()
}

fn read_image(path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(preprocess::decode_image(&bytes, &path.display().to_string())?)
}

fn to_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, cols] = t.dims();
    let data = advclip::host::read_f32(t)?;
    Ok(data.chunks(cols.max(1)).map(<[f32]>::to_vec).collect())
}

fn embed_images(model: &Clip, images: &[image::RgbImage], batch: usize, device: &Device) -> Result<Tensor<2>> {
    let bar = progress_bar(images.len(), "images");
    let embeddings = embed::embed_images(model, images, batch, device, |n| bar.inc(n as u64));
    bar.finish_and_clear();
    Ok(embeddings?)
}

fn embed_command(args: &ModelArgs, image_paths: &[PathBuf], texts: &[String], json: bool) -> Result<()> {
    if image_paths.is_empty() && texts.is_empty() {
        bail!("nothing to embed: give --image PATH and/or --text STR");
    }
    let images = read_images(image_paths)?;
    let (model, device) = load_model(args)?;
    let tokenizer = Tokenizer::new();
    let image_rows =
        if images.is_empty() { vec![] } else { to_rows(embed_images(&model, &images, args.batch, &device)?)? };
    let text_rows = if texts.is_empty() { vec![] } else { to_rows(embed::embed_texts(&model, &tokenizer, texts)?)? };
    let context = model.config().text.context_length;
    if json {
        let images: Vec<Value> = image_paths
            .iter()
            .zip(&image_rows)
            .map(|(p, e)| json!({"path": p.display().to_string(), "embedding": e}))
            .collect();
        let texts: Vec<Value> = texts
            .iter()
            .zip(&text_rows)
            .map(|(t, e)| json!({"text": t, "ids": tokenizer.encode_for_context(t, context), "embedding": e}))
            .collect();
        println!("{}", json!({"images": images, "texts": texts}));
    } else {
        let head = |e: &[f32]| e.iter().take(4).map(|v| format!("{v:+.4}")).collect::<Vec<_>>().join(" ");
        for (p, e) in image_paths.iter().zip(&image_rows) {
            println!("image {}  dim {}  [{} ...]", p.display(), e.len(), head(e));
        }
        for (t, e) in texts.iter().zip(&text_rows) {
            println!("text  {t:?}  dim {}  [{} ...]", e.len(), head(e));
        }
    }
    Ok(())
}

fn classify_command(
    args: &ModelArgs,
    labels: &[String],
    templates: &[String],
    paths: &[PathBuf],
    json: bool,
) -> Result<()> {
    let images = read_images(paths)?;
    let (model, device) = load_model(args)?;
    let tokenizer = Tokenizer::new();
    let head = ZeroShotClassifier::new(&model, &tokenizer, labels, templates)?;
    let probs = head.probabilities(embed_images(&model, &images, args.batch, &device)?);
    let probs: Vec<f32> = to_rows(probs)?.concat();
    let predictions = zeroshot::predictions(labels, &probs);
    if json {
        let rows: Vec<Value> = paths
            .iter()
            .zip(&predictions)
            .map(|(p, pred)| {
                let probs: serde_json::Map<String, Value> =
                    pred.probs.iter().map(|(l, v)| (l.clone(), json!(v))).collect();
                json!({"path": p.display().to_string(), "top": pred.top, "probs": probs})
            })
            .collect();
        println!("{}", Value::Array(rows));
    } else {
        let width = paths.iter().map(|p| p.display().to_string().len()).max().unwrap_or(5).max(5);
        println!("{:width$}  {:24}  prob", "image", "top label");
        for (p, pred) in paths.iter().zip(&predictions) {
            println!("{:width$}  {:24}  {:.3}", p.display().to_string(), pred.top, pred.probs[pred.top_index].1);
        }
    }
    Ok(())
}

fn convert_command(weights: &Path, out: &Path) -> Result<()> {
    let (file, config) = if weights.is_dir() {
        (weights.join("model.safetensors"), Some(weights.join("config.json")))
    } else {
        (weights.to_path_buf(), None)
    };
    let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    let name = file.display().to_string();
    let header = advclip::model::inspect_weights(&bytes, &name)?;
    let config_json = match config.filter(|c| c.exists()) {
        Some(c) => std::fs::read_to_string(&c).with_context(|| format!("{}: cannot read", c.display()))?,
        None => advclip::model::load::config_for(&header, None, &name)?.to_hf_json(),
    };
    let converted = advclip::model::convert_to_f16(&bytes, &name)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    advclip::write_atomically(&out.join("config.json"), config_json.as_bytes())?;
    advclip::write_atomically(&out.join("model.safetensors"), &converted)?;
    eprintln!("wrote {} ({} -> {} bytes)", out.display(), bytes.len(), converted.len());
    Ok(())
}

/// The labels given, or the dataset's class names; they must cover the dataset's classes when both exist.
fn resolve_labels(given: Option<&str>, dataset: &Dataset) -> Result<Vec<String>> {
    let labels = match given {
        Some(list) => zeroshot::parse_labels(list)?,
        None if !dataset.class_names.is_empty() => dataset.class_names.clone(),
        None => return Ok(vec![]),
    };
    if let Some(missing) = dataset.class_names.iter().find(|c| !labels.contains(c)) {
        bail!(
            "the dataset has a class folder \"{missing}\" that is not among the labels ({}); labels must name every class",
            labels.join(", ")
        );
    }
    Ok(labels)
}

fn train_command(args: &ModelArgs, dataset: &Dataset, options: &TrainOptions, resume: bool) -> Result<()> {
    let device = device(args.device)?.autodiff();
    let bar = spinner(&format!("loading {}", args.weights.display()));
    let model = load_clip(&args.weights, &device);
    bar.finish_and_clear();
    // CLIP is frozen: no gradient is ever kept for its parameters.
    let model = model?.no_grad();
    if resume && !checkpoint_path(&options.out).exists() {
        eprintln!("no checkpoint at {}: starting from step 0", checkpoint_path(&options.out).display());
    }
    let bar = progress_bar(options.steps, "steps");
    let rate_name = if matches!(options.mode, AttackMode::AdvClip) { "fooled" } else { "on target" };
    let sidecar = train_patch(
        &model,
        &model.id(),
        dataset,
        options,
        resume,
        &device,
        |p| {
            bar.set_position(p.step as u64);
            let losses: Vec<String> = p.losses.iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
            let rate = p.batch_rate.map(|r| format!("  {rate_name} {:.0}%", r * 100.0)).unwrap_or_default();
            bar.set_message(format!("{}{rate}", losses.join("  ")));
        },
        |w| bar.suspend(|| eprintln!("warning: {w}")),
    );
    bar.finish_and_clear();
    let sidecar = sidecar?;
    eprintln!("wrote {} and its sidecar after {} steps ({})", options.out.display(), sidecar.steps, sidecar.metrics);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn eval_command(
    args: &ModelArgs,
    dataset: &Dataset,
    labels: &[String],
    template: &str,
    patch_path: Option<&Path>,
    defences: &[Defence],
    limit: Option<usize>,
    probe: bool,
    json: bool,
) -> Result<()> {
    if labels.is_empty() {
        bail!("no labels: pass --labels, or use a dataset with class folders");
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
    let (model, device) = load_model(args)?;
    if let Some((_, sidecar)) = &loaded
        && sidecar.model != model.id()
    {
        eprintln!("note: the patch was trained on {}, evaluating on {}", sidecar.model, model.id());
    }
    let n = limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    let bar = progress_bar(n, "images");
    let options = advclip::attack::evaluate::EvalOptions {
        labels,
        template,
        target,
        defences,
        batch_size: args.batch,
        limit,
        probe,
    };
    let patch = loaded.as_ref().map(|(pixels, sidecar)| (pixels.as_slice(), &sidecar.placement));
    let result =
        advclip::attack::evaluate::evaluate_patch(&model, dataset, patch, &options, &device, |k| bar.inc(k as u64));
    bar.finish_and_clear();
    let (reports, skipped) = result?;
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
        let mut out = serde_json::to_value(&reports[0])?;
        let object = out.as_object_mut().expect("an object");
        object.remove("defence");
        if loaded.is_none() {
            // Without a patch only the clean numbers exist.
            object.retain(|k, _| matches!(k.as_str(), "images" | "clean_accuracy" | "retrieval" | "mlp_probe"));
        }
        out["context"] = context;
        if reports.len() > 1 {
            out["defences"] = serde_json::to_value(&reports[1..])?;
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
    println!("{:12} {:>7} {:>7} {:>7} {:>7}", "condition", "clean", "patched", "fooled", "target");
    for r in &reports {
        let z = &r.zero_shot;
        let t = z.targeted_success_rate.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        let condition = r.defence.clone().unwrap_or_else(|| "none".into());
        if loaded.is_some() {
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
    Ok(())
}

fn apply_command(patch_path: &Path, images: &[PathBuf], out: &Path) -> Result<()> {
    let (patch, sidecar) = load_patch(patch_path)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    for path in images {
        let img = read_image(path)?;
        let patched = advclip::attack::placement::paste_on_image(&img, &patch, &sidecar.placement);
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        let dest = out.join(format!("{name}.png"));
        let mut bytes = Vec::new();
        patched
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .with_context(|| format!("{}: encoding", dest.display()))?;
        advclip::write_atomically(&dest, &bytes)?;
        println!("{}", dest.display());
    }
    Ok(())
}

fn demo_command(
    weights: &Path,
    patch_path: &Path,
    count: usize,
    seed: u64,
    out: &Path,
    flag: DeviceFlag,
    json: bool,
) -> Result<()> {
    let (patch, sidecar) = load_patch(patch_path)?;
    let args = ModelArgs { weights: weights.to_path_buf(), device: flag, batch: 32 };
    let (model, device) = load_model(&args)?;
    let result = advclip::demo::run_demo(&model, &patch, &sidecar.placement, count, seed, &device)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let save = |img: &image::RgbImage, name: String| -> Result<()> {
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
        Ok(advclip::write_atomically(&out.join(name), &bytes)?)
    };
    for (i, (c, p)) in result.clean.iter().zip(&result.patched).enumerate() {
        save(c, format!("{i:02}_clean.png"))?;
        save(p, format!("{i:02}_patched.png"))?;
    }
    save(&advclip::demo::side_by_side(&result.clean, &result.patched, 4), "side_by_side.png".into())?;
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
