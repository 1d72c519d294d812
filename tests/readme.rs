//! The usage examples of the README and of docs/ are the files that the build compiles and the GPU
//! suite runs, word for word, so the pages cannot drift from code that works; the README stays a
//! page a newcomer reads to the end.
fn page(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn readme() -> String {
    page("README.md")
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn rust_example_is_in_the_readme_verbatim() {
    assert!(readme().contains(&format!("```rust\n{}```", example("rust_usage.rs"))));
}

#[test]
fn policy_example_is_in_the_policy_page_verbatim() {
    assert!(page("docs/policy.md").contains(&format!("```rust\n{}```", example("policy_usage.rs"))));
}

#[test]
fn load_weights_example_is_in_the_policy_page_verbatim() {
    assert!(page("docs/policy.md").contains(&format!("```rust\n{}```", example("load_weights.rs"))));
}

#[test]
fn cpp_example_is_in_the_cpp_page_verbatim() {
    assert!(page("docs/cpp.md").contains(&format!("```cpp\n{}```", example("cpp_usage.cpp"))));
}

#[test]
fn readme_lists_every_error_code() {
    let readme = readme();
    for n in 1..=23 {
        assert!(readme.contains(&format!("| VRAM-E{n:03} |")), "VRAM-E{n:03} missing");
    }
}

#[test]
fn the_readme_is_a_page_a_newcomer_reads_to_the_end() {
    let lines = readme().lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; reference material belongs in docs/");
}
