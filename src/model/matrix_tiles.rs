//! Whether the CPU's f32 matrix products run on Intel AMX tiles, each as three bf16 products (feature `amx`).
//!
//! Every matrix product of the CPU path (the linear layers, attention, Burn's autodiff) is gemm's. With the `amx`
//! feature, the vendored gemm-f32 runs the larger ones on AMX tiles where the CPU and Linux offer them (Sapphire
//! Rapids and later): each f32 operand split into two bf16 halves, `hi·hi + hi·lo + lo·hi` summed in f32. That is
//! not an f32 product bit for bit: it errs by up to about 2^-18 of the terms' magnitude where gemm's f32 kernels stay
//! near 1e-7 (`tests/matrix_tiles.rs`), well inside the 1e-4 parity with the reference; where AMX is absent nothing
//! changes.

/// Turns the AMX path on or off for the whole process (on by default where it is available), e.g. to measure the
/// exact f32 products beside it. Either way it drops the linear layers' weight copies ([`packed_weight_bytes`]),
/// which are in the order of the engine that ran before; the next products copy for the engine now chosen.
pub fn set_matrix_tiles(enabled: bool) {
    #[cfg(all(feature = "amx", target_arch = "x86_64"))]
    gemm_f32::amx::set_enabled(enabled);
    #[cfg(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64"))]
    super::packed_weights::release_all();
    #[cfg(not(all(feature = "amx", target_arch = "x86_64")))]
    let _ = enabled;
}

/// Whether f32 products now run on AMX tiles: built with `amx`, switched on, and offered by this CPU and OS.
pub fn matrix_tiles_active() -> bool {
    #[cfg(all(feature = "amx", target_arch = "x86_64"))]
    return gemm_f32::amx::is_active();
    #[cfg(not(all(feature = "amx", target_arch = "x86_64")))]
    false
}

/// Bytes held by the linear layers' weight copies, in the order their products read them (AMX tiles, or gemm's
/// AVX2/AVX-512 kernels' panels; for inference one copy per weight, for patch training two: the weight and its
/// transpose; made at the weight's first product and dropped once it is gone): 0 without the `weight-copies`
/// feature or off x86-64.
pub fn packed_weight_bytes() -> usize {
    #[cfg(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64"))]
    return super::packed_weights::held_bytes();
    #[cfg(not(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64")))]
    0
}

/// Whether the linear layers keep their weights copied in the order their products read them (on by default; feature
/// `weight-copies`, x86-64: AMX tile order where the tiles run, else gemm's AVX2/AVX-512 kernels' panels): memory for
/// speed. The copies are as large as the weights (ViT-B/32: 458 MiB for inference, 603 MiB for patch training,
/// [`packed_weight_bytes`]); off, every product copies its weight anew, as gemm does by itself, the same results bit
/// for bit and slower, and the copies held are dropped.
pub fn set_weight_copies(enabled: bool) {
    #[cfg(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64"))]
    super::packed_weights::set_enabled(enabled);
    #[cfg(not(all(feature = "flex", feature = "weight-copies", target_arch = "x86_64")))]
    let _ = enabled;
}
