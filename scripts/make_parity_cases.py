#!/usr/bin/env python3
"""Build the Wan parity cases of tests/fixtures/parity (see PARITY.md).

Run by hand, not in CI. Versions this was run with:

    pip install torch==2.15.0 diffusers==0.42.1 transformers==5.24.0 tokenizers==0.23.3 \
        ftfy==6.3.1 safetensors==0.8.0 sentencepiece==0.2.3 accelerate==1.15.0 peft==0.21.2

(The LoRA and few-step cases were added later with exactly these versions, peft for
`load_lora_weights`; the cases before them were left as they were made.)

Usage: python scripts/make_parity_cases.py [OUT_DIR [CASE...]]   (default tests/fixtures/parity)
       python scripts/make_parity_cases.py --real-vae OUT_DIR       (released VAE sizes, not committed)
       python scripts/make_parity_cases.py --real-dit OUT_DIR       (one block of the released DiTs)

A case with `_lora` also gets a random LoRA file (`lora.safetensors` beside `case.json`),
in the diffusers or the ComfyUI/kijai key layout, that the reference loads with
`pipe.load_lora_weights` and merges with `pipe.fuse_lora(lora_scale=...)`; a case with
`_flow_shift` runs with the scheduler replaced by `from_config(..., flow_shift=...)`, as
diffusers documents for the step-distilled Wan LoRAs, and says `flow_shift` in case.json.

Every model is a tiny configuration of diffusers' and transformers' own classes with
every parameter perturbed (fresh norms are exactly one and biases zero, which would hide
a port that skips them), saved with `save_pretrained` (some in bf16 or f16, to exercise
the loader's dtype conversion) and reloaded in f32. The pipeline's random draw is patched
to return the saved noise, and the stage tensors are captured on the way.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

import diffusers
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    LucyEditPipeline,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
    WanVACEPipeline,
    WanVACETransformer3DModel,
    WanVideoToVideoPipeline,
)
from diffusers.pipelines.lucy import pipeline_lucy_edit
from diffusers.pipelines.wan import pipeline_wan, pipeline_wan_vace, pipeline_wan_video2video

CORPUS = [
    "a cat jumps over the fence in the morning light",
    "turn the shirt red and make the sky purple",
    "a low quality, blurry video with artifacts",
    "the quick brown fox jumps over the lazy dog",
    "replace the car with a horse, cinematic lighting, 4k",
    "make it look like a watercolor painting of a city at night",
    "Tom & Jerry run through a kitchen; the floor is wet!",
    "zoom out slowly while the camera pans left across the river",
]

LONG_PROMPT = " ".join(
    f"{w} number {i}, with extraordinary detail;" for i, w in enumerate(["scene", "camera", "light"] * 60)
)


def train_tokenizer(out_dir):
    """A small Unigram tokenizer shaped like T5's: Metaspace pieces, `</s>` appended."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=160, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", shrinking_factor=0.75
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    wrapped = T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    wrapped.model_max_length = 512
    wrapped.save_pretrained(out_dir)
    return wrapped


def perturb(module, seed):
    """Moves every parameter off its initial value, constants (norm weights, biases) most."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if p.numel() == 1 or float(p.std()) < 1e-6:
                p.add_(0.3 * noise)
            else:
                p.add_(0.2 * float(p.std()) * noise)


# The tiny models' sizes; a case's `_text` and `_dit` replace some (see REAL_DIT_CASES).
TINY_UMT5 = dict(d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4)
TINY_DIT = dict(num_attention_heads=2, attention_head_dim=12, text_dim=32, freq_dim=16, ffn_dim=48, num_layers=2)


def text_encoder(vocab, seed, **dims):
    cfg = UMT5Config(
        vocab_size=vocab,
        **{**TINY_UMT5, **dims},
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
    )
    torch.manual_seed(seed)
    model = UMT5EncoderModel(cfg)
    perturb(model, seed)
    return model


def transformer(in_channels, out_channels, seed, vace=None, **dims):
    """The plain DiT, or with `vace` (`vace_layers`, `vace_in_channels`) the VACE one."""
    torch.manual_seed(seed)
    cls, extra = (WanTransformer3DModel, {}) if vace is None else (WanVACETransformer3DModel, vace)
    model = cls(
        **extra,
        patch_size=(1, 2, 2),
        in_channels=in_channels,
        out_channels=out_channels,
        **{**TINY_DIT, **dims},
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=64,
    )
    perturb(model, seed)
    return model


def vae(generation, seed, num_res_blocks=1, attn_scales=(), real_dims=False, z_dim=None):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    # What Wan2.2's VAE has beside Wan2.1's layout: residual blocks over 2x2-patchified RGB.
    wan22 = dict(is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16)
    if real_dims:
        # The released checkpoints' VAE configurations (Wan2.1 and Wan2.2), random weights.
        z = 16 if generation == "2.1" else 48
        dims = dict(base_dim=96) if generation == "2.1" else dict(base_dim=160, decoder_base_dim=256, **wan22)
    else:
        z = 16 if generation == "2.1" else z_dim or 8
        dims = dict(
            base_dim=4,
            dim_mult=[1, 2, 2, 2],
            num_res_blocks=num_res_blocks,
            attn_scales=list(attn_scales),
            temperal_downsample=[False, True, True],
        )
        if generation != "2.1":
            dims.update(decoder_base_dim=6, scale_factor_temporal=4, **wan22)
    model = AutoencoderKLWan(
        **dims,
        z_dim=z,
        latents_mean=(torch.randn(z, generator=gen) * 0.3).tolist(),
        latents_std=(1.0 + torch.rand(z, generator=gen)).tolist(),
    )
    perturb(model, seed)
    return model


def scheduler(kind, shift):
    if kind == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, num_train_timesteps=1000
        )
    return FlowMatchEulerDiscreteScheduler(shift=shift, num_train_timesteps=1000)


PIPELINES = {
    "lucy-edit": (LucyEditPipeline, pipeline_lucy_edit),
    "video2video": (WanVideoToVideoPipeline, pipeline_wan_video2video),
    "text2video": (WanPipeline, pipeline_wan),
    "vace": (WanVACEPipeline, pipeline_wan_vace),
}


def build_model(case, model_dir, seed):
    tok = train_tokenizer(os.path.join(model_dir, "tokenizer"))
    vae_generation = "2.2" if case["pipeline"] == "lucy-edit" else "2.1"
    v = vae(vae_generation, seed, **case.get("_vae", {}))
    z = v.config.z_dim
    in_ch = 2 * z if case["pipeline"] == "lucy-edit" else z
    cls, _ = PIPELINES[case["pipeline"]]
    vace = None
    if case["pipeline"] == "vace":
        # Inactive and reactive latents, then the 8x8 mask packed on the channels.
        spatial = 2 ** len(v.temperal_downsample)
        vace = dict(vace_layers=case["_vace"]["layers"], vace_in_channels=2 * z + spatial * spatial)
    pipe = cls(
        tokenizer=tok,
        text_encoder=text_encoder(len(tok), seed + 2, **case.get("_text", {})),
        transformer=transformer(in_ch, z, seed + 3, vace=vace, **case.get("_dit", {})),
        vae=v,
        scheduler=scheduler(case["_scheduler"], case["_shift"]),
    )
    pipe.save_pretrained(model_dir, safe_serialization=True)
    dtype = case.get("_save_dtype")
    if dtype is not None:
        # Re-save the weights in half precision (which also keeps the fixtures small);
        # the reference then loads them back in f32 exactly as the port does.
        torch_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[dtype]
        for name in ["transformer", "text_encoder", "vae"]:
            getattr(pipe, name).to(torch_dtype).save_pretrained(os.path.join(model_dir, name))
    for name in ["model_index.json"]:
        assert os.path.exists(os.path.join(model_dir, name))
    return cls.from_pretrained(model_dir, torch_dtype=torch.float32)


# The diffusers names of the linears a generated LoRA adapts, in each block and outside.
LORA_BLOCK_MODULES = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                      "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2"]
LORA_TOP_MODULES = ["condition_embedder.time_proj", "proj_out"]
# The same modules in the original Wan code's names (ComfyUI / kijai files).
ORIGINAL_NAMES = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
                  "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
                  "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o", "ffn.net.0.proj": "ffn.0",
                  "ffn.net.2": "ffn.2", "condition_embedder.time_proj": "time_projection.1",
                  "proj_out": "head.head"}


def write_lora(transformer, spec, path, seed):
    """A random LoRA of `transformer`'s linears, saved at `path` in `spec["layout"]`.

    diffusers layout: `transformer.<module>.lora_A/lora_B.weight`, with PEFT's `r` and
    `lora_alpha` in the header metadata diffusers itself writes. ComfyUI layout:
    `diffusion_model.<original name>.lora_down/lora_up.weight`, `.alpha` on the blocks'
    modules (diffusers' converter takes alpha only there) and `.diff_b` bias deltas, in
    `spec["dtype"]`. The alpha over the rank is a power of two there, so that the
    converter's folding of it into the bf16 weights is exact."""
    gen = torch.Generator().manual_seed(seed)
    rank, layout = spec["rank"], spec["layout"]
    modules = [f"blocks.{i}.{m}" for i in range(len(transformer.blocks)) for m in LORA_BLOCK_MODULES]
    modules += LORA_TOP_MODULES
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[spec.get("dtype", "f32")]
    tensors = {}
    for name in modules:
        linear = transformer.get_submodule(name)
        down = 0.2 * torch.randn(rank, linear.in_features, generator=gen)
        up = 0.2 * torch.randn(linear.out_features, rank, generator=gen)
        if layout == "diffusers":
            tensors[f"transformer.{name}.lora_A.weight"] = down
            tensors[f"transformer.{name}.lora_B.weight"] = up
            continue
        block, _, inner = name.partition(".") if name.startswith("blocks.") else ("", "", name)
        if block:
            index, _, inner = inner.partition(".")
            original = f"diffusion_model.blocks.{index}.{ORIGINAL_NAMES[inner]}"
            tensors[f"{original}.alpha"] = torch.tensor(float(spec["alpha"]))
        else:
            original = f"diffusion_model.{ORIGINAL_NAMES[inner]}"
        tensors[f"{original}.lora_down.weight"] = down.to(dtype)
        tensors[f"{original}.lora_up.weight"] = up.to(dtype)
        tensors[f"{original}.diff_b"] = (0.1 * torch.randn(linear.out_features, generator=gen)).to(dtype)
    metadata = {"format": "pt"}
    if layout == "diffusers":
        adapter = {"r": rank, "lora_alpha": spec["alpha"], "target_modules": sorted(modules)}
        metadata["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in adapter.items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata)


def make_case(case, out_root, seed):
    name = case["name"]
    case_dir = os.path.join(out_root, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    pipe = build_model(case, os.path.join(case_dir, "model"), seed)
    _, module = PIPELINES[case["pipeline"]]
    lora = case.get("_lora")
    if lora is not None:
        write_lora(pipe.transformer, lora, os.path.join(case_dir, "lora.safetensors"), seed + 20)
        pipe.load_lora_weights(os.path.join(case_dir, "lora.safetensors"))
        pipe.fuse_lora(lora_scale=lora["scale"])
        pipe.unload_lora_weights()
    if "_flow_shift" in case:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=case["_flow_shift"])

    f, h, w = case["num_frames"], case["height"], case["width"]
    gen = torch.Generator().manual_seed(seed + 10)
    # 8-bit frames, so that the PIL path of the reference and the f32 input of the port
    # hold the same values.
    video_u8 = (torch.rand(f, h, w, 3, generator=gen) * 255).round().to(torch.uint8)
    video = video_u8.float() / 255.0
    frames = [Image.fromarray(frame.numpy()) for frame in video_u8]

    v = pipe.vae.config
    t_lat = (f - 1) // v.scale_factor_temporal + 1
    channels = pipe.transformer.config.out_channels if case["pipeline"] == "lucy-edit" else pipe.transformer.config.in_channels
    vace = case.get("_vace")
    # VACE draws one latent frame more per reference image.
    refs = vace["refs"] if vace else 0
    noise = torch.randn(
        1, channels, t_lat + refs, h // v.scale_factor_spatial, w // v.scale_factor_spatial, generator=gen
    )
    inputs = {"video": video, "noise": noise}
    vace_kwargs = vace_conditions(vace, video, frames, gen, inputs) if vace else {}

    def fixed_noise(shape, **kwargs):
        assert tuple(shape) == tuple(noise.shape), (shape, noise.shape)
        return noise.clone().to(kwargs.get("dtype") or torch.float32)

    module.randn_tensor = fixed_noise

    captured = {}
    original_forward = pipe.transformer.forward

    def forward(*args, **kwargs):
        out = original_forward(*args, **kwargs)
        if "first_noise_pred" not in captured:
            captured["first_noise_pred"] = (out[0] if isinstance(out, tuple) else out.sample).detach().clone()
        return out

    pipe.transformer.forward = forward
    original_step = pipe.scheduler.step

    def step(*args, **kwargs):
        out = original_step(*args, **kwargs)
        captured["final_latents"] = out[0].detach().clone()
        return out

    pipe.scheduler.step = step

    guidance = case["guidance_scale"]
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(
            case["prompt"],
            case["negative_prompt"],
            do_classifier_free_guidance=guidance > 1.0,
            max_sequence_length=512,
        )
        kwargs = dict(
            prompt=case["prompt"],
            negative_prompt=case["negative_prompt"],
            height=h,
            width=w,
            num_inference_steps=case["num_inference_steps"],
            guidance_scale=guidance,
            output_type="np",
        )
        if case["pipeline"] == "vace":
            kwargs.update(vace_kwargs, num_frames=f)
        elif case["pipeline"] != "text2video":
            kwargs["video"] = frames
        else:
            kwargs["num_frames"] = f
        if case["pipeline"] == "video2video":
            kwargs["strength"] = case["strength"]
        out = pipe(**kwargs).frames[0]
        if refs:
            # The pipeline drops the reference frames before decoding; so does the port's result.
            captured["final_latents"] = captured["final_latents"][:, :, refs:]

        expected = {
            "video": torch.from_numpy(np.asarray(out, dtype=np.float32)).contiguous(),
            "prompt_embeds": cond[0:1].contiguous(),
            "first_noise_pred": captured["first_noise_pred"].contiguous(),
            "final_latents": captured["final_latents"].contiguous(),
        }
        if uncond is not None:
            expected["negative_prompt_embeds"] = uncond[0:1].contiguous()
        if case["pipeline"] not in ("text2video", "vace"):
            src = pipe.video_processor.preprocess_video(frames, height=h, width=w).to(torch.float32)
            lat = pipe.vae.encode(src).latent_dist.mode()
            mean = torch.tensor(v.latents_mean).view(1, v.z_dim, 1, 1, 1)
            std = torch.tensor(v.latents_std).view(1, v.z_dim, 1, 1, 1)
            expected["source_latents"] = ((lat - mean) / std).contiguous()

    save_file({k: t.contiguous() for k, t in inputs.items()}, os.path.join(case_dir, "inputs.safetensors"))
    save_file({k: t.float() for k, t in expected.items()}, os.path.join(case_dir, "expected.safetensors"))
    meta = {k: v for k, v in case.items() if not k.startswith("_") and k != "name"}
    if vace and "conditioning_scale" in vace:
        meta["conditioning_scale"] = vace["conditioning_scale"]
    if lora is not None:
        meta["lora"] = [{"file": "lora.safetensors", "scale": lora["scale"]}]
    if "_flow_shift" in case:
        meta["flow_shift"] = case["_flow_shift"]
    meta["tolerance"] = {"video": 1e-4, "prompt_embeds": 1e-5, "negative_prompt_embeds": 1e-5}
    with open(os.path.join(case_dir, "case.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    print(name, {k: tuple(t.shape) for k, t in expected.items()})


def vace_conditions(vace, video, frames, gen, inputs):
    """The VACE call's `video`, `mask`, `reference_images` and `conditioning_scale` of a
    case's `_vace` spec, recording the port's inputs (PARITY.md, "VACE cases") in `inputs`.

    `video="none"` calls diffusers without a video (reference-only generation), which then
    conditions on zeros in [-1, 1]: the port gets that as frames of exactly 0.5. `mask`
    is "none" (not passed: generate everywhere), "box" (a region regenerated in every
    frame, the rest kept) or "first_frame" (frame 0 kept, the others generated); masks
    go as mode "L" images of 0 and 255. Reference images are random 8-bit images at the
    case's size, so that no letterboxing is involved."""
    f, h, w, _ = video.shape
    kwargs = {}
    if vace.get("video") == "none":
        inputs["video"] = torch.full_like(video, 0.5)
    else:
        kwargs["video"] = frames
    mask = vace.get("mask", "none")
    if mask != "none":
        m = torch.zeros(f, h, w)
        if mask == "box":
            m[:, h // 4 : h // 4 + h // 2, w // 8 : w // 8 + w // 2] = 1.0
        elif mask == "first_frame":
            m[1:] = 1.0
        else:
            raise ValueError(mask)
        inputs["mask"] = m
        kwargs["mask"] = [Image.fromarray((plane * 255).to(torch.uint8).numpy(), mode="L") for plane in m]
    if vace["refs"]:
        refs_u8 = (torch.rand(vace["refs"], h, w, 3, generator=gen) * 255).round().to(torch.uint8)
        inputs["reference_images"] = refs_u8.float() / 255.0
        kwargs["reference_images"] = [Image.fromarray(r.numpy()) for r in refs_u8]
    if "conditioning_scale" in vace:
        kwargs["conditioning_scale"] = vace["conditioning_scale"]
    return kwargs


CASES = [
    # Lucy-Edit: Wan2.2 VAE, FlowMatchEuler (as Lucy-Edit-Dev), source latents on the channels.
    dict(name="lucy_square_f5_1step", pipeline="lucy-edit", prompt="turn the shirt red",
         negative_prompt="blurry", num_inference_steps=1, guidance_scale=1.0, height=64, width=64,
         num_frames=5, _scheduler="flow", _shift=5.0, _save_dtype="f16"),
    dict(name="lucy_wide_f9_4steps_cfg", pipeline="lucy-edit", prompt="make it look like a watercolor painting",
         negative_prompt="a low quality, blurry video", num_inference_steps=4, guidance_scale=5.0, height=32,
         width=64, num_frames=9, _scheduler="flow", _shift=5.0, _save_dtype="bf16"),
    dict(name="lucy_tall_f13_unipc_long_prompt", pipeline="lucy-edit", prompt=LONG_PROMPT, negative_prompt="",
         num_inference_steps=3, guidance_scale=4.0, height=64, width=32, num_frames=13, _scheduler="unipc",
         _shift=3.0, _vae=dict(num_res_blocks=2)),
    # Wan2.1 video-to-video: UniPC with flow sigmas, strength skips the first steps.
    dict(name="v2v_square_f5_4steps_cfg", pipeline="video2video", prompt="a cat jumps over the fence",
         negative_prompt="low quality", num_inference_steps=4, guidance_scale=5.0, strength=0.7, height=32,
         width=32, num_frames=5, _scheduler="unipc", _shift=3.0, _save_dtype="bf16"),
    dict(name="v2v_wide_f9_1step", pipeline="video2video", prompt="Tom &amp; Jerry  run\nthrough a kitchen",
         negative_prompt="", num_inference_steps=1, guidance_scale=1.0, strength=1.0, height=32, width=48,
         num_frames=9, _scheduler="unipc", _shift=5.0, _save_dtype="f16"),
    dict(name="v2v_tall_f13_long_prompt", pipeline="video2video", prompt=LONG_PROMPT,
         negative_prompt="blurry", num_inference_steps=5, guidance_scale=3.5, strength=0.6, height=48,
         width=32, num_frames=13, _scheduler="unipc", _shift=5.0, _save_dtype="f16",
         _vae=dict(num_res_blocks=2)),
    # Wan2.1 text-to-video.
    dict(name="t2v_square_f5_1step", pipeline="text2video",
         # Exercises the prompt cleaning: curly quotes, an entity, NFC, a terminal escape,
         # a C1 control and a ligature.
         prompt="the \u201cquick\u201d brown fox &amp; caf\u00e9 e\u0301t\u00e9 \x1b[1m\x93\ufb01ne\x94",
         negative_prompt="", num_inference_steps=1, guidance_scale=1.0, height=32, width=32, num_frames=5,
         _scheduler="unipc", _shift=3.0),
    dict(name="t2v_wide_f13_4steps_cfg_empty_negative", pipeline="text2video",
         prompt="zoom out slowly while the camera pans left", negative_prompt="", num_inference_steps=4,
         guidance_scale=5.0, height=32, width=64, num_frames=13, _scheduler="unipc", _shift=5.0),
    dict(name="t2v_tall_f9_flow_euler", pipeline="text2video", prompt="a horse in the river",
         negative_prompt="static", num_inference_steps=4, guidance_scale=2.0, height=48, width=32,
         num_frames=9, _scheduler="flow", _shift=3.0, _save_dtype="bf16"),
    # LoRA merged at load: a diffusers-layout file (PEFT alpha in the header metadata)...
    dict(name="v2v_square_f5_lora_diffusers", pipeline="video2video", prompt="make it snow",
         negative_prompt="rain", num_inference_steps=3, guidance_scale=3.0, strength=0.9, height=32, width=32,
         num_frames=5, _scheduler="unipc", _shift=3.0, _save_dtype="f16",
         _lora=dict(layout="diffusers", rank=4, alpha=6.0, scale=0.7)),
    # ...and a ComfyUI/kijai one (bf16, .alpha, .diff_b), on a FlowMatchEuler model.
    dict(name="t2v_square_f5_lora_comfy", pipeline="text2video", prompt="a red kite over the sea",
         negative_prompt="fog", num_inference_steps=2, guidance_scale=2.5, height=32, width=32, num_frames=5,
         _scheduler="flow", _shift=3.0, _save_dtype="bf16",
         _lora=dict(layout="comfy", rank=2, alpha=4.0, scale=1.25, dtype="bf16")),
    # The few-step recipe of the step-distilled Wan LoRAs in diffusers: 4 steps, no CFG,
    # UniPC with flow_shift 5 (from_config on the checkpoint's own scheduler).
    dict(name="v2v_square_f5_fewstep_lora", pipeline="video2video", prompt="turn the car blue",
         negative_prompt="", num_inference_steps=4, guidance_scale=1.0, strength=1.0, height=32, width=32,
         num_frames=5, _scheduler="unipc", _shift=3.0, _save_dtype="f16", _flow_shift=5.0,
         _lora=dict(layout="comfy", rank=4, alpha=8.0, scale=1.0, dtype="bf16")),
    # Wan2.1 VACE (WanVACETransformer3DModel): reference images as leading latent frames,
    # inactive/reactive latents and the packed mask as the control input of `vace_layers`.
    dict(name="vace_square_f5_reference", pipeline="vace", prompt="a cat in a garden", negative_prompt="",
         num_inference_steps=3, guidance_scale=1.0, height=32, width=32, num_frames=5, _scheduler="unipc",
         _shift=3.0, _save_dtype="f16", _vace=dict(layers=[0, 1], video="none", refs=1)),
    dict(name="vace_square_f9_masked_video", pipeline="vace", prompt="replace the car with a horse",
         negative_prompt="", num_inference_steps=3, guidance_scale=1.0, height=32, width=32, num_frames=9,
         _scheduler="flow", _shift=3.0, _save_dtype="f16", _dit=dict(num_layers=3),
         _vace=dict(layers=[0, 2], mask="box", refs=0)),
    dict(name="vace_square_f9_first_frame", pipeline="vace", prompt="zoom out slowly", negative_prompt="",
         num_inference_steps=3, guidance_scale=1.0, height=32, width=32, num_frames=9, _scheduler="unipc",
         _shift=5.0, _save_dtype="f16",
         _vace=dict(layers=[0, 1], mask="first_frame", refs=0, conditioning_scale=[0.8, 1.3])),
    dict(name="vace_wide_f9_two_refs_unipc_cfg", pipeline="vace", prompt="a dog runs on the beach",
         negative_prompt="blurry", num_inference_steps=4, guidance_scale=4.0, height=32, width=64, num_frames=9,
         _scheduler="unipc", _shift=3.0, _save_dtype="f16",
         _vace=dict(layers=[0, 1], mask="box", refs=2, conditioning_scale=0.6)),
]


# Not committed (hundreds of MB): the released VAE dimensions with a tiny transformer and
# text encoder, for a run with WANEDIT_PARITY_CASES. `--real-vae OUT_DIR` makes them.
REAL_VAE_CASES = [
    dict(name="real_vae22_lucy_f5", pipeline="lucy-edit", prompt="turn the shirt red", negative_prompt="",
         num_inference_steps=2, guidance_scale=3.0, height=64, width=64, num_frames=5, _scheduler="flow",
         _shift=5.0, _vae=dict(real_dims=True)),
    dict(name="real_vae21_v2v_f5", pipeline="video2video", prompt="a cat", negative_prompt="blurry",
         num_inference_steps=2, guidance_scale=3.0, strength=1.0, height=32, width=48, num_frames=5,
         _scheduler="unipc", _shift=3.0, _vae=dict(real_dims=True)),
]


# One block of the released DiTs (Wan2.1 1.3B; Wan2.2 5B as in Lucy-Edit-Dev) over a
# one-layer UMT5 of UMT5-XXL's width, with the tiny VAEs: `--real-dit OUT_DIR`.
UMT5_XXL_LAYER = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=1, num_heads=64)
REAL_DIT_CASES = [
    dict(name="real_dit_1_3b_t2v_f5", pipeline="text2video", prompt="a horse", negative_prompt="",
         num_inference_steps=2, guidance_scale=3.0, height=32, width=48, num_frames=5, _scheduler="unipc",
         _shift=3.0, _text=UMT5_XXL_LAYER,
         _dit=dict(num_attention_heads=12, attention_head_dim=128, text_dim=4096, freq_dim=256, ffn_dim=8960,
                   num_layers=1)),
    dict(name="real_dit_5b_lucy_f5", pipeline="lucy-edit", prompt="make it snow", negative_prompt="sunny",
         num_inference_steps=2, guidance_scale=3.0, height=64, width=64, num_frames=5, _scheduler="flow",
         _shift=5.0, _text=UMT5_XXL_LAYER, _vae=dict(z_dim=48),
         _dit=dict(num_attention_heads=24, attention_head_dim=128, text_dim=4096, freq_dim=256, ffn_dim=14336,
                   num_layers=1)),
]


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--real-dit":
        cases, out_root, only = REAL_DIT_CASES, sys.argv[2], set()
    elif len(sys.argv) > 2 and sys.argv[1] == "--real-vae":
        cases, out_root, only = REAL_VAE_CASES, sys.argv[2], set()
    else:
        default = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "parity")
        cases = CASES
        out_root = sys.argv[1] if len(sys.argv) > 1 else default
        only = set(sys.argv[2:])
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for i, case in enumerate(cases):
        if only and case["name"] not in only:
            continue
        make_case(case, out_root, 1000 + 17 * i)


if __name__ == "__main__":
    main()
