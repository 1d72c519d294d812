//! E1/E2: stable, unique codes; a message that leads with its code; a remediation for each.
use super::*;

fn one_of_each() -> Vec<Error> {
    let oom = OutOfMemory {
        device: 0,
        requested: 3 << 30,
        available: Some(1 << 30),
        usage: Usage { total_bytes: 6 << 30, allocation_count: 2, ..Usage::default() },
        cause: "cudaMalloc(3221225472 bytes) failed: cudaErrorMemoryAllocation".into(),
    };
    vec![
        Error::NoDevice("no CUDA driver".into()),
        Error::OutOfMemory(Box::new(oom)),
        Error::InvalidSize("0 bytes".into()),
        Error::UnknownPointer("0x1".into()),
        Error::AlreadyTracked("0x1".into()),
        Error::Ownership("recorded".into()),
        Error::InvalidArgument("purpose 9".into()),
        Error::OutOfRange("copy".into()),
        Error::DescriptionTooLong("300 bytes".into()),
        Error::InvalidDevice("ordinal 7".into()),
        Error::Cuda("cudaErrorLaunchFailure".into()),
        Error::Internal("bug".into()),
    ]
}

#[test]
fn codes_are_unique_and_numbered_in_order() {
    let codes: Vec<&str> = one_of_each().iter().map(Error::code).collect();
    let expected: Vec<String> = (1..=12).map(|n| format!("VRAM-E{n:03}")).collect();
    assert_eq!(codes, expected);
}

#[test]
fn every_message_leads_with_its_code_and_has_a_remediation() {
    for error in one_of_each() {
        let text = error.to_string();
        assert!(text.starts_with(&format!("[{}] ", error.code())), "{text}");
        let remediation = error.remediation();
        assert!(remediation.len() > 20 && remediation.ends_with('.'), "{}: {remediation}", error.code());
    }
}

#[test]
fn out_of_memory_carries_requested_available_and_breakdown() {
    let text = one_of_each()[1].to_string();
    for part in ["requested 3.00 GiB", "available 1.00 GiB", "tracked 6.00 GiB", "ModelWeights:", "KVCache:", "cudaErrorMemoryAllocation"] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
}

#[test]
fn only_a_missing_device_and_internal_bugs_are_unrecoverable() {
    let unrecoverable: Vec<&str> =
        one_of_each().iter().filter(|e| !e.is_recoverable()).map(Error::code).collect();
    assert_eq!(unrecoverable, ["VRAM-E001", "VRAM-E012"]);
}

#[test]
fn every_c_status_maps_to_its_error() {
    let cases = [
        (sys::VG_ERR_NULL_ARGUMENT, "VRAM-E007"),
        (sys::VG_ERR_INVALID_SIZE, "VRAM-E003"),
        (sys::VG_ERR_INVALID_ENUM, "VRAM-E007"),
        (sys::VG_ERR_DESCRIPTION_TOO_LONG, "VRAM-E009"),
        (sys::VG_ERR_UNKNOWN_POINTER, "VRAM-E004"),
        (sys::VG_ERR_ALREADY_TRACKED, "VRAM-E005"),
        (sys::VG_ERR_OWNERSHIP, "VRAM-E006"),
        (sys::VG_ERR_BUFFER_TOO_SMALL, "VRAM-E007"),
        (sys::VG_ERR_OUT_OF_RANGE, "VRAM-E008"),
        (sys::VG_ERR_INVALID_DEVICE, "VRAM-E010"),
        (sys::VG_ERR_NO_DEVICE, "VRAM-E001"),
        (sys::VG_ERR_CUDA, "VRAM-E011"),
        (sys::VG_ERR_INTERNAL, "VRAM-E012"),
        (99, "VRAM-E012"),
    ];
    for (status, code) in cases {
        assert_eq!(Error::from_status(status).code(), code, "status {status}");
    }
}
