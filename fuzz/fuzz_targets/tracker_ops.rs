//! Fuzzes sequences of tracker operations through the C ABI against a model (see ../src/ops.rs).
#![no_main]

#[path = "../src/ops.rs"]
mod ops;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ops::run(data));
