//! Load a model's safetensors files into a model slot, verified on the way (Rust API). Run with
//! `cargo run --release --example load_weights -- model-00001-of-00002.safetensors ...`;
//! with no files it writes a small one to the temporary directory first.
use std::path::PathBuf;
use std::process::ExitCode;

use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig};
use vramguard::weights::shown_name;
use vramguard::{AllocationKind, Device, Error};

fn run(files: &[PathBuf]) -> vramguard::Result<()> {
    let tracker = Device::new(0)?.tracker()?; // VRAM-E001 when there is no GPU or driver
    let slots = ModelSlotManager::with_config(SlotConfig {
        budget_bytes: 16 << 30,
        backing: Some(DeviceBacking { tracker, kind: AllocationKind::Device }),
        ..SlotConfig::default()
    });
    // Validated (VRAM-E020), fitted in the budget (evicting idle slots by plan), uploaded through
    // pinned staging and verified against the bytes read (VRAM-E021), in one call.
    let loaded = slots.load_weights("encoder".to_string(), files)?;
    let (weights, report) = (&loaded.weights, loaded.weights.report);
    println!(
        "{} tensors, {} bytes in {:.3} s ({:.1} GB/s), checksum {}",
        weights.tensors.len(),
        report.bytes,
        report.duration.as_secs_f64(),
        report.gb_per_second(),
        report.checksum
    );
    for tensor in weights.tensors.iter().take(3) {
        let name = shown_name(&tensor.name); // names come from the file: printed escaped
        println!("  {name} {:?} {:?} at {:#x}", tensor.dtype, tensor.shape, tensor.device_ptr);
    }
    // The loaded checksum is the slot's integrity reference: the periodic check compares with it.
    assert!(slots.verify_integrity().is_empty());
    Ok(())
}

/// A 4 MiB file of one f32 matrix, written with the safetensors crate.
fn demo_file() -> std::io::Result<PathBuf> {
    let data: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1024, 1024], &data)
        .map_err(std::io::Error::other)?;
    let bytes = safetensors::serialize([("demo.weight", view)], None).map_err(std::io::Error::other)?;
    let path = std::env::temp_dir().join(format!("vramguard-demo-{}.safetensors", std::process::id()));
    std::fs::write(&path, bytes)?;
    Ok(path)
}

fn main() -> ExitCode {
    let mut files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let demo = files.is_empty();
    if demo {
        match demo_file() {
            Ok(path) => files.push(path),
            Err(error) => {
                eprintln!("cannot write the demo file: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let result = run(&files);
    if demo {
        let _ = std::fs::remove_file(&files[0]);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vramguard: {error}\n  {}", error.remediation());
            ExitCode::from(if matches!(error, Error::NoDevice(_)) { 101 } else { 1 })
        }
    }
}
