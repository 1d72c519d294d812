//! The README's usage examples are the files that the build compiles and the GPU suite runs, word
//! for word, so the README cannot drift from code that works.
fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn rust_example_is_in_the_readme_verbatim() {
    assert!(readme().contains(&format!("```rust\n{}```", example("rust_usage.rs"))));
}

#[test]
fn policy_example_is_in_the_readme_verbatim() {
    assert!(readme().contains(&format!("```rust\n{}```", example("policy_usage.rs"))));
}

#[test]
fn load_weights_example_is_in_the_readme_verbatim() {
    assert!(readme().contains(&format!("```rust\n{}```", example("load_weights.rs"))));
}

#[test]
fn cpp_example_is_in_the_readme_verbatim() {
    assert!(readme().contains(&format!("```cpp\n{}```", example("cpp_usage.cpp"))));
}

#[test]
fn readme_lists_every_error_code() {
    let readme = readme();
    for n in 1..=22 {
        assert!(readme.contains(&format!("| VRAM-E{n:03} |")), "VRAM-E{n:03} missing");
    }
}
