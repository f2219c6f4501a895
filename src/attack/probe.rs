//! The authors' downstream-head protocol: an MLP probe trained on frozen clean CLIP features, then tested on patched
//! images.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, decay::WeightDecayConfig};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::rng::SeededRng;
use crate::zeroshot::argmax;

/// fc d->d, ReLU, dropout 0.2, fc d->d, ReLU, fc d->C.
#[derive(Module, Debug)]
pub struct MlpProbe {
    pub fc1: Linear,
    pub fc2: Linear,
    pub head: Linear,
    pub dropout: Dropout,
}

impl MlpProbe {
    pub fn new(dim: usize, classes: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(dim, dim).init(device),
            fc2: LinearConfig::new(dim, dim).init(device),
            head: LinearConfig::new(dim, classes).init(device),
            dropout: DropoutConfig::new(0.2).init(),
        }
    }

    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let x = self.dropout.forward(relu(self.fc1.forward(features)));
        self.head.forward(relu(self.fc2.forward(x)))
    }
}

/// Probe accuracy on clean and patched test features, and how many predictions the patch changed.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeMetrics {
    pub train_images: usize,
    pub test_images: usize,
    pub clean_accuracy: f64,
    pub patched_accuracy: f64,
    pub relative_decline: f64,
    pub fooling_rate: f64,
}

/// Trains the probe on `train` (features [n, d] row-major, labels) with the authors' settings (Adam 5e-3, weight
/// decay 8e-4, learning rate x0.96 per epoch, 20 epochs, batch 32) and tests it on clean and patched test features.
/// `device` must be an autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn mlp_probe(
    train: &[f32],
    train_labels: &[usize],
    test_clean: &[f32],
    test_patched: &[f32],
    test_labels: &[usize],
    dim: usize,
    classes: usize,
    seed: u64,
    device: &Device,
) -> ProbeMetrics {
    device.seed(seed);
    let mut probe = MlpProbe::new(dim, classes, device);
    let mut optim = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(8e-4))).init();
    let n = train_labels.len();
    let mut lr = 5e-3;
    for epoch in 0..20 {
        let order = SeededRng::new(seed, &format!("probe epoch {epoch}")).permutation(n);
        for batch in order.chunks(32) {
            let x: Vec<f32> = batch.iter().flat_map(|&i| train[i * dim..(i + 1) * dim].iter().copied()).collect();
            let y: Vec<i64> = batch.iter().map(|&i| train_labels[i] as i64).collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [batch.len(), dim]), device);
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch.len()]), device);
            let logp = log_softmax(probe.forward(x), 1);
            let loss = logp.gather(1, y.unsqueeze_dim(1)).mean().neg();
            let grads = GradientsParams::from_grads(loss.backward(), &probe);
            probe = optim.step(lr, probe, grads);
        }
        lr *= 0.96;
    }
    let probe = probe.valid();
    let predict = |features: &[f32]| -> Vec<usize> {
        let rows = features.len() / dim;
        if rows == 0 {
            return vec![];
        }
        let x =
            Tensor::<2>::from_data(TensorData::new(features.to_vec(), [rows, dim]), &device.clone().without_autodiff());
        let logits: Vec<f32> = probe.forward(x).into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
        logits.chunks(classes).map(argmax).collect()
    };
    let clean = predict(test_clean);
    let patched = predict(test_patched);
    let m = super::metrics::zero_shot_metrics(test_labels, &clean, &patched, None);
    ProbeMetrics {
        train_images: n,
        test_images: m.images,
        clean_accuracy: m.clean_accuracy,
        patched_accuracy: m.patched_accuracy,
        relative_decline: super::metrics::relative_drop(m.clean_accuracy, m.patched_accuracy),
        fooling_rate: m.fooling_rate,
    }
}
