//! The linear layers' weights copied once in the order their products read them, each copy kept while its weight
//! lives: for native inference, and for patch training's products (forward with the weight, backward with its
//! transpose).
//!
//! Every product copies its right operand, the weight, into the order its engine reads first: on AMX tiles
//! (`matrix_tiles`) tile order, half the product's time at a slice of 200 rows (batch 8 on two threads; `cargo bench
//! --bench matmul`, 2026-12-03); on gemm's own AVX2 or AVX-512 kernels panels of 16 or 64 columns, about a tenth of
//! it (`perf`, 2026-12-03). A frozen weight does not change between calls, so the copy is made once per weight, in
//! the order of the engine that runs (`gemm_f32::copies::pack_right_operand`), and found again by the weight's
//! storage: the linear layer makes the weight's copy before its product (`model::linear`: its own gemm call at
//! inference, Burn's autodiff in patch training) and gemm finds it by address through the lookup installed here
//! (`gemm_f32::copies::set_copy_lookup`), which also copies a live weight's transpose at the backward pass's first
//! product with it (`grad · weightᵀ`) and keeps that copy too.
//!
//! Why a lookup cannot go stale: an entry holds a `Weak` to the weight's shared buffer. While a `Weak` to it exists,
//! Burn's CPU backend cannot write into that buffer in place (`Arc::get_mut` refuses, `Arc::make_mut` moves the
//! values to a new buffer first and leaves the `Weak` dead), and the buffer's address cannot be reused while the weight
//! it belongs to lives; an entry whose weight is gone is never matched and is dropped at the next copy. A lookup by
//! address matches only entries whose weight still lives: the operand at that address is then that weight's buffer,
//! unchanged since the copy, and the product's caller holds it for the call. The cost is memory: one copy of every
//! weight used this way (as large as the f32 weight; ViT-B/32's two towers 458 MiB at inference), two while training
//! (the image tower's weights and their transposes), for as long as the model lives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

use burn::backend::flex::FlexTensor;
use burn::tensor::Bytes;
use gemm_f32::copies::PackedRight;

/// One weight's copy and what it was made from.
struct Entry {
    storage: Weak<Bytes>,
    /// The address of the operand's element (0, 0), and its row and column strides, as a product is handed them.
    address: usize,
    strides: [isize; 2],
    packed: Arc<PackedRight>,
}

static ENTRIES: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether weights are copied and their copies used (on by default); off drops every copy.
pub(crate) fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
    if !enabled {
        release_all();
    }
}

fn entries() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    ENTRIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Before a product of `rows` rows with `weight` (an f32 `[d_input, d_output]` CPU tensor, any strides): its copy, made
/// now if there is none, for gemm to find by address. Nothing where no engine takes copies, or for too few rows (so
/// that a weight only ever used on a few rows, as the last block's for the class tokens of a small batch, is not
/// copied).
pub(crate) fn keep_copy(weight: &FlexTensor, rows: usize) {
    let layout = weight.layout();
    let (dims, strides) = (layout.shape(), layout.strides());
    let active = gemm_f32::copies::copies_apply() && ENABLED.load(Ordering::Relaxed);
    if dims.num_dims() != 2 || rows < gemm_f32::copies::MIN_PACKED_ROWS || !active {
        return;
    }
    let ([k, n], strides) = ([dims[0], dims[1]], [strides[0], strides[1]]);
    let storage = weight.data_arc();
    let values = &weight.storage::<f32>()[layout.start_offset()..];
    let address = values.as_ptr() as usize;
    let mut entries = entries();
    let copied = entries.iter().any(|e| {
        std::ptr::eq(e.storage.as_ptr(), Arc::as_ptr(&storage))
            && e.address == address
            && e.strides == strides
            && e.packed.shape() == [k, n]
    });
    if copied {
        return;
    }
    entries.retain(|e| e.storage.strong_count() > 0);
    static LOOKUP: Once = Once::new();
    // SAFETY: `find_by_address` returns a copy only for an entry whose weight still lives (module header).
    LOOKUP.call_once(|| unsafe { gemm_f32::copies::set_copy_lookup(find_by_address) });
    // SAFETY: element (i, o) of the weight lies at `i * strides[0] + o * strides[1]` from `values`' start, inside its
    // buffer, as its layout says.
    let Some(packed) = (unsafe { gemm_f32::copies::pack_right_operand(values.as_ptr(), strides[1], strides[0], k, n) })
    else {
        return;
    };
    entries.push(Entry { storage: Arc::downgrade(&storage), address, strides, packed: Arc::new(packed) });
}

/// gemm's lookup ([`gemm_f32::copies::CopyLookup`]): the copy of the operand at `address` with strides `cs`, `rs` and
/// shape `[k, n]`, if a weight that still lives was copied from there; the transpose of such a weight (the backward
/// pass's operand) is copied now, from the caller's operand, which is then that weight's buffer.
fn find_by_address(address: *const f32, cs: isize, rs: isize, k: usize, n: usize) -> Option<Arc<PackedRight>> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let mut entries = entries();
    let alive = |e: &&Entry| e.address == address as usize && e.storage.strong_count() > 0;
    if let Some(entry) = entries.iter().filter(alive).find(|e| e.strides == [rs, cs] && e.packed.shape() == [k, n]) {
        return Some(entry.packed.clone());
    }
    let storage =
        entries.iter().filter(alive).find(|e| e.strides == [cs, rs] && e.packed.shape() == [n, k])?.storage.clone();
    // SAFETY: gemm's caller holds the operand valid for its shape and strides for this call.
    let packed = Arc::new(unsafe { gemm_f32::copies::pack_right_operand(address, cs, rs, k, n) }?);
    entries.push(Entry { storage, address: address as usize, strides: [rs, cs], packed: packed.clone() });
    Some(packed)
}

/// Bytes held by the copies, after dropping those of weights that are gone.
pub(crate) fn held_bytes() -> usize {
    let mut entries = entries();
    entries.retain(|e| e.storage.strong_count() > 0);
    entries.iter().map(|e| e.packed.bytes()).sum()
}

/// Drops every copy (the tiles switched: the copies are in the other engine's order).
pub(crate) fn release_all() {
    entries().clear();
}
