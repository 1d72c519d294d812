#!/usr/bin/env bash
# Runs the staged GPU suite (see scripts/gpu-suite.sh). Usage: run.sh [LOG_DIR]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -d "$here/bin" ] || tar -C "$here" -xJf "$here/bin.tar.xz"
logs="${1:-$here/logs}"
mkdir -p "$logs"
export VRAMGUARD_BIN="$here/bin/vramguard"
sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
failures=0
summary=()

note() { summary+=("$1"); }

# One GoogleTest binary: "gtest NAME [mode]: N passed, N failed, N skipped".
gtest_line() {
  local log="$1" label="$2" rc="$3"
  local passed failed skipped
  passed=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$log" | tail -1)
  failed=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= tests?, listed)' "$log" | tail -1)
  skipped=$(grep -oP '^\[  SKIPPED \] \K[0-9]+(?= tests?, listed)' "$log" | tail -1)
  note "$label: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped (exit $rc)"
  { [ "$rc" -eq 0 ] && [ "${skipped:-0}" -eq 0 ]; } || failures=$((failures + 1))
}

# One Rust test binary: "rust NAME [mode]: N passed, N failed, N ignored".
rust_line() {
  local log="$1" label="$2" rc="$3"
  local line
  line=$(grep -E '^test result:' "$log" | tail -1)
  local passed failed ignored
  passed=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")
  failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
  ignored=$(sed -E 's/.* ([0-9]+) ignored.*/\1/' <<<"$line")
  note "$label: ${passed:-0} passed, ${failed:-0} failed, ${ignored:-0} skipped (exit $rc)"
  { [ "$rc" -eq 0 ] && [ "${ignored:-0}" -eq 0 ]; } || failures=$((failures + 1))
}

# compute-sanitizer's own verdict: "ERROR SUMMARY: N errors" and the leak total.
sanitizer_line() {
  local log="$1" label="$2" rc="$3"
  local errors leaked
  if grep -q 'Target application terminated before first instrumented API call' "$log"; then
    note "$label: compute-sanitizer memcheck not applicable: the suite makes no CUDA call"
    return
  fi
  errors=$(grep -oP 'ERROR SUMMARY: \K[0-9]+' "$log" | tail -1)
  leaked=$(grep -oP 'LEAK SUMMARY: \K[0-9]+(?= bytes leaked)' "$log" | awk '{s+=$1} END {print s+0}')
  note "$label: compute-sanitizer memcheck ${errors:-?} errors, ${leaked:-0} bytes leaked (exit $rc)"
  { [ "$rc" -eq 0 ] && [ "${errors:-1}" -eq 0 ] && [ "${leaked:-0}" -eq 0 ]; } || failures=$((failures + 1))
}

# Intentional API failures (a 1 TiB cudaMalloc, the no-GPU paths) are the product working, not
# memory errors: --report-api-errors no.
memcheck=("$sanitizer" --tool memcheck --leak-check full --report-api-errors no --error-exitcode 1)

nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version --format=csv 2>&1 | tee "$logs/nvidia-smi.txt"

# The device tests run once per visible GPU, each time with only that GPU visible, so that every
# device's tracker, allocations and residency checks are exercised.
export CUDA_DEVICE_ORDER=PCI_BUS_ID
mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null)
if [ "${#gpus[@]}" -eq 0 ]; then
  note "no GPU visible to nvidia-smi: the GPU suite cannot run"
  failures=$((failures + 1))
fi

for gpu in "${gpus[@]}"; do
  for exe in "$here"/bin/gtest_*; do
    name="$(basename "$exe") [gpu $gpu]"
    log="$logs/$(basename "$exe").gpu$gpu"
    # With one GPU visible the MultiGpu tests would skip; they run once below, with every GPU.
    CUDA_VISIBLE_DEVICES=$gpu VRAM_REQUIRE_GPU=1 "$exe" --gtest_filter='-*NoGpu*:*MultiGpu*' >"$log.log" 2>&1
    gtest_line "$log.log" "$name" $?
    # The fault library's tests break or hold the GPU on purpose (an out-of-bounds write, a
    # kernel on every SM against a deadline): memcheck would report the first and serialise the
    # second. They ran plainly above.
    [ "$(basename "$exe")" = "gtest_faults" ] && continue
    # Throughput figures mean nothing under a sanitizer: those tests run only plain.
    CUDA_VISIBLE_DEVICES=$gpu VRAM_REQUIRE_GPU=1 "${memcheck[@]}" "$exe" --gtest_filter='-*NoGpu*:*MultiGpu*:*Throughput*:*.Timed*' >"$log.memcheck.log" 2>&1
    sanitizer_line "$log.memcheck.log" "$name" $?
  done
  # The one kernel (the checksum) under racecheck too: its shared-memory hazards, one host thread
  # at a time. The 8-thread concurrency test stays out: under racecheck it once hung for minutes
  # in the sanitizer (it passes plainly and under memcheck). A hang fails here, within 5 minutes.
  CUDA_VISIBLE_DEVICES=$gpu VRAM_REQUIRE_GPU=1 timeout 300 "$sanitizer" --tool racecheck --error-exitcode 1 "$here/bin/gtest_checksum" \
    --gtest_filter='-*NoGpu*:*Throughput*:*ConcurrentCallers*' >"$logs/gtest_checksum.gpu$gpu.racecheck.log" 2>&1
  rc=$?
  hazards=$(grep -oP 'RACECHECK SUMMARY: \K[0-9]+(?= hazards?)' "$logs/gtest_checksum.gpu$gpu.racecheck.log" | tail -1)
  note "gtest_checksum [gpu $gpu]: compute-sanitizer racecheck ${hazards:-?} hazards (exit $rc)"
  { [ "$rc" -eq 0 ] && [ "${hazards:-1}" -eq 0 ]; } || failures=$((failures + 1))
  exe="$here/bin/rust_test_gpu"
  name="rust_test_gpu [gpu $gpu]"
  log="$logs/rust_test_gpu.gpu$gpu"
  # The witness under load takes minutes: it runs in a stage of its own below.
  CUDA_VISIBLE_DEVICES=$gpu VRAM_REQUIRE_GPU=1 "$exe" --skip no_device:: --skip multi_gpu:: --skip witness_load:: >"$log.log" 2>&1
  rust_line "$log.log" "$name" $?
  while IFS= read -r line; do note "  $line"; done < <(grep -h '^\[ vramguard \]' "$log.log")
  # The fault trials fault their child processes on purpose (an out-of-bounds kernel, a kernel
  # that holds every SM): memcheck would rightly report the first, and they ran plainly above.
  # The witness trials judge memory by kernel times, which are memcheck's under memcheck (the
  # witness then reads without judging: CUDA_INJECTION64_PATH); they too ran plainly above.
  # And the witness-under-load trials: minutes of timed readings, meaningless under memcheck.
  CUDA_VISIBLE_DEVICES=$gpu VRAM_REQUIRE_GPU=1 "${memcheck[@]}" "$exe" --skip no_device:: --skip multi_gpu:: --skip faults:: --skip witness:: --skip witness_load:: >"$log.memcheck.log" 2>&1
  sanitizer_line "$log.memcheck.log" "$name" $?
  # The witness under load, plainly (it times kernels): this process's kernels and copies and
  # another process's PyTorch matmuls, VRAM_WITNESS_LOAD_SECS each (60 by default).
  name="rust_test_gpu witness_load [gpu $gpu]"
  CUDA_VISIBLE_DEVICES=$gpu VRAM_REQUIRE_GPU=1 "$exe" witness_load:: >"$log.witness_load.log" 2>&1
  rust_line "$log.witness_load.log" "$name" $?
  while IFS= read -r line; do note "  $line"; done < <(grep -h '^\[ witness-load \]' "$log.witness_load.log")
done

# With two or more GPUs: the tests that need several at once, every GPU visible (issue 19).
if [ "${#gpus[@]}" -ge 2 ]; then
  for exe in "$here"/bin/gtest_context "$here"/bin/gtest_memory_pool "$here"/bin/gtest_faults; do
    [ -x "$exe" ] || continue
    VRAM_REQUIRE_GPU=1 "$exe" --gtest_filter='*MultiGpu*' >"$logs/$(basename "$exe").multigpu.log" 2>&1
    gtest_line "$logs/$(basename "$exe").multigpu.log" "$(basename "$exe") [all ${#gpus[@]} GPUs, MultiGpu]" $?
  done
  log="$logs/rust_test_gpu.multigpu"
  VRAM_REQUIRE_GPU=1 "$here/bin/rust_test_gpu" multi_gpu:: >"$log.log" 2>&1
  rust_line "$log.log" "rust_test_gpu [all ${#gpus[@]} GPUs, multi_gpu::]" $?
  while IFS= read -r line; do note "  $line"; done < <(grep -h '^\[ vramguard \]' "$log.log")
  VRAM_REQUIRE_GPU=1 "${memcheck[@]}" "$here/bin/rust_test_gpu" multi_gpu:: >"$log.memcheck.log" 2>&1
  sanitizer_line "$log.memcheck.log" "rust_test_gpu [all ${#gpus[@]} GPUs, multi_gpu::]" $?
else
  # Not a failure: this host cannot run them. Said in the summary, so that nobody reads this
  # run as two-GPU evidence.
  note "multi-GPU tests (gtest *MultiGpu*, rust multi_gpu::): NOT RUN, ${#gpus[@]} GPU(s) on this host"
fi

# The no-GPU paths, with every GPU hidden.
for exe in "$here"/bin/gtest_*; do
  name="$(basename "$exe")"
  CUDA_VISIBLE_DEVICES= "$exe" --gtest_filter='*NoGpu*' >"$logs/$name.nogpu.log" 2>&1
  rc=$?
  if grep -q '^\[ RUN      \]' "$logs/$name.nogpu.log"; then gtest_line "$logs/$name.nogpu.log" "$name [no-GPU paths, CUDA_VISIBLE_DEVICES=]" $rc; fi
done
CUDA_VISIBLE_DEVICES= "$here/bin/rust_test_gpu" no_device:: >"$logs/rust_test_gpu.nogpu.log" 2>&1
rust_line "$logs/rust_test_gpu.nogpu.log" "rust_test_gpu [no-GPU paths, CUDA_VISIBLE_DEVICES=]" $?

# Every other Rust test binary (unit tests, properties, C ABI matrix, policy, health, HTTP, BDD,
# soak) with the GPU available; then under memcheck too, except the soak (its 800,000 operations
# are the point, and memcheck would take hours over them).
export VRAMGUARD_FEATURES="$here/features"
bdd_line() {
  local log="$1" label="$2" rc="$3"
  local scenarios steps
  scenarios=$(grep -E '^[0-9]+ scenarios? ' "$log" | tail -1)
  steps=$(grep -E '^[0-9]+ steps? ' "$log" | tail -1)
  note "$label: ${scenarios:-no scenarios}; ${steps:-no steps} (exit $rc)"
  { [ "$rc" -eq 0 ] && ! grep -qE '^[0-9]+ (scenarios?|steps?) .*skipped' "$log"; } || failures=$((failures + 1))
}
for exe in "$here"/bin/rust_*; do
  name="$(basename "$exe")"
  [ "$name" = "rust_test_gpu" ] && continue
  VRAM_REQUIRE_GPU=1 "$exe" >"$logs/$name.log" 2>&1
  rc=$?
  if [ "$name" = "rust_test_bdd" ]; then bdd_line "$logs/$name.log" "$name" $rc; else rust_line "$logs/$name.log" "$name" $rc; fi
  [ "$name" = "rust_test_soak" ] && grep -h '^\[ vramguard \]' "$logs/$name.log"
  [ "$name" = "rust_test_soak" ] && continue
  VRAM_REQUIRE_GPU=1 "${memcheck[@]}" "$exe" >"$logs/$name.memcheck.log" 2>&1
  sanitizer_line "$logs/$name.memcheck.log" "$name" $?
done

# The documented examples, as a user would run them.
for exe in "$here"/bin/example_*; do
  name="$(basename "$exe")"
  "$exe" >"$logs/$name.log" 2>&1
  rc=$?
  note "$name: exit $rc"
  [ "$rc" -eq 0 ] || failures=$((failures + 1))
done

# The service as an operator runs it: each endpoint fetched with curl, then Ctrl-C.
fetch() { if command -v curl >/dev/null; then curl -si --max-time 5 "$1"; else python3 -c 'import sys,urllib.request as u
try: r=u.urlopen(sys.argv[1],timeout=5)
except Exception as e: r=e
print(getattr(r,"status","?"), dict(r.headers)); print(r.read().decode())' "$1"; fi; }
port=19400
"$here/bin/vramguard" serve --port "$port" --interval 1s --json-logs >"$logs/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 150); do fetch "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break; sleep 0.2; done
sleep 2  # at least one residency check
for path in /health /health/live /health/ready /metrics; do
  printf '$ curl -si http://127.0.0.1:%s%s\n' "$port" "$path"
  fetch "http://127.0.0.1:$port$path"
  printf '\n\n'
done >"$logs/serve-curl.txt" 2>&1
health_status=$(grep -m1 -oP '^HTTP/1.1 \K[0-9]+' "$logs/serve-curl.txt")
kill -INT "$serve_pid"
wait "$serve_pid"
rc=$?
note "vramguard serve: /health answered ${health_status:-nothing}, Ctrl-C exit $rc"
{ [ "${health_status:-}" = 200 ] && [ "$rc" -eq 0 ]; } || failures=$((failures + 1))

"$here/bin/vramguard" check >"$logs/vramguard-check.txt" 2>&1
note "vramguard check: exit $?"
[ "${summary[-1]}" = "vramguard check: exit 0" ] || failures=$((failures + 1))
CUDA_VISIBLE_DEVICES= "$here/bin/vramguard" check >"$logs/vramguard-check-nogpu.txt" 2>&1
rc=$?
note "vramguard check with no GPU visible: exit $rc"
[ "$rc" -eq 101 ] || failures=$((failures + 1))

cat "$logs/vramguard-check.txt"
printf '\n==== GPU suite summary ====\n'
printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
if [ "$failures" -eq 0 ]; then
  echo "GPU suite: every suite passed, nothing skipped" | tee -a "$logs/summary.txt"
else
  echo "GPU suite: $failures suite(s) FAILED" | tee -a "$logs/summary.txt"
fi
# At most 8 files come back from a lent GPU host: one archive of every log.
tar -czf "$logs.tar.gz" -C "$(dirname "$logs")" "$(basename "$logs")" 2>/dev/null || true
exit $((failures > 0))
