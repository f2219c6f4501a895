//! Pretraining the mini CLIP: contrastive steps on a batch of the shapes world make the loss fall, and the result
//! saves and loads as a Hugging Face checkpoint.

mod common;

use advclip::pretrain::{ContrastiveModel, PretrainConfig, Pretrainer, mini_clip_config, synth_batch};
use advclip::tokenizer::Tokenizer;
use common::*;

#[test]
fn a_few_contrastive_steps_lower_the_loss() {
    let device = test_device().autodiff();
    device.seed(3);
    let config = mini_clip_config();
    let steps = 40;
    let batch = 16;
    let mut trainer = Pretrainer::new(
        ContrastiveModel::new(&config, &device),
        PretrainConfig { batch_size: batch, learning_rate: 1e-3, warmup_steps: 5, steps, ..Default::default() },
    );
    let tokenizer = Tokenizer::new();
    let mut losses = Vec::new();
    for _ in 0..steps {
        // The same 16 scenes every step: memorising them must lower the loss quickly (fresh scenes need hundreds of
        // steps before a from-scratch CLIP leaves the chance plateau).
        let (pixels, tokens) = synth_batch(&config, &tokenizer, 11, 0, batch, 1.0, &device).unwrap();
        losses.push(values(trainer.step(pixels, &tokens))[0]);
    }
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[steps - 5..].iter().sum::<f32>() / 5.0;
    eprintln!("contrastive loss: first 5 steps {first:.3}, last 5 steps {last:.3} (chance ln 16 = 2.773)");
    assert!((first - 16f32.ln()).abs() < 0.3, "an untrained model starts near chance: {first}");
    assert!(last < first - 0.3, "the loss did not fall: {losses:?}");

    let clip = trainer.model.into_clip().unwrap();
    let bytes = advclip::model::save_clip_safetensors(&clip, true).unwrap();
    assert!(bytes.len() < 10 << 20, "the mini model must stay under 10 MB in f16: {} bytes", bytes.len());
    let loaded = advclip::model::load_clip_from_bytes(bytes, Some(&config.to_hf_json()), "mini", &device).unwrap();
    assert_eq!(loaded.config(), &config);
}
