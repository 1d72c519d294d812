# Sourced by the project's scripts: the CUDA toolkit to build with, in the order build.rs uses
# (CUDA_HOME, CUDA_PATH, nvcc on PATH, the project-local wheels), as CMake arguments.
_vg_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CUDA_TOOLKIT_ROOT=""
for _vg_candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
  if [ -n "$_vg_candidate" ] && [ -x "$_vg_candidate/bin/nvcc" ]; then CUDA_TOOLKIT_ROOT="$_vg_candidate"; break; fi
done
if [ -z "$CUDA_TOOLKIT_ROOT" ] && command -v nvcc >/dev/null 2>&1; then
  CUDA_TOOLKIT_ROOT="$(dirname "$(dirname "$(command -v nvcc)")")"
fi
[ -n "$CUDA_TOOLKIT_ROOT" ] || CUDA_TOOLKIT_ROOT="$_vg_root/.toolchain/cuda/nvidia/cu13"
CMAKE_CUDA_ARGS=(-DCUDAToolkit_ROOT="$CUDA_TOOLKIT_ROOT" -DCMAKE_CUDA_COMPILER="$CUDA_TOOLKIT_ROOT/bin/nvcc")
export CUDA_TOOLKIT_ROOT
