//! CLIP's activation, quick_gelu `x * sigmoid(1.702 x)`, as one vectorised pass on the CPU's inference path.
//!
//! Burn's CPU backend runs it as three passes (a scale, a sigmoid with a scalar libm `exp` per element, a product),
//! about a tenth of the image tower's time. Natively, on the CPU and outside autodiff, the fc1 output's buffer (the
//! backend hands it over without a copy: it is the only reference) is rewritten in place by a branch-free exp that
//! the compiler vectorises, on AVX2/FMA where the CPU has it (detected at run time). Everywhere else (GPU devices,
//! autodiff graphs, which need the backward pass, and wasm, where tensors are never read synchronously) it is the
//! plain composition.

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

/// `x * sigmoid(1.702 x)`.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(not(target_arch = "wasm32"))]
    let x = {
        let device = x.device();
        if device.is_autodiff() || !super::batch_split::is_cpu(&device) {
            x
        } else {
            let mut data = x.into_data();
            // f32 buffers only (an f16 or f64 tensor takes the composition, rebuilt without a copy).
            if let Ok(values) = data.as_mut_slice::<f32>() {
                in_place(values);
                return Tensor::from_data(data, &device);
            }
            Tensor::from_data(data, &device)
        }
    };
    x.clone() * sigmoid(x.mul_scalar(1.702))
}

/// Rewrites every value `x` as `x * sigmoid(1.702 x)`, in parallel chunks.
#[cfg(not(target_arch = "wasm32"))]
fn in_place(values: &mut [f32]) {
    use rayon::prelude::*;
    // Large enough that a chunk's work dwarfs rayon's hand-off, small enough to share a [B*50, 3072] buffer out.
    const CHUNK: usize = 1 << 15;
    values.par_chunks_mut(CHUNK).for_each(|chunk| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { chunk_avx2(chunk) };
            return;
        }
        chunk_portable(chunk);
    });
}

#[cfg(all(not(target_arch = "wasm32"), target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(values: &mut [f32]) {
    chunk_portable(values)
}

#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn chunk_portable(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = quick_gelu_scalar(*v);
    }
}

/// `x / (1 + e^(-1.702 x))` with `exp_branch_free`: within 1.5e-6 relative of the exact value (the f32 rounding of
/// `-1.702 x` is most of it), and vectorisable.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn quick_gelu_scalar(x: f32) -> f32 {
    x / (1.0 + exp_branch_free(-1.702 * x))
}

/// `e^x` without branches or table lookups, so that a loop of it vectorises: `x = n ln2 + r` with `|r| <= ln2/2`,
/// `e^r` by its degree-6 Taylor polynomial (truncation error under 1.3e-7 relative), `2^n` built in the exponent
/// bits. The argument is clamped to [-87, 88] so that `2^n` stays a normal float: `e^x` saturates at 1.7e38 above
/// and 1.6e-38 below, which quick_gelu turns into exactly `x` and a value under 1e-36 of `x`.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn exp_branch_free(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in float arithmetic, without a branch.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `shifted`'s low mantissa bits hold n in two's complement (ROUND's are zero there): n + 127 shifted into the
    // exponent field is 2^n, in integer operations that vectorise (a float-to-int cast would not, saturating).
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free exp and quick_gelu against libm's over the whole useful range, and at the clamps.
    #[test]
    fn branch_free_exp_and_quick_gelu_match_libm() {
        let mut worst_exp = 0.0f64;
        let mut worst_gelu = 0.0f64;
        for i in 0..=200_000 {
            // Exact values of the f32 inputs, so that only the functions' own error is measured.
            let x = (-87.0 + 175.0 * i as f64 / 200_000.0) as f32;
            let exact = (x as f64).exp();
            worst_exp = worst_exp.max(((exp_branch_free(x) as f64) - exact).abs() / exact);
            let g = x / 17.02;
            let exact_gelu = g as f64 / (1.0 + (-1.702 * g as f64).exp());
            let got = quick_gelu_scalar(g) as f64;
            worst_gelu = worst_gelu.max((got - exact_gelu).abs() / exact_gelu.abs().max(1e-30));
        }
        assert!(worst_exp < 4e-7, "exp: worst relative error {worst_exp}");
        assert!(worst_gelu < 1.5e-6, "quick_gelu: worst relative error {worst_gelu}");
        assert_eq!(quick_gelu_scalar(1000.0), 1000.0);
        assert!(quick_gelu_scalar(-1000.0).abs() < 1e-30 && quick_gelu_scalar(-1000.0) <= 0.0);
        assert_eq!(quick_gelu_scalar(0.0), 0.0);
    }

    /// The fused pass on a CPU tensor (in place, in parallel chunks, AVX2 where there is one) equals the plain
    /// composition on the same values; the input here shares its buffer with `x`, so an overwrite in place would
    /// show as a mismatch (the plain one is computed from `x` afterwards).
    #[test]
    fn fused_quick_gelu_equals_the_composition() {
        use burn::tensor::{Distribution, Tolerance};
        let device = burn::tensor::Device::flex();
        let x = Tensor::<3>::random([3, 50, 700], Distribution::Normal(0.0, 3.0), &device);
        let fused = quick_gelu(x.clone());
        let plain = x.clone() * sigmoid(x.mul_scalar(1.702));
        fused.into_data().assert_approx_eq::<f32>(&plain.into_data(), Tolerance::absolute(1e-5));
    }
}
