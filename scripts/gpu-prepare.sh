#!/usr/bin/env bash
# Run here (no GPU needed): builds what scripts/gpu-check.sh runs on the GPU machine,
# which has PyTorch but neither Rust nor diffusers, into .gpu/ (ignored by git; the
# directory travels with the checkout):
#   .gpu/bin/wan_gpu.xz  examples/wan_gpu.rs, --release --features cuda (links no
#                      GStreamer), compressed: the tree that travels is capped at 64 MiB
#   .gpu/wheels/       diffusers (the version the parity cases were made with) and the
#                      one dependency the GPU image lacks
# The CUDA toolkit comes from PyPI through /work/shared/cuda/env.sh (CUDA 13.0, sm_90).
# The build keeps its own target folder (target-cuda): candle's kernels take minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$("${WANEDIT_CUDA_ENV:-../shared/cuda/env.sh}")"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-cuda}" \
  cargo build --release --features cuda --example wan_gpu
mkdir -p .gpu/bin .gpu/wheels
binary="${CARGO_TARGET_DIR:-target-cuda}/release/examples/wan_gpu"
if ldd "$binary" | grep -q gstreamer; then
  echo "wan_gpu links GStreamer, which the GPU machine does not have" >&2
  exit 1
fi
strip -o .gpu/bin/wan_gpu "$binary"
xz -T2 -6 -f .gpu/bin/wan_gpu
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 -d .gpu/wheels \
  diffusers==0.42.1 importlib_metadata==10.2.0
du -sh .gpu
