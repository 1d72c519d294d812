//! ERR1: what an out-of-memory error carries — what was asked, what was free, the budget, what is
//! held and by which purpose, how many models are loaded — and how it reads to an operator.
use std::fmt;

use serde::Serialize;

use crate::format::{bytes_exact, bytes_human};
use crate::purpose::Purpose;
use crate::usage::Usage;

/// Who said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OomSource {
    /// The total budget would be exceeded (checked before any device allocation).
    Budget,
    /// The budget of one purpose would be exceeded.
    PurposeBudget(Purpose),
    /// The device itself (`cudaMalloc` and friends) failed.
    Device,
}

/// Loaded model slots out of the configured ones, e.g. 12/13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadedModels {
    /// Slots loaded when the request was refused.
    pub loaded: usize,
    /// Slots configured (the workload's expected count), or the loaded count when larger.
    pub slots: usize,
}

/// Figures attached to an out-of-memory error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfMemory {
    /// The GPU, or -1 for a budget that no device backs (a policy-only slot manager).
    pub device: i32,
    /// Who refused: the total budget, one purpose's budget, or the device.
    pub source: OomSource,
    /// The bytes asked for.
    pub requested: u64,
    /// Bytes left under the budget, or the driver's free memory for a device failure, when known.
    pub available: Option<u64>,
    /// The budget that refused (or that was in force when the device refused).
    pub budget: Option<u64>,
    /// Currently allocated: against the budget, or tracked on the device.
    pub allocated: u64,
    /// Model slots loaded, out of the configured ones, when a slot manager asked.
    pub loaded_models: Option<LoadedModels>,
    /// What the tracker holds, by purpose.
    pub usage: Usage,
    /// The driver's message for a device failure; empty for a budget refusal.
    pub cause: String,
}

impl OutOfMemory {
    /// The one constructor: `requested` bytes on `device` (-1 for a budget no device backs)
    /// refused by `source`, with what the tracker (or the budget) holds by purpose. `allocated`
    /// starts as `usage.total_bytes`; nothing else is known until the `with_*` methods say so.
    ///
    /// A budget's refusal becomes one through [`Refusal::out_of_memory`](crate::Refusal::out_of_memory),
    /// a device's through [`OutOfMemory::device`].
    pub fn new(device: i32, source: OomSource, requested: u64, usage: Usage) -> OutOfMemory {
        OutOfMemory {
            device,
            source,
            requested,
            available: None,
            budget: None,
            allocated: usage.total_bytes,
            loaded_models: None,
            usage,
            cause: String::new(),
        }
    }

    /// A device allocation failure: available is the driver's free memory.
    pub fn device(device: i32, requested: u64, available: Option<u64>, usage: Usage, cause: String) -> OutOfMemory {
        OutOfMemory::new(device, OomSource::Device, requested, usage).with_available(available).with_cause(cause)
    }

    /// Bytes left under the budget, or the driver's free memory.
    pub fn with_available(mut self, available: Option<u64>) -> OutOfMemory {
        self.available = available;
        self
    }

    /// The budget that refused, or that was in force when the device refused.
    pub fn with_budget(mut self, budget: u64) -> OutOfMemory {
        self.budget = Some(budget);
        self
    }

    /// Bytes allocated against the limit that refused, when that is not the tracker's total.
    pub fn with_allocated(mut self, allocated: u64) -> OutOfMemory {
        self.allocated = allocated;
        self
    }

    /// The model slots loaded when the slot manager was refused.
    pub fn with_loaded_models(mut self, loaded_models: LoadedModels) -> OutOfMemory {
        self.loaded_models = Some(loaded_models);
        self
    }

    /// What failed, in words: the driver's message, or the operation that asked.
    pub fn with_cause(mut self, cause: impl Into<String>) -> OutOfMemory {
        self.cause = cause.into();
        self
    }

    /// One sentence on what to do, by who refused; printed last and in the JSON details.
    pub fn suggestion(&self) -> &'static str {
        match self.source {
            OomSource::Device => {
                "Evict least-recently-used models, lower the batch or KV-cache size, or move the model to a GPU with more free memory"
            }
            OomSource::Budget | OomSource::PurposeBudget(_) => {
                "Evict least-recently-used model or reduce model sizes, or raise the budget"
            }
        }
    }

    pub(crate) fn json_details(&self) -> serde_json::Value {
        let by_purpose: serde_json::Map<String, serde_json::Value> =
            Purpose::ALL.iter().map(|p| (p.to_string(), self.usage.bytes(*p).into())).collect();
        serde_json::json!({
            "device": self.device,
            "source": self.source,
            "requested_bytes": self.requested,
            "available_bytes": self.available,
            "budget_bytes": self.budget,
            "allocated_bytes": self.allocated,
            "loaded_models": self.loaded_models,
            "by_purpose_bytes": by_purpose,
            "cause": self.cause,
            "suggestion": self.suggestion(),
        })
    }
}

impl From<OutOfMemory> for crate::error::Error {
    fn from(oom: OutOfMemory) -> Self {
        crate::error::Error::OutOfMemory(Box::new(oom))
    }
}

fn exact(bytes: u64) -> String {
    format!("{} bytes", bytes_exact(bytes))
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.source {
            OomSource::Budget => "over the budget".to_string(),
            OomSource::PurposeBudget(p) => format!("over the {p} budget"),
            OomSource::Device => "the device is out of memory".to_string(),
        };
        if self.device >= 0 {
            writeln!(f, "GPU memory allocation failed on GPU{}: {why}", self.device)?;
        } else {
            writeln!(f, "GPU memory allocation failed: {why}")?;
        }
        writeln!(f, "  Requested: {}", exact(self.requested))?;
        match self.available {
            Some(available) => writeln!(f, "  Available: {}", exact(available))?,
            None => writeln!(f, "  Available: unknown")?,
        }
        if let Some(budget) = self.budget {
            writeln!(f, "  Total Budget: {}", bytes_human(budget))?;
        }
        writeln!(f, "  Currently Allocated: {}", exact(self.allocated))?;
        if let Some(models) = self.loaded_models {
            writeln!(f, "  Loaded Models: {}/{}", models.loaded, models.slots)?;
        }
        write!(f, "  By purpose:")?;
        for (i, purpose) in Purpose::ALL.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{purpose} {}", bytes_human(self.usage.bytes(*purpose)))?;
        }
        writeln!(f)?;
        if !self.cause.is_empty() {
            writeln!(f, "  Cause: {}", self.cause)?;
        }
        write!(f, "  Suggestion: {}", self.suggestion())
    }
}
