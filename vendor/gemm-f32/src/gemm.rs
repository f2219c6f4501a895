pub mod f32 {
    /// gemm's own kernels, as published.
    mod kernels {
        type T = f32;
        gemm_common::gemm_def!(f32, 2);
    }

    type GemmTy = unsafe fn(
        usize,
        usize,
        usize,
        *mut f32,
        isize,
        isize,
        bool,
        *const f32,
        isize,
        isize,
        *const f32,
        isize,
        isize,
        f32,
        f32,
        bool,
        bool,
        bool,
        gemm_common::Parallelism,
    );

    /// The f32 product: gemm's kernels, or (advclip's changes, features `amx` and `copies`) AMX tiles where they
    /// apply, and gemm's kernels on a right operand copied beforehand where its owner made a copy.
    #[inline(always)]
    pub fn get_gemm_fn() -> GemmTy {
        #[cfg(all(feature = "copies", target_arch = "x86_64"))]
        {
            tiles_copies_or_kernels
        }
        #[cfg(not(all(feature = "copies", target_arch = "x86_64")))]
        {
            kernels::get_gemm_fn()
        }
    }

    #[cfg(all(feature = "copies", target_arch = "x86_64"))]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tiles_copies_or_kernels(
        m: usize,
        n: usize,
        k: usize,
        dst: *mut f32,
        dst_cs: isize,
        dst_rs: isize,
        read_dst: bool,
        lhs: *const f32,
        lhs_cs: isize,
        lhs_rs: isize,
        rhs: *const f32,
        rhs_cs: isize,
        rhs_rs: isize,
        alpha: f32,
        beta: f32,
        conj_dst: bool,
        conj_lhs: bool,
        conj_rhs: bool,
        parallelism: gemm_common::Parallelism,
    ) {
        // SAFETY: gemm's contract, passed on unchanged.
        unsafe {
            // One engine per product: the tiles where they run (their copies are in tile order), else gemm's kernels
            // on a panel copy; either declines what it does not take, and gemm's kernels run it as published.
            #[cfg(feature = "amx")]
            let on_tiles = crate::amx::is_active();
            #[cfg(not(feature = "amx"))]
            let on_tiles = false;
            let done = if on_tiles {
                #[cfg(feature = "amx")]
                {
                    crate::amx::gemm(
                        m,
                        n,
                        k,
                        dst,
                        dst_cs,
                        dst_rs,
                        read_dst,
                        lhs,
                        lhs_cs,
                        lhs_rs,
                        rhs,
                        rhs_cs,
                        rhs_rs,
                        alpha,
                        beta,
                        parallelism,
                    )
                }
                #[cfg(not(feature = "amx"))]
                false
            } else {
                crate::copies::kernel_panels(
                    m,
                    n,
                    k,
                    dst,
                    dst_cs,
                    dst_rs,
                    read_dst,
                    lhs,
                    lhs_cs,
                    lhs_rs,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    alpha,
                    beta,
                    parallelism,
                )
            };
            if !done {
                kernels::get_gemm_fn()(
                    m,
                    n,
                    k,
                    dst,
                    dst_cs,
                    dst_rs,
                    read_dst,
                    lhs,
                    lhs_cs,
                    lhs_rs,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    alpha,
                    beta,
                    conj_dst,
                    conj_lhs,
                    conj_rhs,
                    parallelism,
                )
            }
        }
    }
}
