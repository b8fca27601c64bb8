"""Command-line options shared by the commands that run searches (generate, batch).

One definition per flag, so that ``rd-tts generate`` and ``rd-tts batch`` accept the same settings and
mean the same thing by them.
"""

from __future__ import annotations

import argparse
from typing import Any

STRATEGY_FLAGS = {  # flag -> (strategy setting, type)
    "--n": ("n", int),
    "--m": ("m", int),
    "--sigma-start": ("sigma_start", float),
    "--delta-f": ("delta_f", float),
    "--delta-b": ("delta_b", float),
    "--neighbors": ("neighbors", int),
    "--rounds": ("rounds", int),
    "--cosine": ("cosine", float),
}


def add_model_arguments(p: argparse.ArgumentParser, *, device_help: str) -> None:
    """Which diffusion model and verifier, and how to load them."""
    p.add_argument("--model", help="diffusers pipeline folder or hub id (default: the embedded toy model)")
    p.add_argument("--verifier", help="VLM folder or hub id, or a simple verifier: brightness, color:R,G,B "
                   "(default: the embedded toy VLM)")
    p.add_argument("--quantization", choices=["none", "8bit", "4bit"], default="none", help="VLM verifier loading")
    p.add_argument("--criteria", default=None, help="verifier criteria template name or file")
    p.add_argument("--offload", action="store_true",
                   help="one-GPU mode: the diffusion model and the VLM verifier take turns on the GPU")
    p.add_argument("--device", default=None, help=device_help)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The search: strategy, budget, sampling settings and the strategy's own settings."""
    p.add_argument("--final-pick", choices=["score", "tournament"], default="score",
                   help="pick the best verifier score, or run a pairwise tournament over the best finished images")
    p.add_argument("--tournament-k", type=int, default=4)
    p.add_argument("--strategy", default="sop", help="sop (Search over Paths), bon (Best-of-N), zo (zero-order)")
    p.add_argument("--budget", default=None, help="denoiser forwards (e.g. 400) or a multiple of one sample (e.g. 4x)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None, help="guidance scale")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--max-batch", type=int, default=8, help="paths per denoiser forward")
    for flag, (name, typ) in STRATEGY_FLAGS.items():
        p.add_argument(flag, dest=name, type=typ, default=None, help=f"strategy setting {name}")


def strategy_params(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy settings given on the command line (unset ones keep the strategy's defaults)."""
    return {name: getattr(args, name) for name, _ in STRATEGY_FLAGS.values() if getattr(args, name) is not None}


def search_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :func:`rd_inference.search` from the shared options (no prompt, seed, out)."""
    return {
        "strategy": args.strategy, "budget": args.budget, "steps": args.steps, "guidance_scale": args.guidance,
        "negative_prompt": args.negative_prompt, "height": args.height, "width": args.width,
        "max_batch": args.max_batch, "offload": args.offload, "final_pick": args.final_pick,
        "tournament_k": args.tournament_k, **strategy_params(args),
    }
