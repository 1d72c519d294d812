//! Workload files for `vramguard serve`.
use vramguard::service::Workload;
use vramguard::Purpose;

#[test]
fn the_default_workload_is_the_thirteen_embedders() {
    let workload = Workload::embedders();
    assert_eq!(workload.slots.len(), 13);
    assert_eq!(workload.model_bytes(), 1_600_000_000);
    assert_eq!(workload.slots[6].name, "E7 Code");
}

#[test]
fn a_toml_file_names_slots_sizes_purposes_and_pins() {
    let workload = Workload::parse(
        r#"
        [[slot]]
        name = "encoder"
        bytes = 200_000_000
        pinned = true

        [[slot]]
        name = "kv"
        bytes = 1_000_000
        purpose = "KVCache"
        "#,
    )
    .unwrap();
    assert_eq!(workload.slots.len(), 2);
    assert!(workload.slots[0].pinned && workload.slots[0].purpose == Purpose::ModelWeights);
    assert_eq!(workload.slots[1].purpose, Purpose::KVCache);
    assert_eq!((workload.model_bytes(), workload.total_bytes()), (200_000_000, 201_000_000));
}

#[test]
fn bad_workloads_are_refused_with_their_codes() {
    let cases = [
        ("[[slot]]\nname = \"a\"\nbytes = 0\n", "VRAM-E003"),
        ("[[slot]]\nname = \"a\"\nbytes = 1\n[[slot]]\nname = \"a\"\nbytes = 2\n", "VRAM-E007"),
        ("[[slot]]\nname = \"a\"\nbytes = 1\npurpose = \"Weights\"\n", "VRAM-E007"),
        ("[[slot]]\nname = \"a\"\nbytes = -5\n", "VRAM-E007"),
        ("[[slot]]\nname = \"a\"\nbytes = 1\ncolour = \"red\"\n", "VRAM-E007"),
        ("not toml at all [", "VRAM-E007"),
    ];
    for (text, code) in cases {
        assert_eq!(Workload::parse(text).unwrap_err().code(), code, "{text}");
    }
    let missing = Workload::load(std::path::Path::new("/nonexistent/workload.toml")).unwrap_err();
    assert_eq!(missing.code(), "VRAM-E017");
}
