#!/usr/bin/env bash
# The Wan CPU benchmark and its diffusers counterpart, in one run on one machine.
# Not for CI: it needs the Python packages pinned in scripts/make_parity_cases.py.
# THREADS=n gives both sides n threads (default: all cores); THREADS=1 is the least
# disturbed by other work on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${THREADS:-$(nproc)}"
RAYON_NUM_THREADS="$threads" cargo bench --bench wan_cpu -- --warm-up-time 2 --measurement-time 5
BENCH_THREADS="$threads" python3 scripts/bench_wan.py
