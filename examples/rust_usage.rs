//! Track model weights in device memory and prove they are resident (Rust API).
use std::process::ExitCode;

use vramguard::{Device, Error, Purpose, PurposeSet};

fn run() -> vramguard::Result<bool> {
    let gpu = Device::new(0)?; // VRAM-E001 when there is no GPU or driver
    let tracker = gpu.tracker()?;
    let mut weights = tracker.allocate(64 << 20, Purpose::ModelWeights, "encoder weights")?;
    weights.copy_from_host(0, &vec![1u8; 64 << 20])?;
    let _kv = tracker.allocate(16 << 20, Purpose::KVCache, "kv cache")?;

    print!("{}", tracker.residency_report()?);
    println!("weights: {} bytes, total: {} bytes", tracker.bytes_for(Purpose::ModelWeights), tracker.total_bytes());
    Ok(tracker.verify(PurposeSet::ALL)?.resident)
}

fn main() -> ExitCode {
    match run() {
        Ok(resident) => ExitCode::from(if resident { 0 } else { 1 }),
        Err(error) => {
            eprintln!("vramguard: {error}\n  {}", error.remediation());
            ExitCode::from(if matches!(error, Error::NoDevice(_)) { 101 } else { 1 })
        }
    }
}
