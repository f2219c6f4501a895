//! Datasets from disk: ImageFolder (with `_` read as a space), caption lists, CIFAR-10 binaries, and their errors.

use advclip::dataset::Dataset;

#[test]
fn cifar10_records_decode_to_labelled_planar_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for (label, value) in [(3u8, 10u8), (9, 200)] {
        bytes.push(label);
        // Planar: 1024 red bytes, then green, then blue.
        bytes.extend(std::iter::repeat_n(value, 1024));
        bytes.extend(std::iter::repeat_n(value / 2, 1024));
        bytes.extend(std::iter::repeat_n(255 - value, 1024));
    }
    let file = dir.path().join("data_batch_1.bin");
    std::fs::write(&file, &bytes).unwrap();
    for path in [file.as_path(), dir.path()] {
        let data = Dataset::open(path).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data.class_names[3], "cat");
        assert_eq!(data.items[1].label, Some(9));
        let img = data.items[1].load().unwrap();
        assert_eq!(img.dimensions(), (32, 32));
        assert_eq!(img.get_pixel(31, 31).0, [200, 100, 55]);
    }
    std::fs::write(&file, &bytes[..100]).unwrap();
    let err = Dataset::open(&file).unwrap_err().to_string();
    assert!(err.contains("CIFAR-10 records"), "{err}");
}

#[test]
fn image_folders_and_caption_lists() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/images/small_37x29.png")).unwrap();
    for class in ["red_circle", "dog"] {
        std::fs::create_dir_all(dir.path().join("tree").join(class)).unwrap();
        std::fs::write(dir.path().join("tree").join(class).join("a.png"), &png).unwrap();
    }
    let tree = Dataset::open(&dir.path().join("tree")).unwrap();
    assert_eq!(tree.class_names, ["dog", "red circle"]);
    assert_eq!(tree.len(), 2);
    assert!(!tree.has_captions());

    std::fs::write(
        dir.path().join("pairs.csv"),
        "path,caption\ntree/dog/a.png,\"a dog\"\ntree/red_circle/a.png,a red circle\n",
    )
    .unwrap();
    let csv = Dataset::open(&dir.path().join("pairs.csv")).unwrap();
    assert_eq!(csv.items[0].caption.as_deref(), Some("a dog"));
    assert_eq!(csv.items[1].load().unwrap().dimensions(), (37, 29));

    std::fs::write(dir.path().join("bad.jsonl"), "{\"path\": \"x.png\"}\nnot json\n").unwrap();
    let err = Dataset::open(&dir.path().join("bad.jsonl")).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2"), "{err}");
    let err = Dataset::open(&dir.path().join("missing")).unwrap_err().to_string();
    assert!(err.contains("no such file"), "{err}");
    std::fs::create_dir_all(dir.path().join("empty/cat")).unwrap();
    let err = Dataset::open(&dir.path().join("empty")).unwrap_err().to_string();
    assert!(err.contains("no images"), "{err}");
}
