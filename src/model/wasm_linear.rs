//! The linear layers' product in the threaded browser build: a register-tiled SIMD128 kernel, rows in bands across
//! the thread pool.
//!
//! In the page the linear layers are 99 % of ViT-B/32's multiply-adds, and `perf` put 85-90 % of a batch's time in
//! gemm's simd128 micro-kernel. Two builds use this file's kernel:
//! - **The threaded build** (`threads`): only for work outside the pool's batch slices (a lone image, nothing for
//!   `batch_split` to cut), where Burn's matmul (gemm) splits one product across wasm threads badly (525-567 ms with
//!   two threads against 448-470 with one). The output rows are cut into one band per thread, each computed by a
//!   4 rows x 16 columns tile with a multiply and an add per lane (plain SIMD128 has no fused form): 22-32 GFLOP/s
//!   a core in Chromium against gemm's 20-29. Inside a batch slice gemm serves (this tile there was no faster).
//! - **Its relaxed-SIMD variant** (`threads` + `relaxed-simd`, for browsers with WebAssembly relaxed SIMD): every
//!   CPU linear layer, in batch slices too, on a 2 rows x 16 columns tile whose lanes use `f32x4.relaxed_madd` (a
//!   fused multiply-add on x86 with FMA and on ARM). Half the instructions per multiply-add and 8 accumulators,
//!   which V8 keeps in registers: 33-37 GFLOP/s a core in Chromium 156 on ViT-B/32's shapes against 18-25 for the
//!   4 x 16 tile and its multiply-and-add (a throwaway wasm microbenchmark, 2026-12-01, Intel Xeon; without the fused
//!   form the 2 x 16 tile was 18-31, no steadier than the 4 x 16 one).
//!
//! Either applies on the CPU backend outside autodiff, with f32 contiguous tensors; `model::linear` chooses it
//! there, and the native path or Burn's `Linear` everywhere else.
// Outside the threaded browser build only the tests run the tiling (below): unused there otherwise.
#![cfg_attr(not(all(target_arch = "wasm32", feature = "threads")), allow(dead_code))]

use burn::nn::Linear;
use burn::tensor::Tensor;

/// The kernel's path: `x` and the layer's weights on the CPU backend, f32, contiguous, outside autodiff; any other
/// input comes back untouched as the error.
#[cfg(all(feature = "flex", feature = "threads", target_arch = "wasm32", target_feature = "simd128"))]
#[allow(clippy::result_large_err)] // both sides are the tensor handed back by value
pub(super) fn simd_forward(layer: &Linear, x: Tensor<3>) -> Result<Tensor<3>, Tensor<3>> {
    // The plain build's tile is no faster than gemm inside a batch slice or on one thread; the fused one is.
    let one_thread_here = rayon::current_thread_index().is_some() || rayon::current_num_threads() < 2;
    if one_thread_here && !cfg!(feature = "relaxed-simd") {
        return Err(x);
    }
    use super::cpu_tensor::{from_cpu, into_cpu_f32};
    use burn::backend::flex::FlexTensor;
    use burn::tensor::TensorData;

    /// A contiguous CPU f32 tensor outside autodiff, or the tensor back.
    fn cpu_values<const D: usize>(t: Tensor<D>) -> Result<FlexTensor, Tensor<D>> {
        let tensor = into_cpu_f32(t)?;
        if tensor.as_slice::<f32>().is_some() { Ok(tensor) } else { Err(from_cpu(tensor)) }
    }

    let [batch, tokens, d_input] = x.dims();
    let [weight_rows, d_output] = layer.weight.dims();
    if weight_rows != d_input {
        return Err(x); // Burn's own forward reports the mismatch
    }
    let x = cpu_values(x)?;
    let Ok(weight) = cpu_values(layer.weight.val()) else { return Err(from_cpu(x)) };
    let bias = match layer.bias.as_ref().map(|b| cpu_values(b.val())) {
        None => None,
        Some(Ok(bias)) => Some(bias),
        Some(Err(_)) => return Err(from_cpu(x)),
    };
    let rows = batch * tokens;
    let mut out = vec![0.0f32; rows * d_output];
    fn values(t: &FlexTensor) -> &[f32] {
        t.as_slice::<f32>().expect("checked contiguous f32 above")
    }
    // Bands from outside the pool only: inside a batch slice the sibling threads have slices of their own.
    let bands = rayon::current_thread_index().is_none();
    let bias = bias.as_ref().map(values);
    matmul_bias::<TILE_ROWS>(values(&x), rows, d_input, values(&weight), d_output, bias, &mut out, bands);
    Ok(from_cpu(FlexTensor::from_data(TensorData::new(out, [batch, tokens, d_output]))))
}

#[cfg(not(all(feature = "flex", feature = "threads", target_arch = "wasm32", target_feature = "simd128")))]
#[allow(clippy::result_large_err)]
pub(super) fn simd_forward(_layer: &Linear, x: Tensor<3>) -> Result<Tensor<3>, Tensor<3>> {
    Err(x)
}

/// Rows of the output computed together. With a multiply and an add per lane, 4 rows x 16 columns (16 accumulating
/// vectors) did best (2 x 16 measured at 0.8x); with the fused multiply-add, 2 x 16 (8 accumulators, 4 weight
/// vectors and a broadcast: no spills) did (4 x 16 fused: 19-31 GFLOP/s against 33-37).
const TILE_ROWS: usize = if cfg!(feature = "relaxed-simd") { 2 } else { 4 };
/// Columns computed together: four 4-lane vectors, one 64-byte cache line of a weight row.
const TILE_COLUMNS: usize = 16;
/// The depth a tile's pass covers: 256 rows of a 16-column weight strip are 16 KiB, which stays in the L1 cache
/// while every row tile of the input goes past it.
const DEPTH_BLOCK: usize = 256;

/// `out[rows, n] = a[rows, k] * w[k, n] + bias[n]`, all row-major: with `bands`, in one band of rows per thread of
/// the current pool, else on this thread.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(all(target_arch = "wasm32", not(feature = "threads")), allow(unused_variables))] // `bands`: no pool there
fn matmul_bias<const R: usize>(
    a: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    bands: bool,
) {
    assert!(a.len() == rows * k && w.len() == k * n && out.len() == rows * n);
    assert!(bias.is_none_or(|b| b.len() == n));
    if n == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        match bias {
            Some(b) => row.copy_from_slice(b),
            None => row.fill(0.0),
        }
    }
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads();
        if bands && threads > 1 && rows >= 2 * R && k > 0 {
            // Bands of whole tiles, one per thread.
            let band = rows.div_ceil(threads).next_multiple_of(R);
            out.par_chunks_mut(band * n)
                .zip(a.par_chunks(band * k))
                .for_each(|(out, a)| accumulate::<R>(a, out.len() / n, k, w, n, out));
            return;
        }
    }
    accumulate::<R>(a, rows, k, w, n, out);
}

/// `out += a * w` for one band of rows. In the relaxed-SIMD build this function is compiled with that feature, so
/// that the fused multiply-add inlines into the tile's loop.
#[cfg_attr(all(target_arch = "wasm32", feature = "relaxed-simd"), target_feature(enable = "relaxed-simd"))]
fn accumulate<const R: usize>(a: &[f32], rows: usize, k: usize, w: &[f32], n: usize, out: &mut [f32]) {
    let full_columns = n - n % TILE_COLUMNS;
    // A strip of the weights (a depth block of 16 columns) copied contiguous. Read in place, its rows sit n floats
    // apart: 3072 or 768 floats, multiples of the L1 cache's set stride, so that every row of the strip falls in
    // the same few cache sets and evicts the others; how badly depended on the physical pages (ViT-B/32 in the
    // node ran it at 6.5-7.3 or 16-24 GFLOP/s from one run to the next). Copied, it is 16 KiB of consecutive lines.
    let mut strip = vec![0.0f32; DEPTH_BLOCK * TILE_COLUMNS];
    let mut k0 = 0;
    while k0 < k {
        let depth = DEPTH_BLOCK.min(k - k0);
        for j in (0..full_columns).step_by(TILE_COLUMNS) {
            for (p, row) in strip.chunks_exact_mut(TILE_COLUMNS).take(depth).enumerate() {
                let from = (k0 + p) * n + j;
                row.copy_from_slice(&w[from..from + TILE_COLUMNS]);
            }
            let strip = &strip[..depth * TILE_COLUMNS];
            let mut i = 0;
            while i + R <= rows {
                tile::<R>(a, k, strip, n, out, i, j, k0);
                i += R;
            }
            match rows - i {
                3 => tile::<3>(a, k, strip, n, out, i, j, k0),
                2 => tile::<2>(a, k, strip, n, out, i, j, k0),
                1 => tile::<1>(a, k, strip, n, out, i, j, k0),
                _ => {}
            }
        }
        // Columns past the last whole tile (no CLIP width has any): plain dot products.
        for i in 0..rows {
            for j in full_columns..n {
                let mut sum = 0.0;
                for p in k0..k0 + depth {
                    sum += a[i * k + p] * w[p * n + j];
                }
                out[i * n + j] += sum;
            }
        }
        k0 += depth;
    }
}

/// `out[i..i+R, j..j+16] += a[i..i+R, k0..k0+depth] * strip`, where `strip` holds the weights' rows
/// k0..k0+depth, columns j..j+16, contiguous; the accumulators stay in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile<const R: usize>(a: &[f32], k: usize, strip: &[f32], n: usize, out: &mut [f32], i: usize, j: usize, k0: usize) {
    let depth = strip.len() / TILE_COLUMNS;
    // The bounds every access below stays within (checked once here, so the loop carries no checks).
    assert!(i + R <= out.len() / n && j + TILE_COLUMNS <= n && k0 + depth <= k && a.len() >= (i + R) * k);
    // SAFETY: every pointer below is inside the slices, by the assertion above: rows i..i+R of `a` (length k) and
    // of `out` (length n), columns j..j+16 of `out`, and the whole strip.
    unsafe {
        let mut acc = [[F32x4::zero(); 4]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            let o = out.as_ptr().add((i + r) * n + j);
            for (v, lane) in row.iter_mut().enumerate() {
                *lane = F32x4::load(o.add(4 * v));
            }
        }
        let mut wp = strip.as_ptr();
        let ap = a.as_ptr().add(i * k + k0);
        for p in 0..depth {
            let w0 = F32x4::load(wp);
            let w1 = F32x4::load(wp.add(4));
            let w2 = F32x4::load(wp.add(8));
            let w3 = F32x4::load(wp.add(12));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = F32x4::splat_load(ap.add(r * k + p));
                row[0] = row[0].mul_add(av, w0);
                row[1] = row[1].mul_add(av, w1);
                row[2] = row[2].mul_add(av, w2);
                row[3] = row[3].mul_add(av, w3);
            }
            wp = wp.add(TILE_COLUMNS);
        }
        for (r, row) in acc.iter().enumerate() {
            let o = out.as_mut_ptr().add((i + r) * n + j);
            for (v, lane) in row.iter().enumerate() {
                lane.store(o.add(4 * v));
            }
        }
    }
}

/// Four f32 lanes: a WebAssembly SIMD vector in the browser build, a plain array elsewhere (where only the tests
/// run this file's tiling, against Burn's product).
#[derive(Clone, Copy)]
struct F32x4(
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))] core::arch::wasm32::v128,
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))] [f32; 4],
);

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl F32x4 {
    #[inline(always)]
    fn zero() -> Self {
        Self(core::arch::wasm32::f32x4_splat(0.0))
    }
    /// SAFETY: `p..p+4` readable.
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { Self(core::arch::wasm32::v128_load(p as *const core::arch::wasm32::v128)) }
    }
    /// SAFETY: `p` readable.
    #[inline(always)]
    unsafe fn splat_load(p: *const f32) -> Self {
        unsafe { Self(core::arch::wasm32::v128_load32_splat(p as *const u32)) }
    }
    /// SAFETY: `p..p+4` writable.
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { core::arch::wasm32::v128_store(p as *mut core::arch::wasm32::v128, self.0) }
    }
    /// `self + a * b`: a multiply and an add in plain SIMD128 (which has no fused form), relaxed SIMD's
    /// `f32x4.relaxed_madd` in the build that has it (fused where the CPU has FMA, which only changes the rounding).
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        #[cfg(not(feature = "relaxed-simd"))]
        {
            use core::arch::wasm32::{f32x4_add, f32x4_mul};
            Self(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
        }
        // Inlined into `accumulate`, which is compiled with relaxed SIMD. A browser without it never loads this
        // build (the worker checks first, www/worker.js).
        #[cfg(feature = "relaxed-simd")]
        Self(core::arch::wasm32::f32x4_relaxed_madd(a.0, b.0, self.0))
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
impl F32x4 {
    fn zero() -> Self {
        Self([0.0; 4])
    }
    unsafe fn load(p: *const f32) -> Self {
        unsafe { Self(std::ptr::read_unaligned(p as *const [f32; 4])) }
    }
    unsafe fn splat_load(p: *const f32) -> Self {
        unsafe { Self([*p; 4]) }
    }
    unsafe fn store(self, p: *mut f32) {
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 4], self.0) }
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        Self(std::array::from_fn(|l| self.0[l] + a.0[l] * b.0[l]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Product = fn(&[f32], usize, usize, &[f32], usize, Option<&[f32]>, &mut [f32], bool);

    /// The tiling (whole and partial row tiles, columns past the last tile, several depth blocks, row bands on a
    /// pool and on one thread) against the sums written out in f64, on shapes that hit every edge. (Not against
    /// Burn's matmul: natively that may run on AMX tiles, three bf16 products, less exact than this f32 kernel.)
    #[test]
    fn the_tiled_product_equals_the_sums() {
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for &(rows, k, n) in &[(1, 1, 1), (3, 7, 16), (5, 300, 17), (50, 520, 48), (9, 256, 40), (2, 0, 16)] {
            let a: Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
            let expected: Vec<f32> = (0..rows * n)
                .map(|idx| {
                    let (r, c) = (idx / n, idx % n);
                    let sum: f64 = (0..k).map(|t| f64::from(a[r * k + t]) * f64::from(w[t * n + c])).sum();
                    (sum + f64::from(bias[c])) as f32
                })
                .collect();
            // Both builds' tiles: 4 rows (plain SIMD128) and 2 (relaxed SIMD).
            for (tile_rows, product) in [(4, matmul_bias::<4> as Product), (2, matmul_bias::<2>)] {
                let mut one_thread = vec![f32::NAN; rows * n];
                one.install(|| product(&a, rows, k, &w, n, Some(&bias), &mut one_thread, true));
                let mut banded = vec![f32::NAN; rows * n];
                three.install(|| product(&a, rows, k, &w, n, Some(&bias), &mut banded, true));
                // No bias, without bands on a pool thread: a batch slice's case.
                let mut no_bias = vec![f32::NAN; rows * n];
                three.install(|| product(&a, rows, k, &w, n, None, &mut no_bias, false));
                let at = |idx: usize| format!("{rows}x{k}x{n}, tiles of {tile_rows} rows, at {idx}");
                for idx in 0..rows * n {
                    let tol = 1e-4 * expected[idx].abs().max(1.0);
                    assert!((one_thread[idx] - expected[idx]).abs() <= tol, "{}: one thread", at(idx));
                    assert!((banded[idx] - expected[idx]).abs() <= tol, "{}: bands", at(idx));
                    assert!((no_bias[idx] + bias[idx % n] - expected[idx]).abs() <= tol, "{}: no bias", at(idx));
                }
            }
        }
    }
}
