"""rd-tts bench: the toy-world quality benchmark (oracle accuracy vs compute, per strategy)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Oracle-scored benchmark of every strategy at matched compute on the embedded toy world."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench_out", help="folder for results.json, table.md, accuracy_vs_nfe.png")
    p.add_argument("--quick", action="store_true", help="a few prompts, small budgets: a CI-sized run")
    p.add_argument("--model", default=None, help="toy pipeline folder (default: the embedded one)")
    p.add_argument("--verifier", default=None, help="toy VLM folder (default: the embedded one)")
    p.add_argument("--prompts", default=None, help="evaluation prompts, one a line (default: the eval split)")
    p.add_argument("--per-skill", type=int, default=5, help="evaluation prompts per skill (default: 19 prompts)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--budgets", default="1,4,8,16", help="multiples of one sample's denoiser forwards")
    # The default is the four methods the comparison is about (6 min 39 s at the default size on 2 idle
    # CPU cores); "all" adds beam, fk and prune, which doubles the time.
    p.add_argument("--methods", default="one,bon,sop,zo,evo",
                   help="comma-separated methods, or 'all' (one,bon,sop,zo,evo,beam,fk,prune)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def seen_prompts(*folders: Path) -> list[str]:
    """Training and tuning prompts: the grammar's train/tune splits plus any prompt a shipped model card
    lists in ``training_prompts.txt`` beside its weights."""
    from ..toyworld.prompts import prompts

    seen = [*prompts("train"), *prompts("tune")]
    for folder in folders:
        listed = Path(folder) / "training_prompts.txt"
        if listed.is_file():
            seen += [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    return seen


def run(args: argparse.Namespace) -> int:
    import torch

    from ..bench import check_disjoint, resolve_methods, run_bench, write_outputs
    from ..pipelines import default_model_path, load_pipeline, model_defaults
    from ..toyworld.prompts import SKILLS, prompts, spread
    from ..verifier_loading import default_verifier_path, load_verifier

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = Path(args.model) if args.model else default_model_path()
    verifier_dir = Path(args.verifier) if args.verifier else default_verifier_path()
    if args.prompts:
        eval_prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
        if not eval_prompts:
            raise ValueError(f"{args.prompts} has no prompts")
    else:
        per_skill = 1 if args.quick else args.per_skill
        eval_prompts = [p for skill in SKILLS for p in spread(prompts("eval", skill), per_skill)]
    check_disjoint(eval_prompts, seen_prompts(model_dir, verifier_dir))
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    # 8x, not 4x: the smallest Search over Paths run with the tuned settings costs about 4.6 samples.
    budgets = [1, 8] if args.quick else [int(b) for b in args.budgets.split(",")]
    methods = ["one", "bon", "sop"] if args.quick else resolve_methods(args.methods)
    defaults = model_defaults(model_dir)
    steps = args.steps or defaults.get("steps") or (10 if args.quick else 20)
    guidance = args.guidance if args.guidance is not None else defaults.get("guidance_scale", 4.0)
    pipe = load_pipeline(model_dir, device="cpu")
    verifier = load_verifier(str(verifier_dir), device="cpu")
    cells = run_bench(pipe, verifier, eval_prompts, seeds, methods=methods, budgets=budgets, steps=steps,
                      guidance=guidance, settings=defaults.get("strategies"))
    meta = {"prompts": eval_prompts, "seeds": seeds, "steps": steps, "guidance": guidance, "methods": methods,
            "budgets": budgets, "model": str(model_dir), "verifier": str(verifier_dir),
            "settings": defaults.get("strategies", {}), "quick": args.quick}
    out = Path(args.out)
    write_outputs(cells, out, meta)
    print(f"wrote {out}/results.json, {out}/table.md, {out}/accuracy_vs_nfe.png")
    print(json.dumps(meta["settings"]) if meta["settings"] else "")
    return 0
