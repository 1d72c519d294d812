#!/usr/bin/env bash
# The C++ core's test suites built and run with ThreadSanitizer, then with AddressSanitizer +
# UndefinedBehaviorSanitizer. Without a GPU the GPU tests skip and the rest (the tracker's
# concurrency, the C ABI's validation, the error paths) run instrumented; any report fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh >/dev/null
source scripts/toolkit-env.sh

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=1 protect_shadow_gap=0"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1"
for sanitizer in thread address,undefined; do
  dir="build-san-${sanitizer//,/-}"
  echo "== C++ suites under -fsanitize=$sanitizer ($dir)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON \
    -DVRAMGUARD_SANITIZE="$sanitizer" "${CMAKE_CUDA_ARGS[@]}" >/dev/null
  cmake --build "$dir" -j"$(nproc)" >/dev/null
  ctest --test-dir "$dir" --output-on-failure >"$dir/ctest.log" 2>&1 || { cat "$dir/ctest.log"; exit 1; }
  grep -E "tests passed|tests failed" "$dir/ctest.log" | sed "s/^/$sanitizer: /"
done
echo "sanitizers: clean"
