"""rd-tts generate: one prompt, one search, one run directory."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

HELP = "Search for the image a verifier likes best for a prompt; write a run directory."

def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def strategy_flags() -> dict[str, tuple[str, type]]:
    """``--flag`` -> (setting, parser) for every setting of every strategy, derived from their defaults so a
    new strategy's settings appear on the command line by themselves."""
    from ..strategies import STRATEGIES

    flags = {}
    for strategy in STRATEGIES.values():
        for name, default in strategy.defaults.items():
            kind = _floats if isinstance(default, tuple) else type(default)
            flags["--" + name.replace("_", "-")] = (name, kind)
    return flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt_arg", nargs="?", metavar="PROMPT", help="the prompt (or use --prompt)")
    p.add_argument("--prompt", help="the prompt")
    p.add_argument("--model", help="diffusers pipeline folder or hub id (default: the embedded toy model)")
    p.add_argument("--verifier", help="VLM folder or hub id, or a simple verifier: brightness, color:R,G,B "
                   "(default: the embedded toy VLM)")
    p.add_argument("--quantization", choices=["none", "8bit", "4bit"], default="none", help="VLM verifier loading")
    p.add_argument("--criteria", default=None, help="verifier criteria template name or file")
    p.add_argument("--offload", action="store_true",
                   help="one-GPU mode: the diffusion model and the VLM verifier take turns on the GPU")
    p.add_argument("--final-pick", choices=["score", "tournament"], default="score",
                   help="pick the best verifier score, or run a pairwise tournament over the best finished images")
    p.add_argument("--tournament-k", type=int, default=4)
    p.add_argument("--strategy", default="sop", help="sop (Search over Paths), bon (Best-of-N), zo (zero-order), "
                   "beam (beam search with look-ahead), fk (Feynman-Kac particles), prune (staged pruning)")
    p.add_argument("--budget", default=None, help="denoiser forwards (e.g. 400) or a multiple of one sample (e.g. 4x)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory to create (default: runs/<prompt>-<strategy>-s<seed>)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None, help="guidance scale")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--max-batch", type=int, default=8, help="paths per denoiser forward")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    group = p.add_argument_group("strategy settings (each strategy reads its own; see the README)")
    for flag, (name, typ) in strategy_flags().items():
        group.add_argument(flag, dest=name, type=typ, default=None)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def default_out(prompt: str, strategy: str, seed: int) -> Path:
    base = Path("runs") / f"{slug(prompt)}-{strategy}-s{seed}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..api import search
    from ..pipelines import EMBEDDED_PIPELINE, load_pipeline, model_defaults
    from ..verifier_loading import load_verifier

    prompt = args.prompt or args.prompt_arg
    if not prompt or not prompt.strip():
        raise ValueError("no prompt: pass it as the first argument or with --prompt")
    from ..strategies import get_strategy

    accepted = get_strategy(args.strategy).defaults
    given = {name for name, _ in strategy_flags().values() if getattr(args, name) is not None}
    if given - set(accepted):
        raise ValueError(f"strategy {args.strategy!r} does not take {sorted(given - set(accepted))}; "
                         f"its settings are {sorted(accepted)}")
    # A model folder may ship recommended settings (the embedded toy model does); flags override them.
    defaults = model_defaults(args.model or EMBEDDED_PIPELINE)
    params = {**defaults.get("strategies", {}).get(get_strategy(args.strategy).name, {}),
              **{name: getattr(args, name) for name in given}}
    out = Path(args.out) if args.out else default_out(prompt, args.strategy, args.seed)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    verifier = load_verifier(args.verifier, device=device, quantization=args.quantization, criteria=args.criteria,
                             offload=args.offload)
    pipe = load_pipeline(args.model, dtype=dtype, device=device)
    bar = tqdm(total=None, unit="nfe", desc="denoiser forwards")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = search(
            pipe, prompt, verifier=verifier, strategy=args.strategy, budget=args.budget, seed=args.seed,
            steps=args.steps or defaults.get("steps"),
            guidance_scale=args.guidance if args.guidance is not None else defaults.get("guidance_scale"),
            negative_prompt=args.negative_prompt, height=args.height or defaults.get("height"),
            width=args.width or defaults.get("width"), max_batch=args.max_batch, out=out, progress=progress,
            offload=args.offload, final_pick=args.final_pick, tournament_k=args.tournament_k, **params,
        )
    finally:
        bar.close()
    c = result.counts
    print(f"chosen: node {result.node_id}, score {result.score:.4f}")
    print(f"spent: {c['nfe']} denoiser forwards, {c['decodes']} decodes, {c['verifier_images']} images verified, "
          f"{c['seconds']['total']:.1f} s")
    print(f"wrote {out}/chosen.png and the run record in {out}")
    return 0
