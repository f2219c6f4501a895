//! The `advclip` command line: its JSON contract end to end against the reference, and one clear error per bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "advclip failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// A failure is exactly one `error:` line on stderr that mentions every `needles`, a non-zero exit, no panic.
fn assert_clear_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure, got success; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic instead of an error: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "error line lacks {needle:?}: {stderr}");
    }
}

fn png_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    files
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn classify_json_matches_the_reference_probabilities() {
    let reference = read_reference("tiny/reference.safetensors");
    let images = png_fixtures();
    let tiny = fixture("tiny");
    let mut args = vec!["classify", "--weights", tiny.to_str().unwrap(), "--labels", "cat, dog, red square", "--json"];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let json = stdout_json(&advclip(&args));
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), images.len());
    for (row, path) in rows.iter().zip(&images) {
        assert_eq!(row["path"], path.to_str().unwrap());
        let probs: Vec<f32> =
            ["cat", "dog", "red square"].iter().map(|l| row["probs"][l].as_f64().unwrap() as f32).collect();
        let expected = &reference[&format!("file.{}.probs", stem(path))].values;
        assert_close(&format!("probs of {}", stem(path)), &probs, expected, 1e-4);
        let top = ["cat", "dog", "red square"][advclip::zeroshot::argmax(expected)];
        assert_eq!(row["top"], top);
    }
}

#[test]
fn embed_json_matches_the_reference_embeddings() {
    let reference = read_reference("tiny/reference.safetensors");
    let image = fixture("images/landscape_301x217.png");
    let tiny = fixture("tiny");
    let json = stdout_json(&advclip(&[
        "embed",
        "--weights",
        tiny.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--text",
        "a photo of a cat",
        "--json",
    ]));
    let embedding = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    };
    assert_eq!(json["images"][0]["path"], image.to_str().unwrap());
    assert_close(
        "image embedding",
        &embedding(&json["images"][0]["embedding"]),
        &reference["file.landscape_301x217.image_embeds_normalized"].values,
        1e-5,
    );
    assert_eq!(json["texts"][0]["text"], "a photo of a cat");
    let ids: Vec<u64> = json["texts"][0]["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids, [49406, 320, 1125, 539, 320, 2368, 49407]);
    let first_text = &reference["text_embeds_normalized"].values[..24];
    assert_close("text embedding", &embedding(&json["texts"][0]["embedding"]), first_text, 1e-5);
}

#[test]
fn tokenize_prints_open_clip_ids() {
    let json = stdout_json(&advclip(&["tokenize", "a photo of a cat", "A PHOTO of a Dog!!", "--json"]));
    assert_eq!(
        json,
        serde_json::json!([[49406, 320, 1125, 539, 320, 2368, 49407], [49406, 320, 1125, 539, 320, 1929, 748, 49407]])
    );
    let long = "word ".repeat(200);
    let json = stdout_json(&advclip(&["tokenize", &long, "--json"]));
    let ids = json[0].as_array().unwrap();
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[76], 49407, "truncation keeps EOT last");
}

#[test]
fn bad_weights_get_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = fixture("images/small_37x29.png");
    let image = image.to_str().unwrap();
    let good = std::fs::read(fixture("tiny/model.safetensors")).unwrap();
    let write = |name: &str, bytes: &[u8]| -> String {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let classify = |weights: &str| advclip(&["classify", "--weights", weights, "--labels", "a,b", image]);

    let missing = dir.path().join("nope.safetensors");
    assert_clear_error(&classify(missing.to_str().unwrap()), &["nope.safetensors", "no such file"]);
    let corrupt = write("corrupt.safetensors", b"this is not a safetensors file at all, just text");
    assert_clear_error(&classify(&corrupt), &["corrupt.safetensors", "not a valid safetensors"]);
    let truncated = write("truncated.safetensors", &good[..good.len() / 2]);
    assert_clear_error(&classify(&truncated), &["truncated.safetensors", "truncated"]);
    let pickle = write("model.pt", b"PK\x03\x04 a torch.save zip archive");
    assert_clear_error(&classify(&pickle), &["model.pt", "pickle"]);
    write("pickle_only/pytorch_model.bin", b"\x80\x02 pickle");
    assert_clear_error(&classify(dir.path().join("pickle_only").to_str().unwrap()), &["pickle_only", "safetensors"]);

    // The tiny weights under a ViT-B/32 config.json: every shape is wrong.
    write("wrong_shape/model.safetensors", &good);
    std::fs::copy(fixture("b32/config.json"), dir.path().join("wrong_shape/config.json")).unwrap();
    assert_clear_error(&classify(dir.path().join("wrong_shape").to_str().unwrap()), &["wrong_shape", "wrong shape"]);
}

#[test]
fn bad_images_labels_and_templates_get_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = fixture("tiny");
    let tiny = tiny.to_str().unwrap();
    let good = fixture("images/small_37x29.png");
    let good = good.to_str().unwrap();
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthen garbage").unwrap();
    let not_image = dir.path().join("notes.txt");
    std::fs::write(&not_image, "hello").unwrap();
    // A valid PNG header announcing 100000 x 100000 pixels: refused before any allocation.
    let mut bomb = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    bomb.extend(100_000u32.to_be_bytes());
    bomb.extend(100_000u32.to_be_bytes());
    bomb.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    let bomb_path = dir.path().join("bomb.png");
    std::fs::write(&bomb_path, bomb).unwrap();

    let classify = |labels: &str, template: &str, image: &str| {
        advclip(&["classify", "--weights", tiny, "--labels", labels, "--template", template, image])
    };
    assert_clear_error(&classify("a,b", "a photo of a {}.", corrupt.to_str().unwrap()), &["corrupt.png"]);
    assert_clear_error(&classify("a,b", "a photo of a {}.", not_image.to_str().unwrap()), &["notes.txt"]);
    assert_clear_error(&classify("a,b", "a photo of a {}.", bomb_path.to_str().unwrap()), &["bomb.png"]);
    assert_clear_error(&classify("a,b", "a photo of a {}.", "/nonexistent/x.png"), &["/nonexistent/x.png"]);
    assert_clear_error(&classify(",", "a photo of a {}.", good), &["label"]);
    assert_clear_error(&classify("cat,,dog", "a photo of a {}.", good), &["label 2 is empty"]);
    assert_clear_error(&classify("a,b", "a photo", good), &["template", "{}"]);
    let long_label = "x9 ".repeat(45); // 135 characters, 90 tokens
    assert_clear_error(&classify(&format!("cat,{long_label}"), "a photo of a {}.", good), &["tokens"]);
}
