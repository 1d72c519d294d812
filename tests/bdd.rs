//! BDD scenarios (features/*.feature) run by cucumber-rs over the product's real allocations.
//!
//! Scenarios tagged `@gpu` start with the step "Given a GPU on this host", which is defined only
//! when a GPU is present: without one, that step is undefined, so cucumber reports it — and the
//! scenario — as skipped, and the run ends with "N @gpu scenarios skipped: no GPU". A skip fails
//! the run anywhere else: on a GPU host, with VRAM_REQUIRE_GPU=1, and in untagged scenarios.
//! Scenarios run one at a time, because some compare the driver's free memory.
#[path = "support/http_client.rs"]
mod http_client;
#[path = "support/model_files.rs"]
mod model_files;
mod steps;

use std::path::PathBuf;
use std::process::ExitCode;

use cucumber::writer::Stats as _;
use cucumber::World as _;

use steps::gate::{self, Gate};
use steps::world::VramWorld;
use steps::{executor, leak};

/// `VRAMGUARD_FEATURES` where the suite runs away from its source tree (the GPU runner).
fn features() -> PathBuf {
    std::env::var_os("VRAMGUARD_FEATURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/features").into())
}

fn main() -> ExitCode {
    let gate = Gate::detect();
    gate.announce();
    let baseline = leak::Baseline::take(&gate);

    let cucumber = VramWorld::cucumber()
        .max_concurrent_scenarios(1)
        .before(gate::before_scenario)
        .after(steps::world::after_scenario)
        .fail_on_skipped_with(gate.skip_fails());
    let cucumber = match gate.has_gpu() {
        true => cucumber.given(gate::step_regex(), gate::gpu_step),
        false => cucumber,
    };
    let writer = executor::block_on(cucumber.run(features()));

    let mut failed = writer.execution_has_failed();
    gate.report_skips();
    failed |= baseline.is_some_and(|b| b.leaked());
    if failed {
        eprintln!("BDD scenarios failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
