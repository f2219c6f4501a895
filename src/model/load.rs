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

use super::safetensors_file::{Fingerprint, GroupFile, SafetensorsLayout, WeightsBytes, all_finite};

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
    let info = logit_scale_info(&layout, name)?.clone();
    let data = layout.tensor_bytes(source, "logit_scale")?.unwrap_or_default();
    let logit_scale = decode_logit_scale(&info, &data, name)?;
    Ok(WeightsHeader { shapes: layout.shapes(), logit_scale, layout })
}

/// `logit_scale`'s entry in the header, which every `CLIPModel` checkpoint has, checked to be one float (f32, f16 or
/// bf16: the layout check has already matched its byte count to its shape).
fn logit_scale_info<'a>(layout: &'a SafetensorsLayout, name: &str) -> Result<&'a safetensors::tensor::TensorInfo> {
    let info = layout
        .info("logit_scale")
        .ok_or_else(|| Error::weights(name, "has no logit_scale tensor: not a Hugging Face CLIPModel checkpoint"))?;
    let one_float = info.shape.iter().product::<usize>() == 1;
    if !one_float || !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(Error::weights(
            name,
            format!("logit_scale is {:?} with shape {:?}, expected one float", info.dtype, info.shape),
        ));
    }
    Ok(info)
}

/// `logit_scale`'s value from its bytes (`info` from `logit_scale_info`), checked to be finite.
fn decode_logit_scale(info: &safetensors::tensor::TensorInfo, data: &[u8], name: &str) -> Result<f32> {
    let logit_scale = match (info.dtype, data) {
        (Dtype::F32, &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
        (Dtype::F16, &[a, b]) => half::f16::from_le_bytes([a, b]).to_f32(),
        (Dtype::BF16, &[a, b]) => half::bf16::from_le_bytes([a, b]).to_f32(),
        _ => return Err(Error::Internal(format!("logit_scale: {} bytes for {:?}", data.len(), info.dtype))),
    };
    if !logit_scale.is_finite() {
        return Err(Error::weights(name, "logit_scale is not a finite number"));
    }
    Ok(logit_scale)
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
pub fn config_for(shapes: &BTreeMap<String, Vec<usize>>, config_json: Option<&str>, name: &str) -> Result<ClipConfig> {
    match config_json {
        Some(json) => ClipConfig::from_hf_json(json),
        None => ClipConfig::from_tensor_shapes(
            |n| shapes.get(n).cloned(),
            |prefix| {
                shapes
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

/// How much of the file is gathered before it is copied into the model: the only memory loading needs beside it.
const LOAD_GROUP_BYTES: usize = 32 << 20;

/// How much a source that can be read anywhere (memory, disk, a browser buffer) is read at a time.
const LOAD_READ_BYTES: usize = 8 << 20;

/// Loads a `CLIPModel` from a safetensors file wherever it lives (memory, disk, a browser buffer), read a piece at a
/// time through a `ClipLoader`.
pub fn load_clip_from_source(
    source: &(impl WeightsBytes + ?Sized),
    config_json: Option<&str>,
    name: &str,
    device: &Device,
) -> Result<Clip> {
    let len = source.len();
    let mut loader = ClipLoader::new(config_json, name, device, Some(len))?;
    let mut piece = vec![0u8; (len as usize).min(LOAD_READ_BYTES)];
    let mut offset = 0u64;
    while offset < len {
        let n = ((len - offset) as usize).min(piece.len());
        source.read_into(offset, &mut piece[..n])?;
        loader.push(&piece[..n])?;
        offset += n as u64;
    }
    loader.finish()
}

/// A `CLIPModel` loaded from a safetensors file that arrives in pieces, in order (a download stream, or a file read
/// a piece at a time): the header and shapes are checked as soon as they are in, then each group of tensors is
/// checked for NaN and copied into the model as soon as its bytes are, so at most one group is held beside the
/// model and the file itself is never whole in memory.
pub struct ClipLoader {
    name: String,
    config_json: Option<String>,
    device: Device,
    /// The file's length when known in advance (checked against the header before any data arrives).
    len: Option<u64>,
    /// Bytes pushed so far.
    received: u64,
    /// How much tensor data is gathered before it goes into the model.
    group_bytes: usize,
    fingerprint: Fingerprint,
    /// The 8-byte prefix and the JSON header while they arrive; emptied once the header is parsed.
    head: Vec<u8>,
    body: Option<LoadingBody>,
}

/// What loading needs once the header is in.
struct LoadingBody {
    model: Clip,
    layout: SafetensorsLayout,
    groups: std::vec::IntoIter<std::ops::Range<usize>>,
    /// The group whose bytes are arriving.
    group: Option<GroupFile>,
    applied: std::collections::HashSet<String>,
    missing: Vec<String>,
}

impl ClipLoader {
    /// `config_json` is the Hugging Face `config.json` when there is one; `len` the file's length when known.
    pub fn new(config_json: Option<&str>, name: &str, device: &Device, len: Option<u64>) -> Result<Self> {
        if let Some(len) = len.filter(|&len| len > MAX_WEIGHTS_BYTES) {
            return Err(Error::weights(
                name,
                format!("{len} bytes is larger than any supported CLIP ({MAX_WEIGHTS_BYTES} bytes at most)"),
            ));
        }
        Ok(ClipLoader {
            name: name.to_string(),
            config_json: config_json.map(str::to_string),
            device: device.clone(),
            len,
            received: 0,
            group_bytes: LOAD_GROUP_BYTES,
            fingerprint: Fingerprint::default(),
            head: Vec::with_capacity(8),
            body: None,
        })
    }

    /// Takes the next bytes of the file; checks and loads whatever they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        self.received += bytes.len() as u64;
        if self.len.is_some_and(|len| self.received > len) || self.received > MAX_WEIGHTS_BYTES {
            return Err(Error::weights(&self.name, "more bytes arrived than the file's announced length"));
        }
        while !bytes.is_empty() {
            if self.body.is_none() {
                let wanted = self.head_len()? - self.head.len() as u64;
                let take = (wanted as usize).min(bytes.len());
                self.head.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.head.len() >= 8 && self.head.len() as u64 == self.head_len()? {
                    self.start_body()?;
                }
                continue;
            }
            let body = self.body.as_mut().expect("checked above");
            if body.group.is_none() {
                let Some(next) = body.groups.next() else {
                    return Err(Error::weights(
                        &self.name,
                        format!(
                            "not a valid safetensors file (corrupt or truncated?): more bytes follow the {} the header describes",
                            body.layout.data_start + body.layout.data_len()
                        ),
                    ));
                };
                body.group = Some(body.layout.group_file(next)?);
            }
            let group = body.group.as_mut().expect("set above");
            let take = group.wanted().min(bytes.len());
            group.bytes.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if group.wanted() == 0 {
                let group = body.group.take().expect("set above");
                self.fingerprint.update(group.data());
                body.apply(group, &self.name)?;
            }
        }
        Ok(())
    }

    /// The model, once every byte the header describes has arrived.
    pub fn finish(mut self) -> Result<Clip> {
        let truncated = |why: String| {
            Error::weights(&self.name, format!("not a valid safetensors file (corrupt or truncated?): {why}"))
        };
        let Some(mut body) = self.body.take() else {
            return Err(match self.head.len() {
                n if n < 8 => truncated(format!("{n} bytes, shorter than the 8-byte header length")),
                n => truncated(format!("the header says {} bytes but the file has {n} in all", self.head_len()? - 8)),
            });
        };
        let expected = body.layout.data_start + body.layout.data_len();
        if body.group.is_some() || body.groups.next().is_some() {
            return Err(truncated(format!(
                "the file ended after {} bytes, its header describes {expected}",
                self.received
            )));
        }
        let mut missing = body.missing;
        missing.retain(|path| !body.applied.contains(path));
        if !missing.is_empty() {
            let first: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
            return Err(Error::weights(
                &self.name,
                format!("{} tensors are missing, e.g. {}", missing.len(), first.join(", ")),
            ));
        }
        body.model.fingerprint = self.fingerprint.finish();
        Ok(body.model)
    }

    /// How long the prefix and header are, once the prefix is in (8 until then).
    fn head_len(&self) -> Result<u64> {
        match self.head.first_chunk::<8>() {
            None => Ok(8),
            Some(prefix) => SafetensorsLayout::data_start(prefix, self.len, &self.name),
        }
    }

    /// The header is in: check it against the config, and make the model its tensors will fill.
    fn start_body(&mut self) -> Result<()> {
        let name = &self.name;
        let layout = SafetensorsLayout::parse(&self.head[8..], self.len, name)?;
        // Its dtype and shape now, its value when its bytes arrive.
        logit_scale_info(&layout, name)?;
        let shapes = layout.shapes();
        let config = config_for(&shapes, self.config_json.as_deref(), name)?;
        check_shapes(&shapes, &config, name)?;
        self.fingerprint.update(&self.head);
        self.head = Vec::new();
        let groups = layout.groups(self.group_bytes).into_iter();
        self.body = Some(LoadingBody {
            model: Clip::new(&config, &self.device),
            layout,
            groups,
            group: None,
            applied: Default::default(),
            missing: Vec::new(),
        });
        Ok(())
    }
}

impl LoadingBody {
    /// Copies a complete group of tensors into the model, after checking that every float in it is finite.
    fn apply(&mut self, group: GroupFile, name: &str) -> Result<()> {
        let data = group.data();
        for (tensor, info) in &group.tensors {
            let (start, stop) = info.data_offsets;
            if tensor == "logit_scale" {
                self.model.logit_scale = decode_logit_scale(info, &data[start..stop], name)?;
            }
            check_finite(tensor, info.dtype, &data[start..stop], name)?;
        }
        let mut store = SafetensorsStore::from_bytes(Some(group.bytes))
            .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
            .with_key_remapping(r"^vision_model\.pre_layrnorm\.", "vision_model.pre_layernorm.")
            .allow_partial(true);
        let result = self.model.load_from(&mut store).map_err(|e| Error::weights(name, e))?;
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
        self.applied.extend(result.applied);
        self.missing = result.missing.into_iter().map(|(path, _)| path).collect();
        Ok(())
    }
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
fn check_shapes(shapes: &BTreeMap<String, Vec<usize>>, config: &ClipConfig, name: &str) -> Result<()> {
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for (tensor, shape) in hf_tensor_shapes(config) {
        match shapes.get(&tensor) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const WEIGHTS: &[u8] = include_bytes!("../../tests/fixtures/tiny/model.safetensors");
    const CONFIG: &str = include_str!("../../tests/fixtures/tiny/config.json");

    /// Pushes `bytes` in pieces of the given sizes (cycled), gathering groups of `group_bytes`.
    fn stream(bytes: &[u8], pieces: &[usize], group_bytes: usize, len: Option<u64>) -> Result<Clip> {
        let mut loader = ClipLoader::new(Some(CONFIG), "tiny", &Device::flex(), len)?;
        loader.group_bytes = group_bytes;
        let mut at = 0;
        for &n in pieces.iter().cycle() {
            if at == bytes.len() {
                break;
            }
            let n = n.min(bytes.len() - at);
            loader.push(&bytes[at..at + n])?;
            at += n;
        }
        loader.finish()
    }

    /// However the file is cut into pieces and groups, every tensor holds the file's values (read here with the
    /// safetensors crate itself), `logit_scale` is set and the fingerprint is the one-pass FNV-1a of the file.
    #[test]
    fn a_model_streamed_in_any_pieces_holds_the_files_tensors() {
        let file = SafeTensors::deserialize(WEIGHTS).unwrap();
        let floats = |name: &str| -> Vec<f32> {
            let t = file.tensor(name).unwrap();
            assert_eq!(t.dtype(), Dtype::F32);
            t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        };
        let words = WEIGHTS.chunks(8).map(|c| c.iter().rev().fold(0u64, |w, &b| (w << 8) | b as u64));
        let fnv = words.fold(0xcbf2_9ce4_8422_2325u64, |h, w| (h ^ w).wrapping_mul(0x100_0000_01b3));
        let token_embedding = floats("text_model.embeddings.token_embedding.weight");
        // PyTorch keeps a linear layer's weight as [out, in], Burn as [in, out].
        let projection = floats("visual_projection.weight");
        let [proj_out, proj_in] = file.tensor("visual_projection.weight").unwrap().shape().try_into().unwrap();
        for (pieces, group_bytes, len) in [
            (&[1usize, 2, 3, 5, 8, 13][..], 4096, None),
            (&[7, 4099, 65536][..], 1, Some(WEIGHTS.len() as u64)),
            (&[1 << 20][..], LOAD_GROUP_BYTES, None),
        ] {
            let model = stream(WEIGHTS, pieces, group_bytes, len).unwrap();
            assert_eq!(model.fingerprint, fnv, "pieces {pieces:?}");
            assert_eq!(model.logit_scale, floats("logit_scale")[0]);
            let got = model.text_model.embeddings.token_embedding.weight.val().into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(got, token_embedding, "pieces {pieces:?}, groups of {group_bytes}");
            let got = model.visual_projection.weight.val().into_data().try_to_vec::<f32>().unwrap();
            for o in 0..proj_out {
                for i in 0..proj_in {
                    assert_eq!(got[i * proj_out + o], projection[o * proj_in + i], "visual_projection[{o}, {i}]");
                }
            }
        }
    }

    /// A stream that stops early (in the prefix, the header or the data) or runs on past the layout is refused
    /// with the reason, whether its length was announced or not.
    #[test]
    fn a_cut_or_overlong_stream_is_refused() {
        let header_end = 8 + u64::from_le_bytes(WEIGHTS[..8].try_into().unwrap()) as usize;
        for cut in [0, 5, 8, header_end - 1, header_end, header_end + 1, WEIGHTS.len() - 1] {
            let e = stream(&WEIGHTS[..cut], &[4096], 4096, None).expect_err("refused").to_string();
            assert!(e.contains("not a valid safetensors file"), "cut at {cut}: {e}");
        }
        let e = stream(&WEIGHTS[..WEIGHTS.len() - 1], &[4096], 4096, Some(WEIGHTS.len() as u64 - 1))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("the header describes"), "{e}");
        let mut longer = WEIGHTS.to_vec();
        longer.extend_from_slice(&[0; 3]);
        let e = stream(&longer, &[4096], 4096, None).expect_err("refused").to_string();
        assert!(e.contains("more bytes follow"), "{e}");
        let e = stream(WEIGHTS, &[4096], 4096, Some(WEIGHTS.len() as u64 - 10)).expect_err("refused").to_string();
        assert!(e.contains("not a valid safetensors file"), "{e}");
    }
}
