//! Residency: memory a RAM fallback would produce (managed, pinned host) is a violation that
//! verification names, until it is freed.
use cucumber::{given, then, when};
use vramguard::{AllocationKind, Purpose, PurposeSet};

use super::params::{Kind, Size};
use super::world::{Memory, VramWorld};

fn allocate(world: &mut VramWorld, size: Size, kind: AllocationKind, name: &str) -> vramguard::Result<()> {
    let buffer = world.tracker().allocate_kind(size.0, Purpose::ModelWeights, kind, name)?;
    world.hold(name, Memory::Plain(buffer));
    Ok(())
}

#[given(expr = "{size} of model weights in device memory as {string}")]
fn device_weights(world: &mut VramWorld, size: Size, name: String) -> vramguard::Result<()> {
    allocate(world, size, AllocationKind::Device, &name)
}

#[when(expr = "{size} of model weights fall back to {kind} memory as {string}")]
fn fallback_weights(world: &mut VramWorld, size: Size, kind: Kind, name: String) -> vramguard::Result<()> {
    allocate(world, size, kind.0, &name)
}

#[when(expr = "the worker frees {string}")]
fn free(world: &mut VramWorld, name: String) {
    world.free(&name);
}

#[then(expr = "residency verification reports the violation {string}: {kind} memory of type {word}, not device memory")]
fn violation(world: &mut VramWorld, name: String, kind: Kind, memory_type: String) -> vramguard::Result<()> {
    let report = world.tracker().verify(PurposeSet::ALL)?;
    assert!(!report.resident, "{report:?}");
    let [found] = report.violations.as_slice() else { panic!("expected one violation: {report:?}") };
    assert_eq!((found.description.as_str(), found.kind, found.purpose), (name.as_str(), kind.0, Purpose::ModelWeights));
    assert_eq!(found.memory_type.to_string(), memory_type);
    assert_eq!(found.reason.to_string(), "not device memory");
    Ok(())
}

#[then(expr = "residency verification passes with {int} allocation(s) checked")]
fn passes(world: &mut VramWorld, checked: u64) -> vramguard::Result<()> {
    let report = world.tracker().verify(PurposeSet::ALL)?;
    assert!(report.resident && report.violations.is_empty(), "{report:?}");
    assert_eq!(report.checked, checked);
    Ok(())
}
