//! The CPU backend's own f32 tensor behind a `Tensor`, for the passes that work on its buffer directly.

#![cfg(feature = "flex")]

use burn::backend::flex::FlexTensor;
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::tensor::{DType, Tensor};

/// The CPU backend's f32 tensor behind `t` when `t` is one, outside autodiff (an autodiff graph needs the ops that
/// build it); any other tensor comes back untouched as the error. Nothing is copied or read back.
#[allow(clippy::result_large_err)] // the error is the tensor handed back by value
pub(crate) fn into_cpu_f32<const D: usize>(t: Tensor<D>) -> Result<FlexTensor, Tensor<D>> {
    let DispatchTensor { kind, autodiff } = t.into_dispatch();
    match (kind, autodiff) {
        (DispatchTensorKind::Flex(BackendTensor::Float(tensor)), DispatchAutodiffContext::Disabled)
            if tensor.dtype() == DType::F32 =>
        {
            Ok(tensor)
        }
        (kind, autodiff) => Err(Tensor::from_dispatch(DispatchTensor { kind, autodiff })),
    }
}

/// The `Tensor` of a CPU backend tensor, outside autodiff: the way back from `into_cpu_f32`.
pub(crate) fn from_cpu<const D: usize>(tensor: FlexTensor) -> Tensor<D> {
    let kind = DispatchTensorKind::Flex(BackendTensor::Float(tensor));
    Tensor::from_dispatch(DispatchTensor { kind, autodiff: DispatchAutodiffContext::Disabled })
}

/// `t` with its f32 values rewritten in place by `rewrite` (all of them, in row-major order), where `t` is a CPU
/// backend f32 tensor outside autodiff alone in its contiguous buffer: nothing is copied or read back. Any other
/// tensor (shared, strided, autodiff, another device) comes back untouched as the error.
#[allow(clippy::result_large_err)] // the error is the tensor handed back by value
pub(crate) fn rewrite_in_place<const D: usize>(
    t: Tensor<D>,
    rewrite: impl FnOnce(&mut [f32]),
) -> Result<Tensor<D>, Tensor<D>> {
    let mut tensor = into_cpu_f32(t)?;
    let offsets = tensor.layout().contiguous_offsets();
    // `try_storage_mut` is `None` where the buffer is shared: the values are untouched then.
    match (offsets, tensor.try_storage_mut::<f32>()) {
        (Some((start, end)), Some(values)) => {
            rewrite(&mut values[start..end]);
            Ok(from_cpu(tensor))
        }
        _ => Err(from_cpu(tensor)),
    }
}
