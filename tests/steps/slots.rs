//! Model slots: seed 000's bookkeeping manager (no GPU) and the device-backed one, whose slots
//! own real device memory; LRU order, pinning, eviction by fit plan, pressure levels.
use std::sync::Arc;
use std::time::Duration;

use cucumber::{given, then, when};
use vramguard::slots::{DeviceBacking, ManualClock, ModelSlotManager, SlotConfig};
use vramguard::AllocationKind;

use super::params::{Level, Names, PurposeName, Size};
use super::world::VramWorld;

fn slot_names(world: &VramWorld) -> Vec<String> {
    world.slots().slots().into_iter().map(|slot| slot.key).collect()
}

#[given(expr = "a slot manager with a budget of {size}")]
fn bookkeeping_manager(world: &mut VramWorld, budget: Size) {
    world.slots = Some(ModelSlotManager::with_budget(budget.0));
}

#[given(expr = "a slot manager with a budget of {size} and a manual clock")]
fn manager_with_clock(world: &mut VramWorld, budget: Size) {
    // The seed sleeps 10 ms between allocations; a manual clock makes the order certain.
    let clock = ManualClock::new();
    let config = SlotConfig { budget_bytes: budget.0, clock: Arc::new(clock.clone()), ..SlotConfig::default() };
    world.slots = Some(ModelSlotManager::with_config(config));
    world.clock = Some(clock);
}

#[given(expr = "a device-backed slot manager with a budget of {size}")]
fn device_manager(world: &mut VramWorld, budget: Size) -> vramguard::Result<()> {
    world.start_worker()?;
    let backing = DeviceBacking { tracker: world.tracker().clone(), kind: AllocationKind::Device };
    world.slots = Some(ModelSlotManager::on_device(backing, budget.0));
    Ok(())
}

#[given(expr = "model {string} of {size} is allocated")]
fn allocated(world: &mut VramWorld, name: String, size: Size) -> vramguard::Result<()> {
    world.slots().allocate_slot(name, size.0)
}

#[given(expr = "models {names} of {size} each are allocated {int} ms apart")]
fn allocated_apart(world: &mut VramWorld, names: Names, size: Size, ms: u64) -> vramguard::Result<()> {
    let clock = world.clock.clone().expect("a manual clock");
    for name in names.0 {
        world.slots().allocate_slot(name, size.0)?;
        clock.advance(Duration::from_millis(ms));
    }
    Ok(())
}

#[given(expr = "models {names} of {size} each are loaded in that order")]
fn loaded_in_order(world: &mut VramWorld, names: Names, size: Size) -> vramguard::Result<()> {
    for name in names.0 {
        let outcome = world.slots().load_slot(name.clone(), size.0)?;
        assert!(outcome.evicted.is_empty(), "loading {name} evicted {:?}", outcome.evicted);
    }
    Ok(())
}

#[given(expr = "model {string} is touched")]
fn touched(world: &mut VramWorld, name: String) {
    touch(world, name);
}

#[when(expr = "model {string} is touched")]
fn touch(world: &mut VramWorld, name: String) {
    if let Some(clock) = &world.clock {
        clock.advance(Duration::from_millis(10));
    }
    assert!(world.slots().touch(&name), "no slot {name:?}");
}

#[given(expr = "model {string} is pinned")]
fn pinned(world: &mut VramWorld, name: String) -> vramguard::Result<()> {
    world.slots().pin(&name, true)
}

#[when(expr = "model {string} of {size} is allocated")]
fn attempt_allocation(world: &mut VramWorld, name: String, size: Size) {
    world.attempt(|w| w.slots().allocate_slot(name, size.0));
}

#[when(expr = "model {string} of {size} is loaded")]
fn attempt_load(world: &mut VramWorld, name: String, size: Size) {
    let outcome = world.attempt(|w| w.slots().load_slot(name, size.0));
    world.evicted = outcome.map(|o| o.evicted).unwrap_or_default();
}

#[when(expr = "the worker evicts least-recently-used models to free {size}")]
fn evict_lru(world: &mut VramWorld, size: Size) {
    let before = world.free_bytes();
    world.evicted = world.slots().evict_lru(size.0);
    world.free_around_eviction = Some((before, world.free_bytes()));
}

#[then(expr = "the evicted models are {names}")]
fn evicted(world: &mut VramWorld, names: Names) {
    assert_eq!(world.evicted, names.0);
    assert_eq!(world.slots().stats().evictions, names.0.len() as u64);
}

#[then(expr = "the slots are {names}, least recently used first")]
fn slots_in_lru_order(world: &mut VramWorld, names: Names) {
    assert_eq!(slot_names(world), names.0);
}

#[then("no model was evicted and the slots are unchanged")]
fn nothing_evicted(world: &mut VramWorld) {
    assert!(world.evicted.is_empty(), "evicted {:?}", world.evicted);
    let before = world.last_attempt().before.slots.clone().expect("slots read before the attempt");
    assert_eq!((world.slots().slots(), world.slots().stats().evictions), (before.0, before.1.evictions));
}

#[then(expr = "the LRU candidate is {string}")]
fn lru_candidate(world: &mut VramWorld, name: String) {
    assert_eq!(world.slots().get_lru_candidate(), Some(name));
}

#[then(expr = "the slot manager has {size} allocated and {size} available")]
fn budget_figures(world: &mut VramWorld, allocated: Size, available: Size) {
    let slots = world.slots();
    assert_eq!((slots.allocated(), slots.available()), (allocated.0, available.0));
}

#[then(regex = r"^the pressure level is (Low|Medium|High|Critical) and eviction is (advised|not advised)$")]
fn pressure(world: &mut VramWorld, level: Level, advice: String) {
    let slots = world.slots();
    assert_eq!(slots.pressure_level(), level.0);
    assert_eq!(slots.should_evict(), advice == "advised");
}

#[then(expr = "the tracker holds {size} for {purpose}")]
fn tracker_holds(world: &mut VramWorld, size: Size, purpose: PurposeName) {
    let tracker = world.tracker();
    assert_eq!(tracker.bytes_for(purpose.0), size.0, "{}", tracker.report().unwrap_or_default());
    // Model slots are exactly what the tracker holds: their memory is real.
    let slotted: u64 = world.slots().slots().iter().filter(|s| s.on_device).map(|s| s.size_bytes).sum();
    assert_eq!(slotted, size.0);
}
