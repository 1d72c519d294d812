#!/usr/bin/env bash
# The installable C++ package of the core, as a caller outside the tree meets it:
#   1. builds the core (Release, BUILD_TESTING=OFF) in build-package/ and installs it into a
#      temporary prefix (removed on exit): headers, libvramguard_core.a, the CMake package
#      vramguard (vramguard::core) and vramguard.pc;
#   2. builds and runs examples/cmake_consumer against that prefix (find_package);
#   3. builds and runs it again with the source tree added as a subdirectory (add_subdirectory);
#   4. compiles and links examples/cmake_consumer/c_main.c with pkg-config, and runs it.
# A consumer passes with exit 0 (a GPU: its buffer is resident) or, on a machine without a GPU,
# exit 101 with VG_ERR_NO_DEVICE on stderr; with VRAM_REQUIRE_GPU=1, exit 101 fails too.
# With VRAMGUARD_PACKAGE_STAGE=DIR, the find_package and pkg-config consumers are also copied to
# DIR/example_cmake_consumer and DIR/example_c_consumer (scripts/gpu-suite.sh: run on the GPU host).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/toolkit-env.sh
build="$root/build-package"
jobs="$(nproc)"

prefix="$(mktemp -d)"
work="$(mktemp -d)"
trap 'rm -rf "$prefix" "$work"' EXIT

say() { printf 'cpp-package: %s\n' "$*"; }
fail() {
  printf 'cpp-package: FAILED: %s\n' "$*" >&2
  exit 1
}

# Runs one consumer; sets `outcome` to "exit 0" or "exit 101 (no GPU)", or fails.
run_consumer() {
  local name="$1"
  shift
  local rc=0
  "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
  sed "s/^/  $name: /" "$work/$name.out" "$work/$name.err"
  case "$rc" in
    0) outcome="exit 0" ;;
    101)
      grep -q 'VG_ERR_NO_DEVICE' "$work/$name.err" ||
        fail "$name exited 101 without naming VG_ERR_NO_DEVICE on stderr"
      [ "${VRAM_REQUIRE_GPU:-0}" != 1 ] || fail "$name found no GPU, and VRAM_REQUIRE_GPU=1"
      outcome="exit 101 (no GPU)"
      ;;
    *) fail "$name exited $rc" ;;
  esac
}

say "building the core in $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DCMAKE_INSTALL_LIBDIR=lib "${CMAKE_CUDA_ARGS[@]}" >/dev/null
cmake --build "$build" -j"$jobs" --target vramguard_core
say "installing into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null

expected=(
  include/vramguard.h
  lib/libvramguard_core.a
  lib/cmake/vramguard/vramguardConfig.cmake
  lib/cmake/vramguard/vramguardConfigVersion.cmake
  lib/cmake/vramguard/vramguardTargets.cmake
  lib/pkgconfig/vramguard.pc
)
for header in cuda/include/vramguard/*.hpp; do expected+=("include/vramguard/${header##*/}"); done
for file in "${expected[@]}"; do
  [ -f "$prefix/$file" ] || fail "the install lacks $file"
done
if find "$prefix" -name '*faults*' | grep -q .; then fail "the test-only vramguard_faults was installed"; fi
grep -q 'vramguard::core' "$prefix/lib/cmake/vramguard/vramguardTargets.cmake" ||
  fail "vramguardTargets.cmake does not define vramguard::core"

consumer_args=(-DCMAKE_BUILD_TYPE=Release -DCUDAToolkit_ROOT="$CUDA_TOOLKIT_ROOT")

say "find_package consumer"
cmake -S examples/cmake_consumer -B "$work/find" -DCMAKE_PREFIX_PATH="$prefix" \
  "${consumer_args[@]}" >/dev/null
cmake --build "$work/find" -j"$jobs" >/dev/null
run_consumer find_package "$work/find/app"
find_outcome="$outcome"

say "add_subdirectory consumer (builds the core from source in $build/consumer-subdir)"
cmake -S examples/cmake_consumer -B "$build/consumer-subdir" -DVRAMGUARD_SOURCE_DIR="$root" \
  "${consumer_args[@]}" "${CMAKE_CUDA_ARGS[@]}" >/dev/null
cmake --build "$build/consumer-subdir" -j"$jobs" >/dev/null
run_consumer add_subdirectory "$build/consumer-subdir/app"
subdir_outcome="$outcome"

say "pkg-config C consumer"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pkg-config --exists vramguard || fail "pkg-config does not find vramguard"
# shellcheck disable=SC2046  # pkg-config's flags are words
"${CC:-cc}" -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags vramguard) \
  examples/cmake_consumer/c_main.c -o "$work/c_app" $(pkg-config --libs vramguard)
run_consumer pkg-config "$work/c_app"
c_outcome="$outcome"

if [ -n "${VRAMGUARD_PACKAGE_STAGE:-}" ]; then
  cp "$work/find/app" "$VRAMGUARD_PACKAGE_STAGE/example_cmake_consumer"
  cp "$work/c_app" "$VRAMGUARD_PACKAGE_STAGE/example_c_consumer"
fi

echo "cpp package: find_package consumer $find_outcome, add_subdirectory consumer" \
  "${subdir_outcome}, pkg-config C consumer $c_outcome"
