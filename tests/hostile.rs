//! Hostile input through the CLI: a corpus made at test time (special files, truncated and oversized images,
//! crafted safetensors, configs, sidecars and checkpoints, absurd flags), each run with a time limit and a memory
//! cap, each with its exact expected outcome: exit 1 and one `error:` naming the problem, no panic, no hang, and
//! nothing overwritten.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture;

/// Every case must end within this; a hang is a failure, not a wait.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Address space for one run (`ulimit -v`, KiB): a memory runaway is killed instead of taking the machine.
const MEMORY_CAP_KIB: u64 = 8 << 20;

/// How a run ended.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stderr: String,
    timed_out: bool,
}

/// Runs the CLI under the time limit and the memory cap.
fn run(args: &[&str]) -> Outcome {
    let script = format!("ulimit -v {MEMORY_CAP_KIB}; exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_advclip"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break (status.code(), false);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome { code, stderr: reader.join().unwrap_or_default(), timed_out }
}

/// The one acceptable outcome of bad input: exit 1, an `error:` line containing `needle`, no panic.
#[track_caller]
fn refused(args: &[&str], needle: &str) {
    let out = run(args);
    assert!(!out.timed_out, "{args:?}: hung for {TIME_LIMIT:?}");
    assert!(!out.stderr.contains("panicked"), "{args:?}: panicked: {}", out.stderr);
    assert_eq!(out.code, Some(1), "{args:?}: expected exit 1 (killed by a signal if None): {}", out.stderr);
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: expected one error line: {}", out.stderr);
    assert!(errors[0].contains(needle), "{args:?}: expected {needle:?} in {:?}", errors[0]);
}

struct Corpus {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Corpus {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        Self { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo runs");
        assert!(made.success());
        path
    }

    /// The tiny fixture CLIP in a folder, its config.json edited by `edit` and its weights by `edit_weights`.
    fn model(
        &self,
        name: &str,
        edit: impl FnOnce(&mut serde_json::Value),
        weights: impl FnOnce(&mut Vec<u8>),
    ) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("tiny/config.json")).unwrap()).unwrap();
        edit(&mut config);
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
        let mut bytes = std::fs::read(fixture("tiny/model.safetensors")).unwrap();
        weights(&mut bytes);
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
        dir
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const IMAGE: &str = "images/square_224x224.png";

/// Byte offset of a tensor's data inside a safetensors file.
fn tensor_offset(bytes: &[u8], name: &str) -> usize {
    let tensors = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let data = tensors.tensor(name).unwrap().data();
    data.as_ptr() as usize - bytes.as_ptr() as usize
}

#[test]
fn special_files_are_refused_without_reading_them() {
    let c = Corpus::new();
    let tiny = fixture("tiny");
    let fifo = c.fifo("pipe.png");
    for image in ["/dev/zero", s(&fifo)] {
        refused(&["classify", "--weights", s(&tiny), "--labels", "a,b", image], "not a regular file");
    }
    let fifo_weights = c.fifo("weights.safetensors");
    for weights in ["/dev/zero", s(&fifo_weights)] {
        refused(&["classify", "--weights", weights, "--labels", "a,b", s(&fixture(IMAGE))], "not a regular file");
    }
    // A dataset listing only special files: nothing readable, said once, not a run on nothing.
    let list = c.write("list.jsonl", b"{\"path\": \"/dev/zero\", \"caption\": \"zeros\"}\n");
    let out = c.path("p.png");
    refused(
        &["train", "--weights", s(&tiny), "--data", s(&list), "--steps", "1", "--batch", "1", "--out", s(&out)],
        "no image of the dataset could be read",
    );
    assert!(!out.exists());
}

#[test]
fn damaged_and_oversized_images_are_refused() {
    let c = Corpus::new();
    let tiny = fixture("tiny");
    let classify = |image: &Path, needle: &str| {
        refused(&["classify", "--weights", s(&tiny), "--labels", "a,b", s(image)], needle);
    };
    // A truncated JPEG: the decoder would fill the rest with grey; Pillow refuses it, and so do we.
    let mut jpeg = Vec::new();
    image::open(fixture(IMAGE))
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    classify(&c.write("cut.jpg", &jpeg[..jpeg.len() / 2]), "truncated JPEG");
    let png = std::fs::read(fixture(IMAGE)).unwrap();
    classify(&c.write("cut.png", &png[..png.len() / 2]), "cut.png");
    classify(&c.write("empty.png", b""), "not a PNG, JPEG or WebP image");
    classify(&c.write("text.png", b"hello"), "not a PNG, JPEG or WebP image");
    // A decompression bomb: a PNG header claiming 100000 x 100000 pixels.
    let mut bomb = png[..33].to_vec();
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    classify(&c.write("bomb.png", &bomb), "too large");
    // Said once: the cause is not repeated after the file name.
    let out = run(&["classify", "--weights", s(&tiny), "--labels", "a,b", s(&c.path("missing.png"))]);
    assert_eq!(out.stderr.matches("os error 2").count(), 1, "{}", out.stderr);
}

/// CRC-32 (PNG's), so the crafted header is a valid chunk and the size check is what refuses it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn crafted_models_are_refused_before_anything_is_allocated() {
    let c = Corpus::new();
    let classify = |model: &Path, needle: &str| {
        refused(&["classify", "--weights", s(model), "--labels", "a,b", s(&fixture(IMAGE))], needle);
    };
    let huge_grid = c.model(
        "grid",
        |cfg| {
            cfg["vision_config"]["image_size"] = 4096.into();
            cfg["vision_config"]["patch_size"] = 1.into();
        },
        |_| {},
    );
    classify(&huge_grid, "positions, over the limit");
    let deep = c.model("deep", |cfg| cfg["text_config"]["num_hidden_layers"] = 1_000_000_000u64.into(), |_| {});
    classify(&deep, "num_hidden_layers 1000000000 is over the limit");
    let eps = c.model("eps", |cfg| cfg["vision_config"]["layer_norm_eps"] = (-1.0).into(), |_| {});
    classify(&eps, "layer_norm_eps -1 must be a small positive number");
    let nan = c.model(
        "nan",
        |_| {},
        |bytes| {
            let at = tensor_offset(bytes, "visual_projection.weight");
            bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        },
    );
    classify(&nan, "visual_projection.weight holds NaN or infinite values");
    // A header that claims more than the file holds, and a header length near 2^64.
    let mut lying = std::fs::read(fixture("tiny/model.safetensors")).unwrap();
    lying.truncate(lying.len() - 100);
    classify(&c.write("short/model.safetensors", &lying), "not a valid safetensors file");
    let mut wild = std::fs::read(fixture("tiny/model.safetensors")).unwrap();
    wild[..8].copy_from_slice(&(u64::MAX - 7).to_le_bytes());
    classify(&c.write("wild/model.safetensors", &wild), "not a valid safetensors file");
    // Weights alone whose shapes are no OpenAI preset: head counts cannot be guessed.
    let lone = c.write("lone/tiny.safetensors", &std::fs::read(fixture("tiny/model.safetensors")).unwrap());
    classify(&lone, "not an OpenAI preset");
}

#[test]
fn absurd_flags_are_refused_up_front() {
    let c = Corpus::new();
    let tiny = fixture("tiny");
    let data = c.path("data");
    for (i, class) in ["cat", "dog"].iter().enumerate() {
        std::fs::create_dir_all(data.join(class)).unwrap();
        std::fs::copy(fixture(IMAGE), data.join(class).join(format!("{i}.png"))).unwrap();
    }
    let out = c.path("p.png");
    let train = |extra: &[&str], needle: &str| {
        let mut args = vec!["train", "--weights", s(&tiny), "--data", s(&data), "--out", s(&out)];
        args.extend(extra);
        refused(&args, needle);
        assert!(!out.exists(), "{extra:?} wrote a patch");
    };
    train(&["--batch", "0"], "the batch must be between 1 and");
    train(&["--batch", "100000"], "the batch must be between 1 and");
    train(&["--steps", "0"], "steps must be between 1 and");
    train(&["--area", "0.9"], "must be in (0, 0.5)");
    train(&["--epochs", "18446744073709551615"], "steps must be between 1 and");
    refused(
        &["synth", "--out", s(&c.path("synth")), "--size", "100000", "--count", "1"],
        "scenes are between 1 and 2048",
    );
    let long = "word ".repeat(100);
    refused(&["embed", "--weights", s(&tiny), "--text", &long], "tokens; the model reads at most 77");
}

#[test]
fn crafted_sidecars_and_checkpoints_are_refused() {
    let c = Corpus::new();
    let tiny = fixture("tiny");
    let png = c.write("p.png", &std::fs::read(fixture("images/square_224x224.png")).unwrap());
    let patch = image::RgbImage::from_pixel(5, 5, image::Rgb([9, 9, 9]));
    patch.save(&png).unwrap();
    let sidecar = |top: &str, area: &str| {
        format!(
            r#"{{"version":2,"mode":"advclip","model":"m","image_size":32,"area_fraction":{area},
            "placement":{{"image_size":32,"size":5,"top":{top},"left":25}},"trained_spot":"fixed","seed":0,"steps":1}}"#
        )
    };
    let apply = |needle: &str| {
        refused(&["apply", "--patch", s(&png), s(&fixture(IMAGE)), "--out", s(&c.path("applied"))], needle);
    };
    // A top near 2^64 must not wrap around the bounds check.
    c.write("p.json", sidecar("18446744073709551614", "0.0244140625").as_bytes());
    apply("does not fit");
    c.write("p.json", sidecar("25", "0.4").as_bytes());
    apply("disagrees with its 5 px patch");
    c.write("p.json", b"{\"version\": 3}");
    apply("not a usable patch sidecar");
    // A checkpoint from another kind of run (the pretraining one) beside the patch.
    let data = c.path("data");
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        std::fs::copy(fixture(IMAGE), data.join(class).join("0.png")).unwrap();
    }
    let out = c.path("run/p.png");
    let garbage = c.write("run/p.ckpt", b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}");
    refused(
        &[
            "train",
            "--weights",
            s(&tiny),
            "--data",
            s(&data),
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            s(&out),
            "--resume",
        ],
        "not a usable advclip checkpoint",
    );
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}",
        "the checkpoint was overwritten"
    );
    assert!(!out.exists());
}

/// `advclip serve` under hostile clients: a malformed request gets 400, a request head that never ends gets 431, a
/// flood of idle connections gets 503s past the bounded queue instead of a thread each, and the server still answers
/// once they are gone; a symlink out of the served folders is not followed.
#[test]
fn the_server_stays_bounded_and_answers_bad_requests() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    let c = Corpus::new();
    for dir in ["www", "pkg", "assets"] {
        std::fs::create_dir_all(c.path(dir)).unwrap();
    }
    c.write("www/index.html", b"<!doctype html><p>ok</p>");
    c.write("secret.txt", b"secret");
    std::os::unix::fs::symlink(c.path("secret.txt"), c.path("www/leak.txt")).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_advclip"))
        .args(["serve", "--port", "0", "--root", s(&c.root)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address =
        line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("serve prints its address").to_string();
    let ask = |request: &[u8]| -> String {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let status = |answer: &str| answer.lines().next().unwrap_or("").to_string();
    assert!(status(&ask(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).contains("200"), "index");
    assert!(status(&ask(b"GET /leak.txt HTTP/1.1\r\n\r\n")).contains("404"), "symlink out of www/ was followed");
    assert!(status(&ask(b"\x00\x01 nonsense\r\n\r\n")).contains("400"), "malformed request");
    assert!(status(&ask(b"POST / HTTP/1.1\r\n\r\n")).contains("405"));
    // Exactly the head limit and still no end: the server reads all of it (so closing sends no reset) and refuses.
    let start = b"GET / HTTP/1.1\r\nX-Pad: ";
    let endless = [start.as_slice(), &vec![b'a'; 16 * 1024 - start.len()]].concat();
    assert!(status(&ask(&endless)).contains("431"), "an endless request head");
    // A flood of idle connections: the first ones tie up the workers and fill the queue, the rest are turned away.
    let idle: Vec<TcpStream> = (0..120).map(|_| TcpStream::connect(&address).unwrap()).collect();
    let mut turned_away = 0;
    for stream in &idle {
        stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut first = String::new();
        if BufReader::new(stream).read_line(&mut first).is_ok() && first.contains("503") {
            turned_away += 1;
        }
    }
    assert!(turned_away >= 120 - 8 - 64 - 4, "only {turned_away} of 120 idle connections were turned away");
    drop(idle);
    assert!(status(&ask(b"GET / HTTP/1.1\r\n\r\n")).contains("200"), "the server answers again after the flood");
    let _ = server.kill();
    let _ = server.wait();
}
