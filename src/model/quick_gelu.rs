//! CLIP's activation, quick_gelu `x * sigmoid(1.702 x)`, as one vectorised pass on the CPU.
//!
//! Burn's CPU backend runs it as three passes (a scale, a sigmoid with a scalar libm `exp` per element, a product),
//! about a tenth of the image tower's time. On the CPU outside autodiff (natively, and in the page, whose
//! classifying model is on the plain device), the fc1 output's buffer (it is the only reference to
//! it) is rewritten in place through the backend's own tensor (nothing is read back) by a branch-free exp that the
//! compiler vectorises: AVX2/FMA where the CPU has it (detected at run time). In the page it took ViT-B/32 with two
//! threads from 221-233 to 192-249 ms/img at batch 8 and from 342-363 to 270-313 at batch 1 (two runs each, README:
//! the browser's speed). Inside an autodiff graph on the CPU (patch training) the same pass gives the values and
//! the slope, tied into the graph by one product and one sum (`tracked_on_cpu`): the training step spent 7.5 % of
//! its time in libm's `exp` before, 0.9 % after (perf, ViT-B/32 at batch 8). Everywhere else it is the plain
//! composition: GPU devices, and a buffer that is shared or not contiguous.

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

#[cfg(feature = "flex")]
use super::cpu_math::{exp_branch_free, for_each_chunk, on_widest_simd};

/// Elements a pass hands to one thread: large enough that a chunk's work dwarfs rayon's hand-off, small enough to
/// share a [B*50, 3072] buffer out.
#[cfg(feature = "flex")]
const CHUNK: usize = 1 << 15;

/// `x * sigmoid(1.702 x)`.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match rewrite_in_place(x).or_else(tracked_on_cpu) {
        Ok(done) => done,
        Err(x) => x.clone() * sigmoid(x.mul_scalar(1.702)),
    }
}

/// On the CPU inside an autodiff graph (patch training): the values `y` and the slope `y'` in one vectorised pass
/// over `x`, tied into the graph as `x * y' + (y - x * y')` with both factors detached. Its value is `y` (within a
/// rounding of `x * y'`) and its backward pass multiplies the incoming gradient by `y'`: two tracked passes and one
/// product backward, where the composition takes three passes with a scalar libm `exp` forward and five backward.
/// Any other tensor comes back untouched as the error.
#[cfg(feature = "flex")]
#[allow(clippy::result_large_err)] // both sides are the tensor handed back by value
fn tracked_on_cpu<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    use super::cpu_tensor::into_cpu_f32;
    use burn::tensor::TensorData;
    let device = x.device();
    if !device.is_autodiff() || !super::batch_split::is_cpu(&device) {
        return Err(x);
    }
    let Ok(inner) = into_cpu_f32(x.clone().without_autodiff()) else { return Err(x) };
    let Some(values) = inner.as_slice::<f32>() else { return Err(x) };
    let (mut slope, mut rest) = (vec![0.0f32; values.len()], vec![0.0f32; values.len()]);
    slope_and_rest(values, &mut slope, &mut rest);
    let shape = inner.layout().shape().clone();
    let slope = Tensor::<D>::from_data(TensorData::new(slope, shape.clone()), &device);
    let rest = Tensor::<D>::from_data(TensorData::new(rest, shape), &device);
    Ok(x * slope + rest)
}

#[cfg(not(feature = "flex"))]
fn tracked_on_cpu<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    Err(x)
}

/// For each `x`: `slope = y'(x)` and `rest = y(x) - x * slope`, `y` quick_gelu; chunked as `in_place`.
#[cfg(feature = "flex")]
fn slope_and_rest(values: &[f32], slope: &mut [f32], rest: &mut [f32]) {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if rayon::current_thread_index().is_none() {
        use rayon::prelude::*;
        values
            .par_chunks(CHUNK)
            .zip(slope.par_chunks_mut(CHUNK).zip(rest.par_chunks_mut(CHUNK)))
            .for_each(|(x, (s, r))| on_widest_simd(|| slope_and_rest_chunk(x, s, r)));
        return;
    }
    for (x, (s, r)) in values.chunks(CHUNK).zip(slope.chunks_mut(CHUNK).zip(rest.chunks_mut(CHUNK))) {
        on_widest_simd(|| slope_and_rest_chunk(x, s, r));
    }
}

#[cfg(feature = "flex")]
#[inline(always)]
fn slope_and_rest_chunk(x: &[f32], slope: &mut [f32], rest: &mut [f32]) {
    for ((&x, s), r) in x.iter().zip(slope.iter_mut()).zip(rest.iter_mut()) {
        // sigmoid(1.702 x) = 1 / (1 + e^(-1.702 x)); y = x * sig; y' = sig + 1.702 x sig (1 - sig).
        let sig = 1.0 / (1.0 + exp_branch_free(-1.702 * x));
        let y = x * sig;
        let d = sig + 1.702 * y * (1.0 - sig);
        *s = d;
        // The graph's own product `x * d`, rounded as it will round it, so that the sum gives `y` back.
        *r = y - x * d;
    }
}

/// The one-pass rewrite where it applies (`cpu_tensor::rewrite_in_place`: a CPU f32 tensor outside autodiff, alone
/// in its contiguous buffer), in chunks of `CHUNK`. Any other tensor comes back untouched as the error.
#[cfg(feature = "flex")]
#[allow(clippy::result_large_err)] // both sides are the tensor handed back by value, no larger than each other
fn rewrite_in_place<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    super::cpu_tensor::rewrite_in_place(x, |values| for_each_chunk(values, CHUNK, |_, chunk| in_place_chunk(chunk)))
}

#[cfg(not(feature = "flex"))]
fn rewrite_in_place<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    Err(x)
}

#[cfg(feature = "flex")]
#[inline(always)]
fn in_place_chunk(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = quick_gelu_scalar(*v);
    }
}

#[cfg(feature = "flex")]
/// `x / (1 + e^(-1.702 x))` with `exp_branch_free`: within 1.5e-6 relative of the exact value (the f32 rounding of
/// `-1.702 x` is most of it), and vectorisable.
#[inline(always)]
fn quick_gelu_scalar(x: f32) -> f32 {
    x / (1.0 + exp_branch_free(-1.702 * x))
}

#[cfg(all(test, feature = "flex", not(target_arch = "wasm32")))]
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

    /// The fused pass on a CPU tensor that owns its buffer (in place, in parallel chunks, AVX2 where there is one)
    /// equals the plain composition on the same values.
    #[test]
    fn fused_quick_gelu_equals_the_composition() {
        use burn::tensor::{Distribution, Tolerance};
        let device = burn::tensor::Device::flex();
        let x = Tensor::<3>::random([3, 50, 700], Distribution::Normal(0.0, 3.0), &device);
        let plain = x.clone() * sigmoid(x.clone().mul_scalar(1.702));
        // `x * 1` is a buffer of its own, as fc1's output is.
        let fused = rewrite_in_place(x.mul_scalar(1.0)).map_err(|_| "the owned CPU tensor was not rewritten in place");
        fused.unwrap().into_data().assert_approx_eq::<f32>(&plain.into_data(), Tolerance::absolute(1e-5));
    }

    /// A tensor whose buffer is shared, or an autodiff one, is never rewritten in place (the second takes the
    /// tracked pass instead), and the other holder of a shared buffer still sees its own values.
    #[test]
    fn shared_and_autodiff_tensors_are_not_rewritten_in_place() {
        use burn::tensor::{Distribution, Tolerance};
        let device = burn::tensor::Device::flex();
        let x = Tensor::<2>::random([50, 300], Distribution::Normal(0.0, 3.0), &device);
        let before = x.clone().into_data();
        assert!(rewrite_in_place(x.clone()).is_err(), "a shared buffer must not be rewritten");
        let plain = x.clone() * sigmoid(x.clone().mul_scalar(1.702));
        quick_gelu(x.clone()).into_data().assert_approx_eq::<f32>(&plain.into_data(), Tolerance::absolute(1e-5));
        assert_eq!(x.into_data(), before);
        let tracked = Tensor::<2>::from_data(before, &device.autodiff()).require_grad();
        assert!(rewrite_in_place(tracked.mul_scalar(1.0)).is_err(), "autodiff needs a graph, not a rewrite");
    }

    /// Inside an autodiff graph on the CPU, the one-pass values and slope give the composition's values and, through
    /// the graph, its gradient.
    #[test]
    fn the_tracked_pass_has_the_compositions_values_and_gradient() {
        use burn::tensor::{Distribution, Tolerance};
        let device = burn::tensor::Device::flex().autodiff();
        let data = Tensor::<3>::random([2, 50, 700], Distribution::Normal(0.0, 3.0), &device).into_data();
        let weights = Tensor::<3>::random([2, 50, 700], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = Tensor::<3>::from_data(data.clone(), &device).require_grad();
            let y = if fused {
                tracked_on_cpu(x.clone().mul_scalar(1.0)).map_err(|_| "the tracked CPU tensor took the composition")
            } else {
                Ok(x.clone() * sigmoid(x.clone().mul_scalar(1.702)))
            };
            let y = y.unwrap();
            let gradient = x.grad(&(y.clone() * weights.clone()).sum().backward()).unwrap();
            (y.into_data(), gradient.into_data())
        };
        let ((fused_y, fused_grad), (plain_y, plain_grad)) = (run(true), run(false));
        fused_y.assert_approx_eq::<f32>(&plain_y, Tolerance::absolute(1e-5));
        fused_grad.assert_approx_eq::<f32>(&plain_grad, Tolerance::absolute(1e-5));
    }

    /// fc1's output, as the MLP hands it over, owns its buffer: the one-pass rewrite applies where the model uses it.
    #[test]
    fn a_linear_layers_output_is_rewritten_in_place() {
        use burn::nn::LinearConfig;
        use burn::tensor::Distribution;
        let device = burn::tensor::Device::flex();
        let fc1 = LinearConfig::new(64, 256).init(&device);
        let x = Tensor::<3>::random([2, 50, 64], Distribution::Normal(0.0, 1.0), &device);
        assert!(rewrite_in_place(fc1.forward(x)).is_ok());
    }
}
