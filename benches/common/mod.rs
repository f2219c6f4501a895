//! Helpers shared by the benches (`mod common;` in each).

#![allow(dead_code)] // each bench uses its own part

pub mod host;
