//! Checkpoint files: named binary blobs plus a JSON state in one safetensors container, written atomically.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `state` (JSON) and `blobs` to `path` in one atomic replace.
pub fn write(path: &Path, state: &str, blobs: Vec<(String, Vec<u8>)>) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = blobs
        .iter()
        .map(|(n, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![b.len()], b)
                .map_err(Error::invalid)?;
            Ok((n.clone(), view))
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([("state".to_string(), state.to_string())]);
    let bytes =
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::invalid(format!("writing checkpoint: {e}")))?;
    crate::write_atomically(path, &bytes)
}

/// Reads what `write` wrote: the JSON state and the blobs by name.
pub fn read(path: &Path) -> Result<(String, HashMap<String, Vec<u8>>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    let bad = |why: String| Error::invalid(format!("{}: not a usable advclip checkpoint ({why})", path.display()));
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let state =
        metadata.metadata().as_ref().and_then(|m| m.get("state").cloned()).ok_or_else(|| bad("no state".into()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let blobs = tensors.iter().map(|(n, v)| (n.to_string(), v.data().to_vec())).collect();
    Ok((state, blobs))
}
