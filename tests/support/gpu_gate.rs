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

/// A test that needs two GPUs at once. With fewer visible it is reported as ignored ("needs 2
/// GPUs"), and fails under VRAM_REQUIRE_GPU=1 only where the host has two or more (NVML counts
/// the host's GPUs whatever `CUDA_VISIBLE_DEVICES` hides): on a one-GPU host the GPU suite runs
/// everything else and says why these did not run.
pub fn two_gpus(name: &str, body: fn() -> Result<(), Failed>) -> Trial {
    Trial::ignorable_test(name, move || {
        let visible = vramguard::device_count().unwrap_or(0);
        if visible < 2 {
            let host = host_gpu_count();
            if gpu_required() && host >= 2 {
                return Err(format!("VRAM_REQUIRE_GPU=1, the host has {host} GPUs and {visible} are visible").into());
            }
            return Ok(Completion::ignored_with(format!("needs 2 GPUs ({visible} visible, {host} on the host)")));
        }
        body().map(|()| Completion::Completed)
    })
    .with_kind("2 gpus")
}

/// The host's GPUs as NVML counts them; 0 without a driver.
pub fn host_gpu_count() -> u32 {
    vramguard::nvml::Nvml::load().and_then(|nvml| nvml.device_count()).unwrap_or(0)
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
