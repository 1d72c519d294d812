//! Q4 for the BDD suite: `@gpu` scenarios are skipped, visibly, where there is no GPU, and fail
//! there with VRAM_REQUIRE_GPU=1.
//!
//! cucumber-rs skips a scenario at its first undefined step and has no other way to skip at run
//! time, so every `@gpu` scenario starts with "Given a GPU on this host" (a feature's Background)
//! and that step is defined only on a host with a GPU (`gpu_step`, registered by `main`). The
//! before hook checks that the tag and the step go together, so neither can be forgotten.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cucumber::codegen::{LocalBoxFuture, Regex};
use cucumber::gherkin::{Feature, Rule, Scenario};
use vramguard::Device;

use super::world::VramWorld;

pub const TAG: &str = "gpu";
pub const STEP: &str = "a GPU on this host";

/// `@gpu` scenarios that started without a GPU (and so were skipped, or failed when required).
static GATED: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy)]
pub struct Gate {
    gpu: bool,
    required: bool,
}

impl Gate {
    /// Asked once per run: the answer must not change between scenarios.
    pub fn detect() -> Gate {
        static GATE: OnceLock<Gate> = OnceLock::new();
        *GATE.get_or_init(|| Gate {
            gpu: vramguard::device_count().map(|n| n > 0).unwrap_or(false),
            required: std::env::var("VRAM_REQUIRE_GPU").as_deref() == Ok("1"),
        })
    }

    pub fn has_gpu(&self) -> bool {
        self.gpu
    }

    pub fn announce(&self) {
        match (self.gpu, self.required) {
            (true, _) => println!("GPU found: @gpu scenarios run; any skipped step fails the run"),
            (false, false) => println!(
                "no GPU: @gpu scenarios are skipped at \"Given {STEP}\" (cucumber marks a skipped Background \
                 step \"?>\" and words it \"Background step failed\"); VRAM_REQUIRE_GPU=1 makes them fail"
            ),
            (false, true) => println!("VRAM_REQUIRE_GPU=1 but no GPU: @gpu scenarios will fail"),
        }
    }

    /// Whether a skipped step fails its scenario: always, except in a `@gpu` scenario on a host
    /// without a GPU when a GPU is not required.
    pub fn skip_fails(&self) -> impl Fn(&Feature, Option<&Rule>, &Scenario) -> bool {
        let may_skip = !self.gpu && !self.required;
        move |feature, rule, scenario| !(may_skip && needs_gpu(feature, rule, scenario))
    }

    /// The line that says how many scenarios did not run, after cucumber's summary.
    pub fn report_skips(&self) {
        let gated = GATED.load(Ordering::SeqCst);
        match (self.gpu, self.required) {
            (true, _) => {}
            (false, false) => println!("{gated} @gpu scenarios skipped: no GPU"),
            (false, true) => println!("{gated} @gpu scenarios failed: VRAM_REQUIRE_GPU=1 but no GPU"),
        }
    }
}

/// Tagged `@gpu` on the scenario, its rule or its feature.
pub fn needs_gpu(feature: &Feature, rule: Option<&Rule>, scenario: &Scenario) -> bool {
    let tagged = |tags: &[String]| tags.iter().any(|t| t == TAG);
    tagged(&feature.tags) || rule.is_some_and(|r| tagged(&r.tags)) || tagged(&scenario.tags)
}

pub fn step_regex() -> Regex {
    Regex::new(&format!("^{STEP}$")).expect("a literal regex")
}

/// "Given a GPU on this host": registered only where a GPU was found at start.
pub fn gpu_step(world: &mut VramWorld, _: cucumber::step::Context) -> LocalBoxFuture<'_, ()> {
    Box::pin(async move {
        world.device = Some(Device::new(0).expect("GPU 0 was found at start"));
    })
}

/// Before each scenario: the `@gpu` tag and the gating step go together, and the first is first.
pub fn before_scenario<'a>(
    feature: &'a Feature,
    rule: Option<&'a Rule>,
    scenario: &'a Scenario,
    _: &'a mut VramWorld,
) -> LocalBoxFuture<'a, ()> {
    Box::pin(async move {
        let backgrounds = feature.background.iter().chain(rule.and_then(|r| r.background.as_ref()));
        let mut steps = backgrounds.flat_map(|b| &b.steps).chain(&scenario.steps).map(|s| s.value.as_str());
        let first_is_gate = steps.next() == Some(STEP);
        let gate_later = steps.any(|s| s == STEP);
        let tagged = needs_gpu(feature, rule, scenario);
        assert!(
            tagged == first_is_gate && !gate_later,
            "scenario {:?}: a @gpu scenario must start with \"Given {STEP}\", and only a @gpu scenario may use it",
            scenario.name
        );
        if tagged && !Gate::detect().gpu {
            GATED.fetch_add(1, Ordering::SeqCst);
        }
    })
}
