//! A worker whose VRAM is a budget (`Budget` + `BudgetedAllocator`): allocations charged before
//! the device is asked, refusals with the figures that explain them and no change of state.
use cucumber::{given, then, when};
use vramguard::format::{bytes_exact, bytes_human};
use vramguard::{Budget, BudgetedAllocator, Error, Purpose};

use super::params::{Code, PurposeName, Size};
use super::world::{Memory, VramWorld};

fn budgeted_worker(world: &mut VramWorld, budget: Budget) -> vramguard::Result<()> {
    world.start_worker()?;
    world.allocator = Some(BudgetedAllocator::new(world.tracker().clone(), budget));
    Ok(())
}

fn allocator(world: &VramWorld) -> &BudgetedAllocator {
    world.allocator.as_ref().expect("no budget: a Given step sets one")
}

#[given(expr = "a worker with {size} VRAM available")]
fn worker_with_budget(world: &mut VramWorld, size: Size) -> vramguard::Result<()> {
    budgeted_worker(world, Budget::new(size.0)?)
}

#[given(expr = "a worker with {size} VRAM available, of which at most {size} for {purpose}")]
fn worker_with_purpose_budget(
    world: &mut VramWorld,
    size: Size,
    share: Size,
    purpose: PurposeName,
) -> vramguard::Result<()> {
    budgeted_worker(world, Budget::builder(size.0).purpose_limit(purpose.0, share.0).build()?)
}

#[given(expr = "{size} already allocated for {purpose}")]
fn already_allocated(world: &mut VramWorld, size: Size, purpose: PurposeName) -> vramguard::Result<()> {
    let name = format!("{purpose:?} already allocated");
    let buffer = allocator(world).allocate(size.0, purpose.0, &name)?;
    world.hold(&name, Memory::Budgeted(buffer));
    Ok(())
}

#[when(expr = "the worker attempts to allocate {size} for {purpose}")]
fn attempt_allocation(world: &mut VramWorld, size: Size, purpose: PurposeName) {
    let name = format!("{} for {}", bytes_exact(size.0), purpose.0);
    if let Some(buffer) = world.attempt(|w| allocator(w).allocate(size.0, purpose.0, &name)) {
        world.hold(&name, Memory::Budgeted(buffer));
    }
}

#[then("the allocation succeeds")]
fn succeeds(world: &mut VramWorld) {
    if let Err(error) = &world.last_attempt().result {
        panic!("the allocation failed: {error}");
    }
}

#[then(expr = "the allocation succeeds and the budget has {size} available")]
fn succeeds_leaving(world: &mut VramWorld, size: Size) {
    succeeds(world);
    assert_eq!(allocator(world).budget().available(), size.0);
}

#[then(regex = r"^the (?:allocation|load) fails with (VRAM_OOM|VRAM-E\d{3})(?: error)?$")]
fn fails_with(world: &mut VramWorld, code: Code) {
    let error = match &world.last_attempt().result {
        Ok(()) => panic!("the attempt succeeded; expected {}", code.0),
        Err(error) => error,
    };
    assert_eq!(error.code(), code.0, "{error}");
    assert!(error.to_string().starts_with(&format!("[{}]", code.0)), "{error}");
    assert!(!error.remediation().is_empty());
}

/// The seed's shorthand, e.g. "ModelWeights: 1.5GB, requested: 1GB, available: 0.5GB": each
/// figure must be in the error's fields and in its message, the way the message writes it.
#[then(expr = "the error message includes {string}")]
fn message_includes(world: &mut VramWorld, expected: String) {
    let error = world.last_attempt().result.as_ref().expect_err("the attempt succeeded");
    let Error::OutOfMemory(oom) = error else { panic!("not an out-of-memory error: {error}") };
    let message = error.to_string();
    for item in expected.split(", ") {
        let (label, size) = item.split_once(": ").unwrap_or_else(|| panic!("{item:?} is not \"label: size\""));
        let bytes = size.parse::<Size>().unwrap_or_else(|e| panic!("{e}")).0;
        let (field, text) = match label {
            "requested" => (Some(oom.requested), format!("Requested: {} bytes", bytes_exact(bytes))),
            "available" => (oom.available, format!("Available: {} bytes", bytes_exact(bytes))),
            purpose => {
                let purpose = Purpose::ALL.into_iter().find(|p| p.to_string() == purpose);
                let purpose = purpose.unwrap_or_else(|| panic!("unknown label {label:?}"));
                (Some(oom.usage.bytes(purpose)), format!("{purpose} {}", bytes_human(bytes)))
            }
        };
        assert_eq!(field, Some(bytes), "{label} in the error's figures:\n{message}");
        assert!(message.contains(&text), "{text:?} missing from:\n{message}");
    }
}

#[then("the budget and the tracker are unchanged")]
fn unchanged(world: &mut VramWorld) {
    let (before, now) = (&world.last_attempt().before, world.state());
    assert_eq!(now.budget, before.budget, "the budget changed");
    assert_eq!(now.usage, before.usage, "the tracker changed");
}
