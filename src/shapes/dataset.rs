//! Writing the shapes world to disk: an ImageFolder tree of PNG scenes and a captions.jsonl beside it.

use std::path::Path;

use super::{Renderer, class_names, render_scene};
use crate::error::{Error, Result};

/// The largest scene side `write_dataset` draws (CLIP's largest input is 336 px).
pub const MAX_SCENE_SIZE: u32 = 2048;

/// Writes `count` scenes as an ImageFolder tree, `out/<label with '_'>/<index:06>.png`, and `out/captions.jsonl`
/// with one `{"path", "caption", "label"}` per image. All 36 class folders are created even when `count` is small,
/// because ImageFolder readers number classes by the sorted folder names and must see the same 36 every time.
/// `progress` is called with the number of images written so far.
pub fn write_dataset(
    out: &Path,
    count: usize,
    seed: u64,
    size: u32,
    renderer: Renderer,
    mut progress: impl FnMut(usize),
) -> Result<()> {
    if !(1..=MAX_SCENE_SIZE).contains(&size) {
        return Err(Error::invalid(format!(
            "{}: scenes are between 1 and {MAX_SCENE_SIZE} pixels a side, not {size}",
            out.display()
        )));
    }
    if out.is_file() {
        return Err(Error::io(
            out.display(),
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists and is a file, not a folder"),
        ));
    }
    let folders: Vec<String> = class_names().iter().map(|l| l.replace(' ', "_")).collect();
    for folder in &folders {
        let dir = out.join(folder);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    }
    let mut captions = String::new();
    for i in 0..count {
        let scene = render_scene(size, seed, i as u64, renderer);
        let relative = format!("{}/{i:06}.png", folders[scene.class]);
        let path = out.join(&relative);
        let png = crate::preprocess::encode_png(&scene.image, &path.display().to_string())?;
        crate::write_atomically_unflushed(&path, &png)?;
        let line = serde_json::json!({ "path": relative, "caption": scene.caption, "label": scene.label });
        captions.push_str(&line.to_string());
        captions.push('\n');
        progress(i + 1);
    }
    crate::write_atomically_unflushed(&out.join("captions.jsonl"), captions.as_bytes())
}

/// A temporary file beside `path`, then a rename, so an interrupted run never leaves a half-written image.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_dataset_writes_an_image_folder_and_captions() {
        let out = std::env::temp_dir().join(format!("advclip-synth-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut calls = Vec::new();
        write_dataset(&out, 12, 4, 32, Renderer::Standard, |n| calls.push(n)).unwrap();
        assert_eq!(calls, (1..=12).collect::<Vec<_>>());
        let folders = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
        assert_eq!(folders, 36);
        let text = std::fs::read_to_string(out.join("captions.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 12);
        for (i, line) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let scene = render_scene(32, 4, i as u64, Renderer::Standard);
            let path = format!("{}/{i:06}.png", scene.label.replace(' ', "_"));
            assert_eq!(v["path"], path.as_str());
            assert_eq!(v["caption"], scene.caption.as_str());
            assert_eq!(v["label"], scene.label.as_str());
            let decoded = image::open(out.join(&path)).unwrap().to_rgb8();
            assert_eq!(decoded, scene.image);
        }
        let stray = walk(&out).into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp")).count();
        assert_eq!(stray, 0);
        std::fs::remove_dir_all(&out).unwrap();

        // A file where the folder should be is a clear I/O error naming it.
        let blocker = std::env::temp_dir().join(format!("advclip-synth-blocker-{}", std::process::id()));
        std::fs::write(&blocker, b"x").unwrap();
        let err = write_dataset(&blocker, 2, 0, 32, Renderer::Standard, |_| {}).unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("advclip-synth-blocker"), "{err}");
        let err = write_dataset(&blocker.join("sub"), 2, 0, 32, Renderer::Standard, |_| {}).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        std::fs::remove_file(&blocker).unwrap();
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
        }
        files
    }
}
