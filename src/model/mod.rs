//! CLIP in Burn: config, the two towers over a shared transformer block, and weight loading.

pub(crate) mod batch_split;
pub mod clip;
pub mod config;
mod cpu_math;
mod cpu_tensor;
mod linear;
pub mod load;
mod matrix_tiles;
#[cfg(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64"))]
mod packed_weights;
mod quick_gelu;
pub mod safetensors_file;
pub mod softmax;
pub mod text;
pub mod transformer;
pub mod vision;
mod wasm_linear;

pub use batch_split::set_batch_split;
pub use clip::{Clip, l2_normalize};
pub use config::{Activation, ClipConfig, Preset, TextConfig, VisionConfig};
#[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
#[doc(hidden)]
pub use linear::product_onto;
#[cfg(all(feature = "flex", feature = "amx", target_arch = "x86_64"))]
#[doc(hidden)]
pub use linear::product_onto_copy;
#[cfg(not(target_arch = "wasm32"))]
pub use load::load_clip;
pub use load::{
    ClipLoader, convert_to_f16, hf_tensor_shapes, inspect_weights, load_clip_from_bytes, load_clip_from_source,
    save_clip_safetensors,
};
pub use matrix_tiles::{matrix_tiles_active, packed_weight_bytes, set_matrix_tiles, set_weight_copies};
pub use safetensors_file::WeightsBytes;
pub use text::TokenBatch;
