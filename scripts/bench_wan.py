#!/usr/bin/env python3
"""Times one DiT forward and one VAE decode in diffusers on the CPU, at the size of
benches/wan_cpu.rs, and prints the ratio to the criterion estimates of that bench when
they exist (run scripts/bench_wan.sh to get both in one run on one machine).

Same pinned versions as scripts/make_parity_cases.py.
"""

import json
import os
import statistics
import sys
import time

import torch
from safetensors.torch import load_file

from diffusers import WanPipeline

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CASE = os.path.join(ROOT, "tests/fixtures/parity/t2v_wide_f13_4steps_cfg_empty_negative")
CRITERION = os.path.join(ROOT, "target/criterion")


def timed(fn, warmup=3, min_time=5.0):
    """(median, min) seconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(samples) < 10:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), min(samples)


def criterion_times(name):
    """(median, min) seconds per iteration over criterion's samples, if it has run."""
    path = os.path.join(CRITERION, name, "new", "sample.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        sample = json.load(fh)
    per_iter = [t / n * 1e-9 for t, n in zip(sample["times"], sample["iters"])]
    return statistics.median(per_iter), min(per_iter)


def main():
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    pipe = WanPipeline.from_pretrained(os.path.join(CASE, "model"), torch_dtype=torch.float32)
    inputs = load_file(os.path.join(CASE, "inputs.safetensors"))
    expected = load_file(os.path.join(CASE, "expected.safetensors"))
    noise, embeds = inputs["noise"], expected["prompt_embeds"]
    v = pipe.vae.config
    mean = torch.tensor(v.latents_mean).view(1, v.z_dim, 1, 1, 1)
    std = torch.tensor(v.latents_std).view(1, v.z_dim, 1, 1, 1)
    latents = expected["final_latents"] * std + mean
    t = torch.tensor([999.0])

    with torch.no_grad():
        results = {
            "wan_dit_forward": timed(lambda: pipe.transformer(noise, t, embeds, return_dict=False)),
            "wan_vae_decode": timed(lambda: pipe.vae.decode(latents, return_dict=False)),
        }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load}, "
          f"case {os.path.basename(CASE)}")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print("warning: the machine is busy; both timings, and the ratio, are unreliable")
    # The minimum is the timing least disturbed by other work on the machine.
    for name, (median, best) in results.items():
        line = f"{name}: diffusers median {median * 1e3:.3f} ms, min {best * 1e3:.3f} ms"
        ours = criterion_times(name)
        if ours is not None:
            line += (f"; candle median {ours[0] * 1e3:.3f} ms, min {ours[1] * 1e3:.3f} ms; "
                     f"candle/diffusers median {ours[0] / median:.2f}, min {ours[1] / best:.2f}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
