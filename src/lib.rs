//! advclip: OpenAI CLIP in Burn, zero-shot classification and retrieval, and the AdvCLIP adversarial patch.

pub mod attack;
pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod dataset;
pub mod demo;
pub mod embed;
pub mod error;
pub mod host;
pub mod model;
pub mod preprocess;
pub mod pretrain;
pub mod rng;
pub mod shapes;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod zeroshot;

pub use error::{Error, Result};

/// Writes a file so that a crash never leaves it half-written: a temporary file beside it, flushed to disk, then a
/// rename.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    write_via_temporary(path, bytes, true)
}

/// `write_atomically` without waiting for the disk: a crash may lose the file but never leaves it half-written.
/// For many small files that can be written again (the shapes world's scenes), where a flush each is slow.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomically_unflushed(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    write_via_temporary(path, bytes, false)
}

#[cfg(not(target_arch = "wasm32"))]
fn write_via_temporary(path: &std::path::Path, bytes: &[u8], flush: bool) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if flush {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path.display(), e)
    })
}

/// Reads a file that must be a regular file of at most `max_bytes`: a FIFO, a device such as /dev/zero or a folder
/// is refused before anything is read, and so is a file past the cap (its size is checked again while reading, for
/// files that grow).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_regular_file(path: &std::path::Path, max_bytes: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(&shown, e))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!("{shown}: not a regular file")));
    }
    if meta.len() > max_bytes {
        return Err(Error::invalid(format!("{shown}: {} bytes, over the limit of {max_bytes}", meta.len())));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(&shown, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(|e| Error::io(&shown, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::invalid(format!("{shown}: grew past the limit of {max_bytes} bytes while being read")));
    }
    Ok(bytes)
}
