//! Fuzzes safetensors header validation, with no file and no GPU (see ../src/weights_header.rs).
#![no_main]

#[path = "../src/weights_header.rs"]
mod weights_header;

libfuzzer_sys::fuzz_target!(|data: &[u8]| weights_header::run(data));
