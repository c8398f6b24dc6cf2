#!/usr/bin/env bash
# What CI runs for the `cuda` feature, on a machine without a GPU: the crate, its tests
# and examples must keep compiling (and stay lint-clean) with Candle's CUDA backend and
# the fused attention kernel. It is a `cargo clippy` (a check), not a build: a check
# still runs nvcc on every Candle kernel and on ours (the slow part, minutes on two
# cores) but skips code generation and linking, which need libcuda and another
# release build of everything. Nothing here runs on a GPU: scripts/gpu-check.sh does,
# on a GPU machine.
#
# nvcc comes from PyPI wheels through ../shared/cuda/env.sh (CUDA 13.0, as the GPU
# machines' drivers); WANEDIT_CUDA_ENV names another script that prints the same exports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cuda_env="${WANEDIT_CUDA_ENV:-../shared/cuda/env.sh}"
if [ ! -f "$cuda_env" ]; then
    echo "scripts/ci/cuda.sh: $cuda_env not found: set WANEDIT_CUDA_ENV to a CUDA env script" >&2
    exit 1
fi
# The environment script reads cudarc's sources from the cargo registry.
cargo fetch
(
    eval "$(bash "$cuda_env")"
    cargo clippy --features cuda --all-targets -- -D warnings
)
