//! Attention's masked softmax: one vectorised pass over each row on the CPU, the plain composition elsewhere.
//!
//! Burn's CPU backend runs `mask_fill` and `softmax` as about six passes (the mask broadcast to every head, the
//! fill, a row maximum, a subtraction, libm's scalar `exp`, a row sum and a division), 4-6 % of the text tower's
//! time. On the CPU outside autodiff the scores' buffer (the product `q k^T` owns it) is rewritten in place row by
//! row: scaled, the row's maximum over the keys it may see, the branch-free `exp` that vectorises, and the
//! normalisation, with the keys it may not see set to exactly 0 (the composition's `exp(-1e9 - max)`). Everywhere
//! else (GPU devices, autodiff graphs, a shared buffer) it is the composition.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};

#[cfg(feature = "flex")]
use super::cpu_math::{exp_branch_free, for_each_chunk};

/// Which keys each query row of a score matrix may look at.
#[derive(Clone, Copy, Debug)]
pub enum VisibleKeys<'a> {
    /// Every key.
    All,
    /// Query row `i` looks at keys `0..=i` (the text tower; rows and keys are the same tokens).
    Causal,
    /// Every query row of sequence `b` looks at keys `0..=last[b]` (a pooled row of the causal text tower).
    UpTo(&'a [usize]),
}

/// Elements of scores a pass hands to one thread (whole rows of them): as `quick_gelu`'s chunks.
#[cfg(feature = "flex")]
const CHUNK: usize = 1 << 15;

/// The softmax over the last axis of `scores * scale` (`scale > 0`), `scores` [batch, heads, rows, keys], where every
/// key a row may not look at (`visible`) gets weight 0.
pub fn masked_softmax(scores: Tensor<4>, scale: f32, visible: VisibleKeys) -> Tensor<4> {
    // The in-place pass takes the scaled row's maximum as the scaled maximum, which needs `scale > 0`.
    debug_assert!(scale > 0.0, "attention scales are positive");
    match in_place_on_cpu(scores, scale, visible) {
        Ok(weights) => weights,
        Err(scores) => composed(scores, scale, visible),
    }
}

/// The plain composition, on every device: the scaled scores, the hidden keys filled with -1e9 (finite, so that
/// softmax and its gradient stay NaN-free on every backend), softmax.
fn composed(scores: Tensor<4>, scale: f32, visible: VisibleKeys) -> Tensor<4> {
    let [batch, heads, rows, keys] = scores.dims();
    let device = scores.device();
    let scores = scores.mul_scalar(scale);
    let mask = match visible {
        VisibleKeys::All => None,
        VisibleKeys::Causal => {
            debug_assert_eq!(rows, keys, "a causal mask pairs every row with its own key");
            Some(hidden_keys((0..rows).map(|row| row + 1), keys, &device).reshape([1, 1, rows, keys]))
        }
        VisibleKeys::UpTo(last) => {
            debug_assert_eq!(last.len(), batch, "one last key per sequence");
            Some(hidden_keys(last.iter().map(|&l| l + 1), keys, &device).reshape([batch, 1, 1, keys]))
        }
    };
    let scores = match mask {
        Some(mask) => scores.mask_fill(mask.expand([batch, heads, rows, keys]), -1e9),
        None => scores,
    };
    softmax(scores, 3)
}

/// [lines, keys], true from each line's `seen` keys on: the keys that line may not look at.
fn hidden_keys(seen: impl ExactSizeIterator<Item = usize>, keys: usize, device: &Device) -> Tensor<2, Bool> {
    let lines = seen.len();
    let mask: Vec<bool> = seen.flat_map(|seen| (0..keys).map(move |key| key >= seen)).collect();
    Tensor::from_data(TensorData::new(mask, [lines, keys]), device)
}

/// The one-pass rewrite where it applies (`cpu_tensor::rewrite_in_place`: a CPU f32 tensor outside autodiff, alone in
/// its contiguous row-major buffer), in chunks of whole rows. Any other tensor comes back untouched as the error.
#[cfg(feature = "flex")]
#[allow(clippy::result_large_err)] // both sides are the tensor handed back by value
fn in_place_on_cpu(scores: Tensor<4>, scale: f32, visible: VisibleKeys) -> Result<Tensor<4>, Tensor<4>> {
    let [batch, heads, rows, keys] = scores.dims();
    if keys == 0 {
        return Err(scores);
    }
    debug_assert!(!matches!(visible, VisibleKeys::UpTo(last) if last.len() != batch));
    // The keys row `line` sees; `line` counts the rows of every (sequence, head) in order.
    let seen = |line: usize| -> usize {
        match visible {
            VisibleKeys::All => keys,
            VisibleKeys::Causal => line % rows + 1,
            VisibleKeys::UpTo(last) => last[line / (heads * rows)] + 1,
        }
        .min(keys)
    };
    let lines_per_chunk = (CHUNK / keys).max(1);
    super::cpu_tensor::rewrite_in_place(scores, |values| {
        for_each_chunk(values, lines_per_chunk * keys, |index, chunk| {
            for (offset, row) in chunk.chunks_mut(keys).enumerate() {
                softmax_row(row, scale, seen(index * lines_per_chunk + offset));
            }
        })
    })
}

#[cfg(not(feature = "flex"))]
fn in_place_on_cpu(scores: Tensor<4>, _scale: f32, _visible: VisibleKeys) -> Result<Tensor<4>, Tensor<4>> {
    Err(scores)
}

/// One row: `softmax(scale * row[..seen])` in place, 0 from `seen` on. `seen` is at least 1 (a query sees itself).
/// The maximum and the sum run in `LANES` independent lanes, so that both loops vectorise (a float reduction in
/// one accumulator is a chain the compiler may not reorder).
#[cfg(feature = "flex")]
#[inline(always)]
fn softmax_row(row: &mut [f32], scale: f32, seen: usize) {
    const LANES: usize = 16;
    let (visible, hidden) = row.split_at_mut(seen);
    hidden.fill(0.0);
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = visible.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    let max = chunks.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |max, &x| if x > max { x } else { max });
    // scale > 0, so the scaled row's maximum is the scaled maximum.
    let shift = max * scale;
    visible.iter_mut().for_each(|x| *x = exp_branch_free(*x * scale - shift));
    let mut lanes = [0.0f32; LANES];
    let mut chunks = visible.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    let sum: f32 = lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inverse = 1.0 / sum;
    visible.iter_mut().for_each(|x| *x *= inverse);
}

#[cfg(all(test, feature = "flex", not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Softmax with every hidden key filled with -1e9, computed plainly: the reference for both paths.
    fn reference(scores: &Tensor<4>, scale: f32, hidden: impl Fn(usize, usize, usize) -> bool) -> Tensor<4> {
        let [batch, heads, rows, keys] = scores.dims();
        let mask: Vec<bool> = (0..batch * heads * rows * keys)
            .map(|i| hidden(i / (heads * rows * keys), (i / keys) % rows, i % keys))
            .collect();
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [batch, heads, rows, keys]), &scores.device());
        softmax(scores.clone().mul_scalar(scale).mask_fill(mask, -1e9), 3)
    }

    /// The CPU's in-place pass and the composition both equal the reference for every kind of mask, with a lone
    /// matrix (the pass splits it across threads) and rows that see a single key.
    #[test]
    fn both_paths_match_the_reference_for_every_mask() {
        let device = Device::flex();
        let last = [0usize, 6, 76];
        type Hidden<'a> = Box<dyn Fn(usize, usize, usize) -> bool + 'a>;
        let cases: [(VisibleKeys, [usize; 4], Hidden<'_>); 4] = [
            (VisibleKeys::All, [2, 12, 50, 50], Box::new(|_, _, _| false)),
            (VisibleKeys::Causal, [2, 8, 77, 77], Box::new(|_, row, key| key > row)),
            (VisibleKeys::UpTo(&last), [3, 8, 1, 77], Box::new(|b, _, key| key > last[b])),
            (VisibleKeys::All, [1, 12, 50, 50], Box::new(|_, _, _| false)),
        ];
        for (visible, shape, hidden) in cases {
            let scores = Tensor::<4>::random(shape, Distribution::Normal(0.0, 8.0), &device);
            let expected = reference(&scores, 0.125, hidden).into_data();
            // `scores * 1` owns its buffer, as the product `q k^T` does.
            let fused = in_place_on_cpu(scores.clone().mul_scalar(1.0), 0.125, visible)
                .map_err(|_| format!("{visible:?}: the owned CPU tensor was not rewritten in place"))
                .unwrap();
            fused.into_data().assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
            composed(scores, 0.125, visible).into_data().assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
        }
    }

    /// A shared buffer is never rewritten (its other holder keeps its values) and an autodiff tensor keeps its graph:
    /// both take the composition, and its gradient is the reference's.
    #[test]
    fn shared_and_autodiff_scores_take_the_composition() {
        let device = Device::flex();
        let scores = Tensor::<4>::random([2, 4, 9, 9], Distribution::Normal(0.0, 3.0), &device);
        let before = scores.clone().into_data();
        let expected = reference(&scores, 0.5, |_, row, key| key > row).into_data();
        assert!(in_place_on_cpu(scores.clone(), 0.5, VisibleKeys::Causal).is_err(), "a shared buffer was rewritten");
        masked_softmax(scores.clone(), 0.5, VisibleKeys::Causal)
            .into_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
        assert_eq!(scores.into_data(), before);

        let device = device.autodiff();
        let weights = Tensor::<4>::random([2, 4, 9, 9], Distribution::Normal(0.0, 1.0), &device);
        let gradient = |fused: bool| {
            let x = Tensor::<4>::from_data(before.clone(), &device).require_grad();
            let y = if fused {
                masked_softmax(x.clone().mul_scalar(1.0), 0.5, VisibleKeys::Causal)
            } else {
                reference(&x, 0.5, |_, row, key| key > row)
            };
            x.grad(&(y * weights.clone()).sum().backward()).unwrap().into_data()
        };
        gradient(true).assert_approx_eq::<f32>(&gradient(false), Tolerance::absolute(1e-6));
    }
}
