//! The attack's losses, gradients, patch pasting and Adam steps against the PyTorch reference (tests/fixtures/attack).

mod common;

use std::collections::HashMap;

use advclip::attack::{self, PatchPlacement, TargetedConfig, TargetedPatchTrainer};
use advclip::model::load_clip;
use advclip::tokenizer::Tokenizer;
use advclip::zeroshot::ZeroShotClassifier;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use common::*;

fn reference() -> HashMap<String, RefTensor> {
    read_reference("attack/reference.safetensors")
}

fn tensor<const D: usize>(r: &RefTensor, device: &Device) -> Tensor<D> {
    let shape: [usize; D] = r.shape.clone().try_into().unwrap();
    Tensor::from_data(TensorData::new(r.values.clone(), shape), device)
}

/// |a - b| <= atol + rtol * |b| everywhere.
fn assert_allclose(what: &str, actual: &[f32], expected: &[f32], atol: f32, rtol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let worst = actual.iter().zip(expected).map(|(a, b)| (a - b).abs() - rtol * b.abs()).fold(f32::MIN, f32::max);
    assert!(worst <= atol, "{what}: off by {worst:e} beyond rtol {rtol:e}");
    eprintln!("{what}: max abs diff {:.2e}", max_abs_diff(actual, expected));
}

#[test]
fn losses_and_their_gradients_match_pytorch() {
    let device = test_device().autodiff();
    let r = reference();
    let e_c = tensor::<2>(&r["e_c"], &device);
    let e_t = tensor::<2>(&r["e_t"], &device);
    let scalar = |t: Tensor<1>| values(t);

    let e_a = tensor::<2>(&r["e_a"], &device).require_grad();
    assert_allclose(
        "info_nce_ca",
        &scalar(attack::info_nce(e_c.clone(), e_a.clone(), 0.1)),
        &r["info_nce_ca"].values,
        1e-5,
        1e-4,
    );
    assert_allclose(
        "info_nce_at",
        &scalar(attack::info_nce(e_a.clone(), e_t.clone(), 0.1)),
        &r["info_nce_at"].values,
        1e-5,
        1e-4,
    );
    assert_allclose("graph_c", &values(attack::topology_graph(e_c.clone())), &r["graph_c"].values, 1e-6, 1e-4);
    assert_allclose("graph_a", &values(attack::topology_graph(e_a.clone())), &r["graph_a"].values, 1e-6, 1e-4);
    assert_allclose(
        "topo_ca",
        &scalar(attack::topology_deviation(e_c.clone(), e_a.clone())),
        &r["topo_ca"].values,
        1e-5,
        1e-4,
    );
    assert_allclose(
        "topo_at",
        &scalar(attack::topology_deviation(e_a.clone(), e_t.clone())),
        &r["topo_at"].values,
        1e-5,
        1e-4,
    );

    let l_adv = attack::embedding_deviation_loss(e_c.clone(), e_a.clone(), Some(e_t.clone()), 5.0);
    assert_allclose("l_adv", &scalar(l_adv.clone()), &r["l_adv"].values, 1e-5, 1e-4);
    let grad = e_a.grad(&l_adv.backward()).unwrap();
    assert_allclose("d l_adv / d e_a", &values(grad), &r["grad_l_adv_e_a"].values, 1e-5, 1e-4);

    let e_a = tensor::<2>(&r["e_a"], &device).require_grad();
    let l_topo = attack::topology_deviation_loss(e_c, e_a.clone(), Some(e_t), 5.0);
    assert_allclose("l_topo", &scalar(l_topo.clone()), &r["l_topo"].values, 1e-5, 1e-4);
    let grad = e_a.grad(&l_topo.backward()).unwrap();
    assert_allclose("d l_topo / d e_a", &values(grad), &r["grad_l_topo_e_a"].values, 1e-5, 1e-4);

    let d = tensor::<2>(&r["d_probs"], &device);
    assert_allclose(
        "bce ones",
        &scalar(attack::losses::binary_cross_entropy(d.clone(), 1.0)),
        &r["bce_ones"].values,
        1e-6,
        1e-5,
    );
    assert_allclose(
        "bce zeros",
        &scalar(attack::losses::binary_cross_entropy(d, 0.0)),
        &r["bce_zeros"].values,
        1e-6,
        1e-5,
    );
}

#[test]
fn patch_gradient_and_adam_steps_through_clip_match_pytorch() {
    let device = test_device().autodiff();
    let r = reference();
    let model = load_clip(&fixture("tiny"), &device).unwrap().no_grad();
    let placement = PatchPlacement::advclip(32, 0.03).unwrap();
    assert_eq!((placement.size, placement.top, placement.left), (5, 25, 25));
    let images = tensor::<4>(&r["images"], &device);
    let labels: Vec<String> = ["cat", "dog", "red square"].map(String::from).to_vec();
    let head = ZeroShotClassifier::new(&model, &Tokenizer::new(), &labels, &["a photo of a {}.".to_string()]).unwrap();
    assert_allclose("label embeddings", &values(head.label_embeddings()), &r["label_embeds"].values, 1e-5, 1e-4);

    // The gradient of the targeted loss w.r.t. the patch pixels, end to end through the image tower.
    let patch0 = tensor::<3>(&r["patch0"], &device);
    let patched = attack::paste_patch(images.clone(), patch0.clone(), &placement);
    assert_allclose("patched images", &values(patched), &r["patched_images"].values, 0.0, 0.0);
    let mut trainer =
        TargetedPatchTrainer::new(patch0.clone(), head.label_embeddings(), model.logit_scale, TargetedConfig::new(2));
    let p = patch0.clone().require_grad();
    let logits = attack::paste_patch(images.clone(), p.clone(), &placement);
    let logits = model
        .encode_image(attack::normalize_pixels(logits))
        .matmul(head.label_embeddings().transpose())
        .mul_scalar(model.logit_scale.exp());
    let loss = trainer.loss(logits);
    assert_allclose("loss0", &values(loss.clone()), &r["loss0"].values, 1e-5, 1e-4);
    assert_allclose("grad0", &values(p.grad(&loss.backward()).unwrap()), &r["grad0"].values, 1e-6, 1e-3);

    // Three Adam steps (lr 0.05, betas 0.5/0.999), each followed by the [0, 1] clamp.
    for step in 0..3 {
        let out = trainer.step(&model, images.clone(), &attack::placement::Paste::Fixed(placement), None, 0.05);
        assert_allclose(
            &format!("loss at step {step}"),
            &values(out.loss),
            &r[&format!("loss_step{step}")].values,
            1e-5,
            1e-4,
        );
        assert_allclose(
            &format!("patch after step {}", step + 1),
            &values(trainer.patch()),
            &r[&format!("patch_step{}", step + 1)].values,
            1e-5,
            1e-4,
        );
    }

    // The AdvCLIP objective with the patch as the variable: 10 * L_adv + L_topo + MSE, and its gradient.
    let tokenizer = Tokenizer::new();
    let captions: Vec<String> =
        ["a photo of a cat", "a diagram of a red square", "two dogs playing in the snow at night", "a photo of a dog"]
            .map(String::from)
            .to_vec();
    let tokens = advclip::embed::tokenize_texts(&model, &tokenizer, &captions).unwrap();
    let e_t = model.text_features(&tokens);
    let e_c = model.image_features(attack::normalize_pixels(images.clone()));
    let p = patch0.require_grad();
    let adv = attack::paste_patch(images.clone(), p.clone(), &placement);
    let e_a = model.image_features(attack::normalize_pixels(adv.clone()));
    let total = attack::embedding_deviation_loss(e_c.clone(), e_a.clone(), Some(e_t.clone()), 5.0).mul_scalar(10.0)
        + attack::topology_deviation_loss(e_c, e_a, Some(e_t), 5.0)
        + attack::losses::mse(adv, images);
    assert_allclose("advclip total", &values(total.clone()), &r["advclip_total0"].values, 1e-4, 1e-4);
    assert_allclose(
        "advclip grad",
        &values(p.grad(&total.backward()).unwrap()),
        &r["advclip_grad0"].values,
        1e-5,
        1e-3,
    );
}

/// A step's expectation over transformations, a draw per image (placement's batched paste, the camera's per-image
/// print, blur and noise), on the test device equals the same on the host CPU: the training path of a patch for any
/// spot on every backend (the CPU is the reference here, proven against hand-computed values in its unit tests).
#[test]
fn a_draw_per_image_pastes_and_photographs_alike_on_every_device() {
    use advclip::attack::camera::{CameraDraws, CameraRanges};
    use advclip::attack::placement::{Paste, PatchTransform, TransformRanges};
    let run = |device: &Device| {
        let mut rng = advclip::rng::SeededRng::new(11, "device draws");
        let ranges = TransformRanges::around_area(0.1).with_tilt(0.1);
        let transforms: Vec<_> = (0..4).map(|_| PatchTransform::sample(32, &ranges, &mut rng)).collect();
        let camera = CameraDraws::sample(4, &CameraRanges { max_blur: 1.5, ..CameraRanges::default() }, &mut rng);
        let images = Tensor::<4>::from_data(
            TensorData::new((0..4 * 3 * 32 * 32).map(|i| (i % 97) as f32 / 97.0).collect::<Vec<_>>(), [4, 3, 32, 32]),
            device,
        );
        let patch = Tensor::<3>::from_data(
            TensorData::new((0..3 * 10 * 10).map(|i| (i % 13) as f32 / 13.0).collect::<Vec<_>>(), [3, 10, 10]),
            device,
        );
        let seen = camera.on_images(
            Paste::Transformed(transforms.clone()).apply_each(images.clone(), camera.on_patch(patch.clone())),
        );
        let anywhere = Paste::Transformed(transforms).apply(images, patch);
        (values(seen), values(anywhere))
    };
    let (seen, anywhere) = run(&test_device());
    let (cpu_seen, cpu_anywhere) = run(&Device::flex());
    assert_allclose("pasted, printed and photographed, a draw per image", &seen, &cpu_seen, 1e-5, 1e-5);
    assert_allclose("one patch pasted with a transform per image", &anywhere, &cpu_anywhere, 1e-5, 1e-5);
}
