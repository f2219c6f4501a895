//! The advclip command line: thin wrappers over the library, one subcommand each (see the README for the contract).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use advclip::model::{Clip, load_clip};
use advclip::tokenizer::{CONTEXT_LENGTH, Tokenizer};
use advclip::zeroshot::{self, DEFAULT_TEMPLATE, ENSEMBLE_TEMPLATES, ZeroShotClassifier};
use advclip::{embed, preprocess};
use anyhow::{Context, Result, bail};
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
    /// Copy a CLIP checkpoint with its float tensors stored as f16 (half the size; loads as f32)
    Convert {
        /// A Hugging Face CLIP folder or a lone .safetensors file
        #[arg(long, value_name = "DIR|FILE")]
        weights: PathBuf,
        /// Output folder (config.json + model.safetensors)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
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
            let templates: Vec<String> = if ensemble { ENSEMBLE_TEMPLATES.iter().map(|t| t.to_string()).collect() } else { vec![template] };
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
        _ => bail!("this advclip was built without that device; rebuild with `--features wgpu` or `--features cuda` (cpu needs `flex`)"),
    }
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn progress_bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {what} {{elapsed}}")).expect("a valid template"));
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
    let data = t.into_data().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("reading a tensor: {e:?}"))?;
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
    let image_rows = if images.is_empty() { vec![] } else { to_rows(embed_images(&model, &images, args.batch, &device)?)? };
    let text_rows = if texts.is_empty() { vec![] } else { to_rows(embed::embed_texts(&model, &tokenizer, texts)?)? };
    let context = model.config().text.context_length;
    if json {
        let images: Vec<Value> = image_paths.iter().zip(&image_rows).map(|(p, e)| json!({"path": p.display().to_string(), "embedding": e})).collect();
        let texts: Vec<Value> = texts.iter().zip(&text_rows).map(|(t, e)| json!({"text": t, "ids": tokenizer.encode_for_context(t, context), "embedding": e})).collect();
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

fn classify_command(args: &ModelArgs, labels: &[String], templates: &[String], paths: &[PathBuf], json: bool) -> Result<()> {
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
                let probs: serde_json::Map<String, Value> = pred.probs.iter().map(|(l, v)| (l.clone(), json!(v))).collect();
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
    let (file, config) = if weights.is_dir() { (weights.join("model.safetensors"), Some(weights.join("config.json"))) } else { (weights.to_path_buf(), None) };
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
