//! `ModelSlotManager`: zero sizes, duplicate and unknown keys, requests over the budget, loads no
//! eviction plan can make room for, and device refusals. A refusal leaves every slot, the budget
//! and the eviction count as they were.
use vramguard::slots::{DeviceBacking, ModelSlot, ModelSlotManager};
use vramguard::{AllocationKind, Error, OomSource, Tracker};

use super::{code, is_unusable_device, UNUSABLE_DEVICE};

type Manager = ModelSlotManager<String>;

/// A 1000-byte budget holding "a" (300, least recently used) and "b" (200).
fn manager() -> Manager {
    let manager = Manager::with_budget(1000);
    manager.allocate_slot("a".into(), 300).unwrap();
    manager.allocate_slot("b".into(), 200).unwrap();
    manager
}

/// Slots (LRU order, with pins and users), bytes held, evictions so far.
fn state(manager: &Manager) -> (Vec<ModelSlot<String>>, u64, u64) {
    (manager.slots(), manager.allocated(), manager.stats().evictions)
}

fn rejects<T>(manager: &Manager, expected: &str, what: &str, call: impl FnOnce(&Manager) -> vramguard::Result<T>) {
    let before = state(manager);
    assert_eq!(code(call(manager)), expected, "{what}");
    assert_eq!(state(manager), before, "{what}: the slots changed");
}

fn key(name: &str) -> String {
    name.to_string()
}

#[test]
fn a_zero_byte_slot_is_e003() {
    let m = manager();
    rejects(&m, "VRAM-E003", "allocate_slot", |m| m.allocate_slot(key("c"), 0));
    rejects(&m, "VRAM-E003", "load_slot", |m| m.load_slot(key("c"), 0));
}

#[test]
fn a_duplicate_key_is_e015_whatever_the_size() {
    let m = manager();
    for bytes in [1, 300, 5000] {
        rejects(&m, "VRAM-E015", &format!("allocate_slot a {bytes}"), |m| m.allocate_slot(key("a"), bytes));
        rejects(&m, "VRAM-E015", &format!("load_slot a {bytes}"), |m| m.load_slot(key("a"), bytes));
    }
}

#[test]
fn an_unknown_key_is_e014_for_use_and_pin() {
    let m = manager();
    rejects(&m, "VRAM-E014", "use_slot", |m| m.use_slot(&key("zz")));
    rejects(&m, "VRAM-E014", "pin", |m| m.pin(&key("zz"), true));
    rejects(&m, "VRAM-E014", "unpin", |m| m.pin(&key("zz"), false));
}

#[test]
fn an_unknown_key_is_a_no_op_for_touch_and_deallocate() {
    let m = manager();
    let before = state(&m);
    assert!(!m.touch(&key("zz")));
    assert_eq!(m.deallocate_slot(&key("zz")), 0);
    assert_eq!(m.deallocate_slot(&key("")), 0);
    assert_eq!(state(&m), before);
}

#[test]
fn allocate_slot_over_the_budget_is_e002_and_evicts_nothing() {
    let m = manager();
    for bytes in [501, 1001, u64::MAX] {
        rejects(&m, "VRAM-E002", &format!("allocate_slot {bytes}"), |m| m.allocate_slot(key("c"), bytes));
    }
    let Err(Error::OutOfMemory(oom)) = m.allocate_slot(key("c"), 501) else { panic!("not an out-of-memory") };
    assert_eq!((oom.source, oom.requested, oom.available, oom.budget), (OomSource::Budget, 501, Some(500), Some(1000)));
}

#[test]
fn load_slot_larger_than_the_budget_fails_at_once_and_evicts_nothing() {
    let m = manager();
    for bytes in [1001, u64::MAX] {
        rejects(&m, "VRAM-E002", &format!("load_slot {bytes}"), |m| m.load_slot(key("c"), bytes));
    }
}

#[test]
fn load_slot_that_only_busy_slots_could_make_room_for_evicts_nothing() {
    let m = manager();
    m.pin(&key("a"), true).unwrap();
    let _in_use = m.use_slot(&key("b")).unwrap();
    rejects(&m, "VRAM-E002", "load 600 with a pinned, b in use", |m| m.load_slot(key("c"), 600));
}

#[test]
fn plan_fit_over_the_budget_is_e002_and_evicts_nothing() {
    let m = manager();
    for bytes in [1001, u64::MAX] {
        rejects(&m, "VRAM-E002", &format!("plan_fit {bytes}"), |m| m.plan_fit(bytes));
    }
}

#[test]
fn a_zero_budget_refuses_every_slot_with_e002() {
    let m = Manager::with_budget(0);
    rejects(&m, "VRAM-E002", "allocate_slot", |m| m.allocate_slot(key("a"), 1));
    rejects(&m, "VRAM-E002", "load_slot", |m| m.load_slot(key("a"), 1));
    rejects(&m, "VRAM-E002", "plan_fit", |m| m.plan_fit(1));
}

/// Slots backed by device 63: a budget refusal reads E002, not E001/E010, so the budget was asked
/// first and the device never.
#[test]
fn a_slot_over_the_budget_is_refused_before_the_device_is_touched() {
    let backing = DeviceBacking { tracker: Tracker::new(UNUSABLE_DEVICE).unwrap(), kind: AllocationKind::Device };
    let m = Manager::on_device(backing, 1000);
    rejects(&m, "VRAM-E002", "allocate_slot", |m| m.allocate_slot(key("a"), 1001));
    rejects(&m, "VRAM-E002", "load_slot", |m| m.load_slot(key("a"), 1001));
}

/// The device refuses a slot that fits the budget: no slot, no charge, no half-loaded key (the
/// same load fails the same way again, not with VRAM-E015).
#[test]
fn a_device_refusal_leaves_no_slot_no_charge_and_no_reserved_key() {
    let tracker = Tracker::new(UNUSABLE_DEVICE).unwrap();
    let m = Manager::on_device(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device }, 1000);
    let allocate = || m.allocate_slot(key("a"), 100);
    let load = || m.load_slot(key("a"), 100).map(drop);
    let calls: [(&str, &dyn Fn() -> vramguard::Result<()>); 2] = [("allocate_slot", &allocate), ("load_slot", &load)];
    for attempt in 0..2 {
        for (what, call) in calls {
            let code = code(call());
            assert!(is_unusable_device(code), "{what} #{attempt}: {code}");
            assert_eq!((m.loaded_count(), m.allocated(), m.has_slot(&key("a"))), (0, 0, false), "{what} #{attempt}");
        }
    }
    assert_eq!(tracker.usage().lifetime_allocations, 0);
}
