//! Reading tensors back to the host: synchronously for native callers, asynchronously where the browser requires
//! it (WebGPU cannot read synchronously; native callers of the async readers block on them).

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};

fn floats(data: TensorData) -> Result<Vec<f32>> {
    data.convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::internal(format!("reading a tensor: {e:?}")))
}

fn ints(data: TensorData) -> Result<Vec<i64>> {
    data.convert::<i64>().try_into_vec::<i64>().map_err(|e| Error::internal(format!("reading a tensor: {e:?}")))
}

pub fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    floats(t.try_into_data().map_err(|e| Error::internal(format!("reading a tensor: {e:?}")))?)
}

pub fn read_scalar(t: Tensor<1>) -> Result<f32> {
    Ok(read_f32(t)?.first().copied().unwrap_or(f32::NAN))
}

pub fn read_i64<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>> {
    ints(t.try_into_data().map_err(|e| Error::internal(format!("reading a tensor: {e:?}")))?)
}

pub async fn read_f32_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    floats(t.into_data_async().await.map_err(|e| Error::internal(format!("reading a tensor: {e:?}")))?)
}

pub async fn read_scalar_async(t: Tensor<1>) -> Result<f32> {
    Ok(read_f32_async(t).await?.first().copied().unwrap_or(f32::NAN))
}

pub async fn read_i64_async<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>> {
    ints(t.into_data_async().await.map_err(|e| Error::internal(format!("reading a tensor: {e:?}")))?)
}
