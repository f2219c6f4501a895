//! The text tower: token and position embeddings, causal encoder, final LN, pooling at each sequence's EOT.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{Activation, TextConfig};
use super::transformer::{Encoder, EncoderShape, layer_norm};
use crate::error::{Error, Result};
use crate::tokenizer::EOT;

#[derive(Module, Debug)]
pub struct TextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct TextTransformer {
    pub embeddings: TextEmbeddings,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
}

/// A batch of token sequences padded to one length, with the EOT position of each row found on the host
/// (so pooling never depends on argmax tie-breaking on the device).
#[derive(Clone, Debug)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub batch: usize,
    pub length: usize,
    pub eot_positions: Vec<usize>,
}

impl TokenBatch {
    /// Pads each sequence with 0 (as open_clip does) to `length`. Each must be non-empty and fit;
    /// pooling happens at the first EOT, or at the last token of a sequence that has none.
    pub fn new(sequences: &[Vec<u32>], length: usize, vocab_size: usize) -> Result<Self> {
        if sequences.is_empty() {
            return Err(Error::invalid("no texts to encode"));
        }
        let mut ids = Vec::with_capacity(sequences.len() * length);
        let mut eot_positions = Vec::with_capacity(sequences.len());
        for seq in sequences {
            if seq.is_empty() || seq.len() > length {
                return Err(Error::invalid(format!(
                    "a token sequence has {} tokens; 1 to {length} fit the context",
                    seq.len()
                )));
            }
            if let Some(bad) = seq.iter().find(|&&id| id as usize >= vocab_size) {
                return Err(Error::invalid(format!("token id {bad} is outside the vocabulary of {vocab_size}")));
            }
            eot_positions.push(seq.iter().position(|&id| id == EOT).unwrap_or(seq.len() - 1));
            ids.extend_from_slice(seq);
            ids.resize(ids.len() + length - seq.len(), 0);
        }
        Ok(Self { ids, batch: sequences.len(), length, eot_positions })
    }

    /// The rows cut into `parts` consecutive batches of near-equal size (fewer when there are fewer rows).
    pub fn split(&self, parts: usize) -> Vec<TokenBatch> {
        let per_part = self.batch.div_ceil(parts.max(1));
        (0..self.batch)
            .step_by(per_part)
            .map(|start| {
                let end = (start + per_part).min(self.batch);
                TokenBatch {
                    ids: self.ids[start * self.length..end * self.length].to_vec(),
                    batch: end - start,
                    length: self.length,
                    eot_positions: self.eot_positions[start..end].to_vec(),
                }
            })
            .collect()
    }

    /// The same batch cut after the last position any row pools at. Under the causal mask no position attends to a
    /// later one, so what follows every EOT cannot change a pooled output: the cut batch encodes to the same
    /// embeddings, for a fraction of the work (a prompt is ~10 tokens of the 77).
    pub fn trimmed(&self) -> std::borrow::Cow<'_, TokenBatch> {
        let used = self.eot_positions.iter().max().map_or(self.length, |&p| p + 1).min(self.length);
        if used == self.length {
            return std::borrow::Cow::Borrowed(self);
        }
        let ids = self.ids.chunks(self.length).flat_map(|row| row[..used].iter().copied()).collect();
        std::borrow::Cow::Owned(TokenBatch {
            ids,
            batch: self.batch,
            length: used,
            eot_positions: self.eot_positions.clone(),
        })
    }
}

impl TextTransformer {
    pub fn new(config: &TextConfig, activation: Activation, device: &Device) -> Self {
        let width = config.hidden_size;
        Self {
            embeddings: TextEmbeddings {
                // OpenAI's initialisation (std 0.02 and 0.01); it matters only when training from scratch.
                token_embedding: EmbeddingConfig::new(config.vocab_size, width)
                    .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
                    .init(device),
                position_embedding: EmbeddingConfig::new(config.context_length, width)
                    .with_initializer(Initializer::Normal { mean: 0.0, std: 0.01 })
                    .init(device),
            },
            encoder: Encoder::new(
                &EncoderShape {
                    width,
                    intermediate: config.intermediate_size,
                    num_layers: config.num_layers,
                    num_heads: config.num_heads,
                    layer_norm_eps: config.layer_norm_eps,
                    activation,
                },
                device,
            ),
            final_layer_norm: layer_norm(width, config.layer_norm_eps, device),
        }
    }

    fn embed(&self, tokens: &TokenBatch, device: &Device) -> Tensor<3> {
        let ids: Vec<i64> = tokens.ids.iter().map(|&id| id as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [tokens.batch, tokens.length]), device);
        let width = self.embeddings.position_embedding.weight.dims()[1];
        let positions =
            self.embeddings.position_embedding.weight.val().slice([0..tokens.length, 0..width]).unsqueeze::<3>();
        self.embeddings.token_embedding.forward(ids) + positions
    }

    /// Pooled output (final-LN hidden state at each EOT), [batch, hidden]. Runs only up to the last EOT
    /// (`TokenBatch::trimmed`), and the last block for the EOT rows alone (`Encoder::forward_pooled`).
    pub fn forward(&self, tokens: &TokenBatch) -> Tensor<2> {
        let tokens = &*tokens.trimmed();
        let device = self.embeddings.token_embedding.weight.device();
        self.final_layer_norm.forward(self.encoder.forward_pooled(
            self.embed(tokens, &device),
            &tokens.eot_positions,
            true,
        ))
    }

    /// Like `forward`, also returning the encoder input and every block's output.
    pub fn forward_with_hidden_states(&self, tokens: &TokenBatch) -> (Tensor<2>, Vec<Tensor<3>>) {
        let device = self.embeddings.token_embedding.weight.device();
        let mut states = Vec::new();
        let hidden = self.encoder.forward(self.embed(tokens, &device), true, Some(&mut states));
        (self.pool(self.final_layer_norm.forward(hidden), tokens), states)
    }

    fn pool(&self, hidden: Tensor<3>, tokens: &TokenBatch) -> Tensor<2> {
        let [batch, length, width] = hidden.dims();
        let rows: Vec<i64> = tokens.eot_positions.iter().enumerate().map(|(b, &p)| (b * length + p) as i64).collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [batch]), &hidden.device());
        hidden.reshape([batch * length, width]).select(0, rows)
    }
}
