//! The browser API (wasm-bindgen): a `Session` holding a device, a CLIP and a patch; every tensor read is async.
//!
//! Thin by design: decoding, preprocessing, the model, the patch trainers and the metrics all live in the library;
//! this file turns JS values into library calls and library errors into JS exceptions. JS must not call a second
//! method while an async one is pending (wasm-bindgen refuses re-entrant `&mut self`); the page's worker queues them.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::attack::patch_file::{PatchMode, PatchSidecar, decode_patch, encode_patch_png};
use crate::attack::placement::{DEFAULT_AREA_FRACTION, PatchPlacement, normalize_pixels, paste_on_image};
use crate::attack::printability::Printability;
use crate::attack::run::{AttackMode, DEFAULT_BATCH, DecodedImages, PatchRun, RunSettings};
use crate::attack::targeted::{TrainedSpot, patch_tensor};
use crate::model::Clip;
use crate::tokenizer::Tokenizer;
use crate::zeroshot::ZeroShotClassifier;

/// Library errors and bad arguments become JS `Error`s carrying the message.
fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

type JsResult<T> = std::result::Result<T, JsError>;

async fn read_f32<const D: usize>(t: Tensor<D>) -> JsResult<Vec<f32>> {
    crate::host::read_f32_async(t).await.map_err(js_error)
}

fn to_js<T: Serialize>(value: &T) -> JsResult<JsValue> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_error)
}

fn bytes_list(images: js_sys::Array) -> JsResult<Vec<Vec<u8>>> {
    images
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.dyn_into::<js_sys::Uint8Array>()
                .map(|a| a.to_vec())
                .map_err(|_| js_error(format!("image {}: expected a Uint8Array of file bytes", i + 1)))
        })
        .collect()
}

fn string_list(values: js_sys::Array, what: &str) -> JsResult<Vec<String>> {
    values
        .iter()
        .map(|v| v.as_string().map(|s| s.trim().to_string()).ok_or_else(|| js_error(format!("{what} must be strings"))))
        .collect()
}

#[derive(Serialize)]
struct Ranked {
    label: String,
    probability: f32,
}

#[derive(Serialize)]
struct Classified {
    clean: Vec<Ranked>,
    patched: Option<Vec<Ranked>>,
}

fn ranked(labels: &[String], row: &[f32], k: usize) -> Vec<Ranked> {
    crate::zeroshot::rank(row)
        .into_iter()
        .take(k.max(1))
        .map(|i| Ranked { label: labels[i].clone(), probability: row[i] })
        .collect()
}

/// `startTraining`'s options; what is left out takes the engine's defaults (those of `advclip train` too).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrainRequest {
    mode: String,
    #[serde(default)]
    target: Option<String>,
    steps: usize,
    #[serde(default = "default_area")]
    area: f64,
    #[serde(default = "default_batch")]
    batch: usize,
    #[serde(default)]
    seed: u64,
    /// Targeted mode only: "random" (any spot, scaled and rotated: for print) or "fixed" (only where it is shown).
    #[serde(default)]
    spot: TrainedSpot,
    /// Targeted mode only: the weight of the non-printability term (default palette); 0 or absent: none.
    #[serde(default)]
    printability: f64,
}

/// The keys `startTraining` accepts.
const TRAIN_OPTIONS: [&str; 8] = ["mode", "target", "steps", "area", "batch", "seed", "spot", "printability"];

fn default_area() -> f64 {
    DEFAULT_AREA_FRACTION
}

fn default_batch() -> usize {
    DEFAULT_BATCH
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepReport {
    step: usize,
    steps: usize,
    loss: f32,
    /// Share of the batch fooled (AdvCLIP) or sent to the target (targeted).
    rate: Option<f64>,
    done: bool,
}

struct LoadedPatch {
    pixels: Vec<f32>,
    sidecar: PatchSidecar,
    enabled: bool,
}

/// A training run and the images it trains on.
struct Training {
    run: PatchRun,
    images: DecodedImages,
}

/// One browser session: the device chosen at start-up, the loaded CLIP, the active patch and a training run.
#[wasm_bindgen]
pub struct Session {
    device: Device,
    backend: String,
    adapter: String,
    tokenizer: Tokenizer,
    /// The loaded CLIP on the autodiff device, which patch training backpropagates through.
    model: Option<Clip>,
    /// The same CLIP on the plain device (`Module::valid`: the same weight buffers, no second copy), for
    /// classifying: outside autodiff the CPU path splits a batch across its threads and takes the SIMD linear
    /// kernel, and no op pays for gradient bookkeeping.
    inference: Option<Clip>,
    head: Option<ZeroShotClassifier>,
    patch: Option<LoadedPatch>,
    training: Option<Training>,
}

#[wasm_bindgen]
impl Session {
    /// Starts on WebGPU ("webgpu"), on the CPU ("cpu"), or on WebGPU falling back to the CPU when the browser has no
    /// WebGPU or no adapter ("auto").
    pub async fn create(backend: String) -> JsResult<Session> {
        console_error_panic_hook();
        let (device, backend, adapter) = match backend.as_str() {
            "cpu" => (Device::flex(), "cpu".to_string(), cpu_description()),
            "webgpu" | "auto" => match webgpu().await {
                Ok((device, adapter)) => (device, "webgpu".to_string(), adapter),
                Err(e) if backend == "auto" => {
                    (Device::flex(), "cpu".to_string(), format!("{}; WebGPU: {e}", cpu_description()))
                }
                Err(e) => return Err(js_error(format!("WebGPU is not available: {e}"))),
            },
            other => return Err(js_error(format!("unknown backend \"{other}\"; use auto, webgpu or cpu"))),
        };
        Ok(Session {
            device: device.autodiff(),
            backend,
            adapter,
            tokenizer: Tokenizer::new(),
            model: None,
            inference: None,
            head: None,
            patch: None,
            training: None,
        })
    }

    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Loads a Hugging Face CLIP `model.safetensors` (f32 or f16) with its `config.json` (optional for the standard
    /// OpenAI sizes). Returns `{ name, imageSize, parameters, fingerprint }`. The bytes stay in their JS buffer and
    /// are copied into the model 8 MB at a time, so the wasm memory never holds a second copy of the file.
    #[wasm_bindgen(js_name = loadModel)]
    pub async fn load_model(
        &mut self,
        weights: js_sys::Uint8Array,
        config_json: Option<String>,
        name: String,
    ) -> JsResult<JsValue> {
        let source = JsWeights(weights);
        let clip = crate::model::load_clip_from_source(&source, config_json.as_deref(), &name, &self.device)
            .map_err(js_error)?;
        self.use_model(clip)
    }

    /// The same from a `ReadableStream` of the file's bytes (a download's `response.body`, `file.stream()`), loaded
    /// as it arrives: neither JS nor wasm ever holds the whole file beside the model. `length` is the file's length
    /// when known (checked against the header before any tensor arrives). On an error the stream is cancelled.
    #[wasm_bindgen(js_name = loadModelStream)]
    pub async fn load_model_stream(
        &mut self,
        stream: JsValue,
        length: Option<f64>,
        config_json: Option<String>,
        name: String,
    ) -> JsResult<JsValue> {
        // Checked here: `getReader` on anything else, or on a stream someone is already reading, would throw through
        // the wasm frames instead of returning an error.
        let stream = stream
            .dyn_into::<web_sys::ReadableStream>()
            .map_err(|_| js_error(format!("{name}: expected a ReadableStream of the weights file's bytes")))?;
        if stream.locked() {
            return Err(js_error(format!("{name}: the weights stream is already being read elsewhere")));
        }
        // A length that is not a byte count is ignored rather than trusted.
        let length = length.filter(|l| l.is_finite() && *l >= 0.0 && l.fract() == 0.0).map(|l| l as u64);
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let loaded = async {
            let mut loader =
                crate::model::ClipLoader::new(config_json.as_deref(), &name, &self.device, length).map_err(js_error)?;
            // One buffer for every chunk: a download arrives in thousands of them.
            let mut piece = Vec::new();
            loop {
                let chunk = wasm_bindgen_futures::JsFuture::from(reader.read())
                    .await
                    .map_err(|e| js_error(format!("{name}: reading the weights failed: {}", js_message(&e))))?;
                let done = js_sys::Reflect::get(&chunk, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
                if done {
                    break;
                }
                let value = js_sys::Reflect::get(&chunk, &"value".into()).unwrap_or(JsValue::UNDEFINED);
                let bytes = value
                    .dyn_into::<js_sys::Uint8Array>()
                    .map_err(|_| js_error(format!("{name}: the weights stream gave something other than bytes")))?;
                piece.resize(bytes.length() as usize, 0);
                bytes.copy_to(&mut piece);
                loader.push(&piece).map_err(js_error)?;
            }
            loader.finish().map_err(js_error)
        }
        .await;
        match loaded {
            Ok(clip) => self.use_model(clip),
            Err(e) => {
                // Stops the download: nothing more of it is wanted.
                let _ = reader.cancel();
                Err(e)
            }
        }
    }

    /// Makes a freshly loaded CLIP the session's model (any head, patch run or training is for the old one).
    fn use_model(&mut self, clip: Clip) -> JsResult<JsValue> {
        let clip = clip.no_grad();
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Info {
            name: String,
            image_size: usize,
            parameters: usize,
            fingerprint: String,
        }
        let info = Info {
            name: clip.id(),
            image_size: clip.config().vision.image_size,
            parameters: clip.num_params(),
            fingerprint: format!("{:016x}", clip.fingerprint),
        };
        self.inference = Some(clip.valid());
        self.model = Some(clip);
        self.head = None;
        self.training = None;
        to_js(&info)
    }

    /// Top-`top_k` labels of each encoded image (PNG, JPEG, WebP), clean and, when a patch is on, patched.
    pub async fn classify(
        &mut self,
        images: js_sys::Array,
        labels: js_sys::Array,
        template: String,
        top_k: usize,
    ) -> JsResult<JsValue> {
        let bytes = bytes_list(images)?;
        let decoded = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| crate::preprocess::decode_image(b, &format!("image {}", i + 1)))
            .collect::<crate::Result<Vec<_>>>()
            .map_err(js_error)?;
        let labels = string_list(labels, "labels")?;
        let results = self.classify_images(&decoded, labels, template, top_k).await?;
        to_js(&results)
    }

    /// The same for one RGBA frame (a canvas drawing or a webcam frame).
    #[wasm_bindgen(js_name = classifyRgba)]
    pub async fn classify_rgba(
        &mut self,
        rgba: Vec<u8>,
        width: u32,
        height: u32,
        labels: js_sys::Array,
        template: String,
        top_k: usize,
    ) -> JsResult<JsValue> {
        let image = crate::preprocess::rgba_to_rgb(&rgba, width, height, "frame").map_err(js_error)?;
        let labels = string_list(labels, "labels")?;
        let mut results = self.classify_images(&[image], labels, template, top_k).await?;
        to_js(&results.pop())
    }

    /// Makes a patch (PNG bytes + its JSON sidecar) the active one. Returns what the sidecar says.
    #[wasm_bindgen(js_name = loadPatch)]
    pub fn load_patch(&mut self, png: Vec<u8>, sidecar_json: String) -> JsResult<JsValue> {
        let (pixels, sidecar) = decode_patch(&png, &sidecar_json, "patch").map_err(js_error)?;
        if let Some(model) = &self.model {
            let size = model.config().vision.image_size;
            if sidecar.image_size != size {
                return Err(js_error(format!(
                    "this patch was made for {} px images; the loaded model takes {size} px",
                    sidecar.image_size
                )));
            }
        }
        self.patch = Some(LoadedPatch { pixels, sidecar, enabled: true });
        self.patch_info()
    }

    #[wasm_bindgen(js_name = clearPatch)]
    pub fn clear_patch(&mut self) {
        self.patch = None;
    }

    #[wasm_bindgen(js_name = setPatchEnabled)]
    pub fn set_patch_enabled(&mut self, enabled: bool) {
        if let Some(p) = &mut self.patch {
            p.enabled = enabled;
        }
    }

    /// Moves the patch; `top` and `left` in model pixels.
    #[wasm_bindgen(js_name = setPatchPosition)]
    pub fn set_patch_position(&mut self, top: usize, left: usize) -> JsResult<JsValue> {
        let patch = self.patch.as_mut().ok_or_else(|| js_error("no patch is loaded"))?;
        let p = &patch.sidecar.placement;
        patch.sidecar.placement =
            PatchPlacement::at(p.image_size, p.size, top.min(p.image_size - p.size), left.min(p.image_size - p.size))
                .map_err(js_error)?;
        self.patch_info()
    }

    /// PNG bytes of an image as the model sees it (resized, centre-cropped) wearing the active patch.
    #[wasm_bindgen(js_name = applyPatch)]
    pub async fn apply_patch(&mut self, image: Vec<u8>) -> JsResult<Vec<u8>> {
        let patch = self.patch.as_ref().ok_or_else(|| js_error("no patch is loaded"))?;
        let img = crate::preprocess::decode_image(&image, "image").map_err(js_error)?;
        let size = patch.sidecar.image_size as u32;
        let cropped = crate::preprocess::center_crop(&crate::preprocess::resize_shortest_side(&img, size), size)
            .map_err(js_error)?;
        let out = paste_on_image(&cropped, &patch.pixels, &patch.sidecar.placement);
        crate::preprocess::encode_png(&out, "patched image").map_err(js_error)
    }

    /// Prepares a training run on `images` (encoded files). `options` is `{ mode: "advclip" | "targeted", target?,
    /// steps, area = 0.03, batch = 8, seed = 0, spot = "random" }`; `spot: "fixed"` (targeted only) trains the
    /// patch for the spot it is shown at. The same images, settings and seed train the same patch as
    /// `advclip train` on a folder of those images.
    #[wasm_bindgen(js_name = startTraining)]
    pub fn start_training(
        &mut self,
        options: JsValue,
        images: js_sys::Array,
        labels: js_sys::Array,
        template: String,
    ) -> JsResult<()> {
        // serde-wasm-bindgen reads a struct's known keys only, so a misspelt option would be silently ignored.
        if let Some(object) = options.dyn_ref::<js_sys::Object>() {
            for key in js_sys::Object::keys(object).iter().filter_map(|k| k.as_string()) {
                if !TRAIN_OPTIONS.contains(&key.as_str()) {
                    return Err(js_error(format!(
                        "training options: unknown field `{key}`, expected one of {}",
                        TRAIN_OPTIONS.join(", ")
                    )));
                }
            }
        }
        let request: TrainRequest =
            serde_wasm_bindgen::from_value(options).map_err(|e| js_error(format!("training options: {e}")))?;
        let model = self.model.as_ref().ok_or_else(|| js_error("load a model first"))?;
        let labels = string_list(labels, "labels")?;
        let mode = match request.mode.as_str() {
            "advclip" if request.spot == TrainedSpot::Fixed => {
                return Err(js_error(
                    "spot is for targeted training (an AdvCLIP patch is always trained at its place)",
                ));
            }
            "advclip" => AttackMode::AdvClip,
            "targeted" => {
                let wanted = request.target.as_deref().unwrap_or("").trim();
                let target = labels
                    .iter()
                    .position(|l| l == wanted)
                    .ok_or_else(|| js_error(format!("the target \"{wanted}\" is not one of the labels")))?;
                AttackMode::Targeted { target, spot: request.spot }
            }
            other => return Err(js_error(format!("unknown mode \"{other}\"; use advclip or targeted"))),
        };
        let settings = RunSettings {
            template,
            batch_size: request.batch,
            area_fraction: request.area,
            seed: request.seed,
            printability: (request.printability != 0.0).then(|| Printability::new(request.printability)),
            ..RunSettings::new(mode, labels, request.steps)
        };
        // The images first: a bad file is found before the trainers are built.
        let size = model.config().vision.image_size as u32;
        let images = DecodedImages::decode(&bytes_list(images)?, size).map_err(js_error)?;
        let run = PatchRun::new(model, settings, &self.device).map_err(js_error)?;
        self.training = Some(Training { run, images });
        Ok(())
    }

    /// One training step; returns `{ step, steps, loss, rate, done }`. The last step makes the trained patch the
    /// active one.
    #[wasm_bindgen(js_name = trainStep)]
    pub async fn train_step(&mut self) -> JsResult<JsValue> {
        let model = self.model.as_ref().ok_or_else(|| js_error("load a model first"))?;
        let training = self.training.as_mut().ok_or_else(|| js_error("no training run was started"))?;
        let mut warnings = Vec::new();
        let report = training.run.step(model, &training.images, &mut |w| warnings.push(w)).await.map_err(js_error)?;
        for w in warnings {
            web_sys::console::warn_1(&w.into());
        }
        let done = training.run.is_finished();
        let loss = report.losses.headline();
        let answer = StepReport { step: report.step, steps: report.steps, loss, rate: report.rate, done };
        if done {
            self.patch = Some(trained_patch(&training.run).await?);
        }
        to_js(&answer)
    }

    /// The patch as `{ png: Uint8Array, json: string }` (the PNG and its sidecar): the one being trained when a run
    /// was stopped before its last step (it then becomes the active patch), else the active one.
    #[wasm_bindgen(js_name = exportPatch)]
    pub async fn export_patch(&mut self) -> JsResult<JsValue> {
        self.adopt_unfinished_training().await?;
        let patch = self.patch.as_ref().ok_or_else(|| js_error("no patch to export"))?;
        let png = encode_patch_png(&patch.pixels, patch.sidecar.placement.size, "patch").map_err(js_error)?;
        let json = patch.sidecar.to_json();
        let out = js_sys::Object::new();
        js_sys::Reflect::set(&out, &"png".into(), &js_sys::Uint8Array::from(png.as_slice()).into())
            .map_err(|_| js_error("building the export"))?;
        js_sys::Reflect::set(&out, &"json".into(), &json.into()).map_err(|_| js_error("building the export"))?;
        Ok(out.into())
    }

    /// What the active patch is: `{ mode, size, imageSize, target, top, left, areaFraction, model, trainedSpot }`
    /// (`trainedSpot`: "random" for a patch trained for any spot, "fixed" for one trained for its own).
    #[wasm_bindgen(js_name = patchInfo)]
    pub fn patch_info(&self) -> JsResult<JsValue> {
        let patch = self.patch.as_ref().ok_or_else(|| js_error("no patch is loaded"))?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Info<'a> {
            mode: PatchMode,
            size: usize,
            image_size: usize,
            target: Option<&'a str>,
            top: usize,
            left: usize,
            area_fraction: f64,
            model: &'a str,
            trained_spot: TrainedSpot,
        }
        let s = &patch.sidecar;
        to_js(&Info {
            mode: s.mode,
            size: s.placement.size,
            image_size: s.image_size,
            target: s.target.as_deref(),
            top: s.placement.top,
            left: s.placement.left,
            area_fraction: s.area_fraction,
            model: &s.model,
            trained_spot: s.trained_spot,
        })
    }
}

impl Session {
    /// A run stopped before its last step: its current patch becomes the active one.
    async fn adopt_unfinished_training(&mut self) -> JsResult<()> {
        let Some(training) = self.training.as_ref().filter(|t| t.run.step_count() > 0 && !t.run.is_finished()) else {
            return Ok(());
        };
        self.patch = Some(trained_patch(&training.run).await?);
        self.training = None;
        Ok(())
    }

    async fn classify_images(
        &mut self,
        images: &[image::RgbImage],
        labels: Vec<String>,
        template: String,
        top_k: usize,
    ) -> JsResult<Vec<Classified>> {
        let model = self.inference.as_ref().ok_or_else(|| js_error("load a model first"))?;
        let device = self.device.clone().without_autodiff();
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let templates = [template];
        if !self.head.as_ref().is_some_and(|h| h.matches(&labels, &templates)) {
            self.head = Some(ZeroShotClassifier::new(model, &self.tokenizer, &labels, &templates).map_err(js_error)?);
        }
        let head = self.head.as_ref().expect("set above");
        let size = model.config().vision.image_size;
        let pixels = images
            .iter()
            .map(|img| crate::preprocess::unit_pixels(img, size as u32))
            .collect::<crate::Result<Vec<_>>>()
            .map_err(js_error)?
            .concat();
        let unit = Tensor::<4>::from_data(TensorData::new(pixels, [images.len(), 3, size, size]), &device);
        let patched = match self.patch.as_ref().filter(|p| p.enabled) {
            Some(p) if p.sidecar.image_size == size => {
                let patch = patch_tensor(p.pixels.clone(), p.sidecar.placement.size, &device);
                Some(crate::attack::placement::paste_patch(unit.clone(), patch, &p.sidecar.placement))
            }
            Some(p) => {
                return Err(js_error(format!(
                    "the active patch was made for {} px images; the loaded model takes {size} px",
                    p.sidecar.image_size
                )));
            }
            None => None,
        };
        // Clean and patched images go through CLIP as one batch: one pass, which the CPU path splits across its
        // threads (a webcam frame and its patched copy are a batch of two, not two batches of one).
        let batch = match patched {
            Some(on) => Tensor::cat(vec![unit, on], 0),
            None => unit,
        };
        let probabilities = read_f32(head.probabilities(model.encode_image(normalize_pixels(batch)))).await?;
        let n = labels.len();
        // Rows past the clean images are the patched ones, if a patch was on.
        let (clean, patched) = probabilities.split_at(images.len() * n);
        let patched = (!patched.is_empty()).then_some(patched);
        Ok(clean
            .chunks(n)
            .enumerate()
            .map(|(i, row)| Classified {
                clean: ranked(&labels, row, top_k),
                patched: patched.map(|p| ranked(&labels, &p[i * n..(i + 1) * n], top_k)),
            })
            .collect())
    }
}

/// The patch a run has trained so far, with its sidecar, ready to become the active patch.
async fn trained_patch(run: &PatchRun) -> JsResult<LoadedPatch> {
    Ok(LoadedPatch { pixels: run.patch_pixels().await.map_err(js_error)?, sidecar: run.sidecar(), enabled: true })
}

#[cfg(feature = "wgpu")]
thread_local! {
    /// The wgpu runtime can be initialised once per page: later sessions reuse the device and its description.
    static WEBGPU: std::cell::RefCell<Option<(Device, String)>> = const { std::cell::RefCell::new(None) };
}

#[cfg(feature = "wgpu")]
async fn webgpu() -> std::result::Result<(Device, String), String> {
    if let Some(ready) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(ready);
    }
    let (device, setup) = Device::wgpu_options().init_with_setup_async().await.map_err(|e| e.to_string())?;
    let info = setup.adapter.get_info();
    // Browsers hide the adapter's name; the device type still tells a GPU from a software fallback (SwiftShader).
    let name = match (info.name.is_empty(), info.device_type) {
        (false, _) => info.name.clone(),
        (true, burn::tensor::wgpu::wgpu::DeviceType::Cpu) => "software WebGPU adapter (no GPU)".to_string(),
        (true, kind) => format!("{kind:?} WebGPU adapter"),
    };
    let ready = (device, format!("{name}; {:?}", info.backend));
    WEBGPU.with(|w| *w.borrow_mut() = Some(ready.clone()));
    Ok(ready)
}

#[cfg(not(feature = "wgpu"))]
async fn webgpu() -> std::result::Result<(Device, String), String> {
    Err("this build of advclip has no WebGPU support (built without the wgpu feature)".into())
}

/// A JS exception's message, or the value as text.
fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// A weights file in a JS `Uint8Array`, read a piece at a time into wasm memory.
struct JsWeights(js_sys::Uint8Array);

impl crate::model::WeightsBytes for JsWeights {
    fn len(&self) -> u64 {
        self.0.length() as u64
    }

    fn read_into(&self, offset: u64, out: &mut [u8]) -> crate::Result<()> {
        let start = u32::try_from(offset).ok();
        let end = start.and_then(|s| s.checked_add(u32::try_from(out.len()).ok()?)).filter(|&e| e <= self.0.length());
        let (Some(start), Some(end)) = (start, end) else {
            return Err(crate::Error::Internal("weights read past the end of the buffer".into()));
        };
        self.0.subarray(start, end).copy_to(out);
        Ok(())
    }
}

/// The CPU path as the page shows it: single-threaded, or the threaded build's pool size.
fn cpu_description() -> String {
    #[cfg(feature = "threads")]
    return format!(
        "CPU (wasm, {} threads{})",
        rayon::current_num_threads(),
        if cfg!(feature = "relaxed-simd") { ", relaxed SIMD" } else { "" }
    );
    #[cfg(not(feature = "threads"))]
    return "CPU (wasm)".to_string();
}

/// The threaded build's pool: `initThreadPool(n)` must be awaited once, after the module's init and before any
/// model call, from a worker (a pool thread blocks, which the page's main thread may not).
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Panics are bugs; route their message to the console so a report can say what happened.
fn console_error_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            web_sys::console::error_1(&format!("advclip panicked (a bug): {info}").into());
        }));
    });
}
