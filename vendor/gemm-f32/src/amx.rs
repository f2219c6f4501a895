//! advclip's addition (vendor/README.md): f32 matrix products on Intel AMX tiles, each as three bf16 products.
//!
//! Every f32 operand is split into two bf16 halves, `x = hi + lo + r` with `|r| <= 2^-17 |x|`, and the product is
//! `hi·hi + hi·lo + lo·hi` accumulated in f32 by `tdpbf16ps` (the dropped `lo·lo` is below `2^-18` of a term). The
//! result is not an f32 product bit for bit: at ViT-B/32's shapes it errs by up to about 2^-18 of the terms'
//! magnitude (max abs 1.4e-5 where gemm's f32 kernels err by 2.4e-6, 2026-12-03), and on one thread AMX runs the
//! three products, copies included, 1.2-1.9x as fast as gemm's AVX-512 kernels run one in f32.
//!
//! Layout, all tiles 1 KiB and contiguous so that every tile load reads 16 consecutive cache lines: the left operand
//! in groups of 16 rows, per 32-deep step a `hi` then a `lo` tile (16 rows of 32 bf16); the right operand in panels of
//! 32 columns, per 32-deep step `hi` of columns 0-15 and 16-31, then `lo` of the same (16 rows of 16 bf16 pairs,
//! depths 2r and 2r + 1 side by side: the order `tdpbf16ps` reads). The product is formed in a row-major f32 scratch
//! and then written to `dst` as `alpha * dst + beta * product`.
//!
//! A right operand used again and again (a linear layer's weight at inference) can be copied into tile order once
//! ([`crate::copies::pack_right_operand`]) and multiplied from that copy ([`gemm_packed`]): the same sums, without the
//! copy per call. Products that reach the tiles through gemm's own entry point (Burn's autodiff, in patch training)
//! find such copies through a lookup their owner installs ([`crate::copies::set_copy_lookup`]).

use core::arch::asm;
use core::arch::x86_64::*;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::cell::RefCell;

use crate::copies::{MIN_PACKED_ROWS, Order, PackedRight, find_copy};

/// Below this many multiply-adds gemm's own kernels stay faster (packing dominates).
const MIN_WORK: usize = 64 * 64 * 64;
/// Fewer rows or columns than this, and the copies of the operands into tile order (one of them, the weight, as
/// large as the product's depth times the other side) cost more than the tiles save.
const MIN_SIDE: usize = 64;

/// `_mm512_permutex2var_epi16` indices that interleave two vectors' 16-bit lanes `start..start + 16`:
/// `a[start], b[start], a[start + 1], b[start + 1], ...` (bit 5 picks `b`).
const fn pairs(start: u16) -> [u16; 32] {
    let mut indices = [0u16; 32];
    let mut i = 0;
    while i < 32 {
        indices[i] = (start + i as u16 / 2) | ((i as u16 % 2) << 5);
        i += 1;
    }
    indices
}
const PAIRS_LOW: [u16; 32] = pairs(0);
const PAIRS_HIGH: [u16; 32] = pairs(16);

/// Bytes of the left operand's halves per block of rows (rows x depth x 4), so that a block stays in L2 while every
/// panel of the right operand runs past it.
const LEFT_BLOCK_BYTES: usize = 1 << 20;

static ENABLED: AtomicBool = AtomicBool::new(true);
/// 0: not yet checked, 1: usable, 2: not usable on this CPU or OS.
static SUPPORT: AtomicU8 = AtomicU8::new(0);

/// Turns the AMX path on or off for the whole process (on by default where the CPU and OS have it).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether f32 products (of at least [`MIN_SIDE`] rows and columns and [`MIN_WORK`] multiply-adds) now run on AMX
/// tiles.
pub fn is_active() -> bool {
    ENABLED.load(Ordering::Relaxed) && supported()
}

/// The CPU has AMX-BF16 and AMX-TILE, and Linux granted this process the tile state (`arch_prctl`).
fn supported() -> bool {
    match SUPPORT.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = detect();
            SUPPORT.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

#[cfg(target_os = "linux")]
fn detect() -> bool {
    // The copies into bf16 use AVX-512 (BF16, BW, VL), which every CPU with AMX has; checked all the same.
    let vectors = std::is_x86_feature_detected!("avx512bf16")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl");
    let max_leaf = core::arch::x86_64::__cpuid(0).eax;
    let edx = if max_leaf >= 7 { core::arch::x86_64::__cpuid_count(7, 0).edx } else { 0 };
    let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
    if !vectors || !amx_bf16 || !amx_tile {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;
    // SAFETY: arch_prctl only asks the kernel to allow the tile state for this process; it fails cleanly when the
    // kernel or hypervisor does not offer it.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn detect() -> bool {
    false // other systems grant the tile state differently; not done here
}

/// The tile configuration every kernel runs under: eight tiles of 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const TILES: TileConfig = {
    let mut config = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
    let mut t = 0;
    while t < 8 {
        config.bytes_per_row[t] = 64;
        config.rows[t] = 16;
        t += 1;
    }
    config
};

/// Buffers reused between calls on one thread, taken out while in use (so that a nested call on the same thread,
/// which rayon's work stealing can make, gets fresh ones instead of the same memory): the left operand's copy and the
/// product's scratch, held by the thread that called gemm, and the panels, held by each thread that runs some.
struct Operands {
    left: Vec<u16>,
    out: Vec<f32>,
}

thread_local! {
    static OPERANDS: RefCell<Option<Operands>> = const { RefCell::new(None) };
    static PANELS: RefCell<Option<Vec<u32>>> = const { RefCell::new(None) };
}

fn take_operands() -> Operands {
    OPERANDS.with(|s| s.borrow_mut().take()).unwrap_or(Operands { left: Vec::new(), out: Vec::new() })
}

fn put_operands(operands: Operands) {
    OPERANDS.with(|s| *s.borrow_mut() = Some(operands));
}

/// Runs `job`'s panels `first..end` with this thread's panel buffer.
unsafe fn run_panels_here(job: &Job, first: usize, end: usize) {
    let mut panels = PANELS.with(|s| s.borrow_mut().take()).unwrap_or_default();
    // SAFETY: the caller's promise for `job`.
    unsafe { job.run_panels(first, end, &mut panels) };
    PANELS.with(|s| *s.borrow_mut() = Some(panels));
}

/// bf16 of `x` rounded to nearest even (as `vcvtne2ps2bf16` rounds: a NaN stays NaN, an infinity infinite, a
/// finite value past bf16's range becomes infinite, a subnormal zero), and the bf16 of what is left (zero when that
/// is not finite). The scalar form of [`split32`], for the edges of the operands.
#[inline(always)]
fn split(x: f32) -> (u16, u16) {
    let round = |v: f32| -> (u32, f32) {
        let bits = v.to_bits();
        let half = if v.is_nan() {
            (bits >> 16) | 0x40
        } else if v.is_subnormal() {
            (bits >> 16) & 0x8000
        } else {
            bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16
        };
        (half, f32::from_bits(half << 16))
    };
    let (hi, hi_value) = round(x);
    let rest = x - hi_value;
    let lo = if rest.is_finite() { round(rest).0 } else { 0 };
    (hi as u16, lo as u16)
}

/// [`split`] of 32 values at once: (`hi`, `lo`), 32 bf16 each in the values' order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn split32(values: &[f32; 32]) -> (__m512i, __m512i) {
    // SAFETY: 16 values each, in bounds.
    let (first, second) = unsafe { (_mm512_loadu_ps(values.as_ptr()), _mm512_loadu_ps(values.as_ptr().add(16))) };
    let hi = m512i(_mm512_cvtne2ps_pbh(second, first));
    // The halves back in f32: each bf16 shifted into the top of a 32-bit lane.
    let first_hi = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi))));
    let second_hi =
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(hi))));
    let finite = |v: __m512| -> __m512 {
        let magnitude = _mm512_abs_ps(v);
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(magnitude, _mm512_set1_ps(f32::INFINITY)), v)
    };
    let lo =
        m512i(_mm512_cvtne2ps_pbh(finite(_mm512_sub_ps(second, second_hi)), finite(_mm512_sub_ps(first, first_hi))));
    (hi, lo)
}

#[inline(always)]
fn m512i(v: __m512bh) -> __m512i {
    // SAFETY: both are 512 bits of plain data.
    unsafe { core::mem::transmute(v) }
}

/// Tries the product on AMX; `false` (nothing written) when it does not apply and gemm's kernels should run it.
///
/// # Safety
/// gemm's contract: the pointers and strides reach valid elements for the shapes, `dst` writable and not aliased.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: f32,
    beta: f32,
    parallelism: gemm_common::Parallelism,
) -> bool {
    if dst_rs.abs() < dst_cs.abs() {
        // gemm hands its kernels a column-oriented destination (it transposes row-major products, whose
        // transposed form its micro-kernels prefer); the tiles want rows, so transpose back: dst^T = rhs^T lhs^T.
        // SAFETY: the same elements, named the other way round.
        return unsafe {
            gemm_rows(
                n,
                m,
                k,
                dst,
                dst_rs,
                dst_cs,
                read_dst,
                rhs,
                rhs_rs,
                rhs_cs,
                lhs,
                lhs_rs,
                lhs_cs,
                alpha,
                beta,
                parallelism,
                None,
            )
        };
    }
    // SAFETY: the caller's promise.
    unsafe {
        gemm_rows(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            read_dst,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            alpha,
            beta,
            parallelism,
            None,
        )
    }
}

/// Copies `rhs` (`k x n`, element (d, j) at `rhs + d * rs + j * cs`) into the tiles' order
/// ([`crate::copies::pack_right_operand`] where the tiles run); `None` where they would not run a product with it
/// (fewer than [`MIN_SIDE`] columns, or none deep).
///
/// # Safety
/// The pointer and strides reach valid elements for the shape.
pub(crate) unsafe fn pack_tiles(rhs: *const f32, cs: isize, rs: isize, k: usize, n: usize) -> Option<PackedRight> {
    if n < MIN_SIDE || k == 0 || !is_active() {
        return None;
    }
    let steps = k.div_ceil(32);
    let panels = n.div_ceil(32);
    let mut words = vec![0u32; panels * steps * 1024].into_boxed_slice();
    // SAFETY: the caller's promise; `words` holds every panel, zeroed.
    unsafe { pack_right(&mut words, rhs, cs, rs, k, n, 0, panels, steps) };
    Some(PackedRight { order: Order::Tiles(words), k, n })
}

/// `dst = lhs · packed`, or `dst + lhs · packed` with `read_dst`, on the tiles: `lhs` is `m x k` with contiguous rows
/// (row stride `lhs_rs`), `dst` `m x n` likewise (`dst_rs`). The same sums in the same order as [`gemm`] forms them
/// from the unpacked operand, so the same result bit for bit. `false` (nothing written) where the tiles do not apply
/// (AMX turned off since the copy, fewer than [`MIN_SIDE`] rows, too small a product): run gemm instead.
///
/// # Safety
/// `lhs` and `dst` valid for their shapes and strides, `dst` writable and not aliased.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_packed(
    m: usize,
    dst: *mut f32,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_rs: isize,
    packed: &PackedRight,
    parallelism: gemm_common::Parallelism,
) -> bool {
    if !packed.is_tile_order() {
        return false;
    }
    let (k, n) = (packed.k, packed.n);
    // SAFETY: the caller's promise; the right operand is read from `packed` only (its pointer is never used).
    unsafe {
        gemm_rows(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            read_dst,
            lhs,
            1,
            lhs_rs,
            core::ptr::null(),
            0,
            0,
            1.0,
            1.0,
            parallelism,
            Some(packed),
        )
    }
}

/// [`gemm`] for a destination whose rows are its shorter stride (row-major or near it).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_rows(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: f32,
    beta: f32,
    parallelism: gemm_common::Parallelism,
    packed: Option<&PackedRight>,
) -> bool {
    if m < MIN_PACKED_ROWS || n < MIN_SIDE || k == 0 || m.saturating_mul(n).saturating_mul(k) < MIN_WORK || !is_active()
    {
        return false;
    }
    // A copy its owner made beforehand ([`crate::copies::set_copy_lookup`]), where the caller passed none.
    let found = match packed {
        None => find_copy(rhs, rhs_cs, rhs_rs, k, n).filter(|copy| copy.is_tile_order()),
        Some(_) => None,
    };
    let packed = packed.or(found.as_deref());
    // With the right operand already copied, one group of 16 rows already pays (a lone image's 50 tokens).
    if packed.is_none() && m < MIN_SIDE {
        return false;
    }
    let rows = m.next_multiple_of(16);
    let depth = k.next_multiple_of(32);
    let columns = n.next_multiple_of(32);
    // The scratch's row stride one cache line past the padded width: a stride that is a multiple of 4 KiB (3072
    // columns of f32) puts a tile's 16 rows in one L1 set, where they evict each other.
    let out_stride = columns + 16;
    let mut operands = take_operands();
    // SAFETY (this block): the caller's promise for the operands; the buffers are sized here.
    unsafe {
        pack_left(&mut operands.left, lhs, lhs_cs, lhs_rs, m, k, rows, depth);
        // Every block of the scratch is written before it is read (its first depth step starts from zero tiles).
        if operands.out.len() < rows * out_stride {
            operands.out.resize(rows * out_stride, 0.0);
        }
        let panels = columns / 32;
        let threads = match parallelism {
            #[cfg(feature = "rayon")]
            gemm_common::Parallelism::Rayon(t) => {
                let t = if t == 0 { rayon::current_num_threads() } else { t };
                t.min(panels).max(1)
            }
            _ => 1,
        };
        let job = Job {
            packed: match packed.map(|p| &p.order) {
                Some(Order::Tiles(words)) => words.as_ptr() as usize,
                _ => 0,
            },
            left: operands.left.as_ptr() as usize,
            out: operands.out.as_mut_ptr() as usize,
            rhs: rhs as usize,
            rhs_cs,
            rhs_rs,
            k,
            n,
            rows,
            depth,
            out_stride,
        };
        if threads == 1 {
            run_panels_here(&job, 0, panels);
        } else {
            #[cfg(feature = "rayon")]
            {
                use rayon::prelude::*;
                let per_thread = panels.div_ceil(threads);
                (0..threads).into_par_iter().for_each(|t| {
                    let (first, end) = (t * per_thread, ((t + 1) * per_thread).min(panels));
                    if first < end {
                        run_panels_here(&job, first, end); // inside this function's unsafe block
                    }
                });
            }
        }
        write_back(&operands.out, out_stride, dst, dst_cs, dst_rs, read_dst, alpha, beta, m, n);
    }
    put_operands(operands);
    true
}

/// One product's shared state, as addresses so that rayon's tasks can share it (each task writes its own columns
/// of `out` and reads `left` and `packed` only).
#[derive(Clone, Copy)]
struct Job {
    /// The right operand's panels already in tile order ([`PackedRight`]), or 0: copy them from `rhs`.
    packed: usize,
    left: usize,
    out: usize,
    rhs: usize,
    rhs_cs: isize,
    rhs_rs: isize,
    k: usize,
    n: usize,
    rows: usize,
    depth: usize,
    out_stride: usize,
}

impl Job {
    /// Panels `first..end` (32 columns each) of the product, into `out`, a block of rows (which stays in L2) at a
    /// time past every panel.
    unsafe fn run_panels(&self, first: usize, end: usize, right: &mut Vec<u32>) {
        let left = self.left as *const u16;
        let out = self.out as *mut f32;
        let steps = self.depth / 32;
        // Words per panel: per step four tiles of 16 rows x 16 bf16 pairs. u16 per group of 16 rows of the left
        // operand: per step a hi and a lo tile.
        let (panel_len, group_len) = (steps * 1024, steps * 1024);
        // SAFETY: AMX is usable (checked by the caller); the configuration is this thread's own.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &TILES, options(nostack, readonly)) };
        // With one block of rows, each panel is copied just before its use, while it is still in L2; with more, all
        // of them once, then each block of rows runs through them. Panels copied beforehand ([`PackedRight`]) are
        // all there: one chunk.
        let row_block = (LEFT_BLOCK_BYTES / (self.depth * 4) / 32 * 32).max(32);
        let chunk = if self.packed == 0 && self.rows <= row_block { 1 } else { end - first };
        let padded = self.k % 32 != 0 || self.n % 32 != 0;
        let mut chunk_start = first;
        while chunk_start < end {
            let chunk_end = (chunk_start + chunk).min(end);
            let len = (chunk_end - chunk_start) * panel_len;
            let right: &[u32] = if self.packed != 0 {
                // SAFETY: a `PackedRight` of this product's shape holds every panel, `panel_len` words each.
                unsafe { core::slice::from_raw_parts((self.packed as *const u32).add(chunk_start * panel_len), len) }
            } else {
                if padded {
                    right.clear(); // the copy leaves the padding alone: zeros
                }
                if right.len() < len {
                    right.resize(len, 0);
                }
                // SAFETY: the right operand's elements are the caller's; `right` holds the chunk's panels.
                unsafe {
                    pack_right(
                        &mut right[..len],
                        self.rhs as *const f32,
                        self.rhs_cs,
                        self.rhs_rs,
                        self.k,
                        self.n,
                        chunk_start,
                        chunk_end,
                        steps,
                    )
                };
                &right[..len]
            };
            let mut row_start = 0;
            while row_start < self.rows {
                let row_end = (row_start + row_block).min(self.rows);
                for panel in chunk_start..chunk_end {
                    let b = right[(panel - chunk_start) * panel_len..].as_ptr() as *const u16;
                    let mut row = row_start;
                    while row < row_end {
                        let pair = row + 32 <= row_end;
                        // SAFETY: `left` holds `rows / 16` groups of `steps` tile pairs, `out` `rows` rows of
                        // `out_stride` sums, the panel `steps` steps; the block lies inside all three.
                        unsafe {
                            let c = out.add(row * self.out_stride + panel * 32);
                            let a = left.add(row / 16 * group_len);
                            tile_block(c, self.out_stride * 4, a, a.add(group_len), b, steps, pair);
                        }
                        row += if pair { 32 } else { 16 };
                    }
                }
                row_start = row_end;
            }
            chunk_start = chunk_end;
        }
        // SAFETY: releases this thread's tile state, so that the OS need not save it on a context switch.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Copies the left operand (`m x k`, any strides) into groups of 16 rows, per 32-deep step a `hi` and a `lo` tile
/// (16 rows of 32 bf16), zeros in the padding.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack_left(
    buffer: &mut Vec<u16>,
    lhs: *const f32,
    cs: isize,
    rs: isize,
    m: usize,
    k: usize,
    rows: usize,
    depth: usize,
) {
    let steps = depth / 32;
    if buffer.len() < rows * depth * 2 {
        buffer.resize(rows * depth * 2, 0);
    }
    for i in m..rows {
        // The padding rows: zeros in every step's two tiles.
        let group = &mut buffer[i / 16 * steps * 1024..(i / 16 + 1) * steps * 1024];
        for step in 0..steps {
            group[step * 1024 + i % 16 * 32..][..32].fill(0);
            group[step * 1024 + 512 + i % 16 * 32..][..32].fill(0);
        }
    }
    for i in 0..m {
        // SAFETY: row i of the left operand, k elements at stride `cs`.
        let row = unsafe { lhs.offset(i as isize * rs) };
        let group = &mut buffer[i / 16 * steps * 1024..(i / 16 + 1) * steps * 1024];
        for step in 0..steps {
            let tile = &mut group[step * 1024 + i % 16 * 32..];
            let (hi, lo) = tile.split_at_mut(512);
            let depth = step * 32;
            if cs == 1 && depth + 32 <= k {
                // SAFETY: as above, 32 contiguous elements inside the row; the two stores write 32 u16 each.
                unsafe {
                    let (h, l) = split32(&*(row.add(depth) as *const [f32; 32]));
                    _mm512_storeu_si512(hi.as_mut_ptr() as *mut __m512i, h);
                    _mm512_storeu_si512(lo.as_mut_ptr() as *mut __m512i, l);
                }
            } else {
                for d in 0..32 {
                    // SAFETY: as above, depth + d < k; past k the padding is zeros.
                    (hi[d], lo[d]) =
                        if depth + d < k { split(unsafe { *row.offset((depth + d) as isize * cs) }) } else { (0, 0) };
                }
            }
        }
    }
}

/// Copies panels `first..end` (32 columns each) of the right operand into `words`, one after the other: per 32-deep
/// step the tiles `hi` (columns 0-15, 16-31) then `lo` (the same), each 16 rows of 16 bf16 pairs (depths 2r and
/// 2r + 1 side by side in one u32 word); zeros beyond `k` and `n` (`words` arrives zeroed). Whole steps read along
/// whichever direction is contiguous in memory (a row of the operand across every panel, or a column's 32 depths);
/// the rest goes element by element.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack_right(
    words: &mut [u32],
    rhs: *const f32,
    cs: isize,
    rs: isize,
    k: usize,
    n: usize,
    first: usize,
    end: usize,
    steps: usize,
) {
    let panel_len = steps * 1024;
    let at = |panel: usize, step: usize, r: usize, j: usize| {
        (panel - first) * panel_len + (step * 4 * 16 + r) * 16 + (j / 16) * 256 + j % 16
    };
    let whole_steps = (k / 32).min(steps);
    let whole_panels = (n / 32).clamp(first, end);
    if cs == 1 {
        // Rows of the operand are contiguous: two depths across every whole panel, read along the rows.
        for step in 0..whole_steps {
            for r in 0..16 {
                let d = step * 32 + 2 * r;
                for panel in first..whole_panels {
                    // SAFETY: depths d and d + 1 (< k), columns `32 panel..32 panel + 32` (< n), contiguous.
                    let (one, two) = unsafe {
                        let one = rhs.offset(d as isize * rs + (panel * 32) as isize);
                        (&*(one as *const [f32; 32]), &*(one.offset(rs) as *const [f32; 32]))
                    };
                    // hi and lo of each depth, then interleaved: word j = (depth d, column j; depth d + 1, column j).
                    let (one_hi, one_lo) = split32(one);
                    let (two_hi, two_lo) = split32(two);
                    for (half, pick) in [(0, &PAIRS_LOW), (1, &PAIRS_HIGH)] {
                        // SAFETY: 32 u16 indices.
                        let pick = unsafe { _mm512_loadu_si512(pick.as_ptr() as *const __m512i) };
                        let start = at(panel, step, r, half * 16);
                        let (hi, lo) = words[start..start + 528].split_at_mut(512);
                        // SAFETY: 16 words at each of the two places.
                        unsafe {
                            _mm512_storeu_si512(
                                hi.as_mut_ptr() as *mut __m512i,
                                _mm512_permutex2var_epi16(one_hi, pick, two_hi),
                            );
                            _mm512_storeu_si512(
                                lo.as_mut_ptr() as *mut __m512i,
                                _mm512_permutex2var_epi16(one_lo, pick, two_lo),
                            );
                        }
                    }
                }
            }
        }
    } else if rs == 1 {
        // Columns of the operand are contiguous (a transposed weight): the panel's 32 columns read side by side, 32
        // depths at a time (16 words of one column), so that each step's 4 KiB of the panel is written while in L1.
        for panel in first..whole_panels {
            for step in 0..whole_steps {
                for j in 0..32 {
                    // SAFETY: depths `32 step..32 step + 32` (< k) of column `32 panel + j` (< n), contiguous.
                    let values = unsafe {
                        &*(rhs.offset((step * 32) as isize + (panel * 32 + j) as isize * cs) as *const [f32; 32])
                    };
                    let (hi, lo) = split32(values);
                    let (hi, lo): ([u32; 16], [u32; 16]) = (m512_words(hi), m512_words(lo));
                    for r in 0..16 {
                        let word = at(panel, step, r, j);
                        words[word] = hi[r];
                        words[word + 512] = lo[r];
                    }
                }
            }
        }
    }
    // Element by element: whatever the two paths above left (partial steps and panels, strided operands).
    let fast = cs == 1 || rs == 1;
    for step in 0..steps {
        let depth = step * 32;
        if depth >= k {
            return; // the rest stays zero
        }
        let from = if fast && step < whole_steps { whole_panels } else { first };
        for panel in from..end {
            let columns = 32.min(n - panel * 32);
            for r in 0..16 {
                let d = depth + 2 * r;
                if d >= k {
                    break;
                }
                for j in 0..columns {
                    // SAFETY: (d, column) and (d + 1, column) with depths < k and column < n: inside the operand.
                    let element =
                        |depth: usize| unsafe { *rhs.offset(depth as isize * rs + (panel * 32 + j) as isize * cs) };
                    let (hi0, lo0) = split(element(d));
                    let (hi1, lo1) = if d + 1 < k { split(element(d + 1)) } else { (0, 0) };
                    words[at(panel, step, r, j)] = u32::from(hi0) | (u32::from(hi1) << 16);
                    words[at(panel, step, r, j) + 512] = u32::from(lo0) | (u32::from(lo1) << 16);
                }
            }
        }
    }
}

#[inline(always)]
fn m512_words(v: __m512i) -> [u32; 16] {
    // SAFETY: 512 bits of plain data either way.
    unsafe { core::mem::transmute(v) }
}

/// One block of the product: 32 rows (`pair`) or 16 of `c` by 32 columns, over `steps` 32-deep steps, written over
/// what `c` holds.
///
/// # Safety
/// AMX configured with [`TILES`] on this thread; `c` (row stride `c_stride` bytes) valid for the block, `a` and
/// `a_next` (the two groups of 16 rows, from this step on: per step a `hi` and a `lo` tile) and `b` (the panel,
/// `steps` x 4 KiB) for `steps` steps.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_block(
    c: *mut f32,
    c_stride: usize,
    a: *const u16,
    a_next: *const u16,
    b: *const u16,
    steps: usize,
    pair: bool,
) {
    let c2 = (c as *mut u8).wrapping_add(16 * c_stride);
    // SAFETY (every asm block): the caller's promise; tiles 0-3 hold the block's sums, 4-5 the left operand's rows,
    // 6-7 the panel's tiles.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        let (a, a_next) = (a as *const u8, a_next as *const u8);
        let mut b = b as *const u8;
        for step in 0..steps {
            let (ah, ah2) = (a.add(step * 2048), a_next.add(step * 2048));
            let (al, al2) = (ah.add(1024), ah2.add(1024));
            if pair {
                asm!(
                    "tileloadd tmm4, [{ah} + {s64}*1]", "tileloadd tmm5, [{ah2} + {s64}*1]",
                    "tileloadd tmm6, [{b} + {s64}*1]", "tileloadd tmm7, [{b} + {s64}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6", "tdpbf16ps tmm3, tmm5, tmm7",
                    "tileloadd tmm6, [{b} + {s64}*1 + 2048]", "tileloadd tmm7, [{b} + {s64}*1 + 3072]",
                    "tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6", "tdpbf16ps tmm3, tmm5, tmm7",
                    "tileloadd tmm4, [{al} + {s64}*1]", "tileloadd tmm5, [{al2} + {s64}*1]",
                    "tileloadd tmm6, [{b} + {s64}*1]", "tileloadd tmm7, [{b} + {s64}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6", "tdpbf16ps tmm3, tmm5, tmm7",
                    ah = in(reg) ah, ah2 = in(reg) ah2, al = in(reg) al, al2 = in(reg) al2,
                    b = in(reg) b, s64 = in(reg) 64usize,
                    options(nostack, readonly),
                );
            } else {
                asm!(
                    "tileloadd tmm4, [{ah} + {s64}*1]",
                    "tileloadd tmm6, [{b} + {s64}*1]", "tileloadd tmm7, [{b} + {s64}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm6, [{b} + {s64}*1 + 2048]", "tileloadd tmm7, [{b} + {s64}*1 + 3072]",
                    "tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm4, [{al} + {s64}*1]",
                    "tileloadd tmm6, [{b} + {s64}*1]", "tileloadd tmm7, [{b} + {s64}*1 + 1024]",
                    "tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7",
                    ah = in(reg) ah, al = in(reg) al,
                    b = in(reg) b, s64 = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            b = b.add(4096);
        }
        asm!(
            "tilestored [{c} + {s}*1], tmm0",
            "tilestored [{c} + {s}*1 + 64], tmm1",
            c = in(reg) c,
            s = in(reg) c_stride,
            options(nostack),
        );
        if pair {
            asm!(
                "tilestored [{c} + {s}*1], tmm2",
                "tilestored [{c} + {s}*1 + 64], tmm3",
                c = in(reg) c2,
                s = in(reg) c_stride,
                options(nostack),
            );
        }
    }
}

/// `dst = alpha * dst + beta * out` (or `beta * out` without `read_dst`) over the `m x n` that the caller asked for.
#[allow(clippy::too_many_arguments)]
unsafe fn write_back(
    out: &[f32],
    columns: usize,
    dst: *mut f32,
    cs: isize,
    rs: isize,
    read_dst: bool,
    alpha: f32,
    beta: f32,
    m: usize,
    n: usize,
) {
    for i in 0..m {
        let from = &out[i * columns..i * columns + n];
        // SAFETY: row i of `dst`, n elements at stride `cs` (the caller's promise).
        let row = unsafe { dst.offset(i as isize * rs) };
        if cs == 1 {
            // SAFETY: as above, contiguous and not aliased.
            let to = unsafe { core::slice::from_raw_parts_mut(row, n) };
            match (read_dst, alpha == 1.0, beta == 1.0) {
                (false, _, true) => to.copy_from_slice(from),
                (true, true, true) => to.iter_mut().zip(from).for_each(|(d, &p)| *d += p),
                (false, _, false) => to.iter_mut().zip(from).for_each(|(d, &p)| *d = beta * p),
                (true, _, _) => to.iter_mut().zip(from).for_each(|(d, &p)| *d = alpha * *d + beta * p),
            }
        } else {
            for (j, &p) in from.iter().enumerate() {
                // SAFETY: as above.
                let d = unsafe { &mut *row.offset(j as isize * cs) };
                *d = if read_dst { alpha * *d + beta * p } else { beta * p };
            }
        }
    }
}
