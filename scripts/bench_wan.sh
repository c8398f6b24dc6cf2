#!/usr/bin/env bash
# The Wan CPU benchmark and its diffusers counterpart, in one run on one machine.
# Not for CI: it needs the Python packages pinned in scripts/make_parity_cases.py.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench wan_cpu -- --warm-up-time 2 --measurement-time 5
python3 scripts/bench_wan.py
