"""rd-tts bench: the toy-world quality benchmark (oracle accuracy vs compute, per strategy)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

from ..toyworld.worlds import WORLDS

HELP = "Oracle-scored benchmark of every strategy at matched compute on the embedded toy world."


FULL_PER_TASK = 56  # x 3 seeds x 6 tasks = 1,008 pairs: intervals of about +-3 points


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench_out",
                   help="folder for results.json, table.md, accuracy_vs_nfe.png and records/ (one JSON line per "
                        "finished search; a run stopped and started again with the same --out resumes)")
    p.add_argument("--quick", action="store_true", help="a few prompts, small budgets: a CI-sized run")
    p.add_argument("--full", action="store_true",
                   help=f"the README's run: {FULL_PER_TASK} prompts per task x the seeds (1,008 pairs with 3 seeds)")
    p.add_argument("--world", choices=WORLDS, default=None,
                   help="toy world whose eval split and oracle to use (default: the world of --model)")
    p.add_argument("--model", default=None, help="toy pipeline folder (default: the embedded one)")
    p.add_argument("--verifier", default=None,
                   help="toy VLM folder (default: the embedded one), or any --verifier of rd-tts generate: "
                        "clip:FOLDER for the toy CLIP scorer, A+B for an ensemble; 'oracle' searches with the world's "
                        "exact oracle (a perfect judge: each strategy's ceiling)")
    p.add_argument("--ensemble", choices=["mean", "rank"], default="mean",
                   help="how an ensemble (verifiers joined by '+') combines scores")
    p.add_argument("--hack-threshold", type=float, default=0.5,
                   help="a pick scored at least this that fails the oracle counts as reward hacking (0.5 suits "
                        "a yes-token probability; for a scalar scorer use its own decision threshold)")
    p.add_argument("--prompts", default=None, help="evaluation prompts, one a line (default: the eval split)")
    # 6 prompts per task x seed 0 (36 pairs): the five-method default at 4 per task x 3 seeds (72 pairs)
    # took 21.6 min on the idle 2-core machine, over the 15-minute goal; 36 prompts, not 12 prompts x 3
    # seeds, because the paired intervals resample prompts.
    p.add_argument("--per-task", "--per-skill", dest="per_task", type=int, default=6,
                   help="evaluation prompts per task, each with every seed; a task with fewer eval prompts "
                        "repeats them with the seeds moved by 10,000 per repeat, so every task has as many pairs")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds (default: 0; with --full or --prompts: 0,1,2)")
    p.add_argument("--budgets", default="2,4,8,16", help="multiples of one sample's denoiser forwards")
    # The default is the methods the comparison is about; "all" adds beam, fk and prune (about twice the time).
    p.add_argument("--methods", default="one,bon,sop,zo,evo",
                   help="comma-separated methods, or 'all' (one,bon,sop,zo,evo,beam,fk,prune)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def seen_prompts(*folders: Path, world: str = "v1") -> list[str]:
    """Training and tuning prompts: the grammar's train/tune splits plus any prompt a shipped model card
    lists in ``training_prompts.txt`` beside its weights."""
    from ..toyworld.worlds import get_world

    prompts = get_world(world).prompts
    seen = [*prompts("train"), *prompts("tune")]
    for folder in folders:
        listed = Path(folder) / "training_prompts.txt"
        if listed.is_file():
            seen += [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    return seen


def balanced_pairs(by_task: dict[str, tuple[str, ...]], per_task: int, seeds: list[int]) -> list[tuple[str, int]]:
    """``per_task`` x ``len(seeds)`` (prompt, seed) pairs per task: prompts spread over the task's eval
    prompts, each with every seed; a task with fewer prompts repeats them, the r-th repeat with every seed
    moved by 10,000 x r (fresh seeds, so no pair is run twice)."""
    from ..toyworld.prompts import spread

    pairs = []
    for ps in by_task.values():
        chosen = spread(ps, per_task) if len(ps) >= per_task else [ps[i % len(ps)] for i in range(per_task)]
        seen: dict[str, int] = {}
        for p in chosen:
            r = seen[p] = seen.get(p, -1) + 1
            pairs += [(p, s + 10_000 * r) for s in seeds]
    return pairs


def _world_of(model_dir: Path) -> str:
    cfg = model_dir / "vae" / "config.json"
    size = json.loads(cfg.read_text()).get("sample_size") if cfg.is_file() else None
    return {48: "v2", 64: "v3"}.get(size, "v1")


def _verifier_identity(spec: str, aggregation: str) -> tuple[str, list[Path]]:
    """The verifier as the records' fingerprint names it, and its local folders. A bare folder is its
    resolved path (as records made before other kinds existed name it); anything else is the spec with
    each local folder resolved, plus the ensemble's aggregation."""
    from ..verifier_loading import parse_verifier

    parts = parse_verifier(spec)
    folders = [Path(t) for _, t, _ in parts if t and Path(t).is_dir()]
    if len(parts) == 1 and parts[0][0] == "vlm" and folders:
        return str(folders[0].resolve()), folders
    named = "+".join(f"{k}:{Path(t).resolve() if t and Path(t).is_dir() else t}@{w:g}" for k, t, w in parts)
    return (f"{named} ({aggregation})" if len(parts) > 1 else named), folders


# An absolute path up to the embedded weights, e.g. "/home/me/rd_inference/" in front of
# "rd_inference/toyworld/weights/v2/pipeline".
_TO_EMBEDDED = re.compile(r"/[^\s:@+()]*?/(?=rd_inference/toyworld/weights/)")


def _portable(fingerprint: dict) -> dict:
    """The fingerprint with the embedded models named from the package root, so records committed from
    one checkout (as the README's --full run is) resume in a clone or an install anywhere else."""
    return {k: _TO_EMBEDDED.sub("", v) if isinstance(v, str) else v for k, v in fingerprint.items()}


def _check_records(records: Path, fingerprint: dict) -> None:
    """Refuse to resume records made with other settings (they would be mixed into the new run)."""
    meta = records / "fingerprint.json"
    fingerprint = _portable(fingerprint)
    if meta.is_file() and _portable(json.loads(meta.read_text())) != fingerprint:
        raise ValueError(f"{records.parent} holds records of a run with other settings (model, verifier, "
                         "steps, guidance or strategy settings); choose a new --out or delete it")
    records.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(fingerprint, indent=1))


def run(args: argparse.Namespace) -> int:
    import torch

    from ..bench import check_disjoint, resolve_methods, run_bench, write_outputs
    from ..pipelines import default_model_path, load_pipeline, model_defaults
    from ..toyworld.worlds import get_world
    from ..verifier_loading import default_verifier_path, load_verifier

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = Path(args.model) if args.model else default_model_path()
    verifier_spec = args.verifier or str(default_verifier_path())
    oracle = verifier_spec == "oracle"
    world = get_world(args.world or _world_of(model_dir))
    verifier_name, verifier_dirs = (f"oracle:{world.name}", []) if oracle else _verifier_identity(
        verifier_spec, args.ensemble)
    if args.quick:
        seeds = [0]
    elif args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    else:
        seeds = [0, 1, 2] if args.full or args.prompts else [0]
    if args.prompts:
        eval_prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
        if not eval_prompts:
            raise ValueError(f"{args.prompts} has no prompts")
        pairs = [(p, s) for p in eval_prompts for s in seeds]
    else:
        per_task = 1 if args.quick else FULL_PER_TASK if args.full else args.per_task
        pairs = balanced_pairs({t: world.prompts("eval", t) for t in world.tasks}, per_task, seeds)
        eval_prompts = list(dict.fromkeys(p for p, _ in pairs))
    check_disjoint(eval_prompts, seen_prompts(model_dir, *verifier_dirs, world=world.name))
    # 8x, not 4x: the smallest Search over Paths run with the tuned settings costs about 4.6 samples.
    budgets = [1, 8] if args.quick else [int(b) for b in args.budgets.split(",")]
    methods = ["one", "bon", "sop"] if args.quick else resolve_methods(args.methods)
    defaults = model_defaults(model_dir)
    steps = args.steps or defaults.get("steps") or (10 if args.quick else 20)
    guidance = args.guidance if args.guidance is not None else defaults.get("guidance_scale", 4.0)
    pipe = load_pipeline(model_dir, device="cpu")
    if oracle:
        from ..toyworld.oracle_verifier import OracleVerifier

        verifier = OracleVerifier(world)
    else:
        verifier = load_verifier(verifier_spec, device="cpu", aggregation=args.ensemble)
    out = Path(args.out)
    # Finished pairs are recorded beside --out while the run goes (so --out is complete or absent) and
    # moved into it at the end; a run started again with the same --out picks them up.
    records = out.parent / f".{out.name}.records"
    if (out / "records").is_dir() and not records.exists():
        shutil.copytree(out / "records", records)
    _check_records(records, {"model": str(model_dir.resolve()), "verifier": verifier_name,
                             "steps": steps, "guidance": guidance, "settings": defaults.get("strategies", {})})
    cells = run_bench(pipe, verifier, pairs, methods=methods, budgets=budgets, steps=steps, guidance=guidance,
                      settings=defaults.get("strategies"), check=world.check, records=records,
                      hack_threshold=args.hack_threshold)
    tasks = [world.parse(p).skill for p, _ in pairs]
    meta = {"world": world.name, "pairs": pairs, "tasks": tasks, "seeds": seeds, "steps": steps,
            "guidance": guidance, "methods": methods, "budgets": budgets, "model": str(model_dir),
            "verifier": verifier_spec, "settings": defaults.get("strategies", {}), "quick": args.quick,
            "full": args.full}
    write_outputs(cells, out, meta)
    shutil.rmtree(out / "records", ignore_errors=True)
    os.replace(records, out / "records")
    print(f"wrote {out}/results.json, {out}/table.md, {out}/accuracy_vs_nfe.png")
    print(json.dumps(meta["settings"]) if meta["settings"] else "")
    return 0
