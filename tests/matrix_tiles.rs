//! The CPU's f32 products on AMX tiles (feature `amx`): used where the CPU has AMX, within a stated bound of the
//! exact sums for every operand layout Burn hands gemm, and NaN still poisons what it touches; a weight copied into
//! tile order once gives the same products as copied on every call, and the linear layers' copies (in tile order, or
//! in gemm's kernels' panels with the tiles off or absent: feature `weight-copies`) follow their weights.
//!
//! On a CPU without AMX the bound tests run gemm's own kernels (and hold them to the same bound); the first test
//! says which path ran.

use advclip::model::{
    Clip, ClipConfig, Preset, TextConfig, VisionConfig, matrix_tiles_active, packed_weight_bytes, product_onto,
    set_matrix_tiles, set_weight_copies,
};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

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

/// A weight copied into tile order once (`gemm_f32::amx::PackedRight`, what the linear layers keep) gives products,
/// by the linear layers' call on it (`product_onto_copy`), equal bit for bit to the call that copies it every time
/// (`product_onto`), at ViT-B/32's shapes, ragged ones and from a transposed weight; at 50 rows (a lone image's tokens,
/// on the tiles only with a copied weight; `product_onto` runs gemm's kernels there) within the tiles' bound of the
/// exact sums; too few rows (under 16) are refused untouched. Without AMX there is no copy.
#[cfg(all(feature = "amx", target_arch = "x86_64"))]
#[test]
fn a_weight_copied_once_gives_the_same_products_bit_for_bit() {
    use advclip::model::product_onto_copy;
    use gemm_f32::copies::PackedRight;
    let _switch = tiles_on();
    for (m, k, n) in
        [(200, 768, 3072), (200, 3072, 768), (800, 768, 768), (65, 1000, 97), (130, 33, 70), (50, 768, 768)]
    {
        let a = values(31 + m as u64, m * k, 1.0);
        let b = values(32 + n as u64, k * n, 1.0 / (k as f32).sqrt());
        let bias = values(33, n, 1.0);
        let start: Vec<f32> = (0..m).flat_map(|_| bias.iter().copied()).collect();
        let mut every_call = start.clone();
        product_onto(&mut every_call, &a, &b, [m, k, n]);
        let Some(packed) = PackedRight::from_row_major(&b, k, n) else {
            assert!(!matrix_tiles_active(), "the tiles run, so the weight must be copied");
            continue;
        };
        let b_transposed: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        // SAFETY: element (d, j) of the weight at d + j * k.
        let from_transposed =
            unsafe { gemm_f32::copies::pack_right_operand(b_transposed.as_ptr(), k as isize, 1, k, n) }.unwrap();
        for (packed, how) in [(&packed, "row-major"), (&from_transposed, "transposed")] {
            let mut once = start.clone();
            assert!(
                product_onto_copy(&mut once, true, &a, packed, m),
                "{m} x {k} x {n} ({how}): the tiles must take it"
            );
            if m >= 64 {
                let differing = once.iter().zip(&every_call).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
                assert_eq!(differing, 0, "{m} x {k} x {n} ({how}): {differing} results differ");
            } else {
                // `product_onto` leaves fewer than 64 rows to gemm's kernels: held to the tiles' bound instead.
                let product: Vec<f32> =
                    once.iter().enumerate().map(|(i, &o)| (f64::from(o) - f64::from(bias[i % n])) as f32).collect();
                let error = worst_relative_error(&product, &a, &b, [m, k, n]);
                assert!(error < 2f64.powi(-16), "{m} x {k} x {n} ({how}): error {error:.2e}");
            }
        }
    }
    let (k, n) = (256, 128);
    let b = values(34, k * n, 0.1);
    if let Some(packed) = PackedRight::from_row_major(&b, k, n) {
        let (a, mut out) = (values(35, 8 * k, 1.0), vec![7.0f32; 8 * n]);
        let ran = product_onto_copy(&mut out, false, &a, &packed, 8);
        assert!(!ran && out.iter().all(|&v| v == 7.0), "8 rows are gemm's: refused, nothing written");
    }
}

/// ViT-B/32's layout made small: 65 tokens an image and a width of 64, so that the linear products of a batch of two
/// are large enough for the tiles (the text tower, unused here, as small as can be).
fn small_clip() -> ClipConfig {
    let mut config = Preset::VitB32.config();
    config.vision = VisionConfig {
        image_size: 64,
        patch_size: 8,
        hidden_size: 64,
        intermediate_size: 256,
        num_layers: 2,
        num_heads: 4,
        ..config.vision
    };
    config.text = TextConfig {
        vocab_size: 1000,
        hidden_size: 64,
        intermediate_size: 256,
        num_layers: 1,
        num_heads: 4,
        ..config.text
    };
    config.projection_dim = 32;
    config
}

/// Bytes of the weight copies that `small_clip`'s vision tower makes for a batch of two (in tile order 32 x 32 steps of
/// 4 KiB; in gemm's kernels' panels as many, its widths being whole panels of 16 or 64 columns): the first layer's q,
/// k, v, out (64 x 64), fc1 (64 x 256) and fc2 (256 x 64); of the last, which runs q, out and the MLP on the class
/// tokens alone (2 rows, too few to pay for a copy), k and v.
const SMALL_CLIP_COPIES: usize = ((4 * (2 * 2) + (2 * 8) + (8 * 2)) + 2 * (2 * 2)) * 4096;

/// Every float parameter doubled (a weight alone in its buffer, which Burn may rewrite in place).
struct Double;

impl ModuleMapper for Double {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.mul_scalar(2.0))
    }
}

/// The engines whose weight copies the two tests below check: the AMX tiles where this CPU runs them (`true`), and
/// gemm's own AVX2/AVX-512 kernels on panel copies (the tiles off), on every x86-64 CPU with FMA.
fn engines() -> Vec<bool> {
    set_matrix_tiles(true);
    let tiles = matrix_tiles_active();
    eprintln!("weight copies checked on: {}gemm's kernels", if tiles { "AMX tiles, " } else { "" });
    if tiles { vec![true, false] } else { vec![false] }
}

/// `check(tiles)` on each engine of [`engines`], holding the switch, and the tiles back on after.
fn on_each_engine(check: fn(bool)) {
    let _switch = tiles_on();
    for tiles in engines() {
        check(tiles);
    }
    set_matrix_tiles(true);
}

/// Whether this build and CPU copy weights for gemm's kernels (feature `weight-copies`, x86-64 with FMA).
fn kernel_copies_expected() -> bool {
    #[cfg(target_arch = "x86_64")]
    return cfg!(feature = "weight-copies") && std::arch::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The linear layers copy each weight at its first product and never again (the bytes held are exactly one copy of
/// every weight a product used, unchanged by a second batch, which gives the same features bit for bit), the features
/// agree with gemm's f32 kernels copying every weight anew (on the tiles to 1e-3 of their scale; on gemm's kernels
/// bit for bit: the same sums in the same order), and once the weights change (every parameter doubled, the old model
/// gone) the features follow the new weights, not the old copies, which are dropped. On each engine of [`engines`].
#[test]
fn linear_layers_copy_each_weight_once_and_follow_a_changed_weight() {
    on_each_engine(copies_follow_their_weights);
}

fn copies_follow_their_weights(tiles: bool) {
    set_matrix_tiles(tiles);
    let device = Device::flex();
    let config = small_clip();
    let model = Clip::new(&config, &device);
    let pixels = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    // The reference: gemm's f32 kernels, every product copying its weight itself.
    let features_in_f32 = |model: &Clip| {
        set_matrix_tiles(false);
        set_weight_copies(false);
        let features = model.image_features(pixels.clone()).into_data();
        set_weight_copies(true);
        set_matrix_tiles(tiles);
        features
    };
    // The tiles' rounding is relative to the sums' scale, and doubling every parameter scales the features up and
    // amplifies any difference through the layers, so the tolerance is 1e-3 of the largest feature. Measured in 12
    // runs (2026-12-03): worst differences 1.4e-6 to 2.4e-6 at features up to 1.0-1.8, and 7.0e-5 to 2.7e-4 at up to
    // 3.4-9.3 once doubled (at most 5.7e-5 of the largest); the old weights' copies would be off by about 2.
    let agree = |got: &TensorData, want: &TensorData| {
        if !tiles {
            assert_eq!(got, want, "gemm's kernels on the copies: the same sums as copying anew");
            return;
        }
        let largest = want.iter::<f32>().map(f32::abs).fold(0.0f32, f32::max).max(1.0);
        let worst = got.iter::<f32>().zip(want.iter::<f32>()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        eprintln!("features up to {largest:.2}: worst difference {worst:.2e}");
        got.assert_approx_eq::<f32>(want, Tolerance::absolute(1e-3 * largest));
    };
    let exact = features_in_f32(&model);
    let held_before = packed_weight_bytes();
    let first = model.image_features(pixels.clone()).into_data();
    let held = packed_weight_bytes() - held_before;
    if !tiles && !kernel_copies_expected() {
        assert_eq!(held, 0, "no copies where gemm's x86-64 kernels do not run");
        return;
    }
    assert_eq!(held, SMALL_CLIP_COPIES, "one copy of each linear weight that a product used");
    let second = model.image_features(pixels.clone()).into_data();
    assert_eq!(packed_weight_bytes() - held_before, held, "a second batch copies nothing");
    assert_eq!(second, first, "the same copies give the same features");
    agree(&first, &exact);

    let doubled = model.map(&mut Double);
    let on_copies = doubled.image_features(pixels.clone()).into_data();
    assert_eq!(packed_weight_bytes() - held_before, held, "the old weights' copies dropped, the new ones made");
    let doubled_exact = features_in_f32(&doubled);
    agree(&on_copies, &doubled_exact);
    let moved = on_copies.iter::<f32>().zip(first.iter::<f32>()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(moved > 0.1, "doubling the weights must move the features (by {moved})");
}

/// Patch training's products (Burn's autodiff, which calls gemm itself) run on the weights' copies too: the weight's
/// at the forward pass, its transpose's at the backward pass (two copies of each weight a product used), and the
/// gradient to the input is the same bit for bit as with every product copying its weight anew; a second step
/// copies nothing, and once the weights change (every parameter doubled, the old model gone) the gradient follows
/// them. On each engine of [`engines`].
#[test]
fn training_products_use_the_weight_copies_and_give_the_same_gradient() {
    on_each_engine(training_uses_the_copies);
}

fn training_uses_the_copies(tiles: bool) {
    set_matrix_tiles(tiles);
    let device = Device::flex().autodiff();
    let model = Clip::new(&small_clip(), &device).no_grad();
    let pixels = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let mix = Tensor::<2>::random([2, 32], Distribution::Normal(0.0, 1.0), &device);
    let gradient = |model: &Clip, copies: bool| {
        set_weight_copies(copies);
        let pixels = pixels.clone().require_grad();
        let loss = (model.image_features(pixels.clone()) * mix.clone()).sum();
        let gradient = pixels.grad(&loss.backward()).expect("the pixels are tracked").into_data();
        set_weight_copies(true);
        gradient
    };
    let anew = gradient(&model, false);
    let held_before = packed_weight_bytes();
    let first = gradient(&model, true);
    let held = packed_weight_bytes() - held_before;
    if !tiles && !kernel_copies_expected() {
        assert_eq!(held, 0, "no copies where gemm's x86-64 kernels do not run");
        return;
    }
    assert_eq!(held, 2 * SMALL_CLIP_COPIES, "each weight a product used, and its transpose, copied once");
    assert_eq!(first, anew, "the copies give the products of the weights copied anew");
    let second = gradient(&model, true);
    assert_eq!(packed_weight_bytes() - held_before, held, "a second step copies nothing");
    assert_eq!(second, first);

    let doubled = model.map(&mut Double);
    let on_copies = gradient(&doubled, true);
    assert_eq!(packed_weight_bytes() - held_before, held, "the old weights' copies dropped, the new ones made");
    assert_eq!(on_copies, gradient(&doubled, false), "the gradient of the doubled weights");
    let moved = on_copies.iter::<f32>().zip(first.iter::<f32>()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "doubling the weights must move the gradient (by {moved})");
}
