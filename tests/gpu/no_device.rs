//! ERR5 on a machine without a GPU: every entry point answers the coded no-device error, never a
//! panic and never a CPU fallback.
use libtest_mimic::{Failed, Trial};
use vramguard::{Device, Error, Purpose, Tracker};

use crate::ensure;
use crate::gpu_gate::without_gpu;

pub fn trials() -> Vec<Trial> {
    vec![
        without_gpu("no_device::device_new_is_no_device", device_new_is_no_device),
        without_gpu("no_device::allocation_is_no_device", allocation_is_no_device),
        without_gpu("no_device::verification_is_an_error", verification_is_an_error),
        without_gpu("no_device::serve_binary_exits_101", serve_binary_exits_101),
        without_gpu("no_device::check_binary_exits_101", check_binary_exits_101),
        without_gpu("no_device::load_binary_checks_files_then_exits_101", load_binary_checks_files_then_exits_101),
    ]
}

fn device_new_is_no_device() -> Result<(), Failed> {
    let err = Device::new(0).unwrap_err();
    ensure!(matches!(err, Error::NoDevice(_)) && err.code() == "VRAM-E001", "{err}");
    ensure!(!err.is_recoverable(), "no GPU is not recoverable");
    // cudaErrorInsufficientDriver without a driver; cudaErrorNoDevice with CUDA_VISIBLE_DEVICES="".
    let text = err.to_string();
    ensure!(text.contains("cudaErrorInsufficientDriver") || text.contains("cudaErrorNoDevice"), "{text}");
    Ok(())
}

fn allocation_is_no_device() -> Result<(), Failed> {
    let tracker = Tracker::new(0)?;
    let err = tracker.allocate(1 << 20, Purpose::ModelWeights, "weights").unwrap_err();
    ensure!(err.code() == "VRAM-E001", "{err}");
    ensure!(tracker.usage().lifetime_allocations == 0, "state changed");
    Ok(())
}

fn verification_is_an_error() -> Result<(), Failed> {
    let tracker = Tracker::new(0)?;
    let err = tracker.verify_all().unwrap_err();
    ensure!(err.code() == "VRAM-E001", "a check that cannot run must not pass: {err}");
    Ok(())
}

fn check_binary_exits_101() -> Result<(), Failed> {
    let output = std::process::Command::new(crate::gpu_gate::vramguard_binary()).arg("check").output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.code() == Some(101), "exit {:?}", output.status.code());
    ensure!(stderr.lines().count() == 1 && stderr.contains("[VRAM-E001]"), "{stderr}");
    ensure!(output.stdout.is_empty(), "printed to stdout without a GPU");
    Ok(())
}

fn serve_binary_exits_101() -> Result<(), Failed> {
    let output =
        std::process::Command::new(crate::gpu_gate::vramguard_binary()).args(["serve", "--port", "0"]).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.code() == Some(101), "exit {:?}: {stderr}", output.status.code());
    ensure!(stderr.contains("[VRAM-E001]"), "{stderr}");
    Ok(())
}

/// `vramguard load` validates every file before it opens the device: a bad file is its own
/// VRAM-E020 (exit 1) even without a GPU; a good one reaches the device and exits 101.
fn load_binary_checks_files_then_exits_101() -> Result<(), Failed> {
    let dir = crate::model_files::temp_dir("no-device-load");
    let good = dir.join("good.safetensors");
    let tensors = [crate::model_files::TensorSpec::new("w", vramguard::weights::Dtype::F32, &[4, 4])];
    crate::model_files::write_model(&good, &tensors, 1)?;
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"\x10\0\0\0\0\0\0\0{\"a\": 1}")?;
    let load = |file: &std::path::Path| {
        std::process::Command::new(crate::gpu_gate::vramguard_binary()).arg("load").arg(file).output()
    };
    let refused = load(&bad)?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        refused.status.code() == Some(1) && stderr.contains("[VRAM-E020]"),
        "exit {:?}: {stderr}",
        refused.status.code()
    );
    let no_gpu = load(&good)?;
    let stderr = String::from_utf8_lossy(&no_gpu.stderr);
    ensure!(
        no_gpu.status.code() == Some(101) && stderr.contains("[VRAM-E001]"),
        "exit {:?}: {stderr}",
        no_gpu.status.code()
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
