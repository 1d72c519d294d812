//! H4 without a GPU: NVML is absent here, so every answer must be a clean "unknown" with a
//! reason; and the pure parts (PCI ids, finding our PID in a process list) checked against
//! fakes. On a host with a driver the load tests check the other branch.
use proptest::prelude::*;
use vramguard::nvml::{
    find_process, not_listed, process_vram, process_vram_bytes, shared, Nvml, NvmlUnavailable, PciBusId, ProcessInfo,
    ProcessVram, UsedGpuMemory, NVML_LIBRARY,
};

const GIB: u64 = 1 << 30;

fn entry(pid: u32, used: u64) -> ProcessInfo {
    ProcessInfo { pid, used_gpu_memory: UsedGpuMemory::Used(used), gpu_instance_id: None, compute_instance_id: None }
}

fn driver_here() -> bool {
    Nvml::load().is_ok()
}

// ---- loading ------------------------------------------------------------------------------

#[test]
fn load_fails_cleanly_without_a_driver() {
    match Nvml::load() {
        Ok(nvml) => assert_eq!(nvml.library(), NVML_LIBRARY), // a host with a driver
        Err(NvmlUnavailable::Library { library, reason }) => {
            assert_eq!(library, NVML_LIBRARY);
            assert!(!reason.is_empty());
        }
        Err(other) => assert!(!other.to_string().is_empty(), "{other:?}"),
    }
}

#[test]
fn missing_library_names_the_path() {
    let error = Nvml::load_from("/nonexistent/libnvidia-ml.so.1").unwrap_err();
    assert!(matches!(error, NvmlUnavailable::Library { .. }), "{error:?}");
    assert!(error.to_string().contains("/nonexistent/libnvidia-ml.so.1"), "{error}");
}

#[test]
fn library_without_nvml_symbols_is_a_missing_symbol() {
    let error = Nvml::load_from("libc.so.6").unwrap_err();
    assert_eq!(error, NvmlUnavailable::MissingSymbol { library: "libc.so.6".into(), symbol: "nvmlInit_v2" });
    assert_eq!(error.to_string(), "libc.so.6 has no nvmlInit_v2");
}

#[test]
fn name_with_nul_is_rejected_not_panicking() {
    assert!(matches!(Nvml::load_from("lib\0nvml"), Err(NvmlUnavailable::Library { .. })));
}

#[test]
fn process_vram_is_unknown_with_a_reason_here() {
    if driver_here() && vramguard::device_count().is_ok() {
        return; // the GPU suite covers this host
    }
    assert_eq!(process_vram_bytes(0), None);
    let ProcessVram::Unknown(why) = process_vram(0) else { panic!("a figure without NVML") };
    assert!(why.contains("NVML unavailable") || why.contains("CUDA device 0"), "{why}");
    if !driver_here() {
        assert!(why.contains(NVML_LIBRARY), "{why}");
    }
}

#[test]
fn failure_is_cached_and_repeated_calls_agree_across_threads() {
    let first = process_vram(0);
    let again: Vec<ProcessVram> = std::thread::scope(|scope| {
        let workers: Vec<_> =
            (0..8).map(|_| scope.spawn(|| (0..200).map(|_| process_vram(0)).collect::<Vec<_>>())).collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    if first.bytes().is_none() {
        assert!(again.iter().all(|answer| *answer == first), "{first:?}");
    }
    assert_eq!(shared().err(), shared().err());
    assert_eq!(process_vram_bytes(u32::MAX), None);
}

// ---- PCI bus ids --------------------------------------------------------------------------

#[test]
fn cuda_and_nvml_forms_are_the_same_gpu() {
    let cuda = PciBusId::parse("0000:1B:00.0").unwrap();
    let nvml = PciBusId::parse("00000000:1B:00.0").unwrap();
    assert_eq!(cuda, nvml);
    assert_eq!(cuda, PciBusId { domain: 0, bus: 0x1b, device: 0, function: 0 });
    assert_eq!(cuda.nvml_form(), "00000000:1B:00.0");
    assert_eq!(cuda.legacy_form(), "0000:1B:00.0");
    assert_eq!(cuda.to_string(), "0000:1B:00.0");
}

#[test]
fn pci_parse_accepts_case_missing_domain_and_c_padding() {
    let expected = PciBusId { domain: 0x10002, bus: 0xab, device: 0x1f, function: 7 };
    assert_eq!("00010002:ab:1F.7".parse::<PciBusId>().unwrap(), expected);
    assert_eq!(PciBusId::parse("10002:AB:1f.7\0\0\0").unwrap(), expected);
    assert_eq!(expected.legacy_form(), "10002:AB:1F.7");
    assert_eq!(PciBusId::parse("1B:00.0").unwrap(), PciBusId::parse("0000:1B:00.0").unwrap());
}

#[test]
fn malformed_pci_ids_are_rejected() {
    for bad in [
        "",
        "0000:1B:00",
        "0000:1B:20.0",
        "0000:1B:00.8",
        "zz:00.0",
        "000000000:1B:00.0",
        "0000:100:00.0",
        "+1:00:00.0",
        "0000:1B:00.0.0",
        "0:0:0:0.0",
        "0000::00.0",
        "0x00:1B:00.0",
        "GPU-0000",
    ] {
        let error = PciBusId::parse(bad).unwrap_err();
        assert_eq!(error, NvmlUnavailable::BadPciBusId(bad.into()), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn pci_forms_round_trip(domain in any::<u32>(), bus in any::<u8>(), device in 0u8..32, function in 0u8..8) {
        let id = PciBusId { domain, bus, device, function };
        prop_assert_eq!(PciBusId::parse(&id.nvml_form()).unwrap(), id);
        prop_assert_eq!(PciBusId::parse(&id.legacy_form()).unwrap(), id);
        prop_assert_eq!(PciBusId::parse(&id.legacy_form().to_lowercase()).unwrap(), id);
    }

    #[test]
    fn pci_parse_never_panics(text in ".{0,24}") {
        let _ = PciBusId::parse(&text);
    }
}

// ---- NVML's "no figure" ------------------------------------------------------------------

#[test]
fn nvml_value_not_available_is_no_figure() {
    // usedGpuMemory == NVML_VALUE_NOT_AVAILABLE (e.g. under WDDM) must not read as a byte count.
    assert_eq!(UsedGpuMemory::from(u64::MAX), UsedGpuMemory::Unavailable);
    assert_eq!(UsedGpuMemory::from(0), UsedGpuMemory::Used(0));
}

// ---- finding this process -----------------------------------------------------------------

#[test]
fn our_entry_is_known() {
    let list = [entry(10, GIB), entry(42, 3 * GIB), entry(7, 5)];
    assert_eq!(find_process(&list, 42), ProcessVram::Known(3 * GIB));
    assert_eq!(find_process(&[entry(42, 0)], 42), ProcessVram::Known(0)); // NVML's figure, not a guess
}

#[test]
fn not_available_is_unknown_not_zero() {
    let mut hidden = entry(42, 0);
    hidden.used_gpu_memory = UsedGpuMemory::Unavailable;
    let ProcessVram::Unknown(why) = find_process(&[hidden], 42) else { panic!() };
    assert!(why.contains("NVML_VALUE_NOT_AVAILABLE"), "{why}");
}

#[test]
fn missing_pid_is_unknown_and_says_which_pids_were_listed() {
    let ProcessVram::Unknown(why) = find_process(&[entry(10, GIB), entry(11, GIB)], 42) else { panic!() };
    assert!(why.contains("pid 42") && why.contains("[10, 11]"), "{why}");
    assert_eq!(find_process(&[], 42).bytes(), None);
    let in_container = not_listed(&[entry(4242, GIB)], 42, Some(true));
    assert!(in_container.contains("PID namespace"), "{in_container}");
    let many: Vec<ProcessInfo> = (0..20).map(|pid| entry(pid, 1)).collect();
    assert!(not_listed(&many, 42, None).contains("7, ..."));
}

#[test]
fn mig_instances_add_and_repeats_count_once() {
    let mut a = entry(42, GIB);
    a.gpu_instance_id = Some(1);
    a.compute_instance_id = Some(0);
    let mut b = entry(42, 2 * GIB);
    b.gpu_instance_id = Some(2);
    b.compute_instance_id = Some(0);
    assert_eq!(find_process(&[a.clone(), b, a, entry(9, GIB)], 42), ProcessVram::Known(3 * GIB));
}
