//! Parameters of the step texts: sizes, purposes, allocation kinds, lists of model names, pressure
//! levels and error codes, each parsed once here so that the steps read like the features.
use std::str::FromStr;

use cucumber::Parameter;
use vramguard::{AllocationKind, MemoryPressure};

/// "1.5GB", "256 MiB", "1000 bytes". The seed writes GB for GiB (its 2 GB budget is 2 << 30
/// bytes), so GB and GiB are both 2^30 here; seed 000's exact figures are written in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "size", regex = r"\d+(?:\.\d+)? ?(?:bytes|byte|KiB|MiB|GiB|GB)")]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Size, String> {
        let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or(format!("no unit in {text:?}"))?;
        let (number, unit) = (&text[..split], text[split..].trim());
        let scale: u64 = match unit {
            "byte" | "bytes" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" | "GB" => 1 << 30,
            _ => return Err(format!("unknown unit {unit:?}")),
        };
        // Exact arithmetic: whole part times the scale, plus the fraction's digits scaled down.
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u64 = whole.parse().map_err(|e| format!("{text:?}: {e}"))?;
        let denominator = 10u64.pow(fraction.len() as u32);
        let numerator: u64 =
            if fraction.is_empty() { 0 } else { fraction.parse().map_err(|e| format!("{text:?}: {e}"))? };
        if (numerator * scale) % denominator != 0 {
            return Err(format!("{text:?} is not a whole number of bytes"));
        }
        Ok(Size(whole * scale + numerator * scale / denominator))
    }
}

/// A purpose as the features name it: "model weights" or "ModelWeights", and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(
    name = "purpose",
    regex = "model weights|KV cache|intermediate buffers|ModelWeights|KVCache|IntermediateBuffers"
)]
pub struct PurposeName(pub vramguard::Purpose);

impl FromStr for PurposeName {
    type Err = String;

    fn from_str(text: &str) -> Result<PurposeName, String> {
        use vramguard::Purpose::*;
        Ok(PurposeName(match text {
            "model weights" | "ModelWeights" => ModelWeights,
            "KV cache" | "KVCache" => KVCache,
            "intermediate buffers" | "IntermediateBuffers" => IntermediateBuffers,
            _ => return Err(format!("unknown purpose {text:?}")),
        }))
    }
}

/// An allocation kind by its Rust name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "kind", regex = "Device|Pool|Managed|PinnedHost")]
pub struct Kind(pub AllocationKind);

impl FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Kind, String> {
        Ok(Kind(match text {
            "Device" => AllocationKind::Device,
            "Pool" => AllocationKind::Pool,
            "Managed" => AllocationKind::Managed,
            "PinnedHost" => AllocationKind::PinnedHost,
            _ => return Err(format!("unknown allocation kind {text:?}")),
        }))
    }
}

/// `"A"`, `"A" and "B"`, `"A", "B" and "C"`.
#[derive(Debug, Clone, PartialEq, Eq, Parameter)]
#[param(name = "names", regex = r#""[^"]+"(?:(?:, | and )"[^"]+")*"#)]
pub struct Names(pub Vec<String>);

impl FromStr for Names {
    type Err = String;

    fn from_str(text: &str) -> Result<Names, String> {
        // Between the quotes: every odd piece of a split on '"'.
        Ok(Names(text.split('"').skip(1).step_by(2).map(str::to_owned).collect()))
    }
}

/// A pressure level by its Rust name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "level", regex = "Low|Medium|High|Critical")]
pub struct Level(pub MemoryPressure);

impl FromStr for Level {
    type Err = String;

    fn from_str(text: &str) -> Result<Level, String> {
        MemoryPressure::ALL
            .into_iter()
            .find(|level| format!("{level:?}") == text)
            .map(Level)
            .ok_or_else(|| format!("unknown pressure level {text:?}"))
    }
}

/// An error code: "VRAM-E002", or the seed's name for it, "VRAM_OOM".
#[derive(Debug, Clone, PartialEq, Eq, Parameter)]
#[param(name = "code", regex = r"VRAM_OOM|VRAM-E\d{3}")]
pub struct Code(pub String);

impl FromStr for Code {
    type Err = String;

    fn from_str(text: &str) -> Result<Code, String> {
        Ok(Code(if text == "VRAM_OOM" { "VRAM-E002".to_owned() } else { text.to_owned() }))
    }
}
