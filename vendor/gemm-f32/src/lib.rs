#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(all(feature = "amx", target_arch = "x86_64"))]
pub mod amx;
#[cfg(all(feature = "copies", target_arch = "x86_64"))]
pub mod copies;
pub mod gemm;
pub mod microkernel;

#[macro_use]
extern crate gemm_common;
