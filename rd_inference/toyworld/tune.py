"""Tune the search defaults on the toy world's ``tune`` split (never on ``eval``).

A handful of configurations, each run on a few tune-split prompts per skill x seeds at one budget; the
table reports oracle accuracy and mean verifier score per configuration. The chosen settings go into the
shipped pipeline's ``rd_inference_defaults.json`` by hand (or with ``--write``), and the table into the
model card.

    nice -n 10 python -m rd_inference.toyworld.tune --per-skill 2 --seeds 0,1 --budget 8 --out runs/tune
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

# (name, strategy, settings, verifier probability); "one" is a single sample at the given steps.
CONFIGS = [
    ("one, 10 steps", "one", {"steps": 10}, "conditional"),
    ("one, 20 steps", "one", {"steps": 20}, "conditional"),
    ("bon, conditional", "bon", {}, "conditional"),
    ("bon, full", "bon", {}, "full"),
    ("sop m=2 sigma=0.11 df=0.78 db=0.81 (paper)", "sop", {"m": 2, "sigma_start": 0.11, "delta_f": 0.78, "delta_b": 0.81},
     "conditional"),
    ("sop m=2 sigma=0.3 df=0.3 db=0.6", "sop", {"m": 2, "sigma_start": 0.3, "delta_f": 0.3, "delta_b": 0.6},
     "conditional"),
    ("sop m=2 sigma=0.5 df=0.3 db=0.4", "sop", {"m": 2, "sigma_start": 0.5, "delta_f": 0.3, "delta_b": 0.4},
     "conditional"),
    ("sop m=2 sigma=0.5 df=0.2 db=0.5", "sop", {"m": 2, "sigma_start": 0.5, "delta_f": 0.2, "delta_b": 0.5},
     "conditional"),
    ("sop m=4 sigma=0.3 df=0.3 db=0.6", "sop", {"m": 4, "sigma_start": 0.3, "delta_f": 0.3, "delta_b": 0.6},
     "conditional"),
]


def main(argv: list[str] | None = None) -> None:
    from rd_inference.api import search
    from rd_inference.commands.bench import _spread
    from rd_inference.pipelines import default_model_path, load_pipeline
    from rd_inference.toyworld.oracle import check
    from rd_inference.toyworld.prompts import SKILLS, prompts
    from rd_inference.verifier_loading import default_verifier_path
    from rd_inference.yes_token import YesTokenVerifier

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-skill", type=int, default=2)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--budget", type=int, default=8, help="multiple of one sample's denoiser forwards")
    ap.add_argument("--steps", type=int, default=10, help="steps for the searches")
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--only", default=None, help="comma-separated config indices to run")
    ap.add_argument("--out", type=Path, default=Path("runs/tune"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    tune_prompts = [p for s in SKILLS for p in _spread(prompts("tune", s), args.per_skill)]
    seeds = [int(s) for s in args.seeds.split(",")]
    pipe = load_pipeline(default_model_path(), device="cpu")
    verifiers = {p: YesTokenVerifier.from_pretrained(str(default_verifier_path()), device="cpu", probability=p)
                 for p in ("conditional", "full")}
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = range(len(CONFIGS)) if args.only is None else [int(i) for i in args.only.split(",")]
    rows = []
    for k in chosen:
        name, strategy, settings, probability = CONFIGS[k]
        t0 = time.time()
        oks, scores = [], []
        for prompt in tune_prompts:
            for seed in seeds:
                if strategy == "one":
                    res = search(pipe, prompt, verifier=verifiers[probability], strategy="bon", n=1, seed=seed,
                                 steps=settings["steps"], guidance_scale=args.guidance)
                else:
                    res = search(pipe, prompt, verifier=verifiers[probability], strategy=strategy,
                                 budget=f"{args.budget}x", seed=seed, steps=args.steps,
                                 guidance_scale=args.guidance, **settings)
                oks.append(check(res.image, prompt).ok)
                scores.append(res.score)
        row = {"config": name, "n": len(oks), "accuracy": sum(oks) / len(oks),
               "mean_score": sum(scores) / len(scores), "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        with (args.out / "tune.jsonl").open("a") as f:
            f.write(json.dumps({**row, "budget": args.budget, "steps": args.steps, "prompts": tune_prompts,
                                "seeds": seeds}) + "\n")


if __name__ == "__main__":
    main()
