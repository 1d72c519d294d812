//! ERR1/ERR2: stable, unique codes; a message that leads with its code; a remediation for each.
use super::*;

fn one_of_each() -> Vec<Error> {
    let mut usage = crate::usage::Usage { total_bytes: 6 << 30, allocation_count: 2, ..Default::default() };
    usage.by_purpose[0].bytes = 4 << 30;
    usage.by_purpose[1].bytes = 2 << 30;
    let oom = OutOfMemory {
        device: 0,
        source: OomSource::Budget,
        requested: 500_000_000,
        available: Some(100_000_000),
        budget: Some(8 << 30),
        allocated: 8_489_934_592,
        loaded_models: Some(LoadedModels { loaded: 12, slots: 13 }),
        usage,
        cause: String::new(),
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
        Error::OperationTooLarge { operation: "search-1".into(), requested: 1 << 30, limit: 512 << 20 },
        Error::UnknownSlot("E7 Code".into()),
        Error::SlotExists("E1 Semantic".into()),
        Error::SlotBusy("E1 Semantic is pinned".into()),
        Error::Io("cannot write a dump in /nonexistent".into()),
        Error::CudaSticky("cudaErrorIllegalAddress".into()),
        Error::Timeout("checksum not done after 30 s".into()),
        Error::InvalidWeights {
            file: "/models/e1.safetensors".into(),
            tensor: Some("layer.0.weight".into()),
            reason: "starts at data offset 2, not a multiple of F32's 4-byte size".into(),
        },
        Error::WeightsCorrupted("the weights on the device differ from the bytes read".into()),
        Error::WeightsFileChanged("weights file \"e1.safetensors\" changed while it was loaded".into()),
        Error::NotReadable("read witness: the memory is not readable by the GPU (pageable host memory)".into()),
    ]
}

#[test]
fn codes_are_unique_and_numbered_in_order() {
    let codes: Vec<&str> = one_of_each().iter().map(Error::code).collect();
    let expected: Vec<String> = (1..=23).map(|n| format!("VRAM-E{n:03}")).collect();
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
fn out_of_memory_reads_like_the_seed_example() {
    let text = one_of_each()[1].to_string();
    let expected = [
        "[VRAM-E002] GPU memory allocation failed on GPU0: over the budget",
        "  Requested: 500,000,000 bytes",
        "  Available: 100,000,000 bytes",
        "  Total Budget: 8.00 GiB (8,589,934,592 bytes)",
        "  Currently Allocated: 8,489,934,592 bytes",
        "  Loaded Models: 12/13",
        "  By purpose: ModelWeights 4.00 GiB (4,294,967,296 bytes), KVCache 2.00 GiB (2,147,483,648 bytes), IntermediateBuffers 0 B, Unknown 0 B",
        "  Suggestion: Evict least-recently-used model or reduce model sizes, or raise the budget",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn json_form_has_code_recoverability_and_figures() {
    for error in one_of_each() {
        let json = error.to_json();
        assert_eq!(json["code"], error.code());
        assert_eq!(json["kind"], error.kind());
        assert_eq!(json["recoverable"], error.is_recoverable());
        assert_eq!(json["message"], error.to_string());
        assert_eq!(json["remediation"], error.remediation());
    }
    let oom = one_of_each()[1].to_json();
    let details = &oom["details"];
    assert_eq!(details["requested_bytes"], 500_000_000u64);
    assert_eq!(details["available_bytes"], 100_000_000u64);
    assert_eq!(details["budget_bytes"], 8u64 << 30);
    assert_eq!(details["loaded_models"]["loaded"], 12);
    assert_eq!(details["by_purpose_bytes"]["ModelWeights"], 4u64 << 30);
    assert_eq!(details["source"], "budget");
    let too_large = one_of_each()[12].to_json();
    assert_eq!(too_large["details"]["limit_bytes"], 512u64 << 20);
    let weights = one_of_each()[19].to_json();
    assert_eq!(weights["details"]["file"], "/models/e1.safetensors");
    assert_eq!(weights["details"]["tensor"], "layer.0.weight");
    assert_eq!(weights["kind"], "invalid_weights");
    assert_eq!(weights["recoverable"], true);
}

#[test]
fn invalid_weights_names_the_file_and_the_tensor() {
    let text = one_of_each()[19].to_string();
    assert_eq!(
        text,
        "[VRAM-E020] invalid weights file \"/models/e1.safetensors\", tensor \"layer.0.weight\": starts at data offset 2, \
         not a multiple of F32's 4-byte size"
    );
    let whole_file = Error::InvalidWeights { file: "w.safetensors".into(), tensor: None, reason: "truncated".into() };
    assert_eq!(whole_file.to_string(), "[VRAM-E020] invalid weights file \"w.safetensors\": truncated");
}

#[test]
fn only_a_missing_device_internal_bugs_and_sticky_cuda_errors_are_unrecoverable() {
    let unrecoverable: Vec<&str> = one_of_each().iter().filter(|e| !e.is_recoverable()).map(Error::code).collect();
    assert_eq!(unrecoverable, ["VRAM-E001", "VRAM-E012", "VRAM-E018"]);
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
