//! Model slots without a GPU (bookkeeping-only managers): seed 000's edge cases and manual tests,
//! fit-plan eviction, pinning, minimum residency, use guards, concurrency.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vramguard::monitor::Unloader;
use vramguard::slots::presets::{self, Embedder, MODEL_SIZES};
use vramguard::slots::{
    DeviceBacking, EvictionReason, ManualClock, ModelSlotManager, SlotConfig, DEFAULT_UNLOAD_MIN_RESIDENCY,
};
use vramguard::{AllocationKind, Error, MemoryPressure, OomSource, Tracker};

fn manager_with_clock(budget: u64, clock: &ManualClock) -> ModelSlotManager<Embedder> {
    ModelSlotManager::with_config(SlotConfig {
        budget_bytes: budget,
        clock: Arc::new(clock.clone()),
        ..SlotConfig::default()
    })
}

#[test]
fn edge_case_1_budget_boundary() {
    let manager = ModelSlotManager::with_budget(1000);
    println!("BEFORE: allocated={}, available={}", manager.allocated(), manager.available());
    manager.allocate_slot(Embedder::Semantic, 1000).unwrap();
    println!("AFTER: allocated={}, available={}", manager.allocated(), manager.available());
    assert_eq!(manager.allocated(), 1000);
    assert_eq!(manager.available(), 0);
    println!("[PASS] Edge Case 1: Budget boundary respected");
}

#[test]
fn edge_case_2_over_budget_rejection_changes_nothing() {
    let manager = ModelSlotManager::with_budget(1000);
    manager.allocate_slot(Embedder::Semantic, 900).unwrap();
    println!("BEFORE: allocated={}", manager.allocated());
    let before = manager.slots();
    let result = manager.allocate_slot(Embedder::TemporalRecent, 200);
    println!("AFTER: allocated={}, result={:?}", manager.allocated(), result.as_ref().map_err(Error::code));
    let Err(Error::OutOfMemory(oom)) = result else { panic!("expected out-of-memory, got {result:?}") };
    assert_eq!((oom.requested, oom.available, oom.budget, oom.allocated), (200, Some(100), Some(1000), 900));
    assert_eq!(oom.source, OomSource::Budget);
    assert_eq!(manager.allocated(), 900);
    assert_eq!(manager.slots(), before);
    assert!(!manager.has_slot(&Embedder::TemporalRecent));
    assert_eq!(manager.stats().ooms, 1);
    println!("[PASS] Edge Case 2: Over-budget allocation rejected");
}

#[test]
fn edge_case_3_lru_candidate_after_touch() {
    let clock = ManualClock::new();
    let manager = manager_with_clock(10_000, &clock);
    manager.allocate_slot(Embedder::Semantic, 1000).unwrap();
    clock.advance(Duration::from_millis(10));
    manager.allocate_slot(Embedder::TemporalRecent, 1000).unwrap();
    clock.advance(Duration::from_millis(10));
    manager.allocate_slot(Embedder::TemporalPeriodic, 1000).unwrap();
    assert!(manager.touch(&Embedder::Semantic));
    let lru = manager.get_lru_candidate();
    println!("LRU candidate: {lru:?}");
    assert_eq!(lru, Some(Embedder::TemporalRecent));
    println!("[PASS] Edge Case 3: LRU candidate correctly identified");
}

#[test]
fn lru_order_is_defined_even_when_the_clock_stands_still() {
    let clock = ManualClock::new();
    let manager = manager_with_clock(10_000, &clock);
    for e in [Embedder::Semantic, Embedder::Code, Embedder::Graph] {
        manager.allocate_slot(e, 100).unwrap();
    }
    manager.touch(&Embedder::Semantic);
    let order: Vec<Embedder> = manager.slots().into_iter().map(|s| s.key).collect();
    assert_eq!(order, [Embedder::Code, Embedder::Graph, Embedder::Semantic]);
}

#[test]
fn manual_test_1_all_thirteen_embedders_fit_in_8_gib() {
    let manager = ModelSlotManager::new();
    let seed000 = presets::seed000();
    assert_eq!(manager.budget(), seed000.budget_bytes);
    for (embedder, size) in MODEL_SIZES {
        manager.allocate_slot(embedder, size).unwrap();
        println!(
            "{embedder}: allocated={} slots={} pressure={:?}",
            manager.allocated(),
            manager.loaded_count(),
            manager.pressure_level()
        );
    }
    assert_eq!(manager.loaded_count(), 13);
    assert_eq!(manager.allocated(), 1_600_000_000);
    assert_eq!(manager.allocated(), Embedder::preset_total_bytes());
    assert_eq!(manager.allocated(), seed000.model_bytes());
    assert!(manager.allocated() < seed000.budget_bytes);
    assert_eq!(manager.pressure_level(), MemoryPressure::Low);
    assert!(Embedder::all().all(|e| manager.has_slot(&e)));
}

#[test]
fn manual_test_2_critical_pressure_at_96_percent() {
    let manager = ModelSlotManager::with_budget(1000);
    manager.allocate_slot(Embedder::Semantic, 960).unwrap();
    assert_eq!(manager.pressure_level(), MemoryPressure::Critical);
    assert!(manager.should_evict());
}

#[test]
fn pressure_levels_follow_allocations_at_each_boundary() {
    let manager = ModelSlotManager::with_budget(1000);
    let steps = [
        (499, MemoryPressure::Low),
        (1, MemoryPressure::Medium),
        (300, MemoryPressure::High),
        (149, MemoryPressure::High),
        (1, MemoryPressure::Critical),
    ];
    for (i, (bytes, level)) in steps.into_iter().enumerate() {
        manager.allocate_slot(format!("slot {i}"), bytes).unwrap();
        assert_eq!(manager.pressure_level(), level, "after {} bytes", manager.allocated());
    }
}

#[test]
fn out_of_memory_message_has_the_seed_fields() {
    let manager = ModelSlotManager::with_config(presets::seed000().slot_config());
    for (embedder, _) in MODEL_SIZES.iter().take(12) {
        manager.allocate_slot(*embedder, 700_000_000).unwrap();
    }
    let error = manager.allocate_slot(Embedder::KeywordSplade, 500_000_000).unwrap_err();
    let text = error.to_string();
    for line in [
        "[VRAM-E002] GPU memory allocation failed: over the budget",
        "  Requested: 500,000,000 bytes",
        "  Available: 189,934,592 bytes",
        "  Total Budget: 8.00 GiB (8,589,934,592 bytes)",
        "  Currently Allocated: 8,400,000,000 bytes",
        "  Loaded Models: 12/13",
        "  By purpose: ModelWeights 7.82 GiB (8,400,000,000 bytes)",
        "  Suggestion: Evict least-recently-used model or reduce model sizes",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(error.to_json()["details"]["loaded_models"]["slots"], 13);
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let manager = ModelSlotManager::with_budget(1000);
    manager.allocate_slot("a".to_string(), 100).unwrap();
    assert_eq!(manager.allocate_slot("b".to_string(), 0).unwrap_err().code(), "VRAM-E003");
    assert_eq!(manager.allocate_slot("a".to_string(), 10).unwrap_err().code(), "VRAM-E015");
    assert_eq!(manager.load_slot("a".to_string(), 10).unwrap_err().code(), "VRAM-E015");
    assert_eq!(manager.use_slot(&"zz".to_string()).unwrap_err().code(), "VRAM-E014");
    assert_eq!(manager.pin(&"zz".to_string(), true).unwrap_err().code(), "VRAM-E014");
    assert!(!manager.touch(&"zz".to_string()));
    assert_eq!(manager.deallocate_slot(&"zz".to_string()), 0);
    assert_eq!((manager.allocated(), manager.loaded_count()), (100, 1));
    let zero = ModelSlotManager::<String>::with_budget(0);
    assert_eq!(zero.allocate_slot("x".into(), 1).unwrap_err().code(), "VRAM-E002");
}

#[test]
fn load_evicts_the_fit_plan_through_callbacks() {
    let clock = ManualClock::new();
    let manager = manager_with_clock(1000, &clock);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    manager.on_evict(move |e| sink.lock().unwrap().push((e.key, e.size_bytes, e.reason)));
    // Oldest first: three small slots, then a large one.
    for (e, size) in [(Embedder::Semantic, 100), (Embedder::Causal, 100), (Embedder::Code, 100), (Embedder::Graph, 500)]
    {
        manager.allocate_slot(e, size).unwrap();
        clock.advance(Duration::from_secs(1));
    }
    // 800 used; 300 more would be 1100: over the budget and Critical. Below critical (<= 949)
    // needs 151 freed: one slot suffices, the oldest that does is Graph (500) — fewer slots beat
    // older ones.
    assert_eq!(manager.plan_fit(300).unwrap(), [Embedder::Graph]);
    let outcome = manager.load_slot(Embedder::Entity, 300).unwrap();
    assert_eq!(outcome.evicted, [Embedder::Graph]);
    assert_eq!(*seen.lock().unwrap(), [(Embedder::Graph, 500, EvictionReason::Pressure)]);
    assert_eq!(manager.allocated(), 600);
    assert_eq!(manager.stats().evictions, 1);
    // Fits without crossing Critical: nothing evicted.
    assert_eq!(manager.load_slot(Embedder::Hdc, 300).unwrap().evicted, Vec::<Embedder>::new());
}

#[test]
fn an_impossible_fit_fails_at_once_and_evicts_nothing() {
    let manager = ModelSlotManager::with_budget(1000);
    manager.allocate_slot("idle".to_string(), 300).unwrap();
    manager.allocate_slot("pinned".to_string(), 600).unwrap();
    manager.pin(&"pinned".to_string(), true).unwrap();
    let before = manager.slots();
    // Even evicting every idle slot (300) leaves 600 + 500 > 1000.
    let error = manager.load_slot("big".to_string(), 500).unwrap_err();
    assert_eq!(error.code(), "VRAM-E002");
    assert!(manager.plan_fit(500).is_err());
    assert_eq!(manager.slots(), before);
    assert_eq!(manager.stats().evictions, 0);
    assert!(manager.load_slot("huge".to_string(), 1001).is_err());
}

#[test]
fn pinned_in_use_and_recently_loaded_slots_are_never_chosen() {
    let clock = ManualClock::new();
    let config = SlotConfig {
        budget_bytes: 1000,
        min_residency: Duration::from_secs(30),
        clock: Arc::new(clock.clone()),
        ..SlotConfig::default()
    };
    let manager = ModelSlotManager::with_config(config);
    manager.allocate_slot("pinned", 300).unwrap();
    manager.pin(&"pinned", true).unwrap();
    manager.allocate_slot("in use", 300).unwrap();
    let guard = manager.use_slot(&"in use").unwrap();
    clock.advance(Duration::from_secs(60));
    manager.allocate_slot("fresh", 300).unwrap();
    // Nothing is idle: pinned, in use, and loaded less than 30 s ago.
    assert_eq!(manager.get_lru_candidate(), None);
    assert!(manager.load_slot("new", 200).is_err());
    assert_eq!(manager.evict_lru(1000), Vec::<&str>::new());
    // Past its minimum residency, "fresh" becomes the only candidate.
    clock.advance(Duration::from_secs(31));
    assert_eq!(manager.get_lru_candidate(), Some("fresh"));
    assert_eq!(manager.load_slot("new", 200).unwrap().evicted, ["fresh"]);
    drop(guard);
    assert_eq!(manager.get_lru_candidate(), Some("in use"));
}

#[test]
fn memory_in_use_outlives_deallocation() {
    let manager = ModelSlotManager::with_budget(1000);
    manager.allocate_slot("a", 400).unwrap();
    let guard = manager.use_slot(&"a").unwrap();
    assert_eq!(manager.slot(&"a").unwrap().users, 1);
    assert_eq!(manager.deallocate_slot(&"a"), 400);
    assert!(!manager.has_slot(&"a"));
    assert_eq!(manager.allocated(), 400, "held until the guard drops");
    drop(guard);
    assert_eq!(manager.allocated(), 0);
}

#[test]
fn a_panicking_eviction_callback_is_contained() {
    let manager = ModelSlotManager::with_budget(1000);
    manager.on_evict(|_| panic!("callback bug"));
    manager.allocate_slot("a", 600).unwrap();
    let outcome = manager.load_slot("b", 600).unwrap();
    assert_eq!(outcome.evicted, ["a"]);
    assert_eq!(manager.stats().callback_panics, 1);
    assert_eq!(manager.allocated(), 600);
}

#[test]
fn sixteen_threads_never_exceed_the_budget_and_leave_it_empty() {
    let manager = ModelSlotManager::<String>::with_budget(10_000);
    let observed_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|scope| {
        for t in 0..16 {
            let manager = manager.clone();
            let observed_over = Arc::clone(&observed_over);
            scope.spawn(move || {
                for i in 0..2_000u64 {
                    let key = format!("t{t}-{}", i % 4);
                    let size = 1 + (t as u64 * 31 + i * 17) % 1500;
                    if i % 3 == 0 {
                        let _ = manager.load_slot(key.clone(), size);
                    } else {
                        let _ = manager.allocate_slot(key.clone(), size);
                    }
                    if manager.allocated() > manager.budget() {
                        observed_over.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if i % 2 == 1 {
                        manager.deallocate_slot(&key);
                    }
                }
                for i in 0..4 {
                    manager.deallocate_slot(&format!("t{t}-{i}"));
                }
            });
        }
    });
    assert!(!observed_over.load(std::sync::atomic::Ordering::Relaxed), "the budget was exceeded");
    assert_eq!((manager.allocated(), manager.loaded_count()), (0, 0));
}

/// A use guard makes a slot busy by its own count: other holders of the slot's memory (the
/// integrity pass) do not, and each guard counts once, however many there are.
#[test]
fn users_are_the_live_use_guards() {
    let clock = ManualClock::new();
    let manager = manager_with_clock(1000, &clock);
    manager.allocate_slot(Embedder::Semantic, 600).unwrap();
    let first = manager.use_slot(&Embedder::Semantic).unwrap();
    let second = manager.use_slot(&Embedder::Semantic).unwrap();
    assert_eq!(manager.slot(&Embedder::Semantic).unwrap().users, 2);
    assert!(manager.load_slot(Embedder::Code, 600).is_err(), "a slot in use was evicted");
    drop(first);
    assert_eq!(manager.slot(&Embedder::Semantic).unwrap().users, 1);
    assert_eq!(manager.get_lru_candidate(), None);
    drop(second);
    assert_eq!(manager.slot(&Embedder::Semantic).unwrap().users, 0);
    assert_eq!(manager.load_slot(Embedder::Code, 600).unwrap().evicted, [Embedder::Semantic]);
    // Integrity: a bookkeeping slot has nothing to checksum, so nothing to declare or verify.
    let guard = manager.use_slot(&Embedder::Code).unwrap();
    assert_eq!(guard.mark_loaded().unwrap(), None);
    assert!(manager.verify_integrity().is_empty());
}

/// A slot key whose `Display` panics (here: only while `panics` is set). Equality and hashing
/// ignore the switch.
#[derive(Debug, Clone)]
struct TouchyKey {
    id: u32,
    panics: Arc<AtomicBool>,
}

impl PartialEq for TouchyKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for TouchyKey {}

impl std::hash::Hash for TouchyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl std::fmt::Display for TouchyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.panics.load(Ordering::SeqCst) {
            panic!("a key that cannot be displayed");
        }
        write!(f, "touchy {}", self.id)
    }
}

/// Defect: the key stayed in the manager's `loading` set for ever when naming its allocation
/// panicked, so that every later load of it was "already allocated" (VRAM-E015). The slots are
/// backed by device 63, which no host has: the allocation is named (and the key displayed)
/// before the device refuses it, with or without a GPU.
#[test]
fn a_key_whose_display_panics_is_not_left_loading() {
    let backing = DeviceBacking { tracker: Tracker::new(63).unwrap(), kind: AllocationKind::Device };
    let manager = ModelSlotManager::on_device(backing, 1000);
    let panics = Arc::new(AtomicBool::new(true));
    let key = TouchyKey { id: 1, panics: Arc::clone(&panics) };
    for attempt in 0..2 {
        let load = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if attempt == 0 {
                manager.allocate_slot(key.clone(), 100)
            } else {
                manager.load_slot(key.clone(), 100).map(drop)
            }
        }));
        assert!(load.is_err(), "attempt {attempt}: the key's Display did not panic");
        assert_eq!((manager.allocated(), manager.loaded_count()), (0, 0), "attempt {attempt}");
    }
    panics.store(false, Ordering::SeqCst);
    let code = manager.allocate_slot(key.clone(), 100).unwrap_err().code();
    assert!(code == "VRAM-E001" || code == "VRAM-E010", "the key was left loading: {code}");
    assert_eq!(manager.load_slot(key, 100).unwrap_err().code(), code);
    assert_eq!(manager.allocated(), 0);
}

/// O1: a manager is the monitor's unloader only for the device that backs it; without device
/// memory it has nothing to give back, and says so (0 bytes), so that the monitor asks nothing.
#[test]
fn a_manager_gives_back_only_memory_on_its_own_device() {
    assert_eq!(DEFAULT_UNLOAD_MIN_RESIDENCY, Duration::from_secs(30));
    assert_eq!(SlotConfig::default().unload_min_residency, DEFAULT_UNLOAD_MIN_RESIDENCY);
    let bookkeeping = ModelSlotManager::with_budget(1000);
    bookkeeping.allocate_slot("a".to_string(), 500).unwrap();
    assert_eq!(bookkeeping.reclaimable_bytes(0), Some(0));
    assert_eq!(bookkeeping.unload_lru(0, 1), Vec::<String>::new());
    let backing = DeviceBacking { tracker: Tracker::new(63).unwrap(), kind: AllocationKind::Device };
    let on_63 = ModelSlotManager::<String>::on_device(backing, 1000);
    assert_eq!((on_63.reclaimable_bytes(0), on_63.reclaimable_bytes(63)), (Some(0), Some(0)));
    assert_eq!(bookkeeping.loaded_count(), 1);
}

/// The library assumes no application: a default configuration has no budget of its own and
/// expects no number of slots. Seed 000's 13 embedders and 8 GiB are a named preset.
#[test]
fn the_default_config_assumes_no_application_and_seed000_is_a_preset() {
    let config = SlotConfig::default();
    assert_eq!((config.budget_bytes, config.expected_slots), (u64::MAX, 0));
    let manager = ModelSlotManager::<String>::with_config(SlotConfig::default());
    manager.allocate_slot("huge".into(), 64 << 40).unwrap(); // bookkeeping only: no budget refuses it
    assert_eq!(manager.pressure_level(), MemoryPressure::Low);

    let seed000 = presets::seed000();
    assert_eq!((seed000.name, seed000.slots.len(), seed000.budget_bytes), ("seed000", 13, 8 << 30));
    assert_eq!((seed000.model_bytes(), seed000.slots[0].name.as_str()), (1_600_000_000, "E1 Semantic"));
    let names: Vec<String> = Embedder::all().map(|e| e.to_string()).collect();
    assert_eq!(seed000.slots.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), names);
    let config = seed000.slot_config();
    assert_eq!((config.budget_bytes, config.expected_slots), (8 << 30, 13));
}
