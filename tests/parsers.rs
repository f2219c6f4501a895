//! Property tests for every parser of outside input: safetensors headers, model configs, patch sidecars,
//! checkpoints, images and tokenizer text. Whatever the bytes, the answer is a value that passes its own checks or
//! an error naming the input, never a panic.

mod common;

use advclip::attack::PatchPlacement;
use advclip::attack::patch_file::PatchSidecar;
use advclip::model::ClipConfig;
use advclip::model::load::inspect_weights;
use advclip::tokenizer::{CONTEXT_LENGTH, Tokenizer};
use common::fixture;
use proptest::prelude::*;

/// A valid input with some of its bytes replaced: the inputs that get furthest into a parser.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (prop::collection::vec((0..len, any::<u8>()), 1..8), 0..=len).prop_map(move |(edits, keep)| {
        let mut bytes = valid.clone();
        for (at, byte) in edits {
            bytes[at] = byte;
        }
        bytes.truncate(keep.max(1));
        bytes
    })
}

fn config_json() -> String {
    std::fs::read_to_string(fixture("tiny/config.json")).unwrap()
}

const SIDECAR: &str = r#"{"version":2,"mode":"targeted","model":"m","image_size":64,"area_fraction":0.140625,
"placement":{"image_size":64,"size":24,"top":36,"left":36},"target":"green star","trained_spot":"fixed","seed":0,
"steps":600,"training":{"losses":{"cross_entropy":0.01},"rate":1.0,"skipped_images":0}}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn safetensors_headers_parse_or_fail_cleanly(bytes in mutated(std::fs::read(fixture("tiny/model.safetensors")).unwrap()[..4096].to_vec())) {
        let _ = inspect_weights(&bytes, "fuzzed.safetensors").map_err(|e| assert!(e.to_string().contains("fuzzed.safetensors"), "{e}"));
    }

    #[test]
    fn random_bytes_are_never_weights(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(inspect_weights(&bytes, "random").is_err());
    }

    #[test]
    fn configs_parse_within_limits_or_fail_cleanly(bytes in mutated(config_json().into_bytes())) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(config) = ClipConfig::from_hf_json(&text) {
            prop_assert!(config.validate().is_ok());
            let v = &config.vision;
            prop_assert!(v.image_size % v.patch_size == 0 && v.hidden_size % v.num_heads == 0);
        }
    }

    #[test]
    fn config_numbers_of_any_size_are_checked(image in any::<u64>(), patch in any::<u64>(), layers in any::<u64>(), eps in any::<f64>()) {
        let mut config: serde_json::Value = serde_json::from_str(&config_json()).unwrap();
        config["vision_config"]["image_size"] = image.into();
        config["vision_config"]["patch_size"] = patch.into();
        config["text_config"]["num_hidden_layers"] = layers.into();
        config["vision_config"]["layer_norm_eps"] = serde_json::Number::from_f64(eps).map_or(serde_json::Value::Null, Into::into);
        if let Ok(config) = ClipConfig::from_hf_json(&config.to_string()) {
            prop_assert!(config.vision.image_size <= 4096 && config.text.num_layers <= 128);
            prop_assert!(config.vision.layer_norm_eps > 0.0);
        }
    }

    #[test]
    fn sidecars_that_parse_place_the_patch_inside_the_image(bytes in mutated(SIDECAR.as_bytes().to_vec())) {
        let text = String::from_utf8_lossy(&bytes);
        match PatchSidecar::from_json(&text, "fuzzed.json") {
            Ok(s) => {
                let p = s.placement;
                prop_assert!(PatchPlacement::at(p.image_size, p.size, p.top, p.left).is_ok());
                prop_assert_eq!(p.image_size, s.image_size);
            }
            Err(e) => prop_assert!(e.to_string().starts_with("fuzzed.json: not a usable patch sidecar"), "{}", e),
        }
    }

    #[test]
    fn sidecar_positions_of_any_size_are_checked(top in any::<u64>(), left in any::<u64>(), size in any::<u64>()) {
        let mut v: serde_json::Value = serde_json::from_str(SIDECAR).unwrap();
        v["placement"]["top"] = top.into();
        v["placement"]["left"] = left.into();
        v["placement"]["size"] = size.into();
        if let Ok(s) = PatchSidecar::from_json(&v.to_string(), "s.json") {
            let p = s.placement;
            prop_assert!(p.top + p.size <= 64 && p.left + p.size <= 64);
        }
    }

    #[test]
    fn checkpoints_read_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ckpt");
        std::fs::write(&path, &bytes).unwrap();
        let read = advclip::checkpoint::read::<serde_json::Value>(&path);
        prop_assert!(read.is_err() || bytes.len() >= 8);
        if let Err(e) = read {
            prop_assert!(e.to_string().contains("x.ckpt"), "{}", e);
        }
    }

    #[test]
    fn images_decode_or_fail_cleanly(bytes in mutated(std::fs::read(fixture("images/square_224x224.png")).unwrap())) {
        if let Ok(img) = advclip::preprocess::decode_image(&bytes, "fuzzed.png") {
            prop_assert!(img.width() > 0 && img.height() > 0);
        }
    }

    #[test]
    fn any_text_tokenizes_within_the_context(text in any::<String>()) {
        let tokenizer = Tokenizer::new();
        let ids = tokenizer.encode_for_context(&text, CONTEXT_LENGTH);
        prop_assert!(ids.len() >= 2 && ids.len() <= CONTEXT_LENGTH);
        prop_assert_eq!(ids[0], advclip::tokenizer::SOT);
        prop_assert_eq!(*ids.last().unwrap(), advclip::tokenizer::EOT);
    }
}
