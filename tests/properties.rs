//! T1–T4 as properties: any sequence of record / adopt / deallocate keeps every counter equal to
//! what a plain model of the live set says. Bookkeeping needs no GPU, so these run everywhere.
use std::collections::HashMap;
use std::ffi::c_void;

use proptest::prelude::*;
use vramguard::{AllocationKind, Error, Purpose, Tracker};

#[derive(Debug, Clone)]
enum Op {
    Record { slot: u8, bytes: u64, purpose: Purpose },
    Adopt { slot: u8, bytes: u64, purpose: Purpose },
    Deallocate { slot: u8 },
}

fn purpose() -> impl Strategy<Value = Purpose> {
    prop::sample::select(Purpose::ALL.to_vec())
}

fn bytes() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..=4096, 1u64..=(1 << 40), Just(1u64 << 48)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..24, bytes(), purpose()).prop_map(|(slot, bytes, purpose)| Op::Record { slot, bytes, purpose }),
        (0u8..24, bytes(), purpose()).prop_map(|(slot, bytes, purpose)| Op::Adopt { slot, bytes, purpose }),
        (0u8..24).prop_map(|slot| Op::Deallocate { slot }),
    ]
}

/// Distinct, non-overlapping fake addresses: the tracker never dereferences what it records.
fn address(slot: u8) -> *const c_void {
    (0x6000_0000_0000usize + usize::from(slot) * (1usize << 49)) as *const c_void
}

#[derive(Default)]
struct Model {
    live: HashMap<u8, (u64, Purpose)>,
    peak_total: u64,
    peak_by_purpose: [u64; 4],
    lifetime: u64,
    unknown: u64,
}

impl Model {
    fn total(&self) -> u64 {
        self.live.values().map(|(b, _)| b).sum()
    }
    fn purpose_bytes(&self, purpose: Purpose) -> u64 {
        self.live.values().filter(|(_, p)| *p == purpose).map(|(b, _)| b).sum()
    }
    fn purpose_count(&self, purpose: Purpose) -> u64 {
        self.live.values().filter(|(_, p)| *p == purpose).count() as u64
    }
    fn note_peaks(&mut self) {
        self.peak_total = self.peak_total.max(self.total());
        for (i, purpose) in Purpose::ALL.iter().enumerate() {
            self.peak_by_purpose[i] = self.peak_by_purpose[i].max(self.purpose_bytes(*purpose));
        }
    }
}

fn apply(tracker: &Tracker, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Record { slot, bytes, purpose } | Op::Adopt { slot, bytes, purpose } => {
            let result = match op {
                Op::Record { .. } => tracker.record(address(slot), bytes, purpose, AllocationKind::Device, "p"),
                _ => tracker.adopt(address(slot), bytes, purpose, "p"),
            };
            if let std::collections::hash_map::Entry::Vacant(e) = model.live.entry(slot) {
                prop_assert!(result.is_ok(), "{result:?}");
                e.insert((bytes, purpose));
                model.lifetime += 1;
                model.note_peaks();
            } else {
                prop_assert!(matches!(result, Err(Error::AlreadyTracked(_))), "{result:?}");
            }
        }
        Op::Deallocate { slot } => {
            let result = tracker.forget(address(slot));
            if model.live.remove(&slot).is_some() {
                prop_assert!(result.is_ok(), "{result:?}");
            } else {
                prop_assert!(matches!(result, Err(Error::UnknownPointer(_))), "{result:?}");
                model.unknown += 1;
            }
        }
    }
    Ok(())
}

fn agrees(tracker: &Tracker, model: &Model) -> Result<(), TestCaseError> {
    let usage = tracker.usage();
    prop_assert_eq!(usage.total_bytes, model.total());
    prop_assert_eq!(tracker.total_bytes(), model.total(), "the single-value read");
    prop_assert_eq!(usage.allocation_count, model.live.len() as u64);
    prop_assert_eq!(tracker.allocation_count(), model.live.len() as u64, "the single-value read");
    prop_assert_eq!(usage.peak_total_bytes, model.peak_total);
    prop_assert_eq!(usage.lifetime_allocations, model.lifetime);
    prop_assert_eq!(usage.unknown_deallocations, model.unknown);
    for (i, purpose) in Purpose::ALL.iter().enumerate() {
        let figures = usage.purpose(*purpose);
        prop_assert_eq!(figures.bytes, model.purpose_bytes(*purpose), "{}", purpose);
        prop_assert_eq!(tracker.bytes_for(*purpose), model.purpose_bytes(*purpose), "{} single-value read", purpose);
        prop_assert_eq!(figures.count, model.purpose_count(*purpose), "{}", purpose);
        prop_assert_eq!(figures.peak_bytes, model.peak_by_purpose[i], "{}", purpose);
    }
    Ok(())
}

proptest! {
    #[test]
    fn counters_equal_the_live_set_after_every_step(ops in prop::collection::vec(op(), 1..200)) {
        let tracker = Tracker::new(0).unwrap();
        let mut model = Model::default();
        for op in &ops {
            apply(&tracker, &mut model, op)?;
            agrees(&tracker, &model)?;
        }
        // The snapshot lists exactly the live set, with each record's size and purpose.
        let mut listed: Vec<(usize, u64, Purpose)> =
            tracker.snapshot().unwrap().iter().map(|a| (a.address, a.bytes, a.purpose)).collect();
        let mut expected: Vec<(usize, u64, Purpose)> =
            model.live.iter().map(|(slot, (b, p))| (address(*slot) as usize, *b, *p)).collect();
        listed.sort();
        expected.sort();
        prop_assert_eq!(listed, expected);
    }

    #[test]
    fn concurrent_sequences_on_disjoint_pointers_sum_up(
        per_thread in prop::collection::vec(prop::collection::vec(op(), 1..100), 4)
    ) {
        let tracker = Tracker::new(0).unwrap();
        // Thread t owns slots t*24 .. t*24+23 (the strategy's slots shifted): no two threads touch
        // the same pointer, so each thread's model is exact and the totals must add up.
        let models: Vec<Model> = std::thread::scope(|scope| {
            let handles: Vec<_> = per_thread.iter().enumerate().map(|(t, ops)| {
                let tracker = tracker.clone();
                scope.spawn(move || {
                    let mut model = Model::default();
                    for op in ops {
                        let shifted = match *op {
                            Op::Record { slot, bytes, purpose } => Op::Record { slot: slot + 24 * t as u8, bytes, purpose },
                            Op::Adopt { slot, bytes, purpose } => Op::Adopt { slot: slot + 24 * t as u8, bytes, purpose },
                            Op::Deallocate { slot } => Op::Deallocate { slot: slot + 24 * t as u8 },
                        };
                        apply(&tracker, &mut model, &shifted).unwrap();
                    }
                    model
                })
            }).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let usage = tracker.usage();
        prop_assert_eq!(usage.total_bytes, models.iter().map(Model::total).sum::<u64>());
        prop_assert_eq!(usage.allocation_count, models.iter().map(|m| m.live.len() as u64).sum::<u64>());
        prop_assert_eq!(usage.lifetime_allocations, models.iter().map(|m| m.lifetime).sum::<u64>());
        prop_assert_eq!(usage.unknown_deallocations, models.iter().map(|m| m.unknown).sum::<u64>());
        for purpose in Purpose::ALL {
            prop_assert_eq!(usage.bytes(purpose), models.iter().map(|m| m.purpose_bytes(purpose)).sum::<u64>());
        }
    }
}
