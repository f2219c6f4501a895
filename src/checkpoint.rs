//! Checkpoints: a run's JSON state plus named binary blobs (modules, optimizer states) in one safetensors file,
//! written atomically, and the module and optimizer (de)serialisation every trainer shares.

use std::collections::HashMap;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};

use crate::error::{Error, Result};

/// A module in Burn's own format, parameter ids included (so optimizer state finds its parameters again).
pub fn module_bytes<M: Module>(module: &M, what: &str) -> Result<Vec<u8>> {
    let mut store = BurnpackStore::from_bytes(None);
    module.save_into(&mut store).map_err(|e| Error::internal(format!("saving the {what}: {e}")))?;
    store.get_bytes().map(|b| b.to_vec()).map_err(|e| Error::internal(format!("saving the {what}: {e}")))
}

/// Loads what `module_bytes` wrote into `module`.
pub fn load_module<M: Module>(module: &mut M, bytes: Vec<u8>, what: &str) -> Result<()> {
    let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)));
    module.load_from(&mut store).map(|_| ()).map_err(|e| Error::invalid(format!("checkpoint {what}: {e}")))
}

/// An optimizer's state (moments and step counts) as bytes.
pub fn optimizer_bytes(optimizer: &ModuleOptimizer) -> Result<Vec<u8>> {
    optimizer.into_bytes().map(|b| b.to_vec()).map_err(|e| Error::internal(format!("saving optimizer state: {e:?}")))
}

/// Restores what `optimizer_bytes` wrote into `optimizer`; on error `optimizer` is left as it was.
pub fn restore_optimizer(optimizer: &mut ModuleOptimizer, bytes: Vec<u8>, what: &str) -> Result<()> {
    let restored = optimizer
        .clone()
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::invalid(format!("checkpoint {what} is unreadable: {e:?}")))?;
    *optimizer = restored;
    Ok(())
}

/// The blobs of a checkpoint read back, each taken once by name.
pub struct Blobs {
    origin: String,
    blobs: HashMap<String, Vec<u8>>,
}

impl Blobs {
    pub fn take(&mut self, name: &str) -> Result<Vec<u8>> {
        self.blobs.remove(name).ok_or_else(|| Error::invalid(format!("{}: the checkpoint lacks {name}", self.origin)))
    }
}

/// Writes `state` (as JSON) and `blobs` to `path` in one atomic replace.
#[cfg(not(target_arch = "wasm32"))]
pub fn write(path: &std::path::Path, state: &impl serde::Serialize, blobs: Vec<(String, Vec<u8>)>) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = blobs
        .iter()
        .map(|(n, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![b.len()], b)
                .map_err(|e| Error::internal(format!("writing checkpoint {}: {e}", path.display())))?;
            Ok((n.clone(), view))
        })
        .collect::<Result<_>>()?;
    let state = serde_json::to_string(state)
        .map_err(|e| Error::internal(format!("writing checkpoint {}: {e}", path.display())))?;
    let meta = HashMap::from([("state".to_string(), state)]);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::internal(format!("writing checkpoint {}: {e}", path.display())))?;
    crate::write_atomically(path, &bytes)
}

/// Reads what `write` wrote: the state as `S` and the blobs by name.
#[cfg(not(target_arch = "wasm32"))]
pub fn read<S: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<(S, Blobs)> {
    let bytes = crate::read_regular_file(path, MAX_CHECKPOINT_BYTES)?;
    let bad = |why: String| Error::invalid(format!("{}: not a usable advclip checkpoint ({why})", path.display()));
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let state =
        metadata.metadata().as_ref().and_then(|m| m.get("state").cloned()).ok_or_else(|| bad("no state".into()))?;
    let state = serde_json::from_str(&state).map_err(|e| bad(format!("its state is from another kind of run: {e}")))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let blobs = tensors.iter().map(|(n, v)| (n.to_string(), v.data().to_vec())).collect();
    Ok((state, Blobs { origin: path.display().to_string(), blobs }))
}

/// Checkpoints hold a patch generator or the mini CLIP with their optimizer states: far below this.
#[cfg(not(target_arch = "wasm32"))]
const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;
