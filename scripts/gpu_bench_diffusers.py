"""One denoising step with CFG (two DiT forwards) of diffusers' WanTransformer3DModel on
CUDA in bf16 with its default attention (PyTorch SDPA), random weights: the PyTorch side
of scripts/gpu-check.sh. Prints one JSON line, as examples/wan_gpu.rs does.
`attention` times one self-attention alone with the SDPA diffusers calls.

    python3 scripts/gpu_bench_diffusers.py wan2.1-1.3b [frames=81 height=480 width=832 steps=2]
    python3 scripts/gpu_bench_diffusers.py attention [tokens=32760 heads=12 steps=10]
"""

import json
import sys
import time

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

CONFIGS = {
    # (heads, in_channels, out_channels, ffn_dim, VAE spatial factor)
    "wan2.1-1.3b": (12, 16, 16, 8960, 8),
    # Lucy-Edit-Dev: Wan2.2 TI2V-5B with the source latents on the input channels.
    "wan2.2-5b": (24, 96, 48, 14336, 16),
}


def seconds_per_call(calls, f):
    """Seconds per call of `f` after one warm-up call."""
    with torch.inference_mode():
        f()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            f()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / calls


def attention(options):
    tokens = int(options.get("tokens", 32760))
    heads = int(options.get("heads", 12))
    calls = int(options.get("steps", 10))
    q, k, v = (torch.randn((1, heads, tokens, 128), device="cuda", dtype=torch.bfloat16)
               for _ in range(3))
    seconds = seconds_per_call(calls, lambda: F.scaled_dot_product_attention(q, k, v))
    print(json.dumps({
        "impl": "diffusers",
        "config": "attention",
        "heads": heads,
        "tokens": tokens,
        "seconds_per_step": seconds,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
    }))


def main():
    name = sys.argv[1]
    options = dict(arg.split("=", 1) for arg in sys.argv[2:])
    if name == "attention":
        attention(options)
        return
    frames = int(options.get("frames", 81))
    height = int(options.get("height", 480))
    width = int(options.get("width", 832))
    steps = int(options.get("steps", 2))
    heads, c_in, c_out, ffn, spatial = CONFIGS[name]
    layers = int(options.get("layers", 30))
    with torch.device("cuda"):
        model = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=heads,
            attention_head_dim=128,
            in_channels=c_in,
            out_channels=c_out,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=ffn,
            num_layers=layers,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            rope_max_seq_len=1024,
        )
    model = model.to(torch.bfloat16).eval()
    latent = (1, c_in, (frames - 1) // 4 + 1, height // spatial, width // spatial)
    tokens = latent[2] * (latent[3] // 2) * (latent[4] // 2)
    x = torch.randn(latent, device="cuda", dtype=torch.bfloat16)
    cond = torch.randn((1, 512, 4096), device="cuda", dtype=torch.bfloat16)
    uncond = cond + 0.1
    t = torch.tensor([999.0], device="cuda")

    def step():
        a = model(hidden_states=x, timestep=t, encoder_hidden_states=cond, return_dict=False)[0]
        b = model(hidden_states=x, timestep=t, encoder_hidden_states=uncond, return_dict=False)[0]
        return b + 5.0 * (a - b)

    seconds = seconds_per_call(steps, step)
    print(json.dumps({
        "impl": "diffusers",
        "config": name,
        "frames": frames, "height": height, "width": width, "layers": layers,
        "tokens": tokens,
        "seconds_per_step": seconds,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
    }))


if __name__ == "__main__":
    main()
