//! Reading tensors back to the host synchronously, for native callers (on WebGPU the browser must read asynchronously).

use burn::tensor::{Int, Tensor};

use crate::error::{Error, Result};

pub fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::invalid(format!("reading a tensor: {e:?}")))
}

pub fn read_scalar(t: Tensor<1>) -> Result<f32> {
    Ok(read_f32(t)?.first().copied().unwrap_or(f32::NAN))
}

pub fn read_i64<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().map_err(|e| Error::invalid(format!("reading a tensor: {e:?}")))
}
