#!/usr/bin/env bash
# What CI runs for the Wan port. The parity fixtures are committed, so no Python is
# needed: scripts/make_parity_cases.py is run by hand when the cases change.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release --lib wan::
cargo test --release --test parity --test wan_loader --test wan_hub
# The benchmark must keep compiling; it is timed by hand (scripts/bench_wan.sh).
cargo bench --bench wan_cpu --no-run
