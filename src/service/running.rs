//! The running health service: a device, its tracker, the workload's model slots and buffers, the
//! health monitor checking in the background, and the HTTP endpoint serving its cached report.
//! Dropping it stops the endpoint and the checks, then frees every byte it allocated.
use std::net::SocketAddr;
use std::sync::Arc;

use crate::buffer::DeviceBuffer;
use crate::device::Device;
use crate::error::Result;
use crate::health::{HealthConfig, HealthHandle, HealthMonitor};
use crate::purpose::{AllocationKind, Purpose};
use crate::server::{HealthServer, ServerConfig};
use crate::slots::{presets, DeviceBacking, ModelSlotManager, SlotConfig, WeightsLoadOptions};
use crate::tracker::Tracker;
use crate::weights::{WeightLimits, WeightsSet};

use super::workload::Workload;

/// What `vramguard serve` runs: the device, the slots' budget, the health checks, the endpoint and
/// the workload. `Default` is seed 000's preset on GPU 0.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// CUDA ordinal of the GPU to use.
    pub device: u32,
    /// Budget of the model slots (bytes); default: seed 000's preset, 8 GiB.
    pub budget_bytes: u64,
    /// How often and what the health monitor checks.
    pub health: HealthConfig,
    /// Where and how the HTTP endpoint listens.
    pub server: ServerConfig,
    /// The model slots and buffers to load at start.
    pub workload: Workload,
}

/// Seed 000's preset ([`presets::seed000`]): its 13 embedders within its 8 GiB, on GPU 0.
impl Default for ServiceConfig {
    fn default() -> Self {
        let preset = presets::seed000();
        ServiceConfig {
            device: 0,
            budget_bytes: preset.budget_bytes,
            health: HealthConfig::default(),
            server: ServerConfig::default(),
            workload: Workload::from_preset(&preset),
        }
    }
}

/// The running health service: the device's tracker, the workload's slots and buffers, the
/// background checks and the endpoint. Dropping it stops the endpoint and the checks, then frees
/// every byte it allocated.
pub struct Service {
    // Field order is drop order: stop serving and checking before freeing memory.
    server: HealthServer,
    _checks: HealthHandle,
    health: Arc<HealthMonitor>,
    _buffers: Vec<DeviceBuffer>,
    slots: ModelSlotManager<String>,
    tracker: Tracker,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("address", &self.server.local_addr()).field("slots", &self.slots).finish()
    }
}

impl Service {
    /// Opens the device (VRAM-E001 without a GPU), loads the workload, runs a first check, and
    /// starts the background checks and the endpoint.
    pub fn start(config: ServiceConfig) -> Result<Service> {
        // A configuration that cannot work is refused before the device is touched.
        config.health.validate()?;
        config.server.validate()?;
        config.workload.validate()?;
        let device = Device::new(config.device)?;
        let tracker = device.tracker()?;
        // The CUDA context, before anything is allocated: the known part of untracked VRAM that
        // the ledger subtracts (reading the memory makes the context, if nothing had yet).
        device.memory_info()?;
        let context_bytes = crate::nvml::process_vram_bytes(config.device);
        let backing = DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device };
        let expected_slots = config.workload.slots.iter().filter(|s| s.purpose == Purpose::ModelWeights).count();
        let slots = ModelSlotManager::with_config(SlotConfig {
            budget_bytes: config.budget_bytes,
            backing: Some(backing),
            expected_slots,
            ..SlotConfig::default()
        });
        let mut buffers = Vec::new();
        for slot in &config.workload.slots {
            if !slot.files.is_empty() {
                // The workload must fit as a whole: a later slot never evicts an earlier one.
                let set = WeightsSet::open_all(&slot.files, &WeightLimits::default())?;
                let options = WeightsLoadOptions { evict: false, ..WeightsLoadOptions::default() };
                slots.load_weights_set(slot.name.clone(), &set, options)?;
                slots.pin(&slot.name, slot.pinned)?;
            } else if slot.purpose == Purpose::ModelWeights {
                slots.allocate_slot(slot.name.clone(), slot.bytes.unwrap_or(0))?;
                slots.pin(&slot.name, slot.pinned)?;
                // Nothing is uploaded into a preset slot: its bytes as allocated are the reference.
                slots.use_slot(&slot.name)?.mark_loaded()?;
            } else {
                buffers.push(tracker.allocate(slot.bytes.unwrap_or(0), slot.purpose, &slot.name)?);
            }
        }
        let health = Arc::new(
            HealthMonitor::new(tracker.clone(), config.health)?
                .with_slots(Arc::new(slots.clone()))
                .with_context_bytes(context_bytes),
        );
        let checks = health.start()?;
        let server = HealthServer::start(config.server, health.clone())?;
        Ok(Service { server, _checks: checks, health, _buffers: buffers, slots, tracker })
    }

    /// The address the endpoint listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The tracker of every allocation the service made.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The model slots, named as in the workload.
    pub fn slots(&self) -> &ModelSlotManager<String> {
        &self.slots
    }

    /// The health monitor whose report the endpoint serves.
    pub fn health(&self) -> &Arc<HealthMonitor> {
        &self.health
    }

    /// Stops serving and checking, then frees everything (the same as dropping it).
    pub fn shutdown(self) {
        drop(self);
    }

    /// Shuts down as [`Service::shutdown`] does, but waits at most `deadline`: on a hung GPU,
    /// freeing device memory blocks until the device's work ends, which may be never. Returns
    /// true when everything was stopped and freed in time; false when the shutdown was left
    /// running on its own thread (the caller then ends the process, and the driver reclaims its
    /// memory with it).
    pub fn shutdown_within(self, deadline: std::time::Duration) -> bool {
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("vramguard-shutdown".into()).spawn(move || {
            drop(self);
            let _ = done_tx.send(());
        });
        match spawned {
            Ok(_) => done.recv_timeout(deadline).is_ok(),
            // The closure, and the service in it, was dropped right here.
            Err(_) => true,
        }
    }
}
