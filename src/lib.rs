//! advclip: OpenAI CLIP in Burn, zero-shot classification and retrieval, and the AdvCLIP adversarial patch.

pub mod attack;
#[cfg(not(target_arch = "wasm32"))]
pub mod dataset;
pub mod demo;
pub mod embed;
pub mod error;
pub mod host;
pub mod model;
pub mod preprocess;
pub mod pretrain;
pub mod synth;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod zeroshot;

pub use error::{Error, Result};

/// Writes a file so that a crash never leaves it half-written: a temporary file beside it, then a rename.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path.display(), e)
    })
}
