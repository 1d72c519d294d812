#!/usr/bin/env bash
# Every test: installs what is missing (scripts/setup.sh), checks formatting (rustfmt,
# clang-format), lints (clippy -D warnings) and the API docs (rustdoc -D warnings), then the C++
# suites through CTest, the installed C++ package's consumers (scripts/cpp-package-test.sh) and
# the Rust suites (unit, integration, properties, doc tests, examples) through cargo. On a machine
# without a GPU the GPU tests are reported as skipped, and counted at the end; with
# VRAM_REQUIRE_GPU=1 they fail instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
source scripts/toolkit-env.sh
logs="$root/target/test-logs"
mkdir -p "$logs"

echo "== Formatting and lints: cargo fmt, clippy -D warnings, clang-format"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
git ls-files 'cuda/*.cpp' 'cuda/*.hpp' 'cuda/*.cu' 'cuda/*.h' 'examples/*.cpp' 'examples/*.c' 'fuzz/*.cpp' |
  xargs clang-format --style=file --dry-run --Werror
cargo clippy --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

echo "== C++ core: GoogleTest through CTest"
cmake -S . -B build -DBUILD_TESTING=ON "${CMAKE_CUDA_ARGS[@]}" >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure 2>&1 | tee "$logs/ctest.log"
cpp_skipped=$(grep -c '(Skipped)' "$logs/ctest.log" || true)

echo "== C++ package: install, then find_package, add_subdirectory and pkg-config consumers"
./scripts/cpp-package-test.sh

echo "== C++ core under ThreadSanitizer and AddressSanitizer + UndefinedBehaviorSanitizer"
./scripts/sanitizers.sh

echo "== Rust crate: cargo test"
cargo test --all-targets 2>&1 | tee "$logs/cargo-test.log"
cargo test --doc 2>&1 | tee "$logs/cargo-doctest.log"
rust_skipped=$(grep -oP 'test result: .* \K[0-9]+(?= ignored)' "$logs/cargo-test.log" | awk '{s+=$1} END {print s+0}')
bdd_skipped=$(grep -oP '^\K[0-9]+(?= @gpu scenarios skipped)' "$logs/cargo-test.log" | tail -1)

echo
echo "tests: all passed; GPU tests skipped on this machine: $cpp_skipped GoogleTest, $rust_skipped Rust, ${bdd_skipped:-0} BDD scenarios" \
  "(run ./scripts/gpu-suite.sh and gpu-suite/run.sh on a GPU host for those)"
