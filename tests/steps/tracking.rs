//! Seed 001's worker: a tracker on GPU 0 that loads, reports and frees model weights.
use cucumber::{given, then, when};
use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig};
use vramguard::weights::Dtype;
use vramguard::{AllocationKind, Purpose, PurposeSet};

use crate::model_files::{bf16_layers, temp_dir, write_model, TensorSpec};

use super::params::{PurposeName, Size};
use super::world::{Memory, VramWorld};

/// Written into loaded weights and read back, so that "loaded" means usable, not just reserved.
const PATTERN: [u8; 4096] = [0x5a; 4096];

#[given("a worker with CUDA context initialized")]
fn worker(world: &mut VramWorld) -> vramguard::Result<()> {
    world.start_worker()
}

#[given(expr = "a worker with {size} VRAM allocated")]
fn worker_with_allocation(world: &mut VramWorld, size: Size) -> vramguard::Result<()> {
    world.start_worker()?;
    let buffer = world.tracker().allocate(size.0, Purpose::ModelWeights, "model weights")?;
    world.hold("model weights", Memory::Plain(buffer));
    Ok(())
}

/// A real model: a safetensors file of exactly `size` bytes of tensors (bf16 matrices of 16 MiB
/// when the size allows), loaded into a model slot and verified on the device.
#[when(expr = "the worker loads a {size} model into VRAM")]
fn load_model(world: &mut VramWorld, size: Size) -> vramguard::Result<()> {
    const LAYER: u64 = 16 << 20;
    let tensors = if size.0 % LAYER == 0 {
        bf16_layers((size.0 / LAYER) as usize, 4096, 2048)
    } else {
        vec![TensorSpec::new("weights", Dtype::U8, &[size.0])]
    };
    let dir = temp_dir("bdd-model");
    let path = dir.join("model.safetensors");
    write_model(&path, &tensors, 1).map_err(|e| vramguard::Error::Io(e.to_string()))?;
    let slots = ModelSlotManager::with_config(SlotConfig {
        backing: Some(DeviceBacking { tracker: world.tracker().clone(), kind: AllocationKind::Device }),
        ..SlotConfig::default()
    });
    let loaded = slots.load_weights("model".to_string(), &[&path])?;
    let _ = std::fs::remove_dir_all(dir);
    let report = loaded.weights.report;
    assert!(report.verified && report.bytes == size.0, "{report:?}");
    assert_eq!(loaded.weights.tensors.len(), tensors.len());
    world.slots = Some(slots);
    Ok(())
}

#[when("the worker deallocates the memory")]
fn deallocate(world: &mut VramWorld) {
    let names: Vec<String> = world.held.iter().map(|(name, _)| name.clone()).collect();
    world.freed_bytes = names.iter().map(|name| world.free(name)).sum();
}

#[then(expr = "the VRAM tracker reports {size} usage for {purpose}")]
fn reports_purpose(world: &mut VramWorld, size: Size, purpose: PurposeName) -> vramguard::Result<()> {
    let tracker = world.tracker();
    assert_eq!(tracker.bytes_for(purpose.0), size.0, "{}", tracker.report()?);
    // The figure is backed by a record of memory that is really on the device.
    let records = tracker.snapshot()?;
    assert!(records.iter().any(|r| r.purpose == purpose.0 && r.bytes == size.0), "{records:?}");
    assert!(tracker.verify(PurposeSet::ALL)?.resident, "the weights are not resident");
    Ok(())
}

#[then(expr = "the VRAM tracker reports {size} usage")]
fn reports_total(world: &mut VramWorld, size: Size) {
    let usage = world.tracker().usage();
    assert_eq!(usage.total_bytes, size.0, "{usage:?}");
    if size.0 == 0 {
        assert_eq!(usage.allocation_count, 0, "{usage:?}");
    }
}

#[then("subsequent allocations succeed")]
fn subsequent_allocations(world: &mut VramWorld) -> vramguard::Result<()> {
    let bytes = world.freed_bytes.max(1 << 20);
    let mut again = world.tracker().allocate(bytes, Purpose::ModelWeights, "model weights, again")?;
    again.copy_from_host(bytes - PATTERN.len() as u64, &PATTERN)?;
    let kv = world.tracker().allocate(64 << 20, Purpose::KVCache, "kv cache")?;
    let usage = world.tracker().usage();
    assert_eq!((usage.bytes(Purpose::ModelWeights), usage.bytes(Purpose::KVCache)), (bytes, 64 << 20), "{usage:?}");
    world.hold("model weights, again", Memory::Plain(again));
    world.hold("kv cache", Memory::Plain(kv));
    Ok(())
}
