//! The linear layers' forward pass on the fastest path a device has: natively on the CPU one gemm call that starts
//! from the bias, in the threaded page the SIMD128 kernel of `wasm_linear`, elsewhere Burn's `Linear`.
//!
//! Burn's CPU `Linear` is a matrix product into a fresh buffer and then a second pass that adds the bias row to every
//! output row (1.4 % of the text tower's time in `perf`, 2026-12-02). Natively, outside autodiff, the output buffer
//! is filled with the bias rows first and gemm adds the product onto it (`read_dst`), the same call Burn makes
//! otherwise. The sum's order differs from Burn's (the bias joins before the depth blocks' partial products,
//! not after), a rounding of the last bit.

use burn::nn::Linear;
use burn::tensor::Tensor;

/// `layer.forward(x)` for `x` of [batch, tokens, d_input].
pub fn linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let x = match super::wasm_linear::simd_forward(layer, x) {
        Ok(done) => return done,
        Err(x) => x,
    };
    match gemm_from_bias(layer, x) {
        Ok(done) => done,
        Err(x) => {
            copy_weight_for_training(layer, &x);
            layer.forward(x)
        }
    }
}

/// On an autodiff CPU device (patch training; the CLIP weights frozen): the weight copied once in the order its
/// products read it (AMX tiles, or gemm's kernels' panels), for the products Burn's autodiff runs with it, as
/// `gemm_from_bias` does for inference; its transpose, which the backward pass multiplies by, is copied at that
/// product's first call (`packed_weights`).
#[cfg(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64"))]
fn copy_weight_for_training(layer: &Linear, x: &Tensor<3>) {
    let weight = layer.weight.val();
    let device = x.device();
    if !device.is_autodiff() || weight.is_require_grad() || !gemm_f32::copies::copies_apply() {
        return;
    }
    let [batch, tokens, _] = x.dims();
    if let Ok(weight) = super::cpu_tensor::into_cpu_f32(weight.without_autodiff()) {
        super::packed_weights::keep_copy(&weight, batch * tokens);
    }
}

#[cfg(not(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64")))]
fn copy_weight_for_training(_layer: &Linear, _x: &Tensor<3>) {}

/// The native CPU path: `x` contiguous, weight and bias on the CPU backend in f32, outside autodiff; any other input
/// comes back untouched as the error.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
#[allow(clippy::result_large_err)] // both sides are the tensor handed back by value
fn gemm_from_bias(layer: &Linear, x: Tensor<3>) -> Result<Tensor<3>, Tensor<3>> {
    use super::cpu_tensor::{from_cpu, into_cpu_f32};
    use burn::backend::flex::FlexTensor;
    use burn::tensor::TensorData;

    let [batch, tokens, d_input] = x.dims();
    let [weight_rows, d_output] = layer.weight.dims();
    if weight_rows != d_input {
        return Err(x); // Burn's own forward reports the mismatch
    }
    let x = into_cpu_f32(x)?;
    let Some(input) = x.as_slice::<f32>() else { return Err(from_cpu(x)) };
    let Ok(weight) = into_cpu_f32(layer.weight.val()) else { return Err(from_cpu(x)) };
    let bias = match layer.bias.as_ref().map(|b| into_cpu_f32(b.val())) {
        None => None,
        Some(Ok(bias)) if bias.as_slice::<f32>().is_some() => Some(bias),
        Some(_) => return Err(from_cpu(x)),
    };
    let rows = batch * tokens;
    let mut out = match bias.as_ref().and_then(|b| b.as_slice::<f32>()) {
        Some(bias) => bias.repeat(rows),
        None => vec![0.0f32; rows * d_output],
    };
    // The weight's copy in the order its engine reads (AMX tiles or gemm's kernels' panels), made at its first
    // product, which gemm finds by the weight's address (`packed_weights`).
    #[cfg(all(feature = "weight-copies", target_arch = "x86_64"))]
    super::packed_weights::keep_copy(&weight, rows);
    // The weight as stored (any strides: gemm reads them), from its first element.
    let layout = weight.layout();
    let (weight_row_stride, weight_column_stride) = (layout.strides()[0], layout.strides()[1]);
    let weight_values = &weight.storage::<f32>()[layout.start_offset()..];
    // SAFETY: `out` is [rows, d_output] row-major, `input` [rows, d_input] row-major (contiguous, checked above), and
    // the weight's [d_input, d_output] elements lie at its layout's strides from `weight_values`' start.
    unsafe {
        gemm_onto(
            out.as_mut_ptr(),
            bias.is_some(),
            input.as_ptr(),
            weight_values.as_ptr(),
            [weight_row_stride, weight_column_stride],
            [rows, d_input, d_output],
        )
    };
    Ok(from_cpu(FlexTensor::from_data(TensorData::new(out, [batch, tokens, d_output]))))
}

/// `out[rows, d_output] = input[rows, d_input] · weight` added onto what `out` holds (its bias rows, or zeros), for a
/// contiguous `weight` of [d_input, d_output]: the call the native linear layers make, public for
/// `benches/matmul.rs`, which times it on ViT-B/32's weights.
///
/// # Panics
/// When a slice is shorter than its shape says.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
#[doc(hidden)]
pub fn product_onto(out: &mut [f32], input: &[f32], weight: &[f32], [rows, d_input, d_output]: [usize; 3]) {
    assert!(out.len() >= rows * d_output, "out holds {} values, not {rows} x {d_output}", out.len());
    assert!(input.len() >= rows * d_input, "input holds {} values, not {rows} x {d_input}", input.len());
    assert!(weight.len() >= d_input * d_output, "weight holds {} values, not {d_input} x {d_output}", weight.len());
    // SAFETY: the three slices hold the shapes given (checked above), the weight contiguous and row-major.
    unsafe {
        gemm_onto(
            out.as_mut_ptr(),
            true,
            input.as_ptr(),
            weight.as_ptr(),
            [d_output as isize, 1],
            [rows, d_input, d_output],
        )
    };
}

/// `out[rows, d_output] = input[rows, d_input] · copy` on the AMX tiles from a weight's copy in tile order, added
/// onto what `out` holds when `read_out`: the product that the linear layers' gemm calls run once they find their
/// weight's copy (`packed_weights`), here on a copy the caller holds; `false` (nothing written) where the tiles do
/// not take the product (fewer than 16 rows, the tiles turned off since the copy). Threads as [`gemm_onto`]'s. Public
/// for `benches/matmul.rs` and the tests.
///
/// # Panics
/// When a slice is shorter than its shape says.
#[cfg(all(feature = "flex", feature = "amx", target_arch = "x86_64"))]
#[doc(hidden)]
pub fn product_onto_copy(
    out: &mut [f32],
    read_out: bool,
    input: &[f32],
    copy: &gemm_f32::copies::PackedRight,
    rows: usize,
) -> bool {
    let [d_input, d_output] = copy.shape();
    assert!(out.len() >= rows * d_output, "out holds {} values, not {rows} x {d_output}", out.len());
    assert!(input.len() >= rows * d_input, "input holds {} values, not {rows} x {d_input}", input.len());
    // SAFETY: both slices hold their shapes (checked above), row-major; `out` is borrowed mutably, so not aliased.
    unsafe {
        gemm_f32::amx::gemm_packed(
            rows,
            out.as_mut_ptr(),
            d_output as isize,
            read_out,
            input.as_ptr(),
            d_input as isize,
            copy,
            parallelism([rows, d_input, d_output]),
        )
    }
}

/// gemm's threads for a product of `[rows, d_input, d_output]`: Burn's own rule (burn-flex's matmul), the pool from
/// 192^3 multiply-adds on.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
fn parallelism([rows, d_input, d_output]: [usize; 3]) -> gemm::Parallelism {
    if rows.saturating_mul(d_output).saturating_mul(d_input) >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// The gemm call itself: `out` ([rows, d_output], row-major) gets `input` ([rows, d_input], row-major) times the
/// weight whose element (i, o) lies at `weight + i * strides[0] + o * strides[1]`, added onto `out`'s values when
/// `read_out`; an empty `out` is left alone. Threads by [`parallelism`].
///
/// # Safety
/// Every pointer must be valid for the elements the shapes and strides reach, `out` for writes, and none may alias
/// `out`.
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
unsafe fn gemm_onto(
    out: *mut f32,
    read_out: bool,
    input: *const f32,
    weight: *const f32,
    [weight_row_stride, weight_column_stride]: [isize; 2],
    [rows, d_input, d_output]: [usize; 3],
) {
    if rows == 0 || d_output == 0 {
        return; // nothing to write
    }
    let parallelism = parallelism([rows, d_input, d_output]);
    // SAFETY: the caller's promise.
    unsafe {
        gemm::gemm(
            rows,
            d_output,
            d_input,
            out,
            1,
            d_output as isize,
            read_out,
            input,
            1,
            d_input as isize,
            weight,
            weight_column_stride,
            weight_row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(not(all(feature = "flex", not(target_arch = "wasm32"))))]
#[allow(clippy::result_large_err)]
fn gemm_from_bias(_layer: &Linear, x: Tensor<3>) -> Result<Tensor<3>, Tensor<3>> {
    Err(x)
}

#[cfg(all(test, feature = "flex", not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// The gemm-from-bias path equals Burn's `Linear` (with and without a bias, a product large enough to be split
    /// across the pool and one too small to be), and leaves an autodiff input to Burn.
    #[test]
    fn the_native_path_equals_burns_linear() {
        let device = Device::flex();
        for (d_input, d_output, tokens, bias) in [(768, 3072, 50, true), (64, 32, 7, true), (96, 40, 5, false)] {
            let layer = LinearConfig::new(d_input, d_output).with_bias(bias).init(&device);
            let x = Tensor::<3>::random([2, tokens, d_input], Distribution::Normal(0.0, 1.0), &device);
            let expected = layer.forward(x.clone()).into_data();
            let got = gemm_from_bias(&layer, x).map_err(|_| "the CPU tensor took Burn's path").unwrap();
            got.into_data().assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
        }
        let device = device.autodiff();
        let tracked = Tensor::<3>::random([1, 3, 64], Distribution::Normal(0.0, 1.0), &device);
        let layer = LinearConfig::new(64, 32).init(&device);
        assert!(gemm_from_bias(&layer, tracked).is_err(), "autodiff needs Burn's graph");
    }

    /// `product_onto` adds the product onto what `out` holds, equal to the sum written out, at a size gemm splits
    /// across the pool and one it does not; a slice shorter than its shape is refused.
    #[test]
    fn the_public_product_adds_onto_out() {
        for (rows, d_input, d_output) in [(100, 96, 200), (3, 5, 7)] {
            let input: Vec<f32> = (0..rows * d_input).map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6).collect();
            let weight: Vec<f32> = (0..d_input * d_output).map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5).collect();
            let start: Vec<f32> = (0..rows * d_output).map(|i| (i % 3) as f32).collect();
            let mut out = start.clone();
            product_onto(&mut out, &input, &weight, [rows, d_input, d_output]);
            for r in 0..rows {
                for o in 0..d_output {
                    let sum: f64 = (0..d_input)
                        .map(|i| f64::from(input[r * d_input + i]) * f64::from(weight[i * d_output + o]))
                        .sum::<f64>()
                        + f64::from(start[r * d_output + o]);
                    let got = f64::from(out[r * d_output + o]);
                    assert!((got - sum).abs() < 1e-4 * (1.0 + sum.abs()), "[{r}, {o}]: {got} against {sum}");
                }
            }
        }
        let short = std::panic::catch_unwind(|| product_onto(&mut [0.0; 5], &[0.0; 6], &[0.0; 6], [2, 3, 3]));
        assert!(short.is_err(), "an out of 5 values for 2 x 3 must be refused");
    }
}
