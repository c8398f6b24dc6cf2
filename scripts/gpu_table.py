"""The table of docs/candle.md from the JSON lines of scripts/gpu-check.sh.

    python3 scripts/gpu_table.py bench.jsonl "NVIDIA H100 80GB HBM3"
"""

import datetime
import json
import sys

# Dense bf16 tensor-core peak in TFLOP/s (the data sheets' figures without sparsity).
PEAKS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1}


def main():
    path, gpu = sys.argv[1], sys.argv[2]
    peak = next((p for name, p in PEAKS.items() if name in gpu), None)
    rows = [json.loads(line) for line in open(path) if line.strip()]
    candle = {r["config"]: r for r in rows if r["impl"] == "candle"}
    torch = {r["config"]: r for r in rows if r["impl"] == "diffusers"}
    print(f"{gpu}, {datetime.date.today()}; bf16 peak {peak or 'unknown'} TFLOP/s\n")
    print("| configuration | tokens | TFLOP/step | Candle attention | Candle s/step "
          "| PyTorch s/step | Candle / PyTorch | Candle TFLOP/s | of peak | PyTorch TFLOP/s "
          "| of peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for config, c in candle.items():
        t = torch.get(config)
        flop = c["tflop_per_step"]
        ts = t["seconds_per_step"] if t else float("nan")
        fraction = lambda s: f"{flop / s / peak:.0%}" if peak else "-"
        print(f"| {config} | {c['tokens']} | {flop:.1f} | {c['attention']} "
              f"| {c['seconds_per_step']:.3f} | {ts:.3f} "
              f"| {c['seconds_per_step'] / ts:.2f} | {flop / c['seconds_per_step']:.0f} "
              f"| {fraction(c['seconds_per_step'])} | {flop / ts:.0f} | {fraction(ts)} |")


if __name__ == "__main__":
    main()
