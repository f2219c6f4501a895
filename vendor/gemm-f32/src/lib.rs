#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(all(feature = "amx", target_arch = "x86_64"))]
pub mod amx;
pub mod gemm;
pub mod microkernel;

#[macro_use]
extern crate gemm_common;
