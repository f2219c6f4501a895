//! Inference batches split across the CPU's threads: one slice of the batch per thread, each slice's work unshared.
//!
//! Burn's CPU backend parallelises its matrix products but runs most element-wise work between them (bias adds,
//! quick_gelu's `exp`, residual adds) on one thread, so a batch encoded as one gains only about 1.4x from a second
//! thread. A slice per thread runs the whole forward pass in parallel (the matmuls inside still share the pool);
//! the weights stay one shared copy. Autodiff graphs and GPU devices take the whole batch, as before.
//! `set_batch_split(false)` turns it off (the benchmark's `cpu-whole` column).

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether CPU inference splits its batches across threads (on by default; for side-by-side measurements).
pub fn set_batch_split(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// How many slices to cut a batch of `rows` into on `device`: 1 where splitting does not pay or cannot be done.
pub fn slices(device: &Device, rows: usize) -> usize {
    if !ENABLED.load(Ordering::Relaxed) || device.is_autodiff() || *device != Device::flex() {
        return 1;
    }
    threads().min(rows).max(1)
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
