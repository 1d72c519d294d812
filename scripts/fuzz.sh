#!/usr/bin/env bash
# Runs one cargo-fuzz target for SECONDS (default 300):
# - tracker_ops (the default): sequences of tracker operations through the C ABI checked against a
#   model (fuzz/fuzz_targets/tracker_ops.rs, logic in fuzz/src/ops.rs); reproducers go to
#   tests/fuzz_regressions/, replayed by `cargo test --test fuzz_regressions`.
# - weights_header: safetensors headers through weights::validate_header_bytes, every acceptance
#   checked against the reference reader (fuzz/fuzz_targets/weights_header.rs, logic in
#   fuzz/src/weights_header.rs); no file, no GPU; reproducers go to
#   tests/fuzz_regressions/weights_header/, replayed by `cargo test --test weights`.
# Whatever it finds (crash, leak, timeout, out-of-memory) is minimized and copied there.
# Usage: scripts/fuzz.sh [TARGET] [SECONDS] [LIBFUZZER_FLAG...]
#   e.g. scripts/fuzz.sh 600 -max_len=2048;  scripts/fuzz.sh weights_header 300
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
target=tracker_ops
regressions=tests/fuzz_regressions
case "${1:-}" in
  tracker_ops) shift ;;
  weights_header) target=weights_header regressions=tests/fuzz_regressions/weights_header && shift ;;
esac
seconds="${1:-300}"
shift $(($# > 0 ? 1 : 0))
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
mkdir -p "$corpus" "$artifacts" "$regressions"
cargo fuzz build "${build[@]}" "$target"

# The committed reproducers and seeds start the corpus; new inputs go to fuzz/corpus only.
# (libFuzzer reads corpus folders recursively, so tracker_ops also starts from weights_header's
# inputs: harmless, every input is a valid op sequence.)
before="$(ls "$artifacts")"
set +e
cargo fuzz run "${build[@]}" "$target" "$corpus" "$regressions" -- \
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
  cp "$artifact" "$regressions/$name"
  echo "fuzz: reproducer $regressions/$name"
done
echo "fuzz: ran ${seconds}s; $found new reproducer(s); libFuzzer exit $status (log: fuzz/fuzz-run.log)"
exit "$status"
