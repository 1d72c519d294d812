#!/usr/bin/env bash
# Installs what building vramguard needs, only where it is missing, without asking:
#   - CMake, GoogleTest, libclang (for bindgen), clang-format, pkg-config and promtool (package
#     prometheus) from Debian's packages;
#   - rustfmt and clippy, when the Rust toolchain lacks them;
#   - the CUDA 13.0 toolkit (nvcc + static runtime) from PyPI wheels into .toolchain/,
#     unless a system toolkit is found through CUDA_HOME / CUDA_PATH / nvcc on PATH.
# Running it a second time does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
toolchain="$root/.toolchain"
cuda_root="$toolchain/cuda/nvidia/cu13"
cuda_series="13.0.*"

say() { printf 'setup: %s\n' "$*"; }

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v clang-format >/dev/null 2>&1 || need_apt+=(clang-format)
# promtool (Prometheus' own checker, for the metrics and the alerting rules of deploy/).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# pkg-config, for the C consumer of the installed package (scripts/cpp-package-test.sh).
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
[ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev)
# bindgen loads libclang itself (not libclang-cpp).
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-[0-9]*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing from Debian: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

source "$root/scripts/toolkit-env.sh"
system_cuda="$SYSTEM_CUDA"

if [ -n "$system_cuda" ]; then
  say "using the CUDA toolkit at $system_cuda"
elif [ -x "$cuda_root/bin/nvcc" ] && [ -e "$cuda_root/lib/libcudart_static.a" ]; then
  say "CUDA toolkit already in $cuda_root"
else
  say "installing CUDA $cuda_series from PyPI into $toolchain/cuda"
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
    --target "$toolchain/cuda" \
    "nvidia-cuda-nvcc==$cuda_series" "nvidia-cuda-runtime==$cuda_series" \
    "nvidia-cuda-crt==$cuda_series" "nvidia-nvvm==$cuda_series"
fi

if [ -z "$system_cuda" ]; then
  # nvcc looks for libraries in lib64; CMake's FindCUDAToolkit wants the unversioned cudart.
  [ -e "$cuda_root/lib64" ] || ln -s lib "$cuda_root/lib64"
  [ -e "$cuda_root/lib/libcudart.so" ] || ln -s libcudart.so.13 "$cuda_root/lib/libcudart.so"
  "$cuda_root/bin/nvcc" --version | tail -n 2 | head -n 1 | sed 's/^/setup: nvcc: /'
fi
say "ready"
