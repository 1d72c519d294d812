//! `Workload::parse` (what `vramguard serve --workload` reads): text that is not TOML, zero
//! sizes, duplicate names, unknown purposes and fields, sizes negative, huge or of the wrong
//! type, and missing fields. Each is refused whole: no partial workload comes back.
use vramguard::service::Workload;

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
    refused("VRAM-E003", &[&slot("bytes = 0"), &format!("{}{}", slot("bytes = 0").replace("\"a\"", "\"z\""), slot("bytes = 1"))]);
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
    refused("VRAM-E007", &[&slot("bytes = 1\ncolour = \"red\""), &format!("budget = 5\n{}", slot("bytes = 1")), "[[slots]]\nname = \"a\"\nbytes = 1\n"]);
}

#[test]
fn negative_and_out_of_range_sizes_are_e007() {
    refused("VRAM-E007", &[&slot("bytes = -1"), &slot("bytes = -9223372036854775808"), &slot("bytes = 18446744073709551615"), &slot("bytes = 99999999999999999999999")]);
}

#[test]
fn sizes_of_the_wrong_type_are_e007() {
    refused("VRAM-E007", &[&slot("bytes = 1.5"), &slot("bytes = 1e30"), &slot("bytes = nan"), &slot("bytes = inf"), &slot("bytes = \"8GiB\""), &slot("bytes = true")]);
}

#[test]
fn missing_name_or_bytes_and_fields_of_the_wrong_type_are_e007() {
    refused(
        "VRAM-E007",
        &["[[slot]]\nbytes = 1\n", "[[slot]]\nname = \"a\"\n", "[[slot]]\nname = 5\nbytes = 1\n", &slot("bytes = 1\npinned = \"yes\""), "slot = 5\n", "[slot]\nname = \"a\"\nbytes = 1\n"],
    );
}

/// Sizes each within TOML's integers can sum past u64::MAX; the workload's totals must not panic
/// (a size over 256 TiB can never be allocated anyway: VRAM-E003 at parse time would be earlier).
#[test]
fn sizes_whose_sum_overflows_are_refused_or_summed_without_panic() {
    let three = ["a", "b", "c"].map(|name| format!("[[slot]]\nname = \"{name}\"\nbytes = 9_000_000_000_000_000_000\n")).concat();
    match Workload::parse(&three) {
        Err(error) => assert_eq!(error.code(), "VRAM-E003"),
        Ok(workload) => {
            let totals = std::panic::catch_unwind(|| (workload.total_bytes(), workload.model_bytes()));
            assert_eq!(totals.ok(), Some((u64::MAX, u64::MAX)), "totals must saturate, not panic or wrap");
        }
    }
}
