//! Shared test helpers: running the CLI, fixture paths, safetensors fixture reading, tolerance checks, seeded full-size weights.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use advclip::model::{ClipConfig, hf_tensor_shapes};
use safetensors::{Dtype, SafeTensors};

/// Runs the `advclip` binary this package built.
pub fn advclip(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_advclip")).args(args).output().expect("advclip runs")
}

/// Asserts that a run succeeded (showing its stderr when not) and hands it back.
pub fn ok(out: std::process::Output) -> std::process::Output {
    assert!(out.status.success(), "advclip failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A file of `tests/fixtures`. A test binary carried to another machine (`scripts/gpu-check`) finds them under
/// `$ADVCLIP_ROOT` there, the repository it was built from being absent.
pub fn fixture(path: &str) -> PathBuf {
    let root =
        std::env::var_os("ADVCLIP_ROOT").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    root.join("tests/fixtures").join(path)
}

/// A float32 or int64 tensor of a reference file, as f32 values with its shape.
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub ints: Vec<i64>,
}

pub fn read_reference(path: &str) -> HashMap<String, RefTensor> {
    let bytes = std::fs::read(fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .iter()
        .map(|(name, view)| {
            let data = view.data();
            let (values, ints) = match view.dtype() {
                Dtype::F32 => {
                    (data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), vec![])
                }
                Dtype::I64 => {
                    let ints: Vec<i64> =
                        data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
                    (ints.iter().map(|&i| i as f32).collect(), ints)
                }
                Dtype::U8 => (data.iter().map(|&b| b as f32).collect(), data.iter().map(|&b| b as i64).collect()),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name.to_string(), RefTensor { shape: view.shape().to_vec(), values, ints })
        })
        .collect()
}

/// Largest absolute difference; panics on a length mismatch.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    let diff = max_abs_diff(actual, expected);
    assert!(diff.is_finite() && diff <= tolerance, "{what}: max abs diff {diff:e} > {tolerance:e}");
    eprintln!("{what}: max abs diff {diff:.3e} (tolerance {tolerance:.0e})");
}

/// The reference's token ids as rows of u32, trailing padding removed (the padding is our job).
pub fn id_rows(t: &RefTensor) -> Vec<Vec<u32>> {
    let len = *t.shape.last().unwrap();
    t.ints
        .chunks(len)
        .map(|row| {
            let end = row.iter().position(|&i| i == advclip::tokenizer::EOT as i64).map_or(row.len(), |p| p + 1);
            row[..end].iter().map(|&i| i as u32).collect()
        })
        .collect()
}

// ---- The seeded stream shared with tests/fixtures/generate.py (bit-identical on both sides). ----

const SALT: u64 = 0x0AD5_C11B_0000_0001;

fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `count` values of the stream named `name`: `(2u - 1) * amp + base`, u uniform on 24 bits, all in f32.
pub fn seeded_values(name: &str, count: usize, amp: f32, base: f32) -> Vec<f32> {
    let mut state = fnv1a64(name) ^ SALT;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 * (1.0 / 16_777_216.0);
            (2.0 * u - 1.0) * amp + base
        })
        .collect()
}

/// The value of one weight tensor under the generator's naming rules.
pub fn seeded_tensor(name: &str, shape: &[usize]) -> Vec<f32> {
    let count = shape.iter().product::<usize>().max(1);
    if name == "logit_scale" {
        return vec![2.6592];
    }
    let (amp, base) = if name.contains("norm") {
        if name.ends_with(".weight") { (0.1, 1.0) } else { (0.02, 0.0) }
    } else if (name.contains("embedding") && !name.contains("patch_embedding")) || name.ends_with(".bias") {
        (0.02, 0.0)
    } else {
        assert!(shape.len() >= 2, "{name}: no rule for shape {shape:?}");
        ((1.0 / (shape[1..].iter().product::<usize>() as f64).sqrt()) as f32, 0.0)
    };
    seeded_values(name, count, amp, base)
}

/// A complete `model.safetensors` for `config`, every tensor from the seeded stream.
pub fn seeded_checkpoint(config: &ClipConfig) -> Vec<u8> {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = hf_tensor_shapes(config)
        .into_iter()
        .map(|(name, shape)| {
            let bytes = seeded_tensor(&name, &shape).iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

// ---- Devices and tensor reading. ----

/// The device the parity tests run on: `ADVCLIP_TEST_DEVICE=wgpu` (with `--features wgpu`) or the CPU by default.
pub fn test_device() -> burn::tensor::Device {
    let device = select_test_device();
    eprintln!("test device: {device:?}");
    device
}

fn select_test_device() -> burn::tensor::Device {
    match std::env::var("ADVCLIP_TEST_DEVICE").as_deref() {
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => burn::tensor::Device::wgpu(Default::default()),
        #[cfg(feature = "cuda")]
        Ok("cuda") => burn::tensor::Device::cuda(0),
        Ok("cpu") | Ok("flex") | Err(_) => burn::tensor::Device::flex(),
        Ok(other) => {
            panic!("ADVCLIP_TEST_DEVICE={other} is not built in (enable its cargo feature)")
        }
    }
}

pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}
