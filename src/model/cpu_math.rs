//! Element math for the CPU's fused passes (quick_gelu, attention's softmax): a branch-free `exp` that vectorises,
//! a run-time choice of the widest SIMD to compile a loop for, and the chunked pass that runs such a loop.

#![cfg(feature = "flex")]

/// Runs `kernel`, an element loop, compiled for the widest SIMD the CPU has: AVX2/FMA where it has them (detected
/// at run time), the build's own target otherwise.
#[inline(always)]
pub(crate) fn on_widest_simd(kernel: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { with_avx2_fma(kernel) };
        return;
    }
    kernel()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2_fma(kernel: impl FnOnce()) {
    kernel()
}

/// Runs `kernel(index, chunk)` over `values` cut into chunks of `chunk_len` elements, each compiled for the widest SIMD:
/// in parallel when called from outside the thread pool (a lone image), on this thread inside it (a batch slice,
/// `model::batch_split`, where every thread already has a slice of its own).
pub(crate) fn for_each_chunk(values: &mut [f32], chunk_len: usize, kernel: impl Fn(usize, &mut [f32]) + Sync) {
    let run = |(index, chunk): (usize, &mut [f32])| on_widest_simd(|| kernel(index, chunk));
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if rayon::current_thread_index().is_none() {
        use rayon::prelude::*;
        values.par_chunks_mut(chunk_len).enumerate().for_each(run);
        return;
    }
    values.chunks_mut(chunk_len).enumerate().for_each(run);
}

/// `e^x` without branches or table lookups, so that a loop of it vectorises: `x = n ln2 + r` with `|r| <= ln2/2`,
/// `e^r` by its degree-6 Taylor polynomial (truncation error under 1.3e-7 relative), `2^n` built in the exponent
/// bits. The argument is clamped to [-87, 88] so that `2^n` stays a normal float: `e^x` saturates at 1.7e38 above
/// and 1.6e-38 below, which quick_gelu turns into exactly `x` and a value under 1e-36 of `x`,
/// and softmax's weights (arguments at most 0) into at most 1.6e-38 of the row's largest.
#[inline(always)]
pub(crate) fn exp_branch_free(x: f32) -> f32 {
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
