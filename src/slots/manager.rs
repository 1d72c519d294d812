//! L1–L5: model slots within a budget, least-recently-used eviction by fit plan, pinning and
//! minimum residency, retry after device out-of-memory. Thread-safe: one short lock guards the slot
//! table; device allocation, checksums, eviction callbacks and frees all happen outside it.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::budget::{Budget, Refusal};
use crate::callbacks::Callbacks;
use crate::error::{Error, LoadedModels, OomSource, Result};
use crate::loader::{Verification, WeightsLoader};
use crate::pressure::MemoryPressure;
use crate::purpose::{AllocationKind, Purpose};
use crate::usage::Usage;
use crate::weights::WeightsSet;

use super::config::{DeviceBacking, SlotConfig};
use super::events::{Eviction, EvictionReason, IntegrityViolation, LoadOutcome, SlotStats, WeightsLoaded};
use super::fit_plan;
use super::presets;
use super::receipts::{self, EvictionReceipt, Receipts};
use super::slot::{device_checksum, ChecksumFn, Holds, ModelSlot, Reader, SlotKey, SlotMemory, SlotUse};

/// How [`ModelSlotManager::load_weights_set`] loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightsLoadOptions {
    /// What the device's bytes are compared with (the host hash by default).
    pub verification: Verification,
    /// Evict idle slots by plan to make room (the default), or fail over the budget.
    pub evict: bool,
}

impl Default for WeightsLoadOptions {
    fn default() -> Self {
        WeightsLoadOptions { verification: Verification::HostHash, evict: true }
    }
}

struct State<K> {
    slots: HashMap<K, SlotEntry>,
    /// Keys whose budget is reserved while their device memory is being allocated.
    loading: HashSet<K>,
    next_seq: u64,
}

#[derive(Default)]
struct Counters {
    evictions: AtomicU64,
    oom_retries: AtomicU64,
    ooms: AtomicU64,
}

struct Shared<K> {
    config: SlotConfig,
    budget: Budget,
    state: Mutex<State<K>>,
    /// Shared with every use guard and integrity reader of this manager's slot memory.
    holds: Arc<Holds>,
    on_evict: Callbacks<Eviction<K>>,
    on_oom: Callbacks<Error>,
    counters: Counters,
    /// Made by the first load of weights from files, kept for the manager's life (its pinned
    /// staging is allocated once).
    loader: Mutex<Option<Arc<WeightsLoader>>>,
    receipts: Receipts,
    /// Held around each device allocation and each free with its receipt, when receipts are
    /// taken: a receipt's two readings of the driver's free memory then see no allocation of
    /// this manager between them.
    device_ops: Mutex<()>,
}

/// Named model slots within a budget. Cloning shares the manager.
pub struct ModelSlotManager<K: SlotKey> {
    shared: Arc<Shared<K>>,
}

impl<K: SlotKey> Clone for ModelSlotManager<K> {
    fn clone(&self) -> Self {
        ModelSlotManager { shared: Arc::clone(&self.shared) }
    }
}

impl<K: SlotKey> std::fmt::Debug for ModelSlotManager<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSlotManager")
            .field("budget", &self.budget())
            .field("allocated", &self.allocated())
            .field("loaded", &self.loaded_count())
            .finish()
    }
}

impl<K: SlotKey> Default for ModelSlotManager<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: SlotKey> ModelSlotManager<K> {
    /// Seed 000's bookkeeping manager: its preset's 8 GiB budget and 13 expected slots
    /// ([`presets::seed000`]). Any other workload starts from [`with_config`](Self::with_config).
    pub fn new() -> Self {
        Self::with_config(presets::seed000().slot_config())
    }

    /// Bookkeeping only, with `budget` bytes (0 refuses every slot); otherwise seed 000's preset
    /// as [`new`](Self::new) (its 13 slots are the ones reports expect).
    pub fn with_budget(budget: u64) -> Self {
        Self::with_config(SlotConfig { budget_bytes: budget, ..presets::seed000().slot_config() })
    }

    /// Slots that own real device memory of `kind`, allocated through `backing.tracker`, within
    /// `budget` bytes; otherwise seed 000's preset as [`new`](Self::new).
    pub fn on_device(backing: DeviceBacking, budget: u64) -> Self {
        let preset = presets::seed000().slot_config();
        Self::with_config(SlotConfig { budget_bytes: budget, backing: Some(backing), ..preset })
    }

    /// The manager `config` describes: the one constructor the others call.
    pub fn with_config(config: SlotConfig) -> Self {
        Self::with_checksum(config, Arc::new(device_checksum))
    }

    /// A manager whose slot memory is checksummed by `checksum` (the crate's unit tests give
    /// bookkeeping slots a checksum this way).
    pub(crate) fn with_checksum(config: SlotConfig, checksum: ChecksumFn) -> Self {
        let budget = Budget::builder(config.budget_bytes)
            .thresholds(config.thresholds)
            .build_allowing_zero()
            .expect("a budget without purpose limits always builds");
        ModelSlotManager {
            shared: Arc::new(Shared {
                config,
                budget,
                state: Mutex::new(State { slots: HashMap::new(), loading: HashSet::new(), next_seq: 0 }),
                holds: Arc::new(Holds::new(checksum)),
                on_evict: Callbacks::new(),
                on_oom: Callbacks::new(),
                counters: Counters::default(),
                loader: Mutex::new(None),
                receipts: Receipts::default(),
                device_ops: Mutex::new(()),
            }),
        }
    }

    /// Allocates a slot of `size_bytes` if it fits the budget, evicting nothing. Over budget it
    /// fails with [`Error::OutOfMemory`] and changes nothing.
    pub fn allocate_slot(&self, key: K, size_bytes: u64) -> Result<()> {
        let result = self.try_load_once(&key, size_bytes).map(drop);
        if let Err(error) = &result {
            self.note_failure(error);
        }
        result
    }

    /// Loads a slot, evicting idle least-recently-used slots by fit plan when the load would cross
    /// Critical pressure or the budget (L2), and retrying up to `max_oom_retries` times after
    /// evicting when the device itself is out of memory (ERR4). When no plan can make room, it fails
    /// at once and evicts nothing.
    pub fn load_slot(&self, key: K, size_bytes: u64) -> Result<LoadOutcome<K>> {
        let result = self.load_with_eviction(&key, size_bytes).map(|(outcome, _in_use)| outcome);
        if let Err(error) = &result {
            self.note_failure(error);
        }
        result
    }

    /// W1: loads model weights from safetensors files into a new slot `key`, verified. Every
    /// file is validated first ([`WeightsSet::open_all`], with the config's `weight_limits`; a bad
    /// file is `VRAM-E020` before the device is touched), then the slot is fitted as
    /// [`load_slot`](Self::load_slot) fits one (evicting idle slots by plan; a load that cannot fit
    /// fails at once and evicts nothing), sized to hold every tensor at a 256-byte aligned offset,
    /// filled by the manager's [`WeightsLoader`] and verified (see [`Verification::HostHash`]).
    /// The verified checksum becomes the slot's integrity reference; the tensor table is the
    /// slot's ([`SlotUse::weights`], [`ModelSlot::weights`]).
    ///
    /// On any failure after the fit — a file that changed (`VRAM-E022`) or cannot be read
    /// (`VRAM-E017`), corruption (`VRAM-E021`), a GPU that did not finish in time (`VRAM-E019`),
    /// a CUDA error — the slot is removed and its memory and budget given back; slots evicted to
    /// make room stay evicted. Memory that the failed load's work, left running on the GPU after a
    /// timeout, may still write is given back only once that work is over: the manager's loader
    /// keeps it until then ([`WeightsLoader::keep_until_idle`]), so a later load may find less
    /// room. A manager without device memory (bookkeeping only) refuses with `VRAM-E007`.
    pub fn load_weights<P: AsRef<std::path::Path>>(&self, key: K, files: &[P]) -> Result<WeightsLoaded<K>> {
        let set = WeightsSet::open_all(files, &self.shared.config.weight_limits)?;
        self.load_weights_set(key, &set, WeightsLoadOptions::default())
    }

    /// [`load_weights`](Self::load_weights) for files already validated, verified as
    /// `options.verification` says (a checksum from an earlier load of the same files skips the
    /// host hash); with `options.evict` false, a load over the budget fails as
    /// [`allocate_slot`](Self::allocate_slot) does instead of evicting.
    pub fn load_weights_set(&self, key: K, set: &WeightsSet, options: WeightsLoadOptions) -> Result<WeightsLoaded<K>> {
        let result = self.load_weights_into_slot(&key, set, options);
        if let Err(error) = &result {
            self.note_failure(error);
        }
        result
    }

    fn load_weights_into_slot(
        &self,
        key: &K,
        set: &WeightsSet,
        options: WeightsLoadOptions,
    ) -> Result<WeightsLoaded<K>> {
        let backing = self.shared.config.backing.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "loading weights needs a manager whose slots own device memory (a DeviceBacking)".into(),
            )
        })?;
        let image_bytes = set.layout(crate::weights::SLOT_ALIGNMENT)?.total_bytes;
        if image_bytes == 0 {
            return Err(Error::InvalidSize(format!("slot {key}: the weights files hold no tensor bytes")));
        }
        let loader = self.loader_for(backing.tracker.device())?;
        let (outcome, in_use) = if options.evict {
            self.load_with_eviction(key, image_bytes)?
        } else {
            (LoadOutcome::default(), self.try_load_once(key, image_bytes)?)
        };
        let buffer = in_use.buffer().expect("a device-backed manager's slots have memory");
        match loader.load(set, buffer, options.verification) {
            Ok(weights) => {
                let weights = Arc::new(weights);
                in_use.set_loaded_weights(Arc::clone(&weights));
                Ok(WeightsLoaded { outcome, weights })
            }
            Err(error) => {
                // Work the failed load left running on the GPU may still write the slot's memory:
                // the loader keeps it in use (allocated, its budget held) until that work is over.
                let ours = in_use.memory_id();
                if matches!(loader.is_idle(), Ok(true)) {
                    drop(in_use);
                } else {
                    loader.keep_until_idle(in_use);
                }
                self.abandon_load(key, ours);
                Err(error)
            }
        }
    }

    /// The manager's weights loader, made on first use.
    fn loader_for(&self, device: u32) -> Result<Arc<WeightsLoader>> {
        let mut loader = super::slot::lock(&self.shared.loader);
        if let Some(loader) = loader.as_ref() {
            return Ok(Arc::clone(loader));
        }
        let made = Arc::new(WeightsLoader::new(device, &self.shared.config.loader)?);
        *loader = Some(Arc::clone(&made));
        Ok(made)
    }

    /// The weights loader the first [`load_weights`](Self::load_weights) made (`None` before it):
    /// its pinned staging, readers, and the progress of the load running now.
    pub fn weights_loader(&self) -> Option<Arc<WeightsLoader>> {
        super::slot::lock(&self.shared.loader).clone()
    }

    /// Loads with eviction and returns the new slot held in use, so that nothing can evict it
    /// before its caller is done with it.
    fn load_with_eviction(&self, key: &K, size_bytes: u64) -> Result<(LoadOutcome<K>, SlotUse<K>)> {
        self.check_new(key, size_bytes)?;
        let mut outcome = LoadOutcome::default();
        let mut budget_races = 0;
        loop {
            let room = self.plan_room(size_bytes)?;
            outcome.evicted.extend(self.evict(&room, EvictionReason::Pressure));
            match self.try_load_once(key, size_bytes) {
                Ok(in_use) => return Ok((outcome, in_use)),
                Err(Error::OutOfMemory(oom)) if oom.source == OomSource::Device => {
                    if outcome.oom_retries >= self.shared.config.max_oom_retries {
                        return Err(Error::OutOfMemory(oom));
                    }
                    let need = size_bytes.saturating_sub(oom.available.unwrap_or(0)).max(1);
                    let victims = self.plan_eviction(need).unwrap_or_else(|| self.idle_keys());
                    if victims.is_empty() {
                        return Err(Error::OutOfMemory(oom));
                    }
                    outcome.evicted.extend(self.evict(&victims, EvictionReason::DeviceOutOfMemory));
                    outcome.oom_retries += 1;
                    self.shared.counters.oom_retries.fetch_add(1, Ordering::Relaxed);
                }
                // Another thread took the room this plan made: plan again, a bounded number of times.
                Err(Error::OutOfMemory(oom)) if budget_races < self.shared.config.max_oom_retries => {
                    budget_races += 1;
                    drop(oom);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One attempt: reserve the budget, allocate device memory outside the lock, commit. The key
    /// stays in `loading` meanwhile, and leaves it however the attempt ends (see [`LoadingKey`]).
    /// The slot has no integrity reference yet: its memory holds no weights until its holder
    /// uploads them and calls [`SlotUse::mark_loaded`]. The new slot is returned held in use.
    fn try_load_once(&self, key: &K, size_bytes: u64) -> Result<SlotUse<K>> {
        let (charge, loading) = {
            let mut state = self.state();
            check_new_in(&state, key, size_bytes)?;
            let charge = self
                .shared
                .budget
                .reserve(size_bytes, Purpose::ModelWeights)
                .map_err(|refusal| self.budget_oom(size_bytes, refusal, state.slots.len()))?;
            state.loading.insert(key.clone());
            (charge, LoadingKey { manager: self, key, done: false })
        };
        let buffer = match &self.shared.config.backing {
            None => Ok(None),
            Some(backing) => {
                let _receipts_see_no_allocation =
                    self.receipt_device().map(|_| super::slot::lock(&self.shared.device_ops));
                backing
                    .tracker
                    .allocate_kind(size_bytes, Purpose::ModelWeights, backing.kind, &key.to_string())
                    .map(Some)
            }
        };
        let mut state = self.state();
        loading.finish(&mut state);
        if matches!(&buffer, Err(Error::OutOfMemory(_))) {
            self.shared.counters.ooms.fetch_add(1, Ordering::Relaxed);
        }
        let buffer = buffer.map_err(|error| self.enrich_device_oom(error, state.slots.len()))?;
        charge.commit();
        let now = self.shared.config.clock.now();
        let access_seq = next_seq(&mut state);
        let entry = SlotEntry {
            size_bytes,
            loaded_at: now,
            last_accessed: now,
            access_seq,
            pinned: false,
            memory: Arc::new(SlotMemory::new(buffer, charge)),
        };
        let in_use = SlotUse::new(key.clone(), size_bytes, &entry.memory, &self.shared.holds);
        state.slots.insert(key.clone(), entry);
        Ok(in_use)
    }

    /// Removes a slot and returns its size (0 when there is none). Its memory is freed now (once
    /// an integrity check reading it at this moment is done), or when the last [`SlotUse`] of it
    /// drops.
    pub fn deallocate_slot(&self, key: &K) -> u64 {
        let removed = self.state().slots.remove(key);
        removed.map_or(0, |entry| {
            let size_bytes = entry.size_bytes;
            self.free_with_receipt(vec![entry.memory]); // outside the lock
            size_bytes
        })
    }

    /// Removes the slot a failed load made, and only that one: while the load ran, the key may
    /// have been deallocated and loaded again by another thread, whose slot stays.
    /// `ours` is the failed load's [`SlotUse::memory_id`].
    fn abandon_load(&self, key: &K, ours: usize) {
        let removed = {
            let mut state = self.state();
            let same = state.slots.get(key).is_some_and(|entry| Arc::as_ptr(&entry.memory) as usize == ours);
            if same {
                state.slots.remove(key)
            } else {
                None
            }
        };
        if let Some(entry) = removed {
            self.free_with_receipt(vec![entry.memory]); // outside the lock
        }
    }

    /// The device whose free memory receipts read: slots of `Device` memory, with a deadline.
    fn receipt_device(&self) -> Option<u32> {
        let backing = self.shared.config.backing.as_ref()?;
        let taken = backing.kind == AllocationKind::Device && !self.shared.config.eviction_receipt_deadline.is_zero();
        taken.then(|| backing.tracker.device())
    }

    /// Frees slots' memory (after any integrity check reading it), then, for `Device` slots,
    /// waits for the receipt of the bytes freed now (memory still in use goes when its last user
    /// drops, and is not in the receipt).
    fn free_with_receipt(&self, memories: Vec<Arc<super::slot::SlotMemory>>) -> Option<EvictionReceipt> {
        let Some(device) = self.receipt_device() else {
            for memory in memories {
                self.shared.holds.free(memory);
            }
            return None;
        };
        let _no_allocation_between = super::slot::lock(&self.shared.device_ops);
        let before = receipts::free_bytes(device);
        let freed: u64 = memories.into_iter().map(|memory| self.shared.holds.free(memory)).sum();
        let before = before.filter(|_| freed > 0)?;
        Some(self.shared.receipts.await_rise(device, before, freed, self.shared.config.eviction_receipt_deadline))
    }

    /// Marks a slot as just used. False when there is no such slot.
    pub fn touch(&self, key: &K) -> bool {
        let now = self.shared.config.clock.now();
        let mut state = self.state();
        let seq = next_seq(&mut state);
        match state.slots.get_mut(key) {
            Some(entry) => {
                entry.last_accessed = now;
                entry.access_seq = seq;
                true
            }
            None => false,
        }
    }

    /// Touches the slot and holds it in use until the guard drops.
    pub fn use_slot(&self, key: &K) -> Result<SlotUse<K>> {
        let now = self.shared.config.clock.now();
        let mut state = self.state();
        let seq = next_seq(&mut state);
        let entry = state.slots.get_mut(key).ok_or_else(|| Error::UnknownSlot(key.to_string()))?;
        entry.last_accessed = now;
        entry.access_seq = seq;
        Ok(SlotUse::new(key.clone(), entry.size_bytes, &entry.memory, &self.shared.holds))
    }

    /// I1: recomputes the checksum of every slot whose holder declared it loaded
    /// ([`SlotUse::mark_loaded`]) and returns those that differ from that reference. A slot
    /// without a reference is skipped (not a violation), and so is one whose reference was set
    /// anew during its checksum, or that left the table meanwhile. The table lock is held only to
    /// list the slots: each checksum runs outside it, on one slot at a time, and holding a slot
    /// to read it neither makes it busy nor keeps an eviction from freeing it (the eviction waits
    /// for that one checksum).
    pub fn verify_integrity(&self) -> Vec<IntegrityViolation<K>> {
        self.verify_integrity_within(crate::checksum::DEFAULT_CHECKSUM_DEADLINE)
    }

    /// [`verify_integrity`](Self::verify_integrity) within `deadline` in all: each checksum
    /// waits for the GPU at most the time left, a checksum that runs out of it is reported as a
    /// violation with its VRAM-E019 error, and the slots not reached in time are not checked (a
    /// health check that long is failed by its own deadline).
    pub fn verify_integrity_within(&self, deadline: std::time::Duration) -> Vec<IntegrityViolation<K>> {
        let until = std::time::Instant::now() + deadline;
        let slots: Vec<(K, Weak<SlotMemory>, u64)> = {
            let state = self.state();
            state.slots.iter().map(|(k, e)| (k.clone(), Arc::downgrade(&e.memory), e.size_bytes)).collect()
        };
        slots
            .into_iter()
            .filter_map(|(key, memory, size_bytes)| {
                let reader = Reader::new(memory.upgrade()?, Arc::clone(&self.shared.holds));
                let (expected, actual) = reader.check(until.saturating_duration_since(std::time::Instant::now()))?;
                match actual {
                    Ok(actual) if actual == expected => None,
                    actual => Some(IntegrityViolation { key, size_bytes, expected, actual }),
                }
            })
            .collect()
    }

    /// L4: a pinned slot is never evicted (it can still be deallocated explicitly).
    pub fn pin(&self, key: &K, pinned: bool) -> Result<()> {
        let mut state = self.state();
        let entry = state.slots.get_mut(key).ok_or_else(|| Error::UnknownSlot(key.to_string()))?;
        entry.pinned = pinned;
        Ok(())
    }

    /// The least recently used slot that could be evicted now: not pinned, not in use, past its
    /// minimum residency.
    pub fn get_lru_candidate(&self) -> Option<K> {
        self.idle_in_lru_order().into_iter().next().map(|(key, _)| key)
    }

    /// L3: the slots that [`load_slot`](Self::load_slot) would evict for a request of `bytes`
    /// (aiming below Critical, at least within the budget), or the out-of-memory error it would
    /// return. Evicts nothing.
    pub fn plan_fit(&self, bytes: u64) -> Result<Vec<K>> {
        self.plan_room(bytes)
    }

    fn plan_room(&self, bytes: u64) -> Result<Vec<K>> {
        let state = self.state();
        let budget = &self.shared.budget;
        let (limit, used) = (budget.limit(), budget.used());
        let idle = self.idle_in(&state);
        let sizes: Vec<u64> = idle.iter().map(|(_, size)| *size).collect();
        let below_critical = budget.thresholds().below_critical_bytes(limit);
        match fit_plan::plan_room(limit, used, below_critical, bytes, &sizes) {
            Some(indices) => Ok(indices.into_iter().map(|i| idle[i].0.clone()).collect()),
            None => Err(self.budget_oom(bytes, Refusal { source: OomSource::Budget, limit, used }, state.slots.len())),
        }
    }

    fn plan_eviction(&self, need: u64) -> Option<Vec<K>> {
        plan_among(&self.idle_in_lru_order(), need)
    }

    /// The slots an eviction may take now (idle: no user, not pinned, past the minimum
    /// residency), least recently used first.
    pub(crate) fn idle_keys(&self) -> Vec<K> {
        self.idle_in_lru_order().into_iter().map(|(key, _)| key).collect()
    }

    fn idle_in_lru_order(&self) -> Vec<(K, u64)> {
        self.idle_in(&self.state())
    }

    fn idle_in(&self, state: &State<K>) -> Vec<(K, u64)> {
        idle_for(state, self.shared.config.clock.now(), self.shared.config.min_residency)
    }

    /// The minimum residency an unload at Critical respects: the larger of the two settings.
    fn unload_residency(&self) -> Duration {
        self.shared.config.min_residency.max(self.shared.config.unload_min_residency)
    }

    /// Slots an unload may take: idle, and resident at least [`SlotConfig::unload_min_residency`].
    fn unloadable(&self) -> Vec<(K, u64)> {
        idle_for(&self.state(), self.shared.config.clock.now(), self.unload_residency())
    }

    /// Bytes an unload could free now: every slot it may take.
    pub(crate) fn unloadable_bytes(&self) -> u64 {
        self.unloadable().iter().fold(0u64, |sum, (_, size)| sum.saturating_add(*size))
    }

    /// O1 at Critical: the fit plan among the slots an unload may take that frees at least
    /// `bytes`, or `None` — evict nothing — when even all of them would not. Evicts nothing.
    pub(crate) fn plan_unload(&self, bytes: u64) -> Option<Vec<K>> {
        plan_among(&self.unloadable(), bytes.max(1))
    }

    /// Evicts the [`plan_unload`](Self::plan_unload) for `bytes` — all of it, if every slot of
    /// the plan is still idle and resident long enough when evicted, or nothing. Returns the
    /// evicted keys.
    pub(crate) fn unload(&self, bytes: u64) -> Vec<K> {
        match self.plan_unload(bytes) {
            Some(victims) => {
                self.evict_with(&victims, EvictionReason::Unload, self.unload_residency(), AllOrNothing(true))
            }
            None => Vec::new(),
        }
    }

    /// Evicts these slots if they are still idle; returns those evicted. Callbacks run and memory
    /// is freed outside the lock.
    pub(crate) fn evict(&self, keys: &[K], reason: EvictionReason) -> Vec<K> {
        self.evict_with(keys, reason, self.shared.config.min_residency, AllOrNothing(false))
    }

    fn evict_with(&self, keys: &[K], reason: EvictionReason, min_residency: Duration, all: AllOrNothing) -> Vec<K> {
        if keys.is_empty() {
            return Vec::new();
        }
        let removed: Vec<(K, SlotEntry)> = {
            let mut state = self.state();
            let now = self.shared.config.clock.now();
            let idle = |key: &K| state.slots.get(key).is_some_and(|e| is_idle(e, now, min_residency));
            if all.0 && !keys.iter().all(idle) {
                return Vec::new(); // the plan no longer holds: a part of it would not be enough
            }
            let mut removed = Vec::with_capacity(keys.len());
            for key in keys {
                if state.slots.get(key).is_some_and(|e| is_idle(e, now, min_residency)) {
                    removed.extend(state.slots.remove_entry(key));
                }
            }
            removed
        };
        let mut evicted = Vec::with_capacity(removed.len());
        let mut memories = Vec::with_capacity(removed.len());
        for (key, entry) in removed {
            let eviction = Eviction { key: key.clone(), size_bytes: entry.size_bytes, reason };
            let device = self.shared.config.backing.as_ref().map(|b| b.tracker.device());
            crate::events::slot_evicted(device, &key.to_string(), entry.size_bytes, reason.as_str());
            self.shared.on_evict.fire(&eviction);
            memories.push(entry.memory);
            self.shared.counters.evictions.fetch_add(1, Ordering::Relaxed);
            evicted.push(key);
        }
        // Frees the device memory, then returns the bytes to the budget — after an integrity
        // check reading a slot right now is done with it — and waits for the driver's receipt.
        self.free_with_receipt(memories);
        evicted
    }

    /// Evicts idle least-recently-used slots until at least `bytes` are freed (by fit plan), or
    /// every idle slot when no plan frees that much: the caller asked for this memory back. (The
    /// GPU monitor's unload at Critical is bounded instead, all or nothing: see
    /// [`SlotConfig::unload_min_residency`].) Returns the evicted keys.
    pub fn evict_lru(&self, bytes: u64) -> Vec<K> {
        let victims = self.plan_eviction(bytes).unwrap_or_else(|| self.idle_keys());
        self.evict(&victims, EvictionReason::Unload)
    }

    /// Called with each slot about to be evicted, before its memory is freed. A panic in the
    /// callback is contained and counted.
    pub fn on_evict(&self, callback: impl Fn(&Eviction<K>) + Send + Sync + 'static) {
        self.shared.on_evict.add(callback);
    }

    /// Called with every out-of-memory error a load returns (for post-mortem dumps).
    pub fn on_oom(&self, callback: impl Fn(&Error) + Send + Sync + 'static) {
        self.shared.on_oom.add(callback);
    }

    /// The pressure of the budget now, from the bytes the slots hold.
    pub fn pressure_level(&self) -> MemoryPressure {
        self.shared.budget.pressure()
    }

    /// Whether the pressure is Critical, where eviction is due.
    pub fn should_evict(&self) -> bool {
        self.pressure_level().should_evict()
    }

    /// Bytes left before the budget.
    pub fn available(&self) -> u64 {
        self.shared.budget.available()
    }

    /// Bytes held against the budget (slots, plus memory of deallocated slots still in use).
    pub fn allocated(&self) -> u64 {
        self.shared.budget.used()
    }

    /// The budget's limit in bytes (`u64::MAX` when it has none).
    pub fn budget(&self) -> u64 {
        self.shared.budget.limit()
    }

    /// Number of slots allocated now.
    pub fn loaded_count(&self) -> usize {
        self.state().slots.len()
    }

    /// Whether a slot of that name is allocated.
    pub fn has_slot(&self, key: &K) -> bool {
        self.state().slots.contains_key(key)
    }

    /// Copies of every slot, least recently used first.
    pub fn slots(&self) -> Vec<ModelSlot<K>> {
        let state = self.state();
        let mut entries: Vec<(&K, &SlotEntry)> = state.slots.iter().collect();
        entries.sort_by_key(|(_, e)| e.lru_key());
        entries.into_iter().map(|(k, e)| e.info(k)).collect()
    }

    /// A copy of the slot's state, if it is allocated.
    pub fn slot(&self, key: &K) -> Option<ModelSlot<K>> {
        self.state().slots.get(key).map(|e| e.info(key))
    }

    /// The counters since the manager was made.
    pub fn stats(&self) -> SlotStats {
        let c = &self.shared.counters;
        SlotStats {
            evictions: c.evictions.load(Ordering::Relaxed),
            oom_retries: c.oom_retries.load(Ordering::Relaxed),
            ooms: c.ooms.load(Ordering::Relaxed),
            callback_panics: self.shared.on_evict.panics() + self.shared.on_oom.panics(),
            receipts: self.shared.receipts.counts(),
        }
    }

    /// The configuration the manager was made with.
    pub fn config(&self) -> &SlotConfig {
        &self.shared.config
    }

    /// The device backing, when slots own device memory.
    pub fn backing(&self) -> Option<&DeviceBacking> {
        self.shared.config.backing.as_ref()
    }

    fn state(&self) -> MutexGuard<'_, State<K>> {
        // A panic never happens while the lock is held (callbacks run outside it), but a poisoned
        // lock must not take the manager down with it.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_new(&self, key: &K, size_bytes: u64) -> Result<()> {
        check_new_in(&self.state(), key, size_bytes)
    }

    fn note_failure(&self, error: &Error) {
        if !matches!(error, Error::OutOfMemory(_)) {
            return;
        }
        if matches!(error, Error::OutOfMemory(oom) if oom.source != OomSource::Device) {
            self.shared.counters.ooms.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.on_oom.fire(error);
    }

    fn loaded_models(&self, loaded: usize) -> LoadedModels {
        LoadedModels { loaded, slots: self.shared.config.expected_slots.max(loaded) }
    }

    fn usage_for_error(&self, loaded: usize) -> Usage {
        match &self.shared.config.backing {
            Some(backing) => backing.tracker.usage(),
            None => {
                let mut usage =
                    Usage { total_bytes: self.allocated(), allocation_count: loaded as u64, ..Usage::default() };
                usage.by_purpose[Purpose::ModelWeights.index()].bytes = self.allocated();
                usage.by_purpose[Purpose::ModelWeights.index()].count = loaded as u64;
                usage
            }
        }
    }

    fn device(&self) -> i32 {
        self.shared.config.backing.as_ref().map_or(-1, |b| b.tracker.device() as i32)
    }

    fn budget_oom(&self, requested: u64, refusal: Refusal, loaded: usize) -> Error {
        let usage = self.usage_for_error(loaded);
        refusal.out_of_memory(self.device(), requested, usage).with_loaded_models(self.loaded_models(loaded)).into()
    }

    fn enrich_device_oom(&self, error: Error, loaded: usize) -> Error {
        match error {
            Error::OutOfMemory(oom) => {
                (*oom).with_budget(self.budget()).with_loaded_models(self.loaded_models(loaded)).into()
            }
            other => other,
        }
    }
}

/// The table entry of a loaded slot.
#[derive(Debug)]
struct SlotEntry {
    size_bytes: u64,
    loaded_at: Duration,
    last_accessed: Duration,
    /// Tie-break for equal clock readings: a later access has a larger sequence number.
    access_seq: u64,
    pinned: bool,
    memory: Arc<SlotMemory>,
}

impl SlotEntry {
    /// Live use guards: the explicit count, never the `Arc`'s strong count (which also counts
    /// the integrity pass's transient readers).
    fn users(&self) -> usize {
        self.memory.users()
    }

    fn lru_key(&self) -> (Duration, u64) {
        (self.last_accessed, self.access_seq)
    }

    fn info<K: Clone>(&self, key: &K) -> ModelSlot<K> {
        ModelSlot {
            key: key.clone(),
            size_bytes: self.size_bytes,
            loaded_at: self.loaded_at,
            last_accessed: self.last_accessed,
            loaded: true,
            pinned: self.pinned,
            users: self.users(),
            on_device: self.memory.on_device(),
            weights: self.memory.weights().cloned(),
        }
    }
}

fn check_new_in<K: SlotKey>(state: &State<K>, key: &K, size_bytes: u64) -> Result<()> {
    if size_bytes == 0 {
        return Err(Error::InvalidSize(format!("slot {key} of zero bytes")));
    }
    if state.slots.contains_key(key) || state.loading.contains(key) {
        return Err(Error::SlotExists(key.to_string()));
    }
    Ok(())
}

/// Idle: not pinned, no [`SlotUse`] alive (the explicit count: an integrity check reading the
/// slot does not make it busy), and loaded at least `min_residency` ago.
fn is_idle(entry: &SlotEntry, now: Duration, min_residency: Duration) -> bool {
    !entry.pinned && entry.users() == 0 && now.saturating_sub(entry.loaded_at) >= min_residency
}

/// The idle slots, least recently used first.
fn idle_for<K: SlotKey>(state: &State<K>, now: Duration, min_residency: Duration) -> Vec<(K, u64)> {
    let mut idle: Vec<(&K, &SlotEntry)> = state.slots.iter().filter(|(_, e)| is_idle(e, now, min_residency)).collect();
    idle.sort_by_key(|(_, e)| e.lru_key());
    idle.into_iter().map(|(k, e)| (k.clone(), e.size_bytes)).collect()
}

/// The fit plan among `candidates` (least recently used first) for `need` bytes.
fn plan_among<K: Clone>(candidates: &[(K, u64)], need: u64) -> Option<Vec<K>> {
    let sizes: Vec<u64> = candidates.iter().map(|(_, size)| *size).collect();
    fit_plan::plan(&sizes, need).map(|indices| indices.into_iter().map(|i| candidates[i].0.clone()).collect())
}

/// A key in the `loading` set while its device memory is allocated outside the table lock.
/// However the load ends — committed, refused, or unwound by a panic (a key whose `Display`
/// panics while naming the allocation) — the key leaves the set, so that it can be loaded again.
struct LoadingKey<'a, K: SlotKey> {
    manager: &'a ModelSlotManager<K>,
    key: &'a K,
    done: bool,
}

impl<K: SlotKey> LoadingKey<'_, K> {
    /// Removes the key under the lock the caller already holds.
    fn finish(mut self, state: &mut State<K>) {
        state.loading.remove(self.key);
        self.done = true;
    }
}

impl<K: SlotKey> Drop for LoadingKey<'_, K> {
    fn drop(&mut self) {
        if !self.done {
            // Unwinding or an early return: the table lock is not held here (the attempt holds
            // it only after `finish`), and `state()` ignores poison.
            self.manager.state().loading.remove(self.key);
        }
    }
}

/// Whether an eviction takes the keys it was given only if every one of them is still idle.
#[derive(Debug, Clone, Copy)]
struct AllOrNothing(bool);

fn next_seq<K>(state: &mut State<K>) -> u64 {
    state.next_seq += 1;
    state.next_seq
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
