"""What only a GPU can show, at real model sizes with random weights (no hub needed): per family, the dtype
``dtype="auto"`` picks, the weights' memory, the chunk ``max_batch="auto"`` chooses, seconds per denoiser
forward at batch 1 and at that chunk, peak memory of a Best-of-N search, and what ``--overlap`` and
``--compile`` change.

Run from the repository root, on a machine with one CUDA GPU (about 8 minutes for the three families on an
H100; each family is measured in its own try, so one failure is reported and the rest still run):

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_gpu --out gpu.json [--families sd15,sdxl,flux] [--compile]

``--scale tiny`` builds the same architectures a few hundred times smaller: the CPU smoke test of this
script (``tests/test_bench_gpu.py``). The figures it prints then are meaningless.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

import torch

# Real architectures (the published configs of SD 1.5, SDXL base and FLUX.1-dev), written out because the
# machines that run this have no hub. "tiny" keeps the structure and shrinks widths and depths.
REAL = {
    "sd15": {"unet": {"block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2, "cross_attention_dim": 768,
                          "attention_head_dim": 8, "sample_size": 64},
             "text": [{"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}],
             "size": 512},
    "sdxl": {"unet": {"block_out_channels": (320, 640, 1280), "layers_per_block": 2, "cross_attention_dim": 2048,
                          "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20), "sample_size": 128,
                          "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                          "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                          "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                          "projection_class_embeddings_input_dim": 2816},
             "text": [{"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
                      {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20,
                           "projection_dim": 1280}],
             "size": 1024},
    "flux": {"transformer": {"patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
                                 "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
                                 "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": (16, 56, 56)},
             "text": [{"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}],
             "t5": {"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "feed_forward_proj": "gated-gelu"},
             "size": 1024},
}


SD_SCHEDULER = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False,
                    "set_alpha_to_one": False, "steps_offset": 1}


def shrink(cfg: dict, family: str) -> dict:
    """The same architecture, tiny: widths / 40 (multiples of 8), a layer or two."""
    out = json.loads(json.dumps(cfg))
    if "unet" in out:
        u = out["unet"]
        u["block_out_channels"] = [32] * len(u["block_out_channels"])
        # SDXL's cross-attention reads both text encoders' states side by side (768 + 1280 when real).
        u["layers_per_block"], u["cross_attention_dim"], u["sample_size"] = 1, 64 if family == "sdxl" else 32, 8
        u["attention_head_dim"] = 8 if family == "sd15" else [2] * len(u["block_out_channels"])
        if "transformer_layers_per_block" in u:
            u["transformer_layers_per_block"] = [1] * len(u["block_out_channels"])
            u["addition_time_embed_dim"], u["projection_class_embeddings_input_dim"] = 8, 32 + 6 * 8
    if "transformer" in out:
        out["transformer"].update(num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
                                  joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(2, 2, 4))
    for t in out["text"]:
        t.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        if "projection_dim" in t:
            t["projection_dim"] = 32
    if "t5" in out:
        out["t5"].update(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2)
    out["size"] = 64
    return out


def tokenizer(max_length: int, vocab: int):
    """A word-level tokenizer of ``vocab`` entries (speed depends on sequence length, not on the words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{f"w{i}": i + 4 for i in range(vocab - 4)}}
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=max_length)


def build(family: str, cfg: dict, dtype: torch.dtype, device: str):
    """A random-weight pipeline of ``family``, initialised directly on ``device`` in ``dtype``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    tiny = cfg["size"] == 64
    vae_channels = [32, 32] if tiny else [128, 256, 512, 512]
    with torch.device(device):
        torch.set_default_dtype(dtype)
        try:
            def clip(t, projection=False):
                c = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **t)
                return (CLIPTextModelWithProjection if projection else CLIPTextModel)(c)

            blocks = len(vae_channels)
            latent = 16 if family == "flux" else 4
            vae = AutoencoderKL(block_out_channels=vae_channels, down_block_types=["DownEncoderBlock2D"] * blocks,
                                up_block_types=["UpDecoderBlock2D"] * blocks, latent_channels=latent,
                                layers_per_block=1 if tiny else 2, sample_size=cfg["size"],
                                use_quant_conv=family != "flux", use_post_quant_conv=family != "flux",
                                **({"scaling_factor": 0.3611, "shift_factor": 0.1159} if family == "flux" else {}))
            tok = tokenizer(77, 49408)
            if family == "sd15":
                pipe = StableDiffusionPipeline(vae=vae, text_encoder=clip(cfg["text"][0]), tokenizer=tok,
                                               unet=UNet2DConditionModel(**cfg["unet"]), scheduler=DDIMScheduler(**SD_SCHEDULER),
                                               safety_checker=None, feature_extractor=None,
                                               requires_safety_checker=False)
            elif family == "sdxl":
                pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=clip(cfg["text"][0]),
                                                 text_encoder_2=clip(cfg["text"][1], projection=True),
                                                 tokenizer=tok, tokenizer_2=tok,
                                                 unet=UNet2DConditionModel(**cfg["unet"]), scheduler=DDIMScheduler(**SD_SCHEDULER))
            else:
                t5 = T5EncoderModel(T5Config(vocab_size=32128, decoder_start_token_id=0, pad_token_id=0,
                                             eos_token_id=1, **cfg["t5"]))
                pipe = FluxPipeline(vae=vae, text_encoder=clip(cfg["text"][0]), tokenizer=tok, text_encoder_2=t5,
                                    tokenizer_2=tokenizer(512, 32128),
                                    transformer=FluxTransformer2DModel(**cfg["transformer"]),
                                    scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
        finally:
            torch.set_default_dtype(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seconds(fn, repeats: int = 3) -> float:
    """Best of ``repeats`` after one warm-up call, synchronised."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(family: str, *, scale: str, device: str, compile: bool, steps: int) -> dict:
    from rd_inference import BrightnessVerifier, search
    from rd_inference.denoisers import make_denoiser
    from rd_inference.denoisers.memory import auto_max_batch
    from rd_inference.dtypes import resolve_dtype, upcast_vae

    cfg = REAL[family] if scale == "real" else shrink(REAL[family], family)
    class_name = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline"}[family]
    dtype = resolve_dtype("auto", class_name, device) or torch.float32
    row: dict = {"family": family, "scale": scale, "dtype_auto": str(dtype).removeprefix("torch.")}
    t0 = time.perf_counter()
    pipe = build(family, cfg, dtype, device)
    upcast_vae(pipe, "sd" if family == "sd15" else family)  # as load_pipeline does (SDXL's VAE in float32)
    row["build_s"] = round(time.perf_counter() - t0, 1)
    row["weights_gib"] = round(sum(p.numel() * p.element_size() for m in pipe.components.values()
                                   if isinstance(m, torch.nn.Module) for p in m.parameters()) / 2**30, 2)
    size = cfg["size"]
    den = make_denoiser(pipe, "a red cube on a blue sphere", steps=steps, height=size, width=size, max_batch=1)
    x1 = den.initial_noise([torch.Generator("cpu").manual_seed(0)])
    reps = 3 if scale == "real" else 1  # the tiny scale only checks that everything runs
    row["forward_s_batch1"] = round(seconds(lambda: den.predict_x0(x1, 0), reps), 4)
    chunk = row["max_batch_auto"] = auto_max_batch(den) if hasattr(den, "latent_shape") else 1
    chunk = chunk if scale == "real" else min(chunk, 4)
    xs = den.initial_noise([torch.Generator("cpu").manual_seed(k) for k in range(chunk)])
    den.max_batch = chunk
    row["forward_s_per_path_at_chunk"] = round(seconds(lambda: den.predict_x0(xs, 0), reps) / chunk, 4)
    for overlap in (False, True):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        result = search(pipe, "a red cube on a blue sphere", verifier=BrightnessVerifier(), strategy="bon",
                        budget="4x", steps=steps, height=size, width=size, overlap=overlap,
                        max_batch="auto" if scale == "real" else chunk)
        key = "bon4x_overlap" if overlap else "bon4x"
        row[f"{key}_s"] = round(time.perf_counter() - t0, 2)
        row[f"{key}_nfe"] = result.counts["nfe"]
        if torch.cuda.is_available():
            row[f"{key}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if compile:
        from rd_inference.speed_options import speed_up_pipeline

        t0 = time.perf_counter()
        speed_up_pipeline(pipe, compile=True)
        den.predict_x0(xs, 0)
        row["compile_first_call_s"] = round(time.perf_counter() - t0, 1)
        row["forward_s_per_path_at_chunk_compiled"] = round(seconds(lambda: den.predict_x0(xs, 0), reps) / chunk, 4)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="sd15,sdxl,flux")
    ap.add_argument("--scale", choices=("real", "tiny"), default="real")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=4, help="denoising steps of the timed searches")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the denoiser")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    rows = []
    for family in args.families.split(","):
        try:
            row = measure(family, scale=args.scale, device=args.device, compile=args.compile, steps=args.steps)
        except Exception as exc:  # noqa: BLE001 — report and go on: one family's failure must not cost the others' figures
            row = {"family": family, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if torch.cuda.is_available():  # the family's models are garbage now; give their memory back
            torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                       "torch": torch.__version__, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
