//! `Workload::parse` (what `vramguard serve --workload` reads): text that is not TOML, zero
//! sizes, duplicate names, unknown purposes and fields, sizes negative, huge or of the wrong
//! type, missing fields, names empty, with NUL or over 255 bytes, pins on slots that are not
//! model weights. Each is refused whole: no partial workload comes back. `Workload::validate`
//! refuses the same in a workload built in code, before `Service::start` touches a device.
use vramguard::service::{Service, ServiceConfig, Workload, WorkloadSlot};
use vramguard::Purpose;

use super::UNUSABLE_DEVICE;

use super::code;

fn slot(body: &str) -> String {
    format!("[[slot]]\nname = \"a\"\n{body}\n")
}

fn refused(expected: &str, cases: &[&str]) {
    for text in cases {
        assert_eq!(code(Workload::parse(text)), expected, "{text:?}");
    }
}

#[test]
fn text_that_is_not_toml_is_e007() {
    refused(
        "VRAM-E007",
        &[
            "not toml at all [",
            "[[slot]\nname = \"a\"\nbytes = 1\n",
            "[[slot]]\nname = \"a\nbytes = 1\n",
            "[[slot]]\nname = \"a\"\nname = \"b\"\nbytes = 1\n",
            "\u{0}",
            "[[slot]]\nname = \"a\"\nbytes = 1\n\u{feff}\u{feff}",
        ],
    );
}

#[test]
fn a_slot_of_zero_bytes_is_e003() {
    refused(
        "VRAM-E003",
        &[&slot("bytes = 0"), &format!("{}{}", slot("bytes = 0").replace("\"a\"", "\"z\""), slot("bytes = 1"))],
    );
}

#[test]
fn a_name_given_twice_is_e007() {
    let twice = format!("{}{}", slot("bytes = 1"), slot("bytes = 2\npurpose = \"KVCache\""));
    refused("VRAM-E007", &[&twice]);
}

#[test]
fn an_unknown_purpose_is_e007() {
    for purpose in ["Weights", "modelweights", "MODELWEIGHTS", "", "KV Cache"] {
        refused("VRAM-E007", &[&slot(&format!("bytes = 1\npurpose = \"{purpose}\""))]);
    }
    refused("VRAM-E007", &[&slot("bytes = 1\npurpose = 3")]);
}

#[test]
fn unknown_fields_are_e007_in_a_slot_and_at_the_top() {
    refused(
        "VRAM-E007",
        &[
            &slot("bytes = 1\ncolour = \"red\""),
            &format!("budget = 5\n{}", slot("bytes = 1")),
            "[[slots]]\nname = \"a\"\nbytes = 1\n",
        ],
    );
}

#[test]
fn negative_and_out_of_range_sizes_are_e007() {
    refused(
        "VRAM-E007",
        &[
            &slot("bytes = -1"),
            &slot("bytes = -9223372036854775808"),
            &slot("bytes = 18446744073709551615"),
            &slot("bytes = 99999999999999999999999"),
        ],
    );
}

#[test]
fn sizes_of_the_wrong_type_are_e007() {
    refused(
        "VRAM-E007",
        &[
            &slot("bytes = 1.5"),
            &slot("bytes = 1e30"),
            &slot("bytes = nan"),
            &slot("bytes = inf"),
            &slot("bytes = \"8GiB\""),
            &slot("bytes = true"),
        ],
    );
}

#[test]
fn missing_name_or_bytes_and_fields_of_the_wrong_type_are_e007() {
    refused(
        "VRAM-E007",
        &[
            "[[slot]]\nbytes = 1\n",
            "[[slot]]\nname = \"a\"\n",
            "[[slot]]\nname = 5\nbytes = 1\n",
            &slot("bytes = 1\npinned = \"yes\""),
            "slot = 5\n",
            "[slot]\nname = \"a\"\nbytes = 1\n",
        ],
    );
}

/// Sizes each within TOML's integers can sum past u64::MAX; the workload's totals must not panic
/// (a size over 256 TiB can never be allocated anyway: VRAM-E003 at parse time would be earlier).
#[test]
fn sizes_whose_sum_overflows_are_refused_or_summed_without_panic() {
    let three = ["a", "b", "c"]
        .map(|name| format!("[[slot]]\nname = \"{name}\"\nbytes = 9_000_000_000_000_000_000\n"))
        .concat();
    match Workload::parse(&three) {
        Err(error) => assert_eq!(error.code(), "VRAM-E003"),
        Ok(workload) => {
            let totals = std::panic::catch_unwind(|| (workload.total_bytes(), workload.model_bytes()));
            assert_eq!(totals.ok(), Some((u64::MAX, u64::MAX)), "totals must saturate, not panic or wrap");
        }
    }
}

fn named(name: &str) -> String {
    format!("[[slot]]\nname = {}\nbytes = 1\n", toml_string(name))
}

/// A TOML basic string of `name`, escaping what TOML requires (NUL included).
fn toml_string(name: &str) -> String {
    let mut out = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Defect: names were checked only when the tracker named the allocation — after the device
/// was open and the slots before were loaded.
#[test]
fn an_empty_name_or_one_with_nul_is_e007() {
    refused("VRAM-E007", &[&named(""), &named("a\0b"), &named("\0"), &format!("{}{}", named("ok"), named(""))]);
}

#[test]
fn a_name_over_255_bytes_is_e009_and_255_is_accepted() {
    let longest = "n".repeat(255);
    assert!(Workload::parse(&named(&longest)).is_ok());
    let multibyte = "é".repeat(127) + "n"; // 255 bytes in 128 characters
    assert!(Workload::parse(&named(&multibyte)).is_ok());
    refused("VRAM-E009", &[&named(&"n".repeat(256)), &named(&"é".repeat(128)), &named(&"x".repeat(100_000))]);
}

/// Defect: `pinned = true` on a buffer (not ModelWeights) was silently ignored.
#[test]
fn a_pin_on_a_slot_that_is_not_model_weights_is_e007() {
    for purpose in ["KVCache", "IntermediateBuffers", "Unknown"] {
        refused("VRAM-E007", &[&slot(&format!("bytes = 1\npurpose = \"{purpose}\"\npinned = true"))]);
        assert!(Workload::parse(&slot(&format!("bytes = 1\npurpose = \"{purpose}\"\npinned = false"))).is_ok());
    }
    assert!(Workload::parse(&slot("bytes = 1\npinned = true")).is_ok(), "a pinned model slot is fine");
}

fn workload_slot(name: &str, purpose: Purpose, pinned: bool) -> WorkloadSlot {
    WorkloadSlot { name: name.to_string(), bytes: Some(1), files: Vec::new(), purpose, pinned }
}

/// A workload built in code is refused by `validate`, and by `Service::start` before the device
/// is touched: on device 63, which no host has, the answer is the workload's code, not E001/E010.
#[test]
fn a_workload_built_in_code_is_refused_before_the_device_is_opened() {
    let cases = [
        (
            "VRAM-E007",
            vec![workload_slot("fine", Purpose::ModelWeights, false), workload_slot("", Purpose::ModelWeights, false)],
        ),
        ("VRAM-E007", vec![workload_slot("a\0", Purpose::KVCache, false)]),
        ("VRAM-E009", vec![workload_slot(&"x".repeat(256), Purpose::ModelWeights, true)]),
        ("VRAM-E007", vec![workload_slot("kv", Purpose::KVCache, true)]),
    ];
    for (expected, slots) in cases {
        let workload = Workload { slots };
        assert_eq!(code(workload.validate()), expected, "{workload:?}");
        let config = ServiceConfig { device: UNUSABLE_DEVICE, workload: workload.clone(), ..ServiceConfig::default() };
        assert_eq!(code(Service::start(config)), expected, "{workload:?}");
    }
}

/// A workload file in a fresh directory, beside the weights files the case writes.
fn workload_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vramguard-workload-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A valid one-tensor safetensors file (16 bytes of F32).
fn weights_file(path: &std::path::Path) {
    let header = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}     "#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 16]);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_slot_with_files_has_no_bytes_and_holds_model_weights() {
    let dir = workload_dir("files-rules");
    weights_file(&dir.join("m.safetensors"));
    let cases = [
        ("files = [\"m.safetensors\"]\nbytes = 16\n", "VRAM-E007"),
        ("files = [\"m.safetensors\"]\npurpose = \"KVCache\"\n", "VRAM-E007"),
        ("pinned = true\n", "VRAM-E007"), // neither bytes nor files
        ("files = [\"missing.safetensors\"]\n", "VRAM-E017"),
        ("files = [\"m.safetensors\", \"m.safetensors\"]\n", "VRAM-E020"), // the same names twice
    ];
    for (body, expected) in cases {
        let path = dir.join("workload.toml");
        std::fs::write(&path, slot(body)).unwrap();
        assert_eq!(code(Workload::load(&path)), expected, "{body:?}");
    }
    // Relative paths are the workload file's directory's; a valid file is accepted without a GPU.
    let path = dir.join("workload.toml");
    std::fs::write(&path, slot("files = [\"m.safetensors\"]\npinned = true\n")).unwrap();
    let workload = Workload::load(&path).expect("a valid workload of files");
    assert_eq!(workload.slots[0].files, vec![dir.join("m.safetensors")]);
    assert_eq!(workload.slots[0].bytes, None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_weights_file_in_a_workload_is_e020_before_the_device_is_opened() {
    let dir = workload_dir("bad-file");
    std::fs::write(dir.join("bad.safetensors"), b"\x10\0\0\0\0\0\0\0{\"a\": 1}").unwrap();
    let path = dir.join("workload.toml");
    std::fs::write(&path, slot("files = [\"bad.safetensors\"]\n")).unwrap();
    assert_eq!(code(Workload::load(&path)), "VRAM-E020");
    // Built in code, the same workload is refused by Service::start before it opens a device.
    let workload = Workload {
        slots: vec![WorkloadSlot {
            name: "a".into(),
            bytes: None,
            files: vec![dir.join("bad.safetensors")],
            purpose: Purpose::ModelWeights,
            pinned: false,
        }],
    };
    let config = ServiceConfig { device: UNUSABLE_DEVICE, workload, ..ServiceConfig::default() };
    assert_eq!(code(Service::start(config)), "VRAM-E020");
    let _ = std::fs::remove_dir_all(dir);
}
