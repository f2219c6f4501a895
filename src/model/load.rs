//! Hugging Face `CLIPModel` safetensors in and out: loading a folder, a lone file or bytes; saving; f16 conversion.

use std::collections::BTreeMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
use super::safetensors_file::WeightsFile;

use burn::store::{
    BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::{DType, Device};
use safetensors::{Dtype, SafeTensors};

use super::safetensors_file::{Fingerprint, SafetensorsLayout, WeightsBytes, all_finite};

use super::clip::Clip;
use super::config::ClipConfig;
use crate::error::{Error, Result};

/// Refuse weight files over this size before reading them: larger than any CLIP we support (ViT-L/14 is 1.7 GB).
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// Loads a Hugging Face folder (`config.json` + `model.safetensors`) or a lone `.safetensors` file.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_clip(path: &Path, device: &Device) -> Result<Clip> {
    let shown = path.display();
    if path.is_dir() {
        let weights = path.join("model.safetensors");
        if !weights.exists() {
            let pickle = ["pytorch_model.bin", "model.pt", "model.pth"].iter().any(|f| path.join(f).exists());
            let why = if pickle {
                "has no model.safetensors, only a PyTorch pickle checkpoint; pickles are not loaded (they can run code): convert it to safetensors or download model.safetensors"
            } else {
                "has no model.safetensors"
            };
            return Err(Error::weights(shown, why));
        }
        let config_path = path.join("config.json");
        let config_json = match config_path.exists() {
            true => Some(read_config(&config_path)?),
            false => None,
        };
        let file = WeightsFile::open(&weights, MAX_WEIGHTS_BYTES)?;
        return load_clip_from_source(&file, config_json.as_deref(), &weights.display().to_string(), device);
    }
    if !path.exists() {
        return Err(Error::weights(shown, "no such file or folder"));
    }
    let file = WeightsFile::open(path, MAX_WEIGHTS_BYTES)?;
    // A `config.json` beside a lone file is the folder layout under another file name: use it.
    let config_json =
        path.parent().map(|p| p.join("config.json")).filter(|p| p.exists()).map(|p| read_config(&p)).transpose()?;
    load_clip_from_source(&file, config_json.as_deref(), &shown.to_string(), device)
}

/// A `config.json`: a regular text file of at most 1 MiB.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_config(path: &Path) -> Result<String> {
    let bytes = crate::read_regular_file(path, 1 << 20)?;
    String::from_utf8(bytes).map_err(|_| Error::Config(format!("{}: not UTF-8 text", path.display())))
}

/// A weights file: a regular file of at most `MAX_WEIGHTS_BYTES`.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_weights_file(path: &Path) -> Result<Vec<u8>> {
    let file = WeightsFile::open(path, MAX_WEIGHTS_BYTES)?;
    let mut bytes = vec![0; file.len() as usize];
    file.read_into(0, &mut bytes)?;
    Ok(bytes)
}

/// The tensors of a safetensors file, checked before any of them is copied into a model.
pub struct WeightsHeader {
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub logit_scale: f32,
    pub layout: SafetensorsLayout,
}

/// Parses and validates the safetensors header of `bytes` and checks that every float in it is finite (`name` is
/// used in messages).
pub fn inspect_weights(bytes: &[u8], name: &str) -> Result<WeightsHeader> {
    let header = read_weights_header(bytes, name)?;
    for (tensor, info) in &header.layout.tensors {
        let at = header.layout.data_start as usize;
        let data = &bytes[at + info.data_offsets.0..at + info.data_offsets.1];
        check_finite(tensor, info.dtype, data, name)?;
    }
    Ok(header)
}

/// The header and `logit_scale` of a checkpoint, read without its other tensors.
pub fn read_weights_header(source: &(impl WeightsBytes + ?Sized), name: &str) -> Result<WeightsHeader> {
    let layout = SafetensorsLayout::read(source, name)?;
    let missing = || Error::weights(name, "has no logit_scale tensor: not a Hugging Face CLIPModel checkpoint");
    let info = layout.info("logit_scale").ok_or_else(missing)?.clone();
    let data = layout.tensor_bytes(source, "logit_scale")?.ok_or_else(missing)?;
    let logit_scale = match (info.dtype, data.len()) {
        (Dtype::F32, 4) => f32::from_le_bytes([data[0], data[1], data[2], data[3]]),
        (Dtype::F16, 2) => half::f16::from_le_bytes([data[0], data[1]]).to_f32(),
        (Dtype::BF16, 2) => half::bf16::from_le_bytes([data[0], data[1]]).to_f32(),
        (dtype, _) => {
            return Err(Error::weights(
                name,
                format!("logit_scale is {dtype:?} with shape {:?}, expected one float", info.shape),
            ));
        }
    };
    if !logit_scale.is_finite() {
        return Err(Error::weights(name, "logit_scale is not a finite number"));
    }
    Ok(WeightsHeader { shapes: layout.shapes(), logit_scale, layout })
}

fn check_finite(tensor: &str, dtype: Dtype, data: &[u8], name: &str) -> Result<()> {
    if all_finite(dtype, data) {
        return Ok(());
    }
    Err(Error::weights(
        name,
        format!("tensor {tensor} holds NaN or infinite values: the weights are corrupt and would give no valid output"),
    ))
}

/// Infers or parses the config of a checkpoint.
pub fn config_for(header: &WeightsHeader, config_json: Option<&str>, name: &str) -> Result<ClipConfig> {
    match config_json {
        Some(json) => ClipConfig::from_hf_json(json),
        None => ClipConfig::from_tensor_shapes(
            |n| header.shapes.get(n).cloned(),
            |prefix| {
                header
                    .shapes
                    .keys()
                    .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok())
                    .max()
                    .map_or(0, |i| i + 1)
            },
        ),
    }
    .map_err(|e| Error::weights(name, e))
}

/// Loads a `CLIPModel` from safetensors bytes; `config_json` is the Hugging Face `config.json` when there is one.
pub fn load_clip_from_bytes(bytes: Vec<u8>, config_json: Option<&str>, name: &str, device: &Device) -> Result<Clip> {
    load_clip_from_source(bytes.as_slice(), config_json, name, device)
}

/// How much of the file is copied out at a time while loading: the only memory loading needs beside the model.
const LOAD_GROUP_BYTES: usize = 32 << 20;

/// Loads a `CLIPModel` from a safetensors file wherever it lives (memory, disk, a browser buffer), a group of
/// tensors at a time: the header and shapes are checked first, then each group is checked for NaN and copied into
/// the model, so at most one group is held beside the model.
pub fn load_clip_from_source(
    source: &(impl WeightsBytes + ?Sized),
    config_json: Option<&str>,
    name: &str,
    device: &Device,
) -> Result<Clip> {
    let header = read_weights_header(source, name)?;
    let config = config_for(&header, config_json, name)?;
    check_shapes(&header, &config, name)?;
    let mut model = Clip::new(&config, device);
    model.logit_scale = header.logit_scale;
    let mut fingerprint = Fingerprint::default();
    let mut applied = std::collections::HashSet::new();
    let mut missing = Vec::new();
    header.layout.for_each_group(
        source,
        LOAD_GROUP_BYTES,
        |bytes| fingerprint.update(bytes),
        |tensors, file, data_at| {
            for (tensor, info) in tensors {
                let (start, stop) = info.data_offsets;
                check_finite(tensor, info.dtype, &file[data_at + start..data_at + stop], name)?;
            }
            let mut store = SafetensorsStore::from_bytes(Some(file))
                .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
                .with_key_remapping(r"^vision_model\.pre_layrnorm\.", "vision_model.pre_layernorm.")
                .allow_partial(true);
            let result = model.load_from(&mut store).map_err(|e| Error::weights(name, e))?;
            if !result.errors.is_empty() {
                let first: Vec<String> = result.errors.iter().take(3).map(|e| e.to_string()).collect();
                return Err(Error::weights(
                    name,
                    format!(
                        "{} tensors do not fit the model config (wrong model or config.json?): {}",
                        result.errors.len(),
                        first.join("; ")
                    ),
                ));
            }
            applied.extend(result.applied);
            missing = result.missing.into_iter().map(|(path, _)| path).collect();
            Ok(())
        },
    )?;
    missing.retain(|path| !applied.contains(path));
    if !missing.is_empty() {
        let first: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        return Err(Error::weights(name, format!("{} tensors are missing, e.g. {}", missing.len(), first.join(", "))));
    }
    model.fingerprint = fingerprint.finish();
    Ok(model)
}

/// Every tensor of a Hugging Face `CLIPModel` checkpoint with its PyTorch shape (`logit_scale` is 0-d).
pub fn hf_tensor_shapes(config: &ClipConfig) -> Vec<(String, Vec<usize>)> {
    let mut shapes = vec![("logit_scale".to_string(), vec![])];
    let mut add = |name: String, shape: &[usize]| shapes.push((name, shape.to_vec()));
    let towers = [
        ("vision_model", config.vision.hidden_size, config.vision.intermediate_size, config.vision.num_layers),
        ("text_model", config.text.hidden_size, config.text.intermediate_size, config.text.num_layers),
    ];
    for (tower, width, hidden, layers) in towers {
        for i in 0..layers {
            let layer = format!("{tower}.encoder.layers.{i}");
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                add(format!("{layer}.self_attn.{proj}.weight"), &[width, width]);
                add(format!("{layer}.self_attn.{proj}.bias"), &[width]);
            }
            for norm in ["layer_norm1", "layer_norm2"] {
                add(format!("{layer}.{norm}.weight"), &[width]);
                add(format!("{layer}.{norm}.bias"), &[width]);
            }
            add(format!("{layer}.mlp.fc1.weight"), &[hidden, width]);
            add(format!("{layer}.mlp.fc1.bias"), &[hidden]);
            add(format!("{layer}.mlp.fc2.weight"), &[width, hidden]);
            add(format!("{layer}.mlp.fc2.bias"), &[width]);
        }
    }
    let v = &config.vision;
    let t = &config.text;
    add("vision_model.embeddings.class_embedding".into(), &[v.hidden_size]);
    add("vision_model.embeddings.patch_embedding.weight".into(), &[v.hidden_size, 3, v.patch_size, v.patch_size]);
    add("vision_model.embeddings.position_embedding.weight".into(), &[v.num_positions(), v.hidden_size]);
    for norm in ["vision_model.pre_layrnorm", "vision_model.post_layernorm"] {
        add(format!("{norm}.weight"), &[v.hidden_size]);
        add(format!("{norm}.bias"), &[v.hidden_size]);
    }
    add("visual_projection.weight".into(), &[config.projection_dim, v.hidden_size]);
    add("text_model.embeddings.token_embedding.weight".into(), &[t.vocab_size, t.hidden_size]);
    add("text_model.embeddings.position_embedding.weight".into(), &[t.context_length, t.hidden_size]);
    add("text_model.final_layer_norm.weight".into(), &[t.hidden_size]);
    add("text_model.final_layer_norm.bias".into(), &[t.hidden_size]);
    add("text_projection.weight".into(), &[config.projection_dim, t.hidden_size]);
    shapes
}

/// Compares the checkpoint's tensors with what `config` needs, naming the first few that differ.
fn check_shapes(header: &WeightsHeader, config: &ClipConfig, name: &str) -> Result<()> {
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (tensor, shape) in hf_tensor_shapes(config) {
        match header.shapes.get(&tensor) {
            None => missing.push(tensor),
            Some(found) if *found != shape => wrong.push(format!("{tensor} is {found:?}, expected {shape:?}")),
            Some(_) => {}
        }
    }
    if !wrong.is_empty() {
        return Err(Error::weights(
            name,
            format!(
                "{} tensors have the wrong shape for this config (wrong config.json or model?): {}",
                wrong.len(),
                wrong[..wrong.len().min(3)].join("; ")
            ),
        ));
    }
    if !missing.is_empty() {
        return Err(Error::weights(
            name,
            format!(
                "{} tensors are missing (truncated or not a CLIPModel?), e.g. {}",
                missing.len(),
                missing[..missing.len().min(3)].join(", ")
            ),
        ));
    }
    Ok(())
}

/// Rewrites a safetensors checkpoint with every f32 tensor as f16 (half the download; loading casts back to f32).
pub fn convert_to_f16(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    inspect_weights(bytes, name)?;
    rewrite_tensors(bytes, name, None, true)
}

/// A `Clip` as a Hugging Face `model.safetensors` (the tensor names and layouts transformers loads), f16 or f32.
pub fn save_clip_safetensors(model: &Clip, f16: bool) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"^vision_model\.pre_layernorm\.", "vision_model.pre_layrnorm.");
    model.save_into(&mut store).map_err(|e| Error::weights("model", e))?;
    let bytes = store.get_bytes().map_err(|e| Error::weights("model", e))?;
    rewrite_tensors(&bytes, "model", Some(model.logit_scale), f16)
}

/// Copies every tensor of `bytes`, casting f32 to f16 when asked, and sets the 0-d `logit_scale` when given.
fn rewrite_tensors(bytes: &[u8], name: &str, logit_scale: Option<f32>, f16: bool) -> Result<Vec<u8>> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| Error::weights(name, e))?;
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (tensor_name, view) in tensors.iter().filter(|(n, _)| logit_scale.is_none() || *n != "logit_scale") {
        let (dtype, data) = match view.dtype() {
            Dtype::F32 if f16 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .flat_map(|c| half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
                    .collect();
                (Dtype::F16, data)
            }
            other => (other, view.data().to_vec()),
        };
        out.push((tensor_name.to_string(), dtype, view.shape().to_vec(), data));
    }
    if let Some(scale) = logit_scale {
        // Kept in f32 whatever the other tensors are: it is one number, and its exp() amplifies rounding.
        out.push(("logit_scale".into(), Dtype::F32, vec![], scale.to_le_bytes().to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = out
        .iter()
        .map(|(n, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map_err(|e| Error::weights(name, e))?;
            Ok((n.clone(), view))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::weights(name, e))
}
