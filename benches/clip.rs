//! `cargo bench --bench clip`: ViT-B/32 encoder and patch-training throughput on each built device, beside PyTorch
//! in the same run.
//!
//! Options (after `--`): `--seconds S` per row (default 4), `--devices cpu,wgpu` (also `cpu-whole`: the CPU without
//! splitting batches across threads; `cpu-f32`: the CPU with its products in f32 on gemm's kernels even where AMX
//! tiles would run them, `model::set_matrix_tiles(false)`; `cpu-anew`: every product copying its weight anew into the
//! order its engine reads (AMX tiles or gemm's kernels), `model::set_weight_copies(false)`; `cpu-f32-anew`: both), `--no-torch`, `--rounds N` (the whole table N times, then
//! each column's ratio to PyTorch per round and the median of those ratios), `--interleave` (PyTorch times each cell right after
//! advclip's first column has timed it, so that the two share the machine's load of those seconds; without it
//! PyTorch's whole column follows advclip's, half a minute or more later).
//! PyTorch runs `benches/torch_clip_bench.py` with `$ADVCLIP_TORCH_PYTHON` (default `python3`); its column is
//! skipped, with a note, when torch cannot be imported.
//! Built without the `avx512` feature (`--no-default-features --features flex,cli,weight-copies`) on an AVX-512 CPU, it stands for
//! an AVX2 machine: advclip's kernels are AVX2 ones and PyTorch is held to AVX2 (ATen, MKL and oneDNN).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use advclip::attack::{Paste, PatchPlacement, TargetedConfig, TargetedPatchTrainer};
use advclip::model::{
    Clip, Preset, TokenBatch, l2_normalize, packed_weight_bytes, set_batch_split, set_matrix_tiles, set_weight_copies,
};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};

mod common;
use common::host::{avx2_on_avx512, cpu_description, threads, torch_command, torch_python};

const IMAGE_BATCHES: [usize; 3] = [1, 8, 32];
const TEXT_BATCH: usize = 8;
const TRAIN_BATCHES: [usize; 2] = [8, 16];

struct Row {
    what: String,
    per_second: Vec<(String, f64)>,
}

/// Runs `work` (which must finish its device work before returning) until `seconds` pass; items per second.
fn throughput(items: usize, seconds: f64, mut work: impl FnMut()) -> f64 {
    work(); // warm-up: kernels, autotune, allocations
    let start = Instant::now();
    let mut runs = 0;
    while runs < 2 || start.elapsed() < Duration::from_secs_f64(seconds) {
        work();
        runs += 1;
    }
    (runs * items) as f64 / start.elapsed().as_secs_f64()
}

/// `bench_device`'s rows, with PyTorch's cell timed right after each one when `torch` is given; returns the bytes
/// that the linear weights' copies held (`model::packed_weight_bytes`: AMX tile order or gemm's kernels' panels) for the
/// inference model, measured before it is dropped and the training rows start, and for the training model after
/// them.
fn bench_device(
    name: &str,
    device: &Device,
    seconds: f64,
    rows: &mut [Row],
    mut torch: Option<&mut TorchCells>,
) -> [usize; 2] {
    let mut torch_cell = |row: &mut Row, kind: &str, batch: usize| {
        if let Some(torch) = torch.as_deref_mut() {
            let per_s = torch.measure(kind, batch);
            eprintln!("{}: {kind} batch {batch}: {per_s:.2}/s", torch.label);
            row.per_second.push((torch.label.clone(), per_s));
        }
    };
    let config = Preset::VitB32.config();
    let model = Clip::new(&config, device);
    for (row, &batch) in rows.iter_mut().zip(IMAGE_BATCHES.iter()) {
        let pixels = Tensor::<4>::random([batch, 3, 224, 224], Distribution::Normal(0.0, 1.0), device);
        let per_s = throughput(batch, seconds, || {
            let _ = model.encode_image(pixels.clone()).into_data();
        });
        eprintln!("{name}: image batch {batch}: {per_s:.2}/s");
        row.per_second.push((name.to_string(), per_s));
        torch_cell(row, "image", batch);
    }
    let prompts: Vec<Vec<u32>> = (0..TEXT_BATCH)
        .map(|i| (0..77).map(|t| if t == 76 { 49407 } else { 320 + (i * 77 + t) as u32 }).collect())
        .collect();
    let tokens = TokenBatch::new(&prompts, 77, 49408).expect("valid tokens");
    let per_s = throughput(TEXT_BATCH, seconds, || {
        let _ = model.encode_text(&tokens).into_data();
    });
    eprintln!("{name}: text batch {TEXT_BATCH}: {per_s:.2}/s");
    rows[IMAGE_BATCHES.len()].per_second.push((name.to_string(), per_s));
    torch_cell(&mut rows[IMAGE_BATCHES.len()], "text", TEXT_BATCH);
    let weight_copies = packed_weight_bytes();
    drop(model); // its weights' tile copies too: the training rows hold only what training needs

    // The targeted patch-training step: 3 % patch at AdvCLIP's place, image tower forward and backward to the patch.
    let ad = device.clone().autodiff();
    let model = Clip::new(&config, &ad).no_grad();
    let placement = PatchPlacement::advclip(224, 0.03).expect("fits");
    let labels = Tensor::<2>::random([10, 512], Distribution::Normal(0.0, 1.0), &ad);
    for (i, &batch) in TRAIN_BATCHES.iter().enumerate() {
        let images = Tensor::<4>::random([batch, 3, 224, 224], Distribution::Default, &ad);
        let patch = Tensor::<3>::random([3, 38, 38], Distribution::Default, &ad);
        let mut trainer =
            TargetedPatchTrainer::new(patch, l2_normalize(labels.clone()), 4.6052, TargetedConfig::new(3));
        let per_s = throughput(batch, seconds, || {
            let out = trainer.step(&model, images.clone(), &Paste::Fixed(placement), None, 0.05);
            let _ = out.loss.into_data();
        });
        eprintln!("{name}: train batch {batch}: {per_s:.2} images/s");
        rows[IMAGE_BATCHES.len() + 1 + i].per_second.push((name.to_string(), per_s));
        torch_cell(&mut rows[IMAGE_BATCHES.len() + 1 + i], "train", batch);
    }
    [weight_copies, packed_weight_bytes()]
}

/// PyTorch's column heading: its version, and the SIMD level its kernels ran at when advclip's were held to AVX2.
fn torch_label(hello: &serde_json::Value) -> String {
    let version = hello["torch"].as_str().unwrap_or("?");
    match hello["cpu_capability"].as_str() {
        Some(capability) if avx2_on_avx512() => format!("pytorch {version} ({capability})"),
        _ => format!("pytorch {version}"),
    }
}

/// PyTorch kept running as a server (`torch_clip_bench.py --serve`): the model built once, then one cell timed per
/// request, for `--interleave`.
struct TorchCells {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    label: String,
}

impl TorchCells {
    fn start(seconds: f64) -> Result<Self, String> {
        let (python, script, threads) = torch_python("torch_clip_bench.py");
        let skipped = || {
            format!(
                "PyTorch column skipped: `{python}` could not run the torch benchmark (set ADVCLIP_TORCH_PYTHON to a python with torch + transformers)"
            )
        };
        let mut child = torch_command(&python)
            .args([&script, "--serve", "--threads", &threads, "--seconds", &seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|_| skipped())?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else { return Err(skipped()) };
        let mut cells = Self { child, input, output: BufReader::new(output), label: String::new() };
        let hello = cells.reply().ok_or_else(skipped)?;
        cells.label = torch_label(&hello);
        Ok(cells)
    }

    fn reply(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        self.output.read_line(&mut line).ok()?;
        serde_json::from_str(&line).ok()
    }

    /// Items per second of one cell (`kind`: image, text or train), NaN if the server failed.
    fn measure(&mut self, kind: &str, batch: usize) -> f64 {
        if writeln!(self.input, "{kind} {batch}").and_then(|_| self.input.flush()).is_err() {
            return f64::NAN;
        }
        self.reply().and_then(|r| r["per_s"].as_f64()).unwrap_or(f64::NAN)
    }
}

impl Drop for TorchCells {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench_torch(seconds: f64, rows: &mut [Row]) -> Option<String> {
    let (python, script, threads) = torch_python("torch_clip_bench.py");
    let out = torch_command(&python)
        .args([
            &script,
            "--threads",
            &threads,
            "--seconds",
            &seconds.to_string(),
            "--text-batches",
            &TEXT_BATCH.to_string(),
            "--train-batches",
            "8,16",
        ])
        .stderr(Stdio::inherit())
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        _ => {
            return Some(format!(
                "PyTorch column skipped: `{python}` could not run the torch benchmark (set ADVCLIP_TORCH_PYTHON to a python with torch + transformers)"
            ));
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let label = torch_label(&json);
    for (row, batch) in rows.iter_mut().zip(IMAGE_BATCHES) {
        row.per_second.push((label.clone(), json["image_per_s"][batch.to_string()].as_f64().unwrap_or(f64::NAN)));
    }
    rows[IMAGE_BATCHES.len()]
        .per_second
        .push((label.clone(), json["text_per_s"][TEXT_BATCH.to_string()].as_f64().unwrap_or(f64::NAN)));
    for (i, batch) in TRAIN_BATCHES.iter().enumerate() {
        let v = json["train_per_s"][batch.to_string()].as_f64().unwrap_or(f64::NAN);
        rows[IMAGE_BATCHES.len() + 1 + i].per_second.push((label.clone(), v));
    }
    None
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// One round: every asked device, then PyTorch; the rows, notes, each column's peak memory and the tile copies that
/// a column's inference and training models held (where there were any).
struct Round {
    rows: Vec<Row>,
    notes: Vec<String>,
    column_peaks: Vec<String>,
    weight_copies: Vec<String>,
    rss: Option<f64>,
}

/// `torch`: PyTorch's column after every device's; `cells`: PyTorch's cells interleaved with the first device's instead.
fn run_round(devices: &str, seconds: f64, torch: bool, mut cells: Option<&mut TorchCells>) -> Round {
    let mut rows: Vec<Row> = IMAGE_BATCHES
        .iter()
        .map(|b| Row { what: format!("image encoder, batch {b} (images/s)"), per_second: vec![] })
        .chain([Row { what: format!("text encoder, batch {TEXT_BATCH} x 77 tokens (prompts/s)"), per_second: vec![] }])
        .chain(
            TRAIN_BATCHES
                .iter()
                .map(|b| Row { what: format!("patch training step, batch {b} (images/s)"), per_second: vec![] }),
        )
        .collect();
    let mut notes = Vec::new();
    let mut column_peaks = Vec::new();
    let mut weight_copies = Vec::new();
    for name in devices.split(',') {
        // `cpu-whole`: the CPU with each batch encoded as one, not split across the threads (model::batch_split).
        set_batch_split(name != "cpu-whole");
        // `cpu-f32`: the CPU with every product on gemm's f32 kernels (model::matrix_tiles); `cpu-anew`: every
        // product copying its weight anew (model::set_weight_copies); `cpu-f32-anew`: both.
        set_matrix_tiles(!name.starts_with("cpu-f32"));
        set_weight_copies(!name.ends_with("-anew"));
        let device = match name {
            "cpu" | "cpu-whole" | "cpu-f32" | "cpu-anew" | "cpu-f32-anew" => Device::flex(),
            #[cfg(feature = "wgpu")]
            "wgpu" => Device::wgpu(Default::default()),
            #[cfg(feature = "cuda")]
            "cuda" => Device::cuda(0),
            other => {
                notes.push(format!("device {other} skipped: not built in (cargo bench --features {other})"));
                continue;
            }
        };
        // Each column's own high-water mark (Linux: writing 5 to clear_refs resets VmHWM to the current RSS).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let copies = bench_device(&format!("advclip {name}"), &device, seconds, &mut rows, cells.take());
        if let Some(rss) = peak_rss_mib() {
            column_peaks.push(format!("{name} {rss:.0} MiB"));
        }
        if copies.iter().any(|&bytes| bytes > 0) {
            let [inference, training] = copies.map(|bytes| bytes as f64 / (1 << 20) as f64);
            weight_copies.push(format!("{name} {inference:.0} MiB inference, {training:.0} MiB training"));
        }
    }
    let rss = peak_rss_mib();
    if torch {
        notes.extend(bench_torch(seconds, &mut rows));
    }
    Round { rows, notes, column_peaks, weight_copies, rss }
}

fn print_table(rows: &[Row]) {
    let columns: Vec<String> = rows[0].per_second.iter().map(|(c, _)| c.clone()).collect();
    println!("| work | {} |", columns.join(" | "));
    println!("|---|{}", "---:|".repeat(columns.len()));
    for row in rows {
        let cells: Vec<String> = row.per_second.iter().map(|(_, v)| format!("{v:.2}")).collect();
        println!("| {} | {} |", row.what, cells.join(" | "));
    }
}

/// Over several rounds: each advclip column's ratio to the PyTorch column of the same round, per round and their
/// median (a shared machine's load drifts between rounds; a ratio within one round shares most of it).
fn print_ratios(rounds: &[Round]) {
    let first = &rounds[0].rows;
    let Some(torch) = first[0].per_second.iter().position(|(c, _)| c.starts_with("pytorch")) else {
        return;
    };
    let columns: Vec<usize> = (0..first[0].per_second.len()).filter(|&c| c != torch).collect();
    let names: Vec<String> = columns.iter().map(|&c| format!("{} / pytorch", first[0].per_second[c].0)).collect();
    println!("\nratios to PyTorch in each of the {} rounds, then their median:\n", rounds.len());
    println!("| work | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    for (r, row) in first.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .map(|&c| {
                let mut ratios: Vec<f64> = rounds
                    .iter()
                    .map(|round| round.rows[r].per_second[c].1 / round.rows[r].per_second[torch].1)
                    .collect();
                let each = ratios.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" / ");
                ratios.sort_by(f64::total_cmp);
                let mid = ratios.len() / 2;
                let median = if ratios.len() % 2 == 1 { ratios[mid] } else { (ratios[mid - 1] + ratios[mid]) / 2.0 };
                format!("{each} (**{median:.2}**)")
            })
            .collect();
        println!("| {} | {} |", row.what, cells.join(" | "));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(4.0);
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let devices =
        arg("--devices").unwrap_or_else(|| if cfg!(feature = "wgpu") { "cpu,wgpu".into() } else { "cpu".into() });
    let torch = !args.iter().any(|a| a == "--no-torch");
    let mut notes = Vec::new();
    let mut cells = match (torch, args.iter().any(|a| a == "--interleave")) {
        (true, true) => TorchCells::start(seconds).map_err(|note| notes.push(note)).ok(),
        _ => None,
    };
    let header = format!(
        "CLIP ViT-B/32, fp32, random weights, {} threads, {seconds} s per cell{}, on {}",
        threads(),
        if cells.is_some() { ", PyTorch's cell right after advclip's" } else { "" },
        cpu_description()
    );
    let mut done = Vec::new();
    for r in 0..rounds {
        let interleaved = cells.is_some();
        let mut round = run_round(&devices, seconds, torch && !interleaved && notes.is_empty(), cells.as_mut());
        round.notes.extend(notes.iter().cloned());
        if rounds > 1 {
            println!("\nround {} of {rounds}: {header}\n", r + 1);
        } else {
            println!("\n{header}\n");
        }
        print_table(&round.rows);
        if let Some(rss) = round.rss {
            println!("\npeak resident memory of the advclip runs: {rss:.0} MiB");
        }
        if round.column_peaks.len() > 1 {
            // Memory the allocator kept from an earlier column still counts in a later one's.
            println!("peak resident memory per column (reset before each): {}", round.column_peaks.join(", "));
        }
        if !round.weight_copies.is_empty() {
            // Counted in the peaks above (`model::packed_weight_bytes`: the inference model's read before the
            // training rows, the training model's after them; the two never live at once).
            println!(
                "linear weights' copies held (AMX tile order or gemm's panels): {}",
                round.weight_copies.join("; ")
            );
        }
        for note in &round.notes {
            println!("note: {note}");
        }
        done.push(round);
    }
    if rounds > 1 {
        print_ratios(&done);
    }
}
