//! The slot manager's integrity pass and unload plan, on bookkeeping slots given a fake device:
//! a checksum function that reads each slot's "contents" from a map the test writes, and that a
//! test can hold in the middle of a checksum run by the integrity pass's thread.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::ModelSlotManager;
use crate::checksum::Checksum;
use crate::slots::slot::{lock, ChecksumFn, SlotMemory};
use crate::slots::{ManualClock, SlotConfig};

/// Checksums run on a thread of this name wait while the fake device is held.
const PASS_THREAD: &str = "integrity-pass";
/// A generous bound on a wait (a hang is a failure, not a timing).
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct FakeDevice {
    contents: Mutex<HashMap<usize, u64>>,
    calls: AtomicUsize,
    held: Mutex<bool>,
    released: Condvar,
    entered: Mutex<Option<mpsc::Sender<()>>>,
}

impl FakeDevice {
    fn write(&self, memory_id: usize, value: u64) {
        lock(&self.contents).insert(memory_id, value);
    }

    /// From now on, a checksum on the pass thread tells `entered` and waits for `release`.
    fn hold(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        *lock(&self.entered) = Some(tx);
        *lock(&self.held) = true;
        rx
    }

    fn release(&self) {
        *lock(&self.held) = false;
        self.released.notify_all();
    }

    fn checksum(self: &Arc<Self>) -> ChecksumFn {
        let device = Arc::clone(self);
        Arc::new(move |memory: &SlotMemory, _deadline| {
            device.calls.fetch_add(1, Ordering::SeqCst);
            if std::thread::current().name() == Some(PASS_THREAD) {
                if let Some(entered) = lock(&device.entered).as_ref() {
                    let _ = entered.send(());
                }
                let mut held = lock(&device.held);
                while *held {
                    held = device.released.wait(held).unwrap();
                }
            }
            let id = memory as *const SlotMemory as usize;
            Some(Ok(sum(lock(&device.contents).get(&id).copied().unwrap_or(0))))
        })
    }
}

fn sum(value: u64) -> Checksum {
    Checksum { lo: value, hi: !value }
}

fn manager(budget: u64, device: &Arc<FakeDevice>) -> ModelSlotManager<&'static str> {
    let config = SlotConfig { budget_bytes: budget, unload_min_residency: Duration::ZERO, ..SlotConfig::default() };
    ModelSlotManager::with_checksum(config, device.checksum())
}

fn spawn_pass(
    manager: &ModelSlotManager<&'static str>,
) -> std::thread::JoinHandle<Vec<super::IntegrityViolation<&'static str>>> {
    let manager = manager.clone();
    std::thread::Builder::new().name(PASS_THREAD.into()).spawn(move || manager.verify_integrity()).unwrap()
}

/// Runs `f` on another thread and waits for it: a call that blocks on a lock held elsewhere
/// fails the test instead of hanging it.
fn within_patience<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("{what} blocked: the slot table is locked during a checksum"))
}

/// Defect: the integrity pass cloned every slot's memory handle, and idleness was judged by the
/// handle's strong count, so that during every check each slot looked in use: a load needing an
/// eviction failed with out-of-memory, and an unload at Critical freed nothing.
#[test]
fn a_slot_being_checksummed_is_idle_and_its_eviction_waits_for_the_checksum() {
    let device = Arc::new(FakeDevice::default());
    let manager = manager(1000, &device);
    manager.allocate_slot("a", 600).unwrap();
    manager.use_slot(&"a").unwrap().mark_loaded().unwrap();
    let (evicting_tx, evicting) = mpsc::channel();
    manager.on_evict(move |e| {
        let _ = evicting_tx.send(e.key);
    });

    let entered = device.hold();
    let pass = spawn_pass(&manager);
    entered.recv_timeout(PATIENCE).expect("the pass never reached the checksum");
    // The pass holds "a" right now: it is still idle, unused, and the unload plan can take it.
    assert_eq!(manager.slot(&"a").unwrap().users, 0);
    assert_eq!(manager.get_lru_candidate(), Some("a"));
    assert_eq!(manager.plan_unload(600), Some(vec!["a"]));
    assert_eq!(manager.plan_fit(600).unwrap(), ["a"]);

    let loader = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.load_slot("b", 600))
    };
    assert_eq!(evicting.recv_timeout(PATIENCE), Ok("a"), "the load did not evict the slot being checksummed");
    // The eviction took "a" out of the table while the pass still reads its memory: that memory
    // (and its 600 budget bytes) stays until the checksum is done; then the load goes on.
    assert!(!manager.has_slot(&"a"));
    device.release();
    let outcome = loader.join().unwrap().expect("the load that needed an eviction failed");
    assert_eq!(outcome.evicted, ["a"]);
    assert_eq!((manager.allocated(), manager.loaded_count()), (600, 1));
    assert!(pass.join().unwrap().is_empty(), "a slot evicted during its check is no violation");
}

#[test]
fn an_unload_at_critical_takes_a_slot_being_checksummed() {
    let device = Arc::new(FakeDevice::default());
    let manager = manager(1000, &device);
    manager.allocate_slot("a", 600).unwrap();
    manager.use_slot(&"a").unwrap().mark_loaded().unwrap();
    let entered = device.hold();
    let pass = spawn_pass(&manager);
    entered.recv_timeout(PATIENCE).unwrap();
    let (evicting_tx, evicting) = mpsc::channel();
    manager.on_evict(move |e| {
        let _ = evicting_tx.send(e.key);
    });
    let unloader = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.unload(500))
    };
    // The unload takes "a" while the pass reads it, then waits for the checksum to free it.
    assert_eq!(evicting.recv_timeout(PATIENCE), Ok("a"), "the unload at Critical freed nothing");
    device.release();
    assert_eq!(unloader.join().unwrap(), ["a"]);
    assert_eq!(manager.allocated(), 0, "the memory came back when the checksum ended");
    assert!(pass.join().unwrap().is_empty());
}

#[test]
fn a_slot_has_no_integrity_reference_until_its_holder_declares_it_loaded() {
    let device = Arc::new(FakeDevice::default());
    let manager = manager(1000, &device);
    manager.allocate_slot("a", 100).unwrap();
    let slot = manager.use_slot(&"a").unwrap();
    // Not written yet (whatever the memory holds): no reference, nothing checksummed, no violation.
    device.write(slot.memory_id(), 0xdead);
    assert!(manager.verify_integrity().is_empty());
    assert_eq!(device.calls.load(Ordering::SeqCst), 0, "a slot without a reference was checksummed");
    assert_eq!(slot.integrity_reference(), None);

    device.write(slot.memory_id(), 7); // the weights are uploaded
    assert_eq!(slot.mark_loaded().unwrap(), Some(sum(7)));
    assert_eq!(slot.integrity_reference(), Some(sum(7)));
    assert!(manager.verify_integrity().is_empty());

    device.write(slot.memory_id(), 8); // a stray write
    let violations = manager.verify_integrity();
    assert_eq!(violations.len(), 1);
    assert_eq!((violations[0].key, violations[0].size_bytes, violations[0].expected), ("a", 100, sum(7)));
    assert_eq!(violations[0].actual, Ok(sum(8)));

    assert_eq!(slot.mark_loaded().unwrap(), Some(sum(8)), "declared again after a rewrite");
    assert!(manager.verify_integrity().is_empty());
}

#[test]
fn a_reference_lands_in_the_entry_it_was_taken_from_not_one_reloaded_under_its_key() {
    let device = Arc::new(FakeDevice::default());
    let manager = manager(1000, &device);
    manager.allocate_slot("a", 100).unwrap();
    let old = manager.use_slot(&"a").unwrap();
    device.write(old.memory_id(), 1);
    // The key is reloaded while the old entry's holder still uploads into it.
    manager.deallocate_slot(&"a");
    manager.allocate_slot("a", 100).unwrap();
    let new = manager.use_slot(&"a").unwrap();
    assert_ne!(old.memory_id(), new.memory_id());
    device.write(new.memory_id(), 2);
    assert_eq!(new.mark_loaded().unwrap(), Some(sum(2)));
    // The old holder declares its bytes loaded last: the reference is its own entry's.
    assert_eq!(old.mark_loaded().unwrap(), Some(sum(1)));
    assert_eq!(new.integrity_reference(), Some(sum(2)));
    assert!(manager.verify_integrity().is_empty(), "the new entry was given the old one's reference");
    drop(old);
    assert_eq!(manager.allocated(), 100, "the old entry's memory went with its last guard");
}

#[test]
fn no_checksum_runs_under_the_slot_table_lock() {
    let device = Arc::new(FakeDevice::default());
    let manager = manager(1000, &device);
    manager.allocate_slot("a", 100).unwrap();
    manager.use_slot(&"a").unwrap().mark_loaded().unwrap();
    let entered = device.hold();
    let pass = spawn_pass(&manager);
    entered.recv_timeout(PATIENCE).unwrap();
    // In the middle of the pass's checksum every call that takes the table lock goes through.
    let m = manager.clone();
    within_patience("the slot table", move || {
        assert_eq!(m.slots().len(), 1);
        assert!(m.touch(&"a"));
        m.allocate_slot("b", 100).unwrap();
        m.pin(&"b", true).unwrap();
        assert_eq!(m.deallocate_slot(&"b"), 100);
        drop(m.use_slot(&"a").unwrap());
    });
    device.release();
    assert!(pass.join().unwrap().is_empty());

    // mark_loaded's checksum runs outside the lock too.
    let m = manager.clone();
    let entered = device.hold();
    let marker = std::thread::Builder::new()
        .name(PASS_THREAD.into())
        .spawn(move || m.use_slot(&"a").unwrap().mark_loaded().map(|_| ()))
        .unwrap();
    entered.recv_timeout(PATIENCE).unwrap();
    let m = manager.clone();
    within_patience("the slot table during mark_loaded", move || m.slots().len());
    device.release();
    marker.join().unwrap().unwrap();
}

#[test]
fn a_reference_declared_during_a_check_is_not_compared_with_the_old_one() {
    let device = Arc::new(FakeDevice::default());
    let manager = manager(1000, &device);
    manager.allocate_slot("a", 100).unwrap();
    let slot = manager.use_slot(&"a").unwrap();
    device.write(slot.memory_id(), 1);
    slot.mark_loaded().unwrap();
    let entered = device.hold();
    let pass = spawn_pass(&manager);
    entered.recv_timeout(PATIENCE).unwrap();
    // New weights and a new reference while the pass is reading the old ones.
    device.write(slot.memory_id(), 2);
    slot.mark_loaded().unwrap();
    device.release();
    assert!(pass.join().unwrap().is_empty(), "a check raced with a new declaration and reported it");
    assert!(manager.verify_integrity().is_empty());
}

#[test]
fn a_failed_checksum_at_mark_loaded_leaves_the_reference_as_it_was() {
    let failing: ChecksumFn = Arc::new(|_: &SlotMemory, _| Some(Err(crate::Error::Cuda("scripted".into()))));
    let manager = ModelSlotManager::with_checksum(SlotConfig { budget_bytes: 100, ..SlotConfig::default() }, failing);
    manager.allocate_slot("a", 10).unwrap();
    let slot = manager.use_slot(&"a").unwrap();
    assert_eq!(slot.mark_loaded().unwrap_err().code(), "VRAM-E011");
    assert_eq!(slot.integrity_reference(), None);
    assert!(manager.verify_integrity().is_empty());
}

#[test]
fn a_bookkeeping_slot_has_nothing_to_declare() {
    let manager = ModelSlotManager::<&str>::with_budget(100);
    manager.allocate_slot("a", 10).unwrap();
    let slot = manager.use_slot(&"a").unwrap();
    assert_eq!(slot.mark_loaded().unwrap(), None);
    assert_eq!(slot.integrity_reference(), None);
    assert!(manager.verify_integrity().is_empty());
    assert!(slot.copy_from_host(0, &[1]).is_err_and(|e| e.code() == "VRAM-E007"));
}

/// O1 at Critical: all the bytes or nothing, never a slot loaded less than the unload residency
/// ago (30 s by default), and only idle slots.
#[test]
fn the_unload_plan_is_all_or_nothing_and_respects_the_unload_residency() {
    let clock = ManualClock::new();
    let config = SlotConfig { budget_bytes: 10_000, clock: Arc::new(clock.clone()), ..SlotConfig::default() };
    assert_eq!(config.unload_min_residency, Duration::from_secs(30), "the default");
    let manager = ModelSlotManager::with_config(config);
    manager.allocate_slot("old", 300).unwrap();
    clock.advance(Duration::from_secs(20));
    manager.allocate_slot("mid", 200).unwrap();
    clock.advance(Duration::from_secs(15));
    manager.allocate_slot("new", 100).unwrap();
    // At 35 s only "old" has been resident 30 s.
    assert_eq!(manager.unloadable_bytes(), 300);
    assert_eq!(manager.plan_unload(300), Some(vec!["old"]));
    assert_eq!(manager.plan_unload(301), None, "old alone cannot free 301: nothing");
    assert_eq!(manager.unload(301), Vec::<&str>::new());
    assert_eq!(manager.loaded_count(), 3);
    // load_slot's own eviction is not bound by it (min_residency is 0).
    assert_eq!(manager.plan_fit(10_000 - 600 + 450).unwrap(), ["old", "mid"]);

    clock.advance(Duration::from_secs(15)); // 50 s: "mid" too, not "new"
    assert_eq!(manager.unloadable_bytes(), 500);
    assert_eq!(manager.plan_unload(450), Some(vec!["old", "mid"]));
    let _in_use = manager.use_slot(&"old").unwrap();
    assert_eq!(manager.plan_unload(250), None, "old is in use, mid alone frees 200");
    assert_eq!(manager.plan_unload(150), Some(vec!["mid"]));
    assert_eq!(manager.unload(150), ["mid"]);
    assert_eq!(manager.allocated(), 400);
}

#[test]
fn an_unload_residency_of_zero_is_allowed_and_min_residency_still_applies() {
    let clock = ManualClock::new();
    let config = SlotConfig {
        budget_bytes: 1000,
        min_residency: Duration::from_secs(5),
        unload_min_residency: Duration::ZERO,
        clock: Arc::new(clock.clone()),
        ..SlotConfig::default()
    };
    let manager = ModelSlotManager::with_config(config);
    manager.allocate_slot("a", 100).unwrap();
    assert_eq!(manager.plan_unload(1), None, "min_residency (5 s) still protects it");
    clock.advance(Duration::from_secs(5));
    assert_eq!(manager.unload(1), ["a"]);
}

/// A plan that no longer holds when the unload takes it (a slot of it went into use meanwhile)
/// evicts nothing: a part of the plan would not bring the device below Critical.
#[test]
fn an_unload_whose_plan_no_longer_holds_evicts_nothing() {
    let config = SlotConfig { budget_bytes: 1000, unload_min_residency: Duration::ZERO, ..SlotConfig::default() };
    let manager = ModelSlotManager::with_config(config);
    manager.allocate_slot("a", 300).unwrap();
    manager.allocate_slot("b", 300).unwrap();
    let plan = manager.plan_unload(600).unwrap();
    assert_eq!(plan, ["a", "b"]);
    let _in_use = manager.use_slot(&"b").unwrap();
    let unload = super::AllOrNothing(true);
    let evicted = manager.evict_with(&plan, super::EvictionReason::Unload, Duration::ZERO, unload);
    assert!(evicted.is_empty(), "evicted {evicted:?}");
    assert_eq!((manager.loaded_count(), manager.stats().evictions), (2, 0));
    assert_eq!(manager.unload(600), Vec::<&str>::new());
    assert_eq!(manager.unload(300), ["a"]);
}

/// A load that fails gives back its own slot only: while it ran, another thread deallocated the
/// key and loaded it again, and that new slot stays (removing "whatever slot has the key" took it).
#[test]
fn a_failed_load_removes_its_own_slot_not_a_newer_one_under_the_same_key() {
    let manager =
        ModelSlotManager::<&'static str>::with_config(SlotConfig { budget_bytes: 1000, ..SlotConfig::default() });
    let failing = manager.try_load_once(&"e1", 300).unwrap();
    assert_eq!(manager.deallocate_slot(&"e1"), 300, "another thread unloads the slot mid-load");
    let newer = manager.try_load_once(&"e1", 200).unwrap();
    let newer_id = newer.memory_id();
    drop(newer);
    let failing_id = failing.memory_id();
    drop(failing);
    manager.abandon_load(&"e1", failing_id);
    let kept = manager.use_slot(&"e1").expect("the newer slot survives the older load's failure");
    assert_eq!((kept.memory_id(), manager.slot(&"e1").unwrap().size_bytes), (newer_id, 200));
    assert_eq!(manager.allocated(), 200, "the failed load's 300 bytes went back to the budget");
    drop(kept);
    // Its own slot, still there: removed.
    let failing = manager.try_load_once(&"e2", 100).unwrap().memory_id();
    manager.abandon_load(&"e2", failing);
    assert!(!manager.has_slot(&"e2"));
    assert_eq!(manager.allocated(), 200);
}
