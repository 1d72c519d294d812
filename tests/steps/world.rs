//! The state one scenario builds up: the worker's GPU and tracker, what it holds, its budget, slot
//! manager and health endpoint, and the outcome of the last attempt with the state just before
//! it. Everything is released after each scenario, and the tracker must then hold nothing.
use std::net::SocketAddr;
use std::sync::Arc;

use cucumber::codegen::LocalBoxFuture;
use cucumber::event::ScenarioFinished;
use cucumber::gherkin::{Feature, Rule, Scenario};
use vramguard::health::HealthMonitor;
use vramguard::server::HealthServer;
use vramguard::service::Service;
use vramguard::slots::{ManualClock, ModelSlot, ModelSlotManager, SlotStats};
use vramguard::{BudgetedAllocator, BudgetedBuffer, Device, DeviceBuffer, Error, Tracker, Usage};

/// Memory the worker holds, by the name the feature gave it.
#[derive(Debug)]
pub enum Memory {
    Plain(DeviceBuffer),
    Budgeted(BudgetedBuffer),
}

/// A health endpoint: the whole service, or a monitor served on its own.
#[derive(Debug)]
pub enum Endpoint {
    Service(Service),
    // Field order is drop order: stop serving before the monitor goes.
    Monitor { server: HealthServer, monitor: Arc<HealthMonitor> },
}

impl Endpoint {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Endpoint::Service(service) => service.local_addr(),
            Endpoint::Monitor { server, .. } => server.local_addr(),
        }
    }
}

/// What an attempt may change, read just before it.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub usage: Option<Usage>,
    /// Total and per-purpose bytes charged to the budget.
    pub budget: Option<(u64, [u64; 4])>,
    pub slots: Option<(Vec<ModelSlot<String>>, SlotStats)>,
    pub free_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct Attempt {
    pub result: Result<(), Error>,
    pub before: State,
}

#[derive(Debug, Default, cucumber::World)]
pub struct VramWorld {
    /// Opened by "Given a GPU on this host".
    pub device: Option<Device>,
    pub tracker: Option<Tracker>,
    pub allocator: Option<BudgetedAllocator>,
    pub held: Vec<(String, Memory)>,
    pub slots: Option<ModelSlotManager<String>>,
    pub clock: Option<ManualClock>,
    pub endpoint: Option<Endpoint>,
    pub attempt: Option<Attempt>,
    /// Slots the last load or eviction evicted.
    pub evicted: Vec<String>,
    /// The driver's free memory when the worker started, and around the last eviction.
    pub free_at_start: Option<u64>,
    pub free_around_eviction: Option<(u64, u64)>,
    /// Bytes the last deallocation gave back.
    pub freed_bytes: u64,
    pub error: Option<Error>,
}

impl VramWorld {
    pub fn gpu(&self) -> Device {
        self.device.expect("the @gpu Background opens GPU 0")
    }

    pub fn tracker(&self) -> &Tracker {
        self.tracker.as_ref().expect("no worker: a Given step starts one")
    }

    pub fn slots(&self) -> &ModelSlotManager<String> {
        self.slots.as_ref().expect("no slot manager: a Given step makes one")
    }

    pub fn endpoint(&self) -> &Endpoint {
        self.endpoint.as_ref().expect("no health endpoint: a Given step starts one")
    }

    /// The driver's free memory on the worker's GPU.
    pub fn free_bytes(&self) -> u64 {
        self.gpu().memory_info().expect("cudaMemGetInfo").free_bytes
    }

    /// Opens the worker: a tracker on GPU 0, noting the driver's free memory first.
    pub fn start_worker(&mut self) -> vramguard::Result<()> {
        let tracker = self.gpu().tracker()?;
        self.free_at_start = Some(self.free_bytes());
        self.tracker = Some(tracker);
        Ok(())
    }

    pub fn hold(&mut self, name: &str, memory: Memory) {
        self.held.push((name.to_owned(), memory));
    }

    /// Drops the memory held under `name`; panics when there is none.
    pub fn free(&mut self, name: &str) -> u64 {
        let index = self.held.iter().position(|(n, _)| n == name).unwrap_or_else(|| panic!("nothing held as {name:?}"));
        let (_, memory) = self.held.remove(index);
        match memory {
            Memory::Plain(buffer) => buffer.len(),
            Memory::Budgeted(buffer) => buffer.len(),
        }
    }

    pub fn state(&self) -> State {
        State {
            usage: self.tracker.as_ref().map(Tracker::usage),
            budget: self.allocator.as_ref().map(|a| {
                let budget = a.budget();
                (budget.used(), vramguard::Purpose::ALL.map(|p| budget.used_by(p)))
            }),
            slots: self.slots.as_ref().map(|s| (s.slots(), s.stats())),
            free_bytes: self.device.map(|_| self.free_bytes()),
        }
    }

    /// Runs `attempt`, recording its outcome and the state before it.
    pub fn attempt<T>(&mut self, attempt: impl FnOnce(&mut VramWorld) -> vramguard::Result<T>) -> Option<T> {
        let before = self.state();
        let (result, value) = match attempt(self) {
            Ok(value) => (Ok(()), Some(value)),
            Err(error) => (Err(error), None),
        };
        self.attempt = Some(Attempt { result, before });
        value
    }

    pub fn last_attempt(&self) -> &Attempt {
        self.attempt.as_ref().expect("no attempt: a When step makes one")
    }

    /// Frees everything the scenario allocated, endpoint first; then nothing may remain tracked.
    fn release(&mut self) {
        self.endpoint = None;
        self.attempt = None;
        self.held.clear();
        self.slots = None;
        self.allocator = None;
        if let Some(tracker) = self.tracker.take() {
            assert_eq!(
                tracker.total_bytes(),
                0,
                "the scenario left memory tracked: {}",
                tracker.report().unwrap_or_default()
            );
            assert_eq!(tracker.drop_failures(), 0, "frees failed during the scenario");
        }
    }
}

/// After each scenario, passed or not: free its memory so that the next one starts clean.
pub fn after_scenario<'a>(
    _: &'a Feature,
    _: Option<&'a Rule>,
    _: &'a Scenario,
    _: &'a ScenarioFinished,
    world: Option<&'a mut VramWorld>,
) -> LocalBoxFuture<'a, ()> {
    Box::pin(async move {
        if let Some(world) = world {
            world.release();
        }
    })
}
