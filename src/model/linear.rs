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
        Err(x) => layer.forward(x),
    }
}

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
    // The weight as stored (any strides: gemm reads them), from its first element.
    let layout = weight.layout();
    let (weight_row_stride, weight_column_stride) = (layout.strides()[0], layout.strides()[1]);
    let weight_values = &weight.storage::<f32>()[layout.start_offset()..];
    // Burn's own rule (burn-flex's matmul): gemm splits a product across the pool from 192^3 multiply-adds on.
    let parallelism = if rows.saturating_mul(d_output).saturating_mul(d_input) >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    if rows > 0 && d_output > 0 {
        // SAFETY: `out` is [rows, d_output] row-major, `input` [rows, d_input] row-major (contiguous, checked above),
        // and the weight's [d_input, d_output] elements lie at its layout's strides from `weight_values`' start.
        unsafe {
            gemm::gemm(
                rows,
                d_output,
                d_input,
                out.as_mut_ptr(),
                1,
                d_output as isize,
                bias.is_some(),
                input.as_ptr(),
                1,
                d_input as isize,
                weight_values.as_ptr(),
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
    Ok(from_cpu(FlexTensor::from_data(TensorData::new(out, [batch, tokens, d_output]))))
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
}
