#!/usr/bin/env bash
# CPU benchmarks (criterion, no GPU needed), then one table of their medians.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh >/dev/null
cargo bench --bench cpu -- --warm-up-time 1 --measurement-time 3 "$@" >/dev/null
python3 - <<'PY'
import json, pathlib
rows = []
for estimates in sorted(pathlib.Path("target/criterion").glob("*/new/estimates.json")):
    name = json.loads((estimates.parent / "benchmark.json").read_text())["title"]
    median = json.loads(estimates.read_text())["median"]["point_estimate"]
    rows.append((name, median))
print("\n### vramguard CPU benchmarks (criterion medians)\n\n| measurement | median |\n|---|---|")
for name, ns in rows:
    print(f"| {name} | {ns:.1f} ns |" if ns < 1e4 else f"| {name} | {ns / 1e3:.1f} us |")
PY
