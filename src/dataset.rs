//! Image datasets from disk, read lazily: an ImageFolder tree, image + caption lists (JSONL or CSV), CIFAR-10 binaries.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{Error, Result};

/// Where one sample's pixels are.
#[derive(Clone, Debug)]
enum Pixels {
    File(PathBuf),
    /// Record `index` of a CIFAR-10 binary batch file (1 label byte, then 3x32x32 bytes, planar RGB).
    Cifar {
        file: PathBuf,
        index: usize,
    },
}

/// One sample: its pixels are decoded only when asked for, so a large surrogate set never sits in memory.
#[derive(Clone, Debug)]
pub struct Item {
    pixels: Pixels,
    pub label: Option<usize>,
    pub caption: Option<String>,
}

impl Item {
    pub fn name(&self) -> String {
        match &self.pixels {
            Pixels::File(p) => p.display().to_string(),
            Pixels::Cifar { file, index } => format!("{}#{index}", file.display()),
        }
    }

    /// Reads and decodes the image.
    pub fn load(&self) -> Result<RgbImage> {
        match &self.pixels {
            Pixels::File(path) => crate::preprocess::read_image_file(path),
            Pixels::Cifar { file, index } => {
                use std::io::{Read, Seek, SeekFrom};
                let mut f = std::fs::File::open(file).map_err(|e| Error::io(file.display(), e))?;
                let mut record = vec![0u8; CIFAR_RECORD];
                f.seek(SeekFrom::Start((index * CIFAR_RECORD) as u64))
                    .and_then(|_| f.read_exact(&mut record))
                    .map_err(|e| Error::io(file.display(), e))?;
                let planes = &record[1..];
                Ok(RgbImage::from_fn(32, 32, |x, y| {
                    let i = (y * 32 + x) as usize;
                    image::Rgb([planes[i], planes[1024 + i], planes[2048 + i]])
                }))
            }
        }
    }
}

const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;
/// Caption lists above this are refused.
const MAX_LIST_BYTES: u64 = 1 << 30;
const CIFAR_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "bmp"];

/// A list of samples and, for labelled data, the class names.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub items: Vec<Item>,
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Opens `path`: a folder of class folders (ImageFolder; a `captions.jsonl` inside adds captions) or of unlabelled
    /// images, a `.jsonl` or
    /// `.csv` list of `path,caption`, a CIFAR-10 `.bin` batch, or a folder of CIFAR-10 batches.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        let dataset = if path.is_dir() {
            let cifar: Vec<PathBuf> = sorted_entries(path)?.into_iter().filter(|p| is_cifar_batch(p)).collect();
            if !cifar.is_empty() { Self::cifar(&cifar)? } else { Self::image_folder(path)? }
        } else {
            match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("jsonl") => Self::caption_list(path, Format::Jsonl)?,
                Some("csv") => Self::caption_list(path, Format::Csv)?,
                Some("bin") => Self::cifar(&[path.to_path_buf()])?,
                _ if !path.exists() => {
                    return Err(Error::invalid(format!("{shown}: no such file or folder")));
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{shown}: not a dataset (expected a folder of class folders, a .jsonl/.csv caption list or CIFAR-10 .bin files)"
                    )));
                }
            }
        };
        if dataset.items.is_empty() {
            return Err(Error::invalid(format!("{shown}: the dataset has no images")));
        }
        Ok(dataset)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn has_captions(&self) -> bool {
        self.items.iter().any(|i| i.caption.is_some())
    }

    fn image_folder(root: &Path) -> Result<Self> {
        let mut class_names = Vec::new();
        let mut items = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let label = class_names.len();
            // Folder names cannot always hold spaces; "red_circle" is the class "red circle".
            class_names.push(dir.file_name().unwrap_or_default().to_string_lossy().replace('_', " "));
            for file in sorted_entries(&dir)?.into_iter().filter(|p| has_image_extension(p)) {
                items.push(Item { pixels: Pixels::File(file), label: Some(label), caption: None });
            }
        }
        if class_names.is_empty() {
            // A plain folder of images: unlabelled, in file-name order (the browser's uploads, on the command line).
            items = sorted_entries(root)?
                .into_iter()
                .filter(|p| p.is_file() && has_image_extension(p))
                .map(|file| Item { pixels: Pixels::File(file), label: None, caption: None })
                .collect();
            if items.is_empty() {
                return Err(Error::invalid(format!(
                    "{}: no class folders and no images (an ImageFolder dataset has one folder per class)",
                    root.display()
                )));
            }
        }
        let captions = root.join("captions.jsonl");
        if captions.exists() {
            let listed = Self::caption_list(&captions, Format::Jsonl)?;
            for item in &mut items {
                if let Pixels::File(p) = &item.pixels {
                    item.caption = listed
                        .items
                        .iter()
                        .find(|l| matches!(&l.pixels, Pixels::File(q) if q == p))
                        .and_then(|l| l.caption.clone());
                }
            }
        }
        Ok(Self { items, class_names })
    }

    fn caption_list(file: &Path, format: Format) -> Result<Self> {
        let text = String::from_utf8(crate::read_regular_file(file, MAX_LIST_BYTES)?)
            .map_err(|_| Error::invalid(format!("{}: not UTF-8 text", file.display())))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut items = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |why: &str| Error::invalid(format!("{}:{}: {why}", file.display(), n + 1));
            let (path, caption) = match format {
                Format::Jsonl => {
                    let v: serde_json::Value =
                        serde_json::from_str(line).map_err(|e| bad(&format!("not JSON: {e}")))?;
                    let path =
                        v["path"].as_str().or(v["image"].as_str()).ok_or_else(|| bad("no \"path\""))?.to_string();
                    (path, v["caption"].as_str().or(v["text"].as_str()).map(str::to_string))
                }
                Format::Csv => {
                    let (path, caption) = line.split_once(',').ok_or_else(|| bad("expected path,caption"))?;
                    if n == 0 && path.trim() == "path" {
                        continue; // header
                    }
                    (path.trim().to_string(), Some(caption.trim().trim_matches('"').to_string()))
                }
            };
            items.push(Item { pixels: Pixels::File(base.join(path)), label: None, caption });
        }
        Ok(Self { items, class_names: vec![] })
    }

    fn cifar(files: &[PathBuf]) -> Result<Self> {
        let mut items = Vec::new();
        for file in files {
            let len = std::fs::metadata(file).map_err(|e| Error::io(file.display(), e))?.len() as usize;
            if len == 0 || !len.is_multiple_of(CIFAR_RECORD) {
                return Err(Error::invalid(format!(
                    "{}: {len} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes)",
                    file.display()
                )));
            }
            let labels = std::fs::read(file).map_err(|e| Error::io(file.display(), e))?;
            for index in 0..len / CIFAR_RECORD {
                let label = labels[index * CIFAR_RECORD] as usize;
                if label >= CIFAR_CLASSES.len() {
                    return Err(Error::invalid(format!(
                        "{}: record {index} has label {label}; CIFAR-10 has 10 classes",
                        file.display()
                    )));
                }
                items.push(Item {
                    pixels: Pixels::Cifar { file: file.clone(), index },
                    label: Some(label),
                    caption: None,
                });
            }
        }
        Ok(Self { items, class_names: CIFAR_CLASSES.map(String::from).to_vec() })
    }
}

enum Format {
    Jsonl,
    Csv,
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir.display(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn has_image_extension(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_cifar_batch(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "bin")
        && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("batch"))
}

/// A dataset is what `advclip train` trains on: images read lazily, AdvCLIP's text from captions or class names.
impl crate::attack::TrainingImages for Dataset {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn pixels(&self, index: usize, size: u32) -> Result<Vec<f32>> {
        self.items[index].load().and_then(|img| crate::preprocess::unit_pixels(&img, size))
    }
    fn text(&self, index: usize, template: &str) -> Option<String> {
        let item = &self.items[index];
        item.caption
            .clone()
            .or_else(|| item.label.and_then(|l| self.class_names.get(l)).map(|c| template.replace("{}", c)))
    }
}
