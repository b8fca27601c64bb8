"""rd-tts generate: one prompt, one search, one run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..run_dir import slug
from .options import add_model_arguments, add_search_arguments, check_inputs, search_kwargs

HELP = "Search for the image (or video) a verifier likes best for a prompt; write a run directory."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt_arg", nargs="?", metavar="PROMPT", help="the prompt (or use --prompt)")
    p.add_argument("--prompt", help="the prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory to create (default: runs/<prompt>-<strategy>-s<seed>)")
    p.add_argument("--plan", action="store_true",
                   help="print what the search would spend (forwards, decodes, images verified, rough time) and stop")
    add_model_arguments(p, device_help="cpu, cuda, cuda:1 … (default: cuda if available)")
    add_search_arguments(p)
    video = p.add_argument_group("video pipelines (WanPipeline, LTXPipeline)")
    video.add_argument("--num-frames", type=int, default=None,
                       help="frames of the video: Wan 4k+1 (default 81), LTX-Video 8k+1 (default 161)")
    video.add_argument("--verify-frames", type=int, default=None,
                       help="evenly spaced frames of each candidate shown to the verifier (default 4; see "
                       "--verify-mode)")
    video.add_argument("--verify-mode", choices=("joint", "each"), default=None,
                       help="joint: a candidate's frames go to a VLM verifier as one multi-image prompt (ask it the "
                       "video criteria: --criteria video_alignment,temporal_consistency,motion); each: every frame "
                       "scored alone and the scores averaged. Default: joint where the verifier can take it")


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
    from ..pipelines import load_pipeline
    from ..plan import plan_search
    from ..run_dir import check_out_dir
    from ..verifier_loading import load_verifier

    prompt = args.prompt or args.prompt_arg
    if not prompt or not prompt.strip():
        raise ValueError("no prompt: pass it as the first argument or with --prompt")
    # Everything that can be checked is checked before any model loads.
    check_inputs(args, seeds=[args.seed])
    from ..checks import check_count

    check_count("--num-frames", args.num_frames, "frames of the video")
    check_count("--verify-frames", args.verify_frames, "frames verified per candidate")
    kwargs = search_kwargs(args)
    kwargs.update({k: v for k, v in (("num_frames", args.num_frames), ("verify_frames", args.verify_frames))
                   if v is not None})
    out = Path(args.out) if args.out else default_out(prompt, args.strategy, args.seed)
    if not args.plan:
        check_out_dir(out)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    verifier = load_verifier(args.verifier, device=device, quantization=args.quantization, criteria=args.criteria,
                             offload=args.offload, attention=args.verifier_attention,
                             compile=args.compile, aggregation=args.ensemble)
    if args.verify_mode is not None:  # the search binds it to the video's verify_frames
        from ..video import FrameSampledVerifier

        verifier = FrameSampledVerifier(verifier, frames=args.verify_mode)
    pipe = load_pipeline(args.model, dtype=args.dtype, device=device, attention=args.attention,
                         compile=args.compile)
    if args.plan:
        print(plan_search(pipe, prompt, verifier=verifier, seed=args.seed, **kwargs).line())
        return 0
    bar = None  # opened at the first step, so the plan line prints above it

    def progress(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, unit="nfe", desc="denoiser forwards")
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = search(pipe, prompt, verifier=verifier, seed=args.seed, out=out, progress=progress,
                        on_plan=lambda plan: print(plan.line()), **kwargs)
    finally:
        if bar is not None:
            bar.close()
    c = result.counts
    print(f"chosen: node {result.node_id}, score {result.score:.4f}")
    print(f"spent: {c['nfe']} denoiser forwards, {c['decodes']} decodes, {c['verifier_images']} images verified, "
          f"{c['seconds']['total']:.1f} s")
    chosen = "chosen.mp4 (frames in chosen/)" if isinstance(result.image, list) else "chosen.png"
    print(f"wrote {out}/{chosen} and the run record in {out}")
    return 0
