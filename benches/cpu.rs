//! CPU benchmarks (criterion): the bookkeeping that needs no GPU, through the public Rust API.
//! `scripts/bench-cpu.sh` runs them and prints one table.
use std::ffi::c_void;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use vramguard::slots::presets::{Embedder, MODEL_SIZES};
use vramguard::slots::{fit_plan, ModelSlotManager};
use vramguard::{AllocationKind, Budget, MemoryPressure, Purpose, Tracker};

fn fake(i: usize) -> *const c_void {
    (0x1000_0000_0000usize + (i << 8)) as *const c_void
}

fn tracker(c: &mut Criterion) {
    let tracker = Tracker::new(0).unwrap();
    let mut i = 0usize;
    c.bench_function("tracker record+deallocate (Rust API, FFI)", |b| {
        b.iter(|| {
            i += 1;
            tracker.record(fake(i), 4096, Purpose::KVCache, AllocationKind::Device, "").unwrap();
            tracker.forget(fake(i)).unwrap();
        })
    });
    for j in 0..1_000_000 {
        tracker.record(fake(1 << 30 | j), 4096, Purpose::ModelWeights, AllocationKind::Device, "").unwrap();
    }
    c.bench_function("tracker usage() with 1,000,000 live records", |b| b.iter(|| black_box(tracker.usage())));
    c.bench_function("tracker total_bytes() with 1,000,000 live records", |b| {
        b.iter(|| black_box(tracker.total_bytes()))
    });
    c.bench_function("tracker bytes_for(KVCache) with 1,000,000 live records", |b| {
        b.iter(|| black_box(tracker.bytes_for(black_box(Purpose::KVCache))))
    });
}

fn policy(c: &mut Criterion) {
    let budget = Budget::new(1 << 40).unwrap();
    c.bench_function("budget charge + release", |b| {
        b.iter(|| drop(black_box(budget.charge(4096, Purpose::KVCache).unwrap())))
    });
    c.bench_function("pressure from utilisation", |b| {
        b.iter(|| black_box(MemoryPressure::from_utilization(black_box(87.5))))
    });
    let sizes: Vec<u64> = MODEL_SIZES.iter().map(|(_, b)| *b).collect();
    c.bench_function("fit plan over the 13 embedders", |b| {
        b.iter(|| black_box(fit_plan(black_box(&sizes), 700_000_000)))
    });
    let slots = ModelSlotManager::<Embedder>::new();
    for (e, bytes) in MODEL_SIZES.iter().skip(1) {
        slots.allocate_slot(*e, *bytes).unwrap();
    }
    c.bench_function("slot allocate + deallocate (bookkeeping)", |b| {
        b.iter(|| {
            slots.allocate_slot(Embedder::Semantic, 200_000_000).unwrap();
            slots.deallocate_slot(&Embedder::Semantic)
        })
    });
    c.bench_function("slot touch", |b| b.iter(|| slots.touch(&Embedder::Code)));
}

criterion_group!(benches, tracker, policy);
criterion_main!(benches);
