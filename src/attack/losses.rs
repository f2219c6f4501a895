//! The AdvCLIP losses: InfoNCE embedding deviation, the batch topology graph and its deviation, GAN and reconstruction terms.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};

use crate::model::l2_normalize;

/// InfoNCE temperature of the paper's embedding loss.
pub const INFONCE_TEMPERATURE: f64 = 0.1;
/// Guards the logarithms of the fuzzy cross-entropy.
pub const TOPOLOGY_EPS: f64 = 1e-7;

/// The loss weights of the generator objective `gan*L_gan + alpha*L_adv + L_rec + delta*L_topo`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossWeights {
    /// Weight of the GAN term (1 in the paper; 0 also skips the discriminator).
    #[serde(default = "one")]
    pub gan: f64,
    /// Weight of the embedding (InfoNCE) term.
    pub alpha: f64,
    /// Weight of the image-text InfoNCE inside `L_adv` (0 when there are no captions).
    pub beta: f64,
    /// Weight of the image-text topology term inside `L_topo` (0 when there are no captions).
    pub gamma: f64,
    /// Weight of the topology term.
    pub delta: f64,
}

impl Default for LossWeights {
    /// The authors' values: alpha, beta, gamma, delta = 10, 5, 5, 1.
    fn default() -> Self {
        Self { gan: 1.0, alpha: 10.0, beta: 5.0, gamma: 5.0, delta: 1.0 }
    }
}

impl LossWeights {
    /// These weights with the given generator terms removed (weight 0): the paper's loss ablations.
    pub fn without(mut self, terms: &[LossTerm]) -> Self {
        for term in terms {
            match term {
                LossTerm::Embedding => self.alpha = 0.0,
                LossTerm::Topology => self.delta = 0.0,
                LossTerm::Gan => self.gan = 0.0,
            }
        }
        self
    }
}

fn one() -> f64 {
    1.0
}

/// A term of AdvCLIP's generator objective that an ablation run can leave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossTerm {
    /// The InfoNCE embedding deviation (`L_adv`).
    Embedding,
    /// The topology deviation (`L_topo`).
    Topology,
    /// The discriminator's realism term (`L_gan`); without it the discriminator is not trained either.
    Gan,
}

impl LossTerm {
    pub const ALL: [LossTerm; 3] = [LossTerm::Embedding, LossTerm::Topology, LossTerm::Gan];
}

fn identity_mask(n: usize, device: &Device) -> Tensor<2, Bool> {
    Tensor::from_data(TensorData::new((0..n * n).map(|i| i % n == i / n).collect::<Vec<bool>>(), [n, n]), device)
}

/// Cross-entropy of `norm(q) @ norm(k).T / tau` against the diagonal: row i's positive is k_i, the rest of the batch
/// are negatives. Mean over the batch, shape [1].
pub fn info_nce(q: Tensor<2>, k: Tensor<2>, tau: f64) -> Tensor<1> {
    let batch = q.dims()[0];
    let logits = l2_normalize(q).matmul(l2_normalize(k).transpose()).div_scalar(tau);
    let eye = identity_mask(batch, &logits.device()).float();
    (log_softmax(logits, 1) * eye).sum().neg().div_scalar(batch as f64)
}

/// The batch graph: cosine distances with UMAP-style local connectivity (each row shifted by its nearest
/// neighbour's distance), turned into row-stochastic similarities. [B, B].
pub fn topology_graph(embeddings: Tensor<2>) -> Tensor<2> {
    let e = l2_normalize(embeddings);
    let batch = e.dims()[0];
    let eye = identity_mask(batch, &e.device());
    let distance = e.clone().matmul(e.transpose()).neg().add_scalar(1.0);
    // The diagonal is kept out of the row minimum (3 exceeds any cosine distance), then zeroed.
    let distance = distance.mask_fill(eye.clone(), 3.0);
    let distance = distance.clone() - distance.min_dim(1);
    let distance = distance.mask_fill(eye, 0.0);
    let similarity = distance.neg().add_scalar(2.0).div_scalar(2.0);
    similarity.clone() / similarity.sum_dim(1)
}

/// UMAP's fuzzy cross-entropy of graph(b) against graph(a), summed over all B*B entries, shape [1].
pub fn topology_deviation(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let pa = topology_graph(a);
    let pb = topology_graph(b);
    let eps = TOPOLOGY_EPS;
    let attract = pb.clone() * (pb.clone().add_scalar(eps) / pa.clone().add_scalar(eps)).log();
    let one_minus = |p: Tensor<2>| p.neg().add_scalar(1.0);
    let repel = one_minus(pb.clone()) * (one_minus(pb).add_scalar(eps) / one_minus(pa).add_scalar(eps)).log();
    (attract + repel).sum()
}

/// `-InfoNCE(e_c, e_a) - beta * InfoNCE(e_a, e_t)`: minimising it pushes adversarial embeddings away from their
/// clean images and their captions.
pub fn embedding_deviation_loss(
    clean: Tensor<2>,
    adversarial: Tensor<2>,
    text: Option<Tensor<2>>,
    beta: f64,
) -> Tensor<1> {
    let image_term = info_nce(clean, adversarial.clone(), INFONCE_TEMPERATURE).neg();
    match text {
        Some(text) if beta != 0.0 => image_term - info_nce(adversarial, text, INFONCE_TEMPERATURE).mul_scalar(beta),
        _ => image_term,
    }
}

/// `-topo(e_c, e_a) - gamma * topo(e_a, e_t)`: minimising it tears the batch's neighbourhood structure apart.
pub fn topology_deviation_loss(
    clean: Tensor<2>,
    adversarial: Tensor<2>,
    text: Option<Tensor<2>>,
    gamma: f64,
) -> Tensor<1> {
    let image_term = topology_deviation(clean, adversarial.clone()).neg();
    match text {
        Some(text) if gamma != 0.0 => image_term - topology_deviation(adversarial, text).mul_scalar(gamma),
        _ => image_term,
    }
}

/// Binary cross-entropy of probabilities against a constant label, mean; logs clamped at -100 like PyTorch.
pub fn binary_cross_entropy(probs: Tensor<2>, label: f64) -> Tensor<1> {
    let log_p = probs.clone().log().clamp_min(-100.0);
    let log_not_p = probs.neg().add_scalar(1.0).log().clamp_min(-100.0);
    (log_p.mul_scalar(label) + log_not_p.mul_scalar(1.0 - label)).mean().neg()
}

/// Mean squared difference (the reconstruction term).
pub fn mse<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<1> {
    (a - b).powi_scalar(2).mean()
}
