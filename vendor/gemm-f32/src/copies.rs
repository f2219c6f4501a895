//! advclip's addition (vendor/README.md): right operands copied once, in the order a product reads them, for operands
//! used again and again (a linear layer's weight), and the lookup through which every product finds such a copy.
//!
//! Two orders, one per engine. On Intel AMX tiles (feature `amx`, [`crate::amx`]) the copy is in tile order. Elsewhere
//! on x86-64 it is in the order gemm's own AVX2 or AVX-512 micro-kernels read their packed operand: gemm runs a
//! row-major product `x · w` as `(wᵀ · xᵀ)ᵀ`, so the weight is the operand it packs, into panels of `MR` columns of
//! `w` (16 with AVX2 kernels, 64 with AVX-512), each column of a panel's depth step contiguous. gemm packs it on every
//! call and per thread; at 200 rows a product that copy costs about a tenth of its time (`perf`, ViT-B/32's image
//! encoder on AVX2 kernels, 2026-12-03: gemm's packing loop 15.6 %, its micro-kernels 74 %). [`kernel_panels`] runs a
//! product on such a copy with gemm's own micro-kernels and cache blocking (`gemm_common::cache::kernel_params`),
//! without the copy per call.

use std::sync::{Arc, OnceLock};

use gemm_common::microkernel::MicroKernelFn;

/// Fewer rows than this, and a product is not worth a copy of its right operand: the copy pays for itself only over
/// many rows (a lone image's 50 tokens do pay; the last block's class-token rows do not).
pub const MIN_PACKED_ROWS: usize = 16;

/// Products below this many multiply-adds, or with fewer than [`MIN_PANEL_SIDE`] columns or depth, never ask for a
/// copy (attention's per-head products, whose right operand is no weight): asking costs the owner's lookup.
const MIN_PANEL_WORK: usize = 64 * 64 * 64;
const MIN_PANEL_SIDE: usize = 64;
/// f32 values per cache line.
const CACHE_LINE_FLOATS: usize = 16;

/// A right operand (`k x n`, the weight of a linear layer) copied once in the order a product reads it.
pub struct PackedRight {
    pub(crate) order: Order,
    pub(crate) k: usize,
    pub(crate) n: usize,
}

pub(crate) enum Order {
    /// The AMX tiles' order ([`crate::amx`]).
    #[cfg_attr(not(feature = "amx"), allow(dead_code))]
    Tiles(Box<[u32]>),
    /// gemm's micro-kernels' order: panels of `width` columns, one after the other from `values[start]` (aligned to
    /// a cache line, as gemm aligns its own copy: a step's loads then never straddle two lines), each `k` steps of
    /// `width` values (zeros past `n`).
    Panels { values: Box<[f32]>, start: usize, width: usize },
}

impl PackedRight {
    /// [`pack_right_operand`] of a row-major `k x n` operand held in `values`.
    ///
    /// # Panics
    /// When `values` holds fewer than `k * n` values.
    pub fn from_row_major(values: &[f32], k: usize, n: usize) -> Option<Self> {
        assert!(values.len() >= k * n, "{} values for {k} x {n}", values.len());
        // SAFETY: `values` holds the k x n elements (checked above), row (d) at d * n.
        unsafe { pack_right_operand(values.as_ptr(), 1, n as isize, k, n) }
    }

    /// The operand's shape, `[k, n]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// Bytes the copy holds (as many as the f32 operand, padded to whole tiles or panels; a panel copy holds up to a
    /// cache line more, for its alignment).
    pub fn bytes(&self) -> usize {
        match &self.order {
            Order::Tiles(words) => words.len() * 4,
            Order::Panels { values, .. } => (values.len() - CACHE_LINE_FLOATS) * 4,
        }
    }

    /// Whether the copy is in AMX tile order (else in gemm's micro-kernels' order).
    pub fn is_tile_order(&self) -> bool {
        matches!(self.order, Order::Tiles(_))
    }
}

/// Finds the copy of a right operand (`k x n`, element (d, j) at `rhs + d * rs + j * cs`), if its owner made one:
/// `(rhs, cs, rs, k, n)` in, the copy out.
pub type CopyLookup = fn(*const f32, isize, isize, usize, usize) -> Option<Arc<PackedRight>>;

static COPY_LOOKUP: OnceLock<CopyLookup> = OnceLock::new();

/// Installs the lookup that every product (on the tiles, or on gemm's kernels where it would copy its right operand)
/// asks for a copy of its right operand before copying it itself (the first call wins; later ones are ignored).
///
/// # Safety
/// `lookup` may return a copy only when the operand it is asked about holds, at that address and those strides,
/// exactly the values the copy was made from, and keeps holding them while the caller's product runs (the caller of a
/// product keeps its operands alive and unchanged for the call; the lookup must know that nothing else rewrites them).
pub unsafe fn set_copy_lookup(lookup: CopyLookup) {
    let _ = COPY_LOOKUP.set(lookup);
}

/// The installed lookup's answer for this operand, if its shape is `[k, n]`.
pub(crate) fn find_copy(rhs: *const f32, cs: isize, rs: isize, k: usize, n: usize) -> Option<Arc<PackedRight>> {
    COPY_LOOKUP.get().and_then(|lookup| lookup(rhs, cs, rs, k, n)).filter(|copy| copy.shape() == [k, n])
}

/// Whether [`pack_right_operand`] makes copies now: in tile order where the tiles run, else in the order of gemm's
/// x86-64 kernels.
pub fn copies_apply() -> bool {
    #[cfg(feature = "amx")]
    if crate::amx::is_active() {
        return true;
    }
    kernels().is_some()
}

/// Copies `rhs` (`k x n`, element (d, j) at `rhs + d * rs + j * cs`) in the order the products now read it: tile
/// order where the AMX tiles run, else gemm's micro-kernels' panels; `None` where neither would use a copy (too small
/// an operand, or no x86-64 FMA kernels).
///
/// # Safety
/// The pointer and strides reach valid elements for the shape.
pub unsafe fn pack_right_operand(rhs: *const f32, cs: isize, rs: isize, k: usize, n: usize) -> Option<PackedRight> {
    #[cfg(feature = "amx")]
    if crate::amx::is_active() {
        // SAFETY: the caller's promise.
        return unsafe { crate::amx::pack_tiles(rhs, cs, rs, k, n) };
    }
    let kernels = kernels()?;
    if n < MIN_PANEL_SIDE || k < MIN_PANEL_SIDE {
        return None;
    }
    let width = kernels.width;
    let panels = n.div_ceil(width);
    let mut values = vec![0f32; panels * k * width + CACHE_LINE_FLOATS].into_boxed_slice();
    let start = values.as_ptr().align_offset(CACHE_LINE_FLOATS * 4);
    // Panel by panel, depth by depth: `width` consecutive columns of one row of the operand (contiguous where it is
    // row-major).
    for (panel, block) in values[start..].chunks_exact_mut(k * width).enumerate() {
        let first = panel * width;
        let columns = width.min(n - first);
        for (d, step) in block.chunks_exact_mut(width).enumerate() {
            for (j, value) in step[..columns].iter_mut().enumerate() {
                // SAFETY: (d, first + j) lies inside the operand (d < k, first + j < n): the caller's promise.
                *value = unsafe { *rhs.offset(d as isize * rs + (first + j) as isize * cs) };
            }
        }
    }
    Some(PackedRight { order: Order::Panels { values, start, width }, k, n })
}

/// gemm's micro-kernels that this process runs (the same choice gemm makes), with their shape: `width` columns of
/// the copy (gemm's `MR`) by `NR` rows of the left operand per call, in `lanes`-wide registers.
#[derive(Clone, Copy)]
struct Kernels {
    table: &'static [[MicroKernelFn<f32>; 6]],
    lanes: usize,
    width: usize,
}

fn kernels() -> Option<Kernels> {
    const NR: usize = 6;
    #[cfg(feature = "x86-v4")]
    if gemm_common::feature_detected!("avx512f") {
        use crate::microkernel::avx512f::f32 as k;
        const _: () = assert!(k::NR == NR);
        return Some(Kernels { table: &k::UKR, lanes: 16, width: 16 * k::MR_DIV_N });
    }
    if gemm_common::feature_detected!("fma") {
        use crate::microkernel::fma::f32 as k;
        const _: () = assert!(k::NR == NR);
        return Some(Kernels { table: &k::UKR, lanes: 8, width: 8 * k::MR_DIV_N });
    }
    None
}

/// Runs `dst = alpha * dst + beta * lhs · rhs` (or `beta * lhs · rhs` without `read_dst`) on gemm's micro-kernels
/// over the copy of `rhs` that the installed lookup finds; `false` (nothing written) where it finds none in panel
/// order, or the product is too small to have asked. Arguments as gemm's (its orientation: a destination whose
/// columns are its shorter stride is the transpose of a row-major product).
///
/// # Safety
/// gemm's contract: the pointers and strides reach valid elements for the shapes, `dst` writable and not aliased.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_panels(
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
    // In the row-major view `C (rows x cols) = X (rows x k) · W (k x cols)`: the weight is the right operand.
    let (rows, cols, x, x_cs, x_rs, w, w_cs, w_rs, c_cs, c_rs) = if dst_rs.abs() < dst_cs.abs() {
        (n, m, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs, dst_rs, dst_cs)
    } else {
        (m, n, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, dst_cs, dst_rs)
    };
    if rows < MIN_PACKED_ROWS
        || cols < MIN_PANEL_SIDE
        || k < MIN_PANEL_SIDE
        || rows.saturating_mul(cols).saturating_mul(k) < MIN_PANEL_WORK
    {
        return false;
    }
    let Some(kernels) = kernels() else { return false };
    let Some(copy) = find_copy(w, w_cs, w_rs, k, cols) else { return false };
    let Order::Panels { values, start, width } = &copy.order else { return false };
    let width = *width;
    if width != kernels.width {
        return false;
    }
    // gemm's orientation for its kernels: they compute `Wᵀ (cols x k) · Xᵀ (k x rows)` into the destination seen
    // column-major, `width` columns of the weight (one panel) by up to NR rows of X per call.
    const NR: usize = 6;
    let gemm_common::cache::KernelParams { kc, mc, nc } = if cols <= 64 && rows <= 64 {
        // gemm's own choice for small products.
        let kc = k.min(512);
        let alloc = gemm_common::cache::CACHE_INFO[1].cache_bytes / core::mem::size_of::<f32>();
        gemm_common::cache::KernelParams { kc, mc: (alloc / kc) / width * width, nc: 0 }
    } else {
        gemm_common::cache::kernel_params(cols, rows, k, width, NR, core::mem::size_of::<f32>())
    };
    let (kc, panels_per_block) = (kc.max(1), (mc / width).max(1));
    // Rows per chunk (gemm's `nc`, a multiple of NR; 0 there means all), so that a chunk's depth block of X stays in
    // cache while the panels run past it.
    let row_chunk = if nc == 0 { rows } else { nc.next_multiple_of(NR) };
    let panels = cols.div_ceil(width);
    let threads = match parallelism {
        #[cfg(feature = "rayon")]
        gemm_common::Parallelism::Rayon(t) => {
            let t = if t == 0 { rayon::current_num_threads() } else { t };
            t.min(panels).max(1)
        }
        _ => 1,
    };
    let job = PanelJob {
        values: values[*start..].as_ptr() as usize,
        x: x as usize,
        c: dst as usize,
        x_cs,
        x_rs,
        c_cs,
        c_rs,
        rows,
        cols,
        k,
        kc,
        panels_per_block,
        row_chunk,
        alpha: if read_dst { alpha } else { 0.0 },
        beta,
        kernels,
    };
    if threads == 1 {
        // SAFETY: the caller's promise; the copy holds every panel.
        unsafe { job.run(0, panels) };
    } else {
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            let per_thread = panels.div_ceil(threads);
            (0..threads).into_par_iter().for_each(|t| {
                let (first, end) = (t * per_thread, ((t + 1) * per_thread).min(panels));
                if first < end {
                    // SAFETY: as above; each task writes its own columns of the destination.
                    unsafe { job.run(first, end) };
                }
            });
        }
    }
    true
}

/// One product on a panel copy, as addresses so that rayon's tasks can share it.
#[derive(Clone, Copy)]
struct PanelJob {
    values: usize,
    x: usize,
    c: usize,
    x_cs: isize,
    x_rs: isize,
    c_cs: isize,
    c_rs: isize,
    rows: usize,
    cols: usize,
    k: usize,
    kc: usize,
    panels_per_block: usize,
    row_chunk: usize,
    alpha: f32,
    beta: f32,
    kernels: Kernels,
}

impl PanelJob {
    /// Panels `first..end` of the product, depth block by depth block (gemm's loop order: per block of panels, which
    /// stays in L2, every group of NR rows of X runs past each panel).
    unsafe fn run(&self, first: usize, end: usize) {
        const NR: usize = 6;
        let (values, x, c) = (self.values as *const f32, self.x as *const f32, self.c as *mut f32);
        let width = self.kernels.width;
        let mut chunk_start = 0;
        while chunk_start < self.rows {
            let chunk_end = (chunk_start + self.row_chunk).min(self.rows);
            let mut depth = 0;
            let mut alpha = self.alpha;
            while depth < self.k {
                let k_chunk = self.kc.min(self.k - depth);
                // gemm's encoding: 0 ignores the destination, 1 adds to it, 2 scales it by alpha first.
                let alpha_status = if alpha == 0.0 {
                    0
                } else if alpha == 1.0 {
                    1
                } else {
                    2
                };
                let mut block = first;
                while block < end {
                    let block_end = (block + self.panels_per_block).min(end);
                    let mut row = chunk_start;
                    while row < chunk_end {
                        let n_rows = NR.min(chunk_end - row);
                        for panel in block..block_end {
                            let n_cols = width.min(self.cols - panel * width);
                            let kernel = self.kernels.table[n_cols.div_ceil(self.kernels.lanes) - 1][n_rows - 1];
                            // SAFETY: the destination block, the copy's panel at this depth, and X's rows at this depth
                            // lie inside their operands (rows, columns and depth bounded above).
                            unsafe {
                                kernel(
                                    n_cols,
                                    n_rows,
                                    k_chunk,
                                    c.offset(row as isize * self.c_rs + (panel * width) as isize * self.c_cs),
                                    values.add(panel * self.k * width + depth * width),
                                    x.offset(row as isize * self.x_rs + depth as isize * self.x_cs),
                                    self.c_rs,
                                    self.c_cs,
                                    width as isize,
                                    self.x_cs,
                                    self.x_rs,
                                    alpha,
                                    self.beta,
                                    alpha_status,
                                    false,
                                    false,
                                    false,
                                    core::ptr::null(),
                                )
                            };
                        }
                        row += NR;
                    }
                    block = block_end;
                }
                alpha = 1.0;
                depth += k_chunk;
            }
            chunk_start = chunk_end;
        }
    }
}
