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
