//! `cargo bench --bench matmul`: how close the CPU path's matrix products come to the machine: the FMA peak, gemm on
//! ViT-B/32's weights as advclip calls it, the whole image encoder in the same unit, and PyTorch's products beside.
//!
//! Options (after `--`): `--seconds S` per cell (default 3), `--rounds N` (every cell N times, interleaved; the
//! table shows each round and the median), `--no-torch`. PyTorch runs `benches/torch_matmul_bench.py` with
//! `$ADVCLIP_TORCH_PYTHON` (default `python3`), held to AVX2 where advclip's kernels are (built without `avx512`).
//! Why: most of the encoder's time is gemm's (README, "Benchmarks"); this table says how much of the hardware that
//! is, so that a ratio to PyTorch can be read as kernel against kernel. Where the products run on AMX tiles (feature
//! `amx`, a CPU that has them), the gemm and encoder rows are measured both ways: on the tiles, and on gemm's f32
//! kernels (`model::set_matrix_tiles(false)`); the tiles' rows can pass the FMA peak, which counts f32 arithmetic.
//! On the tiles, `product_onto` copies each weight into tile order on every call, while the encoder's linear layers
//! keep one copy per weight (`model::packed_weight_bytes`); a third gemm row measures the products on such copies.

use std::time::{Duration, Instant};

use advclip::model::{Clip, Preset, VisionConfig, matrix_tiles_active, set_matrix_tiles};
use burn::tensor::{Device, Distribution, Tensor};

mod common;
use common::host::{avx512_kernels, cpu_description, threads, torch_command, torch_python};

/// Image batches measured: each is cut into one slice per thread, as `model::batch_split` cuts it.
const BATCHES: [usize; 2] = [8, 32];

/// One table row: what was measured, its rate in each round (GFLOP/s, multiply-adds counted twice).
struct Row {
    what: String,
    rates: Vec<f64>,
}

/// Runs `work` until `seconds` pass (at least twice after a warm-up); runs per second.
fn runs_per_second(seconds: f64, mut work: impl FnMut()) -> f64 {
    work();
    let start = Instant::now();
    let mut runs = 0;
    while runs < 2 || start.elapsed() < Duration::from_secs_f64(seconds) {
        work();
        runs += 1;
    }
    runs as f64 / start.elapsed().as_secs_f64()
}

/// The FMA peak on `threads` threads, 256- and 512-bit (the latter where the CPU has AVX-512), in GFLOP/s: every
/// thread runs independent chains of fused multiply-adds on registers, enough of them to hide the latency.
#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;

    const ROUNDS: usize = 50_000_000;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn ymm_chains() -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut c = [_mm256_setzero_ps(); 12];
        for _ in 0..ROUNDS {
            for acc in c.iter_mut() {
                *acc = _mm256_fmadd_ps(*acc, a, b);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for acc in c {
            sum = _mm256_add_ps(sum, acc);
        }
        let mut lanes = [0f32; 8];
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn zmm_chains() -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut c = [_mm512_setzero_ps(); 24];
        for _ in 0..ROUNDS / 2 {
            for acc in c.iter_mut() {
                *acc = _mm512_fmadd_ps(*acc, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for acc in c {
            sum = _mm512_add_ps(sum, acc);
        }
        _mm512_reduce_add_ps(sum)
    }

    fn on_threads(threads: usize, flops_per_thread: f64, chains: fn() -> f32) -> f64 {
        let start = std::time::Instant::now();
        let sums: f32 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(chains)).collect();
            handles.into_iter().map(|h| h.join().expect("FMA thread")).sum()
        });
        std::hint::black_box(sums);
        threads as f64 * flops_per_thread / start.elapsed().as_secs_f64() / 1e9
    }

    /// 256-bit FMA peak (needs AVX2 and FMA).
    pub fn ymm(threads: usize) -> Option<f64> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then(|| {
            // SAFETY: the CPU has the features, checked above.
            on_threads(threads, (ROUNDS * 12 * 16) as f64, || unsafe { ymm_chains() })
        })
    }

    /// 512-bit FMA peak (needs AVX-512F).
    pub fn zmm(threads: usize) -> Option<f64> {
        is_x86_feature_detected!("avx512f").then(|| {
            // SAFETY: the CPU has the feature, checked above.
            on_threads(threads, ((ROUNDS / 2) * 24 * 32) as f64, || unsafe { zmm_chains() })
        })
    }
}

/// A transformer block's weights as Burn's `Linear` holds them ([d_input, d_output], row-major): q, k, v, out, then
/// the MLP's two.
fn block_shapes(vision: &VisionConfig) -> [(usize, usize); 6] {
    let (d, m) = (vision.hidden_size, vision.intermediate_size);
    [(d, d), (d, d), (d, d), (d, d), (d, m), (m, d)]
}

/// Multiply-adds times two per image of the encoder as advclip runs it: the patch embedding, every block on all
/// tokens but the last, which runs q, out and the MLP for the class token alone (`Encoder::forward_pooled`), and
/// the projection. PyTorch's full last block would add what `full_last_block` gives.
fn encoder_flops(vision: &VisionConfig, projection: usize, full_last_block: bool) -> f64 {
    let (d, m, tokens) = (vision.hidden_size, vision.intermediate_size, vision.num_positions());
    let patches = tokens - 1;
    let embed = patches * 3 * vision.patch_size * vision.patch_size * d;
    let block = |rows: usize| 2 * tokens * d * d + rows * (2 * d * d + 2 * d * m) + 2 * rows * tokens * d;
    let blocks = (vision.num_layers - 1) * block(tokens) + block(if full_last_block { tokens } else { 1 });
    2.0 * (embed + blocks + d * projection) as f64
}

/// The rows of each thread's slice of a batch of `batch` images (tokens times images, the first slices one image
/// longer where the batch does not divide), as `model::batch_split` cuts it.
fn slice_rows(vision: &VisionConfig, batch: usize) -> Vec<usize> {
    let slices = threads().min(batch).max(1);
    (0..slices).map(|s| (batch / slices + usize::from(s < batch % slices)) * vision.num_positions()).collect()
}

/// The encoder blocks' weights (`num_layers` x the six of `block_shapes`, so that they come from memory as in the
/// model): `[d_input, d_output]`, the values row-major, and a bias row.
fn block_weights(vision: &VisionConfig) -> Vec<(usize, usize, Vec<f32>, Vec<f32>)> {
    let shapes = block_shapes(vision);
    (0..vision.num_layers * shapes.len())
        .map(|i| {
            let (k, n) = shapes[i % shapes.len()];
            let w = (0..k * n).map(|j| ((j * 7 + i) % 13) as f32 * 0.01 - 0.06).collect();
            (k, n, w, vec![0.01; n])
        })
        .collect()
}

/// Every weight of `weights` multiplied once per run for one batch of `batch` images: the rows cut into one slice
/// per thread, each slice's product started from the bias rows by `product(weight index, out, input, rows)`. GFLOP/s.
fn slices_rate(
    vision: &VisionConfig,
    batch: usize,
    seconds: f64,
    weights: &[(usize, usize, Vec<f32>, Vec<f32>)],
    product: impl Fn(usize, &mut [f32], &[f32], usize) + Sync,
) -> f64 {
    use rayon::prelude::*;
    let rows = slice_rows(vision, batch);
    let widest = weights.iter().map(|&(k, n, _, _)| k.max(n)).max().unwrap_or(0);
    let inputs: Vec<Vec<f32>> =
        rows.iter().map(|&r| (0..r * widest).map(|j| (j % 11) as f32 * 0.02 - 0.1).collect()).collect();
    let mut outputs: Vec<Vec<f32>> = rows.iter().map(|&r| vec![0.0; r * widest]).collect();
    let flops: f64 = weights.iter().map(|(k, n, _, _)| 2.0 * (rows.iter().sum::<usize>() * k * n) as f64).sum();
    let per_s = runs_per_second(seconds, || {
        outputs.par_iter_mut().zip(inputs.par_iter()).zip(rows.par_iter()).for_each(|((out, input), &rows)| {
            for (index, (_, n, _, bias)) in weights.iter().enumerate() {
                for row in out[..rows * n].chunks_exact_mut(*n) {
                    row.copy_from_slice(bias);
                }
                product(index, out, input, rows);
            }
        });
    });
    std::hint::black_box(&outputs);
    flops * per_s / 1e9
}

/// gemm on every weight of the encoder's blocks by `model::product_onto`, the call the linear layers make (on the
/// tiles it copies the weight into tile order on every call).
fn gemm_rate(vision: &VisionConfig, batch: usize, seconds: f64) -> f64 {
    let weights = block_weights(vision);
    slices_rate(vision, batch, seconds, &weights, |i, out, input, rows| {
        let (k, n, w, _) = &weights[i];
        advclip::model::product_onto(out, input, w, [rows, *k, *n]);
    })
}

/// [`gemm_rate`] with every weight copied into tile order once, before the clock starts, as the linear layers keep
/// them for inference (`model::packed_weight_bytes`): `model::product_onto_copy`. `None` where the tiles do not run.
#[cfg(all(feature = "amx", target_arch = "x86_64"))]
fn gemm_rate_on_copied_weights(vision: &VisionConfig, batch: usize, seconds: f64) -> Option<f64> {
    let weights = block_weights(vision);
    let copies: Vec<_> = weights
        .iter()
        .map(|(k, n, w, _)| gemm_f32::copies::PackedRight::from_row_major(w, *k, *n))
        .collect::<Option<_>>()?;
    Some(slices_rate(vision, batch, seconds, &weights, |i, out, input, rows| {
        let on_tiles = advclip::model::product_onto_copy(out, true, input, &copies[i], rows);
        assert!(on_tiles, "the tiles take every product of ViT-B/32's blocks");
    }))
}

#[cfg(not(all(feature = "amx", target_arch = "x86_64")))]
fn gemm_rate_on_copied_weights(_vision: &VisionConfig, _batch: usize, _seconds: f64) -> Option<f64> {
    None
}

/// advclip's image encoder (random ViT-B/32 weights) at `batch`, in GFLOP/s of the work it does.
fn encoder_rate(model: &Clip, vision: &VisionConfig, projection: usize, batch: usize, seconds: f64) -> f64 {
    let device = Device::flex();
    let pixels =
        Tensor::<4>::random([batch, 3, vision.image_size, vision.image_size], Distribution::Normal(0.0, 1.0), &device);
    let per_s = runs_per_second(seconds, || {
        let _ = model.encode_image(pixels.clone()).into_data();
    });
    per_s * batch as f64 * encoder_flops(vision, projection, false) / 1e9
}

/// PyTorch's `F.linear` over weights of the same shapes at each batch's rows, all threads: GFLOP/s per batch, and its label.
fn torch_rates(vision: &VisionConfig, seconds: f64) -> Result<(String, Vec<f64>), String> {
    let (python, script, threads) = torch_python("torch_matmul_bench.py");
    let batches = BATCHES.map(|b| b.to_string()).join(",");
    let out = torch_command(&python)
        .args([&script, "--threads", &threads, "--seconds", &seconds.to_string(), "--batches", &batches])
        .args(["--width", &vision.hidden_size.to_string(), "--mlp", &vision.intermediate_size.to_string()])
        .args(["--layers", &vision.num_layers.to_string(), "--tokens", &vision.num_positions().to_string()])
        .output()
        .map_err(|e| format!("PyTorch rows skipped: `{python}` did not start ({e}); set ADVCLIP_TORCH_PYTHON"))?;
    if !out.status.success() {
        return Err(format!(
            "PyTorch rows skipped: `{python} {script}` failed: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("PyTorch rows skipped: {e}"))?;
    let label = format!(
        "PyTorch {} ({}, {})",
        json["torch"].as_str().unwrap_or("?"),
        json["blas"].as_str().unwrap_or("?"),
        json["cpu_capability"].as_str().unwrap_or("?")
    );
    let rates = BATCHES.iter().map(|b| json["gflops"][b.to_string()].as_f64().unwrap_or(f64::NAN)).collect();
    Ok((label, rates))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let torch = !args.iter().any(|a| a == "--no-torch");

    let config = Preset::VitB32.config();
    let vision = config.vision.clone();
    let model = Clip::new(&config, &Device::flex());
    let threads = threads();
    let wide = avx512_kernels();
    // The product paths to measure: AMX tiles where they run, and gemm's f32 kernels always.
    let kernels = if wide { "AVX-512 kernels" } else { "AVX2 kernels" };
    let paths: Vec<(bool, &str)> = if matrix_tiles_active() {
        vec![(true, "AMX tiles, bf16 x 3"), (false, kernels)]
    } else {
        vec![(false, kernels)]
    };

    let mut rows: Vec<Row> = Vec::new();
    let push = |rows: &mut Vec<Row>, what: String, rate: f64| match rows.iter_mut().find(|r| r.what == what) {
        Some(row) => row.rates.push(rate),
        None => rows.push(Row { what, rates: vec![rate] }),
    };
    let mut notes = Vec::new();
    for round in 0..rounds {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(rate) = peak::ymm(threads) {
                push(&mut rows, format!("FMA peak, 256-bit (AVX2), {threads} threads"), rate);
            }
            if let Some(rate) = peak::zmm(threads) {
                push(&mut rows, format!("FMA peak, 512-bit (AVX-512), {threads} threads"), rate);
            }
        }
        for &(tiles, path) in &paths {
            set_matrix_tiles(tiles);
            for &batch in &BATCHES {
                let what = format!(
                    "gemm ({path}), ViT-B/32's 72 block weights, batch {batch} ({} rows a slice)",
                    slice_rows(&vision, batch)[0]
                );
                let rate = gemm_rate(&vision, batch, seconds);
                eprintln!("round {}: {what}: {rate:.1} GFLOP/s", round + 1);
                push(&mut rows, what, rate);
                if tiles && let Some(rate) = gemm_rate_on_copied_weights(&vision, batch, seconds) {
                    let what = format!(
                        "gemm ({path}, weights copied into tile order once), the same, batch {batch} ({} rows a slice)",
                        slice_rows(&vision, batch)[0]
                    );
                    eprintln!("round {}: {what}: {rate:.1} GFLOP/s", round + 1);
                    push(&mut rows, what, rate);
                }
            }
            for &batch in &BATCHES {
                let what = format!(
                    "advclip's image encoder ({path}), batch {batch} ({:.2} GFLOP an image)",
                    encoder_flops(&vision, config.projection_dim, false) / 1e9
                );
                let rate = encoder_rate(&model, &vision, config.projection_dim, batch, seconds);
                eprintln!("round {}: {what}: {rate:.1} GFLOP/s", round + 1);
                push(&mut rows, what, rate);
            }
        }
        set_matrix_tiles(true);
        if torch {
            match torch_rates(&vision, seconds) {
                Ok((label, rates)) => {
                    for (&batch, rate) in BATCHES.iter().zip(rates) {
                        let what = format!(
                            "{label} F.linear, weights of the same shapes, batch {batch} ({} rows, one product)",
                            batch * vision.num_positions()
                        );
                        eprintln!("round {}: {what}: {rate:.1} GFLOP/s", round + 1);
                        push(&mut rows, what, rate);
                    }
                }
                Err(note) if !notes.contains(&note) => notes.push(note),
                Err(_) => {}
            }
        }
    }

    let peak_row = if wide { "512-bit" } else { "256-bit" };
    let peak = rows.iter().find(|r| r.what.contains(peak_row)).map(|r| median(&r.rates));
    println!(
        "\nmatrix products on {}, {threads} threads, {seconds} s per cell, {rounds} round(s); GFLOP/s counts \
         multiply-adds twice; share of the {peak_row} FMA peak (the kernels gemm runs here)\n",
        cpu_description()
    );
    println!("| work | GFLOP/s per round | median | share of the peak |");
    println!("|---|---|---:|---:|");
    for row in &rows {
        let each: Vec<String> = row.rates.iter().map(|r| format!("{r:.1}")).collect();
        let m = median(&row.rates);
        let share = peak.filter(|p| *p > 0.0).map_or(String::new(), |p| format!("{:.0} %", 100.0 * m / p));
        println!("| {} | {} | {m:.1} | {share} |", row.what, each.join(" / "));
    }
    println!(
        "\nPyTorch's encoder does {:.2} GFLOP an image (its last block runs every token).",
        encoder_flops(&vision, config.projection_dim, true) / 1e9
    );
    for note in notes {
        println!("note: {note}");
    }
}
