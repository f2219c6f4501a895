//! What the benches share about the machine they run on: the CPU's description and PyTorch's process, held to the
//! same SIMD level as advclip's kernels.

use std::process::Command;

/// The Python that runs PyTorch (`$ADVCLIP_TORCH_PYTHON`, default `python3`), the path of `script` under
/// `benches/`, and the thread count both sides use.
pub fn torch_python(script: &str) -> (String, String, String) {
    let python = std::env::var("ADVCLIP_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    (python, script, threads().to_string())
}

/// The threads the machine offers (both sides run on all of them).
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether the CPU has AVX-512 (F), detected at run time.
fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether gemm runs its AVX-512 kernels here: the build has the `avx512` feature and the CPU AVX-512.
pub fn avx512_kernels() -> bool {
    cfg!(feature = "avx512") && cpu_has_avx512()
}

/// Whether this build runs AVX2 kernels on a CPU that has AVX-512 (built without the `avx512` feature): the bench
/// then stands for an AVX2 machine, and PyTorch is held to AVX2 as well.
pub fn avx2_on_avx512() -> bool {
    !cfg!(feature = "avx512") && cpu_has_avx512()
}

/// The PyTorch process, held to the same SIMD level as advclip's kernels: ATen's own kernels, MKL's and oneDNN's.
pub fn torch_command(python: &str) -> Command {
    let mut command = Command::new(python);
    if avx2_on_avx512() {
        command
            .env("ATEN_CPU_CAPABILITY", "avx2")
            .env("MKL_ENABLE_INSTRUCTIONS", "AVX2")
            .env("ONEDNN_MAX_CPU_ISA", "AVX2");
    }
    command
}

/// The CPU model and the widest SIMD it has, as the kernels see it at run time.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    #[cfg(target_arch = "x86_64")]
    let simd = if avx2_on_avx512() {
        "AVX-512, but AVX2 kernels on both sides: built without the avx512 feature"
    } else if cpu_has_avx512() {
        "AVX-512"
    } else if std::arch::is_x86_feature_detected!("avx2") {
        "AVX2"
    } else {
        "SSE only"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let simd = std::env::consts::ARCH;
    // Where the products run: AMX tiles (three bf16 products each) where the CPU offers them and the build has `amx`.
    let products = if advclip::model::matrix_tiles_active() { "; f32 products on AMX tiles (bf16 x 3)" } else { "" };
    format!("{} ({simd}{products})", model.unwrap_or("an unknown CPU"))
}
