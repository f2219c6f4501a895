//! The CPU's f32 products on AMX tiles (feature `amx`): used where the CPU has AMX, within a stated bound of the
//! exact sums for every operand layout Burn hands gemm, and NaN still poisons what it touches.
//!
//! On a CPU without AMX the bound tests run gemm's own kernels (and hold them to the same bound); the first test
//! says which path ran.

use advclip::model::{matrix_tiles_active, product_onto, set_matrix_tiles};
use burn::tensor::{Device, Tensor, TensorData};

/// The CPU and kernel offer AMX-BF16 (Linux lists the flags only where it enabled the tile state).
fn cpu_offers_amx() -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    has("amx_bf16") && has("amx_tile") && has("avx512_bf16")
}

/// Every test here sets the process-wide switch; each holds this while it runs, so that none measures the other path.
static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tiles_on() -> std::sync::MutexGuard<'static, ()> {
    let guard = SWITCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    set_matrix_tiles(true);
    guard
}

fn values(seed: u64, count: usize, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The largest error of `got` against the exact sums, as a share of the sum of the terms' magnitudes (the scale an
/// f32 product's rounding is measured in).
fn worst_relative_error(got: &[f32], a: &[f32], b: &[f32], [m, k, n]: [usize; 3]) -> f64 {
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let (mut sum, mut magnitude) = (0.0f64, 0.0f64);
            for t in 0..k {
                let term = f64::from(a[i * k + t]) * f64::from(b[t * n + j]);
                sum += term;
                magnitude += term.abs();
            }
            worst = worst.max((f64::from(got[i * n + j]) - sum).abs() / magnitude.max(1e-30));
        }
    }
    worst
}

#[test]
fn tiles_run_where_the_cpu_has_them() {
    let _switch = tiles_on();
    let expected = cfg!(all(feature = "amx", target_arch = "x86_64")) && cpu_offers_amx();
    eprintln!("AMX tiles: CPU offers {}, active {}", cpu_offers_amx(), matrix_tiles_active());
    assert_eq!(matrix_tiles_active(), expected);
    set_matrix_tiles(false);
    assert!(!matrix_tiles_active(), "switched off, the tiles must not run");
    set_matrix_tiles(true);
}

/// The linear layers' call (`product_onto`, onto a bias) at ViT-B/32's shapes and at ragged ones (rows, depth and
/// columns off the tiles' multiples; the last is below the tiles' minimum and runs on gemm's kernels): each result
/// within 2^-16 of its terms' magnitude of the exact sum. Measured 2026-12-03 with the tiles: 1.7e-7 to 4.1e-6
/// (2^-18 at worst); an f32 product is near 1e-7; a single bf16 product (2^-9 a term) would be 3.5e-5 and more.
#[test]
fn products_stay_within_the_bound_of_the_exact_sums() {
    let _switch = tiles_on();
    for (m, k, n) in [(200, 768, 3072), (200, 3072, 768), (65, 1000, 97), (130, 33, 70), (64, 64, 64), (37, 200, 70)] {
        let a = values(1 + m as u64, m * k, 1.0);
        let b = values(2 + n as u64, k * n, 1.0 / (k as f32).sqrt());
        let bias = values(3, n, 1.0);
        let mut out: Vec<f32> = (0..m).flat_map(|_| bias.iter().copied()).collect();
        product_onto(&mut out, &a, &b, [m, k, n]);
        // Take the bias back off to compare the product alone (exact in f64 to well below the bound).
        let product: Vec<f32> =
            out.iter().enumerate().map(|(i, &o)| (f64::from(o) - f64::from(bias[i % n])) as f32).collect();
        let error = worst_relative_error(&product, &a, &b, [m, k, n]);
        eprintln!("{m} x {k} x {n}: worst error {error:.2e} of the terms' magnitude");
        assert!(error < 2f64.powi(-16), "{m} x {k} x {n}: error {error:.2e}");
    }
}

/// Burn's matmul with transposed operands (as autodiff's backward pass multiplies by the weight transposed) and
/// with the same values laid out row-major: both within the same bound.
#[test]
fn transposed_operands_stay_within_the_bound() {
    let _switch = tiles_on();
    let device = Device::flex();
    let (m, k, n) = (96, 384, 160);
    let a = values(11, m * k, 1.0);
    let b = values(12, k * n, 0.05);
    let b_transposed: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    let a_transposed: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let tensor = |v: &[f32], shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), shape), &device);
    let plain = tensor(&a, [m, k]).matmul(tensor(&b, [k, n]));
    let through_transposes =
        tensor(&a_transposed, [k, m]).transpose().matmul(tensor(&b_transposed, [n, k]).transpose());
    let plain: Vec<f32> = plain.into_data().try_to_vec::<f32>().unwrap();
    let through_transposes: Vec<f32> = through_transposes.into_data().try_to_vec::<f32>().unwrap();
    assert!(worst_relative_error(&plain, &a, &b, [m, k, n]) < 2f64.powi(-16));
    assert!(worst_relative_error(&through_transposes, &a, &b, [m, k, n]) < 2f64.powi(-16));
}

/// A NaN in one row of the input makes that row of the product NaN and leaves the others finite.
#[test]
fn a_nan_stays_in_its_row() {
    let _switch = tiles_on();
    let (m, k, n) = (64, 256, 96);
    let mut a = values(21, m * k, 1.0);
    a[5 * k + 17] = f32::NAN;
    let b = values(22, k * n, 0.1);
    let mut out = vec![0.0f32; m * n];
    product_onto(&mut out, &a, &b, [m, k, n]);
    for i in 0..m {
        let row = &out[i * n..(i + 1) * n];
        if i == 5 {
            assert!(row.iter().all(|v| v.is_nan()), "row 5 holds the NaN");
        } else {
            assert!(row.iter().all(|v| v.is_finite()), "row {i} is finite");
        }
    }
}
