//! The driver's own view of free device memory (cudaMemGetInfo), against what the product did.
use cucumber::then;

use super::params::Size;
use super::world::VramWorld;

/// One lone small block may move the driver's figure by up to 2 MiB (its allocation granule).
const SLACK: u64 = 2 << 20;

#[then("the driver's free memory is unchanged")]
fn unchanged(world: &mut VramWorld) {
    let before = world.last_attempt().before.free_bytes.expect("free memory read before the attempt");
    let now = world.free_bytes();
    assert_eq!(
        now,
        before,
        "the refused attempt changed the driver's free memory by {} bytes",
        now as i64 - before as i64
    );
}

#[then(expr = "the driver's free memory has risen by at least {size}")]
fn risen(world: &mut VramWorld, size: Size) {
    let (before, after) = world.free_around_eviction.expect("no eviction measured");
    assert!(
        after >= before + size.0,
        "free memory rose by {} bytes, less than {}",
        after as i64 - before as i64,
        size.0
    );
}

#[then("the driver's free memory is back to where it was when the worker started")]
fn back_to_start(world: &mut VramWorld) {
    let start = world.free_at_start.expect("the worker noted free memory when it started");
    let now = world.free_bytes();
    assert!(now + SLACK >= start, "{} bytes of device memory did not come back", start - now);
}
