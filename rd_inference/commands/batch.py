"""rd-tts batch: a prompts file x seeds, one run directory each, resumable, on one or several processes."""

from __future__ import annotations

import argparse
from datetime import timedelta

from .options import add_model_arguments, add_search_arguments, check_inputs, search_kwargs, strategy_params

HELP = "Search every prompt of a file (x seeds) into one folder with a results.jsonl index; resumable."

SIMPLE_VERIFIERS = ("brightness", "color:")
# Processes finish their shares at different times and wait for each other at the end; torch's default
# 30-minute collective timeout would kill a long batch there, so allow a long wait.
BARRIER_TIMEOUT = timedelta(hours=24)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompts", metavar="PROMPTS",
                   help="text file (one prompt a line) or .jsonl ({\"prompt\", \"seed\", \"criteria\", \"metadata\"})")
    p.add_argument("--out", required=True, help="batch folder: items/<row>-<prompt>-s<seed>/ and results.jsonl; "
                   "re-run the same command to resume")
    p.add_argument("--seeds", default="0", help="seeds for every prompt without its own: 0,1,2 or 0-7 (default 0)")
    p.add_argument("--format", choices=["auto", "text", "jsonl"], default="auto",
                   help="prompts file format (auto: .jsonl/.ndjson is JSONL, anything else text)")
    add_model_arguments(p, device_help="diffusion device, or one per process: cuda:0,cuda:1 (default: each "
                        "accelerate process's own device, cuda if available)")
    p.add_argument("--verifier-device", default=None,
                   help="the verifier's device, or one per process (cuda:2,cuda:3); default: --device")
    add_search_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def per_process(value: str | None, index: int, count: int, flag: str) -> str | None:
    """``cuda:1`` for every process, or ``cuda:0,cuda:1`` = one per process."""
    if value is None:
        return None
    values = [v.strip() for v in value.split(",")]
    if len(values) == 1:
        return values[0]
    if len(values) != count:
        raise ValueError(f"{flag} {value!r} lists {len(values)} devices for {count} processes; give one, or one "
                         "per process")
    return values[index]


def check_settings(args: argparse.Namespace) -> None:
    """What can be checked without models: the strategy's settings and the budget's form."""
    from ..budget import parse_budget
    from ..strategies import get_strategy

    strat = get_strategy(args.strategy)
    strat.validate({**strat.defaults, **strategy_params(args)})
    if args.budget is not None:
        parse_budget(args.budget, 1)


def check_batch_out(out: str) -> None:
    """The batch folder can be created or resumed: checked without writing (the write probe comes later)."""
    import os

    from ..run_dir import nearest_existing

    probe = nearest_existing(out)
    if not probe.is_dir():
        raise ValueError(f"cannot write the batch output folder {out} ({probe} is a file); choose a folder for --out")
    if not os.access(probe, os.W_OK):
        raise ValueError(f"cannot write the batch output folder {out} ({probe} is read-only); choose a writable --out")


def run(args: argparse.Namespace) -> int:
    from ..batch import parse_seeds, prepare_batch, read_prompts

    # Everything about the input is checked before accelerate, models or the output folder are touched.
    items = read_prompts(args.prompts, seeds=parse_seeds(args.seeds), fmt=args.format)
    if args.verifier is not None and args.verifier.startswith(SIMPLE_VERIFIERS) and \
            any(item.criteria is not None for item in items):
        raise ValueError(f"the prompts file sets criteria, but --verifier {args.verifier} takes none; use a VLM "
                         "verifier or drop the criteria")
    check_settings(args)
    check_batch_out(args.out)
    check_inputs(args, seeds=[item.seed for item in items])

    import torch
    from accelerate import PartialState

    from ..batch import run_batch
    from ..pipelines import load_pipeline
    from ..plan import plan_search
    from ..verifier_loading import load_verifier

    cpu = (args.device or "").startswith("cpu") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)
    rank, count = state.process_index, state.num_processes
    device = per_process(args.device, rank, count, "--device") or str(state.device)
    verifier_device = per_process(args.verifier_device, rank, count, "--verifier-device") or device
    settings = {
        "model": args.model, "verifier": args.verifier, "quantization": args.quantization,
        "criteria": args.criteria, "ensemble": args.ensemble, "dtype": args.dtype, **search_kwargs(args),
    }
    settings.pop("offload")  # placement, not result-deciding settings
    settings.pop("overlap")
    verifier = load_verifier(args.verifier, device=verifier_device, quantization=args.quantization,
                             criteria=args.criteria, offload=args.offload, attention=args.verifier_attention,
                             compile=args.compile, aggregation=args.ensemble)
    pipe = load_pipeline(args.model, dtype=args.dtype, device=device, attention=args.attention,
                         compile=args.compile)
    # The budget's fit and the ceiling depend on the model's schedule: checked before the folder is touched.
    plan_search(pipe, items[0].prompt, seed=items[0].seed, timed=False, **search_kwargs(args))
    out = prepare_batch(args.out, items, settings, is_main=state.is_main_process)
    report = run_batch(pipe, items, out, verifier=verifier, state=state, show_progress=not args.no_progress,
                       **search_kwargs(args))
    if state.is_main_process:
        print(f"{len(report.records)} of {len(items)} items finished ({report.skipped} before this run); "
              f"index: {out / 'results.jsonl'}")
    return 0
