# Sourced by the project's scripts: the CUDA toolkit to build with, in the order build.rs uses
# (CUDA_HOME, CUDA_PATH, nvcc on PATH, the project-local wheels), as CMake arguments.
#   SYSTEM_CUDA         a toolkit found on the system, or empty
#   CUDA_TOOLKIT_ROOT   SYSTEM_CUDA, else the project-local .toolchain/cuda/nvidia/cu13
#   CMAKE_CUDA_ARGS     the CMake arguments that select it
_vg_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SYSTEM_CUDA=""
for _vg_candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
  if [ -n "$_vg_candidate" ] && [ -x "$_vg_candidate/bin/nvcc" ]; then SYSTEM_CUDA="$_vg_candidate"; break; fi
done
if [ -z "$SYSTEM_CUDA" ] && command -v nvcc >/dev/null 2>&1; then
  SYSTEM_CUDA="$(dirname "$(dirname "$(command -v nvcc)")")"
fi
CUDA_TOOLKIT_ROOT="${SYSTEM_CUDA:-$_vg_root/.toolchain/cuda/nvidia/cu13}"
CMAKE_CUDA_ARGS=(-DCUDAToolkit_ROOT="$CUDA_TOOLKIT_ROOT" -DCMAKE_CUDA_COMPILER="$CUDA_TOOLKIT_ROOT/bin/nvcc")
export CUDA_TOOLKIT_ROOT
