//! Seed 001's leak report for the BDD run: on a GPU host, the driver's free memory after every
//! scenario is back where it was before the first (within 2 MiB, one lone small block).
use vramguard::{AllocationKind, Device, Purpose};

use super::gate::Gate;

const SLACK: u64 = 2 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    free_bytes: u64,
}

impl Baseline {
    /// None without a GPU. Taken after one migration of managed memory: the first makes the
    /// driver reserve about 124 MiB for its own bookkeeping until the context ends (docs/testing.md, "GPU
    /// test suite"), and the residency scenarios use managed memory; and after one checksum, whose
    /// module and stream the context keeps.
    pub fn take(gate: &Gate) -> Option<Baseline> {
        if !gate.has_gpu() {
            return None;
        }
        let device = Device::new(0).ok()?;
        if let Ok(tracker) = device.tracker() {
            let kind = AllocationKind::Managed;
            if let Ok(mut buffer) = tracker.allocate_kind(1 << 20, Purpose::IntermediateBuffers, kind, "warm-up") {
                let _ = buffer.copy_from_host(0, &[1u8]);
                // Loads vramguard's CUDA module and creates its checksum stream: both live as long
                // as the context (about 4 MiB of device memory under compute-sanitizer).
                let _ = buffer.checksum();
            }
            crate::model_files::warm_up_weights_loading(&tracker);
        }
        Some(Baseline { free_bytes: device.memory_info().ok()?.free_bytes })
    }

    /// Prints the before/after figures; true when memory went missing.
    ///
    /// (See `warm_up_weights_loading` for what the first weights load costs the context.)
    pub fn leaked(&self) -> bool {
        let after = Device::new(0).and_then(|d| d.memory_info()).map(|m| m.free_bytes);
        match after {
            Ok(after) => {
                println!(
                    "[ vramguard ] GPU0 driver free memory: {} bytes before the scenarios, {after} after",
                    self.free_bytes
                );
                let leaked = self.free_bytes.saturating_sub(after) > SLACK;
                if leaked {
                    eprintln!("device memory leaked during the scenarios: {} bytes", self.free_bytes - after);
                }
                leaked
            }
            Err(error) => {
                eprintln!("cannot read the driver's free memory after the scenarios: {error}");
                true
            }
        }
    }
}
