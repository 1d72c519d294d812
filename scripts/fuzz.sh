#!/usr/bin/env bash
# Fuzzes the C ABI for SECONDS (default 300): sequences of tracker operations checked against a
# model (fuzz/fuzz_targets/tracker_ops.rs, logic in fuzz/src/ops.rs). Whatever it finds (crash,
# leak, timeout, out-of-memory) is minimized and copied into tests/fuzz_regressions/, where
# `cargo test --test fuzz_regressions` replays it from then on.
# Usage: scripts/fuzz.sh [SECONDS] [LIBFUZZER_FLAG...]   e.g. scripts/fuzz.sh 600 -max_len=2048
#
# What works on this machine, and why:
# - cargo-fuzz needs nightly -Z flags; only stable is installed, so RUSTC_BOOTSTRAP=1 lets stable
#   take them. No nightly toolchain is needed.
# - AddressSanitizer (cargo-fuzz's default) links with the static CUDA runtime and the C++ core:
#   the cc crate sees -Zsanitizer=address in the fuzz RUSTFLAGS and compiles the core with
#   -fsanitize=address too. `--sanitizer none` is not needed.
# - With clang (Debian's clang-14 + libclang-rt-14-dev, installed here if missing) the C++ core is
#   also built with -fsanitize=fuzzer-no-link, so the fuzzer is guided by the core's branches and
#   not only by the Rust harness's. Without clang, g++ builds it (ASan only) and fuzzing still
#   works. Each compiler has its own target dir: CMake cannot switch compilers in one build tree.
# - One fuzzing process (libFuzzer's default; -jobs=1 would fork a worker that writes fuzz-0.log
#   into the current directory): the machine has 2 cores and others build on it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-300}"
shift $(($# > 0 ? 1 : 0))
target=tracker_ops
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

if ! command -v clang++-14 >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "fuzz: installing clang-14 from Debian, to instrument the C++ core for coverage"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev; } >/dev/null 2>&1 ||
    echo "fuzz: could not install clang-14; the C++ core is built with g++ (ASan, no coverage)"
fi
build=()
if command -v clang++-14 >/dev/null 2>&1; then
  export CXX=clang++-14 CXXFLAGS="${CXXFLAGS:-} -fsanitize=fuzzer-no-link"
  build=(--target-dir fuzz/target/clang)
else
  build=(--target-dir fuzz/target/gcc)
fi
# -a: debug assertions and overflow checks in the harness and the Rust side.
build+=(--debug-assertions)

corpus="fuzz/corpus/$target"
artifacts="fuzz/artifacts/$target"
mkdir -p "$corpus" "$artifacts" tests/fuzz_regressions
cargo fuzz build "${build[@]}" "$target"

# The committed reproducers and seeds start the corpus; new inputs go to fuzz/corpus only.
before="$(ls "$artifacts")"
set +e
cargo fuzz run "${build[@]}" "$target" "$corpus" tests/fuzz_regressions -- \
  -max_total_time="$seconds" -print_final_stats=1 "$@" 2>&1 | tee fuzz/fuzz-run.log
status=${PIPESTATUS[0]}
set -e

found=0
for artifact in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
  [ -f "$artifact" ] || continue
  grep -qxF "$(basename "$artifact")" <<<"$before" && continue
  found=$((found + 1))
  name="$(basename "$artifact")"
  # Smaller reproducers read better; keep the original if minimizing fails.
  if cargo fuzz tmin "${build[@]}" "$target" "$artifact" -r 2000 >"fuzz/tmin-$name.log" 2>&1; then
    minimized="$(ls -t "$artifacts"/minimized-from-* 2>/dev/null | head -1)"
    [ -n "$minimized" ] && artifact="$minimized"
  fi
  cp "$artifact" "tests/fuzz_regressions/$name"
  echo "fuzz: reproducer tests/fuzz_regressions/$name"
done
echo "fuzz: ran ${seconds}s; $found new reproducer(s); libFuzzer exit $status (log: fuzz/fuzz-run.log)"
exit "$status"
