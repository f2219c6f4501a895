//! In the browser (wasm32, headless Chromium): the tiny fixture CLIP matches the transformers reference on WebGPU
//! and on the CPU fallback, a few patch-training steps run and change the patch, and the Session API refuses hostile
//! input with JS errors and keeps working. Every read is async.
//! Run with `scripts/test-web` (wasm-bindgen-test-runner + chromedriver); native builds compile this file to nothing.
#![cfg(target_arch = "wasm32")]

use std::collections::HashMap;

use advclip::attack::advclip::{AdvClipConfig, AdvClipTrainer};
use advclip::attack::placement::PatchPlacement;
use advclip::model::{Clip, TokenBatch, load_clip_from_bytes};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const WEIGHTS: &[u8] = include_bytes!("fixtures/tiny/model.safetensors");
const CONFIG: &str = include_str!("fixtures/tiny/config.json");
const REFERENCE: &[u8] = include_bytes!("fixtures/tiny/reference.safetensors");

struct RefTensor {
    shape: Vec<usize>,
    floats: Vec<f32>,
    ints: Vec<i64>,
}

fn reference() -> HashMap<String, RefTensor> {
    let tensors = SafeTensors::deserialize(REFERENCE).unwrap();
    tensors
        .iter()
        .map(|(name, view)| {
            let data = view.data();
            let (floats, ints) = match view.dtype() {
                Dtype::F32 => {
                    (data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), vec![])
                }
                Dtype::I64 => {
                    (vec![], data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
                }
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name.to_string(), RefTensor { shape: view.shape().to_vec(), floats, ints })
        })
        .collect()
}

async fn read(t: Tensor<2>) -> Vec<f32> {
    t.into_data_async().await.unwrap().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

thread_local! {
    /// The wgpu runtime initialises once per page; every test reuses its device.
    static GPU: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

async fn webgpu() -> Device {
    if let Some(device) = GPU.with(|g| g.borrow().clone()) {
        return device;
    }
    let device =
        Device::wgpu_options().init_async().await.expect("WebGPU (SwiftShader in headless Chromium) initialises");
    GPU.with(|g| *g.borrow_mut() = Some(device.clone()));
    device
}

async fn embeddings_match_the_reference(device: &Device, backend: &str) {
    let model: Clip = load_clip_from_bytes(WEIGHTS.to_vec(), Some(CONFIG), "tiny", device).unwrap();
    let r = reference();
    let p = &r["pixel_values"];
    let shape: [usize; 4] = p.shape.clone().try_into().unwrap();
    let pixels = Tensor::<4>::from_data(TensorData::new(p.floats.clone(), shape), device);
    let len = *r["input_ids"].shape.last().unwrap();
    let ids: Vec<Vec<u32>> = r["input_ids"]
        .ints
        .chunks(len)
        .map(|row| {
            let end = row.iter().position(|&i| i == advclip::tokenizer::EOT as i64).map_or(row.len(), |p| p + 1);
            row[..end].iter().map(|&i| i as u32).collect()
        })
        .collect();
    let config = model.config().clone();
    let tokens = TokenBatch::new(&ids, config.text.context_length, config.text.vocab_size).unwrap();
    let image = read(model.encode_image(pixels)).await;
    let text = read(model.encode_text(&tokens)).await;
    let image_diff = max_abs_diff(&image, &r["image_embeds_normalized"].floats);
    let text_diff = max_abs_diff(&text, &r["text_embeds_normalized"].floats);
    web_sys::console::log_1(&format!("{backend}: image {image_diff:.2e}, text {text_diff:.2e}").into());
    assert!(image_diff <= 1e-4, "{backend}: image embeddings differ by {image_diff}");
    assert!(text_diff <= 1e-4, "{backend}: text embeddings differ by {text_diff}");
}

#[wasm_bindgen_test]
async fn tiny_clip_matches_the_reference_on_webgpu() {
    embeddings_match_the_reference(&webgpu().await, "webgpu").await;
}

#[wasm_bindgen_test]
async fn tiny_clip_matches_the_reference_on_the_cpu_fallback() {
    embeddings_match_the_reference(&Device::flex(), "cpu").await;
}

async fn advclip_steps_change_the_patch(device: Device) {
    let device = device.autodiff();
    let model = load_clip_from_bytes(WEIGHTS.to_vec(), Some(CONFIG), "tiny", &device).unwrap().no_grad();
    let size = model.config().vision.image_size;
    let placement = PatchPlacement::advclip(size, 0.03).unwrap();
    let config = AdvClipConfig { batch_size: 4, seed: 1, ..AdvClipConfig::default() };
    let mut trainer = AdvClipTrainer::new(placement, config, &device).unwrap();
    let before = trainer.patch().into_data_async().await.unwrap().try_into_vec::<f32>().unwrap();
    let images: Vec<f32> = (0..4 * 3 * size * size).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    for _ in 0..3 {
        let batch = Tensor::<4>::from_data(TensorData::new(images.clone(), [4, 3, size, size]), &device);
        let out = trainer.step(&model, batch, None).unwrap();
        let loss = out.generator.into_data_async().await.unwrap().try_into_vec::<f32>().unwrap()[0];
        assert!(loss.is_finite(), "generator loss {loss}");
    }
    let after = trainer.patch().into_data_async().await.unwrap().try_into_vec::<f32>().unwrap();
    let change = max_abs_diff(&before, &after);
    assert!(change > 1e-4, "three AdvCLIP steps left the patch unchanged ({change})");
    assert!(after.iter().all(|v| (0.0..=1.0).contains(v)), "the patch left [0, 1]");
}

#[wasm_bindgen_test]
async fn advclip_training_steps_run_on_webgpu() {
    advclip_steps_change_the_patch(webgpu().await).await;
}

#[wasm_bindgen_test]
async fn advclip_training_steps_run_on_the_cpu_fallback() {
    advclip_steps_change_the_patch(Device::flex()).await;
}

/// The message of a JS `Error` the wasm API threw.
fn message(e: wasm_bindgen::JsError) -> String {
    let value: wasm_bindgen::JsValue = e.into();
    js_sys::Error::from(value).message().into()
}

fn files(list: &[&[u8]]) -> js_sys::Array {
    list.iter().map(|b| wasm_bindgen::JsValue::from(js_sys::Uint8Array::from(*b))).collect()
}

fn strings(list: &[&str]) -> js_sys::Array {
    list.iter().map(|s| wasm_bindgen::JsValue::from_str(s)).collect()
}

fn options(json: serde_json::Value) -> wasm_bindgen::JsValue {
    use serde::Serialize;
    json.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).unwrap()
}

const PICTURE: &[u8] = include_bytes!("fixtures/images/square_224x224.png");

/// The browser API refuses what the CLI refuses (the same library checks), with a JS `Error` carrying the reason,
/// and the session keeps working afterwards.
#[wasm_bindgen_test]
async fn the_session_refuses_hostile_input_and_keeps_working() {
    use advclip::web::Session;
    let mut session = Session::create("cpu".into()).await.unwrap();
    let mut nan = WEIGHTS.to_vec();
    let at = {
        let tensors = SafeTensors::deserialize(WEIGHTS).unwrap();
        tensors.tensor("visual_projection.weight").unwrap().data().as_ptr() as usize - WEIGHTS.as_ptr() as usize
    };
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let e =
        message(session.load_model(js_bytes(&nan), Some(CONFIG.into()), "nan.safetensors".into()).await.unwrap_err());
    assert!(e.contains("NaN or infinite"), "{e}");
    let deep = CONFIG.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000000000");
    assert_ne!(deep, CONFIG);
    let e = message(session.load_model(js_bytes(WEIGHTS), Some(deep), "deep".into()).await.unwrap_err());
    assert!(e.contains("over the limit"), "{e}");
    let e = message(session.load_model(js_bytes(WEIGHTS), None, "lone".into()).await.unwrap_err());
    assert!(e.contains("not an OpenAI preset"), "{e}");
    // Cut short, the file is refused from its header, before any tensor is read.
    let cut = &WEIGHTS[..WEIGHTS.len() - 100];
    let e = message(session.load_model(js_bytes(cut), Some(CONFIG.into()), "cut".into()).await.unwrap_err());
    assert!(e.contains("not a valid safetensors file"), "{e}");
    session.load_model(js_bytes(WEIGHTS), Some(CONFIG.into()), "tiny".into()).await.unwrap();

    let labels = strings(&["cat", "dog"]);
    let mut jpeg = Vec::new();
    image::load_from_memory(PICTURE)
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    let cut = &jpeg[..jpeg.len() / 2];
    let e = message(session.classify(files(&[cut]), labels.clone(), "a photo of a {}.".into(), 2).await.unwrap_err());
    assert!(e.contains("truncated JPEG"), "{e}");

    let mut patch = Vec::new();
    image::RgbImage::from_pixel(5, 5, image::Rgb([9, 9, 9]))
        .write_to(&mut std::io::Cursor::new(&mut patch), image::ImageFormat::Png)
        .unwrap();
    let sidecar = r#"{"version":2,"mode":"advclip","model":"m","image_size":32,"area_fraction":0.0244140625,
        "placement":{"image_size":32,"size":5,"top":4294967290,"left":25},"trained_spot":"fixed","seed":0,"steps":1}"#;
    // A top that overflows a 32-bit usize (the browser's) when the size is added.
    let e = message(session.load_patch(patch, sidecar.into()).unwrap_err());
    assert!(e.contains("does not fit"), "{e}");

    for (bad, why) in [
        (serde_json::json!({"mode": "advclip", "steps": 1, "batch": 0}), "the batch must be between"),
        (serde_json::json!({"mode": "advclip", "steps": 0}), "steps must be between"),
        (serde_json::json!({"mode": "advclip", "steps": 1, "area": 0.9}), "must be in (0, 0.5)"),
        (serde_json::json!({"mode": "advclip", "steps": 1, "spot": "fixed"}), "spot is for targeted training"),
        (serde_json::json!({"mode": "advclip", "steps": 1, "placment": "x"}), "unknown field"),
    ] {
        let e = session.start_training(options(bad), files(&[PICTURE]), labels.clone(), "a photo of a {}.".into());
        let e = message(e.err().unwrap_or_else(|| panic!("accepted training options that should fail with {why}")));
        assert!(e.contains(why), "{why}: {e}");
    }
    let e = session.start_training(
        options(serde_json::json!({"mode": "advclip", "steps": 1})),
        files(&[cut]),
        labels.clone(),
        "a photo of a {}.".into(),
    );
    assert!(message(e.unwrap_err()).contains("training image 1"));

    // Still classifies.
    let results = session.classify(files(&[PICTURE]), labels, "a photo of a {}.".into(), 2).await.unwrap();
    assert_eq!(js_sys::Array::from(&results).length(), 1);
}

/// A model streamed as the page streams a download (a `ReadableStream` of odd-sized chunks) is the one loaded from a
/// buffer: same fingerprint (the one-pass FNV-1a of the file) and the same zero-shot probabilities; a stream cut
/// short, one that runs on, a value that is no stream and a stream already being read are refused with the reason,
/// and the session keeps its model.
#[wasm_bindgen_test]
async fn a_streamed_model_is_the_buffered_one() {
    use advclip::web::Session;
    use wasm_bindgen::JsCast;
    let stream = |bytes: &[u8]| {
        let chunks = js_sys::Array::new();
        for piece in bytes.chunks(65_537) {
            chunks.push(&js_bytes(piece));
        }
        let make = js_sys::Function::new_with_args(
            "chunks",
            "return new ReadableStream({ start(c) { for (const x of chunks) c.enqueue(x); c.close(); } })",
        );
        make.call1(&wasm_bindgen::JsValue::NULL, &chunks).unwrap().unchecked_into::<web_sys::ReadableStream>()
    };
    let field = |info: &wasm_bindgen::JsValue, name: &str| js_sys::Reflect::get(info, &name.into()).unwrap();
    let labels = || strings(&["cat", "dog", "a diagram"]);
    let probabilities = |results: wasm_bindgen::JsValue| {
        let first = js_sys::Array::from(&results).get(0);
        let clean = js_sys::Array::from(&js_sys::Reflect::get(&first, &"clean".into()).unwrap());
        clean
            .iter()
            .map(|p| js_sys::Reflect::get(&p, &"probability".into()).unwrap().as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    let words = WEIGHTS.chunks(8).map(|c| c.iter().rev().fold(0u64, |w, &b| (w << 8) | b as u64));
    let fnv = words.fold(0xcbf2_9ce4_8422_2325u64, |h, w| (h ^ w).wrapping_mul(0x100_0000_01b3));

    let mut session = Session::create("cpu".into()).await.unwrap();
    let info = session.load_model(js_bytes(WEIGHTS), Some(CONFIG.into()), "tiny".into()).await.unwrap();
    assert_eq!(field(&info, "fingerprint").as_string().unwrap(), format!("{fnv:016x}"));
    let buffered =
        probabilities(session.classify(files(&[PICTURE]), labels(), "a photo of a {}.".into(), 3).await.unwrap());

    let mut streamed_session = Session::create("cpu".into()).await.unwrap();
    let info = streamed_session
        .load_model_stream(stream(WEIGHTS).into(), None, Some(CONFIG.into()), "tiny".into())
        .await
        .unwrap();
    assert_eq!(field(&info, "fingerprint").as_string().unwrap(), format!("{fnv:016x}"));
    let streamed = probabilities(
        streamed_session.classify(files(&[PICTURE]), labels(), "a photo of a {}.".into(), 3).await.unwrap(),
    );
    assert_eq!(streamed, buffered);

    let cut = &WEIGHTS[..WEIGHTS.len() - 100];
    let e = refused_stream(&mut streamed_session, stream(cut).into(), "cut").await;
    assert!(e.contains("ended after"), "{e}");
    let mut longer = WEIGHTS.to_vec();
    longer.push(0);
    let e = refused_stream(&mut streamed_session, stream(&longer).into(), "longer").await;
    assert!(e.contains("more bytes follow"), "{e}");
    // Not a stream, or a stream someone else is reading: refused before anything is read.
    let e = refused_stream(&mut streamed_session, js_bytes(WEIGHTS).into(), "bytes").await;
    assert!(e.contains("expected a ReadableStream"), "{e}");
    let locked = stream(WEIGHTS);
    let _reader = locked.get_reader();
    let e = refused_stream(&mut streamed_session, locked.into(), "locked").await;
    assert!(e.contains("already being read"), "{e}");
    let again = probabilities(
        streamed_session.classify(files(&[PICTURE]), labels(), "a photo of a {}.".into(), 3).await.unwrap(),
    );
    assert_eq!(again, buffered);
}

/// The message of `loadModelStream`'s error for `value`, which must be refused.
async fn refused_stream(session: &mut advclip::web::Session, value: wasm_bindgen::JsValue, name: &str) -> String {
    message(session.load_model_stream(value, None, Some(CONFIG.into()), name.into()).await.unwrap_err())
}

/// Bytes as the page hands them to `Session.loadModel`: a JS `Uint8Array`.
fn js_bytes(bytes: &[u8]) -> js_sys::Uint8Array {
    js_sys::Uint8Array::from(bytes)
}
