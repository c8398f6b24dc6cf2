#!/usr/bin/env bash
# Run on the GPU machine, after scripts/gpu-prepare.sh here, in one call:
#   bash scripts/gpu-check.sh   (with .gpu/ copied beside the checkout)
# 1. the parity cases on CUDA (f32 within 1e-3, bf16 within 2e-2) and the fused
#    attention against the blocked one;
# 2. one self-attention alone (12 heads of 32,760 tokens) against PyTorch's SDPA, and
#    one denoising step with CFG at 480x832, 81 frames, random weights, for the
#    Wan2.1-1.3B (32,760 tokens) and Wan2.2-5B (Lucy-Edit, 8,190 tokens) transformers,
#    in Candle and in diffusers/PyTorch (bf16, its default attention) in the same run;
# 3. the table of docs/candle.md (also written to $OUT/table.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/wheels/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# Candle's cuBLAS, cuRAND and NVRTC: those of PyTorch's CUDA 13 wheels.
cuda_lib="$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))')"
export LD_LIBRARY_PATH="$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The program travels compressed; Python's lzma unpacks it (no xz needed there).
wan_gpu=/tmp/wan_gpu
python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
  .gpu/bin/wan_gpu.xz "$wan_gpu"
chmod +x "$wan_gpu"
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
echo "GPU: $gpu, $(date -u +%F)"

# A failed check must not cost the timings: GPU time is short and costly,
# so everything runs and the exit status says what failed.
status=0
"$wan_gpu" parity tests/fixtures/parity cuda:0 2>&1 | tee "$out/parity.txt" || status=1

: > "$out/bench.jsonl"
for config in attention wan2.1-1.3b wan2.2-5b; do
  "$wan_gpu" bench "$config" cuda:0 | tee -a "$out/bench.jsonl" || status=1
  python3 scripts/gpu_bench_diffusers.py "$config" | tee -a "$out/bench.jsonl" || status=1
done
python3 scripts/gpu_table.py "$out/bench.jsonl" "$gpu" | tee "$out/table.md"
exit "$status"
