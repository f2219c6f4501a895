//! `advclip embed`: projected, L2-normalised embeddings of images and texts.

use std::path::PathBuf;

use advclip::embed;
use advclip::tokenizer::Tokenizer;
use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{embed_images, load_model, read_images, to_rows};
use crate::args::ModelArgs;

#[derive(clap::Args)]
pub struct EmbedArgs {
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
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let EmbedArgs { model: model_args, images: image_paths, texts, json } = args;
    if image_paths.is_empty() && texts.is_empty() {
        bail!("nothing to embed: give --image PATH and/or --text STR");
    }
    let images = read_images(&image_paths)?;
    let (model, device) = load_model(&model_args)?;
    let tokenizer = Tokenizer::new();
    let context = model.config().text.context_length;
    // As `classify` does: a text the model cannot read whole is an error, not silently cut.
    for text in &texts {
        let tokens = tokenizer.encode(text).len();
        if tokens > context {
            bail!("text {text:?} is {tokens} tokens; the model reads at most {context}");
        }
    }
    let batch = model_args.forward_batch();
    let image_rows = if images.is_empty() { vec![] } else { to_rows(embed_images(&model, &images, batch, &device)?)? };
    let text_rows = if texts.is_empty() { vec![] } else { to_rows(embed::embed_texts(&model, &tokenizer, &texts)?)? };
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
