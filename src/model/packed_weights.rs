//! The linear layers' weights copied once into the AMX tiles' order for native inference, each copy kept while its
//! weight lives.
//!
//! On the tiles (`matrix_tiles`) every product copies its right operand, the weight, into tile order first; at a
//! slice of 200 rows (batch 8 on two threads) that copy is half the product's time (`cargo bench --bench matmul`,
//! 2026-12-03). The weights of an inference model do not change between calls, so the copy is made once per weight
//! and looked up by the weight's storage.
//!
//! Why a lookup cannot go stale: an entry holds a `Weak` to the weight's shared buffer. While a `Weak` to it exists,
//! Burn's CPU backend cannot write into that buffer in place (`Arc::get_mut` refuses, `Arc::make_mut` moves the
//! values to a new buffer first), and the buffer's address cannot be reused while the `Weak` is held; an entry whose
//! weight is gone is dropped at the next copy. The cost is memory: one copy of every weight used this way (as large as
//! the f32 weight; ViT-B/32's two towers 468 MiB), for as long as the model lives.

use std::sync::{Arc, Mutex, Weak};

use burn::backend::flex::FlexTensor;
use burn::tensor::Bytes;
use gemm_f32::amx::PackedRight;

/// One weight's copy and what it was made from.
struct Entry {
    storage: Weak<Bytes>,
    start: usize,
    strides: [isize; 2],
    packed: Arc<PackedRight>,
}

static ENTRIES: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The tile-order copy of `weight` (an f32 `[d_input, d_output]` CPU tensor, any strides) for a product of `rows`
/// rows, made now if there is none; `None` where the tiles do not run or would not take the product (so that a weight
/// only ever used on a few rows, as the last block's for the class tokens of a small batch, is not copied).
pub(crate) fn packed_weight(weight: &FlexTensor, rows: usize) -> Option<Arc<PackedRight>> {
    let layout = weight.layout();
    let (dims, strides) = (layout.shape(), layout.strides());
    if dims.num_dims() != 2 || rows < gemm_f32::amx::MIN_PACKED_ROWS || !super::matrix_tiles_active() {
        return None;
    }
    let ([k, n], strides, start) = ([dims[0], dims[1]], [strides[0], strides[1]], layout.start_offset());
    let storage = weight.data_arc();
    let mut entries = ENTRIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let found = entries.iter().find(|e| {
        std::ptr::eq(e.storage.as_ptr(), Arc::as_ptr(&storage))
            && e.start == start
            && e.strides == strides
            && e.packed.shape() == [k, n]
    });
    if let Some(entry) = found {
        return Some(entry.packed.clone());
    }
    entries.retain(|e| e.storage.strong_count() > 0);
    let values = &weight.storage::<f32>()[start..];
    // SAFETY: element (i, o) of the weight lies at `start + i * strides[0] + o * strides[1]` inside its buffer, as
    // its layout says.
    let packed = Arc::new(unsafe { gemm_f32::amx::pack_right_operand(values.as_ptr(), strides[1], strides[0], k, n) }?);
    entries.push(Entry { storage: Arc::downgrade(&storage), start, strides, packed: packed.clone() });
    Some(packed)
}

/// Bytes held by the copies, after dropping those of weights that are gone.
pub(crate) fn held_bytes() -> usize {
    let mut entries = ENTRIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    entries.retain(|e| e.storage.strong_count() > 0);
    entries.iter().map(|e| e.packed.bytes()).sum()
}

/// Drops every copy (the tiles turned off: none would be used).
pub(crate) fn release_all() {
    ENTRIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
}
