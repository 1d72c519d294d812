#!/usr/bin/env bash
# Builds every test executable (GoogleTest and Rust, release, debug info stripped) plus the
# vramguard binary into gpu-suite/ with a runner, so that a GPU host without Rust runs them all:
#
#   ./scripts/gpu-suite.sh                          # here: build and stage
#   VRAM_REQUIRE_GPU=1 gpu-suite/run.sh [LOG_DIR]   # on the GPU host
#
# The runner runs each suite with VRAM_REQUIRE_GPU=1, then the GoogleTest and Rust suites under
# compute-sanitizer (memcheck + leak check), then the no-GPU error paths with CUDA_VISIBLE_DEVICES
# set empty, and prints one summary line per suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh >/dev/null
source scripts/toolkit-env.sh

stage="$root/gpu-suite"
rm -rf "$stage" && mkdir -p "$stage/bin"

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON "${CMAKE_CUDA_ARGS[@]}" >/dev/null
cmake --build build-gpu -j"$(nproc)" >/dev/null
for suite in tracker record_table device_memory residency_check c_api checksum error faults weights_loader read_witness \
  memory_pool context; do
  cp "build-gpu/${suite}_test" "$stage/bin/gtest_${suite}"
done

cp build-gpu/cpp_usage_example "$stage/bin/example_cpp_usage"
cargo build --release --bin vramguard --example rust_usage --example policy_usage --example load_weights --quiet
cp target/release/vramguard "$stage/bin/vramguard"
cp target/release/examples/rust_usage "$stage/bin/example_rust_usage"
cp target/release/examples/policy_usage "$stage/bin/example_policy_usage"
cp target/release/examples/load_weights "$stage/bin/example_load_weights"
# The installed C++ package's consumers (find_package and pkg-config), built as a user would.
VRAMGUARD_PACKAGE_STAGE="$stage/bin" ./scripts/cpp-package-test.sh >/dev/null
cargo test --release --no-run --message-format=json --quiet 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["target"]["name"], m["target"]["kind"][0], m["executable"])
' | while read -r name kind exe; do
  [ "$kind" = "bin" ] && continue
  # These read files of the source tree, which the GPU host lacks (deploy also needs promtool,
  # which scripts/setup.sh installs here and the GPU host does not have); none touches a GPU.
  case "$name" in readme | fuzz_regressions | deploy) continue ;; esac
  cp "$exe" "$stage/bin/rust_${kind}_${name}"
done
# The Rust GPU benchmarks (run by gpu-suite/bench.sh, not by the test runner).
cargo bench --bench gpu --bench weights_load --no-run --message-format=json --quiet 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("gpu", "weights_load"):
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do cp "$exe" "$stage/bin/bench_$name"; done
for bench in vramguard_bench vramguard_query_contention; do
  if [ -x "build-gpu/$bench" ]; then cp "build-gpu/$bench" "$stage/bin/$bench"; fi
done
# Symbols too: what travels to a GPU host is limited to 64 MiB.
strip --strip-all "$stage"/bin/*
cp -r features "$stage/features"  # the BDD scenarios
cp scripts/gpu-suite-runner.sh "$stage/run.sh"
cp scripts/gpu-bench-runner.sh "$stage/bench.sh"
cp scripts/gpu-live-check.sh "$stage/live-check.sh"
chmod +x "$stage/run.sh" "$stage/bench.sh"
ls "$stage/bin"
# What travels to a GPU host is limited (64 MiB): the binaries go compressed, unpacked there.
tar -C "$stage" -I 'xz -T0 -6' -cf "$stage/bin.tar.xz" bin && rm -rf "$stage/bin"
du -sh "$stage" | sed 's/^/staged: /'
