//! Q4 for Rust tests: a GPU trial is reported as ignored ("needs a GPU") where there is none,
//! and fails where VRAM_REQUIRE_GPU=1 is set and there is none.
use libtest_mimic::{Completion, Failed, Trial};

pub fn gpu_available() -> bool {
    vramguard::device_count().map(|n| n > 0).unwrap_or(false)
}

pub fn gpu_required() -> bool {
    std::env::var("VRAM_REQUIRE_GPU").as_deref() == Ok("1")
}

/// A test that needs a GPU.
pub fn gpu(name: &str, body: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        if !gpu_available() {
            if gpu_required() {
                return Err("VRAM_REQUIRE_GPU=1 but no GPU is available".into());
            }
            return Ok(Completion::ignored_with("needs a GPU"));
        }
        body().map(|()| Completion::Completed)
    })
    .with_kind("gpu")
}

/// A test of the no-GPU error path: it runs only where there is no GPU.
pub fn without_gpu(name: &str, body: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        if gpu_available() {
            return Ok(Completion::ignored_with("checks the no-GPU path; this host has a GPU"));
        }
        body().map(|()| Completion::Completed)
    })
    .with_kind("no-gpu")
}

/// `assert!` for trials: an error instead of a panic.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !{ $cond } {
            return Err(format!("{}:{}: {}", file!(), line!(), format!($($msg)+)).into());
        }
    };
}

/// The `vramguard` binary: `VRAMGUARD_BIN` where the suite runs away from its build tree (the GPU
/// runner), else the one cargo built.
pub fn vramguard_binary() -> std::path::PathBuf {
    std::env::var_os("VRAMGUARD_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_vramguard").into())
}
