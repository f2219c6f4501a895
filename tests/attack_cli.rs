//! `advclip train / eval / apply` end to end on the tiny model: checkpoints resume exactly, sidecars are complete,
//! and bad inputs get clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// An ImageFolder of 8 images in two classes, made from the fixture PNGs (flipped copies for variety).
fn image_folder(root: &Path) -> PathBuf {
    let data = root.join("data");
    let sources: Vec<PathBuf> = std::fs::read_dir(fixture("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    for (i, class) in ["cat", "dog"].iter().enumerate() {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for k in 0..4 {
            let img = image::open(&sources[(i * 4 + k) % sources.len()]).unwrap();
            let img = if k % 2 == 1 { img.fliph() } else { img };
            img.save(data.join(class).join(format!("{k}.png"))).unwrap();
        }
    }
    data
}

fn train(data: &Path, out: &Path, mode: &[&str], steps: usize, resume: bool) -> Output {
    train_until(data, out, mode, steps, None, resume)
}

/// `train`, ended early at `stop_at` when given (the learning-rate schedule still spans `steps`).
fn train_until(data: &Path, out: &Path, mode: &[&str], steps: usize, stop_at: Option<usize>, resume: bool) -> Output {
    let tiny = fixture("tiny");
    let steps = steps.to_string();
    let mut args = vec![
        "train",
        "--weights",
        tiny.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--batch",
        "4",
        "--steps",
        &steps,
        "--checkpoint-every",
        "2",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(mode);
    let stop_at = stop_at.map(|n| n.to_string());
    if let Some(n) = &stop_at {
        args.extend(["--stop-at", n.as_str()]);
    }
    if resume {
        args.push("--resume");
    }
    advclip(&args)
}

/// The sidecar written beside a patch PNG.
fn read_sidecar(png: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(png.with_extension("json")).unwrap()).unwrap()
}

/// A run that failed with one clear error naming `needle`, not a panic.
fn expect_error(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("panicked") && stderr.contains(needle),
        "expected an error with {needle:?}: {stderr}"
    );
}

fn check_resume_is_exact(mode: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path());
    let straight = dir.path().join("straight.png");
    ok(train(&data, &straight, mode, 6, false));
    // The same 6-step run killed twice (after steps 2 and 4: its checkpoint is all that survives), resumed each time.
    let interrupted = dir.path().join("interrupted.png");
    ok(train_until(&data, &interrupted, mode, 6, Some(2), false));
    std::fs::remove_file(&interrupted).unwrap();
    ok(train_until(&data, &interrupted, mode, 6, Some(4), true));
    std::fs::remove_file(&interrupted).unwrap();
    ok(train(&data, &interrupted, mode, 6, true));
    assert_eq!(
        std::fs::read(&straight).unwrap(),
        std::fs::read(&interrupted).unwrap(),
        "resumed patch differs from the uninterrupted one"
    );
    // The checkpoints' run state (step, position in the data, running rate, last losses) is the same; their tensors
    // are shown equal by the step after each resume, whose losses the sidecar records to the last bit. (Burn's
    // module and optimizer records do not serialise in a fixed order, so their bytes are not compared.)
    let state = |png: &std::path::Path| -> String {
        let bytes = std::fs::read(png.with_extension("ckpt")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        meta.metadata().as_ref().unwrap()["state"].clone()
    };
    assert_eq!(state(&straight), state(&interrupted), "resumed checkpoint state differs from the uninterrupted one");
    let sidecar = read_sidecar(&straight);
    // The whole sidecar, running rate and last losses included, survives the interruption.
    assert_eq!(sidecar, read_sidecar(&interrupted), "resumed sidecar differs from the uninterrupted one");
    for key in ["version", "mode", "model", "image_size", "area_fraction", "placement", "trained_spot", "seed", "steps"]
    {
        assert!(sidecar.get(key).is_some(), "sidecar lacks {key}: {sidecar}");
    }
    let rate = sidecar["training"]["rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate), "{sidecar}");
    assert_eq!(sidecar["steps"], 6);
    assert_eq!(sidecar["placement"]["size"], 5, "3 % of a 32 px image");
    let png = image::open(&straight).unwrap();
    assert_eq!((png.width(), png.height()), (5, 5));
    if mode.contains(&"targeted") {
        let expected = if mode.contains(&"fixed") { "fixed" } else { "random" };
        assert_eq!(sidecar["trained_spot"], expected, "{sidecar}");
    }
}

#[test]
fn targeted_training_resumes_exactly() {
    check_resume_is_exact(&["--mode", "targeted", "--target", "dog"]);
}

#[test]
fn targeted_training_at_a_fixed_placement_resumes_exactly() {
    check_resume_is_exact(&["--mode", "targeted", "--target", "dog", "--placement", "fixed"]);
}

#[test]
fn advclip_training_resumes_exactly() {
    check_resume_is_exact(&["--mode", "advclip"]);
}

#[test]
fn targeted_training_for_print_resumes_exactly() {
    check_resume_is_exact(&["--mode", "targeted", "--target", "dog", "--printability", "2"]);
}

/// Each pixel's distance to the nearest palette colour, averaged: the non-printability score, by hand from the PNG.
fn palette_distance(png: &Path, palette: &[[f32; 3]]) -> f32 {
    let image = image::open(png).unwrap().to_rgb8();
    let pixels = image.pixels().map(|p| p.0.map(|v| f32::from(v) / 255.0));
    let nearest = |p: [f32; 3]| {
        palette.iter().map(|c| (0..3).map(|i| (p[i] - c[i]).powi(2)).sum::<f32>().sqrt()).fold(f32::INFINITY, f32::min)
    };
    let (sum, count) = pixels.fold((0.0, 0), |(s, n), p| (s + nearest(p), n + 1));
    sum / count as f32
}

/// `--printability` pulls the patch's pixels toward the `--palette` colours (so far that it shows in three steps at a
/// high weight), and the sidecar records the weight and palette; bad weights and palettes are refused with reasons.
#[test]
fn targeted_training_for_print_moves_toward_the_palette_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path());
    let (plain, printable) = (dir.path().join("plain.png"), dir.path().join("printable.png"));
    let targeted = ["--mode", "targeted", "--target", "dog"];
    ok(train(&data, &plain, &targeted, 3, false));
    let print = [&targeted[..], &["--printability", "20", "--palette", "#1a1a1a,#e6e6e6"]].concat();
    ok(train(&data, &printable, &print, 3, false));
    let palette = [[26.0 / 255.0; 3], [230.0 / 255.0; 3]];
    let (before, after) = (palette_distance(&plain, &palette), palette_distance(&printable, &palette));
    assert!(after < before - 0.05, "distance to the palette: {before} without the term, {after} with it");
    let sidecar = read_sidecar(&printable);
    assert_eq!(sidecar["printability"]["weight"], 20.0, "{sidecar}");
    assert_eq!(sidecar["printability"]["palette"].as_array().map(Vec::len), Some(2), "{sidecar}");
    assert!(read_sidecar(&plain).get("printability").is_none());
    // The last step's score, taken before its update, is the PNG's distance within that one small step.
    let recorded = sidecar["training"]["losses"]["palette_distance"].as_f64().unwrap() as f32;
    assert!((recorded - after).abs() < 0.04, "recorded {recorded}, from the PNG {after}");
    assert!(read_sidecar(&plain)["training"]["losses"].get("palette_distance").is_none());

    let out = dir.path().join("refused.png");
    let fail = expect_error;
    fail(train(&data, &out, &[&targeted[..], &["--printability=-1"]].concat(), 1, false), "between 0 and 100");
    let bad_palette = [&targeted[..], &["--printability", "1", "--palette", "#zz0000"]].concat();
    fail(train(&data, &out, &bad_palette, 1, false), "six hex digits");
    fail(train(&data, &out, &[&targeted[..], &["--palette", "#ffffff"]].concat(), 1, false), "--printability");
    fail(train(&data, &out, &["--mode", "advclip", "--printability", "1"], 1, false), "targeted patches");
}

/// The paper's loss ablations: each run without a generator term trains its own patch (the objective changed) and
/// its sidecar says which terms it left out; leaving out all of them, or any in targeted mode, is refused.
#[test]
fn advclip_ablations_leave_a_term_out_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path());
    let full = dir.path().join("full.png");
    ok(train(&data, &full, &["--mode", "advclip"], 2, false));
    assert!(read_sidecar(&full).get("without").is_none(), "{}", read_sidecar(&full));
    for term in ["embedding", "topology", "gan"] {
        let ablated = dir.path().join(format!("without-{term}.png"));
        ok(train(&data, &ablated, &["--mode", "advclip", "--without", term], 2, false));
        let (all_terms, ablated) = (read_sidecar(&full), read_sidecar(&ablated));
        assert_eq!(ablated["without"], serde_json::json!([term]));
        // Two steps barely move the patch (8-bit PNGs may not show it); the objective's value shows the change.
        let generator = |s: &serde_json::Value| s["training"]["losses"]["generator"].as_f64().unwrap();
        assert!((generator(&all_terms) - generator(&ablated)).abs() > 1e-4, "without {term}: {all_terms} vs {ablated}");
        if term == "gan" {
            // No GAN term: the discriminator is not trained at all.
            assert_eq!(ablated["training"]["losses"]["discriminator"], 0.0, "{ablated}");
            assert_eq!(ablated["training"]["losses"]["gan"], 0.0, "{ablated}");
        }
    }
    let fail = expect_error;
    let out = dir.path().join("refused.png");
    fail(train(&data, &out, &["--mode", "advclip", "--without", "gan,embedding,topology"], 1, false), "at least one");
    fail(train(&data, &out, &["--mode", "targeted", "--target", "cat", "--without", "gan"], 1, false), "AdvCLIP runs");
    fail(train(&data, &out, &["--mode", "advclip", "--without", "reconstruction"], 1, false), "reconstruction");
}

#[test]
fn eval_reports_every_metric_and_apply_writes_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path());
    let patch = dir.path().join("p.png");
    ok(train(&data, &patch, &["--mode", "targeted", "--target", "dog"], 2, false));
    let tiny = fixture("tiny");
    let out = ok(advclip(&[
        "eval",
        "--weights",
        tiny.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--patch",
        patch.to_str().unwrap(),
        "--defence",
        "jpeg:75",
        "--defence",
        "blur:1",
        "--probe",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["clean_accuracy", "patched_accuracy", "fooling_rate", "targeted_success_rate"] {
        let v = json[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {json}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(json["images"], 8);
    assert_eq!(json["defences"].as_array().unwrap().len(), 2);
    assert_eq!(json["mlp_probe"]["test_images"], 4, "{json}");

    let applied = dir.path().join("applied");
    let image = fixture("images/landscape_301x217.png");
    ok(advclip(&[
        "apply",
        "--patch",
        patch.to_str().unwrap(),
        image.to_str().unwrap(),
        "--out",
        applied.to_str().unwrap(),
    ]));
    let before = image::open(&image).unwrap().to_rgb8();
    let after = image::open(applied.join("landscape_301x217.png")).unwrap().to_rgb8();
    assert_eq!(before.dimensions(), after.dimensions());
    let changed = before.pixels().zip(after.pixels()).filter(|(a, b)| a != b).count();
    // A 5/32 side patch on a 217 px short side covers about 34x34 pixels.
    assert!((500..2000).contains(&changed), "{changed} pixels changed");
}

/// `eval --per-image` lists every image read: its label, its clean top label (the one `classify` gives the image
/// alone), its patched ones and the draw that placed the patch, within the sampled ranges; the listing adds up to the
/// report's rates and is the same whatever the batch size. On the bundled mini CLIP and printable patch, whose
/// predictions differ from scene to scene and with the patch.
#[test]
fn eval_lists_each_image_with_its_draw() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("scenes");
    ok(advclip(&["synth", "--out", data.to_str().unwrap(), "--count", "24", "--seed", "4242"]));
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    let (weights, patch) = (assets.join("mini-clip"), assets.join("patches/printable-red-cross.png"));
    let (weights, data_arg, patch_arg) = (weights.to_str().unwrap(), data.to_str().unwrap(), patch.to_str().unwrap());
    let eval = |batch: &str, list: &Path| -> (serde_json::Value, Vec<serde_json::Value>) {
        let args = ["eval", "--weights", weights, "--data", data_arg, "--patch", patch_arg, "--placement", "random"];
        let list_arg = list.to_str().unwrap();
        let out =
            ok(advclip(&[&args[..], &["--seed", "5", "--batch", batch, "--per-image", list_arg, "--json"]].concat()));
        let rows = std::fs::read_to_string(list).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (serde_json::from_slice(&out.stdout).unwrap(), rows)
    };
    let (report, rows) = eval("16", &dir.path().join("all.jsonl"));
    assert_eq!(rows.len(), 24);

    let share = |f: &dyn Fn(&serde_json::Value) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / 24.0;
    let target = "red cross";
    assert_eq!(report["clean_accuracy"].as_f64().unwrap(), share(&|r| r["clean"] == r["label"]));
    assert_eq!(report["targeted_success_rate"].as_f64().unwrap(), share(&|r| r["patched"] == target));
    assert_eq!(report["anywhere"]["targeted_success_rate"].as_f64().unwrap(), share(&|r| r["anywhere"] == target));
    assert_eq!(report["anywhere"]["fooling_rate"].as_f64().unwrap(), share(&|r| r["anywhere"] != r["clean"]));

    let (_, sidecar) = advclip::attack::patch_file::load_patch(&patch).unwrap();
    let (side, size) = (sidecar.placement.size as f64, sidecar.placement.image_size as f64);
    let images: Vec<&str> = rows.iter().map(|r| r["image"].as_str().unwrap()).collect();
    let labels = folder_labels(&data);
    let classify = [&["classify", "--weights", weights, "--labels", &labels, "--json"][..], &images[..]].concat();
    let classified: serde_json::Value = serde_json::from_slice(&ok(advclip(&classify)).stdout).unwrap();
    for (row, alone) in rows.iter().zip(classified.as_array().unwrap()) {
        let image = Path::new(row["image"].as_str().unwrap());
        assert!(image.starts_with(&data) && image.is_file(), "{row}");
        let folder = image.parent().unwrap().file_name().unwrap().to_str().unwrap().replace('_', " ");
        assert_eq!(row["label"], folder.as_str(), "{row}");
        assert_eq!(alone["path"], row["image"]);
        assert_eq!(row["clean"], alone["top"], "{row} against {alone}");
        let draw = &row["draw"];
        let (s, angle) = (draw["side_px"].as_f64().unwrap(), draw["angle_degrees"].as_f64().unwrap());
        assert!(s >= 0.8 * side - 1e-9 && s <= 1.2 * side + 1e-9 && angle.abs() <= 22.5 + 1e-9, "{row}");
        let reach = s / 2.0 * (angle.to_radians().cos().abs() + angle.to_radians().sin().abs());
        for c in draw["center_px"].as_array().unwrap().iter().map(|c| c.as_f64().unwrap()) {
            assert!(c - reach >= -1e-9 && c + reach <= size + 1e-9, "the patch leaves the image: {row}");
        }
    }
    // The scenes are varied and the patch works: a listing that copied one column into another would show here.
    assert!(share(&|r| r["clean"] == r["label"]) > 0.5 && share(&|r| r["anywhere"] == target) > 0.5, "{rows:?}");
    let (_, in_fives) = eval("5", &dir.path().join("fives.jsonl"));
    assert_eq!(rows, in_fives, "the listing depends on the batch size");
    let nowhere = dir.path().join("missing/rows.jsonl");
    let args = ["eval", "--weights", weights, "--data", data_arg, "--per-image", nowhere.to_str().unwrap()];
    expect_error(advclip(&args), "--per-image needs a file path in an existing folder");
}

/// The class folders of an ImageFolder as zero-shot labels ("red_cross" -> "red cross"), in the order `eval` uses.
fn folder_labels(data: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_str().unwrap().replace('_', " "))
        .collect();
    names.sort();
    names.join(",")
}

#[test]
fn bad_training_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path());
    std::fs::write(data.join("cat/broken.png"), b"not a png").unwrap();
    let out = dir.path().join("p.png");
    // An unreadable image is skipped with a warning, not fatal.
    let run = ok(train(&data, &out, &["--mode", "targeted", "--target", "cat"], 3, false));
    let sidecar = read_sidecar(&out);
    // Counted once, however often the unreadable image comes round.
    assert_eq!(sidecar["training"]["skipped_images"], 1, "{sidecar}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("broken.png"));

    let fail = expect_error;
    fail(train(&data, &out, &["--mode", "targeted", "--target", "horse"], 2, false), "horse");
    fail(train(&data, &out, &["--mode", "targeted"], 2, false), "--target");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("cat")).unwrap();
    fail(train(&empty, &out, &["--mode", "advclip"], 2, false), "no images");
    // A checkpoint from other settings is refused, and kept.
    fail(train(&data, &out, &["--mode", "targeted", "--target", "dog"], 4, true), "other settings");
    let fixed = ["--mode", "targeted", "--target", "cat", "--placement", "fixed"];
    fail(train(&data, &out, &fixed, 4, true), "other settings");
    assert!(out.with_extension("ckpt").exists());
    fail(train(&data, &out, &["--mode", "advclip", "--placement", "fixed"], 2, false), "is for --mode targeted");
    // A patch named like its sidecar or its checkpoint would overwrite them: refused, nothing written.
    for name in ["p.json", "p.ckpt"] {
        let clash = dir.path().join("clash").join(name);
        fail(train(&data, &clash, &["--mode", "advclip"], 1, false), "name it *.png");
        assert!(
            !clash.parent().unwrap().exists() || std::fs::read_dir(clash.parent().unwrap()).unwrap().next().is_none()
        );
    }
    // A patch whose PNG does not match its sidecar.
    let wrong = dir.path().join("wrong.png");
    image::RgbImage::new(9, 9).save(&wrong).unwrap();
    std::fs::copy(out.with_extension("json"), wrong.with_extension("json")).unwrap();
    let tiny = fixture("tiny");
    fail(
        advclip(&[
            "eval",
            "--weights",
            tiny.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--patch",
            wrong.to_str().unwrap(),
        ]),
        "sidecar",
    );
}

#[test]
fn eval_on_captioned_images_reports_retrieval() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path());
    let patch = dir.path().join("p.png");
    ok(train(&data, &patch, &["--mode", "advclip"], 1, false));
    // The same images as an image + caption list.
    let captions = [
        "a photo of a cat",
        "a cat on grass",
        "a small cat",
        "a grey cat",
        "a dog",
        "a dog running",
        "a big dog",
        "a dog at night",
    ];
    let mut lines = String::new();
    for (i, caption) in captions.iter().enumerate() {
        let class = if i < 4 { "cat" } else { "dog" };
        lines += &format!("{{\"path\": \"data/{class}/{}.png\", \"caption\": \"{caption}\"}}\n", i % 4);
    }
    let list = dir.path().join("pairs.jsonl");
    std::fs::write(&list, lines).unwrap();
    let tiny = fixture("tiny");
    let out = ok(advclip(&[
        "eval",
        "--weights",
        tiny.to_str().unwrap(),
        "--data",
        list.to_str().unwrap(),
        "--labels",
        "cat,dog",
        "--patch",
        patch.to_str().unwrap(),
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for direction in ["image_to_text_clean", "image_to_text_patched", "text_to_image_clean", "text_to_image_patched"] {
        for key in ["recall_at_1", "recall_at_5", "recall_at_10", "map", "map_at_1"] {
            let v = json["retrieval"][direction][key]
                .as_f64()
                .unwrap_or_else(|| panic!("{direction}.{key} missing: {json}"));
            assert!((0.0..=1.0).contains(&v), "{direction}.{key} = {v}");
        }
        // 8 items: recall at 10 is always 1.
        assert_eq!(json["retrieval"][direction]["recall_at_10"], 1.0);
    }
}
