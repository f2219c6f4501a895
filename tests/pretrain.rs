//! Pretraining the mini CLIP: contrastive steps on a batch of the shapes world make the loss fall, and the result
//! saves and loads as a Hugging Face checkpoint.

mod common;

use advclip::pretrain::{ContrastiveModel, PretrainConfig, Pretrainer, mini_clip_config, synth_batch};
use advclip::tokenizer::Tokenizer;
use common::*;
use std::path::PathBuf;

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
        let (pixels, tokens) = synth_batch(&config, &tokenizer, 11, 0, batch, 1.0, 0.0, &device).unwrap();
        losses.push(values(trainer.step(pixels, &tokens))[0]);
    }
    // Only the first loss is the untrained model's: after it the optimiser is already at work, and how fast the
    // first steps leave chance varies with the CPU's summation order (CI saw a mean over steps 1-5 of 2.40, this
    // machine 2.97).
    let first = losses[0];
    let last: f32 = losses[steps - 5..].iter().sum::<f32>() / 5.0;
    eprintln!("contrastive loss: step 1 {first:.3}, last 5 steps {last:.3} (chance ln 16 = 2.773): {losses:?}");
    // Random features under CLIP's logit scale (14.3) spread the logits, so the untrained loss sits at or a little
    // above chance (3.17 here), never well below it.
    assert!(first > 16f32.ln() - 0.3, "an untrained model cannot beat chance: {first}");
    assert!(last < 16f32.ln() - 1.0 && last < first - 1.0, "the loss did not fall well below chance: {losses:?}");

    let clip = trainer.model.into_clip().unwrap();
    let bytes = advclip::model::save_clip_safetensors(&clip, true).unwrap();
    assert!(bytes.len() < 10 << 20, "the mini model must stay under 10 MB in f16: {} bytes", bytes.len());
    let loaded = advclip::model::load_clip_from_bytes(bytes, Some(&config.to_hf_json()), "mini", &device).unwrap();
    assert_eq!(loaded.config(), &config);
}

/// `advclip pretrain --init` fine-tunes the given model rather than a fresh one: stopped before its first step it
/// writes back exactly the weights it was given (the bundled model is f16, so the round trip is lossless). A
/// resumed run must keep its --augment and --init, and a model of another shape is refused with a message.
#[test]
fn fine_tuning_starts_from_the_given_model_and_resumes_only_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let bundled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mini-clip");
    let out = dir.path().join("ft");
    let (bundled_s, out_s) = (bundled.to_str().unwrap(), out.to_str().unwrap());
    let base = ["pretrain", "--out", out_s, "--init", bundled_s, "--steps", "3", "--batch", "4", "--lr", "1e-4"];
    ok(advclip(&[&base[..], &["--augment", "1", "--stop-at", "0"]].concat()));
    let scene = advclip::shapes::render_scene(64, 5, 0, advclip::shapes::Renderer::Standard).image;
    let device = test_device();
    let features = |dir: &std::path::Path| {
        let clip = advclip::model::load_clip(dir, &device).unwrap();
        let pixels = advclip::preprocess::preprocess(&scene, 64);
        values(clip.image_features(advclip::embed::pixel_batch(&[pixels], 64, &device).unwrap()))
    };
    let (given, written) = (features(&bundled), features(&out));
    assert_eq!(given, written, "stopped at step 0, the fine-tune must write back the initial weights");

    // Two augmented steps from the checkpoint, then a resume that changes --augment is refused.
    ok(advclip(&[&base[..], &["--augment", "1", "--stop-at", "2", "--resume"]].concat()));
    assert_ne!(features(&out), given, "two steps changed the weights");
    let refused = advclip(&[&base[..], &["--augment", "0.5", "--resume"]].concat());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("other settings"));

    let other = fixture("tiny");
    let refused = advclip(&["pretrain", "--out", out_s, "--init", other.to_str().unwrap(), "--steps", "1"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("mini CLIP of the bundled shape"), "{message}");
    let bad_share = advclip(&[&base[..], &["--augment", "1.5"]].concat());
    assert!(String::from_utf8_lossy(&bad_share.stderr).contains("between 0 and 1"));
}
