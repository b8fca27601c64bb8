"""Command-line options shared by the commands that run searches (generate, batch).

One definition per flag, so that ``rd-tts generate`` and ``rd-tts batch`` accept the same settings and
mean the same thing by them.
"""

from __future__ import annotations

import argparse
from typing import Any


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas (e.g. 0.3,0.6), got {text!r}") from None


def _overlap(text: str) -> bool | str:
    value = text.strip().lower()
    if value not in ("auto", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
    return "auto" if value == "auto" else value == "on"


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _max_batch(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def strategy_flags() -> dict[str, tuple[str, type]]:
    """``--flag`` -> (setting, parser) for every setting of every strategy, derived from their defaults so a
    new strategy's settings appear on the command line by themselves."""
    from ..strategies import STRATEGIES

    flags = {}
    for strategy in STRATEGIES.values():
        for name, default in strategy.defaults.items():
            kind = _floats if isinstance(default, tuple) else _bool if isinstance(default, bool) else type(default)
            flags["--" + name.replace("_", "-")] = (name, kind)
    return flags


def add_model_arguments(p: argparse.ArgumentParser, *, device_help: str) -> None:
    """Which diffusion model and verifier, and how to load them."""
    p.add_argument("--model", help="diffusers pipeline folder or hub id (default: the embedded toy model)")
    from ..verifier_loading import VERIFIER_HELP

    p.add_argument("--verifier", metavar="KIND:PATH_OR_ID", help=VERIFIER_HELP)
    p.add_argument("--ensemble", choices=["mean", "rank"], default="mean",
                   help="how an ensemble (verifiers joined by '+') combines scores: mean keeps each score's scale "
                   "(comparable across rounds); rank is scale-free but only meaningful within one call (Best-of-N)")
    p.add_argument("--quantization", choices=["none", "8bit", "4bit"], default="none", help="VLM verifier loading")
    p.add_argument("--criteria", default=None, help="verifier criteria template name or file")
    p.add_argument("--offload", action="store_true",
                   help="one-GPU mode: the diffusion model and the VLM verifier take turns on the GPU")
    p.add_argument("--device", default=None, help=device_help)
    p.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                   help="diffusion model dtype; auto: bfloat16 for SD3/FLUX and float16 for SD/SDXL on CUDA "
                   "(SDXL's VAE in float32), float32 on CPU")
    p.add_argument("--attention", default=None, metavar="BACKEND",
                   help="diffusers attention backend for the denoiser (e.g. native, flash, sage; default: diffusers' choice)")
    p.add_argument("--verifier-attention", default=None, metavar="IMPL",
                   help="transformers attn_implementation for the VLM (sdpa, eager, flash_attention_2, ...)")
    p.add_argument("--overlap", type=_overlap, default="auto", metavar="{auto,on,off}",
                   help="score finished chunks while the next chunk denoises; auto (the default): when the "
                   "verifier is on another GPU than the diffusion model")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the denoiser (regionally where it has repeated blocks) and the VLM; "
                   "pays off only on long searches")


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The search: strategy, budget, sampling settings and the strategy's own settings."""
    p.add_argument("--final-pick", choices=["score", "tournament"], default="score",
                   help="pick the best verifier score, or run a pairwise tournament over the best finished images")
    p.add_argument("--tournament-k", type=int, default=4)
    p.add_argument("--strategy", default="sop", help="sop (Search over Paths), bon (Best-of-N), zo (zero-order), "
                   "beam (beam search with look-ahead), fk (Feynman-Kac particles), prune (staged pruning), "
                   "evo (evolutionary search)")
    p.add_argument("--budget", default=None, help="denoiser forwards (e.g. 400) or a multiple of one sample (e.g. 4x)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None, help="guidance scale")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--max-batch", type=_max_batch, default="auto",
                   help="paths per denoiser forward, or auto (the default): from free GPU memory, 64 on CPU")
    from ..budget import DEFAULT_MAX_NFE, ceiling_from_text

    p.add_argument("--max-forwards", default=DEFAULT_MAX_NFE, type=ceiling_from_text, metavar="N",
                   help="refuse a search planned above N denoiser forwards, or a multiple of one sample like "
                   "256x (the default); 0, 'none' or 'off' for no ceiling")
    group = p.add_argument_group("strategy settings (each strategy reads its own; see the README)")
    for flag, (name, typ) in strategy_flags().items():
        group.add_argument(flag, dest=name, type=typ, default=None)


def strategy_params(args: argparse.Namespace, defaults: dict | None = None) -> dict[str, Any]:
    """The strategy settings: the model folder's recommended ones (``defaults["strategies"]``), overridden
    by those given on the command line; a setting the chosen strategy does not take is refused."""
    from ..strategies import get_strategy

    strategy = get_strategy(args.strategy)
    given = {name for name, _ in strategy_flags().values() if getattr(args, name) is not None}
    if given - set(strategy.defaults):
        raise ValueError(f"strategy {args.strategy!r} does not take {sorted(given - set(strategy.defaults))}; "
                         f"its settings are {sorted(strategy.defaults)}")
    recommended = (defaults or {}).get("strategies", {}).get(strategy.name, {})
    return {**recommended, **{name: getattr(args, name) for name in given}}


def search_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :func:`rd_inference.search` from the shared options (no prompt, seed, out).

    A model folder may ship recommended settings (``rd_inference_defaults.json``; the embedded toy model
    does); flags given on the command line override them."""
    from ..pipelines import EMBEDDED_PIPELINE, model_defaults

    d = model_defaults(args.model or EMBEDDED_PIPELINE)
    pick = (lambda flag, key: flag if flag is not None else d.get(key))
    return {
        "strategy": args.strategy, "budget": args.budget, "steps": pick(args.steps, "steps"),
        "guidance_scale": pick(args.guidance, "guidance_scale"), "negative_prompt": args.negative_prompt,
        "height": pick(args.height, "height"), "width": pick(args.width, "width"),
        "max_batch": args.max_batch, "offload": args.offload, "overlap": args.overlap, "final_pick": args.final_pick,
        "tournament_k": args.tournament_k, "max_nfe": args.max_forwards, **strategy_params(args, d),
    }


def check_inputs(args: argparse.Namespace, seeds: list[int] | tuple[int, ...] = ()) -> None:
    """Everything about the options that can be checked before a model loads: numbers in range, sizes on
    the model's latent grid (read from its configs when it is a local folder), devices that exist, model
    and verifier folders that hold safetensors, strategy settings of the right kind and range, budgets and
    ceilings that parse."""
    from .. import checks
    from ..budget import check_ceiling_early, parse_budget
    from ..pipelines import EMBEDDED_PIPELINE, model_defaults

    for seed in seeds:
        checks.check_seed(seed)
    checks.check_steps(args.steps)
    checks.check_guidance(args.guidance)
    checks.check_max_batch(args.max_batch)
    if args.final_pick == "tournament":
        checks.check_count("--tournament-k", args.tournament_k, "images that play the tournament")
    if args.model is not None:
        checks.check_pipeline_source(args.model)
    model = args.model or str(EMBEDDED_PIPELINE)
    from ..strategies import get_strategy

    strategy = get_strategy(args.strategy)  # its settings: of the kind and in the range it takes
    strategy.validate({**strategy.defaults, **strategy_params(args, model_defaults(model))})
    factor = checks.size_factor(model) if checks.looks_local(model) else None
    for name in ("height", "width"):
        # Every supported family works on a grid of at least 8 pixels; the exact one is checked on load.
        checks.check_size(name, getattr(args, name), factor or 8)
    checks.check_device(args.device)
    from ..speed_options import check_attention

    check_attention(args.attention, args.verifier_attention)
    checks.check_device(getattr(args, "verifier_device", None))  # rd-tts batch only
    if args.verifier is not None:
        from ..verifier_loading import parse_verifier

        parse_verifier(args.verifier)
    if args.final_pick == "tournament":
        from ..verifier_loading import check_pairwise

        check_pairwise(args.verifier)  # from the verifier's kind: nothing loads to find out
    checks.check_criteria(args.criteria)
    if args.verifier is not None:
        from ..verifier_loading import check_criteria_use

        check_criteria_use(args.verifier, args.criteria)
    if args.budget is not None:
        parse_budget(args.budget, 1)
    if args.max_forwards is not None:
        parse_budget(args.max_forwards, 1)
        check_ceiling_early(args.budget, args.max_forwards)
