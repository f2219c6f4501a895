//! From decoded images and raw texts to CLIP embeddings: preprocessing, tokenising and batching.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::{Clip, TokenBatch};
use crate::preprocess;
use crate::tokenizer::Tokenizer;

/// Stacks CLIP-normalised CHW buffers of one size into a [batch, 3, size, size] tensor.
pub fn pixel_batch(images: &[Vec<f32>], size: usize, device: &Device) -> Result<Tensor<4>> {
    let per_image = 3 * size * size;
    if images.is_empty() {
        return Err(Error::invalid("no images to encode"));
    }
    if let Some(bad) = images.iter().find(|p| p.len() != per_image) {
        return Err(Error::invalid(format!(
            "an image buffer has {} values, expected 3x{size}x{size} = {per_image}",
            bad.len()
        )));
    }
    let data: Vec<f32> = images.concat();
    Ok(Tensor::from_data(TensorData::new(data, [images.len(), 3, size, size]), device))
}

/// Preprocesses decoded RGB images for `model` and stacks them.
pub fn images_to_pixels(model: &Clip, images: &[image::RgbImage], device: &Device) -> Result<Tensor<4>> {
    let size = model.config().vision.image_size;
    let buffers: Vec<Vec<f32>> = images.iter().map(|img| preprocess::preprocess(img, size as u32)).collect();
    pixel_batch(&buffers, size, device)
}

/// Tokenises texts as open_clip does (truncated to the context, EOT kept last) into a padded batch.
pub fn tokenize_texts(model: &Clip, tokenizer: &Tokenizer, texts: &[String]) -> Result<TokenBatch> {
    let text = &model.config().text;
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.encode_for_context(t, text.context_length)).collect();
    TokenBatch::new(&ids, text.context_length, text.vocab_size)
}

/// Normalised image embeddings, computed `batch_size` images at a time; `progress` is told after each batch.
pub fn embed_images(
    model: &Clip,
    images: &[image::RgbImage],
    batch_size: usize,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Result<Tensor<2>> {
    let mut parts = Vec::new();
    for chunk in images.chunks(batch_size.max(1)) {
        parts.push(model.encode_image(images_to_pixels(model, chunk, device)?));
        progress(chunk.len());
    }
    if parts.is_empty() {
        return Err(Error::invalid("no images to encode"));
    }
    Ok(Tensor::cat(parts, 0))
}

/// Normalised text embeddings.
pub fn embed_texts(model: &Clip, tokenizer: &Tokenizer, texts: &[String]) -> Result<Tensor<2>> {
    Ok(model.encode_text(&tokenize_texts(model, tokenizer, texts)?))
}
