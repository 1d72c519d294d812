#!/usr/bin/env bash
# Runs the staged GPU benchmarks (see scripts/gpu-suite.sh) and prints their tables:
#   gpu-suite/bench.sh [LOG_DIR]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -d "$here/bin" ] || tar -C "$here" -xJf "$here/bin.tar.xz"
logs="${1:-$here/logs}"
mkdir -p "$logs"
export VRAMGUARD_BIN="$here/bin/vramguard"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv | tee "$logs/bench-machine.txt"
nproc | sed 's/^/host cores: /' | tee -a "$logs/bench-machine.txt"
status=0
"$here/bin/vramguard_bench" 2>&1 | tee "$logs/bench-core.txt" || status=1
"$here/bin/bench_gpu" --bench 2>&1 | tee "$logs/bench-rust.txt" || status=1
# Loading an 8 GiB safetensors file (BENCHMARKS.md, "Loading weights").
"$here/bin/bench_weights_load" 2>&1 | tee "$logs/bench-weights-load.txt" || status=1
# The experiment behind the "allocation during sweeps" row (BENCHMARKS.md).
"$here/bin/vramguard_query_contention" 2>&1 | tee "$logs/bench-query-contention.txt" || status=1
exit $status
