//! Replays every input in tests/fuzz_regressions/ (the fuzzer's reproducers, which
//! scripts/fuzz.sh copies there, and the hand-made seeds) through the same decoding and model as
//! the fuzz target, fuzz/fuzz_targets/tracker_ops.rs. Any input the model rejects fails the test.
//!
//! Hand-made seeds (also the fuzzer's starting corpus):
//! - seed-lifecycle: records, adoptions, double and unknown deallocations, reads, snapshot, report.
//! - seed-invalid-arguments: NULL handles and pointers, bad enums, zero, oversized and wrapping
//!   sizes, descriptions at and past 255 bytes (with embedded NULs), invalid devices.
//! - seed-buffers: snapshots, reports and verifies with too small, exact and NULL buffers.
//! - seed-copies-and-alloc: copies at and past the end of recorded pointers, vg_alloc (refused
//!   without a GPU), vg_free of recorded and unknown pointers, several trackers.
//! - seed-checksums: device checksums of recorded and vg_alloc'd ranges, host checksums (one
//!   changed byte), NULL and wrapping host ranges.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

#[path = "../fuzz/src/ops.rs"]
mod ops;

/// Compiled in, so a test binary run away from its source tree (the GPU runner) still has them.
const SEEDS: [(&str, &[u8]); 5] = [
    ("seed-lifecycle", include_bytes!("fuzz_regressions/seed-lifecycle")),
    ("seed-invalid-arguments", include_bytes!("fuzz_regressions/seed-invalid-arguments")),
    ("seed-buffers", include_bytes!("fuzz_regressions/seed-buffers")),
    ("seed-copies-and-alloc", include_bytes!("fuzz_regressions/seed-copies-and-alloc")),
    ("seed-checksums", include_bytes!("fuzz_regressions/seed-checksums")),
];

/// The folder's files (VRAMGUARD_FUZZ_REGRESSIONS overrides where it is); the compiled-in seeds
/// where the folder is not there.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let dir = std::env::var_os("VRAMGUARD_FUZZ_REGRESSIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("{} not found: replaying the {} compiled-in seeds", dir.display(), SEEDS.len());
        return SEEDS.iter().map(|(name, data)| (name.to_string(), data.to_vec())).collect();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("read tests/fuzz_regressions").path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).expect("read input")))
        .collect();
    files.sort();
    files
}

#[test]
fn every_reproducer_passes_the_model() {
    let inputs = inputs();
    assert!(inputs.len() >= SEEDS.len(), "tests/fuzz_regressions/ lost its seeds");
    let mut failed = Vec::new();
    for (name, data) in &inputs {
        if catch_unwind(AssertUnwindSafe(|| ops::run(data))).is_err() {
            eprintln!("{name} decodes to: {:#?}", ops::decode(data));
            failed.push(name.clone());
        }
    }
    eprintln!("replayed {} inputs", inputs.len());
    assert!(failed.is_empty(), "inputs the C ABI and the model disagree on: {failed:?}");
}

#[test]
fn seeds_decode_to_real_sequences() {
    // A change to the decoder that turned the seeds into noise would make them test nothing.
    for (name, data) in SEEDS {
        assert!(ops::decode(data).len() >= 8, "{name} decodes to too few ops");
    }
}

#[test]
fn pseudo_random_inputs_pass_the_model() {
    // A fixed-seed stream of inputs: CI explores a little past the seeds without the fuzzer.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for n in 0..500 {
        let len = 64 + (next() % 960) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if catch_unwind(AssertUnwindSafe(|| ops::run(&data))).is_err() {
            let path = std::env::temp_dir().join(format!("vramguard-fuzz-input-{n}"));
            std::fs::write(&path, &data).expect("write the failing input");
            panic!(
                "pseudo-random input {n} fails the model; saved to {} (copy it into tests/fuzz_regressions/)",
                path.display()
            );
        }
    }
}
