//! The bundled mini CLIP, its two patches and `advclip demo` on scenes no training ever used: the numbers the README
//! reports, pinned so that a regression fails. Issue 4's targets are 90 % top-1, 80 % on the alternate renderer (0.817
//! here, 0.803-0.831 on 2360 other scenes; README), the AdvCLIP patch to 20 % or less, and 80 % targeted success.

mod common;

use std::path::PathBuf;

use advclip::attack::patch_file::load_patch;
use advclip::demo::UNSEEN_SEED;
use advclip::model::load_clip;
use advclip::shapes::{COLOURS, Renderer, class_names, render_scene};
use advclip::tokenizer::Tokenizer;
use advclip::zeroshot::{DEFAULT_TEMPLATE, ZeroShotClassifier, argmax};
use common::*;

const SCENES: u64 = 180;

fn asset(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets").join(path)
}

/// True classes and top-1 predictions of the mini model for unseen scenes, optionally wearing a patch at its
/// sidecar's placement.
fn predict(renderer: Renderer, patch: Option<&str>) -> (Vec<usize>, Vec<usize>) {
    predict_with(&class_names(), renderer, patch)
}

/// `predict` against any label list (the truth is still the scene's 36-class index).
fn predict_with(labels: &[String], renderer: Renderer, patch: Option<&str>) -> (Vec<usize>, Vec<usize>) {
    let device = test_device();
    let model = load_clip(&asset("mini-clip"), &device).unwrap();
    let head = ZeroShotClassifier::new(&model, &Tokenizer::new(), labels, &[DEFAULT_TEMPLATE.to_string()]).unwrap();
    let scenes: Vec<_> = (0..SCENES).map(|i| render_scene(64, UNSEEN_SEED + 77, i, renderer)).collect();
    let patch = patch.map(|p| load_patch(&asset(p)).unwrap());
    let images: Vec<image::RgbImage> = scenes
        .iter()
        .map(|s| match &patch {
            Some((pixels, sidecar)) => advclip::attack::placement::paste_on_image(&s.image, pixels, &sidecar.placement),
            None => s.image.clone(),
        })
        .collect();
    let probs = values(head.probabilities(advclip::embed::embed_images(&model, &images, 60, &device, |_| {}).unwrap()));
    (scenes.iter().map(|s| s.class).collect(), probs.chunks(labels.len()).map(argmax).collect())
}

/// Scenes a golden count may move by. The model, patches and scenes are fixed and inference is deterministic, but
/// the CPU's float kernels differ between machines (AVX2, AVX-512), which can tip a near-tie scene either way.
const SCENE_TOLERANCE: usize = 2;

/// A share of the `SCENES` scenes equals its golden count within `tolerance` scenes, in either direction: a change
/// for the better is as much news as one for the worse.
#[track_caller]
fn golden(what: &str, share: f64, count: usize, tolerance: usize) {
    let got = (share * SCENES as f64).round() as usize;
    assert!(got.abs_diff(count) <= tolerance, "{what}: {got}/{SCENES}, golden {count} (within {tolerance})");
}

fn share(hits: impl Iterator<Item = bool>) -> f64 {
    let v: Vec<bool> = hits.collect();
    v.iter().filter(|h| **h).count() as f64 / v.len() as f64
}

/// Top-1 accuracy and the share of predictions with the right colour (classes are colour-major, 6 shapes each).
fn accuracy(truth: &[usize], predicted: &[usize]) -> (f64, f64) {
    let pairs = || truth.iter().zip(predicted);
    (share(pairs().map(|(t, p)| t == p)), share(pairs().map(|(t, p)| t / 6 == p / 6)))
}

#[test]
fn mini_clip_classifies_unseen_scenes() {
    let (truth, predicted) = predict(Renderer::Standard, None);
    let (top1, colour) = accuracy(&truth, &predicted);
    eprintln!("mini CLIP on {SCENES} unseen scenes: top-1 {top1:.3} (chance 0.028), colour {colour:.3}");
    // Golden: 172/180 top-1 (0.926-0.936 on 2360 other unseen scenes, README) and 180/180 colour.
    golden("top-1", top1, 172, SCENE_TOLERANCE);
    golden("colour", colour, 180, SCENE_TOLERANCE);
}

#[test]
fn mini_clip_on_a_renderer_it_never_saw() {
    let (truth, predicted) = predict(Renderer::Alternate, None);
    let (top1, colour) = accuracy(&truth, &predicted);
    eprintln!("mini CLIP on {SCENES} unseen scenes, alternate renderer: top-1 {top1:.3}, colour {colour:.3}");
    // Golden: 147/180 top-1 (0.803-0.831 on 2360 other unseen scenes, README; issue 4 asked for 0.80), 179/180
    // colour.
    golden("top-1", top1, 147, SCENE_TOLERANCE);
    golden("colour", colour, 179, SCENE_TOLERANCE);
}

#[test]
fn the_bundled_advclip_patch_breaks_zero_shot() {
    let (truth, clean) = predict(Renderer::Standard, None);
    let (_, patched) = predict(Renderer::Standard, Some("patches/advclip.png"));
    let (top1, colour) = accuracy(&truth, &patched);
    let fooled = share(clean.iter().zip(&patched).map(|(c, p)| c != p));
    eprintln!("with the 3 % AdvCLIP patch: top-1 {top1:.3}, colour {colour:.3}, fooling rate {fooled:.3}");
    // Golden: top-1 15/180 (from 172), 165/180 changed; issue 4 asked for a top-1 of 0.20 or less.
    golden("patched top-1", top1, 15, SCENE_TOLERANCE);
    golden("fooling rate", fooled, 165, SCENE_TOLERANCE);
}

#[test]
fn the_bundled_targeted_patch_pulls_toward_its_target() {
    let (_, predicted) = predict(Renderer::Standard, Some("patches/targeted-green-star.png"));
    let target = class_names().iter().position(|l| l == "green star").unwrap();
    let success = share(predicted.iter().map(|p| *p == target));
    eprintln!("targeted success toward \"green star\" (14 % patch, bottom right, trained there): {success:.3}");
    // Golden: 180/180 (chance: 1/36, and 1/6 of the scenes are green); issue 4 asked for 0.80.
    golden("targeted success", success, 180, SCENE_TOLERANCE);
}

/// Issue 16's printable patch: trained for any spot (random position, size, angle and tilt, printed and seen through
/// a camera), measured the way `advclip eval --placement random` measures it, through the CLI a presenter runs: on
/// each unseen scene a fresh seeded position, side (0.8-1.2x) and angle (up to 22.5 degrees), with the fixed-spot
/// number beside it.
#[test]
fn the_bundled_printable_patch_works_anywhere() {
    let work = tempfile::tempdir().unwrap();
    let scenes = work.path().join("unseen");
    let seed = (UNSEEN_SEED + 77).to_string();
    ok(advclip(&["synth", "--out", scenes.to_str().unwrap(), "--count", &SCENES.to_string(), "--seed", &seed]));
    let patch = asset("patches/printable-red-cross.png");
    let (_, sidecar) = load_patch(&patch).unwrap();
    assert_eq!(sidecar.trained_spot, advclip::attack::targeted::TrainedSpot::Random);
    assert!(sidecar.area_fraction <= 0.10, "issue 16 allows at most 10 % of the image: {}", sidecar.area_fraction);
    let report = ok(advclip(&[
        "eval",
        "--weights",
        asset("mini-clip").to_str().unwrap(),
        "--data",
        scenes.to_str().unwrap(),
        "--patch",
        patch.to_str().unwrap(),
        "--placement",
        "random",
        "--seed",
        "1",
        "--json",
    ]))
    .stdout;
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let at_spot = report["targeted_success_rate"].as_f64().unwrap();
    let anywhere = report["anywhere"]["targeted_success_rate"].as_f64().unwrap();
    eprintln!(
        "printable \"red cross\" patch ({:.1} %): success {anywhere:.3} anywhere, {at_spot:.3} at its sidecar's spot",
        100.0 * sidecar.area_fraction
    );
    assert_eq!(report["anywhere"]["images"], SCENES);
    // Issue 16 asks for 90 % anywhere at no more than 10 % of the area (chance: 1/36).
    assert!(anywhere >= 0.90, "success anywhere {anywhere:.3}, below issue 16's 0.90");
    // Golden: 169/180 anywhere and 165/180 at the spot (on 1000 other unseen scenes, seed 1000444: 89.3 % and 85.6 %;
    // README).
    golden("success anywhere", anywhere, 169, SCENE_TOLERANCE);
    golden("success at its spot", at_spot, 165, SCENE_TOLERANCE);
}

fn colour_labels() -> Vec<String> {
    COLOURS.iter().map(|c| c.to_string()).collect()
}

/// AdvCLIP's claim is a downstream-agnostic patch: the bundled one was trained on the 36-class world's captions and
/// prompts, and is tested here on another downstream task, naming the colour alone, which the model does well.
#[test]
fn the_bundled_advclip_patch_breaks_a_task_it_was_not_trained_for() {
    let (truth, clean) = predict_with(&colour_labels(), Renderer::Standard, None);
    let (_, patched) = predict_with(&colour_labels(), Renderer::Standard, Some("patches/advclip.png"));
    let clean_accuracy = share(truth.iter().zip(&clean).map(|(t, p)| t / 6 == *p));
    let patched_accuracy = share(truth.iter().zip(&patched).map(|(t, p)| t / 6 == *p));
    let fooled = share(clean.iter().zip(&patched).map(|(c, p)| c != p));
    eprintln!(
        "colour naming, {SCENES} unseen scenes: clean {clean_accuracy:.3}, 3 % AdvCLIP patch {patched_accuracy:.3}, fooling rate {fooled:.3}"
    );
    // Golden: 180/180 clean, 38/180 patched, 142/180 changed.
    golden("clean", clean_accuracy, 180, SCENE_TOLERANCE);
    golden("patched", patched_accuracy, 38, SCENE_TOLERANCE);
    golden("fooling rate", fooled, 142, SCENE_TOLERANCE);
}

/// Writes scenes `0..count` of `seed` as an ImageFolder sorted by colour alone (`<root>/green/...`).
fn colour_folder(root: &std::path::Path, seed: u64, count: u64) -> PathBuf {
    for i in 0..count {
        let scene = render_scene(64, seed, i, Renderer::Standard);
        let dir = root.join(COLOURS[scene.class / 6]);
        std::fs::create_dir_all(&dir).unwrap();
        scene.image.save(dir.join(format!("{i:04}.png"))).unwrap();
    }
    root.to_path_buf()
}

/// Issue 3's end-to-end check of targeted mode, through the CLI a user runs: train a patch toward "green" for a
/// bounded number of steps on the bundled model, then evaluate it on unseen scenes. Colour names are the task here
/// so that the check rests on what the model gets right on every scene (colour, 100 %), not on its shape errors.
#[test]
fn targeted_training_reaches_its_target_on_unseen_scenes() {
    let work = tempfile::tempdir().unwrap();
    let train = colour_folder(&work.path().join("train"), 9, 1600);
    let unseen = colour_folder(&work.path().join("unseen"), UNSEEN_SEED + 77, SCENES);
    let patch = work.path().join("green.png");
    let labels = colour_labels().join(",");
    let run = |args: &[&str]| ok(advclip(args)).stdout;
    let weights = asset("mini-clip");
    let weights = weights.to_str().unwrap();
    run(&[
        "train",
        "--weights",
        weights,
        "--data",
        train.to_str().unwrap(),
        "--labels",
        &labels,
        "--mode",
        "targeted",
        "--target",
        "green",
        "--area",
        "0.12",
        "--steps",
        "200",
        "--batch",
        "16",
        "--seed",
        "0",
        "--out",
        patch.to_str().unwrap(),
    ]);
    let report = run(&[
        "eval",
        "--weights",
        weights,
        "--data",
        unseen.to_str().unwrap(),
        "--labels",
        &labels,
        "--patch",
        patch.to_str().unwrap(),
        "--placement",
        "random",
        "--seed",
        "5",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let success = report["targeted_success_rate"].as_f64().unwrap();
    let clean = report["clean_accuracy"].as_f64().unwrap();
    let anywhere = &report["anywhere"];
    let success_anywhere = anywhere["targeted_success_rate"].as_f64().unwrap();
    eprintln!(
        "targeted \"green\" patch (12 %, 200 steps) on {SCENES} unseen scenes: success {success:.3} at its spot, \
         {success_anywhere:.3} anywhere, clean {clean:.3}"
    );
    assert_eq!(anywhere["images"], SCENES, "every scene is measured anywhere too");
    assert_eq!(anywhere["seed"], 5);
    assert_eq!(anywhere["clean_accuracy"].as_f64(), Some(clean), "the clean images do not depend on the spot");
    // Golden: 122/180 on target at its spot and 119/180 anywhere since each image of a training step gets its own
    // place and camera (126 and 88 with one draw per step; 93 and 99 before the slight perspective; 89 at the spot
    // before the camera effects; 0.617 on the model before its second fine-tune); without a patch 1/6 of the scenes
    // are green (clean 180/180). Two hundred training steps amplify kernel differences between CPUs more than
    // inference does, hence the wider band.
    golden("clean", clean, 180, SCENE_TOLERANCE);
    golden("targeted success", success, 122, 9);
    golden("targeted success anywhere", success_anywhere, 119, 9);
}

#[test]
fn the_demo_runs_offline_on_the_bundled_model() {
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_advclip"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--count", "24", "--json", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let fooling = report["fooling_rate"].as_f64().unwrap();
    let clean = report["clean_accuracy"].as_f64().unwrap();
    let patched = report["patched_accuracy"].as_f64().unwrap();
    eprintln!("demo on 24 unseen scenes: clean {clean:.3}, patched {patched:.3}, fooling rate {fooling:.3}");
    assert_eq!(report["rows"].as_array().unwrap().len(), 24);
    assert!(fooling >= 0.6, "{report}");
    assert!(patched <= clean, "{report}");
    assert!(out.path().join("side_by_side.png").is_file() && out.path().join("23_patched.png").is_file());
}
