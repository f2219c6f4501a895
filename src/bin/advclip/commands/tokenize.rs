//! `advclip tokenize`: OpenAI BPE token ids of texts.

use advclip::tokenizer::{CONTEXT_LENGTH, Tokenizer};
use anyhow::Result;

#[derive(clap::Args)]
pub struct TokenizeArgs {
    #[arg(required = true, value_name = "TEXT")]
    texts: Vec<String>,
    /// Print JSON: [[ids...], ...]
    #[arg(long)]
    json: bool,
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    let tokenizer = Tokenizer::new();
    let ids: Vec<Vec<u32>> = args.texts.iter().map(|t| tokenizer.encode_for_context(t, CONTEXT_LENGTH)).collect();
    if args.json {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        for row in ids {
            println!("{}", row.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
        }
    }
    Ok(())
}
