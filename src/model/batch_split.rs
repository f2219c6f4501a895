//! Inference batches split across the CPU's threads: one slice of the batch per thread, each slice's work unshared.
//!
//! Burn's CPU backend parallelises its matrix products but runs most element-wise work between them (bias adds,
//! quick_gelu's `exp`, residual adds) on one thread, so a batch encoded as one gains only about 1.4x from a second
//! thread. A slice per thread runs the whole forward pass in parallel (the matmuls inside still share the pool);
//! the weights stay one shared copy. GPU devices take the whole batch.
//!
//! Patch-training steps (autodiff) split too, each slice in a graph of its own, but by a fixed rule
//! (`TRAINING_SLICE_ROWS`) rather than by the thread count: a slice's gradient is summed into the batch's in slice
//! order, so a seeded run trains the same patch bit for bit on any machine, in the page and natively.
//! `set_batch_split(false)` turns both off (the benchmark's `cpu-whole` column).

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether CPU inference splits its batches across threads (on by default; for side-by-side measurements).
pub fn set_batch_split(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether `device` computes on the CPU (Burn's flex backend), with or without autodiff: the paths whose
/// element-wise work runs on one thread, which the slices here and the fused `quick_gelu` work around.
pub(crate) fn is_cpu(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// How many slices to cut an inference batch of `rows` into on `device`: 1 where splitting does not pay or cannot
/// be done.
pub fn slices(device: &Device, rows: usize) -> usize {
    if !ENABLED.load(Ordering::Relaxed) || device.is_autodiff() || !is_cpu(device) {
        return 1;
    }
    threads().min(rows).max(1)
}

/// Rows per slice of a patch-training batch on the CPU: small enough that a batch of 8 feeds two threads, large
/// enough that a slice's matrix products stay efficient.
pub const TRAINING_SLICE_ROWS: usize = 4;

/// How many slices to cut a training batch of `rows` into on the autodiff `device`: `ceil(rows / 4)` on the CPU
/// whatever its thread count, 1 on a GPU or with the split off.
pub fn training_slices(device: &Device, rows: usize) -> usize {
    if !ENABLED.load(Ordering::Relaxed) || !device.is_autodiff() || !is_cpu(device) {
        return 1;
    }
    rows.div_ceil(TRAINING_SLICE_ROWS).max(1)
}

/// `rows` cut into `slices` consecutive ranges as even as can be (the first ones one longer where it does not divide).
pub fn ranges(rows: usize, slices: usize) -> Vec<std::ops::Range<usize>> {
    let slices = slices.clamp(1, rows.max(1));
    let (base, extra) = (rows / slices, rows % slices);
    let mut start = 0;
    (0..slices)
        .map(|k| {
            let end = start + base + usize::from(k < extra);
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

/// Runs `forward` on every slice, in parallel where the build has threads; results in slice order.
pub fn map<T: Send, R: Send>(slices: Vec<T>, forward: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    {
        use rayon::prelude::*;
        slices.into_par_iter().map(forward).collect()
    }
    #[cfg(not(any(not(target_arch = "wasm32"), feature = "threads")))]
    {
        slices.into_iter().map(forward).collect()
    }
}

fn threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(any(not(target_arch = "wasm32"), feature = "threads")))]
    {
        1
    }
}
