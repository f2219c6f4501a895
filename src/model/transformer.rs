//! The pre-norm transformer block both CLIP towers share, named like the Hugging Face weights it loads.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::Activation;
use super::linear::linear;
use super::softmax::{VisibleKeys, masked_softmax};

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

    /// `x`: [batch, tokens, width]; `causal`: each token looks at itself and the tokens before it only.
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        self.attend(x.clone(), x, if causal { VisibleKeys::Causal } else { VisibleKeys::All })
    }

    /// Attention for one query row per sequence: `queries` [batch, 1, width] look at the tokens of `x`
    /// [batch, tokens, width], every one, or with `last_keys` [batch] those up to each sequence's own.
    pub fn forward_rows(&self, queries: Tensor<3>, x: Tensor<3>, last_keys: Option<&[usize]>) -> Tensor<3> {
        self.attend(queries, x, last_keys.map_or(VisibleKeys::All, VisibleKeys::UpTo))
    }

    /// `queries` [batch, rows, width] attend to `x` [batch, tokens, width], each row to the keys `visible` says.
    fn attend(&self, queries: Tensor<3>, x: Tensor<3>, visible: VisibleKeys) -> Tensor<3> {
        let [batch, rows, width] = queries.dims();
        let tokens = x.dims()[1];
        let head_dim = width / self.num_heads;
        let split = |t: Tensor<3>, len: usize| t.reshape([batch, len, self.num_heads, head_dim]).swap_dims(1, 2);
        let q = split(linear(&self.q_proj, queries), rows);
        let k = split(linear(&self.k_proj, x.clone()), tokens);
        let v = split(linear(&self.v_proj, x), tokens);
        // The 1/sqrt(head_dim) scale is applied to the scores inside the softmax's pass.
        let weights = masked_softmax(q.matmul(k.swap_dims(2, 3)), (head_dim as f32).powf(-0.5), visible);
        let context = weights.matmul(v).swap_dims(1, 2).reshape([batch, rows, width]);
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
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), causal);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }

    /// The block's output at one row per sequence, [batch, 1, width]: `rows` [batch] indexes `x` flattened to
    /// [batch * tokens, width]; `last_keys` as in `SelfAttention::forward_rows`. Every token still gives its key
    /// and value, but the query, the attention's output projection and the MLP run on those rows alone.
    pub fn forward_rows(&self, x: Tensor<3>, rows: Tensor<1, Int>, last_keys: Option<&[usize]>) -> Tensor<3> {
        let [batch, tokens, width] = x.dims();
        let pick = |t: Tensor<3>| t.reshape([batch * tokens, width]).select(0, rows.clone()).reshape([batch, 1, width]);
        let normed = self.layer_norm1.forward(x.clone());
        let x = pick(x) + self.self_attn.forward_rows(pick(normed.clone()), normed, last_keys);
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
    /// `causal`: each token looks at itself and the tokens before it only (the text tower).
    pub fn forward(&self, mut x: Tensor<3>, causal: bool, mut hidden_states: Option<&mut Vec<Tensor<3>>>) -> Tensor<3> {
        for layer in &self.layers {
            if let Some(states) = hidden_states.as_deref_mut() {
                states.push(x.clone());
            }
            x = layer.forward(x, causal);
        }
        if let Some(states) = hidden_states {
            states.push(x.clone());
        }
        x
    }

    /// The last block's output at one position per sequence, [batch, width]: the only rows a tower pools.
    ///
    /// The blocks before the last run whole. The last one computes keys and values for every token but its query,
    /// output projection and MLP for `positions` alone (`EncoderLayer::forward_rows`): ~10/12 of that block's
    /// multiply-adds, so about 7 % of a ViT-B/32 pass, with outputs equal to the whole pass's within rounding.
    /// `causal`: the sequences attend only backwards (the text tower), so each pooled query sees the keys up to its
    /// own position.
    pub fn forward_pooled(&self, x: Tensor<3>, positions: &[usize], causal: bool) -> Tensor<2> {
        let [batch, tokens, width] = x.dims();
        debug_assert!(positions.len() == batch && positions.iter().all(|&p| p < tokens), "one position per sequence");
        let device = x.device();
        let index = |values: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(values, [batch]), &device);
        let rows = index(positions.iter().enumerate().map(|(b, &p)| (b * tokens + p) as i64).collect());
        let Some((last, before)) = self.layers.split_last() else {
            return x.reshape([batch * tokens, width]).select(0, rows);
        };
        let x = before.iter().fold(x, |x, layer| layer.forward(x, causal));
        last.forward_rows(x, rows, causal.then_some(positions)).reshape([batch, width])
    }
}

pub fn layer_norm(width: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(width).with_epsilon(eps).init(device)
}
