//! `advclip classify`: zero-shot top labels of images against a label list.

use std::path::PathBuf;

use advclip::tokenizer::Tokenizer;
use advclip::zeroshot::{self, DEFAULT_TEMPLATE, ENSEMBLE_TEMPLATES, ZeroShotClassifier};
use anyhow::Result;
use serde_json::{Value, json};

use super::{embed_images, load_model, read_images, to_rows};
use crate::args::ModelArgs;

#[derive(clap::Args)]
pub struct ClassifyArgs {
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
}

pub fn run(args: ClassifyArgs) -> Result<()> {
    let labels = zeroshot::parse_labels(&args.labels)?;
    let templates: Vec<String> =
        if args.ensemble { ENSEMBLE_TEMPLATES.iter().map(|t| t.to_string()).collect() } else { vec![args.template] };
    templates.iter().try_for_each(|t| zeroshot::check_template(t))?;
    let paths = &args.images;
    let images = read_images(paths)?;
    let (model, device) = load_model(&args.model)?;
    let tokenizer = Tokenizer::new();
    let head = ZeroShotClassifier::new(&model, &tokenizer, &labels, &templates)?;
    let probs = head.probabilities(embed_images(&model, &images, args.model.forward_batch(), &device)?);
    let probs: Vec<f32> = to_rows(probs)?.concat();
    let predictions = zeroshot::predictions(&labels, &probs);
    if args.json {
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
