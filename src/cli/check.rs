//! `vramguard check`: describe each GPU and prove, on real allocations, that residency checks
//! tell device memory from the RAM-fallback kinds.
use std::fmt::Write as _;

use crate::format::bytes_human;
use crate::{AllocationKind, Device, Purpose, PurposeSet, Result};

/// Bytes allocated per kind by the self-test: small, so managed memory stays a deliberate amount.
const SELF_TEST_BYTES: u64 = 1 << 20;

/// One kind's outcome in the self-test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindOutcome {
    /// The allocation kind tested.
    pub kind: AllocationKind,
    /// Whether the residency check found the buffer in device memory.
    pub resident: bool,
    /// Whether it should be: true for `Device` and `Pool`, false for the RAM-fallback kinds.
    pub expected_resident: bool,
    /// The verdict in words: "resident in device memory", or the violation and memory type.
    pub detail: String,
}

/// Allocates one small ModelWeights buffer of each kind and classifies it.
pub fn self_test(device: Device) -> Result<Vec<KindOutcome>> {
    let tracker = device.tracker()?;
    let kinds = [AllocationKind::Device, AllocationKind::Pool, AllocationKind::Managed, AllocationKind::PinnedHost];
    let pattern: Vec<u8> = (0..SELF_TEST_BYTES).map(|i| (i * 131 % 251) as u8).collect();
    let mut buffers = Vec::new();
    for kind in kinds {
        let mut buffer =
            tracker.allocate_kind(SELF_TEST_BYTES, Purpose::ModelWeights, kind, &format!("self-test {kind}"))?;
        buffer.copy_from_host(0, &pattern)?;
        if buffer.to_vec()? != pattern {
            return Err(crate::Error::Internal(format!("{kind} buffer did not read back what was written")));
        }
        buffers.push(buffer);
    }
    let report = tracker.verify(PurposeSet::ALL)?;
    let outcomes = buffers
        .iter()
        .map(|buffer| {
            let violation = report.violations.iter().find(|v| v.address == buffer.as_ptr() as usize);
            KindOutcome {
                kind: buffer.kind(),
                resident: violation.is_none(),
                expected_resident: matches!(buffer.kind(), AllocationKind::Device | AllocationKind::Pool),
                detail: match violation {
                    None => "resident in device memory".to_string(),
                    Some(v) => format!("VIOLATION: {} (memory type {})", v.reason, v.memory_type),
                },
            }
        })
        .collect();
    Ok(outcomes)
}

/// Runs the check on every GPU (or one). Returns the text and whether every outcome was expected.
pub fn run(only: Option<u32>) -> Result<(String, bool)> {
    let devices = match only {
        Some(ordinal) => vec![Device::new(ordinal)?],
        None => Device::all()?,
    };
    let mut out = String::new();
    let mut all_expected = true;
    for device in devices {
        let info = device.info()?;
        let class = match (info.integrated, info.pageable_memory_access) {
            (true, _) => "integrated (shares host memory)",
            (false, true) => "discrete, unified with host memory (HMM/ATS)",
            (false, false) => "discrete",
        };
        let _ = writeln!(
            out,
            "GPU{}: {} (compute {}.{}), {}",
            info.ordinal, info.name, info.compute_capability.0, info.compute_capability.1, class
        );
        let _ = writeln!(
            out,
            "  memory: {} total, {} free",
            bytes_human(info.memory.total_bytes),
            bytes_human(info.memory.free_bytes)
        );
        let _ = writeln!(out, "  residency self-test ({} ModelWeights buffer per kind):", bytes_human(SELF_TEST_BYTES));
        for outcome in self_test(device)? {
            let verdict = if outcome.resident == outcome.expected_resident { "as expected" } else { "UNEXPECTED" };
            all_expected &= outcome.resident == outcome.expected_resident;
            let _ = writeln!(out, "    {:<11} {} — {}", outcome.kind.to_string(), outcome.detail, verdict);
        }
    }
    let _ = writeln!(out, "self-test: {}", if all_expected { "passed" } else { "FAILED" });
    Ok((out, all_expected))
}
