"""Measure the toy pipeline's single-sample oracle pass rate per skill on a prompt split, and the
oracle's own accuracy on held-back renders.

    python -m rd_inference.toyworld.evaluate --split eval --seeds 0 1 --grid runs/toy_eval.png
    python -m rd_inference.toyworld.evaluate --oracle-only --renders 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from rd_inference.toyworld.prompts import spread
from rd_inference.toyworld.sampling import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    grid,
    load_pipeline,
    pass_rates,
    sample_and_label,
)
from rd_inference.toyworld.worlds import WORLDS, get_world


def oracle_accuracy(n: int, split: str = "eval", seed: int = 0, supersample: int = 1,
                    world: str = "v1") -> dict[str, float]:
    """Oracle accuracy per skill on ``n`` random renders of ``split`` prompts (skills drawn uniformly)."""
    w = get_world(world)
    rng = np.random.default_rng(seed)
    hits: dict[str, list[bool]] = {s: [] for s in w.tasks}
    for _ in range(n):
        skill = w.tasks[rng.integers(len(w.tasks))]
        ps = w.prompts(split, skill)
        p = ps[rng.integers(len(ps))]
        hits[skill].append(w.check(w.render(w.sample_scene(p, rng), supersample=supersample), p).ok)
    out = {s: float(np.mean(h)) for s, h in hits.items() if h}
    out["all"] = float(np.mean([x for h in hits.values() for x in h]))
    return out


def write_sheets(samples, folder: Path, per_sheet: int = 40) -> None:
    """Contact sheets ``sheet_NN.png`` (8 columns, 3x nearest-neighbour) and ``legend.txt``: per sample
    its number, the oracle's verdict, the prompt, what the oracle saw and any malformed reason."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(0, len(samples), per_sheet):
        chunk = samples[k : k + per_sheet]
        grid([s.image for s in chunk]).save(folder / f"sheet_{k // per_sheet:02d}.png")
        for j, s in enumerate(chunk):
            why = getattr(s.result, "malformed", "")
            seen = ", ".join(f"{o.colour} {o.shape}" for o in s.result.objects)
            lines.append(f"{k // per_sheet:02d}:{j:02d} {'ok  ' if s.ok else 'FAIL'} seed {s.seed} {s.prompt!r}: "
                         f"{seen}" + (f" [malformed: {why}]" if why else ""))
    (folder / "legend.txt").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", choices=WORLDS, default="v1", help="which shapes world (and shipped pipeline)")
    ap.add_argument("--pipeline", type=Path, default=None, help="pipeline folder (default: the shipped one)")
    ap.add_argument("--split", default="eval", choices=["train", "tune", "eval"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--cfg", type=float, default=DEFAULT_GUIDANCE)
    ap.add_argument("--max-per-skill", type=int, default=None,
                    help="N prompts of each skill only, evenly spread over its list")
    ap.add_argument("--sheets", type=Path, default=None,
                    help="write every sample to numbered contact sheets (40 a sheet) with a verdict legend, "
                         "for reading the oracle's verdicts by eye")
    ap.add_argument("--grid", type=Path, default=None, help="save a PNG grid of samples (8 per skill)")
    ap.add_argument("--json", type=Path, default=None, help="write the table as JSON")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--renders", type=int, default=1000, help="held-back renders for the oracle's accuracy")
    ap.add_argument("--oracle-only", action="store_true", help="only measure the oracle on renders")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    oracle = {f"supersample={k}": oracle_accuracy(args.renders, args.split, seed=1, supersample=k, world=args.world)
              for k in (1, 4)}
    print(json.dumps({"oracle_on_renders": {"n": args.renders, "split": args.split, **oracle}}, indent=1))
    if args.oracle_only:
        return
    pipe = load_pipeline(args.pipeline, args.world)
    w = get_world(args.world)
    t0 = time.time()
    samples, shown = [], []
    for skill in w.tasks:
        ps = w.prompts(args.split, skill)
        ps = spread(ps, args.max_per_skill) if args.max_per_skill else list(ps)
        got = sample_and_label(pipe, ps, args.seeds, num_inference_steps=args.steps, guidance_scale=args.cfg,
                               world=args.world)
        samples += got
        shown += got[:8]
    table = pass_rates(samples)
    # With several seeds: the share of prompts that at least one seed passes, i.e. Best-of-N with
    # N = the number of seeds and a perfect verifier (an upper bound on any verifier's Best-of-N).
    by_prompt: dict[str, list[bool]] = {}
    for s in samples:
        by_prompt.setdefault(s.prompt, []).append(s.ok)
    for skill in list(table):
        rows = [v for p, v in by_prompt.items() if skill == "all" or w.parse(p).skill == skill]
        table[skill]["oracle_best_of_seeds"] = sum(any(v) for v in rows) / len(rows)
    report = {"world": args.world, "split": args.split, "seeds": args.seeds, "steps": args.steps, "cfg": args.cfg,
              "seconds": round(time.time() - t0, 1), "skills": table, "oracle_on_renders": oracle}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.sheets:
        write_sheets(samples, args.sheets)
    if args.grid:
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        grid([s.image for s in shown]).save(args.grid)
        for i, s in enumerate(shown):
            mark = "ok  " if s.ok else "FAIL"
            why = getattr(s.result, "malformed", "")
            print(f"{i:2d} {mark} {s.prompt!r}: " + ", ".join(f"{o.colour} {o.shape}" for o in s.result.objects)
                  + (f" [malformed: {why}]" if why else ""))


if __name__ == "__main__":
    main()
