#!/usr/bin/env bash
# Staged by scripts/gpu-suite.sh as gpu-suite/live-check.sh; run on the GPU host as
#   gpu-suite/live-check.sh OUT_DIR
# One call on the GPU host: the installed package's consumers, and a live worker's /metrics in both
# formats parsed by prometheus_client's own strict parsers, /plan and vramguard plan.
out="$1"; cd "$(dirname "$0")"; (test -d bin || tar -xJf bin.tar.xz)
for e in example_cmake_consumer example_c_consumer; do VRAM_REQUIRE_GPU=1 bin/$e > "$out/$e.log" 2>&1; echo "$e: exit $?"; done
bin/vramguard serve --port 9411 --interval 1s > "$out/serve.log" 2>&1 & pid=$!
for i in $(seq 60); do curl -sf localhost:9411/health/ready >/dev/null && break; sleep 0.5; done
curl -s -D "$out/metrics.headers" localhost:9411/metrics > "$out/metrics.txt"
curl -s -H 'Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' -D "$out/metrics.om.headers" localhost:9411/metrics > "$out/metrics.om"
grep -i content-type "$out/metrics.headers" "$out/metrics.om.headers"
python3 - "$out" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
d = sys.argv[1]
t = list(text_string_to_metric_families(open(d + "/metrics.txt").read()))
o = list(om(open(d + "/metrics.om").read()))
print(f"prometheus_client: text 0.0.4 form parsed, {len(t)} families, {sum(len(f.samples) for f in t)} samples; OpenMetrics form parsed strictly, {len(o)} families")
print("families without help:", [f.name for f in t + o if not f.documentation])
PY
curl -s 'localhost:9411/plan?bytes=1GiB'; echo
bin/vramguard plan 1GiB --address 127.0.0.1:9411 > /dev/null; echo "vramguard plan 1GiB: exit $?"
bin/vramguard plan 7GiB --address 127.0.0.1:9411; echo "vramguard plan 7GiB: exit $?"
kill -INT $pid; wait $pid; echo "serve: exit $?"
