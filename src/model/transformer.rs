//! The pre-norm transformer block both CLIP towers share, named like the Hugging Face weights it loads.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Bool, Device, Tensor};

use super::config::Activation;
use super::wasm_linear::linear;

/// Multi-head self-attention with separate q/k/v projections (the Hugging Face layout).
///
/// Written from matmul + softmax rather than Burn's fused attention, which is inference-only:
/// the patch attack backpropagates through every block.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    num_heads: usize,
}

impl SelfAttention {
    pub fn new(width: usize, num_heads: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(width, width).init(device);
        Self { q_proj: linear(), k_proj: linear(), v_proj: linear(), out_proj: linear(), num_heads }
    }

    /// `x`: [batch, tokens, width]; `mask`: [tokens, tokens], true where a query may not look.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let [batch, tokens, width] = x.dims();
        let head_dim = width / self.num_heads;
        let split = |t: Tensor<3>| t.reshape([batch, tokens, self.num_heads, head_dim]).swap_dims(1, 2);
        let scale = (head_dim as f64).powf(-0.5);
        let q = split(linear(&self.q_proj, x.clone())).mul_scalar(scale);
        let k = split(linear(&self.k_proj, x.clone()));
        let v = split(linear(&self.v_proj, x));
        let mut scores = q.matmul(k.swap_dims(2, 3));
        if let Some(mask) = mask {
            // A finite fill keeps softmax and its gradient NaN-free on every backend.
            let mask = mask.unsqueeze::<4>().expand([batch, self.num_heads, tokens, tokens]);
            scores = scores.mask_fill(mask, -1e9);
        }
        let weights = softmax(scores, 3);
        let context = weights.matmul(v).swap_dims(1, 2).reshape([batch, tokens, width]);
        linear(&self.out_proj, context)
    }
}

/// The two-layer MLP of a block.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    activation: Activation,
}

impl Mlp {
    pub fn new(width: usize, hidden: usize, activation: Activation, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(width, hidden).init(device),
            fc2: LinearConfig::new(hidden, width).init(device),
            activation,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = linear(&self.fc1, x);
        let h = match self.activation {
            Activation::QuickGelu => super::quick_gelu::quick_gelu(h),
            Activation::Gelu => gelu(h),
        };
        linear(&self.fc2, h)
    }
}

/// One pre-norm residual block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: SelfAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: Mlp,
    pub layer_norm2: LayerNorm,
}

impl EncoderLayer {
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), mask);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// A stack of blocks.
#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

/// The shape of one tower's encoder.
pub struct EncoderShape {
    pub width: usize,
    pub intermediate: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
}

impl Encoder {
    pub fn new(shape: &EncoderShape, device: &Device) -> Self {
        let layers = (0..shape.num_layers)
            .map(|_| EncoderLayer {
                self_attn: SelfAttention::new(shape.width, shape.num_heads, device),
                layer_norm1: layer_norm(shape.width, shape.layer_norm_eps, device),
                mlp: Mlp::new(shape.width, shape.intermediate, shape.activation, device),
                layer_norm2: layer_norm(shape.width, shape.layer_norm_eps, device),
            })
            .collect();
        Self { layers }
    }

    /// Runs every block; when `hidden_states` is given, pushes the input and each block's output into it.
    pub fn forward(
        &self,
        mut x: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
        mut hidden_states: Option<&mut Vec<Tensor<3>>>,
    ) -> Tensor<3> {
        for layer in &self.layers {
            if let Some(states) = hidden_states.as_deref_mut() {
                states.push(x.clone());
            }
            x = layer.forward(x, mask.clone());
        }
        if let Some(states) = hidden_states {
            states.push(x.clone());
        }
        x
    }
}

pub fn layer_norm(width: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(width).with_epsilon(eps).init(device)
}
